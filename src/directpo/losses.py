"""Preference losses: pure functions of sequence log-probabilities, no model and no config.

Every loss takes a :class:`PairLogps` (per-pair tensors of shape [B]) and its own plain
options, and returns per-pair losses of shape [B]; the trainer averages them over pairs.
Notation used in the docstrings, for a pair (x, y_w, y_l):

* π_w = log π(y_w|x), π_l = log π(y_l|x)  (sums over completion tokens), likewise ref_w, ref_l;
* n_w, n_l the completion lengths in tokens; π̄_w = π_w / n_w the mean token log-prob;
* Δ_w = π_w − ref_w, Δ_l = π_l − ref_l (log-ratios); h = Δ_w − Δ_l;
* σ the logistic function; ε = ``label_smoothing``; β = ``beta``.

Names are TRL's (``DPOConfig.loss_type``), so configs port. Where TRL 1.16 and we differ it is
said in the function (``sigmoid`` applies ε; ``sft`` is a per-sequence mean).
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from directpo.loss_names import LOSS_INFO


@dataclass(frozen=True)
class PairLogps:
    """Per-pair log-probs. The reference fields are None for reference-free losses."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None
    ref_rejected: torch.Tensor | None
    chosen_tokens: torch.Tensor
    rejected_tokens: torch.Tensor
    rejected_log1m: torch.Tensor | None = None  # Σ_t log(1 − p(y_l,t)), for unlikelihood
    # LD-DPO: chosen / rejected are weighted sums (ld_alpha); these are the plain Σ_t log p_t,
    # which the per-token means (sft's NLL, simpo, orpo) take, as TRL's NLL. None: unweighted
    chosen_plain: torch.Tensor | None = None
    rejected_plain: torch.Tensor | None = None
    # f-DPO: f'(π/π_ref) in place of the log-ratio (``f_divergence``); None: the log-ratio
    chosen_score: torch.Tensor | None = None
    rejected_score: torch.Tensor | None = None
    # WPO: each sequence's weight (``wpo_weights``), multiplied into the pair's loss
    chosen_weight: torch.Tensor | None = None
    rejected_weight: torch.Tensor | None = None
    # a Mixture-of-Experts policy's load-balancing loss over the batch (router_aux_loss_coef)
    router_aux_loss: torch.Tensor | None = None
    # for metrics only: [2B, 3] per-sequence sums of logprobs.DIAGNOSTICS (chosen rows first)
    token_stats: torch.Tensor | None = None

    @property
    def chosen_logratios(self) -> torch.Tensor:
        """Δ_w = π_w − ref_w, or its f-divergence score f'(π/π_ref) under f-DPO."""
        if self.chosen_score is not None:
            return self.chosen_score
        assert self.ref_chosen is not None, "this loss needs reference log-probs"
        return self.chosen - self.ref_chosen

    @property
    def rejected_logratios(self) -> torch.Tensor:
        """Δ_l = π_l − ref_l, or its f-divergence score under f-DPO."""
        if self.rejected_score is not None:
            return self.rejected_score
        assert self.ref_rejected is not None, "this loss needs reference log-probs"
        return self.rejected - self.ref_rejected

    @property
    def chosen_mean(self) -> torch.Tensor:
        """π̄_w: the mean log-prob of every chosen token (LD-DPO's weights left out)."""
        plain = self.chosen if self.chosen_plain is None else self.chosen_plain
        return plain / self.chosen_tokens.clamp(min=1)

    @property
    def rejected_mean(self) -> torch.Tensor:
        plain = self.rejected if self.rejected_plain is None else self.rejected_plain
        return plain / self.rejected_tokens.clamp(min=1)


