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
import difflib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from directpo.config import (
    DemoOptions,
    DPOConfig,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)
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
        for option_name, help_text, default in option_help(command.options):
            shown = ",".join(map(str, default)) if isinstance(default, list) else default
            sub.add_argument(
                f"--{option_name}",
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{help_text} (default: {shown})".replace("%", "%%"),
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
