"""The value checks of the precision options (dtype, bf16, master weights, the saved and
evaluated dtypes) and of the optimizer and its schedule (the optimizer named, its numbers,
RMSprop's, the warmup, lr_scheduler_kwargs). Run by ``config_checks.check_values`` in its one
pass."""

from __future__ import annotations

from directpo.callers import spell_given, spell_option, spell_pair, spell_setting, spell_value
from directpo.config import (
    DTYPES,
    LR_SCHEDULERS,
    OPTIMIZERS,
    SAVE_DTYPES,
    SCHEDULERS_NEEDING_KWARGS,
    DPOConfig,
)
from directpo.option_values import as_yaml
from directpo.options import reject_if_set
from directpo.trl_table import is_eight_bit, low_bit_refusal, other_optimizer_refusal


def check_precision(config: DPOConfig) -> None:
    if config.fp16:
        config._refuse(
            "fp16",
            f"{spell_given('fp16', config.fp16)}: float16 mixed precision is not supported (its "
            f"narrow range needs a loss scaler); use {spell_option('bf16', True, in_recipe=False)} "
            f"(mixed precision in bfloat16) or {spell_option('dtype', 'float32', in_recipe=False)}",
        )
    if config.bf16 and config.dtype == "float16":  # bf16 would have overridden it silently
        config._refuse(
            "dtype",
            f"{spell_pair(('dtype', 'float16'), 'with', ('bf16', True))}: float16 is not "
            f"supported (its narrow range needs a loss scaler); remove "
            f"{spell_given('dtype', 'float16')} ({spell_option('bf16', True, in_recipe=False)} "
            f"means {spell_option('dtype', 'bfloat16', in_recipe=False)}, bf16 compute over "
            "float32 master weights)",
        )
    elif config.bf16:
        config.dtype = "bfloat16"
    if config.dtype == "auto":  # transformers' "as saved": training needs a decision
        config._refuse(
            "dtype",
            f"{spell_option('dtype', 'auto', in_recipe=False)} is not supported: choose "
            "bfloat16 (bf16 compute over float32 master weights, for GPUs) or float32",
        )
    else:
        config._one_of("dtype", DTYPES)
    config._one_of("master_weights", DTYPES)
    config._one_of("save_dtype", SAVE_DTYPES)
    config._one_of("eval_dtype", SAVE_DTYPES)
    if config.dtype == "float32" and config.eval_dtype == "bfloat16":
        config._refuse(
            "eval_dtype",
            f"{spell_pair(('eval_dtype', 'bfloat16'), 'under', ('dtype', 'float32'))}: the run "
            "computes in float32 and so does its evaluation; "
            f"{spell_setting(('dtype', 'bfloat16'))} (mixed precision) to "
            "evaluate as bf16 computes",
        )
    flash = ("attn_implementation", "flash_attention_2")
    if config.eval_dtype == "float32" and config.attn_implementation == "flash_attention_2":
        config._refuse(
            "eval_dtype",
            f"{spell_pair(('eval_dtype', 'float32'), 'with', flash)}, whose kernels compute in "
            f"bf16/fp16 only; {spell_setting(('attn_implementation', 'varlen'))} or "
            f"{spell_value('sdpa')}, or {spell_option('eval_dtype', 'auto', in_recipe=False)} "
            "(evaluates in bfloat16 with flash_attention_2)",
        )
    if config.dtype == "float32":
        reject_if_set(config, ("master_weights",), "dtype is float32 (weights are float32)")
    elif config.master_weights == "bfloat16" and config.weight_decay:
        decayed = ("weight_decay", config.weight_decay)
        config._refuse(
            "weight_decay",
            f"{spell_pair(decayed, 'with', ('master_weights', 'bfloat16'))} does nothing: the "
            "optimizers multiply the bf16 weights by (1 - lr x weight_decay) outside any "
            "compensation, which rounds to 1 at DPO learning rates; use the default "
            f"float32 master weights, or {spell_option('weight_decay', 0, in_recipe=False)}",
        )


