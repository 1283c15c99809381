"""The optimizer of a run against the one transformers' Trainer builds for the same options."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.optimizers import build_optimizer, no_decay_ids

# how torch's class runs, not what it computes (directpo fuses AdamW on CUDA)
IMPLEMENTATION = {"params", "fused", "foreach", "differentiable", "capturable", "maximize"}


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=32))


def _transformers_optimizer(model: torch.nn.Module, tmp_path, **args) -> torch.optim.Optimizer:
    """What Trainer.create_optimizer builds: its param groups, then its class and arguments."""
    training_args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, **args)
    decayed = set(Trainer.get_decay_parameter_names(None, model))
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if n in decayed],
            "weight_decay": training_args.weight_decay,
        },
        {
            "params": [p for n, p in model.named_parameters() if n not in decayed],
            "weight_decay": 0.0,
        },
    ]
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(training_args, model)
    return cls(groups, **kwargs)


def _settings(optimizer: torch.optim.Optimizer) -> dict[int, dict]:
    """Each tensor's update settings, by tensor (without weight decay directpo keeps one group,
    as its earlier checkpoints do, where the Trainer keeps two of the same settings)."""
    return {
        id(param): {key: value for key, value in group.items() if key not in IMPLEMENTATION}
        for group in optimizer.param_groups
        for param in group["params"]
    }


@pytest.mark.parametrize(
    "options",
    [
        {"optim": "rmsprop", "learning_rate": 1e-6},  # (directpo's default rate is TRL's)
        {"optim": "rmsprop", "learning_rate": 3e-4, "weight_decay": 0.1},
        {"optim": "adamw_torch", "learning_rate": 1e-6},
        {
            "optim": "adamw_torch",
            "learning_rate": 2e-5,
            "weight_decay": 0.05,
            "adam_beta1": 0.8,
            "adam_beta2": 0.95,
            "adam_epsilon": 1e-6,
        },
    ],
)
def test_the_optimizer_is_the_one_transformers_builds(options: dict, tmp_path) -> None:
    """optim: rmsprop took adam_epsilon as RMSprop's eps, where transformers' Trainer passes
    the learning rate alone (torch's eps 1e-8 and alpha 0.99): every setting of every param
    group is now the Trainer's, for RMSprop and AdamW alike."""
    model = _tiny_model()
    theirs = _transformers_optimizer(model, tmp_path, **options)
    config = DPOConfig(**options)
    params = [p for p in model.parameters() if p.requires_grad]
    ours = build_optimizer(params, config, no_decay=no_decay_ids(model, None))
    assert type(ours) is type(theirs)
    assert _settings(ours) == _settings(theirs)
    assert len(_settings(ours)) == len(params)


def test_adam_epsilon_with_rmsprop_is_refused_not_ignored() -> None:
    """transformers' Trainer ignores adam_epsilon for RMSprop; set, it is refused in one line
    (as adam_beta1 / adam_beta2 are), not taken as RMSprop's eps nor dropped silently."""
    with pytest.raises(ConfigError) as refused:
        DPOConfig(optim="rmsprop", adam_epsilon=1e-6)
    assert str(refused.value).startswith("adam_epsilon is set but optimizer is rmsprop, whose eps")
    assert "\n" not in str(refused.value)
    assert DPOConfig(optimizer="rmsprop", adam_epsilon=1e-8).adam_epsilon == 1e-8  # the default
