"""One preference row -> a validated ``PreferenceExample``: its layout detected (from a source's
first row), its fields and messages checked, a system column made the system turn, its images
found. data.py's layouts and rules apply (its docstring says them); data.py reads the rows."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from directpo.callers import spell_setting
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
    require_said,
    split_implicit,
    system_prompt,
    text_field,
    text_or_messages,
)
from directpo.preference_pairs import Columns, PreferenceExample
from directpo.readers import CellMessages, RowError, as_written, kind_of
from directpo.row_formats import from_openai, is_openai_layout, openai_message
from directpo.row_kinds import other_format, splits_said
from directpo.template_args import row_template_kwargs, row_tools
from directpo.unread_columns import (
    SYSTEM_COLUMNS,
    SYSTEM_TURN,
    completion_columns,
    other_case,
    refuse_unread_prompt,
    unread_prompt_settings,
)
from directpo.vision import (
    IMAGE_COLUMNS,
    ImageError,
    image_values,
    inline_images,
    with_image_parts,
)


class OtherFormat(DataError):
    """A file of another trainer's format (row_kinds); ``kto``: TRL's unpaired KTO rows, whose
    refusal data.py completes with whether pairs can be written from them."""

    def __init__(self, message: str, kto: bool) -> None:
        super().__init__(message)
        self.kto = kto


def parse_pair(
    row: dict[str, Any], columns: Columns, where: str, base_dir: str | None = None
) -> PreferenceExample:
    """One preference row in any layout, validated as in training (image paths relative to
    ``base_dir``)."""
    openai = is_openai(list(row), columns)
    try:
        if openai:
            row = from_openai(row)
        if columns.prompt in row:
            layout = prompt_layout(
                row[columns.prompt], row.get(columns.chosen), row.get(columns.rejected)
            )
        else:
            layout = "implicit"
            refuse_unread_prompt(row, columns, list(row), where)
        return parse_row(row, layout, columns, where, base_dir)
    except RowError as err:
        said = openai_message(err.message) if openai else err.message
        raise DataError(f"{where}: {said}") from None


def is_openai(names: list[str], columns: Columns) -> bool:
    return is_openai_layout(names, columns.prompt, columns.chosen, columns.rejected)


def detect_layout(
    row: dict[str, Any], columns: Columns, names: list[str], label: str, where: str
) -> str:
    for key in (columns.chosen, columns.rejected):
        if key not in names:  # TRL's token ids: chosen_input_ids (before 1.0), chosen_ids (1.x)
            ids = [f"{key}{end}" for end in ("_input_ids", "_ids") if f"{key}{end}" in names]
            pair = completion_columns(names, columns.chosen, columns.rejected)
            fix = spell_setting("chosen_column", "rejected_column", last=" / ")
            settings = [("chosen_column", pair[0]), ("rejected_column", pair[1])] if pair else []
            prompt = [str(n) for n in names if str(n).lower() == columns.prompt.lower()]
            if pair and columns.prompt not in names and len(prompt) == 1:
                settings.append(("prompt_column", prompt[0]))
            elif pair and columns.prompt not in names:  # Question beside Chosen: said too
                paired = replace(columns, chosen=pair[0], rejected=pair[1])
                unread = unread_prompt_settings(row, paired, names)
                if unread and unread[1][:1] and unread[1][0][0] == "prompt_column":
                    settings += unread[1]
            fix = spell_setting(*settings) if settings else fix
            fix += SYSTEM_TURN if any(name == "system_column" for name, _ in settings) else ""
            if ids:  # TRL 1.x tokenizes the text too: ids alone would be a KeyError there
                fix = f"'{ids[0]}' holds token ids, but directpo tokenizes the text itself"
            elif pair is None and (kind := other_format(names, columns.prompt)) is not None:
                # another trainer's file (KTO, SFT, GRPO): no column option would read it
                raise OtherFormat(f"{label}: {kind}", kto="KTOTrainer" in kind)
            elif pair is None and len(names) > 1 and all(map(_rows_list, row.values())):
                # a dataset folder's {"train": [rows], "test": [rows]}: datasets' one row
                folder = os.path.isdir(label.split("[")[0])
                raise DataError(f"{label}: {splits_said(', '.join(map(str, names)), folder)}")
            elif pair is None and where.startswith("line ") and is_rows_document(row):
                # {"data": [rows]} on line 1 of rows a line: no reader takes both shapes
                raise DataError(f"{label}: {where}: {rows_document_said(row)}")
            raise DataError(
                f"{label}: column '{key}' not found (columns: {', '.join(map(str, names))}); "
                + _read_by_fix(columns, fix, bool(pair))
            )
    for option, key in (("system_column", columns.system), ("prompt_column", columns.prompt)):
        if key is None or key in names or (key == columns.prompt and not columns.prompt_required):
            continue
        cased = other_case(names, {option: key})  # (a header of another case: Question)
        if not cased and option == "prompt_column" and "prompt" in names:
            cased = [(option, "prompt")]  # the default column beside another given: named
        raise DataError(
            f"{label}: column '{key}' not found (columns: {', '.join(map(str, names))}); "
            + _read_by_fix(columns, spell_setting(cased[0] if cased else option), bool(cased))
        )
    if columns.prompt not in names:
        refuse_unread_prompt(row, columns, names, f"{label}: {where}")
        return "implicit"
    prompt = row.get(columns.prompt)
    if isinstance(prompt, list | str) or prompt is None:
        return prompt_layout(prompt, row.get(columns.chosen), row.get(columns.rejected))
    raise RowError(
        "wrong type",
        f"field '{columns.prompt}' must be a string or a list of messages, got {kind_of(prompt)}",
    )


def is_rows_document(row: dict[str, Any]) -> bool:
    """An object of one key listing row objects (``{"data": [rows]}``), not a row."""
    return len(row) == 1 and _rows_list(next(iter(row.values())))


def rows_document_said(row: dict[str, Any]) -> str:
    """What an ``is_rows_document`` row of a JSON Lines file is, and what to do with it."""
    name, rows = next(iter(row.items()))
    return (
        f"a JSON document of rows ('{name}' lists {_rows_count(rows)}) inside a JSON Lines "
        "file, whose every line is one row; split it out into a .json file of its own, or "
        "write its rows one a line"
    )


def _rows_count(rows: list[Any]) -> str:
    return f"{len(rows)} row" + ("" if len(rows) == 1 else "s")


def _rows_list(value: Any) -> bool:
    """A list of row objects (a split's rows)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


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


def require_fields(row: dict[str, Any], columns: Columns) -> None:
    """In a format without a header (JSON Lines), a first row that lacks a pair column is one
    bad row to skip; the layout comes from the next one."""
    names = (columns.prompt,) if columns.prompt_required else ()
    for key in (*names, columns.chosen, columns.rejected):
        if key not in row:
            raise RowError("missing field", f"missing field '{key}'")


def prompt_layout(prompt: Any, chosen: Any, rejected: Any = None) -> str:
    """A row's layout from its prompt: message lists, or a prompt text whose chosen side is a
    whole conversation (HuggingFaceH4/ultrafeedback_binarized), are conversational. A CSV
    cell's messages (a code answer that is their JSON) beside a text prompt and a text
    rejected reply are text: the row was refused ('field 'rejected' must be a list')."""
    text_reply = isinstance(chosen, CellMessages) and not is_message_list(rejected)
    if isinstance(prompt, list) or (
        is_message_list(chosen) and isinstance(prompt, str) and not text_reply
    ):
        return "conversational"
    return "explicit"


def parse_row(
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
            # the likely cause: the prompt is in a column of another name, named where one
            # other column holds messages (LLaMA-Factory's and ShareGPT's 'conversations')
            held = [
                key
                for key, value in row.items()
                if key not in (columns.chosen, columns.rejected) and is_message_list(value)
            ]
            fix = spell_setting(("prompt_column", held[0])) if len(held) == 1 else ""
            raise RowError(
                err.reason,
                f"{err.message} (with no '{columns.prompt}' column, each must hold the whole "
                + (
                    f"conversation; column '{held[0]}' holds messages: {fix})"
                    if fix
                    else "conversation; if another column holds the prompt, "
                    f"{spell_setting('prompt_column')})"  # (as the caller sets options)
                ),
            ) from None
        if isinstance(prompt, list):
            chosen = completion_messages(chosen, columns.chosen)
            rejected = completion_messages(rejected, columns.rejected)
    elif layout == "explicit":
        # (a CSV cell that reads as messages, a reply that is their JSON, is text in a file of
        # text: it was refused as 'must be a string, got a list')
        # A row whose prompt cell is messages too is a conversation, not a code answer: it is
        # refused as a JSON Lines file's would be ('must be a string, got a list'), where it
        # trained on its cells' JSON text after a first row of text
        raw_prompt = field_value(row, columns.prompt)
        written = (lambda value: value) if isinstance(raw_prompt, CellMessages) else as_written
        prompt = text_field(written(raw_prompt), columns.prompt)
        chosen = text_field(written(chosen), columns.chosen)
        rejected = text_field(written(rejected), columns.rejected)
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
    shared = f"the prompt (the turns '{columns.chosen}' and '{columns.rejected}' share)"
    require_said(prompt, shared if layout == "implicit" else f"field '{columns.prompt}'")
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


# the columns in which well-known datasets rate each side (UltraFeedback-binarized's
# score_chosen, Argilla / distilabel's chosen_rating, ...), higher the better; {side} is the
# chosen or rejected column's name
RATING_FORMS = ("{side}_rating", "{side}-rating", "{side}_score", "{side}-score", "score_{side}")


def rated_sides(names: Iterable[Any], columns: Columns) -> tuple[str, str] | None:
    """The (chosen's, rejected's) rating columns among ``names``, where both are there."""
    present = set(names)
    for form in RATING_FORMS:
        pair = (form.format(side=columns.chosen), form.format(side=columns.rejected))
        if pair[0] in present and pair[1] in present:
            return pair
    return None


def rating_tie(row: dict[str, Any], rated: tuple[str, str] | None) -> str | None:
    """The row's tie, said (``score_chosen 4.0 = score_rejected 4.0``), where its own ratings
    rate both replies alike; a rejected reply rated higher is a row's error.

    A tie is trained as labelled (its place in the chosen column is the preference), as TRL
    and the alignment handbook train UltraFeedback-binarized's ties, and counted in the data
    line; a rejected reply rated higher would be trained as the worse one, so it is refused."""
    if rated is None:
        return None
    chosen, rejected = (_rating(row.get(name)) for name in rated)
    if chosen is None or rejected is None or chosen > rejected:
        return None
    if chosen == rejected:
        return f"{rated[0]} {row[rated[0]]} = {rated[1]} {row[rated[1]]}"
    raise RowError(
        "rejected rated higher",
        f"{rated[0]} {row[rated[0]]} and {rated[1]} {row[rated[1]]}: the rejected reply is "
        "rated higher, so it would be trained as the worse one (chosen and rejected swapped? "
        "to train it as labelled, rename the rating columns)",
    )


def _rating(value: Any) -> float | None:
    """A rating as a number (a CSV's text too); None where there is none (null, NaN, text)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number  # (NaN: no rating)
