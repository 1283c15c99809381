from __future__ import annotations

import math

import pytest
import torch
from tiny import tiny_config

import directpo.step as step_module
from directpo.config import DPOConfig
from directpo.errors import TrainingStopped
from directpo.trainer import train


def poison(monkeypatch, bad_calls: set[int] | None) -> None:
    """Make the loss NaN on the given call numbers (1-based), or on every call (None)."""
    real = step_module.preference_loss
    calls = {"n": 0}

    def loss(*args, **kwargs):
        calls["n"] += 1
        total, parts = real(*args, **kwargs)
        if bad_calls is None or calls["n"] in bad_calls:
            total = total * float("nan")
        return total, parts

    monkeypatch.setattr(step_module, "preference_loss", loss)


def config_for(model, data, out, **overrides) -> DPOConfig:
    return tiny_config(model, data, out, **{"max_steps": 4, **overrides})


def test_a_nan_step_is_skipped_and_counted(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    poison(monkeypatch, {2})
    result = train(
        config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out"), echo=lambda _: None
    )
    rows = {row["step"]: row for row in result.metrics}
    assert rows[2].get("nonfinite_steps") == 1 and "loss" not in rows[2], rows
    assert all(
        "nonfinite_steps" not in rows[s] and math.isfinite(rows[s]["loss"]) for s in (1, 3, 4)
    )
    assert all(torch.isfinite(p).all() for p in result.policy.parameters())


def test_repeated_nans_stop_the_run_naming_step_and_rows(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    poison(monkeypatch, None)
    out = tmp_path / "out"
    with pytest.raises(TrainingStopped) as info:
        train(
            config_for(
                tiny_model_dirs["gpt2"],
                pairs_file,
                out,
                max_nonfinite_steps=2,
                max_steps=10,
                save_steps=1,
            ),
            echo=lambda _: None,
        )
    message = str(info.value)
    assert message.startswith("step 3: non-finite loss or gradient in 3 steps in a row")
    assert f"{pairs_file}: line" in message and "\n" not in message
    assert info.value.exit_code == 1
    # checkpoints written before the stop are untouched; no final model is written
    assert not (out / "model.safetensors").exists()
