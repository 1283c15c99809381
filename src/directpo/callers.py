"""Who called directpo, so that a message is worded as its user wrote the input: a recipe
file's user is told ``beta: 0.1 in recipe.yaml``, a command line's ``--beta 0.1``, a Python
caller's ``beta=0.1`` (and train()'s ``train_dataset=``); a fix's settings ``set lora_r: 16`` /
``give --lora_r 16`` / ``pass lora_r=16`` (spell_setting), a fix that leaves the value to the
user ``raise max_length`` / ``raise --max_length`` / ``pass a higher max_length=...``
(spell_change; ``set max_steps`` / ``give --max_steps`` / ``pass max_steps=...`` where it
has no direction: spell_setting of the name alone), and a chat template's fix names what
the calling command can change (train's chat_template option, the model folder's template of
score / rank / generate, ImplicitReward's tokenizer argument).

One value, set once by each entry point (the CLI's commands, ``train()``, ``ImplicitReward``,
an options class built in Python: DPOConfig's keywords, ScoreOptions' with the folder's
template; ``score_file`` / ``rank_file`` / ``generate_file`` as their options were built) and
read where a message is made. The
outermost entry's value holds for the whole call: score's ImplicitReward speaks as score, and
train's online labeller as train. It is a context variable, so it ends with its call (a
Python call after a command in one process is told in Python's words), it is the caller's own
in each thread of a notebook, and a forked tokenizing process inherits it; a thread directpo
starts for a call runs in a copy of its caller's context (``in_callers_context``)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
import functools
import shlex
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


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


@contextlib.contextmanager
def speaking_as(who: Caller) -> Iterator[Caller]:
    """``who`` calls while in it, whoever called outside: a part of a call whose input the user
    wrote otherwise (the recipe file given to ``train("recipe.yaml")``, read in its words)."""
    token = _CALLER.set(who)
    try:
        yield who
    finally:
        _CALLER.reset(token)


def written_as(spelling: Spelling) -> contextlib.AbstractContextManager[Caller]:
    """Keys read from one source, said as that source wrote them whoever called: a command
    line's ``--push_to_hub true`` beside a recipe file, a recipe's keys under train() (the
    caller's entry and recipe kept, its spelling replaced while in it)."""
    return speaking_as(dataclasses.replace(caller(), spelling=spelling))


# each option a source wrote (a recipe's keys, the flags or keywords that override them): each
# said in its own source's words within one line, during the options' one build
_WRITTEN_BY: contextvars.ContextVar[dict[str, Spelling] | None] = contextvars.ContextVar(
    "written_by", default=None
)
# how the options no source set were said meanwhile, in the caller's words (their defaults)
_UNWRITTEN_SAID: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "unwritten_said", default=None
)


@contextlib.contextmanager
def options_written_by(spellings: dict[str, Spelling]) -> Iterator[set[str]]:
    """Each option in ``spellings`` said as its source wrote it while in it, whoever calls: a
    line of an ``eval_dtype`` the recipe set under a ``--dtype`` the command line gave reads
    ``eval_dtype: bfloat16 under --dtype float32``, its advice ``give --dtype bfloat16``. It
    yields the texts that said an option no source set meanwhile (in the caller's words: a
    default belongs to no source, so a line can only say it as its own source would, which is
    known once the line is whole: option_loading's ``_said_as_the_overrides``)."""
    unwritten: set[str] = set()
    token = _WRITTEN_BY.set(spellings)
    unwritten_token = _UNWRITTEN_SAID.set(unwritten)
    try:
        yield unwritten
    finally:
        _UNWRITTEN_SAID.reset(unwritten_token)
        _WRITTEN_BY.reset(token)


def _own_spelling(name: str) -> Spelling | None:
    """The spelling of ``name``'s own source where it is not the caller's, else None."""
    spelling = (_WRITTEN_BY.get() or {}).get(name)
    return spelling if spelling not in (None, caller().spelling) else None


