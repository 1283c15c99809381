"""Data-parallel and sharded training on PyTorch's own engine: torchrun + DDP or FSDP2.

Launch the usual config on N processes::

    torchrun --nproc_per_node 8 -m directpo train cfg.yaml          # one node
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 \\
        --nproc_per_node 8 -m directpo train cfg.yaml                # on each node (rank 0, 1)
    accelerate launch --num_processes 8 -m directpo train cfg.yaml   # sets the same variables

What is kept equal to one process with a batch ``world_size`` times larger:

* The global micro-batch (``per_device_train_batch_size × world_size`` pairs) is the one a
  single process would draw; rank r takes its r-th contiguous slice. The loss of a step is the
  sum over all its pairs divided by the step's global pair count, times ``world_size`` because
  DDP and FSDP average gradients over ranks: the gradient is the single-process gradient.
* Metrics are sums over pairs all-reduced across ranks before they are averaged.
* A rank whose slice is empty (the epoch's last, short micro-batch) computes a pair with weight
  0, so that every rank runs the same collectives.

``distributed: fsdp`` shards every transformer block (``_no_split_modules``) and then the rest
with ``fully_shard``; under ``dtype: bfloat16`` the sharded weights are the float32 masters,
computed in bf16 through a ``MixedPrecisionPolicy`` (gradients reduced in float32). The
reference model, unless precomputed, is sharded the same way. ``distributed: ddp`` replicates
the model.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime
import gc
import importlib
import itertools
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from directpo.errors import ConfigError, DirectpoError, ModelLoadError
from directpo.logprobs import SequenceScorer, unwrap_peft
from directpo.meta_models import WEIGHTS_FOLDER, WEIGHTS_KEYS, safetensors_keys
from directpo.model_preparation import config_as_loaded, decoder_layers
from directpo.precision import PrecisionPolicy, float32_units


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


def launched_size() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 for a plain process)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launcher_mode(mode: str, offload: bool) -> str:
    """``distributed`` as an ``accelerate launch`` config asks for it: such a config's FSDP or
    DeepSpeed choice reaches the processes only as environment variables, which went unread
    (a handbook launch with an FSDP or ZeRO-3 config trained every rank with the whole model
    under DDP). FSDP makes ``auto`` fsdp; DeepSpeed and contradictions are refused."""

    def asked(variable: str) -> bool:
        return os.environ.get(variable, "").lower() == "true"

    if asked("ACCELERATE_USE_DEEPSPEED"):
        raise ConfigError(
            "accelerate launch's config asks for DeepSpeed, which directpo does not run: launch "
            "without deepspeed_config (or with torchrun) and set distributed: fsdp (FSDP2 "
            "shards policy, gradients and optimizer state, as ZeRO-3 does)"
        )
    if not asked("ACCELERATE_USE_FSDP"):
        return mode
    if mode not in ("auto", "fsdp"):
        raise ConfigError(
            f"accelerate launch's config asks for FSDP but distributed is {mode}: set "
            "distributed: fsdp (or auto), or launch without the FSDP config"
        )
    if asked("FSDP_OFFLOAD_PARAMS") and not offload:
        raise ConfigError(
            "accelerate launch's config asks for fsdp_offload_params: set fsdp_offload: true "
            "(with distributed: fsdp), or turn it off in the accelerate config"
        )
    return "fsdp"


def check_launcher_precision(compute: torch.dtype) -> None:
    """An ``accelerate launch`` config's mixed_precision, which also reaches the processes only
    as an environment variable: bf16 asked there while the run computes in float32 trained in
    float32 without a word. It is refused unless it agrees (accelerate's default, no, is left
    to the run's own options)."""
    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked in ("fp16", "fp8"):
        raise ConfigError(
            f"accelerate launch's config asks for mixed_precision {asked}, which directpo does "
            "not run: use bf16 (bf16: true), and launch with --mixed_precision bf16 or no"
        )
    if asked == "bf16" and compute != torch.bfloat16:
        raise ConfigError(
            "accelerate launch's config asks for mixed_precision bf16 but this run computes in "
            "float32: set bf16: true, or launch with --mixed_precision no"
        )


def setup(mode: str, timeout_s: float = 1800) -> World:
    """Join the process group that torchrun started (or make a one-process group for fsdp/ddp
    without a launcher); pick this rank's device. ``timeout_s``: how long a collective waits
    (ddp_timeout)."""
    size = launched_size()
    if mode == "auto":
        mode = "ddp" if size > 1 else "none"
    if mode == "none":
        if size > 1:
            raise ConfigError(
                f"distributed: none, but the launcher started {size} processes; "
                "use distributed: ddp or fsdp (or auto)"
            )
        return World(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if size > 1 and "LOCAL_RANK" not in os.environ and torch.cuda.device_count() > 1:
        raise ConfigError(  # (srun, mpirun name it otherwise): each took cuda:0, NCCL then failed
            f"launched on {size} processes without LOCAL_RANK (each would take cuda:0): set it "
            "(srun: $SLURM_LOCALID, mpirun: $OMPI_COMM_WORLD_LOCAL_RANK), or launch with torchrun"
        )
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
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


def launcher_store(run: int, timeout: datetime.timedelta) -> tuple[dist.Store, int, int]:
    """The launcher's store (torchrun's, or rank 0's at MASTER_ADDR), this rank and the world
    size, keys under run ``run``'s prefix (the same on every rank): a second ``train()`` in one
    process made its group under the first one's keys, and gloo met stale addresses
    ("Connection closed by peer"). One store per process, kept (its timeout each run's
    ddp_timeout): without torchrun's agent store (srun, mpirun) rank 0 serves it on MASTER_PORT,
    and a second run's new server there was missed by a rank that came before rank 0 had
    destroyed the first group ("Failed to recv"; rank 0: "waiting for clients")."""
    where = tuple(os.environ.get(name, "") for name in _RENDEZVOUS_VARIABLES)
    if _LAUNCHER_STORE.get("where") != where:  # (another launch's variables: its own store)
        _LAUNCHER_STORE.update(
            where=where, rendezvous=next(dist.rendezvous("env://", timeout=timeout))
        )
    store, rank, size = _LAUNCHER_STORE["rendezvous"]
    store.set_timeout(timeout)
    # ("default_pg": init_process_group's own prefix for the store it makes)
    return dist.PrefixStore(f"directpo/run-{run}/default_pg", store), rank, size


_RUNS = itertools.count()
# what env:// rendezvous reads: the store kept is the one these name
_RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")
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


def wrap(
    scorer: SequenceScorer, world: World, precision: PrecisionPolicy, offload: bool = False
) -> torch.nn.Module:
    """``scorer`` on this rank's device: as is, under DDP, or sharded with FSDP2 (with
    ``offload``, its shards, gradients and optimizer state stay in CPU memory).

    Mixed precision (precision.py): under DDP the model holds the bf16 compute copy and the
    gradients are reduced in float32 (``_float32_allreduce``) before they reach the masters;
    under FSDP2 the float32 parameters are the masters and ``MixedPrecisionPolicy`` computes
    in bf16 and reduces in float32.
    """
    if world.mode == "ddp":
        scorer.to(world.device)
        if not any(p.requires_grad for p in scorer.parameters()):
            return scorer  # a frozen reference: nothing to synchronise
        ddp = torch.nn.parallel.DistributedDataParallel(scorer)
        if any(p.requires_grad and p.dtype != torch.float32 for p in scorer.parameters()):
            ddp.register_comm_hook(None, _float32_allreduce)
        return ddp
    if world.mode == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import (
            CPUOffloadPolicy,
            MixedPrecisionPolicy,
            OffloadPolicy,
            fully_shard,
        )

        mesh = init_device_mesh(world.device.type, (world.size,))
        policy = MixedPrecisionPolicy(param_dtype=precision.compute, reduce_dtype=torch.float32)
        # pinned host memory speeds the copies to the GPU; there is no pinning without CUDA
        pinned = world.device.type == "cuda"
        placement = CPUOffloadPolicy(pin_memory=pinned) if offload else OffloadPolicy()
        blocks = decoder_layers(scorer.model)
        if not blocks:
            raise ConfigError(
                f"distributed: fsdp: {type(scorer.model).__name__} names no transformer block "
                "class (_no_split_modules); use distributed: ddp"
            )
        if precision.compute != torch.float32:  # (param_dtype unset: computed as stored)
            for unit in float32_units(unwrap_peft(scorer.model)):
                float32 = MixedPrecisionPolicy(reduce_dtype=torch.float32)
                fully_shard(unit, mesh=mesh, mp_policy=float32, offload_policy=placement)
        for block in blocks:
            fully_shard(block, mesh=mesh, mp_policy=policy, offload_policy=placement)
        # a frozen reference has no backward to keep its root (embeddings, LM head) gathered
        # for: reshard it after each forward instead of holding it whole for the whole run
        frozen = not any(p.requires_grad for p in scorer.parameters())
        fully_shard(
            scorer, mesh=mesh, mp_policy=policy, offload_policy=placement,
            reshard_after_forward=True if frozen else None,
        )  # fmt: skip
        return scorer
    return scorer.to(world.device)


def release_host_memory() -> None:
    """Hand the heap memory freed by start-up (loading, the layout check's forward passes) back
    to the system: glibc keeps it in its arenas otherwise, and every process would carry it
    through training (measured: 1.4 GB per process for a 0.5B model on CPU). No-op elsewhere."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _float32_allreduce(state, bucket):  # noqa: ANN001, ANN202 - DDP checks these annotations
    """DDP communication hook: average a bucket of bf16 gradients in float32 (a bf16 sum over
    many ranks would lose bits at every hop), then hand it back in the bucket's dtype."""
    buffer = bucket.buffer()
    total = buffer.float().div_(dist.get_world_size())
    future = dist.all_reduce(total, async_op=True).get_future()

    def back(done):  # noqa: ANN001, ANN202
        return buffer.copy_(done.value()[0])

    return future.then(back)


def materialize(module: torch.nn.Module, device: torch.device) -> bool:
    """Give a meta-built, ``fully_shard``-ed module memory on this rank's device and fill its
    shards from the model folder's safetensors files; True if it was meta-built.

    torch.distributed.checkpoint's ``HuggingFaceStorageReader`` reads, on each rank, only the
    slices of each tensor that the rank holds (measured faster here than rank 0 reading and
    scattering: docs/distributed.md), so no process holds more than its shards. What was real
    before (buffers such as rotary tables, LoRA adapters initialised on the CPU) is kept.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    model = unwrap_peft(unwrap(module))
    folder, file_keys = getattr(model, WEIGHTS_FOLDER, None), getattr(model, WEIGHTS_KEYS, {})
    tensors = [*module.named_parameters(), *module.named_buffers()]
    if folder is None or not any(_local(t).is_meta for _, t in tensors):
        return False
    kept = {name: _local(t).detach().clone() for name, t in tensors if not _local(t).is_meta}
    unfilled = {id(t) for _, t in module.named_parameters() if _local(t).is_meta}
    module.to_empty(device=device)  # the CPU under fsdp_offload
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name in kept:
                _local(tensor).copy_(kept[name])
    params = {id(p): p for _, p in module.named_parameters()}
    state = get_model_state_dict(module)  # clean names, the parameters themselves
    available = safetensors_keys(folder)
    wanted: dict[str, torch.Tensor] = {}
    copies: list[tuple[torch.Tensor, str]] = []  # a second parameter of the same file tensor
    for name, tensor in state.items():
        key = checkpoint_key(name)
        key = file_keys.get(key, key)  # the name the files use (transformers' renamings)
        owner = id(tensor) if id(tensor) in params else None  # usually the parameter itself
        if owner is None:
            owner = next((i for i, p in params.items() if _same(p, tensor)), None)
        if owner in unfilled and key in available:
            # peft's modules_to_save holds the module twice (original_module and the trained
            # copy): both start as the file's tensor, which dcp reads into one of them
            if key in wanted:
                copies.append((tensor, key))
            else:
                wanted[key] = tensor
            unfilled.discard(owner)
    if unfilled:
        names = [n for n, p in module.named_parameters() if id(p) in unfilled]
        raise ModelLoadError(f"{folder}: no weights for {', '.join(names[:3])} in its files")
    dcp.load(wanted, storage_reader=HuggingFaceStorageReader(folder))
    with torch.no_grad():
        for tensor, key in copies:  # the same shape, so the same shards on this rank
            _local(tensor).copy_(_local(wanted[key]))
    return True


def _same(param: torch.Tensor, tensor: torch.Tensor) -> bool:
    local, other = _local(param), _local(tensor)
    return local.data_ptr() == other.data_ptr() and local.shape == other.shape


def _local(tensor: torch.Tensor) -> torch.Tensor:
    to_local = getattr(tensor, "to_local", None)  # an FSDP2 shard (DTensor)
    return to_local() if to_local is not None else tensor


def checkpoint_key(name: str) -> str:
    """The key of a (scorer, peft-wrapped) parameter name in the model's own safetensors files:
    ``model.`` of the scorer, peft's ``base_model.model.`` and ``.base_layer`` /
    ``.original_module`` / ``.modules_to_save.<adapter>`` segments removed."""
    name = name.removeprefix("module.").removeprefix("model.")
    name = name.removeprefix("base_model.model.")
    name = re.sub(r"\.(base_layer|original_module|modules_to_save\.[^.]+)(?=\.)", "", name)
    return name


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a (possibly DDP-wrapped) scorer."""
    inner = (
        module.module if isinstance(module, torch.nn.parallel.DistributedDataParallel) else module
    )
    return inner.model if isinstance(inner, SequenceScorer) else inner


@contextlib.contextmanager
def unsharded_root(module: torch.nn.Module) -> Iterator[None]:
    """Gather an FSDP root's own parameters (embeddings, final norm, LM head) for code that
    calls the inner model directly, as ``generate`` does; the blocks gather themselves."""
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


def gradient_sync(module: torch.nn.Module, enabled: bool) -> Any:
    """Context: skip the gradient all-reduce of micro-batches before a step's last one."""
    if isinstance(module, torch.nn.parallel.DistributedDataParallel) and not enabled:
        return module.no_sync()
    if hasattr(module, "set_requires_gradient_sync"):  # an FSDP2 module
        module.set_requires_gradient_sync(enabled)
    return contextlib.nullcontext()


def grad_norm_value(norm: torch.Tensor) -> float:
    """A float from ``clip_grad_norm_``'s result (a DTensor under FSDP)."""
    full = getattr(norm, "full_tensor", None)
    return float(full() if full is not None else norm)


SHARD_BYTES = 5 * 2**30  # per output safetensors file (save_pretrained's default is larger)


def save_sharded_model(
    folder: Path, scorer: torch.nn.Module, model: torch.nn.Module, dtype: torch.dtype,
    world: World, compensations: dict[str, torch.Tensor] | None = None,
    replaced: dict[str, torch.Tensor] | None = None,
) -> None:  # fmt: skip
    """The final weights of an FSDP2-trained (non-PEFT) model as a Hugging Face folder, with
    no rank ever holding more than its shards: every rank writes its shards in ``dtype``, then
    ``HuggingFaceStorageWriter`` consolidates them into ``model-0000k-of-0000n.safetensors``
    files of at most ~5 GiB with ``model.safetensors.index.json``; rank 0 adds config.json.
    Tied weights are written once, as ``save_pretrained`` does. ``compensations`` (by
    parameter name: Kahan-compensated bf16 weights) are added before the cast; ``replaced``
    (by name, sharded alike) are written instead of the parameters (a bf16 reference's float32
    weights). Every rank must
    call; it ends with no collective (the caller, ``write_staged``, agrees on the outcome)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    # a tied weight under its first name only (named_parameters drops the repeats, on every
    # rank alike; the state dict's DTensors of tied names are distinct objects)
    kept = {name for name, _ in scorer.named_parameters()} | {n for n, _ in scorer.named_buffers()}
    compensations = compensations or {}
    state = {}
    for name, tensor in get_model_state_dict(scorer).items():
        if name not in kept:
            continue
        tensor = (replaced or {}).get(name, tensor)
        if name in compensations:
            tensor = tensor.float() + compensations[name].float()
        state[checkpoint_key(name)] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    mapping, index, size = {}, 1, 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if size and size + nbytes > SHARD_BYTES:
            index, size = index + 1, 0
        mapping[key], size = index, size + nbytes
    writer = HuggingFaceStorageWriter(
        str(folder), fqn_to_index_mapping=mapping, save_distributed=True,
        enable_consolidation=True,
    )  # fmt: skip
    dcp.save(state, storage_writer=writer)
    if world.is_main:
        import shutil

        shutil.rmtree(folder / "sharded", ignore_errors=True)  # the per-rank staging files
        if index == 1:  # one file: save_pretrained's name, no index
            (folder / "model-00001-of-00001.safetensors").replace(folder / "model.safetensors")
            (folder / "model.safetensors.index.json").unlink()
        config = unwrap_peft(model).config
        config.dtype = dtype
        with config_as_loaded(model):
            config.save_pretrained(folder)
    # no barrier here: a failed write on rank 0 (a full disk) would skip it, and the other
    # ranks, waiting in it, would hang while rank 0 waits in write_staged's agreement


def save_sharded_adapter(
    folder: Path, model: torch.nn.Module, dtype: torch.dtype, world: World
) -> None:
    """The trained adapter of an FSDP2-sharded PEFT model: only the adapter tensors are
    gathered (to rank 0), never the base. Every rank must call; as ``save_sharded_model``, it
    ends with no collective after rank 0's writes (the caller agrees on the outcome)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from directpo.adapters import write_as_plain_lora

    active = model.active_adapter
    gathered = {}
    for name, param in model.named_parameters():
        if param.requires_grad:  # the active adapter (and modules_to_save)
            full = getattr(param, "full_tensor", None)
            value = full() if full is not None else param.detach()
            gathered[name] = value.to(dtype).cpu()
    if world.is_main:
        adapter = get_peft_model_state_dict(model, state_dict=gathered, adapter_name=active)
        save_file({k: v.contiguous() for k, v in adapter.items()},
                  str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})  # fmt: skip
        model.peft_config[active].save_pretrained(str(folder))
        write_as_plain_lora(model, folder)
