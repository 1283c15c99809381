"""Loading options: a YAML file (or mapping) and flags read into an options dataclass, with
TRL's spellings translated, OmegaConf's ``${...}`` resolved, the file's ``env:`` set, and every
refused key said in one pass beside the problems of the values it took."""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import os
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from directpo.callers import (
    Caller,
    Entry,
    Spelling,
    called_by,
    caller,
    options_written_by,
    source_spelling,
    written_as,
)
from directpo.errors import ConfigError, ConfigErrors, respelled
from directpo.foreign_defaults import record_tool
from directpo.option_values import numbers_written, value_shown
from directpo.shell_expansion import shell_expanded, unset_said, unset_variables
from directpo.yaml_interpolation import referenced, resolved, resolved_key, written_literally

if TYPE_CHECKING:
    from directpo.options import Options

T = TypeVar("T")

# how a YAML config's name ends, in any case (Recipe.YAML is one); a config file may be JSON too
YAML_ENDINGS = (".yaml", ".yml")
CONFIG_ENDINGS = (*YAML_ENDINGS, ".json")


def names_yaml(path: str) -> bool:
    """``path`` is named as a YAML config (the CLI, train()'s first argument and the command
    hints read one rule: train('Recipe.YAML') was told it named no file, as a model id is)."""
    return path.lower().endswith(YAML_ENDINGS)


def load_options(
    cls: type[T],
    path: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    interpolate: bool = True,
    overrides_from: str = "command line",
) -> T:
    """Read the optional YAML file (or a mapping of its contents, e.g. ``yaml.safe_load``'s),
    apply ``overrides`` (e.g. from flags) on top, and validate. ``interpolate``: resolve
    OmegaConf's ``${...}`` (not in a run's own config.yaml, which records values as given).
    ``overrides_from``: where the overrides were written (flags are named ``--key``; keywords,
    ``train("cfg.yaml", key=...)``'s, as written). Its refusals are a recipe's words (naming
    the file) where no entry named the caller: load_config('recipe.yaml') from Python."""
    recipe = os.fspath(path) if isinstance(path, str | os.PathLike) else None
    with called_by(Caller(Spelling.RECIPE, Entry.TRAIN, recipe)):
        return _load_options(cls, path, overrides, interpolate, overrides_from)


