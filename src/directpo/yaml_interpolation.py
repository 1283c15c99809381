"""OmegaConf's interpolations in a config file (torchtune's recipes write
``log_dir: ${output_dir}/logs``), resolved as OmegaConf resolves them: a value that is a
reference alone takes the referenced value (of any type), a reference inside a text is
replaced by the value's text, ``${oc.env:VAR}`` / ``${oc.env:VAR,default}`` read the
environment, ``${.key}`` / ``${..key}`` name a key beside the value / its mapping's, a
reference may hold another (``${oc.env:${var}}``, resolved inside out) and ``\\${`` is a
literal ``${``. Anything else (another resolver, a key the file
does not hold, a reference that loops) is refused in one line: read literally, the text
became a folder named ``${oc.env:HOME}`` and a path no tool can find. Inside a torchtune
component (a mapping with ``_component_``, refused whole saying what to write) such a
reference is left as written, as OmegaConf reads a node only when used: the component's line
is then said with the others.

The flags given beside the file take part as OmegaConf's merged overrides do: with
``logging_dir: ${output_dir}/logs`` in the file, ``--output_dir b`` makes it ``b/logs`` (the
file's own output_dir wrote the logs into the other run's folder). A flag's value is taken as
written (it is not itself resolved: a run records its flags as given). A key that no option
reads and that other values refer to (``model_dir: ...`` for ``${model_dir}``) is the file's
variable, as OmegaConf's users write them: not refused as an unknown option."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping
from typing import Any

from directpo.errors import ConfigError


def resolved(
    data: dict[str, Any], path: str, given: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``data`` (a YAML file's mapping) with every interpolation in its strings resolved; a
    reference to a key in ``given`` (the flags' values, which replace the file's) takes the
    flag's value, as written."""
    root = {**data, **{key: _Given(value) for key, value in (given or {}).items()}}
    return {key: _value(value, root, path, (str(key),), ()) for key, value in data.items()}


def resolved_key(
    data: dict[str, Any], key: str, path: str, given: Mapping[str, Any] | None = None
) -> Any:
    """The value of ``data[key]`` alone resolved (``resolved``'s rules): the ``env:`` block,
    set before the rest's ``${oc.env:...}`` read the environment."""
    root = {**data, **{name: _Given(value) for name, value in (given or {}).items()}}
    return _value(data[key], root, path, (key,), ())


_NAMED = re.compile(r"(?<!\\)\$\{\s*([A-Za-z_][\w-]*)")  # a reference's first key


def escaped(value: Any) -> Any:
    """``value`` (a run's own option values) written so that ``resolved`` reads it back as it
    is: each ``${...}`` (``\\${...}`` too) gets OmegaConf's escape in front. A literal
    ``${price}`` given as a flag was recorded as-is, and rerunning or resuming from that
    config.yaml took it for a reference to a key ``price``."""
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escaped(v) for v in value]
    if isinstance(value, str):
        return value.replace("${", "\\${")
    return value


