"""Reasoning models' chat templates: a reply's reasoning trains as the model writes it, or the
row is refused in one line (never a reply trained with its reasoning dropped)."""

from __future__ import annotations

from collections import Counter

import pytest
from tiny import build_tokenizer

from directpo.data import PreferenceData, PreferenceExample, RowError
from directpo.errors import DataError
from directpo.tokenization import PairTokenizer, tokenize_preferences

# DeepSeek-R1(-Distill)'s template: a finished assistant turn keeps only the text after
# </think>; its first release's generation prompt was "<｜Assistant｜>", the later one opens the
# reasoning: "<｜Assistant｜><think>\n" (its EOS, <｜end▁of▁sentence｜>, written as eos_token here)
R1 = (
    "{{ bos_token }}{%- for message in messages %}{%- if message['role'] == 'user' %}"
    "{{ '<｜User｜>' + message['content'] }}{%- endif %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + eos_token }}{%- endif %}{%- endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}"
)
R1_OPEN = R1.replace(
    "{{ '<｜Assistant｜>' }}{% endif %}", "{{ '<｜Assistant｜><think>\\n' }}{% endif %}"
)
QWEN3_LIKE = (  # keeps the last turn's reasoning (Qwen3): such rows train whole
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
USER = [{"role": "user", "content": "2+2?"}]
THINKING = [{"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"}]
PLAIN = [{"role": "assistant", "content": "5"}]


def encoder(template: str) -> PairTokenizer:
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = template
    return PairTokenizer(tokenizer, 256)


@pytest.mark.parametrize("template", [R1, R1_OPEN], ids=["r1", "r1-open"])
def test_a_template_that_drops_the_replys_reasoning_refuses_the_row(template) -> None:
    # the first R1 template rendered the pair as "4<｜end▁of▁sentence｜>": the chosen reply
    # trained without its reasoning, silently
    with pytest.raises(RowError, match="drops the reply's reasoning .* chat_template option"):
        encoder(template).encode(PreferenceExample(USER, THINKING, PLAIN), Counter())
    reasoning = [{"role": "assistant", "content": "4", "reasoning_content": "add them"}]
    with pytest.raises(RowError, match="drops the reply's reasoning"):
        encoder(template).encode(PreferenceExample(USER, reasoning, PLAIN), Counter())


def test_a_reply_without_reasoning_after_an_opened_think_block_is_refused() -> None:
    # "5" after "<think>\n" would train as reasoning that never ends
    example = PreferenceExample(USER, [{"role": "assistant", "content": "4"}], PLAIN)
    with pytest.raises(RowError, match="opens a <think> block .* has none"):
        encoder(R1_OPEN).encode(example, Counter())
    placed = PreferenceExample(
        example.prompt, example.chosen, example.rejected, "prefs.jsonl: line 1"
    )
    data = PreferenceData([placed], "conversational", "prefs.jsonl")
    with pytest.raises(DataError, match="^prefs.jsonl: line 1: .*opens a <think> block"):
        tokenize_preferences(data, encoder(R1_OPEN).tokenizer, 256)
    # the first R1 template does not open one: a reply without reasoning trains as it is
    pair = encoder(R1).encode(example, Counter())
    assert encoder(R1).tokenizer.decode(pair.chosen_ids) == "4<|endoftext|>"


def test_a_template_that_keeps_the_reasoning_trains_it() -> None:
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = QWEN3_LIKE
    pair = PairTokenizer(tokenizer, 256).encode(PreferenceExample(USER, THINKING, PLAIN), Counter())
    assert tokenizer.decode(pair.chosen_ids) == (
        "<think>\nadd them\n</think>\n\n4<|im_end|><|endoftext|>"
    )
