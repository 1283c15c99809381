"""A folder's JSON files, read by datasets as one table: values it would change are refused,
naming the file, line and field, as each file read alone says it (file_types.py)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import write_jsonl

from directpo.data import load_preferences
from directpo.data_sources import load_named_dataset
from directpo.errors import DataError

PAIR = {"prompt": "Q", "chosen": " Sure", "rejected": " No"}
USER = {"role": "user", "content": "q"}
ALONE = "or give the files as train_file (a list of paths: each file read alone)"


def _folder(root: Path, files: dict[str, object]) -> None:
    (root / "data").mkdir()
    for name, rows in files.items():
        if name.endswith(".jsonl"):
            write_jsonl(root / "data" / name, rows)
        else:
            (root / "data" / name).write_text(json.dumps(rows))


def _train(root: Path) -> object:
    config = SimpleNamespace(
        dataset_name="data", dataset_config=None, dataset_streaming=False,
        dataset_train_split="train", dataset_test_split="test",
    )  # fmt: skip
    return load_named_dataset(config, "dataset_train_split", required="training")


def _refused(root: Path) -> str:
    with pytest.raises(DataError) as err:
        _train(root)
    return str(err.value)


def test_a_number_among_a_files_strings_is_refused_not_json_encoded(tmp_path, monkeypatch):
    """b.jsonl's "chosen": 5 beside its strings: datasets JSON-encoded every chosen of b.jsonl
    (' Sure' trained as '" Sure"', 5 as '5'), silently; now refused as the file alone is."""
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path, {"a.jsonl": [PAIR], "b.jsonl": [PAIR, {**PAIR, "chosen": 5}]})
    assert _refused(tmp_path) == (
        "dataset_name 'data': data/b.jsonl: line 2: field 'chosen' is a number (5), where "
        "line 1's is a string: datasets reads a column of two types as JSON text (each of this "
        "file's 'chosen' values, ' Sure' trained as '\" Sure\"'); give the field one type, "
        f"{ALONE}"
    )


def test_a_later_files_numbers_or_booleans_are_refused_not_cast_to_text(tmp_path, monkeypatch):
    """b.jsonl of "chosen": true (and a.jsonl of strings): trained as 'true'; now refused."""
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path, {"a.jsonl": [PAIR], "b.jsonl": [{**PAIR, "chosen": True}]})
    assert _refused(tmp_path) == (
        "dataset_name 'data': data/b.jsonl: line 1: field 'chosen' is a boolean (true), where "
        "data/a.jsonl's is a string: datasets reads a folder's files as one table, one type "
        "per column, and would train its values as text (5 as '5', true as 'true'); give the "
        f"field one type in every file, {ALONE}"
    )


@pytest.mark.parametrize(
    ("first", "later", "said"),
    [
        # a system column null in every row of the first file: "Couldn't cast ... to null"
        ({**PAIR, "system": None}, {**PAIR, "system": "Be brief."},
         "line 1: field 'system' is a string (\"Be brief.\"), where data/a.jsonl's is null in "
         "every row"),
        # a message's extra key (name) in a later file: "Couldn't cast array of type"
        ({"chosen": [USER], "rejected": [USER]},
         {"chosen": [{**USER, "name": "bob"}], "rejected": [USER]},
         "line 1: field 'chosen' is a list of objects (role, content, name), where "
         "data/a.jsonl's is a list of objects (role, content)"),
        # a fraction after whole numbers: "Float value 1.500000 was truncated"
        ({**PAIR, "score_chosen": 8}, {**PAIR, "score_chosen": 7.5},
         "line 1: field 'score_chosen' is a number (7.5), where data/a.jsonl's is a whole "
         "number"),
    ],
)  # fmt: skip
def test_a_later_files_other_type_names_its_file_and_line(
    tmp_path, monkeypatch, first, later, said
):
    """A load that failed in a line naming no file ("Couldn't cast array of type") now names
    the file, the line and both types."""
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path, {"a.jsonl": [first], "b.jsonl": [first, later]})
    (tmp_path / "data" / "b.jsonl").write_text(json.dumps(later) + "\n")
    assert _refused(tmp_path) == (
        f"dataset_name 'data': data/b.jsonl: {said}: datasets reads a folder's files as one "
        "table, one type per column, and would refuse them in a line that names no file; give "
        f"the field one type in every file, {ALONE}"
    )


def test_a_field_of_one_file_only_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path, {"a.jsonl": [PAIR], "b.jsonl": [{**PAIR, "system": "s"}]})
    assert _refused(tmp_path) == (
        "dataset_name 'data': data/a.jsonl: has no field 'system', which data/b.jsonl has: "
        "datasets reads a folder's files as one table of the same columns; give every file the "
        f"same fields, {ALONE}"
    )


def test_a_json_file_of_columns_is_refused_not_read_as_one_row(tmp_path, monkeypatch):
    """{"prompt": [...], "chosen": [...], ...}: one row per file in datasets ("row 1: field
    'prompt': message 1 is a string"), its rows as train_file."""
    monkeypatch.chdir(tmp_path)
    columns = {"prompt": ["p", "q"], "chosen": [" a", " b"], "rejected": [" c", " d"]}
    _folder(tmp_path, {"a.json": columns, "b.json": columns})
    assert _refused(tmp_path) == (
        "dataset_name 'data': data/a.json: one JSON object holding 2 rows (columns, or rows "
        "under a key), which datasets reads in a folder as one row; write its rows as JSON "
        "Lines (a row a line), or give it as train_file, read as its rows"
    )
    assert len(load_preferences(["data/a.json", "data/b.json"])) == 4  # (the fix it names)


def test_files_of_one_type_per_column_load_their_values_as_written(tmp_path, monkeypatch):
    """The common case loads as before: a later file's nulls, empty lists and whole numbers
    beside the first's texts, lists and fractions keep their values; an empty file and a .json
    list of rows are read too."""
    monkeypatch.chdir(tmp_path)
    rows = [{**PAIR, "score_chosen": 7.5}, {**PAIR, "chosen": " Yes", "score_chosen": None}]
    _folder(
        tmp_path,
        {
            "a.jsonl": rows[:1],
            "b.jsonl": rows[1:],
            "d.json": [{**PAIR, "score_chosen": 3, "tags": None, "turns": None}],
        },
    )
    (tmp_path / "data" / "0-empty.jsonl").write_text("")  # (no rows: no columns to compare)
    with (tmp_path / "data" / "a.jsonl").open("a") as handle:  # (lists, and empty ones)
        handle.write(json.dumps({**PAIR, "tags": ["x"], "turns": [USER], "score_chosen": 1.0}))
    reordered = {"content": "q", "role": "user"}  # (a message's keys in another order)
    write_jsonl(tmp_path / "data" / "b.jsonl", [{**rows[1], "tags": [], "turns": [reordered]}])
    train = _train(tmp_path)
    assert [row["chosen"] for row in train] == [" Sure", " Sure", " Yes", " Sure"]
    assert [row["tags"] for row in train] == [None, ["x"], [], None]
    assert [row["turns"] for row in train] == [None, [USER], [USER], None]
    assert [row["score_chosen"] for row in train] == [7.5, 1.0, None, 3.0]


def test_a_mixtures_data_files_are_checked_as_a_folder(tmp_path, monkeypatch):
    from directpo.data import Columns
    from directpo.mixture import load_mixture

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "a.jsonl", [PAIR])
    write_jsonl(tmp_path / "b.jsonl", [{**PAIR, "chosen": 5}])
    mixture = {"datasets": [{"id": "json", "data_files": ["a.jsonl", "b.jsonl"]}], "seed": 1}
    with pytest.raises(DataError) as err:
        load_mixture(mixture, Columns())
    assert str(err.value).startswith(
        "dataset_mixture: json(a.jsonl and 1 more)[train]: b.jsonl: line 1: field 'chosen' is "
        "a number (5), where a.jsonl's is a string"
    )
    assert str(err.value).endswith("or give each file as its own entry (id: its path, read alone)")


