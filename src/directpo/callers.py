"""Who called directpo, so that a message is worded as its user wrote the input: a recipe
file's user is told ``beta: 0.1 in recipe.yaml``, a command line's ``--beta 0.1``, a Python
caller's ``beta=0.1`` (and train()'s ``train_dataset=``), and a chat template's fix names what
the calling command can change (train's chat_template option, the model folder's template of
score / rank / generate, ImplicitReward's tokenizer argument).

One value, set once by each entry point (the CLI's commands, ``train()``, ``ImplicitReward``,
``score_file`` / ``rank_file`` / ``generate_file``) and read where a message is made. The
outermost entry's value holds for the whole call: score's ImplicitReward speaks as score, and
train's online labeller as train. It is a context variable, so it ends with its call (a
Python call after a command in one process is told in Python's words), it is the caller's own
in each thread of a notebook, and a forked tokenizing process inherits it; a thread directpo
starts for a call runs in a copy of its caller's context (``in_callers_context``)."""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from directpo.option_values import as_yaml

F = TypeVar("F", bound=Callable[..., Any])


class Spelling(enum.Enum):  # how the user wrote the options
    RECIPE = "recipe"  # a YAML file's keys (directpo train recipe.yaml)
    FLAGS = "flags"  # a command line's --flags
    PYTHON = "python"  # keyword arguments


class Entry(enum.Enum):  # what the user called, for what it lets them change
    TRAIN = "train"  # train(), directpo train, demo: the chat_template option
    FOLDER = "folder"  # score, rank, generate: the model folder's own chat template
    IMPLICIT_REWARD = "implicit_reward"  # ImplicitReward: its tokenizer argument


@dataclass(frozen=True)
class Caller:
    spelling: Spelling
    entry: Entry
    recipe: str | None = None  # the recipe file's path, where there is one


# outside any entry (a library function called on its own, check_environment say): train's
# options as the docs write them, as each such function was worded before it knew its caller
UNCALLED = Caller(Spelling.RECIPE, Entry.TRAIN)

_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)


def caller() -> Caller:
    """The caller of the call in progress."""
    return _CALLER.get() or UNCALLED


@contextlib.contextmanager
def called_by(who: Caller) -> Iterator[Caller]:
    """``who`` calls while in it, unless an outer entry already did (its words are kept)."""
    token = _CALLER.set(_CALLER.get() or who)
    try:
        yield caller()
    finally:
        _CALLER.reset(token)


def entry_point(who: Caller) -> Callable[[F], F]:
    """A function called by ``who`` where no outer entry called it."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with called_by(who):
                return function(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def as_command(function: Callable[..., int], *args: Any) -> int:
    """``function`` (the CLI's main) in a context of its own, in which ``command_caller``
    names the caller once the command line is read: none of it is left for a later call in
    the process (a Python train() after ``main([...])`` in a notebook)."""
    return contextvars.copy_context().run(function, *args)


def command_caller(who: Caller) -> None:
    """``who`` calls from here to ``as_command``'s end, unless an outer entry did."""
    if _CALLER.get() is None:
        _CALLER.set(who)


def in_callers_context(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` to run in another thread as its caller (a new thread starts with none)."""
    return functools.partial(contextvars.copy_context().run, function)


_NO_VALUE = object()


def spell_option(name: str, value: Any = _NO_VALUE) -> str:
    """``name`` (with ``value``) as the caller writes it: ``--beta 0.1``, ``beta: 0.1 in
    recipe.yaml``, ``beta=0.1``. Without a value, the name to complete (``--beta``, ``beta=``);
    with ``...``, a value to fill in (``--beta``, ``beta=...``, ``beta: ... in recipe.yaml``)."""
    who = caller()
    given = value is not _NO_VALUE and value is not ...
    shown = "..." if value is ... else repr(value) if given else ""
    if who.spelling is Spelling.PYTHON:
        return f"{name}={shown}"
    # a value as YAML writes it (true, null, {datasets: [{id: a.jsonl}]}: Python's True, None,
    # {'datasets': ...} were no value a recipe or flag takes), and on a command line quoted
    # for the shell (--dataset_mixture {datasets: ...} bare was split and globbed by it)
    if who.spelling is Spelling.FLAGS:
        if not given:
            return f"--{name}"
        return f"--{name} {shlex.quote(value if isinstance(value, str) else as_yaml(value))}"
    where = f" in {who.recipe}" if who.recipe else ""
    # (a string YAML would read as another value quoted: 'no', '5')
    return f"{name}: {as_yaml(value) if given else shown}".rstrip() + where
