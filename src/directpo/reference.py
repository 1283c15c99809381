"""Reference log-probs behind one interface: ``provider.logprobs(batch) -> [2B] tensor``.

The paper's π_ref is the frozen starting model. Providers: a frozen copy of the model; the
policy itself with its LoRA adapters disabled (no second copy); a precomputed disk cache
(``precompute.py``); or none at all, for reference-free losses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import torch

from directpo.adapter_starts import (
    RESETTABLE_LORA_INITS,
    align_dora_magnitudes,
    initialize_adapters,
    reference_adapter_config,
    remember_start,
    rewrites_base,
)
from directpo.adapters import adapter_base, apply_peft, quantization_config
from directpo.attention import choose_implementation
from directpo.batching import Batch
from directpo.callers import said, spell_setting
from directpo.config import DPOConfig
from directpo.device_checks import check_device
from directpo.errors import ConfigError
from directpo.logprobs import SequenceScorer, evaluating, unwrap_peft
from directpo.lora_options import LORA_OPTIONS, lora_config_from
from directpo.meta_models import meta_weights_folder
from directpo.model_locations import adapter_sync_problem
from directpo.model_preparation import LoadOptions
from directpo.models import load_causal_lm
from directpo.precision import PrecisionPolicy, cast_frozen
from directpo.sync import REF_ADAPTER, copy_adapter
from directpo.vision import VISION_PARTS, freeze_vision_tower, is_vision_config


class ReferenceProvider(Protocol):
    def logprobs(self, batch: Batch) -> torch.Tensor:
        """log π_ref of each row of ``batch`` (chosen rows first), without gradient."""
        ...


class FrozenModelReference:
    """A separate copy of the model: eval mode, no gradients, never updated."""

    def __init__(
        self, model: torch.nn.Module, chunk_tokens: int = 0, ld_alpha: float | None = None
    ):
        self.model = model.eval().requires_grad_(False)
        # an adapter folder as ref_model_name_or_path: its base runs with that adapter on
        self.adapter: str | None = getattr(model, "active_adapter", None)
        # the module that runs: replaced by its DDP/FSDP-wrapped form in distributed training
        self.scorer: torch.nn.Module = SequenceScorer(self.model, chunk_tokens, ld_alpha)

    @torch.no_grad()
    def logprobs(self, batch: Batch) -> torch.Tensor:
        return self.scorer(batch)[0]


class PolicyModelReference:
    """A reference computed by the policy's own peft model, with its adapters switched."""

    adapter: str | None = None  # the adapter the reference runs with (None: adapters off)

    def __init__(
        self, peft_model: torch.nn.Module, chunk_tokens: int = 0, ld_alpha: float | None = None
    ):
        self.model = peft_model
        # the module that runs the policy: under FSDP its sharded scorer (set by the trainer),
        # since only the wrapped forward gathers the shards
        self.scorer: torch.nn.Module = SequenceScorer(peft_model, chunk_tokens, ld_alpha)


class AdapterReference(PolicyModelReference):
    """Continuing an adapter: π_ref is the policy with its starting adapter, loaded a second
    time as the frozen adapter ``ref``, switched in for the reference pass. (TR-DPO with LoRA
    uses the same: a ``ref`` adapter that starts as a copy of the policy's, sync.py.)"""

    adapter = REF_ADAPTER

    @torch.no_grad()
    def logprobs(self, batch: Batch) -> torch.Tensor:
        with self.switched_in():
            return self.scorer(batch)[0]

    @contextlib.contextmanager
    def switched_in(self) -> Iterator[None]:
        """The model runs as the reference (eval mode, ``ref`` active) inside the block."""
        was_training, active = self.model.training, self.model.active_adapter
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.eval()
        self.model.set_adapter(REF_ADAPTER)
        try:
            yield
        finally:
            self.model.set_adapter(active)
            for param in self.model.parameters():  # set_adapter moves requires_grad: restore
                param.requires_grad_(False)
            for param in trainable:
                param.requires_grad_(True)
            self.model.train(was_training)