def test_a_first_files_messages_of_other_keys_are_refused_not_read_as_strings(
    tmp_path, monkeypatch
):
    """A message with a "name" beside ones without, in the folder's first file: datasets
    JSON-encoded each message, refused as "message 1 is a string" of a file of objects."""
    monkeypatch.chdir(tmp_path)
    named = {"role": "assistant", "content": "x", "name": "n"}
    row = {"chosen": [USER, named], "rejected": [USER, {"role": "assistant", "content": "y"}]}
    _folder(tmp_path, {"a.jsonl": [row]})
    assert _refused(tmp_path) == (
        "dataset_name 'data': data/a.jsonl: line 1: field 'chosen': an object of keys (role, "
        "content, name), where another on that line has (role, content): datasets reads "
        "objects of other keys in a folder's first file as JSON text (each such 'chosen' "
        f"object read as a string); give them the same keys, {ALONE}"
    )


def test_a_later_parquet_files_numbers_are_refused_not_cast_to_text(tmp_path, monkeypatch):
    """b.parquet's chosen of int64 beside a.parquet's strings: trained as '5'; now refused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist([PAIR]), tmp_path / "data" / "a.parquet")
    pq.write_table(pa.Table.from_pylist([{**PAIR, "chosen": 5}]), tmp_path / "data" / "b.parquet")
    assert _refused(tmp_path).startswith(
        "dataset_name 'data': data/b.parquet: row 1: field 'chosen' is a number (5), where "
        "data/a.parquet's is a string: datasets reads a folder's files as one table, one type "
        "per column, and would train its values as text (5 as '5', true as 'true')"
    )


def test_a_file_changed_after_a_load_is_checked_again(tmp_path, monkeypatch):
    """The files found to load as written are not read again (dataset_test_split's load of
    the same folder), unless one changed since."""
    monkeypatch.chdir(tmp_path)
    _folder(tmp_path, {"a.jsonl": [PAIR], "b.jsonl": [PAIR]})
    assert len(_train(tmp_path)) == 2
    write_jsonl(tmp_path / "data" / "b.jsonl", [{**PAIR, "chosen": True}])
    assert "data/b.jsonl: line 1: field 'chosen' is a boolean (true)" in _refused(tmp_path)


def test_a_later_files_missing_field_or_whole_fractions_load_as_datasets_reads_them(
    tmp_path, monkeypatch
):
    """datasets loads a later file without a field of the first's (its rows null there) and a
    later file's 8.0 beside the first's whole numbers (UltraFeedback's score_chosen, cast to
    8): both were refused ("has no field 'id'", "is a number (8.0), where ... a whole number");
    they load, a required field left out said at its own file and line. A fraction (8.5) and
    a field the first file lacks still fail datasets' cast, and are refused."""
    monkeypatch.chdir(tmp_path)
    rated = {**PAIR, "id": 3, "score_chosen": 8}
    _folder(tmp_path, {"a.jsonl": [rated], "b.jsonl": [{**PAIR, "score_chosen": 8.0}]})
    train = _train(tmp_path)
    assert [(row["id"], row["score_chosen"]) for row in train] == [(3, 8), (None, 8)]
    write_jsonl(tmp_path / "data" / "c.jsonl", [{"prompt": "Q", "chosen": " a", "id": 4}])
    with pytest.raises(DataError) as err:
        load_preferences(_train(tmp_path), name="data[train]")
    assert str(err.value).startswith("data[train]: data/c.jsonl: line 1: field 'rejected'")
    write_jsonl(tmp_path / "data" / "c.jsonl", [{**PAIR, "score_chosen": 8.5}])
    assert "data/c.jsonl: line 1: field 'score_chosen' is a number (8.5)" in _refused(tmp_path)
    write_jsonl(tmp_path / "data" / "c.jsonl", [{**rated, "source": "x"}])
    assert "data/a.jsonl: has no field 'source', which data/c.jsonl has" in _refused(tmp_path)


