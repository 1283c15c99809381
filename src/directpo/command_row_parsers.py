"""Each file command's reading of one --input row, before any model: score's pair or single
response, rank's candidates, generate's prompt; a bad row a DataError naming it. Torch-free,
so that a refusal of the command's options (a model folder not there) says the rows' problems
beside it without importing the model machinery (command_rows.py, early_paths.py).
"""

from __future__ import annotations

from typing import Any

from directpo.callers import said, spell_command, spell_name, spell_setting
from directpo.command_options import GenerateOptions, RankOptions, RewardOptions, ScoreOptions
from directpo.errors import DataError
from directpo.messages import Text, is_message_list
from directpo.pair_rows import parse_pair
from directpo.preference_pairs import Columns, ImagePrompt, PreferenceExample
from directpo.prompts import (
    parse_prompt_and_responses,
    prompt_with_images,
    row_images,
    template_args_of,
    with_images,
)
from directpo.readers import kind_of, list_in_text
from directpo.row_formats import is_openai_layout
from directpo.row_kinds import command_rows_fix
from directpo.unread_columns import other_case

# what score adds to a pair row, and to a row of one response
PAIR_COLUMNS, RESPONSE_COLUMNS = ("chosen_reward", "rejected_reward", "margin"), ("reward",)


def score_item(
    options: ScoreOptions, base_dir: str, label: str, row: dict[str, Any]
) -> PreferenceExample | tuple[Any, ...]:
    """A row to score: a preference pair, or (prompt, response, images, template arguments)
    of a single response; a bad row a DataError naming it."""
    columns = Columns(
        options.prompt_column,
        options.chosen_column,
        options.rejected_column,
        system=options.system_column,
    )
    pair_columns = (options.chosen_column, options.rejected_column)
    column = response_column(row, options.response_column)
    openai = is_openai_layout(list(row), columns.prompt, *pair_columns)  # row_formats
    # a row with one of chosen / rejected and no response is a pair that lacks the other
    if (
        openai
        or all(c in row for c in pair_columns)
        or (any(c in row for c in pair_columns) and column not in row)
    ):
        check_not_written(row, PAIR_COLUMNS, options, label)
        return parse_pair(row, columns, label, base_dir)
    check_not_written(row, RESPONSE_COLUMNS, options, label)
    wanted = dict(zip(("chosen_column", "rejected_column"), pair_columns, strict=True))
    wanted |= {"prompt_column": options.prompt_column, "response_column": column}
    require_responses(row, column, "response_column", label, wanted)
    prompt, given = parse_prompt_and_responses(
        row, options.prompt_column, column, label, options.system_column
    )
    if len(given) != 1:
        raise DataError(
            f"{label}: field '{column}' holds several responses; use {spell_command('rank')}"
        )
    images = row_images(row, label, base_dir, options.prompt_column)
    args = template_args_of(row, prompt, label)
    return with_images(prompt, images), given[0], images, args


def listed(row: dict[str, Any], column: str) -> dict[str, Any]:
    """``row`` with its candidates as the list a CSV cell holds as text (JSON, or the Python
    repr pandas writes, ['a', 'b']): rank said "must be a list ..., got a string"."""
    value = row.get(column)
    if isinstance(value, str) and (listed := list_in_text(value)) is not None:
        return {**row, column: listed}
    return row


def rank_item(
    options: RankOptions, base_dir: str, label: str, row: dict[str, Any]
) -> tuple[str, Text, list[Text], Any, dict[str, Any] | None]:
    """A row to rank: (candidates' column, prompt, candidates, images, template arguments); a
    bad row a DataError naming it."""
    column = response_column(row, options.responses_column)
    row = listed(row, column)
    wanted = {"prompt_column": options.prompt_column, "responses_column": column}
    require_responses(row, column, "responses_column", label, wanted)
    check_not_written(row, ("ranked",), options, label)
    prompt, responses = candidates(row, options, column, label)
    images = row_images(row, label, base_dir, options.prompt_column)
    args = template_args_of(row, prompt, label)
    return column, prompt, responses, images, args


