"""directpo vs TRL's DPOTrainer: same model, data, batch, steps, precision and learning rate.

    python bench/vs_trl.py                       # CPU: tiny random model and SmolLM2-135M
    python bench/vs_trl.py --models tiny --steps 8
    python bench/vs_trl.py --plan gpu --models qwen2.5-0.5b-random,qwen2.5-1.5b-random
    python bench/vs_trl.py --models tiny-vlm --sets image-prompt   # a LLaVA-style VLM, images
    python bench/vs_trl.py --models smollm2 --sets long-prompt --scale 20 --batch 1 --steps 3 \
        --gradient_checkpointing false   # ~3k-token pairs: peak RSS at long sequences

Precision is the same policy on both sides: float32 on CPU; on CUDA mixed precision, float32
weights and optimizer state with bf16 compute (TRL: a float32 model with ``bf16=True``, its
default; directpo: ``dtype: bfloat16``, a bf16 compute copy over float32 masters). The frozen
reference is not: TRL's is a float32 model like its policy, directpo's is held in bf16 (2 bytes
a weight less: part of the peak-memory ratio on CUDA).

``--plan cpu`` (default): each (framework, model, data set) runs in its own subprocess, so peak
RSS is its own; directpo and TRL at their defaults, gradient checkpointing as ``--gradient_
checkpointing`` says for both. ``--plan gpu``: every run in this process (peak GPU memory is
reset between runs; on a CPU no per-run peak RSS there: n/a), in order of importance until
``--budget`` seconds are spent: per model and data set, directpo at its defaults and compiled,
TRL at its defaults (gradient checkpointing on), TRL tuned (checkpointing off; TRL 1.16's
``padding_free`` is disabled upstream); the first model and data set's ablations come right
after its main runs (first: "directpo no per-token stats", what TRL's per-token statistics cost
directpo's logging steps), before the other models'. Step times exclude the first ``--warmup``
steps (compilation, allocator warm-up). Prints pairs/s, peak memory, hardware MFU (FLOPs
executed, recomputation excluded, over 989 TFLOP/s) and TRL-equivalent MFU (the FLOPs TRL needs
for the same pairs), and the directpo/TRL ratios, all from this run; ``--out`` also writes them
as JSON lines. ``--check`` checks the options and runs nothing (bench/gpu.sh runs it first).
Both sides get max_length 4096; a pair longer than that stops the bench (``--scale``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# this checkout's directpo, in the parent and in each worker (its own process): an installed
# directpo of another checkout would otherwise be what the workers measure
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))  # workloads.py, also when imported from elsewhere
from workloads import (  # noqa: E402
    GPU_SETS,
    MAX_LENGTH,
    MODELS,
    SETS,
    build_model,
    check_lengths,
    make_data,
    pair_lengths,
    training_flops,
)

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


# -- one run ----------------------------------------------------------------------------------


@dataclass
class RunSpec:
    framework: str  # directpo | trl
    name: str  # what the table calls it
    model: str
    data: str
    out: str
    steps: int
    batch: int
    warmup: int
    gradient_checkpointing: bool
    options: dict[str, Any]  # directpo options / TRL DPOConfig fields


def peak_memory_mb(own_process: bool) -> float | None:
    """Peak memory of the run: CUDA's allocator peak (reset before each run), or on the CPU the
    process's peak RSS, which is the run's own only in a process of its own (the cpu plan's
    workers): in the gpu plan's one process it would be the largest of every run so far."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    if not own_process:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def memory_kind() -> str:
    import torch

    return "allocated" if torch.cuda.is_available() else "RSS"