def written_escaped(path: str | os.PathLike) -> bool:
    """Whether a run's own config.yaml at ``path`` was written by ``escaped`` (each ``${`` has
    the escape in front; a file with none reads the same either way): one written before it
    holds a literal ``${beta}`` as given, which resolving would read as beta's value. Such a
    file is read as written; one that cannot be read is left to the reader to say so."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return True
    return not _bare_reference(data)


def is_run_record(data: Mapping[str, Any], names: Collection[str]) -> bool:
    """Whether ``data`` (a YAML file's mapping) is a run's own config.yaml, which lists every
    option (``names``); a recipe a person writes names a few. A record written by an older
    version lacks only the options added since."""
    return len(data.keys() & set(names)) >= 0.8 * len(names)


# Options added since records escape ``${``: every record written since lists them, none before.
_SINCE_ESCAPING = frozenset({"cache_tokenized_max_gb", "dataloader_drop_last", "dataset_num_proc"})


def written_literally(data: Mapping[str, Any], names: Collection[str]) -> bool:
    """Whether ``data`` is a run's record written before ``${`` was escaped (``written_escaped``),
    to be read as written: resolving it took a run_name 'sweep ${beta}' for 'sweep 0.3'. A file
    listing an option added since is no such record but a recipe made from a later one (its
    config.yaml edited: ``output_dir: runs/b${beta}``), whose references its writer meant."""
    if data.keys() & _SINCE_ESCAPING:
        return False
    return is_run_record(data, names) and _bare_reference(dict(data))


def read_run_record(path: str) -> dict[str, Any]:
    """A run's own config.yaml as its options' values, each text as the run was given it."""
    from directpo.option_loading import read_yaml  # (it imports this module)

    return read_yaml(path, interpolate=written_escaped(path))


def _bare_reference(data: Any) -> bool:
    """Whether a text in ``data`` holds a ``${`` without OmegaConf's escape in front."""
    if isinstance(data, dict):
        return any(map(_bare_reference, data.values()))
    if isinstance(data, list):
        return any(map(_bare_reference, data))
    return isinstance(data, str) and re.search(r"(?<!\\)\$\{", data) is not None


def referenced(data: Any) -> set[str]:
    """The top-level keys the references in ``data`` (a YAML file's values) name:
    ``${model_dir}/x`` and ``${model_dir.sub}`` name model_dir."""
    if isinstance(data, dict):
        return set().union(*map(referenced, data.values()))
    if isinstance(data, list):
        return set().union(*map(referenced, data))
    return {m.group(1) for m in _NAMED.finditer(data)} if isinstance(data, str) else set()


class _Given:
    """A flag's value in the mapping references are looked up in: taken as it is."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _value(
    value: Any, root: dict[str, Any], path: str, at: tuple[str, ...], seen: tuple[str, ...]
) -> Any:
    """``value`` (the node at key path ``at``) resolved; ``seen``: the references resolving it,
    from the key whose value started them (a loop, and the key an error names)."""
    if isinstance(value, dict) and "_component_" in value:
        return {k: _leniently(v, root, path, (*at, str(k)), seen) for k, v in value.items()}
    if isinstance(value, dict):
        return {k: _value(v, root, path, (*at, str(k)), seen) for k, v in value.items()}
    if isinstance(value, list):
        return [_value(v, root, path, (*at, str(i)), seen) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    return _text(value, root, path, at, seen or (".".join(at),))


def _text(
    value: str, root: dict[str, Any], path: str, at: tuple[str, ...], seen: tuple[str, ...]
) -> Any:
    """A string's references replaced by their values' text; a string that is one reference
    alone takes the value itself (its type kept). A reference's own references are resolved
    first (OmegaConf's nesting: ``${oc.env:${var}}``); an unclosed ``${`` is text."""
    out: list[str] = []
    i = 0
    while i < len(value):
        if value.startswith("\\${", i):  # OmegaConf's escape: a literal ${
            out.append("${")
            i += 3
            continue
        end = _closing(value, i) if value.startswith("${", i) else None
        if end is None:
            out.append(value[i])
            i += 1
            continue
        inner = value[i + 2 : end]
        if "${" in inner:
            inner = str(_text(inner, root, path, at, seen))
        found = _lookup(inner, root, path, at, seen)
        if i == 0 and end == len(value) - 1:
            return found
        out.append(str(found))
        i = end + 1
    return "".join(out)


def _closing(value: str, start: int) -> int | None:
    """The index of the ``}`` closing the ``${`` at ``start`` (references nest), or None."""
    depth, i = 0, start
    while i < len(value):
        if value.startswith("${", i):
            depth, i = depth + 1, i + 2
            continue
        if value[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _leniently(
    value: Any, root: dict[str, Any], path: str, at: tuple[str, ...], seen: tuple[str, ...]
) -> Any:
    try:
        return _value(value, root, path, at, seen)
    except ConfigError:
        return value


def _lookup(
    reference: str, root: dict[str, Any], path: str, at: tuple[str, ...], seen: tuple[str, ...]
) -> Any:
    """The value ``${reference}`` stands for, in the value at key path ``at``."""
    where = f"{path}: {seen[0]}: '${{{reference}}}'"
    name = reference.strip()
    if name.startswith("oc.env:"):
        return _environment(name[len("oc.env:") :], where)
    if ":" in name:
        raise ConfigError(
            f"{where}: OmegaConf's resolver {name.split(':')[0]} is not read here: write the value"
        )
    parts = _absolute(name, at, where)
    node: Any = root
    for part in parts:
        if isinstance(node, _Given):
            node = node.value
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict) or part not in node:
            # (${HOME} as a shell writes it: OmegaConf reads a key of the file)
            variable = name if name.isidentifier() and name in os.environ else None
            lead = (
                f"${{oc.env:{name}}} (or ${name}) for the environment's {name}; "
                if variable
                else ""
            )
            raise ConfigError(
                f"{where}: the file has no key {'.'.join(parts)} to take the value of "
                f"(OmegaConf's interpolation; {lead}write \\${{ for the text ${{)"
            )
        node = node[part]
    if isinstance(node, _Given):
        return node.value
    key = ".".join(parts)
    if key in seen:
        raise ConfigError(f"{where}: the reference loops ({' -> '.join([*seen, key])})")
    return _value(node, root, path, tuple(parts), (*seen, key))


def _absolute(name: str, at: tuple[str, ...], where: str) -> list[str]:
    """The key path ``name`` names: from the file's top, or, with leading dots, from the
    mapping holding the value (``.key``) or the one above (``..key``), as OmegaConf reads it."""
    dots = len(name) - len(name.lstrip("."))
    if not dots:
        return name.split(".")
    if dots > len(at):
        raise ConfigError(f"{where}: {'.' * dots} goes above the file's top level")
    return [*at[: len(at) - dots], *name[dots:].split(".")]


def _environment(argument: str, where: str) -> Any:
    """``${oc.env:VAR}`` / ``${oc.env:VAR,default}``: the variable's text, else the default
    (``null``: None, as OmegaConf reads it; quotes removed)."""
    variable, comma, default = argument.partition(",")
    value = os.environ.get(variable.strip())
    if value is not None:
        return value
    if not comma:
        raise ConfigError(f"{where}: the environment variable {variable.strip()} is not set")
    default = default.strip()
    return None if default == "null" else default.strip("'\"")
