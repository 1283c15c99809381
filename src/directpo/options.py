"""Typed options: dataclass fields that carry their default and help, loaded from YAML/flags.

Every options class (``DPOConfig`` and the per-command ones) is a dataclass of ``option()``
fields deriving from ``Options``: values are coerced to the annotated type when the object is
built and then checked by ``_check_values``; a problem is a one-line ``ConfigError`` naming the
key. The CLI builds each command's flags and ``--help`` from the same fields. Reading them
from a YAML file and flags is ``option_loading``'s; ``~`` and ``$NAME`` in paths,
``shell_expansion``'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from directpo.callers import (
    Advice,
    Caller,
    Entry,
    Spelling,
    advice_text,
    called_by,
    said,
    setting_verb,
    source_spelling,
    spell_given,
    spell_list,
    spell_name,
    written_as,
)
from directpo.errors import ConfigError, ConfigErrors
from directpo.option_hints import NO_VALUE, meant_choice, unknown_hint
from directpo.option_values import coerce as _coerce
from directpo.option_values import (
    number_written,
    typed_shown,
    value_shown,
    word_refusal,
    words_shown,
)
from directpo.shell_expansion import home_expanded, unset_said, unset_variables
from directpo.yaml_interpolation import escaped

T = typing.TypeVar("T", bound="Options")


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


# options built in Python where no entry named a caller (DPOConfig(lora_alpha=64) in a
# notebook): their refusals say what to pass (lora_r=16), not a recipe's key; the CLI, train()
# and load_config (a recipe) name theirs first, which is kept
BUILT_IN_PYTHON = Caller(Spelling.PYTHON, Entry.TRAIN)


def as_built(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` of an options object called by its class's ``BUILT_BY`` where no entry named
    a caller (ScoreOptions(...) in a notebook: score's keywords, not train's nor the flags'),
    which the object keeps as ``_built_by`` for the command it is given to (score_file)."""

    @functools.wraps(method)
    def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
        with called_by(type(self).BUILT_BY) as who:
            object.__setattr__(self, "_built_by", who)
            return method(self, *args, **kwargs)

    return wrapped


