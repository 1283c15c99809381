"""Rows of a preference (or prompt) source, whatever its format, each with its place.

``open_rows`` turns a path (JSON Lines, JSON, CSV, each maybe compressed; Parquet, Arrow, a
``datasets.save_to_disk`` folder) or a Python object (a ``datasets.Dataset``, a pandas
DataFrame, a list of dicts) into ``(where, row)`` pairs: ``where`` is "line N" for
line-oriented files, "row N" otherwise, and a row that cannot be read is a ``RowError`` in place
of the row, so the caller decides whether to stop or skip (``skip_invalid_rows``). Problems
with the whole source are one-line ``DataError``s naming it. What a row must hold is data.py's
business; what a source is before its rows are read (a Python object, a dataset name):
data_sources.py. JSON and JSON Lines are read in json_files.py; what every reader shares
(``RowError``, ``kind_of``, a file opened as text whatever its compression) is data_text.py's,
and is imported from here too.
"""

from __future__ import annotations

import ast
import csv
import lzma
import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from directpo.data_text import (
    COMPRESSED,
    RowError,
    not_utf8,
    open_text,
    rows_ending,
    unread_compression,
)
from directpo.data_text import compression_of as compression_of  # (imported from here too)
from directpo.data_text import kind_of as kind_of  # (imported from here too)
from directpo.errors import DataError, first_line
from directpo.json_files import (
    document_rows,
    holds_a_json_list,
    json_document,
    json_or_none,
    json_rows,
    jsonl_rows,
)
from directpo.row_places import placed_rows, remember_saved_files


def open_rows(
    source: Any, label: str, lazy: bool = False, *, places_checked_after: bool = False
) -> tuple[Iterable[tuple[str, Any]], list[str] | None]:
    """(rows as (where, row-or-RowError), column names when the format declares them).
    ``lazy``: a JSON Lines, CSV or Parquet file (or a JSON list of rows) is read as its rows are
    iterated, never held whole (score and rank stream a file of any size); another JSON
    document is read whole. ``places_checked_after``: a Dataset's files are not counted first
    (``row_places.placed_rows``' ``checked_after``: the caller reads every row, and reads them
    again on ``PlacesMisaligned``)."""
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
        # (a dataset of local files: each row said by its file and line, row_places)
        rows = placed_rows(source, _dataset_rows(source), checked_after=places_checked_after)
        return rows, None if names is None else list(names)
    path = source
    if os.path.isdir(path):
        return _disk_dataset_rows(path, label)
    if not os.path.isfile(path):
        raise DataError(f"{label}: no such file")
    if (unread := unread_compression(path)) is not None:
        raise DataError(f"{label}: {unread}")
    last = os.path.splitext(path.lower())[1]  # (.gz of data.jsonl.gz, as the hub keeps them)
    ext, compression = rows_ending(path), (last if last in COMPRESSED else "")
    names: list[str] | None = None
    try:
        lines = ext in (".jsonl", ".ndjson")
        if lines and holds_a_json_list(path):  # (a .jsonl of one list or object: as .json)
            rows: Iterable[tuple[str, Any]] = json_rows(path, label)
        elif lines and (document := json_document(path)) is not None:  # (read whole once)
            rows = document_rows(document, label)
        elif lines:
            rows = jsonl_rows(path)
        elif ext == ".json":
            rows = json_rows(path, label)
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
        f"{label}: unsupported file type '{(ext or '(none)') + compression}'; use "
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


def object_row(label: str, where: str, row: Any) -> dict[str, Any]:
    """One of ``open_rows``' rows as the dict it is, or the DataError that names it (``label``:
    the source, ``where``: the row): unreadable (its RowError) or not an object."""
    if isinstance(row, RowError):
        raise DataError(f"{label}: {where}: {row.message}")
    if not isinstance(row, dict):
        raise DataError(f"{label}: {where}: expected an object, got {kind_of(row)}")
    return row


