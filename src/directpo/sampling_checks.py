"""The value checks of ``DPOConfig``'s sampling options: generation (eval_generate, online
rounds; generation_kwargs as transformers' GenerationConfig takes them) and online DPO's rounds
and labellers. Run by ``config_checks.check_values`` in its one pass."""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable

from directpo.callers import (
    Blank,
    said_given,
    spell_entry,
    spell_given,
    spell_name,
    spell_setting,
    spell_unset,
)
from directpo.config import DPOConfig
from directpo.options import reject_if_set
from directpo.preference_pairs import counted
from directpo.trl_table import SAMPLING_ALIASES


def check_generation(config: DPOConfig, require: Callable[[bool, str, str], None]) -> None:
    require(config.eval_generate >= 0, "eval_generate", ">= 0")
    require(config.eval_generate_samples >= 1, "eval_generate_samples", ">= 1")
    require(config.generate_max_new_tokens >= 1, "generate_max_new_tokens", ">= 1")
    require(config.generate_temperature >= 0, "generate_temperature", ">= 0")
    require(0 < config.generate_top_p <= 1, "generate_top_p", "in (0, 1]")
    require(config.generate_top_k >= 0, "generate_top_k", ">= 0")
    min_p = config.generate_min_p
    none = spell_unset("generate_min_p")  # (None to a Python keyword)
    require(min_p is None or 0 <= min_p <= 1, "generate_min_p", f"{none} or in [0, 1]")
    require(config.generate_repetition_penalty > 0, "generate_repetition_penalty", "> 0")
    check_generation_kwargs(config)
    config._require_sampling("eval_generate_samples", "generate_temperature")
    if config.eval_generate or config.online:  # (else they are refused as sampling nothing)
        config._refuse_sampling_only(
            "generate_temperature", ("generate_top_p", "generate_top_k", "generate_min_p")
        )
    if config.eval_generate == 0:
        reject_if_set(
            config,
            ("eval_generate_samples", "eval_prompts_file"),
            "eval_generate is 0, so nothing is sampled; "
            + spell_setting(("eval_generate", Blank("N"))),
        )
    if config.eval_generate == 0 and not config.online:
        reject_if_set(
            config,
            (
                "generate_max_new_tokens",
                "generate_temperature",
                "generate_top_p",
                "generate_top_k",
                "generate_min_p",
                "generate_repetition_penalty",
                "generate_cache_implementation",
                "generation_kwargs",
                "reward_fn",
            ),
            "eval_generate is 0 and online is off, so nothing is sampled; "
            + spell_setting("eval_generate"),
        )
    check_online(config, require)


# generate() keys that directpo's options set (or whose output it reads): the option to use
OWN_GENERATION_KEYS = {
    **SAMPLING_ALIASES,
    "max_length": "generate_max_new_tokens",
    "do_sample": "generate_temperature (0: greedy)",
    "num_return_sequences": "eval_generate_samples / online_samples_per_prompt",
    **dict.fromkeys(("eos_token_id", "pad_token_id", "bos_token_id"), "the tokenizer's tokens"),
    **dict.fromkeys(
        ("return_dict_in_generate", "output_scores", "output_logits", "output_attentions",
         "output_hidden_states"),
        "nothing: directpo reads the sampled ids alone",
    ),
}  # fmt: skip


def _options_named(text: str) -> str:
    """An OWN_GENERATION_KEYS entry with its options as the caller gives them (--top_p)."""
    options = r"\b(generate_\w+|eval_generate_samples|online_samples_per_prompt)\b"
    return re.sub(options, lambda found: spell_name(found[1]), text)


