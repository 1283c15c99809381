"""Preference rows laid out as another tool writes them, read as directpo's columns.

OpenAI's preference fine-tuning files (JSON Lines, one pair a row)::

    {"input": {"messages": [...], "tools": [...], "parallel_tool_calls": true},
     "preferred_output": [{"role": "assistant", ...}],
     "non_preferred_output": [{"role": "assistant", ...}]}

are conversational pairs: ``input.messages`` is the prompt, ``preferred_output`` the chosen and
``non_preferred_output`` the rejected completion, ``input.tools`` the row's tools (the same
function schemas a chat template takes). ``parallel_tool_calls`` is a setting of OpenAI's API,
not of a chat template: it is dropped. A user who moves such a file to an open model needs no
conversion script; the layout is taken only where the column options are left at their
defaults and the file has no ``chosen`` column (an explicit ``chosen_column`` always wins).
"""

from __future__ import annotations

import re
from typing import Any

from directpo.readers import RowError, kind_of

OPENAI_COLUMNS = ("input", "preferred_output", "non_preferred_output")
OPENAI_ONLY = ("parallel_tool_calls",)  # API settings in ``input`` no template reads
# directpo's names for a row's parts, as OpenAI's file calls them (said in its rows' problems)
OPENAI_FIELDS = {
    "prompt": "input.messages",
    "chosen": "preferred_output",
    "rejected": "non_preferred_output",
}


def is_openai_layout(names: list[str], prompt: str, chosen: str, rejected: str) -> bool:
    """The columns ``names`` are OpenAI's preference format's (``input`` and one of the
    outputs at least: a row that lacks the other is said to lack it by its name), and the
    column options (``prompt``, ``chosen``, ``rejected``) were left at their defaults."""
    defaults = (prompt, chosen, rejected) == ("prompt", "chosen", "rejected")
    outputs = {"preferred_output", "non_preferred_output"} & set(names)
    return defaults and "input" in names and bool(outputs) and chosen not in names


def openai_names(names: list[str]) -> list[str]:
    """The columns an OpenAI-format file has once read as directpo's."""
    renamed = {"input": "prompt", "preferred_output": "chosen", "non_preferred_output": "rejected"}
    return [renamed.get(name, name) for name in names] + ["tools"] * ("tools" not in names)


def from_openai(row: dict[str, Any]) -> dict[str, Any]:
    """One OpenAI-format row as directpo's conversational columns (a RowError that names
    OpenAI's fields where the row does not fit)."""
    for key in OPENAI_COLUMNS:
        if key not in row:
            raise RowError("missing field", f"missing field '{key}'")
    source = row["input"]
    if not isinstance(source, dict) or not isinstance(source.get("messages"), list):
        raise RowError(
            "wrong type",
            "field 'input' must be an object with a 'messages' list (OpenAI's preference "
            f"format), got {kind_of(source)}"
            + (" without 'messages'" if isinstance(source, dict) else ""),
        )
    unknown = set(source) - {"messages", "tools", *OPENAI_ONLY}
    if unknown:  # a field directpo would silently not use
        raise RowError(
            "unknown field",
            f"field 'input' holds {', '.join(sorted(map(repr, unknown)))}, which directpo does "
            "not read (OpenAI's preference format: messages, tools, parallel_tool_calls)",
        )
    rewritten = {key: value for key, value in row.items() if key not in OPENAI_COLUMNS}
    rewritten.update(
        prompt=source["messages"],
        chosen=row["preferred_output"],
        rejected=row["non_preferred_output"],
    )
    if source.get("tools") is not None:
        if rewritten.get("tools") not in (None, [], source["tools"]):
            raise RowError("bad tools", "fields 'tools' and 'input.tools' differ: keep one")
        rewritten["tools"] = source["tools"]
    return rewritten


def openai_message(message: str) -> str:
    """A row's problem said by OpenAI's field names: the user wrote ``preferred_output``, not
    ``chosen``, so "field 'rejected': message 1 has role 'user'" names a field not in the file."""
    quoted = re.sub(r"'(prompt|chosen|rejected)'", lambda m: f"'{OPENAI_FIELDS[m[1]]}'", message)
    return re.sub(
        r"\bchosen and rejected\b",
        f"{OPENAI_FIELDS['chosen']} and {OPENAI_FIELDS['rejected']}",
        quoted,
    )
