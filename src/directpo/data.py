"""Preference files -> validated (prompt, chosen, rejected) examples.

No tokenizer and no model here: this module reads rows, detects the layout, and checks every
row, so that a bad file fails with one line naming the file, the row and the problem.

Layouts (detected from the first row, reported at start):

* ``explicit``: ``prompt``, ``chosen``, ``rejected`` strings.
* ``conversational``: ``prompt`` a list of chat messages (``{"role", "content"}``), ``chosen``
  and ``rejected`` lists of assistant messages (a plain string is taken as one assistant
  message). Rendered later with the tokenizer's chat template.
* ``implicit``: only ``chosen`` and ``rejected``, each a full text or message list that
  repeats the conversation (Anthropic HH style). The longest shared prefix is the prompt. For
  text the cut is moved back to the last whitespace boundary before the first difference, so
  that no word (``I'm``, ``well-known``, ``3.5``, an emoji) is split and the whitespace before
  the first differing word starts the completions (``"...Assistant:" | " Sure..."``), which is
  where BPE tokenizers put token boundaries anyway. For message lists the shared leading
  messages are the prompt.

Completions are assistant turns: message-list completions must start with an assistant message.
Completions that repeat the prompt's messages first (the whole conversation saved in each
column) have them dropped, as TRL's ``maybe_extract_prompt`` does; a string prompt with
``chosen`` / ``rejected`` conversations (HuggingFaceH4/ultrafeedback_binarized) is read as the
implicit message layout, the string being checked against the shared user messages. Text parts
in completions (TRL's vision datasets) are joined; images belong to the prompt.

Formats (read by readers.py): JSON Lines (``.jsonl``/``.ndjson``), JSON (a list of objects,
an object holding one such list, an object of equal-length column lists, or JSON Lines saved as
``.json``), Parquet, CSV (a cell holding a JSON list of messages is decoded), the text
formats compressed (``.jsonl.gz``, ``.json.bz2``, ``.csv.xz``), an Arrow file, a
``datasets.save_to_disk`` folder, or a ``datasets.Dataset`` from Python. Text files may start
with a UTF-8 byte order mark. Row numbers in messages are 1-based: "line N" for line-oriented
files, "row N" otherwise.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from directpo.errors import DataError, first_line
from directpo.readers import (
    RowError,
    is_path_list,
    is_saved_dataset,
    kind_of,
    no_rows,
    open_rows,
    source_label,
)
from directpo.vision import (
    IMAGE_COLUMNS,
    ImageError,
    image_key,
    image_values,
    inline_images,
    with_image_parts,
)

Messages = list[dict[str, Any]]  # content: a string, or parts (vision prompts)
Text = str | Messages

LAYOUTS = ("explicit", "conversational", "implicit")
MESSAGE_ROLES = ("system", "user", "assistant", "tool")
MESSAGE_EXTRAS = ("tool_calls", "name", "tool_call_id")  # kept for the chat template


@dataclass(frozen=True)
class ImagePrompt:
    """A prompt with images, for sampling and scoring with a vision-language model."""

    prompt: Text
    images: tuple[Any, ...]

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

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def template_args(self) -> dict[str, Any] | None:
        """The row's arguments for the chat template: its tools and chat_template_kwargs."""
        args = {
            **({"tools": self.tools} if self.tools else {}),
            **(self.chat_template_kwargs or {}),
        }
        return args or None

    @property
    def full_prompt(self) -> Text | ImagePrompt:
        """The prompt with its images, if any (what sampling needs)."""
        return ImagePrompt(self.prompt, self.images) if self.images else self.prompt


@dataclass
class PreferenceData:
    examples: list[PreferenceExample]
    layout: str
    source: str
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def duplicates(self) -> int:
        """Pairs that repeat an earlier one exactly (kept: a repeat weighs a pair twice).
        Counted once: a large file's texts take seconds to compare."""
        keys = {
            (*map(_hashable, (e.prompt, e.chosen, e.rejected)), _context_key(e))
            for e in self.examples
        }
        return len(self.examples) - len(keys)

    def summary(self) -> str:
        text = f"{self.source}: {len(self.examples)} pairs, layout {self.layout}"
        if self.duplicates:
            text += f", {self.duplicates} of them repeat an earlier pair (kept)"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            text += f"; skipped {sum(self.skipped.values())} invalid rows ({reasons})"
        return text


