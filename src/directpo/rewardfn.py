"""User reward functions named ``module:function`` (or ``path/to/file.py:function``).

The function takes (prompts, completions), two equal-length lists (a prompt is a string or a
message list, as in the data; a completion is the sampled text, or for a message-list prompt
the assistant message ``[{"role": "assistant", "content": text}]``, as TRL passes it), and
returns one finite number per completion, or None for one it does not score (TRL's
convention). Anything else is a one-line error naming the function.

It is called as TRL calls its ``reward_funcs``: by keyword (``prompts=``, ``completions=``,
``completion_ids=``, ``trainer_state=`` and the prompt rows' other columns as lists), so
``def f(completions, **kwargs)`` works; a function whose parameters are not named
``completions`` gets (prompts, completions) by position. Extras reach it when it takes
``**kwargs`` or names them.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from directpo.errors import ConfigError, DirectpoError
from directpo.messages import is_prefilled
from directpo.preference_pairs import prompt_of
from directpo.readers import kind_of

# (prompts, completions, rows) -> rewards; rows[i]: completion i's keyword extras (its prompt
# row's other columns and its completion_ids)
RewardFn = Callable[[list[Any], list[str], list[dict[str, Any]]], list[float]]


# TRL's keyword for the run's progress (a transformers TrainerState): a row key of that name
# reaches the function as the one object, not a list
STATE = "trainer_state"


def trainer_state(global_step: int, max_steps: int, steps_per_epoch: int) -> Any:
    """What TRL passes reward functions as ``trainer_state`` (its trainer's ``self.state``):
    transformers' ``TrainerState`` at ``global_step`` (the steps done) of ``max_steps``, for a
    reward that changes as training goes (a TRL function reading ``trainer_state.global_step``
    failed in directpo as a missing argument)."""
    from transformers import TrainerState

    per_epoch = max(steps_per_epoch, 1)
    return TrainerState(
        global_step=global_step,
        max_steps=max_steps,
        epoch=global_step / per_epoch,
        num_train_epochs=math.ceil(max_steps / per_epoch),
    )


def with_state(rows: list[dict[str, Any]] | None, count: int, state: Any) -> list[dict]:
    """``count`` prompts' ``rows`` (none: no other columns), each with ``state`` (TRL's
    ``trainer_state``) for the reward function."""
    return [{**row, STATE: state} for row in (rows or [{}] * count)]


def load_reward_fn(spec: str) -> RewardFn:
    """``spec`` as a ``RewardFn``: each key of the rows becomes a keyword list, TRL's
    convention (see ``_bound``); a column named ``prompts`` or ``completions`` (``directpo
    generate`` writes one) is not passed, those names are the sampled ones."""
    checked = _checked(spec, _import(spec))

    def call(prompts: list[Any], completions: list[str], rows: list[dict]) -> list[float]:
        keys = sorted({k for row in rows for k in row} - {"prompts", "completions", STATE})
        prompts = [prompt_of(p) for p in prompts]  # the row's text or messages, as TRL's
        given = [as_trl_completion(p, c) for p, c in zip(prompts, completions, strict=True)]
        extras = {k: [row.get(k) for row in rows] for k in keys}
        if rows and STATE in rows[0]:  # one object for the call, not a list, as TRL passes it
            extras[STATE] = rows[0][STATE]
        return checked(prompts, given, **extras)

    return call


def as_trl_completion(prompt: Any, completion: str) -> str | list[dict[str, str]]:
    """A sampled completion as TRL hands it to reward functions: the text after a text prompt;
    after a conversation, the assistant message ``[{"role": "assistant", "content": text}]``,
    whose content starts with a prefilled prompt's last (assistant) message."""
    if not isinstance(prompt, list):
        return completion
    prefill = prompt[-1].get("content") if is_prefilled(prompt) else ""
    return [
        {"role": "assistant", "content": (prefill if isinstance(prefill, str) else "") + completion}
    ]


def missing_file(spec: str) -> str | None:
    """The line for a ``path/file.py:function`` spec whose file is not there (said beside
    the config's refused values: importing is left to the start checks)."""
    module_name, sep, _ = spec.rpartition(":")
    if not sep or not module_name.endswith(".py") or Path(module_name).is_file():
        return None
    return f"reward_fn '{spec}': no such file {module_name}"


