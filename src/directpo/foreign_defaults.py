"""Another tool's defaults where its recipe leaves an option out: a run whose options came in
OpenRLHF's, torchtune's or TRL's names (the tool is known from the names used) is told at start,
in one line, the defaults of that tool that differ from directpo's and change what it trains,
with the settings that give that tool's behaviour; only for the options its sources did not
set. A recipe's SET keys are mapped (foreign_names.py, trl_compat.py); the keys it left out
would otherwise train with directpo's defaults without a word (docs/migrating.md).

directpo keeps its own defaults rather than taking the tool's: one recipe trains alike from any
entry point, a config.yaml read back (which records directpo's names) trains as the run did,
and the tools disagree among themselves (OpenRLHF's learning rate is ten times TRL's)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable
from typing import Any

from directpo.callers import spell_setting, spell_value

OPENRLHF = "OpenRLHF"
TORCHTUNE = "torchtune"
TRL = "TRL"

# torchtune's names that foreign_names reads (RENAMED / REFUSED; test_foreign_defaults checks
# they are there): every other name there is OpenRLHF's, but for transformers' scripts' one
TORCHTUNE_NAMES = frozenset(
    {
        "epochs", "batch_size", "enable_activation_checkpointing",
        "enable_activation_offloading", "log_every_n_steps", "compile", "clip_grad_norm",
        "fsdp_cpu_offload", "optimizer.lr", "loss.beta", "loss.label_smoothing",
        "lr_scheduler.num_warmup_steps", "checkpointer.checkpoint_dir",
        "ref_checkpointer.checkpoint_dir", "model.lora_rank", "model.lora_alpha",
        "model.lora_dropout", "max_steps_per_epoch", "shuffle", "device", "log_peak_memory_stats",
        "optimizer_in_bwd", "save_adapter_weights_only", "custom_sharded_layers", "tokenizer",
        "optimizer.weight_decay", "tokenizer.max_seq_len", "profiler",
    }
)  # fmt: skip
NOT_OPENRLHF = frozenset({"max_train_samples"})  # (transformers' example scripts')
# TRL's own options that directpo keeps for TRL's recipes (beside trl_table's ALIASES and
# NO_EFFECT keys, which only TRL's and transformers' configs write)
TRL_NAMES = frozenset({"use_peft", "optim"})


@dataclasses.dataclass(frozen=True)
class ToolDefault:
    """A default of another tool that trains otherwise than directpo's: ``settings``, the
    directpo options that give the tool's behaviour; said where none of ``chosen`` (the
    options by which a recipe decides it) was set and ``applies(config, recipe)``."""

    settings: tuple[tuple[str, Any], ...]
    chosen: tuple[str, ...]
    applies: Callable[[Any, Recorded], bool] = lambda config, recipe: True


@dataclasses.dataclass(frozen=True)
class Recorded:
    """What a config records of its sources: the ``tool`` whose names they used, those
    ``names`` as written, and the options they set (``options_set``, directpo's names)."""

    tool: str
    names: frozenset[str]
    options_set: frozenset[str]


def _lora(config: Any, recipe: Recorded) -> bool:
    return bool(config.lora_r)


def _min_lr_schedule(config: Any, recipe: Recorded) -> bool:
    """OpenRLHF's floor belongs to its schedule: the one said (the type left out) or written."""
    written = config.lr_scheduler_type == "cosine_with_min_lr"
    return "lr_scheduler_type" not in recipe.options_set or written


def _grouped(config: Any, recipe: Recorded) -> bool:
    """OpenRLHF's grouped options (--ds.lora.rank), whose --ds.param_dtype is bf16 by default;
    the flat flags' versions trained in float32 without --bf16, as directpo does."""
    return any("." in name for name in recipe.names)


def _openrlhf_accumulation(config: Any) -> int:
    """OpenRLHF's train_batch_size, 128 pairs an optimizer step, over this run's processes."""
    from directpo.launchers import started_count

    return max(1, 128 // (config.per_device_train_batch_size * started_count()[0]))


# OpenRLHF's train_dpo (openrlhf/cli/train_dpo.py; the flat flags of older versions have the
# same defaults): the same beta 0.1, label_smoothing 0, max_norm 1.0, weight decay 0, eps 1e-8,
# one epoch, seed 42, lora dropout 0 and all-linear targets as directpo
OPENRLHF_DEFAULTS = (
    ToolDefault((("learning_rate", 1e-5),), ("learning_rate",)),
    ToolDefault((("lr_scheduler_type", "cosine_with_min_lr"),), ("lr_scheduler_type",)),
    ToolDefault(
        (("lr_scheduler_kwargs", {"min_lr_rate": 0.1}),),
        ("lr_scheduler_kwargs",),
        _min_lr_schedule,
    ),
    ToolDefault((("warmup_ratio", 0.03),), ("warmup_ratio", "warmup_steps")),
    ToolDefault((("adam_beta2", 0.95),), ("adam_beta2",)),
    # its train_batch_size 128 pairs a step (refused: the recipe says gradient_accumulation)
    ToolDefault(
        (("gradient_accumulation_steps", _openrlhf_accumulation),), ("gradient_accumulation_steps",)
    ),  # fmt: skip
    ToolDefault((("max_length", 512),), ("max_length",)),  # its max_len
    ToolDefault((("lora_alpha", 16),), ("lora_alpha",), _lora),
    # its grouped options' --ds.param_dtype bf16 (the flat flags' --bf16 was off by default)
    ToolDefault((("bf16", True),), ("bf16", "fp16", "dtype"), _grouped),
)

# torchtune's DPO recipes (lora_dpo_single_device.py, full_dpo_distributed.py): a key they
# read with cfg.get, or a component's default, where the recipe leaves it out
TORCHTUNE_DEFAULTS = (
    # no clip_grad_norm: no clipping (lora_dpo_single_device never clips)
    ToolDefault((("max_grad_norm", None),), ("max_grad_norm",)),
    # no lr_scheduler: the learning rate stays at lr (a num_warmup_steps override is its
    # cosine component's, get_cosine_schedule_with_warmup: transformers' cosine)
    ToolDefault(
        (("lr_scheduler_type", "constant"),),
        ("lr_scheduler_type",),
        lambda config, recipe: not config.warmup_steps,
    ),
    ToolDefault(
        (("lr_scheduler_type", "cosine"),),
        ("lr_scheduler_type",),
        lambda config, recipe: bool(config.warmup_steps),
    ),
    ToolDefault((("weight_decay", 0.01),), ("weight_decay",)),  # torch.optim.AdamW's
    ToolDefault((("max_length", None),), ("max_length",)),  # the tokenizer's max_seq_len: none
    ToolDefault((("lora_alpha", 16),), ("lora_alpha",), _lora),  # its lora_* builders'
)

# TRL 1.16's DPOConfig / TrainingArguments: the rest (learning rate, schedule, warmup, beta,
# lengths, loss, betas, decay, clipping, seed) are directpo's defaults too; its
# gradient_checkpointing (on) changes memory, not the result
TRL_DEFAULTS = (
    ToolDefault((("num_train_epochs", 3),), ("num_train_epochs", "max_steps")),
    ToolDefault((("bf16", True),), ("bf16", "fp16", "dtype")),
)

TOOL_DEFAULTS = {OPENRLHF: OPENRLHF_DEFAULTS, TORCHTUNE: TORCHTUNE_DEFAULTS, TRL: TRL_DEFAULTS}


def tool_of(keys: Iterable[str]) -> str | None:
    """The tool whose names ``keys`` (as the sources wrote them) use: OpenRLHF's or
    torchtune's (foreign_names), else TRL's (trl_table's, and TRL's options directpo keeps);
    None: directpo's own names."""
    from directpo.config import DPOConfig
    from directpo.foreign_names import REFUSED, RENAMED
    from directpo.trl_table import ALIASES, NO_EFFECT

    keys = set(keys)
    foreign = keys & (set(RENAMED) | set(REFUSED))
    if foreign - TORCHTUNE_NAMES - NOT_OPENRLHF:
        return OPENRLHF
    if foreign & TORCHTUNE_NAMES:
        return TORCHTUNE
    # a name TRL shares with directpo (padding_free, in NO_EFFECT for TRL's meaning) is
    # directpo's own: a plain recipe writing it is told no TRL defaults
    ours = {field.name for field in dataclasses.fields(DPOConfig)} - TRL_NAMES
    if keys & (set(ALIASES) | set(NO_EFFECT) | TRL_NAMES) - ours:
        return TRL
    return None


def record_tool(config: Any, keys: Collection[str], options_set: Collection[str]) -> None:
    """Record on ``config`` the tool whose names ``keys`` use and the options its sources
    set (``options_set``, by directpo's names), read by ``foreign_defaults_note``."""
    if tool := tool_of(keys):
        recorded = Recorded(tool, frozenset(keys), frozenset(options_set))
        object.__setattr__(config, "_foreign_tool", recorded)


def foreign_defaults_note(config: Any) -> str | None:
    """The line of the recorded tool's defaults that differ from directpo's where its sources
    left the option out (None: no tool, or every such option set)."""
    recipe = config.__dict__.get("_foreign_tool")
    if not recipe:
        return None
    settings: list[tuple[str, Any]] = []
    for default in TOOL_DEFAULTS[recipe.tool]:
        chosen = any(name in recipe.options_set for name in default.chosen)
        if chosen or not default.applies(config, recipe):
            continue
        for name, value in default.settings:
            value = value(config) if callable(value) else value
            if getattr(config, name) != value:
                settings.append((name, value))
    if not settings:
        return None
    ours = ", ".join(f"{name} {spell_value(getattr(config, name))}" for name, _ in settings)
    return (
        f"{recipe.tool}'s defaults differ from directpo's for options left out (here {ours}): "
        f"{spell_setting(*settings)} for {recipe.tool}'s training"
    )
