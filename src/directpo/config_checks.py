"""The value checks of ``DPOConfig`` (config.py holds the options, their defaults and help).

Run when a config is built (``DPOConfig._check_values``): every impossible value, option that
would silently do nothing, or combination that cannot run is refused before any model loads.
Refusals go through ``Options._require`` / ``_refuse``, which collect them so that one pass
reports every wrong value at once; a check that reads an already refused value is skipped
(``_valid``), so no line blames another option. The loss options' checks are
``loss_checks``'; the data options', ``data_checks``'; the generation options',
``sampling_checks``'.
"""

from __future__ import annotations

import importlib.util
import os

from directpo.best import default_metric_unlogged
from directpo.callers import (
    spell_entry,
    spell_given,
    spell_option,
    spell_pair,
    spell_setting,
    spell_unset,
    spell_value,
)
from directpo.config import (
    ATTN_IMPLEMENTATIONS,
    DISTRIBUTED_MODES,
    DTYPES,
    EVAL_STRATEGIES,
    LIGER_LOSS_KERNELS,
    LOG_LEVELS,
    LR_SCHEDULERS,
    OPTIMIZERS,
    SAVE_DTYPES,
    SAVE_STRATEGIES,
    SCHEDULERS_NEEDING_KWARGS,
    TRACKER_MODULES,
    TRACKERS,
    DPOConfig,
)
from directpo.data_checks import check_columns, check_splits_of_files, check_streaming
from directpo.errors import ConfigError
from directpo.hub import HUB_ID
from directpo.loss_checks import check_loss_modifiers, check_losses, check_reference_sync
from directpo.mixture_entries import check_mixture
from directpo.model_locations import ALL_LINEAR, is_regex, lora_off_reason, regex_problem
from directpo.option_hints import meant_words
from directpo.option_paths import expand_home
from directpo.option_values import as_yaml, value_shown, words_shown
from directpo.options import reject_if_set
from directpo.sampling_checks import check_generation
from directpo.trl_compat import refuse_loading_options
from directpo.trl_table import (
    OTHER_TRACKERS,
    is_eight_bit,
    low_bit_refusal,
    other_optimizer_refusal,
)


def check_values(config: DPOConfig) -> None:
    """Refuses every impossible value and combination, one concern after another. The
    order is the order of the lines a user reads (the first is the only one when one line
    is shown): a step moved changes which problem of a config with several is named first."""
    expand_home(config)
    check_precision(config)
    config._apply_trl_spellings()
    _check_optimizer_choice(config)
    check_losses(config, config._require)
    _check_optimizer_values(config)
    _check_strategies(config)
    _check_steps(config)
    _check_lengths(config)
    _check_data_and_outputs(config)
    _check_tracking(config)
    check_generation(config, config._require)
    _check_processing(config)
    _check_engine(config)
    _check_lora(config)
    _check_quantization(config)
    check_loss_modifiers(config)
    _check_best_model(config)
    refuse_loading_options(config)  # (dtype, quantization_config in model_init_kwargs)
    _check_reference(config)


def _check_optimizer_choice(config: DPOConfig) -> None:
    """The optimizer and schedule named (transformers' 8-bit and other optimizers told
    apart from a misspelt name)."""
    one_of = config._one_of
    if is_eight_bit(config.optimizer):  # (transformers' name given as directpo's option)
        config._refuse("optimizer", low_bit_refusal("optimizer", config.optimizer))
    elif other := other_optimizer_refusal("optimizer", str(config.optimizer)):
        config._refuse("optimizer", other)  # (sgd, adafactor: told the three names alone)
    one_of("optimizer", OPTIMIZERS)
    one_of("lr_scheduler_type", LR_SCHEDULERS)


def _check_optimizer_values(config: DPOConfig) -> None:
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


