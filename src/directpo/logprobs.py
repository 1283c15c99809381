"""Sequence log-probabilities of completions: the only place a model runs forward for training.

For each row of a batch, log π(y|x) = Σ_t log p(y_t | x, y_<t) over completion tokens only
(prompt and padding are masked out). The per-token log-prob is the negative cross-entropy of
the logits at position t - 1 against token t, computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from directpo.batching import Batch, collate_sequences


def completion_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row sums of completion-token log-probs, token counts, and unlikelihood sums.

    Args:
        logits: [N, T, V] next-token logits (position t predicts token t + 1).
        input_ids: [N, T] token ids.
        completion_mask: [N, T] bool, True where the token belongs to the completion.

    Returns:
        (logps [N], token_counts [N] long, log1m [N]) where logps = Σ_t log p_t and
        log1m = Σ_t log(1 − p_t) over completion tokens (for the unlikelihood loss; p_t is
        capped at 1 − 1e-5 as in Welleck et al. 2019). Float32, or float64 for float64 logits.
    """
    targets = input_ids[:, 1:]
    mask = completion_mask[:, 1:]
    shifted = logits[:, :-1]
    if shifted.dtype != torch.float64:  # bf16 log-softmax loses too much: at least float32
        shifted = shifted.float()
    token_logps = -F.cross_entropy(shifted.transpose(1, 2), targets, reduction="none")
    token_logps = token_logps.masked_fill(~mask, 0.0)
    log1m = torch.log1p(-token_logps.exp().clamp(max=1 - 1e-5)).masked_fill(~mask, 0.0)
    return token_logps.sum(-1), mask.sum(-1), log1m.sum(-1)


def model_logprobs(
    model: torch.nn.Module, batch: Batch
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` on the batch; ``completion_logprobs`` of every row (chosen rows first)."""
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).logits
    return completion_logprobs(logits, batch.input_ids, batch.completion_mask)


@torch.no_grad()
def sequence_logprobs(
    logprobs_of: Callable[[Batch], torch.Tensor],
    rows: Sequence[tuple[Sequence[int], Sequence[int]]],
    pad_token_id: int,
    device: torch.device | str,
    batch_size: int = 8,
    progress: bool = False,
) -> torch.Tensor:
    """log p(completion | prompt) of (prompt ids, completion ids) rows, [N] float64 on CPU.

    ``logprobs_of`` maps a batch to per-row log-probs: ``model_logprobs`` of a model, or a
    reference provider's ``logprobs``.
    """
    out = []
    starts = range(0, len(rows), batch_size)
    for start in tqdm(starts, desc="score", disable=not progress, dynamic_ncols=True):
        batch = collate_sequences(rows[start : start + batch_size], pad_token_id).to(device)
        out.append(logprobs_of(batch).double().cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def policy_logprobs_fn(model: torch.nn.Module) -> Callable[[Batch], torch.Tensor]:
    return lambda batch: model_logprobs(model, batch)[0]