def _context_key(example: PreferenceExample) -> tuple[Any, ...]:
    """What else makes a pair differ from one with the same texts: its images (paths, a digest
    of bytes, or the PIL object itself) and its chat template arguments."""
    images = tuple(map(image_key, example.images or ()))
    args = example.template_args
    return images, args and json.dumps(args, sort_keys=True, default=str)


def _hashable(value: Text) -> str | tuple[str]:
    """A text as itself (no copy); messages as their JSON, in a tuple, so that no text equals
    them."""
    return value if isinstance(value, str) else (json.dumps(value),)


@dataclass(frozen=True)
class Columns:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    # a non-default prompt column must exist; the default one may be absent (implicit layout)
    prompt_required: bool = False


def load_preferences(
    source: str | Any,
    columns: Columns = Columns(),
    *,
    skip_invalid_rows: bool = False,
    name: str | None = None,
) -> PreferenceData:
    """Read and validate a preference file (path), several files (a list of paths: their
    pairs mixed into one set, in order; each file may have its own layout) or a
    ``datasets.Dataset``."""
    if is_path_list(source):
        parts = [
            load_preferences(path, columns, skip_invalid_rows=skip_invalid_rows) for path in source
        ]
        return PreferenceData(
            [example for part in parts for example in part.examples],
            "+".join(dict.fromkeys(part.layout for part in parts)),
            name or " + ".join(part.source for part in parts),
            sum((part.skipped for part in parts), Counter()),
        )
    label = name or source_label(source)
    rows, column_names = open_rows(source, label)
    # image paths are relative to the data file's folder
    base_dir = os.path.dirname(os.path.abspath(source)) if isinstance(source, str) else None
    examples: list[PreferenceExample] = []
    skipped: Counter[str] = Counter()
    layout: str | None = None
    seen_any = False
    for where, row in rows:
        seen_any = True
        try:
            if isinstance(row, RowError):
                raise row
            if not isinstance(row, dict):
                raise RowError("not an object", f"expected an object, got {kind_of(row)}")
            if layout is None:
                if skip_invalid_rows and column_names is None:
                    _require_fields(row, columns)  # a row's keys, not the file's columns
                layout = _detect_layout(row, columns, column_names or list(row), label, where)
            examples.append(_parse_row(row, layout, columns, f"{label}: {where}", base_dir))
        except RowError as err:
            if not skip_invalid_rows:
                raise DataError(f"{label}: {where}: {err.message}") from None
            skipped[err.reason] += 1
    if not seen_any:
        raise no_rows(label, source)
    if not examples:
        reasons = ", ".join(f"{n} {r}" for r, n in skipped.most_common())
        raise DataError(f"{label}: no valid rows ({reasons})")
    assert layout is not None
    return PreferenceData(examples, layout, label, skipped)


def load_named_dataset(config: Any, split: str, *, required: bool) -> Any:
    """``config.dataset_name``'s ``split`` through ``datasets.load_dataset`` (a local folder,
    or a hub id where the hub is reachable); None when an optional split does not exist."""
    import datasets

    name = config.dataset_name
    saved = is_saved_dataset(name)  # load_dataset refuses these ("use load_from_disk")
    if saved and config.dataset_config is not None:
        raise DataError(
            f"dataset_name '{name}' is a datasets.save_to_disk folder, which has no "
            f"configurations; remove dataset_config ({config.dataset_config})"
        )
    try:
        if saved:
            loaded = datasets.load_from_disk(name)
            if isinstance(loaded, datasets.Dataset):  # one split, saved without a name
                loaded = {config.dataset_train_split: loaded}
        else:
            loaded = datasets.load_dataset(name, config.dataset_config)
    except Exception as exc:  # datasets raises many types: offline, missing, malformed
        raise DataError(f"dataset_name '{name}': cannot load ({first_line(exc)})") from None
    if split not in loaded:
        if not required:
            return None
        raise DataError(
            f"dataset_name '{name}': no split '{split}' (it has {', '.join(loaded)}); set "
            "dataset_train_split"
        )
    return loaded[split]


