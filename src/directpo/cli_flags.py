"""A command's argv read as its options: the YAML file and the flags, their values, and the
one-line refusals and notes of what was typed.

Every option of a command's options dataclass is a flag; for train, a flag overrides the YAML
file. A flag given twice, or replacing a value of the YAML file, is said in a note (the last
flag wins). Every option but a boolean needs a value (``--output_dir`` alone is an error); a boolean
alone is true (``--bf16``). A list takes several values, comma-separated or one after another
(``--lora_target_modules q_proj,k_proj`` or ``--lora_target_modules q_proj k_proj``); so does a
list of data files (``--train_file a.jsonl,b.parquet``), except that a value naming an existing
path is one path even if it holds a comma. Dashes in a flag's name are underscores
(``--learning-rate``, ``--no-bf16``), as transformers' HfArgumentParser takes them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import re
import shlex
import typing
from collections.abc import Sequence
from typing import Any

from directpo.callers import Spelling, advice_text, written_as
from directpo.errors import ConfigError, ConfigErrors
from directpo.foreign_names import RENAMED, SAME_VALUE_AS, SEVERAL_VALUES
from directpo.option_hints import NO_VALUE, unknown_hint
from directpo.option_loading import CONFIG_ENDINGS, names_yaml, read_yaml
from directpo.option_paths import PATH_OPTIONS
from directpo.option_values import as_yaml, coerce, comma_words
from directpo.options import option_help, type_hints
from directpo.readers import DATA_ENDINGS
from directpo.trl_compat import ALIASES, VERSION_FLAGS, VERSION_HINT


def attach_negative_values(argv: Sequence[str], kinds: dict[str, str] | None = None) -> list[str]:
    """``--key -1e-5`` -> ``--key=-1e-5``: argparse reads a value that starts with '-' and is
    not a plain integer or decimal (``-1e-5``, ``-0.5,1``) as an unknown option. A flag of
    several values (``kinds``: a list's) is left as written: attached, its first value alone
    was its value (``--loss_weights -1 2`` read 2 as a stray argument; train's reader takes
    every value up to the next ``--key``, a negative one too)."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        key = previous[2:].replace("-", "_")
        several = (kinds or {}).get(ALIASES.get(key, key)) in (LIST, PATHS)
        if (
            NEGATIVE_VALUE.match(token)
            and previous.startswith("--")
            and "=" not in previous
            and not several
        ):
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def end_of_options(argv: Sequence[str], kinds: dict[str, str] | None = None) -> list[str]:
    """``argv`` without the ``--`` that ends the options, as argparse and POSIX tools read it
    (it was refused as "unknown option '--'"): what follows is positional (train's config
    file); an option after it is refused in one line, as argparse would not read it either,
    as is an option of ``kinds`` that takes a value written just before it (``--beta -- 0.2``
    was read as beta 0.2; argparse: "expected one argument")."""
    if "--" not in argv:
        return list(argv)
    at = list(argv).index("--")
    after = list(argv[at + 1 :])
    before = argv[at - 1] if at else ""
    name = ALIASES.get(key := before[2:].replace("-", "_"), key)
    # (a bare boolean before '--' is true, as argparse's; an unknown one is judged later)
    valued = before.startswith("--") and "=" not in before
    if after and valued and (kinds or {}).get(name, BOOLEAN) != BOOLEAN:
        raise ConfigError(
            f"{before} is given no value: '--' ends the options, so {after[0]} after it is "
            f"not read as its value: write {before} {after[0]} before '--' (or drop '--')"
        )
    flag = next((token for token in after if token.startswith("-")), None)
    if flag is not None:
        raise ConfigError(
            f"'--' ends the options, so {flag} after it is not read as one: put the options "
            "before '--' (or drop it)"
        )
    return [*argv[:at], *after]


def underscored(argv: Sequence[str]) -> list[str]:
    """``--learning-rate`` -> ``--learning_rate``, ``--no-bf16`` -> ``--no_bf16``: the dashed
    spellings transformers' HfArgumentParser takes too, which TRL's scripts write."""
    return [
        "--" + token[2:].partition("=")[0].replace("-", "_") + "".join(token.partition("=")[1:])
        if token.startswith("--") and len(token) > 2
        else token
        for token in argv
    ]


def launcher_rank_dropped(argv: Sequence[str]) -> list[str]:
    """``argv`` (underscored) without the ``--local_rank=N`` (or ``--local_rank N``) that the
    deepspeed launcher and torch.distributed.launch append to every process's command line:
    score / rank / generate refused it as an unknown option beside the launch's own line
    (train accepts it as TRL's local_rank, read from LOCAL_RANK as the launcher sets it)."""
    kept: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        name, equals, value = token.partition("=")
        if name != "--local_rank":
            kept.append(token)
        elif not equals:  # (its value the next word, where it is a rank)
            following = next(tokens, None)
            if following is not None and not following.lstrip("-").isdigit():
                kept.append(following)
    return kept


# dashes a word processor, a chat app or a web page makes of "--" (em, en, minus, ...)
TYPOGRAPHIC_DASH = re.compile(r"^[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]+-?([A-Za-z][\w-]*)(=.*)?$")


def typographic_dashes(tokens: Sequence[str], names: set[str]) -> str | None:
    """The line for flags written with a typographic dash (``—beta 0.1``, pasted from a page
    that turned ``--`` into an em dash), or None: each was read as the YAML file ('config
    file not found: —beta') or as an unexpected argument, its value said as another."""
    found = []
    for token in tokens:
        match = TYPOGRAPHIC_DASH.match(token)
        if match and match.group(1).replace("-", "_") in names:
            found.append((token.split("=", 1)[0], "--" + match.group(1).replace("-", "_")))
    if not found:
        return None
    said = ", ".join(f"'{token}' ('{token[0]}' is not '-'): write {flag}" for token, flag in found)
    return f"{said} (a typographic dash, as pasted from a page or a chat app)"


NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def replaced_values(
    tokens: Sequence[str],
    config_file: str | None,
    overrides: dict[str, Any],
    options: type | None = None,
) -> list[str]:
    """A line for each flag given more than once (``--no_bf16`` sets bf16), and for each flag
    that replaces another value of the YAML file (``options``: the class whose option types
    tell a value spelt otherwise from another one)."""
    counts: dict[str, int] = {}
    for token in tokens:
        if token.startswith("--") and len(token) > 2:
            key = token[2:].partition("=")[0]
            key = key[3:] if key.startswith("no_") else key
            counts[key] = counts.get(key, 0) + 1
    notes = [
        f"--{key} is given {count} times: the last one ({as_written(overrides.get(key))}) is used"
        for key, count in counts.items()
        if count > 1
    ]
    recipe: dict[str, Any] = {}
    if config_file is not None:
        with contextlib.suppress(ConfigError):  # (as written: a reference may name a key only
            recipe = read_yaml(config_file, interpolate=False)  # a flag gives)
    # by the option each name is (TRL's torch_dtype, torchtune's epochs: dtype, num_train_epochs),
    # so that a flag replacing a value the file spells otherwise is said too
    option = (ALIASES | RENAMED).get
    written = {option(key, key): key for key in recipe}
    notes += [
        f"--{key} {as_written(value)} replaces {config_file}'s {theirs}: "
        f"{as_written(recipe[theirs])}"
        for key, value in overrides.items()
        if (theirs := written.get(option(key, key))) is not None
        and not _same_value(options, option(key, key), recipe[theirs], value)
    ]
    return notes


def _same_value(options: type | None, key: str, theirs: Any, ours: Any) -> bool:
    """The file's value and the flag's are one value, spelt apart (learning_rate: 5.0e-7 and
    --learning_rate 5e-7, max_steps: 10 and 10.0, true and yes, loss_type: [sigmoid] and
    --loss_type sigmoid): each was said to replace the other ('--loss_type sigmoid replaces
    r.yaml's loss_type: sigmoid'), a note of no change. Compared as the option reads them;
    a value it refuses (said in its own line) or an option it lacks, as written."""
    if str(theirs).lower() == str(ours).lower():
        return True
    if key in PATH_OPTIONS and key != "chat_template" and _same_paths(theirs, ours):
        return True
    hint = type_hints(options).get(key) if options is not None else None
    if hint is None:
        return False
    try:
        return coerce(key, theirs, hint) == coerce(key, ours, hint)
    except (ConfigError, TypeError, ValueError):
        return False


def _same_paths(theirs: Any, ours: Any) -> bool:
    """The same files or folders by other paths (output_dir: out and --output_dir out/, as a
    shell's completion writes it; train_file: a.jsonl and --train_file ./a.jsonl): each was
    said to replace the other. Relative paths are the working directory's, as the run reads
    them (a template's text, chat_template's other value, is no path)."""
    theirs, ours = ([v] if isinstance(v, str) else v for v in (theirs, ours))
    paths = [*theirs, *ours] if isinstance(theirs, list) and isinstance(ours, list) else None
    if not paths or len(theirs) != len(ours) or not all(isinstance(p, str) for p in paths):
        return False
    where = [os.path.abspath(os.path.expanduser(path)) for path in paths]
    return where[: len(theirs)] == where[len(theirs) :]


def as_written(value: Any) -> str:
    """A value as the YAML file or a flag writes it (null, true: not Python's None, True): a
    list of words as the flag's a,b; a mapping, or a list of lists, as YAML writes it
    (option_values.as_yaml: eval_file: {chat: a.jsonl} was said as {'chat': 'a.jsonl'})."""
    if isinstance(value, list) and not any(isinstance(v, list | dict) for v in value):
        return ",".join(map(as_written, value))
    if isinstance(value, list | dict):
        return as_yaml(value)
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return str(value)


def as_typed(message: str, typed: Sequence[str]) -> str:
    """``message`` with each flag the user wrote with dashes said as written (``--help-me``):
    argv is underscored before it is read (underscored), so the messages name ``--help_me``,
    a flag the user never typed. A did-you-mean's own name (``--learning_rate``) is kept."""
    message = _other_names_as_typed(message, typed)
    for token in typed:
        written = token.partition("=")[0]
        if not written.startswith("--") or "-" not in written[2:]:
            continue
        read = "--" + written[2:].replace("-", "_")
        message = re.sub(re.escape(read) + r"(?![\w-])", lambda _, shown=written: shown, message)
    return message


def _other_names_as_typed(message: str, typed: Sequence[str]) -> str:
    """``message`` naming an option the user gave by another tool's name (TRL's
    ``--torch_dtype``, OpenRLHF's ``--pretrain``) by the name typed, with what it means once:
    ``--torch_dtype float16 --bf16`` was told ``--dtype float16 with --bf16 ...``, a flag
    never typed. Unchanged where both names were given (which one is meant cannot be told),
    and where the message names the typed flag itself (an unknown option's hint, which names
    directpo's own to use)."""
    names = [token.partition("=")[0][2:].replace("-", "_") for token in typed]
    lines = message.split("\n")  # (several problems: the note on the first line naming it,
    # not the message's last, another problem's: a recipe's 'train_file: no such file')
    notes: dict[int, list[str]] = {}  # each line's, said in one parenthesis: two were
    # "... above 0 (--top_k is directpo's --generate_top_k) (--temperature is directpo's ...)"
    for name in names:
        option = (ALIASES | RENAMED).get(name)
        named = re.search(rf"--{re.escape(name)}(?![\w-])", "\n".join(lines))
        if option is None or option in names or named:
            continue
        ours = re.compile(r"(?<![\w-])--" + re.escape(option) + r"(?![\w-])")
        named_on = [number for number, line in enumerate(lines) if ours.search(line)]
        if named_on:
            lines = [ours.sub(f"--{name}", line) for line in lines]
            notes.setdefault(named_on[0], []).append(f"--{name} is directpo's --{option}")
    for number, said in notes.items():
        lines[number] += f" ({'; '.join(said)})"
    return "\n".join(lines)


BOOLEAN, LIST, PATHS, VALUE = "boolean", "list", "paths", "value"


def option_kinds(options: type) -> dict[str, str]:
    """How each option reads its flag: a boolean may stand alone, a list (or a list of data
    files, ``str | list[str]``) takes several values, any other option exactly one."""
    kinds = {}
    hints = type_hints(options)  # (evaluated once per class: it reads every annotation)
    for f in dataclasses.fields(options):
        hint = hints[f.name]
        args = set(typing.get_args(hint)) - {type(None)}
        if hint in (bool, bool | None):
            kinds[f.name] = BOOLEAN
        elif list[str] in args and str in args:
            kinds[f.name] = PATHS
        elif typing.get_origin(hint) is list or any(typing.get_origin(a) is list for a in args):
            kinds[f.name] = LIST
        else:
            kinds[f.name] = VALUE
    return kinds


def flag_value(kind: str, values: list[str]) -> Any:
    """The value of a flag given ``values`` (one or more tokens after it).

    A list option splits each value on commas. A list of data files does too, unless the value
    names an existing path (a file name may hold a comma, rarely) or is a YAML flow list
    (``[a.jsonl, b.jsonl]``) or mapping (eval_file's named sets, ``{chat: a.jsonl, code:
    b.jsonl}``, which the commas cut into pieces named as files); one file stays a string."""
    if kind == PATHS:
        paths = []
        for value in values:
            whole = os.path.exists(value) or value.strip().startswith(("[", "{"))
            paths += [value] if whole else [p.strip() for p in value.split(",") if p.strip()]
        return paths[0] if len(paths) == 1 else paths
    if len(values) == 1:
        return values[0]
    return [part for value in values for part in comma_words(value)]


def _looks_like_config_file(token: str) -> bool:
    return token.lower().endswith(CONFIG_ENDINGS) or os.path.isfile(token)


# (.json is a config or rows: refuse_data_file reads which)
DATA_EXTENSIONS = tuple(ending for ending in DATA_ENDINGS if ending != ".json")


def refuse_data_file(path: str) -> None:
    """A data file (or datasets folder) given where the YAML config goes: say so."""
    if os.path.isdir(path):
        raise ConfigError(
            f"{path} is a folder, not a YAML config; a datasets folder goes in --train_file {path}"
        )
    data = path.lower().endswith(DATA_EXTENSIONS)
    if not data and path.lower().endswith(".json") and os.path.isfile(path):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            with open(path, encoding="utf-8") as handle:
                text = handle.read(1 << 20).lstrip()
            data = text.startswith("[") or (text.startswith("{") and _several_json_values(text))
    if data:
        raise ConfigError(
            f"{path} looks like a data file, not a YAML config: pass it as --train_file {path}"
        )


def _several_json_values(text: str) -> bool:
    """JSON Lines saved as .json: a first object, then more."""
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except json.JSONDecodeError:
        return False
    return text[end:].strip().startswith("{")


def flag_kinds(options: type) -> dict[str, str]:
    """How each flag train's reader knows reads its values: the options' own, and OpenRLHF's
    and torchtune's names as the option they rename (--target_modules q_proj v_proj: both;
    the second was taken for the config file)."""
    kinds = option_kinds(options)
    kinds |= {k: kinds[ours] for k, ours in RENAMED.items() if ours in kinds and k not in kinds}
    return kinds | dict.fromkeys(SEVERAL_VALUES, LIST)


def yaml_and_flags(tokens: Sequence[str], options: type) -> tuple[str | None, dict[str, Any]]:
    """(YAML file, flags) of ``train [CONFIG.yaml] [--key value | --key=value | --flag ...]``.

    Any ``--key`` is read, known or not (TRL's names are judged later, all at once). A known
    option takes the next token as its value, and a list option every following token up to
    the next flag (or the YAML file); one given no value is an error. A boolean option written
    bare (``--bf16``, TRL's style) is true, as is an unknown key written bare (TRL's booleans).
    The YAML file is the first free token, or ``--config`` (TRL's spelling)."""
    reading = _Reading(tokens, options, flag_kinds(options))
    while reading.index < len(tokens):
        token = tokens[reading.index]
        reading.index += 1
        if token.startswith("--"):
            _read_flag(reading, token)
        else:
            _read_free_token(reading, token)
    if reading.overrides:
        reading.refused.append(_overrides_said(reading.overrides))
    if reading.refused:
        raise FlagsRefused(reading.refused, reading.config_file, reading.flags)
    return reading.config_file, reading.flags


@dataclasses.dataclass
class _Reading:
    """``yaml_and_flags``' tokens as they are read: the next one's index, the YAML file and
    flags so far, torchtune's key=value overrides, and what is refused (said together once
    every token is read: FlagsRefused)."""

    tokens: Sequence[str]
    options: type
    kinds: dict[str, str]
    index: int = 0
    config_file: str | None = None
    flags: dict[str, Any] = dataclasses.field(default_factory=dict)
    overrides: list[str] = dataclasses.field(default_factory=list)
    refused: list[str] = dataclasses.field(default_factory=list)


def _read_free_token(reading: _Reading, token: str) -> None:
    """A token that is no ``--key``: a short flag (refused), torchtune's key=value, the YAML
    file, or a stray argument."""
    tokens, index, kinds = reading.tokens, reading.index, reading.kinds
    if _is_short_flag(token):  # -V, -x: not a file
        following = tokens[index] if index < len(tokens) else "--"
        flag = following.startswith("--") or _is_short_flag(following)
        value = NO_VALUE
        if not flag and not _looks_like_config_file(following):
            value = following  # (-m run/ is told 'give --model_name_or_path run/', as score is)
            reading.index += 1  # its value (-b 0.1 was refused again: 'config file not found: 0.1')
        reading.refused.append(unknown_flag_message(token, reading.options, value))
        return
    if _is_override(token):  # torchtune's: tune run ... key=value
        reading.overrides.append(token)  # every one said in one line, after the others
        key, _, value = token.partition("=")  # read as the flag it says to write, so
        reading.flags[key] = flag_value(kinds.get(key, VALUE), [value])  # its rows are read
        return
    after = one_value_hint(tokens[: index - 1], kinds)
    if reading.config_file is not None or (after and not _looks_like_config_file(token)):
        # (a second word after a one-value flag is no config file: --reward_fn m:f m:g was
        # told 'config file not found: m:g', as --beta 0.1 0.2 '... not found: 0.2')
        if reading.config_file is not None and _looks_like_config_file(token):
            # (train r.yaml --beta 0.2 extra.yaml was told '--beta takes one value': a
            # second config, as train r.yaml extra.yaml, is not merged)
            first = reading.config_file
            twice = os.path.abspath(token) == os.path.abspath(first)
            after = (
                " (the config file, given twice)"
                if twice
                else f" (one config file is read, {first}: give {token}'s options as flags)"
            )
        reading.refused.append(f"unexpected argument '{token}'{after}")
        return
    reading.config_file = token


def one_value_hint(before: Sequence[str], kinds: dict[str, str]) -> str:
    """`` (--beta takes one value)`` where the words ``before`` a stray word end with a
    one-value flag and its value (``--beta 0.1`` or ``--beta=0.1``), else ''."""
    flag = ""
    if len(before) >= 2 and before[-2].startswith("--") and "=" not in before[-2]:
        flag = before[-2]
    elif before and before[-1].startswith("--") and "=" in before[-1]:
        flag = before[-1].partition("=")[0]
    key = flag[2:].replace("-", "_")
    one = kinds.get(key) == VALUE or key == "config"  # (train's --config: one file)
    # a switch's written value too (--bf16 true false), not the config after a bare switch
    one = one or (kinds.get(key) == BOOLEAN and not _looks_like_config_file(before[-1]))
    return f" (--{key} takes one value)" if flag and one else ""


def _read_flag(reading: _Reading, token: str) -> None:
    """A ``--key``, ``--key=value`` or ``--key value ...``: its values read on from the tokens
    after it."""
    key, sep, value = token[2:].partition("=")
    kind = reading.kinds.get(key, "unknown")
    values = [value] if sep else []
    if not sep or kind in (LIST, PATHS):
        # (a list's words after ``--key=value`` are its values too, as after ``--key value``:
        # --loss_weights=-1 2 read 2 as the YAML file, 'config file not found: 2')
        values = _flag_values(reading, kind, values)
    refused, flags, config_file = reading.refused, reading.flags, reading.config_file
    if key == "config":
        if not values:
            refused.append("option --config needs a value")
        elif config_file is not None:  # (the first was dropped unsaid, its options with it)
            refused.append(
                f"two config files, {config_file} and --config {values[0]}: give one (flags "
                "override its values)"
            )
        else:
            reading.config_file = values[0]
    elif key.startswith("no_") and not values:
        flags[key[3:]] = "false"  # HfArgumentParser's --no_remove_unused_columns
    elif not values and kind in (BOOLEAN, "unknown"):
        flags[key] = "true"
    elif not values:
        refused.append(f"option --{key} needs a value")
    else:
        flags[key] = flag_value(kind, values)


def _flag_values(reading: _Reading, kind: str, given: list[str] | None = None) -> list[str]:
    """The values after a bare ``--key``: one, or a list's up to the next flag; ``given``: the
    one written after its '=' (a list's)."""
    tokens = reading.tokens
    values: list[str] = list(given or [])
    while reading.index < len(tokens) and not tokens[reading.index].startswith("--"):
        following = tokens[reading.index]
        if kind == BOOLEAN and _looks_like_config_file(following):
            break  # a bare boolean flag followed by the YAML file
        if values and (reading.config_file is None and names_yaml(following)):
            break  # a list's values end at the YAML file
        if values and _is_override(following):
            break  # (--train_file a.jsonl beta=2 read beta=2 as a second data file)
        if values and _is_short_flag(following):
            break  # (--train_file a.jsonl -x read -x as a second data file)
        values.append(following)
        reading.index += 1
        if kind not in (LIST, PATHS):
            break
    return values


def _overrides_said(overrides: list[str]) -> str:
    """torchtune's key=value overrides, said as the flags to write."""
    given = ", ".join(f"'{token}'" for token in overrides)
    # quoted as a shell needs ('run_name=a b' is --run_name 'a b': unquoted, two arguments),
    # each by directpo's name (batch_size=4: --per_device_train_batch_size 4)
    ours = (ALIASES | RENAMED | SAME_VALUE_AS).get
    written = " ".join(
        f"--{ours(key, key)} {shlex.quote(value)}"
        for key, value in (token.split("=", 1) for token in overrides)
    )
    return f"{given}: options are flags here: {written}"


class FlagsRefused(ConfigErrors):
    """Tokens refused once the whole command line is read (tune run's ``key=value``
    overrides, a stray argument, a flag without its value): ``config_file`` and ``flags``
    (an override's value among them) let the refusal say the other options' problems and the
    data's bad rows beside it, which were said a run later."""

    def __init__(self, problems: list[str], config_file: str | None, flags: dict[str, Any]):
        super().__init__("", problems)
        self.config_file, self.flags = config_file, flags


def _is_short_flag(token: str) -> bool:
    """-x, -V: a flag (none of directpo's), not a value; -1, -0.5, -inf and - are values."""
    flag = re.match(r"-[A-Za-z]", token) and not NEGATIVE_VALUE.match(token)
    return bool(flag) and not os.path.exists(token)


def _is_override(token: str) -> bool:
    return bool(re.match(r"([A-Za-z_][\w.]*)=(.*)$", token)) and not os.path.exists(token)


def _argument_hint(token: str, options: type, before: Sequence[str] = ()) -> str:
    """What a free argument is meant as, for the commands that take none (score's rows file,
    given as train's config file is, was only 'unexpected argument'); a second word after a
    one-value flag is said so (score --beta 0.1 0.2 was 'unexpected argument '0.2'')."""
    names = {f.name for f in dataclasses.fields(options)}
    if names_yaml(token) and "input" in names:  # (after --beta 0.1 too: no second beta)
        return "; score, rank and generate read no config file: give their options as flags"
    if one := one_value_hint(before, option_kinds(options)):
        return one
    if "input" in names and (token.lower().endswith(DATA_EXTENSIONS) or os.path.exists(token)):
        return f"; the rows to read are --input {token}"
    return ""


def spread_input(tokens: Sequence[str], options: type) -> str | None:
    """--input given several files (``--input p*.jsonl``, the pattern expanded by the shell):
    score, rank and generate read one file, and the second was said as a stray argument whose
    hint gave it as --input."""
    if "input" not in {f.name for f in dataclasses.fields(options)}:
        return None
    for index, token in enumerate(tokens):
        if token != "--input" and not token.startswith("--input="):
            continue
        first = [token.partition("=")[2]] if "=" in token else []
        rest = list(itertools.takewhile(lambda t: not t.startswith("-"), tokens[index + 1 :]))
        given = first + rest
        if len(given) > 1:
            shown = " ".join(given[:3]) + (" ..." if len(given) > 3 else "")
            return (
                f"--input takes one file, given {len(given)}: {shown} (a pattern the shell "
                "expanded?); score, rank and generate read one file: join them into one first"
            )
    return None


def unknown_flag_message(
    flag: str, options: type, value: Any = NO_VALUE, before: Sequence[str] = ()
) -> str:
    """The refusal of an unknown ``flag`` (``--model``, ``--model=run/``); ``value``: the word
    given after it, where the caller knows it (``--model=run/`` carries its own), so that
    another tool's spelling is told the flag with it (``give --model_name_or_path run/``);
    ``before``: the words before a stray argument (score --beta 0.1 0.2: --beta's one value)."""
    names = [n for n, _, _ in option_help(options)]
    names += ["config"] if hasattr(options, "save_record") else []  # train's --config (-c)
    if not flag.startswith("-"):
        key, _, value = flag.partition("=")
        if _is_override(flag) and key in names:  # (train says so of its key=value too)
            return f"'{flag}': options are flags here: --{key} {shlex.quote(value)}"
        return f"unexpected argument '{flag}'{_argument_hint(flag, options, before)}"
    name, equals, written = flag.lstrip("-").partition("=")
    hint = unknown_hint(name, names, value=written if equals else value)
    if instead := getattr(options, "FOREIGN_KEYS", {}).get(name):
        with written_as(Spelling.FLAGS):  # (a flag's: --dtype bfloat16)
            hint = f"; {advice_text(instead)}"
    if name in VERSION_FLAGS:
        hint = VERSION_HINT
    return f"unknown option '{flag.split('=', 1)[0]}'{hint}"  # (as written: -V, not --V)
