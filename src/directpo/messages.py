"""The texts and chat messages of a row, checked; and the prompt of an implicit pair.

A field is a non-empty text, or a list of messages (``{"role", "content"}``, roles
``system``/``user``/``assistant``/``tool``; every other key a message has, such as tool calls,
tool-call ids or Qwen3's ``reasoning_content``, is kept for the chat template, as TRL passes
it). A prompt's message content may be parts (``{"type": "text"}`` and ``{"type": "image"}``,
a vision prompt's). A completion is a text (one assistant message) or
messages that start with an assistant message.

The implicit layout's prompt is the longest shared prefix of chosen and rejected. For text the
cut is moved back to the last whitespace boundary before the first difference, so that no word
(``I'm``, ``well-known``, ``3.5``, an emoji) is split and the whitespace before the first
differing word starts the completions (``"...Assistant:" | " Sure..."``), which is where BPE
tokenizers put token boundaries anyway. For message lists the shared leading messages are the
prompt.

Every problem is a ``RowError`` (a reason to count, and the message), which the caller turns
into a one-line error naming the file and row.
"""

from __future__ import annotations

from typing import Any

from directpo.readers import RowError, kind_of

Messages = list[dict[str, Any]]  # content: a string, or parts (vision prompts)
Text = str | Messages

# Llama 3.1 names a tool's result "ipython" (its template takes "tool" too); OpenAI's chat format
# and gpt-oss's template have a "developer" turn
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool", "ipython")
# each role's one string: json.loads makes a new "user" (55 bytes) for every message read, and
# a file's messages hold millions of them (5% of a 200k-row chat file's memory once read)
ROLE_NAMES = {role: role for role in MESSAGE_ROLES}


def is_message_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def is_prefilled(prompt: Text) -> bool:
    """A conversation that ends with an assistant message (a prefill the completion continues)."""
    return isinstance(prompt, list) and bool(prompt) and prompt[-1]["role"] == "assistant"


def field_value(row: dict[str, Any], key: str) -> Any:
    if key not in row:
        raise RowError("missing field", f"missing field '{key}'")
    if row[key] is None:  # (a Parquet / DataFrame null: the column is there, as the file says)
        raise RowError("missing field", f"field '{key}' is null")
    if isinstance(row[key], float) and row[key] != row[key]:  # (json.dump's NaN of a pandas
        # missing value, records dumped as they are: was "must be a string, got a number")
        raise RowError("missing field", f"field '{key}' is NaN (a missing value)")
    return row[key]