def _import(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"reward_fn '{spec}': {_not_a_function(spec)}")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if missing := missing_file(spec):
                raise ConfigError(missing)
            with _on_path(str(path.resolve().parent)):  # (its sibling imports)
                module = _file_module(path)
        else:
            with _on_path(os.getcwd()):  # `module:function` of a file in the current folder
                module = _current_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:  # any import-time failure of user code
        said = f"reward_fn '{spec}': cannot import {module_name} ({type(exc).__name__}: {exc})"
        top = module_name.split(".")[0]
        if isinstance(exc, ModuleNotFoundError) and exc.name == top:
            # a package beside the script that trained (its folder was on sys.path then),
            # resumed from another folder: the run's record names the module, not its folder
            said += (
                f": it is looked for in the installed packages, PYTHONPATH and the working "
                f"folder; run from the folder holding {top}, or give that folder in PYTHONPATH"
            )
        raise ConfigError(said) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"reward_fn '{spec}': {module_name} has no function {attr}")
    return function


def import_name(function: Callable[..., Any]) -> str | None:
    """``module:function`` for a function that importing ``module`` finds under that name
    (a module's top-level function, as TRL's reward functions in trl.rewards are), else None:
    one defined in ``__main__`` (a script, a notebook) or inside another function has no name
    a later run (config.yaml) could import."""
    module_name = getattr(function, "__module__", None)
    name = getattr(function, "__qualname__", "")
    if not module_name or module_name == "__main__" or not name.isidentifier():
        return None
    module = sys.modules.get(module_name)
    if module is None or getattr(module, name, None) is not function:
        return None
    # (config.yaml records a module beside the script by its file: option_paths; this run
    # imports it by name, the module the script holds, not a second copy of its file)
    return f"{module_name}:{name}"


def _not_a_function(spec: str) -> str:
    """What a ``reward_fn`` without ``:function`` is, and what to write. TRL's reward_funcs
    takes a reward model's id or folder as well as functions: given as reward_funcs=, such a
    model said only "expected 'module:function'", naming an option its user never wrote."""
    path = Path(spec).expanduser()
    model_folder = path.is_dir() and (path / "config.json").is_file()
    hub_id = spec.count("/") == 1 and not path.exists() and not spec.endswith(".py")
    if model_folder or hub_id:
        return (
            "a model, not 'module:function': a reward model (TRL's reward_funcs given a model "
            f"id) is reward_model_name_or_path: {spec} (with a reward_fn too: reward_weights "
            "weigh them in the order reward_fn, reward_model_name_or_path)"
        )
    if spec.endswith(".py"):
        return f"name the function in it: '{spec}:function'"
    module_name, dot, name = spec.rpartition(".")
    if dot and module_name and name.isidentifier():  # my_rewards.score: Python's dotted path
        return f"a function is named after a colon: '{module_name}:{name}'"
    return "expected 'module:function' or 'path/file.py:function'"


