"""Prompts and responses outside preference pairs: prompt files (online DPO, ``generate``,
``eval_generate``), rows to score or rank, and prompts given from Python; each checked as a
pair's fields are (messages.py), with its images (vision.py)."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from directpo.callers import spell_option, spell_setting
from directpo.data import iter_rows
from directpo.data_sources import is_path_list, no_rows, source_label
from directpo.errors import ConfigError, DataError
from directpo.messages import (
    Text,
    completion_messages,
    field_value,
    is_message_list,
    require_said,
    split_implicit,
    system_prompt,
    text_field,
    text_or_messages,
)
from directpo.pair_rows import images_of, split_conversations
from directpo.preference_pairs import Columns, ImagePrompt, counted
from directpo.readers import RowError, object_row, open_rows
from directpo.refusals import RefusedRows
from directpo.row_formats import from_openai, is_openai_layout, openai_message
from directpo.template_args import row_template_args
from directpo.unread_columns import (
    PROMPT_LIKE_COLUMNS,
    lacks_system,
    other_case,
    refuse_unread_prompt,
    system_column_of,
)
from directpo.vision import IMAGE_COLUMNS, image_key, with_image_parts

Item = TypeVar("Item")


def first_row_fields(source: str) -> set[str]:
    """The fields of a file's first readable row (a command's input): which of its column
    names the file uses, read without reading the rest (a bad first row is said with the
    others, by ``check_every_row``)."""
    rows, _ = open_rows(source, source_label(source), lazy=True)
    for _, row in rows:
        if isinstance(row, dict):
            return set(row)
    return set()


def valid_rows(
    source: Any, parse: Callable[[str, dict[str, Any]], Item], refused: RefusedRows | _InOrder
) -> Iterator[tuple[str, dict[str, Any], Item]]:
    """(where, row, ``parse(label, row)``) of each row of ``source`` that parses, read as
    iterated; each row that does not (unreadable, not an object, or ``parse``'s DataError) is
    added to ``refused`` with its problem and passed over, so that one pass names every bad
    row (``refused.raise_if_any()`` says them)."""
    label = source_label(source)
    rows, _ = open_rows(source, label, lazy=True)
    for where, row in rows:
        try:
            item = parse(f"{label}: {where}", object_row(label, where, row))
        except DataError as err:  # (its text names the row: the problem is what follows)
            refused.add(where, str(err).removeprefix(f"{label}: {where}: "))
            continue
        yield where, row, item


# rows whose parsed items ``check_every_row`` hands its ``check_many`` at once
CHECKED_TOGETHER = 128


def check_every_row(
    source: str,
    parse: Callable[[str, dict[str, Any]], Any],
    also: str | None = None,
    check_many: Callable[[list[tuple[str, Any]]], list[str | None]] | None = None,
) -> int:
    """How many rows ``source`` has, each checked by ``parse`` before any model loads (score,
    rank and generate); every bad row said in one DataError (the commands write a row for
    each input row: a bad one is refused, not skipped). ``also``: a problem of the command's
    options found before (score's missing beta), said first in the same line, so that one run
    says both (the rows were checked, then the option refused: two runs). ``check_many``: a
    second check of the parsed items, given (label, item) of up to ``CHECKED_TOGETHER`` rows
    at a time (one tokenizer call for them), which returns each one's problem or None."""
    refused = RefusedRows(source_label(source))
    try:
        if check_many is None:
            count = sum(1 for _ in valid_rows(source, parse, refused))
        else:
            count = _checked_together(source, parse, check_many, refused)
        refused.raise_if_any()
        if not count:
            raise no_rows(source_label(source), source)
    except DataError as error:
        if also is not None:
            raise DataError(f"{also}; {error}") from None
        raise
    if also is not None:
        raise ConfigError(also)
    return count


class _InOrder:
    """The rows of one batch in the file's order, one list of (place, item, problem): a row
    that parsed (its item, problem None) or one ``parse`` refused (item None, its problem).
    When ``CHECKED_TOGETHER`` items wait, or as many refusals, the batch is checked: the
    items by one ``check_many`` call, then every refusal (``parse``'s or ``check_many``'s)
    given to ``refused`` in the list's order, so a row ``check_many`` refuses is said where it
    is, not after the later rows of its batch that ``parse`` refused; and a file of a million
    rows that ``parse`` refuses after one that parsed (a wrong prompt_column's) is not held
    whole. A refusal with no item before it is said at once."""

    def __init__(
        self,
        refused: RefusedRows,
        check_many: Callable[[list[tuple[str, Any]]], list[str | None]],
        label: str,
    ):
        self.refused = refused
        self.check_many = check_many
        self.label = label
        self.held: list[tuple[str, Any, str | None]] = []
        self.items = 0  # of ``held``: the rows that parsed
        self.passed = 0  # rows that passed both checks

    def add(self, where: str, problem: str) -> None:
        """A row ``parse`` refused (``valid_rows`` adds it as to ``RefusedRows``)."""
        if not self.items:  # (no row before it waits: said now)
            self.refused.add(where, problem)
            return
        self.held.append((where, None, problem))
        if len(self.held) - self.items >= CHECKED_TOGETHER:
            self.check()

    def add_item(self, where: str, item: Any) -> None:
        """A row that parsed, checked with its batch."""
        self.held.append((where, item, None))
        self.items += 1
        if self.items >= CHECKED_TOGETHER:
            self.check()

    def check(self) -> None:
        """The held items checked in one ``check_many`` call, every refusal said in order."""
        items = [
            (f"{self.label}: {at}", item) for at, item, problem in self.held if problem is None
        ]
        checked = self.check_many(items) if items else []
        if len(checked) != len(items):
            raise ValueError(f"check_many said {len(checked)} problems of {len(items)} rows")
        problems = iter(checked)
        for where, _, problem in self.held:
            if problem is None and (problem := next(problems)) is None:
                self.passed += 1
            else:
                self.refused.add(where, problem)
        self.held.clear()
        self.items = 0


def _checked_together(
    source: str,
    parse: Callable[[str, dict[str, Any]], Any],
    check_many: Callable[[list[tuple[str, Any]]], list[str | None]],
    refused: RefusedRows,
) -> int:
    """``valid_rows``' count of the rows that also pass ``check_many``, called on batches of
    ``CHECKED_TOGETHER`` parsed rows; the refused rows said in the file's order."""
    in_order = _InOrder(refused, check_many, source_label(source))
    for where, _, item in valid_rows(source, parse, in_order):  # (it adds as RefusedRows does)
        in_order.add_item(where, item)
    in_order.check()
    return in_order.passed


def parse_prompt_and_responses(
    row: dict[str, Any],
    prompt_column: str,
    response_column: str,
    where: str,
    system_column: str | None = None,
) -> tuple[Text, list[Text]]:
    """A prompt and one response or a list of responses (texts, or message lists). The prompt
    is read as generate reads it (``_row_prompt``): rank said "missing field 'prompt'" of every
    row generate wrote for an Anthropic HH file, whose prompts it had sampled from."""
    row = _own_columns(row, prompt_column, where)
    prompt = _row_prompt(row, prompt_column, system_column, where, parts=True)
    try:
        value = field_value(row, response_column)
        many = isinstance(value, list) and not (value and isinstance(value[0], dict))
        values = value if many else [value]
        if not values:
            raise RowError("empty field", f"field '{response_column}' is an empty list")
        responses = [_scored_response(prompt, v, response_column) for v in values]
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None
    return prompt, responses


def parse_scored(prompt: Any, response: Any, where: str) -> tuple[Text, Text]:
    """A prompt and one response given from Python (``ImplicitReward.score``), checked as a
    file row's are."""
    try:
        prompt = text_or_messages(field_value({"prompt": prompt}, "prompt"), "prompt", parts=True)
        return prompt, _scored_response(prompt, response, "response")
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def _scored_response(prompt: Text, response: Any, key: str) -> Text:
    """A response to score: a text, or messages (a text reply to a conversation is the
    assistant's message). An empty text is scored too, in a file as from Python: a sample may
    stop at once (directpo generate writes it), and a file of them was refused for it."""
    if isinstance(response, str) and not response.strip():
        return response if isinstance(prompt, str) else [{"role": "assistant", "content": response}]
    if isinstance(prompt, list):
        return completion_messages(response, key, prompt)
    return text_field(response, key)


def row_images(
    row: dict[str, Any], where: str, base_dir: str | None = None, prompt_column: str = "prompt"
) -> tuple[Any, ...] | None:
    """The images of a scoring or generation row (``images`` / ``image``, or its prompt's
    image parts), or None."""
    try:
        return images_of(row, base_dir, row.get(prompt_column))
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def with_images(prompt: Text, images: tuple[Any, ...] | None) -> Text:
    """A conversational prompt gets its images' parts (TRL's convention); text is unchanged."""
    if images is None or isinstance(prompt, str):
        return prompt
    return with_image_parts(prompt, len(images))


def parse_prompt(
    row: dict[str, Any], prompt_column: str, where: str, system_column: str | None = None
) -> Text | ImagePrompt:
    """A row's prompt; with the row's tools or chat_template_kwargs, an ``ImagePrompt``."""
    row = _own_columns(row, prompt_column, where)
    prompt = _row_prompt(row, prompt_column, system_column, where, parts=False)
    args = template_args_of(row, prompt, where)
    return ImagePrompt(prompt, (), args) if args else prompt


def _own_columns(row: dict[str, Any], prompt_column: str, where: str) -> dict[str, Any]:
    """A pairs row in OpenAI's preference format as directpo's columns (row_formats): its
    prompt is ``input.messages``, with ``input.tools``, as training reads it; a prompt file
    or a pairs file given to generate said it had no 'prompt'."""
    if not is_openai_layout(list(row), prompt_column, "chosen", "rejected"):
        return row
    try:
        return from_openai(row)
    except RowError as err:
        raise DataError(f"{where}: {openai_message(err.message)}") from None


def _row_prompt(
    row: dict[str, Any], prompt_column: str, system_column: str | None, where: str, parts: bool
) -> Text:
    """A prompt row's prompt, read as a pair row's is: its conversation's shared turns, and the
    system column's text as its system turn."""
    try:
        if prompt_column == "prompt" and prompt_column not in row and _is_pair(row):
            prompt = _implicit_prompt(row, where)
            said = "the prompt (the turns 'chosen' and 'rejected' share)"
        else:
            prompt = text_or_messages(field_value(row, prompt_column), prompt_column, parts=parts)
            prompt = _conversation_prompt(row, prompt_column, prompt)
            said = f"field '{prompt_column}'"
        if not any(row.get(key) for key in IMAGE_COLUMNS):  # (an image prompt's pictures)
            require_said(prompt, said)
        if system_column is not None:
            prompt = system_prompt(row, system_column, prompt)
    except RowError as err:
        cased = other_case(row, {"prompt_column": prompt_column, "system_column": system_column})
        fix = f"; its columns are named in another case: {spell_setting(*cased)}" if cased else ""
        fix = fix or _prompt_like(row, prompt_column, where)
        raise DataError(f"{where}: {err.message}{fix}") from None
    return prompt


def _prompt_like(row: dict[str, Any], prompt_column: str, where: str) -> str:
    """A missing prompt column's fix where the row holds the prompt under a well-known name
    (a question / instruction column): "missing field 'prompt'" alone did not say which."""
    if prompt_column in row:
        return ""
    from directpo.pair_rows import is_rows_document, rows_document_said

    if is_rows_document(row) and ": line " in where:  # ({"data": [rows]} on a JSON Lines line)
        return f"; it is {rows_document_said(row)}"
    named = {name.lower(): name for name in row if isinstance(name, str)}
    # the default name too: rank / generate --prompt_column question of prompt rows
    found = next((named[name] for name in ("prompt", *PROMPT_LIKE_COLUMNS) if name in named), None)
    return f"; {spell_setting(('prompt_column', found))}" if found else ""


def _is_pair(row: dict[str, Any]) -> bool:
    return row.get("chosen") is not None and row.get("rejected") is not None


def _implicit_prompt(row: dict[str, Any], where: str) -> Text:
    """A pairs row without a prompt column (Anthropic HH: chosen and rejected each the whole
    conversation) has the prompt training reads, their shared start (the implicit layout);
    generate said "missing field 'prompt'" of every row of the file a run trained on."""
    refuse_unread_prompt(row, Columns(), list(row), where)  # (a question column: prompt_column)
    chosen = text_or_messages(row["chosen"], "chosen", parts=True)
    return split_implicit(chosen, text_or_messages(row["rejected"], "rejected", parts=True))[0]


def _conversation_prompt(row: dict[str, Any], prompt_column: str, prompt: Text) -> Text:
    """A pairs row's prompt text whose ``chosen`` / ``rejected`` are whole conversations
    (HuggingFaceH4/ultrafeedback_binarized) is their shared leading messages, as training reads
    it: sampled from as a bare text, a chat model would get no template (and no system turn)."""
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if not (isinstance(prompt, str) and is_message_list(chosen) and is_message_list(rejected)):
        return prompt
    return split_conversations(prompt, chosen, rejected, Columns(prompt=prompt_column))[0]


def template_args_of(row: dict[str, Any], prompt: Text, where: str) -> dict[str, Any] | None:
    """The row's tools and chat_template_kwargs (``row_template_args``), errors naming it."""
    try:
        return row_template_args(row, prompt)
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def load_prompts(
    source: str | Any,
    prompt_column: str = "prompt",
    system_column: str | None = None,
    places: list[str] | None = None,
) -> tuple[list[Text | ImagePrompt], list[dict[str, Any]]]:
    """Distinct prompts (texts or message lists, with their images if the rows have an images
    column), in file order, from a prompts or pairs file; and the other columns of each one's
    first row (what a reward_fn is given). ``places``: a list given gets each prompt's row
    ("line 3"), for notes that name rows (special tokens in text)."""
    label = source if isinstance(source, str) else "dataset"
    base_dir = os.path.dirname(os.path.abspath(source)) if isinstance(source, str) else None
    seen: set[str] = set()
    prompts: list[Text | ImagePrompt] = []
    others: list[dict[str, Any]] = []
    refused = RefusedRows(source_label(source))  # every bad row said at once, as a pairs file's

    def parse(where: str, row: dict[str, Any]) -> Text | ImagePrompt:
        return prompt_with_images(row, prompt_column, where, base_dir, system_column)

    for where, row, prompt in valid_rows(source, parse, refused):
        if _prompt_key(prompt) not in seen:
            seen.add(_prompt_key(prompt))
            prompts.append(prompt)
            if places is not None:
                places.append(where)
            others.append({k: v for k, v in row.items() if k != prompt_column})
    refused.raise_if_any()
    if not refused and not seen:
        raise no_rows(label, source)
    return prompts, others


def prompt_with_images(
    row: dict[str, Any],
    prompt_column: str,
    where: str,
    base_dir: str | None,
    system_column: str | None = None,
) -> Text | ImagePrompt:
    """A row's prompt; with images, tools or chat_template_kwargs, an ``ImagePrompt``."""
    row = _own_columns(row, prompt_column, where)
    prompt = _row_prompt(row, prompt_column, system_column, where, parts=True)
    images = row_images(row, where, base_dir, prompt_column)
    args = template_args_of(row, prompt, where)
    if images or args:
        return ImagePrompt(with_images(prompt, images), images or (), args)
    return prompt


def load_prompt_rows(
    source: str | Any,
    prompt_column: str = "prompt",
    system_column: str | None = None,
    places: list[str] | None = None,
) -> tuple[list[Text | ImagePrompt], list[dict[str, Any]]]:
    """Every row's prompt (text or messages, with its tools / chat_template_kwargs) and the
    row's other columns, in file order (of each file in turn, for a list of paths);
    ``places`` as ``load_prompts``'."""
    if is_path_list(source):
        prompts, others = [], []
        for path in source:
            more, columns = load_prompt_rows(path, prompt_column, system_column, places)
            prompts += more
            others += columns
        return prompts, others
    prompts, others = [], []
    refused = RefusedRows(source_label(source))  # every bad row said at once, as a pairs file's

    def parse(where: str, row: dict[str, Any]) -> Text | ImagePrompt:
        return parse_prompt(row, prompt_column, where, system_column)

    for where, row, prompt in valid_rows(source, parse, refused):
        prompts.append(prompt)
        if places is not None:
            places.append(where)
        others.append({k: v for k, v in row.items() if k != prompt_column})
    refused.raise_if_any()
    if not prompts:
        raise no_rows(source_label(source), source)
    return prompts, others


def distinct_example_prompts(examples: Sequence[Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """The distinct prompts of preference examples (with their images and chat template
    arguments) and the other columns of each one's first row, as ``load_prompts`` gives a
    file's (what a reward_fn is given)."""
    firsts = _first_of_each([example.full_prompt for example in examples])
    prompts = [examples[i].full_prompt for i in firsts]
    return prompts, [dict(examples[i].columns or {}) for i in firsts]


def prompts_in_turn(
    example_sets: Sequence[Sequence[Any]],
) -> tuple[list[Any], list[dict[str, Any]]]:
    """``distinct_example_prompts`` of several sets (named eval sets), taken one of each set's
    at a time, without repeats: the first N held-out prompts sample every set, where set after
    set gave them all to a large first one."""
    queues = [
        list(zip(*distinct_example_prompts(examples), strict=True)) for examples in example_sets
    ]
    taken = [item for turn in itertools.zip_longest(*queues) for item in turn if item is not None]
    firsts = _first_of_each([prompt for prompt, _ in taken])
    return [taken[i][0] for i in firsts], [taken[i][1] for i in firsts]


def distinct_prompts(prompts: Iterable[Any]) -> list[Any]:
    """Prompts without repeats, in first-seen order (texts, message lists, image prompts)."""
    prompts = list(prompts)
    return [prompts[i] for i in _first_of_each(prompts)]


def _first_of_each(prompts: list[Any]) -> list[int]:
    """The index of each distinct prompt's first occurrence, in order."""
    seen: set[str] = set()
    firsts: list[int] = []
    for index, prompt in enumerate(prompts):
        if _prompt_key(prompt) not in seen:
            seen.add(_prompt_key(prompt))
            firsts.append(index)
    return firsts


def _prompt_key(prompt: Any) -> str:
    if isinstance(prompt, ImagePrompt):  # the same words about other images (or tools) differ
        images = [image_key(i) for i in prompt.images]
        return json.dumps([prompt.prompt, images, prompt.template_args], sort_keys=True)
    return json.dumps(prompt, sort_keys=True)


# the name pandas gives a column without one (Excel's trailing empty ones: 'Unnamed: 3')
UNNAMED = re.compile(r"Unnamed: \d+(\.\d+)?")


def unread_system_note(
    source: str, prompt_column: str, system_column: str | None, said_off: bool = False
) -> str | None:
    """What score, rank and generate say of a system prompt column they do not read (a
    ``System`` beside the prompt, no ``--system_column``), as train's data line says it: the
    rows whose system text their prompt lacks go without it. None when there are none, or
    ``said_off`` (``--system_column ''``: none, said on purpose)."""
    name = (
        None
        if system_column is not None or said_off
        else system_column_of(first_row_fields(source))
    )
    if name is None:
        return None
    rows = 0
    for _, row in iter_rows(source):
        if not isinstance(row, dict):  # (said by the rows' check)
            continue
        prompt = row.get(prompt_column, row.get("chosen"))  # (a pairs row: the conversation)
        rows += lacks_system(row.get(name), prompt if isinstance(prompt, str | list) else "")
    if not rows:
        return None
    return (
        f"column '{name}' is not read: {counted(rows, 'row')} {'goes' if rows == 1 else 'go'} "
        # (--system_column was said to score_file / generate_file built in Python too)
        f"without the system prompt it holds ({spell_option('system_column', name)} makes it "
        "their system turn)"
    )


def rows_to_write(source: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``iter_rows``' rows as score, rank and generate write them back: a column without a
    name and without a value in any row (a spreadsheet's trailing empty columns, pandas'
    ``"Unnamed: 3": ""``) left out; named columns, and unnamed ones holding values (pandas'
    index), kept. Read twice only where the first row has such a column."""
    blank = _blank_unnamed(source)
    for where, row in iter_rows(source):
        yield where, ({k: v for k, v in row.items() if k not in blank} if blank else row)


def _blank_unnamed(source: str) -> set[str]:
    unnamed: set[str] | None = None
    for _, row in iter_rows(source):
        if unnamed is None:
            unnamed = {key for key in row if UNNAMED.fullmatch(str(key))}
        unnamed -= {key for key in unnamed if not _blank(row.get(key))}
        if not unnamed:
            return set()
    return unnamed or set()


def _blank(value: Any) -> bool:
    """An empty cell, as CSV (""), JSON (null) or pandas (NaN) holds one."""
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, float) and math.isnan(value))
