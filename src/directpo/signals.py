"""Preemption and Ctrl-C: finish the current optimizer step, save a checkpoint, exit cleanly.

The first SIGTERM or SIGINT only sets a flag that the training loop reads after each step; a
second SIGINT stops at once (losing only the step in progress). Handlers are installed only in
the main thread and restored on exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType


class StopRequest:
    def __init__(self) -> None:
        self.requested: str | None = None
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
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        again = " (Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
        print(
            f"\ndirectpo: {self.requested}: finishing this step, then saving a checkpoint{again}",
            file=sys.stderr,
            flush=True,
        )