@contextlib.contextmanager
def transformers_patches_undone(model: str | None = None) -> Iterator[None]:
    """Puts back every name a run rebinds in transformers' modeling modules. Liger's apply
    functions (use_liger_kernel, on either side) replace a model type's rotary function, RMSNorm
    and MLP classes module-wide, even when given one model: in the gpu plan's one process every
    later run of that model type, "defaults" included, trained with Liger's kernels. ``model``:
    its modeling module is imported first, so that it is among those saved."""
    if model is not None:
        import importlib

        from transformers import AutoConfig

        kind = AutoConfig.from_pretrained(model).model_type
        with contextlib.suppress(ImportError):
            importlib.import_module(f"transformers.models.{kind}.modeling_{kind}")
    modules = {
        name: module
        for name, module in list(sys.modules.items())
        if name.startswith("transformers.models.") and ".modeling_" in name and module
    }
    saved = {name: dict(vars(module)) for name, module in modules.items()}
    try:
        yield
    finally:
        for name, module in modules.items():
            namespace = vars(module)
            for key in [key for key in namespace if key not in saved[name]]:
                del namespace[key]
            for key, value in saved[name].items():
                if namespace.get(key) is not value:
                    namespace[key] = value


def run(spec: RunSpec, own_process: bool = True) -> dict[str, Any]:
    """Train ``spec`` and return its timing (post-warmup step seconds) and peak memory."""
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    # the allocator's peak counts what an earlier run of the gpu plan's one process still holds
    # (a leak would inflate every later row): said beside the peak, 0 when nothing was left
    held_before = torch.cuda.memory_allocated() / 2**20 if cuda else None
    common = shared_options(spec)
    with transformers_patches_undone(spec.model):
        if spec.framework == "directpo":
            step_seconds, extra = _run_directpo(spec, common, cuda)
        else:
            step_seconds, extra = _run_trl(spec, common, cuda)
    measured = step_seconds[spec.warmup :] or step_seconds
    return {
        "name": spec.name,
        "framework": spec.framework,
        "step_seconds": step_seconds,
        "seconds_per_step": statistics.median(measured),
        "pairs_per_second": spec.batch / statistics.median(measured),
        "memory_mb": peak_memory_mb(own_process),
        "memory": memory_kind(),
        "memory_held_before_mb": held_before,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        **extra,
    }


def shared_options(spec: RunSpec) -> dict[str, Any]:
    """The settings both sides are given, spelt alike (both configs take these names)."""
    return dict(
        per_device_train_batch_size=spec.batch,
        max_steps=spec.steps,
        learning_rate=1e-5,
        beta=0.1,
        gradient_checkpointing=spec.gradient_checkpointing,
        max_length=MAX_LENGTH,  # no truncation (check_lengths): both see whole sequences
    )


def directpo_config(spec: RunSpec, common: dict, options: dict, cuda: bool) -> Any:
    """directpo's DPOConfig of a run: ``common`` and the run's own ``options`` (the bench's own
    STATS option taken out), bf16 compute over float32 masters on CUDA, float32 on a CPU."""
    from directpo.config import DPOConfig

    return DPOConfig(
        model_name_or_path=spec.model,
        train_file=spec.data,
        output_dir=spec.out,
        overwrite_output_dir=True,
        report_to=["none"],
        logging_steps=1,
        save_steps=0,
        dtype="bfloat16" if cuda else "float32",
        **{**common, **options},
    )


def trl_options(spec: RunSpec, common: dict, cuda: bool) -> dict[str, Any]:
    """trl.DPOConfig's keywords of a run: a float32 model under bf16 autocast on CUDA (TRL's
    mixed precision), float32 on a CPU (TRL's default bf16=True refuses a CPU)."""
    return dict(
        output_dir=spec.out,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        bf16=cuda,
        use_cpu=not cuda,
        **{**common, **spec.options},
    )