def _load_options(
    cls: type[T],
    path: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    interpolate: bool = True,
    overrides_from: str = "command line",
) -> T:
    """The options of ``load_options``, read where its caller is named."""
    names = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    refused: list[ConfigError] = []
    sources = [(overrides or {}, overrides_from)]
    if isinstance(path, Mapping):
        data, where = dict(path), "config"
    elif path is not None:
        data, where = read_yaml(os.fspath(path), interpolate=False), os.fspath(path)
        # (a run's record of before ${ was escaped holds its texts as given: 'sweep ${beta}')
        if interpolate and not written_literally(
            data, names
        ):  # after the flags are known: a reference to a flag's key takes its value
            # (by the option's name too: --save_path is output_dir's ${output_dir})
            named = translate_usable(cls, overrides or {}, names, overrides_from)[0]
            given = {**named, **(overrides or {})}
            if "env" in data:  # set first, as TRL sets it before anything runs: the file's
                # ${oc.env:VAR} read the value env gives VAR (they read the shell's before)
                written = data["env"] if isinstance(data["env"], dict) else {}
                _set_environment(resolved_key(data, "env", where, given), where, written)
            data.pop("env", None)
            variables = _variables(cls, data, names, where)
            # a key the overrides replace is not resolved, as OmegaConf merges the command
            # line's before it resolves: 'beta: ${oc.env:BETA}' with --beta 0.2 was refused as
            # BETA being unset (a reference to it reads the override's value: ``given``)
            replaced = [key for key in data if key not in variables and _replaced(key, given)]
            # (a reference to the file's own spelling, ${torch_dtype} beside --dtype, reads
            # the override too: it was 'the file has no key torch_dtype')
            given |= {key: given[_option_of(key, given)] for key in replaced if key not in given}
            data = resolved({k: v for k, v in data.items() if k not in replaced}, where, given)
            data = {key: value for key, value in data.items() if key not in variables}
    if path is not None:
        _set_environment(data.pop("env", None), where)
        sources.insert(0, (data, where))
    spelled: dict[str, str] = {}  # a value's option as the source that set it last wrote it
    meant: dict[str, Any] = {}  # the options refused keys stand for (cls.meant)
    overridden: set[str] = set()  # the options the overrides (flags, keywords) set
    written_by: dict[str, Spelling] = {}  # each option a source set, said in its words
    refused_from: list[str] = []  # the source of each refused line, in order
    for given, where in sources:
        usable, error = translate_usable(cls, given, names, where)
        overridden = set(usable) if where == overrides_from else overridden
        meant |= cls.meant(given) if error else {}  # type: ignore[attr-defined]
        renamed = cls.spellings(given, where)  # type: ignore[attr-defined]
        spelled = {k: v for k, v in spelled.items() if k not in usable} | renamed
        values.update(usable)
        written_by |= dict.fromkeys(usable, source_spelling(where))  # (the last source's)
        refused += [error] if error else []
        refused_from += [where] * len(getattr(error, "problems", [error])) if error else []
    # refused, the config is built for its refusal alone: with the options refused names
    # stand for, so that it says their rows too
    meant = {key: value for key, value in meant.items() if key not in values and refused}
    headed = functools.partial(
        _headed_by_source,
        refused_from,
        overridden | set(overrides or {}),  # (an alias's line names it as given: max_new_tokens)
        overrides_from,
        sources[0][1] if path is not None else "",
    )
    # ONE build: each option a file's key or an override (a flag, train()'s keyword) set is
    # said in its own source's words within any line (callers.options_written_by): the file's
    # ``eval_dtype: bfloat16`` under the flag's ``--dtype float32``, 'give --dtype bfloat16'
    # (the fix that takes), and each line is headed by the source its problem names
    # (_headed_by_source). (It was built two times, three for train(), and their lines
    # matched by position.)
    written = written_by if path is not None and overridden else {}
    texts = {} if path is None or isinstance(path, Mapping) else number_texts(os.fspath(path))
    texts = {key: text for key, text in texts.items() if key not in overridden}
    try:
        with options_written_by(written) as unwritten_said, numbers_written(texts):
            built = cls(**meant, **values)
    except ConfigError as error:
        if written and unwritten_said:
            build = functools.partial(cls, **meant, **values)
            error = _said_as_the_overrides(
                error, build, written, overridden | set(overrides or {}), unwritten_said,
                overrides_from,
            )  # fmt: skip
        raise headed(ConfigErrors.joined([*refused, respelled(error, spelled)])) from None
    if refused:  # (the paths and rows said beside the refused keys: in their sources' words)
        with options_written_by(written):
            raise headed(beside_refusal(ConfigErrors.joined(refused), built))
    # the tool whose names the sources used (OpenRLHF's, torchtune's, TRL's): its defaults
    # where they left an option out are said at start (foreign_defaults.py)
    record_tool(built, [key for given, _ in sources for key in given], values)
    if written:  # (train's checks after the load say a flag's option as a flag: the fix that
        # takes over the file's key; and one no source set, lora_r beside --merge_lora, in the
        # words of the option that asked for it: arguments.checked_arguments)
        object.__setattr__(built, "_written_by", dict(written))
    return built


def _replaced(key: str, given: Mapping[str, Any]) -> bool:
    """Whether the file's ``key`` (TRL's spelling too: torch_dtype) is an option the overrides
    ``given`` set (by its name or the override's alias)."""
    return key in given or _option_of(key, given) in given


def _option_of(key: str, given: Mapping[str, Any]) -> str:
    """The file's ``key`` as the overrides ``given`` name it (TRL's torch_dtype: dtype)."""
    from directpo.trl_compat import ALIASES

    return key if key in given else ALIASES.get(key, key)


