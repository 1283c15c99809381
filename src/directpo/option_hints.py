"""An unknown option's likeliest meaning, for the refusal of every command (train's flags and
YAML keys, score / rank / generate / demo / plot's flags, a flag before the command, a Python
options call): the spellings users carry from transformers' and TRL's scripts and from habit
(``--model``, ``--lr``, ``--dataset``, ``--epochs``) said as the command's own option, else the
closest name. difflib alone found nothing close to ``--model`` or ``--lr`` (score's
``--model run/`` was 'unknown option' without a word of --model_name_or_path) and a wrong
lead for others (``--data``: 'did you mean --data_seed?')."""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection
from dataclasses import fields
from typing import Any

from directpo.callers import (
    Spelling,
    caller,
    spell_list,
    spell_setting,
    written_as,
)
from directpo.option_values import shortened

# no value given with an unknown name (a flag at the end of the line, a switch)
NO_VALUE: Any = object()

# a spelling -> the options it may mean, in order: the first the command has is said (--dataset
# is train's train_file and score's input)
SPELLINGS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        (
            "model", "model_path", "model_name", "model_id", "model_dir", "base_model",
            "pretrained_model_name_or_path", "pretrained", "policy", "policy_model", "run",
        ),
        ("model_name_or_path",),
    ),
    **dict.fromkeys(
        ("ref_model", "ref_model_path", "reference_model", "ref_model_name", "ref"),
        ("ref_model_name_or_path",),
    ),
    **dict.fromkeys(
        (
            "dataset", "data", "data_path", "dataset_path", "data_file", "dataset_file",
            "train_data", "train_dataset", "train_path", "train_data_path", "data_files",
        ),
        ("train_file", "input"),
    ),
    **dict.fromkeys(
        ("input_file", "input_path", "in", "prompts", "prompts_file", "prompt_file"), ("input",)
    ),
    **dict.fromkeys(
        ("eval_data", "eval_dataset", "validation_file", "valid_file", "test_file", "dev_file"),
        ("eval_file",),
    ),
    **dict.fromkeys(("lr", "learningrate", "lr_rate"), ("learning_rate",)),
    **dict.fromkeys(
        ("batch_size", "bs", "train_batch_size", "micro_batch_size", "per_device_batch_size"),
        ("per_device_train_batch_size", "batch_size"),
    ),
    "eval_batch_size": ("per_device_eval_batch_size", "batch_size"),
    **dict.fromkeys(
        ("epochs", "num_epochs", "n_epochs", "max_epochs", "train_epochs"), ("num_train_epochs",)
    ),
    **dict.fromkeys(
        ("steps", "num_steps", "total_steps", "train_steps", "max_train_steps", "num_train_steps"),
        ("max_steps",),
    ),
    **dict.fromkeys(
        ("grad_accum", "gradient_accumulation", "accumulation_steps", "grad_accumulation_steps"),
        ("gradient_accumulation_steps",),
    ),
    **dict.fromkeys(
        ("out", "out_dir", "outdir", "output_path", "save_dir", "save_path", "output_file"),
        ("output_dir", "output"),
    ),
    **dict.fromkeys(("tokenizer", "tokenizer_path", "tokenizer_name"), ("tokenizer_name_or_path",)),
    **dict.fromkeys(
        ("max_len", "max_seq_len", "max_seq_length", "seq_len", "cutoff_len"), ("max_length",)
    ),
    "max_tokens": ("max_new_tokens", "generate_max_new_tokens"),
    # TRL's sampling trainers' (GRPO, online DPO) length of a sample: generate's max_new_tokens
    # (generate --max_completion_length was told it is train's, where it caps the pairs' text)
    "max_completion_length": ("max_new_tokens",),
    **dict.fromkeys(("n", "num_samples", "num_completions"), ("num_return_sequences",)),
    # TRL GRPO's samples per prompt (train was told 'did you mean --generation_kwargs?')
    "num_generations": ("num_return_sequences", "online_samples_per_prompt"),
    # TRL GRPO's completions sampled at once (train was told 'did you mean
    # --auto_find_batch_size?'): an online round's prompts; generate's batch
    "generation_batch_size": ("batch_size", "online_prompts_per_round"),
    **dict.fromkeys(("precision", "torch_dtype", "mixed_precision"), ("dtype",)),
    # a sequence classifier's folder (TRL's reward_model_path, OpenRLHF's reward_pretrain):
    # train's online labeller; score --reward_model was 'unknown option' without a word
    **dict.fromkeys(
        ("reward_model", "reward_model_path", "reward_pretrain", "rm", "rm_path"),
        ("reward_model_name_or_path",),
    ),
    # one-letter flags other CLIs give these (-m MODEL, -o OUT, -c CONFIG): none is directpo's
    "m": ("model_name_or_path",),
    "o": ("output_dir", "output"),
    "i": ("input", "train_file"),
    "d": ("train_file", "input"),
    "c": ("config",),
    # score / rank / generate's names, for train's option of that meaning
    "input": ("train_file",),
    "output": ("output_dir",),
}  # fmt: skip