def require_encodable(value: Any, key: str) -> None:
    """Refuse a text holding a lone UTF-16 surrogate (JSON's "\\ud83d" without its pair, left
    where scraped text was cut inside an emoji): no tokenizer encodes it, and the fast ones
    raised a TypeError for the whole batch, naming no row."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RowError(
                "lone surrogate",
                f"field '{key}' holds a lone UTF-16 surrogate ({value[exc.start]!r} at character "
                f"{exc.start + 1}), half of a character, which no tokenizer encodes; remove it",
            ) from None
    elif isinstance(value, dict):
        for item in value.values():
            require_encodable(item, key)
    elif isinstance(value, list | tuple):
        for item in value:
            require_encodable(item, key)


def text_field(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise RowError(
            "wrong type",
            f"field '{key}' must be a string, got {kind_of(value)}{_one_message_hint(value)}",
        )
    if not value.strip():
        raise RowError("empty field", f"field '{key}' is empty")
    return value


def text_or_messages(value: Any, key: str, parts: bool = False) -> Text:
    return message_list(value, key, parts) if isinstance(value, list) else text_field(value, key)


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
            # OpenAI's image part ({"type": "image_url", "image_url": {"url": ...}}), which
            # neither TRL nor transformers' chat templates read: said in the form they do read
            hint = (
                f'; write OpenAI\'s {kind} part as {{"type": "image", "url": ...}}'
                if kind in OPENAI_IMAGE_PARTS
                else ""
            )
            raise RowError(
                "bad message",
                f"field '{key}': message {number} has a content part {_part_shown(part)}; "
                'expected {"type": "text", "text": ...} or {"type": "image"} (its image in the '
                'row\'s images column or the part\'s "image", "url" or "path")' + hint,
            )
    return checked


OPENAI_IMAGE_PARTS = ("image_url", "input_image")


def _part_shown(part: Any) -> str:
    """A content part as an error's one line shows it: each text cut (an image part's base64
    data URI runs to megabytes, and the line held all of it)."""

    def cut(value: Any) -> Any:
        if isinstance(value, str) and len(value) > 60:
            return f"{value[:40]}... ({len(value)} characters)"
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        return [cut(v) for v in value] if isinstance(value, list) else value

    return repr(cut(part))


def message_list(value: Any, key: str, key_allows_parts: bool = False) -> Messages:
    if not isinstance(value, list):
        raise RowError(
            "wrong type",
            f"field '{key}' must be a list of messages, got {kind_of(value)}"
            + _one_message_hint(value),
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
                f"field '{key}': message {i} has "
                + ("no role" if role is None else f"role {role!r}")
                + f", expected one of {', '.join(MESSAGE_ROLES)}"
                + (_foreign_role_hint(role) or _sharegpt_hint(message)),
            )
        if isinstance(content, list) and key_allows_parts:
            content = _content_parts(content, key, i)
        elif not isinstance(content, str):
            raise RowError(
                "bad message",
                f"field '{key}': message {i} content must be a string, got {kind_of(content)}",
            )
        # every other key reaches the template (tool_calls, reasoning_content, thinking, ...)
        extra = template_values({k: v for k, v in message.items() if k not in ("role", "content")})
        messages.append({"role": ROLE_NAMES[role], "content": content, **extra})
    return messages


def _one_message_hint(value: Any) -> str:
    """A reply written as one message object, not a list of them (LLaMA-Factory's ranking data:
    "chosen": {"from": "gpt", "value": ...}): said as the list a template reads ('must be a
    string, got an object' named neither the message nor the form)."""
    if not (isinstance(value, dict) and ({"role", "from"} & set(value))):
        return ""
    return (
        ' (one message); write it as a list of messages, [{"role": "assistant", "content": ...}]'
        + _sharegpt_hint(value)
    )


# Roles other formats name otherwise: Gemma's template writes the assistant's turn as "model"
# (and Gemini's API names it so), which data exported in that form keeps; OpenAI's older
# function calling names a tool's result "function". A template given these renders them as
# the model never saw (or, Gemma's, as a turn directpo cannot tell is the reply).
FOREIGN_ROLES = {
    "model": ("assistant", "Gemma's template and Gemini's API name the assistant's turn 'model'"),
    "function": ("tool", "OpenAI's older function calling names a tool's result 'function'"),
}


def _foreign_role_hint(role: Any) -> str:
    """The role to write for one another format names (Gemma's 'model'), else ''."""
    if not isinstance(role, str) or role not in FOREIGN_ROLES:
        return ""
    written, why = FOREIGN_ROLES[role]
    return f"; write it {written!r} ({why}; the chat template writes each role its own way)"


def _sharegpt_hint(message: dict) -> str:
    """ShareGPT's messages ({"from": "human", "value": ...}), which neither TRL nor a chat
    template reads: said in the form they read (the message's role was said as None)."""
    if "from" not in message and message.get("role") not in ("human", "gpt"):
        return ""
    return (
        '; ShareGPT\'s {"from": "human" / "gpt", "value": ...} is written {"role": "user" / '
        '"assistant", "content": ...}'
    )


def system_prompt(row: dict[str, Any], key: str, prompt: Text) -> Messages:
    """``prompt`` as messages that open with the text of the row's ``key`` column as a system
    message; an empty or null one adds none (Intel/orca_dpo_pairs leaves many empty). A
    prompt that has its own system message is refused: which one to keep is the user's call."""
    system = row.get(key)
    if system is not None and not isinstance(system, str):
        raise RowError(
            "wrong type", f"field '{key}' (system_column) must be a string, got {kind_of(system)}"
        )
    if isinstance(prompt, str):
        prompt = [{"role": "user", "content": prompt}]
    if not (system and system.strip()):
        return prompt
    if prompt[0]["role"] == "system":
        raise RowError(
            "system turn given twice",
            f"field '{key}' (system_column) and the prompt's first message both give a system "
            "turn; keep one",
        )
    return [{"role": "system", "content": system}, *prompt]


def template_values(value: Any) -> Any:
    """``value`` as the chat template gets it: every null-valued key of its objects left out,
    at any depth. Arrow (Parquet, save_to_disk, a ``datasets.Dataset``; TRL's JSON Lines too,
    read through it) gives each object of a column every key any row's object has, null where
    the row had none: tool calls rendered ``{"city": "Paris", "query": null}`` and tool
    schemas other tools' parameters. A key written as null in a JSON Lines row is read as
    absent too, so that every format gives the same pairs. A value of another type than JSON's
    (an Arrow timestamp's datetime) is its text: pairs and prompts are compared and recorded as
    JSON."""
    if isinstance(value, dict):
        return {key: template_values(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [template_values(item) for item in value]
    return value if isinstance(value, str | int | float | bool) else str(value)


def completion_messages(value: Any, key: str, prompt: Messages | None = None) -> Messages:
    """A completion: a text (one assistant message), or messages that start with an assistant
    message. Messages that first repeat the whole ``prompt`` have them dropped; text parts are
    joined into the content (TRL's vision datasets write them); an image part is an error."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": text_field(value, key)}]
    messages = message_list(value, key, key_allows_parts=True)
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


def says_nothing(prompt: Text) -> bool:
    """A prompt of messages none of which holds text, an image or a tool call (``[{"role":
    "user", "content": ""}]``): a text prompt so empty is refused by ``text_field``, and the
    model would answer a turn with nothing in it."""
    if not isinstance(prompt, list):
        return False
    for message in prompt:
        content = message["content"]
        if message.get("tool_calls") or (isinstance(content, str) and content.strip()):
            return False
        parts = content if isinstance(content, list) else ()
        if any(p["type"] != "text" or p["text"].strip() for p in parts):
            return False
    return True


def require_said(prompt: Text, what: str) -> None:
    """Refuse a message-list prompt that ``says_nothing``; ``what``: the prompt, as said."""
    if says_nothing(prompt):
        raise RowError("empty field", f"{what} has only empty messages")


# Anthropic HH's transcript mark of a user turn: a text completion holding one goes on past the
# reply (the two conversations parted at an earlier turn), and trains the user's words too
HUMAN_TURN = "\n\nHuman:"


def others_turn(completion: Text) -> str | None:
    """The role of a completion's first message the model does not write (a tool's result, a
    user turn between replies; in a text, an HH transcript's 'Human' turn), or None: a chat
    template renders its tokens into the completion, which trains them as the policy's own."""
    if isinstance(completion, str):
        return "Human" if HUMAN_TURN in completion else None
    return next((m["role"] for m in completion if m["role"] != "assistant"), None)


def function_names(message: dict) -> list[str]:
    """The function names of a message's tool calls (or of tool schemas given as its
    ``tool_calls``): ``{"type": "function", "function": {"name": ...}}`` or ``{"name": ...}``."""
    names = []
    for call in message.get("tool_calls") or ():
        function = call.get("function", call) if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if isinstance(name, str) and name:
            names.append(name)
    return names


def text_contents(messages: list[dict]) -> list[dict]:
    """Messages for a text-only model's template: content given as text parts (the newer
    transformers format) joined into one string, as completions' are. Templates written for
    string content would otherwise print the parts' repr into the prompt (``trim`` on a list)
    or fail on them; a model without an image processor cannot read an image part."""
    if all(isinstance(message["content"], str) for message in messages):
        return messages
    joined = []
    for number, message in enumerate(messages, start=1):
        content = message["content"]
        if isinstance(content, list):
            if any(part["type"] != "text" for part in content):
                raise RowError(
                    "images without a vision model",
                    f"message {number} of the prompt has an image part but the model has no "
                    "image processor (not a vision-language model); remove the image parts or "
                    "use a vision-language model",
                )
            message = {**message, "content": plain_text(content)}
        joined.append(message)
    return joined


def plain_text(content: str | list[dict[str, Any]]) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content)


def split_implicit(chosen: Text, rejected: Text) -> tuple[Text, Text, Text]:
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
        _refuse_leading_whitespace(chosen, rejected)
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


def _refuse_leading_whitespace(chosen: str, rejected: str) -> None:
    """Texts apart only in their leading whitespace ("\n\nHuman: ..." and "Human: ..."): said
    as that, not as "no common prefix". TRL's extract_prompt trains such a pair with an empty
    prompt, each whole text a completion, so the user's shared turns count as responses (and
    texts otherwise the same are no preference at all); refused here, naming the difference."""
    chosen_lead = chosen[: len(chosen) - len(chosen.lstrip())]
    rejected_lead = rejected[: len(rejected) - len(rejected.lstrip())]
    if chosen_lead == rejected_lead:
        return
    leads = (
        f"chosen starts with {repr(chosen_lead) if chosen_lead else 'no whitespace'}, "
        f"rejected with {repr(rejected_lead) if rejected_lead else 'none'}"
    )
    if chosen.lstrip() == rejected.lstrip():
        raise RowError(
            "identical chosen and rejected",
            f"chosen and rejected are the same text but for their leading whitespace ({leads}): "
            "no preference between them",
        )
    if _prompt_end(chosen.lstrip(), rejected.lstrip()) > 0:
        raise RowError(
            "different leading whitespace",
            f"chosen and rejected differ in their leading whitespace ({leads}), so they share "
            "no prompt; strip it from the start of both (the conversation they share after "
            "it is then the prompt)",
        )


def _prompt_end(chosen: str, rejected: str) -> int:
    """Where the shared prompt of two texts ends: at the last whitespace boundary before their
    first difference, so that both completions start with the whitespace before a word (" Sure",
    "\n\nHuman:") and no word, number, contraction or emoji is split. BPE tokenizers split
    before such whitespace too, so prompt tokens + completion tokens = the whole text's tokens.
    Texts that share no whitespace boundary fall back to the start of the differing run of
    letters and digits ("Answer:" | "yes")."""
    differ = shared_prefix_length(chosen, rejected)

    def boundary(text: str, i: int) -> bool:  # whitespace at i, none before it
        return i < len(text) and text[i].isspace() and (i == 0 or not text[i - 1].isspace())

    for cut in range(differ, 0, -1):
        if boundary(chosen, cut) and boundary(rejected, cut):
            return cut
    cut = differ
    while cut > 0 and chosen[cut - 1].isalnum():
        cut -= 1
    return cut


def shared_prefix_length(first: str, second: str) -> int:
    """The length of the longest prefix two texts share (``os.path.commonprefix``'s, whose
    loop over characters in Python took 11% of tokenizing chat rows: a rendered conversation
    shares its whole prompt). Found by halving with slice comparisons, done in C."""
    if second.startswith(first):
        return len(first)
    if first.startswith(second):
        return len(second)
    low, high = 0, min(len(first), len(second))  # first[:low] == second[:low]; high differs
    while high - low > 1:
        middle = (low + high) // 2
        if first[low:middle] == second[low:middle]:
            low = middle
        else:
            high = middle
    return low
