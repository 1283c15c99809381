"""The loop's named steps beside the training step (trainer.py calls each when due.py says it
is due): ``log_step`` (the window's means, to metrics.jsonl and the trackers),
``evaluate_step`` (held-out pairs, sampled completions) and ``checkpoint_step`` (a resumable
checkpoint); ``StepResult``, what a training step hands them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from directpo.checkpoint import REFERENCE_FILE, save_checkpoint
from directpo.distributed import broadcast, on_main, unsharded_root
from directpo.eval_samples import evaluate_generations
from directpo.jsonl import write_jsonl
from directpo.resume import held_out_dtype, held_out_pairs, leaves_tokens_out, objective
from directpo.rewardfn import trainer_state, with_state
from directpo.run import Run, evaluation_precision
from directpo.step import PairStats, eval_set_metrics, evaluate
from directpo.sync import reference_state
from directpo.trainer_state import best_checkpoint_name, run_fields


@dataclass
class StepResult:
    stats: PairStats  # this step's metric sums over all ranks
    grad_norm: float
    learning_rate: float
    update_ratio: float | None = None  # ‖Δw‖/‖w‖ of the step, when measured

    @property
    def loss(self) -> float:
        if not self.stats.pairs:
            return math.nan
        return self.stats.sums["loss"] / self.stats.pairs


def state_of(run: Run, done: int) -> Any:
    return trainer_state(done, run.total_steps, run.source.steps_per_epoch)


def log_step(run: Run, done: int, result: StepResult) -> str:
    """Means over the steps since the last log line; written to metrics.jsonl and trackers."""
    seconds = max(time.perf_counter() - run.window_start, 1e-9)
    window = run.window
    # over the steps that updated (a skipped one's NaN stays out); TRL's token statistics are
    # measured at the logging step alone. What no kept step measured (the window was all
    # skipped, or the logging step was) is NaN, so that every row has the same keys (a
    # dashboard's columns, a pandas frame): transformers logs a NaN loss as NaN too, and a last
    # finite value would be made up
    means = window.means()
    means = {key: means.get(key, math.nan) for key in result.stats.means()} | means
    metrics = {
        **means,
        "grad_norm": result.grad_norm,
        "learning_rate": result.learning_rate,
        "pairs/s": window.pairs / seconds,
        "tokens/s": window.tokens / seconds,
        "num_tokens": run.num_tokens,
        "epoch": run.source.epochs_done(done),
    }
    if result.update_ratio is not None:
        metrics["update_ratio"] = result.update_ratio
    if window.nonfinite_steps:
        metrics["nonfinite_steps"] = window.nonfinite_steps
    run.logger.log(done, metrics)
    run.window, run.window_start = PairStats(), time.perf_counter()
    return format_metrics(done, run.total_steps, metrics)


def evaluate_step(run: Run, done: int) -> str:
    """Held-out pair metrics, and (with ``eval_generate``) sampled completions' KL and reward."""
    config, world = run.config, run.world
    metrics: dict[str, float] = {}
    with evaluation_precision(run):  # float32 by default under bf16 (eval_dtype)
        for name, pair_set in run.evals.items():  # named sets: eval/<name>_loss (transformers')
            scores = evaluate(
                run.scorer,
                run.reference,
                pair_set.pairs,
                config,
                run.pad_id,
                world.device,
                run.layout,
                pair_set.reference_table,
                world,
            )
            metrics |= eval_set_metrics(name, scores)
    if run.eval_prompts:
        sample = functools.partial(
            evaluate_generations,
            run.policy,
            run.kl_reference,
            run.tokenizer,
            run.eval_prompts,
            config,
            done,
            run.reward_fn,
            synced=run.sharded and world.size > 1,
            processor=run.processor,
            columns=with_state(run.eval_rows, len(run.eval_prompts), state_of(run, done)),
            scoring=lambda: evaluation_precision(run),  # sampled as trained, scored as evaluated
        )
        if run.sharded:  # every rank generates (same seed and weights: same samples)
            with unsharded_root(run.scorer):
                generation_metrics, records = broadcast(sample(), world)
        else:  # rank 0 samples with its replica; the other ranks wait
            generation_metrics, records = on_main(world, sample)
        metrics |= generation_metrics
        if world.is_main:
            samples_dir = run.output_dir / "samples"
            samples_dir.mkdir(exist_ok=True)
            write_jsonl(samples_dir / f"step-{done}.jsonl", records)
            run.logger.log_text(done, "samples", _samples_markdown(records))
    run.logger.log(done, metrics)
    return format_metrics(done, run.total_steps, metrics)


def checkpoint_step(
    run: Run, done: int, model_only: bool = False, evaluation_pending: bool = False
) -> Path:
    """A resumable checkpoint (float32 masters under mixed precision) of step ``done``; with
    ``model_only`` (save_only_model), its weights without optimizer state, not resumable;
    ``evaluation_pending``: step ``done``'s evaluation failed, a resume runs it first."""
    state = {
        "evaluation_pending": evaluation_pending,
        "log_window": vars(run.window),
        "num_tokens": run.num_tokens,
        "total_flos": run.total_flos,
        **run.source.state(),
        "best": vars(run.best),
        "objective": objective(run.config),
        "leaves_tokens_out": leaves_tokens_out(run),  # does assistant_only_loss change a loss
        **run.model_files,  # the reference, a LoRA run's base: a resume against others says so
        # its state fits no other optimizer, nor (Kahan's) other weights (resume checks)
        "optimizer": run.config.optimizer,
        "weights": str(run.precision.master).removeprefix("torch."),
        "compute_dtype": str(run.precision.compute).removeprefix("torch."),  # (resume says)
        "eval_dtype": held_out_dtype(run),  # what the best value and eval curves were read in
        "eval_pairs": held_out_pairs(run),  # ... and on which pairs
    }
    # TR-DPO's reference is state too (gathered on every rank, written by rank 0)
    extra = {REFERENCE_FILE: reference_state(run)} if run.config.sync_ref_model else {}
    masters = run.masters.in_model() if run.masters is not None else contextlib.nullcontext()
    with masters:
        return save_checkpoint(
            run.output_dir,
            done,
            run.policy,
            run.processor or run.tokenizer,
            run.optimizer,
            run.scheduler,
            state,
            run.config.save_total_limit,
            run.world,
            run.scorer if run.sharded else None,
            keep=best_checkpoint_name(run, done),  # (transformers keeps it too)
            tensors=extra,
            model_only=model_only,
            fields=run_fields(run, done) if run.world.is_main else None,
            # the options it was trained with: output_dir's config.yaml is this run's until a
            # resume with other options rewrites it, and a copied checkpoint leaves it behind
            record=lambda folder: run.config.save_record(folder / "config.yaml", run.from_python),
        )


def format_metrics(step: int, total: int, metrics: dict[str, float]) -> str:
    shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items())
    return f"step {step}/{total} {shown}"


def _samples_markdown(records: list[dict[str, Any]], limit: int = 8) -> str:
    lines = ["| prompt | completion | kl | reward |", "|---|---|---|---|"]
    for r in records[:limit]:
        prompt = str(r["prompt"]).replace("|", "\\|").replace("\n", " ")
        completion = r["completion"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {prompt} | {completion} | {r['kl']:.3f} | {r.get('reward', '')} |")
    return "\n".join(lines)