def _smoothed_logistic(z: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """−(1 − ε)·log σ(z) − ε·log σ(−z): the cDPO form shared by several losses."""
    return -(1 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)


# --- losses that use the reference model ---------------------------------------------------


def sigmoid_loss(lp: PairLogps, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """DPO (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, Eq. 7) with cDPO smoothing.

    L = −(1 − ε)·log σ(β·h) − ε·log σ(−β·h)

    ε is the probability that a label is flipped (conservative DPO; Mitchell 2023, "A note on
    DPO with noisy preferences", Eq. 3); ε = 0 is the paper's loss. TRL 1.16 ignores ε for this
    loss; we apply it, since a user who sets it asks for cDPO.
    """
    return _smoothed_logistic(beta * (lp.chosen_logratios - lp.rejected_logratios), label_smoothing)


def robust_loss(lp: PairLogps, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """Robust DPO (Chowdhury et al. 2024, https://arxiv.org/abs/2403.00409).

    L = [−(1 − ε)·log σ(β·h) + ε·log σ(−β·h)] / (1 − 2ε)

    An unbiased estimate of the clean-label DPO loss under label-flip rate ε < 1/2.
    """
    z = beta * (lp.chosen_logratios - lp.rejected_logratios)
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(z) + eps * F.logsigmoid(-z)) / (1 - 2 * eps)


def hinge_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """Hinge loss of SLiC (Zhao et al. 2023, https://arxiv.org/abs/2305.10425) as used by RSO
    (Liu et al. 2023, https://arxiv.org/abs/2309.06657): L = max(0, 1 − β·h)."""
    return torch.relu(1 - beta * (lp.chosen_logratios - lp.rejected_logratios))


def ipo_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """IPO (Azar et al. 2023, https://arxiv.org/abs/2310.12036, Eq. 17), β playing τ.

    L = (h̄ − 1/(2β))², with h̄ = Δ_w/n_w − Δ_l/n_l

    The log-ratios are divided by the completion lengths, as TRL does (the IPO authors confirmed
    their results use this form): the squared loss would otherwise grow with length.
    """
    h = lp.chosen_logratios / lp.chosen_tokens.clamp(min=1) - lp.rejected_logratios / (
        lp.rejected_tokens.clamp(min=1)
    )
    return (h - 1 / (2 * beta)) ** 2


def exo_pair_loss(lp: PairLogps, beta: float, label_smoothing: float) -> torch.Tensor:
    """EXO for pairs (Ji et al. 2024, https://arxiv.org/abs/2402.00856, Eq. 16), ε > 0.

    L = σ(β·h)·(log σ(β·h) − log(1 − ε)) + σ(−β·h)·(log σ(−β·h) − log ε)

    The reverse KL from the model's pair distribution softmax(β·Δ) to the label's [1 − ε, ε].
    """
    z = beta * (lp.chosen_logratios - lp.rejected_logratios)
    return torch.sigmoid(z) * (F.logsigmoid(z) - math.log1p(-label_smoothing)) + torch.sigmoid(
        -z
    ) * (F.logsigmoid(-z) - math.log(label_smoothing))


def nca_pair_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """NCA for pairs (Chen et al. 2024, https://arxiv.org/abs/2402.05369).

    L = −log σ(β·Δ_w) − ½·log σ(−β·Δ_w) − ½·log σ(−β·Δ_l)

    Optimises absolute likelihoods: it keeps the chosen log-prob from falling.
    """
    rw, rl = beta * lp.chosen_logratios, beta * lp.rejected_logratios
    return -F.logsigmoid(rw) - 0.5 * F.logsigmoid(-rw) - 0.5 * F.logsigmoid(-rl)


def bco_pair_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """BCO on pairs (Jung et al. 2024, https://arxiv.org/abs/2404.04656, without the
    running reward shift δ, as in TRL): L = −log σ(β·Δ_w) − log σ(−β·Δ_l)."""
    return -F.logsigmoid(beta * lp.chosen_logratios) - F.logsigmoid(-beta * lp.rejected_logratios)


def sppo_hard_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """SPPO with hard labels (Wu et al. 2024, https://arxiv.org/abs/2405.00675, Eq. 4.7 with
    P(y_w ≻ y_l) = 1): L = (Δ_w − 1/(2β))² + (Δ_l + 1/(2β))²."""
    half = 0.5 / beta
    return (lp.chosen_logratios - half) ** 2 + (lp.rejected_logratios + half) ** 2


def aot_loss(lp: PairLogps, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """AOT, paired (Melnyk et al. 2024, https://arxiv.org/abs/2406.05882).

    With u = sort_batch(π_w − π_l) and v = sort_batch(ref_w − ref_l):
    L_i = −(1 − ε)·log σ(β·(u_i − v_i)) − ε·log σ(−β·(u_i − v_i))

    Distributional alignment via optimal transport: the sorted margins of policy and reference
    are matched across the batch, so loss values depend on the whole batch.
    """
    policy_margins, _ = torch.sort(lp.chosen - lp.rejected, dim=0)
    reference_margins, _ = torch.sort(lp.ref_chosen - lp.ref_rejected, dim=0)
    return _smoothed_logistic(beta * (policy_margins - reference_margins), label_smoothing)


def aot_unpaired_loss(lp: PairLogps, beta: float, label_smoothing: float = 0.0) -> torch.Tensor:
    """AOT, unpaired (Melnyk et al. 2024, https://arxiv.org/abs/2406.05882).

    With u = sort_batch(Δ_w) and v = sort_batch(Δ_l):
    L_i = −(1 − ε)·log σ(β·(u_i − v_i)) − ε·log σ(−β·(u_i − v_i))
    """
    chosen_sorted, _ = torch.sort(lp.chosen_logratios, dim=0)
    rejected_sorted, _ = torch.sort(lp.rejected_logratios, dim=0)
    return _smoothed_logistic(beta * (chosen_sorted - rejected_sorted), label_smoothing)


def apo_zero_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """APO-zero (D'Oosterlinck et al. 2024, https://arxiv.org/abs/2408.06266, Eq. 7).

    L = (1 − σ(β·Δ_w)) + σ(β·Δ_l)

    For chosen outputs better than the model's own: raise chosen, lower rejected likelihood.
    """
    return (
        1 - torch.sigmoid(beta * lp.chosen_logratios) + torch.sigmoid(beta * lp.rejected_logratios)
    )


def apo_down_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """APO-down (D'Oosterlinck et al. 2024, https://arxiv.org/abs/2408.06266, Eq. 8).

    L = σ(β·Δ_w) + (1 − σ(β·(Δ_w − Δ_l)))

    For chosen outputs worse than the model's own: lower both, the rejected more.
    """
    chosen = lp.chosen_logratios
    return torch.sigmoid(beta * chosen) + 1 - torch.sigmoid(beta * (chosen - lp.rejected_logratios))


def discopop_loss(lp: PairLogps, beta: float, discopop_tau: float = 0.05) -> torch.Tensor:
    """DiscoPOP, log-ratio modulated loss (Chris Lu et al. 2024, https://arxiv.org/abs/2406.08414,
    Eq. 5). With z = β·h and m = σ(z/τ):  L = (1 − m)·(−log σ(z)) + m·exp(−z)."""
    z = beta * (lp.chosen_logratios - lp.rejected_logratios)
    mix = torch.sigmoid(z / discopop_tau)
    return (1 - mix) * -F.logsigmoid(z) + mix * torch.exp(-z)


def sigmoid_norm_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """Length-normalised DPO (Tulu 3, Lambert et al. 2024, https://arxiv.org/abs/2411.15124).

    L = −log σ(β·(Δ_w/n_w − Δ_l/n_l))
    """
    h = lp.chosen_logratios / lp.chosen_tokens.clamp(min=1) - lp.rejected_logratios / (
        lp.rejected_tokens.clamp(min=1)
    )
    return -F.logsigmoid(beta * h)


# --- reference-free losses --------------------------------------------------------------------


def sft_loss(lp: PairLogps) -> torch.Tensor:
    """Supervised fine-tuning on the chosen completion: L = −π̄_w (mean token NLL).

    Per-sequence mean, then averaged over pairs, so the value does not depend on how pairs are
    grouped into micro-batches or ranks. TRL 1.16 takes the token mean over the whole batch
    (longer completions weigh more); both agree when chosen lengths are equal.
    Used alone it is Preferred-FT (DPO paper §6); with ``sigmoid`` it is RPO
    (Pang et al. 2024, https://arxiv.org/abs/2404.19733).
    """
    return -lp.chosen_mean


def unlikelihood_loss(lp: PairLogps) -> torch.Tensor:
    """Unlikelihood on the rejected completion (Welleck et al. 2019,
    https://arxiv.org/abs/1908.04319): L = −(1/n_l)·Σ_t log(1 − p(y_l,t | x, y_l,<t)).

    With ``sft`` it is the DPO paper's Unlikelihood baseline (§6: raise the likelihood of y_w,
    lower that of y_l): ``loss_type: [sft, unlikelihood]``. p is capped at 1 − 1e-5.
    """
    assert lp.rejected_log1m is not None, "unlikelihood needs per-token terms"
    return -lp.rejected_log1m / lp.rejected_tokens.clamp(min=1)


def simpo_loss(
    lp: PairLogps, beta: float, simpo_gamma: float = 0.5, label_smoothing: float = 0.0
) -> torch.Tensor:
    """SimPO (Meng et al. 2024, https://arxiv.org/abs/2405.14734), reference-free.

    L = −(1 − ε)·log σ(β·π̄_w − β·π̄_l − γ) − ε·log σ(−(β·π̄_w − β·π̄_l − γ))

    The reward is the length-normalised log-prob β·π̄; γ = ``simpo_gamma`` is the target margin.
    """
    return _smoothed_logistic(
        beta * (lp.chosen_mean - lp.rejected_mean) - simpo_gamma, label_smoothing
    )


def orpo_loss(lp: PairLogps, beta: float) -> torch.Tensor:
    """ORPO (Hong et al. 2024, https://arxiv.org/abs/2403.07691), reference-free.

    L = −π̄_w − β·log σ(log odds(y_w) − log odds(y_l)),  odds(y) = P(y)/(1 − P(y)), P(y) = exp(π̄)

    β is the paper's λ.
    """
    return -lp.chosen_mean - beta * F.logsigmoid(orpo_log_odds(lp))


def orpo_log_odds(lp: PairLogps) -> torch.Tensor:
    """ORPO's log odds ratio log odds(y_w) − log odds(y_l) per pair, odds(y) = e^π̄/(1 − e^π̄);
    log(1 − exp(π̄)) is computed with log1p(−exp(·)) for stability."""
    return (lp.chosen_mean - lp.rejected_mean) - (
        torch.log1p(-torch.exp(lp.chosen_mean)) - torch.log1p(-torch.exp(lp.rejected_mean))
    )


# --- loss modifiers: TRL's f_divergence_type, use_weighting and ld_alpha -----------------------


def f_divergence_score(logratio: torch.Tensor, kind: str, alpha: float = 0.5) -> torch.Tensor:
    """f-DPO (Wang et al. 2023, https://arxiv.org/abs/2309.16240, Eq. 9): with u = log π/π_ref
    and t = e^u, the DPO log-ratio is replaced by f'(t) of another f-divergence:

    * reverse_kl: f'(t) = log t + 1 → u (the constant cancels in Δ_w − Δ_l): DPO itself;
    * forward_kl: f'(t) = 1 − 1/t → 1 − e^(−u);
    * js_divergence: f'(t) = log(2t/(1 + t)) → log 2 + log σ(u);
    * alpha_divergence: f'(t) = (t^(α−1) − 1)/(α − 1) → (e^((α−1)u) − 1)/(α − 1) (TRL's
      parametrisation; α → 1 is reverse KL). The exponent is capped at 80 so it stays finite.
    """
    if kind == "reverse_kl":
        return logratio
    if kind == "forward_kl":
        return 1 - torch.exp(-logratio)
    if kind == "js_divergence":
        return math.log(2) + F.logsigmoid(logratio)
    if kind == "alpha_divergence":
        if abs(alpha - 1.0) < 1e-6:
            return logratio
        exponent = torch.clamp(((alpha - 1.0) * logratio).float(), max=80.0)
        return ((torch.exp(exponent) - 1.0) / (alpha - 1.0)).to(logratio.dtype)
    raise ValueError(f"unknown f-divergence {kind!r}")


def with_f_divergence(lp: PairLogps, kind: str, alpha: float = 0.5) -> PairLogps:
    """``lp`` whose log-ratios are the f-divergence scores (a no-op for reverse KL)."""
    if kind == "reverse_kl":
        return lp
    return replace(
        lp,
        chosen_score=f_divergence_score(lp.chosen - lp.ref_chosen, kind, alpha),
        rejected_score=f_divergence_score(lp.rejected - lp.ref_rejected, kind, alpha),
    )


def wpo_weight(aligned_logp_sum: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """WPO's sequence weight (Zhou et al. 2024, https://arxiv.org/abs/2406.11827, Eq. 2):

    w(y) = exp( (1/|y|)·Σ_t [log p(y_t) − log Σ_v p(v)²] )

    the geometric mean of each token's probability relative to the probability mass the policy
    puts on its own likely tokens: pairs the current policy would itself produce weigh more
    (off-policy pairs are simulated on-policy). The weight is detached; a pair's loss is
    multiplied by w(y_w)·w(y_l)."""
    return torch.exp(aligned_logp_sum.detach() / tokens.clamp(min=1))


def ld_token_weights(
    position: torch.Tensor, own_length: torch.Tensor, other_length: torch.Tensor, alpha: float
) -> torch.Tensor:
    """LD-DPO (Liu et al. 2024, https://arxiv.org/abs/2409.06411, Eq. 8): the log-prob of a
    completion keeps its first min(|y_w|, |y_l|) tokens whole and scales the longer one's excess
    by α ∈ [0, 1]: π̂(y) = Σ_{t ≤ l_s} log p_t + α·Σ_{t > l_s} log p_t, for policy and reference
    alike, so verbosity is not rewarded. Token ``position`` (0-based) of a completion of
    ``own_length`` whose pair's other completion has ``other_length`` tokens -> its weight."""
    shared = torch.minimum(own_length, other_length)
    return torch.where(position < shared, 1.0, alpha).to(torch.float32)


@dataclass(frozen=True)
class LossSpec:
    fn: Callable[..., torch.Tensor]
    needs_reference: bool
    options: tuple[str, ...]  # config options the function takes, by keyword
    paper: str


_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sigmoid": sigmoid_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "ipo": ipo_loss,
    "exo_pair": exo_pair_loss,
    "nca_pair": nca_pair_loss,
    "bco_pair": bco_pair_loss,
    "sppo_hard": sppo_hard_loss,
    "aot": aot_loss,
    "aot_unpaired": aot_unpaired_loss,
    "apo_zero": apo_zero_loss,
    "apo_down": apo_down_loss,
    "discopop": discopop_loss,
    "sigmoid_norm": sigmoid_norm_loss,
    "sft": sft_loss,
    "unlikelihood": unlikelihood_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
}
# each loss's function with its row of the torch-free table (loss_names.py)
LOSSES: dict[str, LossSpec] = {
    name: LossSpec(_FUNCTIONS[name], info.needs_reference, info.options, info.paper)
    for name, info in LOSS_INFO.items()
}


def preference_loss(
    lp: PairLogps,
    loss_types: Sequence[str],
    loss_weights: Sequence[float] | None,
    **options: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Σ_k w_k · L_k per pair ([B]), and each component L_k ([B]) for logging.

    ``options`` holds loss options by name (beta, label_smoothing, simpo_gamma, discopop_tau);
    each loss takes the ones it declares, and its own default for one not given
    (``preference_loss(lp, ["sigmoid"], None, beta=0.1)`` is DPO without smoothing). A name
    that is no loss or no loss option, or a reference-based loss without reference log-probs,
    is a ValueError: a misspelt ``label_smothing=0.1`` was dropped without a word.
    """
    _check_loss_arguments(lp, loss_types, loss_weights, options)
    weights = loss_weights or [1.0] * len(loss_types)
    components = {}
    for name in loss_types:
        spec = LOSSES[name]
        given = {key: options[key] for key in spec.options if key in options}
        components[name] = spec.fn(lp, **given)
        if lp.chosen_weight is not None and lp.rejected_weight is not None:  # WPO
            components[name] = components[name] * lp.chosen_weight * lp.rejected_weight
    total = sum(w * components[name] for name, w in zip(loss_types, weights, strict=True))
    return total, components


def _check_loss_arguments(
    lp: PairLogps,
    loss_types: Sequence[str],
    loss_weights: Sequence[float] | None,
    options: dict[str, float],
) -> None:
    known = {key for spec in LOSSES.values() for key in spec.options}
    for kind, names, choices in (
        ("loss", [n for n in loss_types if n not in LOSSES], list(LOSSES)),
        ("loss option", [k for k in options if k not in known], sorted(known)),
    ):
        for name in names:
            close = difflib.get_close_matches(name, choices, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ValueError(f"unknown {kind} {name!r}; {hint}known: {', '.join(choices)}")
    if loss_weights is not None and len(loss_weights) != len(loss_types):
        raise ValueError(
            f"{len(loss_weights)} loss_weights for {len(loss_types)} loss_types: give one each"
        )
    for name in loss_types:  # an option without a default was a TypeError from the call
        missing = [key for key in required_options(name) if key not in options]
        if missing:
            raise ValueError(f"loss {name!r} needs {', '.join(missing)} (it has no default)")
    if lp.ref_chosen is None or lp.ref_rejected is None:
        for name in loss_types:
            if LOSSES[name].needs_reference:
                raise ValueError(f"loss {name!r} needs ref_chosen and ref_rejected log-probs")


def required_options(name: str) -> list[str]:
    """The options of loss ``name`` that its function has no default for (beta; EXO's ε)."""
    parameters = inspect.signature(LOSSES[name].fn).parameters
    return [k for k in LOSSES[name].options if parameters[k].default is inspect.Parameter.empty]


def implicit_rewards(lp: PairLogps, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) rewards, detached: β·(log π − log π_ref), the DPO implicit reward, or
    β·π̄ (SimPO's length-normalised reward) when the run has no reference."""
    if lp.ref_chosen is None or lp.ref_rejected is None:
        return beta * lp.chosen_mean.detach(), beta * lp.rejected_mean.detach()
    chosen, rejected = lp.chosen - lp.ref_chosen, lp.rejected - lp.ref_rejected  # not f-scores
    return beta * chosen.detach(), beta * rejected.detach()
