"""An option's value converted to its field's type (a YAML value, a flag's text or a Python
value: numpy scalars, enums, paths), or a one-line ConfigError naming the option and the value.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import math
import os
import re
import secrets
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from directpo.callers import Spelling, caller, spell_setting
from directpo.errors import ConfigError

# the numbers YAML 1.1 (PyYAML) reads as text: an exponent without a dot (1e-6, 5E-7)
EXPONENT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def exponent_numbers(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with each text YAML 1.1 left of a number (``min_lr: 1e-6``) as that number:
    a mapping option's values are passed on as read, and a schedule divided by the text."""
    return {
        key: float(value) if isinstance(value, str) and EXPONENT_TEXT.fullmatch(value) else value
        for key, value in values.items()
    }


_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _yaml_boolean(value: Any) -> str:
    """What a boolean given for a word may be: YAML 1.1's reading of a bare ``no`` / ``off``
    (``report_to: no`` was refused as 'got False', the word written nowhere said)."""
    if not isinstance(value, bool) or _from_python():  # (a Python True was no YAML's reading)
        return ""
    words = "yes, on or true" if value else "no, off or false"
    first = words.split(",")[0]
    return f" (YAML reads a bare {words} as a boolean: quote the word meant, e.g. '{first}')"


# a list of words whose weights another option holds, in its order (TRL's loss_weights)
WEIGHTS_OPTION = {"loss_type": ("loss_weights", "losses")}


# name:value, a word and a colon without a space: not a URL's scheme (s3://...) nor a
# drive letter (C:/data), which are one path YAML read as a set of one; a name before an
# absolute path ({chat:/data/a.jsonl}, a cluster's usual file) is the slip too: it was
# refused as a set name 'chat:/data/a.jsonl', the space it lacked said nowhere
JOINED = re.compile(r"(?![A-Za-z]:[/\\])[A-Za-z_][\w-]*:(?!//)\S")


def _joined(name: Any, item: Any) -> bool:
    return item is None and isinstance(name, str) and JOINED.match(name) is not None


def respaced(value: Any) -> Any:
    """``value`` with each name:value YAML read as one name (no space after the colon) split
    as meant ({'sigmoid:1.0': None} is {'sigmoid': 1.0}); other values as they are."""
    if not isinstance(value, Mapping):
        return value
    split = {}
    for name, item in value.items():
        if _joined(name, item):
            name, _, text = name.partition(":")
            with contextlib.suppress(yaml.YAMLError):
                item = yaml.safe_load(text)
        split[name] = item
    return split


def unspaced_colon(key: str, value: Any) -> str | None:
    """A flow mapping written without the space after a colon ({chat:a.jsonl}, as JSON-minded
    users and shells write it): YAML reads each name:value as one name of no value, which was
    refused as a set name 'chat:a.jsonl' (or a loss 'sigmoid:1.0' weighted None); the line
    says where the space goes."""
    if not isinstance(value, Mapping):
        return None
    joined = [name for name, item in value.items() if _joined(name, item)]
    if not joined:
        return None
    spaced = ", ".join(k.replace(":", ": ", 1) for k in joined)
    return (
        f"{key}: {{{', '.join(joined)}}} has no space after a colon (YAML reads "
        f"{joined[0]} as one name with no value): write {{{spaced}}}"
    )


