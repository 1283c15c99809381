"""Columns of well-known preference datasets that hold a prompt's text where the column options
do not look: a prompt column of another name (refused: the implicit layout would train without
the question) and a system prompt column (said: the run trains without it); and completion
columns of other names, which the refusal of a file without chosen / rejected names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from directpo.callers import Entry, caller, spell_setting
from directpo.errors import DataError
from directpo.messages import Text, plain_text

if TYPE_CHECKING:  # (data.py and pair_rows.py import this module)
    from directpo.preference_pairs import Columns, PreferenceExample

# Columns that hold the prompt in well-known datasets (Intel/orca_dpo_pairs' system and
# question, Alpaca-style instruction and input): beside chosen and rejected without a prompt
# column, the implicit layout would take the prompt from the completions' shared start (e.g.
# "The answer is") and train without the question.
PROMPT_LIKE_COLUMNS = ("question", "instruction", "input", "query", "problem")
SYSTEM_COLUMNS = ("system", "system_prompt")
SYSTEM_TURN = " (its text becomes each prompt's system turn)"  # (system_column's, named)


def refuse_unread_prompt(
    row: dict[str, Any], columns: Columns, names: list[str], where: str
) -> None:
    """Refuse the implicit layout for a file whose prompt is in a column of its own: one whose
    text the chosen side does not contain."""
    found = unread_prompt(row, columns, names)
    if found is None:
        return
    unread, fix = found
    raise DataError(
        f"{where}: there is no '{columns.prompt}' column, so the prompt would be the start "
        f"that '{columns.chosen}' and '{columns.rejected}' share (the implicit layout), but "
        f"'{columns.chosen}' does not hold the text of column '{unread}', which would "
        f"{_unread_by_caller()}; {fix}"
    )


def _unread_by_caller() -> str:
    """What becomes of the column's text, for the command that would not read it: score,
    rank and generate train nothing (they were told 'which would go untrained')."""
    if caller().entry is Entry.TRAIN:
        return "go untrained"
    return "never reach the model"


def unread_prompt(
    row: dict[str, Any], columns: Columns, names: list[str]
) -> tuple[str, str] | None:
    """(the first column holding prompt text that the chosen side lacks, the fix), or None."""
    found = unread_prompt_settings(row, columns, names)
    if found is None:
        return None
    unread, settings = found
    prompt = [setting for setting in settings if setting[0] == "prompt_column"]
    system = [setting for setting in settings if setting[0] == "system_column"]
    fix = spell_setting(*settings, last=" and ")
    if not prompt:  # (a system column's text alone: no column holds the prompt)
        fix = f"put the prompt in a '{columns.prompt}' column"
        fix += f" and {spell_setting(*system)}" if system else ""
    return unread, fix + (SYSTEM_TURN if system else "")


def unread_prompt_settings(
    row: dict[str, Any], columns: Columns, names: list[str]
) -> tuple[str, list[tuple[str, str]]] | None:
    """(the first column holding prompt text that the chosen side lacks, the column options
    that read it: prompt_column's, and system_column's beside it), or None."""
    chosen = row.get(columns.chosen)
    if isinstance(chosen, list):  # not validated yet: only the texts it holds
        contents = [m.get("content") for m in chosen if isinstance(m, dict)]
        chosen = "\n".join(text for text in contents if isinstance(text, str))
    if not isinstance(chosen, str):
        return None
    # any case (a spreadsheet's header: Prompt, Question), the prompt column's own name too,
    # and the default one beside another given (score --prompt_column question of a file of
    # prompt rows was told 'chosen and rejected share no common prefix', the prompt unnamed)
    wanted = (columns.prompt.lower(), "prompt", *PROMPT_LIKE_COLUMNS, *SYSTEM_COLUMNS)
    present = sorted(
        (name for name in names if isinstance(name, str) and name.lower() in wanted),
        key=lambda name: wanted.index(name.lower()),
    )
    unread = [
        name
        for name in present
        if name != columns.system
        and isinstance(row.get(name), str)
        and row[name].strip()
        and row[name].strip() not in chosen
    ]
    if not unread:
        return None
    prompt = next((name for name in unread if name.lower() not in SYSTEM_COLUMNS), None)
    # named even where this row's is empty (Intel/orca_dpo_pairs' first row): the fix that
    # named prompt_column alone trained every other row without its system prompt
    systems = [name for name in present if name.lower() in SYSTEM_COLUMNS]
    system = next(
        (name for name in systems if name != columns.system and isinstance(row.get(name), str)),
        None,
    )
    settings = [("prompt_column", prompt)] if prompt else []
    return unread[0], settings + ([("system_column", system)] if system else [])


def system_column_of(names: Iterable[Any]) -> str | None:
    """The system prompt column among ``names`` (any case: a spreadsheet's System header)."""
    named = {key.lower(): key for key in names if isinstance(key, str)}
    return next((named[name] for name in SYSTEM_COLUMNS if name in named), None)


def unread_system(
    examples: Sequence[PreferenceExample], columns: Columns
) -> tuple[str, int] | None:
    """A system prompt column that system_column does not read (``prompt_column: question``
    alone, on Intel/orca_dpo_pairs), with the rows whose system text their prompt lacks: the
    run trains those prompts without it. None when there is none, or no such row."""
    if columns.system is not None or not examples:
        return None
    name = system_column_of(examples[0].columns or {})
    if name is None:
        return None
    rows = sum(lacks_system((e.columns or {}).get(name), e.prompt) for e in examples)
    return (name, rows) if rows else None


def lacks_system(system: Any, prompt: Text) -> bool:
    """The prompt lacks a system text (the dataset did not already write it in) and
    system_column could give it one: a prompt that opens with its own system message is not
    counted (system_column refuses it there, a system turn given twice)."""
    if not isinstance(system, str) or not system.strip():
        return False
    if isinstance(prompt, list):
        first = prompt[0] if prompt else None
        if isinstance(first, dict) and first.get("role") == "system":
            return False
        prompt = "\n".join(plain_text(m.get("content") or "") for m in prompt)
    return system.strip() not in prompt


# completions of other names in well-known files: lvwerra/stack-exchange-paired (torchtune's
# stack_exchange_paired_dataset) keeps the better answer in response_j
COMPLETION_PAIRS = (("response_j", "response_k"),)


def completion_columns(names: Sequence[Any], chosen: str, rejected: str) -> tuple[str, str] | None:
    """The columns a file without ``chosen`` / ``rejected`` most likely holds them in: a
    well-known dataset's pair, or the one column whose name holds each word (torchtune's
    ``chosen_conversations`` / ``rejected_conversations``); None when that is not one pair."""
    for pair in COMPLETION_PAIRS:
        if set(pair) <= set(names):
            return pair
    found = []
    for word in (chosen, rejected):
        having = [  # (a spreadsheet's header: Chosen / Rejected)
            str(n) for n in names if word.lower() in str(n).lower() and not str(n).endswith("_ids")
        ]
        if len(having) != 1:
            return None
        found.append(having[0])
    return found[0], found[1]


def other_case(names: Iterable[Any], wanted: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """(option, Column) for each column option (``{option: column}``) whose column the row
    lacks but holds in another case (a spreadsheet's header: Prompt, Chosen, Response): the
    refusal of such a row said 'missing field' or the option alone, not the column to give."""
    written = {name.lower(): name for name in names if isinstance(name, str)}
    return [
        (option, written[column.lower()])
        for option, column in wanted.items()
        if column and column not in written.values() and column.lower() in written
    ]
