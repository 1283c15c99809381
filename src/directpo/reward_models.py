"""The models an ``ImplicitReward`` scores with: a model object as given or a folder loaded
(onto CUDA when there is one), a training run's reference as the model it scores with, whether
a reference is the PEFT policy's own base (scored with the adapters off), whether a model can
compute in float32 as it is, and the optimizer steps a run folder's weights went through."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from directpo.adapter_starts import rewrites_base
from directpo.errors import ConfigError
from directpo.logprobs import unwrap_peft
from directpo.model_preparation import LoadOptions
from directpo.models import load_causal_lm
from directpo.reference import AdapterDisabledReference, FrozenModelReference

ModelLike = torch.nn.Module | str


def reference_model(reference: Any, policy: torch.nn.Module) -> ModelLike | None:
    """A training run's reference (``train(...).reference``) as the model it scores with."""
    if isinstance(reference, FrozenModelReference):
        return reference.model
    if isinstance(reference, AdapterDisabledReference) and reference.model is policy:
        return policy.get_base_model()  # LoRA: the base, i.e. the policy with adapters off
    if reference is None or isinstance(reference, str | torch.nn.Module):
        return reference
    raise ConfigError(
        f"reference must be a model, a model folder or None, got {type(reference).__name__} "
        "(a run's precomputed or adapter reference: pass its reference folder)"
    )


def is_base_of(policy: torch.nn.Module, reference: ModelLike) -> bool:
    """``reference`` is the model (or folder) the PEFT ``policy``'s adapters were put on: an
    object that get_peft_model changed in place holds the adapters too. Never for adapters that
    rewrote the base (PiSSA, ...): with them off it is not the base as stored."""
    configs = getattr(policy, "peft_config", None)
    if configs and any(map(rewrites_base, configs.values())):
        return False
    if configs and isinstance(reference, torch.nn.Module):
        return policy.get_base_model() is reference
    if not configs or not isinstance(reference, str):
        return False
    bases = {getattr(c, "base_model_name_or_path", None) for c in configs.values()}
    return any(b and os.path.abspath(b) == os.path.abspath(reference) for b in bases)


def given_path(given: ModelLike | None, model: torch.nn.Module) -> str:
    """Where a model came from, as a message names it: the folder given, else the object's
    ``name_or_path``."""
    return given if isinstance(given, str) else str(getattr(model, "name_or_path", "") or "")


def model_or_path(model: ModelLike | os.PathLike | None) -> ModelLike | None:
    """A model object as given, a folder as a string (a ``pathlib.Path`` too)."""
    return os.fspath(model) if isinstance(model, os.PathLike) else model


def load_scoring_model(
    model: ModelLike,
    dtype: str | torch.dtype,
    device: torch.device | None,
    options: LoadOptions,
) -> torch.nn.Module:
    """A model object as given; a folder loaded onto ``device`` (default: CUDA if present)
    with ``options`` (from_pretrained's keyword arguments, trust_remote_code)."""
    if isinstance(model, str):
        if device is None:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return load_causal_lm(model, dtype, trainable=False, device=str(device), options=options)
    return model


def steps_done(run_dir: str | os.PathLike) -> int | None:
    """The optimizer steps a run folder's (or checkpoint's) weights went through, from its
    trainer_state.json; None where it has none readable."""
    import json

    try:
        state = json.loads((Path(run_dir) / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    step = state.get("global_step") if isinstance(state, dict) else None
    return step if isinstance(step, int) else None


def runs_in_float32(model: torch.nn.Module) -> bool:
    """Whether ``model`` can compute in float32 as it is: not a quantized base (its layers
    compute in their own dtype), nor FlashAttention (no float32 kernel)."""
    inner = unwrap_peft(model)
    attention = getattr(getattr(inner, "config", None), "_attn_implementation", None) or ""
    # (flash_attention_2/3 and the hub's kernels-community/flash-attn*: bf16/fp16 kernels)
    return not getattr(inner, "is_quantized", False) and "flash" not in attention


def device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
