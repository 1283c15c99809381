"""The options a run's device or process count cannot train with, refused before any data or
model loads: CUDA-only kernels (and QLoRA's quantization) off CUDA, a kernel's package not
installed, a device_map under torchrun."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from typing import TYPE_CHECKING

from directpo.callers import said, spell_given, spell_setting, spell_value
from directpo.errors import refuse_all

if TYPE_CHECKING:
    from directpo.config import DPOConfig


def check_device(config: DPOConfig, device_type: str, processes: str = "none") -> None:
    """Options that train on CUDA only, or in one process only (``processes``: the run's
    distributed mode), refused before any data or model is loaded; all of them at once."""
    problems: list[str] = []
    for name in ("model_init_kwargs", "ref_model_init_kwargs"):
        if processes != "none" and "device_map" in (getattr(config, name) or {}):
            # each rank places its model on its own GPU; a device map spread it over every GPU
            # the rank sees (accelerate's hooks then send activations back to those devices)
            problems.append(
                f"{name}: device_map places a model in one process only; under distributed: "
                f"{processes} each process puts its model on its own GPU: remove device_map"
            )
    if device_type != "cuda":
        problems += _cuda_only(config, device_type)
    else:
        problems += _kernels_missing(config)
    refuse_all(problems)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _kernels_missing(config: DPOConfig) -> list[str]:
    """The CUDA options whose package is not installed, each in a line: refused when the model
    loads, after the data was read and tokenized (minutes on a large set)."""
    problems = []
    if config.use_liger_kernel and not _installed("liger_kernel"):
        problems.append(
            "use_liger_kernel: liger-kernel is not installed; pip install liger-kernel, or "
            f"remove {spell_given('use_liger_kernel', True)}"
        )
    # transformers takes the Hub's flash-attn kernel instead where the kernels package is there
    flash = _installed("flash_attn") or _installed("kernels")
    if config.attn_implementation == "flash_attention_2" and not flash:
        problems.append(
            f"{said('attn_implementation', 'flash_attention_2')} needs flash-attn (pip install "
            "flash-attn --no-build-isolation, or pip install kernels for the Hub's build); or "
            f"{spell_setting(('attn_implementation', 'auto'))}"
        )
    if (quantized := _quantized(config)) and not _installed("bitsandbytes"):
        problems.append(
            f"{said(quantized, True)} needs bitsandbytes: pip install bitsandbytes, or remove "
            f"{spell_given(quantized, True)} (LoRA without quantization)"
        )
    return problems


def _quantized(config: DPOConfig) -> str | None:
    """The QLoRA option set (load_in_4bit or load_in_8bit), or None: bitsandbytes refused it
    only when the model loaded, after the data was read and tokenized (the alignment-handbook's
    config_qlora.yaml on a machine without a GPU: its flash_attention_2 fixed, a second run)."""
    return next((name for name in ("load_in_4bit", "load_in_8bit") if getattr(config, name)), None)


def _cuda_only(config: DPOConfig, device_type: str) -> list[str]:
    """The options set that need CUDA, each in a line, for a run on ``device_type``."""
    problems = []
    dense = _dense_kernel(config.model_name_or_path)
    # (was "use auto or sdpa" for every caller, of no option named)
    instead = f"{spell_setting(('attn_implementation', 'auto'))} or {spell_value(dense)}"
    if config.attn_implementation == "flex_attention":
        problems.append(
            f"{said('attn_implementation', 'flex_attention')} trains on CUDA only (PyTorch's "
            f"FlexAttention has no backward on {device_type}); {instead}"
        )
    if config.attn_implementation == "flash_attention_2":
        # transformers would refuse it only when the model loads, after the data was tokenized
        problems.append(
            f"{said('attn_implementation', 'flash_attention_2')} runs on CUDA only "
            f"(FlashAttention's kernels), and this run is on {device_type}; {instead}"
        )
    if config.use_liger_kernel:
        problems.append(
            f"use_liger_kernel: Liger's kernels are Triton kernels for CUDA, and this run is "
            f"on {device_type}; remove {spell_given('use_liger_kernel', True)}"
        )
    if quantized := _quantized(config):
        problems.append(
            f"{said(quantized, True)} needs a CUDA GPU (bitsandbytes' quantized kernels), and "
            f"this run is on {device_type}; remove {spell_given(quantized, True)} to train LoRA "
            "without quantization"
        )
    return problems


def _dense_kernel(model: str | None) -> str:
    """The kernel a model runs without CUDA's: sdpa, or eager for a local model whose attention
    logits are soft-capped (Gemma 2), which transformers refuses to run through SDPA (the
    hint 'use auto or sdpa' was refused a run later)."""
    path = os.path.join(str(model), "config.json")
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError), open(path) as handle:
        if json.load(handle).get("attn_logit_softcapping") is not None:
            return "eager"
    return "sdpa"
