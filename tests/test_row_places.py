"""A bad row of a dataset read from several local files is said by its file and its line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from tiny import write_jsonl

from directpo.data import load_preferences
from directpo.data_sources import dataset_splits, load_named_dataset
from directpo.errors import DataError
from directpo.row_places import remember_files

PAIR = {"prompt": "Q", "chosen": " a", "rejected": " b"}
BAD = {"prompt": "Q", "chosen": " a", "rejected": None}


def _refusal(source: object, name: str, **options: object) -> str:
    with pytest.raises(DataError) as err:
        load_preferences(source, name=name, **options)
    said = str(err.value)  # (a row's place is what these tests pin: the hint after it apart)
    assert said.endswith("; skip_invalid_rows: true skips them"), said
    return said.removesuffix("; skip_invalid_rows: true skips them")


def test_a_folders_bad_row_is_said_by_its_file_and_line(tmp_path, monkeypatch) -> None:
    """dataset_name: data (a.jsonl, b.jsonl) said "data[train]: row 5: field 'rejected' is
    null", the row's place across the folder's files; now its file and line (a blank line
    counted as datasets skips it), in the refusal and in skip_invalid_rows' count alike."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [PAIR] * 3)
    (tmp_path / "data" / "b.jsonl").write_text(f"{json.dumps(PAIR)}\n\n{json.dumps(BAD)}\n")
    with gzip.open(tmp_path / "data" / "c.jsonl.gz", "wt") as handle:
        handle.write(json.dumps(BAD) + "\n")
    config = SimpleNamespace(
        dataset_name="data", dataset_config=None, dataset_streaming=False,
        dataset_train_split="train", dataset_test_split="test",
    )  # fmt: skip
    train = load_named_dataset(config, "dataset_train_split", required="training")
    assert _refusal(train, "data[train]") == (
        "data[train]: data/b.jsonl: line 3: field 'rejected' is null (1 more row like it: "
        "data/c.jsonl.gz: line 1)"
    )
    kept = load_preferences(train, name="data[train]", skip_invalid_rows=True)
    assert len(kept) == 4 and kept.skipped == {"missing field": 2}
    # rows selected or reordered are not their files' order: their place in the whole stays
    shuffled = train.shuffle(seed=0)
    assert ": row " in _refusal(shuffled.select(range(len(shuffled))), "data[train]")


def test_data_files_and_saved_shards_are_said_by_their_rows(tmp_path, monkeypatch) -> None:
    """A builder's data_files (parquet, csv) and a save_to_disk folder of several shards: the
    bad row by its file's row (or line) in that file, not by its place in the whole."""
    monkeypatch.chdir(tmp_path)
    datasets.Dataset.from_list([PAIR, BAD]).to_parquet("b.parquet")
    datasets.Dataset.from_list([PAIR]).to_parquet("a.parquet")
    splits = dataset_splits(
        "parquet", None, "parquet", "train", data_files=["a.parquet", "b.parquet"]
    )
    assert _refusal(splits["train"], "parquet[train]") == (
        "parquet[train]: b.parquet: row 2: field 'rejected' is null"
    )
    (tmp_path / "c.csv").write_text('prompt,chosen,rejected\nQ,a,b\nQ,"a\nlong",\n')
    splits = dataset_splits("csv", None, "csv", "train", data_files=["c.csv"])
    # (its empty cell read as written, as a CSV train_file's: datasets' pandas made it null)
    assert _refusal(splits["train"], "csv[train]") == (
        "csv[train]: c.csv: line 3: field 'rejected' is empty"
    )
    datasets.Dataset.from_list([PAIR, PAIR, PAIR, BAD]).save_to_disk("saved", num_shards=2)
    saved = dataset_splits("saved", None, "saved", "train")["train"]
    assert _refusal(saved, "saved") == (
        "saved: saved/data-00001-of-00002.arrow: row 2: field 'rejected' is null"
    )
    # given as a file of rows (train_file, score's --input): so too
    assert _refusal("saved", "saved") == (
        "saved: saved/data-00001-of-00002.arrow: row 2: field 'rejected' is null"
    )
    datasets.Dataset.from_list([PAIR, BAD]).save_to_disk("one")  # (one shard: its own rows)
    assert _refusal("one", "one") == "one: row 2: field 'rejected' is null"


