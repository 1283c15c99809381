"""Each prompt read by the tokenizer once, where that gives the same ids as today's rule.

tokenization.py's boundary rule needs the ids of prompt + completion tokenized whole (a token
may straddle the boundary). Tokenizing that whole text for each completion read the prompt
three times a pair (alone, with chosen, with rejected): about 2.1x the tokens kept. Here a
completion is tokenized after its prompt's last line only, and the ids before that line are
taken from the prompt's own, wherever that is provably the ids of the whole text.

Why it is exact. Let ``q`` be a place in a text ``T`` right after a newline and before a
visible character (not whitespace, not a combining mark, printable). For the tokenizers
``cuts_after_newlines`` accepts, ids(T) is T[:q]'s chunks read with that character after them,
then ids(T[q:]); not always ids(T[:q]) + ids(T[q:]) (SmolLM2: "a \\n" alone is [81, 3717], in
"a \\nb" its ids are [81, 216, 198]: the pre-tokenizer's point):

* no added token may strip whitespace or look at its neighbours (``lstrip``, ``rstrip``,
  ``single_word``), so the added-token split of T is its parts' (no added token holds a newline
  followed by a visible character at ``q``: such a token is refused too);
* the normalizer is none, or NFC: a newline is a starter that composes with nothing, so no
  composition or reordering crosses ``q``;
* the pre-tokenizer splits with GPT-2's regex (byte-level, no prefix space) or Llama 3's or
  Qwen 2's (then byte-level without a regex or prefix space). These regexes have no look-behind
  and tile the text left to right; the only alternatives that match a newline are whitespace
  runs (``\\s+(?!\\S)``, ``\\s+``, ``\\s*[\\r\\n]+``) and, in Llama 3's and Qwen 2's,
  punctuation followed by ``[\\r\\n]*``; none extends past the newline onto a visible
  character, and none that starts with an optional character (`` ?``, ``[^\\r\\n...]?``)
  accepts a newline there. So a chunk ends at ``q`` whatever follows, the chunks before it are
  read only from T[:q] and the visible character at ``q``, and those from ``q`` are T[q:]'s own.
  A prompt's ids are the whole text's up to ``q`` when the prompt holds that character too (a
  cut inside it); at its very end only when the newline is the whole whitespace run before it
  (a visible character before it): alone, a run "\\n\\n" or " \\n" ending the text is one chunk,
  before a letter two (``\\s+(?!\\S)``);
* the model is BPE without dropout: each chunk is encoded on its own.

SentencePiece-style tokenizers (a "▁" prepended at the start of a text: Llama 2, Mistral v0.1),
slow tokenizers and any other pipeline keep the whole-text path: ``cuts_after_newlines`` is
False for them. The prompt's ids from ``q`` are checked against the tail's own ids for every
row; a row where they differ (none is known) is tokenized whole.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any

# the Split regexes whose chunks end after a newline before a visible character (see above)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def cuts_after_newlines(tokenizer: Any) -> bool:
    """Whether the tokenizer's ids of a text cut after a newline before a visible character
    are its two parts' ids (the module's docstring says which pipelines, and why). Read from
    the pipeline's parts, not its whole JSON (which writes out the vocabulary: a second for
    Qwen's)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (Python) tokenizer
        return False
    try:
        model = backend.model
        if type(model).__name__ != "BPE" or model.dropout not in (None, 0, 0.0):
            return False
        if _state(backend.normalizer) not in (None, {"type": "NFC"}):
            return False
        for added in backend.get_added_tokens_decoder().values():
            if added.lstrip or added.rstrip or added.single_word:
                return False
            content = added.content
            if any(_visible_after_newline(content, q) for q in range(1, len(content))):
                return False
        return _splits_locally(_state(backend.pre_tokenizer))
    except (AttributeError, TypeError, ValueError):  # (another library's tokenizer object)
        return False


def _state(part: Any) -> Any:
    """A pipeline part's settings as its JSON holds them (None for no part)."""
    return None if part is None else json.loads(part.__getstate__())


