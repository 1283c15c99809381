"""Writing JSONL outputs atomically: a failed run never leaves a half-written file.

Rows are written to a temporary file beside the target, then renamed over it: the target is
either the old file or the complete new one. On any failure the temporary file is removed and
the problem is a one-line ``DataError`` naming the output. Values JSON has no type for, as a
Parquet file or a datasets folder may hold, are written as their nearest JSON form (dates and
times in ISO 8601, bytes in base64, NumPy scalars and arrays as numbers and lists).

``StagedJsonl`` writes a long command's output (score, rank, generate) as it goes, into a
hidden staging file renamed over the target at the end: the target is still old-or-complete,
and a run stopped part way keeps what it wrote for the same command to continue from.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from directpo.callers import spell_change
from directpo.errors import ConfigError, DataError, memory_kind
from directpo.folders import missing_folders, remove_empty
from directpo.signals import Terminated


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to ``path`` via a temporary file and a rename; return how many."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(_line(row, target, count + 1))
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
        raise
    return count


class StagedJsonl:
    """Rows appended a chunk at a time to ``.NAME.KEY.partial`` beside ``path``, renamed over
    ``path`` by ``commit``. ``key`` names the options the rows were made with: a staging file
    of the same key, left by a run that stopped (Ctrl-C, a crash, a killed process), is
    continued; one of another key is discarded. ``resumed(row, added)`` gives back, in order,
    each staged row while the input's rows are those it was made from (``row`` plus the fields
    ``added``); from the first that is not (or a line cut short) on, the staging
    file is cut there and new rows follow. Used as a context manager: on an error (or without
    ``commit``) the rows written so far are kept (flushed to disk), and a Ctrl-C or SIGTERM
    says where, in one line."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.target = Path(path)
        self.staging = self.target.with_name(f".{self.target.name}.{key}.partial")
        self.written = 0  # rows in the staging file, resumed ones included
        self.resumed_rows = 0
        self._resuming = True
        self._kept = 0  # where the rows resumed so far end, in bytes
        self._made = missing_folders(self.target.parent)  # removed again if nothing is kept
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot make the folder {self.target.parent}: {exc.strerror or exc}"
            ) from None
        for stale in self.target.parent.glob(f".{self.target.name}.*.partial"):
            if stale != self.staging and not _locked(stale):  # other options': not continued
                with contextlib.suppress(OSError):
                    stale.unlink()
        try:
            self._handle = self.staging.open("a+b")  # appends; read back from the start
        except OSError as exc:
            remove_empty(self._made)
            raise DataError(f"cannot write {self.staging}: {exc.strerror or exc}") from None
        self._lock()
        self._handle.seek(0)

    def _lock(self) -> None:
        if not _try_lock(self._handle):
            self._handle.close()
            raise ConfigError(
                f"output: another process is writing {self.target} (it holds {self.staging})"
            ) from None

    def resumed(self, row: dict[str, Any], added: Collection[str]) -> dict[str, Any] | None:
        """The staged row made from ``row`` (its fields, and the ``added`` ones its output
        gains), or None: ``row`` is to be written anew."""
        if not self._resuming:
            return None
        line = self._handle.readline()
        staged = _row_or_none(line) if line.endswith(b"\n") else None
        if (
            staged is None
            or not set(added) <= set(staged)
            or _fields(staged, added)
            != _fields(json.loads(_line(row, self.target, self.written + 1)), added)
        ):
            self._stop_resuming()
            return None
        self._kept = self._handle.tell()
        self.written += 1
        self.resumed_rows += 1
        return staged

    def resumed_note(self) -> str:
        """`` (N of them from an earlier run that stopped)`` for the command's last line."""
        if not self.resumed_rows:
            return ""
        return f" ({self.resumed_rows} of them from an earlier run that stopped)"

    def _stop_resuming(self) -> None:
        if self._resuming:
            self._resuming = False
            self._handle.truncate(self._kept)  # what followed was not made from this input
            self._handle.seek(self._kept)

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append ``rows`` and hand them to the OS (a Ctrl-C after this keeps them)."""
        self._stop_resuming()
        try:
            for row in rows:
                self._handle.write(_line(row, self.target, self.written + 1).encode("utf-8"))
                self.written += 1
            self._handle.flush()
        except OSError as exc:
            raise DataError(f"cannot write {self.staging}: {exc.strerror or exc}") from None

    def commit(self) -> None:
        """Rename the complete staging file over the target."""
        self._stop_resuming()  # staged rows past the input's end are not part of it
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            os.replace(self.staging, self.target)
        except OSError as exc:
            raise DataError(f"cannot write {self.target}: {exc.strerror or exc}") from None

    def __enter__(self) -> StagedJsonl:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._handle.closed:  # committed
            return
        with contextlib.suppress(OSError):
            self._handle.flush()
            os.fsync(self._handle.fileno())
        self._handle.close()
        kept = None
        with contextlib.suppress(OSError):
            if self.staging.stat().st_size == 0:  # nothing to continue from
                self.staging.unlink()
                remove_empty(self._made)  # made for this output: no empty folder is left
            else:
                # still resuming: the earlier run's rows, not yet compared with the input, stay
                rows = (
                    "the rows written so far are" if self._resuming else f"{self.written} rows are"
                )
                kept = f"{rows} kept in {self.staging}; the same command continues from there"
        if isinstance(exc, KeyboardInterrupt | Terminated) and kept:  # the cli prints its word
            raise type(exc)(kept) from None
        # out of memory (torch.OutOfMemoryError, the CPU allocator's RuntimeError, MemoryError):
        # not a bug, and the kept rows need not be sampled again with a smaller batch_size
        if memory_kind(exc) is not None:  # (--batch_size was said to Python's score_file too)
            raise ConfigError(
                f"batch_size: out of memory after {self.written} rows; "
                f"{spell_change('lower', 'batch_size')}"
                + (f" ({kept}, another batch_size too)" if kept else "")
            ) from None


# the private attributes a key took before keys left out what is not an option (frozen: a
# partial output written then keeps its key; never add one)
KEYED_PRIVATE_STATE = frozenset(("_problems", "_refused", "_spelled"))


def options_key(options: object, ignored: Collection[str], folders: Iterable[str | None]) -> str:
    """A ``StagedJsonl`` key: what a command's rows depend on besides the input rows, i.e. its
    options (those ``ignored`` left out: the input and output names, ...) and the state of the
    model ``folders`` (retrained there: other rows). A stopped run's partial output is continued
    only by a run of the same key.

    An option is in the key only where it is away from its default: an option added to a
    command in an upgrade (generate's keep_special_tokens was) at its default leaves the key of
    a partial output written before it as it was, and any option set otherwise still changes
    it. The key once took every option, whatever its value; the options it took so
    (``options.KEYED_IN_FULL``, frozen as they were) still go in whatever their value, so a
    partial output written under that scheme keeps its key too."""
    in_full = getattr(options, "KEYED_IN_FULL", frozenset())
    defaults = {f.name: _default(f) for f in dataclasses.fields(options)}  # type: ignore[arg-type]
    chosen = {
        key: value
        for key, value in vars(options).items()
        if key not in ignored
        # (private state: only the object's older, _problems / _refused / _spelled, always in
        # the key and staying so; any kept since is no option: who built it, _built_by, and
        # which source set each option of a config file and flags, _written_by, which made a resume
        # with --batch_size 4 after an out-of-memory stop, or a flag moved into the file,
        # discard the partial output it would have continued)
        and (not key.startswith("_") or key in KEYED_PRIVATE_STATE)
        and (key in in_full or key not in defaults or value != defaults[key])
    }
    chosen["command"] = type(options).__name__
    chosen["models"] = [_folder_state(path) for path in folders]
    text = json.dumps(chosen, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def _default(field: dataclasses.Field[Any]) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _folder_state(path: str | None) -> Any:
    """A model folder's absolute path and its files' modification times; a hub name as given."""
    if path is None or not os.path.isdir(path):
        return path
    times = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(path) if e.is_file())
    return [os.path.abspath(path), times]


def _locked(path: Path) -> bool:
    """A staging file another process is writing now (it holds its lock)."""
    try:
        with path.open("rb") as handle:
            return not _try_lock(handle)
    except OSError:  # gone meanwhile
        return True


def _try_lock(handle: Any) -> bool:
    """Take the file's lock, unless another process holds it (the kernel drops it when the
    holder closes the file or dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _row_or_none(line: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(line)
    except ValueError:  # a line cut short by a killed process, or not UTF-8
        return None
    return row if isinstance(row, dict) else None


def _fields(row: dict[str, Any], added: Collection[str]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in added}


def _line(row: dict[str, Any], target: Path, number: int) -> str:
    try:
        return json.dumps(row, ensure_ascii=False, default=_jsonable) + "\n"
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold, or a cycle
        raise DataError(f"cannot write {target}: row {number}: {exc}") from None


def _jsonable(value: Any) -> Any:
    """The JSON form of a value ``json`` does not know (its ``default`` hook)."""
    if hasattr(value, "isoformat"):  # datetime, date, time, pandas.Timestamp
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, torch tensors
        return value.tolist()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"a value of type {type(value).__name__} cannot be written as JSON")