def read_rows(source: str | Any, name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every row of a file (or Dataset) as (where, row); any unreadable row is a DataError."""
    label = name or source_label(source)
    rows, _ = open_rows(source, label)
    result = []
    for where, row in rows:
        if isinstance(row, RowError):
            raise DataError(f"{label}: {where}: {row.message}")
        if not isinstance(row, dict):
            raise DataError(f"{label}: {where}: expected an object, got {kind_of(row)}")
        result.append((where, row))
    if not result:
        raise no_rows(label, source)
    return result


def parse_pair(
    row: dict[str, Any], columns: Columns, where: str, base_dir: str | None = None
) -> PreferenceExample:
    """One preference row in any layout, validated as in training (image paths relative to
    ``base_dir``)."""
    layout = (
        "implicit"
        if columns.prompt not in row
        else _prompt_layout(row[columns.prompt], row.get(columns.chosen))
    )
    try:
        return _parse_row(row, layout, columns, where, base_dir)
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def parse_prompt_and_responses(
    row: dict[str, Any], prompt_column: str, response_column: str, where: str
) -> tuple[Text, list[Text]]:
    """A prompt and one response or a list of responses (texts, or message lists)."""
    try:
        prompt = _text_or_messages(_field(row, prompt_column), prompt_column, parts=True)
        value = _field(row, response_column)
        many = isinstance(value, list) and not (value and isinstance(value[0], dict))
        values = value if many else [value]
        if not values:
            raise RowError("empty field", f"field '{response_column}' is an empty list")
        if isinstance(prompt, list):
            responses: list[Text] = [
                _completion_messages(v, response_column, prompt) for v in values
            ]
        else:
            responses = [_text(v, response_column) for v in values]
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None
    return prompt, responses


def parse_scored(prompt: Any, response: Any, where: str) -> tuple[Text, Text]:
    """A prompt and one response given from Python (``ImplicitReward.score``), checked as a
    file row's are: texts, or message lists (a text reply to a conversation is the assistant's
    message). An empty text response is scored too: a sample may stop at once."""
    try:
        prompt = _text_or_messages(_field({"prompt": prompt}, "prompt"), "prompt", parts=True)
        if isinstance(response, str) and not response.strip():
            empty = [{"role": "assistant", "content": response}]
            return prompt, response if isinstance(prompt, str) else empty
        if isinstance(prompt, list):
            return prompt, _completion_messages(response, "response", prompt)
        return prompt, _text(response, "response")
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def row_images(
    row: dict[str, Any], where: str, base_dir: str | None = None, prompt_column: str = "prompt"
) -> tuple[Any, ...] | None:
    """The images of a scoring or generation row (``images`` / ``image``, or its prompt's
    image parts), or None."""
    try:
        return _images(row, base_dir, row.get(prompt_column))
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def with_images(prompt: Text, images: tuple[Any, ...] | None) -> Text:
    """A conversational prompt gets its images' parts (TRL's convention); text is unchanged."""
    if images is None or isinstance(prompt, str):
        return prompt
    return with_image_parts(prompt, len(images))


def parse_prompt(row: dict[str, Any], prompt_column: str, where: str) -> Text:
    try:
        return _text_or_messages(_field(row, prompt_column), prompt_column)
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None


def load_prompts(
    source: str | Any, prompt_column: str = "prompt"
) -> tuple[list[Text | ImagePrompt], list[dict[str, Any]]]:
    """Distinct prompts (texts or message lists, with their images if the rows have an images
    column), in file order, from a prompts or pairs file; and the other columns of each one's
    first row (what a reward_fn is given)."""
    label = source if isinstance(source, str) else "dataset"
    base_dir = os.path.dirname(os.path.abspath(source)) if isinstance(source, str) else None
    seen: set[str] = set()
    prompts: list[Text | ImagePrompt] = []
    others: list[dict[str, Any]] = []
    for where, row in read_rows(source):
        prompt = prompt_with_images(row, prompt_column, f"{label}: {where}", base_dir)
        if _prompt_key(prompt) not in seen:
            seen.add(_prompt_key(prompt))
            prompts.append(prompt)
            others.append({k: v for k, v in row.items() if k != prompt_column})
    return prompts, others


def prompt_with_images(
    row: dict[str, Any], prompt_column: str, where: str, base_dir: str | None
) -> Text | ImagePrompt:
    """A row's prompt; with an images column, an ``ImagePrompt``."""
    try:
        prompt = _text_or_messages(_field(row, prompt_column), prompt_column, parts=True)
    except RowError as err:
        raise DataError(f"{where}: {err.message}") from None
    images = row_images(row, where, base_dir, prompt_column)
    return ImagePrompt(with_images(prompt, images), images) if images else prompt