def _run_directpo(spec: RunSpec, common: dict, cuda: bool) -> tuple[list[float], dict]:
    import directpo.finish
    import directpo.trainer as trainer

    # the bench measures training, not writing a multi-GB folder at the end
    directpo.finish.save_final_model = lambda *args, **kwargs: args[1]
    options = dict(spec.options)
    # the bench logs every step (its step times are the logged pairs/s), so directpo computes
    # TRL's per-token statistics on every step, as TRL does; off: as on a step that does not log
    stats = options.pop(STATS, True)
    step = trainer.train_step
    trainer.train_step = lambda run, index, measure=False: step(run, index, measure and stats)
    config = directpo_config(spec, common, options, cuda)
    lines: list[str] = []
    try:
        result = trainer.train(config, echo=lines.append)
    finally:
        trainer.train_step = step
    if result.stopped_by:  # train() took the signal (gpu.sh's timeout): the bench stops too
        sys.exit(f"{spec.name}: stopped by {result.stopped_by}; its steps are no measurement")
    rows = [r for r in result.metrics if "loss" in r]
    notices = [line for line in lines if "off" in line or "warning" in line]
    del result
    return [spec.batch / r["pairs/s"] for r in rows], {
        "loss": rows[-1]["loss"],
        "notices": notices,
    }


def _run_trl(spec: RunSpec, common: dict, cuda: bool) -> tuple[list[float], dict]:
    import datasets
    import torch
    import trl
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        TrainerCallback,
    )

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            self.times = [self._now()]

        def on_step_end(self, *args: Any, **kwargs: Any) -> None:
            self.times.append(self._now())

    rows = [json.loads(line) for line in Path(spec.data).read_text().splitlines()]
    dataset = datasets.Dataset.from_list(rows)
    vision = "images" in dataset.column_names
    if vision:  # TRL's vision collator takes PIL images: paths relative to the data file
        folder = Path(spec.data).parent
        dataset = dataset.map(lambda row: {"images": [str(folder / p) for p in row["images"]]})
        dataset = dataset.cast_column("images", datasets.Sequence(datasets.Image()))
    config = trl.DPOConfig(**trl_options(spec, common, cuda))
    clock = StepClock()
    auto_model = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    auto_processing = AutoProcessor if vision else AutoTokenizer
    trainer = trl.DPOTrainer(
        model=auto_model.from_pretrained(spec.model, dtype=torch.float32),
        args=config,
        train_dataset=dataset,
        processing_class=auto_processing.from_pretrained(spec.model),
        callbacks=[clock],
    )
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    seconds = [b - a for a, b in zip(clock.times, clock.times[1:], strict=False)]
    del trainer
    return seconds, {"loss": losses[-1]}


# -- plans ------------------------------------------------------------------------------------


def cpu_run_name(framework: str, options: dict[str, Any]) -> str:
    """The row's name: a run given --directpo_options is not "directpo defaults" (its rows
    were named so, in the table and --out, whatever the options)."""
    if not options:
        return f"{framework} defaults"
    return f"{framework} " + ", ".join(
        f"{key}: {json.dumps(value)}" for key, value in options.items()
    )