def test_a_folders_csv_cells_are_read_as_written_not_as_numbers(tmp_path, monkeypatch):
    """datasets' csv reader (pandas) read a cell that looks like a number, boolean or missing
    value as one: one file's '007' and '1e5' trained (or were refused as 'a number') as 7 and
    100000.0, 'NaN' and an empty cell as None, and a.csv's chosen of numbers beside b.csv's
    words failed naming no file ("Failed to parse string: 'true' as a scalar of type int64").
    A folder's CSV cells are text as written, as a CSV train_file's are."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("prompt,chosen,rejected\nHi,5,no\nHey,7,nah\n")
    (tmp_path / "data" / "b.csv").write_text(
        'prompt,chosen,rejected\nHi,007,no\nHey,1e5,nah\nYo,NaN,x\nOk,true,y\nOh,,"[1, 2]"\n'
    )
    train = _train(tmp_path)
    assert train["chosen"] == ["5", "7", "007", "1e5", "NaN", "true", ""]
    assert train["rejected"] == ["no", "nah", "no", "nah", "x", "y", "[1, 2]"]
    (tmp_path / "data" / "a.csv").unlink()  # (one file alone: '007' was 7.0, '' None)
    assert _train(tmp_path)["chosen"] == ["007", "1e5", "NaN", "true", ""]


def test_a_folders_csv_cell_of_messages_is_a_conversation_as_a_csv_train_files_is(
    tmp_path, monkeypatch
):
    """A CSV train_file's cell holding a list of messages (JSON, or pandas' Python repr) is
    that conversation; a dataset_name folder of the same file trained the list's text as a
    plain prompt and replies ('[{"role": "user", ...'), without a word. Now both read it as
    the conversation, and a plain cell beside it stays its text."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    turn = json.dumps([USER])
    text = f'prompt,chosen,rejected\n"{turn.replace(chr(34), 2 * chr(34))}",'
    reply = "\"[{'role': 'assistant', 'content': '%s'}]\""  # (pandas' repr of a list)
    text += f"{reply % 'a'},{reply % 'b'}\n"
    text += "[x],plain,[{]\n"
    (tmp_path / "data" / "a.csv").write_text(text)
    alone = load_preferences(str(tmp_path / "data" / "a.csv"), skip_invalid_rows=True)
    folder = load_preferences(_train(tmp_path), skip_invalid_rows=True)
    assert folder.examples[0].prompt == alone.examples[0].prompt == [USER]
    assert folder.examples[0].chosen == [{"role": "assistant", "content": "a"}]
    assert folder.examples[0].rejected == alone.examples[0].rejected
    assert [e.chosen for e in folder.examples[1:]] == [e.chosen for e in alone.examples[1:]]


