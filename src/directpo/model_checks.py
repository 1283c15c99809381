"""What is measured on each model at start, before any step: does it give the plain rows'
log-probs in the shared/packed layout (``choose_layout``), and are its logits its LM head's
output, as the chunked head assumes (``check_heads``)? Architectures differ in what they honour
(a custom 4D mask, explicit position ids, a sliding window, a logit transform under a name of
their own), so a few synthetic pairs are scored both ways rather than trusted to a list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from directpo.attention import IMPLEMENTATION as VARLEN
from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.callers import spell_setting
from directpo.errors import memory_kind
from directpo.flexattention import BLOCK as FLEX_BLOCK
from directpo.flexattention import IMPLEMENTATION as FLEX
from directpo.logprobs import (
    attention_implementation,
    backbone_and_head,
    float_dtype,
    model_logprobs,
    score_from_whole_logits,
    text_config,
    unwrap_peft,
)
from directpo.model_fit import learned_positions
from directpo.model_preparation import compile_failure, uncompile_layers
from directpo.tokenization import TokenizedPair
from directpo.vision import OWN_MASK_TYPES, placeholder_token_ids


def check_layout(
    model: torch.nn.Module,
    layout: Layout,
    samples: Sequence[TokenizedPair] = (),
    runner: torch.nn.Module | None = None,
) -> str | None:
    """None if ``model`` gives the same log-probs in ``layout`` as in plain rows, else why not.

    Whether a model honours a custom 4D mask and explicit position ids depends on its
    architecture and attention kernel (ALiBi models, flash-attention-2, remote code...), so
    it is measured: a few synthetic pairs, of different lengths and with a prompt longer than
    its completions, are scored both ways, with ``samples`` (real pairs: a vision-language
    model's first image pairs, so that its image path is checked too). ``runner``: the module
    that runs ``model`` (its FSDP2-sharded scorer, whose forward gathers the shards).
    """
    pairs = _probe_pairs(model, samples)

    def score(layout: Layout) -> torch.Tensor:
        batch = collate_pairs(pairs, 0, layout=layout).to(next(model.parameters()).device)
        return (runner(batch) if runner is not None else model_logprobs(model, batch))[0]

    return _disagreement(model, lambda: score(PLAIN), lambda: score(layout), "the plain layout")


def check_compilation(
    models: Sequence[torch.nn.Module],
    echo: Callable[[str], None] = print,
    runners: Sequence[torch.nn.Module | None] = (),
) -> bool:
    """``torch_compile``: whether the models' compiled decoder layers run, tried on a few
    synthetic pairs before anything else runs them. Compiling fails for reasons of the machine
    (no C++ compiler for the CPU backend, no Triton for the GPU one) or of an architecture; the
    run then goes on uncompiled, slower, and one line says why, instead of the start-up checks
    reading the failure as the model's and the first step ending in a traceback."""
    runners = list(runners) or [None] * len(models)
    for model, runner in zip(models, runners, strict=True):
        batch = collate_pairs(_probe_pairs(model), 0).to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                runner(batch) if runner is not None else model_logprobs(model, batch)
        except Exception as exc:
            reason = compile_failure(exc)
            if reason is None:
                raise
            for each in models:
                uncompile_layers(each)
            name = type(unwrap_peft(model)).__name__
            echo(
                f"torch_compile: off, compiling {name}'s decoder layers failed "
                f"({reason}); training uncompiled"
            )
            return False
        finally:
            model.train(was_training)
    return True


def check_head(model: torch.nn.Module, runner: torch.nn.Module | None = None) -> str | None:
    """None if ``model``'s logits are its LM head applied to its last hidden state, which the
    chunked path (``logprob_chunk_tokens``) computes by itself, else why not: then that path is
    off for the model (``backbone_and_head`` returns None) and its whole forward is used.

    The logit transforms transformers names in a config (``_LOGIT_TRANSFORMS``) never take that
    path; this measures the others (a multiplier under another name, a soft cap in remote
    code), which would otherwise silently change every log-prob. ``runner``: the model's FSDP2
    scorer, run with its chunking off and on.
    """
    if backbone_and_head(model) is None:
        return None
    batch = collate_pairs(_probe_pairs(model), 0).to(next(model.parameters()).device)

    def score(chunk_tokens: int) -> torch.Tensor:
        if runner is None:
            return model_logprobs(model, batch, chunk_tokens)[0]
        kept, runner.chunk_tokens = runner.chunk_tokens, chunk_tokens
        try:
            return runner(batch)[0]
        finally:
            runner.chunk_tokens = kept

    # the two paths differ only in summation order: a tighter tolerance than the layout's
    whole, chunked = (lambda: score(0)), (lambda: score(8))
    reason = _disagreement(model, whole, chunked, "the model's own logits", tolerance=1e-5)
    if reason is not None:
        score_from_whole_logits(model)
    return reason


def check_heads(
    models: Sequence[torch.nn.Module],
    echo: Callable[[str], None] = print,
    runners: Sequence[torch.nn.Module | None] = (),
) -> None:
    """``check_head`` of the policy (first) and a separate reference: each one whose logits are
    not its head's output is scored from its whole logits from now on (one line says so; a
    Mixture-of-Experts policy's router loss then comes from that whole forward too)."""
    runners = list(runners) or [None] * len(models)
    said = set()
    for model, runner in zip(models, runners, strict=True):
        reason = check_head(model, runner)
        name = type(unwrap_peft(model)).__name__
        if reason is None or name in said:  # a reference of the policy's class: said once
            continue
        said.add(name)
        echo(
            f"logprob_chunk_tokens: off for {name}, whose logits are not its LM head's output "
            f"({reason}); scoring from its whole logits"
        )


def _probe_pairs(
    model: torch.nn.Module, samples: Sequence[TokenizedPair] = ()
) -> list[TokenizedPair]:
    """Synthetic pairs of random tokens (different lengths, a prompt longer than its
    completions), then ``samples``."""
    # the table's rows: peft's TrainableTokensWrapper (trainable_token_indices) has no
    # num_embeddings
    vocab = model.get_input_embeddings().weight.shape[0]
    # Mllama's embeddings hold 8 rows (image tokens) past its LM head's: a target it cannot
    # score failed the probe ('Target ... is out of bounds') and turned chunking off
    head = unwrap_peft(model).get_output_embeddings()
    if isinstance(head, torch.nn.Linear):
        vocab = min(vocab, head.out_features)
    generator = torch.Generator().manual_seed(0)
    reserved = _reserved_token_ids(model)

    def ids(n: int) -> list[int]:
        drawn = torch.randint(0, vocab, (n,), generator=generator).tolist()
        return [(i + 1) % vocab if i in reserved else i for i in drawn]

    return [
        TokenizedPair(ids(11), ids(3), ids(5)),
        TokenizedPair(ids(2), ids(7), ids(1)),
        TokenizedPair(ids(4), ids(2), ids(6)),
        *samples,
    ]


def _disagreement(
    model: torch.nn.Module,
    expected: Callable[[], torch.Tensor],
    measured: Callable[[], torch.Tensor],
    what: str,
    tolerance: float = 1e-3,
) -> str | None:
    """None if two scorings of the same sequences agree (in eval mode, without gradients),
    else why not: an exception either raises (any architecture-specific refusal) or the size
    of the difference from ``what`` the first one computes. ``tolerance``: relative, in
    float32 (bf16 allows 0.1)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            plain, other = expected(), measured()
    except Exception as exc:  # any architecture-specific refusal means: not supported
        if memory_kind(exc) is not None:  # (not the layout's fault: training would run out too)
            raise
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
    finally:
        model.train(was_training)
    dtype = float_dtype(model)
    tolerance = tolerance if dtype in (torch.float32, torch.float64) else 0.1
    difference = float((plain - other).abs().max())
    if not difference <= tolerance * max(1.0, float(plain.abs().max()) / 10):
        return f"log-probs differ from {what} by {difference:.3g}"
    return None


def _reserved_token_ids(model: torch.nn.Module) -> set[int]:
    """Token ids a synthetic pair must not contain: a vision-language model's image, video and
    vision-boundary tokens (an image token without its image is an error)."""
    return placeholder_token_ids(getattr(unwrap_peft(model), "config", None))


# Config keys of local (sliding-window) attention, where a layer sees only the last N positions.
# transformers builds that window into the mask it makes from a 2D padding mask; a shared or
# packed row's own mask replaces it, so every layer would see the whole prefix instead.
_WINDOW_KEYS = (
    "sliding_window",
    "sliding_window_size",
    "attention_window_size",
    "window_size",
    "local_attention_window_len",
    "attention_chunk_size",  # chunked attention (Llama 4): a token sees its own chunk only
)


def attention_window(model: torch.nn.Module) -> int | None:
    """The shortest local-attention window the model's (text) config declares, else None."""
    windows = [
        value
        for cfg in _configs(model)
        if _has_local_layers(cfg)
        for key in _WINDOW_KEYS
        if type(value := getattr(cfg, key, None)) is int and value > 0
    ]
    return min(windows, default=None)


def _configs(model: torch.nn.Module) -> list[Any]:
    """The model's config and its text config (a vision-language model's language model's; the
    config itself for a text model, so read twice, which changes no minimum or first), or none
    for a model without a config."""
    config = getattr(unwrap_peft(model), "config", None)
    if config is None:
        return []
    return [config, config.get_text_config()] if hasattr(config, "get_text_config") else [config]


def _has_local_layers(config: object) -> bool:
    """False when the config lists its layers' kinds and none is local: a window size left in
    such a config (older Qwen2 files: ``sliding_window`` with ``use_sliding_window: false``)
    is not used."""
    if getattr(config, "use_sliding_window", None) is False:
        return False
    kinds = getattr(config, "layer_types", None)
    return not kinds or any(kind != "full_attention" for kind in kinds)


# transformers' layer kinds (``config.layer_types``) that carry a state from token to token
# (Mamba, gated DeltaNet, RG-LRU, short convolutions; "hybrid": such a mixer beside attention):
# along a shared or packed row that state runs from one sequence into the next, which no mask
# stops. Measuring cannot always tell (check_layout's short probes in bf16 differ by less than
# bf16's tolerance, while real pairs differ by nats), so these never share or pack.
_STATEFUL_LAYERS = ("linear_attention", "conv", "hybrid", "hybrid_sliding")


def stateful_layers(model: torch.nn.Module) -> str | None:
    """The first layer kind of the model's (text) config that carries a recurrent state, or None."""
    kinds = [kind for cfg in _configs(model) for kind in getattr(cfg, "layer_types", None) or ()]
    return next((kind for kind in kinds if kind in _STATEFUL_LAYERS), None)


def choose_layout(
    layout: Layout,
    models: Sequence[torch.nn.Module],
    echo: Callable[[str], None] = print,
    samples: Sequence[TokenizedPair] = (),
    runners: Sequence[torch.nn.Module | None] = (),
    longest: int | None = None,
) -> Layout:
    """``layout`` if every model gives it the plain layout's log-probs, else plain (says why).
    ``samples``: real pairs checked too, ``runners``: the modules that run each model
    (``check_layout``), ``longest``: the most tokens a sequence (prompt + completion) of the
    run can have (None: unbounded).

    A model with sliding-window attention keeps ``layout`` only while no sequence is longer
    than its window: up to there the window changes nothing, past it the layout's mask would
    let a token see further back than the model does (``check_layout``'s short synthetic pairs
    cannot show this). A model with recurrent layers (``stateful_layers``) never keeps it, nor
    one whose image pairs come with ``token_type_ids`` (a mask of its own making).

    Models running ``directpo_varlen`` are checked with varlen segments, models running
    FlexAttention with the collator's blocks (rows then padded to whole blocks); if one of them
    differs, every model goes back to SDPA (eager where SDPA cannot run: ``dense_attention``)
    and the dense-mask rendering of the layout is checked instead; plain rows never run
    ``directpo_varlen`` either.
    """
    chosen = _checked_layout(layout, models, echo, samples, runners, longest)
    if not chosen.varlen:  # plain rows: varlen's own kernel has no segments to run
        for model in models:
            if attention_implementation(model) == VARLEN:
                dense_attention(model)
    return chosen


def dense_attention(model: torch.nn.Module) -> str:
    """Set ``model`` to the kernel a dense mask (or plain rows) runs with, and return its name:
    SDPA, or eager for a model transformers cannot run through SDPA (Gemma 2, whose attention
    logits are soft-capped), as transformers itself chooses by default. (Setting SDPA there
    was a ValueError's traceback at start.)"""
    inner = unwrap_peft(model)
    try:
        inner.set_attn_implementation("sdpa")
    except ValueError:
        inner.set_attn_implementation("eager")
        return "eager"
    return "sdpa"


def _checked_layout(
    layout: Layout,
    models: Sequence[torch.nn.Module],
    echo: Callable[[str], None],
    samples: Sequence[TokenizedPair],
    runners: Sequence[torch.nn.Module | None],
    longest: int | None,
) -> Layout:
    """``choose_layout``'s checks, the attention kernel of a varlen or flex model replaced
    where its rendering differs."""
    if layout.is_plain:
        return layout
    for model in models:
        window = attention_window(model)
        if window is not None and (longest is None or longest > window):
            reach = "have no length limit" if longest is None else f"reach {longest} tokens"
            echo(
                f"prefix_sharing/padding_free: off for {type(unwrap_peft(model)).__name__}, "
                f"whose sliding-window attention sees the last {window} positions while "
                f"sequences here {reach}; using the plain padded layout"
            )
            return PLAIN
        kind = stateful_layers(model)
        if kind is not None:
            echo(
                f"prefix_sharing/padding_free: off for {type(unwrap_peft(model)).__name__}, "
                f"whose {kind} layers carry a state from token to token, which would run from "
                "one sequence of a row into the next; using the plain padded layout"
            )
            return PLAIN
    if any(s.vision is not None and s.vision.token_masks for s in samples):
        echo(
            f"prefix_sharing/padding_free: off for {type(unwrap_peft(models[0])).__name__}, "
            "whose cross-attention layers take a batch's images one entry per row (a shared "
            "or packed row holds several pairs' tokens); using the plain padded layout"
        )
        return PLAIN
    if any(s.vision is not None and OWN_MASK_TYPES in s.vision.token_types for s in samples):
        # measured, the difference is a tiny random model's noise, a real model's is not
        echo(
            f"prefix_sharing/padding_free: off for {type(unwrap_peft(models[0])).__name__}, "
            f"whose {OWN_MASK_TYPES} let tokens see later ones (Gemma 3's image tokens see "
            "each other, PaliGemma's image and prompt), which the shared rows' causal mask "
            "cannot say; using the plain padded layout"
        )
        return PLAIN
    runners = list(runners) or [None] * len(models)
    checked = list(zip(models, runners, strict=True))
    implementations = {attention_implementation(m) for m in models}
    special = None
    if VARLEN in implementations:
        special, candidate = VARLEN, replace(layout, varlen=True)
    elif implementations & {FLEX, "flex_attention"}:
        multiple = math.lcm(layout.pad_multiple, FLEX_BLOCK)
        special, candidate = FLEX, replace(layout, flex=True, pad_multiple=multiple)
    if special is not None:
        reasons = (check_layout(m, candidate, samples, run) for m, run in checked)
        reason = next((r for r in reasons if r is not None), None)
        if reason is None:
            return candidate
        kernels = sorted({dense_attention(model) for model in models})
        echo(f"attention: {special} off ({reason}); using {' / '.join(kernels)} with a dense mask")
    for model, run in checked:
        reason = check_layout(model, layout, samples, run)
        if reason is not None:
            name = type(unwrap_peft(model)).__name__
            echo(
                f"prefix_sharing/padding_free: off for {name}, which does not honour the 4D "
                f"attention mask ({reason}); using the plain padded layout"
            )
            return PLAIN
    return layout


def trained_positions_notes(
    models: Sequence[tuple[str, str, torch.nn.Module]], longest: int | None
) -> list[str]:
    """A line for each model without a position table (rotary, ALiBi: ``check_positions``
    refuses the others) whose sequences here (``longest`` tokens, None: no limit) reach past
    the positions it was trained on (``max_position_embeddings``). Nothing fails there: the
    positions are extrapolated, which degrades most models, so a run that did not mean to
    train them is told. A rope scaling other than the default (linear, yarn, ...) is a
    context the user extended on purpose: no line."""
    notes: dict[str, str] = {}  # by folder: a reference loaded from the policy's says nothing new
    for key, path, model in models:
        config = text_config(unwrap_peft(model))
        limit = getattr(config, "max_position_embeddings", None)
        if path in notes or type(limit) is not int or learned_positions(model) is not None:
            continue
        if (longest is not None and longest <= limit) or _scaled_rope(config):
            continue
        reach = "have no length limit" if longest is None else f"reach {longest} tokens"
        notes[path] = (
            f"note: sequences here {reach}, past the {limit} positions {key} '{path}' was "
            f"trained on (max_position_embeddings): positions beyond are extrapolated, which "
            f"degrades most models; {spell_setting(('max_length', limit))} to cut them"
        )
    return list(notes.values())


def _scaled_rope(config: object) -> bool:
    """Does ``config`` scale its rotary positions (rope_type other than default)? transformers
    5 keeps ``rope_parameters``, per layer kind for some models (Gemma 3), older configs
    ``rope_scaling``."""
    found = [getattr(config, "rope_parameters", None), getattr(config, "rope_scaling", None)]
    dicts = [d for d in found if isinstance(d, dict)]
    dicts += [v for d in dicts for v in d.values() if isinstance(v, dict)]
    return any(d.get("rope_type", d.get("type", "default")) != "default" for d in dicts)