def check_generation_kwargs(config: DPOConfig) -> None:
    """generation_kwargs holds GenerationConfig keys that no option of directpo's sets (TRL lets
    them override its own options, which here would be recorded with values not used), and the
    sampling options hold values transformers accepts: refused now, not at the first sample."""
    kwargs = config.generation_kwargs or {}
    if not isinstance(kwargs, dict):
        return config._refuse("generation_kwargs", "generation_kwargs must be a mapping")
    if not config.generation_extras:  # transformers' defaults: nothing to refuse, and every
        return None  # DPOConfig() (the CLI's refusals too) waited a second to import transformers
    from transformers import GenerationConfig

    known = GenerationConfig().to_dict()
    for key in kwargs:
        if key in OWN_GENERATION_KEYS:
            return config._refuse(
                "generation_kwargs",
                f"{spell_entry('generation_kwargs', key)} is set by directpo's own options: "
                f"use {_options_named(OWN_GENERATION_KEYS[key])}",
            )
        if key == "stop_strings":  # transformers matches them with a tokenizer generate lacks
            return config._refuse(
                "generation_kwargs",
                f"{spell_entry('generation_kwargs', 'stop_strings')} is not supported: samples "
                "end at the "
                "tokenizer's end-of-sequence tokens (sampling stopped at the first evaluation "
                "or round with transformers' 'we could not locate a tokenizer')",
            )
        if key not in known or key.startswith("_"):
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            return config._refuse(
                "generation_kwargs",
                f"{spell_entry('generation_kwargs', key)} is not an option of transformers' "
                f"GenerationConfig{hint}",
            )
    if not config._valid("generate_min_p", "generate_repetition_penalty"):
        return None
    # with the samples per prompt asked for: num_beams below them stopped the run at its first
    # evaluation or round (transformers checks them together when generating)
    samples = max(config.eval_generate_samples, config.online_samples_per_prompt * config.online)
    try:
        extras = config.generation_extras
        GenerationConfig(do_sample=True, num_return_sequences=samples, **extras).validate(
            strict=True
        )
    except (ValueError, TypeError) as error:
        where = "generation_kwargs" if kwargs else "generate_cache_implementation"
        said = str(error).splitlines()[0]
        if "num_return_sequences" in said:
            said += " (num_return_sequences: eval_generate_samples / online_samples_per_prompt)"
        config._refuse(where, f"{where}: {said}")
    return None


def check_online(config: DPOConfig, require: Callable[[bool, str, str], None]) -> None:
    online_options = (
        "prompt_file",
        "online_prompts_per_round",
        "online_samples_per_prompt",
        "online_pairs",
        "online_reward_gap",
        "online_max_pairs_per_prompt",
        "steps_per_round",
        "reward_model_name_or_path",
        "implicit_reward_model",
        "reward_weights",
        "missing_eos_penalty",
    )
    if not config.online:
        reject_if_set(config, online_options, f"online is off; {spell_setting(('online', True))}")
        return
    require(config.online_prompts_per_round >= 1, "online_prompts_per_round", ">= 1")
    require(config.online_samples_per_prompt >= 2, "online_samples_per_prompt", ">= 2")
    config._require_sampling("online_samples_per_prompt", "generate_temperature")
    config._one_of("online_pairs", ("best_worst", "above_gap"))
    require(config.online_reward_gap >= 0, "online_reward_gap", ">= 0")
    require(config.online_max_pairs_per_prompt >= 0, "online_max_pairs_per_prompt", ">= 0")
    require(config.steps_per_round >= 1, "steps_per_round", ">= 1")
    prompt_tokens, new_tokens = config.online_sampling
    lengths = ("max_length", "max_prompt_length", "max_completion_length")
    if (
        prompt_tokens is not None
        and prompt_tokens < 1
        and config._valid(*lengths, "generate_max_new_tokens")
    ):
        config._refuse(
            "max_length",
            f"max_length {config.max_length} leaves no room for a prompt: online rounds "
            f"sample completions of up to {new_tokens} tokens (generate_max_new_tokens, "
            "max_completion_length)",
        )
    labellers = [
        name
        for name in ("reward_fn", "reward_model_name_or_path", "implicit_reward_model")
        if getattr(config, name)
    ]
    if not labellers:
        # (said as the caller sets options: --online was told the recipe's keys)
        first, second, third = map(spell_name, ("reward_fn", "reward_model_name_or_path",
                                                "implicit_reward_model"))  # fmt: skip
        config._refuse(
            "online",
            f"{spell_given('online', True)} needs a labeller: {first}, {second} or {third} "
            f"(several: their sum, weighted by {spell_name('reward_weights')})",
        )
    weights = config.reward_weights
    if weights is not None and labellers and len(weights) != len(labellers):
        config._refuse(
            "reward_weights",
            f"{said_given('reward_weights', config._given_value('reward_weights'))} gives "
            f"{counted(len(weights), 'weight')} for {counted(len(labellers), 'labeller')} "
            f"({', '.join(spell_name(name) for name in labellers)}): give one weight per "
            "labeller, in this order",
        )
    require(
        weights is None or all(math.isfinite(w) for w in weights),
        "reward_weights",
        "finite numbers",
    )
    penalty = config.missing_eos_penalty
    # subtracted: a negative one would favour completions that never end (TRL: positive)
    require(
        penalty is None or (math.isfinite(penalty) and penalty >= 0),
        "missing_eos_penalty",
        "a finite number >= 0",
    )
    if config.precompute_ref_log_probs:
        config._refuse(
            "precompute_ref_log_probs",
            "precompute_ref_log_probs cannot be used with online: the pairs are sampled "
            "during training",
        )
