"""Curves over steps against TRL's DPOTrainer: full fine-tuning of the same tiny policy, with a
different reference, for each loss and loss option users pick.

Four optimizer steps of batch 2 x 2 accumulation over six pairs (an epoch is two steps, its
second one micro-batch, then TRL's reshuffle), one warmup step then cosine, clipping: what the
one-batch checks of test_trl_parity.py cannot see (optimizer, schedule, order, accumulation).
float32: every value TRL logs equals directpo's (1e-5) but the token means logits/*, entropy and
mean_token_accuracy (means of micro-batch means in TRL, docs/design.md). bf16: both round, in
other places (docs/performance.md), so directpo's curve is held to TRL's own bf16 noise.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import SENTIMENT_PAIRS, save_tiny_model
from trl_runs import trl_and_directpo_logs

from directpo.step import TOKEN_MEANS

pytest.importorskip("trl")

# the sft term is a token mean per micro-batch in TRL, a mean of per-pair means here: equal on
# chosen completions of one length (docs/losses.md)
EQUAL_CHOSEN = [dict(row, chosen=" great.") for row in SENTIMENT_PAIRS]
SFT = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}

# id: (options both spell alike, TRL's own, directpo's own, rows)
VARIANTS = {
    "ipo": ({"loss_type": ["ipo"]}, {}, {}, SENTIMENT_PAIRS),
    "hinge": ({"loss_type": ["hinge"]}, {}, {}, SENTIMENT_PAIRS),
    "robust": ({"loss_type": ["robust"], "label_smoothing": 0.1}, {}, {}, SENTIMENT_PAIRS),
    "bco_pair": ({"loss_type": ["bco_pair"]}, {}, {}, SENTIMENT_PAIRS),
    "sppo_hard": ({"loss_type": ["sppo_hard"]}, {}, {}, SENTIMENT_PAIRS),
    "nca_pair": ({"loss_type": ["nca_pair"]}, {}, {}, SENTIMENT_PAIRS),
    "apo_zero": ({"loss_type": ["apo_zero"]}, {}, {}, SENTIMENT_PAIRS),
    "exo_pair": ({"loss_type": ["exo_pair"], "label_smoothing": 0.1}, {}, {}, SENTIMENT_PAIRS),
    "sigmoid-sft-weights": (SFT, {}, {}, EQUAL_CHOSEN),
    # TRL 1.16 has no rpo_alpha: it is the sft term of that weight (docs/migrating.md, "TRL
    # configs port")
    "rpo_alpha": ({}, SFT, {"rpo_alpha": 0.5}, EQUAL_CHOSEN),
    "use_weighting": ({"use_weighting": True}, {}, {}, SENTIMENT_PAIRS),
    "ld_alpha": ({"ld_alpha": 0.5}, {}, {}, SENTIMENT_PAIRS),
    "precompute_ref_log_probs": ({"precompute_ref_log_probs": True}, {}, {}, SENTIMENT_PAIRS),
    "padding_free": ({"padding_free": True}, {}, {}, SENTIMENT_PAIRS),
}
SCHEDULE = dict(
    loss_type=["sigmoid"], beta=0.3, learning_rate=1e-3, lr_scheduler_type="cosine",
    warmup_steps=1, max_steps=4, max_grad_norm=0.5, per_device_train_batch_size=2,
    gradient_accumulation_steps=2, logging_steps=1, seed=42,
)  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("curves")
    return save_tiny_model("gpt2", root / "policy", seed=0), save_tiny_model(
        "gpt2", root / "ref", seed=1
    )


def curves(models, tmp_path, shared, trl_only, ours_only, rows) -> tuple[list, list]:
    """(directpo's rows, TRL's rows) of the four steps of SCHEDULE with these options."""
    ours, theirs = trl_and_directpo_logs(
        *models, rows, tmp_path, trl_only, ours_only, **(SCHEDULE | shared)
    )
    assert len(ours) == len(theirs) == 4
    assert [row["learning_rate"] for row in theirs][:2] == [0.0, 1e-3]  # warmup, then the peak
    return ours, theirs


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_four_steps_of_each_loss_log_trls_values(models, tmp_path, variant) -> None:
    ours, theirs = curves(models, tmp_path, *VARIANTS[variant])
    for mine, row in zip(ours, theirs, strict=True):
        assert row.keys() <= mine.keys()
        for key in row.keys() - set(TOKEN_MEANS):
            assert mine[key] == pytest.approx(row[key], abs=1e-5, rel=1e-5), (row["step"], key)
    # the curve moves: the steps after warmup trained the policy
    assert abs(theirs[-1]["rewards/margins"] - theirs[1]["rewards/margins"]) > 0.05


# what each family of metrics is compared over: rewards/* share one scale, logps/* another
FAMILIES = {"loss": ("loss",), "grad_norm": ("grad_norm",),
            "rewards": ("rewards/chosen", "rewards/rejected", "rewards/margins"),
            "logps": ("logps/chosen", "logps/rejected")}  # fmt: skip


def largest_gap(rows: list[dict], others: list[dict], keys: tuple[str, ...]) -> float:
    return max(abs(a[k] - b[k]) for a, b in zip(rows, others, strict=True) for k in keys)


@pytest.mark.parametrize("variant", ["sigmoid", "ipo", "precompute_ref_log_probs"])
def test_bf16_curves_lie_within_three_times_trls_own_bf16_noise(models, tmp_path, variant) -> None:
    """bf16 (TRL: autocast over float32 weights; directpo: a bf16 compute copy of float32
    masters, activations bf16 too) has no exact answer, so its noise is measured: how far TRL's
    bf16 curve lies from its float32 one, the largest over the steps, per family of metrics.
    directpo's bf16 curve lies within 3x that of TRL's bf16 curve. Measured over 13 losses and
    options on this tiny GPT-2 (and a tiny Llama): at most 1.6x for loss, 2.3x grad_norm, 1.7x
    rewards/*, 2.5x logps/* (activations rounded to bf16 here, kept float32 between matmuls
    by autocast); learning_rate and num_tokens exact. SmolLM2-135M: docs/performance.md."""
    shared, trl_only, ours_only, rows = VARIANTS.get(variant, ({}, {}, {}, SENTIMENT_PAIRS))
    _, float32 = curves(models, tmp_path / "float32", shared, trl_only, ours_only, rows)
    bf16 = {"bf16": True}
    ours, theirs = curves(
        models, tmp_path / "bf16", shared, trl_only | bf16, ours_only | bf16, rows
    )
    for mine, row in zip(ours, theirs, strict=True):
        assert (mine["learning_rate"], mine["num_tokens"]) == (
            row["learning_rate"], row["num_tokens"],
        )  # fmt: skip
    # directpo's run computed in bf16 (a float32 run would lie within 1e-5 of TRL's float32)
    assert largest_gap(ours, float32, ("loss", "grad_norm")) > 1e-4
    for family, keys in FAMILIES.items():
        noise = largest_gap(theirs, float32, keys)
        assert noise > 0, family  # TRL's bf16 run rounds: the bound is measured, not zero
        assert largest_gap(ours, theirs, keys) <= 3 * noise, family


def test_tr_dpo_soft_updates_follow_the_policy_in_bf16_as_trls(models, tmp_path) -> None:
    """TR-DPO's soft update (α 0.6, every step) at a learning rate of 1e-5: under bf16 the
    reference was mixed and rounded back to bf16, so a mix under half of bf16's grid never
    moved it and it stopped following the policy without a word: rewards/margins 0.006 after 8
    steps where float32 and TRL's bf16 read 0.0006 (10x TRL's own bf16 noise). TRL mixes its
    float32 reference; directpo now keeps the reference's float32 weights beside it too."""
    policy = models[0]  # TR-DPO's reference starts as the policy (TRL: given it as ref_model)
    options = SCHEDULE | dict(
        learning_rate=1e-5, max_steps=8, sync_ref_model=True, ref_model_sync_steps=1,
        ref_model_mixup_alpha=0.6,
    )  # fmt: skip
    itself = {"ref_model_name_or_path": None}
    ours32, float32 = trl_and_directpo_logs(
        policy, policy, SENTIMENT_PAIRS, tmp_path / "float32", None, itself, **options
    )
    for mine, row in zip(ours32, float32, strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen"):
            assert mine[key] == pytest.approx(row[key], abs=1e-5, rel=1e-5), (row["step"], key)
    bf16 = {"bf16": True}
    ours, theirs = trl_and_directpo_logs(
        policy, policy, SENTIMENT_PAIRS, tmp_path / "bf16", bf16, itself | bf16, **options
    )
    assert abs(float32[-1]["rewards/margins"]) < 2e-3  # the reference keeps up with the policy
    for family, keys in FAMILIES.items():
        noise = largest_gap(theirs, float32, keys)
        assert largest_gap(ours, theirs, keys) <= 3 * noise, family
