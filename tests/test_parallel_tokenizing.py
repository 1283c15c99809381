"""dataset_num_proc: a pool of processes tokenizes the pairs, the same ids as one process."""

from __future__ import annotations

import os
import pickle
import threading
from collections import Counter

import pytest
from test_tokenization import STRICT_TEMPLATE
from tiny import build_tokenizer, tiny_config

from directpo import parallel_tokenizing
from directpo.data import PreferenceData, PreferenceExample
from directpo.errors import ConfigError, DataError
from directpo.tokenization import TOKENIZE_BATCH, tokenize_preferences

pytestmark = pytest.mark.skipif(not parallel_tokenizing.can_fork(), reason="no fork here")


def _rows(count: int, refused_every: int = 0) -> PreferenceData:
    """Conversations of several lengths; every ``refused_every``-th one opens with a system
    turn, which STRICT_TEMPLATE refuses."""
    examples = []
    for i in range(count):
        prompt = [{"role": "user", "content": f"Row {i}: say something {'long ' * (i % 37)}"}]
        if refused_every and i % refused_every == 5:
            prompt.insert(0, {"role": "system", "content": "Be brief."})
        chosen = [{"role": "assistant", "content": f"Yes {i} " + "fine " * (i % 23)}]
        rejected = [{"role": "assistant", "content": f"No {i}"}]
        examples.append(PreferenceExample(prompt, chosen, rejected, f"f.jsonl: line {i + 1}"))
    return PreferenceData(examples, "conversational", "f.jsonl")


def _ids(result) -> list:
    return [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in result.pairs]


REAL_ENCODE_SPAN = parallel_tokenizing._encode_span


def _recorded(span: tuple[int, int]) -> bytes:
    """A worker's batch with its process id among the counts (a module function: pickled)."""
    pairs, cuts = pickle.loads(REAL_ENCODE_SPAN(span))
    cuts[f"pid {os.getpid()}"] += 1
    return pickle.dumps((pairs, cuts))


def test_dataset_num_proc_tokenizes_in_processes_to_the_same_ids_in_order(monkeypatch) -> None:
    """TRL's dataset_num_proc was accepted and did nothing; 2 processes now tokenize the
    batches (some in each: counted), and pairs, order, places, truncations, skipped and
    refused rows are one process's."""
    tokenizer = build_tokenizer("llama")
    tokenizer.chat_template = STRICT_TEMPLATE
    data = _rows(5 * TOKENIZE_BATCH + 17, refused_every=97)
    options = {"max_length": 40, "skip_invalid_rows": True}
    one = tokenize_preferences(data, tokenizer, **options)
    monkeypatch.setattr(parallel_tokenizing, "_encode_span", _recorded)
    two = tokenize_preferences(data, tokenizer, **options, num_proc=2)
    pids = {key for key in two.truncated if key.startswith("pid ")}
    assert len(pids) == 2  # both processes tokenized batches
    for key in pids:
        del two.truncated[key]
    assert _ids(two) == _ids(one) and two.sources == one.sources
    assert two.truncated == one.truncated and one.truncated["chosen"] > 0
    assert two.skipped == one.skipped == {"refused by the chat template": 7}
    with pytest.raises(DataError) as alone:
        tokenize_preferences(data, tokenizer, 40)
    with pytest.raises(DataError) as pooled:
        tokenize_preferences(data, tokenizer, 40, num_proc=3)
    assert str(pooled.value) == str(alone.value) and "line 6" in str(alone.value)


def test_an_error_raised_in_a_worker_reaches_the_parent(monkeypatch) -> None:
    """A refusal raised (not returned) in a worker, of a class that does not pickle back, is
    the parent's error, not a pool waiting for good."""

    class Refusal(DataError):
        def __init__(self, message: str, extra: int):
            super().__init__(message)

    def refuse(self, examples, truncated):
        raise Refusal("f.jsonl: the template does not compile", 1)

    monkeypatch.setattr("directpo.tokenization.PairTokenizer.encode_many", refuse)
    with pytest.raises(DataError, match="does not compile"):
        tokenize_preferences(_rows(3 * TOKENIZE_BATCH), build_tokenizer("gpt2"), 64, num_proc=2)


def _killed(span: tuple[int, int]) -> bytes:
    os._exit(137)  # as the kernel's OOM killer ends a process


def test_a_tokenizing_process_killed_stops_the_run_in_one_line(monkeypatch) -> None:
    """A worker that dies (out of host memory) is a one-line error naming the option, never
    a parent waiting for its batch for good (multiprocessing.Pool's)."""
    monkeypatch.setattr(parallel_tokenizing, "_encode_span", _killed)
    with pytest.raises(ConfigError, match="^dataset_num_proc: 2: a tokenizing process ended"):
        tokenize_preferences(_rows(3 * TOKENIZE_BATCH), build_tokenizer("gpt2"), 64, num_proc=2)


class _ThreadNoting:
    """An encoder that counts the examples it encoded on the main thread and on another."""

    def encode_many(self, examples: list, cuts) -> list:
        main = threading.current_thread() is threading.main_thread()
        cuts["main thread" if main else "own thread"] += len(examples)
        return [example * 2 for example in examples]


@pytest.mark.parametrize("num_proc", [None, 2])
def test_batches_are_encoded_off_the_main_thread(num_proc) -> None:
    """The main thread's malloc arena holds the rows read: there, past ~20k rows, the tokenizer
    took 1.6-2x the CPU of another thread's arena (a worker of dataset_num_proc encoded there
    and spent 1.7-2.4x one process's CPU). Every batch is now encoded on a thread of its own,
    in one process and in each worker, with the same results in order."""
    examples = list(range(5 * 128 + 3))
    batches = list(parallel_tokenizing.encoded_batches(_ThreadNoting(), examples, 128, num_proc))
    assert [x for batch, _, _ in batches for x in batch] == examples
    assert [y for _, pairs, _ in batches for y in pairs] == [2 * x for x in examples]
    cuts = sum((cut for _, _, cut in batches), Counter())
    assert cuts == {"own thread": len(examples)}


def test_dataset_num_proc_is_an_option_checked(tmp_path) -> None:
    assert tiny_config(tmp_path, None, tmp_path / "o", dataset_num_proc=4).dataset_num_proc == 4
    with pytest.raises(Exception, match="dataset_num_proc"):
        tiny_config(tmp_path, None, tmp_path / "o", dataset_num_proc=0)
