"""Flags are said as the user typed them, and path options read ``~`` as a shell does."""

from __future__ import annotations

import os

import pytest

from directpo.cli import main
from directpo.command_options import (
    DemoOptions,
    GenerateOptions,
    PlotOptions,
    RankOptions,
    ScoreOptions,
)


@pytest.mark.parametrize("command", ["train", "score", "rank", "generate", "plot", "demo"])
def test_an_unknown_dashed_flag_is_said_as_typed(capsys, command) -> None:
    """``--help-me`` was said as ``--help_me`` (argv is underscored before it is read)."""
    assert main([command, "--help-me"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '--help-me'" in err and "help_me" not in err


def test_a_did_you_mean_keeps_its_own_spelling(capsys) -> None:
    assert main(["score", "--batch-sise", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '--batch-sise'; did you mean '--batch_size'?" in err


def test_a_note_on_a_dashed_flag_names_it_as_typed(capsys) -> None:
    assert main(["score", "--batch-size", "2", "--batch-size", "3"]) == 2
    err = capsys.readouterr().err
    assert "note: --batch-size is given 2 times: the last one (3) is used" in err


@pytest.mark.parametrize("flag", ["--torch_dtype", "--torch-dtype"])
def test_a_flag_of_another_tools_name_is_said_as_typed_with_what_it_means(capsys, flag) -> None:
    """``--torch_dtype float16 --bf16`` was told ``--dtype float16 with --bf16 ... remove
    --dtype float16``: a flag the user never typed."""
    assert main(["train", "--model_name_or_path", "m", flag, "float16", "--bf16"]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} float16 with --bf16: float16 is not supported" in err, err
    assert f"remove {flag} float16" in err and f"({flag} is directpo's --dtype)" in err
    assert err.count("--dtype") == 1  # (named once, in what the typed flag means)
    # both names given: which one a line means cannot be told, and it is said as read
    assert main(["train", "--model_name_or_path", "m", flag, "float16", "--dtype", "x"]) == 2
    assert "directpo's --dtype" not in capsys.readouterr().err


def test_what_another_tools_flag_means_is_said_on_its_own_line(tmp_path, capsys) -> None:
    """Beside a recipe's own problem, '(--torch_dtype is directpo's --dtype)' was added to the
    message's last line: the recipe's 'train_file: no such file or folder', not the line
    naming --torch_dtype."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\ntrain_file: missing.jsonl\n")
    assert main(["train", str(recipe), "--torch_dtype", "float16", "--bf16", "true"]) == 2
    lines = capsys.readouterr().err.splitlines()
    torch_dtype = [line for line in lines if "--torch_dtype float16 with --bf16" in line]
    assert len(torch_dtype) == 1 and torch_dtype[0].endswith(
        "(--torch_dtype is directpo's --dtype)"
    )
    assert [line for line in lines if "train_file" in line][0].endswith("missing.jsonl")
    assert sum("directpo's --dtype" in line for line in lines) == 1


def test_two_other_tools_flags_named_on_one_line_are_said_in_one_note(tmp_path, capsys) -> None:
    """'--top_k 5 ... --temperature 0' ended '... above 0 (--top_k is directpo's
    --generate_top_k) (--temperature is directpo's --generate_temperature)': two notes glued."""
    args = ["train", "--model_name_or_path", "m", "--eval_generate", "2", "--top_k", "5",
            "--temperature", "0"]  # fmt: skip
    assert main(args) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if "only shapes" in line]
    assert line.endswith(
        "give --temperature above 0 (--top_k is directpo's --generate_top_k; --temperature is "
        "directpo's --generate_temperature)"
    ), line


HOME = os.path.expanduser("~")


@pytest.mark.parametrize(
    "cls, keys",
    [
        (ScoreOptions, ("model_name_or_path", "ref_model_name_or_path", "input", "output")),
        (RankOptions, ("model_name_or_path", "ref_model_name_or_path", "input", "output")),
        (GenerateOptions, ("model_name_or_path", "input", "output")),
        (PlotOptions, ("run_dir", "output")),
        (DemoOptions, ("output_dir",)),
    ],
)
def test_every_command_path_option_expands_home(cls, keys) -> None:
    """``--input '~/x.jsonl'`` (quoted: the shell leaves it) was read as a folder named ~."""
    options = cls(**{key: f"~/{key}.jsonl" for key in keys})
    assert [getattr(options, key) for key in keys] == [f"{HOME}/{key}.jsonl" for key in keys]


def test_score_reads_a_quoted_home_input(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    argv = ["--model_name_or_path", "~/model", "--input", "~/in.jsonl", "--output", "~/o.jsonl"]
    assert main(["score", *argv]) == 2
    err = capsys.readouterr().err
    assert f"input: no such file or folder: {tmp_path}/in.jsonl" in err
    assert f"{tmp_path}/model" in err and "~" not in err


def test_key_value_overrides_and_openrlhfs_dataset_are_said_with_the_rows(tmp_path, capsys) -> None:
    """``train_file=bad.jsonl`` (tune run's override) and ``--dataset bad.jsonl`` (OpenRLHF's)
    were refused alone: the file's bad rows (and the other options' problems) came a run
    later. They are read as the option the refusal says to write, and said in the same error;
    a ``key=value`` after a list of data files was read as another file."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "a", "rejected": "a"}\n{"chosen": "b"}\n')
    rows = f"{bad}: line 1: chosen and rejected are identical; line 2: missing field 'rejected'"
    out = str(tmp_path / "out")
    for argv, said in [
        ([f"train_file={bad}", "beta=-1"], f"'train_file={bad}', 'beta=-1': options are flags"),
        (["--dataset", str(bad)], f"--dataset: give --train_file {bad} "),
        (["--dataset", str(bad), "--beta", "0"], "beta must be > 0"),
        (["--train_file", str(bad), "beta=2"], "'beta=2': options are flags here: --beta 2"),
        (["--eval_dataset", str(bad)], "--eval_dataset: give --eval_file or --dataset_test_split"),
    ]:
        assert main(["train", "--output_dir", out, *argv]) == 2
        err = capsys.readouterr().err
        assert said in err and rows in err and "no such file" not in err, err
    assert main(["train", "--output_dir", out, f"train_file={bad}", "beta=-1"]) == 2
    assert "beta must be > 0" in capsys.readouterr().err
    # a flag's own value written key=value is the value (a list's first one too)
    argv = ["train", "--output_dir", out, "--run_name", "lr=1e-5", "--train_file", "a=b.jsonl"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "options are flags" not in err and "no such file or folder: a=b.jsonl" in err


def test_a_stray_argument_or_a_flag_without_value_is_said_with_the_rows(tmp_path, capsys) -> None:
    """``-x``, a second free argument and ``--output_dir`` without its value were refused as
    the argv was read, alone: the data's bad rows (and each other) came a run later."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "a", "rejected": "a"}\n')
    rows = f"{bad}: line 1: chosen and rejected are identical"
    assert main(["train", "-x", "--train_file", str(bad), "--config"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '-x'" in err and "option --config needs a value" in err
    assert rows in err
    # ... after a list's values too: it was read as one more (no such file: -x)
    assert main(["train", "--train_file", str(bad), str(bad), "-x", "--output_dir", "o"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '-x'" in err and "-x" not in err.split("unknown option '-x'")[1], err
    assert rows in err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"train_file: {bad}\n")
    assert main(["train", str(recipe), "extra", "--output_dir"]) == 2
    err = capsys.readouterr().err
    assert "unexpected argument 'extra'" in err and "--output_dir needs a value" in err
    assert rows in err


def test_torchtunes_overrides_are_said_with_the_recipes_problems(tmp_path, capsys) -> None:
    """``directpo train recipe.yaml batch_size=2`` said the overrides alone: the recipe's own
    problems (its components, dtype: bf16) and a bad override value came a run after they were
    written as flags. They are said in the same error, the overrides read as their flags."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dtype: bf16\nloss:\n  _component_: torchtune.rlhf.loss.DPOLoss\n")
    assert main(["train", str(recipe), "batch_size=two", "optimizer.lr=1e-5"]) == 2
    err = capsys.readouterr().err
    assert "'batch_size=two', 'optimizer.lr=1e-5': options are flags here" in err
    assert "dtype must be one of float32, bfloat16 (got bf16)" in err
    assert "loss: DPOLoss is directpo's default loss" in err
    assert "per_device_train_batch_size" in err and "got two" in err


def test_a_replaced_value_is_said_beside_a_reference_to_a_flags_key(
    tmp_path, capsys, monkeypatch
) -> None:
    """``logging_dir: ${output_dir}/logs`` with output_dir given only as a flag: the file read
    alone could not resolve it, and every note of a flag replacing the file's value (beta:
    0.1 under --beta 0.2) was dropped with it."""
    import dataclasses

    from directpo.cli import COMMANDS

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("logging_dir: ${output_dir}/logs\nbeta: 0.1\n")
    monkeypatch.setitem(COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=lambda _: 0))
    assert main(["train", str(recipe), "--output_dir", "b", "--beta", "0.2"]) == 0
    assert f"--beta 0.2 replaces {recipe}'s beta: 0.1" in capsys.readouterr().err


def test_a_key_value_overrides_flag_is_written_as_a_shell_reads_it(tmp_path, capsys) -> None:
    """``'run_name=a b'`` was told ``--run_name a b``: pasted into a shell that is --run_name a
    and a stray ``b``; an empty value (``beta=``) was told ``--beta`` with none. Each value
    is quoted where a shell needs it."""
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"chosen": "a", "rejected": "b"}\n')
    argv = ["train", "--output_dir", str(tmp_path / "out"), "--train_file", str(pairs)]
    assert main([*argv, "run_name=a b", 'system_prompt=say "hi"', "beta=0.2", "seed="]) == 2
    err = capsys.readouterr().err
    written = "--run_name 'a b' --system_prompt 'say \"hi\"' --beta 0.2 --seed ''"
    assert f"options are flags here: {written}\n" in err, err
    # torchtune's and OpenRLHF's names are written as directpo's
    assert main([*argv, "batch_size=4", "optimizer.lr=1e-5"]) == 2
    written = "--per_device_train_batch_size 4 --learning_rate 1e-5"
    assert f"options are flags here: {written}\n" in capsys.readouterr().err


def test_a_flag_with_a_typographic_dash_says_the_flag(capsys) -> None:
    """``—beta 0.1`` (pasted from a page that made ``--`` an em dash) was read as the YAML file
    ('config file not found: —beta'), and ``score —input x`` as an unexpected argument."""
    assert main(["train", "—beta", "0.1", "–learning-rate=1e-6", "--run_name", "—mine"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "directpo: error: '—beta' ('—' is not '-'): write --beta, '–learning-rate' ('–' is "
        "not '-'): write --learning_rate (a typographic dash, as pasted from a page or a chat "
        "app)\n"
    )
    assert main(["score", "—input", "x"]) == 2
    assert "'—input' ('—' is not '-'): write --input" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, said",
    [
        (["train", "--BETA=0.1"], "unknown option '--BETA'; did you mean '--beta'?"),
        (["generate", "--MAX_NEW_TOKENS", "3"], "did you mean '--max_new_tokens'?"),
    ],
)
def test_an_option_in_capitals_is_told_its_name(capsys, argv, said) -> None:
    """``--BETA`` (an environment variable's habit) got no hint: options are lower case."""
    assert main(argv) == 2
    assert said in capsys.readouterr().err


def test_an_unknown_short_flags_value_is_not_taken_for_the_config_file(capsys) -> None:
    """``train -b 0.1`` said 'config file not found: 0.1' beside '-b' (its value read as the
    YAML file); a YAML file after one is still the file."""
    assert main(["train", "-b", "0.1", "--beta", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown option '-b'" in err and "beta must be a finite number" in err
    assert "0.1" not in err
    assert main(["train", "-b", "-0.1", "-v", "missing.yaml"]) == 2
    err = capsys.readouterr().err
    assert "config file not found: missing.yaml" in err and "-0.1" not in err


def test_a_whole_number_written_as_a_float_is_an_integer_flag(tmp_path) -> None:
    """``per_device_train_batch_size: 2.0`` in YAML (or Python) was 2, but the flag
    ``--per_device_train_batch_size 2.0`` (and ``--max_steps 1e3``) 'must be an integer'."""
    from directpo.cli_flags import yaml_and_flags
    from directpo.config import DPOConfig, load_config
    from directpo.errors import ConfigError

    flags = ["--per_device_train_batch_size", "2.0", "--max_steps", "1e3"]
    config = load_config(*yaml_and_flags(flags, DPOConfig))
    assert (config.per_device_train_batch_size, config.max_steps) == (2, 1000)
    assert type(config.max_steps) is int
    for value in ("2.5", "inf", "1e400"):
        with pytest.raises(ConfigError, match=f"max_steps must be an integer, got {value}"):
            load_config(*yaml_and_flags(["--max_steps", value], DPOConfig))


def test_a_replaced_values_note_writes_yaml_values(tmp_path) -> None:
    """A flag replacing ``seed: null`` or ``bf16: true`` was said to replace 'seed: None' and
    'bf16: True', Python's spellings of values the file wrote otherwise; a mapping was said
    as {'chat': 'a.jsonl'}."""
    from directpo.cli_flags import replaced_values

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: null\nbf16: true\neval_file: {chat: a.jsonl}\n")
    given = {"seed": 3, "bf16": False, "eval_file": "b.jsonl"}
    notes = replaced_values(
        ["--seed", "3", "--no_bf16", "--eval_file", "b.jsonl"], str(recipe), given
    )
    assert notes == [
        f"--seed 3 replaces {recipe}'s seed: null",
        f"--bf16 false replaces {recipe}'s bf16: true",
        f"--eval_file b.jsonl replaces {recipe}'s eval_file: {{chat: a.jsonl}}",
    ]


def test_a_flag_giving_the_files_value_spelt_otherwise_is_no_replacement(tmp_path) -> None:
    """--loss_type sigmoid beside the file's loss_type: [sigmoid] was said to replace
    'loss_type: sigmoid', and --learning_rate 5e-7 the file's 5.0e-7 (said 5e-07): notes of
    no change, as if the run took another value than the file's. A value spelt otherwise is
    the same value; another one is still said."""
    from directpo.cli_flags import replaced_values
    from directpo.config import DPOConfig

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "learning_rate: 5.0e-7\nmax_steps: 10\ngradient_checkpointing: true\n"
        "loss_type: [sigmoid]\nbeta: 0.1\ntorch_dtype: bfloat16\n"
    )
    same = {"learning_rate": "5e-7", "max_steps": "10.0", "gradient_checkpointing": "yes",
            "loss_type": "sigmoid", "beta": "0.10", "dtype": "bf16"}  # fmt: skip
    tokens = [text for key, value in same.items() for text in (f"--{key}", value)]
    assert replaced_values(tokens, str(recipe), same, DPOConfig) == [
        # (bf16 is refused in its own line: said as written)
        f"--dtype bf16 replaces {recipe}'s torch_dtype: bfloat16"
    ]
    other = {"beta": "0.2", "loss_type": "sigmoid,sft", "max_steps": "12"}
    tokens = [text for key, value in other.items() for text in (f"--{key}", value)]
    assert replaced_values(tokens, str(recipe), other, DPOConfig) == [
        f"--beta 0.2 replaces {recipe}'s beta: 0.1",
        f"--loss_type sigmoid,sft replaces {recipe}'s loss_type: sigmoid",
        f"--max_steps 12 replaces {recipe}'s max_steps: 10",
    ]
    # a path spelt otherwise (a shell's completion ends a folder in /) is the same file
    recipe.write_text("output_dir: runs/dpo\ntrain_file: [a.jsonl, data/b.jsonl]\n")
    same = {"output_dir": "runs/dpo/", "train_file": ["./a.jsonl", "data//b.jsonl"]}
    assert replaced_values([], str(recipe), same, DPOConfig) == []
    other = {"output_dir": "runs/dpo2", "train_file": ["a.jsonl"]}
    assert replaced_values([], str(recipe), other, DPOConfig) == [
        f"--output_dir runs/dpo2 replaces {recipe}'s output_dir: runs/dpo",
        f"--train_file a.jsonl replaces {recipe}'s train_file: a.jsonl,data/b.jsonl",
    ]


def test_help_gives_defaults_as_yaml_writes_them(capsys) -> None:
    """train --help said '(default: None)' and '(default: False)', Python's spellings, beside
    options whose YAML and flags are null and false."""
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: null)" in text and "(default: false)" in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_a_commands_key_value_override_says_its_flag(capsys, command) -> None:
    """``directpo score ... beta=0.3`` (tune run's override, which train reads as the flag it
    says to write) was 'unexpected argument' alone; it says its flag as train does."""
    assert main([command, "beta=0.3" if command != "generate" else "max_new_tokens=4"]) == 2
    err = capsys.readouterr().err
    flag = "--beta 0.3" if command != "generate" else "--max_new_tokens 4"
    assert "options are flags here: " + flag in err and "unexpected argument" not in err
    assert main([command, "no_such_option=4"]) == 2  # (no option of that name: stray)
    assert "unexpected argument 'no_such_option=4'" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [[], ["learning_rate=1e-5"]])
