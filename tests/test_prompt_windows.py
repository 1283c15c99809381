"""Each prompt read by the tokenizer once (prompt_windows.py): the ids are those of each text
tokenized whole, for every tokenizer family, on rows built to cross the prompt/completion
boundary every way (a completion without a space, with one, with a newline, unicode, emoji,
a combining mark, digits, a special token; a prompt ending in a space or a newline)."""

from __future__ import annotations

import random
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from tiny import CORPUS, build_tokenizer, count_encoding, train_byte_level_bpe
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from directpo.pair_store import TokenizedPair
from directpo.preference_pairs import PreferenceData, PreferenceExample
from directpo.prompt_windows import (
    LLAMA3_SPLIT,
    QWEN2_SPLIT,
    cuts_after_newlines,
    joint_ids,
    last_cut,
)
from directpo.readers import RowError
from directpo.tokenization import PairTokenizer, tokenize_preferences

SMOLLM2 = Path.home() / ".cache" / "directpo" / "models" / "SmolLM2-135M-Instruct"
PIECES = [
    "the", "movie", " was", "Paris", " Paris", "wor", "ld", "café", "naïve", "e\u0301", "\u0301",
    "🙂", "👍🏽", "日本語", "12345", "3.14", ".", ",", "?", "!!", "'s", " 's", ":", "(", ")", " ",
    "  ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u2028", "<|im_end|>",
    "<|im_start|>", "Answer:", "Human:", "Assistant:", "\n\nHuman: hi\n\nAssistant:",
]  # fmt: skip


def texts_across_the_boundary(count: int, seed: int = 0) -> list[tuple[str, list[str]]]:
    """(prompt, [chosen, rejected]) rows: random joins of the pieces, and the usual shapes."""
    draw = random.Random(seed)

    def text(low: int, high: int) -> str:
        return "".join(draw.choice(PIECES) for _ in range(draw.randint(low, high)))

    rows = [
        ("Question: What is the capital of France?\nAnswer:", [" Paris", "Paris"]),
        ("Question: capital?\nAnswer: ", ["Paris", " Paris"]),  # a prompt ending in a space
        ("line one\nline two\n", ["next", " next", "\nnext", "🙂 yes", "\u0301x"]),
        ("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", ["Hello<|im_end|>", " Hi"]),
        ("hello wor", ["ld", " world"]),
        ("", ["only a completion", "\n"]),
        ("\n", ["x", " x"]),
        ("a\n\n", ["b", "\tb"]),
        ("12\n345", ["678", " 9"]),
    ]
    while len(rows) < count:
        prompt = text(0, 12)
        if draw.random() < 0.3:
            prompt += "\n"
        rows.append((prompt, [text(1, 6), text(1, 6)]))
    return rows


def split_tokenizer(pattern: str, nfc: bool = False) -> PreTrainedTokenizerFast:
    """A byte-level BPE split by Llama 3's or Qwen 2's regex (Qwen 2: NFC-normalized)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    if nfc:
        tok.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([*CORPUS, "café naïve 日本語 🙂 12345\n\nline\n"] * 3, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>")


def sentencepiece_style() -> PreTrainedTokenizerFast:
    from test_tokenization import sentencepiece_style_tokenizer

    return sentencepiece_style_tokenizer()


FAMILIES = {
    "gpt2 byte-level": lambda: build_tokenizer("gpt2"),
    "llama byte-level, BOS": lambda: build_tokenizer("llama"),
    "llama 3 split": lambda: split_tokenizer(LLAMA3_SPLIT),
    "qwen 2 split, NFC": lambda: split_tokenizer(QWEN2_SPLIT, nfc=True),
    "sentencepiece-like (prefix space)": sentencepiece_style,
    "SmolLM2-135M-Instruct": lambda: AutoTokenizer.from_pretrained(SMOLLM2),
}
WINDOWED = {name for name in FAMILIES if "sentencepiece" not in name}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_ids_are_those_of_each_text_tokenized_whole(family) -> None:
    if family.startswith("SmolLM2") and not SMOLLM2.is_dir():
        pytest.skip("SmolLM2-135M-Instruct is not on this machine")
    tokenizer = FAMILIES[family]()
    assert cuts_after_newlines(tokenizer) == (family in WINDOWED)
    rows = texts_across_the_boundary(600)

    def ids_many(texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids]

    whole = [
        (ids_many([prompt])[0], ids_many([prompt + c for c in completions]))
        for prompt, completions in rows
    ]
    assert joint_ids(rows, ids_many, windowed=cuts_after_newlines(tokenizer)) == whole
    if family in WINDOWED:  # (the claim itself, on a tokenizer it holds for: not only checked)
        assert joint_ids(rows, ids_many, windowed=True) == whole


def comparable(results: list) -> list:
    """Pairs as they are, refusals as their reason and message (RowErrors compare by identity)."""
    return [
        pair if isinstance(pair, TokenizedPair) else (pair.reason, pair.message) for pair in results
    ]


@pytest.mark.parametrize("family", ["gpt2 byte-level", "llama byte-level, BOS", "llama 3 split"])
def test_pairs_and_responses_are_those_of_the_whole_text_path(family) -> None:
    """The pairs (prompt, chosen, rejected ids, EOS, truncation) are today's whole-text ones."""
    tokenizer = FAMILIES[family]()
    rows = [row for row in texts_across_the_boundary(300, seed=1) if row[1][0] != row[1][1]]
    examples = [
        PreferenceExample(p, c, r, f"f: line {i}") for i, (p, (c, r, *_)) in enumerate(rows)
    ]
    windowed = PairTokenizer(tokenizer, 48, stop_ids=[])
    whole = PairTokenizer(tokenizer, 48, stop_ids=[])
    whole.windowed = False
    assert windowed.windowed
    got, expected = Counter(), Counter()
    pairs = comparable(windowed.encode_many(examples, got))
    assert pairs == comparable(whole.encode_many(examples, expected))
    assert sum(isinstance(pair, TokenizedPair) for pair in pairs) > 200
    assert got == expected
    for example in examples[:60]:
        assert response(windowed, example) == response(whole, example)


