"""What ``train()`` leaves to the process that called it: a notebook or a script goes on after it.

The run seeds Python's, numpy's and torch's generators with its ``seed`` (as transformers'
Trainer does), so that it is reproducible; the caller gets its own generators back afterwards.
Left seeded, a sweep that drew its settings with ``random`` between runs drew the same ones
after every run, since each run left the generators in the same state.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def kept_for_caller(device: torch.device) -> Iterator[None]:
    """The caller's random generators (CPU, and ``device``'s on CUDA) as they were, after the
    block."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
