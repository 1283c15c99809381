from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import partial
from typing import Any

import pytest
from tiny import CORPUS, NO_SYSTEM_TURN_TRAIN, build_tokenizer, count_encoding

from directpo.data import PreferenceData, PreferenceExample, RowError
from directpo.errors import DataError
from directpo.pair_truncation import CUT_BY_PROMPT
from directpo.tokenization import PairTokenizer, tokenize_preferences

USER = [{"role": "user", "content": "hi"}]
GEN_PROMPT = [
    "<|im_start|>",
    "u",
    "s",
    "er",
    "Ċ",
    "h",
    "i",
    "<|im_end|>",
    "Ċ",
    "<|im_start|>",
    "as",
    "s",
    "istant",
    "Ċ",
]


def tokens(tokenizer, ids: list[int]) -> list[str]:
    return tokenizer.convert_ids_to_tokens(ids)


@pytest.fixture(scope="module")
def tokenizers():
    return {style: build_tokenizer(style) for style in ("llama", "gpt2")}


# (style, example, prompt tokens, chosen tokens, rejected tokens), checked token by token
CASES = [
    (
        "llama",
        PreferenceExample("The movie was", " great.", " bad."),
        ["<s>", "The", "Ġmovie", "Ġwas"],
        ["Ġg", "re", "at", ".", "</s>"],
        ["Ġb", "ad", ".", "</s>"],
    ),
    (
        "gpt2",
        PreferenceExample("The movie was", " great.", " bad."),
        ["The", "Ġmovie", "Ġwas"],
        ["Ġg", "re", "at", ".", "<|endoftext|>"],
        ["Ġb", "ad", ".", "<|endoftext|>"],
    ),
    # implicit layout after data.py's split: "...Assistant:" | " Sure."
    (
        "llama",
        PreferenceExample("Human: hi\n\nAssistant:", " Sure.", " Sorry."),
        ["<s>", "Human", ":", "Ġ", "h", "i", "Ċ", "Ċ", "A", "ss", "istant", ":"],
        ["ĠS", "ure", ".", "</s>"],
        ["ĠS", "or", "ry", ".", "</s>"],
    ),
    # the template writes its own BOS: it appears once; its "</s>\n" ends with EOS once
    (
        "llama",
        PreferenceExample(
            USER,
            [{"role": "assistant", "content": "hello"}],
            [{"role": "assistant", "content": "no"}],
        ),
        ["<s>", *GEN_PROMPT],
        ["hel", "lo", "</s>"],
        ["no", "</s>"],
    ),
    # ChatML: end-of-turn <|im_end|> is not EOS, so EOS follows it; no BOS for GPT-2 style
    (
        "gpt2",
        PreferenceExample(
            USER,
            [{"role": "assistant", "content": "hello"}],
            [{"role": "assistant", "content": "no"}],
        ),
        GEN_PROMPT,
        ["hel", "lo", "<|im_end|>", "<|endoftext|>"],
        ["no", "<|im_end|>", "<|endoftext|>"],
    ),
]


@pytest.mark.parametrize("style, example, prompt, chosen, rejected", CASES)
def test_boundary_bos_and_eos_token_by_token(
    tokenizers, style, example, prompt, chosen, rejected
) -> None:
    tokenizer = tokenizers[style]
    pair = PairTokenizer(tokenizer, 128, 64).encode(example, Counter())
    assert tokens(tokenizer, pair.prompt_ids) == prompt
    assert tokens(tokenizer, pair.chosen_ids) == chosen
    assert tokens(tokenizer, pair.rejected_ids) == rejected


def test_prompt_plus_completion_decodes_to_the_original_text(tokenizers) -> None:
    tokenizer = tokenizers["gpt2"]
    pair = PairTokenizer(tokenizer, 128, 64).encode(
        PreferenceExample("Human: hi\n\nAssistant:", " Sure, here.", " No."), Counter()
    )
    text = tokenizer.decode(pair.prompt_ids + pair.chosen_ids)
    assert text == "Human: hi\n\nAssistant: Sure, here.<|endoftext|>"


def test_truncation_policy_and_counts(tokenizers) -> None:
    tokenizer = tokenizers["llama"]
    encoder = PairTokenizer(tokenizer, max_length=7, max_prompt_length=4)
    counts: Counter[str] = Counter()
    long_prompt = "Human: hi\n\nAssistant:"
    pair = encoder.encode(PreferenceExample(long_prompt, " Sure, here.", " No."), counts)
    full_prompt = encoder.encode_prompt(long_prompt)
    # left cut keeps the leading BOS and the tokens nearest the completion
    assert len(full_prompt) > 4
    assert pair.prompt_ids == [full_prompt[0], *full_prompt[-3:]]
    assert tokens(tokenizer, pair.prompt_ids) == ["<s>", "ss", "istant", ":"]
    # then completions are cut from the right to max_length - len(prompt) = 3 tokens
    full_chosen = encoder.encode_completion(" Sure, here.")
    full_rejected = encoder.encode_completion(" No.")
    assert len(full_chosen) > 3 and len(full_rejected) > 3
    assert pair.chosen_ids == full_chosen[:3]
    assert pair.rejected_ids == full_rejected[:3]
    # 3 tokens of a 7-token max_length is not "cut short": a toy window is not held to 32
    assert counts == {"prompts": 1, "chosen": 1, "rejected": 1}
    counts.clear()  # a prompt that leaves under a quarter of max_length (and < 32): counted apart
    PairTokenizer(tokenizer, max_length=12, max_prompt_length=10).encode(
        PreferenceExample(long_prompt, " Sure, here.", " No."), counts
    )
    assert counts == {"prompts": 1, "chosen": 1, "rejected": 1, CUT_BY_PROMPT: 2}
    counts.clear()  # cut by max_completion_length, however short, is not the prompt's doing
    PairTokenizer(tokenizer, 64, max_completion_length=2).encode(
        PreferenceExample(long_prompt, " Sure, here.", " No."), counts
    )
    assert counts == {"chosen": 1, "rejected": 1}


def test_conversational_rows_need_a_chat_template(tokenizers) -> None:
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = None
    data = PreferenceData(
        [
            PreferenceExample(
                USER,
                [{"role": "assistant", "content": "a"}],
                [{"role": "assistant", "content": "b"}],
                "f.jsonl: line 1",
            )
        ],
        "conversational",
        "f.jsonl",
    )
    with pytest.raises(
        DataError,
        match="f.jsonl: line 1: conversational rows need a tokenizer with a chat template: give "
        "one with the chat_template option",
    ):
        tokenize_preferences(data, tokenizer, 64, 32)


def test_rows_identical_after_truncation_fail_or_are_skipped(tokenizers) -> None:
    examples = [
        PreferenceExample("The movie was", " great and more", " great but less", "f: line 1"),
        PreferenceExample("The movie was", " great.", " bad.", "f: line 2"),
    ]
    data = PreferenceData(examples, "explicit", "f")
    with pytest.raises(DataError) as info:
        tokenize_preferences(data, tokenizers["gpt2"], max_length=5, max_prompt_length=3)
    # the user learns what the limits left and what to change
    assert str(info.value) == (
        "f: line 1: chosen and rejected are identical after truncation: the prompt keeps 3 "
        "tokens and each completion its first 2 (max_length 5), which are the same; raise "
        "max_length, lower max_prompt_length, or set skip_invalid_rows: true to drop such rows"
    )  # (the advice said once: the line ended "; skip_invalid_rows: true skips them" too)
    result = tokenize_preferences(
        data, tokenizers["gpt2"], max_length=5, max_prompt_length=3, skip_invalid_rows=True
    )
    assert len(result) == 1 and result.skipped == {"identical after truncation": 1}


