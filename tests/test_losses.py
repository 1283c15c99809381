"""Golden values: each loss against an independent float64 transcription of its paper's
formula in plain Python (math on floats, never the implementation), plus gradcheck."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from directpo.losses import LOSSES, PairLogps, implicit_rewards, preference_loss

PC = [-10.0, -3.5, -20.25, -7.0]  # log π(y_w|x)
PR = [-12.0, -3.0, -19.0, -7.5]  # log π(y_l|x)
RC = [-11.0, -3.25, -20.1, -6.0]  # log π_ref(y_w|x); no ties in any sorted quantity (aot)
RR = [-11.5, -3.1, -19.5, -8.25]  # log π_ref(y_l|x)
NC = [5, 2, 9, 4]  # completion lengths
NR = [6, 3, 7, 4]
L1M = [-2.5, -0.75, -4.0, -1.25]  # Σ_t log(1 − p(y_l,t))
BETA, EPS, GAMMA, TAU = 0.7, 0.1, 0.5, 0.05


def lsig(z: float) -> float:
    return -math.log1p(math.exp(-z)) if z >= 0 else z - math.log1p(math.exp(z))


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def smoothed(z: float, eps: float) -> float:
    return -(1 - eps) * lsig(z) - eps * lsig(-z)


def per_pair():
    for pc, pr, rc, rr, nc, nr in zip(PC, PR, RC, RR, NC, NR, strict=True):
        yield pc, pr, rc, rr, nc, nr, pc - rc, pr - rr


def expected(name: str, beta: float = BETA, eps: float = EPS) -> list[float]:
    rows = list(per_pair())
    if name == "aot":
        u = sorted(pc - pr for pc, pr, *_ in rows)
        v = sorted(rc - rr for _, _, rc, rr, *_ in rows)
        return [smoothed(beta * (a - b), eps) for a, b in zip(u, v, strict=True)]
    if name == "aot_unpaired":
        u = sorted(r[6] for r in rows)
        v = sorted(r[7] for r in rows)
        return [smoothed(beta * (a - b), eps) for a, b in zip(u, v, strict=True)]
    out = []
    for (pc, pr, _rc, _rr, nc, nr, dw, dl), l1m in zip(rows, L1M, strict=True):
        h = dw - dl
        mw, ml = pc / nc, pr / nr
        if name == "sigmoid":
            out.append(-(1 - eps) * lsig(beta * h) - eps * lsig(-beta * h))
        elif name == "robust":
            out.append((-(1 - eps) * lsig(beta * h) + eps * lsig(-beta * h)) / (1 - 2 * eps))
        elif name == "hinge":
            out.append(max(0.0, 1 - beta * h))
        elif name == "ipo":
            out.append((dw / nc - dl / nr - 1 / (2 * beta)) ** 2)
        elif name == "exo_pair":
            z = beta * h
            out.append(
                sig(z) * (lsig(z) - math.log(1 - eps)) + sig(-z) * (lsig(-z) - math.log(eps))
            )
        elif name == "nca_pair":
            out.append(-lsig(beta * dw) - 0.5 * lsig(-beta * dw) - 0.5 * lsig(-beta * dl))
        elif name == "bco_pair":
            out.append(-lsig(beta * dw) - lsig(-beta * dl))
        elif name == "sppo_hard":
            out.append((dw - 1 / (2 * beta)) ** 2 + (dl + 1 / (2 * beta)) ** 2)
        elif name == "apo_zero":
            out.append(1 - sig(beta * dw) + sig(beta * dl))
        elif name == "apo_down":
            out.append(sig(beta * dw) + 1 - sig(beta * h))
        elif name == "discopop":
            z = beta * h
            m = sig(z / TAU)
            out.append((1 - m) * -lsig(z) + m * math.exp(-z))
        elif name == "sigmoid_norm":
            out.append(-lsig(beta * (dw / nc - dl / nr)))
        elif name == "sft":
            out.append(-mw)
        elif name == "unlikelihood":
            out.append(-l1m / nr)
        elif name == "simpo":
            out.append(smoothed(beta * mw - beta * ml - GAMMA, eps))
        elif name == "orpo":
            log_odds = (mw - ml) - (math.log(1 - math.exp(mw)) - math.log(1 - math.exp(ml)))
            out.append(-mw - beta * lsig(log_odds))
        else:
            raise KeyError(name)
    return out


def pair_logps(requires_grad: bool = False, reference: bool = True) -> PairLogps:
    def t(values):
        return torch.tensor(values, dtype=torch.float64, requires_grad=requires_grad)

    return PairLogps(
        chosen=t(PC),
        rejected=t(PR),
        ref_chosen=torch.tensor(RC, dtype=torch.float64) if reference else None,
        ref_rejected=torch.tensor(RR, dtype=torch.float64) if reference else None,
        chosen_tokens=torch.tensor(NC),
        rejected_tokens=torch.tensor(NR),
        rejected_log1m=t(L1M),
    )


OPTIONS = {"beta": BETA, "label_smoothing": EPS, "simpo_gamma": GAMMA, "discopop_tau": TAU}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_golden_value(name: str) -> None:
    spec = LOSSES[name]
    lp = pair_logps(reference=spec.needs_reference)
    got = spec.fn(lp, **{k: OPTIONS[k] for k in spec.options})
    assert got.dtype == torch.float64 and got.shape == (4,)
    assert got.tolist() == pytest.approx(expected(name), abs=1e-9, rel=1e-9)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradcheck(name: str) -> None:
    spec = LOSSES[name]
    base = pair_logps(reference=spec.needs_reference)

    def loss(chosen, rejected, rejected_log1m):
        lp = PairLogps(
            chosen,
            rejected,
            base.ref_chosen,
            base.ref_rejected,
            base.chosen_tokens,
            base.rejected_tokens,
            rejected_log1m,
        )
        return spec.fn(lp, **{k: OPTIONS[k] for k in spec.options})

    inputs = tuple(
        x.clone().requires_grad_() for x in (base.chosen, base.rejected, base.rejected_log1m)
    )
    # every loss depends on some input: a gradient that is zero everywhere would pass vacuously
    assert any(
        g.abs().sum() > 0
        for g in torch.autograd.grad(loss(*inputs).sum(), inputs, allow_unused=True)
        if g is not None
    )
    assert torch.autograd.gradcheck(loss, inputs)


def test_label_smoothing_zero_is_the_paper_loss_and_equal_models_give_ln2() -> None:
    lp = pair_logps()
    got = LOSSES["sigmoid"].fn(lp, beta=0.1, label_smoothing=0.0)
    assert got.tolist() == pytest.approx(expected("sigmoid", beta=0.1, eps=0.0), abs=1e-12)
    same = PairLogps(
        lp.chosen, lp.rejected, lp.chosen, lp.rejected, lp.chosen_tokens, lp.rejected_tokens
    )
    assert torch.allclose(
        LOSSES["sigmoid"].fn(same, beta=0.1), torch.full((4,), math.log(2), dtype=torch.float64)
    )


def test_combination_is_the_weighted_sum_with_components() -> None:
    lp = pair_logps()
    total, parts = preference_loss(lp, ["sigmoid", "sft"], [1.0, 0.2], **OPTIONS)
    want = [a + 0.2 * b for a, b in zip(expected("sigmoid"), expected("sft"), strict=True)]
    assert total.tolist() == pytest.approx(want, abs=1e-9)
    assert set(parts) == {"sigmoid", "sft"}
    assert parts["sft"].tolist() == pytest.approx(expected("sft"), abs=1e-12)


def test_combination_takes_each_losss_defaults_and_refuses_unknown_names() -> None:
    """Standalone use: an option not given is the loss's own default (it was a KeyError), and a
    misspelt option (it was dropped without a word), loss or weight count is a ValueError."""
    lp = pair_logps()
    total, _ = preference_loss(lp, ["sigmoid"], None, beta=BETA)
    assert total.tolist() == pytest.approx(expected("sigmoid", eps=0.0), abs=1e-12)
    with pytest.raises(ValueError, match="^unknown loss option 'label_smothing'; did you mean"):
        preference_loss(lp, ["sigmoid"], None, beta=BETA, label_smothing=EPS)
    with pytest.raises(ValueError, match="^unknown loss 'simpo_loss'; did you mean 'simpo'"):
        preference_loss(lp, ["simpo_loss"], None, beta=BETA)
    with pytest.raises(ValueError, match="^1 loss_weights for 2 loss_types"):
        preference_loss(lp, ["sigmoid", "sft"], [1.0], beta=BETA)
    with pytest.raises(ValueError, match="^loss 'aot' needs ref_chosen and ref_rejected"):
        preference_loss(pair_logps(reference=False), ["simpo", "aot"], None, **OPTIONS)


def test_an_option_left_out_is_the_configs_default_or_a_value_error() -> None:
    """docs/losses.md: an option not given takes the loss's own default. simpo and discopop
    had none (a TypeError from the call); their defaults are DPOConfig's, and an option with no
    default (beta, EXO's label_smoothing) is a ValueError naming it."""
    from directpo.config import DPOConfig

    defaults = DPOConfig(model_name_or_path="m")
    lp = pair_logps()
    for name, option in (("simpo", "simpo_gamma"), ("discopop", "discopop_tau")):
        given = {option: getattr(defaults, option)}
        total, _ = preference_loss(lp, [name], None, beta=BETA)
        assert total.tolist() == LOSSES[name].fn(lp, beta=BETA, **given).tolist()
    for name in sorted(LOSSES):
        for option in LOSSES[name].options:
            default = inspect.signature(LOSSES[name].fn).parameters[option].default
            if default is not inspect.Parameter.empty:
                assert default == getattr(defaults, option), (name, option)
    with pytest.raises(ValueError, match="^loss 'sigmoid' needs beta \\(it has no default\\)"):
        preference_loss(lp, ["sigmoid"], None)
    with pytest.raises(ValueError, match="^loss 'exo_pair' needs label_smoothing"):
        preference_loss(lp, ["exo_pair"], None, beta=BETA)


def test_rewards_are_beta_logratios_or_mean_logps_without_reference() -> None:
    chosen, rejected = implicit_rewards(pair_logps(), BETA)
    assert chosen.tolist() == pytest.approx([BETA * (a - b) for a, b in zip(PC, RC, strict=True)])
    assert rejected.tolist() == pytest.approx([BETA * (a - b) for a, b in zip(PR, RR, strict=True)])
    chosen, _ = implicit_rewards(pair_logps(reference=False), BETA)
    assert chosen.tolist() == pytest.approx([BETA * a / n for a, n in zip(PC, NC, strict=True)])


def test_gradient_pushes_chosen_up_and_rejected_down() -> None:
    lp = PairLogps(
        torch.tensor([-5.0], requires_grad=True),
        torch.tensor([-5.0], requires_grad=True),
        torch.tensor([-5.0]),
        torch.tensor([-5.0]),
        torch.tensor([3]),
        torch.tensor([3]),
    )
    LOSSES["sigmoid"].fn(lp, beta=0.1).sum().backward()
    assert lp.chosen.grad.item() == pytest.approx(-0.05)  # -beta * sigma(0)
    assert lp.rejected.grad.item() == pytest.approx(0.05)


def test_f_divergence_scores_against_their_formulas() -> None:
    """f-DPO (Wang et al. 2023): f'(t) at t = π/π_ref, in float64, from the definitions."""
    import math

    from directpo.losses import f_divergence_score

    u = torch.tensor([-2.0, -0.3, 0.0, 0.7, 3.0], dtype=torch.float64)
    t = u.exp()
    assert torch.allclose(f_divergence_score(u, "reverse_kl"), u)
    assert torch.allclose(f_divergence_score(u, "forward_kl"), 1 - 1 / t)
    assert torch.allclose(f_divergence_score(u, "js_divergence"), torch.log(2 * t / (1 + t)))
    for alpha in (0.3, 0.5, 2.0):
        expected = (t ** (alpha - 1) - 1) / (alpha - 1)
        assert torch.allclose(f_divergence_score(u, "alpha_divergence", alpha), expected)
    assert torch.allclose(f_divergence_score(u, "alpha_divergence", 1.0), u)  # the KL limit
    assert math.isfinite(float(f_divergence_score(torch.tensor([1e4]), "alpha_divergence", 2.0)))


def test_wpo_weight_and_ld_token_weights() -> None:
    from directpo.losses import ld_token_weights, wpo_weight

    # WPO: exp of the mean aligned log-prob; detached
    aligned = torch.tensor([-3.0, -0.5], dtype=torch.float64, requires_grad=True)
    weights = wpo_weight(aligned, torch.tensor([3, 1]))
    assert torch.allclose(
        weights, torch.tensor([math.exp(-1.0), math.exp(-0.5)], dtype=torch.float64)
    )
    assert not weights.requires_grad
    # LD-DPO: a 5-token completion paired with a 2-token one: the last 3 tokens weigh alpha
    position = torch.arange(5)
    got = ld_token_weights(position, torch.full((5,), 5), torch.full((5,), 2), 0.25)
    assert got.tolist() == [1.0, 1.0, 0.25, 0.25, 0.25]
    shorter = ld_token_weights(torch.arange(2), torch.full((2,), 2), torch.full((2,), 5), 0.25)
    assert shorter.tolist() == [1.0, 1.0]  # the shorter completion keeps every token


def test_the_torch_free_loss_table_names_every_loss_function() -> None:
    """loss_names.py (read by the config's checks and --help without torch) and the loss
    functions are one table: a loss in one and not the other would be refused as unknown or
    never run."""
    from directpo import losses
    from directpo.loss_names import LOSS_INFO

    assert set(losses._FUNCTIONS) == set(LOSS_INFO) == set(LOSSES)
    for name, info in LOSS_INFO.items():
        assert LOSSES[name].options == info.options and LOSSES[name].fn is losses._FUNCTIONS[name]