def load_prompt_rows(
    source: str | Any, prompt_column: str = "prompt"
) -> tuple[list[Text], list[dict[str, Any]]]:
    """Every row's prompt (text or messages) and the row's other columns, in file order (of
    each file in turn, for a list of paths)."""
    if is_path_list(source):
        prompts, others = [], []
        for path in source:
            more, columns = load_prompt_rows(path, prompt_column)
            prompts += more
            others += columns
        return prompts, others
    label = source_label(source)
    prompts, others = [], []
    for where, row in read_rows(source):
        prompts.append(parse_prompt(row, prompt_column, f"{label}: {where}"))
        others.append({k: v for k, v in row.items() if k != prompt_column})
    return prompts, others


def distinct_prompts(prompts: Iterable[Any]) -> list[Any]:
    """Prompts without repeats, in first-seen order (texts, message lists, image prompts)."""
    seen: set[str] = set()
    unique: list[Any] = []
    for prompt in prompts:
        if _prompt_key(prompt) not in seen:
            seen.add(_prompt_key(prompt))
            unique.append(prompt)
    return unique


def _prompt_key(prompt: Any) -> str:
    if isinstance(prompt, ImagePrompt):  # the same words about other images differ
        return json.dumps([prompt.prompt, [image_key(i) for i in prompt.images]], sort_keys=True)
    return json.dumps(prompt, sort_keys=True)


# ---------------------------------------------------------------------------------------------
# Validating rows


