"""Whether the disk holds what a run will write: the final model and one checkpoint, counted
before any model trains, with what overwriting an earlier run frees."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from directpo.config import DPOConfig
from directpo.errors import ConfigError


def check_free_space(
    output_dir: Path, policy: torch.nn.Module, config: DPOConfig, freed: int = 0
) -> None:
    """Refuse to start when the disk cannot hold the final model and one checkpoint, counting
    ``freed``: what this run deletes before it writes (an overwritten run's checkpoints, which
    refused an overwrite for want of the space they would give back)."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    precision = config.precision
    master_bytes = torch.finfo(precision.master).bits // 8
    save_bytes = torch.finfo(precision.save).bits // 8

    def count(params: Any) -> int:
        return sum(p.numel() for p in params)

    checkpoint_weights = count(trainable if config.lora_r else policy.parameters()) * master_bytes
    final = count(policy.parameters() if config.merge_lora or not config.lora_r else trainable)
    optimizer_states = {"adamw": 2, "adamw_kahan": 3, "rmsprop": 1}[config.optimizer]
    optimizer_bytes = optimizer_states * master_bytes * count(trainable)
    if config.save_only_model:  # (a signal's checkpoint still holds it, if the disk allows)
        optimizer_bytes = 0
    checkpoint = checkpoint_weights + optimizer_bytes if config.save_steps else 0
    # TR-DPO's moved reference, in the compute dtype, beside the final model and in checkpoints
    moved = 0
    if config.sync_ref_model:
        moved = count(trainable if config.lora_r else policy.parameters())
        moved *= torch.finfo(precision.compute).bits // 8
    need = 1.1 * (final * save_bytes + moved + (checkpoint + moved if checkpoint else 0))
    free = shutil.disk_usage(output_dir).free + freed
    if free < need:
        replaced = f" (with the {amount(freed)} overwriting frees)" if freed else ""
        raise ConfigError(
            f"output_dir {output_dir}: {amount(free)} free{replaced}, but the final model and "
            f"one checkpoint need about {amount(need)}"
        )


def amount(size: float) -> str:
    """Bytes in GiB, or MiB below one (a small model's "0.00 GiB free, need 0.00 GiB")."""
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def disk_size(paths: list[Path]) -> int:
    """Bytes of the files at and under ``paths`` (links not followed)."""
    files = [p for path in paths for p in ([path] if not path.is_dir() else path.rglob("*"))]
    return sum(p.lstat().st_size for p in files if p.is_file() and not p.is_symlink())
