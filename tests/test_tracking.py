"""Metrics: metrics.jsonl and the trackers hold the same rows, resumed runs included."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from directpo.errors import DirectpoError
from directpo.tracking import MetricsLogger, read_metrics


def test_a_resumed_run_shows_each_step_once_in_tensorboard_as_in_metrics_jsonl(tmp_path):
    """Resumed from step 2, a run logs steps 3 and 4 again: metrics.jsonl dropped the
    interrupted run's rows of those steps, but its TensorBoard events stayed, so TensorBoard
    drew each of them twice (the old value and the new) beside a file holding it once."""
    first = MetricsLogger(tmp_path, ["tensorboard"], {})
    for step in range(1, 5):
        first.log(step, {"loss": float(step)})
    first.close()
    resumed = MetricsLogger(tmp_path, ["tensorboard"], {}, resume_step=2)
    for step in (3, 4):
        resumed.log(step, {"loss": 10.0 * step})
    resumed.close()
    shown = EventAccumulator(str(tmp_path / "runs")).Reload().Scalars("train/loss")
    expected = [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    assert [(event.step, event.value) for event in shown] == expected
    assert [(row["step"], row["loss"]) for row in read_metrics(tmp_path)] == expected


def test_a_tracker_that_fails_to_start_leaves_no_metrics_file(tmp_path):
    """A tracker failing to start (a logging_dir under a file) stopped the run after
    metrics.jsonl was written: the folder then read as holding someone's files, refused
    without overwrite_output_dir, and a folder the run made was not removed."""
    (tmp_path / "afile").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    config = {"logging_dir": str(tmp_path / "afile" / "tb")}
    with pytest.raises(DirectpoError, match="report_to: 'tensorboard' failed to start"):
        MetricsLogger(out, ["tensorboard"], config)
    assert list(out.iterdir()) == []


def test_an_absolute_run_name_keeps_tensorboard_under_runs(tmp_path):
    """transformers' default run_name is output_dir, which a dumped TRL config writes out, often
    absolute: TensorBoard's folder, output_dir/runs/RUN_NAME, was then that path itself (the
    events beside the model, where overwriting a run does not look) or left runs/ with '..'."""
    out = tmp_path / "out"
    for run_name, below in ((str(out), out.relative_to("/")), ("../../up", "up")):
        logger = MetricsLogger(out, ["tensorboard"], {"run_name": run_name})
        logger.log(1, {"loss": 1.0})
        logger.close()
        assert list((out / "runs" / below).glob("events.out.tfevents.*")), run_name
    assert not list(out.glob("events.out.tfevents.*"))
    assert not list(tmp_path.glob("up"))