def _check_strategies(config: DPOConfig) -> None:
    """The evaluation and saving strategies and what they switch off, and the run's guards
    (non-finite steps, seed, cache emptying)."""
    require, one_of = config._require, config._one_of
    one_of("eval_strategy", EVAL_STRATEGIES)
    one_of("save_strategy", SAVE_STRATEGIES)
    require(config.max_nonfinite_steps >= 0, "max_nonfinite_steps", ">= 0")
    # numpy's legacy seeding (transformers' set_seed) takes [0, 2**32): a traceback otherwise
    seeds = f"{spell_unset('seed')} or in [0, 2**32)"  # (None to a keyword, YAML's null)
    require(config.seed is None or 0 <= config.seed < 2**32, "seed", seeds)
    steps, unset = config.torch_empty_cache_steps, spell_unset("torch_empty_cache_steps")
    require(steps is None or steps >= 1, "torch_empty_cache_steps", f"{unset} or >= 1")
    require(
        config.eval_delay >= 0, "eval_delay", ">= 0 (steps, or epochs with eval_strategy epoch)"
    )
    if config.eval_strategy == "no":
        reject_if_set(config, ("eval_delay",), "eval_strategy is no (nothing is evaluated)")
    if config.save_strategy == "no" and not config.load_best_model_at_end:
        reject_if_set(
            config,
            ("save_only_model",),
            "save_strategy is no and load_best_model_at_end is off: the only checkpoint is a "
            "signal's, which stays complete",
        )


def _check_steps(config: DPOConfig) -> None:
    """Batch sizes, the logging / eval / save cadences, clipping and the run's length."""
    require = config._require
    for key in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
    ):
        require(getattr(config, key) >= 1, key, ">= 1")
    # OpenRLHF's -1 (its scripts' default): never save / evaluate at each epoch's end, the
    # strategy told in the caller's words (it was the recipe's 'save_strategy: no' to a flag
    # or a Python caller, and the int -1 shown as the float it is read as, 'got -1.0')
    minus_one = {
        "save_steps": ("never saves", ("save_strategy", "no")),
        "eval_steps": ("evaluates at each epoch's end", ("eval_strategy", "epoch")),
    }
    for key in ("logging_steps", "eval_steps", "save_steps"):  # steps, or a fraction
        value = getattr(config, key)
        low = "> 0" if key == "logging_steps" else ">= 0"
        if not (
            (value > 0 if key == "logging_steps" else value >= 0)
            and (value < 1 or float(value).is_integer())
        ):
            instead = ""
            if value == -1 and key in minus_one:
                meaning, setting = minus_one[key]
                instead = f"; OpenRLHF's -1 {meaning}: {spell_setting(setting)}"
            config._refuse(
                key,
                f"{key} must be a whole number of steps {low}, or a fraction of the total steps "
                f"in (0, 1) (got {config._shown(key)}){instead}",  # (-1 as written, not -1.0)
            )
        if value >= 1 or value == 0:
            setattr(config, key, int(value))
    require(config.max_grad_norm >= 0, "max_grad_norm", ">= 0 (0 disables clipping)")
    require(config.num_train_epochs > 0, "num_train_epochs", "> 0")
    if config.max_steps == 0:
        # (was refused 'must be -1 or >= 1'): TrainingArguments' help and transformers 4 read
        # only > 0 as a count and 0 as num_train_epochs' run; transformers 5.24 trains one
        # step (epoch_based is max_steps < 0), which no recipe means: 0 is -1, recorded so
        config.max_steps = -1
    require(config.max_steps >= -1, "max_steps", "-1 or 0 (num_train_epochs decides) or >= 1")
    require(
        config.max_eval_samples is None or config.max_eval_samples >= 1,
        "max_eval_samples",
        "null (every pair) or >= 1",
    )


def _check_lengths(config: DPOConfig) -> None:
    """The token lengths: a prompt below max_length, so that completions keep a token."""
    require, unset = config._require, spell_unset("max_length")
    require(config.max_length is None or config.max_length >= 2, "max_length", f"{unset} or >= 2")
    if config.max_prompt_length is not None:
        limit = config.max_length if config._valid("max_length") else None  # None: no limit
        below = "" if limit is None else f" and < max_length ({limit})"
        require(
            config.max_prompt_length >= 1 and (limit is None or config.max_prompt_length < limit),
            "max_prompt_length",
            f">= 1{below}, so completions keep a token",
        )
    completion = config.max_completion_length
    require(
        completion is None or completion >= 1,
        "max_completion_length",
        f"{spell_unset('max_completion_length')} or >= 1",
    )


