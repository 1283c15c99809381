"""The collectives the loop uses, each a no-op for one process: rank 0's value on every rank,
sums over ranks, a rank's slice of a micro-batch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from directpo.errors import DirectpoError
from directpo.process_group import World


def on_main(world: World, action: Callable[[], Any]) -> Any:
    """``action()`` on rank 0, its result (or its DirectpoError) on every rank."""
    result: Any = None
    if world.is_main:
        try:
            result = action()
        except DirectpoError as exc:
            result = exc
    result = broadcast(result, world)
    if isinstance(result, DirectpoError):
        raise result
    return result


def shard(indices: list[int], world: World) -> tuple[list[int], bool]:
    """This rank's contiguous slice of a global micro-batch, and whether it is a weight-0
    stand-in (the slice was empty; the stand-in keeps every rank's collectives in step)."""
    if not world.enabled:
        return indices, False
    base, extra = divmod(len(indices), world.size)
    start = world.rank * base + min(world.rank, extra)
    mine = indices[start : start + base + (world.rank < extra)]
    return (mine, False) if mine else (indices[:1], True)


def all_reduce_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum over ranks (float64, so metric sums stay exact enough)."""
    if not world.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device(world))
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not world.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_objects(value: Any, world: World) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` for one process)."""
    if not world.enabled:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def error_key(run: int, rank: int) -> str:
    """Where rank ``rank`` leaves the text of the error that stopped run ``run`` in the process
    group's store (``failures.settle``; a rank waiting for it reads it there)."""
    return f"directpo/run-{run}/error/{rank}"


def barrier(world: World) -> None:
    if world.enabled:
        dist.barrier()


def _collective_device(world: World) -> torch.device:
    return world.device if dist.get_backend() == "nccl" else torch.device("cpu")
