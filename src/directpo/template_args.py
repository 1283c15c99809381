"""A row's own chat template arguments, as TRL reads them: its ``tools`` column (function
schemas, or their JSON text) and its ``chat_template_kwargs`` column (an object, or its JSON
text), each checked (a ``RowError`` naming the field) and usable by conversational rows only."""

from __future__ import annotations

import json
from typing import Any

from directpo.messages import template_values
from directpo.readers import RowError, kind_of


def row_template_args(row: dict[str, Any], prompt: Any) -> dict[str, Any] | None:
    """The chat template arguments of a row holding one prompt (to score, rank or sample): its
    ``tools`` and ``chat_template_kwargs`` columns, read as a pair row's are (a RowError when
    they cannot be used; a text prompt has none)."""
    layout = "conversational" if isinstance(prompt, list) else "explicit"
    tools = row_tools(row.get("tools"), layout)
    return joined_args(tools, row_template_kwargs(row.get("chat_template_kwargs"), layout))


def joined_args(tools: Any, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
    args = {**({"tools": tools} if tools else {}), **(kwargs or {})}
    return args or None


def row_tools(value: Any, layout: str) -> list[dict[str, Any]] | None:
    """The row's ``tools`` (a list of function schemas, or its JSON text), for the template;
    a null in a schema is a key the row lacks (``template_values``)."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("bad tools", "field 'tools' is not valid JSON") from None
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise RowError(
            "bad tools", f"field 'tools' must be a list of objects, got {kind_of(value)}"
        )
    if layout != "conversational":
        raise RowError("bad tools", "field 'tools' needs conversational rows (message lists)")
    return template_values(value)


def row_template_kwargs(value: Any, layout: str) -> dict[str, Any] | None:
    """The row's ``chat_template_kwargs`` (an object, or its JSON text), as TRL passes them to
    the chat template. A key whose value is null is left out: an Arrow column of objects gives
    every row every key, null where the row had none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(
                "bad chat_template_kwargs", "field 'chat_template_kwargs' is not valid JSON"
            ) from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RowError(
            "bad chat_template_kwargs",
            f"field 'chat_template_kwargs' must be an object, got {kind_of(value)}",
        )
    value = {key: item for key, item in value.items() if item is not None}
    if value and layout != "conversational":
        raise RowError(
            "bad chat_template_kwargs",
            "field 'chat_template_kwargs' needs conversational rows (message lists)",
        )
    return value or None