def word_refusal(key: str, value: Any, must: str, words: tuple[str, ...]) -> str:
    """The refusal of a word option (or a list of words) given a value of another type, naming
    the words it takes in the same line: what YAML 1.1 read as a boolean or null (a bare
    ``off``, ``no``, ``~`` or nothing) is said so; the line that said to quote the word meant
    ('must be a list, got None' for loss_type) led to a second refusal listing them."""
    if isinstance(value, str) and value.strip().lower() in ("null", "~"):
        value = None  # the flag's text (--loss_type null): what YAML's null is
    if isinstance(value, bool | None) and _from_python():  # (no YAML read it: True, None)
        read = repr(value)
    elif value is None:
        # (a Python caller's None, e.g. TRL's report_to=None, was told only of YAML's null)
        read = "null / None: YAML reads a bare null, ~ or an empty value as none"
    elif isinstance(value, bool):
        bare = "yes, on or true" if value else "no, off or false"
        read = f"{str(value).lower()}: YAML reads a bare {bare} as a boolean"
    else:
        read = value_shown(value)
    weights, named = WEIGHTS_OPTION.get(key, (None, ""))
    if weights and isinstance(value, str) and value.strip().startswith("{"):
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)  # the flag's --loss_type '{sigmoid: 1.0}'
    if weights and (said := unspaced_colon(key, value)):
        value = respaced(value)  # ({sigmoid:1.0}: its loss and weight, said as below)
        if not all(isinstance(name, str) for name in value):
            return said
    if weights and isinstance(value, Mapping) and value:  # {sigmoid: 1.0, sft: 0.5}
        # refused, not translated: the weights are their own option, which may be set too
        return (
            f"{key}: {as_yaml(dict(value))} maps {named} to weights: write {key}: "
            f"{as_yaml(list(value))} and {weights}: {as_yaml(list(value.values()))}"
        )
    write = "one of these words" if must == "one of" else "one, or a list of several"
    return f"{key} must be {must} {', '.join(words)} (got {read}; write {write})"


def _mapping_hint(key: str) -> str:
    """What a mapping option holds, for its refusal: ``dataset_mixture: 5`` or a hub id was
    'must be a mapping', its shape (the alignment-handbook's) said nowhere."""
    if key == "dataset_mixture":
        return (
            " ({datasets: [{id: a hub id or file, weight: 1.0}, ...]}, the alignment-handbook's; "
            "one dataset: dataset_name or train_file)"
        )
    return ""


def as_yaml(value: Any) -> str:
    """``value`` in a message as the user writes it, in YAML (``true``, ``null``, ``[a, b]``,
    ``{use_reentrant: true}``; a flag's text is YAML too): Python's spelling (``True``,
    ``None``, ``{'foo': 1}``) is no value they wrote, nor one they could write back. A string
    is bare where YAML reads it back as the same string, quoted where it would not ('yes',
    '5'). The one spelling of values in messages: trl_compat and the refusals here use it."""
    value = list(value) if isinstance(value, tuple) else value
    dump = functools.partial(
        yaml.dump,
        Dumper=_OneLineDumper,
        default_flow_style=True,
        width=1 << 16,
        sort_keys=False,
        allow_unicode=True,
    )  # (allow_unicode: a name in ü was said "\xFC")
    try:
        text = dump(value).removesuffix("\n").removesuffix("\n...").strip()
        if "\n" in text:  # (a break YAML writes bare all the same: every scalar quoted)
            text = dump(value, default_style='"').removesuffix("\n").removesuffix("\n...")
    except yaml.YAMLError:  # (an object no YAML writes: a Python call's own value)
        return repr(value)
    return text.strip()


class _OneLineDumper(yaml.SafeDumper):
    """A string of several lines in double quotes, its breaks written \\n (YAML's plain or
    single-quoted style breaks the line): the string alone, so that the numbers, switches and
    nulls beside it in a list or mapping stay as written (quoting every scalar said
    {"a": "x\\ny", "b": !!int "1"}, tags nobody wrote)."""