def _noting_unwritten(spell: F) -> F:
    """``spell`` (a function saying the option it is given first) noting its text where no
    source wrote that option while options_written_by says whose each is."""

    @functools.wraps(spell)
    def noted(name: str, *args: Any, **kwargs: Any) -> Any:
        text = spell(name, *args, **kwargs)
        written, unwritten = _WRITTEN_BY.get(), _UNWRITTEN_SAID.get()
        if written and name not in written and unwritten is not None:
            unwritten.add(text)
        return text

    return noted  # type: ignore[return-value]


def entry_point(who: Caller) -> Callable[[F], F]:
    """A function called by ``who`` where no outer entry called it."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with called_by(who):
                return function(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate


def options_entry(function: F) -> F:
    """A command's function (score_file) called as its options were built, where no outer
    entry called it: the CLI's flags, or a Python caller's keywords for options built in
    Python (ScoreOptions(...) then score_file(options) was told --flags to give)."""

    @functools.wraps(function)
    def wrapped(options: Any, *args: Any, **kwargs: Any) -> Any:
        built_by = getattr(options, "__dict__", {}).get("_built_by")
        with called_by(built_by or Caller(Spelling.FLAGS, Entry.FOLDER)):
            return function(options, *args, **kwargs)

    return wrapped  # type: ignore[return-value]


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


class Blank(str):
    """A value for the user to fill in (``N``, ``RATIO``), said as is whoever calls."""


def spell_value(value: Any) -> str:
    """``value`` as the caller writes it: YAML's ``true`` / ``null`` / ``[a, b]`` in a recipe,
    a flag's text (``a,b``; quoted where the shell would split it), Python's ``True`` /
    ``None`` / ``'word'`` in a call."""
    from directpo.option_values import as_yaml  # (option_values words its refusals here)

    spelling = caller().spelling
    if isinstance(value, Blank):
        return str(value)
    if spelling is Spelling.PYTHON:
        return repr(value)
    if isinstance(value, float):  # (YAML 1.1's dump writes 1e-05 as 1.0e-05)
        return repr(value)
    flat = isinstance(value, list | tuple) and not any(isinstance(v, list | dict) for v in value)
    if spelling is Spelling.FLAGS and flat:  # (a flag's list: a,b)
        return shlex.quote(",".join(spell_value(v) for v in value))
    if spelling is Spelling.FLAGS:  # (a flag's text as the shell passes it: --x 'a b', no)
        return shlex.quote(value if isinstance(value, str) else as_yaml(value))
    return as_yaml(value)


def spell_list(name: str, given: Any, apart: bool = True) -> str:
    """The list option ``name``'s value as its own source wrote it, where a refusal echoes it
    (its '(got ...)', its 'did you mean ...'): a flag's words as typed (``--loss_type sigmod
    sft``: ``sigmod sft``; ``--loss_type sigmod,sft``: ``sigmod,sft``), a recipe's ``[sigmod,
    sft]``, Python's ``['sigmod', 'sft']``. The space-typed flag was said ``sigmod,sft`` and a
    repeat ``[sigmoid, sigmoid]`` (YAML's) to every caller; a flag beside a recipe, as the
    recipe writes it. ``apart``: a flag's list is said as words typed apart (a flag's value
    given as a list was), else as ``a,b`` (a value of its own, said as one typed with commas)."""
    spelling = _own_spelling(name) or caller().spelling
    several = isinstance(given, list | tuple) and all(isinstance(word, str) for word in given)
    if spelling is Spelling.FLAGS and several and apart:  # (a flag's words, typed apart)
        return " ".join(shlex.quote(word) for word in given)
    with written_as(spelling):
        return spell_value(given)


@_noting_unwritten
def spell_option(name: str, value: Any = _NO_VALUE, in_recipe: bool = True) -> str:
    """``name`` (with ``value``) as the caller writes it: ``--beta 0.1``, ``beta: 0.1 in
    recipe.yaml``, ``beta=0.1``. Without a value, the name to complete (``--beta``, ``beta=``);
    with ``...``, a value to fill in (``--beta``, ``beta=...``, ``beta: ... in recipe.yaml``).
    ``in_recipe``: the recipe's path after it (not where a line says several)."""
    if (own := _own_spelling(name)) is not None:
        with written_as(own):
            return spell_option(name, value, in_recipe)
    who = caller()
    given = value is not _NO_VALUE and value is not ...
    shown = "..." if value is ... else spell_value(value) if given else ""
    if who.spelling is Spelling.FLAGS:
        if value is True:  # (a switch stands alone)
            return f"--{name}"
        if given and shown.lstrip("'").startswith("--"):  # (--name --x read --x as a flag)
            return f"--{name}={shown}"
        return f"--{name} {shown}" if given else f"--{name}"
    if who.spelling is Spelling.RECIPE:
        where = f" in {who.recipe}" if who.recipe and in_recipe else ""
        return f"{name}: {shown}".rstrip() + where
    return f"{name}={shown}"


