"""Whether the tokenizer and the run's sequences fit the loaded models, said in one line
before any training: an embedding row for every token and one vocabulary for policy,
reference and tokenizer; sequences, and sampled tokens, within a learned position table."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from transformers import AutoTokenizer

from directpo.callers import spell_setting
from directpo.errors import ConfigError, ModelLoadError
from directpo.model_locations import has_files


def check_vocabulary(
    tokenizer: Any,
    tokenizer_path: str,
    models: list[tuple[str, str, torch.nn.Module]],
) -> list[str]:
    """One line, before any training, if the tokenizer and the models cannot work together.

    ``models`` are (option name, path, model): the policy and the reference. Each must have an
    embedding row for every token of the tokenizer, and a model folder that ships its own
    tokenizer must ship this one (the same vocabulary, special tokens included): a reference of
    another family would otherwise give meaningless log-probs, or an index error mid-run.

    Returns warnings, for the caller to say: a later model whose folder has no tokenizer to
    compare and whose model_type is not the first's (another family, most likely another
    vocabulary, which nothing else would reveal).
    """
    tokens = len(tokenizer)
    vocabulary: dict[str, int] | None = None
    notes: list[str] = []
    family = _model_type(models[0][2]) if models else None
    for index, (key, path, model) in enumerate(models):
        rows = model.get_input_embeddings().weight.shape[0]
        if tokens > rows:
            raise ModelLoadError(
                f"{key} '{path}' has {rows} token embeddings but the tokenizer "
                f"'{tokenizer_path}' has {tokens} tokens: they do not belong together"
            )
        if os.path.abspath(path) == os.path.abspath(tokenizer_path):
            continue
        own = None
        if has_files(path):
            with contextlib.suppress(Exception):  # unreadable beside the weights: not compared
                own = AutoTokenizer.from_pretrained(path).get_vocab()
        if own is None:
            if index and _model_type(model) != family:
                notes.append(
                    f"warning: {key} '{path}' is a {_model_type(model)} model and "
                    f"'{models[0][1]}' a {family} one, and its folder has no tokenizer to "
                    f"compare with '{tokenizer_path}': its log-probs mean something only if it "
                    "was trained on that vocabulary (add its tokenizer files to have it checked)"
                )
            continue
        if vocabulary is None:
            vocabulary = tokenizer.get_vocab()
        if own != vocabulary:
            differing = len(set(own.items()) ^ set(vocabulary.items()))
            raise ModelLoadError(
                f"{key} '{path}' ships another tokenizer than '{tokenizer_path}' ({len(own)} vs "
                f"{len(vocabulary)} tokens, {differing} entries differ): policy, reference and "
                "tokenizer must share one vocabulary"
            )
    return notes


def learned_positions(model: torch.nn.Module) -> int | None:
    """How many positions a model with a learned absolute position table can take (GPT-2,
    OPT, GPT-Neo, BioGPT: its config's n_positions / max_position_embeddings), else None
    (rotary or ALiBi positions have no table to index past)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(inner, "config", None)
    if config is None:
        return None
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    limits = (getattr(config, k, None) for k in ("n_positions", "max_position_embeddings"))
    limit = next((value for value in limits if type(value) is int), None)
    if limit is None:
        return None
    tokens = {id(inner.get_input_embeddings()), id(inner.get_output_embeddings())}
    tables = (m for m in inner.modules() if isinstance(m, torch.nn.Embedding))
    # OPT and BioGPT keep 2 more rows (an offset)
    if any(limit <= t.num_embeddings <= limit + 2 and id(t) not in tokens for t in tables):
        return limit
    return None


def check_positions(models: list[tuple[str, str, torch.nn.Module]], longest: int | None) -> None:
    """One line, before any training, if a sequence (prompt + completion, ``longest`` tokens
    at most; None: no limit) would index past a model's learned position table: an IndexError
    mid-run on CPU, a device-side assert on CUDA. ``models``: as ``check_vocabulary``'s."""
    for key, path, model in models:
        limit = learned_positions(model)
        if limit is not None and (longest is None or longest > limit):
            reach = "have no length limit" if longest is None else f"reach {longest} tokens"
            raise ConfigError(
                f"max_length: sequences here {reach} but {key} '{path}' has {limit} learned "
                f"positions; {spell_setting(('max_length', limit))} (or less)"
            )


def check_generation_room(
    models: list[tuple[str, str, torch.nn.Module]], new_tokens: int, option: str
) -> None:
    """One line, before any training, if ``new_tokens`` sampled tokens (online rounds,
    eval_generate) cannot fit a model's learned position table: sampling cuts a prompt to make
    room, but the new tokens alone must fit (it failed at the first round or evaluation)."""
    for key, path, model in models:
        limit = learned_positions(model)
        if limit is not None and new_tokens >= limit:
            raise ConfigError(
                f"{option}: {new_tokens} new tokens do not fit the {limit} learned positions of "
                f"{key} '{path}'; use fewer than {limit}"
            )


def _model_type(model: torch.nn.Module) -> str | None:
    from directpo.logprobs import unwrap_peft

    return getattr(getattr(unwrap_peft(model), "config", None), "model_type", None)
