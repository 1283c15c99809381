"""Command line: parse, call the library, turn known errors into one line and exit code 2.

    directpo train    [CONFIG.yaml] [--key value ...]   train with DPO (every DPOConfig option)
    directpo score    --model_name_or_path RUN --input FILE --output FILE
    directpo rank     --model_name_or_path RUN --input FILE --output FILE
    directpo generate --model_name_or_path MODEL --input PROMPTS --output FILE

Flags and the YAML file are read in cli_flags.py.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from directpo.after_run import next_steps, resume_command
from directpo.callers import (
    Caller,
    Entry,
    Spelling,
    as_command,
    command_caller,
    written_as,
)
from directpo.cli_flags import (
    BOOLEAN,
    LIST,
    PATHS,
    FlagsRefused,
    as_typed,
    as_written,
    attach_negative_values,
    end_of_options,
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
from directpo.command_options import (
    DemoOptions,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)
from directpo.command_rows import with_others
from directpo.config import DPOConfig
from directpo.early_paths import beside_config, refuse_missing_paths
from directpo.errors import ConfigError, ConfigErrors, DirectpoError
from directpo.foreign_names import RENAMED
from directpo.launchers import first_rank
from directpo.option_hints import SPELLINGS, abbreviated, elsewhere, meant_option
from directpo.option_loading import load_options
from directpo.options import option_help
from directpo.signals import (
    KeptLines,
    Terminated,
    closed_pipe_behind,
    exit_code_of,
    interrupts_raise,
    output_closed,
    sigterm_unwinds,
)
from directpo.trl_compat import ALIASES


class _Parser(argparse.ArgumentParser):
    """Usage errors become a one-line ConfigError instead of argparse's usage dump; the help is
    printed by the first rank alone (under torchrun each rank printed it, interleaved)."""

    def _print_message(self, message: str, file: Any = None) -> None:
        if first_rank():
            super()._print_message(message, file)

    def error(self, message: str) -> None:  # type: ignore[override]
        missing = re.match(r"argument (--\w+): expected (one|at least one) argument", message)
        if missing:
            raise ConfigError(f"option {missing[1]} needs a value")
        typo = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
        if typo:  # (argparse listed the commands, and let the reader find the one meant)
            raise ConfigError(f"unknown command '{typo[1]}'; {_command_hint(typo[1])}")
        raise ConfigError(message)


# other tools' commands for what a directpo command does (TRL's `trl dpo --config x.yaml`)
FOREIGN_COMMANDS = {
    "dpo": "train", "online_dpo": "train", "trl": "train",
    # TRL's trainer.evaluate() / other CLIs' eval (told only the list of commands): score
    # reports a model's preference accuracy and margins on pairs, as TRL's eval metrics do
    "eval": "score", "evaluate": "score",
    "sample": "generate", "infer": "generate", "inference": "generate",
}  # fmt: skip
# what a command meant for another tool's word does, said with it
FOREIGN_DOES = {
    "score": "a model's implicit rewards on a file of pairs: preference accuracy and mean "
    "margin, as TRL's eval rewards/accuracies and rewards/margins",
    "generate": "samples completions for a file of prompts",
}


def _command_hint(word: str) -> str:
    """What to write for an unknown command: the command meant (a typo, TRL's ``dpo``), or,
    for a config file given first (``directpo recipe.yaml``), the train line that reads it."""
    if word.lower().endswith((".yaml", ".yml")):
        return f"a config file follows the command: directpo train {word}"
    meant = FOREIGN_COMMANDS.get(word.lower().replace("-", "_"))
    if meant in FOREIGN_DOES:
        return f"did you mean '{meant}'? ({FOREIGN_DOES[meant]})"
    close = [meant] if meant else difflib.get_close_matches(word.lower(), COMMANDS, n=1)
    return f"did you mean '{close[0]}'?" if close else f"the commands are {', '.join(COMMANDS)}"


def _train(options: DPOConfig) -> int:
    """0 for a finished run; a run stopped by a signal (its checkpoint saved) exits 128 + the
    signal, as score, rank and generate do and as the shell reports a killed process: after
    ``directpo train && directpo score`` or a scheduler's preemption, an unfinished run is not
    taken for a finished one (every rank under torchrun agreed on the signal, so each exits
    with the same code)."""
    from directpo.trainer import train  # heavy imports only when used

    result = train(options)  # (called by the command line: _main set its caller)
    if result is not None and result.stopped_by is not None:
        return exit_code_of(result.stopped_by)
    if result is not None and first_rank():  # (a finished run: said on stderr if need be)
        KeptLines(print)(
            next_steps(str(result.output_dir), options.eval_file, options.max_eval_samples)
        )
    return 0


def _score(options: ScoreOptions) -> None:
    from directpo.reward_files import score_file

    score_file(options)


def _rank(options: RankOptions) -> None:
    from directpo.reward_files import rank_file

    rank_file(options)


def _generate(options: GenerateOptions) -> None:
    from directpo.generate_files import generate_file

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
        kinds = option_kinds(command.options)
        starts = dict((first, title) for title, first in command.groups)
        group: Any = sub
        for option_name, help_text, default in option_help(command.options):
            if option_name in starts:
                group = sub.add_argument_group(starts[option_name])
            shown = as_written(default)  # (null, true: as the YAML file and flags write them)
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
        if first_rank():  # (under torchrun each rank printed it)
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
    argv = _spelt_as_flags(underscored(attach_negative_values(ended)))
    if dashes := typographic_dashes(argv, _every_option_name()):
        raise ConfigError(dashes)
    if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].takes_yaml:
        help_asked = any(token in ("-h", "--help") for token in argv[1:])
        if not help_asked:  # TRL's flags too: read here, judged all at once
            return _run_with_yaml(COMMANDS[argv[0]], argv, typed)
    if argv and argv[0].startswith("-") and argv[0] not in TOP_LEVEL_FLAGS:
        # (directpo --verison printed the whole help; --beta 0.2 read 0.2 as the command)
        raise ConfigError(_unknown_top_level(argv[0], argv[1:]))
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
    said += [unknown_flag_message(flag, options) for flag in firsts.values()]
    return ConfigErrors.joined([ConfigError(line) for line in said])


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


TOP_LEVEL_FLAGS = ("--help", "--version", "-h", "-V")


def _every_option_name() -> set[str]:
    """The options of every command, and the other tools' names train reads."""
    names = {name for c in COMMANDS.values() for name, _, _ in option_help(c.options)}
    return names | set(ALIASES) | set(RENAMED) | {"config", "help", "version"}


def _spelt_as_flags(argv: list[str]) -> list[str]:
    """``directpo help [COMMAND]``, ``directpo --help COMMAND`` and ``directpo version`` (git's,
    pip's and cargo's words) as the flags they stand for: each was 'unknown command' (the
    second printed the commands' list)."""
    named = len(argv) > 1 and argv[1] in COMMANDS
    if argv in (["version"], ["help", "version"]):  # (the second was 'unknown command')
        return ["--version"]
    if argv == ["help", "help"]:  # (was 'unknown command 'help'', help being one)
        return ["--help"]
    if argv[:1] == ["help"] or (argv[:1] in (["-h"], ["--help"]) and named):
        return [*argv[1:2], "--help"]  # (directpo --help train: git's order, the top's help)
    return argv


def _unknown_top_level(token: str, rest: Sequence[str] = ()) -> str:
    """A flag before any command: the bare command's flags are -h and -V. An option of a
    command is said after the command the line names (``directpo --max_new_tokens 8 generate``
    was told ``directpo train --max_new_tokens``), spelt as that command spells it (``--bta``
    was moved after the command as it was, to be refused there on the next run)."""
    name = token.split("=", 1)[0]
    command = next((word for word in rest if word in COMMANDS), None)
    named = command or "train"
    option = name.lstrip("-")
    options = [n for n, _, _ in option_help(COMMANDS[named].options)]
    options += ["config"] if COMMANDS[named].takes_yaml else []  # (told --dataset_config)
    # (a command's option or its other spelling first: --lr was 'did you mean --help?')
    spelt = option in options or option.lower() in SPELLINGS or elsewhere(option, options)
    close = [] if spelt else difflib.get_close_matches(name, TOP_LEVEL_FLAGS, n=1)
    close = close or (["-V"] if name == "-v" else [])  # (one letter matches nothing close)
    if close:
        return f"unknown option '{name}'; did you mean '{close[0]}'?"
    meant = option if option in options else meant_option(option, options)
    written = f"--{meant}" if meant else name
    after = f"; options follow a command: directpo {named} {written} ..."
    if not command:
        after += f" ({', '.join(COMMANDS)})"
    if meant and meant != option:
        after += f" ({named} has no {name}: did you mean '--{meant}'?)"
    elif not meant and (begun := abbreviated(option, options)):  # (--per_device, --max)
        after += f" ({named} has no {name}: {begun})"
    elif not meant and (other := elsewhere(option, options)):  # (rank --top_k: generate's,
        after = other.replace("this command", named)  # not to be written after rank)
    return f"unknown option '{name}'{after}"


if __name__ == "__main__":
    from directpo.__main__ import run

    run()
