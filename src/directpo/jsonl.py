"""Writing JSONL outputs atomically: a failed run never leaves a half-written file.

Rows are written to a temporary file beside the target, then renamed over it: the target is
either the old file or the complete new one. On any failure the temporary file is removed and
the problem is a one-line ``DataError`` naming the output. Values JSON has no type for, as a
Parquet file or a datasets folder may hold, are written as their nearest JSON form (dates and
times in ISO 8601, bytes in base64, NumPy scalars and arrays as numbers and lists).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from directpo.errors import DataError


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
