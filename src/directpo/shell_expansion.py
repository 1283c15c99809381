"""Shell reading of option values: ``$NAME`` / ``${NAME}`` and a leading ``~`` expanded as a
shell would, in paths and in a config file's ``env:`` values (YAML, Python and a quoted flag pass
them on as text)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

# flag pass them on as text (output_dir: $HOME/runs made a folder named $HOME where it ran);
# \$ is a $ of the text, as in a shell (a password holding one had no way to be written)
SHELL_VARIABLE = re.compile(r"\\\$|\$(?:\{(\w+)\}|(\w+))")


def _value(match: re.Match[str], environ: Mapping[str, str], unset: str) -> str:
    """A ``SHELL_VARIABLE`` match as a shell reads it: ``\\$`` a ``$``, a variable its value
    (``unset`` where it is not set)."""
    if match[0] == "\\$":
        return "$"
    return environ.get(match[1] or match[2], unset)


def shell_expanded(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` with each ``$NAME`` / ``${NAME}`` of a set variable (of ``environ``, default
    the process's) as its value; unset ones are left (``unset_variables`` names them)."""
    environ = os.environ if environ is None else environ
    return SHELL_VARIABLE.sub(lambda m: _value(m, environ, m[0]), text)


def unset_variables(
    value: Any, environ: Mapping[str, str] | None = None, paths: bool = False
) -> list[str]:
    """The ``$NAME`` of unset variables in ``value`` (its items too), as written; ``paths``:
    a path there as written is none (``_there_as_written``)."""
    environ = os.environ if environ is None else environ
    if isinstance(value, str) and not _template_text(value):
        if paths and _there_as_written(value):
            return []
        found = SHELL_VARIABLE.finditer(value)
        return [m[0] for m in found if m[0] != "\\$" and (m[1] or m[2]) not in environ]
    if not isinstance(value, list | dict):
        return []
    items = value.values() if isinstance(value, dict) else value
    return [name for item in items for name in unset_variables(item, environ, paths)]


def _there_as_written(path: str) -> bool:
    """A path holding ``$`` that is there as written and not as a shell reads it: a folder
    named ``a$b`` (a quoted flag's ``'a$b/x.jsonl'`` is the shell's reading already) was refused
    as '$b is not set' or read as another path; an output to write there (``a$b/s.jsonl``) by
    its folder. Where both are there, the shell's reading."""
    if "$" not in path or _template_text(path):
        return False
    path = os.path.expanduser(path) if _home_form(path) else path  # (~/a$b: the home's)
    there = path if os.path.exists(path) else os.path.dirname(path.rstrip("/"))
    if "$" not in there or not os.path.exists(there):
        return False
    read = SHELL_VARIABLE.sub(lambda m: _value(m, os.environ, "\0"), there)
    return "\0" in read or not os.path.exists(os.path.expanduser(read))


def _template_text(value: str) -> bool:
    """A chat template's own text given as ``chat_template`` (a ``$`` in it is its text)."""
    return "\n" in value or "{{" in value or "{%" in value


def _home_form(value: str) -> bool:
    """``~``, ``~/x``, ``~name`` or ``~name/x``: a home folder a shell expands (a template's
    text or a hub id is none of them)."""
    return bool(re.match(r"~[\w.-]*(/|$)", value)) and not _template_text(value)


def home_expanded(value: Any) -> Any:
    """A path option's value with a leading ``~`` as the home folder and set ``$NAME`` /
    ``${NAME}`` as their values, as a shell reads them: YAML, Python and a quoted flag
    (``--input '~/x.jsonl'``) do not. Lists and mappings (a mixture's files) are read through."""
    if isinstance(value, str):  # (a hub id or a template's text never starts with ~/)
        if not _there_as_written(value):
            value = shell_expanded(value) if "$" in value and not _template_text(value) else value
        # ~/x and ~name/x, as a shell reads them (an unknown ~name is left as written)
        return os.path.expanduser(value) if _home_form(value) else value
    if isinstance(value, list):
        return [home_expanded(item) for item in value]
    if isinstance(value, dict):
        return {name: home_expanded(item) for name, item in value.items()}
    return value


def unset_said(key: str, unset: list[str]) -> str:
    names = ", ".join(dict.fromkeys(unset))
    return (
        f"{key}: {names} {'is' if len(unset) == 1 else 'are'} not set (a shell would read "
        "it as empty): set it, or write \\$ for a $ of the text itself"
    )