def response(encoder: PairTokenizer, example: PreferenceExample) -> object:
    """A prompt and response's ids, or the message refusing them."""
    try:
        return encoder.encode_response(example.prompt, example.chosen, Counter())
    except RowError as err:
        return err.message


def test_each_prompt_is_read_once(monkeypatch) -> None:
    """The tokenizer read each prompt three times (alone, then before chosen and rejected):
    about 2.1x the tokens kept. Now a chat prompt is read once and each completion alone."""
    tokenizer = build_tokenizer("gpt2")

    conversation = [{"role": "user", "content": "Tell me a joke about the movie. " * 8}]
    examples = [
        PreferenceExample(
            conversation,
            [{"role": "assistant", "content": f"Sure {i}."}],
            [{"role": "assistant", "content": "No."}],
            f"f: line {i}",
        )  # fmt: skip
        for i in range(20)
    ]
    encoder = PairTokenizer(tokenizer, 1024)
    prompt, chosen, _ = encoder.renderer.render_pair(examples[0])
    calls = count_encoding(tokenizer, monkeypatch)
    pairs = encoder.encode_many(examples, Counter())
    monkeypatch.undo()
    texts = sum(len(p) + len(c) + len(r) for p, c, r in map(encoder.renderer.render_pair, examples))
    # each prompt once (it was prompt x 3 + completions)
    assert sum(len(text) for batch in calls for text in batch) == texts
    assert [pair.prompt_ids for pair in pairs] == [tokenizer(prompt).input_ids] * 20
    whole = tokenizer(prompt + chosen).input_ids
    assert pairs[0].chosen_ids == [*whole[len(pairs[0].prompt_ids) :], tokenizer.eos_token_id]