def test_texts_that_give_the_same_tokens_are_not_called_truncated(tokenizers) -> None:
    """Replies that differ only in whitespace a chat template trims (Gemma, Llama 3) or in an
    EOS written out were refused as "identical after truncation" with advice to raise
    max_length, though nothing was cut (and "(...)" empty with no limits)."""
    trimming = build_tokenizer("gpt2")
    trimming.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] | trim }}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    rows = [
        (trimming, PreferenceExample(USER, _assistant("Hello"), _assistant("Hello "), "f: line 1")),
        (tokenizers["llama"], PreferenceExample("Hi", " Hello", " Hello</s>", "f: line 1")),
    ]
    for tokenizer, example in rows:
        data = PreferenceData([example], "explicit", "f")
        for max_length in (None, 64):
            with pytest.raises(DataError) as info:
                tokenize_preferences(data, tokenizer, max_length)
            assert str(info.value) == (
                "f: line 1: chosen and rejected differ as texts but not as tokens (the chat "
                "template trims whitespace, or one writes out the EOS token the other gets "
                "appended): the pair prefers nothing; skip_invalid_rows: true skips them"
            )


def test_a_skipped_row_is_not_counted_as_truncated(tokenizers) -> None:
    # a long prompt leaves its completions 1 token each, the same: the row is skipped, and its
    # cuts must not reach the summary or the warning on completions cut short ("22 of 20")
    long_prompt = "The movie was wonderful and the acting was great. " * 4
    examples = [
        PreferenceExample(long_prompt, " great and more", " great but less", "f: line 1"),
        PreferenceExample("The movie was", " great.", " bad.", "f: line 2"),
    ]
    data = PreferenceData(examples, "explicit", "f")
    result = tokenize_preferences(data, tokenizers["gpt2"], max_length=24, skip_invalid_rows=True)
    assert len(result) == 1 and result.skipped == {"identical after truncation": 1}
    assert result.truncated == {} and result.starved_completions() == 0
    assert result.summary() == "1 pair tokenized; skipped: 1 identical after truncation"
    # rows skipped when the file was read are said by its summary, not again here
    read = PreferenceData(examples[1:], "explicit", "f", Counter({"missing field": 2}))
    assert tokenize_preferences(read, tokenizers["gpt2"], 24).summary() == "1 pair tokenized"


def test_the_truncation_summary_reads_in_a_pairs_order(tokenizers) -> None:
    # it read "truncated: 2 chosen, 2 completions cut short by their prompt, 1 prompts, 1
    # rejected": sorted by name, "1 prompts", and the cut-short ones as if a fourth kind
    long_prompt = "The movie was wonderful and the acting was great. " * 4
    examples = [
        PreferenceExample(long_prompt, " great and more", " bad and less", "f: line 1"),
        PreferenceExample("The movie", " was great, " * 8, " bad.", "f: line 2"),
    ]
    data = PreferenceData(examples, "explicit", "f")
    result = tokenize_preferences(data, tokenizers["gpt2"], max_length=24)
    assert result.truncated == {"prompts": 1, "chosen": 2, "rejected": 1, CUT_BY_PROMPT: 2}
    assert result.summary() == (
        "2 pairs tokenized; truncated: 1 prompt, 2 chosen, 1 rejected (2 of these completions "
        "cut short by their prompt)"
    )


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_an_assistant_prefill_is_continued_in_the_same_turn(tokenizers, style) -> None:
    tokenizer = tokenizers[style]
    encoder = PairTokenizer(tokenizer, 256, 128)
    prompt = [
        {"role": "user", "content": "Write a haiku"},
        {"role": "assistant", "content": "Autumn"},
    ]
    example = PreferenceExample(prompt, _assistant(" leaves drift slowly"), _assistant(" ends"))
    prompt_text, chosen_text = encoder.renderer.render(example.prompt, example.chosen)
    assert prompt_text.endswith("assistant\nAutumn")  # left open: no end of turn
    end = tokenizer.eos_token if style == "llama" else "<|im_end|>"
    assert chosen_text == " leaves drift slowly" + end
    pair = tokenize_preferences(
        PreferenceData([example], "conversational", "x"), tokenizer, 256
    ).pairs[0]
    decoded = tokenizer.decode(pair.prompt_ids + pair.chosen_ids)
    assert "Autumn leaves drift slowly" in decoded
    assert decoded.count("<|im_start|>assistant") == 1  # one turn, continued
    # generation and scoring render the same prompt
    assert encoder.prompt_ids(prompt) == pair.prompt_ids
    # a prefill must be continued by an assistant message
    user_next = PreferenceExample(prompt, [{"role": "user", "content": "more"}], _assistant("x"))
    with pytest.raises(DataError, match="prefill"):
        tokenize_preferences(PreferenceData([user_next], "conversational", "x"), tokenizer, 256)


def _assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


TOOLS_TEMPLATE = (
    "{% if tools %}<|im_start|>system\ntools:{% for t in tools %} {{ t['function']['name'] }}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think></think>{% endif %}"
    "{% endif %}"
)
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}
# a conversational pair about the weather, for rows with tools / chat_template_kwargs
WEATHER_ROW = {
    "prompt": [{"role": "user", "content": "Weather?"}],
    "chosen": [{"role": "assistant", "content": "Sunny."}],
    "rejected": [{"role": "assistant", "content": "No idea."}],
}


def test_tools_column_and_chat_template_kwargs_reach_the_template(tmp_path) -> None:
    from directpo.data import load_preferences

    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = TOOLS_TEMPLATE
    tool = WEATHER_TOOL
    rows = [
        {**WEATHER_ROW, "tools": [tool]},
        {  # a row without tools, and tools as JSON text (as a CSV or Arrow column may hold)
            "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": "Hello!",
            "rejected": "Go.",
            "tools": None,
        },
    ]
    path = tmp_path / "tools.jsonl"
    path.write_text("\n".join(__import__("json").dumps(r) for r in rows) + "\n")
    data = load_preferences(str(path))
    assert data.examples[0].tools == [tool] and data.examples[1].tools is None
    pairs = tokenize_preferences(
        data, tokenizer, 256, chat_template_kwargs={"enable_thinking": False}
    ).pairs
    first = tokenizer.decode(pairs[0].prompt_ids)
    assert "tools: get_weather" in first and first.endswith("assistant\n<think></think>")
    assert "tools:" not in tokenizer.decode(pairs[1].prompt_ids)
    bad = [dict(rows[0], prompt="Weather?", chosen=" Sunny.", rejected=" No.")]
    path.write_text(__import__("json").dumps(bad[0]) + "\n")
    with pytest.raises(DataError, match="line 1: field 'tools' needs conversational rows"):
        load_preferences(str(path))