def meant_option(name: str, names: Collection[str]) -> str | None:
    """The option of ``names`` that ``name`` (not one of them) most likely means: another
    tool's spelling of it, else the closest name (lower case: --BETA is --beta), else None;
    None for another command's own option too (train --num_return_sequences was 'did you
    mean --num_train_epochs?': ``elsewhere`` says whose it is)."""
    key = _key(name)
    if key in names:  # (--BETA: options are lower case)
        return key
    if key in SPELLINGS and (option := _spelt(key, names)):
        return option
    if any(key in options for options in command_options().values()):
        return None
    begun = _begun(key, names)
    if begun:  # (argparse's abbreviation: --gradient_acc was 'did you mean --gradient_checkp..?')
        return begun[0] if len(begun) == 1 else None
    # ... of another tool's spelling (--eval_batch: 'did you mean --eval_strategy?')
    spelt = {_spelt(other, names) for other in SPELLINGS if len(key) > 2 and other.startswith(key)}
    if len(spelt - {None}) == 1:
        return (spelt - {None}).pop()
    close = difflib.get_close_matches(key, list(names), n=1)
    return close[0] if close else None


def _spelt(spelling: str, names: Collection[str]) -> str | None:
    """The option of ``names`` that another tool's ``spelling`` means, or None."""
    return next((option for option in SPELLINGS[spelling] if option in names), None)


# generate's option -> train's options it may mean, each with what it counts there (train
# --num_return_sequences was told generate's alone, where it means one of these; train reads
# generate's other sampling names, --temperature ..., as its generate_* options already)
SAMPLES_HERE: dict[str, tuple[tuple[str, str], ...]] = {
    "num_return_sequences": (
        ("online_samples_per_prompt", "completions per prompt in an online round"),
        ("eval_generate_samples", "completions per held-out prompt in eval_generate"),
    ),
}

# the names of one system text for every row (other tools' system_prompt): directpo reads a
# system turn from a column of the rows, whose option difflib offered as if it took the text
SYSTEM_TEXT = ("system_prompt", "system_message", "system_text", "default_system_prompt")


def counterpart(name: str, names: Collection[str], flag: str = "--") -> str:
    """The hint for a name whose meaning is an option of another name in this command:
    train's sampling options (generate_temperature, ...) are generate's temperature, ... (told
    'an option of directpo train'), and a system prompt's text is a column's (told 'did you
    mean --system_column?', which takes a column's name, not the text), and generate's
    num_return_sequences train's options of that count (``SAMPLES_HERE``); else ''."""
    key = _key(name)
    own = key.removeprefix("generate_")
    if own != key and own in names:
        return f"; did you mean '{flag}{own}'? ({key} is train's, for its own sampling)"
    if meant := [(option, use) for option, use in SAMPLES_HERE.get(key, ()) if option in names]:
        said = " or ".join(f"'{flag}{option}' ({use})" for option, use in meant)
        return f"; did you mean {said}? ({key} is directpo generate's)"
    if key in SYSTEM_TEXT and "system_column" in names:
        written = f"{flag}system_column NAME" if flag else "system_column: NAME"  # (YAML's)
        return (
            f"; a system turn is read from a column of the rows: {written} (each row's system "
            "text); there is no option for one text: write it into the rows"
        )
    return ""


