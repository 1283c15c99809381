"""Each process's random state in a checkpoint, as transformers' Trainer keeps it.

One process writes ``rng_state.pth``; under several, process N writes ``rng_state_N.pth`` (rank
0's ``rng_state_0.pth`` is the one tools that read HF checkpoints look for). Ranks draw their own
numbers (dropout masks on their own micro-batches, anything sampled per rank), so each rank
resumes from its own state: the resumed run draws what the uninterrupted one drew, on every
rank. Resumed by another number of processes, a rank without a file of its own takes process
0's (as transformers' Trainer goes on, here said in one line at start). An earlier directpo's
``rng_state.pt``, and its lone ``rng_state_0.pth`` under several processes, still resume.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

# transformers' names (one process; process N of several), and directpo's earlier single file
SINGLE, PER_RANK, EARLIER = "rng_state.pth", "rng_state_{rank}.pth", "rng_state.pt"
_PER_RANK = re.compile(r"^rng_state_(\d+)\.pth$")


def rng_file(rank: int, processes: int) -> str:
    """The name of process ``rank``'s random state file in a run of ``processes``."""
    return SINGLE if processes == 1 else PER_RANK.format(rank=rank)


def saved_states(folder: Path) -> dict[int, Path]:
    """The random state files in ``folder`` by the rank that wrote them."""
    found = {}
    for file in folder.glob("rng_state*"):
        match = _PER_RANK.match(file.name)
        if match:
            found[int(match.group(1))] = file
    for name in (EARLIER, SINGLE):  # a one-process checkpoint's (the newer name wins)
        if (folder / name).is_file():
            found[0] = folder / name
    return found


def state_file(folder: Path, rank: int) -> Path:
    """The file rank ``rank`` resumes from: its own, else process 0's (another process count,
    or an earlier directpo that saved process 0's alone). Missing: ``rng_state.pth`` (whose
    absence the caller's load names)."""
    saved = saved_states(folder)
    return saved.get(rank, saved.get(0, folder / SINGLE))


def resume_note(folder: Path, processes: int) -> str | None:
    """One line when the ``processes`` ranks of this run cannot each resume their own random
    state from ``folder``; None when they can."""
    saved = saved_states(folder)
    if not saved or set(saved) == set(range(processes)):
        return None
    if len(saved) == 1 and (folder / PER_RANK.format(rank=0)).is_file():
        held = "process 0's random state only (an earlier directpo's checkpoint)"
    else:
        held = f"the random states of {len(saved)} process{'es' * (len(saved) > 1)}"
    return (
        f"resume: {folder.name} holds {held}, this run has {processes}: each process resumes "
        "its own where the checkpoint holds it, else process 0's, so dropout and per-process "
        "sampling draw other numbers than the uninterrupted run did"
    )


def current_state() -> dict[str, Any]:
    """This process's Python, NumPy, torch (and CUDA) generator states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_state(state: dict[str, Any]) -> None:
    """Set this process's generators to ``state`` (``current_state``'s)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # one state per GPU the saving process saw: a machine with fewer GPUs (or fewer made
        # visible) restores those it has; torch indexed past its devices (an IndexError,
        # raised at CUDA's lazy initialisation, far from the resume)
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
