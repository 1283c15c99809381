"""Preference files -> validated (prompt, chosen, rejected) examples.

No tokenizer and no model here: this module reads rows, detects the layout, and checks every
row, so that a bad file fails with one line naming the file, the row and the problem. Each row
is checked by pair_rows.py; the pair and its set (``PreferenceExample``, ``PreferenceData``,
``Columns``) are preference_pairs.py's, importable from here too.

Layouts (detected from the first row, reported at start):

* ``explicit``: ``prompt``, ``chosen``, ``rejected`` strings.
* ``conversational``: ``prompt`` a list of chat messages (``{"role", "content"}``), ``chosen``
  and ``rejected`` lists of assistant messages (a plain string is taken as one assistant
  message). Rendered later with the tokenizer's chat template.
* ``implicit``: only ``chosen`` and ``rejected``, each a full text or message list that
  repeats the conversation (Anthropic HH style). The longest shared prefix is the prompt, cut
  at a whitespace boundary for text (messages.py says how). A row with a prompt-like column the
  texts lack (``question``, ``instruction``: Intel/orca_dpo_pairs) is refused, naming it.

Completions are assistant turns: message-list completions must start with an assistant message.
Completions that repeat the prompt's messages first (the whole conversation saved in each
column) have them dropped, as TRL's ``maybe_extract_prompt`` does; a string prompt with
``chosen`` / ``rejected`` conversations (HuggingFaceH4/ultrafeedback_binarized) is read as the
implicit message layout, the string being checked against the shared user messages. Text parts
in completions (TRL's vision datasets) are joined; images belong to the prompt. Fields and
messages are checked by messages.py, a row's tools and chat_template_kwargs by
template_args.py; prompt files and rows to score are read by prompts.py.

Formats (read by readers.py): JSON Lines (``.jsonl``/``.ndjson``), JSON (a list of objects,
an object holding one such list, an object of equal-length column lists, or JSON Lines saved as
``.json``), Parquet, CSV (a cell holding a JSON list of messages is decoded), the text
formats compressed (``.jsonl.gz``, ``.json.bz2``, ``.csv.xz``), an Arrow file, a
``datasets.save_to_disk`` folder, or a ``datasets.Dataset`` from Python. Text files may start
with a UTF-8 byte order mark. Row numbers in messages are 1-based: "line N" for line-oriented
files, "row N" otherwise.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from itertools import chain, islice
from typing import Any

from directpo.callers import Spelling, caller
from directpo.data_sources import is_path_list, no_rows, source_label
from directpo.errors import DataError
from directpo.pair_rows import (
    OtherFormat,
    detect_layout,
    images_of,
    is_openai,
    is_rows_document,
    parse_pair,
    parse_row,
    rated_sides,
    rating_tie,
    require_fields,
    split_conversations,
)
from directpo.preference_pairs import (
    LAYOUTS,
    Columns,
    ImagePrompt,
    PreferenceData,
    PreferenceExample,
    counted,
    prompt_of,
    source_kind,
)
from directpo.readers import RowError, kind_of, object_row, open_rows
from directpo.refusals import RefusedRows, hint_once, skip_hint
from directpo.row_formats import from_openai, openai_message, openai_names
from directpo.row_kinds import kto_pairs_note
from directpo.row_places import PlacesMisaligned, forget_files
from directpo.unread_columns import unread_system

# (the names callers and users know as data's: the pair types and the row checks live apart)
__all__ = [
    "LAYOUTS",
    "Columns",
    "ImagePrompt",
    "PreferenceData",
    "PreferenceExample",
    "RowError",
    "counted",
    "images_of",
    "iter_rows",
    "load_preferences",
    "parse_pair",
    "preferences_of_rows",
    "prompt_of",
    "read_rows",
    "split_conversations",
]


def load_preferences(
    source: str | Any,
    columns: Columns = Columns(),
    *,
    skip_invalid_rows: bool = False,
    name: str | None = None,
    max_pairs: int | None = None,
) -> PreferenceData:
    """Read and validate a preference file (path), several files (a list of paths: their
    pairs mixed into one set, in order; each file may have its own layout) or a
    ``datasets.Dataset``. ``max_pairs``: rows are read, as they are iterated, until that many
    pairs are valid (of a stream, or a JSON Lines / CSV / Parquet file: the rest is never read;
    a row skipped as invalid does not count, so a run's steps get the pairs they take)."""
    if is_path_list(source):
        parts: list[PreferenceData] = []
        refused: list[DataError] = []  # every file is read: the second's bad rows said too
        for path in source:
            left = None if max_pairs is None else max_pairs - sum(len(p.examples) for p in parts)
            if left is None or left > 0:
                read = replace(columns, read_by=parts[0].source) if parts else columns
                try:
                    parts.append(load_preferences(path, read, max_pairs=left,
                                                  skip_invalid_rows=skip_invalid_rows))  # fmt: skip
                except DataError as error:
                    refused.append(error)
        if refused:
            if len(refused) == 1:
                raise refused[0]
            raise DataError("; ".join(hint_once([str(error) for error in refused])))
        return PreferenceData(
            [example for part in parts for example in part.examples],
            "+".join(dict.fromkeys(part.layout for part in parts)),
            name or " + ".join(part.source for part in parts),
            sum((part.skipped for part in parts), Counter()),
            unread_system([e for part in parts for e in part.examples], columns),
            sum(part.ties for part in parts),
            next((part.first_tie for part in parts if part.first_tie), None),
            "files" if len(parts) > 1 else "file",
        )
    label = name or source_label(source)
    # each row validated as it is read: a list of a JSON Lines / CSV / Parquet file's raw rows
    # beside their examples held both until the last row was validated
    # image paths are relative to the data file's folder
    base_dir = os.path.dirname(os.path.abspath(source)) if isinstance(source, str) else None
    # a Dataset of local files: its rows said by their files' places, walked beside them (the
    # files were counted first, a pass over each on every load); read to the end (no
    # max_pairs) so that their count is checked, and read again by their places in the whole
    # where it does not add up
    walked = max_pairs is None and not isinstance(source, str)
    try:
        rows, column_names = open_rows(source, label, lazy=True, places_checked_after=walked)
        data = preferences_of_rows(
            rows, column_names, label, columns, skip_invalid_rows, base_dir, max_pairs
        )
    except PlacesMisaligned:
        forget_files(source)
        rows, column_names = open_rows(source, label, lazy=True)
        data = preferences_of_rows(
            rows, column_names, label, columns, skip_invalid_rows, base_dir, max_pairs
        )
    if data is None:
        raise no_rows(label, source)
    data.source_kind = source_kind(source, caller().spelling is Spelling.PYTHON)
    return data


def preferences_of_rows(
    rows: Iterable[tuple[str, Any]],
    column_names: list[str] | None,
    label: str,
    columns: Columns,
    skip_invalid_rows: bool,
    base_dir: str | None,
    max_pairs: int | None = None,
) -> PreferenceData | None:
    """The validated pairs of ``open_rows``' rows (``label``: the source, as messages name it;
    each example's ``where`` is "label: where"); None when there are no rows at all."""
    examples: list[PreferenceExample] = []
    skipped: Counter[str] = Counter()
    layout: str | None = None
    seen_any = False
    refused = RefusedRows(label)  # without skip_invalid_rows: every bad row, said at the end
    openai: bool | None = None  # rows in OpenAI's preference format (row_formats)
    rated: tuple[str, str] | None = None  # the columns rating each side (score_chosen, ...)
    ties = 0  # pairs rated alike (kept as labelled), the first one said
    first_tie: str | None = None
    rows = _Peeked(rows)  # (a row 1 short of a column reads a sample of the rows after it)
    for where, row in rows:
        seen_any = True
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("not an object", f"expected an object, got {kind_of(row)}")
            if openai is None:
                openai = is_openai(column_names or list(row), columns)
                column_names = (
                    openai_names(column_names) if openai and column_names else column_names
                )
            if openai:
                row = from_openai(row)
            if layout is None:
                if skip_invalid_rows and column_names is None:
                    require_fields(row, columns)  # a row's keys, not the file's columns
                try:
                    layout = detect_layout(row, columns, column_names or list(row), label, where)
                except DataError as err:
                    own = column_names is None and not is_rows_document(row)  # (row 1's keys)
                    if own and (said := _others_have(row, rows.peek(), columns)):
                        raise DataError(f"{label}: {where}: {said}") from None
                    if not (isinstance(err, OtherFormat) and err.kto):
                        raise
                    rest = (other for _, other in rows if isinstance(other, dict))
                    raise DataError(f"{err}{kto_pairs_note(chain([row], rest))}") from None
                # row 1 without its prompt made the file's layout implicit: the rows with one
                # were read without it (refused as sharing no prefix, or worse, not); it is a
                # bad row, and the next row gives the layout
                unprompted = column_names is None and columns.prompt not in row
                if (
                    layout == "implicit"
                    and unprompted
                    and (said := _others_have(row, rows.peek(), columns))
                ):
                    layout = None
                    raise RowError("missing field", said)
                rated = rated_sides(column_names or list(row), columns)
            tie = rating_tie(row, rated)
            examples.append(parse_row(row, layout, columns, f"{label}: {where}", base_dir))
            if tie is not None:
                ties, first_tie = ties + 1, first_tie or tie
        except RowError as err:
            if not skip_invalid_rows:  # the other rows are checked too (seconds for 100k):
                refused.add(where, openai_message(err.message) if openai else err.message)
            skipped[openai_message(err.reason) if openai else err.reason] += 1
        # (checked after a row, so that no row past the last one taken is read)
        if max_pairs is not None and len(examples) + refused.count >= max_pairs:
            break
    refused.raise_if_any(skip_hint())  # one line of every problem, not one run per bad row
    if not seen_any:
        return None
    if not examples:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.most_common())
        raise DataError(f"{label}: no valid rows ({reasons})")
    assert layout is not None
    if columns.system is not None and layout == "explicit":  # text prompts became turns
        layout = "conversational"
    return PreferenceData(
        examples, layout, label, skipped, unread_system(examples, columns), ties, first_tie
    )