def unknown_hint(name: str, names: Collection[str], flag: str = "--", value: Any = NO_VALUE) -> str:
    """The hint after "unknown option 'NAME'": the option NAME stands for here
    (``counterpart``), else the option meant, else the options NAME begins (--per_device,
    --max: argparse's abbreviations, which TRL's scripts take when one option begins so, were
    told nothing), else whose option it is (``elsewhere``), else ''. ``value``: what NAME was
    given, where known; another tool's spelling of an option (``--model run/``, TRL's and
    transformers' scripts') is then told the setting with it (``give --model_name_or_path
    run/``, ``set model_name_or_path: run/``), not only the name to retype it under."""
    if other := counterpart(name, names, flag):
        return other
    if setting := setting_meant(name, names, flag, value):
        return f"; {setting}"
    meant = meant_option(name, names)
    if meant:
        return f"; did you mean '{flag}{meant}'?"
    if begun := abbreviated(name, names, flag):
        return f"; {begun}"
    return elsewhere(name, names, flag)


# options whose value another tool's spelling may mean otherwise: --dataset org/prefs is a hub
# dataset (dataset_name), a file only where it is one
_FILES_ONLY = ("train_file", "input", "eval_file")
# options whose values other tools spell otherwise (accelerate's --mixed_precision bf16 is
# dtype bfloat16 here: its own check says so), told the name alone
_VALUES_DIFFER = ("dtype",)


def setting_meant(name: str, names: Collection[str], flag: str, value: Any) -> str:
    """The setting another tool's spelling ``name`` (SPELLINGS) with ``value`` stands for
    here, as ``flag`` says the source wrote it (``--``: a command line's; else the caller's),
    or '' where the value is not one to repeat (none, a switch's, a list, a hub id for a
    file's option)."""
    key = _key(name)
    if key not in SPELLINGS or not (option := _spelt(key, names)):
        return ""
    if option == "config" or option in _VALUES_DIFFER:
        return ""
    if value is NO_VALUE or isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    spelling = Spelling.FLAGS if flag else caller().spelling
    bare = spelling is Spelling.FLAGS and value == "true"  # (a bare --model: cli_flags' "true")
    if value == "" or bare or (option in _FILES_ONLY and not os.path.exists(str(value))):
        return ""
    with written_as(spelling):
        return spell_setting((option, value))


def abbreviated(name: str, names: Collection[str], flag: str = "--") -> str:
    """The options of ``names`` that ``name`` begins, where several do, else ''."""
    begun = [] if _key(name) in SPELLINGS else _begun(_key(name), names)
    if len(begun) < 2:
        return ""
    shown = [f"'{flag}{option}'" for option in begun[:SHOWN]]
    last = f"{len(begun) - SHOWN} more" if len(begun) > SHOWN else shown.pop()
    return f"{len(begun)} options begin so, write one whole: {', '.join(shown)} or {last}"


# the options an ambiguous abbreviation's hint lists
SHOWN = 5


def _begun(key: str, names: Collection[str]) -> list[str]:
    """The options ``key`` abbreviates (3 characters at least), sorted; one that begins every
    other (gradient_checkpointing of its _kwargs, _every) alone."""
    begun = sorted((n for n in names if n.startswith(key)), key=lambda n: (len(n), n))
    if len(key) < 3 or not begun:
        return []
    if all(n.startswith(begun[0]) for n in begun):
        return begun[:1]
    return sorted(begun)