# the file types open_rows reads (a text one may be compressed, COMPRESSED)
DATA_KINDS = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".arrow")
# how the name of a file of rows ends: a kind, or its compression (data.jsonl.gz ends .gz); the
# one list of the hints that tell a file from a hub id or a config (they had drifted apart)
DATA_ENDINGS = (*DATA_KINDS, *COMPRESSED)


# csv's default field limit (131072 characters) refuses long responses
CSV_FIELD_LIMIT = min(sys.maxsize, 2**31 - 1)


def _csv_rows(path: str, label: str) -> tuple[Iterator[tuple[str, Any]], list[str]]:
    """(the rows, read as they are iterated; the header, read now)."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    header = _csv_header(path, label, ",")
    if (delimiter := _delimiter(header)) != ",":
        header = _csv_header(path, label, delimiter)
    if (bad := not_utf8(",".join(header))) is not None:
        raise DataError(f"{label}: line 1 (the header): {bad.message}")
    repeated = [name for name, n in Counter(header).items() if n > 1]
    if repeated:
        raise DataError(f"{label}: the header names column '{repeated[0]}' twice")
    return _csv_records(path, label, header, delimiter), header


def csv_separator(path: str) -> str:
    """The field separator ``path`` (a CSV file, compressed too) is read with: a comma, or
    ``_delimiter``'s semicolon or tab (a DataError where its header is no CSV)."""
    return _delimiter(_csv_header(path, path, ","))


def _csv_header(path: str, label: str, delimiter: str) -> list[str]:
    with open_text(path, newline="", errors="surrogateescape") as handle:
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
    with open_text(path, newline="", errors="surrogateescape") as handle:
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
        if (bad := not_utf8(text)) is not None:
            return RowError(bad.reason, f"field '{name}': {bad.message}")
    if len(fields) != len(header):
        hint = " (quote fields that contain commas)" if len(fields) > len(header) else ""
        return RowError(
            "wrong number of fields",
            f"{len(fields)} fields but the header has {len(header)}{hint}",
        )
    return {name: _csv_cell(text) for name, text in zip(header, fields, strict=True)}


class CellMessages(list):
    """A CSV cell's list of messages, with the cell's ``text``: a file of text replies read it
    as written (``as_written``), where a reply is such a list's JSON (a code answer)."""

    text: str


def as_written(value: Any) -> Any:
    """``value``, or the text of a CSV cell that was read as a list of messages."""
    return value.text if isinstance(value, CellMessages) else value


def _csv_cell(text: str) -> Any:
    """A cell's text; a cell holding a list of messages (as JSON, or as the Python repr that
    pandas writes for a list column) is that list (``CellMessages``)."""
    stripped = text.strip()
    if not (stripped.startswith("[{") and stripped.endswith("}]") and "role" in stripped):
        return text
    value = list_in_text(stripped)
    if value is not None and all(isinstance(m, dict) and "role" in m for m in value):
        cell = CellMessages(value)
        cell.text = text
        return cell
    return text


def list_in_text(text: str) -> list[Any] | None:
    """The list a text cell holds, as a CSV writes a list column: JSON, or the Python repr
    pandas writes (``['a.png', 'b.png']``); None for any other text."""
    stripped = text.strip()
    if not (stripped.startswith("[") and stripped.endswith("]")):
        return None
    value = json_or_none(stripped)
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
    remember_saved_files(loaded)  # (a row of one of several shards: said by its shard's row)
    return placed_rows(loaded, _dataset_rows(loaded)), list(loaded.column_names)


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
    # a table that datasets' csv builder read (a dataset_name folder of .csv files, a
    # mixture's data_files): its cells as a CSV train_file's (_csv_cell), a cell of messages
    # that list; it trained the JSON text as a plain prompt and replies, without a word
    csv_cells = getattr(getattr(dataset, "info", None), "builder_name", None) == "csv"
    for i, row in enumerate(_undecoded(dataset), start=1):
        if csv_cells and isinstance(row, dict):
            row = {k: _csv_cell(v) if isinstance(v, str) else v for k, v in row.items()}
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