def _detect_layout(
    row: dict[str, Any], columns: Columns, names: list[str], label: str, where: str
) -> str:
    for key in (columns.chosen, columns.rejected):
        if key not in names:
            raise DataError(
                f"{label}: column '{key}' not found (columns: {', '.join(map(str, names))}); "
                "set chosen_column / rejected_column"
            )
    if columns.prompt not in names:
        if columns.prompt_required:
            raise DataError(
                f"{label}: column '{columns.prompt}' not found "
                f"(columns: {', '.join(map(str, names))}); set prompt_column"
            )
        return "implicit"
    prompt = row.get(columns.prompt)
    if isinstance(prompt, list | str) or prompt is None:
        return _prompt_layout(prompt, row.get(columns.chosen))
    raise RowError(
        "wrong type",
        f"field '{columns.prompt}' must be a string or a list of messages, got {kind_of(prompt)}",
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


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _parse_row(
    row: dict[str, Any], layout: str, columns: Columns, where: str, base_dir: str | None = None
) -> PreferenceExample:
    chosen = _field(row, columns.chosen)
    rejected = _field(row, columns.rejected)
    if layout == "implicit":
        prompt, chosen, rejected = _split_implicit(
            _text_or_messages(chosen, columns.chosen, parts=True),
            _text_or_messages(rejected, columns.rejected, parts=True),
        )
        if isinstance(prompt, list):
            chosen = _completion_messages(chosen, columns.chosen)
            rejected = _completion_messages(rejected, columns.rejected)
    elif layout == "explicit":
        prompt = _text(_field(row, columns.prompt), columns.prompt)
        chosen = _text(chosen, columns.chosen)
        rejected = _text(rejected, columns.rejected)
    else:
        raw_prompt = _field(row, columns.prompt)
        if isinstance(raw_prompt, str):
            prompt, chosen, rejected = _split_conversations(raw_prompt, chosen, rejected, columns)
        elif isinstance(raw_prompt, list):
            prompt = _messages(raw_prompt, columns.prompt, key_allows_parts=True)
            chosen = _completion_messages(chosen, columns.chosen, prompt)
            rejected = _completion_messages(rejected, columns.rejected, prompt)
        else:
            raise RowError(
                "wrong type",
                f"field '{columns.prompt}' must be a list of messages "
                f"like the first row's, got {kind_of(raw_prompt)}",
            )
    if chosen == rejected:
        raise RowError("identical chosen and rejected", "chosen and rejected are identical")
    tools = _tools(row.get("tools"), layout)
    template_kwargs = _template_kwargs(row.get("chat_template_kwargs"), layout)
    # the implicit layout's prompt (and its image parts) is the start of each conversation
    messages = row.get(columns.chosen if layout == "implicit" else columns.prompt)
    images = _images(row, base_dir, messages)
    if images is not None and isinstance(prompt, list):
        prompt = with_image_parts(prompt, len(images))
    return PreferenceExample(prompt, chosen, rejected, where, tools, images, template_kwargs)


def _images(
    row: dict[str, Any], base_dir: str | None, messages: Any = None
) -> tuple[Any, ...] | None:
    """The row's images: its ``images`` / ``image`` column, or those its prompt's image parts
    carry (TRL's and transformers' ``{"type": "image", "image": ...}``), not both."""
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


def _tools(value: Any, layout: str) -> list[dict[str, Any]] | None:
    """The row's ``tools`` (a list of function schemas, or its JSON text), for the template."""
    if value is None or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("bad tools", "field 'tools' is not valid JSON") from None
    if not isinstance(value, list) or not all(isinstance(tool, dict) for tool in value):
        raise RowError(
            "bad tools", f"field 'tools' must be a list of objects, got {kind_of(value)}"
        )
    if layout != "conversational":
        raise RowError("bad tools", "field 'tools' needs conversational rows (message lists)")
    return value


def _template_kwargs(value: Any, layout: str) -> dict[str, Any] | None:
    """The row's ``chat_template_kwargs`` (an object, or its JSON text), as TRL passes them to
    the chat template. A key whose value is null is left out: an Arrow column of objects gives
    every row every key, null where the row had none."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(
                "bad chat_template_kwargs", "field 'chat_template_kwargs' is not valid JSON"
            ) from None
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RowError(
            "bad chat_template_kwargs",
            f"field 'chat_template_kwargs' must be an object, got {kind_of(value)}",
        )
    value = {key: item for key, item in value.items() if item is not None}
    if value and layout != "conversational":
        raise RowError(
            "bad chat_template_kwargs",
            "field 'chat_template_kwargs' needs conversational rows (message lists)",
        )
    return value or None


def _field(row: dict[str, Any], key: str) -> Any:
    if key not in row or row[key] is None:
        raise RowError("missing field", f"missing field '{key}'")
    return row[key]


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RowError("wrong type", f"field '{key}' must be a string, got {kind_of(value)}")
    if not value.strip():
        raise RowError("empty field", f"field '{key}' is empty")
    return value


def _text_or_messages(value: Any, key: str, parts: bool = False) -> Text:
    return _messages(value, key, parts) if isinstance(value, list) else _text(value, key)


def _content_parts(parts: list[Any], key: str, number: int) -> list[dict[str, Any]]:
    """A message's content as parts (a vision prompt's): {"type": "text", "text": ...} and
    {"type": "image"} (the image itself comes from the row's images column)."""
    checked = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            checked.append({"type": "text", "text": part["text"]})
        elif kind == "image":
            checked.append({"type": "image"})
        else:
            raise RowError(
                "bad message",
                f"field '{key}': message {number} has a content part {part!r}; expected "
                '{"type": "text", "text": ...} or {"type": "image"}',
            )
    return checked


def _messages(value: Any, key: str, key_allows_parts: bool = False) -> Messages:
    if not isinstance(value, list):
        raise RowError(
            "wrong type", f"field '{key}' must be a list of messages, got {kind_of(value)}"
        )
    if not value:
        raise RowError("empty field", f"field '{key}' is an empty list of messages")
    messages = []
    for i, message in enumerate(value, start=1):
        if not isinstance(message, dict):
            raise RowError(
                "bad message",
                f"field '{key}': message {i} is {kind_of(message)}, "
                "expected an object with 'role' and 'content'",
            )
        role, content = message.get("role"), message.get("content")
        if content is None and message.get("tool_calls"):
            content = ""  # an assistant turn that only calls tools
        if role not in MESSAGE_ROLES:
            raise RowError(
                "bad message",
                f"field '{key}': message {i} has role {role!r}, "
                f"expected one of {', '.join(MESSAGE_ROLES)}",
            )
        if isinstance(content, list) and key_allows_parts:
            content = _content_parts(content, key, i)
        elif not isinstance(content, str):
            raise RowError(
                "bad message",
                f"field '{key}': message {i} content must be a string, got {kind_of(content)}",
            )
        extra = {k: message[k] for k in MESSAGE_EXTRAS if message.get(k) is not None}
        messages.append({"role": role, "content": content, **extra})
    return messages


def _completion_messages(value: Any, key: str, prompt: Messages | None = None) -> Messages:
    """A completion: a text (one assistant message), or messages that start with an assistant
    message. Messages that first repeat the whole ``prompt`` have them dropped; text parts are
    joined into the content (TRL's vision datasets write them); an image part is an error."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": _text(value, key)}]
    messages = _messages(value, key, key_allows_parts=True)
    skip = len(prompt) if prompt and messages[: len(prompt)] == prompt else 0
    if skip == len(messages):
        raise RowError("no completion", f"field '{key}' repeats the prompt and adds no message")
    completion = []
    for number, message in enumerate(messages[skip:], start=skip + 1):
        if isinstance(message["content"], list):
            if any(part["type"] == "image" for part in message["content"]):
                raise RowError(
                    "bad message",
                    f"field '{key}': message {number} has an image part; images belong in the "
                    "prompt (the images column)",
                )
            message = {**message, "content": "".join(p["text"] for p in message["content"])}
        completion.append(message)
    if completion[0]["role"] != "assistant":
        raise RowError(
            "not an assistant reply",
            f"field '{key}': message {skip + 1} has role '{completion[0]['role']}'; a completion "
            "must start with an assistant message (or repeat the whole prompt first)",
        )
    # an assistant turn that only calls a tool (no text) is a reply
    if not any(m["content"].strip() or m.get("tool_calls") for m in completion):
        raise RowError("empty field", f"field '{key}' has only empty messages")
    return completion


def _split_conversations(
    prompt: str, chosen: Any, rejected: Any, columns: Columns
) -> tuple[Messages, Messages, Messages]:
    """A prompt text with chosen and rejected conversations that repeat it (as in
    HuggingFaceH4/ultrafeedback_binarized): the shared leading messages are the prompt, as in
    the implicit layout (TRL's ``maybe_extract_prompt``), since they keep the system turn and
    earlier turns that the text lacks. The text must be one of their user messages, so that a
    mismatched column is refused rather than trained on."""
    text = _text(prompt, columns.prompt).strip()
    shared, chosen, rejected = _split_implicit(
        _messages(chosen, columns.chosen, key_allows_parts=True),
        _messages(rejected, columns.rejected, key_allows_parts=True),
    )
    assert isinstance(shared, list)
    users = [_plain_text(m["content"]).strip() for m in shared if m["role"] == "user"]
    if text not in users:
        raise RowError(
            "prompt mismatch",
            f"field '{columns.prompt}' is text and '{columns.chosen}' / '{columns.rejected}' are "
            "conversations, but no user message they share is that text",
        )
    return (
        shared,
        _completion_messages(chosen, columns.chosen),
        _completion_messages(rejected, columns.rejected),
    )


def _plain_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def _split_implicit(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise RowError(
            "wrong type", "chosen and rejected must both be texts or both be message lists"
        )
    if chosen == rejected:
        raise RowError("identical chosen and rejected", "chosen and rejected are identical")
    if isinstance(chosen, list):
        assert isinstance(rejected, list)
        shared = 0
        while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
            shared += 1
        if shared == 0:
            raise RowError(
                "no shared prompt",
                "chosen and rejected share no leading messages to use as the prompt",
            )
        if shared == len(chosen) or shared == len(rejected):
            raise RowError("no completion", "one side has no messages after the shared prompt")
        return chosen[:shared], chosen[shared:], rejected[shared:]
    assert isinstance(rejected, str)
    cut = _prompt_end(chosen, rejected)
    if cut == 0 or not chosen[:cut].strip():
        raise RowError(
            "no shared prompt", "chosen and rejected share no common prefix to use as the prompt"
        )
    shorter, longer = sorted((chosen, rejected), key=len)
    # "...Assistant:" against "...Assistant: Sure." is an empty response, not " Sure." against
    # a response "\n\nAssistant:"; whitespace alone is no response either
    ends_at_label = longer.startswith(shorter) and shorter.rstrip().endswith(":")
    if ends_at_label or not chosen[cut:].strip() or not rejected[cut:].strip():
        raise RowError(
            "no completion",
            f"one side has no response after the shared prompt (it ends with "
            f"{shorter.split()[-1]!r})",
        )
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _prompt_end(chosen: str, rejected: str) -> int:
    """Where the shared prompt of two texts ends: at the last whitespace boundary before their
    first difference, so that both completions start with the whitespace before a word (" Sure",
    "\n\nHuman:") and no word, number, contraction or emoji is split. BPE tokenizers split
    before such whitespace too, so prompt tokens + completion tokens = the whole text's tokens.
    Texts that share no whitespace boundary fall back to the start of the differing run of
    letters and digits ("Answer:" | "yes")."""
    differ = len(os.path.commonprefix([chosen, rejected]))

    def boundary(text: str, i: int) -> bool:  # whitespace at i, none before it
        return i < len(text) and text[i].isspace() and (i == 0 or not text[i - 1].isspace())

    for cut in range(differ, 0, -1):
        if boundary(chosen, cut) and boundary(rejected, cut):
            return cut
    cut = differ
    while cut > 0 and chosen[cut - 1].isalnum():
        cut -= 1
    return cut