def _one_line_string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(brk in text for brk in "\n\r\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_OneLineDumper.add_representer(str, _one_line_string)


# the most characters of a value (or a list of words) said in a one-line refusal
SHOWN_CHARACTERS = 80


def shortened(text: str) -> str:
    """``text`` as a refusal's line says a value: whole up to SHOWN_CHARACTERS, else its start
    and '...' (a list of fifty words ran the line to a screenful)."""
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return text[: SHOWN_CHARACTERS - 3] + "..."


def value_shown(value: Any) -> str:
    """``value`` in an error's one line: short values as YAML writes them (as_yaml: the
    recipe's or flag's dtype: [bfloat16] was "got ['bfloat16']", loss_weights: true "got
    True"), an object by its class (a model's repr runs to hundreds of lines)."""
    if isinstance(value, float):  # -1e-05 as written: YAML 1.1's dump adds a .0 (-1.0e-05)
        return repr(float(value))  # (numpy's float64 is a float: 'np.float64(-1.0)' was said)
    if isinstance(value, bool | None) and _from_python():  # (DPOConfig(x=True): not 'true')
        return repr(value)
    if isinstance(value, str | int | float | bool | list | tuple | dict | type(None)):
        return shortened(" ".join(as_yaml(value).split()))
    if isinstance(value, type):  # (optimizer=torch.optim.AdamW was 'a builtins.type object')
        return f"the class {value.__module__}.{value.__qualname__}"
    return f"a {type(value).__module__}.{type(value).__qualname__} object"


def words_shown(given: Any, read: Any, key: str) -> str:
    """A list option's words as the caller gave them (``given``, before they were read into
    the list ``read``): ``ipoo`` for a recipe's or flag's one word and ``'ipoo'`` for
    Python's, where all were told the list read, ``[ipoo]``; a list as written
    (callers.spell_list: ``[a, b]``, a flag's ``a,b`` or ``a b`` as typed, Python's ``['a',
    'b']``). Anything else as value_shown says ``read``."""
    from directpo.callers import spell_list

    words = [given] if isinstance(given, str) else given
    if not isinstance(words, list | tuple) or not all(isinstance(w, str) for w in words):
        return value_shown(read)
    return shortened(" ".join(spell_list(key, given).split()))


def typed_shown(value: Any) -> str:
    """``value`` as value_shown says it, but a number made text (a flag's --max_steps 2.5, or
    YAML's dtype: 16 read into a word option) as typed: quoted as the text YAML would read as
    a number ('2.5', '16'), it named a string nobody wrote."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            float(value.strip())
            return value.strip()
        with contextlib.suppress(yaml.YAMLError):  # (YAML's other numbers: --beta 0x10 was
            read = yaml.safe_load(value)  # "got '0x10'", quotes nobody typed)
            if isinstance(read, int | float) and not isinstance(read, bool):
                return value.strip()
    return value_shown(value)


def _switch_word(value: Any) -> str | None:
    """A flag's switch word given a number option (--max_steps true, --save_steps false), to
    be said as YAML's boolean is ('got true: a number, not a switch'): it was "got 'true'"."""
    if isinstance(value, bool):
        return repr(value) if _from_python() else str(value).lower()
    if isinstance(value, str) and value.strip().lower() in (_TRUE | _FALSE) - {"0", "1"}:
        return value.strip().lower()
    return None


def _from_python() -> bool:
    """Whether the values said were a Python call's (``True``, ``None``), not a recipe's or
    flags' text, which YAML read (``true``, ``null``)."""
    return caller().spelling is Spelling.PYTHON


def _unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null"))


def _null_seed(key: str) -> str:
    """torchtune's ``seed: null`` (a random seed, another each run) as the integer to write,
    for the options that do not draw one (generate's seed, whose partial output a rerun
    continues with the same seed; train's seed is drawn at its start: resume.run_seed)."""
    drawn = secrets.randbelow(2**31)
    return (
        f"{key} must be an integer; null (torchtune's: a random seed, another each run) is not "
        f"read here: {spell_setting((key, drawn))} (drawn now), "
        "which a rerun and a resume take again"
    )


# datasets' split names, as load_dataset("json", data_files={train: ..., test: ...}) takes
# them and TRL scripts pass them: the held-out ones are eval_file's
DATA_FILES_HELD_OUT = ("test", "validation")


def data_files_said(key: str, value: Mapping) -> str | None:
    """A ``data_files`` mapping given as train_file / eval_file ({train: a.jsonl, test:
    c.jsonl}): what to write instead, or None where ``value`` names no train split. Refused,
    not translated: the splits are two options, and an eval_file already set (or eval sets
    named train) would be replaced silently; one line names both to write."""
    if "train" not in value:
        return None
    write = [f"train_file: {as_yaml(value['train'])}"]
    held = {name: paths for name, paths in value.items() if name != "train"}
    if len(held) == 1:
        write.append(f"eval_file: {as_yaml(next(iter(held.values())))}")
    elif held:  # several held-out splits: eval_file's named sets, each logged apart
        sets = ", ".join(f"{name}: {as_yaml(paths)}" for name, paths in held.items())
        write.append(f"eval_file: {{{sets}}}")
    return (
        f"{key}: {as_yaml(dict(value))} is datasets' data_files mapping (splits by name): write "
        + " and ".join(write)
    )


def _named_paths(key: str, value: Mapping) -> dict[str, Any]:
    """Named sets of files ({chat: a.jsonl, code: [b.jsonl, c.jsonl]}): a name becomes part of
    metric names (eval/chat_loss), so it is a plain word."""
    if not value:
        raise ConfigError(f"{key} must name at least one set")
    if said := unspaced_colon(key, value):
        raise ConfigError(data_files_said(key, respaced(value)) or said)
    said = data_files_said(key, value)  # (eval/train_loss would read as the training loss)
    if said is not None:
        raise ConfigError(said)
    for name in value:
        if not (isinstance(name, str) and name.replace("-", "_").isidentifier()):
            raise ConfigError(
                f"{key}: set name {value_shown(name)} must be a word of letters, digits, _ or - "
                "(it becomes part of metric names: eval/<name>_loss)"
            )
    return {name: coerce(f"{key}.{name}", paths, str | list[str]) for name, paths in value.items()}


# the options whose value names a dtype (DPOConfig's; score / rank / generate's dtype)
DTYPE_OPTIONS = frozenset(
    {
        "dtype",
        "master_weights",
        "save_dtype",
        "eval_dtype",
        "bnb_4bit_compute_dtype",
        "bnb_4bit_quant_storage",
    }
)


def _is_torch_dtype(value: Any) -> bool:
    """A ``torch.dtype`` (torch.bfloat16), told without importing torch here."""
    return type(value).__module__ == "torch" and type(value).__name__ == "dtype"


def _plain(value: Any) -> Any:
    """A mapping option's value with a Python caller's objects in it as the values they stand
    for: a pathlib.Path its text, a numpy scalar its number, an enum its value, a torch.device
    its name. Kept, they stopped the run with YAML's traceback when its config.yaml was written
    (model_init_kwargs={"cache_dir": Path(...)}, lr_scheduler_kwargs={"power": np.float64(2)})."""
    if isinstance(value, enum.Enum):
        value = value.value
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if type(value).__module__ == "torch" and type(value).__name__ == "device":
        return str(value)  # (device_map={"": torch.device("cuda:1")}: "cuda:1", as written)
    if isinstance(value, Mapping):
        return {_plain(name): _plain(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Convert `value` (from YAML, a flag string or Python) to the field's type, or fail."""
    value = _as_python(key, value)
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            return None
        args = tuple(a for a in args if a is not type(None))
        if len(args) == 1:
            (hint,) = args
    if set(args) == {str, list[str], dict[str, str | list[str]]}:  # eval_file: {chat: a.jsonl}
        if isinstance(value, str) and value.strip().startswith("{"):
            with contextlib.suppress(yaml.YAMLError):
                value = yaml.safe_load(value)  # a flag: a YAML flow mapping
        if isinstance(value, Mapping):
            return _named_paths(key, value)
        args = (str, list[str])
    if set(args) == {str, list[str]}:  # one path or several (train_file: [a.jsonl, b.parquet])
        return _coerce_paths(key, value)
    if hint is dict or typing.get_origin(hint) is dict:
        return _coerce_mapping(key, value)
    if typing.get_origin(hint) is list:
        return _coerce_list(key, value, hint)
    if hint is bool:
        return _coerce_bool(key, value)
    if hint is int:
        return _coerce_int(key, value)
    if hint is float:
        return _coerce_float(key, value)
    if hint is str:
        return _coerce_str(key, value)
    raise TypeError(f"unsupported option type for {key}: {hint}")  # programming error


def _as_python(key: str, value: Any) -> Any:
    """A value as plain Python: an enum's value, a numpy / torch scalar's, a torch dtype's
    name for the dtype options."""
    if isinstance(value, enum.Enum):  # a TRL script's IntervalStrategy.STEPS, SchedulerType...:
        value = value.value  # its value (the enum itself compares equal, but cannot be saved)
    if type(value).__module__ in ("numpy", "torch") and hasattr(value, "tolist"):
        # a notebook's sweep over np.arange / np.logspace / a DataFrame's column gives numpy
        # scalars ("max_steps must be an integer, got a numpy.int64 object"): their values
        value = value.tolist()
    if key in DTYPE_OPTIONS and _is_torch_dtype(value):
        # from_pretrained(dtype=torch.bfloat16)'s spelling, which transformers takes: it was
        # "dtype must be a string, got a torch.dtype object" (the name is what config.yaml keeps)
        value = str(value).removeprefix("torch.")
    return value


def _coerce_paths(key: str, value: Any) -> str | list[str]:
    """One path or several (train_file: [a.jsonl, b.parquet])."""
    if isinstance(value, str) and value.strip().startswith(("[", "{")):
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)  # a flag: a YAML flow list (or a mapping, told)
    if isinstance(value, list | tuple):
        if not value:
            raise ConfigError(f"{key} must name at least one file")
        return [coerce(key, v, str) for v in value]
    if said := unspaced_colon(key, value):  # ({train:a.jsonl}: the options, said at once)
        raise ConfigError(data_files_said(key, respaced(value)) or said)
    if isinstance(value, Mapping) and data_files_said(key, value):
        raise ConfigError(data_files_said(key, value))  # (was 'a file or a list of files')
    if isinstance(value, bool | dict):  # (was 'must be a string', no file said)
        named = " (named sets are eval_file's)" if isinstance(value, dict) else ""
        raise ConfigError(
            f"{key} must be a file or a list of files, got {value_shown(value)}"
            f"{_yaml_boolean(value)}{named}"
        )
    return coerce(key, value, str)


def _coerce_mapping(key: str, value: Any) -> dict:
    """A mapping option: a dict, or a flag's JSON / YAML flow mapping."""
    if isinstance(value, str):
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)  # a flag: JSON or YAML flow mapping
    if said := unspaced_colon(key, value):
        raise ConfigError(said)
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {value_shown(value)}{_mapping_hint(key)}")
    return _plain(dict(value))


def comma_words(text: str) -> list[str]:
    """The comma-separated words of ``text``; a comma inside brackets (an escaped bracket, \\{,
    is none) is a word's own: lora_target_modules' one regex, '.*\\.layers\\.[0-9]{1,2}\\.q_proj'
    (peft's string, as typed for a flag or a YAML string), was cut at its {1,2} into two halves,
    then refused as a regex beside a name. A name of a module, a loss or a file has no brackets."""
    words, depth, start, escaped = [], 0, 0, False
    for at, character in enumerate(text):
        if escaped:
            escaped = False
        elif character == "\\":
            escaped = True
        elif character in "([{":
            depth += 1
        elif character in ")]}":
            depth = max(depth - 1, 0)
        elif character == "," and not depth:
            words.append(text[start:at])
            start = at + 1
    words.append(text[start:])
    return [word.strip() for word in words if word.strip()]


def _coerce_list(key: str, value: Any, hint: Any) -> list:
    """A list option: a list, a flag's YAML flow list or comma-separated words."""
    if isinstance(value, str) and value.strip().startswith(("[", "{")):
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.safe_load(value)  # a flag: a YAML flow list, as the help shows
            # (a flow mapping is refused as one, not split at its commas into words)
    (item,) = typing.get_args(hint)
    if isinstance(value, str) and value.strip().lower() in ("null", "~"):
        value = None  # the flag's --loss_type null, as YAML's null (was "got ['null']")
    if isinstance(value, str):
        value = comma_words(value)
    if item in (int, float) and isinstance(value, int | float) and not isinstance(value, bool):
        value = [value]  # (YAML's loss_weights: 1.0 was 'must be a list', the flag's taken)
    if not isinstance(value, list | tuple):
        numbers = item in (int, float)  # (whose YAML true is no word to quote)
        read = "" if numbers else _yaml_boolean(value)
        raise ConfigError(
            f"{key} must be a list of {'numbers' if numbers else 'names'} (a YAML list, or "
            f"comma-separated: a,b), got {value_shown(value)}{read}"
        )
    return [coerce(key, v, item) for v in value]


def _coerce_bool(key: str, value: Any) -> bool:
    """A switch: true / false (and the words YAML and flags spell them with)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(f"{key} must be true or false, got {value_shown(value)}")


def _coerce_int(key: str, value: Any) -> int:
    """An integer: a whole number however YAML, a flag or Python gives it."""
    if _unset(value) and (key == "seed" or key.endswith("_seed")):
        raise ConfigError(_null_seed(key))
    if switch := _switch_word(value):  # (eval_generate: true, for a count of prompts)
        raise ConfigError(f"{key} must be an integer, got {switch}: a number, not a switch")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return int(value.strip())
        # a whole number as YAML or Python give it (2.0, 1e3) is one as a flag's text too
        # (--max_steps 1e3 and --per_device_train_batch_size 2.0 were refused)
        with contextlib.suppress(ValueError, OverflowError):
            number = float(value.strip())
            if number.is_integer():
                return int(number)
    # (a recipe's max_steps: 1_0.5 or 2.5e+3 was said 'got 10.5', a text not in the file, as
    # the float options said their numbers before: said as written)
    raise ConfigError(
        f"{key} must be an integer, got {number_written(key, value) or typed_shown(value)}"
    )


# a recipe's numbers as its text writes them (option_loading.number_texts), while its options
# are built: a refusal says 'got .inf', 'got -1_0', which were said 'inf', '-10'
_NUMBER_TEXTS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "number_texts", default=None
)


@contextlib.contextmanager
def numbers_written(texts: dict[str, str]) -> Iterator[None]:
    """Options built inside say ``texts`` (option: a recipe's text) for the numbers they read."""
    token = _NUMBER_TEXTS.set(texts)
    try:
        yield
    finally:
        _NUMBER_TEXTS.reset(token)


def number_written(key: str, read: Any) -> str | None:
    """``key``'s number as the recipe wrote it, where it is the number ``read``; else None."""
    text = (_NUMBER_TEXTS.get() or {}).get(key)
    if text is not None and isinstance(read, list):  # (loss_weights: [1e-1, -2e0])
        with contextlib.suppress(yaml.YAMLError, ValueError, TypeError):
            written = [float(item) for item in yaml.safe_load(text)]
            return text if written == [float(item) for item in read] else None
        return None
    if text is None or isinstance(read, bool) or not isinstance(read, int | float):
        return None
    with contextlib.suppress(yaml.YAMLError):
        written = yaml.safe_load(text)
        same = written == read or (written != written and read != read)  # (.nan is no .nan)
        return text if same else None
    return None


def _coerce_float(key: str, value: Any) -> float:
    """A finite number (YAML's 1e-5, a string, read as the number it means)."""
    if switch := _switch_word(value):  # (YAML's false, or the flag's --save_steps false)
        raise ConfigError(f"{key} must be a number, got {switch}: not a switch")
    number = None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        # YAML reads 1e-5 (no dot) as a string: accept it as the number it means
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        shown = number_written(key, value) or typed_shown(value)  # (a recipe's .inf: 'inf')
        raise ConfigError(f"{key} must be a finite number, got {shown}")
    return number


def _coerce_str(key: str, value: Any) -> str:
    """A string: a path, or a number written back as given."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):  # a pathlib.Path from Python
        return os.fspath(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if hasattr(value, "save_pretrained"):  # a model or tokenizer object, as TRL takes
        raise ConfigError(
            f"{key} takes a folder or hub id, got {value_shown(value)}: save it first "
            "(obj.save_pretrained('folder'), and its tokenizer there too) and pass 'folder'"
        )
    raise ConfigError(f"{key} must be a string, got {value_shown(value)}{_yaml_boolean(value)}")
