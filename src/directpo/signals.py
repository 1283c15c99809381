"""Preemption and Ctrl-C: finish the current optimizer step, save a checkpoint, then exit
128 + the signal (the CLI: 130 / 143, as for a killed process: the run did not finish).

The first SIGTERM or SIGINT only sets a flag that the training loop reads after each step; a
second SIGINT stops at once (losing only the step in progress). Handlers are installed only in
the main thread and restored on exit.

Under a launcher (torchrun, accelerate launch) a Ctrl-C reaches every worker twice: from the
terminal (the whole process group) and again from the launcher, which forwards the signal it
received when it shuts its workers down. A worker that took the two as "Ctrl-C twice" stopped
without its checkpoint whenever the forwarded copy arrived after the first was handled (on a
busy machine); there, a repeated SIGINT is the same request, and stopping at once is the
launcher's business (it kills workers that outlast its shutdown timeout).

Outside the loop (loading, tokenizing, precomputing the reference; the commands other than
train) a SIGTERM raises ``Terminated`` in the CLI, as Ctrl-C raises KeyboardInterrupt: the run's
cleanup (its lock, the empty folder it made, the process group) runs and the CLI says it in a
line and exits 143, where the default action ended the process without a word.

A pipe whose reader exited (``directpo train x.yaml | head -20``, a ``tee`` that was stopped)
is a request to stop too (SIGPIPE, exit 141): Python ignores the signal and raises
BrokenPipeError at the next line printed, which ended the run with a traceback and without its
checkpoint. The loop takes it as SIGTERM's stop, its lines said on stderr from then on;
elsewhere the CLI ends in one line.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType


class StopRequest:
    def __init__(self) -> None:
        self.requested: str | None = None
        self.doing = "finishing this step, then saving a checkpoint"  # what a signal waits for
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        launched = _under_launcher()
        if self.requested is not None and signum == signal.SIGINT:
            if launched:
                return  # the launcher's forwarded copy of the same Ctrl-C
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        ctrl_c_again = signum == signal.SIGINT and not launched
        again = " (Ctrl-C again to stop at once)" if ctrl_c_again else ""
        first = os.environ.get("RANK", "0") == "0" or os.environ.get("WORLD_SIZE", "1") == "1"
        if first:  # one line, not one per rank (each got it)
            print(
                f"\ndirectpo: {self.requested}: {self.doing}{again}",
                file=sys.stderr,
                flush=True,
            )


def exit_code_of(signal_name: str) -> int:
    """A run stopped by ``signal_name`` exits 128 + its number (130 for SIGINT, 143 for
    SIGTERM), as the shell reports a process the signal ended: not 0, the run did not finish."""
    return 128 + signal.Signals[signal_name].value


def _under_launcher() -> bool:
    """Started by torchrun / accelerate launch (which set these for every worker)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


class Terminated(BaseException):
    """SIGTERM outside the training loop; not an Exception, so that no ``except Exception``
    takes it for a failure of the code it interrupts (as KeyboardInterrupt)."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Inside the block (in the main thread), SIGTERM raises ``Terminated``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def output_closed() -> bool:
    """Is stdout or stderr a pipe whose reader is gone (after a BrokenPipeError)? Each such
    stream then writes nowhere: the interpreter's flush of its buffer at exit said 'Exception
    ignored ... BrokenPipeError' and exited 120, and a later line raised again."""
    closed = [stream for stream in (sys.stdout, sys.stderr) if _reader_gone(stream)]
    for stream in closed:
        nowhere = os.open(os.devnull, os.O_WRONLY)
        os.dup2(nowhere, stream.fileno())
        os.close(nowhere)
    return bool(closed)


def _reader_gone(stream: object) -> bool:
    """poll reports POLLERR on the writing end of a pipe whose reading end is closed; a file, a
    terminal or a pipe still read does not."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)  # type: ignore[attr-defined]
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # (no descriptor: a notebook's, a test's)
        return False


class KeptLines:
    """``echo`` (print) whose stdout's reader may go away: its lines are then said on stderr,
    and ``closed`` tells the training loop to stop after its step, with its checkpoint."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo, self.closed = echo, False

    def __call__(self, line: str) -> None:
        if not self.closed:
            try:
                self.echo(line)
                return
            except BrokenPipeError:
                if not output_closed():
                    raise  # another pipe's (a socket's): a failure of its own
                self.closed = True
        print(line, file=sys.stderr)
