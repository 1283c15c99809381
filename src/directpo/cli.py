"""Command line: parse, call the library, turn known errors into one line and exit code 2.

    directpo train    [CONFIG.yaml] [--key value ...]   train with DPO (every DPOConfig option)
    directpo score    --model_name_or_path RUN --input FILE --output FILE
    directpo rank     --model_name_or_path RUN --input FILE --output FILE
    directpo generate --model_name_or_path MODEL --input PROMPTS --output FILE

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

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from directpo.after_run import next_steps, resume_command
from directpo.command_options import (
    DemoOptions,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)
from directpo.command_rows import with_others
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DirectpoError
from directpo.foreign_names import RENAMED, SEVERAL_VALUES
from directpo.options import load_options, option_help, read_yaml, type_hints
from directpo.signals import Terminated, exit_code_of, sigterm_unwinds
from directpo.trl_compat import ALIASES, VERSION_FLAGS, VERSION_HINT


def _first_rank() -> bool:
    """Rank 0 under torchrun (every rank runs this command line), or the only process."""
    return os.environ.get("RANK", "0") == "0"


class _Parser(argparse.ArgumentParser):
    """Usage errors become a one-line ConfigError instead of argparse's usage dump; the help is
    printed by the first rank alone (under torchrun each rank printed it, interleaved)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if _first_rank():
            super()._print_message(message, file)

    def error(self, message: str) -> None:  # type: ignore[override]
        missing = re.match(r"argument (--\w+): expected (one|at least one) argument", message)
        if missing:
            raise ConfigError(f"option {missing[1]} needs a value")
        typo = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
        if typo:  # (argparse listed the commands, and let the reader find the one meant)
            close = difflib.get_close_matches(typo[1].lower(), COMMANDS, n=1)
            every = f"the commands are {', '.join(COMMANDS)}"
            hint = f"did you mean '{close[0]}'?" if close else every
            raise ConfigError(f"unknown command '{typo[1]}'; {hint}")
        raise ConfigError(message)


def _train(options: DPOConfig) -> int:
    """0 for a finished run; a run stopped by a signal (its checkpoint saved) exits 128 + the
    signal, as score, rank and generate do and as the shell reports a killed process: after
    ``directpo train && directpo score`` or a scheduler's preemption, an unfinished run is not
    taken for a finished one (every rank under torchrun agreed on the signal, so each exits
    with the same code)."""
    from directpo.trainer import train  # heavy imports only when used

    result = train(options)
    if result is not None and result.stopped_by is not None:
        return exit_code_of(result.stopped_by)
    if result is not None and _first_rank():
        print(next_steps(str(result.output_dir), options.eval_file, options.max_eval_samples))
    return 0


def _score(options: ScoreOptions) -> None:
    from directpo.reward_files import score_file

    score_file(options)


def _rank(options: RankOptions) -> None:
    from directpo.reward_files import rank_file

    rank_file(options)


def _generate(options: GenerateOptions) -> None:
    from directpo.generate import generate_file

    generate_file(options)


def _demo(options: DemoOptions) -> None:
    from directpo.demo.pipeline import run_demo

    run_demo(options.profile, options.output_dir, options.seed)


def _plot(options: PlotOptions) -> None:
    from directpo.demo.plots import plot_run

    if not options.run_dir:
        raise ConfigError("plot needs RUN_DIR")
    print(f"wrote {plot_run(options.run_dir, options.output)}")


# train --help's sections: each title and its first option (DPOConfig declares its options
# section by section); 153 options in one list hid, say, every LoRA option among the rest
TRAIN_HELP_GROUPS = (
    ("model", "model_name_or_path"),
    ("precision and speed", "dtype"),
    ("adapters (LoRA, QLoRA)", "use_peft"),
    ("memory and row layout", "logprob_chunk_tokens"),
    ("distributed (torchrun)", "distributed"),
    ("reference model", "precompute_ref_log_probs"),
    ("data", "train_file"),
    ("online DPO", "online"),
    ("loss", "loss_type"),
    ("optimisation", "learning_rate"),
    ("outputs, logging, evaluation and checkpoints", "output_dir"),
    ("generation during evaluation (reward and KL)", "eval_generate"),
)


