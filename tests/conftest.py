from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl

STYLES = ("llama", "gpt2")


MAX_TEST_WORKERS = 4  # each worker loads torch and transformers (about 1 GB)


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, bounded by a cgroup v2 CPU quota (a
    container limited to 2 CPUs on a 64-core host reports 64 to nproc and to os.cpu_count)."""
    cores = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(quota) // int(period)))
    return cores


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`make test` runs `pytest -n auto`: one worker per usable core, at most four."""
    return min(usable_cores(), MAX_TEST_WORKERS)


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist each worker gets an equal share of the cores, as do the processes it
    starts (torchrun ranks, CLI runs): torch's default of every core per process would have the
    workers' threads fight over the cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        threads = max(1, usable_cores() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {style: save_tiny_model(style, root / style) for style in STYLES}


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)


@pytest.fixture(autouse=True)
def _hub_offline_flags_kept():
    """A test that finds the hub unreachable sets the libraries' offline mode for the process
    (directpo.hub): given back after each test, so that no test sees another's."""
    from directpo.hub import offline_flags_kept

    with offline_flags_kept():
        yield


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test its own DIRECTPO_CACHE (tokenized pairs, reference log-probs): none writes to
    the user's, and none reads what another test cached (a test that counts tokenizer calls
    would see none)."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path_factory.mktemp("directpo-cache")))
