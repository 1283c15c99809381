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


def test_report_to_trackio_logs_trls_names_in_its_project(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """transformers' newest tracker, as a TRL recipe names it (report_to: trackio, project:
    ...): it was refused ('must be a list of tensorboard, wandb, mlflow, none'). The run logs
    each metrics.jsonl row to trackio under TRL's names, in the project asked for, and
    finishes it; a Space (trackio_space_id, an upload) is refused saying where it logs."""
    import importlib.machinery
    import sys
    import types

    from tiny import tiny_config

    from directpo.config import DPOConfig
    from directpo.trainer import train

    calls: list[tuple] = []
    fake = types.ModuleType("trackio")
    fake.__spec__ = importlib.machinery.ModuleSpec("trackio", None)  # installed, to find_spec
    fake.init = lambda **kwargs: calls.append(("init", kwargs))
    fake.log = lambda metrics, step: calls.append(("log", metrics, step))
    fake.finish = lambda: calls.append(("finish",))
    fake.Table = lambda columns, data: ("table", columns, data)  # a cell's text reads as Markdown
    monkeypatch.setitem(sys.modules, "trackio", fake)

    trackio = {"report_to": ["trackio"], "project": "dpo-sweeps", "run_name": "beta-0.1"}
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=2,
                         **trackio)  # fmt: skip
    train(config, echo=lambda _: None)
    init = calls[0][1]
    assert (calls[0][0], init["project"], init["name"]) == ("init", "dpo-sweeps", "beta-0.1")
    assert init["config"]["project"] == "dpo-sweeps" and calls[-1] == ("finish",)
    rows = read_metrics(tmp_path / "out")
    logged = [(step, metrics) for _, metrics, step in (c for c in calls if c[0] == "log")]
    assert [step for step, _ in logged] == [row["step"] for row in rows] == [1, 2]
    for (_, metrics), row in zip(logged, rows, strict=True):
        assert metrics["train/loss"] == row["loss"]
        assert metrics["train/rewards/margins"] == row["rewards/margins"]

    calls.clear()  # eval_generate's samples (Markdown) as a one-cell table at their step
    MetricsLogger(tmp_path / "out", ["trackio"], {}).log_text(3, "samples", "| a |")
    assert calls[1] == ("log", {"samples": ("table", ["samples"], [["| a |"]])}, 3)
    assert calls[0][1]["project"] == "huggingface"  # a record without one: transformers' default
    assert DPOConfig(report_to=["trackio"]).project == "huggingface"
    with pytest.raises(DirectpoError, match="^project names trackio's project, and report_to "):
        DPOConfig(report_to=["wandb"], project="dpo-sweeps")  # (it went nowhere)
    local = "trackio_space_id='me/runs' is not supported: directpo does not upload: "
    with pytest.raises(DirectpoError, match=local + "report_to='trackio' logs on this machine"):
        DPOConfig(report_to=["trackio"], trackio_space_id="me/runs")


def test_a_run_resumed_into_another_folder_shows_its_whole_curve_in_tensorboard(tmp_path):
    """Resumed from another folder's checkpoint, metrics.jsonl kept the steps before it (the
    checkpoint's rows), but the new folder's TensorBoard curve began at the resumed step. Its
    events are refilled from those rows; a folder with events already is left as it was."""
    before = [{"step": 1, "loss": 0.7, "rewards/chosen": 0.1}, {"step": 2, "loss": 0.6}]
    out = tmp_path / "out"
    resumed = MetricsLogger(out, ["tensorboard"], {}, resume_step=2, logged_before=before)
    resumed.log(3, {"loss": 0.5})
    resumed.close()
    shown = EventAccumulator(str(out / "runs")).Reload()
    loss = [(event.step, round(event.value, 4)) for event in shown.Scalars("train/loss")]
    assert loss == [(1, 0.7), (2, 0.6), (3, 0.5)]
    assert [e.step for e in shown.Scalars("train/rewards/chosen")] == [1]
    assert [(row["step"], row["loss"]) for row in read_metrics(out)] == [
        (1, 0.7),
        (2, 0.6),
        (3, 0.5),
    ]

    shared = tmp_path / "shared"  # a logging_dir the earlier run wrote its steps into
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = MetricsLogger(tmp_path / "first", ["tensorboard"], {"logging_dir": str(shared)})
    for row in before:
        first.log(row["step"], {"loss": row["loss"]})
    first.close()
    config = {"logging_dir": str(shared)}
    again = MetricsLogger(tmp_path / "second", ["tensorboard"], config, 2, logged_before=before)
    again.log(3, {"loss": 0.5})
    again.close()
    steps = [event.step for event in EventAccumulator(str(shared)).Reload().Scalars("train/loss")]
    assert steps == [1, 2, 3]
