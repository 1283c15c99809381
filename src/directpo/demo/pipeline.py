"""DPO paper §6.1, controlled sentiment generation, scaled to a laptop CPU.

1. assets: SmolLM2-135M-Instruct (reference and start point), Rotten Tomatoes sentences with
   human ratings, VADER;
2. prompts: the first 2-8 words of review sentences, split into train and held-out;
3. pairs: K completions per train prompt sampled from the reference, scored by VADER (the
   ground-truth reward); every pair whose reward gap exceeds a threshold, largest gaps first;
4. methods (methods.py): DPO at each β of the profile, Preferred-FT (``sft`` on chosen),
   Unlikelihood (``[sft, unlikelihood]``) and online DPO through ``directpo.train``; RL on the
   true reward and RLHF (a learned reward model) through TRL's ``RLOOTrainer``;
5. evaluation: every few steps, held-out completions are sampled and the sequence-level KL and
   the mean VADER reward measured, the same way for every method; a second judge
   (``sentiment.Judge``) scores the same samples afterwards; each method's cost (seconds, peak
   memory, models in memory, samples generated) is recorded;
6. outputs: frontier.png, curves.png, results.json, samples.md, README.md.

Everything is seeded: two runs of a profile give the same numbers on the same machine.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from directpo.demo.assets import rotten_tomatoes, smollm2_dir
from directpo.demo.methods import Experiment, Method, reward_model_accuracy, run_method
from directpo.demo.plots import check_plotting, plot_curves, plot_frontier
from directpo.demo.sentiment import Judge, vader_reward
from directpo.generate import sample_completions
from directpo.jsonl import write_jsonl
from directpo.models import load_causal_lm
from directpo.tokenizer_loading import load_tokenizer
from directpo.tracking import read_metrics


@dataclass(frozen=True)
class Profile:
    train_prompts: int
    heldout_prompts: int
    samples_per_prompt: int  # K completions per train prompt (offline pairs, online, RL)
    completion_tokens: int
    gap_threshold: float
    max_pairs_per_prompt: int
    eval_samples: int  # completions per held-out prompt at each evaluation
    max_steps: int
    eval_steps: int
    batch_size: int
    methods: tuple[Method, ...] = field(default_factory=tuple)
    online_prompts_per_round: int = 16  # online DPO: prompts sampled per round
    steps_per_round: int = 4
    rl_prompts_per_step: int = 4  # RLOO: prompts per step (x samples_per_prompt completions)
    reward_model_learning_rate: float = 5e-5  # RLHF's reward model (TRL's RewardTrainer)
    reward_model_epochs: float = 2.0


PROFILES = {
    "quick": Profile(
        train_prompts=64,
        heldout_prompts=24,
        samples_per_prompt=4,
        completion_tokens=16,
        gap_threshold=0.3,
        max_pairs_per_prompt=2,
        eval_samples=2,
        max_steps=16,
        eval_steps=4,
        batch_size=8,
        methods=(
            Method("DPO", ("sigmoid",), beta=0.1, learning_rate=2e-4),
            Method("Preferred-FT", ("sft",), learning_rate=2e-4),
            Method("Online DPO", ("sigmoid",), beta=0.1, learning_rate=2e-4, kind="online"),
            Method("RL (true reward)", beta=0.05, learning_rate=1e-4, kind="rl"),
        ),
        online_prompts_per_round=12,
        rl_prompts_per_step=3,
    ),
    "full": Profile(
        train_prompts=256,
        heldout_prompts=64,
        samples_per_prompt=4,
        completion_tokens=24,
        gap_threshold=0.3,
        max_pairs_per_prompt=2,
        eval_samples=2,
        max_steps=48,
        eval_steps=12,
        batch_size=8,
        methods=(
            Method("DPO", ("sigmoid",), beta=0.05, learning_rate=2e-4),
            Method("DPO", ("sigmoid",), beta=0.1, learning_rate=2e-4),
            Method("DPO", ("sigmoid",), beta=0.5, learning_rate=2e-4),
            Method("Preferred-FT", ("sft",), learning_rate=2e-4),
            Method("Unlikelihood", ("sft", "unlikelihood"), learning_rate=2e-4),
            Method("Online DPO", ("sigmoid",), beta=0.1, learning_rate=2e-4, kind="online"),
            Method("RL (true reward)", beta=0.05, learning_rate=1e-4, kind="rl"),
            Method("RL (true reward)", beta=0.05, learning_rate=2e-4, kind="rl"),
            Method("RLHF", beta=0.05, learning_rate=1e-4, kind="rl"),
        ),
    ),
}


def make_prompts(
    sentences: list[tuple[str, float]], count: int, rng: random.Random
) -> tuple[list[str], list[int]]:
    """Prefixes of 2-8 words of ``count`` distinct sentences; (prompts, sentence indices)."""
    order = list(range(len(sentences)))
    rng.shuffle(order)
    prompts, used, seen = [], [], set()
    for index in order:
        words = sentences[index][0].split()
        if len(words) < 4:
            continue
        prefix = " ".join(words[: rng.randint(2, min(8, len(words) - 2))])
        if prefix.lower() in seen:
            continue
        seen.add(prefix.lower())
        prompts.append(prefix)
        used.append(index)
        if len(prompts) == count:
            break
    return prompts, used


def label_pairs(
    prompt: str, completions: list[str], rewards: list[float], threshold: float, limit: int
) -> list[dict[str, Any]]:
    """Every (better, worse) pair of distinct, non-empty completions whose reward gap exceeds
    ``threshold``, largest gaps first, at most ``limit``."""
    candidates = [(c, r) for c, r in zip(completions, rewards, strict=True) if c.strip()]
    pairs = []
    for i, (chosen, r_chosen) in enumerate(candidates):
        for rejected, r_rejected in candidates[i + 1 :] + candidates[:i]:
            if r_chosen - r_rejected > threshold and chosen != rejected:
                pairs.append(
                    {
                        "prompt": prompt,
                        "chosen": chosen,
                        "rejected": rejected,
                        "chosen_reward": r_chosen,
                        "rejected_reward": r_rejected,
                    }
                )
    pairs.sort(key=lambda p: -(p["chosen_reward"] - p["rejected_reward"]))
    return pairs[:limit]


def run_demo(
    profile_name: str = "quick",
    output_dir: str | Path = "demo_output",
    seed: int = 0,
    echo: Callable[[str], None] = print,
    model_dir: str | Path | None = None,
    sentences: list[tuple[str, float]] | None = None,
) -> dict[str, Any]:
    """Run the experiment; returns (and writes) results.json's content."""
    profile = profile_name if isinstance(profile_name, Profile) else PROFILES[profile_name]
    profile_name = profile_name if isinstance(profile_name, str) else "custom"
    start = time.perf_counter()
    check_plotting()  # its figures come last: a missing matplotlib said before the runs
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    # 1-2. assets and prompts ----------------------------------------------------------------
    model_dir = Path(model_dir) if model_dir else smollm2_dir()
    sentences = sentences if sentences is not None else rotten_tomatoes()
    prompts = _prompts_and_judge(sentences, profile, rng, seed, echo)

    # 3. preference pairs sampled from the reference and labelled by VADER -------------------
    sampled = _reference_pairs(model_dir, prompts, profile, seed, out, echo)

    # 4-5. methods ----------------------------------------------------------------------------
    data_dir = out / "data"
    write_jsonl(data_dir / "train_prompts.jsonl", [{"prompt": p} for p in prompts.train])
    experiment = Experiment(
        model_dir=model_dir,
        out=out,
        pairs_file=data_dir / "pairs.jsonl",
        train_prompts_file=data_dir / "train_prompts.jsonl",
        heldout_file=data_dir / "heldout_prompts.jsonl",
        train_prompts=prompts.train,
        heldout=prompts.heldout,
        judge=prompts.judge,
        profile=profile,
        seed=seed,
        echo=echo,
        pairs=sampled.pairs,
        reference_samples=sampled.train_samples,
    )
    setup_seconds = round(time.perf_counter() - start, 1)
    runs = [run_method(method, experiment) for method in profile.methods]
    curves = [(run["slug"], read_metrics(out / "runs" / run["slug"])) for run in runs]
    reward_model = _reward_model(runs, out, prompts.heldout, sampled.heldout_samples, profile)

    # 6. outputs ------------------------------------------------------------------------------
    judge = prompts.judge
    used = prompts.used
    results = {
        "profile": profile_name,
        "seed": seed,
        "reward_fn": "VADER compound",
        "judge": "ridge on hashed n-grams, fitted to human ratings",
        "judge_correlation": judge.correlation(
            [sentences[i][0] for i in used], [sentences[i][1] for i in used]
        ),
        "pairs": sampled.pairs,
        "reference": sampled.reference_point,
        "runs": runs,
        **({"reward_model": reward_model} if reward_model is not None else {}),
        "setup_seconds": setup_seconds,
        "seconds": round(time.perf_counter() - start, 1),
    }
    _write_outputs(out, results, curves, prompts, sampled)
    echo(f"[demo] done in {results['seconds']:.0f} s: {out}/README.md, frontier.png, curves.png")
    return results


