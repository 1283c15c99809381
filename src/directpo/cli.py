"""Command line: parse, call the library, turn known errors into one line and exit code 2.

    directpo train    [CONFIG.yaml] [--key value ...]   train with DPO (every DPOConfig option)
    directpo score    --model_name_or_path RUN --input FILE --output FILE
    directpo rank     --model_name_or_path RUN --input FILE --output FILE
    directpo generate --model_name_or_path MODEL --input PROMPTS --output FILE

Flags and the YAML file are read in cli_flags.py; the commands' table is cli_commands.py, their
parser cli_parser.py, and the words around a command (a mistyped one, a flag before it)
command_hints.py.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from directpo.after_run import resume_command
from directpo.callers import Caller, Entry, Spelling, as_command, command_caller, written_as
from directpo.cli_commands import COMMANDS, Command
from directpo.cli_flags import (
    FlagsRefused,
    as_typed,
    attach_negative_values,
    end_of_options,
    flag_kinds,
    flag_value,
    launcher_rank_dropped,
    option_kinds,
    refuse_data_file,
    replaced_values,
    spread_input,
    typographic_dashes,
    underscored,
    unknown_flag_message,
    yaml_and_flags,
)
from directpo.cli_parser import build_parser
from directpo.command_hints import (
    TOP_LEVEL_FLAGS,
    every_option_name,
    spelt_as_flags,
    unknown_top_level,
)
from directpo.command_rows import with_others
from directpo.config import DPOConfig
from directpo.early_paths import beside_config, refuse_missing_paths
from directpo.errors import ConfigError, ConfigErrors, DirectpoError
from directpo.launchers import first_rank
from directpo.option_hints import NO_VALUE
from directpo.option_loading import load_options
from directpo.signals import (
    Terminated,
    closed_pipe_behind,
    exit_code_of,
    interrupts_raise,
    output_closed,
    sigterm_unwinds,
)


def main(argv: Sequence[str] | None = None) -> int:
    with sigterm_unwinds():
        return as_command(_main, argv)


def _command_kinds(typed: Sequence[str]) -> dict[str, str]:
    """How the options of the command ``typed`` names read their flags (none: no command)."""
    command = COMMANDS.get(typed[0]) if typed else None
    return option_kinds(command.options) if command is not None else {}


def _main(argv: Sequence[str] | None) -> int:
    typed: list[str] = list(sys.argv[1:] if argv is None else argv)
    try:
        interrupts_raise()  # (from here a Ctrl-C is said below, a run's saved before)
        return _run_command(typed)
    except DirectpoError as err:
        if closed_pipe_behind(err):  # (a library's bar on a closed stderr: not the error)
            return _pipe_closed()
        try:
            _say_error(err, typed)
        except BrokenPipeError:  # (2>&1 | head: no one reads the line; its exit code says it)
            if not output_closed():
                raise
        return err.exit_code
    except KeyboardInterrupt as err:  # before or after the training loop (which saves on one)
        if first_rank():  # under torchrun every rank got the Ctrl-C
            print(_stopped("interrupted", err), file=sys.stderr)
        return 130
    except Terminated as err:  # the same, by SIGTERM (128 + 15, as the shell reports a kill)
        if first_rank():
            print(_stopped("terminated (SIGTERM)", err), file=sys.stderr)
        return 143
    except BrokenPipeError:  # (directpo train x.yaml | head -1: a traceback, and exit 1)
        if not output_closed():
            raise  # another pipe's (a socket's): a failure of its own
        return _pipe_closed()
    return 0


def _run_command(typed: list[str]) -> int:
    """The command ``typed`` asks for, run: train's (and demo's) YAML and flags read here,
    the other commands' flags by argparse."""
    parser = build_parser()  # (inside: a Ctrl-C while it is built is said in one line)
    ended = end_of_options(typed, _command_kinds(typed))
    named = COMMANDS.get(typed[0]) if typed else None  # (a list flag's values kept apart)
    several = flag_kinds(named.options) if named is not None else {}
    argv = spelt_as_flags(underscored(attach_negative_values(ended, several)))
    if dashes := typographic_dashes(argv, every_option_name()):
        raise ConfigError(dashes)
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].takes_yaml:
        help_asked = any(token in ("-h", "--help") for token in argv[1:])
        if not help_asked:  # TRL's flags too: read here, judged all at once
            return _run_with_yaml(COMMANDS[argv[0]], argv, typed)
    if argv and argv[0].startswith("-") and argv[0] not in TOP_LEVEL_FLAGS:
        # (directpo --verison printed the whole help; --beta 0.2 read 0.2 as the command)
        raise ConfigError(unknown_top_level(argv[0], argv[1:]))
    args, unknown = parser.parse_known_args(launcher_rank_dropped(argv))
    if args.command is None:
        parser.print_help()
        return 2
    command = COMMANDS[args.command]
    folder = args.command in ("score", "rank", "generate")  # (demo trains)
    command_caller(Caller(Spelling.FLAGS, Entry.FOLDER if folder else Entry.TRAIN))
    kinds = option_kinds(command.options)
    overrides = {
        k: flag_value(kinds[k], v) if isinstance(v, list) else v
        for k, v in vars(args).items()
        if k not in ("command", "config")
    }
    if "positional" in overrides:
        overrides[command.positional] = overrides.pop("positional")
    config_file = getattr(args, "config", None)
    if unknown:  # said with the other flags' refusals and the input's rows (one run)
        refused = _unknown_flags(unknown, argv[1:], command.options)
        raise with_others(refused, command.options, config_file, overrides)
    options = _loaded(command.options, config_file, overrides, argv[1:], typed)
    refuse_missing_paths(options)  # (before the command's imports: seconds)
    return command.run(options) or 0