def _said_as_the_overrides(
    error: ConfigError,
    build: Any,
    written_by: dict[str, Spelling],
    overridden: set[str],
    unwritten: set[str],
    overrides_from: str,
) -> ConfigError:
    """``error``'s lines whose problem names an option the overrides set AND that say an
    option no source set (``unwritten``, said in the caller's words), said again wholly in
    the overrides' words: ``--lora_target_modules q_proj`` beside a recipe is told 'give
    --lora_r 16', not the recipe's 'set lora_r: 16' (train()'s ``lora_target_modules=[...]``,
    'pass lora_r=16'). A default belongs to no source, so the line's own source says it, which
    is known only once the line is whole: the one case built again (``build``). A line of
    options that sources set is whole after the one build."""
    spelling = source_spelling(overrides_from)
    lines = list(getattr(error, "problems", [str(error)]))
    if spelling is caller().spelling or not any(
        problem_names(line, overridden) and any(text in line for text in unwritten)
        for line in lines
    ):
        return error
    try:
        with written_as(spelling), options_written_by(written_by):
            build()
    except ConfigError as theirs:
        their_lines = getattr(theirs, "problems", [str(theirs)])
        if len(their_lines) != len(lines):  # (a check that reads the caller: kept as it was)
            return error
        said = [
            their_line if problem_names(line, overridden) else line
            for line, their_line in zip(lines, their_lines, strict=True)
        ]
        return ConfigErrors(getattr(error, "where", ""), said, getattr(error, "rows", []))
    return error


def _naming(options: Collection[str]) -> re.Pattern[str]:
    """A name of ``options`` as a recipe (``dtype:``), a flag (``--dtype``) or a keyword
    (``dtype=``) says it, not a part of another name (``eval_dtype``, ``a.dtype``)."""
    return re.compile(
        r"(?<![\w.-])(?:--)?(?:" + "|".join(map(re.escape, sorted(options, key=len, reverse=True)))
        + r")(?![\w])"
    )  # fmt: skip


def _headed_by_source(
    refused_from: list[str],
    overridden: set[str],
    overrides_from: str,
    file_where: str,
    error: ConfigError,
) -> ConfigError:
    """``error``'s lines each headed by its source where a file and the overrides (a command
    line's flags, train()'s keywords) both bring lines: under one heading, the file's
    (``c.yaml:``), a flag's ``--beta -1`` was told as the file's. A refused key's line is its
    source's (``refused_from``, in order); a checked value's, the overrides' where its problem
    names an option they set (``command line:`` / ``train():``), else the file's."""
    lines = list(getattr(error, "problems", [str(error)]))
    if not file_where or not overridden:
        return error
    checked = [
        overrides_from if problem_names(line, overridden) else file_where
        for line in lines[len(refused_from) :]
    ]
    origins = refused_from[: len(lines)] + checked
    if len(set(origins)) < 2:
        return error
    said = [
        line if line.startswith(f"{origin}: ") else f"{origin}: {line}"
        for line, origin in zip(lines, origins, strict=True)
    ]
    return ConfigErrors("", said, getattr(error, "rows", []))


def problem_names(line: str, options: Collection[str]) -> bool:
    """Whether a refusal's problem, before its advice, names one of ``options`` as any source
    spells it (``--dtype``, ``dtype:``, ``dtype=``; fp16's 'or dtype: float32' is advice, no
    dtype given): a line such an option bears on, whose source is the one that set it."""
    return bool(options) and _naming(options).search(line.split("; ")[0]) is not None


