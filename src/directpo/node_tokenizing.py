"""Under torchrun, one process of each node tokenizes; the node's others wait and read its cache.

Every rank tokenized the whole file and wrote the cache: 8 processes on a node took 8x the CPU
time and 8x the peak memory of tokenizing (minutes a 100k-pair file). Now the first process of
each node (``LOCAL_RANK`` 0) tokenizes and writes ``token_cache``'s entry; the others wait for
its word in the process group's store and read that entry. A node, not rank 0 alone: the cache
folder (``DIRECTPO_CACHE``, default ``~/.cache/directpo``) is usually a node's own disk. On a
shared filesystem each node's first process tokenizes at the same time (no longer in wall
time), and the renames that finish their writes leave one whole file.

Its word is one of: done (the entry is written, or could not be: the others then tokenize
themselves), the error that refused the pairs (a bad row: every waiting rank raises the same
error, said once by ``failures.settle``), or that it crashed. A leader stopped earlier by an
error of its own is seen too, by the key ``settle`` leaves. No rank waits in a collective
(whose timeout, ``ddp_timeout``, a long tokenizing would pass): the store is polled.
"""

from __future__ import annotations

import contextlib
import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch.distributed as dist

from directpo.distributed import World, error_key
from directpo.errors import DirectpoError, TrainingStopped, pickled_error
from directpo.launchers import local_rank, local_size

POLL_S = 0.2  # between two looks at the store (a wait of minutes costs nothing)
DONE, FAILED, CRASHED = b"D", b"E", b"X"


@dataclass(frozen=True)
class Turn:
    """This process's part in tokenizing: lead (``rank == leader``) or wait for ``leader``.
    ``store``: the process group's key-value store (``set``, ``check``, ``get``)."""

    store: Any
    rank: int
    leader: int
    run: int = 0

    @property
    def leads(self) -> bool:
        return self.rank == self.leader

    def key(self, name: str) -> str:
        return f"directpo/run-{self.run}/tokenized/{self.leader}/{name}"


def node_turn(world: World) -> Turn | None:
    """The turn of this process under torchrun (its node's first process leads: torchrun
    numbers a node's processes contiguously), None for one process."""
    if world.size <= 1 or not dist.is_initialized():
        return None
    local = local_rank() or 0  # (torchrun's LOCAL_RANK, or srun's / mpirun's own)
    store = dist.distributed_c10d._get_default_store()  # (no collective: ranks wait apart)
    return Turn(store, world.rank, world.rank - local, world.run)


def tokenizing_processes(num_proc: int | None, turn: Turn | None, alone: bool) -> int | None:
    """``dataset_num_proc`` for this process's tokenizing: the whole count where it tokenizes
    alone on its node (one process, or the leader whose cache the others read: ``alone``),
    else its share of the node's (``LOCAL_WORLD_SIZE`` processes tokenizing at once, without
    the cache or with images: 8 ranks each forking dataset_num_proc 8 ran 64 processes, each
    holding the rows, on a node asked for 8)."""
    if num_proc is None or turn is None or (alone and turn.leads):
        return num_proc
    return max(1, num_proc // local_size())


@contextlib.contextmanager
def leading(turn: Turn | None, name: str) -> Iterator[None]:
    """The leader's tokenizing of ``name`` (train, eval): how it ended, told to the waiting
    processes of its node (nothing for a waiting process or one process)."""
    if turn is None or not turn.leads:
        yield
        return
    try:
        yield
    except DirectpoError as error:
        turn.store.set(turn.key(name), FAILED + pickled_error(error))
        raise
    except BaseException:
        turn.store.set(turn.key(name), CRASHED)
        raise
    turn.store.set(turn.key(name), DONE)


def wait_for_leader(turn: Turn | None, name: str) -> None:
    """Returns once the leader tokenized ``name`` (its cache entry is then read); raises the
    error that stopped it. Nothing to wait for on the leader or one process."""
    if turn is None or turn.leads:
        return
    said = error_key(turn.run, turn.leader)  # the leader stopped before it tokenized
    try:
        while not turn.store.check([turn.key(name)]):
            if turn.store.check([said]):
                raise _stopped_as(turn.store.get(said).decode(), turn.leader)
            time.sleep(POLL_S)
        word = bytes(turn.store.get(turn.key(name)))
    except (RuntimeError, ValueError):  # the store is gone: rank 0's process ended
        raise TrainingStopped(_crashed(turn.leader)) from None
    if word.startswith(FAILED):
        raise pickle.loads(word[len(FAILED) :])
    if word == CRASHED:
        raise TrainingStopped(_crashed(turn.leader))


def _stopped_as(text: str, leader: int) -> DirectpoError:
    """The leader's own error, as this rank's (``settle`` then says it once)."""
    error = DirectpoError(text)
    error.rank = leader if leader else None  # rank 0's is said as its plain line
    return error


def _crashed(leader: int) -> str:
    return (
        f"rank {leader}, which tokenizes this node's pairs, stopped with an error of its own "
        "(said above)"
    )
