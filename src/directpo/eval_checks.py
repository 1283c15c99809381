"""Whether a run's evaluation options have something to evaluate: held-out pairs, a test split
or eval_generate's prompts, under an eval_strategy that reads them. Run by preflight's
``check_environment`` in its one pass."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from directpo.callers import (
    Spelling,
    caller,
    in_askers_words,
    setting_verb,
    spell_given,
    spell_name,
    spell_setting,
)
from directpo.errors import ConfigError

if TYPE_CHECKING:
    from directpo.config import DPOConfig


# the held-out pairs a run with nothing to evaluate is told to set: the command line's option,
# and a Python caller's train(eval_dataset=...) beside it
def held_out_data() -> str:
    """The held-out data to set, as the caller gives it (train()'s eval_dataset= in Python)."""
    given = " or train(eval_dataset=...)" if caller().spelling is Spelling.PYTHON else ""
    return f"{spell_name('eval_file')}{given} (held-out pairs)"


def _evaluates(config: DPOConfig, eval_dataset_given: bool) -> bool:
    """Whether the run has something to evaluate."""
    held_out = config.eval_file or eval_dataset_given or config.eval_generate
    # dataset_name's test split may be there: it counts as something to evaluate, but under
    # eval_strategy: no it is simply not loaded (TRL's configs often say so), not refused.
    mixture_split = (config.dataset_mixture or {}).get("test_split_size")  # held-out pairs
    return bool(held_out or config.dataset_name or mixture_split)


def check_evaluation(config: DPOConfig, eval_dataset_given: bool) -> None:
    def to_set(asked_by: str) -> str:
        # what to set, in the words of the source that asked for evaluations where no source
        # set either (the flag --eval_strategy steps beside a recipe: 'give --eval_file')
        with in_askers_words(config, asked_by, ("eval_file", "eval_generate")):
            return f"{setting_verb()} {held_out_data()} or {spell_name('eval_generate')}"

    held_out = config.eval_file or eval_dataset_given or config.eval_generate
    evaluates = _evaluates(config, eval_dataset_given)
    if config.eval_strategy == "no" and held_out:
        # named as given: train(eval_dataset=...) under a TRL config's eval_strategy "no" (its
        # default) was told of an eval_file it never set
        given = [
            name
            for name, value in (
                ("eval_file", config.eval_file),
                ("eval_dataset (given to train())", eval_dataset_given),
                ("eval_generate", config.eval_generate),
            )
            if value
        ]
        raise ConfigError(
            f"eval_strategy is no but there is held-out data ({' and '.join(given)}): "
            "remove it, or choose eval_strategy auto, steps or epoch"
        )
    if config.eval_strategy in ("steps", "epoch") and not evaluates:
        raise ConfigError(
            f"eval_strategy is {config.eval_strategy} but there is nothing to evaluate: "
            f"{to_set('eval_strategy')} (sampled completions)"
        )
    asking = [
        key
        for key in ("load_best_model_at_end", "early_stopping_patience", "eval_on_start")
        if getattr(config, key)
    ]
    # ('load_best_model_at_end need evaluations' was said of one option)
    need = f"{' / '.join(asking)} {'needs' if len(asking) == 1 else 'need'} evaluations"
    if asking and config.eval_strategy == "no":  # a test split is then only held out
        raise ConfigError(
            f"{need}, and eval_strategy is no: choose eval_strategy auto, steps or epoch"
        )
    if asking and not evaluates:
        raise ConfigError(f"{need}: {to_set(asking[0])}")
    # (eval_delay and max_eval_samples were taken without a word)
    for key in ("eval_steps", "eval_delay", "max_eval_samples"):
        if getattr(config, key) and not evaluates:
            with in_askers_words(config, key, ("eval_file", "eval_generate")):
                removed = spell_given(key, getattr(config, key))
            raise ConfigError(
                f"{key} is set but there is nothing to evaluate: {to_set(key)} (sampled "
                f"completions), or remove {removed}"
            )


def check_eval_generate(config: DPOConfig, eval_dataset_given: bool) -> None:
    if not config.eval_generate:
        return
    mixture_split = (config.dataset_mixture or {}).get("test_split_size")
    test_split = config.dataset_name and config.eval_strategy != "no"  # its prompts
    if not (
        config.eval_prompts_file
        or config.eval_file
        or eval_dataset_given
        or mixture_split
        or test_split
    ):
        # (in the words of the flag --eval_generate beside a recipe: 'give --eval_prompts_file')
        with in_askers_words(config, "eval_generate", ("eval_prompts_file", "eval_file")):
            prompts = spell_setting("eval_prompts_file", "eval_file", last=" or ")
        raise ConfigError(
            f"eval_generate needs held-out prompts: {prompts}"
            + (" (or train(eval_dataset=...))" if caller().spelling is Spelling.PYTHON else "")
        )
    if config.eval_prompts_file and not os.path.exists(config.eval_prompts_file):
        raise ConfigError(f"eval_prompts_file: no such file or folder: {config.eval_prompts_file}")