class AdapterDisabledReference(PolicyModelReference):
    """With LoRA, π_ref is the policy's own base model: the adapters switched off."""

    @torch.no_grad()
    def logprobs(self, batch: Batch) -> torch.Tensor:
        # eval: LoRA dropout must not act on the reference pass; the policy's mode again after,
        # also after an out-of-memory error (auto_find_batch_size retries the step)
        with evaluating(self.model), self.model.disable_adapter():
            return self.scorer(batch)[0]


VISION_ADAPTER_EXCLUDE = rf".*\b({'|'.join(VISION_PARTS)})\b.*"


def _meta_ok(config: DPOConfig, options: LoadOptions, peft_config: Any) -> bool:
    """Whether the policy can be built on the meta device and filled shard by shard: local
    safetensors weights, and no adapters or plain LoRA ones (peft initialises those on CPU;
    DoRA's magnitudes and other PEFT methods need the base's weights first)."""
    if meta_weights_folder(config.model_name_or_path, options) is None:
        return False
    if peft_config is not None:
        return (
            type(peft_config).__name__ == "LoraConfig"
            and not peft_config.use_dora
            and peft_config.init_lora_weights in RESETTABLE_LORA_INITS
        )
    return not config.use_dora


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_adapter_sync(config: DPOConfig) -> None:
    """(a peft_config lora_* options cannot express: seen here only; the rest before loading)"""
    problem = adapter_sync_problem(config.ref_model_mixup_alpha)
    if problem:
        raise ConfigError(problem)


def _peft_config(config: DPOConfig) -> Any:
    if not config.lora_r:
        return None
    return lora_config_from({key: getattr(config, key) for key in LORA_OPTIONS})


def load_options(config: DPOConfig, attention: str) -> LoadOptions:
    """How the config's policy and reference are loaded (models.LoadOptions)."""
    return LoadOptions(
        quantization=quantization_config(config),
        disable_dropout=config.disable_dropout,
        gradient_checkpointing=config.gradient_checkpointing,
        checkpoint_every=config.gradient_checkpointing_every,
        attn_implementation=attention,
        compile_layers=config.torch_compile,
        init_kwargs=dict(config.model_init_kwargs or {}),
        trust_remote_code=config.trust_remote_code,
        liger_kernels=config.liger_kernels(),
    )


