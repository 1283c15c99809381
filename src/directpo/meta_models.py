"""FSDP2's meta-device build of a model: its architecture without memory, and the local
safetensors files each rank fills its shards from (``distributed.materialize``)."""

from __future__ import annotations

import os

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    GenerationConfig,
)

from directpo.adapters import adapter_base
from directpo.errors import ModelLoadError, first_line
from directpo.model_files import cached_snapshot
from directpo.model_preparation import (
    CONFIG_AS_LOADED,
    LoadOptions,
    prepared_model,
    zero_dropout_config,
)
from directpo.precision import DTYPES
from directpo.vision import is_vision_config
from directpo.weight_names import stored_names

WEIGHTS_FOLDER = "directpo_weights_folder"  # a meta model's attribute: where its weights are
WEIGHTS_KEYS = "directpo_weights_keys"  # and the file key of each parameter name
META_INIT_KWARGS = {"attn_implementation", "subfolder"}  # what a meta build can honour


def meta_weights_folder(path: str, options: LoadOptions) -> str | None:
    """The local folder of safetensors weights a meta-device build of ``path`` fills its shards
    from, or None when only a whole load can do (a hub id not in the local cache, an adapter
    folder, quantization, .bin weights, from_pretrained arguments a bare config cannot
    honour)."""
    kwargs = options.init_kwargs
    if options.quantization is not None or set(kwargs) - META_INIT_KWARGS:
        return None
    path = cached_snapshot(path)
    folder = os.path.join(path, kwargs["subfolder"]) if kwargs.get("subfolder") else path
    if not os.path.isdir(folder) or adapter_base(path) is not None:
        return None
    if not any(name.endswith(".safetensors") for name in os.listdir(folder)):
        return None
    return folder


def meta_model(
    path: str, dtype: str | torch.dtype, *, trainable: bool, options: LoadOptions
) -> torch.nn.Module | None:
    """The architecture of ``path`` with its parameters on the meta device (no memory) and its
    buffers (rotary tables) real; ``distributed.materialize`` fills the weights. None when the
    files do not hold every parameter by name or by a transformers renaming (tensors it
    converts, such as fused MoE experts): the caller then loads the model whole."""
    from accelerate import init_empty_weights

    folder = meta_weights_folder(path, options)
    if folder is None:
        raise ModelLoadError(f"model '{path}': no local safetensors weights to shard from")
    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=options.trust_remote_code)
        zeroed = zero_dropout_config(config) if options.disable_dropout else {}
        extra = {}
        if options.attn_implementation != "auto":
            extra["attn_implementation"] = options.attn_implementation
        elif "attn_implementation" in options.init_kwargs:
            extra["attn_implementation"] = options.init_kwargs["attn_implementation"]
        auto = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
        with init_empty_weights(include_buffers=False):
            model = auto.from_config(
                config, dtype=DTYPES.get(dtype, dtype),
                trust_remote_code=options.trust_remote_code, **extra,
            )  # fmt: skip
        model.tie_weights()  # tied on the meta device, they stay one tensor through sharding
        setattr(model, CONFIG_AS_LOADED, zeroed)
        _stored_generation_config(model, folder)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"model '{path}': cannot build as a causal LM ({first_line(exc)})"
        ) from None
    if not _files_cover(model, folder):
        return None
    setattr(model, WEIGHTS_FOLDER, folder)
    return prepared_model(model, trainable, options)


def _stored_generation_config(model: torch.nn.Module, folder: str) -> None:
    """The folder's generation_config.json on a model built from its config, as from_pretrained
    loads it: from_config derives one from config.json alone, so an FSDP run's final folder
    lost the base's (a chat model's end-of-turn ids in eos_token_id, where vLLM and TGI stop;
    its sampling defaults)."""
    if os.path.isfile(os.path.join(folder, "generation_config.json")):
        model.generation_config = GenerationConfig.from_pretrained(folder)


def safetensors_keys(folder: str) -> set[str]:
    """Every tensor name in a folder's safetensors files (read from their headers only)."""
    from safetensors import safe_open

    keys: set[str] = set()
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as handle:
                keys.update(handle.keys())
    return keys


def _files_cover(model: torch.nn.Module, folder: str) -> bool:
    """Whether the files hold every parameter, under its own name or one transformers renames
    while loading; the file key of each is kept on the model (``WEIGHTS_KEYS``)."""
    keys = file_keys(model, folder)
    if keys is None:
        return False
    names: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(param), []).append(name)
    setattr(model, WEIGHTS_KEYS, keys)
    return all(any(n in keys for n in aliases) for aliases in names.values())


def file_keys(model: torch.nn.Module, folder: str) -> dict[str, str] | None:
    """The model's parameter names -> their keys in the folder's safetensors files, through
    transformers' own checkpoint renamings (a vision-language model's files keep the older
    ``language_model.model.*`` names, for instance). None when a key needs more than a renaming
    (experts fused from many tensors, ...): such a model is loaded whole."""
    return stored_names(model, safetensors_keys(folder))
