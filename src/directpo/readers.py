"""Rows of a preference (or prompt) source, whatever its format, each with its place.

``open_rows`` turns a path (JSON Lines, JSON, CSV, each maybe compressed; Parquet, Arrow, a
``datasets.save_to_disk`` folder) or a Python object (a ``datasets.Dataset``, a pandas
DataFrame, a list of dicts) into ``(where, row)`` pairs: ``where`` is "line N" for
line-oriented files, "row N" otherwise, and a row that cannot be read is a ``RowError`` in place
of the row, so the caller decides whether to stop or skip (``skip_invalid_rows``). Problems
with the whole source are one-line ``DataError``s naming it. What a row must hold is data.py's
business; what a source is before its rows are read (a Python object, a dataset name):
data_sources.py.
"""

from __future__ import annotations

import ast
import bz2
import csv
import gzip
import json
import lzma
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from directpo.errors import DataError, first_line


class RowError(Exception):
    """A problem with one row: ``reason`` is a short category used to count skips."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # (a tokenizing pool's worker sends it back)
        return type(self), (self.reason, self.message), self.__dict__


def open_rows(
    source: Any, label: str, lazy: bool = False
) -> tuple[Iterable[tuple[str, Any]], list[str] | None]:
    """(rows as (where, row-or-RowError), column names when the format declares them).
    ``lazy``: a JSON Lines, CSV or Parquet file (or a JSON list of rows) is read as its rows are
    iterated, never held whole (score and rank stream a file of any size); another JSON
    document is read whole."""
    if isinstance(source, list | tuple):  # rows from Python: dicts
        return _dataset_rows(source), None
    if hasattr(source, "to_dict") and hasattr(source, "columns"):  # a pandas DataFrame
        rows = [
            {key: _cell(value) for key, value in row.items()} for row in source.to_dict("records")
        ]
        return _dataset_rows(rows), [str(c) for c in source.columns]
    if not isinstance(source, str):
        if not hasattr(source, "column_names"):
            raise DataError(
                f"{label}: expected a file path, a datasets.Dataset, a pandas DataFrame or a "
                f"list of dicts, got {type(source).__name__}"
            )
        names = source.column_names  # None for an IterableDataset of unknown features
        return _dataset_rows(source), None if names is None else list(names)
    path = source
    if os.path.isdir(path):
        return _disk_dataset_rows(path, label)
    if not os.path.isfile(path):
        raise DataError(f"{label}: no such file")
    if (unread := _unread_compression(path)) is not None:
        raise DataError(f"{label}: {unread}")
    stem, ext = os.path.splitext(path.lower())
    compression = ext if ext in COMPRESSED else None
    if compression:  # data.jsonl.gz, as the hub and load_dataset's json builder keep them
        ext = os.path.splitext(stem)[1]
    names: list[str] | None = None
    try:
        if ext in (".jsonl", ".ndjson") and not holds_a_json_list(path):
            rows: Iterable[tuple[str, Any]] = _jsonl_rows(path)
        elif ext in (".jsonl", ".ndjson", ".json"):  # (a .jsonl of one list: read as a list)
            rows = _json_rows(path, label)
        elif ext in (".csv", ".tsv"):  # the separator is read from the header
            rows, names = _csv_rows(path, label)
        elif ext == ".parquet" and not compression:
            rows, names = _parquet_rows(path, label)
        elif ext == ".arrow" and not compression:  # a datasets cache or save_to_disk shard
            return _arrow_rows(path, label)
        else:
            rows = None
        if rows is not None:  # a file's rows: read now, or as they are iterated
            rows = _reading(rows, label)
            return (rows if lazy else list(rows)), names
    except (UnicodeDecodeError, OSError, EOFError, lzma.LZMAError) as exc:
        raise _unreadable(exc, label) from None
    raise DataError(
        f"{label}: unsupported file type '{(ext or '(none)') + (compression or '')}'; use "
        ".jsonl, .json, .csv or .tsv (each may be .gz, .bz2 or .xz compressed), .parquet, "
        ".arrow or a datasets.save_to_disk folder"
    )


def _reading(rows: Iterable[tuple[str, Any]], label: str) -> Iterator[tuple[str, Any]]:
    """``rows``, a file that cannot be read as it goes (a bad byte, a truncated archive) a
    one-line DataError."""
    try:
        yield from rows
    except (UnicodeDecodeError, OSError, EOFError, lzma.LZMAError) as exc:
        raise _unreadable(exc, label) from None


def _unreadable(exc: Exception, label: str) -> DataError:
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    # EOFError: a truncated archive
    return DataError(f"{label}: cannot read: {getattr(exc, 'strerror', None) or exc}")


# what ``errors="surrogateescape"`` decodes a byte that is not UTF-8 to: U+DC80..U+DCFF
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")


def _not_utf8(text: str) -> RowError | None:
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


# the file types open_rows reads (a text one may be compressed, COMPRESSED)
DATA_KINDS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".arrow")
# compressed text files, opened by the standard library's modules
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


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


def _unread_compression(path: str) -> str | None:
    """What to do with a file compressed in a kind no opener here reads (zstd, zip)."""
    with open(path, "rb") as handle:
        start = handle.read(4)
    return next((said for magic, said in UNREAD_MAGIC.items() if start.startswith(magic)), None)


def _open_text(path: str, **options: Any) -> Any:
    """A text file, decompressed when its first bytes say it is compressed (``MAGIC``)."""
    opener = COMPRESSED.get(compression_of(path) or "", open)
    return opener(path, "rt", encoding="utf-8-sig", **options)


def _jsonl_rows(path: str) -> Iterator[tuple[str, Any]]:
    with _open_text(path, errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if (bad := _not_utf8(line)) is not None:
                yield f"line {number}", bad
                continue
            try:  # (without its newline: a row cut short, as a killed writer leaves the last
                # one, was said to fail "at column 1", of the line after it)
                yield f"line {number}", json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                yield (
                    f"line {number}",
                    RowError("invalid JSON", f"invalid JSON ({json_problem(exc)})"),
                )


def json_problem(exc: json.JSONDecodeError) -> str:
    """json's message and the column: two of its messages end with their own 'at' (a string
    cut short was 'Unterminated string starting at at column 29')."""
    at = "" if exc.msg.endswith(" at") else " at"
    return f"{exc.msg}{at} column {exc.colno}"


JSON_SHAPES = (
    "a list of row objects, an object holding one such list, or an object of equal-length "
    'column lists ({"prompt": [...], "chosen": [...], "rejected": [...]})'
)


def _json_rows(path: str, label: str) -> Iterable[tuple[str, Any]]:
    if starts_a_list(path):  # the common shape: a row at a time
        return _json_list_rows(path, label)
    return _json_document_rows(path, label)


JSON_CHUNK = 1 << 20  # characters of a .json list read at a time
JSON_SPACE = " \t\r\n"


def starts_a_list(path: str) -> bool:
    with _open_text(path) as handle:
        return handle.read(4096).lstrip(JSON_SPACE).startswith("[")


def holds_a_json_list(path: str) -> bool:
    """A .jsonl file that holds one JSON list of rows (Anthropic's red_team_attempts.jsonl.gz,
    json.dump's rows), whose every line was "invalid JSON": it is read as a list, as datasets'
    json builder reads it. (A JSON Lines row is an object, so no such file opens with "[{";
    one whose first line is a whole list followed by more lines, a conversation a line, stays
    JSON Lines, each row said to be a list; one a line longer than a chunk is told by its end.)
    A pretty-printed object ('{' its first line: {"rows": [...]}) is one JSON document too."""
    # (bytes that are not UTF-8 are a line's problem in JSON Lines, said with its number)
    with _open_text(path, errors="replace") as handle:
        head = handle.read(4096).lstrip(JSON_SPACE)
        if head.startswith("{") and head[1:].lstrip(" \t\r")[:1] == "\n":
            return True
        if not (head.startswith("[") and head[1:].lstrip(JSON_SPACE)[:1] == "{"):
            return False
        handle.seek(0)
        lines = (line for line in iter(lambda: handle.readline(JSON_CHUNK), "") if line.strip())
        first = end = next(lines, "")
        while not end.endswith("\n") and (more := handle.readline(JSON_CHUNK)):
            end = more  # (its end, not the whole line held: a one-line list of 500 MB)
        whole = isinstance(_json_or_none(first), list) if first is end else end.rstrip()[-1:] == "]"
        return not (whole and next(lines, None) is not None)


def _json_list_rows(path: str, label: str) -> Iterator[tuple[str, Any]]:
    """The rows of a .json file holding one list, each decoded as it is reached: the whole
    text (4 bytes a character once one emoji is in it) and every row were held at once, 10x a
    2 GB file. Where the text is not one well-formed list, the rest comes from the whole
    read, which says the error and its line as it always has."""
    decoder = json.JSONDecoder()
    number = 0
    with _open_text(path) as handle:
        at, buffer = _next_char(handle, "", 0)  # the list's "[" (starts_a_list)
        while True:
            at, buffer = _next_char(handle, buffer, at + (number == 0))
            if at == len(buffer):  # the end of the file inside the list
                break
            if buffer[at] == "]":
                at, buffer = _next_char(handle, buffer, at + 1)
                if at == len(buffer):
                    return
                break  # text after the list
            if number:
                if buffer[at] != ",":
                    break
                at, buffer = _next_char(handle, buffer, at + 1)
            row, at, buffer = _decoded(decoder, handle, buffer, at)
            if at is None:
                break
            number += 1
            yield f"row {number}", row
    yield from _json_document_rows(path, label)[number:]


def _next_char(handle: Any, buffer: str, at: int) -> tuple[int, str]:
    """(where the next character that is not JSON whitespace is, the buffer holding it), read
    on as needed; at the end of the file, ``len(buffer)``."""
    while True:
        while at < len(buffer) and buffer[at] in JSON_SPACE:
            at += 1
        if at < len(buffer):
            return at, buffer
        more = handle.read(JSON_CHUNK)
        if not more:
            return len(buffer), buffer
        buffer, at = more, 0


def _decoded(decoder: Any, handle: Any, buffer: str, at: int) -> tuple[Any, int | None, str]:
    """(the JSON value starting at ``at``, where it ends, the buffer), more of the file read
    while it is cut off by the buffer's end; None for where at a malformed one."""
    while True:
        try:
            value, end = decoder.raw_decode(buffer, at)
            # (a number at the buffer's end may go on in the next chunk)
            if end < len(buffer) or not isinstance(value, int | float):
                return value, end, buffer
        except json.JSONDecodeError:
            value = end = None
        more = handle.read(max(JSON_CHUNK, len(buffer) - at))
        if not more:
            return value, end, buffer
        buffer, at = buffer[at:] + more, 0


def _json_document_rows(path: str, label: str) -> list[tuple[str, Any]]:
    with _open_text(path) as handle:
        text = handle.read()
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        first_line = text.lstrip().split("\n", 1)[0]
        if exc.msg == "Extra data" and isinstance(_json_or_none(first_line), dict):
            return list(_jsonl_rows(path))  # JSON Lines saved as .json (datasets' to_json)
        problem = json_problem(exc)
        if exc.msg == "Extra data":
            problem = f"more text after the end of the JSON value, at column {exc.colno}"
            if text[exc.pos] == "{" and text.lstrip()[:1] == "{":  # (jq's output: no reader's)
                problem += "; it holds objects one after another, each over several lines (as "
                problem += "jq prints them): write one object a line (jq -c .)"
        raise DataError(f"{label}: line {exc.lineno}: invalid JSON ({problem})") from None
    return [(f"row {i}", row) for i, row in enumerate(_json_table(data, label), start=1)]


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _json_table(data: Any, label: str) -> list[Any]:
    """The rows of a JSON document in one of the ``JSON_SHAPES``."""
    if isinstance(data, list):
        return data
    if not isinstance(data, dict) or not data:
        raise DataError(f"{label}: expected {JSON_SHAPES}, got {kind_of(data)}")
    lengths = {key: len(value) for key, value in data.items() if isinstance(value, list)}
    columnar = len(lengths) == len(data)
    same_length = len(set(lengths.values())) == 1
    row_lists = [v for v in data.values() if v and isinstance(v, list) and all(map(is_dict, v))]
    if len(row_lists) == 1 and not (columnar and same_length and len(data) > 1):
        return row_lists[0]  # {"data": [rows...], "version": ...}
    if len(row_lists) > 1 and len(row_lists) == len(lengths):
        # {"train": [rows], "test": [rows]}: splits, said as columns of other names (or
        # lists of different lengths) though no pair column holds row objects
        names = ", ".join(key for key, value in data.items() if isinstance(value, list))
        from directpo.row_kinds import splits_said  # (row_kinds reads readers' names)

        raise DataError(f"{label}: {splits_said(names)}")
    if columnar and same_length:
        return [dict(zip(data, row, strict=True)) for row in zip(*data.values(), strict=True)]
    if columnar:
        counts = ", ".join(f"{key}: {n}" for key, n in lengths.items())
        raise DataError(f"{label}: the column lists have different lengths ({counts})")
    raise DataError(f"{label}: expected {JSON_SHAPES}")


# csv's default field limit (131072 characters) refuses long responses
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def _csv_rows(path: str, label: str) -> tuple[Iterator[tuple[str, Any]], list[str]]:
    """(the rows, read as they are iterated; the header, read now)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    header = _csv_header(path, label, ",")
    if (delimiter := _delimiter(header)) != ",":
        header = _csv_header(path, label, delimiter)
    if (bad := _not_utf8(",".join(header))) is not None:
        raise DataError(f"{label}: line 1 (the header): {bad.message}")
    repeated = [name for name, n in Counter(header).items() if n > 1]
    if repeated:
        raise DataError(f"{label}: the header names column '{repeated[0]}' twice")
    return _csv_records(path, label, header, delimiter), header


def _csv_header(path: str, label: str, delimiter: str) -> list[str]:
    with _open_text(path, newline="", errors="surrogateescape") as handle:
        try:
            header = next(csv.reader(handle, delimiter=delimiter), [])
        except csv.Error as exc:
            raise DataError(f"{label}: line 1: invalid CSV ({exc})") from None
    return _unnamed_as_pandas([name.strip() for name in header])


def _unnamed_as_pandas(header: list[str]) -> list[str]:
    """Columns without a name (pandas' index, Excel's trailing empty ones) named as pandas
    reads them, 'Unnamed: 3' ('Unnamed: 0.1' where taken): two were refused as named twice."""
    named = list(header)
    for i, name in enumerate(header):
        if not name:
            name, n = f"Unnamed: {i}", 0
            while name in named:
                n += 1
                name = f"Unnamed: {i}.{n}"
            named[i] = name
    return named


def _delimiter(header: list[str]) -> str:
    """The file's field separator: a comma, or the semicolon that Excel writes in locales
    whose decimal mark is a comma (German, French, ...), or a tab, when the header read with
    commas is one field holding it ('prompt;chosen;rejected' was one column, and the line
    said to set chosen_column)."""
    if len(header) == 1:
        return next((mark for mark in ";\t" if mark in header[0]), ",")
    return ","


def _csv_records(
    path: str, label: str, header: list[str], delimiter: str = ","
) -> Iterator[tuple[str, Any]]:
    with _open_text(path, newline="", errors="surrogateescape") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        start = 1  # the line where the row being read starts (a quoted field may span lines)
        try:
            next(reader, None)  # the header
            start = reader.line_num + 1
            for fields in reader:
                # a blank line, or a row of empty cells (",,": a spreadsheet's empty row, as
                # Excel and Google Sheets export one at the end of a range): no row
                if any(field.strip() for field in fields):
                    yield f"line {start}", _csv_row(header, fields)
                start = reader.line_num + 1
        except csv.Error as exc:
            raise DataError(f"{label}: line {start}: invalid CSV ({exc})") from None


def _csv_row(header: list[str], fields: list[str]) -> dict[str, Any] | RowError:
    for name, text in zip(header, fields, strict=False):
        if (bad := _not_utf8(text)) is not None:
            return RowError(bad.reason, f"field '{name}': {bad.message}")
    if len(fields) != len(header):
        hint = " (quote fields that contain commas)" if len(fields) > len(header) else ""
        return RowError(
            "wrong number of fields",
            f"{len(fields)} fields but the header has {len(header)}{hint}",
        )
    return {name: _csv_cell(text) for name, text in zip(header, fields, strict=True)}


def _csv_cell(text: str) -> Any:
    """A cell's text; a cell holding a list of messages (as JSON, or as the Python repr that
    pandas writes for a list column) is that list."""
    stripped = text.strip()
    if not (stripped.startswith("[{") and stripped.endswith("}]") and "role" in stripped):
        return text
    value = list_in_text(stripped)
    if value is not None and all(isinstance(m, dict) and "role" in m for m in value):
        return value
    return text


def list_in_text(text: str) -> list[Any] | None:
    """The list a text cell holds, as a CSV writes a list column: JSON, or the Python repr
    pandas writes (``['a.png', 'b.png']``); None for any other text."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    value = _json_or_none(stripped)
    if value is None:
        try:
            value = ast.literal_eval(stripped)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, list) else None


