"""The ``chat_template`` option: the template its text, a .jinja or .json file, or a model or
tokenizer folder names, compiled as transformers will render it and put on the tokenizer (and
processor); whether the template a run renders with writes today's date, and whether it writes
a generation prompt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.preference_pairs import PreferenceData


def replace_chat_template(template: str, tokenizer: Any, processor: Any) -> None:
    """``chat_template``: the text, or a file holding it (a value with no Jinja tag is a path)."""
    if "{%" not in template and "{{" not in template:
        template = _template_file(template)
    from jinja2 import TemplateError
    from transformers.utils.chat_template_utils import _compile_jinja_template

    try:  # transformers' own compilation: the environment the template will render in
        _compile_jinja_template(template)
    except TemplateError as exc:
        line = f" at template line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise ConfigError(f"chat_template: does not compile ({exc.message}{line})") from None
    tokenizer.chat_template = template
    if processor is not None:
        processor.chat_template = template


TEMPLATE_FILES = ("chat_template.jinja", "tokenizer_config.json", "chat_template.json")


def _template_file(path: str) -> str:
    """The template a ``chat_template`` path names: a .jinja file's text; the ``chat_template``
    of a .json file (tokenizer_config.json, a processor's chat_template.json); a model or
    tokenizer folder's (TRL's chat_template_path takes one). A JSON file read as the template
    itself rendered its own text, braces and all, as every conversation."""
    place = Path(path)
    if place.is_dir():
        found = next((place / name for name in TEMPLATE_FILES if (place / name).is_file()), None)
        if found is None:
            raise ConfigError(
                f"chat_template: the folder {path} holds no chat template (none of "
                f"{', '.join(TEMPLATE_FILES)})"
            )
        place = found
    try:
        text = place.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"chat_template: {path} is neither a Jinja template nor a readable file "
            f"({getattr(exc, 'strerror', None) or exc})"
        ) from None
    if place.suffix != ".json":
        return text
    try:
        stored = json.loads(text).get("chat_template")
    except (ValueError, AttributeError):
        stored = None
    if isinstance(stored, list):  # several named templates (tokenizer_config.json): the default
        named = {t.get("name"): t.get("template") for t in stored if isinstance(t, dict)}
        stored = named.get("default")
    if not isinstance(stored, str) or not stored:
        raise ConfigError(f"chat_template: {place} is JSON without a chat_template text in it")
    return stored


def writes_todays_date(tokenizer: Any, config: DPOConfig, data: PreferenceData) -> bool:
    """Whether conversational pairs are rendered with a template that reads the clock (Llama
    3.1 to 3.3: "Today Date: ..." unless date_string is given)."""
    template = str(getattr(tokenizer, "chat_template", None) or "")
    return (
        "strftime_now" in template
        and "date_string" not in (config.chat_template_kwargs or {})
        and any(example.conversational for example in data.examples)
    )


def generation_header(tokenizer: Any, config: DPOConfig, data: PreferenceData) -> str | None:
    """``reply_header`` of the first conversational pair whose prompt is not a prefill."""
    example = next((e for e in data.examples if e.conversational and not e.images), None)
    if example is None or not isinstance(example.chosen, list):
        return None
    return reply_header(
        tokenizer, config.chat_template_kwargs, example.prompt, example.chosen,
        example.template_args,
    )  # fmt: skip


def reply_header(
    tokenizer: Any,
    template_kwargs: dict[str, Any] | None,
    prompt: Any,
    reply: list[dict[str, Any]],
    args: dict[str, Any] | None = None,
) -> str | None:
    """What a reply begins with before its content where the chat template writes no
    generation prompt (a template without an ``add_generation_prompt`` branch, as some
    fine-tunes ship: ChatML's ``<|im_start|>assistant`` and a newline); None where it writes
    one, or writes nothing before the reply (Mistral v0.1's, whose prompt ends with
    ``[/INST]``), or the prompt is a prefill."""
    from directpo.chat_render import ChatRenderer
    from directpo.chat_split import COMPLETION_MARK, conversation
    from directpo.messages import is_prefilled

    if not getattr(tokenizer, "chat_template", None) or not isinstance(prompt, list):
        return None
    if is_prefilled(prompt):
        return None
    render = ChatRenderer(tokenizer, None, template_kwargs).template
    try:
        opened = render(prompt, args, add_generation_prompt=True)
        closed = render(prompt, args, add_generation_prompt=False)
        # (a mark where the reply's content starts: its text could be found in a header)
        whole = render(conversation(prompt, reply, COMPLETION_MARK), args)
    except Exception:  # (a row the template refuses is said when the rows are checked)
        return None
    start = whole.find(COMPLETION_MARK)
    if opened != closed or not whole.startswith(opened) or start < len(opened):
        return None
    header = whole[len(opened) : start]
    return header if header.strip() else None


def header_note(header: str, consequence: str, fix: str | None = None, whose: str = "the") -> str:
    """The one note of a chat template that writes no generation prompt (``reply_header``),
    for every caller: ``consequence``, what the header ({header!r} filled in) does there;
    ``fix``, where a template that writes it goes (none: generate's, nothing to fix); ``whose``,
    whose template (train's implicit_reward_model: its folder's, not the run's)."""
    said = consequence.format(header=repr(header))
    give = f"; give a template that writes it {fix}" if fix else ""
    return (
        f"note: {whose} chat template writes no generation prompt (it has no "
        f"add_generation_prompt branch), so {said}{give}"
    )


def no_generation_prompt_note(header: str) -> str:
    """train's, of its policy's template (the chat_template option)."""
    return header_note(
        header,
        "each completion starts with the assistant turn's header ({header}), which trains as "
        "part of the reply (as TRL's would), and samples (eval_generate, generate) begin by "
        "writing it",
        "with the chat_template option",
    )


def scored_header_note(
    header: str,
    fix: str = "in the model folder's chat template (its chat_template.jinja)",
    whose: str = "the",
) -> str:
    """score's, rank's, ImplicitReward's and train's implicit_reward_model's: the header is
    the first tokens of each completion scored, its log-ratio the same for every completion of
    a prompt (a constant in each reward). ``fix``: where the template that writes it goes
    (ImplicitReward's: its tokenizer argument too)."""
    return header_note(
        header,
        "each completion is scored with the assistant turn's header ({header}) as its first "
        "tokens: every reward of a prompt holds the header's log-ratio (the same for each "
        "completion: margins and rankings are unchanged)",
        fix,
        whose,
    )


def sampled_header_note(header: str) -> str:
    """generate's: nothing to fix, the model writes the header itself."""
    return header_note(
        header,
        "the model begins each sample by writing the assistant turn's header ({header}) "
        "itself, which the completions hold",
    )
