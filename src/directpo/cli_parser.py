"""The ``directpo`` commands' argparse parser: each command's flags and --help built from its
options (train's in sections), argparse's usage errors as one-line ConfigErrors, --version's
line (the libraries a bug report needs)."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from typing import Any

from directpo.cli_commands import COMMANDS
from directpo.cli_flags import BOOLEAN, LIST, PATHS, as_written, option_kinds
from directpo.command_hints import command_hint
from directpo.errors import ConfigError
from directpo.launchers import first_rank
from directpo.options import option_help


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
            raise ConfigError(f"unknown command '{typo[1]}'; {command_hint(typo[1])}")
        raise ConfigError(message)


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