@dataclass(frozen=True)
class _Prompts:
    """The train and held-out prompts, the sentences they come from (``used``), and the judge
    fitted on the others."""

    train: list[str]
    heldout: list[str]
    used: list[int]
    judge: Judge


def _prompts_and_judge(
    sentences: list[tuple[str, float]],
    profile: Profile,
    rng: random.Random,
    seed: int,
    echo: Callable[[str], None],
) -> _Prompts:
    prompts, used = make_prompts(sentences, profile.train_prompts + profile.heldout_prompts, rng)
    train_prompts = prompts[: profile.train_prompts]
    heldout = prompts[profile.train_prompts :]
    prompt_sources = set(used)  # the judge never sees the sentences prompts come from
    judge_rows = [s for i, s in enumerate(sentences) if i not in prompt_sources]
    judge = Judge([t for t, _ in judge_rows], [r for _, r in judge_rows], seed)
    echo(
        f"[demo] {len(train_prompts)} train / {len(heldout)} held-out prompts; judge fitted on "
        f"{len(judge_rows)} human-rated sentences"
    )
    return _Prompts(train_prompts, heldout, used, judge)


@dataclass(frozen=True)
class _ReferenceSamples:
    """What the reference sampled: the pairs written (their count), its samples of the train
    prompts (their count) and of the held-out ones, and its own point (KL 0)."""

    pairs: int
    train_samples: int
    heldout_samples: list[Any]
    reference_point: dict[str, float]


