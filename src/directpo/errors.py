"""Errors a user can act on.

Every problem caused by user input (config, data file, model path) raises a subclass of
`DirectpoError` with a one-line message naming the key, file, row and problem. The CLI prints
that line and exits with code 2; nothing else about the failure is shown (no traceback).
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Iterator


class DirectpoError(Exception):
    """A user-facing error: the message is one line and complete on its own."""

    exit_code = 2
    # the rank of the one process that raised it (a distributed run's out-of-memory error),
    # None when every rank raises the same error and rank 0 alone says it
    rank: int | None = None
    # under torchrun: rank 0 met the same error and says it (this rank stays quiet)
    said_by_rank_0: bool = False

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class ConfigError(DirectpoError):
    """An option is unknown, of the wrong type, or impossible."""


class ConfigErrors(ConfigError):
    """Several options that cannot be used, reported together: one line each."""

    def __init__(self, where: str, problems: list[str], rows: list[str] | None = None):
        """``rows``: the data files' lines said with the options' (their bad rows, read in the
        same pass), under a heading of their own: they are not options."""
        lines = [" ".join(problem.split()) for problem in problems]
        data = [" ".join(line.split()) for line in rows or []]
        prefix = f"{where}: " if where else ""
        if len(lines) == 1 and not data:
            message = prefix + lines[0]
        else:
            count = options_named(lines)
            noun = "option cannot" if count == 1 else "options cannot"
            message = f"{prefix}{count} {noun} be used:\n" + "\n".join(
                f"  {line}" for line in lines
            )
            if data:
                message += "\nand the data files' rows:\n" + "\n".join(f"  {line}" for line in data)
        Exception.__init__(self, message)
        self.problems = lines
        self.rows = data
        self.where = where

    @staticmethod
    def joined(errors: list[ConfigError]) -> ConfigError:
        """Several errors of one pass as one (the only one as it is), headed by the first's
        place (``config.yaml: ``) as it is alone."""
        if len(errors) == 1:
            return errors[0]
        lines = [line for error in errors for line in getattr(error, "problems", [str(error)])]
        rows = [line for error in errors for line in getattr(error, "rows", [])]
        return ConfigErrors(getattr(errors[0], "where", ""), lines, rows)


# the source heading a line where flags (or train()'s keywords) and a file are refused together
# (option_loading._headed_by_source): 'command line: ', 'train(): ', a file's path
SOURCE_HEAD = re.compile(
    r"(?:command line|train\(\)|[^'\"\s:]*[./][^'\"\s:]*|[^'\":]*\.(?:ya?ml|json)): "
)  # (a path with spaces: a config file's ending)


def options_named(lines: list[str]) -> int:
    """How many options ``lines`` are about, for 'N options cannot be used' (it counted lines:
    'warmup_steps and warmup_ratio are both set' beside beta's line was '2 options', and
    warmup_steps' limit beside that line '3 options' of two). A line is about the options that
    lead it ('a and b are both set', 'a: ...') and the one it 'cannot be used with'; a line
    that leads with no option's name (an unknown key's) is one option of its own."""
    known = _option_names()
    about: set[str] = set()
    for at, line in enumerate(lines):
        names = _leading_options(line, known)
        if not names and (source := SOURCE_HEAD.match(line)):
            # a line headed by its source when flags and a file are refused together
            # ('m.yaml: warmup_steps and warmup_ratio are both set', 'command line: beta ...')
            names = _leading_options(line[source.end() :], known)
        about |= set(names) or {f"line {at}"}
    return len(about)


def _leading_options(line: str, known: frozenset[str]) -> list[str]:
    """The options that lead ``line`` (joined by 'and', ',' or '/') and the one it 'cannot
    be used with'."""
    names = []
    rest = line
    while (word := re.match(r"(?:--)?([a-z][a-z0-9_]*)", rest)) and word[1] in known:
        names.append(word[1])
        rest = rest[word.end() :]
        if not (joint := re.match(r",? and |, | / ", rest)):
            break
        rest = rest[joint.end() :]
    other = re.search(r" cannot be used with (?:--)?([a-z][a-z0-9_]*)", line)
    return names + ([other[1]] if names and other and other[1] in known else [])


@functools.cache
def _option_names() -> frozenset[str]:
    """Every command's option names (read when several refusals are said together)."""
    from directpo.option_hints import command_options

    return frozenset(name for names in command_options().values() for name in names)


