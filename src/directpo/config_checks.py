"""The value checks of ``DPOConfig`` (config.py holds the options, their defaults and help).

Run when a config is built (``DPOConfig._check_values``): every impossible value, option that
would silently do nothing, or combination that cannot run is refused before any model loads.
Refusals go through ``Options._require`` / ``_refuse``, which collect them so that one pass
reports every wrong value at once; a check that reads an already refused value is skipped
(``_valid``), so no line blames another option. Here: the run's strategies, steps and
lengths, its data and outputs, processing and early stopping. The precision and optimizer
options' checks are ``optimizer_checks``'; the loss options', ``loss_checks``'; the data
options', ``data_checks``'; tracking's, ``tracking_checks``'; the generation options',
``sampling_checks``'; the engine's, LoRA's, quantization's and the reference model's,
``model_option_checks``'.
"""

from __future__ import annotations

from directpo.best import default_metric_unlogged
from directpo.callers import spell_pair, spell_setting, spell_unset
from directpo.config import EVAL_STRATEGIES, SAVE_STRATEGIES, DPOConfig
from directpo.data_checks import check_columns, check_splits_of_files, check_streaming
from directpo.errors import ConfigError
from directpo.loss_checks import check_loss_modifiers, check_losses
from directpo.mixture_entries import check_mixture
from directpo.model_option_checks import (
    check_engine,
    check_lora,
    check_quantization,
    check_reference,
)
from directpo.optimizer_checks import (
    check_optimizer_choice,
    check_optimizer_values,
    check_precision,
)
from directpo.option_paths import expand_home
from directpo.options import reject_if_set
from directpo.sampling_checks import check_generation
from directpo.tracking_checks import check_tracking
from directpo.trl_compat import refuse_loading_options


def check_values(config: DPOConfig) -> None:
    """Refuses every impossible value and combination, one concern after another. The
    order is the order of the lines a user reads (the first is the only one when one line
    is shown): a step moved changes which problem of a config with several is named first."""
    expand_home(config)
    check_precision(config)
    config._apply_trl_spellings()
    check_optimizer_choice(config)
    check_losses(config, config._require)
    check_optimizer_values(config)
    _check_strategies(config)
    _check_steps(config)
    _check_lengths(config)
    _check_data_and_outputs(config)
    check_tracking(config)
    check_generation(config, config._require)
    _check_processing(config)
    check_engine(config)
    check_lora(config)
    check_quantization(config)
    check_loss_modifiers(config)
    _check_best_model(config)
    refuse_loading_options(config)  # (dtype, quantization_config in model_init_kwargs)
    check_reference(config)


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
        f"{spell_unset('max_eval_samples')} (every pair) or >= 1",
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


def _check_processing(config: DPOConfig) -> None:
    """Tokenizing workers, the tokenized cache, log-prob chunks and packing sizes."""
    require = config._require
    procs = config.dataset_num_proc
    one = f">= 1 ({spell_unset('dataset_num_proc')}: one process)"  # (None to a keyword)
    require(procs is None or procs >= 1, "dataset_num_proc", one)
    require(
        config.cache_tokenized_max_gb >= 0, "cache_tokenized_max_gb", ">= 0 (0: the entries in use)"
    )
    require(config.logprob_chunk_tokens >= 0, "logprob_chunk_tokens", ">= 0 (0: off)")
    require(config.pack_max_tokens >= 0, "pack_max_tokens", ">= 0 (0: the longest sequence)")


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
