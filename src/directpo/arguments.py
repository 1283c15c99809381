"""What ``train()`` is given, checked before anything loads: the config built again (a notebook
sets attributes after building it), a ``peft_config`` from Python turned into the lora_* options
that express it (so that the run's config.yaml reruns the same training)."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from typing import Any

from directpo.adapters import peft_config_refusal
from directpo.callers import (
    Advice,
    Caller,
    Entry,
    Spelling,
    advice_text,
    caller,
    keeping_sources,
    options_written_by,
    speaking_as,
    spell_setting,
)
from directpo.config import DPOConfig
from directpo.errors import ConfigError, ConfigErrors, respelled
from directpo.lora_options import lora_options_of
from directpo.option_loading import names_yaml
from directpo.option_paths import refuse_moved_or_copied_record
from directpo.options import replaced
from directpo.trl_compat import ALIASES, reward_model_named
from directpo.trl_table import QUANTIZATION_4BIT_OPTIONS, QUANTIZATION_OPTIONS


def checked_arguments(
    config: DPOConfig, peft_config: Any, echo: Callable[[str], None]
) -> tuple[DPOConfig, Any]:
    """``config`` checked again as a new object: a notebook sets attributes after building it
    (``config.bf16 = True``), and the checks and TRL translations ran only when it was built.
    A ``peft_config`` that lora_* options can express becomes those options, so that the run's
    config.yaml reruns the same training (else it would record ``lora_r: 0``)."""
    if not isinstance(config, DPOConfig):
        kind = f"{type(config).__module__}.{type(config).__qualname__}"
        raise TypeError(
            f"train() takes a directpo.DPOConfig, got {kind} (TRL's DPOConfig or "
            "TrainingArguments, or a dict of options, are ported too); TRL's option names work "
            "there: DPOConfig(bf16=True, ...), or load_config('trl_config.yaml')"
        )
    if peft_config is not None and not hasattr(peft_config, "peft_type"):
        raise TypeError(
            "peft_config must be a PEFT config object (e.g. peft.LoraConfig(r=16)), got "
            f"{type(peft_config).__name__}"
        )
    if peft_config is not None and (refused := peft_config_refusal(peft_config)):
        raise ConfigError(refused)  # before any model loads (it came after the model's load)
    # an option a flag set beside a recipe is said as a flag (the recipe's 'set lora_r: 16' was
    # one the flag --lora_r 0 overrode), and peft_config is train()'s argument, no command's
    _adapters_asked(config, peft_config, config.__dict__.get("_written_by") or {})
    if peft_config is None:  # (whose each option is, kept for the checks after it: preflight's)
        return keeping_sources(config, rebuilt_config(config)), None
    from directpo.model_locations import is_adapter_folder

    if is_adapter_folder(config.model_name_or_path):  # its lora_* then said "remove lora_r",
        # which was not given; another method's config met an AttributeError deep in the load
        raise ConfigError(
            f"model_name_or_path {config.model_name_or_path} is an adapter folder: training "
            "continues that adapter as it was saved; remove peft_config (or give the base "
            "model as model_name_or_path to train new adapters)"
        )
    if config.lora_r and not getattr(config, "_rank_of_use_peft", False):
        raise ConfigError("peft_config and lora_r are both given: use one of them")
    # use_peft: true turns PEFT on, the peft_config says which (TRL's DPOTrainer(peft_config=
    # get_peft_config(model_args))): its default rank 16 stood beside it and was refused
    unset = {"lora_r": None, "use_peft": None}
    options = lora_options_of(peft_config)
    if options is None:
        echo(
            f"peft_config: a {type(peft_config).__name__} that no lora_* option expresses; "
            "config.yaml records the run without it (rerunning that file alone trains no "
            "adapters): the adapters' own description is the output's adapter_config.json"
        )
        # a copy: peft fills the one it is given for this model (target_modules, the base's
        # path), and the caller's object, reused for another model, then named this one's layers
        return keeping_sources(config, rebuilt_config(config, **unset)), copy.deepcopy(peft_config)
    return keeping_sources(config, rebuilt_config(config, **{**unset, **options})), None


def _adapters_asked(config: DPOConfig, peft_config: Any, written: dict[str, Spelling]) -> None:
    """Refuses quantized weights or merge_lora without adapters (lora_r, or a peft_config).
    ``written``: whose each option of a file loaded with overrides is (load_options')."""
    # (a Python call's other way to adapters; a command line has none)
    or_peft = " (or pass train(peft_config=...))" if caller().spelling is Spelling.PYTHON else ""
    # an option the overrides set in their words (the fix that takes over the file's key); the
    # file's in the caller's, as everything after the load
    overrides = {key: said for key, said in written.items() if said is not Spelling.RECIPE}

    def rank_fix(asked_by: str) -> str:
        # a lora_r no source set (its default) in the words of the option that asked for
        # adapters, as the load says such a line: 'directpo train r.yaml --merge_lora' was told
        # the recipe's 'set lora_r: 16' (a key it lacks), as --lora_target_modules q_proj
        # beside it is told 'give --lora_r 16'
        source = overrides.get("lora_r" if "lora_r" in written else asked_by)
        with options_written_by({**overrides, "lora_r": source} if source else overrides):
            return spell_setting(("lora_r", 16)) + or_peft

    quantized = "load_in_4bit" if config.load_in_4bit else "load_in_8bit"
    if (config.load_in_4bit or config.load_in_8bit) and not config.lora_r and peft_config is None:
        # TRL: "cannot fine-tune purely quantized models"; a peft_config from Python is an adapter
        raise ConfigError(
            f"{quantized} needs adapters: quantized weights do not train; {rank_fix(quantized)}"
        )
    # an adapter folder as model_name_or_path continues that adapter: it is merged like a new one
    continuing = bool(config.model_name_or_path) and os.path.isfile(
        os.path.join(config.model_name_or_path, "adapter_config.json")
    )
    if config.merge_lora and not (config.lora_r or peft_config is not None or continuing):
        raise ConfigError(f"merge_lora is set but lora_r is 0 (no LoRA); {rank_fix('merge_lora')}")


# TRL's DPOTrainer(...) arguments that name a model or tokenizer: the option that loads it
TRAINER_LOCATIONS = {
    "model": "model_name_or_path",
    "ref_model": "ref_model_name_or_path",
    "processing_class": "tokenizer_name_or_path",
    "tokenizer": "tokenizer_name_or_path",
}
# TRL's DPOTrainer(...) arguments directpo has no counterpart for, and what does their job here
TRAINER_ONLY: dict[str, Advice] = {  # (a train() keyword's: pass optim=..., said when refused)
    "callbacks": "directpo takes no callbacks: report_to logs each row to trackers, and the "
    "result's metrics hold every logged row",
    "optimizers": lambda: (
        f"{spell_setting('optim', 'learning_rate', 'lr_scheduler_type')} (and their _kwargs) "
        "instead"
    ),
    # (not optim_args, which is refused: it named a second option to remove)
    "optimizer_cls_and_kwargs": lambda: (
        spell_setting(
            "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", last=" and "
        )
        + " instead"
    ),
    "data_collator": "directpo builds its own batches (prefix sharing, packing)",
    "compute_metrics": "held-out metrics are DPO's (eval_file); eval_generate with reward_fn "
    "scores sampled completions",
    "preprocess_logits_for_metrics": "held-out metrics are DPO's (eval_file)",
    "model_init": lambda: spell_setting("model_name_or_path"),
}


def trainer_arguments(
    config: DPOConfig | None, options: dict[str, Any]
) -> tuple[DPOConfig | None, dict[str, Any]]:
    """TRL's ``DPOTrainer(model=..., args=..., processing_class=...)`` keywords given to
    ``train()``: ``args`` is the config, a model or tokenizer named by a string its option; a
    loaded model or tokenizer object, and arguments with no counterpart, are refused in one
    line saying what to give instead (they were "unknown option 'args'", or a did-you-mean)."""
    options = dict(options)
    problems: list[str] = []
    if "args" in options:
        args = options.pop("args")
        if config is not None:
            problems.append("train(config, args=...): give the config once")
        config = args
    taken_from: dict[str, str] = {}  # option -> the keyword that gave it
    for name, option in TRAINER_LOCATIONS.items():
        if name not in options:
            continue
        given = options.pop(name)
        if given is None:  # TRL's default (ref_model=None: the policy's start)
            continue
        if isinstance(given, str | os.PathLike):
            # train(model='run/', model_name_or_path='m') trained run/ without a word (the
            # other keyword silently replaced), as processing_class= beside tokenizer= did
            location, before = os.fspath(given), options.get(option)
            if before is not None and before != location:
                other = taken_from.get(option, option)
                problems.append(
                    f"{name}={location!r} and {other}={before!r} are both given, naming two "
                    f"{'models' if 'model' in option else 'tokenizers'}: pass {option} alone"
                )
            options[option], taken_from[option] = location, name
            continue
        origin = getattr(given, "name_or_path", "") or ""
        unchanged = f" ({option}={origin!r} if it is that folder's, unchanged)" if origin else ""
        problems.append(
            f"{name}: train() loads its models and tokenizer from folders or hub ids (in the "
            f"precision and layout it trains); save this {type(given).__name__} "
            f"(.save_pretrained(DIR)) and give {option}=DIR{unchanged}"
        )
    if "reward_funcs" in options:  # OnlineDPOTrainer(reward_funcs=...): reward_fn's values
        # (or a reward model's folder / hub id, as TRL's takes one: it was set as reward_fn,
        # refused as "reward_fn is set but ... nothing is sampled" or as no function)
        model = reward_model_named(options["reward_funcs"])
        taker = "reward_model_name_or_path" if model else "reward_fn"
        if taker in options:
            problems.append(f"reward_funcs and {taker} are both given: use {taker}")
        options[taker] = model or options.pop("reward_funcs")
        options.pop("reward_funcs", None)
    if "quantization_config" in options:
        ported = quantization_options(options.pop("quantization_config"))
        if isinstance(ported, str):
            problems.append(ported)
        else:
            options.update(ported)
    for name in sorted(TRAINER_ONLY.keys() & options.keys()):
        # TRL's defaults (callbacks=None, optimizers=(None, None)) ask for nothing
        if _asks_nothing(options.pop(name)):
            continue
        problems.append(f"{name} (TRL's DPOTrainer argument): {advice_text(TRAINER_ONLY[name])}")
    if problems:
        raise ConfigErrors("train()", problems)
    return config, options


def _asks_nothing(value: Any) -> bool:
    """None, or a container of Nones only (TRL's ``optimizers=(None, None)``, ``callbacks=[]``)."""
    if isinstance(value, list | tuple):
        return all(_asks_nothing(item) for item in value)
    return value is None


PORTED_AS = "load_in_4bit / load_in_8bit and bnb_4bit_*"


def quantization_options(given: Any) -> dict[str, Any] | str:
    """TRL's ``DPOTrainer(quantization_config=BitsAndBytesConfig(...))`` as the options that
    load the base so (its own values: transformers' defaults, fp4 and float32 compute, where
    it leaves them), or the line saying why it cannot be (it was "unknown option")."""
    if given is None:
        return {}
    name = "quantization_config (TRL's DPOTrainer argument)"
    if type(given).__name__ != "BitsAndBytesConfig" or not hasattr(given, "to_dict"):
        return f"{name}: only a BitsAndBytesConfig ports (as {PORTED_AS})"
    fields, defaults = given.to_dict(), type(given)().to_dict()
    named = {"quant_method", *QUANTIZATION_OPTIONS, *QUANTIZATION_4BIT_OPTIONS}
    others = sorted(
        key
        for key, value in fields.items()
        if key not in named and not key.startswith("_") and value != defaults.get(key)
    )
    if others:
        return f"{name}: no option sets its {', '.join(others)} ({PORTED_AS} are ported)"
    options = {key: fields[key] for key in QUANTIZATION_OPTIONS}
    if fields["load_in_4bit"]:  # (the bnb_4bit_* options are refused without it)
        options.update({key: fields[key] for key in QUANTIZATION_4BIT_OPTIONS})
        if options["bnb_4bit_quant_storage"] == "uint8":  # the option's null
            options["bnb_4bit_quant_storage"] = None
    return options


def config_with(config: DPOConfig | None, options: dict[str, Any]) -> DPOConfig | None:
    """``train(config, beta=0.2)`` or ``train(model_name_or_path=..., ...)``: ``options`` as
    DPOConfig takes them (TRL's names too; a misspelt one refused with the closest real one),
    over ``config``'s values. They were a TypeError naming no option ("unexpected keyword
    argument 'lerning_rate'")."""
    config, options = trainer_arguments(config, options)
    if config is None:  # (train() alone, or with rows only: the missing options are said)
        return DPOConfig(**options)
    if isinstance(config, str | os.PathLike):
        return config_file(os.fspath(config), options)
    ported = ported_config(config, options)
    if ported is not config:  # (built with the options)
        return ported
    if not options or not isinstance(config, DPOConfig):
        return config
    return rebuilt_config(config, **options)


def config_file(path: str, options: dict[str, Any]) -> DPOConfig:
    """``train("recipe.yaml", beta=0.2)``: the file as ``directpo train recipe.yaml --beta 0.2``
    reads it (load_config: TRL's names, ``env:``, interpolations; the options over its keys).
    It was a TypeError ("takes a directpo.DPOConfig, got builtins.str"); a string that names no
    file, such as a model folder (TRL's ``DPOTrainer("model-id", ...)`` order), is said so."""
    if os.path.isfile(path) or names_yaml(path):
        built = _recipe_config(path, options)
        refuse_moved_or_copied_record(path, built, options)  # (in the keywords' words)
        return built
    kind = "a folder" if os.path.isdir(path) else "no file"
    raise ConfigError(
        f"train({path!r}): the first argument is the config (a DPOConfig, a YAML file or a "
        f"dict of options), and {path!r} is {kind}; a model is "
        f"train(model_name_or_path={path!r}, ...), rows train_dataset=..."
    )


def _recipe_config(path: str, options: dict[str, Any]) -> DPOConfig:
    """The recipe ``path`` with train()'s keyword ``options`` over it, built once. A value the
    file holds is refused in the file's words (``eval_dtype: bfloat16 under dtype: float32``,
    ``set dtype: bfloat16``), as ``directpo train recipe.yaml`` says it: it was said as
    keywords (``eval_dtype='bfloat16'``, ``pass dtype='bfloat16'``) to a caller who wrote none.
    A keyword is said as Python writes it (``lora_r=0``; ``pass lora_r=16``, the fix that takes
    over the file's key), and where lines of both sources come, each is headed by its own
    (``recipe.yaml:`` / ``train():``): option_loading.load_options says each option in its
    source's words. Everything after the options are read (the output folder's, the data's,
    the model's) is in Python's words, where a keyword to train() is the caller's fix."""
    from directpo.config import load_config

    with speaking_as(Caller(Spelling.RECIPE, Entry.TRAIN, path)):
        return load_config(path, options, overrides_from="train()")


def ported_config(config: Any, options: dict[str, Any] | None = None) -> Any:
    """TRL's ``DPOConfig`` (or any ``TrainingArguments``) given as ``train(args=...)`` or as the
    config, ported as ``DPOConfig(**config.to_dict(), **options)``: its every field, TRL's
    defaults written out, with TRL's meaning (a TRL notebook's ``DPOTrainer(args=
    training_args)`` cell was a TypeError saying to write that call); a dict of options
    likewise. ``options`` (train()'s keywords) are applied before the checks: checked alone,
    an OnlineDPOConfig's sampling options were refused as "online is off" beside
    ``online=True``. TRL's ``OnlineDPOConfig`` means ``online: true`` (its sampling defaults,
    max_new_tokens 64 and temperature 0.9, are always set). Anything else is returned as it
    is (checked_arguments says what train() takes)."""
    fields = ported_fields(config)
    if fields is None:
        return config
    return DPOConfig(**_over(fields, options or {}))


def ported_fields(config: Any) -> dict[str, Any] | None:
    """The fields a ported config sets (``ported_config``'s: TRL's config, any
    ``TrainingArguments``, a dict), ``online: true`` for an ``OnlineDPOConfig``; None for a
    DPOConfig, None or anything else."""
    if isinstance(config, Mapping):
        return dict(config)
    if isinstance(config, DPOConfig) or not _is_training_arguments(config):
        return None
    fields = config.to_dict()
    if type(config).__name__ == "OnlineDPOConfig":
        fields["online"] = True
    return fields


def _over(fields: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over a ported config's ``fields``: an option given by one name replaces the
    field of the same meaning under the other (TRL's ``max_new_tokens`` written out by its
    defaults and directpo's ``generate_max_new_tokens=8`` given as a keyword)."""
    same = {_canonical(key) for key in options}
    kept = {key: value for key, value in fields.items() if _canonical(key) not in same}
    return {**kept, **options}


def _canonical(key: str) -> str:
    return ALIASES.get(key, key)


def _is_training_arguments(config: Any) -> bool:
    """transformers' ``TrainingArguments`` or a subclass (TRL's configs), without importing
    transformers here (a plain object with a to_dict is not one)."""
    return any(
        kind.__module__.startswith("transformers") and kind.__name__ == "TrainingArguments"
        for kind in type(config).__mro__
    )


def rebuilt_config(config: DPOConfig, **options: Any) -> DPOConfig:
    """``config`` built again (its values checked), a refused value named as it was set: a TRL
    alias set after construction (``config.max_new_tokens = 0``) by that alias."""
    try:
        rebuilt = replaced(config, **options)
    except ConfigError as error:
        raise respelled(error, config.__dict__.get("_spelled", {})) from None
    if "_foreign_tool" in config.__dict__:  # (the tool a recipe's names were: start notes)
        object.__setattr__(rebuilt, "_foreign_tool", config.__dict__["_foreign_tool"])
    return rebuilt


def replaced_sources(config: DPOConfig, train_dataset: Any, eval_dataset: Any) -> list[str]:
    """The notes of data options that ``train_dataset`` / ``eval_dataset`` replace: the rows
    given from Python are trained on, and a train_file (dataset_name) or eval_file set too,
    by a config file or a TRL recipe, was passed over without a word."""
    notes = []
    if train_dataset is not None:
        for key in ("train_file", "dataset_name"):
            if getattr(config, key):
                notes.append(f"note: train_dataset replaces {key} ({getattr(config, key)})")
    if eval_dataset is not None and config.eval_file:
        notes.append(f"note: eval_dataset replaces eval_file ({config.eval_file})")
    return notes
