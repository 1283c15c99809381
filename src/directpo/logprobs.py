"""Sequence log-probabilities of completions: the only place a model runs forward for training.

For each sequence of a batch, log π(y|x) = Σ_t log p(y_t | x, y_<t) over completion tokens only
(prompt and padding never count). The per-token log-prob is the negative cross-entropy of the
logits that predict token t (``Batch.predict_from``) against it, computed in float32.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from directpo.attention import IMPLEMENTATION as VARLEN
from directpo.attention import PLAN_KEY
from directpo.batching import (
    PROMPT_BRANCH,
    Batch,
    collate_sequences,
)
from directpo.flexattention import IMPLEMENTATION as FLEX
from directpo.losses import ld_token_weights


def completion_logprobs(
    logits: torch.Tensor,
    batch: Batch,
    ld_alpha: float | None = None,
    wpo: bool = False,
    diagnostics: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Per-sequence sums of completion-token log-probs, token counts, and unlikelihood sums.

    Args:
        logits: [R, T, V] next-token logits of the batch's rows.
        batch: says which logits score which completion token of which sequence.

    Returns:
        (logps, token_counts, log1m, aligned, diagnostics, plain), all but diagnostics
        [num_sequences],
        where logps = Σ_t log p_t, log1m = Σ_t log(1 − p_t) over completion tokens (for the
        unlikelihood loss; p_t is capped at 1 − 1e-5 as in Welleck et al. 2019) and aligned =
        Σ_t [log p_t − log Σ_v p_v²] (WPO's weight, detached; computed only with ``wpo``, else
        zeros: it costs two more passes over the logits). ``diagnostics`` [num_sequences, 3]:
        Σ_t of the mean logit over the vocabulary, of the entropy and of "y_t is the argmax"
        (TRL's logits/*, entropy and mean_token_accuracy; detached; zeros unless asked).
        Float32, or float64 for float64 logits. With ``ld_alpha``, logps weighs each
        completion's tokens past the pair's shorter one by it (LD-DPO); plain holds the
        unweighted sums all the same (the same tensor as logps without ``ld_alpha``): the NLL
        of sft (rpo_alpha) is over every token, as TRL's.
    """
    per_token = _token_logprobs(
        logits.flatten(0, 1)[batch.predict_from], batch.target_ids, wpo, diagnostics
    )
    return _per_sequence(batch, *per_token, ld_alpha)


