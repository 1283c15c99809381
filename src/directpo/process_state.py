"""What ``train()`` leaves to the process that called it: a notebook or a script goes on after it.

During the run, TRL's ``disable_tqdm`` and ``log_level`` govern transformers' and datasets'
own output (``library_output``); the caller's settings come back after it.

The run seeds Python's, numpy's and torch's generators with its ``seed`` (as transformers'
Trainer does), so that it is reproducible; the caller gets its own generators back afterwards.
Left seeded, a sweep that drew its settings with ``random`` between runs drew the same ones
after every run, since each run left the generators in the same state.

``tf32`` and ``full_determinism`` (transformers' options) set process-wide switches: torch's
float32 precision of CUDA matmuls and cuDNN, its deterministic-algorithms mode and the
environment variables CUDA reads; they too are the caller's again afterwards.

An error that stops a run holds, in its traceback's frames, the run's models, optimizer state
and batches; a notebook keeps the last error (``sys.last_exc``), so a second try (a smaller
batch after running out of GPU memory) found the memory still taken. The errors that are a
stop rather than a bug give those frames' locals up; the traceback still shows every line.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from directpo.callers import said
from directpo.errors import DirectpoError
from directpo.hub import offline_flags_kept

if TYPE_CHECKING:
    from directpo.config import DPOConfig

# a stop a user answers by changing the run and trying again, not a bug to inspect in %debug
STOPS = (DirectpoError, KeyboardInterrupt, MemoryError, torch.OutOfMemoryError)


@contextlib.contextmanager
def kept_for_caller(device: torch.device) -> Iterator[None]:
    """The caller's random generators (CPU, and ``device``'s on CUDA) and the hub's offline
    flags (``hub.cache_only_where_unreachable``) as they were, after the block; a stop raised
    in it releases its frames (``release_frames``)."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), offline_flags_kept():
            yield
    except STOPS as error:
        release_frames(error)
        raise
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


@contextlib.contextmanager
def generators_kept() -> Iterator[None]:
    """torch's generators (the CPU's, and those of the CUDA devices already started) as they
    were, after the block. Loading a PEFT adapter draws its fresh weights before the saved ones
    replace them: ``ImplicitReward(adapter_folder, ...)`` moved a notebook's seeded generator,
    so that what it drew next was not what its seed gave (train() keeps them: kept_for_caller).
    A device that the block itself starts has no state from before to give back."""
    started = torch.cuda.is_available() and torch.cuda.is_initialized()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count()) if started else []):
        yield


