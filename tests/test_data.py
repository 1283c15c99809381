from __future__ import annotations

import bz2
import functools
import gzip
import io
import json
import logging
import lzma
import re
from pathlib import Path

import datasets
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny import with_skip_hint, write_jsonl

from directpo.data import Columns, load_preferences, parse_pair
from directpo.errors import ConfigError, DataError
from directpo.prompts import distinct_prompts
from directpo.readers import open_rows

ROWS = [
    {"prompt": "Q: 2+2?", "chosen": " 4", "rejected": " 5"},
    {"prompt": "Q: sky?", "chosen": " blue", "rejected": " green"},
]


def test_every_file_format_reads_the_same_examples(tmp_path: Path) -> None:
    expected = [(r["prompt"], r["chosen"], r["rejected"]) for r in ROWS]
    paths = [write_jsonl(tmp_path / "a.jsonl", ROWS)]
    (tmp_path / "b.json").write_text(json.dumps(ROWS))
    (tmp_path / "c.json").write_text(json.dumps({"data": ROWS}))
    write_jsonl(tmp_path / "d.json", ROWS)  # JSON Lines saved as .json
    paths += [tmp_path / "b.json", tmp_path / "c.json", tmp_path / "d.json"]
    dataset = datasets.Dataset.from_list(ROWS)
    dataset.to_parquet(str(tmp_path / "e.parquet"))
    dataset.to_csv(str(tmp_path / "f.csv"), index=False)
    dataset.save_to_disk(str(tmp_path / "g"))
    paths += [tmp_path / "e.parquet", tmp_path / "f.csv", tmp_path / "g"]
    # compressed text (as hub datasets keep them), an Arrow file (a datasets cache or shard)
    for name, plain, opener in (("h.jsonl.gz", "a.jsonl", gzip.open),
                                ("i.json.bz2", "b.json", bz2.open),
                                ("j.csv.xz", "f.csv", lzma.open)):  # fmt: skip
        with opener(tmp_path / name, "wb") as handle:
            handle.write((tmp_path / plain).read_bytes())
        paths.append(tmp_path / name)
    paths += sorted((tmp_path / "g").glob("*.arrow"))
    # an Arrow IPC file (pandas' to_feather, polars' write_ipc): it was "not a readable Arrow
    # file", only datasets' stream format was read
    dataset.to_pandas().to_feather(tmp_path / "k.arrow")
    paths.append(tmp_path / "k.arrow")
    # an IterableDataset of unknown features has no column names
    generated = datasets.IterableDataset.from_generator(lambda: iter(ROWS))
    assert generated.column_names is None
    for source in [*map(str, paths), dataset, generated]:
        data = load_preferences(source)
        assert data.layout == "explicit"
        assert [(e.prompt, e.chosen, e.rejected) for e in data.examples] == expected, source


def test_a_files_compression_is_read_from_its_bytes_not_its_name(tmp_path: Path) -> None:
    """A gzip file named data.jsonl (a download saved without its .gz) was read as text, every
    line "not UTF-8 text ... save the file as UTF-8 (Excel: 'CSV UTF-8')"; a .jsonl.gz a
    browser had already decompressed was "cannot read: Not a gzipped file"; a zstd or zip one
    was an unsupported type or garbage."""
    expected = [(r["prompt"], r["chosen"], r["rejected"]) for r in ROWS]
    text = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
    (tmp_path / "gzipped.jsonl").write_bytes(gzip.compress(text))
    (tmp_path / "plain.jsonl.gz").write_bytes(text)
    (tmp_path / "xz.csv").write_bytes(lzma.compress(b"prompt,chosen,rejected\nQ: 2+2?,4,5\n"))
    for name in ("gzipped.jsonl", "plain.jsonl.gz"):
        data = load_preferences(str(tmp_path / name))
        assert [(e.prompt, e.chosen, e.rejected) for e in data.examples] == expected
    assert [e.chosen for e in load_preferences(str(tmp_path / "xz.csv")).examples] == ["4"]
    (tmp_path / "z.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + text)
    (tmp_path / "a.jsonl").write_bytes(b"PK\x03\x04" + text)  # (a zip saved as .jsonl)
    for name, said in (("z.jsonl.zst", "zstd-compressed: decompress it (zstd -d)"),
                       ("a.jsonl", "a zip archive: unzip it")):  # fmt: skip
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: {re.escape(said)}"):
            load_preferences(str(tmp_path / name))


def test_a_datasets_transform_and_format_columns_shape_its_rows() -> None:
    """Rows are read without decoding images, but as the Dataset's own transform and format
    columns make them (a transform that writes the prompt; a format that drops a column)."""
    dataset = datasets.Dataset.from_list([{**row, "extra": 1} for row in ROWS])
    upper = dataset.with_transform(lambda b: {**b, "prompt": [p.upper() for p in b["prompt"]]})
    assert [e.prompt for e in load_preferences(upper).examples] == ["Q: 2+2?".upper(), "Q: SKY?"]
    narrow = dataset.with_format(columns=["prompt", "chosen"])
    with pytest.raises(DataError, match="row 1: missing field 'rejected'"):
        load_preferences(narrow)


def test_configurable_column_names(tmp_path: Path) -> None:
    rows = [{"q": r["prompt"], "good": r["chosen"], "bad": r["rejected"]} for r in ROWS]
    data = load_preferences(
        str(write_jsonl(tmp_path / "x.jsonl", rows)),
        Columns("q", "good", "bad", prompt_required=True),
    )
    assert data.examples[1].chosen == " blue"


def test_conversational_layout(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hello"}],
            "rejected": "go away",
        }
    ]
    data = load_preferences(str(write_jsonl(tmp_path / "x.jsonl", rows)))
    assert data.layout == "conversational"
    assert data.examples[0].rejected == [{"role": "assistant", "content": "go away"}]


def test_a_files_messages_share_one_string_per_role_and_keep_no_empty_columns(
    tmp_path: Path,
) -> None:
    """json.loads made a new role string for every message and each pair held an empty dict
    when no column was kept (about 5% and 2% of a chat file's memory once read). The roles
    are now one string each, and no columns kept is None."""
    row = {
        "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"}],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
    }
    path = write_jsonl(tmp_path / "x.jsonl", [row, {**row, "chosen": "hey"}])
    # (a run keeps other columns only for a reward_fn: run_sources.kept_columns)
    first, second = load_preferences(str(path), Columns(other_columns=False)).examples
    assert first.prompt == row["prompt"] and second.chosen == [
        {"role": "assistant", "content": "hey"}
    ]
    roles = [m["role"] for e in (first, second) for m in (*e.prompt, *e.chosen, *e.rejected)]
    assert len({id(role) for role in roles}) == 2  # "user" and "assistant"
    assert first.columns is None and second.columns is None


def test_implicit_text_prompt_is_cut_before_the_first_differing_word(tmp_path: Path) -> None:
    rows = [
        {
            "chosen": "Human: hi\n\nAssistant: Sure, here.",
            "rejected": "Human: hi\n\nAssistant: Sorry.",
        },
        {"chosen": "A: yes it is", "rejected": "A: no"},
        {"chosen": "Q:yes", "rejected": "Q:yo"},
        {"chosen": "A B", "rejected": "A B C"},
    ]
    data = load_preferences(str(write_jsonl(tmp_path / "x.jsonl", rows)))
    assert data.layout == "implicit"
    got = [(e.prompt, e.chosen, e.rejected) for e in data.examples]
    assert got == [
        ("Human: hi\n\nAssistant:", " Sure, here.", " Sorry."),
        ("A:", " yes it is", " no"),
        ("Q:", "yes", "yo"),
        ("A", " B", " B C"),
    ]
    for (prompt, chosen, rejected), row in zip(got, rows, strict=True):
        assert prompt + chosen == row["chosen"] and prompt + rejected == row["rejected"]


def test_implicit_messages_share_leading_turns(tmp_path: Path) -> None:
    user = {"role": "user", "content": "hi"}
    rows = [
        {
            "chosen": [user, {"role": "assistant", "content": "hello"}],
            "rejected": [user, {"role": "assistant", "content": "no"}],
        }
    ]
    data = load_preferences(str(write_jsonl(tmp_path / "x.jsonl", rows)))
    example = data.examples[0]
    assert example.prompt == [user]
    assert example.chosen == [{"role": "assistant", "content": "hello"}]
    assert example.conversational


BAD_JSONL = [
    (
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": \n',
        r"bad.jsonl: line 2: invalid JSON",
    ),
    (
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "rejected": "c"}\n',
        r"bad.jsonl: line 2: missing field 'chosen'",
    ),
    (
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n\n{"prompt": "a", "chosen": "  ", '
        '"rejected": "c"}\n',
        r"bad.jsonl: line 3: field 'chosen' is empty",
    ),
    (
        '{"prompt": "a", "chosen": 5, "rejected": "c"}\n',
        r"bad.jsonl: line 1: field 'chosen' must be a string, got a number",
    ),
    (
        '{"prompt": "a", "chosen": "same", "rejected": "same"}\n',
        r"bad.jsonl: line 1: chosen and rejected are identical",
    ),
    ("[1, 2]\n", r"bad.jsonl: line 1: expected an object, got a list"),
    (
        '{"prompt": "a", "good": "b", "rejected": "c"}\n',
        r"bad.jsonl: column 'chosen' not found \(columns: prompt, good, rejected\)",
    ),
    ("", r"bad.jsonl: no rows"),
    (
        '{"prompt": [{"role": "user"}], "chosen": "b", "rejected": "c"}\n',
        r"bad.jsonl: line 1: field 'prompt': message 1 content must be a string",
    ),
    (
        '{"prompt": [{"role": "robot", "content": "x"}], "chosen": "b", "rejected": "c"}\n',
        r"bad.jsonl: line 1: field 'prompt': message 1 has role 'robot'",
    ),
    (
        '{"chosen": "abc", "rejected": "xyz"}\n',
        r"bad.jsonl: line 1: chosen and rejected share no common prefix",
    ),
    # (HH rows apart in their leading whitespace alone were told 'no common prefix', and
    # sent to prompt_column; TRL trains them with an empty prompt, the shared turns as answers)
    (
        '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yes", "rejected": "Human: hi\\n\\n'
        'Assistant: no"}\n',
        r"bad.jsonl: line 1: chosen and rejected differ in their leading whitespace \(chosen "
        r"starts with '\\n\\n', rejected with none\), so they share no prompt; strip it from "
        r"the start of both \(the conversation they share after it is then the prompt\); "
        r"skip_invalid_rows: true skips them$",
    ),
    (
        '{"chosen": " Human: hi Assistant: yes", "rejected": "Human: hi Assistant: yes"}\n',
        r"bad.jsonl: line 1: chosen and rejected are the same text but for their leading "
        r"whitespace \(chosen starts with ' ', rejected with none\): no preference",
    ),
]


@pytest.mark.parametrize("text, message", BAD_JSONL)
def test_bad_rows_give_one_line_naming_file_row_and_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        load_preferences(str(path))
    assert "\n" not in str(info.value)


def test_unknown_prompt_column_is_named(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", ROWS)
    with pytest.raises(DataError, match="column 'question' not found"):
        load_preferences(str(path), Columns(prompt="question", prompt_required=True))


def test_other_formats_report_their_own_positions(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('[{"prompt": "a",\n "chosen": }]')
    with pytest.raises(DataError, match=r"bad.json: line 2: invalid JSON"):
        load_preferences(str(tmp_path / "bad.json"))
    (tmp_path / "bad.csv").write_text("prompt,chosen,rejected\na,b,c\nd,,f\n")
    with pytest.raises(
        DataError,
        match=r"bad.csv: line 3: missing field 'chosen'|"
        r"bad.csv: line 3: field 'chosen' is empty",
    ):
        load_preferences(str(tmp_path / "bad.csv"))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="bad.parquet: not a readable Parquet file"):
        load_preferences(str(tmp_path / "bad.parquet"))
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type '.txt'"):
        load_preferences(str(tmp_path / "x.txt"))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataError, match="not UTF-8"):
        load_preferences(str(tmp_path / "latin1.jsonl"))


def test_skip_invalid_rows_counts_by_reason(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        '{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
        '{"prompt": "a", "chosen": \n'
        '{"prompt": "a", "rejected": "c"}\n'
        '{"prompt": "a", "chosen": "x", "rejected": "x"}\n'
        '{"prompt": "a", "chosen": "y", "rejected": "z"}\n'
    )
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 2
    assert data.skipped == {
        "invalid JSON": 1,
        "missing field": 1,
        "identical chosen and rejected": 1,
    }
    assert "skipped 3 invalid rows" in data.summary()


@pytest.mark.parametrize(
    "chosen_key, rejected_key",
    [("score_chosen", "score_rejected"), ("chosen_rating", "rejected_rating"),
     ("chosen-rating", "rejected-rating"), ("chosen_score", "rejected_score")],
)  # fmt: skip
def test_pairs_rated_for_rejected_are_refused_and_ties_trained_as_labelled(
    tmp_path: Path, chosen_key: str, rejected_key: str
) -> None:
    """UltraFeedback-binarized / Argilla rows rate each side: a rejected reply rated higher was
    trained as the better one without a word (refused now); a tie is trained as labelled, as
    TRL and the alignment handbook train UltraFeedback-binarized's, and counted."""
    rows = [
        {"prompt": "p1", "chosen": "a", "rejected": "b", chosen_key: 8.0, rejected_key: 3.0},
        {"prompt": "p2", "chosen": "a", "rejected": "b", chosen_key: 4.0, rejected_key: 4.0},
        {"prompt": "p3", "chosen": "a", "rejected": "b", chosen_key: 2.0, rejected_key: 5.0},
        {"prompt": "p4", "chosen": "a", "rejected": "b", chosen_key: None, rejected_key: 5.0},
    ]
    path = tmp_path / "rated.parquet"
    pd.DataFrame(rows).to_parquet(path)
    with pytest.raises(DataError) as refused:
        load_preferences(str(path))
    said = str(refused.value)
    assert "row 2" not in said
    assert (
        f"row 3: {chosen_key} 2.0 and {rejected_key} 5.0: the rejected reply is rated higher"
        in said
    )
    data = load_preferences(str(path), skip_invalid_rows=True)
    # the rated pair, the tie and the one without a chosen rating (nothing to compare)
    assert [example.prompt for example in data.examples] == ["p1", "p2", "p4"]
    assert data.skipped == {"rejected rated higher": 1}
    assert data.ties == 1
    assert (
        f"; 1 pair rates chosen and rejected alike ({chosen_key} 4.0 = {rejected_key} 4.0): "
        "kept as labelled" in data.summary()  # (not 'trained': an eval file's line says it)
    )


def test_ratings_read_from_a_csv_and_a_dataset_alike(tmp_path: Path) -> None:
    """A CSV's ratings are text ("4.0"); a Dataset's are numbers: a tie is one in both, and
    ties of several files add up."""
    rows = [
        {"prompt": "p1", "chosen": "a", "rejected": "b", "chosen_rating": 5.0,
         "rejected_rating": 1.0},
        {"prompt": "p2", "chosen": "a", "rejected": "b", "chosen_rating": 4.0,
         "rejected_rating": 4.0},
    ]  # fmt: skip
    path = tmp_path / "rated.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    for source in (str(path), datasets.Dataset.from_list(rows)):
        data = load_preferences(source)
        assert [example.prompt for example in data.examples] == ["p1", "p2"]
        assert data.ties == 1 and not data.skipped
    other = tmp_path / "rated2.csv"
    pd.DataFrame(rows * 2).to_csv(other, index=False)
    both = load_preferences([str(path), str(other)])
    assert len(both) == 6 and both.ties == 3
    assert "3 pairs rate chosen and rejected alike (chosen_rating 4.0 = " in both.summary()


