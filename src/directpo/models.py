"""Loading a policy or reference causal LM from a Hugging Face model folder (or a PEFT
adapter folder: its base with the adapter on it), and the router loss its config declares.
Where the files are: model_files.py; tokenizers and processors: tokenizer_loading.py; the model
made ready to train: model_preparation.py; FSDP2's meta-device build: meta_models.py."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

from directpo.adapters import adapter_base, adapter_config, peft_wrapping
from directpo.callers import spell_setting
from directpo.errors import ConfigError, ModelLoadError, first_line
from directpo.hub import cache_only_where_unreachable
from directpo.meta_models import meta_model
from directpo.model_files import check_hub_reachable, model_location
from directpo.model_preparation import (
    CONFIG_AS_LOADED,
    LoadOptions,
    prepared_model,
    zero_dropout_config,
)
from directpo.precision import DTYPES
from directpo.vision import is_vision_config


def load_causal_lm(
    path: str,
    dtype: str | torch.dtype,
    *,
    trainable: bool,
    device: torch.device | str = "cpu",
    options: LoadOptions = LoadOptions(),
) -> torch.nn.Module:
    """An ``AutoModelForCausalLM`` from ``path`` (or a PEFT adapter folder: its base with the
    adapter on it); frozen and in eval mode unless trainable."""
    cache_only_where_unreachable(path)
    kwargs: dict[str, Any] = dict(options.init_kwargs)
    if options.attn_implementation != "auto":
        kwargs["attn_implementation"] = options.attn_implementation
    if options.trust_remote_code:
        kwargs["trust_remote_code"] = True
    if options.quantization is not None:
        kwargs["quantization_config"] = options.quantization
        kwargs.setdefault("device_map", {"": device})
    if options.meta:
        meta = meta_model(path, dtype, trainable=trainable, options=options)
        if meta is not None:
            return meta
    adapter = adapter_base(path)
    if adapter is not None:  # a LoRA output folder: the base model with the adapter on it
        from peft import PeftModel

        revision = adapter_config(path).get("revision")
        if revision and "revision" not in options.init_kwargs:  # as peft's AutoPeftModel does
            options = replace(options, init_kwargs={**options.init_kwargs, "revision": revision})
        if not os.path.exists(adapter):  # a hub id: said as the model's own would be, named
            try:
                check_hub_reachable(adapter, model_location(kwargs))
            except ModelLoadError as exc:
                raise ModelLoadError(
                    f"model '{path}': its adapter's base (adapter_config.json's "
                    f"base_model_name_or_path): {exc}; set it to the base model's folder"
                ) from None
        base = load_causal_lm(adapter, dtype, trainable=False, device=device, options=options)
        try:
            with peft_wrapping():
                model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        except Exception as exc:  # peft raises several types for a foreign or damaged adapter
            raise ModelLoadError(
                f"model '{path}': cannot load the adapter onto '{adapter}' ({first_line(exc)})"
            ) from None
        return model.train() if trainable else model.eval()
    try:
        # the config from where the weights come (another revision's may differ)
        location = model_location(kwargs)
        config = AutoConfig.from_pretrained(
            path, trust_remote_code=options.trust_remote_code, **location
        )
        zeroed = zero_dropout_config(config) if options.disable_dropout else {}
        # a vision-language model loads as image-text-to-text (LLaVA, Qwen2-VL, Gemma 3, ...)
        auto = AutoModelForImageTextToText if is_vision_config(config) else AutoModelForCausalLM
        model = auto.from_pretrained(path, config=config, dtype=DTYPES.get(dtype, dtype), **kwargs)
        setattr(model, CONFIG_AS_LOADED, zeroed)
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"model '{path}': cannot load as a causal LM ({first_line(exc)})"
            f"{_load_hint(exc, options, kwargs.get('attn_implementation'))}"
        ) from None
    if "device_map" not in kwargs:  # accelerate placed it already
        model.to(device)
    return prepared_model(model, trainable, options)


def _load_hint(exc: Exception, options: LoadOptions, attention: str | None) -> str:
    """What to change where a load refused an option of the run's (its message names none)."""
    if "custom code" in str(exc) and not options.trust_remote_code:
        return f"; allow its code: {spell_setting(('trust_remote_code', True))}"
    if attention and "attention" in str(exc).lower():
        # (Gemma 2 refuses sdpa; flash_attention_2 without its package): transformers' words
        # name neither the option nor what runs; auto picks what this model runs
        return (
            f"; it refuses attn_implementation {attention}: "
            f"{spell_setting(('attn_implementation', 'auto'))} (directpo picks one this model "
            "runs) or eager"
        )
    return ""


def resolve_router_aux(
    config: Any, policy: torch.nn.Module, echo: Callable[[str], None] = print
) -> Any:
    """``config`` with ``router_aux_loss_coef`` resolved for this policy, as TRL does: unset
    means the coefficient the model's config declares (a Mixture-of-Experts model that returns
    router logits, e.g. Mixtral's 0.001), else off: left unset (None), so that the saved card
    does not list a coefficient the user never set. A coefficient set for a model with no router
    loss directpo can compute is refused; one only its config declares is turned off with a
    notice (``echo``), not refused: the user asked for nothing. The caller's config is not
    modified."""
    from directpo.logprobs import router_balance_function, text_config, unwrap_peft

    model_config = text_config(unwrap_peft(policy))
    name = type(unwrap_peft(policy)).__name__
    coefficient = config.router_aux_loss_coef
    if coefficient is None:
        declared = hasattr(model_config, "output_router_logits")
        coefficient = float(getattr(model_config, "router_aux_loss_coef", 0.0) or 0.0) * declared
    if coefficient and router_balance_function(policy) is None:
        problem = f"{name} is not a Mixture-of-Experts model with a load-balancing loss"
        if config.router_aux_loss_coef is not None:
            raise ConfigError(f"router_aux_loss_coef is {coefficient} but {problem}; remove it")
        # only the model's config asked for it (Llama 4: no load_balancing_loss_func)
        echo(f"router_aux_loss_coef: off, though {name}'s config declares {coefficient}: {problem}")
        coefficient = 0.0
    resolved = copy.copy(config)
    unset_and_off = config.router_aux_loss_coef is None and not coefficient
    resolved.router_aux_loss_coef = None if unset_and_off else float(coefficient)
    return resolved
