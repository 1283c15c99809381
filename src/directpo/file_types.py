"""A folder's JSON files read by ``datasets`` as one table: the values it would change, refused.

``datasets.load_dataset`` of a local folder (dataset_name, a mixture entry's data_files) reads
its JSON, JSON Lines and Parquet files as ONE table, one type per column, where directpo's
own reader (train_file, a list of files) reads each file alone. Its json builder JSON-encodes
a column whose type changes within a file (``"chosen": 5`` beside strings: every chosen text of that
file trained as ``"\\" Sure...\\""``, and 5 as ``"5"``), casts a later file's column to the
first file's type (a file of ``"chosen": 5`` trained as ``"5"``, of ``true`` as ``"true"``),
fails on the rest with a line that names no file ("Couldn't cast array of type string to
null"), and reads a JSON object of columns (``{"prompt": [...], ...}``) as one row. Each such
file is refused before the load, in one line naming the file, its line and the field, as
directpo reads it alone; files of one type per column load as before.

Cost: each plain JSON Lines file's types are read by pyarrow's JSON reader (C++, no Python
row objects), and the first file's first chunk parsed for objects of other keys, as datasets
does: about 0.1 s for a folder of 20 files x 5,000 rows (19 MB), beside 0.4 s for datasets'
first load of it (0.03 s from its cache). A JSON document or a compressed file is read by
directpo's reader. Rows are walked in Python to find the line only where a file is refused.
A stream (dataset_streaming) is not read ahead.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from directpo.data_text import file_version, kind_of, rows_ending
from directpo.errors import DataError

# how each file is read alone instead, said with each refusal: dataset_name's, a mixture's
ALONE = "or give the files as train_file (a list of paths: each file read alone)"
ALONE_IN_A_MIXTURE = "or give each file as its own entry (id: its path, read alone)"


def refuse_changed_values(files: Iterable[str], label: str, alone: str = ALONE) -> None:
    """Refuse ``files`` (one split's, in datasets' order) where datasets' one table of them
    would change a value that directpo reads from each file alone, or fail naming no file;
    ``alone``: how the caller's files are read each alone instead."""
    files = [path for path in files if os.path.isfile(path)]  # (a hub's hf:// files: not read)
    try:
        versions = tuple(file_version(path) for path in files)
    except OSError:
        versions = ()
    if versions and versions in _PASSED:  # (dataset_test_split loads them again)
        return
    _refuse_changed(files, label, alone)
    if versions:
        _PASSED.add(versions)


# the files (by path, size, modified) found to load as written: train's and the test split's
# loads of one folder read them once
_PASSED: set[tuple[tuple[str, int, int], ...]] = set()


def _refuse_changed(files: list[str], label: str, alone: str) -> None:
    if files and _is_json(files[0]):
        _refuse_encoded_objects(files[0], label, alone)
    first: dict[str, tuple[Any, str]] = {}  # field: (its type in the first file with it, file)
    read: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        typed = _is_json(path) or path.lower().endswith(".parquet")
        if typed and (types := _file_types(path, label, alone)) is not None:
            read.append((path, types))
            for field, kind in types.items():
                first.setdefault(field, (kind, path))
    if len(read) < 2:
        return
    schema = read[0][1]  # (datasets' table takes the first file's columns and types)
    for path, types in read:
        for field, (kind, source) in first.items():
            if source == path or (field in types and _cast_keeps(kind, types[field])):
                continue
            if field not in types and field in schema:
                continue  # (a later file without the first's field: its rows read it as null,
                # as a row without it reads alone; a required one said at its file and line)
            if field in types and _whole_in(path, field, kind, types[field]):
                continue
            if field not in types:
                raise DataError(
                    f"{label}: {_shown(path)}: has no field '{field}', which {_shown(source)} "
                    f"has: datasets reads a folder's files as one table of the same columns; "
                    f"give every file the same fields, {alone}"
                )
            where, value = _first_other(path, field, kind)
            raise DataError(
                f"{label}: {_shown(path)}: {where}: field '{field}' is {_said(value)}, where "
                f"{_shown(source)}'s is {_described(kind)}: datasets reads a folder's files as "
                f"one table, one type per column, and would {_would(kind, types[field])}; give "
                f"the field one type in every file, {alone}"
            )


