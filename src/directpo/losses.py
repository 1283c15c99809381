"""Preference losses: pure functions of log-probabilities, no model and no config.

Each takes per-pair sequence log-probs of the policy and the reference (shape [B]) and
returns ``(losses [B], chosen_rewards [B], rejected_rewards [B])``; rewards are detached.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPO loss (Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, Eq. 7), with cDPO.

    With h = (log π(y_w|x) − log π_ref(y_w|x)) − (log π(y_l|x) − log π_ref(y_l|x)):

        L = −(1 − ε) · log σ(β·h) − ε · log σ(−β·h)

    ε = ``label_smoothing`` is the probability that a label is flipped (conservative DPO,
    Mitchell 2023, "A note on DPO with noisy preferences", Eq. 3); ε = 0 is the paper's loss.
    The implicit rewards are r_w = β·(log π(y_w|x) − log π_ref(y_w|x)) and likewise r_l.

    Args:
        policy_chosen_logps, policy_rejected_logps: [B] log π of chosen / rejected.
        reference_chosen_logps, reference_rejected_logps: [B] log π_ref of the same.
        beta: inverse temperature β > 0.
        label_smoothing: ε in [0, 0.5).
    """
    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    logits = beta * (chosen_logratios - rejected_logratios)
    losses = -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


LOSS_FUNCTIONS = {"sigmoid": sigmoid_loss}
