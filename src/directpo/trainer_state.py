"""``trainer_state.json`` in transformers' ``TrainerState`` layout.

Tools written for transformers' checkpoints read this file: ``TrainerState.load_from_json``
(which takes its fields and no others), plotting scripts over ``log_history``, "which
checkpoint was best" scripts over ``best_model_checkpoint`` / ``best_metric``, model-card
generators. The file therefore holds exactly ``TrainerState``'s fields, with transformers'
meanings and metric names (``loss``, ``eval_loss``, ``eval_rewards/chosen``); what directpo's
resume needs (data order, logging window, best-model tracker, objective) goes under
``stateful_callbacks["directpo"]``, the field transformers keeps for its callbacks' own state.
Checkpoints of earlier versions held directpo's state at the top level; ``own_state`` reads
both.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from directpo.run import Run

STATE_FILE = "trainer_state.json"
OWN_STATE = "directpo"  # the stateful_callbacks entry that holds directpo's resume state


def trainer_state(step: int, own: dict[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    """The file's content: ``TrainerState``'s fields (``fields`` gives those a run knows; the
    rest take transformers' defaults for a single, non-search run) with ``own`` inside (None:
    no resume state)."""
    return {
        "epoch": 0.0, "global_step": step, "max_steps": 0, "logging_steps": 500,
        "eval_steps": 500, "save_steps": 500, "train_batch_size": None, "num_train_epochs": 0,
        "num_input_tokens_seen": 0, "total_flos": 0.0, "log_history": [], "best_metric": None,
        "best_global_step": None, "best_model_checkpoint": None, "is_local_process_zero": True,
        "is_world_process_zero": True, "is_hyper_param_search": False, "trial_name": None,
        "trial_params": None,
        **fields,
        "stateful_callbacks": {} if own is None else {OWN_STATE: own},
    }  # fmt: skip


def training_flos(model: Any, tokens: int) -> float:
    """transformers' estimate of the floating-point operations of training on ``tokens``
    tokens: 6 × the model's parameters (embeddings excluded) × tokens, forward and backward
    (``PreTrainedModel.floating_point_ops``). The tokens are those the policy computed: a
    prompt shared by its two completions (prefix_sharing, padding_free) once, padding never;
    the reference's forward passes are not counted, as transformers counts only the trained
    model's."""
    if not tokens:
        return 0.0
    count = getattr(model, "num_parameters", None)
    if callable(count):
        parameters = count(exclude_embeddings=True)
    else:
        parameters = sum(p.numel() for p in model.parameters())
    return 6.0 * parameters * tokens


def own_state(saved: dict[str, Any]) -> dict[str, Any]:
    """directpo's resume state (with ``global_step``) from a trainer_state.json of either
    layout: this one's, or the flat one of earlier versions."""
    callbacks = saved.get("stateful_callbacks")
    if isinstance(callbacks, dict) and OWN_STATE in callbacks:
        return {**callbacks[OWN_STATE], "global_step": saved["global_step"]}
    return saved


def log_history(rows: list[dict[str, Any]], steps_per_epoch: int) -> list[dict[str, Any]]:
    """metrics.jsonl's rows as transformers logs them: evaluation metrics ``eval_<name>``
    (``eval/rewards/chosen`` -> ``eval_rewards/chosen``), every entry with its ``epoch``
    (fractional, as in training rows) and its ``step``."""
    history = []
    for row in rows:
        step = row.get("step", 0)
        entry = {(f"eval_{k[5:]}" if k.startswith("eval/") else k): v for k, v in row.items()}
        entry.pop("step", None)
        entry.setdefault("epoch", step / steps_per_epoch)
        history.append({**entry, "step": step})
    return history