def test_a_tokenizer_whose_parts_would_differ_keeps_the_whole_text() -> None:
    """A prefix space (at every text's start), an added token that strips whitespace or holds a
    newline before a letter, another regex: the cut is not provably exact, so none is made."""
    tok = train_byte_level_bpe(["<|endoftext|>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert not cuts_after_newlines(PreTrainedTokenizerFast(tokenizer_object=tok))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    assert cuts_after_newlines(PreTrainedTokenizerFast(tokenizer_object=tok))
    stripping = PreTrainedTokenizerFast(tokenizer_object=tok)
    from tokenizers import AddedToken

    stripping.add_tokens([AddedToken("<mask>", lstrip=True)])
    assert not cuts_after_newlines(stripping)
    newline = PreTrainedTokenizerFast(tokenizer_object=tok)
    newline.add_tokens(["\nUser"])
    assert not cuts_after_newlines(newline)
    assert not cuts_after_newlines(split_tokenizer(r"\s+|\S+"))
    assert not cuts_after_newlines(sentencepiece_style())


def test_the_cut_is_after_the_last_newline_before_a_visible_character() -> None:
    assert last_cut("a\nb\nc") == 4
    assert last_cut("a\nb\n") == 2  # (the prompt's end is the completion's business)
    assert last_cut("a\n b") == 0  # a space after the newline: no cut
    assert last_cut("a\n\u0301b") == 0  # a combining mark would join the newline's character
    assert last_cut("no newline") == 0
    assert last_cut("") == 0


def test_a_file_tokenizes_to_the_same_pairs(tmp_path) -> None:
    tokenizer = split_tokenizer(QWEN2_SPLIT, nfc=True)
    rows = texts_across_the_boundary(200, seed=2)
    examples = [PreferenceExample(p, c, r, f"f: {i}") for i, (p, (c, r, *_)) in enumerate(rows)]
    data = PreferenceData([e for e in examples if e.chosen != e.rejected], "explicit", "f")
    windowed = tokenize_preferences(data, tokenizer, 64, skip_invalid_rows=True)
    original = PairTokenizer.__init__

    def whole_text(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.windowed = False

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PairTokenizer, "__init__", whole_text)
        whole = tokenize_preferences(data, tokenizer, 64, skip_invalid_rows=True)
    assert len(windowed.pairs) == len(whole.pairs) > 150
    assert [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in windowed.pairs] == [
        (p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in whole.pairs
    ]
    assert (windowed.truncated, windowed.skipped) == (whole.truncated, whole.skipped)


def unusual_visible_characters() -> list[str]:
    """Every code point ``last_cut`` may cut before that is not a plain letter or symbol (marks
    with no combining class, Hangul jamo, format-like punctuation, digits of every script) or
    that NFC changes (singletons, composition exclusions such as U+0F73, Hangul syllables)."""
    common = {"Lo", "So", "Ll", "Lu"}
    return [
        char
        for char in map(chr, range(0x110000))
        if not 0xD800 <= ord(char) < 0xE000
        and last_cut(f"\n{char}") == 1  # (a cut there)
        and (unicodedata.category(char) not in common or unicodedata.normalize("NFC", char) != char)
    ]


@pytest.mark.parametrize("family", ["qwen 2 split, NFC", "SmolLM2-135M-Instruct"])
def test_every_unusual_character_after_a_newline_keeps_the_whole_texts_ids(family) -> None:
    """The adversary's sweep (all 143,603 code points ``_visible`` accepts, 287k rows, four
    families: no difference) cut to the 6.7k unusual ones: each right after a newline, inside
    a prompt and at its end, after whitespace, CR, U+2028, NEL, a combining mark or a special
    token before the newline, the ids are those of each text tokenized whole."""
    if family.startswith("SmolLM2") and not SMOLLM2.is_dir():
        pytest.skip("SmolLM2-135M-Instruct is not on this machine")
    tokenizer = FAMILIES[family]()
    assert cuts_after_newlines(tokenizer)
    befores = ["x", "x ", ".", "", "x\r", "\u2028", "\x85", "'", "\t", "\u0301", "1", "\n"]
    befores.append("<|im_end|>")
    rows = []
    for number, char in enumerate(unusual_visible_characters()):
        before = befores[number % len(befores)]
        if number % 2:  # a cut inside the prompt
            rows.append((f"a{before}\n{char}y", [f"{char}z", f" {char}"]))
        else:  # the prompt's end (a completion after a line, or after other whitespace)
            rows.append((f"a{before}\n", [f"{char}y", f"\n{char}"]))
    assert len(rows) > 6000

    def ids_many(texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in tokenizer(texts, add_special_tokens=False).input_ids]

    texts = [
        text
        for prompt, completions in rows
        for text in (prompt, *[prompt + c for c in completions])
    ]
    flat = iter(ids_many(texts))
    whole = [(next(flat), [next(flat), next(flat)]) for _ in rows]
    assert joint_ids(rows, ids_many, windowed=True) == whole


def test_a_last_line_read_otherwise_alone_is_tokenized_whole() -> None:
    """The guard the proof does not need: where the prompt's last line, read alone, gives other
    ids than inside the prompt (here a mark at the start of a text, as SentencePiece's "▁"),
    each completion that would follow it is tokenized with its whole prompt instead."""
    calls: list[list[str]] = []

    def ids_many(texts: list[str]) -> list[list[int]]:
        calls.append(texts)
        return [[0] * text.startswith("B") + [ord(char) for char in text] for text in texts]

    rows = [("A\nB\n", ["C", " C"]), ("A\nB", ["c"]), ("A\nD", ["d"])]
    whole = [(ids_many([p])[0], ids_many([p + c for c in cs])) for p, cs in rows]
    calls.clear()
    assert joint_ids(rows, ids_many, windowed=True) == whole
    # one batch, then the two completions after "B" again with their prompts ("C" follows the
    # prompt's end: its ids are the prompt's and its own)
    assert [len(texts) for texts in calls] == [10, 2]
    assert calls[1] == ["A\nB\n C", "A\nBc"]
