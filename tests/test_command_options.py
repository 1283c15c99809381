"""The options of score, rank, generate, demo and plot built from Python."""

from __future__ import annotations

import dataclasses
import re

import pytest

from directpo.cli import COMMANDS
from directpo.command_options import GenerateOptions, ScoreOptions
from directpo.errors import ConfigError


@pytest.mark.parametrize("options", [command.options for command in COMMANDS.values()])
def test_an_unknown_keyword_is_the_one_line_with_a_hint(options) -> None:
    """``ScoreOptions(model_name_or_pth=...)`` (every command's options but DPOConfig) raised
    Python's TypeError "__init__() got an unexpected keyword argument"; it is the ConfigError a
    flag gets, with the option meant (exit 2 in a script run by the CLI's rules)."""
    first = dataclasses.fields(options)[0].name
    typo = first[:-1] + first[-1].upper() + "x"
    with pytest.raises(ConfigError) as info:
        options(**{typo: "x"})
    said = str(info.value)
    assert options.__name__ in said and f"'{typo}'" in said and f"'{first}'" in said
    assert "\n" not in said


@pytest.mark.parametrize("options", [ScoreOptions, GenerateOptions])
def test_every_unknown_keyword_is_said_in_one_call(options) -> None:
    """ScoreOptions(bta=0.1, gamma=3, torch_dtype=...) said bta alone, gamma and torch_dtype
    only once bta was fixed (the flags and DPOConfig say every unknown name at once); each
    is said in the one error, in the order given."""
    with pytest.raises(ConfigError) as info:
        options(bta=0.1, gamma=3, torch_dtype="bfloat16")
    said = [line.strip() for line in str(info.value).splitlines() if "is unknown" in line]
    name = options.__name__
    assert [line.split(" is unknown")[0] for line in said] == [
        f"{name}: option 'bta'",
        f"{name}: option 'gamma'",
        f"{name}: option 'torch_dtype'",
    ]
    assert said[2].endswith("; pass dtype=... (float32 or bfloat16)")


def test_a_foreign_keyword_says_what_to_use() -> None:
    """generate()'s max_tokens (vLLM's name) says the option, with the keyword's value."""
    with pytest.raises(ConfigError, match="'max_tokens' is unknown; pass max_new_tokens=8$"):
        GenerateOptions(max_tokens=8)


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_trains_names_say_the_commands_own(command, capsys) -> None:
    """``score --bf16`` (train's, TRL's flag) was 'unknown option' without a word of --dtype;
    train's names for these commands' options say the option to use."""
    from directpo.cli import main

    for flag, said in (
        ("--bf16", "give --dtype bfloat16"),
        ("--per_device_eval_batch_size=4", "give --batch_size"),
        ("--output_dir=x", "give --output (a .jsonl file)"),
    ):
        assert main([command, flag]) == 2
        assert f"unknown option '{flag.split('=')[0]}'; {said}" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=re.escape("'torch_dtype' is unknown; pass dtype=...")):
        ScoreOptions(torch_dtype="bfloat16")  # (a Python call: it was told the flag --dtype)


@pytest.mark.parametrize("key", sorted(GenerateOptions.FOREIGN_KEYS))
def test_every_foreign_name_is_told_in_the_callers_words(key, capsys) -> None:
    """Every name of the commands' FOREIGN_KEYS table (ScoreOptions' are GenerateOptions' too):
    a flag's advice writes flags, a Python call's keywords, each an option the command has."""
    from directpo.cli import main

    assert main(["generate", f"--{key}", "1"]) == 2
    flagged = capsys.readouterr().err.strip().split("; ", 1)[-1]
    with pytest.raises(ConfigError) as refused:
        GenerateOptions(**{key: 1})
    keyword = str(refused.value).split("; ", 1)[-1]
    names = {field.name for field in dataclasses.fields(GenerateOptions)}
    assert not re.findall(r"\b[a-z_]+=", flagged), flagged
    assert set(re.findall(r"--([a-z_]+)", flagged)) <= names, flagged
    assert "--" not in keyword, keyword
    assert set(re.findall(r"\b([a-z_]+)=", keyword)) <= names, keyword


def test_a_rows_file_or_config_file_given_bare_says_the_flag(tmp_path, capsys) -> None:
    """``score pairs.jsonl`` and ``generate x.yaml`` / ``--config x.yaml`` (train's habits) were
    'unexpected argument' or 'unknown option' without a word of what to write."""
    from directpo.cli import main

    rows = tmp_path / "pairs.jsonl"
    rows.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    assert main(["score", str(rows)]) == 2
    assert f"unexpected argument '{rows}'; the rows to read are --input {rows}" in (
        capsys.readouterr().err
    )
    said = "read no config file: give their options as flags"
    for argv in (["generate", "x.yaml"], ["rank", "--config", "x.yaml"]):
        assert main(argv) == 2
        assert said in capsys.readouterr().err