def _check_data_and_outputs(config: DPOConfig) -> None:
    """Checkpoints kept, the columns and output folder, and where the pairs come from
    (mixture, streaming, splits of files, online rounds)."""
    require = config._require
    require(
        config.save_total_limit is None or config.save_total_limit >= 1, "save_total_limit", ">= 1"
    )
    for key in ("prompt_column", "chosen_column", "rejected_column", "output_dir"):
        require(bool(getattr(config, key).strip()), key, "a non-empty string")
    check_columns(config)
    if config.dataset_mixture is not None:
        try:
            check_mixture(config)
        except ConfigError as error:  # (each of its entries' problems a line)
            for line in getattr(error, "problems", None) or [str(error)]:
                config._refuse("dataset_mixture", line)
    check_streaming(config)
    check_splits_of_files(config)
    if config.dataloader_drop_last and config.online:
        config._refuse(
            "dataloader_drop_last",
            f"{spell_pair(('dataloader_drop_last', True), 'with', ('online', True))}: a round "
            "trains every pair it found (rounds find more or fewer); "
            f"{spell_setting(('dataloader_drop_last', False))}",
        )


def _check_tracking(config: DPOConfig) -> None:
    """Logging: WANDB_DISABLED, log_level, the Hub id, the trackers of report_to and
    trackio's project."""
    require, one_of = config._require, config._one_of
    check_wandb_disabled(config)
    one_of("log_level", LOG_LEVELS)
    hub_id = config.hub_model_id is None or bool(HUB_ID.fullmatch(str(config.hub_model_id)))
    require(hub_id, "hub_model_id", "a Hub repository id, user/name")
    if (words := getattr(config, "_words", None)) is not None:  # while constructed
        # (report_to: null, or an empty value, was 'must be a list, got None', no word named)
        words["report_to"] = ("one of", (*TRACKERS, "all"))
    unknown = [t for t in config.report_to if t not in TRACKERS]
    off = [t for t in unknown if str(t).lower() in ("no", "off", "false", "disabled")]
    if off:  # (the word other options take for nothing; transformers refuses it here too)
        written = spell_option("report_to", off[0], in_recipe=False)
        config._refuse("report_to", f"{written} is written {spell_value('none')} (no tracker)")
    foreign = [t for t in unknown if str(t).lower() in OTHER_TRACKERS]
    if foreign and not off:  # (transformers' own tracker names: told the list alone before)
        # each named ([comet_ml, neptune] said comet_ml alone: dropped, neptune came next run)
        named = [value_shown(t) for t in foreign]
        trackers = (
            f"{', '.join(named[:-1])} and {named[-1]} are transformers trackers"
            if named[1:]
            else f"{named[0]} is a transformers tracker"
        )
        config._refuse(
            "report_to",
            f"{spell_given('report_to', config._given_value('report_to'))}: {trackers} "
            f"directpo does not log to; it logs to {', '.join(TRACKERS[:-1])} (or "
            f"{spell_value('none')} for no tracker)",
        )
    elif unknown and not off:  # (report_to: wand or WandB: told the words alone)
        config._refuse(
            "report_to",
            f"report_to must be a list of {', '.join(TRACKERS)} (got "
            f"{words_shown(config._given_value('report_to'), config.report_to)})"
            f"{meant_words(config.report_to, TRACKERS)}",
        )
    if "none" in config.report_to and len(config.report_to) > 1:
        config._refuse(
            "report_to",
            f"{spell_given('report_to', config._given_value('report_to'))}: "
            f"{spell_value('none')} cannot be combined with other trackers",
        )
    if config.project != "huggingface" and "trackio" not in config.report_to and not unknown:
        # transformers' project is trackio's alone: a wandb user's project went nowhere
        config._refuse(
            "project",
            "project names trackio's project, and report_to has no trackio: add it to "
            "report_to (wandb's project is WANDB_PROJECT in the environment)",
        )


def _check_processing(config: DPOConfig) -> None:
    """Tokenizing workers, the tokenized cache, log-prob chunks and packing sizes."""
    require = config._require
    procs = config.dataset_num_proc
    require(procs is None or procs >= 1, "dataset_num_proc", ">= 1 (null: one process)")
    require(
        config.cache_tokenized_max_gb >= 0, "cache_tokenized_max_gb", ">= 0 (0: the entries in use)"
    )
    require(config.logprob_chunk_tokens >= 0, "logprob_chunk_tokens", ">= 0 (0: off)")
    require(config.pack_max_tokens >= 0, "pack_max_tokens", ">= 0 (0: the longest sequence)")


