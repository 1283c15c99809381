"""What stops a run without being a bug, said in one line each: out of GPU memory, a write the
disk refuses, an error one rank of a torchrun job meets alone."""

from __future__ import annotations

import contextlib
import errno
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from directpo.checkpoint import list_checkpoints
from directpo.distributed import World
from directpo.errors import CheckpointError, DirectpoError, TrainingStopped

if TYPE_CHECKING:
    from directpo.run import Run

OOM_HELP = (
    "out of GPU memory at step {step}: lower per_device_train_batch_size (raise "
    "gradient_accumulation_steps to keep the batch), set gradient_checkpointing: true, "
    "precompute_ref_log_probs: true, lora_r: 16, or a smaller max_length / logprob_chunk_tokens"
)


# a write the disk refused (full, over quota, gone read-only), not a bug
REFUSED_WRITES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


@contextlib.contextmanager
def explain_failures(run: Run) -> Iterator[types.SimpleNamespace]:
    """What stops the loop without being a bug, as one line naming the step the loop sets in
    the namespace this yields (the progress bar's count stays at the start where the bar is
    off: other ranks, disable_tqdm): a CUDA out-of-memory error, with the knobs that lower
    memory, and a refused write of the run's record (metrics.jsonl, samples, online rounds on
    a full disk; checkpoints and the final folder say their own). Under torchrun such an
    error is one rank's own (its memory; rank 0 alone writes the record): that rank says it."""
    position = types.SimpleNamespace(step=run.start_step + 1)
    try:
        yield position
    except torch.cuda.OutOfMemoryError:
        error: DirectpoError = TrainingStopped(OOM_HELP.format(step=position.step))
    except OSError as exc:
        if exc.errno not in REFUSED_WRITES:
            raise
        error = CheckpointError(
            f"step {position.step}: cannot write {exc.filename or run.output_dir} "
            f"({exc.strerror}); {what_is_kept(run.output_dir)}"
        )
    else:
        return
    error.rank = run.world.rank if run.world.size > 1 else None
    raise error from None


def what_is_kept(output_dir: Path) -> str:
    """After a write that failed: the run's checkpoints, and how to continue."""
    kept = [path.name for path in list_checkpoints(output_dir)]
    if not kept:
        return "no checkpoint holds this run (save_steps was not reached)"
    return (
        f"its checkpoints are intact (newest {kept[-1]}): make room, then resume with "
        "resume_from_checkpoint: latest"
    )


OWN_ERROR_WAIT_S = 5.0


def claim_if_own(error: DirectpoError, world: World) -> None:
    """Under torchrun every rank usually meets the same error, and rank 0 says it; a rank
    other than 0 cannot tell whether the error is its own (a data file missing on its node),
    which rank 0, waiting for it in a collective, would never say. It waits before leaving
    the process group (rank 0 would fail on the closed connection first), and torchrun stops
    it meanwhile when rank 0 had the error too; one that outlives the wait is its own."""
    if error.rank is None and world.size > 1 and not world.is_main:
        time.sleep(OWN_ERROR_WAIT_S)
        error.rank = world.rank