def test_several_input_files_or_a_pattern_say_one_file_is_read(tmp_path, capsys) -> None:
    """``--input p*.jsonl`` unquoted (the shell gives every file) was refused as an unexpected
    second file whose hint said to give *it* as --input; quoted, 'no such file or folder'
    alone. Each says these commands read one file."""
    from directpo.cli import main

    for name in ("p1.jsonl", "p2.jsonl"):
        (tmp_path / name).write_text('{"prompt": "a", "response": "b"}\n')
    first, second = tmp_path / "p1.jsonl", tmp_path / "p2.jsonl"
    for command in ("score", "rank", "generate"):
        for given in (["--input", str(first), str(second)], [f"--input={first}", str(second)]):
            assert main([command, *given]) == 2
            err = capsys.readouterr().err
            assert f"--input takes one file, given 2: {first} {second}" in err
            assert "the rows to read are" not in err
        rest = ["--model_name_or_path", str(tmp_path / "m"), "--output", str(tmp_path / "o.jsonl")]
        assert main([command, "--input", str(tmp_path / "p*.jsonl"), *rest]) == 2
        said = f"{tmp_path / 'p*.jsonl'} (a pattern matching 2 files: score, rank and generate"
        assert said in capsys.readouterr().err


def test_a_pattern_matching_one_input_file_names_it(tmp_path) -> None:
    """A quoted ``--input 'p*.jsonl'`` matching one file was told 'score, rank and generate
    read one file; join them first', with nothing to join: the file it matches is named."""
    from directpo.option_paths import missing_path

    (tmp_path / "p1.jsonl").write_text("{}\n")
    said = missing_path("input", f"{tmp_path}/p*.jsonl")
    assert said.endswith(f"(a pattern, matching {tmp_path}/p1.jsonl alone: give that file)")
    assert "matching no file" in missing_path("input", f"{tmp_path}/q*.jsonl")


def test_an_hf_path_as_input_says_it_is_not_read() -> None:
    """hf:// is read only as a mixture's data_files: train_file's line says so, the others'
    that it is not read there; a pattern's hint is score's, rank's and generate's alone."""
    from directpo.option_paths import missing_path

    given = "hf://datasets/org/name/file.jsonl"
    for key in ("input", "eval_file", "prompt_file"):
        assert missing_path(key, given) == (
            f"{key}: no such file or folder: {given} (hf:// paths are not read here: download "
            "the file and give it)"
        )
    assert "dataset_mixture: {datasets: [{id: json, data_files: " + given in missing_path(
        "train_file", given
    )
    assert (
        missing_path("prompt_file", "p*.jsonl") == "prompt_file: no such file or folder: p*.jsonl"
    )


def test_the_input_file_as_the_output_is_refused(tmp_path, capsys, monkeypatch) -> None:
    """``--output pairs.jsonl`` naming the input itself (./pairs.jsonl, another spelling
    too) replaced the user's file with the rows written, its pristine copy gone; each command
    refuses it before any model loads, and the input stays as it was."""
    from directpo.cli import main

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n')
    for command in ("score", "rank", "generate"):
        argv = [command, "--model_name_or_path", str(tmp_path / "m"), "--input", "pairs.jsonl",
                "--output", "./pairs.jsonl"]  # fmt: skip
        assert main(argv) == 2
        assert (
            "output: ./pairs.jsonl is the input file; give another name (the input would be "
            "replaced by the rows written)" in capsys.readouterr().err
        )
    assert data.read_text() == '{"prompt": "a", "chosen": "b", "rejected": "c"}\n'
    argv = ["score", "--model_name_or_path", str(tmp_path / "m"), "--input", "pairs.jsonl",
            "--output", "new.jsonl"]  # fmt: skip
    assert main(argv) == 2
    assert "is the input file" not in capsys.readouterr().err


def test_a_missing_required_option_is_named_as_its_caller_gives_it() -> None:
    """score_file(ScoreOptions(model_name_or_path=...)) without input / output was told
    "--input is required", a flag, in Python: it names the keywords; the CLI keeps its flags."""
    from directpo.errors import ConfigError
    from directpo.reward_files import score_file

    with pytest.raises(ConfigError) as err:
        score_file(ScoreOptions(model_name_or_path="x"))
    assert str(err.value).splitlines()[1:] == [
        "  input=... is required",
        "  output=... is required",
    ]
