"""Metrics: ``output_dir/metrics.jsonl`` (always) and the trackers named in ``report_to``."""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

from directpo.checkpoint import write_or_stop
from directpo.errors import DirectpoError
from directpo.options import replace_text

METRICS_FILE = "metrics.jsonl"


def read_metrics(output_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line torn by a kill mid-append
            rows.append(json.loads(line))
    return rows


class MetricsLogger:
    """Appends one JSON object per logged step; forwards the same values to trackers.

    On resume from step S, rows logged after S (by the interrupted run) are dropped first, so
    the file holds each step once, in order; TensorBoard hides them too (its purge_step).
    """

    def __init__(
        self,
        output_dir: Path,
        report_to: list[str],
        config: dict[str, Any],
        resume_step: int | None = None,
        write: bool = True,
        logged_before: list[dict[str, Any]] | None = None,
    ):
        """``write=False`` (ranks other than 0): keep the rows in memory, write nothing.
        ``logged_before``: the resumed checkpoint's rows (its trainer_state.json), kept where
        ``output_dir`` holds none up to ``resume_step``."""
        logged_before = logged_before or []
        self.path = output_dir / METRICS_FILE
        self.write = write
        # the trackers first: one that fails to start (a logging_dir that cannot be made) leaves
        # no metrics.jsonl, which made the folder read as someone's for the next try
        self._trackers: list[Any] = []
        for name in report_to if write else []:
            if name != "none":
                try:
                    self._trackers.append(_open_tracker(name, output_dir, config, resume_step))
                except DirectpoError:
                    self.close()
                    raise
        kept = [
            row
            for row in read_metrics(output_dir)
            if resume_step is not None and row.get("step", 0) <= resume_step
        ]
        if resume_step is not None and not kept:
            # resumed from a checkpoint of another folder (a copy, another output_dir): its
            # rows came from none, and metrics.jsonl, the plot and the next checkpoints' and
            # the final trainer_state.json began at the resumed step, the curve before it lost
            kept = [row for row in logged_before if row.get("step", 0) <= resume_step]
            self._refill(kept)
        if write:  # (a full disk: said in one line, the rows logged before kept)
            text = "".join(json.dumps(row) + "\n" for row in kept)
            try:
                write_or_stop(self.path, lambda: replace_text(self.path, text))
            except DirectpoError:
                self.close()
                raise
        self.rows = kept

    def _refill(self, rows: list[dict[str, Any]]) -> None:
        """The resumed checkpoint's rows into a TensorBoard folder that holds no events yet
        (the new output_dir's runs/): its curve began at the resumed step, the earlier steps
        only in the old folder's (metrics.jsonl had them). Decided: refilled, not said in a
        line, so that one folder shows the whole run; a folder with events (a logging_dir
        shared with the earlier run) has those steps already and is left. wandb, MLflow and
        trackio keep a run of their own, where the earlier steps are (not logged again)."""
        for tracker in self._trackers:
            if isinstance(tracker, _TensorBoard) and tracker.fresh:
                for row in rows:
                    tracker.log(row["step"], _numbers(row))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **metrics}
        if self.write:
            with self.path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
        self.rows.append(row)
        for tracker in self._trackers:
            tracker.log(step, metrics)

    def log_text(self, step: int, tag: str, text: str) -> None:
        for tracker in self._trackers:
            tracker.log_text(step, tag, text)

    def close(self) -> None:
        for tracker in self._trackers:
            tracker.close()


def _numbers(row: dict[str, Any]) -> dict[str, float]:
    """A row's metrics as logged (its numbers, not its step)."""
    return {
        key: value
        for key, value in row.items()
        if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)
    }


def trl_tracker_names(metrics: dict[str, float]) -> dict[str, float]:
    """The names TRL's runs show in TensorBoard and wandb (transformers' ``rewrite_logs``):
    ``eval/...`` as it is, every training metric under ``train/`` (``train/loss``,
    ``train/rewards/chosen``), so that a directpo run's curves overlay a TRL run's."""
    return {k if k.startswith("eval/") else f"train/{k}": v for k, v in metrics.items()}


