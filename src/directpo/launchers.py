"""What a launcher's environment says of this process: torchrun's, accelerate launch's (its
config's FSDP, DeepSpeed and mixed-precision choices reach the processes only as variables),
srun's and mpirun's. Read here alone, so that every command reads a launch alike; no torch
(the CLI asks before it imports it)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from directpo.callers import said, spell_setting
from directpo.errors import ConfigError

if TYPE_CHECKING:
    import torch

# a process's rank on its node as each launcher names it: torchrun's (and accelerate launch's,
# deepspeed's) first, then srun's, Open MPI's, MPICH / Intel MPI's, PMI's, MVAPICH's; the
# launchers' own are read as accelerate and deepspeed read them. srun and mpirun set no
# LOCAL_RANK: a node's processes read it as 0, every one took cuda:0 and led its node's
# tokenizing, and a stopped run's resume line named one process's command, not the launch
LOCAL_RANK_VARIABLES = (
    "LOCAL_RANK",
    "SLURM_LOCALID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "PMI_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
)
# the count of processes a launcher started without a WORLD_SIZE, and its name for this
# process's rank: Open MPI's, MPICH / Intel MPI's (and srun --mpi's), MVAPICH's, then an srun
# step's. MPI's come first: mpirun under Slurm starts its daemons as an srun step of one task a
# node, whose count its ranks inherit. srun's SLURM_NTASKS is not one: a batch script's own
# process has it too (the job's); SLURM_STEP_NUM_TASKS is set by srun for its step's tasks only
# (as accelerate / Lightning tell an srun step from the batch script), so `srun -n 8 directpo
# train` with nothing exported, 8 whole runs into one output_dir, is told from `python -m
# directpo.cli train` in the script itself, one run
STARTED_VARIABLES = {
    "OMPI_COMM_WORLD_SIZE": ("mpirun", "OMPI_COMM_WORLD_RANK"),
    "PMI_SIZE": ("mpiexec", "PMI_RANK"),
    "MV2_COMM_WORLD_SIZE": ("mpirun", "MV2_COMM_WORLD_RANK"),
    "SLURM_STEP_NUM_TASKS": ("srun", "SLURM_PROCID"),
}
# the count of processes on this node, named alike (srun's only with --ntasks-per-node)
LOCAL_SIZE_VARIABLES = (
    "LOCAL_WORLD_SIZE",
    "SLURM_NTASKS_PER_NODE",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MPI_LOCALNRANKS",
    "PMI_LOCAL_SIZE",
    "MV2_COMM_WORLD_LOCAL_SIZE",
)
# what env:// rendezvous reads (torchrun and accelerate launch set them all)
RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")


def launched_size() -> int:
    """WORLD_SIZE set by torchrun / accelerate launch (1 for a plain process; an empty one is
    none)."""
    return _whole("WORLD_SIZE") or 1


def started_count() -> tuple[int, str]:
    """How many processes the launcher started, and the variable that says it: WORLD_SIZE,
    else an MPI launcher's or an srun step's own (``STARTED_VARIABLES``: ``mpirun -np 8
    directpo ...`` sets no WORLD_SIZE, and each process took itself for the only one); (1, "")
    for a plain process."""
    for name in ("WORLD_SIZE", *STARTED_VARIABLES):
        count = _whole(name)
        if count is not None:
            return max(count, 1), name
    return 1, ""


def check_started_alone() -> None:
    """Refuse a launch of several processes that set no WORLD_SIZE (mpirun, mpiexec, srun):
    each would have trained alone, a whole run each into the same output_dir. The fix is said
    in the launcher's own names (Intel MPI's PMI_RANK was told Open MPI's)."""
    count, name = started_count()
    if count > 1 and name != "WORLD_SIZE":
        launcher, rank = STARTED_VARIABLES[name]
        # (each process its own RANK: one exported before the launch is the same in every one)
        each = f"{launcher} bash -c 'RANK=${rank} WORLD_SIZE=${name} directpo ...'"
        raise ConfigError(
            f"the launcher started {count} processes ({name}) but set no WORLD_SIZE: each would "
            f"train alone; set RANK and WORLD_SIZE in each process ({each}) beside an exported "
            "MASTER_ADDR and MASTER_PORT (rank 0's host and a free port), or launch with "
            "torchrun (runs of their own, a sweep: WORLD_SIZE=1 in each; docs/distributed.md)"
        )


