"""directpo vs TRL's DPOTrainer, step by step: the same recipe's logged curves, compared.

    python bench/trl_curves.py                          # SmolLM2-135M-Instruct, LoRA r 8
    python bench/trl_curves.py --recipe full --steps 8  # full fine-tune
    python bench/trl_curves.py --recipe lora-sft        # loss_type [sigmoid, sft], weights
    python bench/trl_curves.py --recipe lora-truncate   # max_length cutting some completions
    python bench/trl_curves.py --recipe full-bf16 --steps 4  # full fine-tune, float32 and bf16

Each side trains in its own process (``--side``) on 64 generated chat pairs (prompt, chosen,
rejected as messages; 16 more held out), batch 2 x 2 accumulation, warmup + cosine, clipping,
eval every 4 steps, float32 on the CPU, from the same seed. Prints each logged step's values
side by side with the largest relative difference per metric, and exits 1 where a metric
differs beyond ``--tolerance`` (relative, or absolute below 1e-3). ``logits/*``, ``entropy``
and ``mean_token_accuracy`` are token means over the step here and means of micro-batch means
in TRL (docs/design.md), and TRL's ``num_tokens`` also counts the newline a ChatML template
writes after the end of a turn, which directpo does not train (docs/design.md): these are printed
but not held to the tolerance. Not part of the suite.

``full-bf16`` runs the full fine-tune four times: both sides in float32 (held to
``--tolerance``), then both in bf16 (TRL: ``bf16: true``, autocast over float32 weights;
directpo: ``bf16: true``, a bf16 compute copy of float32 masters). bf16 has no exact answer to
hold either side to, so its noise is measured: TRL's bf16 curve against TRL's float32 one, per
metric; directpo's bf16 curve is BEYOND where it is further from TRL's bf16 curve than
``--noise_factor`` times that noise.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's directpo, in each side's process
MODEL = "/root/.cache/directpo/models/SmolLM2-135M-Instruct"
# token means over the step here, means of micro-batch means in TRL (docs/design.md); num_tokens:
# TRL also trains the "\n" a ChatML template writes after <|im_end|> (docs/design.md)
BY_DESIGN = {f"{e}{k}" for e in ("", "eval_") for k in ("logits/chosen", "logits/rejected",
             "mean_token_accuracy", "entropy", "num_tokens")}  # fmt: skip
SHOWN = ("loss", "eval_loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
         "rewards/accuracies", "logps/chosen", "logps/rejected", "grad_norm", "learning_rate",
         "epoch", "num_tokens", "eval_rewards/margins", "eval_logps/chosen")  # fmt: skip

TOPICS = ["tea", "rivers", "chess", "bread", "owls", "trains", "rain", "maps", "glass", "bees",
          "salt", "kites", "clocks", "moss", "ink", "wolves"]  # fmt: skip
GOOD = ["explain it clearly and kindly", "give a short, correct answer with one example",
        "describe it step by step", "answer in plain words"]  # fmt: skip
BAD = ["refuse without reason", "answer something else entirely", "ramble",
       "say it is unknowable"]  # fmt: skip


def make_pairs(count: int, seed: int, long_prompts: bool = False) -> list[dict[str, Any]]:
    """``count`` chat pairs of varied lengths; ``long_prompts``: every fourth prompt is long
    (some of them fill a small max_length alone)."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        topic = rng.choice(TOPICS)
        question = f"Tell me about {topic}." + (" Please be precise." * rng.randint(0, 3))
        if long_prompts and i % 4 == 0:
            question += " Some context: " + " ".join(rng.choice(TOPICS) for _ in range(40 + i))
        good = f"Sure. {topic.capitalize()} are worth knowing: I {rng.choice(GOOD)}." + (
            " More detail follows." * rng.randint(0, 4)
        )
        bad = f"No. I {rng.choice(BAD)}." + (" Whatever." * rng.randint(0, 3))
        rows.append(
            {
                "prompt": [{"role": "user", "content": question}],
                "chosen": [{"role": "assistant", "content": good}],
                "rejected": [{"role": "assistant", "content": bad}],
            }
        )
    return rows