def said(name: str, value: Any = True) -> str:
    """``name: value`` within a sentence, as the caller writes it."""
    return spell_option(name, value, in_recipe=False)


def said_given(name: str, given: Any) -> str:
    """``said`` of a list option's value as the user gave it: a flag's words typed apart as
    typed (spell_list; ``--reward_weights 1 2`` was said ``--reward_weights 1,2``)."""
    own = _own_spelling(name) or caller().spelling
    several = isinstance(given, list | tuple) and all(isinstance(word, str) for word in given)
    if own is Spelling.FLAGS and several:
        return f"--{name} {spell_list(name, given)}"
    return said(name, given)


def spell_unset(name: str) -> str:
    """An unset value as the source that wrote option ``name`` writes it: YAML's (and a flag's)
    null, Python's None (``DPOConfig(seed=-1)`` and ``train("r.yaml", max_length=0)``'s
    keyword were told 'must be null or ...'; the recipe's own key still is)."""
    if (own := _own_spelling(name)) is not None:
        with written_as(own):
            return spell_value(None)
    return spell_value(None)


def spell_setting(*settings: tuple[str, Any] | str, last: str = ", ") -> str:
    """What to write to set ``settings`` (an option's name alone, or (name, value) pairs; a
    value of ``...`` or a ``Blank`` to fill in), as the caller writes options: ``set lora_r:
    16, lora_alpha: 32`` in a recipe (as the docs write it, without the file's path: one file
    holds the keys), ``give --lora_r 16, --lora_alpha 32`` on a command line, ``pass
    lora_r=16, lora_alpha=32`` to a Python call. ``last`` joins the last two (`` and ``)."""
    first = settings[0] if isinstance(settings[0], str) else settings[0][0]
    if (own := _own_spelling(first)) is not None:  # (a recipe's key: 'set x: 1', not 'give')
        with written_as(own):
            return spell_setting(*settings, last=last)
    said = [
        spell_name(setting) if isinstance(setting, str) else spell_option(*setting, in_recipe=False)
        for setting in settings
    ]
    joined = last.join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)
    return f"{setting_verb()} {joined}"


def spell_pair(first: tuple[str, Any], joint: str, second: tuple[str, Any]) -> str:
    """Two settings said together as the caller wrote them, a problem's lead-in: ``eval_dtype:
    bfloat16 under dtype: float32`` (a recipe), ``--eval_dtype bfloat16 under --dtype float32``,
    ``eval_dtype='bfloat16' under dtype='float32'``."""
    said = [spell_option(*setting, in_recipe=False) for setting in (first, second)]
    return f" {joint} ".join(said)


@_noting_unwritten
def spell_name(name: str) -> str:
    """An option to set, named alone as the caller gives it: ``max_steps`` (a recipe's key),
    ``--max_steps``, ``max_steps=...``."""
    spelling = _own_spelling(name) or caller().spelling
    return name if spelling is Spelling.RECIPE else spell_option(name, ...)


@_noting_unwritten
def spell_given(name: str, value: Any) -> str:
    """An option named as the caller gave it, where a refusal names it or says to remove it:
    the key alone in a recipe (``lora_r``), ``--lora_r 8`` on a command line, ``lora_r=8`` in
    Python (a flag's or a keyword's user was told the recipe's bare key)."""
    if (_own_spelling(name) or caller().spelling) is Spelling.RECIPE:
        return name  # (a recipe's key, whoever called: the line names it as the file does)
    return spell_option(name, value, in_recipe=False)


