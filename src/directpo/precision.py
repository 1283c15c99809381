"""Precision, decided once: which dtype each tensor of a training run is stored and computed in.

``dtype: float32``: everything is float32.

``dtype: bfloat16`` (what GPU users set; TRL's ``bf16: true``) means **mixed precision**:

* the policy's parameters inside the model are a bfloat16 *compute copy*: forward and backward
  run in bf16 (log-softmax and the per-sequence sums stay float32, logprobs.py);
* every trainable parameter has a float32 **master**: each micro-batch's bf16 gradient is added
  into the master's float32 gradient, the optimizer state is float32 and the optimizer updates
  the masters; after each step the compute copy is refreshed from them;
* frozen weights (the reference model, a LoRA base) are held and run in bf16 only;
* checkpoints and (by default, ``save_dtype: auto``) the final folder hold the float32 masters;
* held-out metrics are computed in float32 (``eval_dtype: auto``, ``float32_compute``): the
  masters swapped in, the frozen bf16 weights upcast, since bf16 rounds early changes away.

Why: bf16 has an 8-bit mantissa, so an update smaller than ~1/256 of a weight is rounded away.
At DPO's learning rates (1e-6) Adam moves a weight of ~1e-2 by ~1e-6: a policy *stored* in bf16
barely changes while loss and rewards look healthy. The masters keep every update.

Why a compute copy rather than ``torch.autocast`` over float32 weights (TRL's way): the compute
copy runs the policy exactly as the bf16 reference runs (so policy == reference gives exactly
zero reward at step 0), keeps activations bf16 (autocast leaves the residual stream float32),
casts each weight once per optimizer step instead of once per forward, and is the same numerics
as FSDP2's ``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)``, which keeps the
float32 masters as its sharded parameters: one process, DDP and FSDP2 compute alike.

``master_weights: bfloat16`` (opt-in) stores the trainable weights themselves in bf16 (half the
parameter memory, no masters). Plain AdamW then loses small updates, so it is meant for
``optimizer: adamw_kahan`` (torch-optimi's AdamW with Kahan-compensated updates); with another
optimizer a warning is printed, and the update check (``guard.py``) stops a run whose update
vanishes.

Memory per trainable parameter, AdamW: float32 16 bytes (weight 4, grad 4, two moments 8);
mixed bf16 ~18 (compute copy 2, master 4, master grad 4, moments 8; the bf16 gradient of one
parameter at a time in one process); bf16 storage + Kahan AdamW 10 (weight 2, grad 2, moments 4,
compensation 2).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from directpo.callers import spell_option, spell_setting
from directpo.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class PrecisionPolicy:
    """The dtypes of one run (see the module docstring)."""

    compute: torch.dtype = torch.float32  # forward/backward of policy and reference
    master: torch.dtype = torch.float32  # trainable weights, their gradients, optimizer state
    save: torch.dtype = torch.float32  # the final model folder

    @classmethod
    def from_options(cls, dtype: str, master_weights: str, save_dtype: str) -> PrecisionPolicy:
        compute = DTYPES[dtype]
        master = DTYPES[master_weights] if compute == torch.bfloat16 else torch.float32
        save = master if save_dtype == "auto" else DTYPES[save_dtype]
        return cls(compute, master, save)

    @property
    def mixed(self) -> bool:
        """bf16 compute over float32 masters."""
        return self.compute != self.master

    @property
    def load_dtype(self) -> torch.dtype:
        """The dtype the policy is loaded in: its masters' (the compute copy is cast from it)."""
        return self.master


