"""A staged final folder moved into ``output_dir``, recoverably.

The final folder is written whole into a staging folder, then its entries are renamed into
``output_dir`` one by one. A kill (SIGKILL, power loss) between two renames left
``output_dir`` with some new files and some old or missing ones, and the next run deleted the
staging folder as garbage: the run's model was lost, and the folder loaded as a mix. So the
staging folder is first marked complete (``COMPLETE``, written last and fsynced, listing its
files); a staging folder so marked is finished later (rolled forward) by whoever next opens
``output_dir``, and one without the mark was never complete and is discarded.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

COMPLETE = ".complete"  # in the staging folder: every file written and fsynced; lists them


def publish(staging: Path, folder: Path, earlier: Callable[[Path], list[Path]]) -> None:
    """Mark ``staging`` complete, then move it into ``folder``; ``earlier(folder)``: the files
    an earlier save left there, removed unless the staged folder replaces them."""
    _mark_complete(staging)
    roll_forward(staging, folder, earlier)


def is_complete(staging: Path) -> bool:
    return (staging / COMPLETE).is_file()


def roll_forward(staging: Path, folder: Path, earlier: Callable[[Path], list[Path]]) -> None:
    """Finish moving the complete ``staging`` into ``folder``; run again after an interruption
    at any point, it ends the same: the listed files are never removed from ``folder`` (those
    already moved are the new ones), the others of ``earlier`` are."""
    staged = set(json.loads((staging / COMPLETE).read_text()))
    for path in earlier(folder):
        if path.relative_to(folder).as_posix() not in staged:
            path.unlink(missing_ok=True)
    _move_into(staging, folder, keep=COMPLETE)
    (staging / COMPLETE).unlink()  # last: until now a rerun finishes the move
    staging.rmdir()
    _fsync_folder(folder)


def _mark_complete(staging: Path) -> None:
    """Every file under ``staging`` flushed to disk, then the mark listing them (a mark that
    survives a power loss must not stand for files that did not)."""
    files = sorted(path for path in staging.rglob("*") if path.is_file())
    for path in files:
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
    for path in {path.parent for path in files}:
        _fsync_folder(path)
    names = [path.relative_to(staging).as_posix() for path in files]
    written = staging / (COMPLETE + ".tmp")  # renamed: a mark cut short (a full disk) is none
    with open(written, "w") as handle:
        json.dump(names, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(written, staging / COMPLETE)
    _fsync_folder(staging)


def _move_into(source: Path, folder: Path, keep: str | None = None) -> None:
    """Every entry of ``source`` (but ``keep``) renamed into ``folder``; a folder already there
    (adapter/, its earlier model files removed) takes the entries, so that what else it holds
    stays. A nested source folder emptied is removed; ``source`` itself is left."""
    for entry in sorted(source.iterdir()):
        if entry.name in (keep, f"{keep}.tmp"):
            continue
        target = folder / entry.name
        if entry.is_dir() and target.is_dir() and not target.is_symlink():
            _move_into(entry, target)
            entry.rmdir()
        else:
            os.replace(entry, target)


def _fsync_folder(folder: Path) -> None:
    """A folder's entries (renames, new files) made durable; a no-op where folders cannot be
    opened (Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
