"""Tokenizing a chat file in 1 and in N processes (dataset_num_proc): wall time, same ids.

    python bench/tokenize_procs.py --rows 50000 --procs 2 [--repeats 2] [--tokenizer FOLDER]

Writes a synthetic UltraFeedback-like chat file (prompts of 1-3 user turns with the assistant
turns between, replies of 20-80 words, some unicode), reads it as a run does, tokenizes it with
the tokenizer's chat template in one process and then in ``--procs``, and prints both times and
whether every pair's ids are the same. The reading is timed apart (it is the same either way).
The two are run in turn ``--repeats`` times (the machine's load changes: compare neighbours).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's directpo

SMOLLM2 = Path.home() / ".cache" / "directpo" / "models" / "SmolLM2-135M-Instruct"
WORDS = [
    "the",
    "a",
    "model",
    "answer",
    "question",
    "river",
    "light",
    "café",
    "naïve",
    "data",
    "token",
    "reply",
    "test",
    "🙂",
    "plan",
]


def _text(draw: random.Random, low: int, high: int) -> str:
    return " ".join(draw.choice(WORDS) for _ in range(draw.randint(low, high)))


def write_chat(path: Path, rows: int, seed: int = 0) -> None:
    draw = random.Random(seed)
    with path.open("w", encoding="utf-8") as file:
        for _ in range(rows):
            prompt = []
            for turn in range(draw.randint(1, 3)):
                if turn:
                    prompt.append({"role": "assistant", "content": _text(draw, 10, 40)})
                prompt.append({"role": "user", "content": _text(draw, 8, 60)})
            row = {
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": _text(draw, 20, 80)}],
                "rejected": [{"role": "assistant", "content": _text(draw, 20, 80)}],
            }
            file.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--tokenizer", default=str(SMOLLM2))
    args = parser.parse_args()
    from transformers import AutoTokenizer

    from directpo.data import load_preferences
    from directpo.tokenization import tokenize_preferences

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chat.jsonl"
        write_chat(path, args.rows)
        start = time.perf_counter()
        data = load_preferences(str(path))
        print(f"read and checked {len(data)} rows: {time.perf_counter() - start:.1f} s")
    results = {}
    for procs in [1, args.procs] * args.repeats:
        start, cpu = time.perf_counter(), os.times()
        results[procs] = tokenize_preferences(data, tokenizer, 1024, num_proc=procs)
        used = os.times()
        wall = time.perf_counter() - start
        own = used.user - cpu.user + used.system - cpu.system
        workers = (
            used.children_user - cpu.children_user + used.children_system - cpu.children_system
        )
        print(
            f"{procs} process(es): {wall:.1f} s wall, CPU {own:.1f} s here + {workers:.1f} s in "
            "workers"
        )
    one, many = results[1].pairs, results[args.procs].pairs
    same = len(one) == len(many) and all(
        (a.prompt_ids, a.chosen_ids, a.rejected_ids) == (b.prompt_ids, b.chosen_ids, b.rejected_ids)
        for a, b in zip(one, many, strict=True)
    )
    print(f"same ids, same order: {same} ({len(one)} pairs)")


if __name__ == "__main__":
    main()