def test_files_whose_rows_do_not_add_up_leave_the_place_in_the_whole(tmp_path: Path) -> None:
    """Files that do not hold the dataset's rows (counted otherwise), or one file twice: no
    line is made up."""
    write_jsonl(tmp_path / "one.jsonl", [PAIR])
    dataset = datasets.Dataset.from_list([PAIR, BAD])
    remember_files(dataset, [tmp_path / "one.jsonl"])
    assert _refusal(dataset, "d") == "d: row 2: field 'rejected' is null"
    # one file read twice: its places would name two rows alike (a mixture keys rows by them)
    remember_files(dataset, [tmp_path / "one.jsonl", tmp_path / "one.jsonl"])
    assert _refusal(dataset, "d") == "d: row 2: field 'rejected' is null"
    write_jsonl(tmp_path / "two.jsonl", [BAD])
    remember_files(dataset, [tmp_path / "one.jsonl", tmp_path / "two.jsonl"])
    assert (
        _refusal(dataset, "d") == f"d: {tmp_path / 'two.jsonl'}: line 1: field 'rejected' is null"
    )


def test_a_mixture_sources_data_files_name_the_bad_rows_file(tmp_path, monkeypatch) -> None:
    """A dataset_mixture entry's data_files: its bad row by file and line, and its good rows
    mixed as ever (the mixture keys its rows by these places)."""
    from directpo.data import Columns
    from directpo.mixture import load_mixture

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "a.jsonl", [PAIR] * 3)
    write_jsonl(tmp_path / "b.jsonl", [PAIR, BAD])
    mixture = {"datasets": [{"id": "json", "data_files": ["a.jsonl", "b.jsonl"]}], "seed": 1}
    with pytest.raises(DataError) as err:
        load_mixture(mixture, Columns())
    assert str(err.value) == (
        "json(a.jsonl and 1 more)[train]: b.jsonl: line 2: field 'rejected' is null; "
        "skip_invalid_rows: true skips them"
    )
    mixed = load_mixture(mixture, Columns(), skip_invalid_rows=True)
    assert sorted(e.where for e in mixed.train.examples) == [
        f"json(a.jsonl and 1 more)[train]: {place}"
        for place in ("a.jsonl: line 1", "a.jsonl: line 2", "a.jsonl: line 3", "b.jsonl: line 1")
    ]


def test_a_single_sources_files_are_not_counted_before_its_rows_are_read(
    tmp_path, monkeypatch
) -> None:
    """Every load of a folder's dataset counted each of its files first (a pass over each,
    on a load that succeeds too), to check that their rows add up before any place was given.
    Its files are walked beside its rows now, and their count checked as they end: no pass
    of its own, the same places, and a bad row said by its file and line as before."""
    from directpo import row_places

    monkeypatch.chdir(tmp_path)
    counted: list[str] = []
    count = row_places._count
    monkeypatch.setattr(row_places, "_count", lambda path: counted.append(path) or count(path))
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [PAIR] * 3)
    (tmp_path / "data" / "b.jsonl").write_text(f"{json.dumps(PAIR)}\n\n{json.dumps(PAIR)}\n")
    config = SimpleNamespace(
        dataset_name="data", dataset_config=None, dataset_streaming=False,
        dataset_train_split="train", dataset_test_split="test",
    )  # fmt: skip
    train = load_named_dataset(config, "dataset_train_split", required="training")
    kept = load_preferences(train, name="data[train]")
    assert counted == []
    assert [e.where for e in kept.examples] == [
        f"data[train]: data/{place}"
        for place in ("a.jsonl: line 1", "a.jsonl: line 2", "a.jsonl: line 3",
                      "b.jsonl: line 1", "b.jsonl: line 3")
    ]  # fmt: skip
    (tmp_path / "data" / "b.jsonl").write_text(f"{json.dumps(PAIR)}\n\n{json.dumps(BAD)}\n")
    train = load_named_dataset(config, "dataset_train_split", required="training")
    assert _refusal(train, "data[train]") == (
        "data[train]: data/b.jsonl: line 3: field 'rejected' is null"
    )
    assert counted == []