def _check_engine(config: DPOConfig) -> None:
    """Attention, the distributed engine, padding-free packing, gradient checkpointing and
    Liger kernels."""
    require, one_of = config._require, config._one_of
    one_of("attn_implementation", ATTN_IMPLEMENTATIONS)
    one_of("distributed", DISTRIBUTED_MODES)
    require(config.ddp_timeout > 0, "ddp_timeout", "> 0 (seconds)")
    if config.distributed != "fsdp":
        reject_if_set(config, ("fsdp_offload",), "distributed is not fsdp")
    if not config.padding_free:
        reject_if_set(config, ("pack_max_tokens",), "padding_free is off")
    require(config.gradient_checkpointing_every >= 1, "gradient_checkpointing_every", ">= 1")
    if not config.use_liger_kernel:
        reject_if_set(config, ("liger_kernel_config",), "use_liger_kernel is off")
    for key in LIGER_LOSS_KERNELS:
        if (config.liger_kernel_config or {}).get(key):
            config._refuse(
                "liger_kernel_config",
                f"{spell_entry('liger_kernel_config', key)} must be {spell_value(False)} "
                "(Liger's loss kernels return a loss; directpo's head computes the completion "
                "tokens' log-probs itself)",
            )
    if not config.gradient_checkpointing:
        reject_if_set(config, ("gradient_checkpointing_every",), "gradient_checkpointing is off")


def _check_lora(config: DPOConfig) -> None:
    """LoRA's values, and its options refused without lora_r."""
    require = config._require
    require(config.lora_r is None or config.lora_r >= 0, "lora_r", ">= 0 (0: no LoRA)")
    require(config.lora_alpha >= 1, "lora_alpha", ">= 1")
    require(0 <= config.lora_dropout < 1, "lora_dropout", "in [0, 1)")
    require(
        config.lora_target_modules is None or bool(config.lora_target_modules),
        "lora_target_modules",
        "a non-empty list (or null: peft's choice for the architecture)",
    )
    targets = config.lora_target_modules or []
    require(  # (a regex is peft's one string: beside names it would be an item, matching none)
        len(targets) == 1 or not any(is_regex(target) for target in targets),
        "lora_target_modules",
        "module names, or one regex alone (peft matches it against each whole module name)",
    )
    unreadable = len(targets) == 1 and is_regex(targets[0]) and regex_problem(targets[0])
    if unreadable:  # (peft's re.error was a traceback, after the model had loaded)
        config._refuse(
            "lora_target_modules",
            f"lora_target_modules: {targets[0]} is no regex peft can read ({unreadable})",
        )
    require(  # (peft's word for every linear layer is its one string too: beside names it was
        # an item, a layer's name that matched none, refused only once the model had loaded)
        len(targets) == 1 or ALL_LINEAR not in targets,
        "lora_target_modules",
        "all-linear alone (peft's word for every linear layer), or module names",
    )
    # (in a list peft reads all-linear as written: all_linear or ALL-LINEAR was a layer's name,
    # refused once the model had loaded as matching none)
    for target in targets:
        if target != ALL_LINEAR and target.lower().replace("_", "-") == ALL_LINEAR:
            config._refuse(
                "lora_target_modules",
                f"lora_target_modules: {target} is no layer's name; did you mean all-linear "
                "(peft's word for every linear layer)?",
            )
    if not config.lora_r:
        # merge_lora without lora_r is checked by train(), which knows of a peft_config
        reject_if_set(
            config,
            (
                "lora_alpha",
                "lora_dropout",
                "lora_target_modules",
                "use_dora",
                "use_rslora",
                "lora_modules_to_save",
                "lora_target_parameters",
            ),
            lora_off_reason(config.model_name_or_path, config.use_peft),
        )