def test_the_tie_note_says_what_to_drop_tied_rows_from(tmp_path: Path) -> None:
    """The tie note said 'drop tied rows from the file' of a Python list or Dataset passed to
    train(), and of a hub dataset named by a recipe, neither a file: it names the source."""
    from directpo.callers import Caller, Entry, Spelling, called_by

    rows = [
        {"prompt": "p1", "chosen": "a", "rejected": "b", "chosen_rating": 4.0,
         "rejected_rating": 4.0},
    ]  # fmt: skip
    path = tmp_path / "rated.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    note = {
        "list": "drop tied rows from the list to leave them out)",
        "DataFrame": "drop tied rows from the DataFrame to leave them out)",
        "Dataset": "filter tied rows out of the Dataset (Dataset.filter) to leave them out)",
    }
    with called_by(Caller(Spelling.PYTHON, Entry.TRAIN)):
        for source in (rows, pd.DataFrame(rows), datasets.Dataset.from_list(rows)):
            said = load_preferences(source).summary()
            assert said.endswith(note[type(source).__name__]), said
            assert "file" not in said
        assert load_preferences(str(path)).summary().endswith("from the file to leave them out)")
    hub = load_preferences(datasets.Dataset.from_list(rows))  # (a recipe's dataset_name)
    assert hub.summary().endswith("(to leave them out, give a file of the dataset's other rows)")
    both = load_preferences([str(path), str(path)]).summary()
    assert both.endswith("drop tied rows from the files to leave them out)")


def test_ratings_of_other_columns_follow_the_column_options(tmp_path: Path) -> None:
    """chosen_column: good reads good_rating beside bad_rating; unrelated scores are not read."""
    rows = [
        {"prompt": "p1", "good": "a", "bad": "b", "good_rating": 1, "bad_rating": 2,
         "chosen_score": 1, "rejected_score": 9},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "rated.jsonl", rows)
    columns = Columns(chosen="good", rejected="bad")
    with pytest.raises(DataError, match="line 1: good_rating 1 and bad_rating 2: the rejected"):
        load_preferences(str(path), columns)


def test_a_line_that_is_not_utf8_is_its_rows_error_not_the_files(tmp_path: Path) -> None:
    """One byte of Latin-1 in a 50k-line file made the whole file "not UTF-8 text (invalid
    continuation byte at byte 48213)": no line named, the other bad rows unsaid, and
    skip_invalid_rows could not skip it. It is now that line's problem (a CSV row's too)."""
    good = b'{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + b'{"prompt": "caf\xe9", "chosen": "b", "rejected": "c"}\n' + good
                     + b'{"prompt": "a", "rejected": "c"}\n')  # fmt: skip
    with pytest.raises(DataError) as err:
        load_preferences(str(path))
    assert str(err.value) == (
        f"{path}: line 2: not UTF-8 text (byte 0xe9 at column 16); save the file as UTF-8 "
        "(Excel: 'CSV UTF-8'); line 4: missing field 'chosen'; skip_invalid_rows: true skips them"
    )
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 2 and data.skipped == {"not UTF-8": 1, "missing field": 1}
    csv_path = tmp_path / "latin1.csv"
    csv_path.write_bytes(b"prompt,chosen,rejected\na,b,c\ncaf\xe9,b,c\n")
    with pytest.raises(DataError, match=r"line 3: field 'prompt': not UTF-8 text \(byte 0xe9"):
        load_preferences(str(csv_path))
    assert len(load_preferences(str(csv_path), skip_invalid_rows=True)) == 1


def test_skip_invalid_rows_skips_a_bad_first_line_too(tmp_path: Path) -> None:
    """JSON Lines have no header: a first row without 'rejected', or with a number for a
    prompt, is one bad row like any other, and the layout comes from the next row."""
    path = tmp_path / "first_bad.jsonl"
    path.write_text(
        '{"prompt": "a", "chosen": "b"}\n'
        '{"prompt": 5, "chosen": "b", "rejected": "c"}\n'
        '{"prompt": [{"role": "user", "content": "a"}], "chosen": "y", "rejected": "z"}\n'
        '{"prompt": [{"role": "user", "content": "b"}], "chosen": "y", "rejected": "z"}\n'
    )
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 2 and data.layout == "conversational"
    assert data.skipped == {"missing field": 1, "wrong type": 1}
    with pytest.raises(DataError) as err:  # without skip: row 1's own defect, the others have it
        load_preferences(str(path))
    assert str(err.value) == f"{path}: line 1: no field 'rejected' (the other rows have it)"


def test_repeated_pairs_are_counted_once_and_texts_are_not_serialized(monkeypatch) -> None:
    """A large file's summary is printed at the start and in the model card: the repeats are
    counted once, without copying text rows into JSON; messages never equal their JSON text."""
    from directpo.data import PreferenceData, PreferenceExample

    user = [{"role": "user", "content": "hi"}]
    answer = [{"role": "assistant", "content": "yes"}]
    refusal = [{"role": "assistant", "content": "no"}]
    as_text = json.dumps(user)
    examples = [
        PreferenceExample("a", "b", "c"),
        PreferenceExample("a", "b", "c"),
        PreferenceExample("a", "b", "d"),
        PreferenceExample(user, answer, refusal),
        PreferenceExample(user, answer, refusal),
        PreferenceExample(as_text, json.dumps(answer), json.dumps(refusal)),
    ]
    data = PreferenceData(examples, "explicit+conversational", "f")
    dumped = []
    real_dumps = json.dumps
    monkeypatch.setattr(json, "dumps", lambda value, **kw: dumped.append(1) or real_dumps(value))
    assert data.summary() == data.summary()
    assert data.duplicates == 2 and "2 of them repeat an earlier pair" in data.summary()
    assert len(dumped) == 2 * 3  # each message list once, in the first summary only


def test_counting_repeated_pairs_holds_no_second_copy_of_the_texts() -> None:
    """The repeats of a conversational file were counted in a set of every pair's messages as
    JSON: a second copy of the texts, at the peak of reading (49 MB for 20k UltraFeedback-
    like rows). Each pair is now held as a digest."""
    import tracemalloc

    from directpo.data import PreferenceData, PreferenceExample

    def turn(role: str, n: int) -> list[dict[str, str]]:
        return [{"role": role, "content": f"{n} " + "word " * 2000}]  # 10 kB a message

    examples = [PreferenceExample(turn("user", n), turn("assistant", n), turn("assistant", -n))
                for n in range(100)]  # fmt: skip
    examples.append(examples[0])
    data = PreferenceData(examples, "conversational", "f")
    tracemalloc.start()
    try:
        assert data.duplicates == 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    texts = 3 * 100 * 10_000  # 3 MB
    assert peak < texts / 10


def test_pairs_with_the_same_texts_but_other_images_or_template_arguments_are_not_repeats():
    text = {"prompt": [{"role": "user", "content": "What is it?"}], "chosen": "A cat.",
            "rejected": "A dog."}  # fmt: skip
    rows = [{**text, "images": [image]} for image in (b"one", b"two", b"one")]
    rows += [{**text, "chat_template_kwargs": {"enable_thinking": think}} for think in (0, 1, 1)]
    data = load_preferences(rows)
    assert data.duplicates == 2 and "2 of them repeat an earlier pair" in data.summary()
    # held-out prompts too: the same words about the same image bytes are one prompt
    assert [p.images for p in distinct_prompts(e.full_prompt for e in data.examples[:3])] == [
        (b"one",),
        (b"two",),
    ]


@pytest.mark.parametrize(
    "chosen, rejected, prompt",
    [
        ("\n\nHuman: hi\n\nAssistant: I'm sure it is.", "\n\nHuman: hi\n\nAssistant: I've no idea.",
         "\n\nHuman: hi\n\nAssistant:"),
        ("It costs 3.5 now.", "It costs 3.7 later.", "It costs"),
        ("That is a well-known fact.", "That is a well-kept secret.", "That is a"),
        ("I love it 😀!", "I love it 😡!", "I love it"),
        ("Hi  there", "Hi there", "Hi"),  # the whole whitespace run opens the completion
        ("Q: 2+2?\nA:\t4", "Q: 2+2?\nA:\tfive", "Q: 2+2?\nA:"),
        ("Answer:yes", "Answer:no", "Answer:"),  # no whitespace: the differing word's start
    ],
)  # fmt: skip
def test_implicit_prompt_ends_at_a_whitespace_boundary(chosen, rejected, prompt) -> None:
    example = parse_pair({"chosen": chosen, "rejected": rejected}, Columns(), "row 1")
    assert example.prompt == prompt
    assert prompt + example.chosen == chosen and prompt + example.rejected == rejected


SPLIT_ALPHABET = "ab xy\n'-.,:9😀😡é\t"


@settings(max_examples=300, deadline=None)
@given(
    shared=st.text(SPLIT_ALPHABET, min_size=1, max_size=12),
    first=st.text(SPLIT_ALPHABET, min_size=1, max_size=8),
    second=st.text(SPLIT_ALPHABET, min_size=1, max_size=8),
)
def test_implicit_split_keeps_token_ids_of_the_whole_text(shared, first, second) -> None:
    """Prompt tokens + completion tokens are the whole text's tokens, on both sides."""
    chosen, rejected = shared + first, shared + second
    try:
        example = parse_pair({"chosen": chosen, "rejected": rejected}, Columns(), "row 1")
    except DataError:  # no shared prompt, identical texts: refused, not mis-split
        return
    tokenizer = _byte_level_tokenizer()

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    for whole, completion in ((chosen, example.chosen), (rejected, example.rejected)):
        assert example.prompt + completion == whole
        assert ids(example.prompt) + ids(completion) == ids(whole)


@functools.cache
def _byte_level_tokenizer():
    from tiny import build_tokenizer

    return build_tokenizer("gpt2")


def test_rows_from_python_are_named_by_the_argument_that_gave_them(
    tiny_model_dirs, tmp_path
) -> None:
    """A bad row of train_dataset and one of eval_dataset were both "rows: ...": which list to
    fix was left to guess. A file given as train_dataset is still named by its path."""
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.trainer import train

    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out")
    broken = [{"prompt": "x", "chosen": " y"}]
    with pytest.raises(DataError, match=r"^eval_dataset: column 'rejected' not found"):
        train(config, SENTIMENT_PAIRS, broken, echo=lambda _: None)
    with pytest.raises(
        DataError,
        match=r"^train_dataset: row 2: missing field 'chosen'; skip_invalid_rows=True skips them$",
    ):
        train(config, [SENTIMENT_PAIRS[0], {"prompt": "x", "rejected": " z"}], echo=lambda _: None)
    path = write_jsonl(tmp_path / "bad.jsonl", broken)
    with pytest.raises(DataError, match=f"^{path}: column 'rejected' not found"):
        train(config, str(path), echo=lambda _: None)


def test_dataset_name_loads_a_local_dataset_with_its_splits(tiny_model_dirs, tmp_path) -> None:
    """TRL's dataset_name / dataset_train_split / dataset_test_split, through load_dataset."""
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.trainer import train

    folder = tmp_path / "prefs"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", SENTIMENT_PAIRS)
    write_jsonl(folder / "test.jsonl", SENTIMENT_PAIRS[:2])
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out", dataset_name=str(folder))
    result = train(config, echo=lines.append)
    assert any(line.startswith(f"train: {folder}[train]: 6 pairs") for line in lines)
    assert any(line.startswith(f"eval: {folder}[test]: 2 pairs") for line in lines)
    assert any("eval/loss" in row for row in result.metrics)
    lines.clear()  # TRL's eval_strategy: no leaves the test split unread (it was refused)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "no", dataset_name=str(folder),
                         eval_strategy="no")  # fmt: skip
    result = train(config, echo=lines.append)
    assert not any(line.startswith("eval:") for line in lines)
    assert not any(key.startswith("eval/") for row in result.metrics for key in row)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "x", dataset_name=str(folder),
                         dataset_train_split="validation")  # fmt: skip
    with pytest.raises(DataError, match=r"no split 'validation' \(it has train, test\)"):
        train(config, echo=lambda _: None)
    # evaluations asked for with no test split: refused, not a run that silently never evaluates
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "e", dataset_name=str(folder),
                         dataset_test_split="dev", eval_steps=2)  # fmt: skip
    # (train()'s keyword: it read 'set dataset_test_split', a recipe's verb)
    with pytest.raises(DataError, match=r"no split 'dev' .* eval_steps asks for; pass "
                       r"dataset_test_split=\.\.\.$"):  # fmt: skip
        train(config, echo=lambda _: None)
    # the train split named as the test split too: its pairs were evaluated as held out
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "t", dataset_name=str(folder),
                         dataset_test_split="train")  # fmt: skip
    # (train()'s keywords: it read "give eval_file, or set eval_strategy='no'", mixed words)
    with pytest.raises(ConfigError, match=r"^dataset_test_split='train' is dataset_train_split "
                       "too, so the held-out pairs would be the training pairs;.* or pass "
                       r"eval_file=\.\.\. or eval_strategy='no'$"):  # fmt: skip
        train(config, echo=lambda _: None)
    # a test split named but absent: refused by that name (it was a run that never evaluated)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "d", dataset_name=str(folder),
                         dataset_test_split="validation")  # fmt: skip
    with pytest.raises(DataError, match=r"no split 'validation' .* dataset_test_split names; "
                       r"pass dataset_test_split=\.\.\.$"):  # fmt: skip
        train(config, echo=lambda _: None)
    # best model / early stopping under eval_strategy: no (the test split only held out): they
    # were silently never applied, the output the last step's weights
    for key, value in (("load_best_model_at_end", True), ("early_stopping_patience", 2)):
        config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "n",
                             dataset_name=str(folder), eval_strategy="no",
                             **{key: value})  # fmt: skip
        with pytest.raises(ConfigError, match=f"^{key} needs evaluations, and eval_strategy is no"):
            train(config, echo=lambda _: None)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "y",
                         dataset_name="no-such-org/no-such-dataset")  # fmt: skip
    with pytest.raises(DataError, match="dataset_name 'no-such-org/no-such-dataset': cannot load"):
        train(config, echo=lambda _: None)


def test_dataset_name_reads_save_to_disk_folders_and_train_file_points_to_it(
    tiny_model_dirs, tmp_path
) -> None:
    """load_dataset refuses a save_to_disk folder ("use load_from_disk"): dataset_name reads it
    (a DatasetDict's splits, or one Dataset as the train split), and train_file given a folder
    of data files (a hub snapshot) or several splits names dataset_name."""
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.trainer import train

    pairs = datasets.Dataset.from_list(SENTIMENT_PAIRS)
    datasets.DatasetDict({"train": pairs, "test": pairs.select(range(2))}).save_to_disk(
        str(tmp_path / "dict")
    )
    pairs.save_to_disk(str(tmp_path / "one"))
    for folder, evaluated in (("dict", True), ("one", False)):
        lines: list[str] = []
        config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / f"out-{folder}",
                             dataset_name=str(tmp_path / folder), max_steps=1)  # fmt: skip
        train(config, echo=lines.append)
        assert any(line.startswith(f"train: {tmp_path / folder}[train]: 6 pairs") for line in lines)
        assert (
            any(line.startswith(f"eval: {tmp_path / folder}[test]: 2 pairs") for line in lines)
            == evaluated
        )
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out-config",
                         dataset_name=str(tmp_path / "one"), dataset_config="en")  # fmt: skip
    with pytest.raises(DataError, match="has no configurations; remove dataset_config"):
        train(config, echo=lambda _: None)
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out-file",
                         dataset_name=str(tmp_path / "one" / "state.json"))  # fmt: skip
    with pytest.raises(ConfigError, match="state.json is a file; give it as train_file"):
        train(config, echo=lambda _: None)
    (tmp_path / "snapshot" / "data").mkdir(parents=True)
    pairs.to_parquet(str(tmp_path / "snapshot" / "data" / "train-00000-of-00001.parquet"))
    for folder, message in (("snapshot", "is read whole by train's dataset_name"),
                            ("dict", "or give the folder as train's dataset_name")):  # fmt: skip
        with pytest.raises(DataError, match=message):
            load_preferences(str(tmp_path / folder))
    # score, rank and generate, which have no dataset_name, are shown the file to give
    from directpo.data import read_rows

    shard = tmp_path / "snapshot" / "data" / "train-00000-of-00001.parquet"
    with pytest.raises(DataError, match=f"; give one of its data files \\({shard}\\);"):
        read_rows(str(tmp_path / "snapshot"))
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match="bare: a folder, .*; it holds no data files;"):
        read_rows(str(tmp_path / "bare"))