def test_a_rows_chat_template_kwargs_column_reaches_the_template(tmp_path) -> None:
    """TRL's per-row chat_template_kwargs column (an object, or JSON text as CSV holds it; null
    keys, as Arrow fills them, are unset) is passed to the template over the option's."""
    from directpo.data import load_preferences

    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = TOOLS_TEMPLATE
    row = WEATHER_ROW
    rows = [
        {**row, "chat_template_kwargs": {"enable_thinking": False}},
        {**row, "chat_template_kwargs": '{"enable_thinking": false}'},
        {**row, "chat_template_kwargs": {"enable_thinking": None}},
        {**row, "chat_template_kwargs": None},
        {**row, "chat_template_kwargs": {"enable_thinking": True}},
    ]
    data = load_preferences(rows)
    for option, thinks in ((None, [0, 0, 1, 1, 1]), ({"enable_thinking": False}, [0, 0, 0, 0, 1])):
        pairs = tokenize_preferences(data, tokenizer, 256, chat_template_kwargs=option).pairs
        ends = [tokenizer.decode(p.prompt_ids).endswith("<think></think>") for p in pairs]
        assert ends == [not think for think in thinks], option
    with pytest.raises(DataError, match="row 1: field 'chat_template_kwargs' must be an object"):
        load_preferences([{**row, "chat_template_kwargs": [1]}])
    text = {"prompt": "Q", "chosen": " a", "rejected": " b"}
    with pytest.raises(DataError, match="row 1: field 'chat_template_kwargs' needs conversational"):
        load_preferences([{**text, "chat_template_kwargs": {"enable_thinking": False}}])


def test_a_reply_that_only_calls_a_tool_is_a_completion() -> None:
    """An assistant turn with tool_calls and no text (content "" or null: how tool-calling
    datasets write a call) is a completion; its call is what the template renders."""
    from directpo.data import load_preferences

    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = CALLS_TEMPLATE
    call = {"type": "function", "function": {"name": "get_weather", "arguments": {}}}
    prompt = [{"role": "user", "content": "Weather?"}]
    rejected = [{"role": "assistant", "content": "No idea."}]
    rows = [
        {"prompt": prompt, "rejected": rejected,
         "chosen": [{"role": "assistant", "content": content, "tool_calls": [call]}]}
        for content in ("", None)
    ]  # fmt: skip
    data = load_preferences(rows)
    pairs = tokenize_preferences(data, tokenizer, 256).pairs
    assert [tokenizer.decode(p.chosen_ids) for p in pairs] == [
        "call get_weather<|im_end|><|endoftext|>"
    ] * 2
    with pytest.raises(DataError, match="row 1: field 'chosen' has only empty messages"):
        load_preferences([{**rows[0], "chosen": [{"role": "assistant", "content": " "}]}])


CALLS_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
    "{% for c in m.tool_calls or [] %}call {{ c['function']['name'] }}{% endfor %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


