"""FlexAttention for shared/packed rows: a block-sparse mask built from the layout, no T×T mask.

The second way (after attention.py's varlen segments) to run the attention rule of
``logprobs.may_attend`` on a GPU. FlexAttention visits, for each block of 128 queries, only
the blocks of 128 keys that hold some visible key; blocks where every key is visible skip the
mask function. Which blocks those are follows from the layout alone, so the collator computes
them (``flex_blocks``: per query token the visible keys are at most two intervals, the prompt
and the token's own branch up to itself, counted per key block for each stretch of queries with
the same intervals) instead of evaluating the mask on every (query, key) pair as
``create_block_mask`` does.

It is registered with transformers as ``directpo_flex`` and calls ``flex_attention`` itself,
with grouped-query attention native for any head count (transformers' own flex path repeats the
keys and values when the query head count is not a power of two: Qwen2.5's 14 heads). A forward
without a block mask (plain rows, generation) goes to SDPA. PyTorch's FlexAttention has no
backward on CPU, so training with it needs CUDA (``device_checks.check_device`` says so); the CPU
runs the forward, which the tests compare with the dense mask.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from directpo.devices import tensors_to

IMPLEMENTATION = "directpo_flex"
BLOCK = 128  # FlexAttention's default sparse block, and the row width multiple under it


@dataclass(frozen=True)
class FlexBlocks:
    """Which key blocks each query block of each row visits (``BlockMask.from_kv_blocks``)."""

    kv_num_blocks: torch.Tensor  # [R, 1, NQ] int32: partial blocks (the mask function runs)
    kv_indices: torch.Tensor  # [R, 1, NQ, NK] int32: their indices first, in increasing order
    full_kv_num_blocks: torch.Tensor  # [R, 1, NQ] int32: blocks where every key is visible
    full_kv_indices: torch.Tensor  # [R, 1, NQ, NK] int32
    width: int

    def to(self, device: torch.device | str) -> FlexBlocks:
        return tensors_to(self, device)


def flex_blocks(
    width: int, rows: list[list[tuple[int, int, list[int]]]], block: int = BLOCK
) -> FlexBlocks:
    """The blocks of a batch whose row r holds, left to right, the segments ``rows[r]`` given as
    (offset in the row, prompt length, completion lengths), then padding up to ``width``.

    Query q sees the keys [low, high) (its segment's prompt, when q is in a later completion)
    and [start, q] (its own run: prompt + first completion, a later completion, or the padding
    tail). A block is full when all its block × block pairs are visible, partial when some are;
    positions past ``width`` count as not visible, as ``create_block_mask`` pads them. Queries
    are taken in stretches with the same intervals inside one block: a stretch's first query
    sees the fewest keys of every key block, its last query the most, so two rows of counts per
    stretch decide (a few times the block count, not the token count).
    """
    partial_rows, full_rows = [], []
    for segments in rows:
        partial, full = _row_blocks(*_query_intervals(width, segments), block)
        partial_rows.append(partial)
        full_rows.append(full)
    kv_num, kv_indices = _ordered(torch.stack(partial_rows))
    full_num, full_indices = _ordered(torch.stack(full_rows))
    return FlexBlocks(kv_num, kv_indices, full_num, full_indices, width)


def _query_intervals(
    width: int, segments: list[tuple[int, int, list[int]]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query q of a row: low, high, start with q seeing the keys [low, high) and [start, q]."""
    low = torch.zeros(width, dtype=torch.long)
    high = torch.zeros(width, dtype=torch.long)
    start = torch.zeros(width, dtype=torch.long)
    end = 0
    for offset, n_prompt, completions in segments:
        first = offset + n_prompt + (completions[0] if completions else 0)
        start[offset:first] = offset
        position = first
        for length in completions[1:]:
            low[position : position + length] = offset
            high[position : position + length] = offset + n_prompt
            start[position : position + length] = position
            position += length
        end = position
    start[end:] = end
    return low, high, start


def _row_blocks(
    low: torch.Tensor, high: torch.Tensor, start: torch.Tensor, block: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """[NQ, NK] partial and full blocks of one row from its queries' intervals."""
    width = len(start)
    n_blocks = -(-width // block)
    starts = torch.arange(n_blocks) * block
    ends = (starts + block).clamp(max=width)
    queries = torch.arange(width)
    new = torch.ones(width, dtype=torch.bool)  # every run starts at itself: start changes
    new[1:] = (start[1:] != start[:-1]) | (queries[1:] % block == 0)
    first = new.nonzero().squeeze(1)  # each stretch's first and last query
    last = torch.cat([first[1:], torch.tensor([width])]) - 1

    def visible(q: torch.Tensor) -> torch.Tensor:  # [stretches, NK]
        return _overlap(low[q], high[q], starts, ends) + _overlap(start[q], q + 1, starts, ends)

    query_block = (first // block)[:, None].expand(-1, n_blocks)
    fewest = torch.full((n_blocks, n_blocks), block).scatter_reduce(
        0, query_block, visible(first), "amin"
    )
    most = torch.zeros(n_blocks, n_blocks, dtype=torch.long).scatter_reduce(
        0, query_block, visible(last), "amax"
    )
    full = fewest == block
    full[width // block :] = False  # a last block holding padded queries
    return (most > 0) & ~full, full


def _overlap(
    low: torch.Tensor, high: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor
) -> torch.Tensor:
    """[Q, NK]: how many keys of [low, high) fall in each key block [starts, ends)."""
    hi = torch.minimum(high[:, None], ends[None, :])
    lo = torch.maximum(low[:, None], starts[None, :])
    return (hi - lo).clamp(min=0)


def _ordered(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[R, NQ, NK] bool -> counts [R, 1, NQ] and indices [R, 1, NQ, NK] (visited ones first)."""
    counts = blocks.sum(-1, dtype=torch.int32)
    indices = torch.argsort(blocks.to(torch.int8), dim=-1, descending=True, stable=True)
    return counts[:, None].contiguous(), indices[:, None].to(torch.int32).contiguous()


def block_mask(blocks: FlexBlocks, segment_ids: torch.Tensor, branch_ids: torch.Tensor) -> Any:
    """The batch's ``BlockMask``: the blocks above, and the attention rule on partial blocks."""
    from torch.nn.attention.flex_attention import BlockMask

    from directpo.logprobs import may_attend

    def mask_mod(b, h, q, k):  # noqa: ANN001, ANN202 - FlexAttention's signature
        return may_attend(
            q, k, segment_ids[b, q], segment_ids[b, k], branch_ids[b, q], branch_ids[b, k]
        )

    return BlockMask.from_kv_blocks(
        blocks.kv_num_blocks,
        blocks.kv_indices,
        blocks.full_kv_num_blocks,
        blocks.full_kv_indices,
        BLOCK_SIZE=BLOCK,
        mask_mod=mask_mod,
        seq_lengths=(blocks.width, blocks.width),
    )


# -- the transformers integration --------------------------------------------------------------


@functools.cache
def _compiled_flex_attention() -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    # without compilation FlexAttention materialises every score (its reference path)
    return torch.compile(flex_attention)


def _flex_attention(on_cuda: bool) -> Any:
    from torch.nn.attention.flex_attention import flex_attention

    if not on_cuda or torch.compiler.is_compiling():  # a compiled decoder layer traces it
        return flex_attention
    return _compiled_flex_attention()


def sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float,
    scaling: float | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' SDPA on plain padded rows (generation, the plain layout): what directpo's
    attention implementations (varlen's, flex's) run where a batch has no shared or packed rows."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(
        module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
    )


def refuse_unsupported(implementation: str, kwargs: dict[str, Any]) -> None:
    """A layer's attention arguments that directpo's implementations do not apply (a sliding
    window, logit softcapping, attention sinks) are refused, not ignored."""
    for unsupported in ("sliding_window", "softcap", "s_aux"):
        if kwargs.get(unsupported) is not None:
            raise ValueError(f"{implementation} does not support {unsupported}")


def flex_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: [B, H, T, D] in, [B, T, H, D] out."""
    from torch.nn.attention.flex_attention import BlockMask

    if not isinstance(attention_mask, BlockMask):  # plain padded rows, generation
        return sdpa_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    refuse_unsupported(IMPLEMENTATION, kwargs)
    if dropout:
        raise ValueError(f"{IMPLEMENTATION} does not support attention dropout (disable_dropout)")
    out = _flex_attention(query.is_cuda)(
        query,
        key,
        value,
        block_mask=attention_mask,
        scale=scaling,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


@functools.cache
def register() -> str:
    """Register ``directpo_flex`` with transformers (once per process); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(IMPLEMENTATION, flex_attention_forward)
    # a BlockMask passes through transformers untouched; plain rows get SDPA's mask
    AttentionMaskInterface.register(IMPLEMENTATION, sdpa_mask)
    return IMPLEMENTATION