def test_several_train_files_are_mixed_in_order(tiny_model_dirs, tmp_path, capsys) -> None:
    """train_file: [a.jsonl, b.parquet] (also from a flag): the pairs of every file, in order,
    each file in its own layout; a bad row is named by its own file and row."""
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.cli import main
    from directpo.config import DPOConfig
    from directpo.trainer import train

    first = write_jsonl(tmp_path / "a.jsonl", SENTIMENT_PAIRS[:3])
    implicit = [{"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
                for r in SENTIMENT_PAIRS[3:]]  # fmt: skip
    second = tmp_path / "b.parquet"
    datasets.Dataset.from_list(implicit).to_parquet(str(second))
    data = load_preferences([str(first), str(second)])
    assert len(data) == len(SENTIMENT_PAIRS)
    assert [e.chosen for e in data.examples[:3]] == [r["chosen"] for r in SENTIMENT_PAIRS[:3]]
    assert data.layout == "explicit+implicit" and str(second) in data.source

    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["llama"], None, tmp_path / "out",
                         train_file=[str(first), str(second)])  # fmt: skip
    train(config, echo=lines.append)
    assert any(line.startswith(f"train: {first} + {second}: 6 pairs") for line in lines)
    flag = DPOConfig(model_name_or_path="m", train_file=f"[{first}, {second}]")
    assert flag.train_file == [str(first), str(second)]
    assert DPOConfig(model_name_or_path="m", train_file=str(first)).train_file == str(first)

    broken = write_jsonl(tmp_path / "c.jsonl", [ROWS[0], {"prompt": "x", "chosen": "y"}])
    with pytest.raises(DataError, match=rf"{broken}: line 2: .*rejected"):
        load_preferences([str(first), str(broken)])
    code = main(["train", "--model_name_or_path", str(tiny_model_dirs["llama"]),
                 "--train_file", f"[{first}, {tmp_path / 'missing.jsonl'}]",
                 "--output_dir", str(tmp_path / "o")])  # fmt: skip
    assert code != 0
    assert (
        f"train_file: no such file or folder: {tmp_path / 'missing.jsonl'}"
        in capsys.readouterr().err
    )


def test_every_train_files_bad_rows_are_said_in_one_run(tmp_path: Path) -> None:
    """train_file: [a.jsonl, b.jsonl] with bad rows in both said a.jsonl's and stopped: b's
    came with the next run. Every file is read, and each one's problems said, in order."""
    first = write_jsonl(tmp_path / "a.jsonl", [ROWS[0], {"prompt": "x", "chosen": "y"}])
    second = write_jsonl(tmp_path / "b.jsonl", [{**ROWS[0], "chosen": ""}, ROWS[0]])
    good = write_jsonl(tmp_path / "c.jsonl", [ROWS[0]])
    with pytest.raises(DataError) as info:
        load_preferences([str(first), str(good), str(second)])
    assert str(info.value) == (
        f"{first}: line 2: missing field 'rejected'; {second}: line 1: field 'chosen' is empty"
        "; skip_invalid_rows: true skips them"  # (said once, after the last source)
    )


def test_a_glob_pattern_in_train_file_reads_the_files_it_matches(tiny_model_dirs, tmp_path) -> None:
    """train_file: 'shards/*' (as datasets' data_files takes it) was "no such file or folder":
    it is every matching file, sorted, of any format and layout (here a JSON Lines file of texts
    and a Parquet file of messages); eval_file too; a pattern that matches nothing is one line."""
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.trainer import train

    shards = tmp_path / "shards"
    shards.mkdir()
    write_jsonl(shards / "a.jsonl", SENTIMENT_PAIRS[:3])
    messages = [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in SENTIMENT_PAIRS[3:]
    ]
    datasets.Dataset.from_list(messages).to_parquet(str(shards / "b.parquet"))
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], None, tmp_path / "out", train_file=str(shards / "*"),
        eval_file=[str(shards / "a.*")], max_length=64,
    )  # fmt: skip
    train(config, echo=lines.append)
    expected = f"train: {shards / 'a.jsonl'} + {shards / 'b.parquet'}: {len(SENTIMENT_PAIRS)} pairs"
    assert any(line.startswith(expected + ", layout explicit+conversational") for line in lines)
    assert any(line.startswith(f"eval: {shards / 'a.jsonl'}: 3 pairs") for line in lines)
    missing = tiny_config(tiny_model_dirs["llama"], str(tmp_path / "none-*.jsonl"), tmp_path / "o")
    with pytest.raises(ConfigError, match=r"^train_file: no file matches the pattern .*none-\*"):
        train(missing)


def test_one_line_names_each_distinct_problem_with_its_first_row_and_count(tmp_path) -> None:
    """Bad rows deep in a large file: the error named the first row's problem only and counted
    the others, so a file with two kinds of mistake took a run per kind; each distinct problem
    is said once, with its first row, a count and the next few places, in one bounded line."""
    rows = [{"prompt": f"p{i}", "chosen": " a", "rejected": " b"} for i in range(3000)]
    for i in (2500, 2700, 2800, 2900, 2950):
        rows[i] = {"prompt": "p", "chosen": " a"}
    rows[2600] = rows[2990] = {"prompt": "p", "chosen": "", "rejected": " b"}
    path = write_jsonl(tmp_path / "big.jsonl", rows)
    with pytest.raises(DataError) as raised:
        load_preferences(str(path))
    assert str(raised.value) == (
        f"{path}: line 2501: missing field 'rejected' (4 more rows like it: line 2701, "
        "line 2801, line 2901, ...); line 2601: field 'chosen' is empty (1 more row like it: "
        "line 2991); skip_invalid_rows: true skips them"
    )
    rows[2600] = rows[2800] = rows[2900] = rows[2950] = rows[2990] = rows[0]
    with pytest.raises(DataError, match=r"2501: .* \(1 more row like it: line 2701\); skip_"):
        load_preferences(str(write_jsonl(path, rows)))
    # many kinds of problem: a few said, the rest counted (the line stays short)
    rows = [{"prompt": "p", "chosen": " a", "rejected": " b", "images": [f"x{i}.png"]}
            for i in range(40)]  # fmt: skip
    with pytest.raises(DataError) as raised:
        load_preferences(str(write_jsonl(path, rows)))
    said = str(raised.value)
    assert said.count("not found") == 3 and len(said) < 1000, said  # three said, 37 counted
    assert said.endswith("; 37 more rows with other problems: line 4, line 5, line 6, ...; "
                         "skip_invalid_rows: true skips them")  # fmt: skip


def test_a_lone_surrogate_is_the_rows_error_not_the_tokenizers_traceback(tmp_path) -> None:
    """JSON's "\\ud83d" without its pair (text cut inside an emoji) reached the tokenizer, whose
    TypeError for the whole batch named no row; it is the row's one-line error (or a skip)."""
    lines = [
        '{"prompt": "fine", "chosen": " a", "rejected": " b"}',
        '{"prompt": "ok", "chosen": " a", "rejected": " b \\ud83d"}',
        '{"prompt": [{"role": "user", "content": "x\\udc00"}], "chosen": " a", "rejected": " b"}',
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DataError) as raised:
        load_preferences(str(path))
    assert str(raised.value) == (
        f"{path}: line 2: field 'rejected' holds a lone UTF-16 surrogate ('\\ud83d' at "
        "character 4), half of a character, which no tokenizer encodes; remove it; "
        "skip_invalid_rows: true skips them"
    )
    path.write_text(lines[2] + "\n")
    with pytest.raises(DataError, match=r"line 1: field 'prompt' holds a lone UTF-16 surrogate"):
        load_preferences(str(path))
    path.write_text("\n".join(lines) + "\n")
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"lone surrogate": 2}


USER_HI = {"role": "user", "content": "Hi"}


def _load_rows(tmp_path: Path, rows: list[dict], **options):
    return load_preferences(str(write_jsonl(tmp_path / "x.jsonl", rows)), **options)


def test_completions_drop_a_repeated_prompt_and_must_start_with_an_assistant_message(
    tmp_path: Path,
) -> None:
    hello = {"role": "assistant", "content": "Hello!"}
    repeated = {"prompt": [USER_HI], "chosen": [USER_HI, hello], "rejected": "Go away."}
    example = _load_rows(tmp_path, [repeated]).examples[0]
    assert example.prompt == [USER_HI] and example.chosen == [hello]
    assert example.rejected == [{"role": "assistant", "content": "Go away."}]
    bad = [
        ({"chosen": [{"role": "user", "content": "a"}]}, r"'chosen': message 1 has role 'user'"),
        ({"chosen": [{"role": "system", "content": "x"}]}, "must start with an assistant message"),
        ({"chosen": [USER_HI]}, "field 'chosen' repeats the prompt and adds no message"),
        (  # repeats only part of the prompt: not the reply either
            {"prompt": [{"role": "system", "content": "s"}, USER_HI], "chosen": [USER_HI, hello]},
            r"'chosen': message 1 has role 'user'",
        ),
    ]
    for change, message in bad:
        with pytest.raises(DataError, match=r"x.jsonl: line 1: .*" + message) as info:
            _load_rows(tmp_path, [{**repeated, **change}])
        assert "\n" not in str(info.value)
    # the implicit message layout: what follows the shared turns must be a reply too
    turns = [USER_HI, hello]
    row = {
        "chosen": [*turns, {"role": "user", "content": "more"}, hello],
        "rejected": [*turns, {"role": "user", "content": "less"}, hello],
    }
    with pytest.raises(DataError, match="line 1: field 'chosen': message 1 has role 'user'"):
        _load_rows(tmp_path, [row])
    data = _load_rows(tmp_path, [repeated, {**repeated, "chosen": [USER_HI]}],
                      skip_invalid_rows=True)  # fmt: skip
    assert len(data) == 1 and data.skipped == {"no completion": 1}


def test_scored_responses_drop_a_repeated_prompt(tmp_path: Path) -> None:
    from directpo.prompts import parse_prompt_and_responses

    hello = {"role": "assistant", "content": "Hello!"}
    row = {"prompt": [USER_HI], "responses": [[USER_HI, hello], "Hey."]}
    prompt, responses = parse_prompt_and_responses(row, "prompt", "responses", "f: line 1")
    assert prompt == [USER_HI]
    assert responses == [[hello], [{"role": "assistant", "content": "Hey."}]]


def test_completion_text_parts_are_joined_and_an_empty_images_list_is_no_images(
    tmp_path: Path,
) -> None:
    """TRL's vision datasets write completions as content parts."""
    parts = [{"type": "text", "text": "A red "}, {"type": "text", "text": "ball."}]
    row = {
        "prompt": [USER_HI],
        "chosen": [{"role": "assistant", "content": parts}],
        "rejected": [{"role": "assistant", "content": [{"type": "text", "text": "A cat."}]}],
        "images": [],
    }
    example = _load_rows(tmp_path, [row]).examples[0]
    assert example.chosen == [{"role": "assistant", "content": "A red ball."}]
    assert example.rejected == [{"role": "assistant", "content": "A cat."}]
    assert example.images is None and example.prompt == [USER_HI]
    with_image = [{"type": "image"}, *parts]
    bad = {**row, "chosen": [{"role": "assistant", "content": with_image}]}
    with pytest.raises(DataError, match="line 1: field 'chosen': message 1 has an image part"):
        _load_rows(tmp_path, [bad])


def test_an_openai_image_url_part_is_one_short_line_saying_the_part_to_write(
    tmp_path: Path,
) -> None:
    """An OpenAI-style part ({"type": "image_url", "image_url": {"url": DATA_URI}}) printed
    its whole base64 image in the error (thousands of characters); its texts are cut, and the
    line says the image part that is read instead."""
    data_uri = "data:image/png;base64," + "iVBORw0KGgo" * 600
    part = {"type": "image_url", "image_url": {"url": data_uri}}
    row = {
        "prompt": [{"role": "user", "content": [part, {"type": "text", "text": "What is it?"}]}],
        "chosen": [{"role": "assistant", "content": "A cat."}],
        "rejected": [{"role": "assistant", "content": "A dog."}],
    }
    with pytest.raises(DataError) as refused:
        _load_rows(tmp_path, [row])
    line = str(refused.value)
    assert "\n" not in line and len(line) < 600, line
    assert "line 1: field 'prompt': message 1 has a content part {'type': 'image_url'" in line
    assert f"({len(data_uri)} characters)" in line
    assert """write OpenAI's image_url part as {"type": "image", "url": ...}""" in line


def test_a_prompt_text_with_whole_conversations_uses_their_shared_turns(tmp_path: Path) -> None:
    """HuggingFaceH4/ultrafeedback_binarized: prompt text, chosen/rejected conversations."""
    system = {"role": "system", "content": "Be brief."}
    question = {"role": "user", "content": "What is 2+2?"}
    four, five = {"role": "assistant", "content": "4"}, {"role": "assistant", "content": "5"}
    row = {"prompt": "What is 2+2?", "chosen": [system, question, four],
           "rejected": [system, question, five], "score_chosen": 9.0}  # fmt: skip
    data = _load_rows(tmp_path, [row, {**row, "prompt": "What is 2+2? "}])
    assert data.layout == "conversational" and len(data) == 2
    example = data.examples[0]
    assert (example.prompt, example.chosen, example.rejected) == (
        [system, question],
        [four],
        [five],
    )
    assert parse_pair(row, Columns(), "r").prompt == [system, question]
    with pytest.raises(DataError, match="line 1: field 'prompt' is text .* no user message"):
        _load_rows(tmp_path, [{**row, "prompt": "What is 3+3?"}])
    # completions alone after a prompt text: it read 'chosen and rejected share no leading
    # messages to use as the prompt', as if there were no prompt column
    with pytest.raises(DataError, match="line 1: field 'prompt' is text .* assistant messages: "):
        _load_rows(tmp_path, [{"prompt": "What is 2+2?", "chosen": [four], "rejected": [five]}])


def test_a_utf8_byte_order_mark_is_not_part_of_the_data(tmp_path: Path) -> None:
    bom = "\ufeff"
    (tmp_path / "a.jsonl").write_text(bom + json.dumps(ROWS[0]) + "\n", encoding="utf-8")
    (tmp_path / "b.json").write_text(bom + json.dumps(ROWS), encoding="utf-8")
    (tmp_path / "c.csv").write_text(bom + "prompt,chosen,rejected\nQ: 2+2?, 4, 5\n")
    for name in ("a.jsonl", "b.json", "c.csv"):
        data = load_preferences(str(tmp_path / name))
        assert data.examples[0].prompt == "Q: 2+2?", name