def cpu_plan(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Each (framework, model, set) in a subprocess: peak RSS is per run."""
    results = []
    for model_name in args.models.split(","):
        model = build_model(model_name, work)
        for set_name in args.sets.split(","):
            words = SETS[set_name]
            data = work / f"{set_name}.jsonl"
            prompt_words, completion_words = (round(n * args.scale) for n in words)
            make_data(
                data, prompt_words, completion_words, args.batch * args.steps, 0,
                image_token="<image>" if model_name == "tiny-vlm" else None,
            )  # fmt: skip
            lengths = pair_lengths(str(model), str(data))
            check_lengths(lengths, f"{model_name}/{set_name}")
            flops = training_flops(str(model), lengths)
            for framework in ("directpo", "trl"):
                options = (
                    json.loads(args.directpo_options or "{}") if framework == "directpo" else {}
                )
                spec = RunSpec(
                    framework, cpu_run_name(framework, options), str(model), str(data),
                    str(work / f"{framework}-{model_name}-{set_name}"), args.steps, args.batch,
                    args.warmup, args.gradient_checkpointing == "true", options,
                )  # fmt: skip
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", json.dumps(vars(spec))],
                    capture_output=True,
                    text=True,
                    env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                )
                line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(
                        f"{framework} failed on {model_name}/{set_name}:\n{done.stderr[-3000:]}"
                    )
                result = json.loads(line[len("RESULT ") :])
                results.append({**result, "model": model_name, "data": set_name, "flops": flops})
                report(results[-1], args)
    return results


STATS = "per-token stats"  # a bench option, not directpo's: compute them on every step or none
MAIN_RUNS = [  # (framework, name, gradient checkpointing, options), per model and data set
    ("directpo", "directpo defaults", False, {}),
    ("directpo", "directpo compile", False, {"torch_compile": True}),
    ("trl", "trl defaults", True, {}),
    ("trl", "trl tuned", False, {"padding_free": True}),  # TRL 1.16 turns padding_free off
]
ABLATIONS = [  # on the first model and data set, after its main runs; by value
    # a step that does not log: TRL's per-token statistics (four passes over the completion
    # logits) left out, as on every step but the logging ones of a real run
    ("directpo", "directpo no per-token stats", False, {STATS: False}),
    ("directpo", "directpo checkpointing", True, {}),
    ("directpo", "directpo flex_attention", False, {"attn_implementation": "flex_attention"}),
    ("directpo", "directpo liger", False, {"use_liger_kernel": True}),
    ("trl", "trl tuned liger", False, {"padding_free": True, "use_liger_kernel": True}),
    ("directpo", "directpo one-chunk head", False, {"logprob_chunk_tokens": 65536}),
    ("directpo", "directpo dense-mask sdpa", False, {"attn_implementation": "sdpa"}),
    ("directpo", "directpo fsdp 1 gpu", False, {"distributed": "fsdp"}),
    ("directpo", "directpo lora r16", False, {"lora_r": 16}),
    ("directpo", "directpo qlora 4-bit r16", False, {"lora_r": 16, "load_in_4bit": True}),
]


def plan_order(
    cases: list[tuple[str, str]], ablations: bool, runs: str
) -> list[tuple[tuple[str, str], tuple]]:
    """(case, run) in order of value: the first case's main runs, then its ablations (what no
    earlier GPU call measured comes first there), then the other cases' main runs."""
    first = [(cases[0], run) for run in MAIN_RUNS]
    first += [(cases[0], run) for run in ABLATIONS if ablations]
    plan = first + [(case, run) for case in cases[1:] for run in MAIN_RUNS]
    if runs:  # only the named runs, e.g. --runs "directpo lora r16,directpo qlora 4-bit r16"
        plan = [(case, run) for case, run in plan if run[1] in runs.split(",")]
    return plan


def missing_package(options: dict[str, Any]) -> str | None:
    """The package a run's options need that is not installed (said and skipped, not failed)."""
    import importlib.util

    needs = {"load_in_4bit": "bitsandbytes", "use_liger_kernel": "liger_kernel"}
    for option, package in needs.items():
        if options.get(option) and importlib.util.find_spec(package) is None:
            return package
    return None