def _reference_pairs(
    model_dir: Path,
    prompts: _Prompts,
    profile: Profile,
    seed: int,
    out: Path,
    echo: Callable[[str], None],
) -> _ReferenceSamples:
    """Pairs of the reference's samples labelled by VADER (data/pairs.jsonl, with the held-out
    prompts), and the reference's own point from its samples of the held-out prompts."""
    train_prompts, heldout = prompts.train, prompts.heldout
    tokenizer = load_tokenizer(str(model_dir))
    reference = load_causal_lm(str(model_dir), "float32", trainable=False)
    echo(f"[demo] sampling {profile.samples_per_prompt} completions per train prompt")
    samples = sample_completions(
        reference,
        tokenizer,
        train_prompts,
        num_samples=profile.samples_per_prompt,
        max_new_tokens=profile.completion_tokens,
        seed=seed,
        batch_size=16,
        progress=True,
    )
    pairs = []
    for index, prompt in enumerate(train_prompts):
        texts = [s.text for s in samples if s.prompt_index == index]
        rewards = vader_reward([prompt] * len(texts), texts)
        pairs += label_pairs(
            prompt, texts, rewards, profile.gap_threshold, profile.max_pairs_per_prompt
        )
    data_dir = out / "data"
    data_dir.mkdir(exist_ok=True)
    write_jsonl(data_dir / "pairs.jsonl", pairs)
    write_jsonl(data_dir / "heldout_prompts.jsonl", [{"prompt": p} for p in heldout])
    echo(f"[demo] {len(pairs)} preference pairs (reward gap > {profile.gap_threshold})")

    # the reference's own point: KL 0 by definition
    reference_samples = sample_completions(
        reference,
        tokenizer,
        heldout,
        num_samples=profile.eval_samples,
        max_new_tokens=profile.completion_tokens,
        seed=seed + 1,
        batch_size=16,
    )
    ref_texts = [s.text for s in reference_samples]
    ref_prompts = [heldout[s.prompt_index] for s in reference_samples]
    judge = prompts.judge
    reference_point = {
        "reward": _mean(vader_reward(ref_prompts, ref_texts)),
        "judge": _mean(judge.score([p + t for p, t in zip(ref_prompts, ref_texts, strict=True)])),
    }
    del reference
    echo(
        f"[demo] reference: reward {reference_point['reward']:.3f}, judge "
        f"{reference_point['judge']:.3f}"
    )
    return _ReferenceSamples(len(pairs), len(samples), reference_samples, reference_point)


