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
    assert rows[2].get("nonfinite_steps") == 1, rows
    assert all(
        "nonfinite_steps" not in rows[s] and math.isfinite(rows[s]["loss"]) for s in (1, 3, 4)
    )
    assert all(torch.isfinite(p).all() for p in result.policy.parameters())
    # the skipped step's row has every key of the others (it lacked the pair metrics and
    # TRL's token statistics: logits/*, entropy, mean_token_accuracy), NaN as nothing that
    # trained was measured; its update moved nothing
    assert rows[2].keys() == rows[1].keys() | {"nonfinite_steps"}
    measured = [k for k in rows[1] if k.startswith(("loss", "rewards/", "logps/", "logits/"))]
    assert {"entropy", "mean_token_accuracy", "logits/chosen", "rewards/margins"} < set(rows[1])
    assert all(math.isnan(rows[2][k]) for k in [*measured, "entropy", "mean_token_accuracy"])
    assert rows[2]["update_ratio"] == 0.0


def test_a_skipped_step_in_a_window_leaves_the_kept_steps_means(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """With logging_steps 2 the window of steps 1-2 logs step 1's means (the skipped step's
    NaN stays out), and a final window of one skipped step still logs every key."""
    poison(monkeypatch, {2, 3})
    result = train(
        config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out", logging_steps=2,
                   max_steps=3),
        echo=lambda _: None,
    )  # fmt: skip
    rows = {row["step"]: row for row in result.metrics}
    assert rows[2]["nonfinite_steps"] == 1 and math.isfinite(rows[2]["loss"])
    # TRL's token statistics are measured at the logging step, which was skipped: NaN
    assert math.isnan(rows[2]["entropy"]) and math.isnan(rows[2]["logits/chosen"])
    assert rows[3].keys() == rows[2].keys() and math.isnan(rows[3]["entropy"])
    # the model card's final metrics are the last measured ones, not the NaN row's
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"| loss | {rows[2]['loss']:.6g} |" in card


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
