"""The process group's life: joined (or made) as a run starts, with this rank's device, and
left as the run ends, DTensor's caches emptied so that the group is freed."""

from __future__ import annotations

import datetime
import gc
import importlib
import itertools
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from directpo.callers import said, spell_setting, spell_value
from directpo.errors import ConfigError
from directpo.launchers import (
    LOCAL_RANK_VARIABLES,
    RENDEZVOUS_VARIABLES,
    check_rendezvous,
    check_started_alone,
    launched_size,
    local_rank,
    local_rank_exported_once,
)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    mode: str = "none"  # none | ddp | fsdp
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # setup() created the process group (teardown() destroys it)
    run: int = 0  # which run of this process (the same on every rank): keys in the group's store

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.mode != "none"


SINGLE_PROCESS = World()


def setup(mode: str, timeout_s: float = 1800) -> World:
    """Join the process group that torchrun started (or make a one-process group for fsdp/ddp
    without a launcher); pick this rank's device. ``timeout_s``: how long a collective waits
    (ddp_timeout)."""
    if not dist.is_initialized():  # (a caller's own group needs no WORLD_SIZE)
        check_started_alone()
    size = launched_size()
    if mode == "auto":
        mode = "ddp" if size > 1 else "none"
    if mode == "none":
        if size > 1:
            # (as the caller sets options: a flag's user was told a recipe's distributed: ddp)
            raise ConfigError(
                f"{said('distributed', 'none')}, but the launcher started {size} processes; "
                f"{spell_setting(('distributed', 'ddp'))} (or {spell_value('fsdp')}, or "
                f"{spell_value('auto')})"
            )
        return World(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    device = rank_device(size)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = not dist.is_initialized()  # else the caller's group: leave it to the caller
    run = next(_RUNS)
    if owns_group:
        backend = "nccl" if device.type == "cuda" else "gloo"
        timeout = datetime.timedelta(seconds=timeout_s)
        if "WORLD_SIZE" in os.environ:  # a launcher's rendezvous (MASTER_ADDR, RANK, ...)
            store, rank, size = launcher_store(run, timeout)
            dist.init_process_group(
                backend=backend, store=store, rank=rank, world_size=size, timeout=timeout
            )
        else:  # one process without a launcher: an in-process store, no port
            dist.init_process_group(
                backend=backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout
            )
    return World(mode, dist.get_rank(), dist.get_world_size(), device, owns_group, run)


def rank_device(size: int) -> torch.device:
    """This process's device among the ``size`` launched: the GPU its local rank names
    (``launchers.local_rank``: torchrun's LOCAL_RANK, or srun's / mpirun's own variable) among
    those it sees; the one GPU a process sees where the launcher binds one to each process
    (srun --gpus-per-task 1 sets CUDA_VISIBLE_DEVICES: its local rank may be 3, its GPU is
    cuda:0); the CPU without CUDA. A GPU that processes would share is refused (NCCL's
    'Duplicate GPU detected' later, or 'invalid device ordinal' at once)."""
    local, count = local_rank(), torch.cuda.device_count()
    if local is None and size > 1 and count > 1:
        raise ConfigError(  # each took cuda:0, and NCCL failed later with a traceback
            f"launched on {size} processes without LOCAL_RANK or a launcher's own name for it "
            f"({', '.join(LOCAL_RANK_VARIABLES[1:])}): each would take cuda:0; set LOCAL_RANK, "
            "or launch with torchrun"
        )
    once = local_rank_exported_once()
    if once and size > 1 and count > 1:  # (a GPU bound to each: any local rank takes it)
        raise ConfigError(
            f"LOCAL_RANK is 0 but the launcher says {once[1]} ({once[0]}): LOCAL_RANK was set "
            f"once for every process (exported before the launch), so each would take cuda:0; "
            f"set it in each (LOCAL_RANK=${once[0]}), or leave it unset: {once[0]} is read"
        )
    if not torch.cuda.is_available():
        return torch.device("cpu")
    if count == 1:
        if local and "CUDA_VISIBLE_DEVICES" not in os.environ:  # (no GPU bound to it: shared)
            raise ConfigError(  # was 'invalid device ordinal', a traceback
                f"this process's local rank is {local} ({_named_by()}) but its node has one "
                "GPU, which its processes would share: start one process a node "
                "(--nproc_per_node 1), or bind one GPU to each (CUDA_VISIBLE_DEVICES)"
            )
        return torch.device("cuda", 0)
    local = local or 0
    if local >= count:  # (was 'invalid device ordinal', a traceback)
        raise ConfigError(
            f"this process's local rank is {local} ({_named_by()}) but it sees {count} GPUs "
            f"(cuda:0 to cuda:{count - 1}): start at most {count} processes a node, or bind "
            "one GPU to each (CUDA_VISIBLE_DEVICES)"
        )
    return torch.device("cuda", local)


def _named_by() -> str:
    """The variable the local rank was read from."""
    return next(name for name in LOCAL_RANK_VARIABLES if os.environ.get(name, "").strip())


def launcher_store(run: int, timeout: datetime.timedelta) -> tuple[dist.Store, int, int]:
    """The launcher's store (torchrun's, or rank 0's at MASTER_ADDR), this rank and the world
    size, keys under run ``run``'s prefix (the same on every rank): a second ``train()`` in one
    process made its group under the first one's keys, and gloo met stale addresses
    ("Connection closed by peer"). One store per process, kept (its timeout each run's
    ddp_timeout): without torchrun's agent store (srun, mpirun) rank 0 serves it on MASTER_PORT,
    and a second run's new server there was missed by a rank that came before rank 0 had
    destroyed the first group ("Failed to recv"; rank 0: "waiting for clients")."""
    check_rendezvous()
    where = tuple(os.environ.get(name, "") for name in RENDEZVOUS_VARIABLES)
    if _LAUNCHER_STORE.get("where") != where:  # (another launch's variables: its own store)
        _LAUNCHER_STORE.update(
            where=where, rendezvous=next(dist.rendezvous("env://", timeout=timeout))
        )
    store, rank, size = _LAUNCHER_STORE["rendezvous"]
    store.set_timeout(timeout)
    # ("default_pg": init_process_group's own prefix for the store it makes)
    return dist.PrefixStore(f"directpo/run-{run}/default_pg", store), rank, size


_RUNS = itertools.count()
# (the store kept is the one launchers.RENDEZVOUS_VARIABLES name)
# (kept to the process's end: a script's own env:// group made after train() would serve a
# second store on MASTER_PORT; docs/distributed.md says to make it first)
_LAUNCHER_STORE: dict[str, Any] = {}


def teardown(world: World, settled: bool = False) -> None:
    """Leave the process group as no run used it, and destroy it if this run made it.
    ``settled`` (every rank finished the run): a barrier first, so that no rank's gloo thread
    still holds an earlier collective's tensors when the group's destructor joins it; the
    modules that use the group must be gone. A caller's group (``train()`` inside the caller's
    own ``init_process_group``) is settled too: its destructor runs when the caller destroys
    it, or at interpreter exit, where a rank whose gloo thread was still busy aborted
    ("terminate called without an active exception")."""
    if not dist.is_initialized():
        return
    failed = None
    if settled and world.enabled:
        try:
            dist.barrier()
        except RuntimeError as exc:  # a peer gone since the last agreement (its own is said)
            failed = exc  # the group is still left: a next run in this process makes its own
    release_sharding_caches()
    gc.collect()  # a DDP reducer in a reference cycle holds the group too
    if world.owns_group:
        dist.destroy_process_group()
    if failed is not None:
        raise failed


def release_sharding_caches() -> None:
    """Empty DTensor's caches (sharding decisions, redistribution plans, mesh topologies),
    whose keys hold the FSDP run's device mesh and so its process group: after an FSDP run
    ``destroy_process_group`` freed nothing (gloo's threads kept running), and the group's
    destructor was left to the interpreter's exit, as it clears torch's modules; a gloo thread
    then releasing a collective's tensors needs the GIL of an interpreter being torn down
    (SIGABRT, "terminate called without an active exception": torch's issue 179291). The
    caches refill at the next sharded op; the propagation cache is per thread, and this is
    the thread that trained. Each is private to torch: one absent in another version is
    passed."""
    if "torch.distributed.tensor" not in sys.modules:  # no FSDP run in this process
        return
    # each on its own: one missing failed the whole teardown (ImportError, AttributeError)
    for cached in (
        _private("DTensor._op_dispatcher.sharding_propagator.propagate_op_sharding"),
        _private("DTensor._op_dispatcher.sharding_propagator._propagate_tensor_meta_cached"),
        _private("_redistribute._gen_transform_infos"),
        _private("_collective_utils.MeshTopoInfo.build_from_mesh"),
    ):
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    for clear in (
        _private("_redistribute.clear_redistribute_planner_cache"),
        getattr(torch._C, "_clear_DTensor_sharding_propagator_cache", None),  # the C++ one's
    ):
        if callable(clear):
            clear()


def _private(path: str) -> Any:
    """``torch.distributed.tensor``'s ``path`` (a module or name, then attributes), or None
    where this torch lacks any part of it."""
    first, *attributes = path.split(".")
    try:
        found = importlib.import_module(f"torch.distributed.tensor.{first}")
    except ImportError:
        found = getattr(sys.modules["torch.distributed.tensor"], first, None)
    for attribute in attributes:
        found = getattr(found, attribute, None)
    return found
