"""A folder given as score's, rank's or generate's --input: the advice fits the command."""

import json

import pytest

from directpo import cli


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