class MasterWeights:
    """Float32 masters of a model's trainable parameters; the model itself holds bf16 copies.

    Built from a model loaded in float32: each trainable parameter's float32 tensor becomes its
    master (no copy) and the parameter gets a bf16 copy; frozen parameters become bf16. Modules
    the model keeps in float32 (``_keep_in_fp32_modules``: gpt-oss's norms, MoE routers) stay
    float32 and a trainable one is its own master. The optimizer, gradient clipping and the
    update check work on ``parameters()``: the masters and those float32 parameters.

    Gradients: with ``streaming`` (one process) each bf16 gradient is added into its master's
    float32 gradient as soon as backward has produced it and then freed, so no whole set of
    bf16 gradients is ever alive; otherwise (DDP, which reduces the bf16 gradients itself)
    ``collect_grads()`` does it after each backward.
    """

    def __init__(self, model: torch.nn.Module, compute: torch.dtype, *, streaming: bool = True):
        keep_fp32 = _keep_in_fp32_patterns(model)
        self.pairs: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        self.own: list[torch.nn.Parameter] = []  # trainable and kept in float32
        self._hooks = []
        seen: set[int] = set()
        for name, param in model.named_parameters(remove_duplicate=True):
            if id(param) in seen or not param.is_floating_point():
                continue
            seen.add(id(param))
            if any(pattern.search(name) for pattern in keep_fp32):
                if param.requires_grad:  # computes in float32: it is its own master
                    self.own.append(param)
                continue
            if not param.requires_grad:
                param.data = param.data.to(compute)
                continue
            master = param.data  # the float32 tensor, taken over as it is
            param.data = master.to(compute)
            self.pairs.append((param, master))
            if streaming:
                self._hooks.append(param.register_post_accumulate_grad_hook(self._move_grad))
        self._master_of = {id(p): m for p, m in self.pairs}
        self.model = model

    def parameters(self) -> list[torch.Tensor]:
        """The float32 masters and the trainable float32 parameters (leaf tensors with
        ``.grad``): what the optimizer updates."""
        return [master for _, master in self.pairs] + self.own

    def _move_grad(self, param: torch.Tensor) -> None:
        master = self._master_of[id(param)]
        _accumulate(master, param.grad)
        param.grad = None

    @torch.no_grad()
    def collect_grads(self) -> None:
        """Add each compute parameter's gradient into its master's float32 gradient."""
        for param, master in self.pairs:
            if param.grad is not None:
                _accumulate(master, param.grad)
                param.grad = None

    @torch.no_grad()
    def push(self) -> None:
        """Refresh the bf16 compute copy from the masters (after each optimizer step)."""
        for param, master in self.pairs:
            param.data.copy_(master)

    @contextlib.contextmanager
    def in_model(self) -> Iterator[None]:
        """The model holds the masters while inside: save_pretrained writes float32 weights and
        load_state_dict writes into the masters; the compute copy is refreshed on the way out."""
        try:
            with holding([self.model], lambda tensor: self._master_of.get(id(tensor))):
                yield
        finally:
            self.push()

    def release(self) -> None:
        """End of training: the model keeps the masters for good (the final save, the caller)."""
        for hook in self._hooks:
            hook.remove()
        for param, master in self.pairs:
            param.data = master
            param.grad = None


class FrozenMasters:
    """A frozen model (the reference) loaded in float32, held in bf16 for compute, with the
    float32 weights kept where bf16 cannot hold them (a model stored in float32): a float32
    evaluation then runs it as stored, as the policy's float32 masters start (exactly 0
    reward at step 0). A model stored in bf16 keeps nothing: its weights are on bf16's grid.
    ``only``: the parameters, by name, that are the reference (a continued adapter's frozen
    ``ref`` copy inside the policy). (Frozen: DDP hooks none of these parameters, so their
    data may change dtype.)"""

    def __init__(
        self,
        model: torch.nn.Module,
        compute: torch.dtype,
        only: Callable[[str], bool] | None = None,
    ):
        keep_fp32 = _keep_in_fp32_patterns(model)
        self._master_of: dict[int, torch.Tensor] = {}
        for name, param in model.named_parameters():
            if not param.is_floating_point() or any(p.search(name) for p in keep_fp32):
                continue
            if only is not None and not only(name):
                continue
            stored = param.data
            param.data = stored.to(compute)
            if not torch.equal(param.data.to(stored.dtype), stored):
                self._master_of[id(param)] = stored

    @classmethod
    def of(cls, masters: dict[int, torch.Tensor]) -> FrozenMasters:
        """Float32 weights given by the id of the frozen parameter each stands for (TR-DPO's
        moving reference, sync.py)."""
        frozen = cls.__new__(cls)
        frozen._master_of = masters
        return frozen

    def __bool__(self) -> bool:
        return bool(self._master_of)

    def release(self, model: torch.nn.Module, only: Callable[[str], bool] | None = None) -> None:
        """End of training: ``model``'s frozen bf16 weights (``only``: those named so, a
        continued adapter's ``ref`` copy inside the policy) become its float32 ones for good,
        the kept ones where bf16 could not hold them, the others upcast (exactly), as the
        policy keeps its masters (MasterWeights.release): train()'s policy and reference then
        score in one precision, not the policy's float32 against the reference's rounding."""
        for name, param in model.named_parameters():
            master = self._master_of.get(id(param))
            if master is not None:
                param.data = master
            elif param.dtype == torch.bfloat16 and (only is None or only(name)):
                param.data = param.data.float()
        self._master_of = {}


