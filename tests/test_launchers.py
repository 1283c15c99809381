"""launchers.py: a launch read alike everywhere. srun / mpirun set no LOCAL_RANK (their own
names for it), and every place that read only torchrun's variable took each of a node's
processes for local rank 0: its GPU, its node's tokenizing leader, its resume line, its
Ctrl-C. No GPU here: the device count is patched."""

from __future__ import annotations

import signal

import pytest
import torch

from directpo.after_run import resume_command
from directpo.errors import ConfigError
from directpo.launchers import (
    LOCAL_RANK_VARIABLES,
    LOCAL_SIZE_VARIABLES,
    STARTED_VARIABLES,
    launched_size,
    local_rank,
    under_launcher,
)
from directpo.process_group import World, rank_device

LAUNCH_VARIABLES = (
    *LOCAL_RANK_VARIABLES,
    *LOCAL_SIZE_VARIABLES,
    *STARTED_VARIABLES,
    *(rank for _, rank in STARTED_VARIABLES.values()),
    "SLURM_NTASKS",
    "WORLD_SIZE",
    "RANK",
)


@pytest.fixture
def bare_launch(monkeypatch) -> pytest.MonkeyPatch:
    """No launcher variable at all (the test's own machine may run under one)."""
    for name in (*LAUNCH_VARIABLES, "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)


@pytest.mark.parametrize("name", LOCAL_RANK_VARIABLES[1:])
def test_a_launchers_own_local_rank_picks_the_gpu(bare_launch, name) -> None:
    """srun's SLURM_LOCALID, mpirun's OMPI_COMM_WORLD_LOCAL_RANK, ...: each process of a node
    of 4 GPUs takes its own (before: all cuda:0, or refused)."""
    _gpus(bare_launch, 4)
    bare_launch.setenv("WORLD_SIZE", "8")
    bare_launch.setenv(name, "3")
    assert local_rank() == 3
    assert rank_device(8) == torch.device("cuda", 3)


def test_torchruns_local_rank_comes_first_and_one_bound_gpu_is_taken(bare_launch) -> None:
    _gpus(bare_launch, 4)
    bare_launch.setenv("SLURM_LOCALID", "0")  # (srun around torchrun: one task a node)
    bare_launch.setenv("LOCAL_RANK", "2")
    assert rank_device(8) == torch.device("cuda", 2)
    _gpus(bare_launch, 1)  # srun --gpus-per-task 1: the process sees its one GPU as cuda:0
    bare_launch.delenv("LOCAL_RANK")
    bare_launch.setenv("SLURM_LOCALID", "3")
    bare_launch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert rank_device(8) == torch.device("cuda", 0)
    bare_launch.delenv("CUDA_VISIBLE_DEVICES")  # the node's one GPU, no binding: shared
    with pytest.raises(ConfigError, match=r"local rank is 3 \(SLURM_LOCALID\) .* one GPU"):
        rank_device(8)
    bare_launch.setenv("SLURM_LOCALID", "0")
    assert rank_device(8) == torch.device("cuda", 0)
    _gpus(bare_launch, 0)
    assert rank_device(8) == torch.device("cpu")


def test_a_local_rank_past_the_gpus_seen_and_none_at_all_are_one_line(bare_launch) -> None:
    """A local rank of 5 on a node whose process sees 4 GPUs was torch's 'invalid device
    ordinal' traceback; no local rank at all on a node of several GPUs put every process on
    cuda:0. Each is refused in one line naming what to set."""
    _gpus(bare_launch, 4)
    bare_launch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "5")
    with pytest.raises(ConfigError) as info:
        rank_device(8)
    message = str(info.value)
    assert "local rank is 5 (OMPI_COMM_WORLD_LOCAL_RANK)" in message and "4 GPUs" in message
    assert "\n" not in message
    bare_launch.delenv("OMPI_COMM_WORLD_LOCAL_RANK")
    with pytest.raises(ConfigError, match="without LOCAL_RANK .*SLURM_LOCALID.*cuda:0"):
        rank_device(8)
    assert rank_device(1) == torch.device("cuda", 0)  # (one process: its GPU 0)


def test_launch_variables_that_are_no_number_are_one_line(bare_launch) -> None:
    """WORLD_SIZE=abc (a launch script's typo) was int()'s ValueError traceback."""
    assert launched_size() == 1 and local_rank() is None
    bare_launch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="^the environment's WORLD_SIZE is 'two', not a whole"):
        launched_size()
    assert not under_launcher()  # (said where the run's setup refuses it, not in a handler)
    bare_launch.setenv("WORLD_SIZE", " ")  # empty: none
    assert launched_size() == 1


