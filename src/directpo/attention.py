"""Variable-length attention for shared/packed rows: no dense mask, only the keys each query sees.

``logprobs.may_attend`` is the one rule of which token sees which (causal, within a segment, a
completion sees the prompt and itself but no other completion). The dense 4D mask renders it for
SDPA (the CPU path, O(T²) memory per row); this module renders it as *segments* for a varlen
kernel (FlashAttention-2's ``flash_attn_varlen_func``, or PyTorch's ``varlen_attn``), as
flash-preference does:

* every row of the batch is flattened into one stream of R·T tokens, and cut into query
  segments in order: ``[prompt + chosen]``, ``[rejected]``, ..., then a row's padding tail;
* the keys of ``[prompt + chosen]`` are itself; the keys of ``[rejected]`` are the prompt's keys
  followed by its own (gathered by ``key_index``), so the prompt is computed once while the
  rejected tokens still see it;
* attention is causal aligned to the bottom right (FlashAttention's convention for queries
  shorter than keys): rejected token j sees the whole prompt and rejected tokens 0..j.

It is registered with transformers as the attention implementation ``directpo_varlen``; a
forward without a plan (plain padded rows, generation) goes to SDPA with the usual mask. The
``math`` backend computes the same thing segment by segment with SDPA: any device and dtype, and
what the tests compare against the dense-mask path on CPU. ``check_layout`` verifies each model
on its device at start.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from directpo import flexattention
from directpo.devices import tensors_to

IMPLEMENTATION = "directpo_varlen"
PLAN_KEY = "directpo_varlen"  # the forward keyword that carries the VarlenPlan


@dataclass(frozen=True)
class VarlenPlan:
    """Which keys each query segment of a flattened batch sees (see the module docstring)."""

    cu_seq_q: torch.Tensor  # [S + 1] int32: query segment boundaries in the flat token stream
    cu_seq_k: torch.Tensor  # [S + 1] int32: key segment boundaries in the gathered key stream
    key_index: torch.Tensor  # [K] long: flat token index of each gathered key
    max_q: int
    max_k: int
    segments: tuple[tuple[int, int, int, int], ...]  # (q start, q end, k start, k end) per segment

    def to(self, device: torch.device | str) -> VarlenPlan:
        return tensors_to(self, device)


def build_plan(width: int, rows: Sequence[Sequence[tuple[int, int, Sequence[int]]]]) -> VarlenPlan:
    """The plan of a batch whose row r holds, left to right, the segments ``rows[r]``, each given
    as (offset in the row, prompt length, completion lengths), then padding up to ``width``."""
    q_lengths: list[int] = []
    k_ranges: list[list[tuple[int, int]]] = []

    def add(queries: tuple[int, int], keys: list[tuple[int, int]]) -> None:
        if queries[1] > queries[0]:
            q_lengths.append(queries[1] - queries[0])
            k_ranges.append(keys)

    for r, segments in enumerate(rows):
        base, end = r * width, r * width
        for offset, n_prompt, completions in segments:
            start = base + offset
            prompt = (start, start + n_prompt)
            first = prompt[1] + (completions[0] if completions else 0)
            add((start, first), [(start, first)])
            position = first
            for length in completions[1:]:
                own = (position, position + length)
                add(own, [prompt, own])
                position += length
            end = position
        add((end, base + width), [(end, base + width)])  # the row's padding tail
    pieces = [torch.arange(a, b) for keys in k_ranges for a, b in keys]
    key_index = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
    k_lengths = [sum(b - a for a, b in keys) for keys in k_ranges]
    cu_q = torch.tensor([0, *q_lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    cu_k = torch.tensor([0, *k_lengths], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    segments = tuple(
        (int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1]))
        for i in range(len(q_lengths))
    )
    return VarlenPlan(
        cu_seq_q=cu_q,
        cu_seq_k=cu_k,
        key_index=key_index,
        max_q=max(q_lengths, default=0),
        max_k=max(k_lengths, default=0),
        segments=segments,
    )


# -- kernels -----------------------------------------------------------------------------------


def available_backend(device: torch.device) -> str | None:
    """The fast varlen kernel for ``device``: flash_attn, torch (PyTorch's varlen_attn), or None."""
    if device.type != "cuda":
        return None
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attn"
    if importlib.util.find_spec("torch.nn.attention.varlen") is not None:
        return "torch"
    return None


# Decided once, outside any compiled region (register(), use_backend()), so that a compiled
# decoder layer traces none of this bookkeeping.
_backend = "auto"  # auto: the fast CUDA kernel for bf16/fp16 on CUDA, else math
_cuda_backend: str | None = None  # what auto uses on CUDA


def use_backend(name: str) -> None:
    """auto | flash_attn | torch | math (math: any device, segment by segment)."""
    global _backend
    _backend = name
    _prepare()


def _prepare() -> None:
    global _cuda_backend
    _cuda_backend = available_backend(torch.device("cuda")) if torch.cuda.is_available() else None
    if "torch" in (_cuda_backend, _backend):
        _torch_varlen_parameters()  # imported and inspected here, not inside a traced layer


def _varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: VarlenPlan, scale: float | None
) -> torch.Tensor:
    """[Tq, H, D] queries, [Tk, Hkv, D] gathered keys/values -> [Tq, H, D]."""
    backend = _backend
    if backend == "auto":
        fast = q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
        backend = _cuda_backend if fast and _cuda_backend else "math"
    if backend == "flash_attn":
        from flash_attn import flash_attn_varlen_func

        return flash_attn_varlen_func(
            q, k, v, plan.cu_seq_q, plan.cu_seq_k, plan.max_q, plan.max_k,
            softmax_scale=scale, causal=True,
        )  # fmt: skip
    if backend == "torch":
        return _torch_varlen(q, k, v, plan, scale)
    return _math_varlen(q, k, v, plan, scale)