def logged_rows(folder: str | Path) -> list[dict[str, Any]]:
    """The ``log_history`` of ``folder``'s trainer_state.json (a checkpoint's, a finished
    run's, a transformers / TRL run's) as metrics.jsonl's rows (``eval_loss`` ->
    ``eval/loss``), or [] when it has none."""
    try:
        history = json.loads((Path(folder) / STATE_FILE).read_text()).get("log_history")
    except (OSError, ValueError, AttributeError):
        return []
    rows = []
    for entry in history if isinstance(history, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            named = {(f"eval/{k[5:]}" if k.startswith("eval_") else k): v for k, v in entry.items()}
            rows.append({"step": named.pop("step"), **named})
    return rows


def best_checkpoint_name(run: Run, saving: int | None) -> str | None:
    """The checkpoint folder of the best evaluation, as transformers names it: the one
    ``load_best_model_at_end`` wrote, else (early stopping alone) the checkpoint written at the
    best evaluation's step, if there is one (``saving``: the step being saved now, if any)."""
    best = run.best
    if best.checkpoint or best.step is None:
        return best.checkpoint
    name = f"checkpoint-{best.step}"
    return name if best.step == saving or (run.output_dir / name).is_dir() else None


def run_fields(run: Run, done: int, saving: bool = True) -> dict[str, Any]:
    """The ``TrainerState`` fields of ``run`` after step ``done`` (rank 0's logged rows), for
    its checkpoint (``saving``) or the final folder."""
    config, total = run.config, run.total_steps
    per_epoch = run.source.steps_per_epoch
    logging_steps = config.every("logging_steps", total)
    best = best_checkpoint_name(run, done if saving else None)
    return {
        "epoch": run.source.epochs_done(done),
        "max_steps": total,
        "logging_steps": logging_steps,
        # transformers' eval_steps defaults to logging_steps, as directpo's does
        "eval_steps": config.every("eval_steps", total) or logging_steps,
        "save_steps": config.every("save_steps", total),
        "train_batch_size": config.per_device_train_batch_size,
        "num_train_epochs": math.ceil(total / per_epoch),
        "num_input_tokens_seen": run.num_tokens,
        "total_flos": run.total_flos,
        "log_history": log_history(run.logger.rows, per_epoch),
        "best_metric": run.best.value,
        "best_global_step": run.best.step,
        "best_model_checkpoint": None if best is None else str(Path(run.output_dir) / best),
    }


def train_output_metrics(run: Run, done: int) -> dict[str, Any]:
    """transformers' ``TrainOutput.metrics`` of this process's steps up to ``done``: what
    ``train_results.json`` holds and ``train()`` returns as ``train_metrics``."""
    config = run.config
    seconds = max(time.perf_counter() - run.train_start, 1e-9)
    steps = done - run.start_step
    pairs = steps * config.per_device_train_batch_size * config.gradient_accumulation_steps
    pairs *= run.world.size
    return {
        "epoch": run.source.epochs_done(done),
        "total_flos": run.total_flos,
        "train_loss": train_loss(run.logger.rows, run.start_step),
        "train_runtime": round(seconds, 4),  # transformers' speed_metrics rounding
        "train_samples_per_second": round(pairs / seconds, 3),
        "train_steps_per_second": round(steps / seconds, 3),
    }


def final_files(
    run: Run, done: int, rows: list[dict[str, Any]], train: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """What transformers' ``trainer.save_metrics("train" / "eval", ...)`` and
    ``trainer.save_state()`` write beside the final model (alignment-handbook scripts and
    model-card tools read them): ``train_results.json`` (``train``: ``train_output_metrics``),
    ``eval_results.json`` (the last evaluation of ``rows``, the saved weights' rows),
    ``all_results.json`` (both) and ``trainer_state.json`` (no resume state: the final folder
    resumes nothing; its log ends with the train summary, as transformers')."""
    evals = [entry for entry in log_history(rows, run.source.steps_per_epoch) if _is_eval(entry)]
    files = {"train_results.json": dict(train), "all_results.json": dict(train)}
    if evals:
        last = {k: v for k, v in evals[-1].items() if k != "step"}
        files["eval_results.json"] = last
        files["all_results.json"] = {**last, **train}  # the run's epoch, as transformers' own
    state = trainer_state(done, None, run_fields(run, done, saving=False))
    # transformers' log ends with the run's summary: model-card generators (its
    # parse_log_history) find the training results table by it
    state["log_history"].append({**train, "step": done})
    files[STATE_FILE] = state
    return files


def train_loss(rows: list[dict[str, Any]], start: int) -> float:
    """transformers' ``train_loss``: the mean loss over the steps after ``start`` (each logged
    row is the mean of the steps since the previous one; a NaN row, all steps skipped, counts
    for none)."""
    total = weight = 0.0
    previous = start
    for row in rows:
        step = row.get("step", 0)
        if "loss" not in row or step <= start:
            continue
        if math.isfinite(row["loss"]):
            total += row["loss"] * (step - previous)
            weight += step - previous
        previous = step
    return total / weight if weight else math.nan


def _is_eval(entry: dict[str, Any]) -> bool:
    return any(key.startswith("eval_") for key in entry)
