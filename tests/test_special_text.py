"""Texts that hold a model's special tokens literally: read as those tokens (as TRL does), and
the rows that hold them said once per file (vision tokens: tests/test_vision.py)."""

from __future__ import annotations

from tiny import build_tokenizer

from directpo.data import load_preferences
from directpo.tokenization import tokenize_preferences


def test_rows_writing_special_tokens_in_their_text_are_said_once_per_file() -> None:
    """A reply holding "</s>" before its end, or a prompt holding "<s>", was tokenized as EOS /
    BOS silently: the reply trains past the token that ends it (no sample goes on after
    it). The ids stay TRL's, and the file's summary says how many rows hold which token; a
    completion that ends with its end-of-turn token, written out, is the usual ending and not
    counted."""
    tokenizer = build_tokenizer("llama")
    eos = tokenizer.eos_token_id
    rows = [
        {"prompt": "Say hi", "chosen": " hi</s> and more", "rejected": " go"},
        {"prompt": "<s>Say hi", "chosen": " hi", "rejected": " go"},
        {"prompt": "Say hi", "chosen": " hi</s>", "rejected": " go </s>\n"},
        {"prompt": "Say hi", "chosen": " hello", "rejected": " go"},
    ]
    data = load_preferences(rows, name="rows")
    tokenized = tokenize_preferences(data, tokenizer, None)
    first = tokenized.pairs[0]
    assert first.chosen_ids.count(eos) == 2 and first.chosen_ids[-1] == eos  # as TRL reads it
    assert tokenized.pairs[1].prompt_ids.count(tokenizer.bos_token_id) == 1
    summary = tokenized.summary()
    assert summary == (
        "4 pairs tokenized; 2 rows with the tokenizer's special tokens written in their text "
        "(</s> in 1, <s> in 1; row 1, row 2), read as those tokens, as TRL does: a turn ends or "
        "a text starts there"
    )
    clean = tokenize_preferences(load_preferences(rows[2:], name="rows"), tokenizer, None)
    assert clean.summary() == "2 pairs tokenized"
    tokenizer.split_special_tokens = True  # it reads "</s>" in text as its characters
    split = tokenize_preferences(data, tokenizer, None)
    assert split.summary() == "4 pairs tokenized" and split.pairs[0].chosen_ids.count(eos) == 1


def test_a_chat_reply_writing_the_end_of_turn_token_is_counted() -> None:
    """A message's content holding <|im_end|> splits the turn where the chat shows none."""
    tokenizer = build_tokenizer("chatml")
    rows = [{
        "prompt": [{"role": "user", "content": "Say hi"}],
        "chosen": [{"role": "assistant", "content": "hi<|im_end|>\n<|im_start|>user\nmore"}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "go"}]}],
    }]  # fmt: skip
    tokenized = tokenize_preferences(load_preferences(rows, name="rows"), tokenizer, None)
    assert tokenized.summary().startswith("1 pair tokenized; 1 row with the tokenizer")
    assert "(<|im_end|> in 1, <|im_start|> in 1; row 1)" in tokenized.summary()


def test_a_messages_content_ending_with_the_end_of_turn_token_is_counted() -> None:
    """A chat reply's content ending with <|im_end|> was taken for a text reply's usual ending
    and not counted, yet the template ends the turn again: the chosen trained
    '<|im_end|><|im_end|>' silently. A message's content is counted; a text completion
    ending so is still its end, tokenized once."""
    tokenizer = build_tokenizer("chatml")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    chat = [{
        "prompt": [{"role": "user", "content": "Say hi"}],
        "chosen": [{"role": "assistant", "content": "hi<|im_end|>"}],
        "rejected": [{"role": "assistant", "content": "go"}],
    }]  # fmt: skip
    tokenized = tokenize_preferences(load_preferences(chat, name="rows"), tokenizer, None)
    assert tokenized.pairs[0].chosen_ids.count(end) == 2  # as TRL renders it
    assert "1 row with the tokenizer's special tokens" in tokenized.summary()
    assert "(<|im_end|> in 1; row 1)" in tokenized.summary()
    text = [{"prompt": "Say hi", "chosen": " hi<|im_end|>", "rejected": " go"}]
    tokenized = tokenize_preferences(load_preferences(text, name="rows"), tokenizer, None)
    assert tokenized.summary() == "1 pair tokenized"


def test_score_and_rank_say_the_rows_writing_special_tokens(tmp_path) -> None:
    """score and rank read "</s>" in a response as EOS, as training does, but said nothing of
    it (training's summary counts such rows): their rewards are of other tokens than the text
    shows. Each says the count once, as training does; a clean file says nothing of it."""
    from tiny import save_tiny_model, write_jsonl

    from directpo.command_options import RankOptions, ScoreOptions
    from directpo.reward_files import rank_file, score_file

    policy = save_tiny_model("llama", tmp_path / "policy", seed=1)
    reference = save_tiny_model("llama", tmp_path / "ref")
    models = {"model_name_or_path": str(policy), "ref_model_name_or_path": str(reference)}
    pairs = [
        {"prompt": "Say hi", "chosen": " hi</s> and more", "rejected": " go"},
        {"prompt": "Say hi", "response": " hi</s>"},  # its ending: not counted
    ]
    ranks = [{"prompt": "<s>Say hi", "responses": [" hi", " go </s> on"]}]
    said = " with the tokenizer's special tokens written in their text"
    for kind, run, rows, want in (
        (ScoreOptions, score_file, pairs, "1 row" + said + " (</s> in 1; line 1)"),
        (RankOptions, rank_file, ranks, "1 row" + said + " (</s> in 1, <s> in 1; line 1)"),
        (ScoreOptions, score_file, pairs[1:], None),
    ):
        data = write_jsonl(tmp_path / f"{len(rows)}{kind.__name__}.jsonl", rows)
        out = tmp_path / f"{data.stem}_out.jsonl"
        lines: list[str] = []
        run(kind(**models, beta=0.1, input=str(data), output=str(out)), lines.append)
        notes = [line for line in lines if said in line]
        assert [note.split(", read as")[0] for note in notes] == ([want] if want else [])