def model_logprobs(
    model: torch.nn.Module,
    batch: Batch,
    chunk_tokens: int = 0,
    ld_alpha: float | None = None,
    wpo: bool = False,
    diagnostics: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Run ``model`` on the batch; ``completion_logprobs`` of every sequence (chosen first).

    With ``chunk_tokens > 0`` (and a model whose logits are a plain linear head over its last
    hidden state), only completion positions reach the LM head, ``chunk_tokens`` at a time,
    each chunk recomputed in the backward pass: no [tokens × vocab] tensor larger than one
    chunk is ever alive. Otherwise the full logits are built (``completion_logprobs``).

    ``ld_alpha``: LD-DPO's weighting of each completion's tokens past the pair's shorter one.
    Returns (log-probs, token counts, Σ log(1 − p), Σ [log p − log Σ_v p_v²] (WPO)), each [2B],
    the [2B, 3] ``diagnostics`` sums and the log-probs without ``ld_alpha``'s weights, [2B]
    (``completion_logprobs``).
    """
    inputs = model_inputs(model, batch)
    parts = backbone_and_head(model) if chunk_tokens > 0 else None
    if parts is None:
        logits = model(**inputs, use_cache=False).logits
        return completion_logprobs(logits, batch, ld_alpha, wpo, diagnostics)
    backbone, head = parts
    hidden = backbone(**inputs, use_cache=False).last_hidden_state
    return _chunked_head(head, hidden, batch, chunk_tokens, ld_alpha, wpo, diagnostics)


def _chunked_head(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    batch: Batch,
    chunk_tokens: int,
    ld_alpha: float | None,
    wpo: bool = False,
    diagnostics: bool = False,
) -> tuple[torch.Tensor, ...]:
    selected = hidden.flatten(0, 1)[batch.predict_from]  # [K, H]: only the scoring positions
    targets = batch.target_ids
    parts_of: list[list[torch.Tensor]] = [[], [], [], []]
    for start in range(0, selected.shape[0], chunk_tokens):
        end = start + chunk_tokens
        # the no-grad diagnostics come last: checkpoint's early stop skips them on recompute
        chunk = checkpoint(
            _head_logprobs, head, selected[start:end], targets[start:end], wpo, diagnostics,
            use_reentrant=False,
        )  # fmt: skip
        for collected, part in zip(parts_of, chunk, strict=True):
            collected.append(part)
    empty = hidden.new_zeros(0, dtype=torch.float32)
    logps, log1m, aligned = (torch.cat(p) if p else empty for p in parts_of[:3])
    stats = torch.cat(parts_of[3]) if parts_of[3] else empty.reshape(0, len(DIAGNOSTICS))
    return _per_sequence(batch, logps, log1m, aligned, stats, ld_alpha)


def _per_sequence(
    batch: Batch,
    token_logps: torch.Tensor,
    token_log1m: torch.Tensor,
    token_aligned: torch.Tensor,
    token_stats: torch.Tensor,
    ld_alpha: float | None = None,
) -> tuple[torch.Tensor, ...]:
    zeros = token_logps.new_zeros(batch.num_sequences)
    plain = zeros.index_add(0, batch.target_sequence, token_logps)
    logps = plain
    if ld_alpha is not None and batch.num_pairs:
        weighted = token_logps * _ld_weights(batch, ld_alpha).to(token_logps.dtype)
        logps = zeros.index_add(0, batch.target_sequence, weighted)
    stats = token_stats.new_zeros(batch.num_sequences, token_stats.shape[1])
    return (
        logps,
        batch.completion_tokens,
        zeros.index_add(0, batch.target_sequence, token_log1m),
        zeros.index_add(0, batch.target_sequence, token_aligned),
        stats.index_add(0, batch.target_sequence, token_stats),
        plain,
    )


def _ld_weights(batch: Batch, alpha: float) -> torch.Tensor:
    """LD-DPO's weight of each scored token (losses.ld_token_weights): a sequence's tokens are
    contiguous and in order among the targets; its pair partner is sequence i ± B."""
    sequence = batch.target_sequence
    counts = batch.completion_tokens
    first = torch.cumsum(counts, 0) - counts  # targets are grouped by sequence, in order
    order = torch.argsort(sequence, stable=True)
    position = torch.empty_like(sequence)
    position[order] = torch.arange(len(sequence), device=sequence.device) - first[sequence[order]]
    n = batch.num_pairs
    partner = torch.cat([counts[n:], counts[:n]])
    return ld_token_weights(position, counts[sequence], partner[sequence], alpha)


# the columns of ``completion_logprobs``' diagnostics: TRL DPOTrainer's per-token statistics
DIAGNOSTICS = ("mean_logit", "entropy", "top1")


def _token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, wpo: bool = False, diagnostics: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p, log(1 − p), log p − log Σ_v p_v² (WPO, detached; zeros unless ``wpo``) and the
    [K, 3] ``DIAGNOSTICS`` (zeros unless asked) of each target token from its [K, V] logits, in
    float32 or more."""
    if logits.dtype != torch.float64:  # bf16 log-softmax loses too much: at least float32
        logits = logits.float()
    logp = -F.cross_entropy(logits, targets, reduction="none")
    log1m = torch.log1p(-logp.exp().clamp(max=1 - 1e-5))
    aligned = torch.zeros_like(logp.detach())
    if wpo:
        with torch.no_grad():  # Σ_v p_v² = exp(logsumexp(2·logits) − 2·logsumexp(logits))
            log_sum_sq = torch.logsumexp(2 * logits, -1) - 2 * torch.logsumexp(logits, -1)
        aligned = logp.detach() - log_sum_sq
    if not diagnostics:
        return logp, log1m, aligned, aligned.new_zeros(len(logp), len(DIAGNOSTICS))
    return logp, log1m, aligned, _token_diagnostics(logits.detach(), targets, logp.detach())


@torch.no_grad()
def _token_diagnostics(
    logits: torch.Tensor, targets: torch.Tensor, logp: torch.Tensor
) -> torch.Tensor:
    """[K, 3]: each token's mean logit over the vocabulary, the entropy −Σ_v p_v log p_v of its
    distribution, and 1 where the target is the argmax (TRL's tie rule: the first maximum).
    The entropy is log Σ e^s − Σ e^s·s / Σ e^s with s = z − max z: 5e-7 in float32 at a real
    model's logits (~30), where logsumexp − E[z] cancels to ~1e-4 and Σ p·log p to ~3e-5. It
    goes through [rows, V] blocks of at most ~16M values: a whole batch's would double the
    logits' memory."""
    entropy = torch.empty_like(logp)
    rows = max(1, (1 << 24) // max(logits.shape[-1], 1))
    for start in range(0, len(logits), rows):
        block = logits[start : start + rows]
        shifted = block - block.amax(-1, keepdim=True)  # s = z − max z: both terms below small
        weights = shifted.exp()
        total = weights.sum(-1)
        shifted.clamp_(min=torch.finfo(shifted.dtype).min)  # a −inf logit: 0·(−inf) → 0
        entropy[start : start + rows] = total.log() - weights.mul_(shifted).sum(-1) / total
    top1 = logits.argmax(-1) == targets
    return torch.stack([logits.mean(-1), entropy, top1.to(logp.dtype)], 1)


def model_inputs(model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
    """Keyword arguments of the model's forward for ``batch``'s layout.

    Plain rows take the usual 2D padding mask. Shared/packed rows take, for models running
    ``directpo_varlen``, the batch's varlen plan (attention.py: segments, no mask); otherwise
    a per-row mask built from ``segment_ids``/``branch_ids``: a FlexAttention block mask for
    models running ``directpo_flex`` or transformers' ``flex_attention`` (from the collator's
    blocks, flexattention.py), else an additive 4D mask (``additive_mask``) for SDPA and
    eager attention. A vision-language batch adds its image tensors and token types.
    """
    return {**_text_inputs(model, batch), **_image_inputs(model, batch)}


def _image_inputs(model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for key, value in (batch.images or {}).items():  # pixels in the model's dtype
        inputs[key] = value.to(float_dtype(model)) if value.is_floating_point() else value
    return {**inputs, **(batch.token_types or {})}


def _text_inputs(model: torch.nn.Module, batch: Batch) -> dict[str, Any]:
    if batch.segment_ids is None:
        return {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    implementation = attention_implementation(model)
    if implementation == VARLEN and batch.varlen is not None:
        return {
            "input_ids": batch.input_ids,
            "attention_mask": None,  # the plan says which keys each query sees
            "position_ids": batch.position_ids,
            PLAN_KEY: batch.varlen,
        }
    if implementation in (FLEX, "flex_attention"):
        if batch.flex is not None:  # the blocks the collator found
            mask: Any = batch.flex_block_mask()
        else:  # a layout that did not ask for them: every (query, key) pair evaluated
            mask = _block_mask(batch)
    else:
        mask = additive_mask(attention_allowed(batch)[:, None], float_dtype(model))
    return {
        "input_ids": batch.input_ids,
        "attention_mask": mask,
        "position_ids": batch.position_ids,
    }


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0 where ``allowed``, the dtype's lowest value elsewhere: the 4D mask for SDPA and eager
    attention alike. Eager *adds* its mask (a boolean one would be silently wrong); SDPA
    converts a boolean mask to this one inside every call and keeps the copy for backward,
    one [R, 1, T, T] float tensor per layer (measured on CPU: 7.5 GB for a 30-layer model
    at 8k tokens), where an additive mask given once is shared by every layer."""
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)


def may_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    segment_q: torch.Tensor,
    segment_k: torch.Tensor,
    branch_q: torch.Tensor,
    branch_k: torch.Tensor,
) -> torch.Tensor:
    """The attention rule of shared/packed rows, for the dense mask and FlexAttention alike.

    Causal, within one segment, and a completion sees the prompt and itself but no other
    completion. Every token sees itself, so padding rows are never fully masked (NaN).
    """
    visible_branch = (branch_k == PROMPT_BRANCH) | (branch_k == branch_q)
    return ((k <= q) & (segment_q == segment_k) & visible_branch) | (q == k)


def attention_allowed(batch: Batch) -> torch.Tensor:
    """[R, T, T] bool: may query token q attend to key token k? (``may_attend``)"""
    assert batch.segment_ids is not None and batch.branch_ids is not None
    segment, branch = batch.segment_ids, batch.branch_ids
    positions = torch.arange(segment.shape[1], device=segment.device)
    return may_attend(
        positions[:, None],
        positions[None, :],
        segment[:, :, None],
        segment[:, None, :],
        branch[:, :, None],
        branch[:, None, :],
    )


def _block_mask(batch: Batch) -> Any:
    from torch.nn.attention.flex_attention import create_block_mask

    segment, branch = batch.segment_ids, batch.branch_ids
    assert segment is not None and branch is not None

    def mask_mod(b, h, q, k):  # noqa: ANN001, ANN202 - FlexAttention's signature
        return may_attend(q, k, segment[b, q], segment[b, k], branch[b, q], branch[b, k])

    rows, width = segment.shape
    return create_block_mask(mask_mod, rows, None, width, width, device=segment.device)


def attention_implementation(model: torch.nn.Module) -> str:
    config = getattr(unwrap_peft(model), "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")


def unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft model (or ``model`` itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def float_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (what it computes in)."""
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


class SequenceScorer(torch.nn.Module):
    """A causal LM and its completion log-prob computation as one module.

    DDP and FSDP act through a module's ``forward``: the chunked log-prob path calls the
    backbone and the LM head separately, so it must run inside the wrapped forward for FSDP to
    gather the head's (and embeddings') shards and for DDP to see every gradient.

    ``router_aux``: a Mixture-of-Experts policy also returns its load-balancing loss (a fifth
    output, ``router_aux_loss``); the reference never computes it. ``wpo``: also WPO's aligned
    log-probs (``completion_logprobs``). ``forward(batch, diagnostics=True)``: also the
    per-token statistics TRL logs (logits/*, entropy, mean_token_accuracy); the training loop
    asks for the policy's only on the steps that log, since they cost four more passes over
    the completion logits, memory-bound work that is no small part of the LM head's time on a
    GPU. The reference never computes them.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        chunk_tokens: int = 0,
        ld_alpha: float | None = None,
        router_aux: bool = False,
        wpo: bool = False,
    ):
        super().__init__()
        self.model = model
        self.chunk_tokens = chunk_tokens
        self.ld_alpha = ld_alpha
        self.router_aux = router_aux
        self.wpo = wpo

    def forward(self, batch: Batch, diagnostics: bool = False) -> tuple[torch.Tensor, ...]:
        scoring = (self.model, batch, self.chunk_tokens, self.ld_alpha, self.wpo, diagnostics)
        return router_logprobs(*scoring) if self.router_aux else model_logprobs(*scoring)


def router_logprobs(
    model: torch.nn.Module,
    batch: Batch,
    chunk_tokens: int = 0,
    ld_alpha: float | None = None,
    wpo: bool = False,
    diagnostics: bool = False,
) -> tuple[torch.Tensor, ...]:
    """``model_logprobs`` of a Mixture-of-Experts model and its load-balancing loss (Switch
    Transformer's, the architecture's own ``load_balancing_loss_func``) over the batch's real
    tokens: (log-probs, token counts, Σ log(1 − p), WPO sums, diagnostics, unweighted log-probs,
    aux loss).

    A model whose logits are not its LM head's output (``backbone_and_head`` is None: Granite-MoE
    divides them by ``logits_scaling``) runs its whole forward, its backbone asked for the router
    logits: the model's own loss would read a shared/packed batch's 4D mask as a padding mask."""
    balance = router_balance_function(model)
    if balance is None:
        raise ValueError(f"{type(unwrap_peft(model)).__name__}: no router load-balancing loss")
    parts = backbone_and_head(model)
    if parts is None:
        logits, router = _whole_forward_and_router_logits(model, model_inputs(model, batch))
        aux = balance(router, batch.attention_mask)
        return (*completion_logprobs(logits, batch, ld_alpha, wpo, diagnostics), aux)
    backbone, head = parts
    out = backbone(**model_inputs(model, batch), use_cache=False, output_router_logits=True)
    hidden = out.last_hidden_state
    aux = balance(out.router_logits, batch.attention_mask)
    if chunk_tokens > 0:
        scored = _chunked_head(head, hidden, batch, chunk_tokens, ld_alpha, wpo, diagnostics)
        return (*scored, aux)
    logits = _apply_head(head, hidden)
    return (*completion_logprobs(logits, batch, ld_alpha, wpo, diagnostics), aux)


def _whole_forward_and_router_logits(
    model: torch.nn.Module, inputs: dict[str, Any]
) -> tuple[torch.Tensor, Any]:
    """The model's own logits, and its backbone's router logits from the same forward (hooks:
    the backbone is told to record them, the model not to compute its loss from them)."""
    backbone = unwrap_peft(model).base_model
    recorded: list[Any] = []

    def ask(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> Any:
        return args, {**kwargs, "output_router_logits": True}

    def keep(module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        recorded.append(output.router_logits)

    handles = [
        backbone.register_forward_pre_hook(ask, with_kwargs=True),
        backbone.register_forward_hook(keep, with_kwargs=True),
    ]
    try:
        logits = model(**inputs, use_cache=False, output_router_logits=False).logits
    finally:
        for handle in handles:
            handle.remove()
    return logits, recorded[-1]


def text_config(model: torch.nn.Module) -> Any:
    """The config of a model's language part: a vision-language model's ``text_config``."""
    config = getattr(model, "config", None)
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def router_balance_function(
    model: torch.nn.Module,
) -> Callable[[Any, torch.Tensor], torch.Tensor] | None:
    """(router logits, [R, T] real-token mask) -> the load-balancing loss, for MoE models whose
    modeling module defines ``load_balancing_loss_func`` (Mixtral, Qwen2/3-MoE, OLMoE, ...;
    and vision-language ones such as Qwen3-VL-MoE, whose text config holds the experts).
    None for a function of other parameters (Doge's also takes ``num_keys``: called as Switch's,
    a dense Doge failed at the first step, an MoE one got its top-k as that)."""
    import inspect
    import sys

    hf_model = unwrap_peft(model)
    config = text_config(hf_model)
    module = sys.modules.get(type(hf_model).__module__)
    function = getattr(module, "load_balancing_loss_func", None)
    experts = getattr(hf_model, "num_experts", None) or getattr(config, "num_experts", None)
    top_k = getattr(hf_model, "num_experts_per_tok", None)
    top_k = top_k or getattr(config, "num_experts_per_tok", None)
    if not hasattr(config, "output_router_logits") or None in (function, experts, top_k):
        return None
    if list(inspect.signature(function).parameters)[1:] != [*_SWITCH_BALANCE_PARAMETERS]:
        return None
    return lambda logits, mask: function(logits, experts, top_k, mask)


# Mixtral's load_balancing_loss_func(gate_logits, num_experts, top_k, attention_mask)
_SWITCH_BALANCE_PARAMETERS = ("num_experts", "top_k", "attention_mask")


# Configs whose models transform logits after the LM head: the chunked path would skip that.
# Models measured to do so otherwise (check_head) are in _WHOLE_LOGITS.
_WHOLE_LOGITS: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "logits_scaling",
    "output_multiplier_scale",
)


def score_from_whole_logits(model: torch.nn.Module) -> None:
    """From now on ``model`` (its LM head measured not to give its logits) takes the whole
    forward, not the chunked head (``backbone_and_head`` returns None for it)."""
    _WHOLE_LOGITS.add(unwrap_peft(model))


def backbone_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """(backbone, LM head) of a causal LM whose logits are head(last hidden state), else None."""
    hf_model = unwrap_peft(model)
    config = getattr(hf_model, "config", None)
    if config is None or any(getattr(config, key, None) for key in _LOGIT_TRANSFORMS):
        return None
    if hf_model in _WHOLE_LOGITS:  # check_head measured another computation
        return None
    backbone = getattr(hf_model, "base_model", None)
    head = hf_model.get_output_embeddings() if hasattr(hf_model, "get_output_embeddings") else None
    if backbone is None or backbone is hf_model or not _linear_head(head):
        return None
    return backbone, head


def _linear_head(head: torch.nn.Module | None) -> bool:
    """A linear LM head, or peft's wrapper of one: lora_modules_to_save's trained copy
    (``original_module``), a LoRA on lm_head (``base_layer``). Called as a module the wrapper
    computes what the model's head does, adapters on or off (``check_heads`` measures it); it
    took the full logits, a [tokens x vocab] tensor the chunks are there to avoid."""
    inner = getattr(head, "original_module", None)
    inner = getattr(head, "base_layer", None) if inner is None else inner
    return isinstance(head, torch.nn.Linear) or isinstance(inner, torch.nn.Linear)


def _head_logprobs(
    head: torch.nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    wpo: bool,
    diagnostics: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``_token_logprobs`` of one chunk of hidden states."""
    return _token_logprobs(_apply_head(head, hidden), targets, wpo, diagnostics)


def _apply_head(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """``head(hidden)`` in the head's dtype, as Mamba's own forward does: its residual stream
    stays float32 under bf16 (residual_in_fp32), a bf16 head would refuse it."""
    dtype = getattr(head, "weight", hidden).dtype
    return head(hidden.to(dtype) if dtype.is_floating_point else hidden)


@torch.no_grad()
def sequence_logprobs(
    logprobs_of: Callable[[Batch], torch.Tensor],
    rows: Sequence[tuple[Any, ...]],
    pad_token_id: int,
    device: torch.device | str,
    batch_size: int = 8,
    progress: bool = False,
) -> torch.Tensor:
    """log p(completion | prompt) of (prompt ids, completion ids[, image inputs]) rows, [N]
    float64 on CPU.

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


@contextlib.contextmanager
def evaluating(*models: torch.nn.Module | None) -> Iterator[None]:
    """``models`` in eval mode for the block, each back in its own mode after (a model fresh
    from training, or a user's, may be in train mode: dropout would make rewards random)."""
    modes = [(model, model.training) for model in models if model is not None]
    for model, _ in modes:
        model.eval()
    try:
        yield
    finally:
        for model, training in modes:
            model.train(training)