@contextlib.contextmanager
def _on_path(folder: str) -> Iterator[None]:
    """``folder`` on sys.path while the reward module is imported: its top-level imports of
    modules beside it work, and the process's path is left as it was (appended for good, the
    folder's modules shadowed others of the same name for the rest of a notebook's session).
    An import inside the function's body, run later, sees the path without it."""
    if folder in sys.path or (folder == os.getcwd() and "" in sys.path):
        yield
        return
    sys.path.append(folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # (the module may have removed it itself)
            sys.path.remove(folder)


# a reward file's module is registered under this prefix (dataclasses and pickle look a class's
# module up in sys.modules): under its bare name, rewards/utils.py replaced the notebook's own
# `utils` module, or a stdlib one (code.py, types.py), for the rest of the process
FILE_MODULE_PREFIX = "directpo_reward_file_"

# module name -> its source file's mtime when directpo last imported it
_SOURCE_TIMES: dict[str, int] = {}


def _file_module(path: Path) -> ModuleType:
    """``path`` executed as it is now (each run reads the file again)."""
    name = FILE_MODULE_PREFIX + path.stem
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module


def _current_module(name: str) -> ModuleType:
    """The module ``name``, imported again when its source file changed since directpo last
    imported it: in a notebook, a reward function fixed after the error it raised ran as it
    was (Python's import returns the module it already holds), so the rerun failed the same."""
    imported = name in sys.modules
    module = importlib.import_module(name)
    source = getattr(module, "__file__", None)
    if source is None or not os.path.isfile(source):
        return module
    mtime = os.stat(source).st_mtime_ns
    if imported and _SOURCE_TIMES.get(name, mtime) != mtime:
        module = importlib.reload(module)
    _SOURCE_TIMES[name] = mtime
    return module


def _bound(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` called as TRL calls a reward function: every argument by keyword, the
    extras (``completion_ids``, columns) only when it takes ``**kwargs`` or names them; by
    position when it has no parameter named ``completions``."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C function: no signature to read
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    completions = parameters.get("completions")
    by_name = completions is not None and completions.kind is not inspect.Parameter.POSITIONAL_ONLY

    # parameters the call must fill beyond (prompts, completions): TRL fills them from the
    # dataset's columns of those names (GRPO's `def accuracy(completions, solution, **kw)`)
    given_by_call = {"prompts", "completions"} if by_name else set(list(parameters)[:2])
    required = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and name not in given_by_call
    ]

    def call(prompts: list[Any], completions: list[str], **extras: Any) -> Any:
        if missing := [name for name in required if name not in extras]:
            raise MissingColumnError(missing, extras)
        extras = {k: v for k, v in extras.items() if takes_any or k in parameters}
        if by_name:
            if takes_any or "prompts" in parameters:
                extras["prompts"] = prompts
            return function(completions=completions, **extras)
        return function(prompts, completions, **extras)

    return call


class MissingColumnError(Exception):
    """A reward function's required parameter that no prompt row's column fills."""

    def __init__(self, missing: list[str], extras: dict[str, Any]) -> None:
        columns = sorted(set(extras) - {"completion_ids", STATE})
        names = ", ".join(f"'{name}'" for name in missing)
        super().__init__(
            f"takes {names}, which no column of the prompt rows gives (their columns: "
            f"{', '.join(columns) or 'none besides the prompt'}; passed too: prompts, "
            "completions, completion_ids, trainer_state): name the column so, or give the "
            "parameter a default"
        )


def _checked(spec: str, function: Callable[..., Any]) -> Callable[..., list[float]]:
    bound = _bound(function)

    def call(prompts: list[Any], completions: list[str], **extras: Any) -> list[float]:
        try:
            values = bound(prompts, completions, **extras)
        except MissingColumnError as exc:  # (TRL passes columns by name: a renamed one)
            raise DirectpoError(f"reward_fn '{spec}' {exc}") from None
        except Exception as exc:  # user code: report it, never a traceback
            raise DirectpoError(f"reward_fn '{spec}' raised {type(exc).__name__}: {exc}") from None
        if isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
            raise DirectpoError(
                f"reward_fn '{spec}' must return a list of numbers, got {type(values).__name__}"
            )
        # None: the function does not score that completion (TRL's convention, e.g. a math
        # checker beside a format checker); NaN from here on, left out of pairs and means
        values = [math.nan if value is None else value for value in values]
        for number, value in enumerate(values, start=1):
            if isinstance(value, str | bytes) or not _is_number(value):
                raise DirectpoError(
                    f"reward_fn '{spec}' must return one number per completion; item {number} "
                    f"is {kind_of(value)} ({value!r:.40})"
                )
        values = [float(v) for v in values]
        if len(values) != len(completions):
            raise DirectpoError(
                f"reward_fn '{spec}' returned {len(values)} values for "
                f"{len(completions)} completions"
            )
        if any(math.isinf(v) for v in values):
            raise DirectpoError(f"reward_fn '{spec}' returned an infinite value")
        return values

    return call


def _is_number(value: Any) -> bool:
    """A Python, NumPy or one-element tensor number (what float() takes without parsing)."""
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several values
        return False
    return True


@contextlib.contextmanager
def labelling_at(moment: str) -> Iterator[None]:
    """A labeller's one-line error, prefixed with ``moment`` (``online round 3``,
    ``eval_generate at step 40``): at round 40 of a long run, the line said what failed but
    not when, and the checks before training read the same."""
    try:
        yield
    except DirectpoError as error:
        error.args = (f"{moment}: {error}",)
        raise


def check_reward_fn(
    reward_fn: RewardFn,
    prompts: list[Any],
    rows: list[dict[str, Any]],
    tokenizer: Any,
    max_steps: int = 0,
) -> None:
    """Call ``reward_fn`` once on (at most two of) ``prompts`` (with their ``rows``) before
    training, so that a broken function fails in one line now, not after training work."""
    sample = prompts[:2]
    if sample:
        rows = probe_rows(rows[:2], tokenizer, max_steps)
        reward_fn(sample, [PROBE_COMPLETION] * len(sample), rows)


PROBE_COMPLETION = " This is a test completion."


def probe_rows(
    rows: list[dict[str, Any]], tokenizer: Any, max_steps: int = 0
) -> list[dict[str, Any]]:
    """``rows`` with the ``completion_ids`` of ``PROBE_COMPLETION`` and a ``trainer_state``
    before the first step (for the checks): step 0 of ``max_steps`` (the config's; 1 where
    the epochs decide the count, known once the data is batched), never 0 steps, which a
    reward shaped by the run's progress (global_step / max_steps) divided by at the check."""
    ids = tokenizer(PROBE_COMPLETION, add_special_tokens=False)["input_ids"]
    steps = max(max_steps, 1)
    state = trainer_state(0, steps, steps)
    return [{**row, "completion_ids": ids, STATE: state} for row in rows]
