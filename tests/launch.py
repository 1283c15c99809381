"""torchrun launches for the tests: ``directpo train`` on two processes (gloo, CPU), a fault
injected on one rank (tests/fault_worker.py), several runs in one launch."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fault_worker import RUN_MARK

# torchrun (python -m torch.distributed.run) without the interpreter's final collections of
# its heap (torch's: seconds on a busy machine, after its workers ended), as directpo's command
TORCHRUN = [
    sys.executable,
    "-c",
    "import gc\nfrom torch.distributed.run import main\ntry:\n    main()\nfinally:\n"
    "    gc.freeze()\n",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(
    config_file: Path | list[Path],
    processes: int = 2,
    launcher: str = "torchrun",
    fault: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``directpo train config_file`` on ``processes`` processes; ``fault``: the environment
    of tests/fault_worker.py, which injects a fault on one rank. Several config files: their
    runs in turn in the one launch (fault_worker), stopping at the first that fails. A launch
    still going after ``timeout`` seconds fails the test as a hang."""
    if launcher == "accelerate":  # sets the same variables (WORLD_SIZE, RANK, ...) as torchrun
        start = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
        start += ["--num_machines=1", "--mixed_precision=no", "--dynamo_backend=no"]
        start += [f"--num_processes={processes}", f"--main_process_port={free_port()}"]
    else:
        start = [*TORCHRUN, f"--nproc_per_node={processes}"]
        start += [f"--master_port={free_port()}"]
    files = config_file if isinstance(config_file, list) else [config_file]
    worker = fault or len(files) > 1
    program = [str(Path(__file__).with_name("fault_worker.py"))] if worker else ["-m", "directpo"]
    command = [*start, *program, *(word for file in files for word in ("train", str(file)))]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(fault or {})}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torchrun passes SIGTERM on to its workers (each in a session of its own) and
            # kills those still running 30 s later
            process.terminate()
            out, err = process.communicate()
            pytest.fail(f"torchrun hung for {timeout:.0f} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def each_run(done: subprocess.CompletedProcess, count: int) -> list[subprocess.CompletedProcess]:
    """The output of each of the ``count`` runs of one launch (tests/fault_worker.py's
    RUN_MARK lines part them)."""
    if count == 1:
        return [done]
    mark = re.compile(rf"^{RUN_MARK}\d+\n", re.MULTILINE)
    outs, errs = (mark.split(text)[1:] for text in (done.stdout, done.stderr))
    assert len(outs) == len(errs) == count, done.stdout[-3000:]
    return [
        subprocess.CompletedProcess(done.args, done.returncode, out, err)
        for out, err in zip(outs, errs, strict=True)
    ]