def recipe(name: str, steps: int) -> tuple[dict, dict, dict]:
    """(options both spell alike, TRL's own, directpo's own)."""
    shared: dict[str, Any] = dict(
        per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=steps,
        learning_rate=5e-4, lr_scheduler_type="cosine", warmup_steps=2, max_grad_norm=0.5,
        beta=0.1, logging_steps=1, eval_strategy="steps", eval_steps=4,
        per_device_eval_batch_size=4, seed=42, max_length=1024, loss_type=["sigmoid"],
    )  # fmt: skip
    theirs: dict[str, Any] = {"peft": 8}
    ours: dict[str, Any] = {"lora_r": 8, "lora_alpha": 16}
    if name in ("full", "full-bf16"):
        shared["learning_rate"] = 2e-5
        theirs, ours = {}, {}
    if name == "lora-sft":
        shared |= {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    if name == "lora-truncate":
        shared["max_length"] = 96
    return shared, theirs, ours


def run_trl(data: Path, shared: dict, theirs: dict, out: Path, bf16: bool) -> list[dict]:
    import datasets
    import torch
    import trl
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    read = lambda name: [json.loads(x) for x in (data / name).read_text().splitlines()]  # noqa: E731
    lora = theirs.get("peft")
    args = trl.DPOConfig(**trl_options(shared, out, bf16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = trl.DPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32),
            args=args,
            train_dataset=datasets.Dataset.from_list(read("train.jsonl")),
            eval_dataset=datasets.Dataset.from_list(read("eval.jsonl")),
            processing_class=AutoTokenizer.from_pretrained(MODEL),
            peft_config=LoraConfig(
                r=lora, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear"
            )
            if lora
            else None,
        )
        print(f"TRL keeps {len(trainer.train_dataset)} train pairs", file=sys.stderr)
        trainer.train()
    return trainer.state.log_history


def trl_options(shared: dict, out: Path, bf16: bool) -> dict[str, Any]:
    """trl.DPOConfig's keywords: the shared recipe on the CPU (bf16: autocast)."""
    return dict(
        output_dir=str(out), report_to="none", use_cpu=True, bf16=bf16, save_strategy="no",
        disable_tqdm=True, **shared,
    )  # fmt: skip


def directpo_config(data: Path, shared: dict, ours: dict, out: Path, bf16: bool) -> Any:
    """directpo's DPOConfig: the shared recipe and directpo's own (bf16: a bf16 compute copy
    over float32 masters)."""
    from directpo.config import DPOConfig

    return DPOConfig(
        model_name_or_path=MODEL, train_file=str(data / "train.jsonl"),
        eval_file=str(data / "eval.jsonl"), output_dir=str(out), overwrite_output_dir=True,
        report_to=["none"], save_steps=0, dtype="bfloat16" if bf16 else "float32", **shared,
        **ours,
    )  # fmt: skip


def run_directpo(data: Path, shared: dict, ours: dict, out: Path, bf16: bool) -> list[dict]:
    from directpo.trainer import train

    config = directpo_config(data, shared, ours, out, bf16)
    result = train(config, echo=lambda line: print(line, file=sys.stderr))
    # metrics.jsonl's eval/* are TRL's eval_* (trainer_state.json spells them so)
    return [{f"eval_{k[5:]}" if k.startswith("eval/") else k: v for k, v in row.items()}
            for row in result.metrics]  # fmt: skip


def merge_rows(rows: list[dict]) -> dict[int, dict]:
    """Logged rows by step (a training row and an eval row of one step: one dict)."""
    steps: dict[int, dict] = {}
    for row in rows:
        if "step" in row:
            steps.setdefault(int(row["step"]), {}).update(row)
    return steps


def difference(a: float, b: float) -> float:
    """Relative difference, absolute where both are below 1e-3."""
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 1e-3 else abs(a - b)


def largest_differences(ours: dict[int, dict], theirs: dict[int, dict]) -> dict[str, tuple]:
    """Per metric of ``theirs``: (the largest difference over the steps, its step)."""
    worst: dict[str, tuple[float, int]] = {}
    for step in sorted(set(theirs) & set(ours)):
        for key, value in theirs[step].items():
            mine = ours[step].get(key)
            if isinstance(value, (int, float)) and isinstance(mine, (int, float)):
                gap = difference(float(mine), float(value))
                if gap >= worst.get(key, (-1.0, 0))[0]:
                    worst[key] = (gap, step)
    return worst


def compare(
    ours: dict[int, dict], theirs: dict[int, dict], tolerance: float,
    bounds: dict[str, float] | None = None,
) -> int:  # fmt: skip
    """Print the table; the count of metrics beyond ``tolerance`` (or beyond their own
    ``bounds``, where larger: bf16's measured noise)."""
    worst = largest_differences(ours, theirs)
    missing = sorted(set(theirs) ^ set(ours))
    print(f"{'step':>4} " + " ".join(f"{k[-14:]:>15}" for k in SHOWN))
    for step in sorted(theirs):
        for side, rows in (("trl", theirs), ("dpo", ours)):
            cells = [rows.get(step, {}).get(k) for k in SHOWN]
            text = " ".join(f"{c:>15.7g}" if isinstance(c, (int, float)) else f"{'':>15}"
                            for c in cells)  # fmt: skip
            print(f"{step:>4} {side} {text}")
    bad = 0
    print("\nlargest difference per metric (relative; absolute below 1e-3):")
    for key, (gap, step) in sorted(worst.items()):
        bound = max(tolerance, (bounds or {}).get(key, 0.0))
        over = gap > bound and key not in BY_DESIGN
        bad += over
        note = " (by design)" if key in BY_DESIGN else (" BEYOND" if over else "")
        shown = f" (bound {bound:.1e})" if bounds else ""
        print(f"  {key:<28} {gap:.2e} at step {step}{shown}{note}")
    only = sorted({k for r in theirs.values() for k in r} - {k for r in ours.values() for k in r})
    if only:
        print(f"logged by TRL only: {only}")
    if missing:
        print(f"steps logged by one side only: {missing}")
    return bad + bool(missing)


def run_sides(recipe_name: str, steps: int, work: Path, sides: list[str]) -> dict[str, dict]:
    """Each side (``trl``, ``directpo``, ``trl-bf16``, ``directpo-bf16``) run in its own
    process on the pairs in ``work``: its logged rows by step."""
    for side in sides:
        subprocess.run(
            [sys.executable, __file__, "--recipe", recipe_name, "--steps", str(steps),
             "--side", side, "--work", str(work)],
            check=True,
        )  # fmt: skip
    return {side: merge_rows(json.loads((work / f"{side}.json").read_text())) for side in sides}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    recipes = ["lora", "full", "lora-sft", "lora-truncate", "full-bf16"]
    parser.add_argument("--recipe", default="lora", choices=recipes)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--noise_factor", type=float, default=3.0)
    parser.add_argument("--side", choices=["trl", "directpo", "trl-bf16", "directpo-bf16"],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    shared, theirs, ours = recipe(args.recipe, args.steps)
    if args.side:
        work = Path(args.work)
        trl_side = args.side.startswith("trl")
        runner = run_trl if trl_side else run_directpo
        rows = runner(work, shared, theirs if trl_side else ours, work / args.side,
                      args.side.endswith("bf16"))  # fmt: skip
        (work / f"{args.side}.json").write_text(json.dumps(rows, default=float))
        return
    bf16 = args.recipe == "full-bf16"
    sides = ["trl", "directpo"] + (["trl-bf16", "directpo-bf16"] if bf16 else [])
    with tempfile.TemporaryDirectory(prefix="trl_curves_") as folder:
        work = Path(folder)
        long_prompts = args.recipe == "lora-truncate"
        for name, rows in (("train", make_pairs(64, 0, long_prompts)), ("eval", make_pairs(16, 1))):
            (work / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        runs = run_sides(args.recipe, args.steps, work, sides)
    print(f"recipe {args.recipe}, {args.steps} steps, CPU float32")
    bad = compare(runs["directpo"], runs["trl"], args.tolerance)
    if bf16:
        # bf16's noise: how far TRL's own bf16 curve lies from its float32 one
        noise = largest_differences(runs["trl-bf16"], runs["trl"])
        print(f"\nbf16 noise: TRL bf16 against TRL float32, largest over {args.steps} steps")
        for key, (gap, step) in sorted(noise.items()):
            print(f"  {key:<28} {gap:.2e} at step {step}")
        print(f"\ndirectpo bf16 against TRL bf16 (bound: {args.noise_factor} x the noise)")
        bounds = {key: args.noise_factor * gap for key, (gap, _) in noise.items()}
        bad += compare(runs["directpo-bf16"], runs["trl-bf16"], 0.0, bounds)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
