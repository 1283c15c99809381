"""Texts that hold a model's special tokens literally ("look at [IMG] here", a reply that writes
``<|im_end|>``): a tokenizer reads them as those tokens, not as their characters (TRL's
tokenization does the same). A vision model's image, video and image-boundary tokens in text
are refused (its forward takes them for an image's features); other special tokens are counted
and said once per file, since they split a turn where the text shows none."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from directpo.callers import said
from directpo.preference_pairs import counted
from directpo.readers import RowError

IMAGE_TOKEN_IN_TEXT = "image token in text"  # the reason skip_invalid_rows counts
SPECIAL_IN_TEXT = "rows with special tokens in their text"  # a key of the cuts counter
_TOKEN_KEY = "special token in text: "  # + the token: how many rows hold it
_ROW_KEY = "special token row: "  # + "line 3" / "row 3": one of the first such rows
FIRST_ROWS = 3  # the rows the note names (a file of pre-rendered prompts has them on every row)
_PLACE = re.compile(r"\b(?:row|line) (\d+)$")


@dataclass(frozen=True)
class VisionTokens:
    """A processor's tokens that stand for or mark an image (vision.vision_token_ids)."""

    tokens: dict[int, str]
    owner: str  # the processor's class name
    image_id: int | None  # the image token: where an image goes in a prompt
    image_token: str
    marks: tuple[int, ...]  # the ids of an image's placeholder (Qwen-VL's, with its marks)

    def refuse(self, ids: list[int], column: str, allowed: int = 0) -> None:
        """Text holding more than ``allowed`` of these tokens: the model's forward took it for
        an image's features and stopped the run ('Image features and image tokens do not
        match'). Refused, naming the column and the token."""
        held = [i for i in ids if i in self.tokens]
        if len(held) <= allowed:
            return
        raise RowError(
            IMAGE_TOKEN_IN_TEXT,
            f"the {column} holds {self.tokens[held[-1]]}, a token that stands for or marks an "
            f"image for {self.owner} (the model's forward would take it for an image's "
            "features); remove it from the text or write it otherwise",
        )

    def refuse_beyond_images(self, ids: list[int], images: int) -> None:
        """A prompt with images may hold the image token (where each image goes, one an image)
        and the marks its placeholder writes around one (Qwen-VL's ``<|vision_start|>``, as
        many as its image tokens bring); any other, or more, is text read as an image's."""
        if (count := ids.count(self.image_id)) > images:
            raise RowError(
                IMAGE_TOKEN_IN_TEXT,
                f"the prompt holds {count} {self.image_token} (where an image goes) for "
                f"{counted(images, 'image')}; remove the others from the text",
            )
        marks = set(self.marks) - {self.image_id}
        self.refuse([i for i in ids if i not in marks and i != self.image_id], "prompt")
        room = count * sum(i in marks for i in self.marks)
        self.refuse([i for i in ids if i in marks], "prompt", room)


def special_pattern(tokenizer: Any, vision: VisionTokens | None = None) -> re.Pattern[str] | None:
    """The tokenizer's special tokens (BOS, EOS, pad, end-of-turn, ...) as one pattern, but a
    vision model's ``vision`` tokens (refused where they would be wrong: LLaVA's "<image>" in a
    prompt is where its image goes); None where the tokenizer reads them in text as their
    characters (``split_special_tokens``)."""
    if getattr(tokenizer, "split_special_tokens", False):
        return None
    tokens = set(getattr(tokenizer, "all_special_tokens", ()))
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens.update(t.content for t in decoder.values() if getattr(t, "special", False))
    tokens -= {"", *(vision.tokens.values() if vision else ())}
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in sorted(tokens, key=len, reverse=True)))


def count_special_text(
    texts: Iterator[tuple[str, bool]],
    pattern: re.Pattern[str] | None,
    counts: Counter[str],
    where: str = "",
) -> None:
    """Count a row whose texts hold a special token, and each token it holds (``row_texts``:
    each text, and whether it is a whole prompt / completion, whose ending token is its end);
    ``where`` ('file: line 3'): the row, kept while it is one of the first ``FIRST_ROWS``."""
    if pattern is None:
        return
    held = {
        match
        for text, whole in texts
        for match in pattern.findall(_body(text, pattern) if whole else text)
    }
    if held:
        counts[SPECIAL_IN_TEXT] += 1
        counts.update(_TOKEN_KEY + token for token in held)
        if (place := _PLACE.search(where)) and len(_rows(counts)) < FIRST_ROWS:
            counts[_ROW_KEY + place[0]] = 1
            keep_first_rows(counts)