def test_a_file_of_pre_rendered_prompts_is_said_once_with_its_first_rows(tmp_path) -> None:
    """A file of prompts written pre-rendered ('<s>[INST] ...', '<|im_start|>user ...') holds
    special tokens on every row: the note is one line a file, with the count and its first
    rows, in train's tokenization, score, rank and generate alike."""
    from tiny import save_tiny_model, write_jsonl

    from directpo.cli import main
    from directpo.command_options import RankOptions, ScoreOptions
    from directpo.reward_files import rank_file, score_file

    rows = [{"prompt": f"<s>Say {i}", "chosen": " hi", "rejected": " go"} for i in range(6)]
    tokenized = tokenize_preferences(
        load_preferences(rows, name="rows"), build_tokenizer("llama"), None
    )
    expected = "6 rows with the tokenizer's special tokens written in their text (<s> in 6; first "
    assert tokenized.summary().count("special tokens") == 1
    assert expected + "row 1, row 2, row 3, ...)" in tokenized.summary()
    policy = save_tiny_model("llama", tmp_path / "policy", seed=1)
    reference = save_tiny_model("llama", tmp_path / "ref")
    models = {"model_name_or_path": str(policy), "ref_model_name_or_path": str(reference)}
    pairs = write_jsonl(tmp_path / "pairs.jsonl", rows)
    ranks = write_jsonl(tmp_path / "ranks.jsonl", [
        {"prompt": row["prompt"], "responses": [" hi", " go"]} for row in rows])  # fmt: skip
    for kind, run, data in ((ScoreOptions, score_file, pairs), (RankOptions, rank_file, ranks)):
        lines: list[str] = []
        out = tmp_path / f"{data.stem}_out.jsonl"
        run(kind(**models, beta=0.1, input=str(data), output=str(out)), lines.append)
        notes = [line for line in lines if "special tokens" in line]
        assert len(notes) == 1 and expected + "line 1, line 2, line 3, ...)" in notes[0]
    out = tmp_path / "samples.jsonl"
    argv = ["generate", "--model_name_or_path", str(policy), "--input", str(pairs),
            "--output", str(out), "--max_new_tokens", "2"]  # fmt: skip
    said: list[str] = []
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as printed:
        assert main(argv) == 0
    said = [line for line in printed.getvalue().splitlines() if "special tokens written" in line]
    assert len(said) == 1 and expected + "line 1, line 2, line 3, ...)" in said[0]


def test_the_first_rows_are_kept_as_counts_of_many_rows_are_added_up() -> None:
    """Each row's counts are added to its file's (and parallel workers' in any order): only
    the first three rows are kept, so the counter does not grow with the file."""
    from collections import Counter

    from directpo.special_text import (
        count_special_text,
        keep_first_rows,
        row_texts,
        special_pattern,
        special_summary,
    )

    pattern = special_pattern(build_tokenizer("llama"))
    total: Counter[str] = Counter()
    for line in (9, 4, 12, 2, 30, 7):  # (chunks tokenized by workers, merged as they end)
        row: Counter[str] = Counter()
        count_special_text(row_texts("<s>x", " y"), pattern, row, f"f.jsonl: line {line}")
        total.update(row)
        keep_first_rows(total)
    assert len(total) == 2 + 3
    assert (
        special_summary(total)
        .split(", read")[0]
        .endswith("(<s> in 6; first line 2, line 4, line 7, ...)")
    )


def test_generate_says_the_prompts_writing_special_tokens(tmp_path) -> None:
    """generate read "</s>" in a prompt as EOS, as train, score and rank do, but alone of them
    said nothing: its samples follow a text that ended where the prompt shows none. It says
    the count once, before the model loads; clean prompts say nothing of it."""
    from tiny import save_tiny_model, write_jsonl

    from directpo.command_options import GenerateOptions
    from directpo.generate_files import generate_file

    model = save_tiny_model("llama", tmp_path / "model")
    said = " with the tokenizer's special tokens written in their text"
    rows = [
        {"prompt": "Say </s> hi"},
        {"prompt": [{"role": "user", "content": "<s>Say hi"}]},
        {"prompt": "Say hi"},
    ]
    for name, prompts, want in (
        ("marked", rows, "2 rows" + said + " (</s> in 1, <s> in 1; line 1, line 2)"),
        ("clean", rows[2:], None),
    ):
        data = write_jsonl(tmp_path / f"{name}.jsonl", prompts)
        lines: list[str] = []
        out = tmp_path / f"{name}_out.jsonl"
        options = GenerateOptions(
            model_name_or_path=str(model), input=str(data), output=str(out), max_new_tokens=1
        )
        generate_file(options, lines.append)
        notes = [line for line in lines if said in line]
        assert [note.split(", read as")[0] for note in notes] == ([want] if want else [])