# the rows after a first row without a pair column read to tell its own defect from the file's
LAYOUT_SAMPLE = 100


class _Peeked(Iterator[tuple[str, Any]]):
    """Rows whose next ``LAYOUT_SAMPLE`` can be read ahead and are still iterated."""

    def __init__(self, rows: Iterable[tuple[str, Any]]) -> None:
        self._rows = iter(rows)
        self._ahead: list[tuple[str, Any]] = []

    def __next__(self) -> tuple[str, Any]:
        return self._ahead.pop(0) if self._ahead else next(self._rows)

    def peek(self) -> list[tuple[str, Any]]:
        self._ahead += islice(self._rows, LAYOUT_SAMPLE - len(self._ahead))
        return self._ahead


def _others_have(
    row: dict[str, Any], others: Iterable[tuple[str, Any]], columns: Columns
) -> str | None:
    """Row 1's own missing field, said as its (or None): the columns of a JSON or JSON Lines
    file are read from its first row (it has no header), so a first row without 'rejected'
    refused the whole file as "column 'rejected' not found (columns: prompt, chosen); set
    chosen_column / rejected_column", and one without 'prompt' read every row as implicit,
    though every other row has it. A bounded sample of the rows after it decides; where none
    of them has the field, the file's own message stands."""
    keys = [key for key in (columns.chosen, columns.rejected, columns.prompt) if key not in row]
    held = [other for _, other in others if isinstance(other, dict)]
    missing = [key for key in keys if any(key in other for other in held)]
    if not missing:
        return None
    fields = ", ".join(f"'{key}'" for key in missing)
    noun, them = ("field", "it") if len(missing) == 1 else ("fields", "them")
    return f"no {noun} {fields} (the other rows have {them})"


def read_rows(source: str | Any, name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every row of a file (or Dataset) as (where, row); any unreadable row is a DataError."""
    return list(iter_rows(source, name))


def iter_rows(source: str | Any, name: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """``read_rows``' rows one at a time, read as they are iterated: a JSON Lines, CSV or
    Parquet file of any size is never held whole."""
    label = name or source_label(source)
    rows, _ = open_rows(source, label, lazy=True)
    empty = True
    for where, row in rows:
        row = object_row(label, where, row)
        empty = False
        yield where, row
    if empty:
        raise no_rows(label, source)