def _check_quantization(config: DPOConfig) -> None:
    """4-bit / 8-bit loading and bitsandbytes' 4-bit options."""
    if config.load_in_4bit and config.load_in_8bit:
        config._refuse("load_in_4bit", "load_in_4bit and load_in_8bit are both set: choose one")
    if not config.load_in_4bit:
        reject_if_set(
            config,
            (
                "bnb_4bit_quant_type",
                "bnb_4bit_use_double_quant",
                "bnb_4bit_compute_dtype",
                "bnb_4bit_quant_storage",
            ),
            "load_in_4bit is off",
        )
    config._one_of("bnb_4bit_quant_type", ("nf4", "fp4"))
    for key in ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage"):
        value = getattr(config, key)
        config._require(value is None or value in DTYPES, key, "null, float32 or bfloat16")


def _check_best_model(config: DPOConfig) -> None:
    """Early stopping and the best-model metric they track."""
    config._require(config.early_stopping_patience >= 0, "early_stopping_patience", ">= 0")
    config._require(config.early_stopping_threshold >= 0, "early_stopping_threshold", ">= 0")
    if not config.early_stopping_patience:
        reject_if_set(
            config, ("early_stopping_threshold",), "early_stopping_patience is 0 (never stops)"
        )
    tracked = config.load_best_model_at_end or config.early_stopping_patience
    if tracked and config.metric_for_best_model is None and isinstance(config.eval_file, dict):
        config._refuse("metric_for_best_model", default_metric_unlogged(config.eval_file))
    if not tracked:
        reject_if_set(
            config,
            ("metric_for_best_model", "greater_is_better"),
            "neither load_best_model_at_end nor early_stopping_patience is set",
        )


def _check_reference(config: DPOConfig) -> None:
    """The reference model's options, refused where no separate reference is loaded or
    none is used; precomputing its log-probs; its sync (TR-DPO)."""
    # whether a chosen loss uses a reference cannot be told from a refused loss_type
    known = config._valid("loss_type", "lora_r")
    own_base = config.own_reference
    if (
        known
        and config.ref_model_init_kwargs is not None
        and ((config.lora_r and own_base) or not config.needs_reference)
    ):
        config._refuse(
            "ref_model_init_kwargs",
            "ref_model_init_kwargs is set but no separate reference model is loaded ("
            + ("with LoRA the reference is the base with adapters off; a separate one is "
               "loaded with ref_model_name_or_path)" if config.needs_reference
               else "no chosen loss uses a reference)")
        )  # fmt: skip
    if known and not own_base and not config.needs_reference:
        config._refuse(  # (it was not loaded, without a word)
            "ref_model_name_or_path",
            "ref_model_name_or_path is set but no chosen loss uses a reference (loss_type: "
            f"{', '.join(config.loss_type)}), nor eval_generate's KL",
        )
    if known and config.precompute_ref_log_probs and not config.loss_needs_reference:
        config._refuse(
            "precompute_ref_log_probs",
            "precompute_ref_log_probs is set but no chosen loss uses a reference",
        )
    if not config.precompute_ref_log_probs:
        reject_if_set(config, ("precompute_ref_batch_size",), "precompute_ref_log_probs is false")
    elif config.precompute_ref_batch_size is not None:
        size = config.precompute_ref_batch_size
        config._require(
            isinstance(size, int) and size >= 1,
            "precompute_ref_batch_size",
            f"{spell_unset('precompute_ref_batch_size')} or >= 1",
        )
    check_reference_sync(config)


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


def check_wandb_disabled(config: DPOConfig) -> None:
    """``report_to: all`` as transformers took it (every tracker installed), and wandb with
    WANDB_DISABLED set (TRL users' way to turn it off; transformers 5 no longer reads it):
    left out of all, refused where named, instead of a run logged to wandb regardless."""
    disabled = os.environ.get("WANDB_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")
    if config.report_to == ["all"]:
        config.report_to = [
            name
            for name, module in TRACKER_MODULES.items()
            if importlib.util.find_spec(module) is not None and not (disabled and name == "wandb")
        ] or ["none"]
    if disabled and "wandb" in config.report_to:
        config._refuse(
            "report_to",
            "report_to has wandb but WANDB_DISABLED is set: remove wandb from report_to, or "
            "unset WANDB_DISABLED (WANDB_MODE=offline logs without uploading)",
        )


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