def _reward_model(
    runs: list[dict[str, Any]],
    out: Path,
    heldout: list[str],
    reference_samples: list[Any],
    profile: Profile,
) -> dict[str, Any] | None:
    """RLHF's reward model, measured on held-out pairs; None without an RLHF run."""
    rlhf = next((run for run in runs if run["method"] == "RLHF"), None)
    if rlhf is None:
        return None
    heldout_pairs = _heldout_pairs(heldout, reference_samples, profile)
    reward_model = reward_model_accuracy(out / "runs" / rlhf["slug"], heldout_pairs)
    reward_model["heldout_pairs"] = len(heldout_pairs)
    return reward_model


def _write_outputs(
    out: Path,
    results: dict[str, Any],
    curves: list[tuple[str, Any]],
    prompts: _Prompts,
    sampled: _ReferenceSamples,
) -> None:
    """results.json, the plots, the samples and README.md; the weights of all but the best DPO
    run dropped."""
    (out / "results.json").write_text(json.dumps(results, indent=2))
    plot_frontier(results, out / "frontier.png")
    plot_curves(curves, out / "curves.png")
    runs = results["runs"]
    best_dpo = _best_run(runs, "DPO")
    _write_samples(out, prompts.heldout, sampled.heldout_samples, best_dpo, prompts.judge)
    (out / "README.md").write_text(_summary(results, best_dpo))
    _drop_weights_except(out / "runs", best_dpo)


def _heldout_pairs(
    heldout: list[str], reference_samples: list[Any], profile: Profile
) -> list[dict[str, Any]]:
    """Pairs on held-out prompts (the reference's evaluation samples, labelled by VADER): what
    the learned reward model's accuracy is measured on."""
    pairs = []
    for index, prompt in enumerate(heldout):
        texts = [s.text for s in reference_samples if s.prompt_index == index]
        rewards = vader_reward([prompt] * len(texts), texts)
        pairs += label_pairs(prompt, texts, rewards, profile.gap_threshold, 1)
    return pairs


def _mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)


def _best_run(runs: list[dict[str, Any]], method: str) -> dict[str, Any] | None:
    candidates = [r for r in runs if r["method"] == method and r["points"]]
    return max(candidates, key=lambda r: max(p["reward"] for p in r["points"]), default=None)


def _write_samples(
    out: Path,
    heldout: list[str],
    reference_samples: list[Any],
    best: dict[str, Any] | None,
    judge: Judge,
) -> None:
    lines = [
        "# Held-out samples",
        "",
        "Reference vs the best DPO run at its last evaluation; VADER / judge scores in brackets.",
        "",
    ]
    dpo: dict[str, list[dict[str, Any]]] = {}
    if best is not None:
        step = best["points"][-1]["step"]
        path = out / "runs" / best["slug"] / "samples" / f"step-{step}.jsonl"
        for record in map(json.loads, path.read_text().splitlines()):
            dpo.setdefault(record["prompt"], []).append(record)
    for index, prompt in enumerate(heldout[:16]):
        lines.append(f"**{prompt}**")
        for sample in [s for s in reference_samples if s.prompt_index == index][:1]:
            text = prompt + sample.text
            lines.append(
                f"- reference: …{sample.text.strip()} "
                f"[{vader_reward([prompt], [sample.text])[0]:+.2f} / "
                f"{judge.score([text])[0]:+.2f}]"
            )
        for record in dpo.get(prompt, [])[:1]:
            lines.append(
                f"- DPO: …{record['completion'].strip()} [{record['reward']:+.2f} / "
                f"{judge.score([prompt + record['completion']])[0]:+.2f}]"
            )
        lines.append("")
    (out / "samples.md").write_text("\n".join(lines))


