"""Command line: parse, call the library, turn known errors into one line and exit code 2.

    directpo train    [CONFIG.yaml] [--key value ...]   train with DPO (every DPOConfig option)
    directpo score    --model_name_or_path RUN --input FILE --output FILE
    directpo rank     --model_name_or_path RUN --input FILE --output FILE
    directpo generate --model_name_or_path MODEL --input PROMPTS --output FILE

Every option of a command's options dataclass is a flag; for train, a flag overrides the YAML
file. Booleans take true/false; lists are comma-separated.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import os
import re
import sys
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from directpo.command_options import (
    DemoOptions,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)
from directpo.config import DPOConfig
from directpo.errors import ConfigError, DirectpoError
from directpo.options import load_options, option_help


class _Parser(argparse.ArgumentParser):
    """Usage errors become a one-line ConfigError instead of argparse's usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _train(options: DPOConfig) -> None:
    from directpo.trainer import train  # heavy imports only when used

    train(options)


def _score(options: ScoreOptions) -> None:
    from directpo.reward import score_file

    score_file(options)


def _rank(options: RankOptions) -> None:
    from directpo.reward import rank_file

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


@dataclass(frozen=True)
class Command:
    options: type
    run: Callable[[Any], None]
    help: str
    takes_yaml: bool = False
    positional: str | None = None  # an option that may also be given as the first argument


COMMANDS = {
    "train": Command(DPOConfig, _train, "train a model with DPO", takes_yaml=True),
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, command in COMMANDS.items():
        first = "[CONFIG.yaml] " if command.takes_yaml else ""
        if command.positional:
            first = f"{command.positional.upper()} "
        usage = f"directpo {name} {first}[--option VALUE ...]"
        sub = commands.add_parser(
            name, help=command.help, description=command.help + ".", usage=usage, allow_abbrev=False
        )
        if command.takes_yaml:
            sub.add_argument(
                "config",
                nargs="?",
                metavar="CONFIG.yaml",
                help="optional YAML file of options; flags override it",
            )
        if command.positional:
            sub.add_argument(
                "positional",
                nargs="?",
                metavar=command.positional.upper(),
                default=argparse.SUPPRESS,
                help=f"same as --{command.positional}",
            )
        booleans = _boolean_options(command.options)
        for option_name, help_text, default in option_help(command.options):
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            bare = {"nargs": "?", "const": "true"} if option_name in booleans else {}
            sub.add_argument(
                f"--{option_name}",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{help_text} (default: {shown})".replace("%", "%%"),
                **bare,  # TRL's style: a bare --bf16 means true
            )
    return parser


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


NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf|nan)", re.IGNORECASE)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        argv = _attach_negative_values(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in COMMANDS and COMMANDS[argv[0]].takes_yaml:
            help_asked = any(token in ("-h", "--help") for token in argv[1:])
            if not help_asked:  # TRL's flags too: read here, judged all at once
                command = COMMANDS[argv[0]]
                config_file, overrides = _yaml_and_flags(argv[1:], command.options)
                command.run(load_options(command.options, config_file, overrides))
                return 0
        args, unknown = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        command = COMMANDS[args.command]
        if unknown:
            flag = next((u for u in unknown if u.startswith("-")), unknown[0])
            raise ConfigError(_unknown_flag_message(flag, command.options))
        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        if "positional" in overrides:
            overrides[command.positional] = overrides.pop("positional")
        options = load_options(command.options, getattr(args, "config", None), overrides)
        command.run(options)
    except DirectpoError as err:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the same error
            print(f"directpo: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("directpo: interrupted", file=sys.stderr)
        return 130
    return 0


def _boolean_options(options: type) -> set[str]:
    hints = typing.get_type_hints(options)
    return {f.name for f in dataclasses.fields(options) if hints[f.name] in (bool, bool | None)}


def _looks_like_config_file(token: str) -> bool:
    return token.lower().endswith((".yaml", ".yml", ".json")) or os.path.isfile(token)


def _yaml_and_flags(tokens: Sequence[str], options: type) -> tuple[str | None, dict[str, Any]]:
    """(YAML file, flags) of ``train [CONFIG.yaml] [--key value | --key=value | --flag ...]``.

    Any ``--key`` is read, known or not (TRL's names are judged later, all at once): it takes
    the next token as its value unless that is another flag; a boolean option written bare
    (``--bf16``, TRL's style) is true. The YAML file is the first free token, or ``--config``
    (TRL's spelling)."""
    booleans = _boolean_options(options)
    config_file: str | None = None
    flags: dict[str, Any] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if not token.startswith("--"):
            if config_file is not None:
                raise ConfigError(f"unexpected argument '{token}'")
            config_file, index = token, index + 1
            continue
        key, sep, value = token[2:].partition("=")
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        takes_next = following is not None and not following.startswith("--")
        if key in booleans and takes_next and _looks_like_config_file(following):
            takes_next = False  # a bare boolean flag followed by the YAML file
        if not sep:
            value, index = (following, index + 1) if takes_next else ("true", index)
        if key == "config":
            config_file = value
        elif key.startswith("no_") and not sep and not takes_next:
            flags[key[3:]] = "false"  # HfArgumentParser's --no_remove_unused_columns
        else:
            flags[key] = value
        index += 1
    return config_file, flags


def _unknown_flag_message(flag: str, options: type) -> str:
    if not flag.startswith("-"):
        return f"unexpected argument '{flag}'"
    name = flag.lstrip("-").split("=", 1)[0]
    names = [n for n, _, _ in option_help(options)]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean '--{close[0]}'?" if close else ""
    return f"unknown option '--{name}'{hint}"


if __name__ == "__main__":
    sys.exit(main())