@functools.cache
def _torch_varlen_parameters() -> frozenset[str]:
    from torch.nn.attention.varlen import varlen_attn

    return frozenset(inspect.signature(varlen_attn).parameters)


def _torch_varlen(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: VarlenPlan, scale: float | None
) -> torch.Tensor:
    from torch.nn.attention.varlen import varlen_attn

    parameters = _torch_varlen_parameters()
    kwargs: dict[str, Any] = {}
    if "is_causal" in parameters:  # torch 2.10
        kwargs["is_causal"] = True
    else:  # torch 2.11+: causal is the (-1, 0) window
        kwargs["window_size"] = (-1, 0)
    if "scale" in parameters:
        kwargs["scale"] = scale
    elif scale is not None:
        q = q * (scale * q.shape[-1] ** 0.5)
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in parameters:
            kwargs["enable_gqa"] = True
        else:
            k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    return varlen_attn(q, k, v, plan.cu_seq_q, plan.cu_seq_k, plan.max_q, plan.max_k, **kwargs)


def _math_varlen(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    plan: VarlenPlan,
    scale: float | None,
    dropout: float = 0.0,
) -> torch.Tensor:
    if q.shape[1] != k.shape[1]:
        k, v = _repeat_kv(k, q.shape[1]), _repeat_kv(v, q.shape[1])
    out = torch.empty_like(q)
    for q0, q1, k0, k1 in plan.segments:
        n_q, n_k = q1 - q0, k1 - k0
        # bottom-right causal: query i sees keys 0 .. i + (n_k - n_q)
        allowed = torch.ones(n_q, n_k, dtype=torch.bool, device=q.device).tril(n_k - n_q)
        out[q0:q1] = F.scaled_dot_product_attention(
            q[q0:q1].transpose(0, 1),
            k[k0:k1].transpose(0, 1),
            v[k0:k1].transpose(0, 1),
            attn_mask=allowed,
            dropout_p=dropout,
            scale=scale,
        ).transpose(0, 1)
    return out