def test_csv_rows_must_match_the_header(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("prompt,chosen,rejected\na,b,c\nx, y, z, extra\nshort,row\n")
    with pytest.raises(
        DataError, match=r"x.csv: line 3: 4 fields but the header has 3 \(quote fields that"
    ):
        load_preferences(str(path))
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"wrong number of fields": 2}
    path.write_text("prompt,chosen,chosen,rejected\na,b,c,d\n")
    with pytest.raises(DataError, match="x.csv: the header names column 'chosen' twice$"):
        load_preferences(str(path))
    path.write_text("prompt, chosen, rejected\na, b, c\n")  # spaces after the commas
    assert load_preferences(str(path)).examples[0].chosen == " b"


def test_columns_without_a_name_are_named_as_pandas_reads_them(tmp_path: Path) -> None:
    # Excel writes a range's empty columns as trailing ";;", pandas' to_csv its index unnamed:
    # two unnamed columns were refused as "the header names column '' twice"
    path = tmp_path / "sheet.csv"
    path.write_bytes("\ufeffprompt;chosen;rejected;;\r\nQ;a;b;;\r\n;;;;\r\n".encode())
    (pair,) = load_preferences(str(path)).examples
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Q", "a", "b")
    path.write_text(",Unnamed: 0,prompt,chosen,rejected,\n0,7,Q,a,b,\n")  # saved twice by pandas
    rows, header = open_rows(str(path), "f")
    assert header == ["Unnamed: 0.1", "Unnamed: 0", "prompt", "chosen", "rejected", "Unnamed: 5"]
    assert list(pd.read_csv(path).columns) == header
    assert next(iter(rows))[1]["Unnamed: 0"] == "7"


def test_a_spreadsheets_empty_rows_are_no_rows(tmp_path: Path) -> None:
    # Excel / Google Sheets export: BOM, CRLF, a cell with a line break, and the range's empty
    # rows as bare separators: each ",," was refused as "field 'prompt' is empty"
    path = tmp_path / "sheet.csv"
    text = '\ufeffprompt,chosen,rejected\r\n"Two\nlines",4,5\r\n,,\r\nQ,a,b\r\n , ,\r\n,,\r\n'
    path.write_bytes(text.encode())
    data = load_preferences(str(path))
    assert [e.prompt for e in data.examples] == ["Two\nlines", "Q"]
    assert [e.where for e in data.examples] == [f"{path}: line 2", f"{path}: line 5"]
    path.write_bytes(text.replace(",,\r\nQ", ",b,\r\nQ").encode())  # a cell holds text
    with pytest.raises(DataError, match=r"sheet.csv: line 4: field 'prompt' is empty"):
        load_preferences(str(path))


@pytest.mark.parametrize("mark", [";", "\t"])
def test_a_csv_separated_by_semicolons_or_tabs_is_read(tmp_path: Path, mark: str) -> None:
    # Excel in a German or French locale saves "CSV" with semicolons: the header was one column
    # 'prompt;chosen;rejected', and the line said to set chosen_column
    path = tmp_path / "sheet.csv"
    rows = ['"prompt"', "chosen", "rejected"], ['"Hi; there, you"', "Hello", '"Go\naway"']
    path.write_bytes("".join(mark.join(row) + "\r\n" for row in rows).encode())
    (pair,) = load_preferences(str(path)).examples
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hi; there, you", "Hello", "Go\naway")
    path.write_text("prompt,chosen,rejected,a;b\na,b,c,d\n")  # commas: read as they are
    assert load_preferences(str(path)).examples[0].chosen == "b"
    tsv = tmp_path / "pairs.tsv"  # a .tsv was "unsupported file type"
    tsv.write_text("prompt\tchosen\trejected\nHi, you\tHello\tGo\n")
    (pair,) = load_preferences(str(tsv)).examples
    assert (pair.prompt, pair.chosen, pair.rejected) == ("Hi, you", "Hello", "Go")


def test_csv_fields_longer_than_the_csv_module_default_are_read(tmp_path: Path) -> None:
    long = "word " * 40_000  # 200,000 characters: over csv's default field limit
    path = tmp_path / "x.csv"
    path.write_text(f'prompt,chosen,rejected\na,"b\nc",d\n"{long}",good,bad\ne,f\n')
    with pytest.raises(DataError, match=r"x.csv: line 5: 2 fields but the header has 3"):
        load_preferences(str(path))  # rows start at lines 2, 4 and 5
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert data.examples[1].prompt == long and data.skipped == {"wrong number of fields": 1}


def test_csv_cells_holding_message_lists_are_decoded(tmp_path: Path) -> None:
    import csv

    path = tmp_path / "x.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "chosen", "rejected"])
        writer.writerow([json.dumps([USER_HI]), json.dumps([{"role": "assistant",
                         "content": "Hello!"}]), "[not, a message list]"])  # fmt: skip
        writer.writerow([repr([USER_HI]), "Hey.", "Go."])  # pandas writes a list column so
    data = load_preferences(str(path))
    assert data.layout == "conversational"
    assert [e.prompt for e in data.examples] == [[USER_HI], [USER_HI]]
    assert data.examples[0].chosen == [{"role": "assistant", "content": "Hello!"}]
    assert data.examples[0].rejected == [{"role": "assistant", "content": "[not, a message list]"}]


def test_a_csv_reply_that_is_a_message_lists_json_is_text_in_a_file_of_text(
    tmp_path: Path,
) -> None:
    """A code answer that is literally a chat messages array ('[{"role": "user", ...}]') in
    a CSV of text replies was read as a list and refused ('field 'chosen' must be a string,
    got a list'; skip_invalid_rows dropped the pair): in a file whose rows are text it is the
    text written, as in a JSON file's string; a conversation's cells still read as messages."""
    import csv

    code = '[{"role": "user", "content": "hi"}]'
    path = tmp_path / "x.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["prompt", "chosen", "rejected"])
        writer.writerow(["List two fruits as JSON", '["apple", "pear"]', "apple"])
        writer.writerow(["The messages JSON of a user saying hi", code, " " + code[:-1]])
    data = load_preferences(str(path))
    assert data.layout == "explicit"
    assert [e.chosen for e in data.examples] == ['["apple", "pear"]', code]
    assert data.examples[1].rejected == " " + code[:-1]  # (no list: text as before)
    first = tmp_path / "first.csv"  # the file's first row: its layout is the file's
    first.write_text("".join(path.read_text().splitlines(keepends=True)[i] for i in (0, 2, 1)))
    data = load_preferences(str(first))
    assert data.layout == "explicit"
    assert [e.chosen for e in data.examples] == [code, '["apple", "pear"]']


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_a_conversation_row_after_a_first_row_of_text_is_no_text(
    tmp_path: Path, delimiter: str
) -> None:
    """A first row of text (its reply a code answer that is a messages array's JSON) made the
    file's rows text, and a later row whose three cells are a conversation trained on the
    cells' JSON as its prompt and replies; it is refused as a JSON Lines file's list is."""
    import csv

    code = '[{"role": "user", "content": "hi"}]'
    turn = [json.dumps([{"role": role, "content": text}]) for role, text in
            (("user", "Q?"), ("assistant", "A"), ("assistant", "B"))]  # fmt: skip
    path = tmp_path / ("x.csv" if delimiter == "," else "x.tsv")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerows([["prompt", "chosen", "rejected"], ["Say hi as JSON", code, "hi"], turn])
    with pytest.raises(DataError, match=r"line 3: field 'prompt' must be a string, got a list"):
        load_preferences(str(path))
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert [e.chosen for e in data.examples] == [code]  # (the code answer: text, as before)


@pytest.mark.parametrize(
    "chosen",
    ["\n\nHuman: What is X?\n\nAssistant:", "\n\nHuman: What is X?\n\nAssistant: "],
)
def test_an_implicit_text_with_an_empty_response_has_no_completion(tmp_path, chosen) -> None:
    row = {"chosen": chosen, "rejected": "\n\nHuman: What is X?\n\nAssistant: It is Y."}
    for pair in (row, {"chosen": row["rejected"], "rejected": chosen}):
        with pytest.raises(DataError, match=r"line 1: one side has no response .*'Assistant:'"):
            _load_rows(tmp_path, [pair])
    fine = {"chosen": row["rejected"], "rejected": row["rejected"].replace("Y", "Z")}
    data = _load_rows(tmp_path, [row, fine], skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"no completion": 1}


def test_json_reports_the_real_position_and_reads_columns(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(ROWS, indent=2) + "\n]\n")  # a stray bracket at the end
    lines = len(json.dumps(ROWS, indent=2).splitlines())
    with pytest.raises(DataError, match=rf"x.json: line {lines + 1}: invalid JSON \(more text"):
        load_preferences(str(path))
    columns = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    path.write_text(json.dumps(columns))
    data = load_preferences(str(path))
    assert [(e.prompt, e.chosen) for e in data.examples] == [
        (r["prompt"], r["chosen"]) for r in ROWS
    ]
    path.write_text(json.dumps({**columns, "chosen": [" 4"]}))
    with pytest.raises(DataError, match=r"lists have different lengths \(prompt: 2, chosen: 1"):
        load_preferences(str(path))
    path.write_text(json.dumps({"data": ROWS, "tags": []}))
    assert len(load_preferences(str(path))) == 2
    for shape in (json.dumps(ROWS[0]), "7"):
        path.write_text(shape)
        with pytest.raises(DataError, match="expected a list of row objects, an object holding"):
            load_preferences(str(path))


def test_python_sources_a_notebook_passes_read_as_their_files(tmp_path: Path) -> None:
    """train(train_dataset=...): a pathlib.Path (or a list of them) is the file; a DatasetDict
    of one split is that split, of several a one-line refusal naming them; an empty list has
    no rows without being called an empty file."""
    from directpo.data_sources import python_source

    rows = [{"prompt": "The movie was", "chosen": " good.", "rejected": " bad."}]
    path = write_jsonl(tmp_path / "pairs.jsonl", rows)

    def pairs(source: object) -> list[tuple]:
        data = load_preferences(python_source(source, "train_dataset"))
        return [(e.prompt, e.chosen, e.rejected) for e in data.examples]

    want = pairs(str(path))
    assert pairs(path) == want and pairs([path, path]) == want * 2
    one = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)})
    assert pairs(one) == want
    two = datasets.DatasetDict({"train": one["train"], "test": one["train"]})
    with pytest.raises(DataError) as err:
        python_source(two, "eval_dataset")
    assert str(err.value) == (
        "eval_dataset: a DatasetDict of several splits (train, test); pass one, e.g. "
        "eval_dataset=dataset['train']"
    )
    with pytest.raises(DataError, match=r"^rows: no rows$"):
        load_preferences([])


def test_python_train_and_eval_data_are_named_by_their_argument(
    tiny_model_dirs, tmp_path: Path
) -> None:
    """A bad row of train(eval_dataset=[...]) read "rows: row 2: ...", as train_dataset's did:
    which of the two was not said. Each is named by its argument (a file by its path)."""
    import pandas as pd
    from tiny import SENTIMENT_PAIRS, tiny_config

    from directpo.trainer import train

    bad = [SENTIMENT_PAIRS[0], {"prompt": "a", "chosen": " b", "rejected": " b"}]
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out")
    lines: list[str] = []
    for rows in (bad, pd.DataFrame(bad), datasets.Dataset.from_list(bad)):
        with pytest.raises(DataError) as err:
            train(config, SENTIMENT_PAIRS, rows, echo=lines.append)
        assert str(err.value) == with_skip_hint(
            "eval_dataset: row 2: chosen and rejected are identical"
        )
        with pytest.raises(DataError) as err:
            train(config, rows, SENTIMENT_PAIRS, echo=lines.append)
        assert str(err.value) == with_skip_hint(
            "train_dataset: row 2: chosen and rejected are identical"
        )
    assert lines[0].startswith("train: train_dataset: 6 pairs")
    path = write_jsonl(tmp_path / "bad.jsonl", bad)
    with pytest.raises(DataError) as err:
        train(config, SENTIMENT_PAIRS, path, echo=lines.append)
    # (train's Python caller: the keyword; a recipe's or a flag's user: test_early_rows)
    assert str(err.value) == with_skip_hint(f"{path}: line 2: chosen and rejected are identical")