def _unknown_flags(unknown: list[str], flags: list[str], options: type) -> ConfigError:
    """Every unknown flag, as train says them (score --bta 0.1 --gamma 3 said --bta alone, and
    --gamma a run later), each once and in order (--bta 1 ... --bta 2 is one unknown flag); the
    words between are their values. --input a.jsonl b.jsonl: its own line, the unknown flags
    beside it after it (its files are the stray words then, not flags to name)."""
    spread = spread_input(flags, options)
    dashed = [u for u in unknown if u.startswith("-")]
    firsts: dict[str, str] = {}
    for flag in dashed or ([] if spread else unknown[:1]):
        firsts.setdefault(flag.split("=", 1)[0] if flag.startswith("-") else flag, flag)
    said = [spread] if spread else []
    said += [
        unknown_flag_message(flag, options, _word_after(flag, flags), _words_before(flag, flags))
        for flag in firsts.values()
    ]
    return ConfigErrors.joined([ConfigError(line) for line in said])


def _words_before(word: str, flags: list[str]) -> list[str]:
    """The words before a stray ``word`` (its one-value flag said with it), none for a flag."""
    if word.startswith("-") or word not in flags:
        return []
    return flags[: flags.index(word)]


def _word_after(flag: str, flags: list[str]) -> Any:
    """The value given to an unknown ``flag`` after a space (score --model run/), as
    --model=run/ carries its own, so both are told 'give --model_name_or_path run/'; none
    where the next word is another flag or there is none (a bare switch: --bf16 --input a)."""
    if not flag.startswith("-") or "=" in flag or flag not in flags:
        return NO_VALUE
    at = flags.index(flag) + 1
    return flags[at] if at < len(flags) and not flags[at].startswith("-") else NO_VALUE


def _run_with_yaml(command: Command, argv: list[str], typed: list[str]) -> int:
    """A command of a YAML file and flags (train): read, checked against the run it may
    continue, run; a stopped run's resume command said after it."""
    try:
        config_file, overrides = yaml_and_flags(argv[1:], command.options)
    except FlagsRefused as err:  # said with the rest, the rows too (in its words)
        _train_caller(err.config_file)
        raise with_others(err, command.options, err.config_file, err.flags) from None
    if config_file is not None:
        refuse_data_file(config_file)
    _train_caller(config_file)
    try:
        options = _loaded(command.options, config_file, overrides, argv[1:], typed)
    except ConfigError as err:
        if config_file is None or os.path.exists(config_file):
            raise
        # (a config file not there: the flags may name the data, its rows said)
        raise with_others(err, command.options, None, overrides) from None
    if command.options is DPOConfig:
        from directpo.option_paths import refuse_moved_or_copied_record

        for note in beside_config(config_file, options, overrides):
            if first_rank():
                print(f"directpo: note: {note}", file=sys.stderr)

        # (a resume given as a flag is told the flag to add; the file's caller its key)
        flagged = "resume_from_checkpoint" in overrides
        with written_as(Spelling.FLAGS) if flagged else contextlib.nullcontext():
            refuse_moved_or_copied_record(config_file, options, overrides)
    refuse_missing_paths(options)  # (before the run's imports: seconds)
    code = command.run(options)
    if code and first_rank():  # (a stopped run: its checkpoint is written)
        # (stdout's reader gone, the line is said where it is still read)
        said = sys.stderr if code == exit_code_of("SIGPIPE") else sys.stdout
        print(resume_command(argv[1:]), file=said)
    return code or 0


def _train_caller(config_file: str | None) -> None:
    """train's caller: its recipe file where one is given, else its flags."""
    spelling = Spelling.RECIPE if config_file else Spelling.FLAGS
    command_caller(Caller(spelling, Entry.TRAIN, config_file))


def _pipe_closed() -> int:
    """The line and exit code (128 + 13, as the shell reports SIGPIPE's) of a command whose
    output's reader went away; the closed stream already writes nowhere (output_closed)."""
    with contextlib.suppress(OSError):
        print("directpo: stopped: the output's reader closed the pipe", file=sys.stderr)
    return exit_code_of("SIGPIPE")


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
    if first_rank():
        for note in replaced_values(tokens, config_file, overrides, options):
            print(f"directpo: note: {as_typed(note, typed)}", file=sys.stderr)
    return built


def _stopped(word: str, err: BaseException) -> str:
    """One line; a command that keeps its partial work (score, rank) says where after it."""
    return f"directpo: {word}" + (f": {err}" if str(err) else "")


def _say_error(err: DirectpoError, typed: Sequence[str] = ()) -> None:
    """The error's one line. Under torchrun every rank usually has the same error, said by rank
    0 alone (failures.settle); one rank's own (``err.rank``: out of memory, a data file missing
    on its node) is said by that rank, since rank 0 is then waiting for it and says nothing."""
    if err.said_by_rank_0:
        return
    text = as_typed(str(err), typed)  # (each message spells its options as the caller
    # gave them where it is made: callers.spell_option / spell_setting)
    if err.rank is not None:
        print(f"directpo: error: rank {err.rank}: {text}", file=sys.stderr, flush=True)
    elif first_rank():
        print(f"directpo: error: {text}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    from directpo.__main__ import run

    run()
