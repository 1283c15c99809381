"""Lines said once at a run's start for settings that train otherwise than a user may expect:
a TRL recipe's settings that directpo trains otherwise by design (docs/migrating.md, "Curves
step by step against TRL 1.16"), said only where the recipe sets them, so that a curve that
parts from TRL's is not a surprise found later."""

from __future__ import annotations

from typing import Any

import torch

from directpo.preference_pairs import counted


def start_notes(config: Any, total_steps: int, lora: bool, eval_float32: bool = False) -> list[str]:
    """The lines a run of ``total_steps`` says at start; ``lora``: it trains adapters (lora_r,
    or a peft_config); ``eval_float32``: its held-out pairs are evaluated in float32."""
    notes = []
    if eval_float32 and config.eval_dtype == "auto":  # (asked for by name: nothing to say)
        notes.append(
            "held-out pairs are evaluated in float32 (eval_dtype: auto; bf16 rounds a young "
            "policy's change away): eval_dtype: bfloat16 evaluates as TRL does"
        )
    if config.precision.master == torch.bfloat16 and config.optimizer != "adamw_kahan":
        notes.append(
            f"warning: master_weights: bfloat16 with optimizer: {config.optimizer}: updates "
            "below 1/256 of a weight are rounded away; optimizer: adamw_kahan keeps them"
        )
    warmup = config.warmup_for(total_steps)
    if warmup >= total_steps > 0:  # (a recipe's warmup_steps: 100 on a run of 20 steps)
        peak = (total_steps - 1) / warmup  # the last step's learning rate, of learning_rate
        notes.append(
            f"warning: the warmup ({counted(warmup, 'step')}) is as long as the run "
            f"({counted(total_steps, 'step')}): the learning rate reaches at most {peak:.0%} of "
            "learning_rate; lower warmup_steps / warmup_ratio"
        )
    if config.lr_scheduler_type == "constant" and warmup > 0:
        # transformers' constant ignores num_warmup_steps: a warmup asked for is done here
        notes.append(
            f"lr_scheduler_type constant warms up over {counted(warmup, 'step')} (as "
            "constant_with_warmup; TRL's constant would not): warmup_steps: 0 (and warmup_ratio: "
            "0) for TRL's schedule"
        )
    if lora and config.lora_dropout > 0 and config.disable_dropout:
        # TRL's disable_dropout zeroes the LoRA branch's dropout too; here it stays as set
        notes.append(
            f"lora_dropout {config.lora_dropout:g} acts although disable_dropout is on (TRL's "
            "disable_dropout would set it to 0): lora_dropout: 0.0 for TRL's training"
        )
    if "sft" in config.loss_type:  # (rpo_alpha too: TRL 1.16 writes it as this sft)
        notes.append(
            "loss sft is the mean over pairs of each chosen completion's token mean (each pair "
            "weighs alike; TRL's: the token mean over each micro-batch, equal where the chosen "
            "completions have one length)"
        )
    return notes