def test_a_prompt_in_a_column_of_another_name_is_not_read_from_the_completions(
    tmp_path: Path,
) -> None:
    """Intel/orca_dpo_pairs (system, question, chosen, rejected) has no prompt column: read as
    the implicit layout, replies that start alike ("The answer is") became a prompt and the
    question was never seen. The question column is named instead; set as prompt_column it is
    the prompt."""
    orca = [
        {"system": "Be exact.", "question": "What is 1+1?",
         "chosen": "The answer is 2.", "rejected": "The answer is 3."},
        {"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "orca.jsonl", orca)
    with pytest.raises(DataError) as info:
        load_preferences(str(path))
    assert str(info.value).startswith(
        f"{path}: line 1: there is no 'prompt' column, so the prompt would be the start that "
        "'chosen' and 'rejected' share (the implicit layout), but 'chosen' does not hold the "
        "text of column 'question', which would go untrained; set prompt_column: question and "
        "system_column: system (its text becomes each prompt's system turn)"
    )
    with pytest.raises(DataError, match="^f: line 1: there is no 'prompt' column"):  # score
        parse_pair(orca[0], Columns(), "f: line 1")
    data = load_preferences(str(path), Columns(prompt="question", prompt_required=True))
    assert [(e.prompt, e.chosen) for e in data.examples] == [
        ("What is 1+1?", "The answer is 2."),
        ("Sky?", "Blue."),
    ]
    # Anthropic HH with its question kept in a column of its own: the texts contain it
    hh = {"question": "Hi", "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
          "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}  # fmt: skip
    assert load_preferences([hh]).examples[0].prompt == "\n\nHuman: Hi\n\nAssistant:"
    # a row whose completions share nothing says where the prompt should be
    with pytest.raises(DataError, match="if another column holds the prompt, set prompt_column"):
        load_preferences([{"chosen": "yes", "rejected": "no", "id": "x"}])


def test_system_column_opens_each_prompt_with_a_system_turn(tmp_path: Path) -> None:
    """Intel/orca_dpo_pairs' system column had no option: with prompt_column: question the
    system text was lost. system_column makes it the system turn of a conversation (an empty
    cell, none), in training pairs, score's pair rows and prompt files alike."""
    from directpo.prompts import load_prompt_rows, load_prompts, parse_prompt_and_responses

    orca = [
        {"system": "Be exact.", "question": "What is 1+1?",
         "chosen": "The answer is 2.", "rejected": "The answer is 3."},
        {"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "orca.jsonl", orca)
    columns = Columns(prompt="question", prompt_required=True, system="system")
    data = load_preferences(str(path), columns)
    assert data.layout == "conversational"
    system = {"role": "system", "content": "Be exact."}
    first = [system, {"role": "user", "content": "What is 1+1?"}]
    assert [(e.prompt, e.chosen, e.rejected) for e in data.examples] == [
        (first, [{"role": "assistant", "content": "The answer is 2."}],
         [{"role": "assistant", "content": "The answer is 3."}]),
        ([{"role": "user", "content": "Sky?"}], [{"role": "assistant", "content": "Blue."}],
         [{"role": "assistant", "content": "Green."}]),
    ]  # fmt: skip
    assert parse_pair(orca[0], columns, "f").prompt == first  # score's pair rows
    assert parse_prompt_and_responses(orca[0], "question", "chosen", "f", "system") == (
        first, [[{"role": "assistant", "content": "The answer is 2."}]]
    )  # fmt: skip
    for load in (load_prompts, load_prompt_rows):  # prompt_file, eval_prompts_file, generate
        assert load(str(path), "question", "system")[0][0] == first
    # message prompts get it in front; one with its own system turn is refused
    chat = {"system": "Be exact.", "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": "Hello.", "rejected": "Bye."}  # fmt: skip
    with_system = Columns(system="system")
    assert parse_pair(chat, with_system, "f").prompt == [system, *chat["prompt"]]
    twice = {**chat, "prompt": [system, *chat["prompt"]]}
    with pytest.raises(
        DataError, match="^f: field 'system' .system_column. and the prompt's first"
    ):
        parse_pair(twice, with_system, "f")
    assert parse_pair({**twice, "system": ""}, with_system, "f").prompt == twice["prompt"]
    with pytest.raises(DataError, match="field 'system' .system_column. must be a string, got"):
        parse_pair({**chat, "system": 3}, with_system, "f")
    with pytest.raises(DataError, match="column 'sys' not found .* set system_column"):
        load_preferences(str(path), Columns("question", prompt_required=True, system="sys"))
    # the implicit text layout's prompt is a transcript, with no turns to put it before
    hh = {"system": "Be kind.", "chosen": "Human: Hi Assistant: Hello!",
          "rejected": "Human: Hi Assistant: Go away."}  # fmt: skip
    with pytest.raises(DataError, match="system_column 'system' needs a prompt column"):
        load_preferences([hh], with_system)


def test_a_system_prompt_column_left_unread_is_said(tmp_path: Path) -> None:
    """Intel/orca_dpo_pairs' first row has an empty system: the refusal named prompt_column
    alone, and with it set every other row trained without its system prompt, unsaid."""
    orca = [
        {"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."},
        {"system": "Be exact.", "question": "What is 1+1?",
         "chosen": "The answer is 2.", "rejected": "The answer is 3."},
        {"system": "Be kind.", "question": "Be kind. Hi?", "chosen": "Hi!", "rejected": "No."},
    ]  # fmt: skip
    path = write_jsonl(tmp_path / "orca.jsonl", orca)
    with pytest.raises(DataError, match="set prompt_column: question and system_column: system"):
        load_preferences(str(path))
    data = load_preferences(str(path), Columns(prompt="question", prompt_required=True))
    assert data.unread_system == ("system", 1)  # (the third's prompt already holds its text)
    assert data.summary().endswith(
        "layout explicit; column 'system' is not read: 1 prompt goes without the system prompt "
        "it holds (system_column: system makes it their system turn)"
    )
    read = load_preferences(str(path), Columns("question", prompt_required=True, system="system"))
    assert read.unread_system is None and "not read" not in read.summary()
    both = load_preferences([str(path), str(path)], Columns("question", prompt_required=True))
    assert both.unread_system == ("system", 2)
    one = Columns("question", prompt_required=True)
    assert load_preferences([{**orca[1], "system": ""}], one).summary() == (
        "rows: 1 pair, layout explicit"
    )


def test_tool_schemas_and_calls_read_from_arrow_lack_other_rows_keys(tmp_path: Path) -> None:
    """Arrow (Parquet, save_to_disk, a Dataset) gives each object of a column every key of any
    row's: the chat template rendered a call {"city": "Paris", "query": null, "limit": null}
    and a schema with another tool's parameters as nulls. Every format now gives the JSON
    Lines file's pairs."""

    def row(name: str, arguments: dict, parameters: dict) -> dict:
        call = {"type": "function", "function": {"name": name, "arguments": arguments}}
        schema = {"type": "object", "properties": parameters}
        tool = {"type": "function", "function": {"name": name, "parameters": schema}}
        return {
            "prompt": [USER_HI],
            "chosen": [{"role": "assistant", "content": "", "tool_calls": [call]}],
            "rejected": [{"role": "assistant", "content": "No."}],
            "tools": [tool],
        }

    rows = [
        row("get_weather", {"city": "Paris"}, {"city": {"type": "string"}}),
        row("search", {"query": "cats", "limit": 3}, {"query": {"type": "string"}}),
    ]
    jsonl = load_preferences(str(write_jsonl(tmp_path / "t.jsonl", rows))).examples
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "t.parquet"))
    parquet = load_preferences(str(tmp_path / "t.parquet")).examples
    for ours, theirs in zip(parquet, jsonl, strict=True):
        assert (ours.chosen, ours.tools) == (theirs.chosen, theirs.tools)
    assert parquet[0].chosen[0]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert "null" not in json.dumps([e.tools for e in parquet])


def test_a_dataframe_read_from_parquet_gives_the_files_pairs(tmp_path: Path) -> None:
    """pandas.read_parquet holds each list (a conversation, a message's tool calls) as a NumPy
    array: train(train_dataset=pd.read_parquet(...)) of HuggingFaceH4/ultrafeedback_binarized
    was refused ("field 'chosen' must be a string, got ndarray")."""
    import pandas as pd

    question = {"role": "user", "content": "What is 2+2?"}
    rows = [
        {
            "prompt": "What is 2+2?",
            "chosen": [question, {"role": "assistant", "content": "4"}],
            "rejected": [question, {"role": "assistant", "content": "5"}],
            "score_chosen": 9.0,
        }
    ]
    path = tmp_path / "uf.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    frame = load_preferences(pd.read_parquet(path)).examples
    from_file = load_preferences(str(path)).examples
    assert [(e.prompt, e.chosen, e.rejected) for e in frame] == [
        (e.prompt, e.chosen, e.rejected) for e in from_file
    ]
    assert frame[0].chosen == [{"role": "assistant", "content": "4"}]
    assert type(frame[0].columns["score_chosen"]) is float


def test_a_dataframes_missing_cells_are_absent_as_in_the_file(tmp_path: Path) -> None:
    """pandas fills a column with NaN in the rows that lack it: a DataFrame of rows where one
    has images, tools or chat_template_kwargs refused the others ('got a number', 'got float');
    its missing cells are nulls, as Arrow and a JSON Lines row without the key read them."""
    import pandas as pd

    question = [{"role": "user", "content": "What is 2+2?"}]
    pair = {"prompt": question, "chosen": "4", "rejected": "5"}
    rows = [{**pair, "chat_template_kwargs": {"x": 1}, "score": 1.0}, pair, {**pair, "margin": 2}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    frame = load_preferences(pd.DataFrame(rows)).examples
    from_file = load_preferences(str(path)).examples
    assert [(e.prompt, e.chosen, e.chat_template_kwargs) for e in frame] == [
        (e.prompt, e.chosen, e.chat_template_kwargs) for e in from_file
    ]
    assert frame[1].columns.get("score") is None
    with pytest.raises(DataError, match="row 2: field 'chosen' is null"):  # (NaN: a null)
        load_preferences(pd.DataFrame([pair, {**pair, "chosen": float("nan")}]))


def test_a_message_key_of_a_non_json_type_is_its_text() -> None:
    """Every message key reaches the template, so an Arrow timestamp (a datetime) in a message
    stopped the run with a TypeError traceback where pairs are compared as JSON."""
    import datetime

    created = datetime.datetime(2024, 1, 1)
    rows = [{"prompt": [{**USER_HI, "created": created}], "chosen": "a", "rejected": "b"}] * 2
    data = load_preferences(rows)
    assert data.examples[0].prompt == [{**USER_HI, "created": "2024-01-01 00:00:00"}]
    assert (
        data.summary()
        == "rows: 2 pairs, layout conversational, 1 of them repeats an earlier pair (kept)"
    )
    assert load_preferences(rows[:1]).summary() == "rows: 1 pair, layout conversational"


@pytest.mark.parametrize("kind", ["jsonl", "csv", "parquet"])
def test_iter_rows_holds_one_row_at_a_time(tmp_path: Path, kind: str) -> None:
    """score and rank stream a file of any size: iter_rows gives read_rows' rows one at a time,
    in memory that does not grow with the file (read_rows held a JSON Lines, CSV or Parquet
    file whole)."""
    import tracemalloc

    import pandas as pd

    from directpo.data import iter_rows, read_rows

    rows = [{"prompt": f"p{i} " * 20, "chosen": "a" * 50, "rejected": "b"} for i in range(6000)]
    path = str(tmp_path / f"rows.{kind}")
    if kind == "jsonl":
        write_jsonl(Path(path), rows)
    else:
        frame = pd.DataFrame(rows)
        frame.to_csv(path, index=False) if kind == "csv" else frame.to_parquet(path)
    assert [row for _, row in iter_rows(path)] == rows
    peaks = []
    for read in (lambda: read_rows(path), lambda: sum(1 for _ in iter_rows(path))):
        tracemalloc.start()
        read()
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    whole, streamed = peaks
    assert streamed < whole / 5, (whole, streamed)


def test_llama_3_1s_ipython_and_openais_developer_roles_are_messages(tmp_path: Path) -> None:
    # they were refused ("expected one of system, user, assistant, tool"), though the families'
    # templates render them
    developer = {"role": "developer", "content": "Answer briefly."}
    result = {"role": "ipython", "content": '{"temperature": 22}'}
    prompt = [developer, USER_HI, {"role": "assistant", "content": "checking"}, result]
    row = {"prompt": prompt, "chosen": "Sunny.", "rejected": "No idea."}
    assert _load_rows(tmp_path, [row]).examples[0].prompt == prompt
    with pytest.raises(DataError, match="role 'human', expected one of"):
        _load_rows(tmp_path, [{**row, "prompt": [{"role": "human", "content": "Hi"}]}])


def test_sharegpt_messages_are_said_in_the_form_a_template_reads(tmp_path: Path) -> None:
    """ShareGPT's {"from": "human", "value": ...} messages were said as "message 1 has role
    None, expected one of system, ...": neither the missing key nor the form to write. The
    line says the message has no role and how ShareGPT's messages are written."""
    sharegpt = [{"from": "human", "value": "Hi"}]
    row = {"prompt": sharegpt, "chosen": [{"from": "gpt", "value": "Hello"}], "rejected": "x"}
    with pytest.raises(DataError) as info:
        _load_rows(tmp_path, [row])
    assert str(info.value).endswith(
        "line 1: field 'prompt': message 1 has no role, expected one of system, developer, user, "
        'assistant, tool, ipython; ShareGPT\'s {"from": "human" / "gpt", "value": ...} is '
        'written {"role": "user" / "assistant", "content": ...}; skip_invalid_rows: true skips them'
    )
    human = {**row, "prompt": [{"role": "human", "content": "Hi"}]}
    with pytest.raises(DataError, match="role 'human', expected .*; ShareGPT's"):
        _load_rows(tmp_path, [human])
    with pytest.raises(
        DataError, match="role 'bot', expected .*ipython; skip_invalid_rows: true skips them$"
    ):  # no ShareGPT
        _load_rows(tmp_path, [{**row, "prompt": [{"role": "bot", "content": "Hi"}]}])


def test_a_null_field_is_said_null_not_missing(tmp_path: Path) -> None:
    """A row whose chosen is null (JSON's null, a Parquet file's or DataFrame's empty cell) was
    "missing field 'chosen'", though the file has the field: the user looked for a row without
    it. The line says the field is null; a row without the field is still "missing"."""
    rows = [ROWS[0], {**ROWS[0], "chosen": None}, {"prompt": None, "chosen": "a", "rejected": "b"}]
    with pytest.raises(DataError) as info:
        load_preferences(str(write_jsonl(tmp_path / "f.jsonl", rows)))
    assert str(info.value).startswith(f"{tmp_path / 'f.jsonl'}: line 2: field 'chosen' is null")
    assert "line 3: field 'prompt' is null" in str(info.value)
    pd.DataFrame(rows[:2]).to_parquet(tmp_path / "f.parquet")
    with pytest.raises(
        DataError,
        match=r"f.parquet: row 2: field 'chosen' is null; skip_invalid_rows: true skips them$",
    ):
        load_preferences(str(tmp_path / "f.parquet"))
    absent = {"prompt": "a", "rejected": "b"}
    with pytest.raises(
        DataError, match=r"line 2: missing field 'chosen'; skip_invalid_rows: true skips them$"
    ):
        load_preferences(str(write_jsonl(tmp_path / "g.jsonl", [ROWS[0], absent])))
    data = load_preferences(str(write_jsonl(tmp_path / "h.jsonl", rows)), skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"missing field": 2}
    # json.dump of a DataFrame's records writes its missing values NaN: "got a number" was said
    (tmp_path / "n.jsonl").write_text(json.dumps({**ROWS[0], "rejected": float("nan")}) + "\n")
    with pytest.raises(
        DataError,
        match=r"line 1: field 'rejected' is NaN \(a missing value\); "
        r"skip_invalid_rows: true skips them$",
    ):
        load_preferences(str(tmp_path / "n.jsonl"))


def test_a_json_list_saved_as_jsonl_is_read_as_datasets_reads_it(tmp_path: Path) -> None:
    """Anthropic's red_team_attempts.jsonl.gz and rows written with json.dump to a .jsonl hold
    one JSON list: each line was "invalid JSON" (a dozen problems said for a file datasets'
    json builder, and so TRL, reads). It is read as a list, pretty-printed, on one line or
    compressed; a JSON Lines file of lists stays one, each row said to be a list."""
    expected = [(r["prompt"], r["chosen"], r["rejected"]) for r in ROWS]
    (tmp_path / "a.jsonl").write_text(json.dumps(ROWS, indent=2))
    (tmp_path / "b.jsonl").write_text(json.dumps(ROWS) + "\n")
    with gzip.open(tmp_path / "c.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(ROWS, indent=1))
    for name in ("a.jsonl", "b.jsonl", "c.jsonl.gz"):
        data = load_preferences(str(tmp_path / name))
        assert [(e.prompt, e.chosen, e.rejected) for e in data.examples] == expected, name
        assert [e.where.split("/")[-1] for e in data.examples] == [
            f"{name}: row 1",
            f"{name}: row 2",
        ]
    bad = [ROWS[0], {"prompt": "Q"}]
    (tmp_path / "d.jsonl").write_text(json.dumps(bad, indent=2))
    with pytest.raises(
        DataError,
        match=r"^d.jsonl: row 2: missing field 'chosen'; skip_invalid_rows: true skips them$",
    ):
        load_preferences(str(tmp_path / "d.jsonl"), name="d.jsonl")
    (tmp_path / "e.jsonl").write_text('["Q", " a", " b"]\n["Q", " c", " d"]\n')
    turns = json.dumps([{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}])
    (tmp_path / "f.jsonl").write_text(f"{turns}\n{turns}\n")  # a conversation a line
    for name in ("e.jsonl", "f.jsonl"):
        with pytest.raises(DataError, match=r"line 1: expected an object, got a list \(1 more"):
            load_preferences(str(tmp_path / name))


def test_a_jsonl_of_long_conversations_or_of_one_pretty_printed_object_is_read_as_written(
    tmp_path: Path, monkeypatch
) -> None:
    """A JSON Lines file of a conversation a line, its first line longer than a read's chunk
    (1 MB: a long trace, an inline image), was taken for one JSON list (the line not whole
    when read) and said as rows of messages ('column chosen not found (columns: role,
    content)'); it stays JSON Lines, each row said a list, as a short one is. A pretty-printed
    object ({"rows": [...]}, json.dump(indent=2) to a .jsonl) was a dozen 'invalid JSON' lines;
    it is read as a .json holding it is."""
    import directpo.json_files

    monkeypatch.setattr(directpo.json_files, "JSON_CHUNK", 64)  # (a line past a chunk, small)
    turns = json.dumps(
        [{"role": "user", "content": "Q" * 200}, {"role": "assistant", "content": "a"}]
    )
    (tmp_path / "long.jsonl").write_text(f"{turns}\n{turns}\n")
    with pytest.raises(DataError, match=r"line 1: expected an object, got a list \(1 more"):
        load_preferences(str(tmp_path / "long.jsonl"))
    (tmp_path / "one.jsonl").write_text(json.dumps(ROWS * 20) + "\n")  # (a list past a chunk)
    assert len(load_preferences(str(tmp_path / "one.jsonl"))) == 2 * 20
    expected = [(r["prompt"], r["chosen"], r["rejected"]) for r in ROWS]
    for name, document in (("rows.jsonl", {"rows": ROWS}), ("cols.jsonl.gz", None)):
        columns = {key: [row[key] for row in ROWS] for key in ROWS[0]}
        text = json.dumps(document or columns, indent=2)
        if name.endswith(".gz"):
            (tmp_path / name).write_bytes(gzip.compress(text.encode()))
        else:
            (tmp_path / name).write_text(text)
        data = load_preferences(str(tmp_path / name))
        assert [(e.prompt, e.chosen, e.rejected) for e in data.examples] == expected, name
    jq = "".join(json.dumps(row, indent=2) + "\n" for row in ROWS)  # (jq's way: said so)
    (tmp_path / "jq.jsonl").write_text(jq)
    with pytest.raises(DataError, match=r"line 6: .*each over several lines .*\(jq -c \.\)\)$"):
        load_preferences(str(tmp_path / "jq.jsonl"))
    (tmp_path / "bad.jsonl").write_text('{"prompt": "Q", "chosen": " a", "rejected": " b"}\n{\n')
    with pytest.raises(DataError, match=r"line 2: invalid JSON"):  # (JSON Lines, a line cut)
        load_preferences(str(tmp_path / "bad.jsonl"))


def test_llama_factorys_ranking_rows_are_said_with_the_fix_each_needs(tmp_path: Path) -> None:
    """LLaMA-Factory's ranking data (sharegpt formatting: "conversations" of {from, value}
    messages, "chosen" / "rejected" one {from, value} message each) was "field 'chosen' must
    be a string, got an object" (neither the message nor the form named), and once the replies
    were lists, "set prompt_column" without the column that holds the prompt. Each step says
    its fix: the reply as a list of role/content messages, prompt_column: conversations."""
    gpt = {"from": "gpt", "value": " a"}
    row = {"conversations": [{"from": "human", "value": "Q"}], "chosen": gpt, "rejected": gpt}
    (tmp_path / "lf.json").write_text(json.dumps([row]))
    with pytest.raises(DataError) as refused:
        load_preferences(str(tmp_path / "lf.json"), name="lf.json")
    assert str(refused.value) == (
        "lf.json: row 1: field 'chosen' must be a string, got an object (one message); write it "
        'as a list of messages, [{"role": "assistant", "content": ...}]; ShareGPT\'s {"from": '
        '"human" / "gpt", "value": ...} is written {"role": "user" / "assistant", "content": ...}'
        "; skip_invalid_rows: true skips them"
    )
    prompt = [{"role": "user", "content": "Q"}]
    row = {"conversations": prompt, "chosen": [{"role": "assistant", "content": " a"}]}
    row["rejected"] = [{"role": "assistant", "content": " b"}]
    (tmp_path / "lists.json").write_text(json.dumps([row]))
    with pytest.raises(
        DataError,
        match=r"column 'conversations' holds messages: set prompt_column: conversations\); "
        r"skip_invalid_rows: true skips them$",
    ):
        load_preferences(str(tmp_path / "lists.json"))
    data = load_preferences(str(tmp_path / "lists.json"), columns=Columns(prompt="conversations"))
    assert [(e.prompt, e.chosen) for e in data.examples] == [(prompt, row["chosen"])]
    row = {"prompt": prompt, "chosen": {"role": "assistant", "content": " a"}, "rejected": " b"}
    (tmp_path / "one.json").write_text(json.dumps([row]))
    with pytest.raises(DataError, match=r"got an object \(one message\); write it as a list"):
        load_preferences(str(tmp_path / "one.json"))


def test_a_json_object_holding_the_rows_saved_as_jsonl_is_read_as_its_rows(tmp_path) -> None:
    """{"data": [rows]} (json.dump's, which datasets reads with field="data") saved as .jsonl
    was read as one row of a column 'data' ("column 'chosen' not found (columns: data)") or,
    pretty-printed, each line "invalid JSON". It is read as its rows, as the .json file of that
    shape is; a row holding message lists, or a column of objects (tools), is still a row."""
    (tmp_path / "a.jsonl").write_text(json.dumps({"data": ROWS}) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"rows": ROWS, "version": 2}, indent=2))
    for name in ("a.jsonl", "b.jsonl"):
        read = load_preferences(str(tmp_path / name), name=name)
        assert [e.chosen for e in read.examples] == [r["chosen"] for r in ROWS], name
    (tmp_path / "c.json").write_text(json.dumps({"data": ROWS}, indent=2))
    read = load_preferences(str(tmp_path / "c.json"))
    assert [e.chosen for e in read.examples] == [r["chosen"] for r in ROWS]
    turns = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}]
    row = {"chosen": turns, "rejected": [turns[0], {"role": "assistant", "content": "b"}]}
    assert len(load_preferences(str(write_jsonl(tmp_path / "d.jsonl", [row])))) == 1
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    row = {"prompt": turns[:1], "chosen": turns[1:], "rejected": row["rejected"][1:]}
    row["tools"] = [tool]  # a row whose column holds objects (not rows) is still a row
    assert len(load_preferences(str(write_jsonl(tmp_path / "e.jsonl", [row])))) == 1


def test_a_one_row_jsonl_of_other_column_names_listing_prompts_is_a_row(tmp_path) -> None:
    """A file of one pair whose columns are named otherwise (prompt_column: question, ...) and
    whose extra column 'data' lists objects with a prompt was read as that list's rows
    ("column 'good' not found (columns: prompt)"); it is the one row it is. {"data": []} saved
    as .jsonl said "column 'chosen' not found (columns: data)"; now "no rows", as the .json
    file of that shape says."""
    columns = Columns(prompt="question", chosen="good", rejected="bad")
    row = {"question": "Q", "good": " a", "bad": " b", "data": [{"prompt": "x", "n": 1}]}
    read = load_preferences(str(write_jsonl(tmp_path / "one.jsonl", [row])), columns)
    assert [(e.prompt, e.chosen, e.rejected) for e in read.examples] == [("Q", " a", " b")]
    for name in ("empty.jsonl", "empty.json"):
        (tmp_path / name).write_text(json.dumps({"data": []}) + "\n")
        with pytest.raises(DataError) as error:
            load_preferences(str(tmp_path / name), name=name)
        assert str(error.value) == f"{name}: no rows"
    # a prompts document with one text of its own is still its rows
    (tmp_path / "p.jsonl").write_text(json.dumps({"version": "2", "data": [{"prompt": "x"}]}))
    read_back, _ = open_rows(str(tmp_path / "p.jsonl"), "p.jsonl")
    assert list(read_back) == [("row 1", {"prompt": "x"})]


def test_a_one_row_jsonl_longer_than_a_read_is_its_row(tmp_path, monkeypatch) -> None:
    """A file of one row whose line is longer than a read (JSON_CHUNK, 1 MiB: an image's bytes
    inline, a long tool) was taken for a pretty-printed document, and its one list of objects
    for the rows: each image a row ("missing field 'prompt'"). It is the row; a long one-line
    {"data": [rows]} is still its rows, and long lines one after another rows each."""
    from directpo import json_files

    monkeypatch.setattr(json_files, "JSON_CHUNK", 256)
    image = {"bytes": "iVBORw0KGgo" * 100, "path": None}
    row = {"prompt": "Describe <image>", "chosen": " a cat", "rejected": " a dog"}
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 1000}}
    for extra in ({"images": [image]}, {"tools": [tool]}):
        path = write_jsonl(tmp_path / "one.jsonl", [{**row, **extra}])
        read, _ = open_rows(str(path), "one.jsonl")
        assert list(read) == [("line 1", {**row, **extra})]
    path = write_jsonl(tmp_path / "two.jsonl", [{**row, "images": [image]}] * 2)
    assert [where for where, _ in open_rows(str(path), "two.jsonl")[0]] == ["line 1", "line 2"]
    (tmp_path / "data.jsonl").write_text(json.dumps({"data": [row] * 20}) + "\n")
    assert [r for _, r in open_rows(str(tmp_path / "data.jsonl"), "data.jsonl")[0]] == [row] * 20