def load_policy_and_reference(
    config: DPOConfig,
    device: torch.device,
    precision: PrecisionPolicy | None = None,
    *,
    sharded: bool = False,
    peft_config: Any = None,
    reference_dtype: torch.dtype | None = None,
) -> tuple[torch.nn.Module, ReferenceProvider | None]:
    """The trainable policy (with LoRA adapters if ``lora_r``) and its reference provider, for
    training on ``device`` (``sharded``: loaded on the CPU, for FSDP2 to shard and move).

    The policy is loaded in its masters' dtype (float32 under mixed precision: the trainer then
    splits it into a bf16 compute copy and float32 masters, or FSDP2 shards the masters), the
    reference in the compute dtype (or ``reference_dtype``: float32 for a run that evaluates in
    float32, precision.FrozenMasters then keeps it beside a compute copy). Under FSDP mixed
    precision a LoRA base is frozen: it is cast to the compute dtype here (only the adapters
    keep float32 masters).

    PEFT: ``peft_config`` (any PEFT config object, from Python) or the lora_* options add fresh
    adapters, and the reference is the base with them off. A ``model_name_or_path`` that is an
    adapter folder continues training that adapter; its reference is the adapter as it was,
    loaded a second time under the name ``ref`` (one base model in memory). QLoRA: the base is
    loaded quantized (load_in_4bit / load_in_8bit) and prepared for k-bit training.
    """
    precision = precision or config.precision
    attention = choose_implementation(
        config.attn_implementation, device, precision.compute, config.layout.is_plain
    )
    check_device(config, device.type)
    if sharded:
        device = torch.device("cpu")
    options = load_options(config, attention)
    policy = load_causal_lm(
        config.model_name_or_path,
        precision.load_dtype,
        trainable=True,
        device=device,
        options=replace(options, meta=sharded and _meta_ok(config, options, peft_config)),
    )
    continuing = adapter_base(config.model_name_or_path) is not None  # an adapter folder
    vision = is_vision_config(getattr(unwrap_peft(policy), "config", None))
    if vision and config.freeze_vision_tower:
        freeze_vision_tower(policy)
    if vision and not config.freeze_vision_tower and (peft_config is not None or config.lora_r):
        # with adapters only they train, and the vision tower gets none: it stayed frozen
        raise ConfigError(  # (a recipe's words, 'set lora_r 0' even, were said to every caller)
            f"{said('freeze_vision_tower', False)} trains the vision tower, but with LoRA only the "
            "adapters train and they go on the language model only; "
            f"{spell_setting(('freeze_vision_tower', True))}, or {said('lora_r', 0)} to train "
            "every weight"
        )
    if options.quantization is not None:
        from peft import prepare_model_for_kbit_training

        policy = prepare_model_for_kbit_training(
            policy, use_gradient_checkpointing=config.gradient_checkpointing
        )
    if peft_config is None and config.lora_r:
        peft_config = _peft_config(config)
        if vision:  # adapters on the language model only (not the tower, not the projector)
            peft_config.exclude_modules = VISION_ADAPTER_EXCLUDE
    if peft_config is not None:
        # adapters drawn from their own seeded stream: the same whether the base is real or on
        # the meta device (FSDP2), in the same order, on every rank
        policy = apply_peft(policy, peft_config, (config.model_init_kwargs or {}).get("revision"))
        with _seeded(config.seed):
            initialize_adapters(policy)
        remember_start(policy)  # a PiSSA / OLoRA start: its folders are written as plain LoRA
        if precision.mixed:
            align_dora_magnitudes(policy, precision.compute)
    if (peft_config is not None or continuing) and sharded and precision.mixed:
        cast_frozen(policy, precision.compute)
    if not config.needs_reference:
        return policy, None  # reference-free losses never load one
    if config.own_reference:  # the policy's own adapter or base (None: a frozen copy)
        reference = _adapter_reference(config, policy, peft_config, continuing)
        if reference is not None:
            return policy, reference
    dtype = reference_dtype or precision.compute
    return policy, _frozen_reference(config, device, precision, options, sharded, dtype=dtype)


def _adapter_reference(
    config: DPOConfig, policy: torch.nn.Module, peft_config: Any, continuing: bool
) -> ReferenceProvider | None:
    """The reference of a run whose reference is the policy's own (``own_reference``): the
    adapter as it starts (an adapter folder continued, TR-DPO, adapters that rewrite the base),
    or the base with the adapters off; None where a frozen copy is loaded instead."""
    chunk, ld_alpha = config.logprob_chunk_tokens, config.ld_alpha
    if (continuing or peft_config is not None) and config.ref_model_init_kwargs is not None:
        # (lora_r is refused so in the config's checks; an adapter folder or a Python
        # peft_config shows only here) the kwargs would be ignored without a word
        raise ConfigError(
            "ref_model_init_kwargs is set but no separate reference model is loaded (the "
            "reference is the policy's "
            + ("adapter as it starts" if continuing else "base with adapters off")
            + "; a separate one is loaded with ref_model_name_or_path)"
        )
    if continuing:  # the adapter's start, a frozen copy beside it
        if config.sync_ref_model:
            _check_adapter_sync(config)
        started = policy.peft_config[policy.active_adapter]
        if rewrites_base(started):  # loading it again would rewrite the base again
            policy.add_adapter(REF_ADAPTER, reference_adapter_config(started))
            copy_adapter(policy)
        else:
            policy.load_adapter(config.model_name_or_path, adapter_name=REF_ADAPTER)
        return AdapterReference(policy, chunk, ld_alpha)
    if peft_config is not None and (config.sync_ref_model or rewrites_base(peft_config)):
        # TR-DPO, or adapters that rewrote the base (PiSSA, OLoRA): with them off the
        # model is not the start, a frozen copy of the starting adapter is
        if config.sync_ref_model:
            _check_adapter_sync(config)
        policy.add_adapter(REF_ADAPTER, reference_adapter_config(peft_config))
        with _seeded(config.seed):  # memory on a meta base; the values are then a copy
            initialize_adapters(policy, [REF_ADAPTER])
        copy_adapter(policy)
        return AdapterReference(policy, chunk, ld_alpha)
    if peft_config is not None:
        return AdapterDisabledReference(policy, chunk, ld_alpha)
    return None  # not the policy's: a frozen copy of the reference model is loaded