@contextlib.contextmanager
def collected(problems: list[str], kind: type[DirectpoError] = ConfigError) -> Iterator[None]:
    """Runs the checks inside, adding a refusal's lines to ``problems`` instead of raising it:
    independent checks then report every problem in one pass (a config fixed one error per run
    needs as many runs as mistakes, each perhaps loading a model first). ``kind``: the errors
    collected (ConfigError's by default; DataError's: each source of several read in turn)."""
    try:
        yield
    except kind as error:
        problems.extend(getattr(error, "problems", None) or [str(error)])


def refuse_all(problems: list[str], rows: list[str] | None = None) -> None:
    """Raises the ``problems`` collected (one ``ConfigError`` of them all, with the data files'
    ``rows`` lines), if any."""
    if problems:
        raise ConfigErrors("", problems, rows)


# a keyword's ``=value`` as spell_option writes it: a repr ('float16', [...], 0.1, True, ...)
KEYWORD_VALUE = r"""=(?:'[^']*'|"[^"]*"|\[[^\]]*\]|\{[^}]*\}|[^\s,;:()]+)"""


def respelled(error: ConfigError, spellings: dict[str, str]) -> ConfigError:
    """``error`` with each option in ``spellings`` named as the user wrote it, first mention of
    each line: "max_new_tokens (directpo: generate_max_new_tokens) must be >= 1" (TRL's
    alias is what their file holds; directpo's name is what ``--help`` and config.yaml show)."""
    if not spellings:
        return error
    names = "|".join(map(re.escape, spellings))
    # (a keyword's value with it: train()'s "min_p (directpo: generate_min_p)=0.1" read as
    # neither name's keyword; now "min_p=0.1 (directpo: generate_min_p)")
    pattern = re.compile(r"(?<![\w./-])(" + names + r")(?![\w/])(" + KEYWORD_VALUE + ")?")

    def line_of(problem: str) -> str:
        seen: set[str] = set()

        def name(match: re.Match[str]) -> str:
            option, value = match.group(1), match.group(2) or ""
            if option in seen:
                return option + value
            seen.add(option)
            return f"{spellings[option]}{value} (directpo: {option})"

        return pattern.sub(name, problem)

    problems = getattr(error, "problems", None) or [str(error)]
    rows = getattr(error, "rows", None)  # (data lines: no option of theirs to respell)
    return ConfigErrors(getattr(error, "where", ""), [line_of(line) for line in problems], rows)


class DataError(DirectpoError):
    """A preference file or one of its rows cannot be used."""


class ModelLoadError(DirectpoError):
    """A model or tokenizer folder cannot be loaded."""


class CheckpointError(DirectpoError):
    """A checkpoint cannot be found, read or written (earlier checkpoints stay intact)."""


class TrainingStopped(DirectpoError):
    """Training cannot go on (e.g. repeated non-finite losses); checkpoints are intact."""

    exit_code = 1


def first_line(exc: BaseException) -> str:
    """The first line of a library's exception message (at most 300 characters), or its type."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


# the allocators' words for running out: torch.OutOfMemoryError (CUDA, ROCm, XPU) is one, but
# the CPU allocator ("[enforce fail at alloc_cpu.cpp] DefaultCPUAllocator: can't allocate
# memory"), MPS ("MPS backend out of memory") and others raise a plain RuntimeError
_OUT_OF_MEMORY = re.compile(
    r"out of memory|can't allocate memory|not enough memory|cannot allocate memory", re.I
)


def memory_kind(exc: BaseException) -> str | None:
    """Which memory ``exc`` says ran out: "GPU" (torch.OutOfMemoryError), "MPS", or "host" (the
    CPU allocator, Python's MemoryError); None for any other error."""
    if isinstance(exc, MemoryError):
        return "host"
    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if type(exc).__name__ == "OutOfMemoryError":
        return "host" if "CPUAllocator" in text else "GPU"
    if not _OUT_OF_MEMORY.search(text):
        return None
    if "CPUAllocator" in text or "alloc_cpu" in text:
        return "host"
    return "MPS" if "MPS" in text else "GPU"  # (XPU's, HIP's plain "... out of memory")


def pickled_error(error: DirectpoError) -> bytes:
    """``error`` pickled for another process (a torchrun node's waiting ranks, the parent of a
    tokenizing pool): itself where it pickles back, else its text as its nearest kind (an error
    class of other constructor arguments, ConfigErrors: one that did not load in a pool's
    parent would leave its result thread dead and the parent waiting for good)."""
    import pickle

    try:
        payload = pickle.dumps(error)
        pickle.loads(payload)
        return payload
    except Exception:
        kind = next(k for k in (DataError, ConfigError, DirectpoError) if isinstance(error, k))
        return pickle.dumps(kind(str(error)))
