"""What ``train()`` leaves to the process that called it: a notebook or a script goes on after it.

The run seeds Python's, numpy's and torch's generators with its ``seed`` (as transformers'
Trainer does), so that it is reproducible; the caller gets its own generators back afterwards.
Left seeded, a sweep that drew its settings with ``random`` between runs drew the same ones
after every run, since each run left the generators in the same state.

An error that stops a run holds, in its traceback's frames, the run's models, optimizer state
and batches; a notebook keeps the last error (``sys.last_exc``), so a second try (a smaller
batch after running out of GPU memory) found the memory still taken. The errors that are a
stop rather than a bug give those frames' locals up; the traceback still shows every line.
"""

from __future__ import annotations

import contextlib
import random
import traceback
from collections.abc import Iterator

import numpy as np
import torch

from directpo.errors import DirectpoError
from directpo.hub import offline_flags_kept

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