def test_a_jsonl_object_holding_the_rows_is_read_whole_once(tmp_path, monkeypatch) -> None:
    """{"data": [rows]} saved as .jsonl was read whole twice, on one line or pretty-printed
    with a row a line: once to tell it is one JSON document, again for its rows (a file of
    500 MB: twice its text, and its decoded rows twice)."""
    from directpo import json_files

    rows = [{**ROWS[i % len(ROWS)], "id": "x" * 200 + str(i)} for i in range(100)]
    taken: list[int] = []  # the characters of each read of the file
    open_text = json_files.open_text

    def counted(*args, **kwargs):
        handle = open_text(*args, **kwargs)
        read, readline = handle.read, handle.readline
        handle.read = lambda size=-1: taken.append(len(text := read(size))) or text
        handle.readline = lambda size=-1: taken.append(len(text := readline(size))) or text
        return handle

    monkeypatch.setattr(json_files, "open_text", counted)
    listed = ",\n".join(json.dumps(row) for row in rows)
    for text in (json.dumps({"data": rows}) + "\n", '{"data": [\n' + listed + "\n]}\n"):
        path = tmp_path / "rows.jsonl"
        path.write_text(text)
        taken.clear()
        read, _ = open_rows(str(path), "rows.jsonl")
        assert [row for _, row in read] == rows
        assert len(text) <= sum(taken) <= len(text) + 2 * 4096, (sum(taken), len(text))


def test_a_prompt_of_empty_messages_is_refused_as_an_empty_text_prompt_is(tmp_path) -> None:
    """A text prompt "" or "  " is refused ("field 'prompt' is empty"), but a message-list
    prompt whose user turn was empty (a scrape's blank instruction), given or shared by
    chosen / rejected, trained the reply to an empty turn. It is refused; a turn with text, a
    system turn alone, a tool call or an image part says something and trains."""
    user, reply = {"role": "user", "content": " "}, {"role": "assistant", "content": "x"}
    other = {"role": "assistant", "content": "y"}
    rows = [
        {"prompt": [user], "chosen": [reply], "rejected": [other]},
        {"chosen": [user, reply], "rejected": [user, other]},
        {"prompt": [{"role": "user", "content": [{"type": "text", "text": ""}]}],
         "chosen": [reply], "rejected": [other]},
    ]  # fmt: skip
    for row, said in zip(rows, ["field 'prompt'", "the prompt (the turns 'chosen' and "
                                "'rejected' share)", "field 'prompt'"], strict=True):  # fmt: skip
        with pytest.raises(
            DataError,
            match=rf"line 1: {re.escape(said)} has only empty messages; "
            r"skip_invalid_rows: true skips them$",
        ):
            load_preferences(str(write_jsonl(tmp_path / "f.jsonl", [row])))
    system = {"role": "system", "content": "Be brief."}
    image = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": ""}]}
    for prompt in ([system], [system, user], [image]):
        row = {"prompt": prompt, "chosen": [reply], "rejected": [other]}
        assert load_preferences([row]).examples[0].prompt[0]["role"] == prompt[0]["role"]
    good = {"prompt": [system], "chosen": [reply], "rejected": [other]}
    path = write_jsonl(tmp_path / "g.jsonl", [rows[0], good, rows[2]])
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"empty field": 2}


def test_token_ids_without_text_and_a_list_of_datasets_are_one_line_each() -> None:
    """A dataset TRL had tokenized (chosen_input_ids, no text) was told to "set chosen_column /
    rejected_column"; a list of Datasets as eval_dataset was "row 1: expected an object, got
    Dataset"."""
    from directpo.data_sources import python_source

    ids = datasets.Dataset.from_list(
        [{"prompt_input_ids": [1], "chosen_input_ids": [2], "rejected_input_ids": [3]}]
    )
    with pytest.raises(DataError, match="'chosen_input_ids' holds token ids, but directpo"):
        load_preferences(ids)
    ids = ids.rename_columns({"chosen_input_ids": "chosen_ids", "rejected_input_ids": "r"})
    with pytest.raises(DataError, match="'chosen_ids' holds token ids"):
        load_preferences(ids)
    sets = [datasets.Dataset.from_list(ROWS)] * 2
    with pytest.raises(DataError, match="^eval_dataset: a list of datasets; pass one .*named"):
        python_source(sets, "eval_dataset")
    with pytest.raises(DataError, match=r"^train_dataset: a list of datasets; pass one \("):
        python_source(tuple(sets), "train_dataset")
    assert python_source(ROWS, "train_dataset") == ROWS  # a list of rows is rows


def test_a_dataset_folder_of_several_configs_names_them_when_none_is_given(tmp_path) -> None:
    """A local dataset (parquet shards, a README listing configs) without dataset_config was
    "cannot load (Config name is missing.)": the configs it has were on the lines cut off."""
    from directpo.data_sources import dataset_splits

    for config in ("en", "fr"):
        (tmp_path / config).mkdir()
        datasets.Dataset.from_list(ROWS).to_parquet(tmp_path / config / "train.parquet")
    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(f"- config_name: {c}\n  data_files: {c}/train.parquet\n" for c in ("en", "fr"))
        + "---\n"
    )
    with pytest.raises(
        DataError,
        match=r"^x: cannot load \(Config name is missing; it has \['en', 'fr'\]\); set "
        r"dataset_config$",
    ):
        dataset_splits(str(tmp_path), None, "x", "train")
    assert dataset_splits(str(tmp_path), "fr", "x", "train")["train"].num_rows == len(ROWS)


def test_a_dataset_folder_whose_files_differ_names_the_file_and_its_columns(
    tmp_path, monkeypatch
) -> None:
    """A shard with a column more than the others (or than the card's dataset_info) was
    "cannot load (An error occurred while generating the dataset)": nothing of which file or
    why (datasets' exception names neither)."""
    from directpo.data_sources import dataset_splits

    (tmp_path / "data").mkdir()
    rated = [{**row, "score_chosen": 1.0} for row in ROWS]
    for shard, rows in enumerate((ROWS, rated)):
        path = tmp_path / "data" / f"train-0000{shard}-of-00002.parquet"
        datasets.Dataset.from_list(rows).to_parquet(path)
    printed = io.StringIO()  # what datasets' own log handler writes to the console
    for handler in logging.getLogger("datasets").handlers:
        monkeypatch.setattr(handler, "stream", printed)
    with pytest.raises(DataError) as refused:
        dataset_splits(str(tmp_path), None, "x", "train")
    first, second = (tmp_path / "data" / f"train-0000{i}-of-00002.parquet" for i in (0, 1))
    assert str(refused.value) == (  # (file_types.py says it before datasets loads the folder)
        f"x: {first}: has no field 'score_chosen', which {second} has: datasets reads a "
        "folder's files as one table of the same columns; give every file the same fields, or "
        "give the files as train_file (a list of paths: each file read alone)"
    )
    assert "Couldn't cast" not in printed.getvalue()  # (datasets' 20 lines, said in one)


