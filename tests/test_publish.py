"""A final folder's move into output_dir killed half way (SIGKILL, power loss between two
renames) is finished by the next run or reader of the folder, not lost (publish.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.outputs import FINAL_STAGING, OutputLock, prepare_output_dir, publish_final
from directpo.reward import run_config

OLD = {"config.json": "old", "adapter_model.safetensors": "old", "adapter_config.json": "old"}
NEW = {"config.json": "new", "model.safetensors": "new", "tokenizer.json": "new"}


class Killed(BaseException):
    """The process dying: nothing after it runs (no except, no finally of ours would help)."""


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _killed_publish(out: Path, monkeypatch, renames: int) -> None:
    """``publish_final`` of NEW over OLD, killed after ``renames`` renames (the first: the
    staging folder's mark of completion)."""
    _folder(out, OLD)
    staging = _folder(out / FINAL_STAGING, NEW)
    real, done = os.replace, []

    def replace(source, target) -> None:
        if len(done) == renames:
            raise Killed
        done.append(source)
        real(source, target)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        publish_final(staging, out)
    monkeypatch.setattr(os, "replace", real)
    mixed = {p.name: p.read_text() for p in out.iterdir() if p.is_file()}
    assert mixed != NEW  # (the state a kill leaves: the test's premise)


def _files(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in out.iterdir() if p.is_file() and p.name[0] != "."}


@pytest.mark.parametrize("renames", [1, 2, 3])
def test_the_next_run_finishes_an_interrupted_final_move(tmp_path, monkeypatch, renames) -> None:
    """The next train on that output_dir deleted .final.tmp as garbage: the run's model was
    lost and output_dir held a mix of new, old and missing files."""
    out = tmp_path / "run"
    _killed_publish(out, monkeypatch, renames)
    config = DPOConfig(model_name_or_path="someone/model", output_dir=str(out))
    with pytest.raises(ConfigError, match="already holds a finished run"):
        prepare_output_dir(out, config, OutputLock())
    assert _files(out) == NEW and not (out / FINAL_STAGING).exists()


def test_a_reader_finishes_it_too(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    _killed_publish(out, monkeypatch, 2)
    assert run_config(out) is None  # (what score, rank, generate and from_run read first)
    assert _files(out) == NEW and not (out / FINAL_STAGING).exists()


def test_an_incomplete_staging_folder_is_still_discarded(tmp_path) -> None:
    """Killed while the final folder was written (before its mark): output_dir is as it was,
    the staging folder half written, deleted once the new run has loaded."""
    out = _folder(tmp_path / "run", OLD)
    _folder(out / FINAL_STAGING, NEW)
    config = DPOConfig(model_name_or_path="someone/model", output_dir=str(out))
    config.overwrite_output_dir = True
    replaced = prepare_output_dir(out, config, OutputLock())
    assert out / FINAL_STAGING in replaced and _files(out) == OLD


def test_score_finishes_it_before_checking_the_model_folder(tmp_path, monkeypatch, capsys):
    """(a run's folder missing its config.json half way was refused as no model folder)"""
    from directpo.cli import main

    out = tmp_path / "run"
    _killed_publish(out, monkeypatch, 1)
    argv = ["--model_name_or_path", str(out), "--input", str(tmp_path / "missing.jsonl")]
    assert main(["score", *argv, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "input: no such file" in capsys.readouterr().err
    assert _files(out) == NEW and not (out / FINAL_STAGING).exists()


def test_a_move_failing_with_an_os_error_keeps_the_complete_folder(tmp_path, monkeypatch) -> None:
    """An OSError while the marked folder was being moved (not a kill) had write_staged delete
    it, and the run said output_dir was as it was: a mix, and the model gone. The folder is
    kept, and the next run finishes the move."""
    from directpo.checkpoint import write_staged
    from directpo.distributed import SINGLE_PROCESS

    out = _folder(tmp_path / "run", OLD)
    staging = out / FINAL_STAGING
    real, done = os.replace, []

    def replace(source, target) -> None:
        if len(done) == 2:
            raise OSError(28, "No space left on device")
        done.append(source)
        real(source, target)

    def write_and_publish() -> None:
        _folder(staging, NEW)
        publish_final(staging, out)

    monkeypatch.setattr(os, "replace", replace)
    problem = write_staged(staging, SINGLE_PROCESS, on_main=write_and_publish)
    monkeypatch.setattr(os, "replace", real)
    assert problem is not None and "No space left on device" in problem
    assert staging.is_dir()  # the run's model, whole
    config = DPOConfig(model_name_or_path="someone/model", output_dir=str(out))
    with pytest.raises(ConfigError, match="already holds a finished run"):
        prepare_output_dir(out, config, OutputLock())
    assert _files(out) == NEW and not staging.exists()