def test_a_nodes_tokenizing_leader_and_share_under_srun_and_mpirun(bare_launch) -> None:
    """Under srun every rank read LOCAL_RANK 0: each led its own node's tokenizing (rank 7 of a
    node of ranks 4-7 wrote the cache entry beside its leader) and took the whole
    dataset_num_proc. Its leader is the node's first rank; its share a node's count's."""
    import torch.distributed as dist

    from directpo.node_tokenizing import Turn, node_turn, tokenizing_processes

    bare_launch.setattr(dist, "is_initialized", lambda: True)
    bare_launch.setattr(dist.distributed_c10d, "_get_default_store", lambda: "store")
    world = World("ddp", rank=7, size=8)
    bare_launch.setenv("SLURM_LOCALID", "3")
    assert node_turn(world) == Turn("store", 7, 4, 0)
    bare_launch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "4")
    assert tokenizing_processes(8, node_turn(world), alone=False) == 2
    bare_launch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun's first
    assert tokenizing_processes(8, node_turn(world), alone=False) == 4


def test_srun_and_mpirun_launches_are_launches_for_resume_and_ctrl_c(bare_launch) -> None:
    """The resume line named one process's command (`directpo train ...`) under srun, and a
    launcher's forwarded second Ctrl-C stopped a worker at once, its checkpoint lost: both
    read only torchrun's LOCAL_RANK. A batch script's own process (SLURM_LOCALID, no
    WORLD_SIZE) is no launch."""
    from directpo.signals import StopRequest

    given = ["a.yaml", "--beta", "0.2"]
    bare_launch.setenv("SLURM_LOCALID", "0")
    assert resume_command(given).startswith("resume: directpo train a.yaml --beta 0.2")
    stop = StopRequest()
    stop.requested = "SIGINT"
    with pytest.raises(KeyboardInterrupt):
        stop._handle(signal.SIGINT, None)
    bare_launch.setenv("WORLD_SIZE", "16")
    bare_launch.setenv("RANK", "5")
    assert resume_command(given) == "resume: the same launch with --resume_from_checkpoint latest"
    stop._handle(signal.SIGINT, None)  # the same request again: no KeyboardInterrupt
    assert stop.requested == "SIGINT"


def test_a_launch_of_its_own_without_its_rendezvous_is_one_line(bare_launch) -> None:
    """srun with WORLD_SIZE exported but not RANK (or MASTER_ADDR / MASTER_PORT): the env://
    rendezvous's ValueError was a traceback. Every missing one is named in one line."""
    from directpo.distributed import setup

    _gpus(bare_launch, 0)
    bare_launch.delenv("MASTER_ADDR", raising=False)
    bare_launch.setenv("MASTER_PORT", "29500")
    bare_launch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError) as info:
        setup("ddp", timeout_s=5)
    message = str(info.value)
    assert message.startswith("launched on 2 processes (WORLD_SIZE) without MASTER_ADDR, RANK:")
    assert "RANK=$SLURM_PROCID" in message and "\n" not in message
    bare_launch.setenv("PMI_SIZE", "2")  # Intel MPI's mpiexec: its own names, not Open MPI's
    with pytest.raises(ConfigError, match=r"each process \(mpiexec: RANK=\$PMI_RANK; MASTER_"):
        setup("ddp", timeout_s=5)
    assert not torch.distributed.is_initialized()