def test_a_folders_tsv_and_compressed_csv_cells_are_read_as_written(tmp_path, monkeypatch):
    """A folder of .tsv files (or .csv.gz) is read by the same pandas reader as .csv: its
    '007' was refused as 'a number' (the file alone trains it as written) and its empty cell
    said 'is null'; now read as the file alone reads it."""
    import gzip

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.tsv").write_text("prompt\tchosen\trejected\nHi\t007\tno\nHo\t1e5\t\n")
    assert _train(tmp_path)["chosen"] == ["007", "1e5"]
    for source in (str(tmp_path / "data" / "a.tsv"), _train(tmp_path)):  # alone, the folder
        said = load_preferences(source, skip_invalid_rows=True)
        assert [e.chosen for e in said.examples] == ["007"]
        with pytest.raises(DataError, match="a.tsv: line 3: field 'rejected' is empty;"):
            load_preferences(source)
    (tmp_path / "data" / "a.tsv").unlink()
    (tmp_path / "data" / "a.csv.gz").write_bytes(
        gzip.compress(b"prompt,chosen,rejected\nHi,007,no\n")
    )
    assert _train(tmp_path)["chosen"] == ["007"]


def test_a_streamed_folders_csv_cells_are_read_as_written(tmp_path, monkeypatch):
    """dataset_streaming: true over a local folder of CSV files skipped the text reading
    (the folder's files were looked up only when not streamed): '007' and '1e5' were refused
    as 'must be a string, got a number', read as written without streaming. Now alike."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("prompt,chosen,rejected\nHi,007,no\nHo,1e5,x\n")
    config = SimpleNamespace(
        dataset_name="data", dataset_config=None, dataset_streaming=True,
        dataset_train_split="train", dataset_test_split="test",
    )  # fmt: skip
    streamed = load_named_dataset(config, "dataset_train_split", required="training")
    assert [row["chosen"] for row in streamed] == ["007", "1e5"]
    assert [e.chosen for e in load_preferences(streamed).examples] == ["007", "1e5"]


def test_a_folder_of_excels_semicolon_csv_files_is_read_as_the_file_alone(tmp_path, monkeypatch):
    """Excel in German or French locales writes CSV with semicolons (its decimal mark is the
    comma), which a CSV train_file reads; a folder of them failed to load ("cannot load (...
    Expected 1 fields in line 3, saw 2)"). Each split is read with its files' separator, a
    comma inside a cell kept, '007' as written, a bad row said at its file's line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(
        "prompt;chosen;rejected\nHallo, Welt;007;nein\nNa, du?;Gut, danke.;\n"
    )
    (tmp_path / "data" / "test.csv").write_text("prompt,chosen,rejected\nYo,1e5,x\n")
    for streamed in (False, True):
        config = SimpleNamespace(
            dataset_name="data", dataset_config=None, dataset_streaming=streamed,
            dataset_train_split="train", dataset_test_split="test",
        )  # fmt: skip
        train = load_named_dataset(config, "dataset_train_split", required="training")
        test = load_named_dataset(config, "dataset_test_split", required=None)
        assert [row["prompt"] for row in train] == ["Hallo, Welt", "Na, du?"]
        assert [row["chosen"] for row in train] == ["007", "Gut, danke."]
        assert list(test) == [{"prompt": "Yo", "chosen": "1e5", "rejected": "x"}]
    alone = load_preferences(str(tmp_path / "data" / "train.csv"), skip_invalid_rows=True)
    folder = load_preferences(_train(tmp_path), skip_invalid_rows=True)
    assert [e.chosen for e in folder.examples] == [e.chosen for e in alone.examples] == ["007"]
    with pytest.raises(DataError, match="data/train.csv: line 3: field 'rejected' is empty"):
        load_preferences(_train(tmp_path))