def _refuse_encoded_objects(path: str, label: str, alone: str) -> None:
    """The objects of other keys datasets' json builder finds in a folder's first file (a
    message with a "name" beside ones without): it JSON-encodes each object at that place, in
    every file, so each message reached directpo as a string ("message 1 is a string"), of a
    file whose messages are objects. Refused, naming the first row whose keys differ."""
    try:
        from datasets.utils.json import find_mixed_struct_types_field_paths
    except ImportError:  # (a datasets without it JSON-encodes none)
        return
    rows = _first_batch(path)
    if not rows:
        return
    places = find_mixed_struct_types_field_paths([row for _, row in rows])
    if not places:
        return
    place = places[0]
    keys: tuple[str, ...] | None = None
    for where, row in rows:
        for item in _items_at(row, place):
            if not isinstance(item, dict):
                continue
            if keys is None:
                keys, first = tuple(item), where
            elif set(item) != set(keys):
                earlier = "another on that line" if first == where else f"{first}'s"
                raise DataError(
                    f"{label}: {_shown(path)}: {where}: field '{place[0]}': an object of keys "
                    f"({', '.join(item)}), where {earlier} has ({', '.join(keys)}): datasets "
                    f"reads objects of other keys in a folder's first file as JSON text (each "
                    f"such '{place[0]}' object read as a string); give them the same keys, "
                    f"{alone}"
                )


# what of a folder's first JSON Lines file datasets' json builder looks at for objects of
# other keys: its first chunk (JsonConfig.chunksize) and the rest of that chunk's last line
FIRST_BATCH = 10 << 20


