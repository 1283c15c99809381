"""Command line: parse, call the library, turn known errors into one line and exit code 2.

    directpo train [CONFIG.yaml] [--key value ...]

Every option of `DPOConfig` is a flag; a flag overrides the YAML file; booleans take
true/false; lists are comma-separated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from directpo.config import load_config, option_help
from directpo.errors import ConfigError, DirectpoError


class _Parser(argparse.ArgumentParser):
    """Usage errors become a one-line ConfigError instead of argparse's usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="directpo",
        description="Direct Preference Optimization for causal language models.",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    train = commands.add_parser(
        "train",
        help="train a model with DPO",
        allow_abbrev=False,
        usage="directpo train [CONFIG.yaml] [--option VALUE ...]",
        description="Train a causal LM with DPO. Options come from CONFIG.yaml and/or flags; "
        "a flag overrides the file. Booleans take true/false; lists are comma-separated.",
    )
    train.add_argument(
        "config", nargs="?", metavar="CONFIG.yaml", help="optional YAML file of options"
    )
    for name, help_text, default in option_help():
        shown = ",".join(default) if isinstance(default, list) else default
        train.add_argument(
            f"--{name}",
            default=argparse.SUPPRESS,
            metavar="VALUE",
            help=f"{help_text} (default: {shown})".replace("%", "%%"),
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:
            flag = next((u for u in unknown if u.startswith("-")), unknown[0])
            raise ConfigError(_unknown_flag_message(flag))
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "train":
            from directpo.trainer import train  # heavy imports only when training

            overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
            train(load_config(args.config, overrides))
    except DirectpoError as err:
        print(f"directpo: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("directpo: interrupted", file=sys.stderr)
        return 130
    return 0


def _unknown_flag_message(flag: str) -> str:
    import difflib

    from directpo.config import option_names

    name = flag.lstrip("-").split("=", 1)[0]
    if not flag.startswith("-"):
        return f"unexpected argument '{flag}'"
    close = difflib.get_close_matches(name, option_names(), n=1)
    hint = f"; did you mean '--{close[0]}'?" if close else ""
    return f"unknown option '--{name}'{hint}"


if __name__ == "__main__":
    sys.exit(main())
