"""A local model folder or data file plainly not there is said before the command imports
torch (train took ~4 s on an idle CPU, 10 on a busy one, to say one missing path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).parents[1] / "src")

COMMAND = """
import sys
from directpo.cli import main
code = main(sys.argv[1:])
print(code, "torch" in sys.modules, "transformers" in sys.modules)
"""


def _directpo(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    return subprocess.run(
        [sys.executable, "-c", COMMAND, *argv],
        capture_output=True, text=True, env=env, timeout=120, cwd=cwd,
    )  # fmt: skip


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": " b", "rejected": " c"}) + "\n")
    return path


@pytest.mark.parametrize(
    "argv, said",
    [
        (
            ["train", "--model_name_or_path", "./no-model", "--train_file", "pairs.jsonl",
             "--output_dir", "out"],
            "directpo: error: model_name_or_path: no such model folder: ./no-model\n",
        ),
        (
            ["train", "--model_name_or_path", "/no/such/model", "--train_file", "gone.jsonl",
             "--output_dir", "out"],
            "directpo: error: 2 options cannot be used:\n"
            "  model_name_or_path: no such model folder: /no/such/model\n"
            "  train_file: no such file or folder: gone.jsonl\n",
        ),
        (
            ["generate", "--model_name_or_path", "run/", "--input", "gone.jsonl", "--output",
             "o.jsonl"],
            "directpo: error: 2 options cannot be used:\n"
            "  model_name_or_path: no such model folder: run/\n"
            "  input: no such file or folder: gone.jsonl\n",
        ),
        (
            ["score", "--model_name_or_path", "./run", "--input", "gone.jsonl", "--output",
             "o.jsonl"],
            "input: no such file or folder: gone.jsonl\n",
        ),
        (  # (checkpoint.py, which refused it, imported torch: ~3 s)
            ["train", "--model_name_or_path", "./no-model", "--train_file", "pairs.jsonl",
             "--output_dir", "out", "--resume_from_checkpoint", "latest"],
            "directpo: error: 2 options cannot be used:\n"
            "  model_name_or_path: no such model folder: ./no-model\n"
            "  --resume_from_checkpoint latest: no checkpoint in out to resume; give "
            "--resume_from_checkpoint null to start a new run\n",
        ),
    ],
)  # fmt: skip
def test_a_plainly_missing_path_is_said_before_torch_is_imported(tmp_path, pairs, argv, said):
    done = _directpo(*argv, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert done.stderr.endswith(said), done.stderr
    assert not (tmp_path / "out").exists()


def test_the_rows_beside_a_missing_model_are_read_without_torch(tmp_path) -> None:
    """score / rank / generate say their --input rows' problems beside a model folder that is
    not there: those rows were parsed by the command's modules, which import torch (5-13 s on
    this busy CPU); their parsers are command_row_parsers.py's now, the line unchanged."""
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a", "chosen": " b"}\n')
    done = _directpo(
        "rank", "--model_name_or_path", "./m", "--input", "bad.jsonl", "--output", "o.jsonl",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert done.stderr.splitlines() == [
        "directpo: error: 1 option cannot be used:",
        "  model_name_or_path: no such model folder: ./m",
        "and the data files' rows:",
        "  bad.jsonl: line 1: missing field 'responses' (nor 'completions'); the row has "
        "'prompt', 'chosen': name the field of its responses with --responses_column",
    ]


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_a_missing_input_beside_a_run_folder_is_said_without_torch(tmp_path, command) -> None:
    """score --model_name_or_path run/ (there) --input gone.jsonl: the check that run/ holds
    a directpo run's config.yaml (else --beta is asked for) imported torch with reward.py,
    2-10 s for the line; run_records.py reads it torch-free, in the same pass."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "config.json").write_text("{}")
    (run / "config.yaml").write_text("model_name_or_path: base\nbeta: 0.2\n")
    argv = ("--input", "gone.jsonl", "--output", "o.jsonl")
    done = _directpo(command, "--model_name_or_path", "run", *argv, cwd=tmp_path)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert done.stderr == "directpo: error: input: no such file or folder: gone.jsonl\n"
    if command != "generate":  # a folder of no run: its --beta asked for in the same line
        done = _directpo(command, "--model_name_or_path", "plain", *argv, cwd=tmp_path)
        assert done.stdout.split() == ["2", "False", "False"], done.stderr
        assert "plain has no config.yaml from a directpo run: give" in done.stderr


def test_a_hub_id_or_a_full_check_is_left_to_the_command(tmp_path, pairs) -> None:
    """A path of a hub id's shape may be one (the command asks the hub), and a CUDA-only
    option is judged by the device: the command's own check says them, all at once."""
    done = _directpo(
        "train", "--model_name_or_path", "/no/such/model", "--train_file", "pairs.jsonl",
        "--output_dir", "out", "--use_liger_kernel", cwd=tmp_path,
    )  # fmt: skip
    assert done.stdout.split()[:2] == ["2", "True"]
    assert "model_name_or_path: no such model folder: /no/such/model" in done.stderr
    assert "use_liger_kernel" in done.stderr


def test_a_configs_path_there_from_its_folder_alone_is_said(tmp_path, monkeypatch, capsys):
    """exp/cfg.yaml naming train_file: data.jsonl, the file beside it, run from exp's parent:
    'no such file or folder: data.jsonl' of a file the user sees there. The paths are read
    from the working directory (as TRL's scripts read them); the note says where it is."""
    from directpo.cli import main

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "data.jsonl").write_text(json.dumps({"prompt": "a", "chosen": " b", "rejected": " c"}))
    (exp / "cfg.yaml").write_text("model_name_or_path: ./m\ntrain_file: data.jsonl\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["train", "exp/cfg.yaml", "--output_dir", "out"]) == 2
    err = capsys.readouterr().err
    assert (
        "note: exp/cfg.yaml's train_file data.jsonl is read from the working directory, where "
        "it is not; it is there from exp/cfg.yaml's folder: write exp/data.jsonl (or run from "
        "exp)" in err
    ), err
    assert "train_file: no such file or folder: data.jsonl" in err
    assert "model_name_or_path ./m" not in err  # (there from neither)
    # a flag's path is the shell's, read from the working directory: no note
    assert main(["train", "exp/cfg.yaml", "--train_file", "data.jsonl"]) == 2
    assert "note:" not in capsys.readouterr().err


def test_a_reward_file_beside_the_config_alone_is_said(tmp_path, monkeypatch, capsys):
    """exp/cfg.yaml naming reward_fn: my_rewards.py:score (or the module my_rewards:score),
    the file beside it, run from exp's parent, was 'no such file my_rewards.py' (or 'cannot
    import my_rewards') with no note, where a data file there is told where it is."""
    from directpo.cli import main

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "beside_rewards_xyz.py").write_text("def score(prompts, completions):\n    return []\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    for spec in ("beside_rewards_xyz.py:score", "beside_rewards_xyz:score"):
        (exp / "cfg.yaml").write_text(
            f"model_name_or_path: ./m\nonline: true\nprompt_file: p.jsonl\nreward_fn: {spec}\n"
        )
        assert main(["train", "exp/cfg.yaml", "--prompt_file", "p.jsonl"]) == 2
        err = capsys.readouterr().err
        assert (
            f"note: exp/cfg.yaml's reward_fn {spec} is read from the working directory, where it "
            "is not; it is there from exp/cfg.yaml's folder: write exp/beside_rewards_xyz.py:score "
            "(or run from exp)" in err
        ), err
    (exp / "cfg.yaml").write_text("model_name_or_path: ./m\nreward_fn: math:sqrt\n")
    main(["train", "exp/cfg.yaml"])  # (an installed module: no note)
    assert "reward_fn math" not in capsys.readouterr().err


def test_a_records_model_no_longer_there_is_told_the_flag(tmp_path, pairs, monkeypatch, capsys):
    """A run's config.yaml resumed after its base model moved was 'no such model folder:
    /old/place' alone; the record names it absolute, and the flag that replaces it is said."""
    from directpo.cli import main
    from directpo.config import DPOConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    record = tmp_path / "run" / "config.yaml"
    record.parent.mkdir()
    gone = str(tmp_path / "models" / "base")
    DPOConfig(model_name_or_path=gone, train_file="pairs.jsonl", output_dir="run").save_record(
        record
    )
    assert main(["train", "run/config.yaml"]) == 2
    err = capsys.readouterr().err
    assert (
        f"note: run/config.yaml, a run's record, names model_name_or_path {gone}, which is no "
        "longer there (moved?): give --model_name_or_path with where it is now" in err
    ), err
    assert f"model_name_or_path: no such model folder: {gone}" in err
    (tmp_path / "recipe.yaml").write_text(f"model_name_or_path: {gone}\n")  # (a person's)
    assert main(["train", "recipe.yaml", "--train_file", "pairs.jsonl"]) == 2
    assert "note:" not in capsys.readouterr().err
