"""A loaded causal LM made ready to train or to serve as a reference: dropout off (and the
config values changed for training, restored where a folder is saved), activation
checkpointing, Liger kernels, regional compilation of its decoder layers."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch

from directpo.callers import spell_given, spell_setting
from directpo.errors import ConfigError, ModelLoadError, first_line


@dataclass(frozen=True)
class LoadOptions:
    """How a causal LM is loaded (besides its dtype, device and whether it trains)."""

    disable_dropout: bool = True
    gradient_checkpointing: bool = False
    checkpoint_every: int = 1  # with gradient checkpointing: only every k-th decoder layer
    attn_implementation: str = "auto"
    compile_layers: bool = False  # torch.compile each decoder layer (regional)
    init_kwargs: dict[str, Any] = field(default_factory=dict)  # model_init_kwargs
    trust_remote_code: bool = False
    quantization: Any = None  # a transformers BitsAndBytesConfig (QLoRA), or None
    liger_kernels: dict[str, Any] | None = None  # Liger's apply keywords (use_liger_kernel)
    # FSDP2: build on the meta device; each rank later fills its shards from the files
    # (distributed.materialize), so no process ever holds the whole model
    meta: bool = False


def prepared_model(
    model: torch.nn.Module, trainable: bool, options: LoadOptions
) -> torch.nn.Module:
    """Dropout off, train/eval mode, Liger kernels, activation checkpointing, regional
    compilation."""
    if options.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    if trainable:
        model.train()
        if options.gradient_checkpointing:
            enable_activation_checkpointing(model, options.checkpoint_every)
    else:
        model.eval()
        model.requires_grad_(False)
    if options.liger_kernels is not None:
        apply_liger_kernels(model, options.liger_kernels)
    if options.compile_layers:
        for block in decoder_layers(model):
            block.compile()
    return model


def apply_liger_kernels(model: torch.nn.Module, kernels: dict[str, Any]) -> None:
    """Liger's kernels on ``model`` (its norms, MLPs and rotary embedding), as transformers'
    Trainer applies them for ``use_liger_kernel``; refused in one line when liger-kernel is
    missing or has no kernels for the architecture (instead of training without them)."""
    try:
        from liger_kernel.transformers.monkey_patch import (
            MODEL_TYPE_TO_APPLY_LIGER_FN,
            _apply_liger_kernel_to_instance,
        )
    except ImportError as exc:
        raise ConfigError(
            f"use_liger_kernel: liger-kernel is not importable ({first_line(exc)}); "
            f"pip install liger-kernel, or remove {spell_given('use_liger_kernel', True)}"
        ) from None
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ConfigError(
            f"use_liger_kernel: Liger has no kernels for model type {model_type!r} (it has: "
            f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}); remove "
            + spell_given("use_liger_kernel", True)
        )
    _save_patched_modules(model)
    _apply_liger_kernel_to_instance(model=model, **kernels)


# the namespaces saved by each open modeling_patches_undone scope, innermost last
_OPEN_SCOPES: list[dict[str, dict[str, Any]]] = []
# besides transformers' modeling modules, what Liger's apply functions rebind through them:
# ``modeling_siglip.nn.LayerNorm = ...`` is torch.nn's LayerNorm, and its cross-entropy kernel
# goes into transformers.loss.loss_utils (off in directpo: LIGER_LOSS_KERNELS)
_ALSO_PATCHED = ("torch.nn", "torch.nn.functional", "transformers.loss.loss_utils")


@contextlib.contextmanager
def modeling_patches_undone() -> Iterator[None]:
    """Puts back, on leaving (returned or raised), every name that Liger's kernels rebound in
    transformers' modeling modules in the meantime. Liger's apply functions, even given one
    model, replace a model type's rotary function, RMSNorm and MLP classes for the whole
    process: a notebook's ``train(use_liger_kernel=True)`` made every later train() of that
    model type (and score, ImplicitReward) run Liger's kernels, asked for or not. The models
    built inside keep the classes they were built with. (bench/vs_trl.py undoes a TRL run's
    the same way.)"""
    saved: dict[str, dict[str, Any]] = {}
    _OPEN_SCOPES.append(saved)
    try:
        yield
    finally:
        _OPEN_SCOPES.remove(saved)
        for name, before in saved.items():
            namespace = vars(sys.modules.get(name) or importlib.import_module(name))
            # (a submodule imported meanwhile stays: torch.nn.attention is its package's name)
            added = [key for key in namespace if key not in before]
            for key in [key for key in added if not isinstance(namespace[key], ModuleType)]:
                del namespace[key]
            for key, value in before.items():
                if namespace.get(key) is not value:
                    namespace[key] = value


def _save_patched_modules(model: torch.nn.Module) -> None:
    """The namespaces Liger may rebind for ``model``, as they are before it does, in every open
    modeling_patches_undone scope that has not saved them yet. The model type's modeling modules
    (its sub-models' too: a vision-language model's text side) are imported first, so that
    one Liger imports itself is saved as it was."""
    if not _OPEN_SCOPES:
        return  # (a caller of load_causal_lm outside train(): the patch is theirs to keep)
    config = getattr(model, "config", None)
    kinds = {getattr(config, "model_type", None)}
    for key in getattr(config, "sub_configs", None) or {}:
        kinds.add(getattr(getattr(config, key, None), "model_type", None))
    for kind in sorted(kind for kind in kinds if kind):
        with contextlib.suppress(ImportError):
            importlib.import_module(f"transformers.models.{kind}.modeling_{kind}")
    modeling = [name for name in list(sys.modules) if _is_modeling(name)]
    names = [name for name in (*_ALSO_PATCHED, *modeling) if sys.modules.get(name) is not None]
    for saved in _OPEN_SCOPES:
        for name in names:
            if name not in saved:
                saved[name] = dict(vars(sys.modules[name]))


def _is_modeling(name: str) -> bool:
    return name.startswith("transformers.models.") and ".modeling_" in name


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated transformer blocks (the classes it names in _no_split_modules)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_failure(exc: BaseException) -> str | None:
    """Why torch.compile failed, if ``exc`` is its failure (dynamo's or its backend's: no C++
    compiler, no Triton, a kernel it cannot generate), else None (the model's own error)."""
    from torch._dynamo.exc import TorchDynamoException

    if not isinstance(exc, TorchDynamoException):
        return None
    cause = getattr(exc, "inner_exception", None) or exc  # a backend's: its own error
    return f"{type(cause).__name__}: {first_line(cause)}"[:200]


def uncompile_layers(model: torch.nn.Module) -> None:
    """Undo ``torch_compile``'s regional compilation: the decoder layers run eagerly."""
    for block in decoder_layers(model):
        block._compiled_call_impl = None


def enable_activation_checkpointing(model: torch.nn.Module, every: int = 1) -> None:
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs and no_grad refs
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    loaded = getattr(model, CONFIG_AS_LOADED, {})
    loaded.setdefault("", {}).setdefault("use_cache", getattr(model.config, "use_cache", None))
    setattr(model, CONFIG_AS_LOADED, loaded)
    model.config.use_cache = False  # while training only (config_as_loaded)
    if every > 1:  # transformers checkpoints a layer whose gradient_checkpointing flag is set
        layers = [m for m in decoder_layers(model) if hasattr(m, "gradient_checkpointing")]
        if not layers:
            raise ModelLoadError(
                f"gradient_checkpointing_every: {type(model).__name__} has no per-layer "
                f"checkpointing switch; {spell_setting(('gradient_checkpointing_every', 1))}"
            )
        for index, layer in enumerate(layers):
            layer.gradient_checkpointing = index % every == 0


# a loaded model's attribute: the config values changed for training (dropout, use_cache), as
# its folder had them, by sub-config ("" for the config itself): saved folders write these
CONFIG_AS_LOADED = "directpo_config_as_loaded"


def zero_dropout_config(config: Any) -> dict[str, dict[str, float]]:
    """Dropout probabilities that models read from the config (e.g. attention_dropout), set to
    0; returns the values replaced, by sub-config ("" for the config itself)."""
    replaced: dict[str, dict[str, float]] = {}
    for name in ("", "text_config"):
        cfg = getattr(config, name, None) if name else config
        if cfg is None:
            continue
        for key, value in list(vars(cfg).items()):
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
                replaced.setdefault(name, {})[key] = value
                setattr(cfg, key, 0.0)
    return replaced


@contextlib.contextmanager
def config_as_loaded(model: torch.nn.Module) -> Iterator[None]:
    """The config of ``model`` (a peft model's base's) holds its folder's values inside the
    block: disable_dropout zeroes the dropout of the config that layers read while training,
    gradient checkpointing turns use_cache off, but a saved folder keeps the base's for whoever
    uses or trains it next (as TRL's, which changes only the Dropout modules and each call)."""
    from directpo.logprobs import unwrap_peft

    inner = unwrap_peft(model)
    restored = []
    for name, values in getattr(inner, CONFIG_AS_LOADED, {}).items():
        cfg = getattr(inner.config, name) if name else inner.config
        for key, value in values.items():
            restored.append((cfg, key, getattr(cfg, key)))
            setattr(cfg, key, value)
    try:
        yield
    finally:
        for cfg, key, value in restored:
            setattr(cfg, key, value)
