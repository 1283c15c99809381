"""The losses' names and what each reads, without torch: the options' checks and ``--help``
read this table at start, and importing the loss functions (torch) took most of the 2 s that
``directpo --help`` or a mistyped option waited (losses.py attaches each function)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class LossInfo:
    needs_reference: bool
    options: tuple[str, ...]  # config options the function takes, by keyword
    paper: str


LOSS_INFO: dict[str, LossInfo] = {
    "sigmoid": LossInfo(True, ("beta", "label_smoothing"), "DPO; cDPO"),
    "robust": LossInfo(True, ("beta", "label_smoothing"), "Robust DPO"),
    "hinge": LossInfo(True, ("beta",), "SLiC / RSO"),
    "ipo": LossInfo(True, ("beta",), "IPO"),
    "exo_pair": LossInfo(True, ("beta", "label_smoothing"), "EXO"),
    "nca_pair": LossInfo(True, ("beta",), "NCA"),
    "bco_pair": LossInfo(True, ("beta",), "BCO"),
    "sppo_hard": LossInfo(True, ("beta",), "SPPO"),
    "aot": LossInfo(True, ("beta", "label_smoothing"), "AOT"),
    "aot_unpaired": LossInfo(True, ("beta", "label_smoothing"), "AOT"),
    "apo_zero": LossInfo(True, ("beta",), "APO"),
    "apo_down": LossInfo(True, ("beta",), "APO"),
    "discopop": LossInfo(True, ("beta", "discopop_tau"), "DiscoPOP"),
    "sigmoid_norm": LossInfo(True, ("beta",), "Tulu 3"),
    "sft": LossInfo(False, (), "Preferred-FT"),
    "unlikelihood": LossInfo(False, (), "Unlikelihood"),
    "simpo": LossInfo(False, ("beta", "simpo_gamma", "label_smoothing"), "SimPO"),
    "orpo": LossInfo(False, ("beta",), "ORPO"),
}

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")
# the losses built on h = Δ_w − Δ_l, for which an f-divergence score can stand in for Δ (TRL's set)
F_DIVERGENCE_LOSSES = frozenset(
    {"sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop", "sft"}
)


def needs_reference(loss_types: Sequence[str]) -> bool:
    return any(LOSS_INFO[name].needs_reference for name in loss_types)