class Options:
    """Base of the options dataclasses: coercion on construction, then ``_check_values``."""

    # the options naming local files or folders: their ``~`` is expanded on construction
    PATH_KEYS: typing.ClassVar[tuple[str, ...]] = ()
    # other tools' names for what an option here does (transformers' generate() arguments),
    # each with what to give instead: said where the name is refused as unknown
    FOREIGN_KEYS: typing.ClassVar[dict[str, Advice]] = {}
    # who builds them where no entry named a caller (as_built): train's keywords here
    BUILT_BY: typing.ClassVar[Caller] = BUILT_IN_PYTHON

    @as_built
    def __post_init__(self) -> None:
        # every wrong value is reported at once: a user fixing a config file one error per run
        # would otherwise need as many runs as mistakes
        hints = type_hints(type(self))
        problems: list[str] = []
        untyped: set[str] = set()  # options whose value is not of their type
        wrong_type: dict[str, tuple[int, Any]] = {}  # each such option's line and value
        given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
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
                problems.append(unset_said(key, unset))
                untyped.add(key)  # (its other checks would read the unexpanded text)
                setattr(self, key, _default(self.__dataclass_fields__[key]))
            elif home_expanded(getattr(self, key)) != getattr(self, key):
                setattr(self, key, home_expanded(getattr(self, key)))
        checked: list[str] = []
        self._problems: list[str] | None = checked
        self._refused: set[str] = set(untyped)
        # each word option's words (_one_of), with 'one of' or 'one or more of' for a list
        self._words: dict[str, tuple[str, tuple[str, ...]]] = {}
        # each value as given, before its coercion (given_value): a list option's one word
        # was said as the list it was read into, 'got [ipoo]' for loss_type: ipoo
        self._given: dict[str, Any] = given
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
            del self.__dict__["_given"]
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
            if not name.startswith("_") and (passed := options_passed(self)) is not None:
                object.__setattr__(self, "_options_passed", passed | {name})  # (once built)
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
        unknown: list[ConfigError] = []  # every one said at once (ScoreOptions(bta=, gamma=)
        # said bta alone, gamma a run later), as DPOConfig's and the flags' are
        with written_as(source_spelling(where)):  # (a foreign key's advice in its words)
            for key in values:
                instead = cls.FOREIGN_KEYS.get(key)
                try:
                    advice = advice_text(instead) if instead else None
                    _check_known(key, label, names, advice, values[key])
                except ConfigError as error:
                    unknown.append(error)
        if unknown:
            raise ConfigErrors.joined(unknown)
        return values

    def _require(self, ok: bool, key: str, must: str) -> None:
        """Refuses ``key``'s value unless ``ok``; while the values are checked at construction,
        the refusal is collected and the checks go on."""
        if not ok:
            got = f" (got {self._shown(key)})"
            problems = getattr(self, "_problems", None) or []
            for at, earlier in enumerate(problems):  # (one option's two limits: one line, not
                # '2 options cannot be used' of one; --loss_weights 1 -2 beside one loss)
                if earlier.startswith(f"{key} must be ") and earlier.endswith(got):
                    problems[at] = f"{earlier.removesuffix(got)} and {must}{got}"
                    return
            self._refuse(key, f"{key} must be {must}{got}")

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

    def _shown(self, key: str) -> str:
        """``key``'s value in a refusal: a number as the caller wrote it where that is at hand
        (while constructed), ``--beta -1``'s text or a recipe's ``beta: -1``, which were said
        as the float read from them ('got -1.0', a value nobody wrote); else as read."""
        read, given = getattr(self, key), self._given_value(key)
        if _numbers(read):  # (loss_weights: --loss_weights -1 was 'got [-1.0]')
            return number_written(key, read) or _numbers_shown(given, read, key)
        if isinstance(read, list) and read and all(isinstance(word, str) for word in read):
            # (loss_type's repeat was '[sigmoid, sigmoid]' to a flag's and Python's user too)
            return words_shown(given, read, key)
        if isinstance(read, bool) or not isinstance(read, int | float):
            return value_shown(read)
        if isinstance(given, str):  # a flag's text (or YAML 1.1's 1e-5, read as a string)
            with contextlib.suppress(ValueError):
                if float(given.strip()) == read:
                    return given.strip()
        elif isinstance(given, int | float) and not isinstance(given, bool) and given == read:
            return number_written(key, read) or value_shown(given)  # (-1_0 was '-10')
        return value_shown(read)

    def _given_value(self, key: str) -> Any:
        """``key``'s value as the caller gave it (a flag's text, a recipe's word for a list),
        while the config is constructed; its value as read after."""
        return getattr(self, "_given", {}).get(key, getattr(self, key))

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
        if isinstance(value, str) and value.strip().startswith(("[", "{")):
            # the flag's --dtype [bfloat16], a YAML list as the recipe's is: refused as that
            # list is (was "got '[bfloat16]'", quoted, a string the user never wrote)
            with contextlib.suppress(yaml.YAMLError):
                if not isinstance(read := yaml.safe_load(value), str):
                    return self._refuse(key, word_refusal(key, read, "one of", choices))
        meant = meant_choice(value, choices)  # (--dtype bf16 was told the list alone)
        if meant is None and str(value).isdigit():  # (dtype: 16, YAML's number: bfloat16)
            meant = next((choice for choice in choices if choice.endswith(str(value))), None)
        hint = f"; did you mean {meant}?" if meant else ""
        self._refuse(
            key, f"{key} must be one of {', '.join(choices)} (got {typed_shown(value)}){hint}"
        )

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
                f"{said(samples_key, self._given_value(samples_key))} needs sampling, but "
                f"{self._greedy(temperature_key)} (greedy decoding gives each prompt one "
                f"completion); {_above_zero(temperature_key)}",
            )

    def _greedy(self, temperature_key: str) -> str:
        """A temperature of 0 as the caller gave it, after a refusal's 'but': ``temperature is
        0`` (a recipe's key), ``--temperature 0``, ``temperature=0.0`` (a recipe's words were
        said to every caller)."""
        given = spell_given(temperature_key, self._given_value(temperature_key))
        return f"{temperature_key} is 0" if given == temperature_key else given

    def _refuse_sampling_only(self, temperature_key: str, keys: tuple[str, ...]) -> None:
        """top_p, top_k and min_p choose which tokens may be drawn; greedy decoding (temperature
        0) takes the most likely token whatever they say (transformers only warns), so giving
        them beside it is refused rather than silently doing nothing."""
        if not self._valid(temperature_key, *keys) or getattr(self, temperature_key) != 0:
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        given = [  # (null is unset, as reject_if_set reads it)
            key for key in keys if getattr(self, key) not in (None, defaults[key])
        ]
        if given:
            named = [spell_given(key, self._given_value(key)) for key in given]
            self._refuse(
                given[0],
                f"{' and '.join(named)} only shape{'s' if len(given) == 1 else ''} sampling, "
                f"but {self._greedy(temperature_key)} (greedy decoding takes the most likely "
                f"token); drop {'it' if len(given) == 1 else 'them'} or "
                f"{_above_zero(temperature_key)}",
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    def save_yaml(self, path: str | Path, header: str = "", **replaced: Any) -> None:
        """Every option as a YAML mapping (``replaced``: values written instead of the own),
        each text escaped where it holds ``${``, so that reading the file gives it back;
        ``header`` (comment lines) first. Written whole or not at all (``replace_text``)."""
        values = escaped({**self.to_dict(), **replaced})
        replace_text(Path(path), header + yaml.safe_dump(values, sort_keys=False))


def replace_text(path: Path, text: str) -> None:
    """``path`` holds ``text`` afterwards, or what it held before: written to a hidden file
    beside it, flushed to disk, then renamed over it. A run's config.yaml is rewritten in
    place when it resumes (the file the user resumes from): written directly, a kill or a
    full disk mid-write left it empty or cut short, the run's recipe lost. An OSError
    propagates (the caller says it), the hidden file removed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def options_passed(options: Options) -> frozenset[str] | None:
    """The options that its caller gave (a keyword, a recipe's key, a flag, an attribute set
    after it was built), its default's value too: ``lora_target_modules: all-linear`` written
    is a choice, the same value unwritten directpo's default (start_notes' use_peft line said
    TRL would train otherwise to a recipe that wrote it). None where not known."""
    return options.__dict__.get("_options_passed")


def replaced(options: T, **changes: Any) -> T:
    """``dataclasses.replace(options, **changes)`` knowing which options were given, as
    ``options`` did, and ``changes``: replace gives the constructor every field."""
    rebuilt = dataclasses.replace(options, **changes)  # type: ignore[type-var]
    if (passed := options_passed(options)) is not None:
        object.__setattr__(rebuilt, "_options_passed", passed | set(changes))
    return rebuilt


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def names_any(line: str, keys: set[str]) -> bool:
    """Whether ``line`` names one of ``keys`` as a word (not inside another option's name)."""
    return any(re.search(rf"(?<![\w.]){re.escape(key)}(?!\w)", line) for key in keys)


def reject_if_set(config: Options, keys: tuple[str, ...], reason: str) -> None:
    """An option that would silently do nothing is refused instead. Null is unset, whatever
    the default: lora_target_modules: null (peft's choice, default [all-linear]) beside lora_r
    0 asks for nothing, and was refused as 'set' for differing from the default."""
    for field_ in dataclasses.fields(config):  # type: ignore[arg-type]
        if field_.name in keys and getattr(config, field_.name) is not None:
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


def _check_known(
    key: str, what: str, names: list[str], instead: str | None = None, value: Any = NO_VALUE
) -> None:
    if key not in names:
        hint = unknown_hint(key, names, flag="", value=value)
        raise ConfigError(f"{what} '{key}' is unknown{f'; {instead}' if instead else hint}")


def _above_zero(temperature_key: str) -> str:
    """The fix of greedy decoding, as the caller sets options: ``set temperature above 0``,
    ``give --temperature above 0``, ``pass temperature=... above 0`` (a recipe's 'set
    temperature > 0' was said to every caller)."""
    return f"{setting_verb()} {spell_name(temperature_key)} above 0"


def _numbers(value: Any) -> bool:
    """``value`` is a non-empty list of numbers (loss_weights read)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _numbers_shown(given: Any, read: list[float], key: str) -> str:
    """A list of numbers as the caller wrote it where it is what was read: a flag's text
    (``-1``, ``1,-1``), a recipe's ``[1, -1]``; else the list read."""
    if isinstance(given, str):
        with contextlib.suppress(ValueError):
            words = given.strip().strip("[]").split(",")
            if [float(word) for word in words] == read:
                return given.strip()
    elif isinstance(given, list | tuple) and list(given) == read:
        return spell_list(key, given)  # (Python's (1, -1) as written: it was '[1, -1]')
    elif isinstance(given, list | tuple) and all(isinstance(word, str) for word in given):
        # a flag's words (--loss_weights 1 2), said as typed: it was '[1.0, 2.0]'
        with contextlib.suppress(ValueError):
            if [float(word) for word in given] == read:
                return " ".join(word.strip() for word in given)
    return value_shown(read)