def gpu_plan(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """Every run in this process, most important first, within ``--budget`` seconds; a model
    and its data are built when its first run starts (none for runs the budget skips)."""
    import torch

    start = time.perf_counter()
    cases = [(m, d) for m in args.models.split(",") for d in args.sets.split(",")]
    built: dict[tuple[str, str], tuple[Path, Path, list]] = {}
    models: dict[str, Path] = {}
    results: list[dict[str, Any]] = []
    for (model_name, set_name), (framework, name, ckpt, options) in plan_order(
        cases, bool(args.ablations), args.runs
    ):
        if time.perf_counter() - start > args.budget:
            print(f"skipped {model_name}/{set_name}/{name}: time budget", flush=True)
            continue
        package = missing_package(options)
        if package:
            print(f"skipped {model_name}/{set_name}/{name}: {package} is not installed", flush=True)
            continue
        if (model_name, set_name) not in built:
            if model_name not in models:
                models[model_name] = build_model(model_name, work)
            model = models[model_name]
            words = GPU_SETS[set_name]
            data = work / f"{model_name}-{set_name}.jsonl"
            pairs = args.batch * args.steps
            make_data(data, int(words[0] * args.scale), int(words[1] * args.scale), pairs, 0)
            lengths = pair_lengths(str(model), str(data))
            check_lengths(lengths, f"{model_name}/{set_name}")
            built[model_name, set_name] = (model, data, lengths)
        model, data, lengths = built[model_name, set_name]
        spec = RunSpec(
            framework, name, str(model), str(data),
            str(work / f"{framework}-{model_name}-{set_name}"), args.steps, args.batch,
            args.warmup, ckpt, options,
        )  # fmt: skip
        # each run compiles as a fresh process would: compiled code of earlier runs (other
        # models, other shapes) counts against dynamo's recompile limit, after which the decoder
        # layers run uncompiled (dynamo warned so before run 4's 1.5B "compile" rows)
        torch._dynamo.reset()
        try:
            result = run(spec, own_process=False)
        except Exception as exc:  # report and go on: one failure must not lose the rest
            result = {"name": name, "framework": framework, "error": repr(exc)[:400]}
        results.append(
            {**result, "model": model_name, "data": set_name,
             "flops": training_flops(str(model), lengths),
             "tokens_per_pair": statistics.mean(sum(x) for x in lengths)}
        )  # fmt: skip
        report(results[-1], args)
    return results


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    if args.out:
        with open(args.out, "a") as handle:
            handle.write(json.dumps(result) + "\n")
    if "error" in result:
        print(f"{result['model']}/{result['data']}/{result['name']}: FAILED {result['error']}")
        return
    print(
        f"{result['model']}/{result['data']}/{result['name']}: "
        f"{result['pairs_per_second']:.2f} pairs/s, peak {_mb(result)}, "
        f"steps {[round(s, 3) for s in result['step_seconds']]}"
        + (f" notices {result['notices']}" if result.get("notices") else ""),
        flush=True,
    )


def _mb(result: dict[str, Any]) -> str:
    """The peak as measured and what it is, or why it is not there."""
    if result.get("memory_mb") is None:
        return "memory n/a (one process for every run: no per-run peak RSS on a CPU)"
    held = result.get("memory_held_before_mb") or 0
    before = f" ({held:.0f} MB of it held before the run)" if held >= 1 else ""
    return f"{result['memory_mb']:.0f} MB {result.get('memory', '')}".rstrip() + before


def table(results: list[dict[str, Any]]) -> None:
    """Per model and set: each run's pairs/s, memory and MFU, with ratios to TRL's defaults."""
    print()
    kind = next((r.get("memory") for r in results if "error" not in r), "")
    print(f"| model | data | run | pairs/s | vs TRL defaults | vs TRL tuned | peak MB {kind} | "
          "vs TRL defaults | hardware MFU | TRL-equivalent MFU |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["model"], result["data"]), []).append(result)
    for (model, data), rows in groups.items():
        ok = {r["name"]: r for r in rows if "error" not in r}
        trl_default, trl_tuned = ok.get("trl defaults"), ok.get("trl tuned")
        for r in rows:
            if "error" in r:
                print(f"| {model} | {data} | {r['name']} | failed | | | | | | |")
                continue
            peak = next((v for k, v in PEAK_FLOPS.items() if k in r["device"]), None)
            flops = r["flops"]["directpo" if r["framework"] == "directpo" else "trl"]
            hardware = f"{flops * r['pairs_per_second'] / peak:.1%}" if peak else "n/a"
            equivalent = (
                f"{r['flops']['trl'] * r['pairs_per_second'] / peak:.1%}" if peak else "n/a"
            )

            def ratio(other: dict | None, key: str, row: dict = r) -> str:
                if not other or row[key] is None or other[key] is None:
                    return "n/a"
                return f"{row[key] / other[key]:.2f}x"

            memory = "n/a" if r["memory_mb"] is None else f"{r['memory_mb']:.0f}"

            print(
                f"| {model} | {data} | {r['name']} | {r['pairs_per_second']:.2f} | "
                f"{ratio(trl_default, 'pairs_per_second')} | "
                f"{ratio(trl_tuned, 'pairs_per_second')} | {memory} | "
                f"{ratio(trl_default, 'memory_mb')} | {hardware} | {equivalent} |"
            )


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the options, before any model is built (bench/gpu.sh runs this first:
    a misspelt run name would otherwise measure nothing, after minutes of GPU time)."""
    gpu = args.plan == "gpu"
    sets = GPU_SETS if gpu else SETS
    for option, given, known in (
        ("--models", args.models, MODELS),
        ("--sets", args.sets, sets),
        ("--runs", args.runs, [run[1] for run in MAIN_RUNS + ABLATIONS]),
    ):
        unknown = [name for name in given.split(",") if given and name not in known]
        if unknown:
            return f"{option}: unknown {unknown}; known: {', '.join(known)}"
    models, data_sets = args.models.split(","), args.sets.split(",")
    if gpu and "tiny-vlm" in models:  # its data would have no images (gpu_plan makes text pairs)
        return "--models tiny-vlm is for --plan cpu (--sets image-prompt: pairs with images)"
    if "image-prompt" in data_sets and models != ["tiny-vlm"]:
        # pairs with images only for the vision model: another's rows were text, named so
        return "--sets image-prompt is for --models tiny-vlm alone (its pairs carry images)"
    if args.runs and not gpu:
        return "--runs is for --plan gpu (the cpu plan runs directpo and TRL at their defaults)"
    if gpu and (args.directpo_options or args.gradient_checkpointing is not None):
        return (
            "--directpo_options / --gradient_checkpointing are for --plan cpu; the gpu plan's "
            "runs set their own (MAIN_RUNS, ABLATIONS)"
        )
    if args.steps <= args.warmup:
        return f"--steps {args.steps} must exceed --warmup {args.warmup}: no step would be timed"
    if args.directpo_options:
        try:
            options = json.loads(args.directpo_options)
        except json.JSONDecodeError as exc:
            return f"--directpo_options is not JSON: {exc}"
        if not isinstance(options, dict):
            return "--directpo_options must be a JSON object, e.g. '{\"prefix_sharing\": false}'"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--plan", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--models", default="tiny,smollm2", help=f"of {', '.join(MODELS)}")
    parser.add_argument(
        "--sets",
        default="long-prompt,short-prompt",
        help=f"of {', '.join(SETS)} (gpu: the first two)",
    )
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1, help="first steps not timed")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--scale", type=float, default=1, help="multiply the sets' lengths")
    parser.add_argument("--budget", type=float, default=420, help="gpu plan: seconds")
    parser.add_argument("--out", default="", help="append each result as a JSON line")
    parser.add_argument(
        "--ablations", type=int, default=1, help="gpu plan: 0 skips directpo's ablations"
    )
    parser.add_argument(
        "--gradient_checkpointing",
        choices=("true", "false"),
        help="cpu plan: the same for both (default true, TRL's default)",
    )
    parser.add_argument(
        "--directpo_options",
        default="",
        help="cpu plan: JSON of directpo options, e.g. '{\"prefix_sharing\": false}'",
    )
    parser.add_argument("--runs", default="", help="gpu plan: only these run names (comma list)")
    parser.add_argument("--check", action="store_true", help="check the options, run nothing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(run(RunSpec(**json.loads(args.worker)))), flush=True)
        return
    problem = check_args(args)
    if problem:
        parser.error(problem)
    if args.check:
        return
    args.gradient_checkpointing = args.gradient_checkpointing or "true"
    print(
        "precision: directpo dtype bfloat16 (bf16 compute copy, float32 masters, bf16 reference) "
        "vs TRL float32 model + bf16=True (autocast, float32 reference) on CUDA; float32 for "
        "both on CPU",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="directpo-bench-"))
    results = (gpu_plan if args.plan == "gpu" else cpu_plan)(args, work)
    table(results)


if __name__ == "__main__":
    main()
