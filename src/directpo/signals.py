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
elsewhere the CLI ends in one line. stderr's pipe (``2>&1 | head``) is stdout's: the progress
bar's BrokenPipeError, or a poll after each step, stops the run the same way.
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
from typing import TextIO, cast

from directpo.launchers import first_rank, under_launcher


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
        launched = under_launcher()
        if self.requested is not None and signum == signal.SIGINT:
            if launched:
                return  # the launcher's forwarded copy of the same Ctrl-C
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        ctrl_c_again = signum == signal.SIGINT and not launched
        again = " (Ctrl-C again to stop at once)" if ctrl_c_again else ""
        if first_rank():  # one line, not one per rank (each got it)
            print(
                f"\ndirectpo: {self.requested}: {self.doing}{again}",
                file=sys.stderr,
                flush=True,
            )


def exit_code_of(signal_name: str) -> int:
    """A run stopped by ``signal_name`` exits 128 + its number (130 for SIGINT, 143 for
    SIGTERM), as the shell reports a process the signal ended: not 0, the run did not finish."""
    return 128 + signal.Signals[signal_name].value


class Terminated(BaseException):
    """SIGTERM outside the training loop; not an Exception, so that no ``except Exception``
    takes it for a failure of the code it interrupts (as KeyboardInterrupt)."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def interrupts_raise() -> None:
    """Ctrl-C raises KeyboardInterrupt again (``main`` says it, a run saves on one) where the
    quiet exit ``import directpo`` set for the command's first moments is still in place."""
    import directpo

    if signal.getsignal(signal.SIGINT) is directpo._quiet_interrupt:
        with contextlib.suppress(ValueError):  # (main called from another thread: none set)
            signal.signal(signal.SIGINT, signal.default_int_handler)


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


def closed_pipe_behind(error: BaseException) -> bool:
    """Did ``error`` come of a closed output pipe? A library's progress bar drawn on stderr
    (``2>&1 | head``: a model's load) raised BrokenPipeError, which the load's own error took
    in (``cannot load as a causal LM ([Errno 32] Broken pipe)``), said to no one: exit 1."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, BrokenPipeError):
            return output_closed()
        seen = seen.__cause__ or seen.__context__
    return False


class KeptLines:
    """``echo`` (print) whose stdout's reader may go away: its lines are then said on stderr,
    and ``closed`` tells the training loop to stop after its step, with its checkpoint.
    ``gone``: the reader of stdout or of stderr went away (``2>&1 | head``)."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo, self.closed, self.gone = echo, False, False

    def reader_gone(self) -> bool:
        """Is either output's reader gone? Polled as well: a closed stderr raises only at the
        next thing drawn there (the bar, the checkpoint's own bar), which ended the run with
        its steps unsaved; found here, the stream is sent nowhere first (``output_closed``).
        Polled only where the process's own streams are written (a notebook's are not: its
        kernel's descriptors are no output of the run's)."""
        own = sys.stdout is sys.__stdout__ or sys.stderr is sys.__stderr__
        self.gone = self.gone or self.closed or (own and output_closed())
        return self.gone

    def guarded(self, stream: TextIO) -> TextIO:
        """``stream`` (a progress bar's) whose closed pipe marks ``gone`` instead of raising.
        Only the process's own streams: a notebook's (tqdm draws a widget for it alone) or a
        caller's replacement is left as it is."""
        if stream is not sys.__stderr__ and stream is not sys.__stdout__:
            return stream
        return cast(TextIO, _Guarded(stream, self))

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


class _Guarded:
    """A stream's writes, a closed pipe's BrokenPipeError taken as ``lines.gone``."""

    def __init__(self, stream: TextIO, lines: KeptLines) -> None:
        self.stream, self.lines = stream, lines

    def write(self, text: str) -> int:
        self._kept(lambda: self.stream.write(text))
        return len(text)

    def flush(self) -> None:
        self._kept(self.stream.flush)

    def _kept(self, act: Callable[[], object]) -> None:
        try:
            act()
        except BrokenPipeError:
            if not output_closed():
                raise  # another pipe's (a socket's): a failure of its own
            self.lines.gone = True

    def __getattr__(self, name: str) -> object:  # fileno, isatty, encoding: the stream's
        return getattr(self.stream, name)

    def __eq__(self, other: object) -> bool:  # (tqdm clears a bar drawn on the stream it is)
        return bool(self.stream == getattr(other, "stream", other))

    def __hash__(self) -> int:
        return hash(self.stream)
