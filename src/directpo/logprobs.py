"""Sequence log-probabilities of completions: the only place a model runs forward for training.

For each row of a batch, log π(y|x) = Σ_t log p(y_t | x, y_<t) over completion tokens only
(prompt and padding are masked out). The per-token log-prob is the negative cross-entropy of
the logits at position t - 1 against token t, computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from directpo.batching import Batch


def completion_logprobs(
    logits: torch.Tensor, input_ids: torch.Tensor, completion_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums of completion-token log-probs and the number of completion tokens.

    Args:
        logits: [N, T, V] next-token logits (position t predicts token t + 1).
        input_ids: [N, T] token ids.
        completion_mask: [N, T] bool, True where the token belongs to the completion.

    Returns:
        (logps [N] float32 (float64 for float64 logits), token_counts [N] long).
    """
    targets = input_ids[:, 1:]
    mask = completion_mask[:, 1:]
    shifted = logits[:, :-1]
    if shifted.dtype != torch.float64:  # bf16 log-softmax loses too much: at least float32
        shifted = shifted.float()
    token_logps = -F.cross_entropy(shifted.transpose(1, 2), targets, reduction="none")
    token_logps = token_logps.masked_fill(~mask, 0.0)
    return token_logps.sum(-1), mask.sum(-1)


def model_logprobs(model: torch.nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` on the batch; (logps [2B], token_counts [2B]), chosen rows first."""
    logits = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).logits
    return completion_logprobs(logits, batch.input_ids, batch.completion_mask)
