"""The rows of a JSON Lines file (a line each) and of a JSON document (a list of rows, an
object holding one, or columns), a JSON list decoded a row at a time; readers.open_rows opens
them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from typing import Any

from directpo.data_text import RowError, is_dict, kind_of, not_utf8, open_text
from directpo.errors import DataError


def jsonl_rows(path: str) -> Iterator[tuple[str, Any]]:
    with open_text(path, errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if (bad := not_utf8(line)) is not None:
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


def json_rows(path: str, label: str) -> Iterable[tuple[str, Any]]:
    if starts_a_list(path):  # the common shape: a row at a time
        return _json_list_rows(path, label)
    return _json_document_rows(path, label)


JSON_CHUNK = 1 << 20  # characters of a .json list read at a time
JSON_SPACE = " \t\r\n"


def starts_a_list(path: str) -> bool:
    with open_text(path) as handle:
        return handle.read(4096).lstrip(JSON_SPACE).startswith("[")


def holds_a_json_list(path: str) -> bool:
    """A .jsonl file that holds one JSON list of rows (Anthropic's red_team_attempts.jsonl.gz,
    json.dump's rows), whose every line was "invalid JSON": it is read as a list, as datasets'
    json builder reads it. (A JSON Lines row is an object, so no such file opens with "[{";
    one whose first line is a whole list followed by more lines, a conversation a line, stays
    JSON Lines, each row said to be a list; one a line longer than a chunk is told by its end.)
    A pretty-printed object ('{' its first line: {"rows": [...]}) is one JSON document too."""
    # (bytes that are not UTF-8 are a line's problem in JSON Lines, said with its number)
    with open_text(path, errors="replace") as handle:
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
        whole = isinstance(json_or_none(first), list) if first is end else end.rstrip()[-1:] == "]"
        return not (whole and next(lines, None) is not None)


# the columns a row of pairs, prompts or responses holds under its usual names: a one-line
# object holding rows with them, and none itself, is the rows' document, not a row
ROW_WORDS = ("prompt", "chosen", "rejected", "response", "responses", "completion", "messages")
DOCUMENT_READ_LIMIT = 1 << 29  # bytes of a .jsonl read whole to tell it is one JSON document


def json_document(path: str) -> dict[str, Any] | None:
    """The JSON object a .jsonl file holds whole, where its one list holds the rows
    (``{"data": [...]}``, json.dump's, read by datasets with ``field="data"``), else None: it
    was read as one row of a column 'data' ("column 'chosen' not found"), or, pretty-printed,
    each line "invalid JSON". Its rows are the .json file's of that shape (``document_rows``),
    from this one read (a pretty-printed file was read whole twice: to tell, then for its
    rows). A one-line object that is a row (its own pair columns, or a column of objects such
    as its tools) stays a row."""
    read = _whole_object(path)
    if read is None:
        return None
    data, one_line = read
    if _viewer_rows(data) is not None:  # (the dataset viewer's /rows answer saved as .jsonl)
        return data
    if _empty_document(data, one_line):
        return data
    return data if _holds_one_list_of_rows(data, one_line) else None


def _whole_object(path: str) -> tuple[dict[str, Any], bool] | None:
    """(the JSON object ``path`` holds whole, whether it is on one line), or None where the
    file is JSON Lines (a second line after a first whole one), does not hold an object, or
    is too large to read whole to tell."""
    with open_text(path, errors="replace") as handle:
        lines = (line for line in iter(lambda: handle.readline(JSON_CHUNK), "") if line.strip())
        first = next(lines, "")
        data = json_or_none(first)
        one_line = isinstance(data, dict)
        long_line = _opens_a_long_object(first)
        if not one_line and long_line:
            _skip_to_line_end(handle)
        if (one_line or long_line) and next(lines, None) is not None:  # JSON Lines: a row a line
            return None
        if not one_line:  # (a pretty-printed object, or one long line: no JSON in one chunk)
            data = _object_read_whole(path, handle, first)
            one_line = long_line
    return (data, one_line) if isinstance(data, dict) else None


def _opens_a_long_object(first: str) -> bool:
    """A first line longer than a chunk that opens an object (a row holding an image's bytes,
    a long tool): it was taken for a pretty-printed object's, so a file of one such row was
    read as the rows of its one list of objects (each image a row: "missing field 'prompt'"),
    and a JSON Lines file's first long line had the whole file read to tell it is not one
    document."""
    return not first.endswith("\n") and first.lstrip(JSON_SPACE)[:1] == "{"


def _skip_to_line_end(handle: Any) -> None:
    """Reads on to the end of the current line, a chunk at a time (the line never held)."""
    while (more := handle.readline(JSON_CHUNK)) and not more.endswith("\n"):
        pass


def _object_read_whole(path: str, handle: Any, first: str) -> Any:
    """The whole file decoded (None where it is not JSON), where its first line opens an
    object and the file is small enough to read whole; else None."""
    if first.lstrip(JSON_SPACE)[:1] != "{" or os.path.getsize(path) > DOCUMENT_READ_LIMIT:
        return None
    handle.seek(0)
    return json_or_none(handle.read())


def _empty_document(data: dict[str, Any], one_line: bool) -> bool:
    """{"data": []}: no rows, as the .json file says (not "column not found")."""
    return one_line and list(data.values()) == [[]] and not any(word in data for word in ROW_WORDS)


def _holds_one_list_of_rows(data: dict[str, Any], one_line: bool) -> bool:
    """``data`` holds one list of row objects (not of a row's messages, {"role": ...,
    "content": ...}); a one-line object that is a row itself (its pair columns, or a column
    of objects that are not rows, such as its tools) does not."""
    held = [
        value
        for value in data.values()
        if isinstance(value, list) and value and all(is_dict(v) and "role" not in v for v in value)
    ]
    if one_line and (
        any(word in data for word in ROW_WORDS) or not any(_rows_of(data, v) for v in held)
    ):
        return False
    return len(held) == 1


def _rows_of(holder: dict[str, Any], listed: list[dict[str, Any]]) -> bool:
    """Objects that are rows: one holding two of the ``ROW_WORDS`` (a pair), or each holding a
    prompt (a prompts file's, for generate --input or eval_prompts_file: one word a row). A
    custom column's objects with a 'response' key stay a row's, and so do objects with a
    prompt held by an object of two or more texts: a row of columns named otherwise
    (prompt_column: question, chosen_column: good, ...) whose extra column 'data' lists them
    was read as that list's rows ("column 'good' not found (columns: prompt)"); a document's
    own texts are one at most ({"version": "2.0", "data": [...]})."""
    if any(sum(word in row for word in ROW_WORDS) >= 2 for row in listed):
        return True
    texts = sum(isinstance(value, str) for value in holder.values())
    return texts < 2 and all(
        "prompt" in row or isinstance(row.get("messages"), list) for row in listed
    )


def document_rows(data: dict[str, Any], label: str) -> list[tuple[str, Any]]:
    """The rows of a JSON object read whole (``json_document``'s)."""
    return [(f"row {i}", row) for i, row in enumerate(_json_table(data, label), start=1)]


def _json_list_rows(path: str, label: str) -> Iterator[tuple[str, Any]]:
    """The rows of a .json file holding one list, each decoded as it is reached: the whole
    text (4 bytes a character once one emoji is in it) and every row were held at once, 10x a
    2 GB file. Where the text is not one well-formed list, the rest comes from the whole
    read, which says the error and its line as it always has."""
    decoder = json.JSONDecoder()
    number = 0
    with open_text(path) as handle:
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
    with open_text(path) as handle:
        text = handle.read()
    if not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        first_line = text.lstrip().split("\n", 1)[0]
        if exc.msg == "Extra data" and isinstance(json_or_none(first_line), dict):
            return list(jsonl_rows(path))  # JSON Lines saved as .json (datasets' to_json)
        problem = json_problem(exc)
        if exc.msg == "Extra data":
            problem = f"more text after the end of the JSON value, at column {exc.colno}"
            if text[exc.pos] == "{" and text.lstrip()[:1] == "{":  # (jq's output: no reader's)
                problem += "; it holds objects one after another, each over several lines (as "
                problem += "jq prints them): write one object a line (jq -c .)"
        raise DataError(f"{label}: line {exc.lineno}: invalid JSON ({problem})") from None
    return document_rows(data, label)


def _viewer_rows(data: dict[str, Any]) -> list[Any] | None:
    """The rows of a Hugging Face dataset viewer's ``/rows`` answer saved as a .json file
    (``{"features": [...], "rows": [{"row_idx": 0, "row": {...}, "truncated_cells": []}]}``),
    what a user downloading a page from the viewer's API has; None for any other object. It
    was refused as "holds 2 lists of rows (features, rows)", though its rows are pairs: each
    is read from its "row". A row whose cells the viewer cut short (``truncated_cells``: it
    truncates long cells) is refused as such, never trained on as half a reply."""
    listed = data.get("rows")
    if not isinstance(listed, list) or not listed:
        return None
    if not all(is_dict(item) and "row_idx" in item and is_dict(item.get("row")) for item in listed):
        return None
    rows: list[Any] = []
    for item in listed:
        cut = item.get("truncated_cells") or []
        if cut:
            names = ", ".join(f"'{name}'" for name in cut)
            rows.append(
                RowError(
                    "truncated by the dataset viewer",
                    f"the dataset viewer cut its cells {names} short (truncated_cells); "
                    "download the dataset's own files (its parquet export) instead",
                )
            )
        else:
            rows.append(item["row"])
    return rows


def json_or_none(text: str) -> Any:
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
    if (viewer := _viewer_rows(data)) is not None:
        return viewer
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