def _summary(results: dict[str, Any], best: dict[str, Any] | None) -> str:
    ref = results["reference"]
    lines = [
        "# DPO controlled-sentiment demo",
        "",
        f"Profile `{results['profile']}`, seed {results['seed']}, {results['pairs']} "
        f"preference pairs, {results['seconds']:.0f} s ({results['setup_seconds']:.0f} s of "
        "them for assets, prompts, the reference's samples and its own point).",
        "",
        f"The reference (SmolLM2-135M-Instruct) scores {ref['reward']:+.3f} mean VADER "
        f"reward on held-out prompts ({ref['judge']:+.3f} by the second judge, a model of "
        f"human ratings with correlation {results['judge_correlation']:.2f}).",
        "",
    ]
    for run in results["runs"]:
        top = max(run["points"], key=lambda p: p["reward"])
        label = _label(run)
        lines.append(
            f"- {label}: best reward {top['reward']:+.3f} "
            f"({top['reward'] - ref['reward']:+.3f} vs reference) at KL "
            f"{top['kl']:.2f} nats, step {top['step']}; judge {top['judge']:+.3f} "
            f"({top['judge'] - ref['judge']:+.3f})."
        )
    if best is not None:
        top = max(best["points"], key=lambda p: p["reward"])
        same_way = (top["judge"] - ref["judge"]) * (top["reward"] - ref["reward"]) > 0
        lines += [
            "",
            f"DPO raised the ground-truth reward by {top['reward'] - ref['reward']:+.3f}"
            f"; the judge that training never saw moved "
            f"{'the same way' if same_way else 'the other way'} "
            f"({top['judge'] - ref['judge']:+.3f}), so the gain is "
            f"{'real sentiment, not only VADER-lexicon gaming' if same_way else 'suspect'}.",
        ]
    lines += ["", *_equal_kl_table(results), "", *_cost_table(results)]
    if "reward_model" in results:
        model = results["reward_model"]
        lines += [
            "",
            f"RLHF's reward model (TRL RewardTrainer on the train pairs): held-out pair accuracy "
            f"{model['heldout_pair_accuracy']:.2f} on {model['heldout_pairs']} pairs, "
            f"correlation with VADER {model['correlation_with_vader']:.2f}.",
        ]
    lines += [
        "",
        "`frontier.png`: reward against KL(π‖π_ref), as in the DPO paper's Figure 2 "
        "(left). `curves.png`: training loss, margins and accuracies. `samples.md`: "
        "held-out completions. `results.json`: every number above.",
        "",
    ]
    return "\n".join(lines)


def _label(run: dict[str, Any]) -> str:
    if run["method"].startswith("RL"):
        return f"{run['method']} (lr={run['learning_rate']:g})"
    return run["method"] + (f" (β={run['beta']})" if run["beta"] is not None else "")


def reward_at(points: list[dict[str, Any]], reference: float, kl: float) -> float | None:
    """A method's reward at a given KL, linear between its measured points (None past them)."""
    curve = [(0.0, reference), *sorted((p["kl"], p["reward"]) for p in points)]
    for (k0, r0), (k1, r1) in zip(curve, curve[1:], strict=False):
        if k0 <= kl <= k1:
            return r0 + (r1 - r0) * (kl - k0) / (k1 - k0) if k1 > k0 else max(r0, r1)
    return None


def _equal_kl_table(results: dict[str, Any]) -> list[str]:
    """Reward of every method at the same KL: where each wins or loses, not only its best."""
    runs, reference = results["runs"], results["reference"]["reward"]
    farthest = max(max(p["kl"] for p in run["points"]) for run in runs)
    grid = [k for k in (1, 2, 3, 5, 8, 10, 15, 20, 30, 50) if k <= farthest] or [farthest]
    grid = grid[:: max(1, len(grid) // 5)][:6]
    header = "| method | " + " | ".join(f"reward at KL {k:g}" for k in grid) + " |"
    lines = ["At equal KL (nats; linear between measured points; — past a method's reach):", "",
             header,
             "|---|" + "---|" * len(grid)]  # fmt: skip
    for run in runs:
        values = [reward_at(run["points"], reference, k) for k in grid]
        shown = ["—" if v is None else f"{v:+.3f}" for v in values]
        lines.append(f"| {_label(run)} | " + " | ".join(shown) + " |")
    return lines


def _cost_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "Cost (this machine; peak memory of the whole process while the method ran):",
        "",
        "| method | seconds | peak memory MB | models in memory | samples generated |",
        "|---|---|---|---|---|",
    ]
    for run in results["runs"]:
        cost = run["cost"]
        lines.append(
            f"| {_label(run)} | {cost['seconds']:.0f} | {cost['peak_rss_mb']:.0f} | "
            f"{cost['models_in_memory']} | {cost['samples_generated']} |"
        )
    return lines


def _drop_weights_except(runs_dir: Path, keep: dict[str, Any] | None) -> None:
    """Keep the best DPO model; the others' weights (0.5 GB each) are not needed for the report."""
    for run_dir in runs_dir.iterdir():
        if keep is not None and run_dir.name == keep["slug"]:
            continue
        for weights in run_dir.rglob("*.safetensors"):
            weights.unlink()
        shutil.rmtree(run_dir / "runs", ignore_errors=True)