def test_a_config_file_not_there_is_said_with_the_flags_rows(tmp_path, capsys, extra) -> None:
    """``directpo train --train_file bad.jsonl ... stray`` (a word taken for the config file,
    which is not there) said 'config file not found: stray' alone, though the flags name the
    data: its bad rows came a run after the word was removed. (A word that names no YAML
    file after a one-value flag's value is said as stray: its own test.)"""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"chosen": "a", "rejected": "a"}\n')
    argv = ["train", "--train_file", str(bad), "--output_dir", str(tmp_path / "o"), "stray.yaml"]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err
    assert "config file not found: stray.yaml" in err
    assert f"{bad}: line 1: chosen and rejected are identical" in err


def test_a_recipes_refusal_a_flag_bears_on_names_the_flag(capsys, tmp_path, monkeypatch) -> None:
    """`directpo train recipe.yaml --lora_r 0` beside the file's lora_target_modules was told
    'set lora_r: 16', an edit of the file the flag then overrode (and --dtype float32 beside
    its eval_dtype 'set dtype: bfloat16'); a line whose problem names an option a flag set is
    told as the flag ('give --lora_r 16'). A line no flag bears on stays the file's."""
    from tiny import SENTIMENT_PAIRS, write_jsonl

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    base = "model_name_or_path: m\ntrain_file: pairs.jsonl\n"
    (tmp_path / "lora.yaml").write_text(base + "lora_target_modules: [q_proj]\n")
    (tmp_path / "eval.yaml").write_text(base + "eval_dtype: bfloat16\n")
    assert main(["train", "lora.yaml", "--lora_r", "0"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("lora_target_modules is set but lora_r is 0 (no LoRA); give --lora_r 16")
    )
    assert main(["train", "eval.yaml", "--dtype", "float32"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("; give --dtype bfloat16 (mixed precision) to evaluate as bf16 computes")
    )
    assert main(["train", "eval.yaml", "--beta", "-1"]) == 2  # (no flag bears on eval_dtype's)
    err = capsys.readouterr().err
    assert "\n  eval.yaml: eval_dtype: bfloat16 under dtype: float32: " in err
    assert "; set dtype: bfloat16 (mixed precision)" in err
    assert "\n  command line: beta must be > 0 (got -1)" in err


def test_a_recipes_and_its_flags_lines_are_each_said_in_their_sources_words(
    tmp_path, monkeypatch, capsys
) -> None:
    """``directpo train c.yaml --beta -1`` beside the file's own problem put the flag's 'beta
    must be > 0' under the file's heading 'c.yaml:' (or under none beside the file's line),
    and a line of a file's eval_dtype under a flag's --dtype said both as flags
    ('--eval_dtype bfloat16 under --dtype float32'), a flag the user never gave. Each line is
    headed by its source, and each value said in its own source's words."""
    from tiny import SENTIMENT_PAIRS, write_jsonl

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    base = "model_name_or_path: m\ntrain_file: pairs.jsonl\n"
    (tmp_path / "typo.yaml").write_text(base + "lerning_rate: 1.0e-6\n")
    assert main(["train", "typo.yaml", "--beta", "-1", "--bogus", "3"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  typo.yaml: unknown option 'lerning_rate'; did you mean 'learning_rate'?",
        "  command line: unknown option '--bogus'",
        "  command line: beta must be > 0 (got -1)",
    ]
    (tmp_path / "beta.yaml").write_text(base + "beta: 0\n")
    assert main(["train", "beta.yaml", "--max_steps", "-5"]) == 2
    assert capsys.readouterr().err.splitlines()[1:] == [
        "  beta.yaml: beta must be > 0 (got 0)",
        "  command line: max_steps must be -1 or 0 (num_train_epochs decides) or >= 1 (got -5)",
    ]
    (tmp_path / "eval.yaml").write_text(base + "eval_dtype: bfloat16\n")
    assert main(["train", "eval.yaml", "--dtype", "float32"]) == 2
    assert capsys.readouterr().err.strip() == (
        "directpo: error: eval_dtype: bfloat16 under --dtype float32: the run computes in "
        "float32 and so does its evaluation; give --dtype bfloat16 (mixed precision) to evaluate "
        "as bf16 computes"
    )
    assert main(["train", "--beta", "-1", "--max_steps", "-5"]) == 2  # (flags alone: no heading)
    assert "\n  beta must be > 0 (got -1)\n" in capsys.readouterr().err


def test_an_option_to_remove_is_named_as_its_source_wrote_it(tmp_path, monkeypatch, capsys):
    """``--use_peft true --lora_r 0`` was told 'remove lora_r ..., or use_peft', a recipe's keys
    that no command line holds; each option to remove is named as its source wrote it."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--use_peft", "true", "--lora_r", "0"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "; remove --lora_r 0 for rank 16 (TRL's default), or --use_peft to train every weight"
        )
    )
    (tmp_path / "peft.yaml").write_text("use_peft: true\n")
    assert main(["train", "peft.yaml", "--lora_r", "0"]) == 2
    mixed = "--lora_r 0 with use_peft: true: an adapter of rank 0 trains nothing (peft refuses"
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            f"{mixed} it); remove --lora_r 0 for rank 16 (TRL's default), or use_peft to train "
            "every weight"
        )
    )
    (tmp_path / "peft.yaml").write_text("use_peft: true\nlora_r: 0\n")
    assert main(["train", "peft.yaml"]) == 2
    assert "; remove lora_r for rank 16 (TRL's default), or use_peft to" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
@pytest.mark.parametrize(
    "rank", [["--local_rank=0"], ["--local-rank=1"], ["--local_rank", "0"]], ids=str
)
def test_a_launchers_local_rank_is_taken_by_every_command(command, rank, tmp_path, capsys) -> None:
    """The deepspeed launcher (and torch.distributed.launch) appends --local_rank=N to each
    process's command line: score / rank / generate refused it as an unknown option, as train
    (which takes TRL's local_rank) did not. It is taken and left (LOCAL_RANK says the rank)."""
    argv = [command, *rank, "--model_name_or_path", str(tmp_path / "nope")]
    argv += ["--input", str(tmp_path / "in.jsonl"), "--output", str(tmp_path / "out.jsonl")]
    assert main(argv) == 2  # (the missing input's refusal: the run got past the flags)
    err = capsys.readouterr().err
    assert "in.jsonl" in err and "--local" not in err
    assert main([command, "--local_rnk=0", *argv[1 + len(rank) :]]) == 2
    assert "unknown option '--local_rnk'" in capsys.readouterr().err  # (a typo is still said)


@pytest.mark.parametrize(
    ("flags", "got"),
    [
        (["--loss_weights", "-1", "2"], "-1 2"),
        (["--loss_weights", "1", "-2"], "1 -2"),
        (["--loss-weights", "-1e-5", "2"], "-1e-5 2"),
        # the equals form: 2 was read as a second config file ('config file not found: 2' and
        # 'one weight per loss_type (2) (got -1)'); the words after it are the list's too
        (["--loss_weights=-1", "2"], "-1 2"),
        (["--loss_weights=1", "-2"], "1 -2"),
    ],
)
def test_a_list_flag_keeps_every_value_after_a_negative_first_one(
    tmp_path, capsys, flags, got
) -> None:
    """``--loss_weights -1 2`` was joined as ``--loss_weights=-1`` (argparse's fix for a lone
    negative value), so 2 was a stray argument (or the config file): a list keeps them all,
    refused as the negative weight alone. ``--loss_weights=-1 2`` likewise."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\ntrain_file: missing.jsonl\n")
    argv = ["train", str(recipe), "--loss_type", "sigmoid", "sft", *flags]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    said = [line.strip() for line in lines if "command line" in line or "argument" in line]
    assert said == [f"command line: loss_weights must be >= 0 and not all 0 (got {got})"]


def test_a_list_flag_of_a_renamed_name_keeps_a_negative_looking_first_value(capsys) -> None:
    """OpenRLHF's --target_modules (lora_target_modules) reads as its list does: -1 and q
    both its modules, not -1 alone and q a config file."""
    argv = ["train", "--model_name_or_path", "m", "--target_modules", "-1", "q", "--lora_r", "8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "config file" not in err and "unexpected argument" not in err, err


@pytest.mark.parametrize(
    ("argv", "stray", "flag"),
    [
        (["train", "--reward_fn", "m:f", "m:g"], "m:g", "--reward_fn"),
        (["train", "--model_name_or_path", "a", "b"], "b", "--model_name_or_path"),
        (["train", "--beta", "0.1", "0.2"], "0.2", "--beta"),
        (["train", "--config", "a.yaml", "b"], "b", "--config"),
        (["train", "--beta=0.1", "0.2", "--loss_type", "sigmoid", "hinge"], "0.2", "--beta"),
        (["score", "--beta", "0.1", "0.2"], "0.2", "--beta"),
        (["generate", "--max-new-tokens", "5", "6"], "6", "--max-new-tokens"),
    ],
)
def test_a_second_word_after_a_one_value_flag_is_said_as_stray(capsys, argv, stray, flag) -> None:
    """``train --reward_fn m:f m:g`` was told 'config file not found: m:g' (--beta 0.1 0.2:
    '... not found: 0.2'), score's 'unexpected argument '0.2'' without its flag; each names the
    flag and the stray word (a list flag's words are its values: hinge is loss_type's)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"unexpected argument '{stray}' ({flag} takes one value)" in err, err
    assert f"config file not found: {stray}" not in err and "loss_type" not in err, err


def test_a_config_file_after_a_one_value_flag_is_still_the_config(capsys, tmp_path) -> None:
    """A YAML file (or any file there) after a flag's value is the config, not a stray word."""
    assert main(["train", "--beta", "0.1", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_yaml_file_after_a_flag_of_score_is_said_as_no_config(capsys) -> None:
    """score --beta 0.1 r.yaml was told '(--beta takes one value)' where a YAML file anywhere
    else is told that score reads none."""
    assert main(["score", "--beta", "0.1", "r.yaml"]) == 2
    err = capsys.readouterr().err
    assert "unexpected argument 'r.yaml'; score, rank and generate read no config file" in err
    assert "takes one value" not in err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        # a second config was told '(--beta takes one value)', or nothing at all
        (["--beta", "0.2", "extra.yaml"], "'extra.yaml' (one config file is read, r.yaml: give "),
        (["extra.yaml"], "'extra.yaml' (one config file is read, r.yaml: give extra.yaml's "),
        (["--bf16", "r.yaml"], "'r.yaml' (the config file, given twice)"),
        # a switch's written value is its one value, as a one-value flag's
        (["--bf16", "true", "false"], "'false' (--bf16 takes one value)"),
        (["--bf16=true", "false"], "'false' (--bf16 takes one value)"),
    ],
)
def test_a_second_config_or_a_switchs_second_word_is_said_why(
    capsys, tmp_path, monkeypatch, argv, said
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text("model_name_or_path: base\n")
    (tmp_path / "extra.yaml").write_text("beta: 0.2\n")
    assert main(["train", "r.yaml", *argv]) == 2
    assert f"unexpected argument {said}" in capsys.readouterr().err