def test_a_folders_csv_splits_of_different_columns_are_each_read_as_written(tmp_path, monkeypatch):
    """train.csv with UltraFeedback's score columns beside a test.csv without them: one table's
    features cannot hold both, so the folder fell back to pandas' types for every split ('007'
    refused as 'must be a string, got a number', the test split given a score_chosen of
    None). Each split is read as text on its own; a bad row still said at its file's line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text(
        "prompt,chosen,rejected,score_chosen\nHi,007,no,8\nHo,1e5,,7\n"
    )
    (tmp_path / "data" / "test.csv").write_text("prompt,chosen,rejected\nYo,NaN,x\n")
    for streamed in (False, True):
        config = SimpleNamespace(
            dataset_name="data", dataset_config=None, dataset_streaming=streamed,
            dataset_train_split="train", dataset_test_split="test",
        )  # fmt: skip
        train = load_named_dataset(config, "dataset_train_split", required="training")
        test = load_named_dataset(config, "dataset_test_split", required=None)
        assert [row["chosen"] for row in train] == ["007", "1e5"]
        assert list(test) == [{"prompt": "Yo", "chosen": "NaN", "rejected": "x"}]
        if not streamed:
            with pytest.raises(DataError, match="data/train.csv: line 3: field 'rejected' is"):
                load_preferences(train)