def local_rank() -> int | None:
    """This process's rank on its node as its launcher set it (``LOCAL_RANK``, else the
    launcher's own name for it: ``LOCAL_RANK_VARIABLES``), None where none is set."""
    for name in LOCAL_RANK_VARIABLES:
        value = _whole(name)
        if value is not None:
            return value
    return None


def local_rank_exported_once() -> tuple[str, int] | None:
    """The launcher's own local rank (its variable, its value) where LOCAL_RANK says 0 but it
    says otherwise: ``export LOCAL_RANK=$SLURM_LOCALID`` in a batch script before ``srun`` is
    the script's own 0 in every task, which then all took cuda:0 (NCCL's 'Duplicate GPU
    detected', a traceback, later). None where they agree, or under torchrun (its own local
    ranks: one srun task a node runs it)."""
    if "TORCHELASTIC_RUN_ID" in os.environ or _whole("LOCAL_RANK") != 0:
        return None
    for name in LOCAL_RANK_VARIABLES[1:]:
        value = _whole(name)
        if value is not None:
            return (name, value) if value else None
    return None


def local_size() -> int:
    """How many processes the launcher started on this node (1 where it does not say)."""
    for name in LOCAL_SIZE_VARIABLES:
        value = _whole(name)
        if value:
            return value
    return 1


def under_launcher() -> bool:
    """Started by a launcher: torchrun / accelerate launch (which set ``LOCAL_RANK`` even for
    one process), or any that started several (srun, mpirun: ``WORLD_SIZE`` over 1). srun's
    and mpirun's local-rank variables alone are not enough: a batch script's own process
    (sbatch) has SLURM_LOCALID too."""
    torchrun = "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ
    return torchrun or _size_as_said() > 1


def check_rendezvous() -> None:
    """A launch of its own (srun, mpirun, a script's: no torchrun) names where its processes
    meet and which one this is: a missing variable was torch's ValueError traceback from the
    env:// rendezvous ("environment variable RANK expected, but not set"). All said in one
    line, with what srun and mpirun call them."""
    missing = [name for name in RENDEZVOUS_VARIABLES if not os.environ.get(name, "").strip()]
    if missing:
        # the launcher's own rank variable where its count says which launched (Intel MPI's
        # PMI_RANK, not Open MPI's), else srun's and mpirun's
        ranks = [f"{launcher}: RANK=${rank}" for size, (launcher, rank) in _launchers() if size]
        ranks = ranks[:1] or ["srun: RANK=$SLURM_PROCID", "mpirun: RANK=$OMPI_COMM_WORLD_RANK"]
        raise ConfigError(
            f"launched on {launched_size()} processes (WORLD_SIZE) without "
            f"{', '.join(missing)}: set them in each process ({', '.join(ranks)}; "
            "MASTER_ADDR, MASTER_PORT: rank 0's host and a free port), or launch with torchrun"
        )
    _whole("RANK")  # (a number: else one line, not the rendezvous's traceback)
    _check_rank_of_each()


