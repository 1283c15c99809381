"""Loading policy, reference and tokenizer from Hugging Face model folders."""

from __future__ import annotations

from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from directpo.errors import ModelLoadError
from directpo.precision import DTYPES


def load_tokenizer(path: str) -> Any:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(f"tokenizer '{path}': cannot load ({_first_line(exc)})") from None
    if tokenizer.eos_token_id is None:
        raise ModelLoadError(f"tokenizer '{path}': has no EOS token; completions must end with one")
    return tokenizer


def load_causal_lm(
    path: str,
    dtype: str | torch.dtype,
    *,
    disable_dropout: bool,
    trainable: bool,
    gradient_checkpointing: bool = False,
    device: torch.device | str = "cpu",
    attn_implementation: str = "auto",
    checkpoint_every: int = 1,
    compile_layers: bool = False,
) -> torch.nn.Module:
    """An ``AutoModelForCausalLM`` from ``path``; frozen and in eval mode unless trainable.

    ``checkpoint_every``: with gradient checkpointing, only every k-th decoder layer recomputes.
    ``compile_layers``: each decoder layer is compiled with torch.compile (regional).
    """
    kwargs = {} if attn_implementation == "auto" else {"attn_implementation": attn_implementation}
    try:
        config = AutoConfig.from_pretrained(path)
        if disable_dropout:
            _zero_dropout_config(config)
        model = AutoModelForCausalLM.from_pretrained(
            path, config=config, dtype=DTYPES.get(dtype, dtype), **kwargs
        )
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"model '{path}': cannot load as a causal LM ({_first_line(exc)})"
        ) from None
    if disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    model.to(device)
    if trainable:
        model.train()
        if gradient_checkpointing:
            _enable_activation_checkpointing(model, checkpoint_every)
    else:
        model.eval()
        model.requires_grad_(False)
    if compile_layers:
        for block in decoder_layers(model):
            block.compile()
    return model


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's repeated transformer blocks (the classes it names in _no_split_modules)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    return [m for m in model.modules() if type(m).__name__ in names]


def _enable_activation_checkpointing(model: torch.nn.Module, every: int = 1) -> None:
    kwargs = {"use_reentrant": False}  # non-reentrant: works with frozen inputs and no_grad refs
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False
    if every > 1:  # transformers checkpoints a layer whose gradient_checkpointing flag is set
        layers = [m for m in decoder_layers(model) if hasattr(m, "gradient_checkpointing")]
        if not layers:
            raise ModelLoadError(
                f"gradient_checkpointing_every: {type(model).__name__} has no per-layer "
                "checkpointing switch; use gradient_checkpointing_every: 1"
            )
        for index, layer in enumerate(layers):
            layer.gradient_checkpointing = index % every == 0


def _zero_dropout_config(config: Any) -> None:
    """Dropout probabilities that models read from the config (e.g. attention_dropout)."""
    configs = [
        config,
        *(getattr(config, name) for name in ("text_config",) if hasattr(config, name)),
    ]
    for cfg in configs:
        for key, value in list(vars(cfg).items()):
            if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
                setattr(cfg, key, 0.0)


def pad_token_id(tokenizer: Any) -> int:
    """Padding is always masked out, so any id works; prefer the tokenizer's own."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def apply_lora(
    model: torch.nn.Module, r: int, alpha: int, dropout: float, target_modules: list[str]
) -> torch.nn.Module:
    """Wrap ``model`` with fresh LoRA adapters (peft); only the adapters are trainable."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = "all-linear" if target_modules == ["all-linear"] else target_modules
    try:
        lora = LoraConfig(
            r=r,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=targets,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, lora)
    except ValueError as exc:  # e.g. target modules not found in the model
        raise ModelLoadError(f"lora_target_modules: {_first_line(exc)}") from None