def elsewhere(name: str, names: Collection[str], flag: str = "--") -> str:
    """The hint for a name that is (or stands for) another command's option, not one of
    ``names`` (rank --top_k: generate's; score --lr: train's learning_rate), else ''."""
    key = _key(name)
    every = command_options()
    owners = [command for command, options in every.items() if key in options]
    if not owners:  # another tool's spelling: the first option it means that a command has
        # (score --num_generations: generate's --num_return_sequences, before train's
        # online_samples_per_prompt; it was train's alone)
        meant = [
            o for o in SPELLINGS.get(key, ()) if any(o in options for options in every.values())
        ]
        key = meant[0] if meant else ""
        owners = [command for command, options in every.items() if key in options] if key else []
    if not owners or key in names:
        return ""
    if caller().spelling is Spelling.PYTHON:  # (a keyword's user builds a class, not a command)
        owners = [PYTHON_OWNERS[command] for command in owners]
        said = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
        return f"; {key} is an option of {said}, not of these options"
    said = " and ".join([", ".join(owners[:-1]), owners[-1]] if len(owners) > 1 else owners)
    return f"; {flag}{key} is an option of directpo {said}, not of this command"


# each command's options as a Python caller builds them (ScoreOptions(learning_rate=...) was
# told "learning_rate is an option of directpo train, not of this command")
PYTHON_OWNERS = {
    "train": "DPOConfig (train())", "score": "ScoreOptions", "rank": "RankOptions",
    "generate": "GenerateOptions", "demo": "DemoOptions", "plot": "PlotOptions",
}  # fmt: skip


def command_options() -> dict[str, set[str]]:
    """Each command's option names (read when a name is refused: config imports this module,
    and cli_commands imports config), from the one table of commands and their options."""
    from directpo.cli_commands import COMMANDS

    return {name: {f.name for f in fields(command.options)} for name, command in COMMANDS.items()}


def _key(name: str) -> str:
    return name.lower().replace("-", "_")


# short names of dtypes that other tools' flags take (accelerate's --mixed_precision bf16),
# and torch's own aliases (torch.half is float16, torch.float float32: were told the list alone)
DTYPE_SHORT = {
    "bf16": "bfloat16", "fp32": "float32", "f32": "float32", "fp16": "float16",
    "half": "float16", "float": "float32",
}  # fmt: skip


def meant_choice(value: object, choices: Collection[str]) -> str | None:
    """The choice a refused value most likely means (``bf16``: bfloat16, ``torch.bfloat16``,
    ``Sigmoid``), else None."""
    if not isinstance(value, str):
        return None
    key = value.strip().lower().removeprefix("torch.")
    key = DTYPE_SHORT.get(key, key)  # (fp16 is float16: led as float16 is, not left unled)
    if key in choices:
        return key
    # (a close cutoff: float64 is neither float32 nor bfloat16, a precision of its own)
    close = difflib.get_close_matches(key, list(choices), n=1, cutoff=0.85)
    return close[0] if close else None


def meant_words(given: Collection[object], typed: Any, key: str, choices: Collection[str]) -> str:
    """``; did you mean ...?`` for a list of words some of which are no choice (loss_type:
    [Sigmoid], report_to: wand), as ``meant_choice`` tells a word option: the list options were
    told their whole list of words alone (loss_type's eighteen). The list as meant where each
    unknown word means one choice ([sigmoid, sft] for [sigmoid, SFT]), else the words that do;
    '' where none does. ``typed``: the value as the caller gave it, whose form the list meant
    takes (callers.spell_list: a flag's words typed apart are told so)."""
    words = list(given)
    meant = {word: meant_choice(word, choices) for word in words if word not in choices}
    if not meant or not any(meant.values()):
        return ""
    if all(meant.values()):
        # (each word once: [sigmod, sigmoid] was told 'did you mean [sigmoid, sigmoid]?',
        # which loss_type then refused as a repeat; a list of words names each once)
        fixed = list(dict.fromkeys(meant.get(word, word) for word in words))
        # (the list as the caller writes one: [a, b] in a recipe, a,b on a command line,
        # ['a', 'b'] in Python)
        apart = isinstance(typed, list | tuple)  # (a flag's words typed apart: told so)
        shown = str(fixed[0]) if len(fixed) == 1 else spell_list(key, fixed, apart)
        return f"; did you mean {shortened(shown)}?"
    pairs = [f"{choice} for {word}" for word, choice in meant.items() if choice]
    # (shortened as the 'got' beside it is: fifty misspelt words ran the line to a screenful)
    return f"; did you mean {shortened(', '.join(pairs))}?"
