"""TR-DPO (Gorbatovski et al. 2024, https://arxiv.org/abs/2404.09656): the reference follows
the policy. Every ``ref_model_sync_steps`` optimizer steps,

    θ_ref ← α·θ_π + (1 − α)·θ_ref,    α = ``ref_model_mixup_alpha``

(α = 1 is the paper's hard update; TRL's ``SyncRefModelCallback`` does the same soft update).
The policy side is the float32 masters under mixed precision; under FSDP2 both models are
sharded alike and each rank mixes its own shards.

With LoRA (a fresh adapter, or a continued one) the reference is a second adapter, ``ref``,
switched in for the reference pass (reference.AdapterReference): it starts as a copy of the
policy's adapter, so at step 0 the reference is the policy, and each sync copies the policy's
adapter into it. Only that hard update (α = 1) is allowed with adapters: mixing the factors,
α·A + (1 − α)·A_ref and α·B + (1 − α)·B_ref, is not the weight-space mix of B·A (which would
need an adapter of twice the rank), so it would not be the paper's update. (TRL refuses
sync_ref_model with PEFT altogether.)

The reference is state: checkpoints hold it (``reference.safetensors``) and resume restores it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

REF_ADAPTER = "ref"


def in_ref_adapter(name: str) -> bool:
    """A weight of the ``ref`` adapter: peft names it ``...lora_A.ref.weight``, or ends the
    name with it (trainable_token_indices' ``token_adapter.trainable_tokens_delta.ref``, which
    a test for ``.ref.`` missed: TR-DPO left those rows behind and its final save failed)."""
    return REF_ADAPTER in name.split(".")


def policy_twin(name: str) -> str:
    """The policy's (``default`` adapter's) weight that the ``ref`` adapter's ``name`` copies."""
    return ".".join("default" if part == REF_ADAPTER else part for part in name.split("."))


def _strip(name: str) -> str:
    return name.removeprefix("module.")  # DDP's wrapper


def _local(tensor: torch.Tensor) -> torch.Tensor:
    to_local = getattr(tensor, "to_local", None)  # an FSDP2 shard (DTensor)
    return to_local() if to_local is not None else tensor


def _own_adapter(run: Any) -> bool:
    from directpo.reference import AdapterReference

    return isinstance(run.reference, AdapterReference)


def _resharded(run: Any) -> None:
    """FSDP2 leaves a root module's own weights gathered after a forward without backward (the
    reference pass): writes must go to the shards, so both models are resharded first."""
    for module in (run.scorer, run.reference.scorer):
        reshard = getattr(module, "reshard", None)  # an FSDP2 module
        if reshard is not None:
            reshard()


def reference_parameters(run: Any) -> dict[str, torch.Tensor]:
    """The reference's weights that follow the policy, by name (sharded under FSDP2)."""
    _resharded(run)
    if _own_adapter(run):
        return {_strip(n): p for n, p in run.scorer.named_parameters() if in_ref_adapter(n)}
    return {_strip(n): p for n, p in run.reference.scorer.named_parameters()}


