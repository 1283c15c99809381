"""Where a row of a dataset read from several files lies: its file and line (or row).

dataset_name of a local folder (data/ holding a.jsonl, b.jsonl), a mixture entry's data_files
and a datasets.save_to_disk folder of several shards are read by ``datasets`` as one table,
whose bad row was said by its place in the whole: "data[train]: row 24: field 'rejected' is
null", naming neither the file nor its line. Where the files are ours to read (JSON Lines,
JSON, CSV, Parquet, their compressed forms, and a saved folder's .arrow shards), each row is
said by its file and its place there: "data[train]: data/b.jsonl: line 7: field 'rejected' is
null". Where the files' rows do not add up to the dataset's (a file datasets reads otherwise
than directpo), or the rows were reordered or selected, the places are not given and the rows
keep their place in the whole, never a wrong line: a mixture counts the files first (its rows
are keyed by their places before they are read); a single source's load walks them beside
its rows and checks the count as they end, reading the rows again where it does not add up
(``PlacesMisaligned``), so a load that succeeds makes no pass of its own over the files.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from directpo.data_text import file_version, open_text, rows_ending
from directpo.errors import DataError

# each dataset read from local files, and its files in the order datasets read them
_FILES: weakref.WeakKeyDictionary[Any, list[str]] = weakref.WeakKeyDictionary()


def remember_files(dataset: Any, files: Iterable[Any]) -> None:
    """Note that ``dataset``'s rows are ``files``' rows in order (a split of load_dataset's, or
    a saved folder's); files not on this disk (a hub's) leave it unnoted."""
    paths = [str(path) for path in files]
    if not paths or not all(os.path.isfile(path) for path in paths):
        return
    if len({os.path.realpath(path) for path in paths}) < len(paths):
        # (a file read twice: its places would name two rows; a mixture keys rows by them)
        with contextlib.suppress(TypeError):
            _FILES.pop(dataset, None)
        return
    # (an object that takes no weak reference: its rows keep their places in the whole)
    with contextlib.suppress(TypeError):
        _FILES[dataset] = paths


def remember_split_files(splits: Any, data_files: Any) -> None:
    """``remember_files`` for each split of ``splits`` (a DatasetDict) by ``data_files`` (a
    builder's, by split name)."""
    if not hasattr(splits, "items") or not hasattr(data_files, "get"):
        return
    for split, dataset in splits.items():
        files = data_files.get(split)
        if files is not None:
            remember_files(dataset, files)


def remember_saved_files(dataset: Any) -> None:
    """A saved folder's Dataset: its .arrow shards are its rows (one shard's rows are the
    dataset's own: said as they were, "row 7")."""
    cached = getattr(dataset, "cache_files", None) or []
    shards = [entry["filename"] for entry in cached if "filename" in entry]
    if len(shards) > 1:
        remember_files(dataset, shards)


class PlacesMisaligned(Exception):
    """The places ``placed_rows(..., checked_after=True)`` gave were not the rows' (the files'
    rows did not add up to the dataset's, found as the rows were read): read the rows again
    after ``forget_files``, by their places in the whole."""


def forget_files(dataset: Any) -> None:
    """``dataset``'s rows keep their places in the whole from now on."""
    with contextlib.suppress(TypeError):
        _FILES.pop(dataset, None)


# what a file directpo cannot read as datasets did raises while its places are counted
_UNREAD = (DataError, OSError, ValueError, EOFError)


def placed_rows(
    dataset: Any, rows: Iterable[tuple[str, Any]], *, checked_after: bool = False
) -> Iterable[tuple[str, Any]]:
    """``rows`` of ``dataset`` (as "row i"), each said by its file's place where the dataset's
    files are noted and their rows add up to its own; else ``rows`` as they are.
    ``checked_after``: the files are not counted first (a pass over each, on every load that
    succeeds: the places of a single source's rows are needed only where one is refused), but
    walked beside the rows, their count checked as they end; where they do not add up,
    ``PlacesMisaligned`` is raised, and the caller reads the rows again after
    ``forget_files``. A mixture keys its rows by their places before it reads them: counted
    first."""
    try:
        files = _FILES.get(dataset)
    except TypeError:  # (an object of no weak reference or hash: a table of Python's own)
        files = None
    if files is None or getattr(dataset, "_indices", None) is not None:
        return rows
    if not hasattr(dataset, "__len__"):  # (a stream: its rows are not counted ahead)
        return rows  # (selected or shuffled rows: their files' order is not theirs)
    if checked_after and not all(_counted(path) for path in files):
        return _walked(files, rows, len(dataset))
    try:
        if sum(map(_count, files)) != len(dataset):
            return rows
    except _UNREAD:
        return rows  # (a file directpo cannot read as datasets did: places in the whole)
    places = (f"{_shown(path)}: {place}" for path in files for place in _places(path))
    return ((next(places, where), row) for where, row in rows)


def _walked(
    files: list[str], rows: Iterable[tuple[str, Any]], size: int
) -> Iterator[tuple[str, Any]]:
    """``rows`` said by the places of ``files`` walked beside them; ``PlacesMisaligned`` where
    the files' rows are not ``size`` (each file's count kept once they are)."""
    counts: dict[str, int] = {}

    def places() -> Iterator[str]:
        for path in files:
            counts[path] = 0
            for place in _places(path):
                counts[path] += 1
                yield f"{_shown(path)}: {place}"

    walk = places()
    for _, row in rows:
        yield _next_place(walk), row
    try:
        ended = next(walk, None) is None
    except _UNREAD:
        ended = False
    if not ended or sum(counts.values()) != size:
        raise PlacesMisaligned
    with contextlib.suppress(OSError):  # (a mixture of the same files counts none again)
        _COUNTS.update({file_version(path): count for path, count in counts.items()})


# rows counted per file, by (path, size, modified): a mixture opens its source twice (to count
# its rows, then to read the kept ones), and a CSV or JSON file's rows are counted by parsing
_COUNTS: dict[tuple[str, int, int], int] = {}


def _next_place(walk: Iterator[str]) -> str:
    """The next place of ``walk``; ``PlacesMisaligned`` where the files end first or one
    cannot be read as datasets read it."""
    try:
        place = next(walk, None)
    except _UNREAD:
        place = None
    if place is None:
        raise PlacesMisaligned
    return place


def _counted(path: str) -> bool:
    try:
        return file_version(path) in _COUNTS
    except OSError:
        return False


def _count(path: str) -> int:
    key = file_version(path)
    if key not in _COUNTS:
        _COUNTS[key] = sum(1 for _ in _places(path))
    return _COUNTS[key]


def _places(path: str) -> Iterator[str]:
    """The place of each row of ``path``, as its reader says it: "line 7", "row 3"."""
    from directpo.readers import open_rows  # (readers says a dataset's rows by their places)

    ext = rows_ending(path)
    if ext == ".arrow":  # a saved folder's shard, or datasets' cache: its rows by number
        import pyarrow as pa

        with pa.memory_map(path) as source:
            count = pa.ipc.open_stream(source).read_all().num_rows
        return (f"row {i}" for i in range(1, count + 1))
    if ext == ".parquet":
        import pyarrow.parquet as pq

        count = pq.ParquetFile(path).metadata.num_rows
        return (f"row {i}" for i in range(1, count + 1))
    from directpo.json_files import holds_a_json_list, json_document

    if ext in (".jsonl", ".ndjson") and not holds_a_json_list(path) and not json_document(path):
        return _line_places(path)  # (counted without parsing each row: blank lines skipped)
    return (where for where, _ in open_rows(path, path, lazy=True)[0])


def _line_places(path: str) -> Iterator[str]:
    with open_text(path, errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"line {number}"


def _shown(path: str) -> str:
    """A file as the user reaches it: from the working directory where it lies under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
