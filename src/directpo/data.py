"""Preference files -> validated (prompt, chosen, rejected) examples.

No tokenizer and no model here: this module reads rows, detects the layout, and checks every
row, so that a bad file fails with one line naming the file, the row and the problem.

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

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from directpo.data_sources import is_path_list, no_rows, source_label
from directpo.errors import DataError
from directpo.messages import (
    Messages,
    Text,
    completion_messages,
    field_value,
    is_message_list,
    message_list,
    plain_text,
    require_encodable,
    split_implicit,
    system_prompt,
    text_field,
    text_or_messages,
)
from directpo.readers import RowError, kind_of, open_rows
from directpo.refusals import SKIP_HINT, RefusedRows, hint_once
from directpo.row_formats import from_openai, is_openai_layout, openai_message, openai_names
from directpo.template_args import joined_args, row_template_kwargs, row_tools
from directpo.unread_columns import (
    SYSTEM_COLUMNS,
    completion_columns,
    other_case,
    refuse_unread_prompt,
    unread_prompt,
    unread_system,
)
from directpo.vision import (
    IMAGE_COLUMNS,
    ImageError,
    image_key,
    image_values,
    inline_images,
    with_image_parts,
)

LAYOUTS = ("explicit", "conversational", "implicit")


@dataclass(frozen=True)
class ImagePrompt:
    """A prompt with what renders it besides its text, for sampling and scoring: its images (a
    vision-language model's) and its row's own chat template arguments (tools,
    chat_template_kwargs), either of which may be empty."""

    prompt: Text
    images: tuple[Any, ...]
    template_args: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """For JSON records: the prompt, and image paths (or a count of in-memory images)."""
        names = [image for image in self.images if isinstance(image, str)]
        return {"prompt": self.prompt, "images": names or len(self.images)}


def prompt_of(prompt: Text | ImagePrompt) -> Text:
    """The text or messages of a prompt, with or without images."""
    return prompt.prompt if isinstance(prompt, ImagePrompt) else prompt


@dataclass(frozen=True)
class PreferenceExample:
    """One validated preference pair. ``prompt`` is a string or a message list."""

    prompt: Text
    chosen: Text
    rejected: Text
    where: str = ""
    tools: list[dict[str, Any]] | None = None  # function schemas for the chat template
    images: tuple[Any, ...] | None = None  # the prompt's images: paths, bytes or PIL images
    chat_template_kwargs: dict[str, Any] | None = None  # the row's own, as TRL reads them
    # the row's other columns than the prompt (an online or eval_generate reward_fn gets them)
    columns: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def template_args(self) -> dict[str, Any] | None:
        """The row's arguments for the chat template: its tools and chat_template_kwargs."""
        return joined_args(self.tools, self.chat_template_kwargs)

    @property
    def full_prompt(self) -> Text | ImagePrompt:
        """The prompt with its images and chat template arguments, if any (what sampling
        needs)."""
        if self.images or self.template_args:
            return ImagePrompt(self.prompt, self.images or (), self.template_args)
        return self.prompt


@dataclass
class PreferenceData:
    examples: list[PreferenceExample]
    layout: str
    source: str
    skipped: Counter[str] = field(default_factory=Counter)
    # a system prompt column left unread, and its rows with text (unread_columns.py)
    unread_system: tuple[str, int] | None = None

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def duplicates(self) -> int:
        """Pairs that repeat an earlier one exactly (kept: a repeat weighs a pair twice).
        Counted once: a large file's texts take seconds to compare."""
        keys = {(_digest(e), _context_key(e)) for e in self.examples}
        return len(self.examples) - len(keys)

    def summary(self) -> str:
        text = f"{self.source}: {counted(len(self.examples), 'pair')}, layout {self.layout}"
        if self.duplicates:
            verb = "repeats" if self.duplicates == 1 else "repeat"
            text += f", {self.duplicates} of them {verb} an earlier pair (kept)"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            text += f"; skipped {counted(sum(self.skipped.values()), 'invalid row')} ({reasons})"
        if self.unread_system:
            name, rows = self.unread_system
            text += (
                f"; column '{name}' is not read: {counted(rows, 'prompt')} "
                f"{'goes' if rows == 1 else 'go'} without the "
                f"system prompt it holds (system_column: {name} makes it their system turn)"
            )
        return text


def counted(number: int, noun: str) -> str:
    """'1 pair', '2 pairs'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _context_key(example: PreferenceExample) -> tuple[Any, ...]:
    """What else makes a pair differ from one with the same texts: its images (paths, a digest
    of bytes, or the PIL object itself) and its chat template arguments."""
    images = tuple(map(image_key, example.images or ()))
    args = example.template_args
    return images, args and json.dumps(args, sort_keys=True, default=str)


def _digest(example: PreferenceExample) -> bytes:
    """A pair's texts or messages as a 16-byte digest: the set of each pair's messages as JSON
    held a second copy of a conversational file's texts while they were counted, at the peak
    of reading it (a text and the messages that would write it differ: JSON quotes one)."""
    pair = json.dumps([example.prompt, example.chosen, example.rejected], default=repr)
    return hashlib.blake2b(pair.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True)
class Columns:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    # a non-default prompt column must exist; the default one may be absent (implicit layout)
    prompt_required: bool = False
    # a column whose text is each prompt's system turn (Intel/orca_dpo_pairs' system)
    system: str | None = None
    # each example keeps its row's other columns (``PreferenceExample.columns``: what a
    # reward_fn is given); False keeps only a system prompt column's, which the start line
    # reads, since the others (HH's whole chosen / rejected conversations, UltraFeedback's
    # ``messages``) held the texts of 100k rows twice or more while they were tokenized
    other_columns: bool = True
    # a source these columns already read (the train file, where this is its eval file): a
    # fix renaming them for this source's headers would refuse that one
    read_by: str | None = None


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
        )
    label = name or source_label(source)
    # each row validated as it is read: a list of a JSON Lines / CSV / Parquet file's raw rows
    # beside their examples held both until the last row was validated
    rows, column_names = open_rows(source, label, lazy=True)
    # image paths are relative to the data file's folder
    base_dir = os.path.dirname(os.path.abspath(source)) if isinstance(source, str) else None
    data = preferences_of_rows(
        rows, column_names, label, columns, skip_invalid_rows, base_dir, max_pairs
    )
    if data is None:
        raise no_rows(label, source)
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
    for where, row in rows:
        seen_any = True
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("not an object", f"expected an object, got {kind_of(row)}")
            if openai is None:
                openai = _is_openai(column_names or list(row), columns)
                column_names = (
                    openai_names(column_names) if openai and column_names else column_names
                )
            if openai:
                row = from_openai(row)
            if layout is None:
                if skip_invalid_rows and column_names is None:
                    _require_fields(row, columns)  # a row's keys, not the file's columns
                layout = _detect_layout(row, columns, column_names or list(row), label, where)
            examples.append(_parse_row(row, layout, columns, f"{label}: {where}", base_dir))
        except RowError as err:
            if not skip_invalid_rows:  # the other rows are checked too (seconds for 100k):
                refused.add(where, openai_message(err.message) if openai else err.message)
            skipped[openai_message(err.reason) if openai else err.reason] += 1
        # (checked after a row, so that no row past the last one taken is read)
        if max_pairs is not None and len(examples) + refused.count >= max_pairs:
            break
    refused.raise_if_any(SKIP_HINT)  # one line of every problem, not one run per bad row
    if not seen_any:
        return None
    if not examples:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.most_common())
        raise DataError(f"{label}: no valid rows ({reasons})")
    assert layout is not None
    if columns.system is not None and layout == "explicit":  # text prompts became turns
        layout = "conversational"
    return PreferenceData(examples, layout, label, skipped, unread_system(examples, columns))


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
        if isinstance(row, RowError):
            raise DataError(f"{label}: {where}: {row.message}")
        if not isinstance(row, dict):
            raise DataError(f"{label}: {where}: expected an object, got {kind_of(row)}")
        empty = False
        yield where, row
    if empty:
        raise no_rows(label, source)


def parse_pair(
    row: dict[str, Any], columns: Columns, where: str, base_dir: str | None = None
) -> PreferenceExample:
    """One preference row in any layout, validated as in training (image paths relative to
    ``base_dir``)."""
    openai = _is_openai(list(row), columns)
    try:
        if openai:
            row = from_openai(row)
        if columns.prompt in row:
            layout = _prompt_layout(row[columns.prompt], row.get(columns.chosen))
        else:
            layout = "implicit"
            refuse_unread_prompt(row, columns, list(row), where)
        return _parse_row(row, layout, columns, where, base_dir)
    except RowError as err:
        said = openai_message(err.message) if openai else err.message
        raise DataError(f"{where}: {said}") from None


# ---------------------------------------------------------------------------------------------
# Validating rows


def _is_openai(names: list[str], columns: Columns) -> bool:
    return is_openai_layout(names, columns.prompt, columns.chosen, columns.rejected)


def _detect_layout(
    row: dict[str, Any], columns: Columns, names: list[str], label: str, where: str
) -> str:
    for key in (columns.chosen, columns.rejected):
        if key not in names:  # TRL's token ids: chosen_input_ids (before 1.0), chosen_ids (1.x)
            ids = [f"{key}{end}" for end in ("_input_ids", "_ids") if f"{key}{end}" in names]
            pair = completion_columns(names, columns.chosen, columns.rejected)
            fix = "set chosen_column / rejected_column"
            fix = f"set chosen_column: {pair[0]}, rejected_column: {pair[1]}" if pair else fix
            prompt = [str(n) for n in names if str(n).lower() == columns.prompt.lower()]
            if pair and columns.prompt not in names and len(prompt) == 1:
                fix += f", prompt_column: {prompt[0]}"
            elif pair and columns.prompt not in names:  # Question beside Chosen: said too
                paired = replace(columns, chosen=pair[0], rejected=pair[1])
                unread = unread_prompt(row, paired, names)
                if unread and unread[1].startswith("set "):
                    fix += ", " + unread[1].removeprefix("set ").replace(" and ", ", ")
            if ids:  # TRL 1.x tokenizes the text too: ids alone would be a KeyError there
                fix = f"'{ids[0]}' holds token ids, but directpo tokenizes the text itself"
            raise DataError(
                f"{label}: column '{key}' not found (columns: {', '.join(map(str, names))}); "
                + _read_by_fix(columns, fix, bool(pair))
            )
    for option, key in (("system_column", columns.system), ("prompt_column", columns.prompt)):
        if key is None or key in names or (key == columns.prompt and not columns.prompt_required):
            continue
        cased = other_case(names, {option: key})  # (a header of another case: Question)
        raise DataError(
            f"{label}: column '{key}' not found (columns: {', '.join(map(str, names))}); "
            + _read_by_fix(columns, f"set {cased[0] if cased else option}", bool(cased))
        )
    if columns.prompt not in names:
        refuse_unread_prompt(row, columns, names, f"{label}: {where}")
        return "implicit"
    prompt = row.get(columns.prompt)
    if isinstance(prompt, list | str) or prompt is None:
        return _prompt_layout(prompt, row.get(columns.chosen))
    raise RowError(
        "wrong type",
        f"field '{columns.prompt}' must be a string or a list of messages, got {kind_of(prompt)}",
    )


def _read_by_fix(columns: Columns, fix: str, named: bool) -> str:
    """``fix`` (column options naming this source's headers), or where the options already
    read another source (an eval file's Chosen beside the train file's chosen) the files'
    headers made one: the options renamed, that source was refused a run later."""
    if columns.read_by is None or not named:
        return fix
    return (
        f"{fix} would read it, but not {columns.read_by}, read with the same column options: "
        "write one file's headers as the other's"
    )


def _require_fields(row: dict[str, Any], columns: Columns) -> None:
    """In a format without a header (JSON Lines), a first row that lacks a pair column is one
    bad row to skip; the layout comes from the next one."""
    names = (columns.prompt,) if columns.prompt_required else ()
    for key in (*names, columns.chosen, columns.rejected):
        if key not in row:
            raise RowError("missing field", f"missing field '{key}'")


def _prompt_layout(prompt: Any, chosen: Any) -> str:
    """A row's layout from its prompt: message lists, or a prompt text whose chosen side is a
    whole conversation (HuggingFaceH4/ultrafeedback_binarized), are conversational."""
    if isinstance(prompt, list) or (is_message_list(chosen) and isinstance(prompt, str)):
        return "conversational"
    return "explicit"


def _parse_row(
    row: dict[str, Any], layout: str, columns: Columns, where: str, base_dir: str | None = None
) -> PreferenceExample:
    for key in (columns.prompt, columns.chosen, columns.rejected, columns.system or "", "tools"):
        require_encodable(row.get(key), key)
    chosen = field_value(row, columns.chosen)
    rejected = field_value(row, columns.rejected)
    if layout == "implicit":
        try:
            prompt, chosen, rejected = split_implicit(
                text_or_messages(chosen, columns.chosen, parts=True),
                text_or_messages(rejected, columns.rejected, parts=True),
            )
        except RowError as err:
            if err.reason != "no shared prompt":
                raise
            raise RowError(  # the likely cause: the prompt is in a column of another name
                err.reason,
                f"{err.message} (with no '{columns.prompt}' column, each must hold the whole "
                "conversation; if another column holds the prompt, set prompt_column)",
            ) from None
        if isinstance(prompt, list):
            chosen = completion_messages(chosen, columns.chosen)
            rejected = completion_messages(rejected, columns.rejected)
    elif layout == "explicit":
        prompt = text_field(field_value(row, columns.prompt), columns.prompt)
        chosen = text_field(chosen, columns.chosen)
        rejected = text_field(rejected, columns.rejected)
    else:
        raw_prompt = field_value(row, columns.prompt)
        if isinstance(raw_prompt, str):
            prompt, chosen, rejected = split_conversations(raw_prompt, chosen, rejected, columns)
        elif isinstance(raw_prompt, list):
            prompt = message_list(raw_prompt, columns.prompt, key_allows_parts=True)
            chosen = completion_messages(chosen, columns.chosen, prompt)
            rejected = completion_messages(rejected, columns.rejected, prompt)
        else:
            raise RowError(
                "wrong type",
                f"field '{columns.prompt}' must be a list of messages "
                f"like the first row's, got {kind_of(raw_prompt)}",
            )
    if columns.system is not None:
        prompt, chosen, rejected = _with_system_turn(
            row, columns, layout, (prompt, chosen, rejected)
        )
    if chosen == rejected:
        raise RowError("identical chosen and rejected", "chosen and rejected are identical")
    tools = row_tools(row.get("tools"), layout)
    template_kwargs = row_template_kwargs(row.get("chat_template_kwargs"), layout)
    # the implicit layout's prompt (and its image parts) is the start of each conversation
    messages = row.get(columns.chosen if layout == "implicit" else columns.prompt)
    images = images_of(row, base_dir, messages)
    if images is not None and isinstance(prompt, list):
        prompt = with_image_parts(prompt, len(images))
    others = {
        key: value
        for key, value in row.items()
        # (a system column of any case: unread_system reads a spreadsheet's System header)
        if key != columns.prompt
        and (columns.other_columns or (isinstance(key, str) and key.lower() in SYSTEM_COLUMNS))
    }
    return PreferenceExample(  # (no columns kept: None, not an empty dict in each of 1M rows)
        prompt, chosen, rejected, where, tools, images, template_kwargs, others or None
    )


def _with_system_turn(
    row: dict[str, Any], columns: Columns, layout: str, pair: tuple[Text, Text, Text]
) -> tuple[Messages, Messages, Messages]:
    """A pair whose prompt opens with the row's system column as the system turn: a text
    prompt becomes the user turn, its completions assistant turns (a chat template renders
    them), so that the system text reaches the model where the model was trained to see it."""
    prompt, chosen, rejected = pair
    assert columns.system is not None
    if layout == "implicit" and isinstance(prompt, str):
        raise RowError(  # "\n\nHuman: ...\n\nAssistant:" is a transcript, not a user turn
            "no prompt for the system turn",
            f"system_column '{columns.system}' needs a prompt column ('{columns.prompt}' is "
            "absent) or conversations: the prompt shared by chosen and rejected texts has no "
            "turns to put a system turn before",
        )
    return (
        system_prompt(row, columns.system, prompt),
        completion_messages(chosen, columns.chosen),
        completion_messages(rejected, columns.rejected),
    )


VIDEO_COLUMNS = ("videos", "video")  # TRL's and transformers' names


def images_of(
    row: dict[str, Any], base_dir: str | None, messages: Any = None
) -> tuple[Any, ...] | None:
    """The row's images: its ``images`` / ``image`` column, or those its prompt's image parts
    carry (TRL's and transformers' ``{"type": "image", "image": ...}``), not both. A
    ``videos`` / ``video`` column is refused: no layout feeds a video to the model, and the row
    trained as text alone (SmolVLM2's and Qwen-VL's processors take videos)."""
    video = next((k for k in VIDEO_COLUMNS if row.get(k) not in (None, [], "")), None)
    if video is not None:
        raise RowError(
            "video",
            f"field '{video}' holds videos, and directpo trains on images only: give frames as "
            "images, or drop the column",
        )
    key = next((k for k in IMAGE_COLUMNS if row.get(k) not in (None, [])), None)
    inline = inline_images(messages)
    if key is not None and inline:
        raise RowError(
            "images given twice",
            f"the prompt's image parts carry images and field '{key}' holds images too; give "
            "them once",
        )
    if key is None and not inline:
        return None
    try:
        return image_values(row[key] if key else inline, base_dir)
    except ImageError as err:
        raise RowError(err.reason, f"field '{key or 'prompt'}': {err.message}") from None


def split_conversations(
    prompt: str, chosen: Any, rejected: Any, columns: Columns
) -> tuple[Messages, Messages, Messages]:
    """A prompt text with chosen and rejected conversations that repeat it (as in
    HuggingFaceH4/ultrafeedback_binarized): the shared leading messages are the prompt, as in
    the implicit layout (TRL's ``maybe_extract_prompt``), since they keep the system turn and
    earlier turns that the text lacks. The text must be one of their user messages, so that a
    mismatched column is refused rather than trained on."""
    text = text_field(prompt, columns.prompt).strip()
    chosen = message_list(chosen, columns.chosen, key_allows_parts=True)
    rejected = message_list(rejected, columns.rejected, key_allows_parts=True)
    first = (chosen[:1] or [{}])[0], (rejected[:1] or [{}])[0]
    if first[0] != first[1] and first[0].get("role") == first[1].get("role") == "assistant":
        raise RowError(  # completions alone: nothing says how the text is a turn
            "prompt mismatch",
            f"field '{columns.prompt}' is text and '{columns.chosen}' / '{columns.rejected}' "
            "are assistant messages: write the prompt as messages too ([{role: user, content: "
            "...}]), or the completions as texts",
        )
    shared, chosen, rejected = split_implicit(chosen, rejected)
    assert isinstance(shared, list)
    users = [plain_text(m["content"]).strip() for m in shared if m["role"] == "user"]
    if text not in users:
        raise RowError(
            "prompt mismatch",
            f"field '{columns.prompt}' is text and '{columns.chosen}' / '{columns.rejected}' are "
            "conversations, but no user message they share is that text",
        )
    return (
        shared,
        completion_messages(chosen, columns.chosen),
        completion_messages(rejected, columns.rejected),
    )