def accepting_spellings(cls: type[T]) -> type[T]:
    """``cls(...)`` (an options dataclass) takes every spelling ``cls.translate`` reads (TRL's
    ``remove_unused_columns=False``, ``evaluation_strategy=...``) with the same meaning, so a TRL
    script's ``DPOConfig(...)`` call ports as written; an unknown name is the one-line
    ConfigError with a hint that a flag or YAML key gets (ScoreOptions(modle=...) was Python's
    raw TypeError, beside DPOConfig's "did you mean")."""
    generated = cls.__init__
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    @functools.wraps(generated)
    def __init__(self: Any, *args: Any, **values: Any) -> None:
        # (in its class's caller's words: its unknown names, and the paths said beside them)
        with called_by(cls.BUILT_BY):  # type: ignore[attr-defined]
            build(self, *args, **values)

    def build(self: Any, *args: Any, **values: Any) -> None:
        refused, spelled = None, {}
        if values.keys() - set(names):
            spelled = cls.spellings(values, cls.__name__)  # type: ignore[attr-defined]
            values, refused = translate_usable(cls, values, names, cls.__name__)
        try:
            generated(self, *args, **values)
        except ConfigError as error:  # with the refused names: every problem in one pass
            error = respelled(error, spelled)  # named as written: max_new_tokens=, not its alias
            raise ConfigErrors.joined([refused, error] if refused else [error]) from None
        if refused:  # with the missing paths and bad rows of the options it took (the CLI's)
            raise beside_refusal(refused, self)
        object.__setattr__(self, "_spelled", spelled)  # for train()'s check of it again
        # which options the caller gave, a default's value too (options.options_passed)
        object.__setattr__(self, "_options_passed", frozenset(names[: len(args)]) | set(values))

    cls.__init__ = __init__  # type: ignore[assignment]
    return cls


def beside_refusal(error: ConfigError, built: Options) -> ConfigError:
    """``error`` (names refused before ``built`` was made of the others: an unknown option)
    with the paths ``built`` names that are not there and its data files' bad rows: each was
    said a run after the unknown name was fixed."""
    lines = list(getattr(error, "problems", None) or [str(error)])
    with contextlib.suppress(Exception):  # (a value no check read may be odd: the name is news)
        lines += [line for line in built._path_problems() if line not in lines]
    rows: list[str] = []
    with contextlib.suppress(Exception):
        rows = built._row_problems(lines)
    if len(lines) == len(getattr(error, "problems", None) or [error]) and not rows:
        return error
    return ConfigErrors(getattr(error, "where", ""), lines, rows)


def translate_usable(
    cls: type, values: dict[str, Any], names: list[str], where: str
) -> tuple[dict[str, Any], ConfigError | None]:
    """``cls.translate(values)``; when it refuses keys (TRL's unsupported ones, unknown ones),
    the keys it takes alone, with the refusal, so that their values are still checked and one
    pass reports every problem: a TRL config with ``tf32: true`` and ``fp16: true`` took two
    runs to fix, the second key refused only once the first was gone."""
    try:
        return cls.translate(values, names, where), None  # type: ignore[attr-defined]
    except ConfigError as error:
        usable: dict[str, Any] = {}
        for key, value in values.items():
            with contextlib.suppress(ConfigError):
                usable.update(cls.translate({key: value}, names, where))  # type: ignore[attr-defined]
        return usable, error


def _variables(cls: type, data: dict[str, Any], names: list[str], where: str) -> set[str]:
    """The keys of ``data`` that other values refer to and that no option reads: OmegaConf's
    variables (``model_dir`` for ``model_name_or_path: ${model_dir}``), which were refused as
    unknown options ('did you mean hub_model_id?')."""
    unread: set[str] = set()
    for key in referenced(data) & data.keys():
        try:
            cls.translate({key: data[key]}, names, where)  # type: ignore[attr-defined]
        except ConfigError as error:
            problems = getattr(error, "problems", None) or [str(error)]
            if all(problem.startswith("unknown option") for problem in problems):
                unread.add(key)
    return unread


