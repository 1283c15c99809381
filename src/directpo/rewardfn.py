"""User reward functions named ``module:function`` (or ``path/to/file.py:function``).

The function takes (prompts, completions), two equal-length lists (a prompt is a string or a
message list, as in the data), and returns one finite number per completion. Anything else is a
one-line error naming the function.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from directpo.errors import ConfigError, DirectpoError
from directpo.readers import kind_of

RewardFn = Callable[[list[Any], list[str]], Sequence[float]]


def load_reward_fn(spec: str) -> RewardFn:
    return _checked(spec, _import(spec))


def _import(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"reward_fn '{spec}': expected 'module:function'")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise ConfigError(f"reward_fn '{spec}': no such file {module_name}")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[path.stem] = module
            module_spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path and "" not in sys.path:
                sys.path.append(os.getcwd())  # `module:function` of a file in the current folder
            module = importlib.import_module(module_name)
    except ConfigError:
        raise
    except Exception as exc:  # any import-time failure of user code
        raise ConfigError(
            f"reward_fn '{spec}': cannot import {module_name} ({type(exc).__name__}: {exc})"
        ) from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise ConfigError(f"reward_fn '{spec}': {module_name} has no function {attr}")
    return function


def _checked(spec: str, function: Callable[..., Any]) -> RewardFn:
    def call(prompts: list[Any], completions: list[str], **columns: Any) -> list[float]:
        try:
            values = function(prompts, completions, **columns)
        except Exception as exc:  # user code: report it, never a traceback
            raise DirectpoError(f"reward_fn '{spec}' raised {type(exc).__name__}: {exc}") from None
        if isinstance(values, str | bytes | dict) or not hasattr(values, "__iter__"):
            raise DirectpoError(
                f"reward_fn '{spec}' must return a list of numbers, got {type(values).__name__}"
            )
        values = list(values)
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
        if not all(math.isfinite(v) for v in values):
            raise DirectpoError(f"reward_fn '{spec}' returned a non-finite value")
        return values

    return call


def _is_number(value: Any) -> bool:
    """A Python, NumPy or one-element tensor number (what float() takes without parsing)."""
    try:
        float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several values
        return False
    return True


def check_reward_fn(reward_fn: RewardFn, prompts: list[Any]) -> None:
    """Call ``reward_fn`` once on (at most two of) ``prompts`` before training, so that a broken
    function fails in one line now, not at the first evaluation after training work."""
    sample = prompts[:2]
    if sample:
        reward_fn(sample, [" This is a test completion."] * len(sample))


def load_reward_fn_with_columns(
    spec: str,
) -> Callable[[list[Any], list[str], list[dict]], list[float]]:
    """``spec`` as an online labeller: TRL's convention, ``function(prompts, completions,
    **columns)`` with each other column of the prompt rows as a list, when the function takes
    ``**kwargs`` (or names the columns); else ``function(prompts, completions)``."""
    module_function = _import(spec)
    parameters = inspect.signature(module_function).parameters.values()
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    named = {p.name for p in parameters} - {"prompts", "completions"}

    def with_columns(prompts: list[Any], completions: list[str], **columns: Any) -> Any:
        return module_function(prompts, completions, **columns)

    checked = _checked(spec, with_columns)

    def call(prompts: list[Any], completions: list[str], rows: list[dict]) -> list[float]:
        keys = {k for row in rows for k in row} if (takes_any or named) else set()
        keys = keys if takes_any else keys & named
        columns = {k: [row.get(k) for row in rows] for k in sorted(keys)}
        return checked(prompts, completions, **columns)

    return call