def _repeat_kv(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    return tensor.repeat_interleave(heads // tensor.shape[1], dim=1)


# -- the transformers integration --------------------------------------------------------------


def varlen_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: [B, H, T, D] in, [B, T, H, D] out."""
    plan: VarlenPlan | None = kwargs.pop(PLAN_KEY, None)
    if plan is None:  # plain padded rows (generation, the plain layout): SDPA with its mask
        return flexattention.sdpa_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    flexattention.refuse_unsupported(IMPLEMENTATION, kwargs)
    rows, heads, width, dim = query.shape
    q = query.transpose(1, 2).reshape(rows * width, heads, dim)
    k = key.transpose(1, 2).reshape(rows * width, key.shape[1], dim)[plan.key_index]
    v = value.transpose(1, 2).reshape(rows * width, value.shape[1], dim)[plan.key_index]
    if dropout:  # only with disable_dropout: false; the fast kernels here take no dropout
        out = _math_varlen(q, k, v, plan, scaling, dropout)
    else:
        out = _varlen(q, k, v, plan, scaling)
    return out.view(rows, width, heads, dim), None


def _varlen_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for planned batches (their forward passes no 2D mask); SDPA's for the rest."""
    if attention_mask is None:
        return None
    from transformers.masking_utils import sdpa_mask

    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def choose_implementation(
    requested: str, device: torch.device, dtype: torch.dtype, plain_layout: bool
) -> str:
    """The attention implementation to train with: ``varlen`` means directpo_varlen (its fast
    kernel on CUDA, else the math backend; transformers' default for plain rows, where SDPA
    would not run Gemma 2's soft-capped logits); ``auto`` means directpo_varlen where a fast kernel
    runs (CUDA, bf16/fp16, shared or packed rows), else transformers' default;
    ``flex_attention`` means directpo_flex for shared or packed rows (flexattention.py)."""
    if requested == "varlen":  # plain rows have no segments: transformers' default runs them
        return "auto" if plain_layout else register()
    if requested == "auto":
        fast = available_backend(device) and dtype in (torch.bfloat16, torch.float16)
        return register() if fast and not plain_layout else "auto"
    if requested == "flex_attention":  # off CUDA refused before (device_checks.check_device)
        return "flex_attention" if plain_layout else flexattention.register()
    return requested


@functools.cache
def register() -> str:
    """Register ``directpo_varlen`` with transformers (once per process); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, varlen_attention_forward)
    AttentionMaskInterface.register(IMPLEMENTATION, _varlen_mask)
    _skip_packed_sequence_detection()
    _prepare()
    return IMPLEMENTATION


def _skip_packed_sequence_detection() -> None:
    """transformers looks for packed rows in ``position_ids`` before building any mask (when no
    2D mask is given), and its ``.all()`` on that device tensor waits for the GPU: two syncs per
    micro-batch (policy and reference forward), so the CPU can no longer queue the next
    micro-batch while the GPU works (bench/gpu_smoke.py found them on an H200). For
    ``directpo_varlen`` the answer is never used: a planned forward passes no 2D mask and its
    mask function returns None whatever the rows hold. So for this implementation, and only
    when no 2D mask is given, the position ids are withheld from that preprocessing step (the
    model still gets them for its rotary embedding). A transformers without the step is left
    as it is (the syncs come back, the values do not change)."""
    from transformers import masking_utils

    original = getattr(masking_utils, "_preprocess_mask_arguments", None)
    if original is None or getattr(original, "_directpo_wrapped", False):
        return
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return
    if not {"config", "attention_mask", "position_ids"} <= set(signature.parameters):
        return

    @functools.wraps(original)
    def preprocess(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        config, mask = bound.arguments["config"], bound.arguments.get("attention_mask")
        if mask is None and getattr(config, "_attn_implementation", None) == IMPLEMENTATION:
            bound.arguments["position_ids"] = None
        return original(*bound.args, **bound.kwargs)

    preprocess._directpo_wrapped = True  # type: ignore[attr-defined]
    masking_utils._preprocess_mask_arguments = preprocess