@pytest.mark.parametrize(
    ("name", "rank"),
    [
        ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
        ("PMI_SIZE", "PMI_RANK"),  # (Intel MPI's, MPICH's: was told Open MPI's names)
        ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"),
        ("SLURM_STEP_NUM_TASKS", "SLURM_PROCID"),  # srun -n 4 directpo train, nothing exported
    ],
)
def test_mpirun_without_world_size_is_refused_not_trained_alone_in_each(
    bare_launch, capsys, tmp_path, name, rank
) -> None:
    """``mpirun -np 4 directpo train ...`` (or ``srun -n 4``) exports no WORLD_SIZE: each
    process took itself for the only one and trained a whole run alone into the same
    output_dir (and score redid the whole file in each). One line now, naming the variable
    that says 4 and the launcher's own rank variable; a batch script's SLURM_NTASKS is no
    launch."""
    from directpo.cli import main
    from directpo.distributed import setup

    bare_launch.setenv("SLURM_NTASKS", "4")
    assert setup("none").mode == "none"
    bare_launch.setenv(name, "4")
    for mode in ("auto", "ddp"):
        with pytest.raises(ConfigError) as info:
            setup(mode)
        message = str(info.value)
        assert message.startswith(f"the launcher started 4 processes ({name}) but set no WORLD_")
        assert f"RANK=${rank} WORLD_SIZE=${name} directpo" in message and "\n" not in message
    assert not torch.distributed.is_initialized()
    argv = ["score", "--model_name_or_path", str(tmp_path), "--input", str(tmp_path / "i.jsonl")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"one process, but the launcher started 4 ({name}): run" in line and "mpirun" in line
    assert "(shards) say so with WORLD_SIZE=1" in line
    bare_launch.setenv("WORLD_SIZE", "1")  # (said: one process, whatever mpirun started)
    assert setup("none").mode == "none"
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 2  # (now the files)
    assert "launcher" not in capsys.readouterr().err


def test_srun_is_told_from_its_batch_scripts_own_process(bare_launch) -> None:
    """``python -m directpo.cli train`` in an sbatch script of ``--ntasks 8`` is one process
    (SLURM_NTASKS, SLURM_PROCID and SLURM_LOCALID set, no step of srun's): one run. srun sets
    SLURM_STEP_NUM_TASKS for its tasks only: ``srun -n 8`` with nothing exported is refused,
    ``srun -n 1`` is one run, and a WORLD_SIZE said (torchrun a node under srun, or exports)
    or mpirun's own count (its daemons are an srun step of one task a node) comes first."""
    from directpo.distributed import setup
    from directpo.launchers import check_started_alone, started_count

    _gpus(bare_launch, 0)
    for name, value in (("SLURM_NTASKS", "8"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")):
        bare_launch.setenv(name, value)
    assert started_count() == (1, "") and not under_launcher()
    assert setup("auto").mode == "none"
    bare_launch.setenv("SLURM_STEP_NUM_TASKS", "1")  # srun -n 1 directpo train
    assert setup("auto").mode == "none"
    bare_launch.setenv("SLURM_STEP_NUM_TASKS", "8")
    with pytest.raises(ConfigError, match=r"started 8 processes \(SLURM_STEP_NUM_TASKS\)"):
        setup("auto")
    bare_launch.setenv("OMPI_COMM_WORLD_SIZE", "16")  # mpirun -np 16 on 8 nodes
    assert started_count() == (16, "OMPI_COMM_WORLD_SIZE")
    bare_launch.setenv("WORLD_SIZE", "64")  # srun -N 8 --ntasks-per-node 1 torchrun ...
    assert started_count() == (64, "WORLD_SIZE")
    check_started_alone()  # (a WORLD_SIZE said: the rendezvous's to check)


@pytest.mark.parametrize(
    ("size", "rank", "launcher"),
    [("SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "srun"), ("PMI_SIZE", "PMI_RANK", "mpiexec")],
)
def test_a_rank_exported_once_for_every_process_is_one_line(
    bare_launch, size, rank, launcher
) -> None:
    """``export RANK=$SLURM_PROCID`` in the batch script, then ``srun -n 4 directpo train``:
    the script's own 0 in every task; each took rank 0, all but one failed on MASTER_PORT with
    a traceback and rank 0 waited out ddp_timeout. Rank 0 as the launcher numbered it, and
    torchrun's own ranks under srun, go on to the rendezvous."""
    from directpo.launchers import check_rendezvous

    for name, value in (("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")):
        bare_launch.setenv(name, value)
    for name, value in (("WORLD_SIZE", "4"), ("RANK", "0"), (size, "4"), (rank, "2")):
        bare_launch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        check_rendezvous()
    assert str(info.value) == (
        f"RANK is 0 but {launcher} numbered this process 2 ({rank}): RANK was set once for "
        f"every process (exported before {launcher}), so each would take rank 0; set it in "
        f"each: {launcher} bash -c 'RANK=${rank} directpo ...'"
    )
    bare_launch.setenv("RANK", "2")  # set in each process
    check_rendezvous()
    bare_launch.setenv("RANK", "0")
    bare_launch.setenv(size, "1")  # torchrun's 4 ranks under srun -n 1 (its own numbering)
    check_rendezvous()
    bare_launch.setenv(size, "4")
    bare_launch.setenv("TORCHELASTIC_RUN_ID", "job")  # srun -n 4 torchrun ... each a node
    check_rendezvous()


def test_a_local_rank_exported_once_for_every_process_is_one_line(bare_launch) -> None:
    """``export LOCAL_RANK=$SLURM_LOCALID`` before ``srun --ntasks-per-node 8``: the batch
    script's own 0 in every task, read before srun's own SLURM_LOCALID, so all took cuda:0
    (NCCL's 'Duplicate GPU detected' later, a traceback). A GPU bound to each task, torchrun's
    own local ranks and agreeing values go on."""
    _gpus(bare_launch, 8)
    bare_launch.setenv("LOCAL_RANK", "0")
    bare_launch.setenv("SLURM_LOCALID", "3")
    with pytest.raises(ConfigError) as info:
        rank_device(8)
    assert str(info.value) == (
        "LOCAL_RANK is 0 but the launcher says 3 (SLURM_LOCALID): LOCAL_RANK was set once for "
        "every process (exported before the launch), so each would take cuda:0; set it in each "
        "(LOCAL_RANK=$SLURM_LOCALID), or leave it unset: SLURM_LOCALID is read"
    )
    bare_launch.delenv("LOCAL_RANK")
    assert rank_device(8) == torch.device("cuda", 3)
    bare_launch.setenv("LOCAL_RANK", "0")
    bare_launch.setenv("TORCHELASTIC_RUN_ID", "job")  # torchrun's processes in one srun task
    assert rank_device(8) == torch.device("cuda", 0)
    bare_launch.delenv("TORCHELASTIC_RUN_ID")
    bare_launch.setenv("CUDA_VISIBLE_DEVICES", "3")  # srun --gpus-per-task 1
    _gpus(bare_launch, 1)
    assert rank_device(8) == torch.device("cuda", 0)
