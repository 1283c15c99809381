"""A command line's words around its command, read before any command's parser: an unknown
command's hint (a typo, another tool's word such as TRL's ``dpo``, a config file given first),
``help`` / ``version`` written as words, a flag given before any command, and every command's
option names (for typographic dashes)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from directpo.cli_commands import COMMANDS
from directpo.foreign_names import RENAMED
from directpo.option_hints import SPELLINGS, abbreviated, elsewhere, meant_option
from directpo.option_loading import names_yaml
from directpo.options import option_help
from directpo.trl_compat import ALIASES

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


def command_hint(word: str) -> str:
    """What to write for an unknown command: the command meant (a typo, TRL's ``dpo``), or,
    for a config file given first (``directpo recipe.yaml``), the train line that reads it."""
    if names_yaml(word):
        return f"a config file follows the command: directpo train {word}"
    meant = FOREIGN_COMMANDS.get(word.lower().replace("-", "_"))
    if meant in FOREIGN_DOES:
        return f"did you mean '{meant}'? ({FOREIGN_DOES[meant]})"
    close = [meant] if meant else difflib.get_close_matches(word.lower(), COMMANDS, n=1)
    return f"did you mean '{close[0]}'?" if close else f"the commands are {', '.join(COMMANDS)}"


TOP_LEVEL_FLAGS = ("--help", "--version", "-h", "-V")


def every_option_name() -> set[str]:
    """The options of every command, and the other tools' names train reads."""
    names = {name for c in COMMANDS.values() for name, _, _ in option_help(c.options)}
    return names | set(ALIASES) | set(RENAMED) | {"config", "help", "version"}


def spelt_as_flags(argv: list[str]) -> list[str]:
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


def unknown_top_level(token: str, rest: Sequence[str] = ()) -> str:
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
