"""Where a completion's messages that the model does not write (a tool's result, a user turn
between replies) lie in its rendered text, so that ``assistant_only_loss`` leaves their tokens
out of log π(y|x).

A run of such messages is found by rendering prefixes of the conversation, as the prompt's
boundary is (chat_split.py), so any template works: it starts where the conversation up to the
assistant message before it ends (less the whitespace after that turn's end token, which the
model never samples) and ends where the conversation up to the next assistant message, with the
generation prompt, ends (that turn's header is written by whoever runs the model, not by it). A
template that renders a reply otherwise once other turns follow it (Qwen3 writes an empty think
block in the last turn only) has the reply end at the last stop token the whole rendering
writes between the reply's start and the next message's content (where the model stops); one
that writes none there (gpt-oss ends earlier replies with <|end|>, no stop token) leaves no
exact place: the row is refused rather than trained with a mask that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from directpo.callers import spell_setting
from directpo.chat_split import COMPLETION_MARK as MARK
from directpo.chat_split import conversation, template_fix, without_empty_thinking
from directpo.messages import Messages, Text, others_turn
from directpo.pair_store import Spans
from directpo.readers import RowError

CharSpans = list[tuple[int, int]]


def images_and_turns() -> str:
    """A row of images whose completion holds others' turns, refused as its caller reads it."""
    return (
        "assistant_only_loss: the prompt has images and a completion holds messages the model "
        "does not write (a tool's result, a user turn), whose tokens are not found in a prompt "
        f"with images; end the completion before its first such message, or {_unmasked()}"
    )


def _unmasked() -> str:
    """assistant_only_loss turned off, as the caller sets options (a recipe's, a flag's or a
    keyword's: 'set assistant_only_loss false' was none of them)."""
    return spell_setting(("assistant_only_loss", False))


def completion_spans(
    render: Callable[..., str],
    ids_many: Callable[[list[str]], list[list[int]]],
    prompt: Text,
    completions: Sequence[Text],
    texts: Sequence[str | RowError],
    head: list[int],
    raws: Sequence[list[int] | RowError],
    stop_texts: Sequence[str] = (),
) -> list[Spans]:
    """Each completion's token spans of messages the model does not write (``texts``: the
    prompt's rendered text, then each completion's; ``head``: the prompt's raw ids; ``raws``:
    each completion's raw ids as they follow it)."""
    found: list[Spans] = []
    for completion, text, raw in zip(completions, texts[1:], raws, strict=True):
        if isinstance(completion, str) or isinstance(raw, RowError) or not others_turn(completion):
            found.append(())
            continue
        assert isinstance(text, str) and isinstance(prompt, list) and isinstance(texts[0], str)
        chars = others_spans(render, prompt, completion, text, stop_texts)
        found.append(token_spans(ids_many, texts[0], head, text, raw, chars) if chars else ())
    return found


def others_spans(
    render: Callable[..., str],
    prompt: Messages,
    completion: Messages,
    completion_text: str,
    stop_texts: Sequence[str] = (),
) -> CharSpans:
    """[start, end) character spans of ``completion_text`` (the completion as chat_split.py
    cut it from the whole rendering) that hold messages not written by the assistant; empty
    for a completion of assistant messages only. ``render``: the row's chat template;
    ``stop_texts``: the model's stop tokens as text, where a reply ends when the template
    renders the conversation up to it otherwise than within the whole one."""
    full = render(conversation(prompt, completion))
    # chat_split's completion is the rendering's tail, whitespace after the last turn dropped
    base = len(full.rstrip()) - len(completion_text)
    spans: CharSpans = []
    roles = [message["role"] for message in completion]
    i = 0
    while i < len(completion):
        if roles[i] == "assistant":
            i += 1
            continue
        j = next((k for k in range(i, len(roles)) if roles[k] == "assistant"), None)
        before = render(conversation(prompt, completion[:i])).rstrip()
        if full.startswith(before) and len(before) >= base:
            start = len(before) - base
        else:  # the template rewrites the turn once others follow (Qwen3's empty think block)
            # the reply before message i starts where the last span ended: a stop token
            # before it (an earlier tool call's <|call|>) is not where this reply ends
            reply = base + (spans[-1][1] if spans else 0)
            start = _after_stop(render, prompt, completion, i, full, (base, reply), stop_texts)
            start = _place(before, full, base, i) if start is None else start
        if j is not None:
            after = render(conversation(prompt, completion[:j]), add_generation_prompt=True)
            end = _place(after, full, base, j)
        else:  # the completion ends with them
            end, j = len(completion_text), len(completion)
        if end > start:
            spans.append((start, end))
        i = j
    return spans