STRICT_TEMPLATE = (  # Llama-2 / Mistral style: roles must alternate, starting with the user
    "{% for m in messages %}{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _conversations(*prompts: list[dict]) -> PreferenceData:
    examples = [
        PreferenceExample(prompt, _assistant("yes"), _assistant("no"), f"f.jsonl: line {i}")
        for i, prompt in enumerate(prompts, start=1)
    ]
    return PreferenceData(examples, "conversational", "f.jsonl")


def test_a_chat_template_that_raises_refuses_the_row() -> None:
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = STRICT_TEMPLATE
    data = _conversations(USER, [{"role": "system", "content": "Be brief."}, *USER])
    with pytest.raises(DataError) as info:
        tokenize_preferences(data, tokenizer, 64)
    assert str(info.value) == (
        "f.jsonl: line 2: the chat template refused the row (Conversation roles must alternate "
        f"user/assistant/user/assistant){NO_SYSTEM_TURN_TRAIN}; skip_invalid_rows: true skips them"
    )
    result = tokenize_preferences(data, tokenizer, 64, skip_invalid_rows=True)
    assert len(result) == 1 and result.skipped == {"refused by the chat template": 1}


def test_a_chat_template_that_does_not_compile_is_one_line_naming_the_tokenizer() -> None:
    from directpo.errors import ModelLoadError

    tokenizer = build_tokenizer("gpt2")
    tokenizer.name_or_path = "models/tiny"
    tokenizer.chat_template = "{% for m in messages %}{{ m.content | nosuchfilter }}{% endfor %}"
    with pytest.raises(ModelLoadError) as info:  # not a row error: skipping cannot help
        tokenize_preferences(_conversations(USER), tokenizer, 64, skip_invalid_rows=True)
    assert str(info.value).startswith(
        "models/tiny: the chat template does not compile (No filter named 'nosuchfilter', at "
        "template line 1)"
    )
    tokenizer.chat_template = "{% for m in messages %}{{ m.content }}"  # no endfor
    with pytest.raises(ModelLoadError, match="models/tiny: the chat template does not compile"):
        PairTokenizer(tokenizer, 64).prompt_ids(USER)


def test_a_completion_must_start_with_an_assistant_message(tokenizers) -> None:
    encoder = PairTokenizer(tokenizers["gpt2"], 64)
    for role in ("user", "system"):
        completion = [{"role": role, "content": "hi"}, *_assistant("Hello!")]
        with pytest.raises(RowError, match=f"start with an assistant message, not a '{role}'"):
            encoder.renderer.render(USER, completion)


FINAL_HEADER_TEMPLATE = (  # a finished assistant turn's header differs from the generation's
    "{% for m in messages %}<|im_start|>{{ m['role'] }}"
    "{% if m['role'] == 'assistant' %} (final){% endif %}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_completion_starts_exactly_at_its_content_when_the_turn_is_rendered_apart() -> None:
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = FINAL_HEADER_TEMPLATE
    encoder = PairTokenizer(tokenizer, 64)
    prompt_text, completion_text = encoder.renderer.render(USER, _assistant("fin"))
    assert prompt_text.endswith("<|im_start|>assistant\n")
    assert completion_text == "fin<|im_end|>"  # not "final)\nfin..." (the first "fin")


def sentencepiece_style_tokenizer():
    """Llama 2's (legacy SentencePiece): the normalizer writes "▁" for each space and one
    more at the start of every text; merges never cross a word's "▁"."""
    from tiny import CORPUS
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS, trainer)
    tok.pre_tokenizer = None
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def test_a_completion_is_tokenized_as_it_follows_its_prompt(tokenizers) -> None:
    tokenizer = sentencepiece_style_tokenizer()
    example = PreferenceExample("The movie was", " wonderful and great.", " terrible.")
    pair = PairTokenizer(tokenizer, 128).encode(example, Counter())
    joint = tokenizer("The movie was wonderful and great.", add_special_tokens=False).input_ids
    assert pair.prompt_ids + pair.chosen_ids == [*joint, tokenizer.eos_token_id]
    # alone, the completion's leading space would be a "▁" token of its own
    alone = tokenizer(" wonderful and great.", add_special_tokens=False).input_ids
    assert tokens(tokenizer, alone)[0] == "▁" and tokens(tokenizer, pair.chosen_ids)[0] != "▁"
    # where the whole text would merge across the boundary, the completion keeps its own tokens
    gpt2 = tokenizers["gpt2"]
    pair = PairTokenizer(gpt2, 128).encode(PreferenceExample("hello wor", "ld", "m"), Counter())
    assert pair.prompt_ids == gpt2("hello wor").input_ids
    assert pair.chosen_ids == [*gpt2("ld").input_ids, gpt2.eos_token_id]


def test_a_large_file_is_tokenized_in_batches_with_each_prompt_once(capsys, monkeypatch) -> None:
    """The tokenizer is called once per batch of pairs (not three or four times per pair), the
    pairs are those of one-by-one encoding, and a progress bar names the set."""
    from directpo.tokenization import TOKENIZE_BATCH

    tokenizer = build_tokenizer("llama")
    rows = TOKENIZE_BATCH + 7
    texts = [
        PreferenceExample(f"The movie {i} was", " wonderful and great.", " bad.", f"f: line {i}")
        for i in range(rows // 2)
    ]
    messages = [
        PreferenceExample(
            [{"role": "user", "content": f"hello {i}"}], _assistant("yes"), _assistant("no"),
            f"g: line {i}",
        )
        for i in range(rows - rows // 2)
    ]  # fmt: skip
    data = PreferenceData(texts + messages, "explicit", "f")
    alone = PairTokenizer(tokenizer, 12, 6)
    counts: Counter[str] = Counter()
    expected = [alone.encode(example, counts) for example in data.examples]
    batches = count_encoding(tokenizer, monkeypatch)
    result = tokenize_preferences(data, tokenizer, 12, 6, progress="tokenize train")
    assert result.pairs == expected and result.truncated == counts
    calls = [len(texts) for texts in batches]
    assert calls[1:] == [3 * TOKENIZE_BATCH, 3 * (rows - TOKENIZE_BATCH)]  # [0]: the BOS probe
    assert counts["prompts"] > 0 and counts["chosen"] > 0
    assert "tokenize train: 100%" in capsys.readouterr().err


def test_a_rejected_side_refused_by_the_template_is_reported_after_the_chosen_checks() -> None:
    """Rows are checked in the rules' order whether tokenized alone or in a batch."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = STRICT_TEMPLATE
    bad = PreferenceExample(
        USER, _assistant("yes"), [*_assistant("no"), *USER, *USER], "f.jsonl: line 2"
    )
    data = PreferenceData(_conversations(USER).examples + [bad], "conversational", "f.jsonl")
    with pytest.raises(DataError, match="^f.jsonl: line 2: the chat template refused the row"):
        tokenize_preferences(data, tokenizer, 64)
    result = tokenize_preferences(data, tokenizer, 64, skip_invalid_rows=True)
    assert len(result) == 1 and result.skipped == {"refused by the chat template": 1}


def test_sampling_and_scoring_render_a_rows_tools_as_training_does() -> None:
    """A row's tools and chat_template_kwargs reached training's template but not the held-out
    prompts eval_generate sampled from, nor ImplicitReward.score_pairs: those rendered the
    prompt without them, so samples and rewards were of another prompt than the one trained."""
    from directpo.data import load_preferences
    from directpo.generate import encode_prompts

    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = TOOLS_TEMPLATE
    tool = WEATHER_TOOL
    row = {**WEATHER_ROW, "tools": [tool], "chat_template_kwargs": {"enable_thinking": False}}
    example = load_preferences([row]).examples[0]
    pair = tokenize_preferences(load_preferences([row]), tokenizer, 256).pairs[0]
    assert "tools: get_weather" in tokenizer.decode(pair.prompt_ids)
    ((sampled, _),) = encode_prompts(tokenizer, [example.full_prompt], None)
    assert sampled == pair.prompt_ids
    encoder = PairTokenizer(tokenizer, 256)
    for response, ids in ((example.chosen, pair.chosen_ids), (example.rejected, pair.rejected_ids)):
        scored = encoder.encode_scored(example.prompt, response, None, None, example.template_args)
        assert scored[:2] == (pair.prompt_ids, ids)


REASONING_TEMPLATE = (  # Qwen3's way: an assistant turn's reasoning_content in a think block
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m.reasoning_content %}<think>{{ m.reasoning_content }}</think>{% endif %}"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_every_key_of_a_message_reaches_the_chat_template(tmp_path) -> None:
    """A message's other keys (Qwen3's reasoning_content, gpt-oss' thinking, ...) are the
    template's to read, as TRL passes them; they were dropped, so a chosen reply trained
    without its reasoning. A null key (an Arrow column's filler) is no key."""
    import datasets

    from directpo.data import load_preferences

    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = REASONING_TEMPLATE
    row = {
        **WEATHER_ROW,
        "chosen": [{"role": "assistant", "content": "Sunny.", "reasoning_content": "look"}],
    }
    datasets.Dataset.from_list([row]).to_parquet(str(tmp_path / "r.parquet"))
    for source in ([row], str(tmp_path / "r.parquet")):
        data = load_preferences(source)
        assert data.examples[0].rejected == _assistant("No idea.")  # its null key is gone
        pair = tokenize_preferences(data, tokenizer, 256).pairs[0]
        assert (
            tokenizer.decode(pair.chosen_ids) == "<think>look</think>Sunny.<|im_end|><|endoftext|>"
        )
        assert tokenizer.decode(pair.rejected_ids) == "No idea.<|im_end|><|endoftext|>"


def test_text_parts_reach_a_text_only_template_as_one_string(tokenizers) -> None:
    """Content as [{"type": "text", "text": ...}] (the newer transformers format) in a prompt:
    a template written for strings printed the parts' repr into the prompt (the tiny llama's
    ``{{ m['content'] }}``) or failed with a traceback (Qwen2.5's ``'\\n' + content``). For a
    text-only model the parts are joined; an image part is refused."""
    parts = [{"type": "text", "text": "What is "}, {"type": "text", "text": "2+2?"}]
    plain = [{"role": "user", "content": "What is 2+2?"}]
    for tokenizer in tokenizers.values():
        encoder = PairTokenizer(tokenizer, 64)
        assert encoder.prompt_ids([{"role": "user", "content": parts}]) == encoder.prompt_ids(plain)
    image = [{"role": "user", "content": [{"type": "image"}, *parts]}]
    with pytest.raises(RowError, match="message 1 of the prompt has an image part but the model"):
        PairTokenizer(tokenizers["gpt2"], 64).prompt_ids(image)


def test_a_chat_template_failing_on_a_row_is_a_row_error_not_a_traceback() -> None:
    """A template's own code may fail on a row's values (a TypeError, not a TemplateError)."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }}{% if m.weight %}{{ m.weight + 1 }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    data = _conversations(USER, [{"role": "user", "content": "hi", "weight": "x"}])
    with pytest.raises(DataError) as info:
        tokenize_preferences(data, tokenizer, 64)
    assert str(info.value) == (
        "f.jsonl: line 2: the chat template failed on the row (TypeError: can only concatenate "
        'str (not "int") to str); skip_invalid_rows: true skips them'
    )
    result = tokenize_preferences(data, tokenizer, 64, skip_invalid_rows=True)
    assert len(result) == 1 and result.skipped == {"refused by the chat template": 1}


def test_a_chat_template_that_ignores_tools_refuses_the_row() -> None:
    """Templates written before tool calling (Llama 3.0, Gemma, Mistral v0.1) render neither the
    tools nor an assistant's tool_calls: the prompt lost its tool list and the chosen call
    trained as an empty turn. A row whose tools or calls are not in the rendered text is
    refused (or skipped); a template that renders them is unchanged."""
    from directpo.data import load_preferences

    call = {"type": "function", "function": {"name": "get_weather", "arguments": {}}}
    calls = {**WEATHER_ROW, "chosen": [{"role": "assistant", "content": "", "tool_calls": [call]}]}
    rows = [{**WEATHER_ROW, "tools": [WEATHER_TOOL]}, calls, WEATHER_ROW]
    tokenizer = build_tokenizer("gpt2")  # its ChatML template ignores both
    with pytest.raises(DataError) as info:
        tokenize_preferences(load_preferences(rows), tokenizer, 256)
    assert str(info.value) == (
        "rows: row 1: the chat template does not render the row's tools ('get_weather' is not "
        "in the text it writes); give one that does with the chat_template option; row 2: the "
        "chat template does not render the completion's tool calls ('get_weather' is not in the "
        "text it writes); give one that does with the chat_template option; skip_invalid_rows: "
        "true skips them"
    )
    skipped = tokenize_preferences(load_preferences(rows), tokenizer, 256, skip_invalid_rows=True)
    assert len(skipped) == 1 and skipped.skipped == {"chat template ignores tools": 2}
    with pytest.raises(RowError, match="does not render the row's tools"):  # sampling too
        PairTokenizer(tokenizer, 64, chat_template_kwargs={"tools": [WEATHER_TOOL]}).prompt_ids(
            USER
        )
    tokenizer.chat_template = TOOLS_TEMPLATE
    with pytest.raises(DataError, match="row 2: .* render the completion's tool calls"):
        tokenize_preferences(load_preferences(rows), tokenizer, 256)
    tokenizer.chat_template = TOOLS_TEMPLATE.split("{% for m")[0] + CALLS_TEMPLATE
    assert len(tokenize_preferences(load_preferences(rows), tokenizer, 256)) == 3


def test_a_prompts_tool_calls_the_template_drops_refuse_the_row() -> None:
    """A tulu-3 / Skywork tool row whose prompt (or shared history, for chosen / rejected
    whole conversations) holds the assistant's call and the tool's result trained after
    "<|im_start|>assistant\n<|im_end|>": an empty turn, the call dropped without a word, where the
    same call in a completion was refused. It is refused (skipped with skip_invalid_rows) in
    train and in generate's prompts alike; a template that writes calls trains it."""
    from directpo.data import load_preferences

    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {}}}
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
    ]
    explicit = {**WEATHER_ROW, "prompt": history}
    whole = {side: [*history, *WEATHER_ROW[side]] for side in ("chosen", "rejected")}
    tokenizer = build_tokenizer("gpt2")  # its ChatML template writes no tool calls
    for row in (explicit, whole):
        with pytest.raises(DataError) as info:
            tokenize_preferences(load_preferences([row]), tokenizer, 256)
        assert str(info.value) == (
            "rows: row 1: the chat template does not render the prompt's tool calls "
            "('get_weather' is not in the text it writes); give one that does with the "
            "chat_template option; skip_invalid_rows: true skips them"
        )
    rows = load_preferences([explicit, WEATHER_ROW])
    skipped = tokenize_preferences(rows, tokenizer, 256, skip_invalid_rows=True)
    assert len(skipped) == 1 and skipped.skipped == {"chat template ignores tools": 1}
    with pytest.raises(RowError, match="does not render the prompt's tool calls"):  # sampling
        PairTokenizer(tokenizer, 64).prompt_ids(history)
    tokenizer.chat_template = CALLS_TEMPLATE
    for row in (explicit, whole):
        pair = tokenize_preferences(load_preferences([row]), tokenizer, 256).pairs[0]
        assert "call get_weather<|im_end|>" in tokenizer.decode(pair.prompt_ids)


def _arguments_template(arguments: str) -> str:
    """A ChatML template writing each call as ``{"name": ..., "arguments": ARGUMENTS}``."""
    return (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] or '' }}"
        '{% for c in m.tool_calls or [] %}<tool_call>{"name": "{{ c.function.name }}", '
        f'"arguments": {arguments}}}</tool_call>{{% endfor %}}<|im_end|>\n{{% endfor %}}'
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


