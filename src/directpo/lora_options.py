"""directpo's lora_* options as a peft ``LoraConfig``, and back: the options that build a
given ``LoraConfig`` exactly (config.yaml records a ``train(peft_config=...)`` run by them), or
None where no option spells it."""

from __future__ import annotations

from typing import Any

from directpo.model_locations import is_regex


def peft_targets(target_modules: list[str] | None) -> str | list[str] | None:
    """LoraConfig's target_modules of lora_target_modules: all-linear or a regex given alone
    as peft's string, names as a list (None: peft's choice)."""
    if target_modules and len(target_modules) == 1:
        (only,) = target_modules
        if only == "all-linear" or is_regex(only):
            return only
    return target_modules


def lora_config(
    r: int,
    alpha: int,
    dropout: float,
    target_modules: list[str] | None,
    *,
    use_dora: bool = False,
    use_rslora: bool = False,
    modules_to_save: list[str] | None = None,
    target_parameters: list[str] | None = None,
) -> Any:
    """The peft ``LoraConfig`` of directpo's lora_* options (``target_modules`` None: peft's
    modules for the architecture, as TRL's default)."""
    from peft import LoraConfig

    targets = peft_targets(target_modules)
    extra = {"target_parameters": target_parameters} if target_parameters else {}
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        use_dora=use_dora,
        use_rslora=use_rslora,
        modules_to_save=modules_to_save,
        task_type="CAUSAL_LM",
        **extra,
    )


# directpo's options that describe LoRA adapters (lora_config_from reads them)
LORA_OPTIONS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "use_dora", "use_rslora",
    "lora_modules_to_save", "lora_target_parameters",
)  # fmt: skip


def lora_config_from(options: dict[str, Any]) -> Any:
    """The peft ``LoraConfig`` of the ``LORA_OPTIONS`` in ``options``."""
    return lora_config(
        options["lora_r"],
        options["lora_alpha"],
        options["lora_dropout"],
        options["lora_target_modules"],
        use_dora=options["use_dora"],
        use_rslora=options["use_rslora"],
        modules_to_save=options["lora_modules_to_save"],
        target_parameters=options["lora_target_parameters"],
    )


# LoraConfig fields that say where or how the adapters are described, not what they train
_LORA_BOOKKEEPING = ("task_type", "base_model_name_or_path", "revision", "inference_mode")


def lora_options_of(peft_config: Any) -> dict[str, Any] | None:
    """directpo's lora_* options that build exactly ``peft_config``, or None when it is not a
    LoraConfig those options can express (IA3, a LoRA with rank patterns, PiSSA init, ...)."""
    if type(peft_config).__name__ != "LoraConfig":
        return None
    # None: peft's modules for the architecture, which lora_target_modules: null asks for too
    # (TRL's examples' LoraConfig(r=16, lora_alpha=32, task_type="CAUSAL_LM") was recorded as
    # no adapters: its config.yaml reran a full fine-tune)
    targets = peft_config.target_modules
    if targets is not None and not targets:
        return None  # (an empty list: peft's own refusal, when it loads)
    alpha = peft_config.lora_alpha
    options: dict[str, Any] = {
        "lora_r": peft_config.r,
        "lora_alpha": int(alpha) if isinstance(alpha, float) and alpha.is_integer() else alpha,
        "lora_dropout": peft_config.lora_dropout,
        "lora_target_modules": _targets_option(targets),
        "use_dora": peft_config.use_dora,
        "use_rslora": peft_config.use_rslora,
        "lora_modules_to_save": sorted(peft_config.modules_to_save or []) or None,
        "lora_target_parameters": sorted(peft_config.target_parameters or []) or None,
    }
    if not isinstance(options["lora_alpha"], int):
        return None  # no option spells a fractional alpha
    # a regex of targets (peft's docs' target_modules=r".*\.(q|v)_proj") is lora_target_modules'
    # one regex (peft_targets), as the rebuild below confirms: it was taken for one no option
    # spells, and config.yaml recorded the run without adapters; a plain name as peft's string
    # (matched against whole module names) rebuilds as a list, unlike it, and stays refused
    rebuilt = lora_config_from(options)

    def described(config: Any) -> dict[str, Any]:
        fields = config.to_dict()
        for key in _LORA_BOOKKEEPING:
            fields.pop(key, None)
        for key in ("modules_to_save", "target_parameters"):
            fields[key] = sorted(fields[key] or [])
        return fields

    return options if described(rebuilt) == described(peft_config) else None


def _targets_option(targets: str | list[str] | set[str] | None) -> list[str] | None:
    """lora_target_modules of a LoraConfig's target_modules."""
    if targets is None:
        return None
    return [targets] if isinstance(targets, str) else sorted(targets)