@_noting_unwritten
def spell_entry(name: str, key: Any) -> str:
    """A key of the mapping option ``name``, as the caller writes it: ``liger_kernel_config:
    rope`` (a recipe's nesting, as the docs write it), ``rope in --liger_kernel_config``,
    ``liger_kernel_config['rope']`` (a recipe's ``name: key`` was said to every caller)."""
    if (own := _own_spelling(name)) is not None:  # (as the source that set it writes it)
        with written_as(own):
            return spell_entry(name, key)
    spelling = caller().spelling
    if spelling is Spelling.PYTHON:
        return f"{name}[{key!r}]"
    if spelling is Spelling.FLAGS:
        return f"{spell_value(key)} in --{name}"
    return f"{name}: {spell_value(key)}"


def _overrides_written(config: Any) -> dict[str, Spelling]:
    """The options the overrides of a file loaded with them set, and their spelling."""
    written = getattr(config, "__dict__", {}).get("_written_by") or {}
    return {key: said for key, said in written.items() if said is not Spelling.RECIPE}


def keeping_sources(loaded: Any, rebuilt: T) -> T:
    """``rebuilt`` (``loaded`` built again, dataclasses.replace) knowing whose each option is,
    as ``loaded`` did (load_options' ``_written_by``, read by as_loaded and in_askers_words):
    a rebuild dropped it, so a recipe's ``seed: null`` (the drawn seed's rebuild) had every
    later line say ``--max_length 2048`` beside it as the recipe's 'set max_length: 512'."""
    if written := getattr(loaded, "__dict__", {}).get("_written_by"):
        object.__setattr__(rebuilt, "_written_by", written)
    # and the tool whose names it was written in (foreign_defaults: a torchtune recipe's
    # seed: null, drawn and rebuilt, lost its start line)
    if tool := getattr(loaded, "__dict__", {}).get("_foreign_tool"):
        object.__setattr__(rebuilt, "_foreign_tool", tool)
    return rebuilt


def as_loaded(config: Any) -> contextlib.AbstractContextManager[set[str]]:
    """Checks after the load saying each option as its source wrote it, as the load does:
    'directpo train r.yaml --dataset_test_split train' was told the recipe's
    'dataset_test_split: train is ...', a key it lacks, where the flag is '--dataset_test_split
    train'. (An option no source set is said in the caller's words.)"""
    return options_written_by(_overrides_written(config))


@contextlib.contextmanager
def in_askers_words(config: Any, asked_by: str, unset: Collection[str]) -> Iterator[None]:
    """A check after the load, whose line says to set ``unset`` options because ``asked_by``
    asks for them, said as the load says a line: an option the overrides of a file loaded with
    them set in their words (load_options keeps whose each option is, ``_written_by``), and
    where they set ``asked_by`` and no source set any of ``unset``, the line in their words:
    ``directpo train r.yaml --eval_steps 5`` was told the recipe's 'set eval_file ..., or
    remove eval_steps', keys it lacks, where the flag without a file is told 'give --eval_file
    ..., or remove --eval_steps 5'. Else the caller's."""
    written = getattr(config, "__dict__", {}).get("_written_by") or {}
    overrides = _overrides_written(config)
    said = overrides.get(asked_by)
    with options_written_by(overrides):
        if said in (None, caller().spelling) or any(name in written for name in unset):
            yield
        else:
            with written_as(said):
                yield


def spell_command(command: str, *settings: tuple[str, Any]) -> str:
    """The command ``command`` (score, rank, generate) with ``settings`` as the caller runs it:
    ``directpo score --chosen_column a`` from a shell (and a recipe's user, whose train
    recipe does not run score), ``score_file(ScoreOptions(chosen_column='a'))`` in Python (a
    Python caller was told the CLI command, which its call does not run)."""
    if caller().spelling is Spelling.PYTHON:
        given = ", ".join(spell_option(*setting) for setting in settings) or "..."
        return f"{command}_file({command.capitalize()}Options({given}))"
    with written_as(Spelling.FLAGS):
        return " ".join([f"directpo {command}", *(spell_option(*s) for s in settings)])