def test_a_calls_json_string_arguments_are_written_as_the_json_they_hold() -> None:
    """OpenAI-style calls (tulu-3, Skywork, glaive: "arguments": "{\\"city\\": \\"Paris\\"}",
    a JSON string) under Qwen2.5's or Llama 3.1's template (``arguments | tojson``, made for a
    mapping) trained the string escaped, ``"arguments": "{\\"city\\": ...}"``, a form the model
    never emits, in the prompt's history and in the completion alike. The template is given the
    mapping the string holds; one that writes a string as is (Qwen3's ``is string`` branch,
    DeepSeek's concatenation) keeps the row's string; a mapping given is written as it was."""
    from directpo.data import load_preferences

    def call(arguments):
        function = {"name": "get_weather", "arguments": arguments}
        return {"id": "c1", "type": "function", "function": function}

    def rendered(template: str, arguments) -> tuple[str, str]:
        history = [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "", "tool_calls": [call(arguments)]},
            {"role": "tool", "content": "18C", "tool_call_id": "c1"},
            {"role": "user", "content": "And again?"},
        ]
        row = {**WEATHER_ROW, "prompt": history}
        row["chosen"] = [{"role": "assistant", "content": "", "tool_calls": [call(arguments)]}]
        tokenizer = build_tokenizer("gpt2")
        tokenizer.chat_template = template
        pair = tokenize_preferences(load_preferences([row]), tokenizer, 512).pairs[0]
        return tokenizer.decode(pair.prompt_ids), tokenizer.decode(pair.chosen_ids)

    written = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    qwen25 = _arguments_template("{{ c.function.arguments | tojson }}")
    qwen3 = _arguments_template(
        "{% if c.function.arguments is string %}{{ c.function.arguments }}"
        "{% else %}{{ c.function.arguments | tojson }}{% endif %}"
    )
    deepseek = _arguments_template("{{ '' + c.function.arguments }}")
    for template in (qwen25, qwen3, deepseek):
        prompt, chosen = rendered(template, '{"city": "Paris"}')
        assert written in prompt and '\\"city' not in prompt, template
        assert chosen.startswith(written), template
    prompt, chosen = rendered(qwen25, {"city": "Paris"})  # (a mapping: as before)
    assert written in prompt and chosen.startswith(written)
    prompt, _ = rendered(qwen25, "Paris")  # (a string that holds no JSON object: as written)
    assert '"arguments": "Paris"' in prompt