def evaluates_in_float32(
    eval_dtype: str, compute: torch.dtype, attention: str, sharded: bool
) -> bool:
    """Whether held-out metrics are computed in float32 (``eval_dtype``; config.py): bf16's
    grid rounds a young adapter's contribution and the first steps' updates back onto the
    start, so a bf16 evaluation reads rewards far below the weights' (SmolLM2-135M with LoRA,
    after 4 steps: a held-out margin of 0.030 where float32 reads 0.060). ``auto`` keeps bf16
    where float32 cannot run as the run is set up: FSDP2 gathers its shards in bf16,
    FlashAttention-2 has no float32 kernel."""
    if compute == torch.float32 or eval_dtype == "bfloat16":
        return False
    if eval_dtype == "float32":
        if sharded:
            raise ConfigError(
                f"{spell_option('eval_dtype', 'float32', in_recipe=False)} under FSDP: the "
                "sharded model is gathered in bf16 for every forward; "
                f"{spell_setting(('eval_dtype', 'auto'))} (bfloat16 under FSDP), or "
                f"{spell_option('distributed', 'ddp', in_recipe=False)}"
            )
        return True
    return not sharded and attention != "flash_attention_2"


@contextlib.contextmanager
def holding(
    models: list[torch.nn.Module], replacement: Callable[[torch.Tensor], torch.Tensor | None]
) -> Iterator[None]:
    """Inside, each parameter and buffer of ``models`` for which ``replacement`` gives a tensor
    is replaced by it in its modules (shared tensors, tied weights, by the same one); the
    originals are put back on the way out. The modules' entries are swapped, never a
    parameter's ``.data``: giving a parameter data of another dtype drops its gradient
    accumulator, and with it DDP's gradient hook, so that from then on the ranks train apart
    without a word (each on its own gradients)."""
    new_of: dict[int, torch.Tensor | None] = {}
    swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
    modules = {id(m): m for model in models for m in model.modules()}.values()
    for module in modules:
        for entries in (module._parameters, module._buffers):
            for name, tensor in entries.items():
                if tensor is None:
                    continue
                if id(tensor) not in new_of:
                    new = replacement(tensor)
                    as_parameter = new is not None and isinstance(tensor, torch.nn.Parameter)
                    new_of[id(tensor)] = (
                        torch.nn.Parameter(new, requires_grad=False) if as_parameter else new
                    )
                if new_of[id(tensor)] is not None:
                    swapped.append((entries, name, tensor))
    for entries, name, tensor in swapped:
        entries[name] = new_of[id(tensor)]
    try:
        yield
    finally:
        for entries, name, tensor in swapped:
            entries[name] = tensor


@contextlib.contextmanager
def float32_compute(
    models: list[torch.nn.Module],
    masters: list[MasterWeights | FrozenMasters | None],
    optimizer: torch.optim.Optimizer | None = None,
) -> Iterator[None]:
    """Inside, ``models`` compute in float32: each trainable parameter is replaced by its
    float32 master (or a float32 copy: bf16 storage), a frozen one that keeps its float32
    weights (``FrozenMasters``) by them, and every other frozen bf16 weight and buffer
    is upcast in place and cast back on the way out (exact: bf16 values are float32 values),
    so a policy and a reference that share a start give reward 0 there. Costs 2 more bytes per
    frozen bf16 weight for the duration. (Frozen ones in place: DDP hooks no accumulator of
    theirs, and a copy would cost twice the memory.) ``optimizer``: a bf16-stored trainable
    weight is read with its Kahan compensation added (what the run learned, and what a float32
    final save holds; fold_compensation)."""
    master_of = {k: v for kept in masters if kept is not None for k, v in kept._master_of.items()}

    def in_float32(tensor: torch.Tensor) -> torch.Tensor | None:
        if id(tensor) in master_of:
            return master_of[id(tensor)]
        if not (tensor.requires_grad and _upcastable(tensor)):
            return None
        compensation = kahan_compensation(tensor, optimizer)
        return tensor.float() + compensation.float() if compensation is not None else tensor.float()

    frozen = {
        id(t): t
        for model in models
        for t in (*model.parameters(), *model.buffers())
        if not t.requires_grad and _upcastable(t) and id(t) not in master_of
    }.values()
    with holding(models, in_float32):
        for tensor in frozen:
            tensor.data = tensor.data.float()
        try:
            yield
        finally:
            for tensor in frozen:
                tensor.data = tensor.data.to(torch.bfloat16)


