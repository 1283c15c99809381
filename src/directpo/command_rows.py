"""score, rank and generate: the --input file's bad rows said beside the refused options.

A refused option value or a missing model folder was said first, and the input's bad rows
(missing fields, empty responses, lines that are not UTF-8, a column name the rows lack) only
on the next run, once the options were fixed: two runs where ``train`` takes one
(early_rows.py). Their structure needs no tokenizer, so they are read here, before any model
loads, under train's heading. What the tokenizer or chat template refuses (a system turn the
template does not take) needs the model folder's tokenizer: the command's own pass says that,
after the options pass.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from directpo.errors import ConfigError, ConfigErrors, DataError
from directpo.options import names_any

# the options a row is read by (its columns, the fields it must not have): refused, the rows
# are not checked
READ_BY = (
    "prompt_column",
    "system_column",
    "chosen_column",
    "rejected_column",
    "response_column",
    "responses_column",
    "completions_column",
    "output_prefix",
)


def input_row_problems(options: Any, refused: list[str]) -> list[str]:
    """One line of the --input file's bad rows (the command's own line for them), or one
    saying they were not checked (a refused option they are read by; the model folder that
    names their columns is not there and the first row lacks the default ones); none when
    the input is missing (said among the options) or its rows are good. ``options``: a
    FileCommandOptions, its values perhaps refused (``refused``: their lines)."""
    source = options.input
    if not isinstance(source, str) or not os.path.exists(source):
        return []
    if any(names_any(line, {"input"}) for line in refused):
        return []  # (the input itself is refused: a folder it cannot read, said there)
    blocking = [key for key in READ_BY if any(names_any(line, {key}) for line in refused)]
    if blocking:
        return [_unchecked(source, f"{', '.join(blocking)} (what they are read by)")]
    from directpo.prompts import first_row_fields

    try:
        fields = first_row_fields(source)
    except DataError as error:
        return [str(error)]
    folder = options.model_name_or_path
    known = isinstance(folder, str) and os.path.isdir(folder)  # (else the run's columns unknown)
    run = None
    if known:
        from directpo.run_records import run_config

        try:
            run = run_config(folder)
        except Exception:  # a config.yaml of another tool: not a run, as the command reads it
            run = None
    unsure = [] if known else _unknown_columns(options, fields)
    if unsure:
        return [_unchecked(source, f"{', '.join(unsure)} (the model folder's run names them)")]
    # the options rows are read by, the others at their defaults: a refused value elsewhere
    # (batch_size 0) would refuse the copy that takes the run's columns
    read_by = ("input", "model_name_or_path", *READ_BY)
    kept = {key: getattr(options, key) for key in read_by if hasattr(options, key)}
    resolved = type(options)(**kept).with_run_defaults(run, lambda _: None, fields)
    return _problems(source, _parser(resolved))


def _unknown_columns(options: Any, fields: set[str]) -> list[str]:
    """The column options left unset whose default-named column the first row lacks: the
    run that would name them is not readable, so a 'missing field' might be wrong."""
    return [
        key
        for key, (_, default) in options.FROM_RUN.items()
        if key.endswith("_column") and isinstance(default, str)
        if getattr(options, key) is None and default not in fields
    ]


def _unchecked(source: str, why: str) -> str:
    return f"the rows of {source} are not checked: {why} must be fixed first"


def _parser(options: Any) -> Callable[[str, dict[str, Any]], Any]:
    """The command's own check of one row's structure (no tokenizer)."""
    from functools import partial

    from directpo.command_options import GenerateOptions, RankOptions
    from directpo.command_row_parsers import prompt_row, rank_item, score_item

    base_dir = os.path.dirname(os.path.abspath(options.input))  # image paths: relative to it
    if isinstance(options, GenerateOptions):
        return partial(prompt_row, options, base_dir)
    item = rank_item if isinstance(options, RankOptions) else score_item
    return partial(item, options, base_dir)


def _problems(source: str, parse: Callable[[str, dict[str, Any]], Any]) -> list[str]:
    from directpo.prompts import check_every_row

    try:
        check_every_row(source, parse)
    except DataError as error:
        return [str(error)]
    return []


def with_others(
    error: ConfigError, options: type, config_file: str | None, overrides: dict[str, Any]
) -> ConfigError:
    """``error`` (an unknown flag, refused before the command's options are built) with the
    other flags' refusals, the paths that are not there (a plain model folder's missing
    --beta) and the input's bad rows said beside it: each was said a run after the unknown
    flag was fixed. ``options``: the command's options class, built from
    ``config_file`` and ``overrides`` (the flags that are known)."""
    from directpo.option_loading import beside_refusal, load_options

    try:
        built = load_options(options, config_file, overrides)
    except ConfigError as other:
        if config_file is None or os.path.exists(config_file):
            return ConfigErrors.joined([error, other])
        # a config file that is not there (a stray word taken for it): the flags alone may
        # name the data, whose bad rows were said a run after the word was removed
        return with_others(ConfigErrors.joined([error, other]), options, None, overrides)
    except Exception:  # (a value no check read may be odd: the unknown flag is the news)
        return error
    return beside_refusal(error, built)