def reference_pairs(run: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(reference weight, the policy weight it follows): the float32 master under mixed
    precision, the same-named parameter of the policy otherwise."""
    policy = {_strip(n): p for n, p in run.scorer.named_parameters()}
    masters = run.masters._master_of if run.masters is not None else {}
    pairs = []
    for name, reference in reference_parameters(run).items():
        source = policy_twin(name) if _own_adapter(run) else name
        if source not in policy:
            raise RuntimeError(f"sync_ref_model: the policy has no weight {source}")
        followed = policy[source]
        pairs.append((reference, masters.get(id(followed), followed)))
    return pairs


def followed_weights(run: Any) -> dict[int, torch.Tensor]:
    """The float32 weight each followed reference parameter is mixed in, by the parameter's id:
    the parameter itself where it is float32; under bf16, its float32 weight kept beside it
    (``run.reference_masters``, which a float32 evaluation reads too), from the float32 start
    where one was kept. Rounding each mix back to bf16 instead kept a soft update (α < 1)
    smaller than half of bf16's grid from ever moving the reference: at DPO's learning rates it
    stopped following the policy (TRL mixes its float32 reference)."""
    kept = run.reference_masters._master_of if run.reference_masters is not None else {}
    weights, masters = {}, {}
    for param in reference_parameters(run).values():
        local = _local(param)
        if local.dtype == torch.float32:
            weights[id(param)] = local
            continue
        master = kept.get(id(param))
        masters[id(param)] = weights[id(param)] = local.float() if master is None else master
    if masters:
        from directpo.precision import FrozenMasters

        run.reference_masters = FrozenMasters.of(masters)
    return weights


@torch.no_grad()
def sync_reference(run: Any, alpha: float) -> None:
    """θ_ref ← α·θ_π + (1 − α)·θ_ref, computed in float32, each rank on its own shards; a bf16
    reference is then the bf16 rounding of its float32 weight (``followed_weights``)."""
    weights = followed_weights(run)
    for reference, policy in reference_pairs(run):
        target, weight = _local(reference), weights[id(reference)]
        weight.copy_(torch.lerp(weight, _local(policy).float(), alpha))
        if weight is not target:
            target.copy_(weight)


@torch.no_grad()
def copy_adapter(model: torch.nn.Module) -> None:
    """The ``ref`` adapter, frozen, set to the policy's ``default`` adapter."""
    params = dict(model.named_parameters())
    for name, param in params.items():
        if in_ref_adapter(name):
            param.copy_(params[policy_twin(name)])
            param.requires_grad_(False)


def reference_state(run: Any) -> dict[str, torch.Tensor]:
    """The followed reference weights, whole, on CPU, for a checkpoint: a bf16 reference's
    float32 weights where it keeps them (a resume then mixes on from them exactly). Every rank
    calls (an FSDP2 shard is gathered); every rank gets them."""
    kept = run.reference_masters._master_of if run.reference_masters is not None else {}
    state = {}
    for name, param in reference_parameters(run).items():
        tensor = param.detach()
        if id(param) in kept:
            tensor = _as_param(kept[id(param)], param)
        full = getattr(tensor, "full_tensor", None)
        state[name] = (full() if full is not None else tensor).cpu().contiguous()
    return state


def kept_weights(run: Any) -> dict[str, torch.Tensor]:
    """The float32 weights a bf16 reference keeps beside its followed parameters, by name, as
    the parameters are held (an FSDP2 shard's DTensor): what its folder is written from."""
    kept = run.reference_masters._master_of if run.reference_masters is not None else {}
    return {
        name: _as_param(kept[id(param)], param)
        for name, param in reference_parameters(run).items()
        if id(param) in kept
    }


def _as_param(local: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """``local`` (this rank's shard of a weight like ``param``) as ``param`` is laid out: a
    DTensor of its mesh and placements under FSDP2, else as it is."""
    mesh = getattr(param, "device_mesh", None)
    if mesh is None:
        return local
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        local, mesh, param.placements, shape=param.shape, stride=param.stride()
    )


@torch.no_grad()
def load_reference_state(run: Any, state: dict[str, torch.Tensor], where: str) -> None:
    """Put a checkpoint's reference weights back (every rank calls, with the whole state); a
    bf16 reference keeps the float32 weights the checkpoint holds beside it (``followed_weights``),
    the float32 start a float32 evaluation would read is not them."""
    run.reference_masters = None
    parameters = reference_parameters(run)
    missing = sorted(set(parameters) - set(state))
    if missing:
        raise ValueError(f"{where}: no reference weight {missing[0]} ({len(missing)} missing)")
    masters = {}
    for name, param in parameters.items():
        whole = state[name]
        mesh = getattr(param, "device_mesh", None)
        if mesh is not None:
            from torch.distributed.tensor import distribute_tensor

            whole = distribute_tensor(whole.to(_local(param).device), mesh, param.placements)
        local = _local(param)
        local.copy_(_local(whole))
        if local.dtype != torch.float32:
            masters[id(param)] = _local(whole).to(local.device, torch.float32, copy=True)
    if masters:
        from directpo.precision import FrozenMasters

        run.reference_masters = FrozenMasters.of(masters)


@torch.no_grad()
def checkpoint_reference(checkpoint: Path, start: str, scoring: dict[str, Any]) -> torch.nn.Module:
    """A TR-DPO checkpoint's moved reference as a model of its own: the starting model ``start``
    (with LoRA: the checkpoint's adapter folder, its ``ref`` adapter's weights put in place of
    the trained ones) with the checkpoint's reference weights, on CUDA when there is one, as
    ImplicitReward's keyword arguments ``scoring`` load a reference (dtype, reference_kwargs,
    trust_remote_code)."""
    from safetensors.torch import load_file

    from directpo.checkpoint import REFERENCE_FILE
    from directpo.errors import ConfigError
    from directpo.model_preparation import LoadOptions
    from directpo.models import load_causal_lm

    options = LoadOptions(
        init_kwargs=dict(scoring.get("reference_kwargs") or {}),
        trust_remote_code=scoring.get("trust_remote_code", False),
    )
    dtype = scoring.get("dtype", "float32")
    state = load_file(checkpoint / REFERENCE_FILE)
    lora = any(map(in_ref_adapter, state))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    where = str(checkpoint) if lora else start
    model = load_causal_lm(where, dtype, trainable=False, device=device, options=options)
    params = dict(model.named_parameters())
    for key, value in state.items():  # keyed as the trainer's scorer names them
        name = policy_twin(key.removeprefix("model."))
        target = _rank_r_part(params[name], value) if name in params else None
        if target is None:
            raise ConfigError(
                f"{checkpoint / REFERENCE_FILE}: its weight {key} fits no weight of {where}"
            )
        target.copy_(value)
    return model


def _rank_r_part(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor | None:
    """Where reference weight ``value`` goes in ``param``: all of it, or for a PiSSA / OLoRA
    checkpoint written as plain LoRA ([A | A0], [B | -B0], adapter_starts.write_as_plain_lora) its
    first r rows of A / columns of B (the start, the other half, is the reference's too);
    None when it fits neither way."""
    if param.shape == value.shape:
        return param
    if param.dim() == 2 and value.dim() == 2:
        if param.shape == (2 * value.shape[0], value.shape[1]):
            return param[: value.shape[0]]
        if param.shape == (value.shape[0], 2 * value.shape[1]):
            return param[:, : value.shape[1]]
    return None
