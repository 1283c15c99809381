"""What every reader of rows shares: a row's error (``RowError``), how a value is named in
messages (``kind_of``), a data file's version (``file_version``), and a data file opened as
text: its compression read from its first bytes, a byte that is not UTF-8 its own line's
error. readers.py opens the sources; json_files.py reads JSON and JSON Lines.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
from typing import Any


class RowError(Exception):
    """A problem with one row: ``reason`` is a short category used to count skips."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # (a tokenizing pool's worker sends it back)
        return type(self), (self.reason, self.message), self.__dict__


def file_version(path: str) -> tuple[str, int, int]:
    """A data file's version as the readers' caches key it: its real path, size and modified
    time (a file edited since is read again)."""
    stat = os.stat(path)
    return (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


def is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def kind_of(value: Any) -> str:
    """How a value is described in messages: an object, a list, a string, ..."""
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    # (by the nearest known base: a CSV cell's messages, readers.CellMessages, is a list)
    known = [names[kind] for kind in type(value).__mro__ if kind in names]
    return known[0] if known else type(value).__name__


# what ``errors="surrogateescape"`` decodes a byte that is not UTF-8 to: U+DC80..U+DCFF
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def not_utf8(text: str) -> RowError | None:
    """A line (or CSV row) read with ``errors="surrogateescape"`` that holds a byte that is
    not UTF-8, as its row's error: the other rows are still read, where one bad byte made the
    whole file "not UTF-8 text (... at byte 48213)", no line named."""
    found = _ESCAPED_BYTE.search(text)
    if found is None:
        return None
    byte = ord(found.group()) - 0xDC00
    # a spreadsheet's "CSV" is often its locale's code page (Windows-1252: é is 0xe9)
    return RowError(
        "not UTF-8",
        f"not UTF-8 text (byte 0x{byte:02x} at column {found.start() + 1}); save the file as "
        "UTF-8 (Excel: 'CSV UTF-8')",
    )


# compressed text files, opened by the standard library's modules
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


def rows_ending(path: str) -> str:
    """The ending that says what ``path``'s name holds, under its compression's, lower case:
    data.JSONL.gz -> .jsonl, train.csv -> .csv (the readers, folder walks and type checks each
    worked it out alike)."""
    stem, ending = os.path.splitext(path.lower())
    return os.path.splitext(stem)[1] if ending in COMPRESSED else ending


# the first bytes of each COMPRESSED kind, and of compressed files read by no opener here
MAGIC = {b"\x1f\x8b": ".gz", b"BZh": ".bz2", b"\xfd7zXZ\x00": ".xz"}
UNREAD_MAGIC = {
    b"\x28\xb5\x2f\xfd": "zstd-compressed: decompress it (zstd -d) and give the file it holds",
    b"PK\x03\x04": "a zip archive: unzip it and give the data file it holds",
}


def compression_of(path: str) -> str | None:
    """The ``COMPRESSED`` kind the file's first bytes say, whatever its name: a gzip file saved
    as data.jsonl (a download's name without its .gz) was read as text, each line "not UTF-8
    text", and a .jsonl.gz a browser already decompressed "cannot read: Not a gzipped file"."""
    with open(path, "rb") as handle:
        start = handle.read(6)
    return next((kind for magic, kind in MAGIC.items() if start.startswith(magic)), None)


def unread_compression(path: str) -> str | None:
    """What to do with a file compressed in a kind no opener here reads (zstd, zip)."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    return next((said for magic, said in UNREAD_MAGIC.items() if start.startswith(magic)), None)


def open_text(path: str, **options: Any) -> Any:
    """A text file, decompressed when its first bytes say it is compressed (``MAGIC``)."""
    opener = COMPRESSED.get(compression_of(path) or "", open)
    return opener(path, "rt", encoding="utf-8-sig", **options)