def recipe_environment_kept(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function(config, ...)`` given a config file's path: the variables its ``env:`` sets
    (before anything runs, as TRL's parser sets them) are the caller's again after the call.
    A notebook's ``train("a.yaml")`` left them set for good, so that a later
    ``train("b.yaml")`` without them still ran with a.yaml's (its WANDB_PROJECT, its HF_HOME).
    ``load_config(path)`` sets them for the process, as TRL's parser does."""

    @functools.wraps(function)
    def kept(*args: Any, **kwargs: Any) -> Any:
        config = args[0] if args else kwargs.get("config")
        if not isinstance(config, str | os.PathLike):
            return function(*args, **kwargs)
        before = dict(os.environ)
        # read before the run: a resume from the run's own record (train('out/config.yaml',
        # resume_from_checkpoint='latest'), env: added by hand for wandb's WANDB_RUN_ID)
        # rewrites that file without env:, whose variables then stayed set for good
        named = _environment_keys(Path(config))
        try:
            return function(*args, **kwargs)
        finally:
            for key in named:
                if key in before:
                    os.environ[key] = before[key]
                else:
                    os.environ.pop(key, None)

    return kept


def _environment_keys(path: Path) -> list[str]:
    """The variables a config file's ``env:`` names (none where it cannot be read: then the
    run refused it before setting any)."""
    import yaml

    try:
        env = yaml.safe_load(path.read_text()).get("env")
    except Exception:  # (a folder, a file the run refused)
        return []
    return [str(key) for key in env] if isinstance(env, dict) else []


def release_frames(error: BaseException) -> None:
    """Drops the locals of the finished frames that ``error``, and the errors it came from
    (``__cause__``, ``__context__``), passed through; frames still running keep theirs."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__cause__, current.__context__]


# transformers' enable_full_determinism: what CUDA, cuBLAS, flash-attn (and Ascend) read
DETERMINISTIC_ENVIRONMENT = {
    "CUDA_LAUNCH_BLOCKING": "1",
    "CUBLAS_WORKSPACE_CONFIG": ":16:8",
    "ASCEND_LAUNCH_BLOCKING": "1",
    "HCCL_DETERMINISTIC": "1",
    "FLASH_ATTENTION_DETERMINISTIC": "1",
}


def _tf32_switches() -> list[tuple[Any, str, Any, Any]]:
    """(object, attribute, TF32 value, IEEE value) of CUDA's matmul and cuDNN precision. Each
    backend is set itself (torch >= 2.9's fp32_precision): the generic torch.backends switch,
    which transformers sets, does not override a backend that code set before, through the
    new API or the old allow_tf32 (which sets the backend's own)."""
    backends = torch.backends
    if hasattr(backends.cuda.matmul, "fp32_precision"):
        cudnn = backends.cudnn
        objects = (backends.cuda.matmul, cudnn, cudnn.conv, cudnn.rnn)
        return [(o, "fp32_precision", "tf32", "ieee") for o in objects]
    return [
        (backends.cuda.matmul, "allow_tf32", True, False),
        (backends.cudnn, "allow_tf32", True, False),
    ]


@contextlib.contextmanager
def numeric_switches(
    tf32: bool | None,
    full_determinism: bool,
    device: torch.device,
    echo: Callable[[str], None] = print,
) -> Iterator[None]:
    """``tf32`` (CUDA only; None: as it is) and ``full_determinism`` (transformers'
    enable_full_determinism) for the block; the switches and variables as they were after it."""
    restore: list[tuple[Any, str, Any]] = []
    environment = {key: os.environ.get(key) for key in DETERMINISTIC_ENVIRONMENT}
    if tf32 is not None and device.type != "cuda":
        # (as the caller wrote it: --tf32 true, tf32=True; a recipe's tf32: true)
        echo(f"{said('tf32', tf32)} has no effect on the CPU (TF32 is a CUDA matmul mode)")
    elif tf32 is not None:
        for target, name, on, off in _tf32_switches():
            restore.append((target, name, getattr(target, name)))
            setattr(target, name, on if tf32 else off)
    if full_determinism:
        cudnn = torch.backends.cudnn
        restore += [(cudnn, "deterministic", cudnn.deterministic)]
        restore += [(cudnn, "benchmark", cudnn.benchmark)]
        deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        os.environ.update(DETERMINISTIC_ENVIRONMENT)
        torch.use_deterministic_algorithms(True)
        cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        for target, name, value in reversed(restore):
            setattr(target, name, value)
        if full_determinism:
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
            for key, value in environment.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@contextlib.contextmanager
def library_output(config: DPOConfig, is_main: bool) -> Iterator[None]:
    """TRL's ``disable_tqdm`` and ``log_level`` for transformers' and datasets' own output,
    during the run only: a notebook's later work gets its own settings back. Under torchrun,
    their progress bars show on rank 0 alone."""
    import datasets
    import transformers

    hf_logging = transformers.utils.logging
    bars = hf_logging.is_progress_bar_enabled(), datasets.are_progress_bars_disabled()
    verbosity = hf_logging.get_verbosity()
    if config.disable_tqdm or not is_main:  # one bar per load, not one per rank
        hf_logging.disable_progress_bar()
        datasets.disable_progress_bars()
    if config.log_level != "passive" and is_main:
        hf_logging.set_verbosity(getattr(logging, config.log_level.upper()))
    try:
        yield
    finally:
        if bars[0]:
            hf_logging.enable_progress_bar()
        if not bars[1]:
            datasets.enable_progress_bars()
        hf_logging.set_verbosity(verbosity)
