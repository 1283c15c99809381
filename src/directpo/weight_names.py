"""Weights as transformers stores them ↔ the model's parameter names.

``from_pretrained`` renames (and for some models converts) the stored tensors as it loads them:
a vision-language model's files say ``visual.*`` / ``language_model.model.*`` where the model
has ``model.visual.*`` / ``model.language_model.*``, and Mixtral-style files hold one tensor per
expert where the model holds them fused. ``save_pretrained`` reverts all of it, so a checkpoint
it wrote does not load into the model by name; these functions apply transformers' own
conversion mapping, as ``from_pretrained`` does.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


def _transforms(model: torch.nn.Module) -> tuple[list[Any], list[Any]] | None:
    """The model's (renamings, converters), or None for a transformers without them."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming
    except ImportError:  # a transformers without conversion mappings: names are as stored
        return None
    transforms = get_model_conversion_mapping(model)
    return (
        [t for t in transforms if isinstance(t, WeightRenaming)],
        [t for t in transforms if isinstance(t, WeightConverter)],
    )


def _namer(model: torch.nn.Module, transforms: tuple[list[Any], list[Any]]) -> Any:
    """key -> (the model's name for a stored key, the converter pattern that takes it or None);
    the model's state_dict taken once (a MoE checkpoint holds thousands of expert keys)."""
    from transformers.core_model_loading import rename_source_key

    expected = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None)

    def name_of(key: str) -> tuple[str, str | None]:
        name, pattern = rename_source_key(key, *transforms, prefix, expected)
        if name not in expected and key in expected:  # as transformers: no rename after all
            name, pattern = rename_source_key(key, [], [], prefix, expected)
        return name, pattern

    return name_of


def stored_names(model: torch.nn.Module, keys: set[str]) -> dict[str, str] | None:
    """The model's parameter names -> their stored keys, through transformers' renamings.
    None when a key needs more than a renaming (experts fused from many tensors, ...)."""
    transforms = _transforms(model)
    if transforms is None:
        return {key: key for key in keys}
    name_of = _namer(model, transforms)
    names: dict[str, str] = {}
    for key in keys:
        name, pattern = name_of(key)
        if pattern is not None:
            return None
        names[name] = key
    return names


def as_model_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Tensors as ``save_pretrained`` wrote them, under the model's parameter names (renamed,
    and converted where transformers converts them at load); keys it has no name for stay."""
    transforms = _transforms(model)
    if transforms is None:
        return state
    by_pattern = {pattern: c for c in transforms[1] for pattern in c.source_patterns}
    named: dict[str, torch.Tensor] = {}
    pending: dict[str, Any] = {}  # a converter per target name, collecting its source tensors
    name_of = _namer(model, transforms)
    for key in sorted(state, key=_natural):
        name, pattern = name_of(key)
        if pattern is None:
            named[name] = state[key]
            continue
        converter = pending.setdefault(name, copy.deepcopy(by_pattern[pattern]))
        converter.add_tensor(name, key, pattern, state[key])
    for name, converter in pending.items():
        converted = converter.convert(name, model=model, config=getattr(model, "config", None))
        for target, value in converted.items():
            named[target] = value[0] if isinstance(value, list) else value
    return named


def _natural(key: str) -> Any:
    """Keys in transformers' load order (experts 0, 1, ..., 10: numerically)."""
    from transformers.core_model_loading import dot_natural_key

    return dot_natural_key(key)
