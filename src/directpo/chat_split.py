"""How a chat template's rendering of a conversation is split into prompt and completion:
the conversation of a prompt and its completion, the mark that finds where a completion's
content starts when the prompt is not a prefix of the conversation, the whitespace the turn
writes before it, and the refusals of renderings that cannot train (reasoning after an empty
think block, tools the template does not write)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from directpo.callers import Entry, caller, said, spell_value
from directpo.messages import Messages, is_prefilled, shared_prefix_length
from directpo.readers import RowError


def split_rendered(
    render: Callable[[list[dict]], str], prompt: Messages, completion: Messages, prompt_text: str
) -> tuple[str, str]:
    """(prompt text, completion text) of a conversational pair; ``render``: the row's chat
    template; ``prompt_text``: the prompt as generation renders it."""
    full_text = render(conversation(prompt, completion))
    shared = shared_prefix_length(prompt_text, full_text)
    require_reasoning(completion, full_text[shared:])
    if OPEN_THINKING.search(prompt_text) and not thinks(completion):
        raise RowError("reply without reasoning", no_reasoning())
    # whitespace a template writes after the last turn is formatting, never generated
    if full_text.startswith(prompt_text):
        return prompt_text, full_text[len(prompt_text) :].rstrip()
    if thinks(completion) and EMPTY_THINKING.search(prompt_text):
        # (the turn from its content on would train the reply with its reasoning dropped)
        raise RowError("chat template", thinking_closed())
    # Some templates write the generation prompt differently from a finished turn (Qwen3's
    # empty <think></think> with enable_thinking: false): the completion is then the turn
    # from its content on, after the prompt exactly as generation sees it. A mark put at the
    # start of the content finds that place exactly (a search for the text could match it
    # anywhere, e.g. "fin" in a header "assistant (final)").
    marked = render(conversation(prompt, completion, COMPLETION_MARK))
    start = marked.find(COMPLETION_MARK)
    if start < shared or marked.replace(COMPLETION_MARK, "", 1) != full_text:
        # a mark in an empty content moves the text (Qwen3 writes a newline between content
        # and a tool call only when there is content): the turn less the empty think block
        head = without_empty_thinking(prompt_text)
        if head is None or not full_text.startswith(head):
            raise RowError("chat template", not_a_prefix(prompt_text, full_text))
        return prompt_text, full_text[len(head) :].rstrip()
    gap = completion_gap(marked[:start], prompt_text)
    return prompt_text, gap + full_text[start:].rstrip()


def without_empty_thinking(prompt_text: str) -> str | None:
    """A generation prompt less the empty think block it ends with (Qwen3's enable_thinking:
    false), which a finished turn without reasoning does not write; None without one."""
    found = EMPTY_THINKING.search(prompt_text)
    return None if found is None else prompt_text[: found.start()]


COMPLETION_MARK = "\ue000"  # a private-use character: no text or template writes it


def conversation(prompt: list[dict], completion: list[dict], mark: str = "") -> list[dict]:
    """Prompt and completion as one conversation (``mark`` before the completion's text). A
    prefilled prompt's last message and the completion's first are one assistant turn."""
    first = {**completion[0], "content": mark + completion[0]["content"]}
    if is_prefilled(prompt):
        first["content"] = prompt[-1]["content"] + first["content"]
        return [*prompt[:-1], first, *completion[1:]]
    return [*prompt, first, *completion[1:]]


def completion_gap(before_content: str, prompt_text: str) -> str:
    """The whitespace a finished turn writes before its content (Mistral's ``"[/INST] "``)
    less what the prompt already ends with: the model generates it after the prompt, so it
    begins the completion (without it, " 4" would train as "4", a token the model never
    samples there)."""
    gap = before_content[len(before_content.rstrip()) :]
    kept = next(n for n in range(len(gap), -1, -1) if prompt_text.endswith(gap[:n]))
    return gap[kept:]


# How a refusal of a chat template says the fix: by what its caller can do (callers.Entry).
# train has the chat_template option (and tokenizer_name_or_path); score, rank and generate
# (their commands and score_file / rank_file / generate_file) render with the model folder's
# own template; ImplicitReward with its tokenizer argument too. The message is right where it
# is made, in the CLI and in Python alike (score's was train's, reworded by the CLI alone).
@dataclass(frozen=True)
class TemplateFix:
    option: str  # ends "give a template that ... {option}"
    none: str  # what to do for a tokenizer without one
    another: str  # after "fix it" (a template that does not compile)


FIXES = {
    Entry.TRAIN: TemplateFix(
        option="with the chat_template option",
        none="give one with the chat_template option (its text or a .jinja file), or set "
        "tokenizer_name_or_path to a tokenizer that has one",
        another=", or give another with the chat_template option",
    ),
    Entry.FOLDER: TemplateFix(
        option="in the model folder's chat template (its chat_template.jinja: score, rank and "
        "generate render with the model's own)",
        none="put one in the model folder (its chat_template.jinja), or use a model whose "
        "tokenizer has one",
        another="",
    ),
    Entry.IMPLICIT_REWARD: TemplateFix(
        option="in the tokenizer's chat template (ImplicitReward's tokenizer argument, or the "
        "model folder's chat_template.jinja)",
        none="pass ImplicitReward a tokenizer that has one (its tokenizer argument), or put one "
        "in the model folder (its chat_template.jinja)",
        another=", or pass ImplicitReward a tokenizer with another",
    ),
}


def template_fix() -> TemplateFix:
    """The words of the caller rendering now."""
    return FIXES[caller().entry]


EMPTY_THINKING = re.compile(r"<think>\s*</think>\s*$")  # Qwen3's enable_thinking: false
OPEN_THINKING = re.compile(r"<think>\s*$")  # DeepSeek-R1's and QwQ's generation prompt


def no_reasoning() -> str:
    return (
        "the chat template's generation prompt opens a <think> block (DeepSeek-R1, QwQ), so the "
        "model writes its reasoning first, but the reply has none (no </think>): it would train "
        "as reasoning that never ends; give the replies their <think>...</think> reasoning, or "
        f"a template whose generation prompt does not open one {template_fix().option}"
    )


def thinking_closed() -> str:
    """A completion with reasoning after a prompt whose think block is closed, refused with
    where enable_thinking false comes from as the caller sets it: train's chat_template_kwargs
    option as its recipe, flags or keywords write it (a recipe's 'enable_thinking: false' was
    said to every caller), score's / rank's / generate's rows and the run's config.yaml."""
    # (score and rank were told 'to train replies that reason': they score them, train nothing)
    verb, without = "train", "train without thinking"
    if caller().entry is Entry.TRAIN:
        off = said("chat_template_kwargs", {"enable_thinking": False})
        where = f"set by {off} or a row's own chat_template_kwargs"
    else:  # (score, rank, generate, ImplicitReward: the rows' and the trained run's)
        verb, without = "score", "score them without it"  # (rank scores each candidate)
        where = (
            "enable_thinking false, set by a row's chat_template_kwargs or the run's config.yaml"
        )
    return (
        "the completion holds reasoning (<think>...</think> or reasoning_content), but the chat "
        f"template ends the prompt with an empty <think></think> ({where}), so no reply can "
        f"think after it: to {verb} replies that reason, drop enable_thinking false (or set it "
        f"{spell_value(True)}); to {without}, remove the <think>...</think> "
        "blocks (and reasoning_content) from the replies"
    )


def thinks(completion: Messages) -> bool:
    """A completion with reasoning: a <think> block in its text, or Qwen3's reasoning_content."""
    return any(
        (isinstance(m.get("content"), str) and "</think>" in m["content"])
        or (isinstance(m.get("reasoning_content"), str) and m["reasoning_content"].strip())
        for m in completion
    )


def require_reasoning(completion: Messages, rendered: str) -> None:
    """Templates that drop a finished turn's reasoning (DeepSeek-R1's and QwQ's keep only what
    follows ``</think>``) would train a reply that reasons as one that does not: refused.
    ``rendered``: the conversation's text after what it shares with the prompt."""
    for message in completion:
        content, reasoning = message.get("content"), message.get("reasoning_content")
        parts = [reasoning] if isinstance(reasoning, str) else []
        if isinstance(content, str) and "</think>" in content:
            parts.append(content.split("</think>")[0].split("<think>")[-1])
        if any(part.strip() and part.strip() not in rendered for part in parts):
            raise RowError("chat template drops reasoning", reasoning_dropped())


def reasoning_dropped() -> str:
    return (
        "the chat template drops the reply's reasoning (<think>...</think> or reasoning_content) "
        "from the conversation it renders (DeepSeek-R1's and QwQ's keep only the text after "
        "</think>), so the reply would train without it: give a template that keeps the last "
        f"turn's reasoning {template_fix().option}, or remove the reasoning from the replies"
    )


def not_a_prefix(prompt_text: str, full_text: str) -> str:
    """Where a row's prompt, rendered for generation, and its whole conversation part, so that
    the template's branch that writes them differently can be found."""
    shared = shared_prefix_length(prompt_text, full_text)
    return (
        "the chat template does not render the prompt as a prefix of the whole conversation "
        f"(the prompt goes on {prompt_text[shared : shared + 40]!r} where the conversation "
        f"has {full_text[shared : shared + 40]!r})"
    )


def require_rendered(names: list[str], text: str, what: str) -> None:
    """Templates written before tool calling (Llama 3.0, Gemma, Mistral v0.1) render neither
    ``tools`` nor ``tool_calls``: the turn would train as if the call were not there."""
    missing = next((name for name in names if name not in text), None)
    if missing is not None:
        raise RowError(
            "chat template ignores tools",
            f"the chat template does not render {what} ('{missing}' is not in the text it "
            f"writes); give one that does {template_fix().option}",
        )