def mlflow_names(metrics: dict[str, float]) -> dict[str, float]:
    """TRL's names in MLflow (transformers logs them unprefixed): ``loss``, ``rewards/chosen``,
    ``eval_loss``; characters MLflow refuses become ``_``, as transformers does."""
    renamed = {f"eval_{k[5:]}" if k.startswith("eval/") else k: v for k, v in metrics.items()}
    return {re.sub(r"[^0-9A-Za-z_\-\. :/]", "_", k): v for k, v in renamed.items()}


class _TensorBoard:
    def __init__(self, folder: Path, resume_step: int | None = None):
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run logs steps S+1, ... again: purge_step hides the interrupted run's
        # events of those steps (in its own files), else each shows twice, as two curves
        purge = None if resume_step is None else resume_step + 1
        self.fresh = not any(folder.glob("events.out.tfevents.*"))  # (no earlier run's)
        self.writer = SummaryWriter(log_dir=str(folder), purge_step=purge)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in trl_tracker_names(metrics).items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, step)

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, output_dir: Path, config: dict[str, Any]):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            config=config, dir=str(output_dir), resume="allow", name=config.get("run_name")
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        # train/global_step: the x-axis TRL's runs declare, so both plot against the step
        self.run.log({**trl_tracker_names(metrics), "train/global_step": step}, step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.run.log({tag: self.wandb.Html(f"<pre>{text}</pre>")}, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, config: dict[str, Any]):
        import mlflow

        self.mlflow = mlflow
        mlflow.start_run(run_name=config.get("run_name"))
        mlflow.log_params({k: str(v)[:500] for k, v in config.items()})

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.mlflow.log_metrics(mlflow_names(metrics), step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.mlflow.log_text(text, f"{tag.replace('/', '_')}_{step}.txt")

    def close(self) -> None:
        self.mlflow.end_run()


class _Trackio:
    """transformers' TrackioCallback without its Hub side: the run logs on this machine, in
    ``project`` (TRL's names: train/..., eval/..., as TRL's runs show there)."""

    def __init__(self, config: dict[str, Any]):
        import trackio

        self.trackio = trackio
        self.run = trackio.init(
            project=config.get("project") or "huggingface",
            name=config.get("run_name"),
            config=config,
            resume="allow",
        )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.trackio.log(trl_tracker_names(metrics), step=step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        # a Table's text cell is shown as Markdown, which the samples are
        self.trackio.log({tag: self.trackio.Table(columns=[tag], data=[[text]])}, step=step)

    def close(self) -> None:
        self.trackio.finish()


def _below(run_name: str | None) -> Path:
    """``run_name`` as a folder under runs/: transformers' default run_name is output_dir, which
    a dumped TRL config writes out (often absolute): joined as it was, TensorBoard wrote into
    that path (output_dir itself, beside the model) or above runs/ with '..'."""
    parts = [part for part in Path(run_name or "").parts if part not in (os.sep, "..", ".")]
    return Path(*parts) if parts else Path()


def _open_tracker(
    name: str, output_dir: Path, config: dict[str, Any], resume_step: int | None = None
) -> Any:
    try:
        if name == "tensorboard":
            below = _below(config.get("run_name"))
            folder = config.get("logging_dir") or output_dir / "runs" / below
            return _TensorBoard(Path(folder), resume_step)
        if name == "wandb":
            return _Wandb(output_dir, config)
        if name == "mlflow":
            return _MLflow(config)
        if name == "trackio":
            return _Trackio(config)
    except ImportError:
        raise DirectpoError(f"report_to: '{name}' is not installed (pip install {name})") from None
    except Exception as exc:  # a tracker's own start-up failure (login, server, ...)
        raise DirectpoError(f"report_to: '{name}' failed to start: {exc}") from None
    raise DirectpoError(f"report_to: unknown tracker '{name}'")