def _upcastable(tensor: torch.Tensor) -> bool:
    """A bf16 weight or buffer (a quantized base's packed storage, bitsandbytes' Params4bit
    in bf16 storage, is not a weight's value: never cast)."""
    plain = type(tensor) in (torch.nn.Parameter, torch.Tensor)
    return plain and tensor.dtype == torch.bfloat16


def kahan_compensation(
    param: torch.Tensor, optimizer: torch.optim.Optimizer | None
) -> torch.Tensor | None:
    """The Kahan compensation of ``param`` (torch-optimi's AdamW on bf16 weights), or None: the
    part of its updates that the bf16 weight could not hold, so that weight + compensation is
    what the run learned."""
    state = optimizer.state.get(param, {}) if optimizer is not None else {}
    compensation = state.get("kahan_comp")
    if isinstance(compensation, torch.Tensor) and compensation.shape == param.shape:
        return compensation
    return None


@torch.no_grad()
def fold_compensation(
    parameters: list[torch.Tensor], optimizer: torch.optim.Optimizer, dtype: torch.dtype
) -> None:
    """At the end of training, weight + Kahan compensation becomes the parameter, in ``dtype``
    (the save dtype): in float32 it keeps the updates a bf16 weight rounded away (after a short
    run at a small learning rate, nearly all of them), in bf16 it is the nearest bf16 weight.
    (FSDP2 writes from its own shard storage: save_sharded_model adds them instead.)"""
    for param in parameters:
        compensation = kahan_compensation(param, optimizer)
        if compensation is not None:
            param.data = (param.data.float() + compensation.float()).to(dtype)
            compensation.zero_()


def _accumulate(master: torch.Tensor, grad: torch.Tensor) -> None:
    if master.grad is None:
        master.grad = grad.to(master.dtype)
    else:
        master.grad.add_(grad)


def _keep_in_fp32_patterns(model: torch.nn.Module) -> list[re.Pattern[str]]:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names: set[str] = set()
    for attribute in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict"):
        names.update(getattr(inner, attribute, None) or ())
    return [re.compile(rf"(^|\.){re.escape(name)}(\.|$)") for name in sorted(names)]


def float32_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The outermost submodules all of whose parameters the model keeps in float32 (gpt-oss's
    norms, MoE routers' ``gate``): under FSDP2 every parameter of a sharded unit is computed in
    the unit's one ``param_dtype``, so each of these becomes a unit of its own computed in
    float32, as one process computes them. (A kept parameter beside others in its module,
    such as attention sinks, is computed in the enclosing unit's dtype: docs/distributed.md.)"""
    keep_fp32 = _keep_in_fp32_patterns(model)
    if not keep_fp32:
        return []
    units: list[torch.nn.Module] = []
    inside: set[int] = set()  # parameters of a unit already taken
    for name, module in model.named_modules():
        params = list(module.named_parameters(prefix=name))
        if not name or not params or any(id(p) in inside for _, p in params):
            continue
        if all(any(pattern.search(n) for pattern in keep_fp32) for n, _ in params):
            units.append(module)
            inside.update(id(p) for _, p in params)
    return units


def cast_frozen(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Frozen floating-point parameters to ``dtype`` (a LoRA base under FSDP mixed precision)."""
    keep_fp32 = _keep_in_fp32_patterns(model)
    for name, param in model.named_parameters():
        if param.requires_grad or not param.is_floating_point():
            continue
        if not any(pattern.search(name) for pattern in keep_fp32):
            param.data = param.data.to(dtype)
