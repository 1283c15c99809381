"""How a run's adapters start: LoRA's A and B drawn under the run's seed as TRL's
``get_peft_model`` draws them (on a meta base too), fresh DoRA magnitudes at the compute dtype,
and the base-rewriting initialisations (PiSSA, OLoRA, CorDA, LoftQ): the reference they imply,
and their folders written as plain LoRA on the stored base (and read back for a resume)."""

from __future__ import annotations

import copy
import json
import math
import weakref
from pathlib import Path
from typing import Any

import torch

from directpo.adapters import adapter_config

RESETTABLE_LORA_INITS = (True, False, "gaussian")  # peft draws these from the RNG alone


def initialize_adapters(model: torch.nn.Module, names: list[str] | None = None) -> None:
    """(Re)draw LoRA adapters' A and B with peft's own initialisation, module by module in
    order: called under one seed, the values are the same whether the base is real or on the
    meta device (where the adapters are first given CPU memory), and on every rank. Adapters
    whose initialisation needs the base's weights (PiSSA, OLoRA, ...) keep peft's."""
    from peft.tuners.lora import LoraLayer

    configs = getattr(model, "peft_config", {})
    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name in names or list(module.lora_A):
            init = configs[name].init_lora_weights
            if name not in module.lora_A or init not in RESETTABLE_LORA_INITS:
                continue
            if module.lora_A[name].weight.is_meta:
                module.lora_A[name].to_empty(device="cpu")
                module.lora_B[name].to_empty(device="cpu")
            # init_lora_weights False: peft keeps the constructors' draws, which are the start
            _draw_construction(module.lora_A[name], module.lora_B[name], kept=init is False)
            module.reset_lora_parameters(name, init)
            if init is False:  # (DoRA's magnitudes: the norms of W + BA as now drawn)
                _dora_magnitude_again(module, name)


def _draw_construction(lora_a: torch.nn.Module, lora_b: torch.nn.Module, kept: bool) -> None:
    """Take from the RNG what peft's nn.Linear constructors take before it resets A and B, so
    that a seed gives the adapters get_peft_model draws right after set_seed (TRL's order:
    the same LoRA start as a TRL run of that seed, where A alone differed). ``kept``: the
    draws are the adapters' values (init_lora_weights False, which peft does not reset: they
    kept get_peft_model's unseeded draws, or on a meta base memory never written)."""
    for layer in (lora_a, lora_b):
        if isinstance(layer, torch.nn.Linear):  # (embeddings' and convolutions' adapters: own)
            # (nn.Linear.reset_parameters' draws, on CPU tensors as peft builds them)
            weight = torch.empty(layer.out_features, layer.in_features)
            torch.nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            bias = None
            if layer.bias is not None:
                bound = 1 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
                bias = torch.empty(layer.out_features).uniform_(-bound, bound)
            if kept:
                with torch.no_grad():
                    layer.weight.copy_(weight)
                    if bias is not None:
                        layer.bias.copy_(bias)


def _dora_magnitude_again(module: torch.nn.Module, name: str) -> None:
    """A linear DoRA adapter's magnitude computed again from its A and B, as peft's DoRA
    variant computes it when the adapter is added (embeddings' and convolutions': their own)."""
    from peft.tuners.lora.dora import DoraLinearLayer

    magnitude = dict(getattr(module, "lora_magnitude_vector", {})).get(name)  # (a ModuleDict)
    if type(magnitude) is DoraLinearLayer:
        magnitude.update_layer(
            base_layer=module.get_base_layer(),
            lora_A=module.lora_A[name].weight,
            lora_B=module.lora_B[name].weight,
            scaling=module.scaling[name],
        )


def align_dora_magnitudes(model: torch.nn.Module, compute: torch.dtype) -> None:
    """Fresh DoRA magnitudes set to the column norms of the weights as the forward sees them:
    ``compute``-dtype copies of the base. peft sets them from the float32 base, whose norms
    round to other bf16 values than the bf16 base's: under mixed precision m / ||W|| was then
    not exactly 1 and the policy started about 1e-4 off its reference (the same model with the
    adapters off). Fresh adapters only: B is zero, so W + BA is W (a trained magnitude stays)."""
    from peft.tuners.lora import LoraLayer
    from peft.tuners.lora.dora import DoraLinearLayer
    from peft.utils.integrations import dequantize_module_weight

    for module in model.modules():
        if not isinstance(module, LoraLayer):
            continue
        for name, magnitude in getattr(module, "lora_magnitude_vector", {}).items():
            if type(magnitude) is not DoraLinearLayer:
                continue  # embeddings and convolutions: a norm over other weights and dimensions
            lora_a, lora_b = module.lora_A[name], module.lora_B[name]
            if lora_b.weight.is_meta or bool(lora_b.weight.detach().any()):
                continue
            with torch.no_grad():
                weight = dequantize_module_weight(module.get_base_layer()).to(compute)
                lora_weight = magnitude.get_lora_weight(lora_a, lora_b).to(compute)
                norm = magnitude.get_weight_norm(weight, lora_weight, module.scaling[name])
                magnitude.weight.data = norm.to(magnitude.weight.dtype)


