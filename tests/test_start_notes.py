"""The lines a run says at start for settings a TRL recipe would train otherwise."""

from __future__ import annotations

import torch
from tiny import tiny_config

from directpo.config import DPOConfig
from directpo.start_notes import start_notes
from directpo.trainer import train


def _scheduled_lrs(config: DPOConfig, steps: int) -> list[float]:
    parameter = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([parameter], lr=config.learning_rate)
    schedule = config.schedule(optimizer, steps)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_a_constant_schedule_with_warmup_says_it_warms_up_where_trl_would_not() -> None:
    config = DPOConfig(lr_scheduler_type="constant", warmup_steps=2, learning_rate=1.0)
    assert _scheduled_lrs(config, 4) == [0.0, 0.5, 1.0, 1.0]  # the warmup asked for is done
    (note,) = start_notes(config, 4, lora=False)
    assert note.startswith("lr_scheduler_type constant warms up over 2 steps")
    assert "TRL's constant would not" in note and "warmup_steps: 0" in note
    ratio = DPOConfig(lr_scheduler_type="constant", warmup_ratio=0.25)
    assert "over 3 steps" in start_notes(ratio, 10, lora=False)[0]
    # nothing to say: no warmup, or TRL's own constant_with_warmup (which it warms up too)
    assert start_notes(DPOConfig(lr_scheduler_type="constant"), 4, lora=False) == []
    named = DPOConfig(lr_scheduler_type="constant_with_warmup", warmup_steps=2, learning_rate=1.0)
    assert start_notes(named, 4, lora=False) == []
    assert _scheduled_lrs(named, 4) == [0.0, 0.5, 1.0, 1.0]
    assert start_notes(DPOConfig(warmup_steps=2), 4, lora=False) == []  # linear: TRL's too


def test_lora_dropout_under_disable_dropout_is_said_once_where_trl_would_zero_it() -> None:
    config = DPOConfig(lora_r=8, lora_dropout=0.05)
    (note,) = start_notes(config, 4, lora=True)
    assert note.startswith("lora_dropout 0.05 acts although disable_dropout is on")
    assert start_notes(DPOConfig(lora_r=8, lora_dropout=0.05, disable_dropout=False), 4, True) == []
    assert start_notes(DPOConfig(lora_r=8), 4, lora=True) == []  # 0.0: TRL's training


def test_a_run_says_its_constant_warmup_at_start(tiny_model_dirs, pairs_file, tmp_path) -> None:
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=2,
        lr_scheduler_type="constant", warmup_steps=1,
    )  # fmt: skip
    train(config, echo=lines.append)
    assert (
        sum(line.startswith("lr_scheduler_type constant warms up over 1 step ") for line in lines)
        == 1
    )


def test_a_bf16_runs_float32_evaluation_is_said_once_where_trl_evaluates_in_bf16() -> None:
    config = DPOConfig(dtype="bfloat16")
    (note,) = start_notes(config, 4, lora=False, eval_float32=True)
    assert note.startswith("held-out pairs are evaluated in float32 (eval_dtype: auto")
    assert "eval_dtype: bfloat16 evaluates as TRL does" in note
    assert start_notes(config, 4, lora=False) == []  # no held-out pairs, or not in float32
    asked = DPOConfig(dtype="bfloat16", eval_dtype="float32")
    assert start_notes(asked, 4, lora=False, eval_float32=True) == []  # chosen by name


def test_the_sft_loss_says_its_mean_once_where_trl_takes_the_micro_batchs_token_mean() -> None:
    for config in (DPOConfig(loss_type=["sigmoid", "sft"]), DPOConfig(rpo_alpha=0.5)):
        (note,) = start_notes(config, 4, lora=False)
        assert note.startswith("loss sft is the mean over pairs of each chosen completion's")
    assert start_notes(DPOConfig(loss_type=["sigmoid", "hinge"]), 4, lora=False) == []


def test_a_warmup_as_long_as_the_run_is_said_with_the_peak_it_reaches() -> None:
    """warmup_steps: 100 on a run of 20 steps trained at a fifth of learning_rate at most,
    without a word."""
    config = DPOConfig(warmup_steps=100, learning_rate=1.0)
    (note,) = start_notes(config, 20, lora=False)
    assert note.startswith("warning: the warmup (100 steps) is as long as the run (20 steps)")
    assert "reaches at most 19% of learning_rate" in note
    assert max(_scheduled_lrs(config, 20)) == 0.19
    assert start_notes(DPOConfig(warmup_steps=19), 20, lora=False) == []
