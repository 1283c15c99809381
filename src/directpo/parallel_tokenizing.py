"""``dataset_num_proc``: a file's pairs tokenized by a pool of processes, batch by batch, in order.

Tokenizing is about a third rendering chat templates (Jinja, in Python: one core whatever the
tokenizer) and half the tokenizer; TRL's option was accepted and did nothing. The batches of
``TOKENIZE_BATCH`` pairs go to ``num_proc`` forked processes, each holding the run's encoder and
rows as they were at the fork (nothing pickled but each batch's span and its pairs coming back),
and come back in their order: the pairs, the refused rows and the truncation counts are those of
one process, to the bit (the same encoder on the same rows). Where ``fork`` is not there
(Windows; macOS's default is spawn, fork is kept) one process tokenizes.

Every batch is encoded on a thread of its own (``_encoding_thread``), not the main thread: glibc
gives each thread its own malloc arena, and the main thread's arena holds the rows read (their
longer texts are malloc'd). Past some 20k rows the tokenizer's many small allocations there
took 1.6-2x the CPU of the same texts encoded on another thread (docs/performance.md); in one
process the tokenizer's own threads had hidden it, while a worker, tokenizing on one thread,
paid it in full: the workers' CPU of 1.7-2.4x one process's.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import traceback
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from directpo.callers import in_callers_context, said, spell_change
from directpo.errors import ConfigError, DirectpoError, pickled_error

TASKS_PER_CALL = 4  # batches a process is handed at a time (fewer round trips)

# the encoder and rows of the tokenizing in progress, inherited by the forked processes
_JOB: tuple[Any, list[Any]] | None = None
# a worker's encoding thread, with the process it was started in
_ENCODER: tuple[int, ThreadPoolExecutor] | None = None


def encoded_batches(
    encoder: Any, examples: list[Any], batch: int, num_proc: int | None
) -> Iterator[tuple[list[Any], list[Any], Counter[str]]]:
    """Each batch of ``batch`` examples with ``encoder.encode_many``'s results and the
    truncations it counted, in order; by ``num_proc`` processes when more than one."""
    spans = [(start, min(start + batch, len(examples))) for start in range(0, len(examples), batch)]
    if not num_proc or num_proc <= 1 or len(spans) <= 1 or not can_fork():
        # (a thread for this call only: none is left running when a process forks later)
        with ThreadPoolExecutor(1, thread_name_prefix="directpo-encode") as thread:
            for start, stop in spans:
                cuts: Counter[str] = Counter()
                batch = examples[start:stop]
                encode = in_callers_context(encoder.encode_many)  # (its messages' words)
                yield batch, thread.submit(encode, batch, cuts).result(), cuts
        return
    global _JOB
    _JOB = (encoder, examples)
    # each worker encodes on one thread (num_proc processes, not num_proc x cores), and
    # tokenizers' warning of a fork after its threads ran is not printed in each
    unset = "TOKENIZERS_PARALLELISM" not in os.environ
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    context = multiprocessing.get_context("fork")
    # (concurrent.futures': a worker killed, by the kernel's OOM killer say, breaks the pool,
    # where multiprocessing.Pool would wait for its batch for good)
    pool = ProcessPoolExecutor(min(num_proc, len(spans)), mp_context=context)
    try:
        results = pool.map(_encode_span, spans, chunksize=TASKS_PER_CALL)
        for (start, stop), payload in zip(spans, results, strict=True):
            outcome = pickle.loads(payload)  # (here: one that fails raises, never hangs)
            if isinstance(outcome, BaseException):  # the error that stopped the worker
                raise outcome
            pairs, cuts = outcome
            yield examples[start:stop], pairs, cuts
    except BrokenProcessPool as exc:
        raise ConfigError(
            f"{said('dataset_num_proc', num_proc)}: a tokenizing process ended abruptly ({exc}; "
            f"out of host memory?): {spell_change('lower', 'dataset_num_proc')}, or leave it "
            "unset (one process)"
        ) from None
    finally:
        pool.shutdown(cancel_futures=True)
        _JOB = None
        if unset:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)


def _encoding_thread() -> ThreadPoolExecutor:
    """A worker's thread that encodes its batches, off the main thread's malloc arena (the
    module's docstring); made in the worker (threads do not survive a fork)."""
    global _ENCODER
    if _ENCODER is None or _ENCODER[0] != os.getpid():
        _ENCODER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="directpo-encode"))
    return _ENCODER[1]


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def _encode_span(span: tuple[int, int]) -> bytes:
    """One batch's results and truncations in a worker, or the error that stopped it, pickled
    here: the pool's result thread unpickles what it is sent, and one that does not load
    there (a refused row's error of other constructor arguments) left it dead and the parent
    waiting for good."""
    assert _JOB is not None
    encoder, examples = _JOB
    cuts: Counter[str] = Counter()
    try:
        batch = examples[span[0] : span[1]]
        encode = in_callers_context(encoder.encode_many)  # (the fork kept the caller's)
        encoded = _encoding_thread().submit(encode, batch, cuts).result()
        return pickle.dumps((encoded, cuts))
    except DirectpoError as error:
        return pickled_error(error)
    except Exception:  # a bug (or a result that does not pickle): its traceback in the parent
        return pickle.dumps(RuntimeError(traceback.format_exc()))