# LoRA initialisations that move part of each base weight into the adapter (W = W_res + B0 A0):
# the base with adapters off is then W_res, not the model the run starts from, and peft
# redoes the subtraction whenever such an adapter is added or loaded again
_BASE_REWRITING_INITS = ("pissa", "olora", "corda", "loftq")  # pissa: also pissa_niter_<n>


def rewrites_base(peft_config: Any) -> bool:
    """Whether ``peft_config``'s adapters start by rewriting the base weights (PiSSA, OLoRA,
    CorDA, LoftQ): the reference is then the starting adapter, never the adapters off."""
    init = getattr(peft_config, "init_lora_weights", True)
    return isinstance(init, str) and init.lower().startswith(_BASE_REWRITING_INITS)


def reference_adapter_config(peft_config: Any) -> Any:
    """``peft_config`` for a frozen copy of an adapter added beside it (its values copied in
    afterwards): initialised plainly, since a base-rewriting init would rewrite the base again
    under both adapters."""
    if not rewrites_base(peft_config):
        return peft_config
    plain = copy.copy(peft_config)
    plain.init_lora_weights = True
    return plain


# the fresh A0 / B0 of each model's base-rewriting adapter, kept to write it as plain LoRA
_STARTS: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, torch.Tensor]] = (
    weakref.WeakKeyDictionary()
)


def remember_start(model: torch.nn.Module) -> None:
    """Keep a CPU copy of the active adapter's starting A0 / B0 when its initialisation
    rewrote the base (PiSSA, OLoRA): peft computes W_res again whenever such a folder is
    loaded, from a randomized SVD with pissa_niter_N (another W_res: another model), so the
    folders directpo writes hold the adapter as plain LoRA on the stored base instead."""
    config = model.peft_config[model.active_adapter]
    if not rewrites_base(config):
        return
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, adapter_name=model.active_adapter)
    _STARTS[model] = {
        key: value.detach().to("cpu", torch.float32, copy=True)
        for key, value in state.items()
        if ".lora_A." in key or ".lora_B." in key
    }


def write_as_plain_lora(model: torch.nn.Module, folder: Path) -> None:
    """Rewrite the adapter folder ``folder`` of ``model``'s base-rewriting adapter as peft's
    ``path_initial_model_for_weight_conversion`` does: W_res + BA = W + [B | -B0][A | A0], a
    LoRA of rank 2r with the same scaling, loaded on the stored W with no SVD (so the same
    model wherever it loads). No-op for other adapters."""
    start = _STARTS.get(model)
    if start is None:
        return
    from safetensors.torch import load_file, save_file

    weights = folder / "adapter_model.safetensors"
    tensors = load_file(weights)
    for key, value in tensors.items():
        if key in start:
            initial = start[key].to(value.dtype)
            if ".lora_A." in key:
                tensors[key] = torch.cat([value, initial], dim=0)
            else:
                tensors[key] = torch.cat([value, -initial], dim=1)
    save_file(tensors, weights, metadata={"format": "pt"})
    fields = adapter_config(str(folder))
    fields["init_lora_weights"] = True
    fields["r"] *= 2
    # scaling alpha / r (rsLoRA: alpha / sqrt(r)) kept as trained
    alpha_factor = math.sqrt(2) if fields.get("use_rslora") else 2
    fields["lora_alpha"] *= alpha_factor
    for pattern, factor in (("rank_pattern", 2), ("alpha_pattern", alpha_factor)):
        fields[pattern] = {k: factor * v for k, v in (fields.get(pattern) or {}).items()}
    (folder / "adapter_config.json").write_text(json.dumps(fields, indent=2, sort_keys=True))


def as_trained_adapter(
    model: torch.nn.Module, tensors: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The adapter weights ``tensors`` of a folder ``write_as_plain_lora`` wrote, back in the
    form ``model`` trains (A, B of rank r on W_res: the first r rows of [A | A0], columns of
    [B | -B0]); any other weights as they are."""
    start = _STARTS.get(model, {})
    kept = {}
    for key, value in tensors.items():
        rank = start[key].shape[0 if ".lora_A." in key else 1] if key in start else None
        doubled = rank is not None and value.shape[0 if ".lora_A." in key else 1] == 2 * rank
        if doubled and ".lora_A." in key:
            value = value[:rank]
        elif doubled:
            value = value[:, :rank]
        kept[key] = value
    return kept
