"""Run under torchrun by tests/test_distributed.py: ``directpo`` (the CLI) with a fault injected
on one rank only, as a full disk or an out-of-memory error strikes one process of a real job.

``DIRECTPO_TEST_FAULT`` names the fault, ``DIRECTPO_TEST_FAULT_RANK`` the rank (default 0; ``all``:
every rank):
``final_config``: writing config.json into the final folder fails with ENOSPC;
``oom``: the second training forward raises CUDA's out-of-memory error;
``data``: the training file cannot be read (a path that exists on one node only);
``missing``: the training file is not there at all (its node's disk lacks it);
``rank_draws`` (not a fault): each micro-batch, rank N draws N + 1 numbers from Python's,
NumPy's and torch's generators, as dropout on each rank's own pairs does, so that the ranks'
random streams part (the run's weights do not depend on them).

Several runs in one launch (a launch's start-up, torch and transformers imported by every
process, is most of its time): ``fault_worker.py train a.yaml train b.yaml`` runs each in turn
in the same processes, stopping at the first that fails (its exit code); rank 0 writes
``RUN_MARK`` and the run's index on stdout and stderr before each, where the test splits them.
Their process group is made once, here, and each run joins it as a caller's group (the path
CI's multi-run launches test; runs that each make their own group in one torchrun process are
test_a_second_run_in_one_torchrun_process_makes_its_own_group's)."""

from __future__ import annotations

import atexit
import errno
import os
import random
import sys

import numpy as np
import torch
import transformers

from directpo.__main__ import run
from directpo.cli import main
from directpo.errors import DataError
from directpo.outputs import FINAL_STAGING


def _final_config_fails() -> None:
    real = transformers.PretrainedConfig.save_pretrained

    def save(self, folder, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if FINAL_STAGING in str(folder):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, folder, *args, **kwargs)

    transformers.PretrainedConfig.save_pretrained = save


def _second_step_out_of_memory() -> None:
    import directpo.trainer as trainer

    real, calls = trainer.pair_losses, []

    def pair_losses(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(*args, **kwargs)

    trainer.pair_losses = pair_losses


def _data_missing_here() -> None:
    import directpo.run as run

    def load_data(config, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise DataError(f"{config.train_file}: no such file (on this node only)")

    run.load_run_data = load_data


def _train_file_missing_here() -> None:
    import directpo.preflight as preflight

    real = os.path.exists
    preflight.os.path.exists = lambda path: real(path) and not str(path).endswith(".jsonl")


def _rank_draws() -> None:
    import directpo.trainer as trainer

    real, count = trainer.pair_losses, int(os.environ["RANK"]) + 1

    def pair_losses(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        random.sample(range(10), count)
        np.random.rand(count)
        torch.rand(count)
        return real(*args, **kwargs)

    trainer.pair_losses = pair_losses


RUN_MARK = "fault_worker: run "


def say_run(index: int) -> None:
    if os.environ["RANK"] == "0":
        for stream in (sys.stdout, sys.stderr):
            print(f"{RUN_MARK}{index}", file=stream, flush=True)


FAULTS = {
    "final_config": _final_config_fails,
    "oom": _second_step_out_of_memory,
    "data": _data_missing_here,
    "missing": _train_file_missing_here,
    "rank_draws": _rank_draws,
}

if __name__ == "__main__":
    where = os.environ.get("DIRECTPO_TEST_FAULT_RANK", "0")
    if "DIRECTPO_TEST_FAULT" in os.environ and where in (os.environ["RANK"], "all"):
        FAULTS[os.environ["DIRECTPO_TEST_FAULT"]]()
    if where not in ("0", "all"):
        # a fault of one rank other than 0: rank 0 never leaves an error in the store, so the
        # failed rank's look for it (failures.settle) always ran its full 5 s; what is tested
        # is that this rank then says its own line, not how long it looks
        import directpo.failures

        directpo.failures.OWN_ERROR_WAIT_S = 0.5
    starts = [index for index, token in enumerate(sys.argv) if token == "train"]
    ends = [*starts[1:], len(sys.argv)]
    *earlier, last = [sys.argv[a:b] for a, b in zip(starts, ends, strict=True)]
    if earlier:
        torch.distributed.init_process_group(backend="gloo")
    for index, command in enumerate(earlier):
        say_run(index)
        if code := main(command):
            sys.exit(code)
    if earlier:
        say_run(len(earlier))
        atexit.register(torch.distributed.destroy_process_group)
    sys.argv[1:] = last
    run()  # (main reads sys.argv[1:])