def _check_rank_of_each() -> None:
    """RANK as the launcher numbered this process. ``export RANK=$SLURM_PROCID`` in a batch
    script before ``srun`` is the script's own 0 in every task (likewise mpirun's -x RANK):
    every process took rank 0, each but the first failed on MASTER_PORT with a traceback and
    rank 0 waited out ddp_timeout for the rest. Said where RANK is 0 but the launcher of this
    WORLD_SIZE numbered the process otherwise; torchrun's own ranks (under srun, one task a
    node) are another numbering, left."""
    if "TORCHELASTIC_RUN_ID" in os.environ or os.environ.get("RANK", "").strip() != "0":
        return
    for size, (launcher, rank_name) in _launchers():
        numbered = _whole(rank_name)
        if size == launched_size() and numbered is not None:
            if numbered != 0:
                raise ConfigError(
                    f"RANK is 0 but {launcher} numbered this process {numbered} ({rank_name}): "
                    f"RANK was set once for every process (exported before {launcher}), so each "
                    f"would take rank 0; set it in each: {launcher} bash -c "
                    f"'RANK=${rank_name} directpo ...'"
                )
            return


def _launchers() -> list[tuple[int | None, tuple[str, str]]]:
    """Each launcher of ``STARTED_VARIABLES``: the count it says (None where unset), its name
    and its rank variable, MPI's first (as ``started_count`` reads them)."""
    return [(_whole(size), named) for size, named in STARTED_VARIABLES.items()]


def first_rank() -> bool:
    """Rank 0 of a launch (every rank runs the same command line), or the only process."""
    # (a RANK left in the environment without a launcher's WORLD_SIZE is no rank: every line,
    # the error's too, went unsaid)
    return os.environ.get("RANK", "0") == "0" or _size_as_said() == 1


def _size_as_said() -> int:
    """``launched_size()`` where a line is being said or a signal handled (a WORLD_SIZE that
    is no number is refused by the run's setup, not there): 1 for such a value."""
    try:
        return launched_size()
    except ConfigError:
        return 1


def _whole(name: str) -> int | None:
    """The variable ``name`` as a whole number (None where unset or empty); another value is
    refused in one line, not ``int()``'s traceback."""
    value = os.environ.get(name, "").strip()
    if not value:
        return None
    if not value.isdigit():
        raise ConfigError(
            f"the environment's {name} is {value!r}, not a whole number: the launcher sets it "
            "(unset it to run one process)"
        )
    return int(value)


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
            "without deepspeed_config (or with torchrun) and "
            f"{spell_setting(('distributed', 'fsdp'))} (FSDP2 shards policy, gradients and "
            "optimizer state, as ZeRO-3 does)"
        )
    if not asked("ACCELERATE_USE_FSDP"):
        return mode
    if mode not in ("auto", "fsdp"):
        raise ConfigError(
            f"accelerate launch's config asks for FSDP but distributed is {mode}: "
            f"{spell_setting(('distributed', 'fsdp'))} (or auto), or launch without the FSDP "
            "config"
        )
    if asked("FSDP_OFFLOAD_PARAMS") and not offload:
        raise ConfigError(
            "accelerate launch's config asks for fsdp_offload_params: "
            f"{spell_setting(('fsdp_offload', True))} (with {said('distributed', 'fsdp')}), or "
            "turn it off in the accelerate config"
        )
    return "fsdp"


def check_launcher_precision(compute: torch.dtype) -> None:
    """An ``accelerate launch`` config's mixed_precision, which also reaches the processes only
    as an environment variable: bf16 asked there while the run computes in float32 trained in
    float32 without a word. It is refused unless it agrees (accelerate's default, no, is left
    to the run's own options)."""
    import torch

    asked = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if asked in ("fp16", "fp8"):
        raise ConfigError(
            f"accelerate launch's config asks for mixed_precision {asked}, which directpo does "
            f"not run: use bf16 ({said('bf16', True)}), and launch with --mixed_precision bf16 "
            "or no"
        )
    if asked == "bf16" and compute != torch.bfloat16:
        raise ConfigError(
            "accelerate launch's config asks for mixed_precision bf16 but this run computes in "
            f"float32: {spell_setting(('bf16', True))}, or launch with --mixed_precision no"
        )
