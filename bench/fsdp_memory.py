"""Host memory per process of FSDP2 training by world size (docs/distributed.md).

A randomly initialised model of Qwen2.5-0.5B's shape (494M parameters, tied embeddings, saved
once in float32: a 2 GB safetensors file) is trained for 2 steps by ``directpo train`` under
torchrun with 1, 2 and 4 processes on the CPU (gloo), full fine-tuning with its frozen
reference, as a user's ``distributed: fsdp`` run. Every process reports its peak resident memory
(``ru_maxrss``); the table gives the largest per world size, its ratio to 1 process, the load
time (meta-device build + each rank filling its shards) and the whole run's time.

``--loading`` also times the two ways of filling the shards of the meta-built, sharded policy:
each rank reading its own slices of the safetensors files (``HuggingFaceStorageReader``, what
directpo does) against rank 0 reading the whole file and scattering it
(``set_model_state_dict(..., broadcast_from_rank0=True)``).

    python bench/fsdp_memory.py                     # 1, 2, 4 processes (~10 min on 2 cores)
    python bench/fsdp_memory.py --worlds 1 2 --loading
    python bench/fsdp_memory.py --device cuda --worlds 1   # one GPU (FSDP_MEMORY=1 bench/gpu.sh)

The model folder is cached in ``--work`` (default /tmp/directpo-fsdp-memory).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = dict(
    vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
    num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
    tie_word_embeddings=True,
)  # fmt: skip
PAIRS = [
    {"prompt": f"Review {i}: the film was", "chosen": " moving and funny.", "rejected": " dull."}
    for i in range(16)
]


def build_model(folder: Path) -> Path:
    """The random 0.5B model with the tests' byte-level tokenizer, saved once."""
    if (folder / "config.json").is_file():
        return folder
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny import build_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer("gpt2")
    config = Qwen2Config(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **SHAPE
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(processes: int, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}"]
    command += [f"--master_port={free_port()}", __file__, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def report(results: Path, **values: float) -> None:
    rank = int(os.environ.get("RANK", "0"))
    (results / f"rank{rank}.json").write_text(json.dumps({"rank": rank, **values}))


# -- workers (run under torchrun) -------------------------------------------------------------


def train_worker(config_file: str, results: str) -> None:
    from directpo.cli import main

    start = time.perf_counter()
    code = main(["train", config_file])
    report(Path(results), peak_gib=peak_rss_gib(), seconds=time.perf_counter() - start)
    sys.exit(code or 0)


def load_worker(model: str, results: str, how: str) -> None:
    """Meta-build and shard the policy as a run does, then fill the shards ``how``."""
    import torch
    import torch.distributed as dist

    from directpo.distributed import materialize, setup, teardown, wrap
    from directpo.logprobs import SequenceScorer
    from directpo.model_preparation import LoadOptions
    from directpo.models import load_causal_lm
    from directpo.precision import PrecisionPolicy

    world = setup("fsdp")
    policy = load_causal_lm(model, "float32", trainable=True, options=LoadOptions(meta=True))
    scorer = wrap(SequenceScorer(policy), world, PrecisionPolicy())
    dist.barrier()
    start = time.perf_counter()
    if how == "slices":
        assert materialize(scorer, world.device)
    else:  # rank 0 reads the whole file and scatters each tensor's shards
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
        )

        scorer.to_empty(device=world.device)
        whole = {}
        if world.is_main:
            for file in sorted(Path(model).glob("*.safetensors")):
                whole |= {f"model.{k}": v for k, v in load_file(file).items()}
            whole["model.lm_head.weight"] = whole["model.model.embed_tokens.weight"]
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
        set_model_state_dict(scorer, whole, options=options)
        del whole
    dist.barrier()
    seconds = time.perf_counter() - start
    probe = next(scorer.parameters()).to_local().float().sum()  # the same on either path
    report(Path(results), peak_gib=peak_rss_gib(), seconds=seconds, probe=float(probe))
    dist.barrier()  # no rank tears the group down while another still works
    teardown(world)
    del torch


# -- driver -----------------------------------------------------------------------------------


def train_config(model: Path, work: Path, processes: int, device: str) -> Path:
    import yaml

    data = work / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in PAIRS))
    config = {
        "model_name_or_path": str(model),
        "train_file": str(data),
        "output_dir": str(work / f"run-{processes}"),
        "overwrite_output_dir": True,
        "distributed": "fsdp",
        "per_device_train_batch_size": 4 // processes,
        "max_steps": 2,
        "save_steps": 0,
        "logging_steps": 1,
        "learning_rate": 1e-6,
        "report_to": ["none"],
        "dtype": "bfloat16" if device == "cuda" else "float32",
    }
    path = work / f"config-{processes}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def gather(results: Path) -> list[dict]:
    rows = [json.loads(p.read_text()) for p in sorted(results.glob("rank*.json"))]
    for p in results.glob("rank*.json"):
        p.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--loading", action="store_true", help="also time slices vs scatter")
    parser.add_argument("--work", type=Path, default=Path("/tmp/directpo-fsdp-memory"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="gloo or nccl")
    parser.add_argument("--out", type=Path, help="append the rows as JSON lines here")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        # said before the 2 GB model is built, in one line: torchrun's workers otherwise failed
        # each with its own traceback, deep in the process group's setup
        gpus = torch.cuda.device_count()
        if max(args.worlds) > gpus:
            sys.exit(
                f"fsdp_memory.py --device cuda --worlds {' '.join(map(str, args.worlds))}: "
                f"needs a CUDA device per process, and this machine has {gpus}"
            )
    args.work.mkdir(parents=True, exist_ok=True)
    model = build_model(args.work / "qwen2.5-0.5b-shape")
    results = args.work / "results"
    results.mkdir(exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(args.worlds)))
    rows = []
    print(f"model: {model} (Qwen2.5-0.5B shape, float32 file), 2 steps, global batch 4 pairs")
    print("| processes | peak RSS per process (GiB) | vs 1 process | load (s) | run (s) |")
    print("|---|---|---|---|---|")
    base = None
    for processes in args.worlds:
        config = train_config(model, args.work, processes, args.device)
        done = launch(processes, ["--worker", "train", str(config), str(results)], env)
        if done.returncode != 0:
            sys.exit(f"{processes} processes failed:\n{done.stderr[-3000:]}")
        ranks = gather(results)
        peak = max(r["peak_gib"] for r in ranks)
        load = re.search(r"model_name_or_path .* filled shard by shard \(([\d.]+) s\)", done.stdout)
        if load is None:
            sys.exit(f"{processes} processes: the policy was not meta-loaded:\n{done.stdout}")
        base = base or peak
        row = dict(
            processes=processes, peak_gib=round(peak, 2), ratio=round(peak / base, 3),
            load_s=float(load.group(1)), run_s=round(max(r["seconds"] for r in ranks), 1),
        )  # fmt: skip
        rows.append(row)
        print(
            f"| {processes} | {row['peak_gib']:.2f} | {row['ratio']:.2f}x | {row['load_s']:.1f} "
            f"| {row['run_s']:.0f} |",
            flush=True,
        )
    if args.loading:
        print("\n| processes | fill the shards | time (s) | peak RSS per process (GiB) |")
        print("|---|---|---|---|")
        for processes in [w for w in args.worlds if w > 1]:
            probes = {}
            for how in ("slices", "scatter"):
                worker = ["--worker", "load", str(model), str(results), how]
                done = launch(processes, worker, env)
                if done.returncode != 0:
                    sys.exit(f"loading ({how}) failed:\n{done.stderr[-3000:]}")
                ranks = gather(results)
                probes[how] = [r["probe"] for r in sorted(ranks, key=lambda r: r["rank"])]
                seconds = max(r["seconds"] for r in ranks)
                peak = max(r["peak_gib"] for r in ranks)
                rows.append(dict(processes=processes, fill=how, load_s=seconds, peak_gib=peak))
                label = "each rank reads its slices" if how == "slices" else "rank 0 scatters"
                print(f"| {processes} | {label} | {seconds:.1f} | {peak:.2f} |", flush=True)
            if probes["slices"] != probes["scatter"]:
                sys.exit(f"the two loads differ: {probes}")
    if args.out:
        with args.out.open("a") as file:
            for row in rows:
                file.write(
                    json.dumps({"bench": "fsdp_memory", "device": args.device, **row}) + "\n"
                )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        train_worker(*rest) if kind == "train" else load_worker(*rest)
    else:
        main()
