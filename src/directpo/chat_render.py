"""A row's prompt and completions as text, rendered with the chat template (tokenization.py
turns the texts into ids). Text rows are their own text.

* Conversational rows are rendered with the tokenizer's chat template: the prompt with the
  generation prompt, the completion as the rest of the rendered conversation. A prompt that ends
  with an assistant message (a prefill, ``[user "Write a haiku", assistant "Autumn"]``) is left
  open (``continue_final_message``) and the completion continues that message in the same turn.
  A template that renders the generation prompt differently from a finished turn (Qwen3's empty
  ``<think></think>`` with ``enable_thinking: false``; Mistral v0.3's system message in the last
  user turn) gets the completion from its content on (with the whitespace the turn writes before
  it), after the prompt as generation sees it; one that renders neither way is an error for that
  row, as is a reply whose reasoning the template drops (chat_split.py). A completion starts
  with an assistant message. A template that raises for a row (``raise_exception("Conversation
  roles must alternate...")``, or its code failing on the row's values) refuses that row (an
  error, or a skip with ``skip_invalid_rows``), said with what to do where it renders the row
  without its system message and refuses its first system message alone before the rest (no
  system turn: Gemma 2's, Mistral v0.1's; Llama 2's takes one first); one that does not
  compile is an error naming the tokenizer. A text-only model's template gets content given as
  text parts (``[{"type": "text", "text": ...}]``) joined into one string. A row whose tools or
  tool calls (the completion's or the prompt's) the template does not write (templates older
  than tool calling) is refused: its call would train, or be read, as an empty turn. A call's
  arguments given as a JSON string (OpenAI's, tulu-3's) that the template writes escaped as a
  string (Qwen2.5's and Llama 3.1's ``arguments | tojson``, made for a mapping: ``"arguments":
  "{\\"city\\": ...}"``) are given to it as the mapping they hold, as TRL's own LFM2 templates
  ask (json.loads before applying); a template that writes the string as is (Qwen3's ``is
  string`` branch, DeepSeek's concatenation) keeps it.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from jinja2 import TemplateError, TemplateSyntaxError

from directpo.chat_split import require_rendered, split_rendered, template_fix
from directpo.errors import ModelLoadError, first_line
from directpo.messages import Text, function_names, is_prefilled, text_contents
from directpo.preference_pairs import PreferenceExample
from directpo.readers import RowError
from directpo.vision import text_only_refusal


class ChatRenderer:
    """Renders rows with one tokenizer's (or processor's) chat template and the
    ``chat_template_kwargs`` option."""

    def __init__(
        self, tokenizer: Any, processor: Any = None, template_kwargs: dict[str, Any] | None = None
    ):
        self.tokenizer = tokenizer
        self.processor = processor  # a vision-language model's: prompts with images
        self.template_kwargs = dict(template_kwargs or {})

    def render(
        self,
        prompt: Text,
        completion: Text,
        template_args: dict[str, Any] | None = None,
        prompt_text: str | None = None,
    ) -> tuple[str, str]:
        """(prompt text, completion text) ready for tokenization; ``template_args``: the row's
        own chat template arguments (``PreferenceExample.template_args``); ``prompt_text``: the
        prompt already rendered (``render_prompt``), when the caller has it."""
        if isinstance(prompt, str):
            assert isinstance(completion, str)
            return prompt, completion
        assert isinstance(completion, list)
        if completion[0]["role"] != "assistant":
            raise RowError(
                "not an assistant reply",
                "the prompt ends with an assistant message (a prefill), so the completion must "
                "start with an assistant message that continues it"
                if is_prefilled(prompt)
                else f"a completion must start with an assistant message, not a "
                f"'{completion[0]['role']}' message",
            )
        if prompt_text is None:
            prompt_text = self.render_prompt(prompt, template_args)
        render = partial(self.template, row_args=template_args)
        _, completion_text = split_rendered(render, prompt, completion, prompt_text)
        calls = [name for message in completion for name in function_names(message)]
        require_rendered(calls, completion_text, "the completion's tool calls")
        return prompt_text, completion_text

    def template(self, messages: list[dict], row_args: dict | None, **options: Any) -> str:
        # the row's own arguments (TRL's chat_template_kwargs column) over the option's
        extra = {**self.template_kwargs, **(row_args or {})}
        # a processor's template renders image parts; the tokenizer's may not have one
        templater = self.processor if self._processor_template() else self.tokenizer
        if self.processor is None:
            messages = text_contents(messages)
        try:
            text = templater.apply_chat_template(messages, tokenize=False, **extra, **options)
            if _escaped_arguments(messages, text):  # (the model would learn JSON in a string)
                parsed = _parsed_arguments(messages)
                text = templater.apply_chat_template(parsed, tokenize=False, **extra, **options)
            return text
        except TemplateSyntaxError as exc:  # also TemplateAssertionError (an unknown filter)
            name = getattr(templater, "name_or_path", "") or type(templater).__name__
            raise ModelLoadError(
                f"{name}: the chat template does not compile "
                f"({(exc.message or type(exc).__name__).rstrip('.')}, at template line "
                f"{exc.lineno}); fix it{template_fix().another}"
            ) from None
        except (TemplateError, ValueError) as exc:  # raise_exception(...), an undefined value
            hint = no_system_turn() if renders_without_system(templater, messages, extra) else ""
            raise RowError(
                "refused by the chat template",
                f"the chat template refused the row ({first_line(exc)}){hint}",
            ) from None
        except Exception as exc:  # the template's own code failing on this row's values
            raise RowError(
                "refused by the chat template",
                f"the chat template failed on the row ({type(exc).__name__}: {first_line(exc)})",
            ) from None

    def render_prompt(self, prompt: Text, template_args: dict[str, Any] | None = None) -> str:
        """The prompt as the model sees it before a completion: with the generation prompt, or,
        when it ends with an assistant message (a prefill), that message left open so that the
        completion continues it in the same turn (``continue_final_message``)."""
        if isinstance(prompt, str):
            return prompt
        self._require_chat_template()
        if is_prefilled(prompt):
            text = self.template(prompt, template_args, continue_final_message=True)
        else:
            text = self.template(prompt, template_args, add_generation_prompt=True)
        tools = {**self.template_kwargs, **(template_args or {})}.get("tools") or ()
        require_rendered(function_names({"tool_calls": tools}), text, "the row's tools")
        # a call earlier in the conversation (an agent trace's history, tulu-3 / Skywork tool
        # rows): dropped, the model would read an empty assistant turn before the tool's result
        calls = [name for message in prompt for name in function_names(message)]
        require_rendered(calls, text, "the prompt's tool calls")
        return text

    def _processor_template(self) -> bool:
        return bool(getattr(self.processor, "chat_template", None))

    def _require_chat_template(self) -> None:
        if not (getattr(self.tokenizer, "chat_template", None) or self._processor_template()):
            raise RowError(
                "no chat template",
                f"conversational rows need a tokenizer with a chat template: {template_fix().none}",
            )

    def render_pair(
        self, example: PreferenceExample
    ) -> tuple[str, str, str | RowError] | RowError | None:
        """(prompt, chosen, rejected) texts; None for a pair with images (encoded on its own).
        A rejected side that cannot be rendered is reported after the chosen side's checks, in
        the order the rules apply."""
        if example.images:
            return None
        if self.processor is not None and (refusal := text_only_refusal(self.processor)):
            return RowError("no image", refusal)
        try:
            args = example.template_args
            prompt_text = self.render_prompt(example.prompt, args)
            _, chosen_text = self.render(example.prompt, example.chosen, args, prompt_text)
        except RowError as err:
            return err
        try:
            _, rejected_text = self.render(
                example.prompt, example.rejected, example.template_args, prompt_text
            )
        except RowError as err:
            return prompt_text, chosen_text, err
        return prompt_text, chosen_text, rejected_text


def renders_without_system(templater: Any, messages: list[dict], extra: dict) -> bool:
    """A template that refuses a row with a system message and renders it without: one with
    no system turn (Gemma 2's 'System role not supported', Mistral v0.1's roles that must
    alternate from a user turn). One that renders the row's first system message leading the
    rest has a system turn (Llama 2's, Mistral v0.2's): it refused a system message where the
    row has it (mid-conversation, roles that must alternate), said as the template says it."""
    systems = [message for message in messages if message["role"] == "system"]
    if not systems:
        return False
    rest = [message for message in messages if message["role"] != "system"]
    try:
        templater.apply_chat_template(rest, tokenize=False, **extra)
    except Exception:  # (refused for another reason too: said as the template says it)
        return False
    try:
        templater.apply_chat_template([systems[0], *rest], tokenize=False, **extra)
    except Exception:
        return True
    return False


def no_system_turn() -> str:
    """How to train rows with a system message on a template without a system turn. Neither
    directpo nor TRL moves the message for it: where its text goes is the template's choice
    (Gemma 3's puts it at the start of the first user turn)."""
    return (
        "; the template has no system turn (it renders the row without its system message): "
        "drop the system messages (or the system_column option that adds them), put their "
        "text in the first user message, or give a template that takes one "
        f"{template_fix().option}"
    )


def _string_arguments(messages: list[dict]) -> list[tuple[dict, str, dict]]:
    """Each tool call's (function, arguments text, the mapping it holds) whose arguments are a
    JSON string of an object (OpenAI's form), in the messages' order."""
    found = []
    for message in messages:
        for call in message.get("tool_calls") or ():
            function = call.get("function", call) if isinstance(call, dict) else None
            text = function.get("arguments") if isinstance(function, dict) else None
            if isinstance(text, str) and text.lstrip().startswith("{"):
                try:
                    held = json.loads(text)
                except ValueError:
                    continue
                if isinstance(held, dict):
                    found.append((function, text, held))
    return found


def _escaped_arguments(messages: list[dict], text: str) -> bool:
    """The template wrote a call's JSON-string arguments escaped, as a string (``"{\\"city
    \\": ...}"``), where it is not written as is."""
    for _, arguments, _ in _string_arguments(messages):
        escaped = json.dumps(arguments)[1:-1]
        if escaped != arguments and escaped in text and arguments not in text:
            return True
    return False


def _parsed_arguments(messages: list[dict]) -> list[dict]:
    """``messages`` with each call's JSON-string arguments given as the mapping they hold (the
    row's own messages left as they are)."""
    parsed = []
    for message in messages:
        calls = []
        for call in message.get("tool_calls") or ():
            function = call.get("function", call) if isinstance(call, dict) else None
            found = _string_arguments([{"tool_calls": [call]}]) if function is not None else []
            if found and "function" in call:
                call = {**call, "function": {**function, "arguments": found[0][2]}}
            elif found:
                call = {**call, "arguments": found[0][2]}
            calls.append(call)
        parsed.append({**message, "tool_calls": calls} if "tool_calls" in message else message)
    return parsed