def _splits_locally(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "ByteLevel":  # GPT-2's regex, built in
        return pre.get("use_regex", True) is True and pre.get("add_prefix_space") is False
    if pre.get("type") != "Sequence" or len(pre.get("pretokenizers") or []) != 2:
        return False
    split, byte_level = pre["pretokenizers"]
    return (
        split.get("type") == "Split"
        and split.get("pattern") in ({"Regex": LLAMA3_SPLIT}, {"Regex": QWEN2_SPLIT})
        and split.get("behavior") == "Isolated"
        and split.get("invert") is False
        and byte_level.get("type") == "ByteLevel"
        and byte_level.get("use_regex") is False
        and byte_level.get("add_prefix_space") is False
    )


def _visible(char: str) -> bool:
    return char.isprintable() and not char.isspace() and not unicodedata.combining(char)


def _visible_after_newline(text: str, q: int) -> bool:
    return 0 < q < len(text) and text[q - 1] == "\n" and _visible(text[q])


def _ends_line(prompt: str) -> bool:
    """Whether the prompt ends with a newline after a visible character: its ids are then the
    head of the whole text's when a visible character follows (a longer whitespace run at the
    end, "\\n\\n" or " \\n", is one chunk alone and two before a letter: GPT-2's
    ``\\s+(?!\\S)``)."""
    return prompt[-2:-1] != "" and prompt[-1] == "\n" and _visible(prompt[-2])


def last_cut(prompt: str) -> int:
    """The last place inside ``prompt`` after a newline and before a visible character; 0 (the
    whole prompt) when there is none."""
    newline = prompt.rfind("\n", 0, len(prompt) - 1)
    while newline >= 0:
        if _visible(prompt[newline + 1]):
            return newline + 1
        newline = prompt.rfind("\n", 0, newline)
    return 0


def joint_ids(
    rows: Sequence[tuple[str, Sequence[str]]],
    ids_many: Callable[[list[str]], list[list[int]]],
    windowed: bool,
) -> list[tuple[list[int], list[list[int]]]]:
    """For each (prompt, completion texts): the prompt's ids, and the ids of prompt +
    completion tokenized whole for each completion, from one tokenizer call. ``windowed``
    (``cuts_after_newlines``): the prompt is read once, and each completion after its
    prompt's last line (or after the prompt, where it ends with a newline and the completion
    starts with a visible character)."""
    texts: list[str] = []
    plans = []  # each row's (its prompt's text, its last line's, each completion's with cut)
    for prompt, completions in rows:
        head = len(texts)
        texts.append(prompt)
        ends_line = windowed and _ends_line(prompt)
        after = [ends_line and _visible(completion[:1] or " ") for completion in completions]
        cut = last_cut(prompt) if windowed and not all(after) else 0
        tail = None
        if cut:  # (its ids tell how many of the prompt's come before its last line)
            tail = len(texts)
            texts.append(prompt[cut:])
        windows = []
        for completion, whole_prompt in zip(completions, after, strict=True):
            if whole_prompt:
                windows.append((len(prompt), len(texts)))
                texts.append(completion)
            else:
                windows.append((cut, len(texts)))
                texts.append(prompt[cut:] + completion)
        plans.append((head, tail, windows))
    ids = ids_many(texts)
    results: list[tuple[list[int], list[list[int]]]] = []
    whole: list[tuple[int, int, str]] = []  # (row, completion, text) tokenized whole after all
    for row, (prompt, completions) in enumerate(rows):
        head_index, tail, windows = plans[row]
        head = ids[head_index]
        kept = 0  # the prompt's tokens before its last line
        if tail is not None:
            kept = len(head) - len(ids[tail])
            if kept < 0 or head[kept:] != ids[tail]:
                kept = -1  # (never seen: the last line read otherwise alone than in the prompt)
        joints: list[list[int]] = []
        for number, (cut, index) in enumerate(windows):
            if cut and cut == len(prompt):
                joints.append(head + ids[index])
            elif kept >= 0:
                joints.append(head[:kept] + ids[index])
            else:
                joints.append([])
                whole.append((row, number, prompt + completions[number]))
        results.append((head, joints))
    if whole:
        redone = ids_many([text for *_, text in whole])
        for (row, number, _), joint in zip(whole, redone, strict=True):
            results[row][1][number] = joint
    return results
