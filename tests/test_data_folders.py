"""A folder given as score's, rank's or generate's --input: the advice fits the command."""

import json
import shlex

import datasets
import pytest

from directpo import cli
from directpo.config import DPOConfig
from directpo.data import load_preferences
from directpo.data_folders import mixed_splits, repeated_file, split_named
from directpo.errors import ConfigError, DataError
from directpo.preflight import check_run


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_folder_advice_fits_the_command(tmp_path, capsys, command):
    """A DatasetDict folder of several splits told score to 'give the folder as train's
    dataset_name', an option it has not."""
    folder = tmp_path / "dd"
    folder.mkdir()
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    code = cli.main([command, "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", str(folder), "--output", str(tmp_path / "out.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"holds several splits (train, test); point to one, e.g. {folder / 'train'}" in err
    assert "dataset_name" not in err


def test_snapshot_folder_advice_fits_score(tmp_path, capsys):
    """A folder of data files told score it 'is read whole by train's dataset_name'."""
    (tmp_path / "snap" / "data").mkdir(parents=True)
    (tmp_path / "snap" / "data" / "train.jsonl").write_text('{"prompt": "p"}\n')
    code = cli.main(["score", "--model_name_or_path", str(tmp_path / "nope"), "--input",
                     str(tmp_path / "snap"), "--output", str(tmp_path / "out.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "dataset_name" not in err
    assert f"give one of its data files ({tmp_path / 'snap' / 'data' / 'train.jsonl'})" in err


def _hub_snapshot(root, splits: dict[str, int]) -> None:
    """A folder as hf download leaves one: data/{split}-0000i-of-0000n.parquet."""
    (root / "data").mkdir(parents=True)
    for split, shards in splits.items():
        for shard in range(shards):
            rows = [{"prompt": f"{split} {shard} {i}", "chosen": "yes", "rejected": "no"}
                    for i in range(3)]  # fmt: skip
            name = f"{split}-{shard:05d}-of-{shards:05d}.parquet"
            datasets.Dataset.from_list(rows).to_parquet(str(root / "data" / name))


def test_a_glob_over_a_snapshots_splits_is_refused(tmp_path, capsys, tiny_model_dirs):
    """train_file: data/*.parquet of a hub snapshot trained on its test split's pairs too (9
    pairs, 3 of them the test split's), and as eval_file evaluated the training pairs."""
    _hub_snapshot(tmp_path / "snap", {"train": 2, "test": 1})
    data = tmp_path / "snap" / "data"
    model = str(tiny_model_dirs["gpt2"])
    code = cli.main(["train", "--model_name_or_path", model, "--train_file", f"{data}/*.parquet",
                     "--output_dir", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "out" / "metrics.jsonl").exists()
    assert (
        f"train_file: {data / 'test-00000-of-00001.parquet'} is the test split's by name, beside "
        f"the train split's ({data / 'train-00000-of-00002.parquet'}, "
        f"{data / 'train-00001-of-00002.parquet'}): held-out pairs would be trained on" in err
    )
    # the shell's expansion of it is the same list of files
    files = [str(path) for path in sorted(data.glob("*.parquet"))]
    code = cli.main(["train", "--model_name_or_path", model, "--train_file", *files,
                     "--output_dir", str(tmp_path / "out")])  # fmt: skip
    assert code == 2 and "held-out pairs would be trained on" in capsys.readouterr().err
    config = DPOConfig(model_name_or_path=model, train_file=files[1], output_dir=str(tmp_path),
                       eval_file={"held": f"{data}/*.parquet"})  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        check_run(config, "cpu")
    assert (
        f"eval_file held: {files[1]}, {files[2]} are the train split's by name, beside the "
        f"test split's ({files[0]}): training pairs would be evaluated as held out"
    ) in str(refused.value)


def test_files_of_one_split_are_not_refused(tmp_path):
    """Files of one split (and files no split word names) are read as the user listed them."""
    _hub_snapshot(tmp_path / "snap", {"train_prefs": 2, "test_prefs": 1})
    data = tmp_path / "snap" / "data"
    trains = [str(path) for path in sorted(data.glob("train*.parquet"))]
    assert mixed_splits("train_file", trains) is None
    (tmp_path / "contest.jsonl").write_text("")  # ("test" inside a word names no split)
    (tmp_path / "latest.jsonl").write_text("")
    assert mixed_splits("train_file", [trains[0], str(tmp_path / "contest.jsonl")]) is None
    assert mixed_splits("train_file", [trains[0], str(tmp_path / "latest.jsonl")]) is None
    # (a split word in the folders above the files' shared one names none of them)
    assert mixed_splits("eval_file", [str(data / "test_prefs-00000-of-00001.parquet")]) is None
    assert mixed_splits("train_file", [trains[0], str(data / "test_prefs-00000-of-00001.parquet")])


@pytest.mark.parametrize(
    "name, split",
    [("data/train_prefs-00000-of-00001.parquet", "train"), ("dev.jsonl", "validation"),
     ("valid/0000.parquet", "validation"), ("data/eval.jsonl.gz", "test"),
     ("contest.jsonl", None), ("trainer_notes.jsonl", None), ("train/test.jsonl", "test")],
)  # fmt: skip
def test_split_named_as_datasets_reads_file_names(tmp_path, name, split):
    assert split_named(str(tmp_path / name), str(tmp_path)) == split


def test_a_snapshot_folder_shows_each_splits_files_not_the_test_one_alone(tmp_path):
    """train_file: a hub snapshot folder was told 'give one of its data files
    (data/test-00000-of-00001.parquet)', the first in sorted order: the test split's."""
    _hub_snapshot(tmp_path / "snap", {"train": 2, "test": 1})
    (tmp_path / "snap" / "README.md").write_text("---\nconfigs: []\n---\n")
    data = tmp_path / "snap" / "data"
    with pytest.raises(DataError) as refused:
        load_preferences(str(tmp_path / "snap"))
    assert (
        f"give the data files of one split (train: {data / 'train-00000-of-00002.parquet'}, ...; "
        f"test: {data / 'test-00000-of-00001.parquet'}); a folder of data files (a hub "
        "dataset's snapshot) is read whole by train's dataset_name"
    ) in str(refused.value)


def test_a_file_listed_twice_is_refused(tmp_path, monkeypatch):
    """train_file: [data/train-*.parquet, data/train-00000-of-00002.parquet] (or a.jsonl beside
    ./a.jsonl) read the file twice: each pair trained twice, said as 'repeat an earlier pair'."""
    monkeypatch.chdir(tmp_path)
    _hub_snapshot(tmp_path / "snap", {"train": 2})
    shard = "snap/data/train-00000-of-00002.parquet"
    config = DPOConfig(model_name_or_path="m", output_dir="o",
                       train_file=["snap/data/train-*.parquet", shard])  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        check_run(config, "cpu")
    assert (
        f"train_file: lists {shard} twice (a glob pattern beside the file's own path, or two "
        "paths of one file), so each of its pairs would be read twice; list it once"
    ) in str(refused.value)
    said = repeated_file("eval_file held", [shard, f"./{shard}"])
    assert said.startswith(f"eval_file held: lists {shard} (as ./{shard} too) twice")
    other = "snap/data/train-00001-of-00002.parquet"
    assert repeated_file("train_file", [shard, other]) is None
    assert repeated_file("eval_file", {"a": [shard], "b": [shard]}) is None  # (sets apart)


def test_files_of_two_splits_listed_on_purpose_are_told_how_to_read_them(
    tmp_path, monkeypatch, capsys
):
    """train_file: [train.jsonl, dev.jsonl] (train and dev together for a final run) was
    refused with no way to train on both but renaming the files; the line says one, and the
    way it says is read (a file as its own mixture source, an eval file as its own set)."""
    monkeypatch.chdir(tmp_path)
    for name in ("train.jsonl", "dev.jsonl"):
        (tmp_path / name).write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    config = DPOConfig(
        model_name_or_path="m", output_dir="o", train_file=["train.jsonl", "dev.jsonl"]
    )
    with pytest.raises(ConfigError) as refused:
        check_run(config, "cpu")
    assert str(refused.value).endswith(
        "(to train on them all, give each file as its own source in train_file's place: "
        "dataset_mixture: {datasets: [{id: train.jsonl}, {id: dev.jsonl}]})"
    )
    mixture = {"datasets": [{"id": "train.jsonl"}, {"id": "dev.jsonl"}]}
    check_run(DPOConfig(model_name_or_path="m", output_dir="o", dataset_mixture=mixture), "cpu")
    # a command line is told the flag, quoted for its shell, and the flag it is told is read
    argv = ["train", "--model_name_or_path", "nope", "--output_dir", "o"]
    assert cli.main([*argv, "--train_file", "train.jsonl", "dev.jsonl"]) == 2
    flag = "--dataset_mixture '{datasets: [{id: train.jsonl}, {id: dev.jsonl}]}'"
    assert capsys.readouterr().err.rstrip().endswith(f"train_file's place: {flag})")
    cli.main([*argv, *shlex.split(flag)])
    assert "dataset_mixture: dev.jsonl: 1 pair" in capsys.readouterr().out
    config = DPOConfig(model_name_or_path="m", output_dir="o", train_file="train.jsonl",
                       eval_file=["dev.jsonl", "train.jsonl"])  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        check_run(config, "cpu")
    assert str(refused.value).endswith(
        "(to evaluate them all, name each its own set: "
        "eval_file: {held: dev.jsonl, seen: train.jsonl})"
    )
    named = {"held": "dev.jsonl", "seen": "train.jsonl"}
    check_run(DPOConfig(model_name_or_path="m", output_dir="o", train_file="train.jsonl",
                        eval_file=named), "cpu")  # fmt: skip


def test_a_glob_over_a_hub_cache_folders_revisions_is_refused(tmp_path, monkeypatch):
    """snapshots/*/data/*.parquet of a hub cache folder (downloaded at two revisions) trained
    each revision's pairs, the same pairs twice, said only as 'repeat an earlier pair'; as
    train_file, eval_file and a mixture's data_files it is refused naming the revisions."""
    from directpo.mixture_entries import missing_sources

    cache = tmp_path / "datasets--org--prefs"
    for revision in ("aaa111", "bbb222"):
        _hub_snapshot(cache / "snapshots" / revision, {"train": 1})
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("bbb222")
    pattern = f"{cache}/snapshots/*/data/*.parquet"
    said = (
        "lists the files of 2 snapshots (revisions) of one hub cache folder (aaa111, bbb222), "
        "each revision's pairs read once more: give one snapshot's files, or the folder as "
        f"dataset_name (its refs/main snapshot is read): {cache}"
    )
    for key in ("train_file", "eval_file"):
        config = DPOConfig(model_name_or_path="m", output_dir=str(tmp_path / "o"),
                           **{key: pattern})  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            check_run(config, "cpu")
        assert f"{key}: {said}" in str(refused.value)
    monkeypatch.chdir(tmp_path)
    for files in (pattern, {"train": pattern}):
        entry = {"id": "parquet", "data_files": files}
        where = "data_files: train" if isinstance(files, dict) else "data_files"
        assert missing_sources({"datasets": [entry]}) == [
            f"dataset_mixture: parquet: {where}: {said}"
        ]
    one = f"{cache}/snapshots/bbb222/data/*.parquet"
    assert missing_sources({"datasets": [{"id": "parquet", "data_files": one}]}) == []
    assert (
        mixed_splits("train_file", sorted(map(str, cache.glob("snapshots/*/data/*")))[:1]) is None
    )


def test_a_glob_over_two_train_splits_of_a_snapshot_is_refused(tmp_path):
    """train_file: data/train*.parquet of HuggingFaceH4/ultrafeedback_binarized read its
    train_prefs, train_sft and train_gen splits as one (the same pairs three times), said only
    as 'N of them repeat an earlier pair (kept)'; shards of one split, or of two datasets'
    folders, are read as listed."""
    _hub_snapshot(tmp_path / "snap", {"train_prefs": 2, "train_sft": 1, "test_prefs": 1})
    data = tmp_path / "snap" / "data"
    config = DPOConfig(model_name_or_path="m", output_dir=str(tmp_path / "o"),
                       train_file=f"{data}/train*.parquet")  # fmt: skip
    with pytest.raises(ConfigError) as refused:
        check_run(config, "cpu")
    prefs = [str(data / f"train_prefs-0000{i}-of-00002.parquet") for i in range(2)]
    assert (
        f"train_file: lists the files of 2 splits of one dataset, by the names the hub gives a "
        f"split's files (train_prefs: {prefs[0]}, {prefs[1]}; train_sft: "
        f"{data / 'train_sft-00000-of-00001.parquet'}), read as one: give one split's files, or "
        "the dataset's folder as dataset_name"
    ) in str(refused.value)
    sft = data / "train_sft-00000-of-00001.parquet"
    assert str(refused.value).endswith(
        f"(to train on them all, give each file as its own source in train_file's place: "
        f"dataset_mixture: {{datasets: [{{id: {prefs[0]}}}, {{id: {sft}}}]}}, and so for each "
        "other file)"
    )
    assert mixed_splits("train_file", prefs) is None
    _hub_snapshot(tmp_path / "other", {"train": 1})
    assert (
        mixed_splits(
            "train_file",
            [prefs[0], str(tmp_path / "other" / "data" / "train-00000-of-00001.parquet")],
        )
        is None
    )
