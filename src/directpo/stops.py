"""Where a completion ends: at the token that stops generation.

A completion trains log π(y|x) over the tokens the model generates, and generation stops at
the first stop token: the tokenizer's EOS or any the model's generation config lists (an
instruct model's end-of-turn: Llama 3's ``<|eot_id|>``, Gemma's ``<end_of_turn>``, Phi-3's
``<|end|>``; ``generate.stop_token_ids`` samples with the same set). So a chat template's
completion ends at its end-of-turn when that is a stop token, with nothing after it: not the
whitespace or EOS a template writes after the turn (Phi-3's ``<|end|>\\n<|endoftext|>``), and
no EOS appended (``<end_of_turn><eos>`` is never sampled; online DPO's own samples end at
``<end_of_turn>``). An end-of-turn that is not a stop token (ChatML on a base model whose
generation config lists only its EOS) is followed by EOS: the stop the model knows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def generation_stop_ids(path: str, location: dict[str, Any], trust_remote_code: bool) -> list[int]:
    """The eos_token_id(s) of the model's generation config (its generation_config.json, else
    its config.json, as transformers derives one), without loading weights; [] when the folder
    has neither (an adapter folder, a tokenizer-only folder)."""
    from transformers import AutoConfig, GenerationConfig

    where = dict(location)
    try:
        configured = GenerationConfig.from_pretrained(path, **where).eos_token_id
    except Exception:  # no generation_config.json: the model config's, as generate() would use
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code, **where)
            configured = getattr(config.get_text_config(), "eos_token_id", None)
        except Exception:
            return []
    if isinstance(configured, int):
        return [configured]
    return [int(i) for i in configured or () if isinstance(i, int)]


def end_at_stop(ids: list[int], stops: set[int], is_blank: Callable[[int], bool]) -> list[int]:
    """``ids`` cut after the stop token that ends them: of the trailing run of stop tokens and
    blank tokens (whitespace a template writes after a turn), the first stop token is the last
    one kept. Ids not ending in such a run are returned as they are."""
    start = len(ids)
    while start > 0 and (ids[start - 1] in stops or is_blank(ids[start - 1])):
        start -= 1
    for index in range(start, len(ids)):
        if ids[index] in stops:
            return ids[: index + 1]
    return ids


# the most tokens one character spans in byte-level vocabularies (UTF-8: 4 bytes, the first of
# which a token shares with what comes before it)
CHARACTER_TOKENS = 3


def whole_characters(decode: Callable[[list[int]], str], ids: list[int], stopped: bool) -> str:
    """The text of completion ``ids``. One cut at max_new_tokens (not ``stopped``) can end
    inside a character (an emoji or a CJK character is several byte tokens): decoded, those
    tokens are U+FFFD ("東京" cut: "東�"), a character the model never wrote, which score and
    rank would read back as other tokens. Such a text ends before that character."""
    text = decode(ids)
    if stopped or not text.endswith("\ufffd"):
        return text
    for cut in range(1, min(CHARACTER_TOKENS, len(ids)) + 1):
        shorter = decode(ids[:-cut])
        if not shorter.endswith("\ufffd"):
            return shorter
    return text