def check_optimizer_choice(config: DPOConfig) -> None:
    """The optimizer and schedule named (transformers' 8-bit and other optimizers told
    apart from a misspelt name)."""
    one_of = config._one_of
    if is_eight_bit(config.optimizer):  # (transformers' name given as directpo's option)
        config._refuse("optimizer", low_bit_refusal("optimizer", config.optimizer))
    elif other := other_optimizer_refusal("optimizer", str(config.optimizer)):
        config._refuse("optimizer", other)  # (sgd, adafactor: told the three names alone)
    one_of("optimizer", OPTIMIZERS)
    one_of("lr_scheduler_type", LR_SCHEDULERS)


def check_optimizer_values(config: DPOConfig) -> None:
    """The optimizer's numbers and the warmup; the schedule's kwargs once what they read
    is valid."""
    require = config._require
    require(config.learning_rate > 0, "learning_rate", "> 0")
    require(config.weight_decay >= 0, "weight_decay", ">= 0")
    require(0 <= config.adam_beta1 < 1, "adam_beta1", "in [0, 1)")
    require(0 <= config.adam_beta2 < 1, "adam_beta2", "in [0, 1)")
    require(config.adam_epsilon > 0, "adam_epsilon", "> 0")
    check_rmsprop(config)
    require(config.warmup_steps >= 0, "warmup_steps", ">= 0")
    # float to take a fraction, but a whole number is a count: written back as given
    # (warmup_steps: 2 read 2.0 in the run's config.yaml and model card)
    for key in ("warmup_steps", "eval_delay", "num_train_epochs"):
        value = getattr(config, key)
        if isinstance(value, float) and value.is_integer() and (value >= 1 or value == 0):
            setattr(config, key, int(value))
    require(0 <= config.warmup_ratio < 1, "warmup_ratio", "in [0, 1)")
    if config._valid("lr_scheduler_type", "learning_rate", "warmup_steps", "warmup_ratio"):
        check_schedule(config)


def check_rmsprop(config: DPOConfig) -> None:
    """RMSprop is built as transformers' Trainer builds it (optim: rmsprop): the learning rate
    and weight decay, torch's own alpha (0.99) and eps (1e-8). Its Trainer leaves adam_beta1,
    adam_beta2 and adam_epsilon out (a TRL recipe setting them trains with torch's values);
    here they are refused: RMSprop took adam_epsilon as its eps, so a recipe moved from TRL
    trained otherwise than there."""
    if config.optimizer == "rmsprop":
        reject_if_set(config, ("adam_beta1", "adam_beta2"), "optimizer is rmsprop, which has none")
        reject_if_set(
            config,
            ("adam_epsilon",),
            "optimizer is rmsprop, whose eps is torch's 1e-8 (transformers' Trainer passes it "
            "no epsilon either)",
        )


def check_schedule(config: DPOConfig) -> None:
    """lr_scheduler_kwargs that the schedule would not take (or, for constant, ignore),
    and a schedule missing its required ones, are refused before any model loads."""
    kwargs, name = config.lr_scheduler_kwargs, config.lr_scheduler_type
    if not kwargs and name not in SCHEDULERS_NEEDING_KWARGS:
        return
    if name in ("constant", "constant_with_warmup"):
        config._refuse(
            "lr_scheduler_kwargs",
            f"lr_scheduler_kwargs is set but lr_scheduler_type {name} takes none"
            f" (got {as_yaml(kwargs)})",
        )
        return
    import torch

    try:  # built once on a stand-in optimizer: transformers checks the arguments
        parameter = torch.zeros(1, requires_grad=True)  # lr: polynomial checks lr_end
        config.schedule(torch.optim.SGD([parameter], lr=config.learning_rate), 100)
    except (TypeError, ValueError) as exc:  # collected: the checks after it still run
        config._refuse(
            "lr_scheduler_kwargs",
            f"lr_scheduler_kwargs {as_yaml(kwargs or {})} do not fit lr_scheduler_type "
            f"{name}: {exc}",
        )
