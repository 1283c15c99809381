"""dataset_name's splits: named, sliced or joined as datasets' load_dataset(split=...) reads."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import SENTIMENT_PAIRS, write_jsonl

from directpo.data_sources import load_named_dataset
from directpo.errors import ConfigError, DataError
from directpo.mixture import _opened
from directpo.mixture_entries import Source


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "prefs"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", SENTIMENT_PAIRS * 10)
    write_jsonl(folder / "test.jsonl", SENTIMENT_PAIRS[:2])
    return folder


def _options(folder: Path, **splits: str) -> SimpleNamespace:
    return SimpleNamespace(
        dataset_name=str(folder), dataset_config=None, dataset_streaming=False,
        dataset_train_split=splits.get("train", "train"),
        dataset_test_split=splits.get("test", "test"),
    )  # fmt: skip


def _prompts(rows) -> list[str]:
    return [row["prompt"] for row in rows]


def test_a_slice_or_a_sum_of_splits_is_the_rows_datasets_reads(tmp_path: Path) -> None:
    """dataset_train_split: train[:10%] (or train+test) was 'no split train[:10%] (it has
    train, test)' though datasets reads it; now the same rows as load_dataset(split=...)."""
    import datasets

    folder = _folder(tmp_path)
    whole = len(SENTIMENT_PAIRS) * 10
    for spec in ("train[:10%]", "train[5:9]", "train[-10%:]", "train+test", "test+train[:3]"):
        picked = load_named_dataset(_options(folder, train=spec), "dataset_train_split",
                                    required="training")  # fmt: skip
        expected = datasets.load_dataset(str(folder), split=spec)
        assert _prompts(picked) == _prompts(expected), spec
    picked = load_named_dataset(_options(folder, train="train[:10%]"), "dataset_train_split",
                                required="training")  # fmt: skip
    assert len(picked) == whole // 10
    with pytest.raises(DataError, match=r"no split 'dev\[:10%\]' \(it has train, test\)"):
        load_named_dataset(_options(folder, train="dev[:10%]"), "dataset_train_split",
                           required="training")  # fmt: skip


def test_a_test_split_that_holds_training_rows_is_refused_as_the_train_split_is(tmp_path):
    """dataset_train_split: train+test (or train[:90%] beside test: train[80%:]) trained on
    the held-out pairs it then evaluated, as dataset_test_split: train did (refused)."""
    folder = _folder(tmp_path)
    for train, test in (
        ("train+test", "test"),
        ("train[:90%]", "train[80%:]"),
        ("train", "train[:1]"),
    ):
        with pytest.raises(ConfigError) as refused:
            load_named_dataset(_options(folder, train=train, test=test), "dataset_test_split",
                               required=None)  # fmt: skip
        assert str(refused.value).startswith(
            f"dataset_test_split: {test} holds rows of dataset_train_split: {train}, so "
            "held-out pairs would be training pairs"
        )
    held_out = load_named_dataset(_options(folder, train="train[:90%]", test="train[90%:]"),
                                  "dataset_test_split", required=None)  # fmt: skip
    assert len(held_out) == len(SENTIMENT_PAIRS)


def test_a_test_split_of_training_rows_is_told_the_fix_as_each_caller_sets_options(tmp_path):
    """Its fix read 'give eval_file, or set eval_strategy: no' whoever called: a recipe's user
    a flag's verb, a flag's 'set --eval_strategy no', a keyword's 'set eval_strategy='no''."""
    from directpo.callers import Caller, Entry, Spelling, called_by

    folder = _folder(tmp_path)
    wanted = {
        Spelling.RECIPE: "dataset_test_split: train[:1] holds rows of dataset_train_split: "
        "train, so held-out pairs would be training pairs; name rows held out of training "
        "(train[:90%] beside train[90%:]), or set eval_file or eval_strategy: 'no'",
        Spelling.FLAGS: "--dataset_test_split 'train[:1]' holds rows of --dataset_train_split "
        "train, so held-out pairs would be training pairs; name rows held out of training "
        "(train[:90%] beside train[90%:]), or give --eval_file or --eval_strategy no",
        Spelling.PYTHON: "dataset_test_split='train[:1]' holds rows of dataset_train_split="
        "'train', so held-out pairs would be training pairs; name rows held out of training "
        "(train[:90%] beside train[90%:]), or pass eval_file=... or eval_strategy='no'",
    }
    for spelling, said in wanted.items():
        with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(ConfigError) as refused:
            load_named_dataset(_options(folder, train="train", test="train[:1]"),
                               "dataset_test_split", required=None)  # fmt: skip
        assert str(refused.value) == said


