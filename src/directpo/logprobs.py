"""Sequence log-probabilities of completions: the only place a model runs forward for training.

For each row of a batch, log π(y|x) = Σ_t log p(y_t | x, y_<t) over completion tokens only
(prompt and padding are masked out). The per-token log-prob is the negative cross-entropy of
the logits at position t - 1 against token t, computed in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
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
    model: torch.nn.Module, batch: Batch, chunk_tokens: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``model`` on the batch; ``completion_logprobs`` of every row (chosen rows first).

    With ``chunk_tokens > 0`` (and a model whose logits are a plain linear head over its last
    hidden state), only completion positions reach the LM head, ``chunk_tokens`` at a time,
    each chunk recomputed in the backward pass: no [tokens × vocab] tensor larger than one
    chunk is ever alive. Otherwise the full logits are built (``completion_logprobs``).
    """
    parts = _backbone_and_head(model) if chunk_tokens > 0 else None
    if parts is None:
        logits = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
        ).logits
        return completion_logprobs(logits, batch.input_ids, batch.completion_mask)
    backbone, head = parts
    hidden = backbone(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    mask = batch.completion_mask[:, 1:]
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)[mask]
    selected = hidden[:, :-1][mask]  # [K, H]: the positions that predict completion tokens
    targets = batch.input_ids[:, 1:][mask]
    token_logps, token_log1m = [], []
    for start in range(0, selected.shape[0], chunk_tokens):
        end = start + chunk_tokens
        logp, log1m = checkpoint(
            _head_logprobs, head, selected[start:end], targets[start:end], use_reentrant=False
        )
        token_logps.append(logp)
        token_log1m.append(log1m)
    zeros = torch.zeros(mask.shape[0], device=hidden.device, dtype=torch.float32)
    logps = zeros.index_add(0, rows, torch.cat(token_logps)) if token_logps else zeros
    log1m = zeros.index_add(0, rows, torch.cat(token_log1m)) if token_log1m else zeros
    return logps, mask.sum(-1), log1m


# Configs whose models transform logits after the LM head: the chunked path would skip that.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier_scale",
)


def _backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, LM head) of a causal LM whose logits are head(last hidden state), else None."""
    hf_model = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(hf_model, "config", None)
    if config is None or any(getattr(config, key, None) for key in _LOGIT_TRANSFORMS):
        return None
    backbone = getattr(hf_model, "base_model", None)
    head = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
    if backbone is None or backbone is hf_model or not isinstance(head, torch.nn.Linear):
        return None
    return backbone, head


def _head_logprobs(
    head: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p and log(1 − p) of each target token, from one chunk of hidden states."""
    logits = head(hidden).float()
    logp = -F.cross_entropy(logits, targets, reduction="none")
    return logp, torch.log1p(-logp.exp().clamp(max=1 - 1e-5))


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