def _trl_names_epilog() -> str:
    """TRL's other spellings, which train reads too (they are no options of their own)."""
    renamed = ", ".join(f"{trl} ({ours})" for trl, ours in ALIASES.items())
    return (
        f"TRL's names are read too: {renamed}; TRL keys that ask for nothing done differently "
        "here (push_to_hub: false, dataloader_num_workers, do_eval, ...) are accepted, and any "
        "other is refused naming what to use instead. OpenRLHF's and torchtune's names are read "
        "by the same rule (docs/migrating.md)."
    )


@dataclass(frozen=True)
class Command:
    options: type
    run: Callable[[Any], int | None]  # the exit code (None: 0)
    help: str
    takes_yaml: bool = False
    positional: str | None = None  # an option that may also be given as the first argument
    groups: tuple[tuple[str, str], ...] = ()  # --help's sections: (title, first option)
    epilog: Callable[[], str] | None = None


COMMANDS = {
    "train": Command(
        DPOConfig,
        _train,
        "train a model with DPO",
        takes_yaml=True,
        groups=TRAIN_HELP_GROUPS,
        epilog=_trl_names_epilog,
    ),
    "score": Command(ScoreOptions, _score, "implicit reward of responses or preference pairs"),
    "rank": Command(RankOptions, _rank, "sort candidate responses by implicit reward"),
    "generate": Command(GenerateOptions, _generate, "sample completions for prompts"),
    "demo": Command(DemoOptions, _demo, "the DPO paper's controlled-sentiment experiment"),
    "plot": Command(PlotOptions, _plot, "draw a run's training curves", positional="run_dir"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="directpo",
        description="Direct Preference Optimization for causal language models.",
        allow_abbrev=False,
    )
    parser.add_argument(  # (it printed the whole help and exited 2)
        "-V",
        "--version",
        nargs=0,
        action=_Version,
        default=argparse.SUPPRESS,  # (else every command read an option 'version')
        help="show the versions and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, command in COMMANDS.items():
        first = "[CONFIG.yaml] " if command.takes_yaml else ""
        if command.positional:
            first = f"{command.positional.upper()} "
        usage = f"directpo {name} {first}[--option VALUE ...]"
        sub = commands.add_parser(
            name,
            help=command.help,
            description=command.help + ".",
            usage=usage,
            allow_abbrev=False,
            epilog=command.epilog() if command.epilog else None,
        )
        if command.takes_yaml:
            sub.add_argument(
                "config",
                nargs="?",
                metavar="CONFIG.yaml",
                help="optional YAML file of options (or --config FILE, TRL's spelling); flags "
                "override it",
            )
        if command.positional:
            sub.add_argument(
                "positional",
                nargs="?",
                metavar=command.positional.upper(),
                default=argparse.SUPPRESS,
                help=f"same as --{command.positional}",
            )
        kinds = _option_kinds(command.options)
        starts = dict((first, title) for title, first in command.groups)
        group: Any = sub
        for option_name, help_text, default in option_help(command.options):
            if option_name in starts:
                group = sub.add_argument_group(starts[option_name])
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            bare: dict[str, Any] = {}
            if kinds[option_name] == BOOLEAN:
                bare = {"nargs": "?", "const": "true"}
            elif kinds[option_name] in (LIST, PATHS):
                bare = {"nargs": "+"}
            group.add_argument(
                f"--{option_name}",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{help_text} (default: {shown})".replace("%", "%%"),
                **bare,  # TRL's style: a bare --bf16 means true
            )
    return parser


class _Version(argparse.Action):
    """argparse's own version action wraps the line at the terminal's width."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> None:
        if _first_rank():  # (under torchrun each rank printed it)
            print(version_line())
        parser.exit()


def version_line() -> str:
    """directpo's version, and those of the libraries a bug report needs (read from the
    installed packages' metadata: nothing is imported, so it answers at once)."""
    from importlib import metadata

    from directpo import __version__

    versions = []
    for package in ("torch", "transformers", "peft", "trl"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    python = ".".join(map(str, sys.version_info[:3]))
    return f"directpo {__version__} ({', '.join(versions)}, Python {python})"


def _attach_negative_values(argv: Sequence[str]) -> list[str]:
    """``--key -1e-5`` -> ``--key=-1e-5``: argparse reads a value that starts with '-' and is
    not a plain integer or decimal (``-1e-5``, ``-0.5,1``) as an unknown option."""
    joined: list[str] = []
    for token in argv:
        previous = joined[-1] if joined else ""
        if NEGATIVE_VALUE.match(token) and previous.startswith("--") and "=" not in previous:
            joined[-1] = f"{previous}={token}"
        else:
            joined.append(token)
    return joined


def _underscored(argv: Sequence[str]) -> list[str]:
    """``--learning-rate`` -> ``--learning_rate``, ``--no-bf16`` -> ``--no_bf16``: the dashed
    spellings transformers' HfArgumentParser takes too, which TRL's scripts write."""
    return [
        "--" + token[2:].partition("=")[0].replace("-", "_") + "".join(token.partition("=")[1:])
        if token.startswith("--") and len(token) > 2
        else token
        for token in argv
    ]


NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def main(argv: Sequence[str] | None = None) -> int:
    with sigterm_unwinds():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    typed: list[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        argv = _underscored(_attach_negative_values(typed))
        if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].takes_yaml:
            help_asked = any(token in ("-h", "--help") for token in argv[1:])
            if not help_asked:  # TRL's flags too: read here, judged all at once
                command = COMMANDS[argv[0]]
                config_file, overrides = _yaml_and_flags(argv[1:], command.options)
                if config_file is not None:
                    _refuse_data_file(config_file)
                code = command.run(
                    _loaded(command.options, config_file, overrides, argv[1:], typed)
                )
                if code and _first_rank():  # (a stopped run: its checkpoint is written)
                    print(resume_command(argv[1:]))
                return code or 0
        if argv and argv[0].startswith("-") and argv[0] not in TOP_LEVEL_FLAGS:
            # (directpo --verison printed the whole help; --beta 0.2 read 0.2 as the command)
            raise ConfigError(_unknown_top_level(argv[0], argv[1:]))
        args, unknown = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = COMMANDS[args.command]
        kinds = _option_kinds(command.options)
        overrides = {
            k: _flag_value(kinds[k], v) if isinstance(v, list) else v
            for k, v in vars(args).items()
            if k not in ("command", "config")
        }
        if "positional" in overrides:
            overrides[command.positional] = overrides.pop("positional")
        config_file = getattr(args, "config", None)
        if unknown:  # said with the other flags' refusals and the input's rows (one run)
            flag = next((u for u in unknown if u.startswith("-")), unknown[0])
            unknown_flag = ConfigError(_unknown_flag_message(flag, command.options))
            raise with_others(unknown_flag, command.options, config_file, overrides)
        return command.run(_loaded(command.options, config_file, overrides, argv[1:], typed)) or 0
    except DirectpoError as err:
        _say_error(err, typed)
        return err.exit_code
    except KeyboardInterrupt as err:  # before or after the training loop (which saves on one)
        if _first_rank():  # under torchrun every rank got the Ctrl-C
            print(_stopped("interrupted", err), file=sys.stderr)
        return 130
    except Terminated as err:  # the same, by SIGTERM (128 + 15, as the shell reports a kill)
        if _first_rank():
            print(_stopped("terminated (SIGTERM)", err), file=sys.stderr)
        return 143
    return 0


def _loaded(
    options: type,
    config_file: str | None,
    overrides: dict[str, Any],
    tokens: Sequence[str],
    typed: Sequence[str] = (),
) -> Any:
    """The options of the YAML file and flags; a value replaced by a later flag, or a YAML value
    by a flag, is said in a note (either took effect without a word: ``--beta 0.1 ... --beta
    0.5`` trained with 0.5, and a flag meant for another run overrode the recipe unseen)."""
    built = load_options(options, config_file, overrides)
    if _first_rank():
        for note in _replaced_values(tokens, config_file, overrides):
            print(f"directpo: note: {as_typed(note, typed)}", file=sys.stderr)
    return built


def _replaced_values(
    tokens: Sequence[str], config_file: str | None, overrides: dict[str, Any]
) -> list[str]:
    """A line for each flag given more than once (``--no_bf16`` sets bf16), and for each flag
    that replaces another value of the YAML file."""
    counts: dict[str, int] = {}
    for token in tokens:
        if token.startswith("--") and len(token) > 2:
            key = token[2:].partition("=")[0]
            key = key[3:] if key.startswith("no_") else key
            counts[key] = counts.get(key, 0) + 1
    notes = [
        f"--{key} is given {count} times: the last one ({_shown(overrides.get(key))}) is used"
        for key, count in counts.items()
        if count > 1
    ]
    recipe: dict[str, Any] = {}
    if config_file is not None:
        with contextlib.suppress(ConfigError):
            recipe = read_yaml(config_file)
    # by the option each name is (TRL's torch_dtype, torchtune's epochs: dtype, num_train_epochs),
    # so that a flag replacing a value the file spells otherwise is said too
    option = (ALIASES | RENAMED).get
    written = {option(key, key): key for key in recipe}
    notes += [
        f"--{key} {_shown(value)} replaces {config_file}'s {theirs}: {_shown(recipe[theirs])}"
        for key, value in overrides.items()
        if (theirs := written.get(option(key, key))) is not None
        and str(recipe[theirs]).lower() != str(value).lower()
    ]
    return notes


def _shown(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def _stopped(word: str, err: BaseException) -> str:
    """One line; a command that keeps its partial work (score, rank) says where after it."""
    return f"directpo: {word}" + (f": {err}" if str(err) else "")


def _say_error(err: DirectpoError, typed: Sequence[str] = ()) -> None:
    """The error's one line. Under torchrun every rank usually has the same error, said by rank
    0 alone (failures.settle); one rank's own (``err.rank``: out of memory, a data file missing
    on its node) is said by that rank, since rank 0 is then waiting for it and says nothing."""
    if err.said_by_rank_0:
        return
    text = as_typed(str(err), typed)
    if err.rank is not None:
        print(f"directpo: error: rank {err.rank}: {text}", file=sys.stderr, flush=True)
    elif _first_rank():
        print(f"directpo: error: {text}", file=sys.stderr, flush=True)


def as_typed(message: str, typed: Sequence[str]) -> str:
    """``message`` with each flag the user wrote with dashes said as written (``--help-me``):
    argv is underscored before it is read (_underscored), so the messages name ``--help_me``,
    a flag the user never typed. A did-you-mean's own name (``--learning_rate``) is kept."""
    for token in typed:
        written = token.partition("=")[0]
        if not written.startswith("--") or "-" not in written[2:]:
            continue
        read = "--" + written[2:].replace("-", "_")
        message = re.sub(re.escape(read) + r"(?![\w-])", lambda _, shown=written: shown, message)
    return message


BOOLEAN, LIST, PATHS, VALUE = "boolean", "list", "paths", "value"


def _option_kinds(options: type) -> dict[str, str]:
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


def _flag_value(kind: str, values: list[str]) -> Any:
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
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _looks_like_config_file(token: str) -> bool:
    return token.lower().endswith((".yaml", ".yml", ".json")) or os.path.isfile(token)


DATA_EXTENSIONS = (".jsonl", ".ndjson", ".parquet", ".csv", ".tsv", ".arrow", ".gz", ".bz2", ".xz")


def _refuse_data_file(path: str) -> None:
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


def _yaml_and_flags(tokens: Sequence[str], options: type) -> tuple[str | None, dict[str, Any]]:
    """(YAML file, flags) of ``train [CONFIG.yaml] [--key value | --key=value | --flag ...]``.

    Any ``--key`` is read, known or not (TRL's names are judged later, all at once). A known
    option takes the next token as its value, and a list option every following token up to
    the next flag (or the YAML file); one given no value is an error. A boolean option written
    bare (``--bf16``, TRL's style) is true, as is an unknown key written bare (TRL's booleans).
    The YAML file is the first free token, or ``--config`` (TRL's spelling)."""
    kinds = _option_kinds(options)
    # OpenRLHF's and torchtune's names read their values as the option they rename does
    # (--target_modules q_proj v_proj: both; the second was taken for the config file)
    kinds |= {k: kinds[ours] for k, ours in RENAMED.items() if ours in kinds and k not in kinds}
    kinds |= dict.fromkeys(SEVERAL_VALUES, LIST)
    config_file: str | None = None
    flags: dict[str, Any] = {}
    previous: str | None = None  # the last flag, to explain a stray token
    overrides: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if not token.startswith("--"):
            if token.startswith("-") and not NEGATIVE_VALUE.match(token):  # -V, -x: not a file
                raise ConfigError(_unknown_flag_message(token, options))
            override = re.match(r"([A-Za-z_][\w.]*)=(.*)$", token)
            if override and not os.path.exists(token):  # torchtune's: tune run ... key=value
                overrides.append(token)  # every one said in one line, after the others
                continue
            if config_file is not None:
                one = previous is not None and kinds.get(previous) == VALUE
                after = f" (--{previous} takes one value)" if one else ""
                raise ConfigError(f"unexpected argument '{token}'{after}")
            config_file = token
            continue
        key, sep, value = token[2:].partition("=")
        previous = key
        kind = kinds.get(key, "unknown")
        values = [value] if sep else []
        while not sep and index < len(tokens) and not tokens[index].startswith("--"):
            following = tokens[index]
            if kind == BOOLEAN and _looks_like_config_file(following):
                break  # a bare boolean flag followed by the YAML file
            if values and (config_file is None and following.lower().endswith((".yaml", ".yml"))):
                break  # a list's values end at the YAML file
            values.append(following)
            index += 1
            if kind not in (LIST, PATHS):
                break
        if key == "config":
            if not values:
                raise ConfigError("option --config needs a value")
            if config_file is not None:  # (the first was dropped unsaid, its options with it)
                raise ConfigError(
                    f"two config files, {config_file} and --config {values[0]}: give one (flags "
                    "override its values)"
                )
            config_file = values[0]
        elif key.startswith("no_") and not values:
            flags[key[3:]] = "false"  # HfArgumentParser's --no_remove_unused_columns
        elif not values and kind in (BOOLEAN, "unknown"):
            flags[key] = "true"
        elif not values:
            raise ConfigError(f"option --{key} needs a value")
        else:
            flags[key] = _flag_value(kind, values)
    if overrides:
        given = ", ".join(f"'{token}'" for token in overrides)
        written = " ".join("--" + " ".join(token.split("=", 1)) for token in overrides)
        raise ConfigError(f"{given}: options are flags here: {written}")
    return config_file, flags


TOP_LEVEL_FLAGS = ("--help", "--version", "-h", "-V")


def _unknown_top_level(token: str, rest: Sequence[str] = ()) -> str:
    """A flag before any command: the bare command's flags are -h and -V. An option of a
    command is said after the command the line names (``directpo --max_new_tokens 8 generate``
    was told ``directpo train --max_new_tokens``), spelt as that command spells it (``--bta``
    was moved after the command as it was, to be refused there on the next run)."""
    name = token.split("=", 1)[0]
    close = difflib.get_close_matches(name, TOP_LEVEL_FLAGS, n=1)
    close = close or (["-V"] if name == "-v" else [])  # (one letter matches nothing close)
    if close:
        return f"unknown option '{name}'; did you mean '{close[0]}'?"
    command = next((word for word in rest if word in COMMANDS), None)
    named = command or "train"
    option = name.lstrip("-")
    options = [n for n, _, _ in option_help(COMMANDS[named].options)]
    meant = (
        option
        if option in options
        else next(iter(difflib.get_close_matches(option, options, n=1)), None)
    )
    written = f"--{meant}" if meant else name
    after = f"; options follow a command: directpo {named} {written} ..."
    if not command:
        after += f" ({', '.join(COMMANDS)})"
    if meant and meant != option:
        after += f" ({named} has no {name}: did you mean '--{meant}'?)"
    return f"unknown option '{name}'{after}"


def _unknown_flag_message(flag: str, options: type) -> str:
    if not flag.startswith("-"):
        return f"unexpected argument '{flag}'"
    name = flag.lstrip("-").split("=", 1)[0]
    names = [n for n, _, _ in option_help(options)]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '--{close[0]}'?" if close else ""
    if instead := getattr(options, "FOREIGN_KEYS", {}).get(name):
        hint = f"; {instead}"
    if name in VERSION_FLAGS:
        hint = VERSION_HINT
    return f"unknown option '{flag.split('=', 1)[0]}'{hint}"  # (as written: -V, not --V)


if __name__ == "__main__":
    sys.exit(main())
