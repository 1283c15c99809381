from __future__ import annotations

import math

import pytest
import torch

from directpo.losses import sigmoid_loss

PC = [-10.0, -3.5, -20.25, -7.0]
PR = [-12.0, -3.0, -19.0, -7.5]
RC = [-11.0, -3.25, -20.0, -6.0]
RR = [-11.5, -3.1, -19.5, -8.25]


def reference_dpo(pc, pr, rc, rr, beta, eps):
    """Eq. 7 of Rafailov et al. with cDPO's smoothing, in plain float64 Python."""
    out = []
    for a, b, c, d in zip(pc, pr, rc, rr, strict=True):
        h = beta * ((a - c) - (b - d))
        log_sig = -math.log1p(math.exp(-h))
        log_sig_neg = -math.log1p(math.exp(h))
        out.append(-(1 - eps) * log_sig - eps * log_sig_neg)
    return out


@pytest.mark.parametrize("beta, eps", [(0.1, 0.0), (0.5, 0.0), (1.0, 0.2), (2.5, 0.49)])
def test_sigmoid_matches_the_paper_formula(beta: float, eps: float) -> None:
    tensors = [torch.tensor(v, dtype=torch.float64) for v in (PC, PR, RC, RR)]
    losses, chosen, rejected = sigmoid_loss(*tensors, beta=beta, label_smoothing=eps)
    expected = reference_dpo(PC, PR, RC, RR, beta, eps)
    assert losses.tolist() == pytest.approx(expected, abs=1e-12)
    assert chosen.tolist() == pytest.approx(
        [beta * (a - c) for a, c in zip(PC, RC, strict=True)], abs=1e-12
    )
    assert rejected.tolist() == pytest.approx(
        [beta * (b - d) for b, d in zip(PR, RR, strict=True)], abs=1e-12
    )
    assert not chosen.requires_grad


def test_equal_policy_and_reference_give_ln2() -> None:
    x = torch.tensor(PC, dtype=torch.float64)
    y = torch.tensor(PR, dtype=torch.float64)
    losses, chosen, rejected = sigmoid_loss(x, y, x, y, beta=0.1)
    assert torch.allclose(losses, torch.full_like(losses, math.log(2)))
    assert torch.all(chosen == 0) and torch.all(rejected == 0)


def test_gradcheck() -> None:
    inputs = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (PC, PR)]
    refs = [torch.tensor(v, dtype=torch.float64) for v in (RC, RR)]
    assert torch.autograd.gradcheck(
        lambda a, b: sigmoid_loss(a, b, *refs, beta=0.7, label_smoothing=0.1)[0], inputs
    )


def test_gradient_pushes_chosen_up_and_rejected_down() -> None:
    chosen = torch.tensor([-5.0], requires_grad=True)
    rejected = torch.tensor([-5.0], requires_grad=True)
    losses, *_ = sigmoid_loss(chosen, rejected, torch.tensor([-5.0]), torch.tensor([-5.0]), 0.1)
    losses.sum().backward()
    assert chosen.grad.item() == pytest.approx(-0.05)  # -beta * sigma(0)
    assert rejected.grad.item() == pytest.approx(0.05)