def _set_environment(env: Any, path: str, written: dict[str, Any] | None = None) -> None:
    """A config file's ``env:`` mapping (TRL's TrlParser reads it so): environment variables
    set before anything runs. Not an option, so never recorded: it may hold tokens.
    ``written``: the values as the file writes them, before OmegaConf's interpolations."""
    if env is None:
        return
    if not isinstance(env, dict):
        raise ConfigError(
            f"{path}: env must be a mapping of VARIABLE: value, got {value_shown(env)}"
        )
    # as a shell's export reads it (TRL sets the text: DIRECTPO_CACHE: $HOME/c made a folder
    # named $HOME); an earlier key's value is read by a later one, as in a shell; none is set
    # unless all can be
    environ = dict(os.environ)
    for key, value in env.items():
        if "${" in str((written or {}).get(key, "")):  # ${oc.env:KEY}'s value is not read
            environ[str(key)] = str(value)  # again (a shell reads "$KEY" once: a token's $)
            continue
        if unset := unset_variables(str(value), environ):
            raise ConfigError(f"{path}: env: {unset_said(str(key), unset)}")
        environ[str(key)] = shell_expanded(str(value), environ)
    os.environ.update({str(key): environ[str(key)] for key in env})


def _meant_file(path: str) -> str:
    """A config file of a close name beside the one not found (recipe.yml for recipe.yaml)."""
    folder, name = os.path.split(path)
    with contextlib.suppress(OSError):
        present = [
            entry
            for entry in os.listdir(folder or ".")
            if entry.lower().endswith(CONFIG_ENDINGS)
            and os.path.isfile(os.path.join(folder, entry))
        ]
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.8)
        if close:
            return f"; did you mean {os.path.join(folder, close[0])}?"
    return ""


def read_yaml(path: str, interpolate: bool = True) -> dict[str, Any]:
    """The option: value mapping of a YAML file, or a one-line ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}{_meant_file(path)}")
    try:
        data = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader)  # noqa: S506
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        escape = ("found unknown escape character", "expected escape sequence")
        if problem.startswith(escape) and mark is not None:
            # a regex (peft's ".*\.(q|v)_proj", copied from Python's r"...") or a Windows
            # path in double quotes was YAML's words alone
            problem += _single_quoted(mark.buffer, mark.index)
        raise ConfigError(f"{path}:{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    data = {str(k): v for k, v in data.items()}
    return resolved(data, path) if interpolate else data


def number_texts(path: str) -> dict[str, str]:
    """The file's numbers as written (``beta: .inf``: '.inf'), by key: a refusal says them so
    (it said 'inf', '-10' for -1_0: a text not in the file). A file YAML cannot compose: none
    (read_yaml said why already)."""
    try:
        root = yaml.compose(Path(path).read_text(), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    numbers = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    if not isinstance(root, yaml.MappingNode):
        return {}
    texts = {
        str(key.value): value.value
        for key, value in root.value
        if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.ScalarNode)
        and value.tag in numbers
    }  # fmt: skip
    for key, value in root.value:  # (a list of numbers, loss_weights: [1e-1, -2e0]: it was
        # said '1e-1 -2e0', a flag's words, and [1e-1, -2.0] as '[0.1, -2.0]')
        if isinstance(key, yaml.ScalarNode) and isinstance(value, yaml.SequenceNode):
            items = value.value
            if items and all(_plain_number(item) for item in items):
                texts[str(key.value)] = f"[{', '.join(item.value for item in items)}]"
    return texts


def _plain_number(node: Any) -> bool:
    """An unquoted YAML scalar that is a number (YAML 1.1's 1e-1, read as a string, too)."""
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return False
    try:
        float(node.value)
    except ValueError:
        return node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    return True


def _single_quoted(text: str, at: int) -> str:
    """What to write for the double-quoted YAML text holding ``at``, an unknown escape: in
    single quotes a backslash is itself."""
    start, end = text.rfind('"', 0, at), text.find('"', at)
    inner = text[start + 1 : end] if 0 <= start < end else ""
    shown = f"'{inner}'" if inner and "'" not in inner and "\n" not in inner else "single quotes"
    return (
        f" (in double quotes a backslash starts an escape: write {shown}, or double each backslash)"
    )


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice (last-wins would hide one of them)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults`: its keys may be overridden, that is its point
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the base class says so in its own words
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    None, None, f"option '{key}' is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
