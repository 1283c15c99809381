"""directpo vs TRL's DPOTrainer: same model, data, batch, steps, dtype and learning rate.

    python bench/vs_trl.py                       # tiny random model and SmolLM2-135M, both sets
    python bench/vs_trl.py --models tiny --steps 8

Each (framework, model, data set) runs in its own subprocess, so peak memory (RSS on CPU,
max allocated on CUDA) is its own. Data is generated with a fixed seed: a long-prompt set
(prompt ~3x the completion, as in Anthropic HH) and a short-prompt set. Prints one table with
pairs/s, tokens/s, peak memory, final loss, and the directpo/TRL ratios, all from this run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "film",
    "story",
    "actor",
    "scene",
    "great",
    "dull",
    "plot",
    "music",
    "light",
    "dark",
    "long",
    "short",
    "funny",
    "moving",
    "cast",
    "script",
    "camera",
    "ending",
    "start",
    "character",
    "moment",
    "screen",
    "drama",
    "comedy",
    "director",
    "writer",
    "frame",
    "color",
    "sound",
    "voice",
    "heart",
    "mind",
]
SETS = {"long-prompt": (96, 32), "short-prompt": (16, 48)}  # words: prompt, completion


def make_data(path: Path, prompt_words: int, completion_words: int, pairs: int, seed: int) -> None:
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " " + " ".join(rng.choice(WORDS) for _ in range(n))

    with path.open("w") as handle:
        for _ in range(pairs):
            row = {
                "prompt": text(prompt_words).strip(),
                "chosen": text(completion_words),
                "rejected": text(completion_words),
            }
            handle.write(json.dumps(row) + "\n")


def peak_memory_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(args: argparse.Namespace) -> dict[str, float]:
    import torch

    dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    common = dict(
        per_device_train_batch_size=args.batch,
        max_steps=args.steps,
        learning_rate=1e-5,
        beta=0.1,
        gradient_checkpointing=args.gradient_checkpointing == "true",
        max_length=4096,  # no truncation: both frameworks see whole sequences
    )
    if args.framework == "directpo":
        from directpo.config import DPOConfig
        from directpo.trainer import train

        config = DPOConfig(
            model_name_or_path=args.model,
            train_file=args.data,
            output_dir=args.out,
            report_to=["none"],
            logging_steps=1,
            save_steps=0,
            dtype=dtype,
            max_prompt_length=3072,
            **{**common, **json.loads(args.directpo_options or "{}")},
        )
        result = train(config, echo=lambda _: None)
        rows = [r for r in result.metrics if "loss" in r]
        seconds = sum(args.batch / r["pairs/s"] for r in rows)  # the loop's own time
        tokens = sum(r["tokens/s"] * args.batch / r["pairs/s"] for r in rows)
        return {
            "seconds": seconds,
            "tokens": tokens,
            "loss": rows[-1]["loss"],
            "memory_mb": peak_memory_mb(),
            "params": sum(p.numel() for p in result.policy.parameters()),
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        }
    import datasets
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    rows = [json.loads(line) for line in Path(args.data).read_text().splitlines()]
    config = trl.DPOConfig(
        output_dir=args.out,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        bf16=dtype == "bfloat16",
        use_cpu=not torch.cuda.is_available(),
        **common,
    )
    trainer = trl.DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(args.model, dtype=torch_dtype),
        ref_model=AutoModelForCausalLM.from_pretrained(args.model, dtype=torch_dtype),
        args=config,
        train_dataset=datasets.Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(args.model),
    )
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "seconds": seconds,
        "tokens": float("nan"),
        "loss": losses[-1],
        "memory_mb": peak_memory_mb(),
    }


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import save_tiny_model

    return save_tiny_model("llama", folder)


def qwen2_05b_random(folder: Path) -> Path:
    """A random-initialised model of Qwen2-0.5B's shape (494M parameters) with the tests'
    byte-level tokenizer: the GPU benchmark needs the shape, not the weights."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny import build_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer("gpt2")
    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--scale", type=int, default=1, help="multiply the sets' lengths")
    parser.add_argument(
        "--gradient_checkpointing",
        default="true",
        choices=("true", "false"),
        help="the same for both (TRL's default is true)",
    )
    parser.add_argument(
        "--directpo_options",
        default="",
        help='JSON of directpo options for an ablation, e.g. \'{"prefix_sharing": false}\'',
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("framework", "model", "data", "out"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="directpo-bench-"))
    models = {}
    for name in args.models.split(","):
        if name == "tiny":
            models[name] = tiny_model(work / "tiny")
        elif name == "qwen2-0.5b-random":
            models[name] = qwen2_05b_random(work / "qwen")
        elif name == "smollm2":
            from directpo.demo.assets import smollm2_dir

            models[name] = smollm2_dir()
    table, mfu = [], []
    for model_name, model in models.items():
        for set_name, (prompt_words, completion_words) in SETS.items():
            data = work / f"{set_name}.jsonl"
            make_data(
                data,
                prompt_words * args.scale,
                completion_words * args.scale,
                args.batch * args.steps,
                seed=0,
            )
            result = {}
            for framework in ("directpo", "trl"):
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    "--framework",
                    framework,
                    "--model",
                    str(model),
                    "--data",
                    str(data),
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--gradient_checkpointing",
                    args.gradient_checkpointing,
                    "--directpo_options",
                    args.directpo_options,
                    "--out",
                    str(work / f"{framework}-{model_name}-{set_name}"),
                ]
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                )
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(
                        f"{framework} failed on {model_name}/{set_name}:\n{done.stderr[-3000:]}"
                    )
                result[framework] = json.loads(line[len("RESULT ") :])
            ours, theirs = result["directpo"], result["trl"]
            pairs = args.batch * args.steps
            tokens = ours["tokens"]  # the same pairs: directpo counts their real tokens
            mfu.append(
                (
                    model_name,
                    set_name,
                    ours["device"],
                    8 * ours["params"] * tokens / ours["seconds"],
                )
            )
            table.append(
                (
                    model_name,
                    set_name,
                    pairs / ours["seconds"],
                    pairs / theirs["seconds"],
                    tokens / ours["seconds"],
                    tokens / theirs["seconds"],
                    ours["memory_mb"],
                    theirs["memory_mb"],
                    ours["loss"],
                    theirs["loss"],
                )
            )
    header = (
        "model",
        "data",
        "pairs/s dpo",
        "pairs/s trl",
        "ratio",
        "tok/s dpo",
        "tok/s trl",
        "peak MB dpo",
        "peak MB trl",
        "ratio",
        "loss dpo",
        "loss trl",
    )
    print(" | ".join(header))
    for model_name, set_name, p_ours, p_trl, t_ours, t_trl, m_ours, m_trl, l_ours, l_trl in table:
        print(
            f"{model_name} | {set_name} | {p_ours:.2f} | {p_trl:.2f} | {p_ours / p_trl:.2f}x"
            f" | {t_ours:.0f} | {t_trl:.0f} | {m_ours:.0f} | {m_trl:.0f} | "
            f"{m_ours / m_trl:.2f}x | {l_ours:.4f} | {l_trl:.4f}"
        )

    report_mfu(mfu)


def report_mfu(rows: list[tuple[str, str, str, float]]) -> None:
    """Model-FLOPs utilisation of directpo: 8·N·tokens per second (policy forward + backward
    6·N·T, reference forward 2·N·T) over the GPU's dense bf16 peak."""
    peak = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
    for model_name, set_name, device, achieved in rows:
        flops = next((v for k, v in peak.items() if k in device), None)
        share = f" = {achieved / flops:.1%} MFU" if flops else ""
        print(
            f"directpo {model_name} {set_name} on {device}: {achieved / 1e12:.2f} model "
            f"TFLOP/s{share}"
        )


if __name__ == "__main__":
    main()