def _frozen_reference(
    config: DPOConfig,
    device: torch.device,
    precision: PrecisionPolicy,
    options: LoadOptions,
    sharded: bool = False,
    path: str | None = None,
    dtype: torch.dtype | None = None,
) -> FrozenModelReference:
    """The reference model of ``path`` (default ``reference_path``), frozen, in ``dtype``
    (default: the compute dtype) on ``device``."""
    path = path or config.reference_path
    reference_options = replace(
        options,
        gradient_checkpointing=False,
        init_kwargs=config.reference_init_kwargs,
    )
    meta = sharded and meta_weights_folder(path, reference_options) is not None
    frozen = load_causal_lm(
        path,
        dtype or precision.compute,
        trainable=False,
        device=device,
        options=replace(reference_options, meta=meta),
    )
    return FrozenModelReference(frozen, config.logprob_chunk_tokens, config.ld_alpha)


def reload_reference(
    config: DPOConfig,
    policy: torch.nn.Module | None,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> ReferenceProvider:
    """A finished run's reference, which it let go of (precompute_ref_log_probs, merge_lora,
    FSDP), as the run scored with it: ``policy`` with its adapters off where that was the
    reference (a second copy of the base would double a LoRA run's memory), else the reference
    model loaded as the run loaded it, in its compute dtype on ``device`` (the policy's: a
    bf16-saved model read in float32 by a float32 run scored other rewards in its own dtype,
    and a reference on another device than the policy cannot score beside it); ``dtype``:
    another (float32 beside a bf16 run's float32 masters)."""
    own_base = config.own_reference
    continuing = adapter_base(config.model_name_or_path) is not None
    adapters = getattr(policy, "peft_config", None)
    # adapters that rewrote the base (PiSSA, ...): the start is the base as stored, not theirs off
    if adapters and own_base and not continuing and not any(map(rewrites_base, adapters.values())):
        return AdapterDisabledReference(policy, config.logprob_chunk_tokens, config.ld_alpha)
    return _loaded_again(config, device, dtype)


def moved_reference(
    config: DPOConfig, folder: Path, device: torch.device, dtype: torch.dtype | None = None
) -> ReferenceProvider:
    """A TR-DPO run's reference as its final folder holds it (``folder``: its ``reference/``,
    a model folder, or an adapter folder on the policy's base), loaded as the run loaded its
    reference: in the compute dtype (or ``dtype``), on ``device``."""
    return _loaded_again(config, device, dtype, str(folder))


def _loaded_again(
    config: DPOConfig, device: torch.device, dtype: torch.dtype | None, path: str | None = None
) -> FrozenModelReference:
    """A finished run's frozen reference model (``path``, default ``reference_path``) loaded as
    the run loaded it: its attention, in the compute dtype (or ``dtype``), on ``device``
    (reload_reference's and moved_reference's, one rule)."""
    precision = config.precision
    attention = choose_implementation(
        config.attn_implementation, device, dtype or precision.compute, True
    )
    options = load_options(config, attention)
    return _frozen_reference(config, device, precision, options, path=path, dtype=dtype)
