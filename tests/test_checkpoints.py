from __future__ import annotations

import errno
import json
from collections import namedtuple

import pytest
import torch
from tiny import tiny_config

import directpo.checkpoint as checkpoint_module
import directpo.run as run_module
import directpo.trainer as trainer_module
from directpo.checkpoint import resolve_checkpoint, verify_checkpoint
from directpo.config import DPOConfig
from directpo.errors import CheckpointError, ConfigError, TrainingStopped
from directpo.trainer import train


def config_for(model, data, out, **overrides) -> DPOConfig:
    return tiny_config(
        model,
        data,
        out,
        **{"save_steps": 1, "per_device_train_batch_size": 3, "max_steps": 3, **overrides},
    )


@pytest.fixture
def run_dir(tiny_model_dirs, pairs_file, tmp_path):
    out = tmp_path / "run"
    train(config_for(tiny_model_dirs["gpt2"], pairs_file, out), echo=lambda _: None)
    return out


def test_every_checkpoint_has_a_verifying_manifest(run_dir) -> None:
    for step in (1, 2, 3):
        path = run_dir / f"checkpoint-{step}"
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["step"] == step
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(manifest["files"])
        assert verify_checkpoint(path) is None
    assert not list(run_dir.glob(".checkpoint-*"))  # no temporary folder left behind


def test_latest_skips_corrupt_checkpoints_and_says_why(run_dir) -> None:
    weights = run_dir / "checkpoint-3" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    (run_dir / "checkpoint-2" / "manifest.json").unlink()  # never completed
    lines: list[str] = []
    assert resolve_checkpoint("latest", run_dir, lines.append) == run_dir / "checkpoint-1"
    assert lines == [
        f"resume: skipped checkpoint-3: model.safetensors has 100 bytes, the manifest says {size}",
        "resume: skipped checkpoint-2: no manifest (incomplete or not a directpo checkpoint)",
        "resume: took checkpoint-1, the newest checkpoint that verifies",
    ]
    opt = run_dir / "checkpoint-1" / "optimizer.pt"
    opt.write_bytes(b"x" * opt.stat().st_size)  # same size, other bytes
    with pytest.raises(CheckpointError, match="optimizer.pt does not match its checksum"):
        resolve_checkpoint("latest", run_dir, lambda _: None)


def test_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    real = torch.save
    calls = {"n": 0}

    def save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # checkpoint-1 writes 3 files with torch.save; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    out = tmp_path / "run"
    with pytest.raises(
        CheckpointError,
        match=r"cannot write checkpoint-2 .* \(No space left on "
        r"device\); earlier checkpoints are intact "
        r"\(checkpoint-1\)",
    ):
        train(config_for(tiny_model_dirs["gpt2"], pairs_file, out), echo=lambda _: None)
    assert verify_checkpoint(out / "checkpoint-1") is None
    assert not list(out.glob(".checkpoint-*"))
    monkeypatch.setattr(checkpoint_module.torch, "save", real)
    resumed = train(
        config_for(tiny_model_dirs["gpt2"], pairs_file, out, resume_from_checkpoint="latest"),
        echo=lambda _: None,
    )
    assert resumed.global_step == 3


def test_too_little_free_space_is_refused_before_training(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(run_module.shutil, "disk_usage", lambda _: usage(10**6, 0, 1000))
    with pytest.raises(
        ConfigError,
        match=r"0\.00 GiB free, but the final model and one "
        r"checkpoint need about",
    ):
        train(
            config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "run"), echo=lambda _: None
        )
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_out_of_memory_names_the_knobs(tiny_model_dirs, pairs_file, tmp_path, monkeypatch) -> None:
    def oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer_module, "pair_losses", oom)
    with pytest.raises(
        TrainingStopped,
        match="out of GPU memory at step 1: lower "
        "per_device_train_batch_size .* gradient_checkpointing",
    ):
        train(
            config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "run"), echo=lambda _: None
        )