def test_a_hub_cache_folder_reads_its_main_snapshot_by_its_card(tmp_path) -> None:
    """dataset_name: ~/.cache/huggingface/hub/datasets--org--name read every snapshot's files
    as one split: each pair twice once downloaded at two revisions, and the card's splits
    (train_prefs, train_sft) never read, both trained as 'train'."""
    from directpo.data_sources import dataset_splits

    repo = tmp_path / "datasets--org--prefs"
    card = "---\nconfigs:\n- config_name: default\n  data_files:\n" + "".join(
        f"  - split: {split}\n    path: data/{split}-*\n" for split in ("train_prefs", "train_sft")
    ) + "---\n"  # fmt: skip
    for commit in ("aaa111", "bbb222"):
        (repo / "snapshots" / commit / "data").mkdir(parents=True)
        (repo / "snapshots" / commit / "README.md").write_text(card)
        for split, n in (("train_prefs", 2), ("train_sft", 3)):
            rows = [{**ROWS[0], "prompt": f"{commit} {i}"} for i in range(n)]
            path = repo / "snapshots" / commit / "data" / f"{split}-00000-of-00001.parquet"
            datasets.Dataset.from_list(rows).to_parquet(path)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("bbb222")
    splits = dataset_splits(str(repo), None, "x", "train")
    assert sorted(splits) == ["train_prefs", "train_sft"]
    assert splits["train_prefs"]["prompt"] == ["bbb222 0", "bbb222 1"]
    # given as train_file, the files to give are that snapshot's (not aaa111's)
    with pytest.raises(DataError) as refused:
        load_preferences(str(repo))
    shown = repo / "snapshots" / "bbb222" / "data" / "train_prefs-00000-of-00001.parquet"
    assert f"give one of its data files ({shown})" in str(refused.value)
    (repo / "refs" / "main").unlink()
    with pytest.raises(DataError) as refused:
        dataset_splits(str(repo), None, "x", "train")
    assert str(refused.value) == (
        "x: the hub cache's folder holds 2 snapshots (aaa111, bbb222) and no refs/main: give "
        f"one, e.g. {repo / 'snapshots' / 'bbb222'}"
    )
    (repo / "refs" / "main").write_text("ccc333")  # (a revision not downloaded here)
    with pytest.raises(DataError) as refused:
        dataset_splits(str(repo), None, "x", "train")
    assert "(aaa111, bbb222) and a refs/main naming ccc333, not among them: give" in str(
        refused.value
    )


def test_a_dataset_in_any_format_gives_its_rows() -> None:
    """A Dataset set to numpy / pandas / arrow format (with_format, as a user who inspected it
    leaves it) gave ndarrays ("field 'prompt' must be ..., got ndarray") or one-row tables
    ("row 1: expected an object, got DataFrame"); its rows are read as stored, its columns
    kept."""
    user = {"role": "user", "content": "hi"}
    rows = [{"prompt": [user], "chosen": " yes", "rejected": " no", "extra": i} for i in range(2)]
    dataset = datasets.Dataset.from_list(rows)
    for kind in ("numpy", "pandas", "arrow", "torch"):
        data = load_preferences(dataset.with_format(kind))
        assert data.layout == "conversational", kind
        assert [e.prompt for e in data.examples] == [[user], [user]], kind
    narrow = dataset.with_format("numpy", columns=["prompt", "chosen"])
    with pytest.raises(DataError, match="row 1: missing field 'rejected'"):
        load_preferences(narrow)


def test_a_dict_of_columns_is_refused_in_one_line() -> None:
    """{"prompt": [...], "chosen": [...], "rejected": [...]} (Dataset.from_dict's layout) was
    "got dict" as train_dataset, and as eval_dataset (a dict of named sets) its texts were
    read as file paths: "Q: 0?: no such file"."""
    from directpo.config import DPOConfig
    from directpo.data_sources import python_source
    from directpo.run_sources import named_eval_sets

    columns = {key: [row[key] for row in ROWS] for key in ROWS[0]}
    config = DPOConfig(model_name_or_path="m", train_file="t.jsonl")
    with pytest.raises(DataError, match=r"^eval_dataset: a dict of columns \(prompt, chosen, rej"):
        named_eval_sets(config, columns)
    with pytest.raises(DataError, match=r"^train_dataset: a dict of columns .*from_dict"):
        python_source(columns, "train_dataset")
    named = named_eval_sets(config, {"chosen": ROWS, "rejected": ROWS[:1]})  # sets so named
    assert list(named) == ["chosen", "rejected"]


OPENAI_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
OPENAI_ROWS = [
    {
        "input": {
            "messages": [{"role": "user", "content": "Weather in Paris?"}],
            "tools": [OPENAI_TOOL],
            "parallel_tool_calls": True,
        },
        "preferred_output": [{"role": "assistant", "content": "Sunny."}],
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
    },
    {
        "input": {
            "messages": [
                {"role": "system", "content": "Brief."},
                {"role": "user", "content": "2+2?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": "4"}],
        "non_preferred_output": [{"role": "assistant", "content": "5"}],
    },
]


def test_openais_preference_format_reads_as_the_same_conversational_pairs(tmp_path) -> None:
    """OpenAI's preference fine-tuning rows (input.messages, preferred_output,
    non_preferred_output, input.tools) are the conversational pairs they stand for, from a
    file, a Dataset (Arrow fills other rows' keys with nulls) and a row scored alone."""
    ours = [
        {
            "prompt": row["input"]["messages"],
            "chosen": row["preferred_output"],
            "rejected": row["non_preferred_output"],
            **({"tools": row["input"]["tools"]} if "tools" in row["input"] else {}),
        }
        for row in OPENAI_ROWS
    ]
    want = load_preferences(str(write_jsonl(tmp_path / "ours.jsonl", ours)))
    for source in (
        str(write_jsonl(tmp_path / "openai.jsonl", OPENAI_ROWS)),
        datasets.Dataset.from_list(OPENAI_ROWS),
    ):
        got = load_preferences(source)
        assert got.layout == want.layout == "conversational"
        for a, b in zip(got.examples, want.examples, strict=True):
            assert (a.prompt, a.chosen, a.rejected, a.tools) == (
                b.prompt,
                b.chosen,
                b.rejected,
                b.tools,
            )
        assert got.examples[0].tools and got.examples[1].tools is None
    alone = parse_pair(OPENAI_ROWS[1], Columns(), "row")
    assert (alone.prompt, alone.chosen) == (want.examples[1].prompt, want.examples[1].chosen)


def test_openai_rows_that_do_not_fit_are_said_by_openais_field_names(tmp_path) -> None:
    bad = [
        OPENAI_ROWS[0],
        {**OPENAI_ROWS[1], "input": [{"role": "user", "content": "x"}]},
        {**OPENAI_ROWS[1], "input": {"messages": [], "metadata": {"a": 1}}},
        {key: value for key, value in OPENAI_ROWS[1].items() if key != "preferred_output"},
        # the pair's own problems, once read as directpo's columns: said by OpenAI's names
        {**OPENAI_ROWS[1], "non_preferred_output": [{"role": "user", "content": "5"}]},
        {**OPENAI_ROWS[1], "non_preferred_output": OPENAI_ROWS[1]["preferred_output"]},
    ]
    path = write_jsonl(tmp_path / "openai.jsonl", bad)
    with pytest.raises(DataError) as caught:
        load_preferences(str(path))
    said = str(caught.value)
    assert said.startswith(f"{path}: line 2: field 'input' must be an object with a 'messages'")
    assert "; line 3: field 'input' holds 'metadata'" in said and "\n" not in said
    assert "; line 4: missing field 'preferred_output'" in said
    with pytest.raises(DataError) as caught:  # (three problems are said, the rest counted)
        load_preferences(str(write_jsonl(tmp_path / "pairs.jsonl", [bad[0], *bad[4:]])))
    said = str(caught.value)
    assert "line 2: field 'non_preferred_output': message 1 has role 'user'" in said
    assert "; line 3: preferred_output and non_preferred_output are identical" in said
    assert "'rejected'" not in said and "chosen" not in said
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data.examples) == 1 and sum(data.skipped.values()) == 5
    assert data.skipped["identical preferred_output and non_preferred_output"] == 1
    with pytest.raises(DataError, match=r"^row: preferred_output and non_preferred_output are "):
        parse_pair(bad[5], Columns(), "row")  # score's rows
    with pytest.raises(DataError, match=r"^row: missing field 'preferred_output'$"):
        parse_pair(bad[3], Columns(), "row")
    with pytest.raises(DataError, match=r"'metadata', which directpo does not read"):
        parse_pair(bad[2], Columns(), "row")


def test_score_reads_an_openai_row_as_a_pair(tmp_path) -> None:
    """score told a file in OpenAI's preference format that it lacked a 'response' field."""
    from directpo.command_options import ScoreOptions
    from directpo.reward_files import _score_item

    options = ScoreOptions(
        input=str(tmp_path / "in.jsonl"),
        output=str(tmp_path / "out.jsonl"),
        prompt_column="prompt",
        chosen_column="chosen",
        rejected_column="rejected",
    )  # fmt: skip  (the defaults score_file fills in)
    scored = _score_item(options, str(tmp_path), "row", OPENAI_ROWS[1])
    assert scored.chosen == OPENAI_ROWS[1]["preferred_output"]


def test_several_files_say_the_skip_hint_once(tmp_path) -> None:
    """``train_file: [a, b]`` with bad rows in each said "skip_invalid_rows: true skips them"
    after each file's problems; it is said once, at the end."""
    bad = [{"prompt": "a", "chosen": " b", "rejected": ""}] * 2
    first = write_jsonl(tmp_path / "a.jsonl", bad)
    second = write_jsonl(tmp_path / "b.jsonl", bad)
    with pytest.raises(DataError) as info:
        load_preferences([str(first), str(second)])
    assert str(info.value) == (
        f"{first}: line 1: field 'rejected' is empty (1 more row like it: line 2); {second}: "
        "line 1: field 'rejected' is empty (1 more row like it: line 2); skip_invalid_rows: "
        "true skips them"
    )


def test_a_spreadsheets_capitalised_columns_are_named_in_the_fix() -> None:
    """A header written by hand in a spreadsheet (Prompt, Chosen, Rejected) got "set
    chosen_column / rejected_column" without the columns: the fix names them, the prompt's too
    (its layout is read only once the completions are found)."""
    row = {"Prompt": "Hi", "Chosen": " Hello", "Rejected": " Go"}
    fix = "set chosen_column: Chosen, rejected_column: Rejected, prompt_column: Prompt$"
    with pytest.raises(DataError, match=fix):
        load_preferences([row])
    columns = Columns("Prompt", "Chosen", "Rejected", prompt_required=True)
    example = load_preferences([row], columns).examples[0]
    assert (example.prompt, example.chosen, example.rejected) == ("Hi", " Hello", " Go")
    question = {"question": "Hi", "Chosen": " Hello", "Rejected": " Go"}  # no prompt column
    with pytest.raises(DataError, match="rejected_column: Rejected, prompt_column: question$"):
        load_preferences([question])  # (the completions lack it: said now, not a run later)
    implicit = {"question": "Hi", "Chosen": "Hi Hello", "Rejected": "Hi Go"}  # they hold it
    with pytest.raises(DataError, match="rejected_column: Rejected$"):
        load_preferences([implicit])


def test_a_prompt_column_of_any_case_is_named_in_the_refusal() -> None:
    """A header written by hand (Prompt or Question, System) beside chosen / rejected said
    "if another column holds the prompt, set prompt_column" without the column (the
    well-known names were matched in lower case only); the refusal names them as written."""
    wanted = "column 'Prompt', which would go untrained; set prompt_column: Prompt$"
    with pytest.raises(DataError, match=wanted):
        load_preferences([{"Prompt": "Hi", "chosen": " Hello", "rejected": " Go"}])
    row = {"System": "Be kind.", "Question": "Hi", "chosen": " Hello", "rejected": " Go"}
    fix = "set prompt_column: Question and system_column: System"
    with pytest.raises(DataError, match=f"column 'Question', which would go untrained; {fix}"):
        load_preferences([row])


def test_the_default_prompt_column_beside_another_given_is_named() -> None:
    """``score --prompt_column question`` of a file of prompt rows was told "chosen and
    rejected share no common prefix ... if another column holds the prompt, set prompt_column"
    (a recipe's words on a command line, the column unnamed), and train's "column 'question'
    not found ...; give --prompt_column" named no column either: both name 'prompt' now, in
    the caller's words."""
    from directpo.callers import Caller, Entry, Spelling, called_by

    row = {"prompt": "The movie was", "chosen": " great", "rejected": " dull"}
    with called_by(Caller(Spelling.FLAGS, Entry.FOLDER)):
        with pytest.raises(DataError, match="column 'prompt', which would never reach the m"):
            parse_pair(row, Columns(prompt="question"), "f: line 1")  # score's pair rows
        with pytest.raises(DataError, match="; give --prompt_column prompt$"):
            parse_pair(row, Columns(prompt="question"), "f: line 1")
        with pytest.raises(DataError, match="holds the prompt, give --prompt_column\\)$"):
            parse_pair({"chosen": "yes", "rejected": "no", "id": "x"}, Columns(), "f: line 1")
    wanted = "column 'question' not found \\(columns: prompt, chosen, rejected\\); set prompt_c"
    with pytest.raises(DataError, match=wanted + "olumn: prompt$"):  # train's
        load_preferences([row], Columns(prompt="question", prompt_required=True))


def test_completions_in_columns_of_other_names_are_named_in_the_fix() -> None:
    """torchtune's stack_exchange_paired_dataset rows (response_j / response_k) and its
    preference_dataset example (chosen_conversations / rejected_conversations) were told
    "set chosen_column / rejected_column" without the columns that hold them."""
    exchange = {"question": "Sort?", "response_j": "sorted(xs)", "response_k": "No."}
    with pytest.raises(DataError, match=r"set chosen_column: response_j, rejected_column: resp"):
        load_preferences([exchange])
    turn = [{"role": "user", "content": "Hi"}]
    conversations = {"chosen_conversations": turn, "rejected_conversations": turn}
    with pytest.raises(
        DataError,
        match="set chosen_column: chosen_conversations, rejected_column: rejected_conversations$",
    ):
        load_preferences([conversations])
    with pytest.raises(DataError, match="set chosen_column / rejected_column$"):
        load_preferences([{"context": "Hi", "good": "Hello", "bad": "Go away"}])


def test_a_builders_name_without_data_files_is_refused(tmp_path, monkeypatch) -> None:
    """``dataset_name: json`` (a TRL recipe's) read every json file under the working
    directory as the pairs, a run's results files too, without a word; it is now refused
    saying to give the file (a mixture entry: its data_files)."""
    from directpo.data_sources import dataset_splits

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "old_pairs.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match="json reader without data_files.*give the file as train"):
        dataset_splits("json", None, "dataset_name 'json'", "train")
    with pytest.raises(DataError, match="give its data_files"):
        dataset_splits("json", None, "json[train]", "train", data_dir=None, data_files=None)
    given = dataset_splits("json", None, "json", "train", data_files="old_pairs.jsonl")
    assert given["train"][0] == {"chosen": "a", "rejected": "b"}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".json"])
