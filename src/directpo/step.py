"""One batch through policy, reference and loss: per-pair losses and the metric sums.

Shared by training and evaluation, so both report the same metrics (TRL's names).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from directpo.batching import PLAIN, Batch, Layout, collate_pairs, eval_batches
from directpo.config import DPOConfig
from directpo.distributed import SINGLE_PROCESS, World, all_reduce_sum, shard
from directpo.logprobs import SequenceScorer, evaluating, model_logprobs
from directpo.losses import (
    PairLogps,
    implicit_rewards,
    orpo_log_odds,
    preference_loss,
    with_f_divergence,
    wpo_weight,
)
from directpo.offload import OffloadActivations
from directpo.reference import ReferenceProvider
from directpo.tokenization import TokenizedPair

METRIC_ORDER = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
)
# TRL DPOTrainer's per-token statistics of the policy: each is a mean over the tokens that the
# named count sums (completion tokens only), not over pairs
TOKEN_MEANS = {
    "logits/chosen": "tokens/chosen",
    "logits/rejected": "tokens/rejected",
    "entropy": "tokens/completions",
    "mean_token_accuracy": "tokens/chosen",
}


@dataclass
class PairStats:
    """Sums over pairs, so that any grouping (micro-batch, step, window) averages exactly."""

    pairs: int = 0
    tokens: int = 0
    # floats, or 0-dim tensors until ``materialized`` (no GPU sync between micro-batches)
    sums: dict[str, float | torch.Tensor] = field(default_factory=dict)
    nonfinite_steps: int = 0  # skipped optimizer steps (NaN/Inf loss or gradient)
    forwarded: int = 0  # tokens the policy computed (a shared prompt once, no padding): FLOPs

    def add(self, other: PairStats) -> None:
        self.pairs += other.pairs
        self.tokens += other.tokens
        self.forwarded += other.forwarded
        self.nonfinite_steps += other.nonfinite_steps
        for key, value in other.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + value

    def zeroed(self) -> PairStats:
        """The same metric keys, counting nothing: what a weight-0 stand-in batch adds, so that
        every rank holds the same keys for ``all_reduce``."""
        return PairStats(sums=dict.fromkeys(self.sums, 0.0))

    def materialized(self) -> PairStats:
        """The same sums as Python floats, read from the device in one transfer."""
        keys = [k for k, v in self.sums.items() if isinstance(v, torch.Tensor)]
        if not keys:
            return self
        values = torch.stack([self.sums[k].detach().double() for k in keys]).tolist()
        sums = {**self.sums, **dict(zip(keys, values, strict=True))}
        return PairStats(self.pairs, self.tokens, sums, self.nonfinite_steps, self.forwarded)

    def all_reduce(self, world: World) -> PairStats:
        """The sums over every rank (every rank holds the same metric keys), as floats."""
        stats = self.materialized()
        if not world.enabled:
            return stats
        keys = sorted(stats.sums)
        values = [stats.pairs, stats.tokens, stats.nonfinite_steps, stats.forwarded]
        values += [stats.sums.get(key, 0.0) for key in keys]
        total = all_reduce_sum([float(v) for v in values], world)
        sums = dict(zip(keys, total[4:], strict=True))
        pairs, tokens, nonfinite, forwarded = (int(v) for v in total[:4])
        return PairStats(pairs, tokens, sums if pairs else {}, nonfinite, forwarded)

    def means(self) -> dict[str, float]:
        if not self.sums:  # every step of the window was skipped
            return {}
        n = max(self.pairs, 1)
        sums = self.materialized().sums
        means = {key: value / n for key, value in sums.items()}
        means["rewards/margins"] = means["rewards/chosen"] - means["rewards/rejected"]
        for key, count in TOKEN_MEANS.items():
            if key in sums:
                means[key] = sums[key] / max(sums[count], 1.0)
        for count in set(TOKEN_MEANS.values()):
            means.pop(count, None)
        ordered = {key: means[key] for key in METRIC_ORDER}
        return ordered | {key: means[key] for key in sorted(means) if key not in ordered}


def batch_logps(
    policy: torch.nn.Module,
    reference: ReferenceProvider | None,
    batch: Batch,
    chunk_tokens: int = 0,
    ld_alpha: float | None = None,
    use_weighting: bool = False,
    diagnostics: bool = True,
    offload: OffloadActivations | None = None,
) -> PairLogps:
    """Policy (with graph) and reference log-probs of a paired batch.

    ``policy`` is a causal LM, or a ``SequenceScorer`` (possibly DDP/FSDP-wrapped) around one
    (which then applies its own ``ld_alpha``). ``use_weighting``: WPO's sequence weights.
    ``diagnostics``: also the policy's per-token statistics (TRL's logits/*, entropy...).
    ``offload``: the training loop's activation offloading, around the policy's forward only.
    """
    n = batch.num_pairs
    inner = getattr(policy, "module", policy)  # DDP keeps the scorer in .module
    with offload if offload is not None else contextlib.nullcontext():
        if isinstance(inner, SequenceScorer):
            outputs = policy(batch, diagnostics)
        else:
            outputs = model_logprobs(
                policy, batch, chunk_tokens, ld_alpha, use_weighting, diagnostics
            )
    policy_logps, token_counts, log1m, aligned, token_stats, plain = outputs[:6]
    router_aux = outputs[6] if len(outputs) > 6 else None  # a MoE policy's balancing loss
    reference_logps = reference.logprobs(batch) if reference is not None else None
    weights = wpo_weight(aligned, token_counts) if use_weighting else None
    return PairLogps(
        chosen=policy_logps[:n],
        rejected=policy_logps[n:],
        ref_chosen=None if reference_logps is None else reference_logps[:n],
        ref_rejected=None if reference_logps is None else reference_logps[n:],
        chosen_tokens=token_counts[:n],
        rejected_tokens=token_counts[n:],
        rejected_log1m=log1m[n:],
        chosen_plain=None if plain is policy_logps else plain[:n],
        rejected_plain=None if plain is policy_logps else plain[n:],
        chosen_weight=None if weights is None else weights[:n],
        rejected_weight=None if weights is None else weights[n:],
        router_aux_loss=router_aux,
        token_stats=token_stats if diagnostics else None,
    )


def pair_losses(
    policy: torch.nn.Module,
    reference: ReferenceProvider | None,
    batch: Batch,
    config: DPOConfig,
    diagnostics: bool = True,
    offload: OffloadActivations | None = None,
) -> tuple[torch.Tensor, PairStats]:
    """Per-pair losses of one batch (with graph) and the detached sums for metrics (tensors:
    ``PairStats.materialized`` reads them, so the device is not waited for here).
    ``diagnostics``: also TRL's per-token statistics (the training loop: on steps that log).
    ``offload``: activation offloading of the policy's forward (the training loop's)."""
    lp = batch_logps(
        policy, reference, batch, config.logprob_chunk_tokens, config.ld_alpha,
        config.use_weighting, diagnostics, offload,
    )  # fmt: skip
    scored = with_f_divergence(lp, config.f_divergence_type, config.f_alpha_divergence_coef)
    losses, components = preference_loss(
        scored, config.loss_type, config.loss_weights, **config.loss_options()
    )
    if lp.router_aux_loss is not None:  # TRL's way: loss + coefficient × the batch's aux loss
        losses = losses + config.router_aux_loss_coef * lp.router_aux_loss
    chosen_rewards, rejected_rewards = implicit_rewards(lp, config.beta)
    # without a reference the reward is β·π̄, and logps/* are π̄ too (rewards = β·logps), as
    # TRL's CPOTrainer (simpo) and ORPOTrainer log them; with one, sums, as its DPOTrainer
    chosen_logps, rejected_logps = (
        (lp.chosen_mean, lp.rejected_mean) if lp.ref_chosen is None else (lp.chosen, lp.rejected)
    )
    sums: dict[str, float | torch.Tensor] = {
        "loss": losses.detach().sum(),
        "rewards/chosen": chosen_rewards.detach().sum(),
        "rewards/rejected": rejected_rewards.detach().sum(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().sum(),
        "logps/chosen": chosen_logps.detach().sum(),
        "logps/rejected": rejected_logps.detach().sum(),
    }
    sums |= {f"loss/{name}": value.detach().sum() for name, value in components.items()}
    if lp.token_stats is not None:
        sums |= _token_sums(lp.token_stats, lp.chosen_tokens, lp.rejected_tokens)
    # TRL ORPOTrainer's names: log_odds_ratio is the mean log σ(log odds ratio), log_odds_chosen
    # the mean log odds ratio itself
    if "orpo" in config.loss_type:
        log_odds = orpo_log_odds(lp).detach()
        sums["log_odds_ratio"] = F.logsigmoid(log_odds).sum()
        sums["log_odds_chosen"] = log_odds.sum()
    if lp.router_aux_loss is not None:
        sums["aux_loss"] = lp.router_aux_loss.detach() * batch.num_pairs
    if lp.chosen_weight is not None and lp.rejected_weight is not None:
        sums["wpo/pair_weight"] = (lp.chosen_weight * lp.rejected_weight).sum()
    stats = PairStats(batch.num_pairs, batch.sequence_tokens, sums, forwarded=batch.num_tokens)
    return losses, stats


def _token_sums(
    stats: torch.Tensor, chosen_tokens: torch.Tensor, rejected_tokens: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The sums behind ``TOKEN_MEANS``: TRL averages logits/* and mean_token_accuracy over the
    chosen (rejected) completions' tokens, entropy over both."""
    n = len(chosen_tokens)
    chosen, rejected = stats[:n].detach(), stats[n:].detach()
    return {
        "logits/chosen": chosen[:, 0].sum(),
        "logits/rejected": rejected[:, 0].sum(),
        "entropy": stats[:, 1].detach().sum(),
        "mean_token_accuracy": chosen[:, 2].sum(),
        "tokens/chosen": chosen_tokens.sum().to(stats.dtype),
        "tokens/rejected": rejected_tokens.sum().to(stats.dtype),
        "tokens/completions": (chosen_tokens.sum() + rejected_tokens.sum()).to(stats.dtype),
    }


@torch.no_grad()
def evaluate(
    policy: torch.nn.Module,
    reference: ReferenceProvider | None,
    pairs: Sequence[TokenizedPair] | None,
    config: DPOConfig,
    pad_id: int,
    device: torch.device,
    layout: Layout = PLAIN,
    reference_table: torch.Tensor | None = None,
    world: World = SINGLE_PROCESS,
) -> dict[str, float]:
    """Pair-weighted means of loss, rewards and log-probs over ``pairs``, prefixed ``eval/``.

    In distributed training each rank scores its slice of every eval batch (of
    ``per_device_eval_batch_size × world size`` pairs) and the sums are added across ranks.
    """
    if not pairs:
        return {}
    total = PairStats()
    with evaluating(policy):  # the caller's mode again after, also after an error
        size = config.per_device_eval_batch_size * world.size
        for indices in eval_batches(len(pairs), size, config.dataloader_drop_last):
            mine, stand_in = shard(indices, world)
            table = None if reference_table is None else reference_table[mine]
            batch = collate_pairs([pairs[i] for i in mine], pad_id, table, layout).to(device)
            stats = pair_losses(policy, reference, batch, config)[1]
            total.add(stats.zeroed() if stand_in else stats)
    return {f"eval/{key}": value for key, value in total.all_reduce(world).means().items()}


def eval_set_metrics(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """A named eval set's metrics as transformers' Trainer names those of an ``eval_dataset``
    dict (eval_<name>_loss; logged here as eval/<name>_loss); the unnamed set's unchanged."""
    if not name:
        return metrics
    return {f"eval/{name}_{key.removeprefix('eval/')}": value for key, value in metrics.items()}