def _parquet_rows(path: str, label: str) -> tuple[Iterator[tuple[str, Any]], list[str]]:
    """(the rows, read a record batch at a time as they are iterated; the column names)."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a damaged file
        raise DataError(f"{label}: not a readable Parquet file ({first_line(exc)})") from None
    return _parquet_records(table, label), list(table.schema_arrow.names)


def _parquet_records(table: Any, label: str) -> Iterator[tuple[str, Any]]:
    number = 0
    try:
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                yield f"row {number}", row
    except Exception as exc:  # a damaged page, found when it is read
        raise DataError(f"{label}: not a readable Parquet file ({first_line(exc)})") from None
    finally:
        table.close()


def _arrow_rows(path: str, label: str) -> tuple[Iterable[tuple[str, Any]], list[str]]:
    """An Arrow stream (datasets' cache and save_to_disk shards) or an Arrow IPC file (the
    ``ARROW1`` format that pyarrow's ``ipc.new_file``, polars' ``write_ipc`` and
    ``pandas.to_feather`` write), memory-mapped either way."""
    import datasets
    import pyarrow as pa

    try:
        with open(path, "rb") as handle:
            is_ipc_file = handle.read(6) == b"ARROW1"
        if is_ipc_file:  # Dataset.from_file reads the stream format only
            loaded = datasets.Dataset(pa.ipc.open_file(pa.memory_map(path)).read_all())
        else:
            loaded = datasets.Dataset.from_file(path)
    except Exception as exc:  # pyarrow and datasets raise several types for a foreign file
        raise DataError(f"{label}: not a readable Arrow file ({first_line(exc)})") from None
    return _dataset_rows(loaded), list(loaded.column_names)


def _disk_dataset_rows(path: str, label: str) -> tuple[Iterable[tuple[str, Any]], list[str]]:
    import datasets

    from directpo.data_folders import TRAIN_WHOLE, folder_problem  # (it imports this module)

    problem = folder_problem(path, label, TRAIN_WHOLE)
    if problem is not None:
        raise DataError(problem)
    try:
        loaded = datasets.load_from_disk(path)
    except Exception as exc:  # datasets raises FileNotFoundError or its own errors
        raise DataError(
            f"{label}: an unreadable datasets.save_to_disk folder ({first_line(exc)})"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded[next(iter(loaded))]  # (one split: several are folder_problem's)
    return _dataset_rows(loaded), list(loaded.column_names)


def _cell(value: Any) -> Any:
    """A DataFrame cell as its row would hold it in a file: a missing one (NaN, None, pd.NA,
    NaT: pandas fills a column with NaN in the rows without it) is null, as Arrow reads it and
    a JSON Lines row without the key; else ``_python_values``. (A row given images, tools or
    chat_template_kwargs gave the rows without them NaN, refused as 'got a number'.)"""
    import pandas as pd

    if pd.api.types.is_scalar(value) and pd.isna(value):
        return None
    return _python_values(value)


def _python_values(value: Any) -> Any:
    """A DataFrame cell as JSON would give it: ``pandas.read_parquet`` holds each list (a
    conversation, its messages' tool calls) as a NumPy array, which no layout reads as a list
    ("field 'chosen' must be a string, got ndarray"), and numbers as NumPy scalars."""
    if isinstance(value, dict):
        return {key: _python_values(item) for key, item in value.items()}
    if isinstance(value, list | tuple) or type(value).__name__ == "ndarray":
        return [_python_values(item) for item in value]
    return value.item() if type(value).__module__ == "numpy" else value


def _dataset_rows(dataset: Any) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(_undecoded(dataset), start=1):
        yield f"row {i}", row


def _undecoded(dataset: Any) -> Iterable[Any]:
    """A ``datasets`` dataset's rows with ``Image`` (and other decodable) columns as stored,
    ``{"bytes", "path"}``: decoded while iterated, each image would be held as pixels by every
    pair for the whole run (a missing file raised from inside ``datasets``, not as a row's
    error); vision.py reads them when they are used. Other sources are their own rows."""
    if getattr(dataset, "features", None) is None:  # also an IterableDataset's unknown ones
        return dataset
    if hasattr(dataset, "decode"):  # an IterableDataset
        return dataset.decode(False)
    form = getattr(dataset, "format", None) or {}
    if not hasattr(dataset, "with_format") or form.get("type") == "custom":
        return dataset  # a transform (with_transform): rows as it makes them
    # a format (numpy, pandas, arrow, torch) holds the same values in other types: its rows
    # were ndarrays ("field 'prompt' must be a string ..., got ndarray") or one-row tables
    stored = dataset.with_format(
        "arrow", columns=form.get("columns"), output_all_columns=form.get("output_all_columns")
    )
    return (row for batch in stored.iter(batch_size=256) for row in batch.to_pylist())


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
    return names.get(type(value), type(value).__name__)
