"""What a launcher's environment says of this process: torchrun's, accelerate launch's (its
config's FSDP, DeepSpeed and mixed-precision choices reach the processes only as variables),
srun's and mpirun's."""

from __future__ import annotations

import os

import torch

from directpo.errors import ConfigError


def launched_size() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 for a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launcher_mode(mode: str, offload: bool) -> str:
    """``distributed`` as an ``accelerate launch`` config asks for it: such a config's FSDP or
    DeepSpeed choice reaches the processes only as environment variables, which went unread
    (a handbook launch with an FSDP or ZeRO-3 config trained every rank with the whole model
    under DDP). FSDP makes ``auto`` fsdp; DeepSpeed and contradictions are refused."""

    def asked(variable: str) -> bool:
        return os.environ.get(variable, "").lower() == "true"

    if asked("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError(
            "accelerate launch's config asks for DeepSpeed, which directpo does not run: launch "
            "without deepspeed_config (or with torchrun) and set distributed: fsdp (FSDP2 "
            "shards policy, gradients and optimizer state, as ZeRO-3 does)"
        )
    if not asked("ACCELERATE_USE_FSDP"):
        return mode
    if mode not in ("auto", "fsdp"):
        raise ConfigError(
            f"accelerate launch's config asks for FSDP but distributed is {mode}: set "
            "distributed: fsdp (or auto), or launch without the FSDP config"
        )
    if asked("FSDP_OFFLOAD_PARAMS") and not offload:
        raise ConfigError(
            "accelerate launch's config asks for fsdp_offload_params: set fsdp_offload: true "
            "(with distributed: fsdp), or turn it off in the accelerate config"
        )
    return "fsdp"


def check_launcher_precision(compute: torch.dtype) -> None:
    """An ``accelerate launch`` config's mixed_precision, which also reaches the processes only
    as an environment variable: bf16 asked there while the run computes in float32 trained in
    float32 without a word. It is refused unless it agrees (accelerate's default, no, is left
    to the run's own options)."""
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked in ("fp16", "fp8"):
        raise ConfigError(
            f"accelerate launch's config asks for mixed_precision {asked}, which directpo does "
            "not run: use bf16 (bf16: true), and launch with --mixed_precision bf16 or no"
        )
    if asked == "bf16" and compute != torch.bfloat16:
        raise ConfigError(
            "accelerate launch's config asks for mixed_precision bf16 but this run computes in "
            "float32: set bf16: true, or launch with --mixed_precision no"
        )