def spell_options(*settings: tuple[str, Any]) -> str:
    """Options with their values, as a command's caller gives them: ``--a x --b y``,
    ``a='x', b='y'`` (``a: x, b: y`` in a recipe's words)."""
    joint = " " if caller().spelling is Spelling.FLAGS else ", "
    return joint.join(spell_option(*setting, in_recipe=False) for setting in settings)


# a change of an option whose value the user picks, as a keyword's caller is asked for it
_COMPARED = {"raise": "higher", "lower": "lower"}


def spell_change(verb: str, *names: str, joint: str = " / ") -> str:
    """A change of ``names`` whose new value the user picks (``verb``: ``raise`` or
    ``lower``), as the caller writes options: ``lower max_prompt_length`` (a recipe's key),
    ``lower --max_prompt_length`` (the flag to give), ``pass a lower max_prompt_length=...``
    (a keyword: "lower max_prompt_length" named no keyword to a Python caller). ``joint``
    joins names that are alternatives (``lower warmup_steps / warmup_ratio``).

    The one phrasing of a fix that names an option without a value: a direction, this; a
    value to choose, ``spell_setting(name)`` (``set max_steps`` / ``give --max_steps`` /
    ``pass max_steps=...``); a switch, ``spell_setting((name, True))``. A recipe's words
    ("raise max_length", "set skip_invalid_rows") were said to every caller."""
    if (own := _own_spelling(names[0])) is not None:  # (as the source that set it writes it)
        with written_as(own):
            return spell_change(verb, *names, joint=joint)
    named = joint.join(spell_name(name) for name in names)
    if caller().spelling is Spelling.PYTHON:
        return f"pass a {_COMPARED[verb]} {named}"
    return f"{verb} {named}"


def setting_verb() -> str:
    """How the caller is asked to set an option: ``set`` (a recipe's key), ``give`` (a flag),
    ``pass`` (a keyword)."""
    return {Spelling.RECIPE: "set", Spelling.FLAGS: "give", Spelling.PYTHON: "pass"}[
        caller().spelling
    ]


# what to do instead of a refused name: fixed text, or words made when the message is made,
# in the running caller's spelling (a table's entry that sets options: spell_setting)
Advice = str | Callable[[], str]


def advice_text(advice: Advice) -> str:
    """``advice`` as the running caller reads it."""
    return advice() if callable(advice) else advice


def source_spelling(where: str) -> Spelling:
    """How the source ``where`` names wrote its keys: ``command line`` its flags, a Python call
    (``train()``'s keywords, ``DPOConfig`` and the other options classes) keywords, a recipe
    file (or a mapping read as one) YAML keys. The one place ``where`` says a spelling."""
    import os

    if where == "command line":
        return Spelling.FLAGS
    if os.path.exists(where):  # (a recipe file named like a class, 'Recipe', is still one)
        return Spelling.RECIPE
    if where.endswith("()") or (where.isidentifier() and where[:1].isupper()):
        return Spelling.PYTHON
    return Spelling.RECIPE


@_noting_unwritten
def spell_shape(name: str, yaml_shape: str, python_shape: str) -> str:
    """An option whose value is a shape to fill in (a mapping of ``...``), as the caller writes
    it: ``dataset_mixture: {datasets: [...]}`` in a recipe, ``--dataset_mixture '{datasets:
    [...]}'`` (a flag reads YAML), ``dataset_mixture={'datasets': [...]}`` in Python."""
    spelling = _own_spelling(name) or caller().spelling
    if spelling is Spelling.PYTHON:
        return f"{name}={python_shape}"
    if spelling is Spelling.FLAGS:
        return f"--{name} {shlex.quote(yaml_shape)}"
    return f"{name}: {yaml_shape}"