def test_a_stream_refuses_a_slice_in_one_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    options = _options(folder, train="train[:10%]")
    options.dataset_streaming = True
    with pytest.raises(DataError) as refused:
        load_named_dataset(options, "dataset_train_split", required="training")
    assert str(refused.value) == (
        f"dataset_name '{folder}': dataset_train_split: train[:10%] slices or joins splits, "
        "which a stream (dataset_streaming: true) cannot; name one split, or leave "
        "dataset_streaming off"
    )


def test_a_mixture_entrys_slice_is_read_and_a_files_refused(tmp_path: Path) -> None:
    """A dataset_mixture entry's split: train[:10%] of a folder was 'no split' too; a file's
    split is refused in one line, as before (a file holds one split)."""
    folder = _folder(tmp_path)
    opened = _opened(Source(id=str(folder), split="train[:10%]"))
    assert opened.size == len(list(opened.read())) == len(SENTIMENT_PAIRS)
    with pytest.raises(
        DataError, match="a file holds one split .* remove split: train\\[:10%\\], or list"
    ):
        _opened(Source(id=str(folder / "train.jsonl"), split="train[:10%]"))


def test_a_slice_of_a_train_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """train_file has no splits to slice: dataset_train_split: train[:10%] beside it is
    refused, not read as the whole file."""
    from directpo.config import DPOConfig

    path = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", train_file=str(path), dataset_train_split="train[:10%]")
    assert str(refused.value).startswith(
        "dataset_train_split='train[:10%]' picks a split of dataset_name"
    )
    assert "\n" not in str(refused.value)


def test_a_slice_past_the_end_or_a_rounding_datasets_refuses_is_one_line(tmp_path: Path) -> None:
    """train[100:200] of a 20-row split was an IndexError traceback, train[5:3] an empty
    eval set, and pct1_dropremainder of a split under 100 rows 'no split ... (it has train,
    test)' of a split that is there; now one line each, as datasets refuses them, and a
    slice partly past the end is clamped as datasets clamps it."""
    import datasets

    folder = _folder(tmp_path)
    whole = len(SENTIMENT_PAIRS) * 10
    label = f"dataset_name '{folder}'"
    for train, test, key in (
        ("train[100:200]", "test", "dataset_train_split"),
        ("train[:0]", "test", "dataset_train_split"),
        ("train[:10]", "train[15:12]", "dataset_test_split"),
    ):
        spec = train if key == "dataset_train_split" else test
        with pytest.raises(DataError) as refused:
            load_named_dataset(_options(folder, train=train, test=test), key, required=None)
        assert str(refused.value) == (
            f"{label}: {key}: {spec} picks no rows (it has train: {whole} rows, test: 2 rows)"
        )
    for spec, key in (
        ("train[:33%](pct1_dropremainder)", "dataset_train_split"),
        ("train[33%:](pct1_dropremainder)", "dataset_test_split"),
    ):
        options = _options(folder, train="train[:33%](pct1_dropremainder)", test=spec)
        with pytest.raises(DataError) as refused:
            load_named_dataset(options, key, required=None)
        assert str(refused.value).startswith(
            f'{label}: {key}: {spec}: Using "pct1_dropremainder" rounding on a split with less '
            "than 100 elements is forbidden"
        )
        assert "\n" not in str(refused.value)
    spec = f"train[{whole - 3}:{whole + 50}]+test"
    picked = load_named_dataset(_options(folder, train=spec), "dataset_train_split",
                                required="training")  # fmt: skip
    assert _prompts(picked) == _prompts(datasets.load_dataset(str(folder), split=spec))
    assert len(picked) == 3 + 2


def test_a_sum_of_splits_whose_columns_differ_is_one_line(tmp_path: Path) -> None:
    """train+test of a saved DatasetDict whose test split holds message lists where train holds
    texts was datasets' ValueError, a traceback; now one line naming the source and the spec."""
    import datasets

    texts = [{"prompt": "p", "chosen": "a", "rejected": "b"}]
    turns = [{"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}],
              "rejected": [{"role": "assistant", "content": "b"}]}]  # fmt: skip
    folder = tmp_path / "saved"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(texts), "test": datasets.Dataset.from_list(turns)}
    ).save_to_disk(str(folder))
    with pytest.raises(DataError) as refused:
        load_named_dataset(_options(folder, train="train+test", test="none"),
                           "dataset_train_split", required="training")  # fmt: skip
    said = str(refused.value)
    assert said.startswith(
        f"dataset_name '{folder}': dataset_train_split: train+test joins splits of other "
        "columns (The features can't be aligned"
    )
    assert "\n" not in said
