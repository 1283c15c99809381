"""Under torchrun one process a node tokenizes; the others wait for its word and read its cache.

Two ranks are two threads sharing torch's in-process store (no torchrun launch, no process
group): what a process group's store does between processes.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import torch.distributed as dist
from tiny import SENTIMENT_PAIRS, build_tokenizer, tiny_config, write_jsonl

from directpo import node_tokenizing
from directpo.data import load_preferences
from directpo.distributed import SINGLE_PROCESS, error_key
from directpo.errors import DataError, DirectpoError, TrainingStopped
from directpo.node_tokenizing import Turn, leading, node_turn, wait_for_leader
from directpo.refusals import RowsRefused
from directpo.run_tokenizing import tokenize_set
from directpo.tokenization import tokenize_preferences

BAD_ROW = "p.jsonl: line 3: the chat template refused the row (tools)"


def _ranks(work, store) -> dict[str, object]:
    """``work(turn)`` on rank 1 (started first: it must wait) and rank 0, each in a thread;
    what each returned or raised. A rank that waits for good fails the test, never hangs it."""
    results: dict[str, object] = {}

    def rank(number: int) -> None:
        try:
            results[str(number)] = work(Turn(store, number, leader=0, run=3))
        except BaseException as exc:  # (the test reads it)
            results[str(number)] = exc

    threads = [threading.Thread(target=rank, args=(n,), name=f"rank{n}") for n in (1, 0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads), "a rank still waits"
    return results


def _counting(monkeypatch, fail_on_leader: bool = False) -> Counter:
    """Real tokenizations counted by rank (the leader's refused, if asked)."""
    calls: Counter = Counter()

    def counted(*args, **kwargs):
        me = threading.current_thread().name
        calls[me] += 1
        if fail_on_leader and me == "rank0":
            raise RowsRefused(BAD_ROW, "p.jsonl", "line 3", 1)
        return tokenize_preferences(*args, **kwargs)

    monkeypatch.setattr("directpo.run_tokenizing.tokenize_preferences", counted)
    return calls


def _ids(pairs) -> list:
    return [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in pairs.pairs]


def test_the_nodes_first_process_tokenizes_and_the_others_read_its_cache(tmp_path, monkeypatch):
    """Every rank tokenized the whole file (8 processes: 8x the CPU time and peak memory);
    the first tokenizes and caches, rank 1 waits for it and reads the same ids."""
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    config = tiny_config(tmp_path, None, tmp_path / "out")
    calls = _counting(monkeypatch)
    run = lambda turn: tokenize_set(data, tokenizer, config, "train", print, turn=turn)  # noqa: E731
    results = _ranks(run, dist.HashStore())
    assert calls == Counter(rank0=1)  # rank 1 tokenized nothing
    assert _ids(results["1"]) == _ids(results["0"]) and results["1"].sources == data_sources(data)
    # a cache its leader could not write (a full disk): rank 1 tokenizes itself
    monkeypatch.setattr("directpo.token_cache._write", lambda *args: "No space left on device")
    calls.clear()
    other = tiny_config(tmp_path, None, tmp_path / "out", max_length=64)
    run = lambda turn: tokenize_set(data, tokenizer, other, "train", print, turn=turn)  # noqa: E731
    results = _ranks(run, dist.HashStore())
    assert calls == Counter(rank0=1, rank1=1)
    assert _ids(results["1"]) == _ids(results["0"])


def data_sources(data) -> list[str]:
    return [example.where for example in data.examples]


def test_a_row_the_leader_refuses_stops_every_rank_with_its_error(tmp_path, monkeypatch):
    """A bad row met by the tokenizing rank is every waiting rank's error, the same one
    (settle then says it once), raised at once: never a rank left waiting."""
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    config = tiny_config(tmp_path, None, tmp_path / "out")
    calls = _counting(monkeypatch, fail_on_leader=True)
    run = lambda turn: tokenize_set(data, tokenizer, config, "train", print, turn=turn)  # noqa: E731
    results = _ranks(run, dist.HashStore())
    assert calls == Counter(rank0=1)
    for rank in ("0", "1"):
        assert isinstance(results[rank], RowsRefused) and str(results[rank]) == BAD_ROW
    assert results["1"].first == "line 3"  # (said once beside the eval file's same row)


def test_a_leader_stopped_or_crashed_is_said_by_the_waiting_ranks(monkeypatch) -> None:
    """The leader stopped before tokenizing (its own error, left by settle), crashed in
    tokenizing (a traceback of its own), or its store is gone: the waiting rank stops too."""
    monkeypatch.setattr(node_tokenizing, "POLL_S", 0.01)
    store = dist.HashStore()
    waiting = Turn(store, rank=1, leader=0, run=3)
    store.set(error_key(3, 0), "output_dir out: in use by another run")
    with pytest.raises(DirectpoError, match="in use by another run") as stopped:
        wait_for_leader(waiting, "train")
    assert stopped.value.rank is None  # rank 0's plain line: said once

    store = dist.HashStore()
    waiting, leader = Turn(store, 9, leader=8), Turn(store, 8, leader=8)
    with pytest.raises(KeyError), leading(leader, "eval"):
        raise KeyError("a bug")
    with pytest.raises(TrainingStopped, match="rank 8, which tokenizes"):
        wait_for_leader(waiting, "eval")

    class Gone:
        def check(self, keys):
            raise RuntimeError("Connection reset by peer")

    with pytest.raises(TrainingStopped, match="rank 0, which tokenizes"):
        wait_for_leader(Turn(Gone(), 1, leader=0), "train")
    # a refusal whose class does not pickle back as it is goes as its text, of its kind
    with pytest.raises(DataError), leading(leader, "train"):
        raise Unpicklable("p.jsonl: line 2: prompt missing", "extra")
    with pytest.raises(DataError, match="line 2: prompt missing"):
        wait_for_leader(waiting, "train")


class Unpicklable(DataError):
    def __init__(self, message: str, other: str):
        super().__init__(message)


def test_one_process_has_no_turn_and_the_leader_does_not_wait() -> None:
    assert node_turn(SINGLE_PROCESS) is None
    wait_for_leader(None, "train")  # returns at once
    wait_for_leader(Turn(dist.HashStore(), 0, leader=0), "train")


def test_ranks_tokenizing_at_once_share_dataset_num_proc(tmp_path, monkeypatch) -> None:
    """Without the cache (cache_tokenized: false, or rows with images) every rank of a node
    tokenizes, and each forked dataset_num_proc processes: 8 ranks x 8 ran 64, each holding
    the rows, on a node asked for 8. Such a rank takes its share (LOCAL_WORLD_SIZE of them);
    the leader whose cache the others read keeps the whole count, as one process does."""
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    asked: dict[str, int | None] = {}

    def recorded(*args, num_proc=None, **kwargs):  # (one process here: ranks are threads)
        asked[threading.current_thread().name] = num_proc
        return tokenize_preferences(*args, **kwargs)

    monkeypatch.setattr("directpo.run_tokenizing.tokenize_preferences", recorded)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    for cache, expected in ((False, {"rank0": 2, "rank1": 2}), (True, {"rank0": 4})):
        config = tiny_config(tmp_path, None, tmp_path / "out", dataset_num_proc=4,
                             cache_tokenized=cache, max_length=40 + cache)  # fmt: skip
        run = lambda turn: tokenize_set(data, tokenizer, config, "train", print, turn=turn)  # noqa: E731,B023
        asked.clear()
        _ranks(run, dist.HashStore())
        assert asked == expected
    config = tiny_config(tmp_path, None, tmp_path / "o", dataset_num_proc=4, cache_tokenized=False)
    alone = tokenize_set(data, tokenizer, config, "train", print, turn=None)  # one process
    assert asked["MainThread"] == 4 and alone.pairs
