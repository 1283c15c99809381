"""OmegaConf's interpolations in a config file (torchtune's recipes write
``log_dir: ${output_dir}/logs``), resolved as OmegaConf resolves them: a value that is a
reference alone takes the referenced value (of any type), a reference inside a text is
replaced by the value's text, ``${oc.env:VAR}`` / ``${oc.env:VAR,default}`` read the
environment and ``\\${`` is a literal ``${``. Anything else (another resolver, a key the file
does not hold, a reference that loops) is refused in one line: read literally, the text
became a folder named ``${oc.env:HOME}`` and a path no tool can find. Inside a torchtune
component (a mapping with ``_component_``, refused whole saying what to write) such a
reference is left as written, as OmegaConf reads a node only when used: the component's line
is then said with the others.

The flags given beside the file take part as OmegaConf's merged overrides do: with
``logging_dir: ${output_dir}/logs`` in the file, ``--output_dir b`` makes it ``b/logs`` (the
file's own output_dir wrote the logs into the other run's folder). A flag's value is taken as
written (it is not itself resolved: a run records its flags as given)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from directpo.errors import ConfigError

_REFERENCE = re.compile(r"(\\)?\$\{([^${}]*)\}")


def resolved(
    data: dict[str, Any], path: str, given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``data`` (a YAML file's mapping) with every interpolation in its strings resolved; a
    reference to a key in ``given`` (the flags' values, which replace the file's) takes the
    flag's value, as written."""
    root = {**data, **{key: _Given(value) for key, value in (given or {}).items()}}
    return {key: _value(value, root, path, (key,)) for key, value in data.items()}


class _Given:
    """A flag's value in the mapping references are looked up in: taken as it is."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _value(value: Any, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> Any:
    if isinstance(value, dict) and "_component_" in value:
        return {k: _leniently(v, root, path, seen) for k, v in value.items()}
    if isinstance(value, dict):
        return {k: _value(v, root, path, seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, root, path, seen) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _REFERENCE.fullmatch(value)
    if whole and not whole.group(1):  # the value is the reference: its type is kept
        return _lookup(whole.group(2), root, path, seen)

    def text(match: re.Match[str]) -> str:
        if match.group(1):  # OmegaConf's escape: a literal ${...}
            return match.group(0)[1:]
        return str(_lookup(match.group(2), root, path, seen))

    return _REFERENCE.sub(text, value)


def _leniently(value: Any, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> Any:
    try:
        return _value(value, root, path, seen)
    except ConfigError:
        return value


def _lookup(reference: str, root: dict[str, Any], path: str, seen: tuple[str, ...]) -> Any:
    """The value ``${reference}`` stands for; ``seen`` holds the keys resolving it (a loop)."""
    where = f"{path}: {seen[0]}: '${{{reference}}}'"
    name = reference.strip()
    if name.startswith("oc.env:"):
        variable, _, default = name[len("oc.env:") :].partition(",")
        value = os.environ.get(variable.strip())
        if value is None and not default:
            raise ConfigError(f"{where}: the environment variable {variable.strip()} is not set")
        return value if value is not None else default.strip().strip("'\"")
    if ":" in name:
        raise ConfigError(
            f"{where}: OmegaConf's resolver {name.split(':')[0]} is not read here: write the value"
        )
    node: Any = root
    for part in name.split("."):
        if isinstance(node, _Given):
            node = node.value
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(
                f"{where}: the file has no key {name} to take the value of (OmegaConf's "
                "interpolation; write \\${ for the text ${)"
            )
        node = node[part]
    if isinstance(node, _Given):
        return node.value
    if name in seen:
        raise ConfigError(f"{where}: the reference loops ({' -> '.join([*seen, name])})")
    return _value(node, root, path, (*seen, name))
