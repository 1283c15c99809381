"""Typed options: dataclass fields that carry their default and help, loaded from YAML/flags.

Every options class (``DPOConfig`` and the per-command ones) is a dataclass of ``option()``
fields deriving from ``Options``: values are coerced to the annotated type when the object is
built and then checked by ``_check_values``; a problem is a one-line ``ConfigError`` naming the
key. The CLI builds each command's flags and ``--help`` from the same fields.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import os
import re
import typing
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from directpo.errors import ConfigError, ConfigErrors, respelled
from directpo.option_hints import meant_choice, unknown_hint
from directpo.option_values import coerce as _coerce
from directpo.option_values import word_refusal
from directpo.yaml_interpolation import (
    escaped,
    referenced,
    resolved,
    resolved_key,
    written_literally,
)

T = TypeVar("T")


@functools.cache
def _field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def option(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that carries its help text (shown by `--help` and in the docs)."""
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return field(default=default, metadata={"help": help, **kwargs})


@functools.cache
def type_hints(options: type) -> dict[str, Any]:
    """An options class's evaluated annotations (evaluating them all costs ~5 ms a config)."""
    return typing.get_type_hints(options)


# $NAME and ${NAME}, which a shell reads in a path or an env: value; YAML, Python and a quoted
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


class Options:
    """Base of the options dataclasses: coercion on construction, then ``_check_values``."""

    # the options naming local files or folders: their ``~`` is expanded on construction
    PATH_KEYS: typing.ClassVar[tuple[str, ...]] = ()
    # other tools' names for what an option here does (transformers' generate() arguments),
    # each with what to give instead: said where the name is refused as unknown
    FOREIGN_KEYS: typing.ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        # every wrong value is reported at once: a user fixing a config file one error per run
        # would otherwise need as many runs as mistakes
        hints = type_hints(type(self))
        problems: list[str] = []
        untyped: set[str] = set()  # options whose value is not of their type
        wrong_type: dict[str, tuple[int, Any]] = {}  # each such option's line and value
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            try:
                setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
            except ConfigError as error:
                problems.append(str(error))
                untyped.add(f.name)
                wrong_type[f.name] = (len(problems) - 1, getattr(self, f.name))
                setattr(self, f.name, _default(f))  # the other options are still checked
        for key in self.PATH_KEYS:  # (score --input '~/x.jsonl' read a folder named ~)
            if unset := unset_variables(getattr(self, key), paths=True):
                problems.append(_unset_said(key, unset))
                untyped.add(key)  # (its other checks would read the unexpanded text)
                setattr(self, key, _default(self.__dataclass_fields__[key]))
            elif home_expanded(getattr(self, key)) != getattr(self, key):
                setattr(self, key, home_expanded(getattr(self, key)))
        checked: list[str] = []
        self._problems: list[str] | None = checked
        self._refused: set[str] = set(untyped)
        # each word option's words (_one_of), with 'one of' or 'one or more of' for a list
        self._words: dict[str, tuple[str, tuple[str, ...]]] = {}
        try:
            self._check_values()
        except ConfigError as error:
            if not (problems or checked):
                raise
            checked.append(str(error))  # a combination refused after values already were
        except Exception:
            if not (problems or checked):
                raise
            # a later check met a value an earlier one refused: what was refused is the news
        finally:
            self._problems = None
            self._refused = set()
            words = self.__dict__.pop("_words")  # (not an attribute a run's key reads)
        for key, (line, value) in wrong_type.items():
            # (eval_dtype: off was told to quote 'no', then the words; loss_type: null or 5
            # 'must be a list, got None', no loss named)
            if key in words:
                problems[line] = word_refusal(key, value, *words[key])
        # a line naming an option of the wrong type judged its default, not the user's value
        problems += [line for line in checked if not names_any(line, untyped)]
        if problems:
            # the paths it names that are not there, said with them: the file checks run on a
            # config whose values passed, so a missing file was said only on the next run
            with contextlib.suppress(Exception):  # (a value that no check read may be odd)
                problems += [line for line in self._path_problems() if line not in problems]
            rows: list[str] = []
            with contextlib.suppress(Exception):  # and the data files' bad rows (two runs)
                rows = self._row_problems(problems)
            raise ConfigErrors("", problems, rows)

    def __setattr__(self, name: str, value: Any) -> None:
        """An option set after construction (``config.beta = 0.2`` in a notebook) goes through
        the constructor's spellings: a TRL name is renamed (``evaluation_strategy``) or dropped
        where it asks for nothing (``push_to_hub = False``), and a misspelt one is refused. A
        plain attribute would hold ``lerning_rate`` where nothing reads it: a run with the
        default, without a word."""
        if name.startswith("_") or name in _field_names(type(self)):
            object.__setattr__(self, name, value)
            self.__dict__.get("_spelled", {}).pop(name, None)  # now set by its own name
            return
        cls = type(self)
        for key, translated in cls.translate(
            {name: value}, _field_names(cls), cls.__name__
        ).items():  # type: ignore[attr-defined]
            object.__setattr__(self, key, translated)
        # a later check (train() builds the config again) names it as it was set
        spelled = {**self.__dict__.get("_spelled", {}), **cls.spellings({name: value}, "")}
        object.__setattr__(self, "_spelled", spelled)

    def _check_values(self) -> None:
        """Subclasses refuse impossible values here."""

    def _row_problems(self, refused: list[str]) -> list[str]:
        """The bad rows of the data files the options name, one line a file (a subclass's;
        read only when values are refused, ``refused``: their lines)."""
        return []

    def _path_problems(self) -> list[str]:
        """The local files and folders the options name that are not there, one line each (a
        subclass's; read only when values are refused, to say them in the same pass)."""
        return []

    @classmethod
    def spellings(cls, values: dict[str, Any], where: str) -> dict[str, str]:
        """The options ``translate`` renames, each with the key the user wrote (none here)."""
        return {}

    @classmethod
    def meant(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The options that keys ``translate`` refuses stand for, where a refusal says which
        (none here): read beside the refusal, their data's rows are said with it."""
        return {}

    @classmethod
    def translate(cls, values: dict[str, Any], names: list[str], where: str) -> dict[str, Any]:
        """``values`` as options of this class (subclasses may accept other spellings)."""
        label = "option" if where == "command line" else f"{where}: option"
        for key in values:
            _check_known(key, label, names, cls.FOREIGN_KEYS.get(key))
        return values

    def _require(self, ok: bool, key: str, must: str) -> None:
        """Refuses ``key``'s value unless ``ok``; while the values are checked at construction,
        the refusal is collected and the checks go on."""
        if not ok:
            self._refuse(key, f"{key} must be {must} (got {getattr(self, key)!r})")

    def _refuse(self, key: str, problem: str) -> None:
        """Refuses ``key`` with ``problem`` (a whole line), collected as ``_require`` does, so
        that the checks after it still run and report their own problems in the same pass."""
        if getattr(self, "_problems", None) is None:
            raise ConfigError(problem)
        self._problems.append(problem)
        self._refused.add(key)

    def _valid(self, *keys: str) -> bool:
        """None of ``keys``' values has been refused so far: a check that reads a refused value
        would report a consequence of it, in words that blame another option."""
        return not set(keys) & getattr(self, "_refused", set())

    def _one_of(self, key: str, choices: tuple[str, ...]) -> None:
        if (words := getattr(self, "_words", None)) is not None:  # while constructed
            words[key] = ("one of", choices)
        if not self._valid(key):  # refused already (its value is its default now)
            return
        value = getattr(self, key)
        if value in choices or not self._valid(key):  # (refused already, in its own words)
            return
        if str(value).strip().lower() in ("null", "~"):  # the flag's --log_level null: YAML's
            return self._refuse(key, word_refusal(key, None, "one of", choices))
        meant = meant_choice(value, choices)  # (--dtype bf16 was told the list alone)
        if meant is None and str(value).isdigit():  # (dtype: 16, YAML's number: bfloat16)
            meant = next((choice for choice in choices if choice.endswith(str(value))), None)
        hint = f"; did you mean {meant}?" if meant else ""
        self._refuse(key, f"{key} must be one of {', '.join(choices)} (got {value!r}){hint}")

    def _require_sampling(self, samples_key: str, temperature_key: str) -> None:
        """Several completions per prompt need sampling: greedy decoding (temperature 0) has
        one completion per prompt (transformers' generate refuses to repeat it). Collected as
        ``_refuse`` does: raised, it hid every check after it (top_k beside greedy decoding,
        lora_alpha without lora_r) until the next run."""
        samples = getattr(self, samples_key)
        if not self._valid(samples_key, temperature_key):
            return
        if getattr(self, temperature_key) == 0 and samples > 1:
            self._refuse(
                samples_key,
                f"{samples_key} {samples} needs sampling, but {temperature_key} is 0 (greedy "
                f"decoding gives each prompt one completion); set {temperature_key} > 0",
            )

    def _refuse_sampling_only(self, temperature_key: str, keys: tuple[str, ...]) -> None:
        """top_p, top_k and min_p choose which tokens may be drawn; greedy decoding (temperature
        0) takes the most likely token whatever they say (transformers only warns), so giving
        them beside it is refused rather than silently doing nothing."""
        if not self._valid(temperature_key, *keys) or getattr(self, temperature_key) != 0:
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        given = [key for key in keys if getattr(self, key) != defaults[key]]
        if given:
            self._refuse(
                given[0],
                f"{' and '.join(given)} only shape{'s' if len(given) == 1 else ''} sampling, "
                f"but {temperature_key} is 0 (greedy decoding takes the most likely token); "
                f"drop {'it' if len(given) == 1 else 'them'} or set {temperature_key} > 0",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def save_yaml(self, path: str | Path, **replaced: Any) -> None:
        """Every option as a YAML mapping (``replaced``: values written instead of the own),
        each text escaped where it holds ``${``, so that reading the file gives it back."""
        values = escaped({**self.to_dict(), **replaced})
        Path(path).write_text(yaml.safe_dump(values, sort_keys=False))


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def names_any(line: str, keys: set[str]) -> bool:
    """Whether ``line`` names one of ``keys`` as a word (not inside another option's name)."""
    return any(re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", line) for key in keys)


def reject_if_set(config: Options, keys: tuple[str, ...], reason: str) -> None:
    """An option that would silently do nothing is refused instead."""
    for field_ in dataclasses.fields(config):  # type: ignore[arg-type]
        if field_.name in keys:
            default = (
                field_.default_factory()
                if field_.default is dataclasses.MISSING
                else field_.default
            )
            if getattr(config, field_.name) != default:  # each one said, the checks go on
                config._refuse(field_.name, f"{field_.name} is set but {reason}")


def option_help(cls: type) -> list[tuple[str, str, Any]]:
    """(name, help, default) of every option of an options dataclass, in declaration order."""
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        rows.append((f.name, f.metadata["help"], default))
    return rows


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
    ``train("cfg.yaml", key=...)``'s, as written)."""
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
            data = resolved(data, where, given)
            data = {key: value for key, value in data.items() if key not in variables}
    if path is not None:
        _set_environment(data.pop("env", None), where)
        sources.insert(0, (data, where))
    spelled: dict[str, str] = {}  # a value's option as the source that set it last wrote it
    meant: dict[str, Any] = {}  # the options refused keys stand for (cls.meant)
    for given, where in sources:
        usable, error = translate_usable(cls, given, names, where)
        meant |= cls.meant(given) if error else {}  # type: ignore[attr-defined]
        renamed = cls.spellings(given, where)  # type: ignore[attr-defined]
        spelled = {k: v for k, v in spelled.items() if k not in usable} | renamed
        values.update(usable)
        refused += [error] if error else []
    # refused, the config is built for its refusal alone: with the options refused names
    # stand for, so that it says their rows too
    meant = {key: value for key, value in meant.items() if key not in values and refused}
    try:
        built = cls(**meant, **values)
    except ConfigError as error:
        raise ConfigErrors.joined([*refused, respelled(error, spelled)]) from None
    if refused:
        raise beside_refusal(ConfigErrors.joined(refused), built)
    return built


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
        raise ConfigError(f"{path}: env must be a mapping of VARIABLE: value, got {env!r}")
    # as a shell's export reads it (TRL sets the text: DIRECTPO_CACHE: $HOME/c made a folder
    # named $HOME); an earlier key's value is read by a later one, as in a shell; none is set
    # unless all can be
    environ = dict(os.environ)
    for key, value in env.items():
        if "${" in str((written or {}).get(key, "")):  # ${oc.env:KEY}'s value is not read
            environ[str(key)] = str(value)  # again (a shell reads "$KEY" once: a token's $)
            continue
        if unset := unset_variables(str(value), environ):
            raise ConfigError(f"{path}: env: {_unset_said(str(key), unset)}")
        environ[str(key)] = shell_expanded(str(value), environ)
    os.environ.update({str(key): environ[str(key)] for key in env})


def _unset_said(key: str, unset: list[str]) -> str:
    names = ", ".join(dict.fromkeys(unset))
    return (
        f"{key}: {names} {'is' if len(unset) == 1 else 'are'} not set (a shell would read "
        "it as empty): set it, or write \\$ for a $ of the text itself"
    )


def _meant_file(path: str) -> str:
    """A config file of a close name beside the one not found (recipe.yml for recipe.yaml)."""
    folder, name = os.path.split(path)
    with contextlib.suppress(OSError):
        present = [
            entry
            for entry in os.listdir(folder or ".")
            if entry.lower().endswith((".yaml", ".yml", ".json"))
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
        raise ConfigError(f"{path}:{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option: value, got {type(data).__name__}")
    data = {str(k): v for k, v in data.items()}
    return resolved(data, path) if interpolate else data


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


def _check_known(key: str, what: str, names: list[str], instead: str | None = None) -> None:
    if key not in names:
        hint = unknown_hint(key, names, flag="")
        raise ConfigError(f"{what} '{key}' is unknown{f'; {instead}' if instead else hint}")
