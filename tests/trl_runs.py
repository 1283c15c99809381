"""Both trainers on the same pairs: TRL's DPOTrainer and directpo's train(), their step logs."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer


def dpo_trainer(
    policy_dir: Path,
    ref_dir: Path,
    rows: list[dict],
    args: Any,
    auto: Any = AutoModelForCausalLM,
    processing: Any = AutoTokenizer,
    peft_config: Any = None,
) -> Any:
    """TRL's DPOTrainer of ``args`` (a trl.DPOConfig) on ``rows``, the policy and reference
    loaded by ``auto``, the tokenizer or processor by ``processing`` (with ``peft_config``: no
    reference model, TRL's adapter-disabled policy is it)."""
    import trl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return trl.DPOTrainer(
            model=auto.from_pretrained(policy_dir),
            ref_model=None if peft_config else auto.from_pretrained(ref_dir),
            args=args,
            train_dataset=datasets.Dataset.from_list(rows),
            processing_class=processing.from_pretrained(policy_dir),
            peft_config=peft_config,
        )


def trl_and_directpo_logs(
    policy_dir: Path, ref_dir: Path, rows: list[dict], out: Path,
    trl_only: dict | None = None, ours_only: dict | None = None, **options: Any,
) -> tuple[list[dict], list[dict]]:  # fmt: skip
    """(directpo's metrics rows, TRL's log_history rows with a loss) of one run each, in float32
    on the CPU, from the same models, pairs and options (names both configs take; ``trl_only``
    and ``ours_only``: each side's own, ``{"bf16": True}`` for bf16 on both)."""
    import trl

    from directpo.config import DPOConfig
    from directpo.trainer import train

    args = trl.DPOConfig(**dict(
        output_dir=str(out / "trl"), report_to="none", use_cpu=True, bf16=False,
        save_strategy="no", disable_tqdm=True, **options,
    ) | (trl_only or {}))  # fmt: skip
    trainer = dpo_trainer(policy_dir, ref_dir, rows, args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    theirs = [row for row in trainer.state.log_history if "loss" in row]
    config = DPOConfig(**dict(
        model_name_or_path=str(policy_dir), ref_model_name_or_path=str(ref_dir),
        output_dir=str(out / "ours"), report_to=["none"], save_steps=0, **options,
    ) | (ours_only or {}))  # fmt: skip
    ours = train(config, train_dataset=rows, echo=lambda *_: None).metrics
    return ours, theirs