def test_a_files_rows_are_validated_as_they_are_read(tmp_path: Path, monkeypatch, suffix) -> None:
    """Every raw row of a file was read into a list before the first was validated, so a
    large file's rows and their examples were held both at the peak; now each row is
    validated before the next is read."""
    from directpo import data, readers

    path = tmp_path / f"p{suffix}"
    frame = pd.DataFrame(ROWS)
    if suffix == ".jsonl":
        write_jsonl(path, ROWS)
    elif suffix == ".json":  # a list of rows, read whole (text and rows) before
        path.write_text(json.dumps(ROWS, indent=2))
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    read: list[str] = []  # the rows read, when each row is validated
    at_parse: list[int] = []
    reading, parse_row = readers._reading, data.parse_row

    def counted_rows(rows, label):
        return ((read.append(where) or (where, row)) for where, row in reading(rows, label))

    def counted_parse(*args, **kwargs):
        at_parse.append(len(read))
        return parse_row(*args, **kwargs)

    monkeypatch.setattr(readers, "_reading", counted_rows)
    monkeypatch.setattr(data, "parse_row", counted_parse)
    loaded = data.load_preferences(str(path))
    assert len(loaded) == len(ROWS) > 1
    assert at_parse == list(range(1, len(ROWS) + 1))


def test_a_json_lines_row_cut_short_is_said_where_it_stops(tmp_path: Path) -> None:
    """The last row of a file whose writer was killed (or a row missing its closing brace)
    was said to be invalid "at column 1": the column of the line after it."""
    path = tmp_path / "cut.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n" + '{"prompt": "x", "chosen": "a"\n')
    with pytest.raises(DataError) as refused:
        load_preferences(str(path))
    assert "line 2: invalid JSON (Expecting ',' delimiter at column 30)" in str(refused.value)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_a_row_cut_inside_a_string_says_at_once(tmp_path: Path, suffix: str) -> None:
    """A row cut inside a text (a killed writer's last) was said 'Unterminated string starting
    at at column 29': json's message ends with its own 'at'."""
    cut = '{"prompt": "x", "chosen": "a", "rej'
    text = (
        json.dumps(ROWS[0]) + "\n" + cut
        if suffix == ".jsonl"
        else f"[{json.dumps(ROWS[0])},\n{cut}"
    )
    path = tmp_path / f"cut{suffix}"
    path.write_text(text)
    with pytest.raises(DataError) as refused:
        load_preferences(str(path))
    assert "line 2: invalid JSON (Unterminated string starting at column 32)" in str(refused.value)


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_a_json_lists_rows_read_a_piece_at_a_time_are_the_whole_reads(
    tmp_path: Path, monkeypatch, chunk: int
) -> None:
    """A .json list is decoded a row at a time from pieces of the file: rows cut anywhere by
    a piece's end (a number, a string, an escape) are the rows ``json.load`` reads, and a
    malformed file says the whole read's error, after the rows before it."""
    from directpo import json_files, readers

    monkeypatch.setattr(json_files, "JSON_CHUNK", chunk)
    rows = [
        {"prompt": 'café 🙂 "quoted"', "chosen": "1234567", "rejected": "x", "n": 123456789},
        {
            "prompt": [{"role": "user", "content": "a\nb"}],
            "chosen": "y",
            "rejected": "z",
            "f": 1.5e3,
        },
        {"prompt": "p", "chosen": "c", "rejected": "r", "ok": True, "none": None},
    ]
    sizes: list[int] = []  # of each read of the file: never the whole of it at once
    open_text = json_files.open_text

    def recorded(*args, **kwargs):
        handle = open_text(*args, **kwargs)
        read = handle.read
        handle.read = lambda size=-1: sizes.append(size) or read(size)
        return handle

    monkeypatch.setattr(json_files, "open_text", recorded)
    for text in (json.dumps(rows), json.dumps(rows, indent=4) + "\n\n", "[]", " [ ] "):
        path = tmp_path / "l.json"
        path.write_text(text, encoding="utf-8")
        read, _ = readers.open_rows(str(path), "l.json")
        assert [row for _, row in read] == json.loads(text)
    assert sizes and -1 not in sizes and max(sizes) <= max(4096, 2 * len(text), chunk)
    monkeypatch.setattr(json_files, "open_text", open_text)
    whole = json.dumps(rows, indent=1)
    for broken in (whole[:-3], whole.replace("},", "}", 1), whole[:-1] + ",]", whole + "x"):
        path.write_text(broken, encoding="utf-8")
        with pytest.raises(DataError) as streamed:
            list(readers.open_rows(str(path), "l.json", lazy=True)[0])
        monkeypatch.setattr(json_files, "starts_a_list", lambda _: False)
        with pytest.raises(DataError) as at_once:
            readers.open_rows(str(path), "l.json")
        monkeypatch.undo()
        monkeypatch.setattr(json_files, "JSON_CHUNK", chunk)
        assert str(streamed.value) == str(at_once.value)


def test_a_json_file_of_splits_is_said_so(tmp_path: Path) -> None:
    """{"train": [rows], "test": [rows]} (splits saved in one .json) was read as columns
    "train" and "test": "column 'chosen' not found ...; set chosen_column / rejected_column",
    or "the column lists have different lengths (train: 2, test: 1)". It is said as the
    splits it holds; one list of rows beside other keys is still read."""
    for test, extra in ((ROWS, {}), (ROWS[:1], {}), (ROWS, {"version": 1})):
        (tmp_path / "s.json").write_text(json.dumps({"train": ROWS, "test": test, **extra}))
        with pytest.raises(DataError) as refused:
            load_preferences(str(tmp_path / "s.json"))
        assert str(refused.value) == (
            f"{tmp_path / 's.json'}: holds 2 lists of rows (train, test), as a file of splits "
            "does; give each list as a file of its own (train_file, eval_file)"
        )
    (tmp_path / "d.json").write_text(json.dumps({"data": ROWS, "tags": []}))
    assert len(load_preferences(str(tmp_path / "d.json"))) == 2


def test_a_file_of_splits_is_said_so_in_the_callers_words_and_in_a_dataset_folder(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A file of splits given as --train_file was told '(train_file, eval_file)', a recipe's
    keys, to a command line; the same file in a dataset_name folder (datasets reads it as one
    row, its lists as columns) was "column 'chosen' not found (columns: train, test); give
    --chosen_column / --rejected_column", which no column fixes. The flags are named as flags,
    and the folder is told the files datasets reads as its splits."""
    from types import SimpleNamespace

    from directpo.cli import main
    from directpo.data_sources import load_named_dataset

    monkeypatch.chdir(tmp_path)
    Path("sp").mkdir()
    Path("sp/data.json").write_text(json.dumps({"train": ROWS, "test": ROWS}))
    assert main(["train", "--train_file", "sp/data.json"]) == 2
    said = "sp/data.json: holds 2 lists of rows (train, test), as a file of splits does; give"
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(f"{said} each list as a file of its own (--train_file, --eval_file)")
    )
    options = SimpleNamespace(
        dataset_name="sp", dataset_config=None, dataset_streaming=False,
        dataset_train_split="train", dataset_test_split="test",
    )  # fmt: skip
    rows = load_named_dataset(options, "dataset_train_split", required="training")
    with pytest.raises(DataError) as refused:
        load_preferences(rows, name="sp[train]")
    assert str(refused.value) == (
        "sp[train]: holds 2 lists of rows (train, test), as a file of splits does; give each "
        "list as a file of its own (train.json, test.json: datasets reads each as its split)"
    )
    Path("sp/data.json").unlink()  # (the advice taken: datasets reads the files as the splits)
    Path("sp/train.json").write_text(json.dumps(ROWS))
    Path("sp/test.json").write_text(json.dumps(ROWS[:1]))
    rows = load_named_dataset(options, "dataset_train_split", required="training")
    assert len(load_preferences(rows, name="sp[train]")) == 2


@pytest.mark.parametrize(
    ("name", "text", "said"),
    [
        ("rows.json", "[]\n", "no rows"),
        ("rows.csv", "prompt,chosen,rejected\n", "no rows"),
        ("rows.jsonl", "\n \n", "no rows (the file is empty)"),
    ],
)
def test_a_file_of_no_rows_is_called_empty_only_when_it_is(
    tmp_path: Path, name: str, text: str, said: str
) -> None:
    """A .json file holding [] (or a CSV file's header alone) was 'no rows (the file is
    empty)': the user opens it and finds it is not."""
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(DataError) as refused:
        load_preferences(str(path))
    assert str(refused.value) == f"{path}: {said}"


def test_a_videos_column_is_refused_not_trained_as_text(tmp_path: Path) -> None:
    """A row's videos (SmolVLM2 and Qwen-VL take them; directpo feeds images only) were dropped
    without a word: the pair trained as its text alone. Such a row is refused in one line
    naming the field, and skip_invalid_rows counts it; an empty videos field is no video."""
    row = {"prompt": "What happens?", "chosen": " a cat runs", "rejected": " nothing"}
    path = write_jsonl(
        tmp_path / "v.jsonl", [{**row, "videos": ["clip.mp4"]}, {**row, "video": ""}]
    )
    with pytest.raises(DataError, match=r"line 1: field 'videos' holds videos, and directpo "):
        load_preferences(str(path))
    data = load_preferences(str(path), skip_invalid_rows=True)
    assert len(data) == 1 and data.skipped == {"video": 1}


@pytest.mark.parametrize("name", ["rows.jsonl.gz", "rows.jsonl"])
def test_a_compressed_file_of_no_text_is_called_empty(tmp_path: Path, name: str) -> None:
    """A gzip file holding no text (data.jsonl.gz, or one saved without its .gz) was 'no rows'
    alone: its gzip header's bytes were taken for text."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"\n"))
    with pytest.raises(DataError) as refused:
        load_preferences(str(path))
    assert str(refused.value) == f"{path}: no rows (the file is empty)"


def test_a_first_row_without_a_pair_field_is_said_as_that_rows(tmp_path: Path) -> None:
    """The columns of a JSON Lines (or .json) file are its first row's keys: a first row
    without 'rejected' refused the whole file as "column 'rejected' not found (columns:
    prompt, chosen); set chosen_column / rejected_column", though every other row has it. The
    defect is row 1's; a file no row of which has the field keeps the file's message."""
    short = {"prompt": "Q", "chosen": " a"}
    write_jsonl(tmp_path / "f.jsonl", [short, *ROWS])
    with pytest.raises(DataError) as err:
        load_preferences(str(tmp_path / "f.jsonl"))
    assert (
        str(err.value)
        == f"{tmp_path / 'f.jsonl'}: line 1: no field 'rejected' (the other rows have it)"
    )
    (tmp_path / "f.json").write_text(json.dumps([{"prompt": "Q"}, *ROWS]))
    with pytest.raises(DataError) as err:
        load_preferences(str(tmp_path / "f.json"))
    said = "row 1: no fields 'chosen', 'rejected' (the other rows have them)"
    assert str(err.value) == f"{tmp_path / 'f.json'}: {said}"
    write_jsonl(tmp_path / "none.jsonl", [short, short])
    with pytest.raises(DataError) as err:
        load_preferences(str(tmp_path / "none.jsonl"))
    assert str(err.value) == (
        f"{tmp_path / 'none.jsonl'}: column 'rejected' not found (columns: prompt, chosen); "
        "set chosen_column / rejected_column"
    )
    # skipped as the bad row it is, with skip_invalid_rows
    read = load_preferences(str(tmp_path / "f.jsonl"), skip_invalid_rows=True)
    assert [e.prompt for e in read.examples] == [r["prompt"] for r in ROWS]


def test_a_rows_document_on_a_json_lines_files_first_line_is_said(tmp_path: Path) -> None:
    """A .jsonl whose first line is {"data": [rows]} and whose other lines are rows was
    "column 'chosen' not found (columns: data)", with no line: line 1 is said as what it is."""
    path = tmp_path / "mixed.jsonl"
    write_jsonl(path, [{"data": ROWS}, *ROWS])
    with pytest.raises(DataError) as err:
        load_preferences(str(path))
    assert str(err.value) == (
        f"{path}: line 1: a JSON document of rows ('data' lists 2 rows) inside a JSON Lines "
        "file, whose every line is one row; split it out into a .json file of its own, or "
        "write its rows one a line"
    )


def test_a_dataset_viewers_rows_answer_is_read_as_its_rows(tmp_path: Path) -> None:
    """The dataset viewer's /rows answer saved as .json (what its API downloads) was refused as
    "holds 2 lists of rows (features, rows)"; its rows are each item's "row", and a row whose
    cells the viewer truncated is refused, never trained on cut short."""
    features = [{"feature_idx": 0, "name": "prompt", "type": {"dtype": "string"}}]
    items = [{"row_idx": i, "row": row, "truncated_cells": []} for i, row in enumerate(ROWS)]
    answer = {"features": features, "rows": items, "num_rows_total": 2, "partial": False}
    (tmp_path / "rows.json").write_text(json.dumps(answer, indent=2))
    read = load_preferences(str(tmp_path / "rows.json"))
    assert [(e.prompt, e.chosen, e.rejected) for e in read.examples] == [
        (r["prompt"], r["chosen"], r["rejected"]) for r in ROWS
    ]
    items[1]["truncated_cells"] = ["chosen"]
    (tmp_path / "cut.json").write_text(json.dumps(answer))
    with pytest.raises(DataError) as err:
        load_preferences(str(tmp_path / "cut.json"))
    assert "row 2: the dataset viewer cut its cells 'chosen' short (truncated_cells); " in str(
        err.value
    )
    read = load_preferences(str(tmp_path / "cut.json"), skip_invalid_rows=True)
    assert [e.prompt for e in read.examples] == [ROWS[0]["prompt"]]
    (tmp_path / "rows.jsonl").write_text(json.dumps(answer) + "\n")  # (saved as .jsonl too)
    read = load_preferences(str(tmp_path / "rows.jsonl"), skip_invalid_rows=True)
    assert [e.prompt for e in read.examples] == [ROWS[0]["prompt"]]


def test_a_first_row_without_its_prompt_does_not_make_the_file_implicit(tmp_path: Path) -> None:
    """A first row without 'prompt' made the whole file's layout implicit: every later row's
    prompt went unread (each refused as sharing no prefix). Row 1 is the bad row; the next
    one gives the layout, and skip_invalid_rows skips row 1 alone."""
    path = write_jsonl(tmp_path / "f.jsonl", [{"chosen": " a", "rejected": " b"}, *ROWS])
    with pytest.raises(DataError) as err:
        load_preferences(str(path))
    assert str(err.value) == with_skip_hint(
        f"{path}: line 1: no field 'prompt' (the other rows have it)", "recipe"
    )
    read = load_preferences(str(path), skip_invalid_rows=True)
    assert read.layout == "explicit" and read.skipped == {"missing field": 1}
    assert [e.prompt for e in read.examples] == [r["prompt"] for r in ROWS]


def test_gemmas_model_role_and_openais_function_role_say_the_role_to_write(
    tmp_path: Path,
) -> None:
    """A row exported in Gemma's (or Gemini's) form names the reply's role 'model', the name
    Gemma's template writes for 'assistant'; OpenAI's older function calling names a tool's
    result 'function'. Both were said as any unknown role, 'expected one of ...', without the
    role to write."""
    reply = [{"role": "model", "content": "Hello"}]
    row = {"prompt": [USER_HI], "chosen": reply, "rejected": "x"}
    with pytest.raises(DataError) as info:
        _load_rows(tmp_path, [row])
    assert str(info.value).endswith(
        "line 1: field 'chosen': message 1 has role 'model', expected one of system, developer, "
        "user, assistant, tool, ipython; write it 'assistant' (Gemma's template and Gemini's API "
        "name the assistant's turn 'model'; the chat template writes each role its own way); "
        "skip_invalid_rows: true skips them"
    )
    called = [USER_HI, {"role": "function", "content": '{"temperature": 22}'}]
    with pytest.raises(DataError, match=r"role 'function', .*; write it 'tool' \(OpenAI's older"):
        _load_rows(tmp_path, [{**row, "prompt": called, "chosen": "Sunny."}])