# Qwen3's template, cut to what decides the case: a finished assistant turn moves its
# <think>...</think> (or reasoning_content) into a reasoning block; the generation prompt of
# enable_thinking: false is an empty one
QWEN3_THINKING = (
    "{% for m in messages %}{% if m.role == 'assistant' %}"
    "{% set content = m.content %}{% set reasoning = m.reasoning_content or '' %}"
    "{% if '</think>' in content %}"
    "{% set reasoning = content.split('</think>')[0].split('<think>')[-1].strip('\\n') %}"
    "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "<|im_start|>assistant\n<think>\n{{ reasoning }}\n</think>\n\n{{ content }}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def test_a_thinking_reply_after_enable_thinking_false_says_what_to_change() -> None:
    """Qwen3 with enable_thinking: false and a chosen reply holding <think>...</think> was
    refused as "the chat template does not render the prompt as a prefix of the whole
    conversation": true, but it named neither the reasoning nor the option (and a reply's
    reasoning_content was dropped without a word). The message says both, and what to change;
    with thinking on, or without the reasoning, the row trains."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = QWEN3_THINKING
    thinking = [{"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"}]
    plain = [{"role": "assistant", "content": "5"}]
    by_key = [{"role": "assistant", "content": "4", "reasoning_content": "add them"}]

    def tokenize(chosen: list, kwargs: dict | None) -> list:
        example = PreferenceExample(USER, chosen, plain, "f.jsonl: line 1")
        data = PreferenceData([example], "conversational", "f.jsonl")
        return tokenize_preferences(data, tokenizer, 256, chat_template_kwargs=kwargs).pairs

    for chosen in (thinking, by_key):
        with pytest.raises(DataError) as info:
            tokenize(chosen, {"enable_thinking": False})
        assert str(info.value) == (
            "f.jsonl: line 1: the completion holds reasoning (<think>...</think> or "
            "reasoning_content), but the chat template ends the prompt with an empty "
            "<think></think> (set by chat_template_kwargs: {enable_thinking: false} or a row's "
            "own chat_template_kwargs), so no reply can think after it: to train replies that "
            "reason, drop enable_thinking false (or set it true); to train without thinking, "
            "remove the <think>...</think> blocks (and reasoning_content) from the replies; "
            "skip_invalid_rows: true skips them"
        )
        (pair,) = tokenize(chosen, None)
        assert tokenizer.decode(pair.chosen_ids).startswith("<think>\nadd them\n</think>\n\n4")
    (pair,) = tokenize([{"role": "assistant", "content": "4"}], {"enable_thinking": False})
    assert tokenizer.decode(pair.prompt_ids).endswith("<think>\n\n</think>\n\n")
    # another template whose prompt is no prefix of the conversation: where the texts part
    tokenizer.chat_template = QWEN3_THINKING.replace("prompt %}<|im_start|>", "prompt %}[BOT]")
    with pytest.raises(DataError) as info:
        tokenize(thinking, None)
    assert str(info.value).endswith(
        "a prefix of the whole conversation (the prompt goes on '[BOT]assistant\\n' where the "
        "conversation has '<|im_start|>assistant\\n<think>\\nadd them\\n<'); "
        "skip_invalid_rows: true skips them"
    )


MISTRAL_V03 = (  # Mistral-7B-Instruct-v0.3's template (without tools): the system message goes
    # into the last user turn, so the prompt alone and the whole conversation render it apart
    '{%- if messages[0]["role"] == "system" %}{%- set system_message = messages[0]["content"] %}'
    "{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}"
    "{%- endif %}{{- bos_token }}{%- for message in loop_messages %}"
    '{%- if message["role"] == "user" %}{%- if loop.last and system_message is defined %}'
    '{{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}{%- else %}'
    '{{- "[INST] " + message["content"] + "[/INST]" }}{%- endif %}'
    '{%- elif message["role"] == "assistant" %}{{- " " + message["content"]|trim + eos_token}}'
    "{%- endif %}{%- endfor %}"
)


def test_the_space_a_turn_writes_before_its_content_begins_the_completion(tokenizers) -> None:
    tokenizer = build_tokenizer("llama")
    tokenizer.chat_template = MISTRAL_V03
    system = [{"role": "system", "content": "Be brief."}]
    example = PreferenceExample(
        [*system, {"role": "user", "content": "hi"}],
        [{"role": "assistant", "content": "hello"}],
        [{"role": "assistant", "content": "no"}],
    )
    pair = PairTokenizer(tokenizer, 128).encode(example, Counter())
    # the prompt as generation sees it (the system message in the last user turn) ...
    assert tokenizer.decode(pair.prompt_ids) == "<s>[INST] Be brief.\n\nhi[/INST]"
    # ... and the completion as the model writes it after "[/INST]": with the space the template
    # puts before each reply (it was "hello</s>", a first token the model never samples there)
    assert tokenizer.decode(pair.chosen_ids) == " hello</s>"
    without_system = PreferenceExample(example.prompt[1:], example.chosen, example.rejected)
    same = PairTokenizer(tokenizer, 128).encode(without_system, Counter())
    assert same.chosen_ids == pair.chosen_ids


def test_every_row_refused_at_tokenization_is_counted_in_one_line() -> None:
    """A run stopped at the first row the tokenizer refused, after tokenizing every row before
    it: a file with several such rows took one run per row. They are counted as the validation
    pass counts its rows: each problem once with its first row, the next few by place, in one
    line."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = STRICT_TEMPLATE
    refused_by_template = [*_assistant("no"), *USER, *USER]
    examples = []
    for i in range(1, 301):
        rejected = refused_by_template if i in (87, 150, 151, 299) else _assistant("no")
        examples.append(PreferenceExample(USER, _assistant("yes"), rejected, f"f.jsonl: line {i}"))
    cut_alike = PreferenceExample(USER, _assistant("yes yes"), _assistant("yes no"), "")
    examples[199] = replace(cut_alike, where="f.jsonl: line 200")  # identical once cut
    data = PreferenceData(examples, "conversational", "f.jsonl")
    prompt = len(PairTokenizer(tokenizer, 99).encode(examples[0], Counter()).prompt_ids)
    with pytest.raises(DataError) as info:
        tokenize_preferences(data, tokenizer, prompt + 1)
    assert str(info.value) == (
        "f.jsonl: line 87: the chat template refused the row (Conversation roles must alternate "
        "user/assistant/user/assistant) (3 more rows like it: line 150, line 151, line 299); "
        "line 200: chosen and rejected are identical after truncation: the prompt keeps 14 "
        "tokens and each completion its first 1 (max_length 15), which are the same; raise "
        "max_length, lower max_prompt_length, or set skip_invalid_rows: true to drop such rows; "
        "skip_invalid_rows: true skips them"
    )
    kept = tokenize_preferences(data, tokenizer, prompt + 1, skip_invalid_rows=True)
    assert len(kept) == 295 and sum(kept.skipped.values()) == 5


def test_rows_to_score_are_encoded_together_as_one_at_a_time(monkeypatch) -> None:
    """score and rank encode a batch of rows in one tokenizer call (a call per response took
    most of a 60k-row file's check); each item's ids, spans and cuts are those of encoding it
    alone, and a row the chat template refuses is its own RowError, the rows around it kept."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = STRICT_TEMPLATE
    system = [{"role": "system", "content": "Be brief."}, *USER]
    long_user = [{"role": "user", "content": "tell me " * 9}]
    items = [
        ("The movie was", " wonderful and great.", None, None),
        ("The movie was", " bad.", None, None),  # (a pair's two: the prompt read once)
        (USER, _assistant("yes"), None, None),
        (system, _assistant("no"), None, None),  # refused by the template
        (long_user, _assistant("a long answer " * 5), None, None),  # cut
        ("hello wor", "ld", None, None),
    ]
    encoder = PairTokenizer(tokenizer, 24, 12)
    alone_cuts = [Counter() for _ in items]
    alone = []
    for (prompt, response, images, args), cut in zip(items, alone_cuts, strict=True):
        try:
            alone.append(encoder.encode_scored(prompt, response, images, cut, args))
        except RowError as err:
            alone.append(err)
    calls = count_encoding(tokenizer, monkeypatch)
    cuts = [Counter() for _ in items]
    together = encoder.encode_scored_many(items, cuts)
    assert len(calls) == 1  # one call for the five rendered rows
    assert [r for r in together if not isinstance(r, RowError)] == [
        r for r in alone if not isinstance(r, RowError)
    ]
    assert [isinstance(r, RowError) for r in together] == [False, False, False, True, False, False]
    assert together[3].message == alone[3].message
    assert cuts == alone_cuts and cuts[4]["prompts"] == 1


def _varied_examples(seed: int) -> list[PreferenceExample]:
    """Rows of every kind a file may hold, seeded: text rows whose completions start with a
    space or merge with the prompt's last word ("hello wo" + "rld"), chat rows with system
    prompts, several turns and completions of several messages, lengths cut on both sides,
    and a pair whose two sides are the same once cut (refused)."""
    import random

    draw = random.Random(seed)
    words = " ".join(CORPUS[:8]).split()

    def text(low: int, high: int) -> str:
        return " ".join(draw.choice(words) for _ in range(draw.randint(low, high)))

    examples = []
    for i in range(90):
        kind = i % 6
        if kind == 0:
            example = PreferenceExample(text(1, 30), " " + text(1, 20), " " + text(1, 20))
        elif kind == 1:  # a token straddles prompt and completion
            example = PreferenceExample(f"{text(0, 12)} hello wo", "rld " + text(0, 9), "rld")
        elif kind == 2:
            system = [{"role": "system", "content": text(1, 6)}] if i % 4 else []
            example = PreferenceExample(
                [*system, {"role": "user", "content": text(1, 25)}],
                _assistant(text(1, 20)), _assistant(text(1, 20)),
            )  # fmt: skip
        elif kind == 3:  # several turns, and a completion that goes on after the reply
            prompt = [
                {"role": "user", "content": text(1, 8)},
                {"role": "assistant", "content": text(1, 8)},
                {"role": "user", "content": text(1, 8)},
            ]
            longer = [
                {"role": "assistant", "content": text(1, 8)},
                {"role": "user", "content": text(1, 4)},
                {"role": "assistant", "content": text(1, 8)},
            ]
            example = PreferenceExample(prompt, longer, _assistant(text(1, 8)))
        elif kind == 4:  # the same once cut: refused
            same = text(30, 40)
            example = PreferenceExample(text(1, 5), f" {same} yes", f" {same} no")
        else:
            example = PreferenceExample("\n".join([text(1, 9)] * 3) + "\n", text(1, 9), text(1, 9))
        examples.append(replace(example, where=f"f: line {i + 1}"))
    return examples


@pytest.mark.parametrize("style", ["llama", "gpt2"])
@pytest.mark.parametrize("assistant_only", [False, True])
def test_a_batch_gives_the_ids_of_each_row_tokenized_alone(
    style: str, assistant_only: bool, monkeypatch
) -> None:
    """Tokenizing batches (one call of the Rust backend a batch, the completions a token
    straddles read together) gives, to the id, what the tokenizer's own call gave row by row:
    each pair's ids and unscored spans, the truncation counts, the refused rows, the order."""
    import directpo.tokenization as tokenization

    tokenizer = build_tokenizer(style)
    examples = _varied_examples(seed=len(style) + assistant_only)
    limits = dict(max_length=40, max_prompt_length=16, assistant_only_loss=assistant_only)
    result = tokenize_preferences(
        PreferenceData(examples, "explicit", "f"), tokenizer, skip_invalid_rows=True, **limits
    )
    monkeypatch.setattr(tokenization, "direct_backend", lambda tokenizer: None, raising=False)
    alone = PairTokenizer(tokenizer, 40, 16, assistant_only=assistant_only)
    counts: Counter[str] = Counter()
    expected, where, refused = [], [], Counter()
    for example in examples:
        cuts: Counter[str] = Counter()
        [pair] = alone.encode_many([example], cuts)
        counts.update(cuts)
        if isinstance(pair, RowError):
            refused[pair.reason] += 1
        else:
            expected.append(pair)
            where.append(example.where)
    assert list(result.pairs) == expected and result.sources == where
    assert result.truncated == counts and result.skipped == refused
    assert refused and counts["prompts"] and counts["chosen"] and counts["rejected"]
    ids = partial(tokenizer, add_special_tokens=False)
    assert all(  # (a token straddles: these completions are read alone)
        ids(row.prompt + row.chosen).input_ids[: len(ids(row.prompt).input_ids)]
        != ids(row.prompt).input_ids
        for row in examples[1::6]
    )
    if assistant_only:
        assert any(pair.unscored != ((), ()) for pair in expected)


def test_completions_a_token_straddles_are_read_in_one_call_a_batch(monkeypatch) -> None:
    """A text row whose completion starts without a space ("hello wo" + "rld") has its
    completions tokenized alone (a token would cross the boundary). That was a tokenizer call
    each (2 a row: a tenth of the calls and the time on such a file); now one a batch."""
    from directpo.tokenization import TOKENIZE_BATCH

    tokenizer = build_tokenizer("gpt2")
    head = tokenizer("hello wo").input_ids
    assert tokenizer("hello world").input_ids[: len(head)] != head  # (the token straddles)
    rows = TOKENIZE_BATCH + 5
    examples = [
        PreferenceExample(f"{i} hello wo", "rld, this is a small corpus.", "rld.", f"f: line {i}")
        for i in range(rows)
    ]
    alone = PairTokenizer(tokenizer, 64)
    expected = [alone.encode(example, Counter()) for example in examples]
    batches = count_encoding(tokenizer, monkeypatch)
    result = tokenize_preferences(PreferenceData(examples, "explicit", "f"), tokenizer, 64)
    calls = [len(texts) for texts in batches]
    # [0]: the BOS probe; then each batch: its prompts and joints, then its completions alone
    last = rows - TOKENIZE_BATCH
    assert calls[1:] == [3 * TOKENIZE_BATCH, 2 * TOKENIZE_BATCH, 3 * last, 2 * last]
    assert list(result.pairs) == expected
    assert result.pairs[0].chosen_ids[:1] == tokenizer("rld").input_ids[:1]


def test_the_direct_path_is_taken_only_where_it_gives_the_tokenizers_ids() -> None:
    """The backend's batch encoder is used in place of the tokenizer's call only where the
    call would give the same ids: not for a subclass that changes the call, a backend that
    truncates or pads (the call turns that off), or special tokens split as text."""
    from transformers import PreTrainedTokenizerFast

    from directpo.tokenization import direct_backend

    tokenizer = build_tokenizer("gpt2")
    assert direct_backend(tokenizer) is not None

    class Infilling(PreTrainedTokenizerFast):
        def _encode_plus(self, *args, **kwargs):  # (Code Llama's rewrites its text)
            return super()._encode_plus(*args, **kwargs)

    assert direct_backend(Infilling(tokenizer_object=tokenizer.backend_tokenizer)) is None
    text = "The movie was wonderful and the acting was great. " * 3
    whole = tokenizer(text, add_special_tokens=False).input_ids
    tokenizer.backend_tokenizer.enable_truncation(max_length=4)  # (a tokenizer.json's own)
    assert direct_backend(tokenizer) is None
    assert PairTokenizer(tokenizer, None).ids(text) == whole and len(whole) > 4
    splitting = build_tokenizer("gpt2")
    splitting.split_special_tokens = True
    split = PairTokenizer(splitting, None).ids("<|im_start|>user")
    assert split == splitting("<|im_start|>user", add_special_tokens=False).input_ids
    assert len(split) > 2  # (the special token read as its characters)


def test_a_tokenizer_that_rewrites_the_calls_ids_keeps_the_call() -> None:
    """A fast tokenizer whose subclass rewrites the ids the call returns (``_convert_encoding``,
    after the backend's encode_batch) or whose call is patched on the object got its backend's
    ids, not its own: the direct path skipped the rewrite. Now such a tokenizer is called."""
    from transformers import PreTrainedTokenizerFast

    from directpo.tokenization import direct_backend

    base = build_tokenizer("gpt2")
    start = base.convert_tokens_to_ids("<|im_start|>")

    class Rewriting(PreTrainedTokenizerFast):
        def _convert_encoding(self, encoding, **kwargs):  # (drops a marker token)
            ids, encodings = super()._convert_encoding(encoding, **kwargs)
            ids["input_ids"] = [[i for i in row if i != start] for row in ids["input_ids"]]
            return ids, encodings

    rewriting = Rewriting(tokenizer_object=base.backend_tokenizer, eos_token="<|endoftext|>")
    text = "<|im_start|>user\nhello world"
    own = rewriting(text, add_special_tokens=False).input_ids
    assert start not in own and start in base(text, add_special_tokens=False).input_ids
    assert PairTokenizer(rewriting, None).ids(text) == own
    assert direct_backend(rewriting) is None
    patched = build_tokenizer("gpt2")
    call = patched._encode_plus

    def without_marker(*args, **kwargs):
        encoded = call(*args, **kwargs)
        rows = encoded["input_ids"]
        if rows and isinstance(rows[0], list):  # (a batch; one text gives one list)
            encoded["input_ids"] = [[i for i in row if i != start] for row in rows]
        return encoded

    patched._encode_plus = without_marker  # (a library's patch of the object)
    assert PairTokenizer(patched, None).ids(text) == own
    assert direct_backend(patched) is None


def test_a_step_of_a_name_direct_backend_does_not_check_keeps_the_call(monkeypatch) -> None:
    """A transformers whose own call changes the ids by a step direct_backend does not know by
    name (simulated: the base class's ``_convert_encoding`` patched, so no subclass differs
    from it) gave the backend's ids, not the call's: the probe at start (fast_encoding
    .gives_the_calls_ids) now finds the difference and the call is kept."""
    from transformers import PreTrainedTokenizerFast

    from directpo.fast_encoding import direct_backend

    convert = PreTrainedTokenizerFast._convert_encoding

    def reversed_ids(self, encoding, **kwargs):  # (a step the ids go through)
        ids, encodings = convert(self, encoding, **kwargs)
        ids["input_ids"] = [row[::-1] for row in ids["input_ids"]]
        return ids, encodings

    monkeypatch.setattr(PreTrainedTokenizerFast, "_convert_encoding", reversed_ids)
    tokenizer = build_tokenizer("gpt2")
    text = "hello world, and more words"
    own = tokenizer(text, add_special_tokens=False).input_ids
    assert direct_backend(tokenizer) is not None  # (every name it checks is the base's)
    assert own != tokenizer.backend_tokenizer.encode(text, add_special_tokens=False).ids
    assert PairTokenizer(tokenizer, None).ids(text) == own


def test_a_rows_responses_to_score_render_its_prompt_once(monkeypatch) -> None:
    """score and rank render a row's chat prompt once for all its responses, as training does
    for a pair's two sides (it was rendered for each response: a rank row of 3 candidates, 3
    times), with the ids of each response encoded on its own."""
    from directpo.chat_render import ChatRenderer

    tokenizer = build_tokenizer("llama")
    encoder = PairTokenizer(tokenizer, 64)
    prompt = [{"role": "system", "content": "Be brief."}, *USER]
    other = [{"role": "user", "content": "hello world"}]
    items = [(prompt, _assistant(text), None, None) for text in ("yes", "no", "maybe")]
    items.append((other, _assistant("yes"), None, None))
    alone = [encoder.encode_scored(*item) for item in items]
    renders: list[Any] = []
    render_prompt = ChatRenderer.render_prompt

    def counted(self, prompt, template_args=None):
        renders.append(prompt)
        return render_prompt(self, prompt, template_args)

    monkeypatch.setattr(ChatRenderer, "render_prompt", counted)
    together = encoder.encode_scored_many(items, [Counter() for _ in items])
    assert together == alone
    assert renders == [prompt, other]  # (each row's prompt once)


GEMMA2_TEMPLATE = (  # google/gemma-2-2b-it's, as its tokenizer_config.json writes it
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}"
    "{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)


def test_a_system_message_a_template_without_a_system_turn_refuses_says_what_to_do() -> None:
    """Gemma 2's template refuses a system message ('System role not supported'): every row of a
    file with system prompts was refused with the template's words alone, not saying that the
    template has no system turn nor what to do. The line now says so; a row the template
    refuses for another reason (two user turns in a row) is said as the template says it."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = GEMMA2_TEMPLATE
    system = [{"role": "system", "content": "Be brief."}, *USER]
    twice = [*USER, *USER]  # refused without a system message too
    data = _conversations(USER, system, [{"role": "system", "content": "Be brief."}, *twice])
    with pytest.raises(DataError) as info:
        tokenize_preferences(data, tokenizer, 64)
    assert str(info.value) == (
        "f.jsonl: line 2: the chat template refused the row (System role not supported)"
        f"{NO_SYSTEM_TURN_TRAIN}; line 3: the chat template refused the row (System role not "
        "supported); skip_invalid_rows: true skips them"
    )


LLAMA2_TEMPLATE = (  # meta-llama/Llama-2-7b-chat-hf's: a system message first, then alternation
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)


def test_a_template_with_a_system_turn_refusing_a_later_system_message_is_not_said_to_lack_one():
    """Llama 2's template takes a system message first and refuses one mid-conversation (roles
    must alternate); the row renders without its system messages, so the line said 'the
    template has no system turn ...: drop the system messages', false of a template that takes
    one. A system message first renders, so its refusal is said as the template says it."""
    tokenizer = build_tokenizer("gpt2")
    tokenizer.chat_template = LLAMA2_TEMPLATE
    system = {"role": "system", "content": "Be brief."}
    later = [system, *USER, *_assistant("hello"), {**system, "content": "In French."}, *USER]
    tokenize_preferences(_conversations([system, *USER]), tokenizer, 64)  # (first: taken)
    with pytest.raises(DataError) as info:
        tokenize_preferences(_conversations(later), tokenizer, 64)
    assert str(info.value) == (
        "f.jsonl: line 1: the chat template refused the row (Conversation roles must alternate "
        "user/assistant/user/assistant/...); skip_invalid_rows: true skips them"
    )