def _first_batch(path: str) -> list[tuple[str, Any]] | None:
    """The rows of ``path``'s first chunk, as datasets' json builder reads them for objects of
    other keys (a JSON document or compressed file: all its rows, read whole as it does)."""
    import json

    if not path.lower().endswith((".jsonl", ".ndjson")) or os.path.getsize(path) <= FIRST_BATCH:
        return _rows(path)
    with open(path, "rb") as handle:
        batch = handle.read(FIRST_BATCH) + handle.readline()
    rows = []
    for number, line in enumerate(batch.splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError:
                return None  # (a bad line: said as the file's rows are read)
            if not isinstance(row, dict):
                return None
            rows.append((f"line {number}", row))
    return rows


def _items_at(value: Any, place: list[Any]) -> list[Any]:
    """The values at ``place`` (datasets' field path: a key, or 0 for each item of a list)."""
    if not place:
        return [value]
    step, rest = place[0], place[1:]
    if step == 0 and isinstance(value, list):
        return [found for item in value for found in _items_at(item, rest)]
    if isinstance(value, dict) and step in value:
        return _items_at(value[step], rest)
    return []


def _is_json(path: str) -> bool:
    return rows_ending(path) in (".jsonl", ".ndjson", ".json")


def _cast_keeps(first: Any, later: Any) -> bool:
    """Whether datasets' cast of a later file's column of type ``later`` to the first file's
    ``first`` keeps every value: the same type, a column of nulls (None), a whole number as a
    fraction's (1 as 1.0); within lists and objects of the same keys (in any order: datasets
    casts them by name), each item so (a file's empty lists, list<null>, beside another's
    lists of texts)."""
    import pyarrow as pa

    if later == first or pa.types.is_null(later):  # (an object's keys in another order: cast
        return True  # by name, below)
    if pa.types.is_floating(first) and pa.types.is_integer(later):
        return True
    lists = (pa.types.is_list, pa.types.is_large_list)
    if any(is_list(first) for is_list in lists) and any(is_list(later) for is_list in lists):
        return _cast_keeps(first.value_type, later.value_type)
    if pa.types.is_struct(first) and pa.types.is_struct(later):
        names = [first.field(i).name for i in range(first.num_fields)]
        if sorted(names) != sorted(later.field(i).name for i in range(later.num_fields)):
            return False
        return all(_cast_keeps(first.field(n).type, later.field(n).type) for n in names)
    return False


def _whole_in(path: str, field: str, first: Any, later: Any) -> bool:
    """Whether a later file's fractions of ``field`` (8.0, UltraFeedback's score_chosen) cast
    to the first file's whole numbers unchanged, as datasets casts them (a safe cast: 8.5, a
    NaN or one out of range fails it, naming no file)."""
    import pyarrow as pa

    if not (pa.types.is_integer(first) and pa.types.is_floating(later)):
        return False
    try:
        values = _column(path, field).cast(first, safe=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return False
    return len(values) > 0


def _column(path: str, field: str) -> Any:
    """``path``'s values of ``field`` as one arrow array (a plain JSON Lines file read by
    pyarrow, no Python row objects; any other as directpo reads it)."""
    import pyarrow as pa

    if path.lower().endswith((".jsonl", ".ndjson")):
        import pyarrow.json as paj

        try:
            return paj.read_json(path).column(field)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, KeyError):
            pass
    return pa.array([row.get(field) for _, row in _rows(path) or []], type=pa.float64())


def _would(first: Any, later: Any) -> str:
    import pyarrow as pa

    if pa.types.is_string(first) and (pa.types.is_integer(later) or pa.types.is_floating(later)
                                      or pa.types.is_boolean(later)):  # fmt: skip
        return "train its values as text (5 as '5', true as 'true')"
    return "refuse them in a line that names no file"


def _described(kind: Any) -> str:
    """An arrow type in a message's words: a string, a number, a list of objects (role, ...)."""
    import pyarrow as pa

    if pa.types.is_null(kind):
        return "null in every row"
    if pa.types.is_struct(kind):
        return f"an object ({', '.join(kind.field(i).name for i in range(kind.num_fields))})"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        inner = _described(kind.value_type)
        if inner.startswith("null"):
            return "a list"
        word, _, rest = inner.split(" ", 1)[1].partition(" ")
        return f"a list of {word}s{f' {rest}' if rest else ''}"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "a string"
    if pa.types.is_boolean(kind):
        return "a boolean"
    if pa.types.is_integer(kind):
        return "a whole number"
    if pa.types.is_floating(kind):
        return "a number"
    return str(kind)


def _said(value: Any) -> str:
    """A value as a refusal says it: its kind and, short, itself."""
    import json

    import pyarrow as pa

    if isinstance(value, list | dict):  # (its shape: the messages' keys)
        try:
            return _described(pa.array([value]).type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return kind_of(value)
    shown = json.dumps(value, ensure_ascii=False)
    return kind_of(value) + (f" ({shown})" if len(shown) <= 40 else "")


def _file_types(path: str, label: str, alone: str) -> dict[str, Any] | None:
    """Each top-level field's arrow type in ``path`` alone, or None where directpo's reader
    cannot read it (said as its rows are read); a field whose type changes within the file,
    or a JSON object datasets reads as one row, refused."""
    import pyarrow as pa

    if path.lower().endswith(".parquet"):  # (its types written in it: no row read)
        import pyarrow.parquet as pq

        try:
            if pq.ParquetFile(path).metadata.num_rows == 0:
                return None
            return _types(pq.read_schema(path))
        except (pa.ArrowInvalid, OSError):
            return None  # (said as its rows are read)
    if path.lower().endswith((".jsonl", ".ndjson")):
        import pyarrow.json as paj

        try:
            table = paj.read_json(path)
            return _types(table) if table.num_rows else None  # (no rows: no columns to cast)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
            pass  # (a field of two types, a document, a bad line: read as directpo reads it)
    rows = _rows(path)
    if not rows:  # (unread, said as its rows are read; or of no rows, none to cast)
        return None
    _refuse_one_row_document(path, label, rows)
    try:
        return _types(pa.Table.from_pylist([row for _, row in rows]))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        field, where, value, before = _changed_within(rows)
        if field is None:
            return None  # (no top-level field changes: nested, as datasets reads it)
        raise DataError(
            f"{label}: {_shown(path)}: {where}: field '{field}' is {_said(value)}, where "
            f"{before}'s is {_kind_at(rows, field)}: datasets reads a column of two types as "
            f"JSON text (each of this file's '{field}' values{_encoded(rows, field)}); give "
            f"the field one type, {alone}"
        ) from None


def _encoded(rows: list[tuple[str, Any]], field: str) -> str:
    """How the file's first text of ``field`` would be trained JSON-encoded: ' Sure' as
    '" Sure"' (none where it is too long to show)."""
    import json

    text = next((row[field] for _, row in rows if isinstance(row.get(field), str)), None)
    if text is None:
        return ""
    encoded = json.dumps(text, ensure_ascii=False)
    if len(text) > 24:  # (its start, both ways)
        text, encoded = f"{text[:20]}...", f'{encoded[:21]}..."'
    return f", {text!r} trained as {encoded!r}"


def _types(table: Any) -> dict[str, Any]:
    schema = getattr(table, "schema", table)
    return {field.name: field.type for field in schema}


def _rows(path: str) -> list[tuple[str, Any]] | None:
    """``path``'s rows as directpo reads it alone (objects only), or None where it cannot."""
    from directpo.readers import open_rows

    try:
        rows = list(open_rows(path, path)[0])
    except (DataError, OSError, ValueError):
        return None
    if not all(isinstance(row, dict) for _, row in rows):
        return None  # (a bad row: said with its line as the rows are read)
    return rows


def _refuse_one_row_document(path: str, label: str, rows: list[tuple[str, Any]]) -> None:
    """A JSON object that directpo reads as its rows (columns, rows under a key) and datasets
    as one row: refused, naming the file and the fix."""
    from directpo.json_files import _whole_object

    whole = _whole_object(path)
    if whole is None or [row for _, row in rows] == [whole[0]]:
        return
    raise DataError(
        f"{label}: {_shown(path)}: one JSON object holding {len(rows)} rows (columns, or rows "
        f"under a key), which datasets reads in a folder as one row; write its rows as JSON "
        f"Lines (a row a line), or give it as train_file, read as its rows"
    )


def _changed_within(rows: list[tuple[str, Any]]) -> tuple[Any, str, Any, str]:
    """(field, place, value, the earlier place) of the first row whose field's kind differs
    from an earlier row's (nulls aside), or (None, ...)."""
    seen: dict[str, tuple[str, str]] = {}
    for where, row in rows:
        for field, value in row.items():
            if value is None:
                continue
            kind = kind_of(value)
            before = seen.setdefault(field, (kind, where))
            if before[0] != kind:
                return field, where, value, before[1]
    return None, "", None, ""


def _kind_at(rows: list[tuple[str, Any]], field: str) -> str:
    return next(kind_of(row[field]) for _, row in rows if row.get(field) is not None)


def _first_other(path: str, field: str, kind: Any) -> tuple[str, Any]:
    """The place and value of ``path``'s first row whose ``field`` is not of type ``kind``
    (the first file's), as directpo reads the file alone."""
    import pyarrow as pa

    rows = _rows(path) or []
    for where, row in rows:
        value = row.get(field)
        if value is None and not pa.types.is_null(kind):
            continue
        try:
            pa.array([value], type=kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return where, value
        if pa.types.is_null(kind) or (pa.types.is_string(kind) and not isinstance(value, str)):
            return where, value
    return (rows[0][0] if rows else "line 1"), rows[0][1].get(field) if rows else None


def _shown(path: str) -> str:
    """A file as the user reaches it: from the working directory where it lies under it."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative
