"""The optimizer of a run and its param groups.

Weight decay spares biases and norm weights, as transformers' Trainer (and so TRL) does: with
``weight_decay`` set, those tensors form a second param group without decay. Without weight
decay there is one group, as in checkpoints of earlier versions; ``fit_saved_groups`` lets a
checkpoint saved with the other grouping resume (a changed ``weight_decay``, or a checkpoint
from before the split).
"""

from __future__ import annotations

from typing import Any

import torch

from directpo.config import DPOConfig
from directpo.precision import MasterWeights

# transformers' Trainer.get_decay_parameter_names: parameters named so are not decayed
NO_DECAY_PATTERNS = (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")


def no_decay_ids(policy: torch.nn.Module, masters: MasterWeights | None) -> set[int]:
    """ids of the trainable tensors that weight decay leaves alone, chosen as transformers'
    Trainer chooses them (biases, LayerNorm modules, parameters named like a norm); under
    mixed precision, the float32 masters of those parameters."""
    from transformers.trainer_pt_utils import get_parameter_names

    decayed = set(get_parameter_names(policy, [torch.nn.LayerNorm], list(NO_DECAY_PATTERNS)))
    exempt = {id(p) for name, p in policy.named_parameters() if name not in decayed}
    master_of = {} if masters is None else {id(p): m for p, m in masters.pairs}
    return {id(master_of.get(i, p)) for p in policy.parameters() if (i := id(p)) in exempt}


def group_layout(
    params: list[torch.Tensor], no_decay: set[int] | frozenset[int], weight_decay: float
) -> list[list[torch.Tensor]]:
    """The tensors of each param group, in order: all in one, or (with weight decay and
    exempt tensors) the decayed ones, then the exempt ones."""
    exempt = [p for p in params if id(p) in no_decay]
    if not weight_decay or not exempt:
        return [params]
    decayed = [p for p in params if id(p) not in no_decay]
    return [group for group in (decayed, exempt) if group]


def build_optimizer(
    params: list[torch.Tensor],
    config: DPOConfig,
    device: torch.device | None = None,
    no_decay: set[int] | frozenset[int] = frozenset(),
) -> torch.optim.Optimizer:
    """The configured optimizer over ``params`` (fused AdamW on CUDA float32 weights); the
    tensors in ``no_decay`` (ids) are not decayed."""
    layout = group_layout(params, no_decay, config.weight_decay)
    groups: list[dict[str, Any]] = [{"params": layout[0]}]
    groups += [{"params": exempt, "weight_decay": 0.0} for exempt in layout[1:]]
    if config.optimizer == "rmsprop":  # as transformers' Trainer: torch's alpha and eps
        return torch.optim.RMSprop(
            groups, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    betas = (config.adam_beta1, config.adam_beta2)
    if config.optimizer == "adamw_kahan":
        from optimi import AdamW as KahanAdamW

        return KahanAdamW(
            groups,
            lr=config.learning_rate,
            betas=betas,
            eps=config.adam_epsilon,
            weight_decay=config.weight_decay,
            kahan_sum=True,
        )
    fused = device is not None and device.type == "cuda"
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        eps=config.adam_epsilon,
        betas=betas,
        weight_decay=config.weight_decay,
        fused=fused or None,
    )


def fit_saved_groups(
    saved: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    no_decay: set[int],
) -> dict[str, Any]:
    """A saved optimizer state (torch's, keyed by position across groups) laid out for
    ``optimizer``'s groups, when it was saved with the other grouping (one group without weight
    decay, two with it): each tensor keeps its own moments. The groups' options come from the
    saved first group (the run's own options replace them afterwards, resume.py)."""
    groups = saved["param_groups"]
    if len(groups) == len(optimizer.param_groups):
        return saved
    layout = group_layout(params, no_decay, 1.0 if len(groups) > 1 else 0.0)
    if [len(group["params"]) for group in groups] != [len(tensors) for tensors in layout]:
        return saved  # not this model's: torch's own error names the mismatch
    saved_index = [index for group in groups for index in group["params"]]
    position = {id(p): i for i, p in enumerate(p for tensors in layout for p in tensors)}
    state, fitted, index = {}, [], 0
    for group in optimizer.param_groups:
        indices = []
        for param in group["params"]:
            old = saved_index[position[id(param)]]
            if old in saved["state"]:
                state[index] = saved["state"][old]
            indices.append(index)
            index += 1
        fitted.append({**own_options(groups[0]), "params": indices})
    return {"state": state, "param_groups": fitted}


def own_options(group: dict[str, Any]) -> dict[str, Any]:
    """A param group's options for another group: its tensors copied (torch-optimi counts
    steps in a group tensor, which each group sharing it would advance: twice per step)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in group.items()}