def check_not_written(
    row: dict[str, Any], fields: tuple[str, ...], options: RewardOptions, where: str
) -> None:
    """Refuse a row that has a field the command would write: its value would be lost (a file
    scored before, or a dataset's own reward column)."""
    taken = [options.output_prefix + f for f in fields if options.output_prefix + f in row]
    if taken:
        raise DataError(
            f"{where}: the row already has a field '{taken[0]}', which would be overwritten; "
            f"{spell_setting('output_prefix')} (e.g. {said('output_prefix', 'run2_')}) to write "
            f"run2_{taken[0][len(options.output_prefix) :]} instead"  # (flags to score_file too)
        )


# TRL's names for the response columns (its prompt-completion datasets; the completions of
# reward functions), which directpo generate writes too: read when a row lacks the default's
TRL_RESPONSE_COLUMNS = {"response": "completion", "responses": "completions"}


# the fields of a preference pair's row (directpo's and TRL's; OpenAI's preference files')
PAIR_FIELDS = (("chosen", "rejected"), ("preferred_output", "non_preferred_output"))


def response_column(row: dict[str, Any], column: str) -> str:
    """``column``, or TRL's name for it when the row has only that: generate's output ranks
    as it is (it was "missing field 'responses'")."""
    other = TRL_RESPONSE_COLUMNS.get(column)
    return other if other is not None and column not in row and other in row else column


def require_responses(
    row: dict[str, Any], column: str, option: str, where: str, wanted: dict[str, str | None]
) -> None:
    """A row without the field of responses (nor TRL's name for it): one line naming the
    fields it has and the option that reads another (a file generate --completions_column
    wrote was "missing field 'responses'", as if it held none). ``wanted``: the command's
    column options and their columns, each said with the column a header of another case
    names (Prompt, Chosen, Rejected: a pairs file, not a response's)."""
    other = TRL_RESPONSE_COLUMNS.get(column)
    if column in row or other in row:
        return
    also = f" (nor '{other}')" if other else ""
    fields = ", ".join(f"'{name}'" for name in list(row)[:6]) + (", ..." if len(row) > 6 else "")
    cased = other_case(row, wanted)
    fix = (
        f"its columns are named in another case: {spell_setting(*cased)}"
        if cased
        else f"name the field of its responses with {spell_name(option)}"
    )
    command = "rank" if option == "responses_column" else "score"
    if option == "responses_column" and any(set(pair) <= set(row) for pair in PAIR_FIELDS):
        # (rank of a pairs file was told to name a column, which no column of a pair fits)
        fix = (
            f"a preference pair: score it with {spell_command('score')} (rank sorts a list of "
            "candidates)"
        )
    elif not cased and (kind := command_rows_fix(row, command, wanted.get("prompt_column"))):
        fix = kind  # (another trainer's file: a column to name was no fix for it)
    has = fields or "no field"
    raise DataError(f"{where}: missing field '{column}'{also}; the row has {has}: {fix}")


def candidates(
    row: dict[str, Any], options: RankOptions, responses_column: str, where: str
) -> tuple[Text, list[Text]]:
    """A rank row's prompt and candidates: ``responses_column`` must hold a list of them (texts,
    or message lists); a single text or one conversation is not a list of candidates."""
    value = row.get(responses_column)
    if value is not None:
        one = is_message_list(value)
        if not isinstance(value, list) or one:
            got = "one conversation" if one else kind_of(value)
            if one and "role" not in value[0]:  # Nectar's [{"answer": ..., "rank": 1}, ...]
                keys = ", ".join(map(str, list(value[0])[:4]))
                got = (
                    f"objects ({keys}), not responses: write each candidate's text as a string "
                    "of the list (or a list of messages)"
                )
            raise DataError(
                f"{where}: field '{responses_column}' must be a list of candidate responses, "
                f"got {got}"
            )
    return parse_prompt_and_responses(
        row, options.prompt_column, responses_column, where, options.system_column
    )


def prompt_row(
    options: GenerateOptions, base_dir: str, label: str, row: dict[str, Any]
) -> Text | ImagePrompt:
    """A row's prompt; a bad row a DataError naming it."""
    if options.completions_column in row:  # written over, its data would be lost
        raise DataError(
            f"{label}: the row already has a field '{options.completions_column}', which "
            f"generate would overwrite; name another with {said('completions_column', ...)}"
        )
    return prompt_with_images(row, options.prompt_column, label, base_dir, options.system_column)