def keep_first_rows(counts: Counter[str]) -> None:
    """``counts`` with the first ``FIRST_ROWS`` of its rows holding special tokens alone (after
    the counts of many rows were added up: one key a row would grow with the file)."""
    for key in _rows(counts)[FIRST_ROWS:]:
        del counts[key]


def _rows(counts: Counter[str]) -> list[str]:
    """The row keys of ``counts``, in the file's order."""
    rows = [key for key in counts if key.startswith(_ROW_KEY)]
    return sorted(rows, key=lambda key: int(key.rsplit(" ", 1)[1]))


def _body(text: str, pattern: re.Pattern[str]) -> str:
    """The text without the special tokens (and whitespace) it ends with: a completion
    written with its end-of-turn token, which tokenization keeps as its end (stops.py)."""
    body = text.rstrip()
    while ends := [m for m in pattern.finditer(body) if m.end() == len(body)]:
        body = body[: ends[0].start()].rstrip()
    return body


def row_texts(*values: Any) -> Iterator[tuple[str, bool]]:
    """The strings a row's prompt / completions hold: texts (True: whole), messages' contents
    and text parts (False: the chat template writes each turn's end after them, so a content
    ending with ``<|im_end|>`` is a turn ended twice, not the usual ending)."""
    for value in values:
        if isinstance(value, str):
            yield value, True
            continue
        for message in value or ():
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                yield content, False
            for part in content if isinstance(content, list) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    yield part["text"], False


def special_summary(counts: Counter[str]) -> str | None:
    """The note on rows holding special tokens in their text, or None."""
    if not (rows := counts[SPECIAL_IN_TEXT]):
        return None
    return (
        f"{counted(rows, 'row')} with the tokenizer's special tokens written in their text "
        f"({_named(counts)}{_first(counts, rows)}), read as those tokens, as TRL does: a turn "
        "ends or a text starts there"
    )


def _first(counts: Counter[str], rows: int) -> str:
    """'; line 1, line 2, line 3, ...': the first rows holding them, where known."""
    places = [key[len(_ROW_KEY) :] for key in _rows(counts)]
    if not places:
        return ""
    if rows > len(places):
        return f"; first {', '.join(places)}, ..."
    return f"; {', '.join(places)}"


def drawn_special_ids(tokenizer: Any, stops: list[int]) -> dict[int, str]:
    """The tokenizer's special tokens a sample may draw mid-reply (not its stop tokens, which
    end it): a text decoded without special tokens (as TRL and vLLM write one) drops them."""
    ids = set(getattr(tokenizer, "all_special_ids", ()))
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(i for i, t in decoder.items() if getattr(t, "special", False))
    ids -= set(stops)
    return {i: tokenizer.convert_ids_to_tokens(i) for i in sorted(ids)}


def count_drawn(ids: list[int], specials: dict[int, str], counts: Counter[str]) -> None:
    """Count a sample whose ``ids`` hold one of ``specials``, and each token it holds."""
    held = {specials[i] for i in ids if i in specials}
    if held:
        counts[SPECIAL_IN_TEXT] += 1
        counts.update(_TOKEN_KEY + token for token in held)


def drawn_summary(counts: Counter[str]) -> str | None:
    """The note on completions whose text lost the special tokens they drew, or None."""
    if not (samples := counts[SPECIAL_IN_TEXT]):
        return None
    return (
        f"{counted(samples, 'completion')} drew the tokenizer's special tokens mid-reply "
        f"({_named(counts)}), dropped from their text as TRL and vLLM write it: score and "
        "rank of this file read their text, not the tokens sampled "
        f"({said('keep_special_tokens')} writes them)"  # (the flag to generate_file too)
    )


def _named(counts: Counter[str]) -> str:
    """'</s> in 1, <s> in 2': each token counted, by name."""
    tokens = sorted(
        (k[len(_TOKEN_KEY) :], n) for k, n in counts.items() if k.startswith(_TOKEN_KEY)
    )
    return ", ".join(f"{token} in {n}" for token, n in tokens)
