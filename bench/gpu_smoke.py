"""GPU smoke check of the single-process trainer (run on a lent GPU; not part of the suite).

    PYTHONPATH=src:tests python bench/gpu_smoke.py

Trains the tiny Llama- and GPT-2-style test models on CUDA in float32 and bfloat16 (with and
without activation checkpointing) and prints, per run: first-step loss (must be ln 2), final
accuracy, final margin, peak memory and seconds.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl

from directpo.config import DPOConfig
from directpo.trainer import train


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    root = Path(tempfile.mkdtemp())
    data = write_jsonl(root / "pairs.jsonl", SENTIMENT_PAIRS)
    failures = 0
    for style in ("llama", "gpt2"):
        model = save_tiny_model(style, root / style)
        for dtype in ("float32", "bfloat16"):
            for checkpointing in (False, True):
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                config = DPOConfig(
                    model_name_or_path=str(model),
                    train_file=str(data),
                    output_dir=str(root / f"out-{style}-{dtype}-{checkpointing}"),
                    report_to=["none"],
                    logging_steps=1,
                    save_steps=20,
                    max_steps=40,
                    learning_rate=5e-3,
                    per_device_train_batch_size=3,
                    gradient_accumulation_steps=2,
                    dtype=dtype,
                    gradient_checkpointing=checkpointing,
                    eval_file=str(data),
                    eval_steps=20,
                )
                result = train(config, echo=lambda _: None)
                rows = [r for r in result.metrics if "loss" in r]
                first, last = rows[0], rows[-1]
                ok = (
                    abs(first["loss"] - math.log(2)) < (1e-5 if dtype == "float32" else 1e-2)
                    and last["rewards/accuracies"] == 1.0
                    and math.isfinite(last["loss"])
                )
                failures += not ok
                print(
                    f"{style:6s} {dtype:9s} ckpt={checkpointing!s:5s} first_loss="
                    f"{first['loss']:.6f} last_loss={last['loss']:.4f} "
                    f"acc={last['rewards/accuracies']:.2f} "
                    f"margin={last['rewards/margins']:.3f} "
                    f"peak_mem={torch.cuda.max_memory_allocated() / 2**20:.1f}MiB "
                    f"secs={time.perf_counter() - start:.1f} {'OK' if ok else 'FAIL'}"
                )
    print("GPU smoke:", "all OK" if not failures else f"{failures} FAILED")


if __name__ == "__main__":
    main()