def _after_stop(
    render: Callable[..., str],
    prompt: Messages,
    completion: Messages,
    i: int,
    full: str,
    bounds: tuple[int, int],
    stop_texts: Sequence[str],
) -> int | None:
    """Where the reply before completion message ``i`` ends in the completion's text: after
    the last stop token the whole rendering writes between the reply's start and message i's
    content (the reply's end-of-turn: the model stops there); None where it writes none there.
    ``bounds``: where the completion and the reply start in ``full``."""
    base, reply = bounds
    messages = conversation(prompt, completion)
    at = len(messages) - len(completion) + i
    marked = [*messages[:at], {**messages[at], "content": MARK + messages[at]["content"]}]
    text = render(marked + messages[at + 1 :])
    content = text.find(MARK)
    if content < base or text.replace(MARK, "", 1) != full:
        return None
    ends = [full.rfind(stop, reply, content) for stop in stop_texts if stop]
    end = max(ends, default=-1)
    if end < reply:
        return None
    stop = max((s for s in stop_texts if s and full.startswith(s, end)), key=len)
    return end + len(stop) - base


def _place(prefix: str, full: str, base: int, number: int) -> int:
    """Where ``prefix`` (the rendering of the conversation's first messages) ends in the
    completion's text (less the empty think block a generation prompt writes where the whole
    conversation, with no reasoning in that turn, writes none: Qwen3's enable_thinking:
    false); refused where the whole conversation does not start with it."""
    if not full.startswith(prefix) and (head := without_empty_thinking(prefix)) is not None:
        prefix = head if full.startswith(head) else prefix
    if not full.startswith(prefix) or len(prefix) < base:
        raise RowError(
            "chat template",
            f"assistant_only_loss: the chat template renders the conversation up to the "
            f"completion's message {number} differently from the start of the whole one (it "
            "rewrites earlier turns) and writes no stop token between, so the tokens of the "
            "messages the model does not write "
            "cannot be found exactly; end the completion before its first such message, give "
            f"a template that renders turns once {template_fix().option}, or {_unmasked()}",
        )
    return len(prefix) - base


def token_spans(
    ids_many: Callable[[list[str]], list[list[int]]],
    prompt_text: str,
    head: list[int],
    text: str,
    raw: list[int],
    chars: CharSpans,
) -> Spans:
    """``chars`` (spans of the completion's ``text``) as [start, end) spans of its ``raw`` ids
    (as they follow the prompt, whose own ids are ``head``; or tokenized alone, where a token
    crossed the prompt's end). Each boundary is where the ids of the text up to it end (or
    those of the text after it begin): a token that crosses one (a template writing no special
    token between turns, merged by the tokenizer) refuses the row, which would otherwise train
    part of that token."""
    cuts = sorted({cut for span in chars for cut in span if cut < len(text)})
    found = {len(text): len(raw)}
    tokenized = ids_many([prompt_text + text[:cut] for cut in cuts] + [text[:cut] for cut in cuts])
    for cut, joint, alone in zip(cuts, tokenized, tokenized[len(cuts) :], strict=False):
        tail = joint[len(head) :] if joint[: len(head)] == head else None
        if tail is not None and raw[: len(tail)] == tail:
            found[cut] = len(tail)
        elif raw[: len(alone)] == alone:
            found[cut] = len(alone)
        elif (rest := _rest_at(ids_many, text, raw, cut)) is not None:
            found[cut] = rest
        else:
            raise RowError(
                "chat template",
                "assistant_only_loss: a token of the completion crosses the boundary of a "
                f"message the model does not write (at {text[max(cut - 20, 0) : cut + 20]!r}), "
                "so its tokens cannot be left out exactly; give a template that ends each turn "
                f"with a special token {template_fix().option}, or {_unmasked()}",
            )
    return tuple((found[start], found[end]) for start, end in chars)


def _rest_at(
    ids_many: Callable[[list[str]], list[list[int]]], text: str, raw: list[int], cut: int
) -> int | None:
    """Where the ids of ``text`` from ``cut`` on begin in ``raw``, when they are its tail: a
    boundary between tokens that the text up to it, tokenized alone, does not show (GPT-2's
    pre-tokenizer takes a trailing "\\n\\n" as one token, "\\n" + "\\n" before "It": a
    Llama-3-style header on SmolLM2's tokenizer). None where they are not."""
    (rest,) = ids_many([text[cut:]])
    return len(raw) - len(rest) if rest and raw[len(raw) - len(rest) :] == rest else None


def kept_spans(spans: Spans, raw_length: int, length: int) -> Spans:
    """``spans`` of the raw ids on the completion as it trains (``length`` ids: ended at its
    stop token or given EOS, then truncated). A span that reached the raw end (a completion
    ending with a tool's message) takes in the EOS given after it too."""
    kept = []
    for start, end in spans:
        end = length if end >= raw_length else min(end, length)
        if start < end:
            kept.append((start, end))
    return tuple(kept)
