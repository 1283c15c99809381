from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys

import pytest

import directpo.reference
from directpo.cli import COMMANDS, main
from directpo.config import option_names
from directpo.options import option_help
from directpo.tracking import read_metrics

GOOD = '{"prompt": "The movie was", "chosen": " great.", "rejected": " bad."}\n'


@pytest.fixture
def no_model_loading(monkeypatch):
    """Bad input must fail before any model loads."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was validated")

    monkeypatch.setattr(directpo.reference, "load_causal_lm", refuse)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def train_argv(model, data, out, *flags: str) -> list[str]:
    """``directpo train`` on ``data`` into ``out``, no trackers; later flags win."""
    return [
        "train",
        "--model_name_or_path",
        str(model),
        "--train_file",
        str(data),
        "--report_to",
        "none",
        "--output_dir",
        str(out),
        *flags,
    ]


BAD_FILES = [
    (GOOD + '{"prompt": "x", "chosen": \n', "line 2: invalid JSON"),
    (GOOD + '{"prompt": "x", "rejected": "y"}\n', "line 2: missing field 'chosen'"),
    (
        GOOD + GOOD + '{"prompt": "x", "chosen": "", "rejected": "y"}\n',
        "line 3: field 'chosen' is empty",
    ),
    (
        '{"prompt": "x", "chosen": ["a"], "rejected": "y"}\n',
        "line 1: field 'chosen' must be a string, got a list",
    ),
    (
        '{"prompt": "x", "chosen": "same", "rejected": "same"}\n',
        "line 1: chosen and rejected are identical",
    ),
    ("", "no rows (the file is empty)"),
]


@pytest.mark.parametrize("content, problem", BAD_FILES)
def test_bad_data_gives_one_line_and_exit_2(
    tiny_model_dirs, tmp_path, capsys, no_model_loading, content, problem
) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(content)
    code, err = run_cli(capsys, *train_argv(tiny_model_dirs["gpt2"], data, tmp_path / "out"))
    assert code == 2
    assert err.startswith(f"directpo: error: {data}: {problem}")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_unknown_column_is_named(tiny_model_dirs, tmp_path, capsys, no_model_loading) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(GOOD)
    code, err = run_cli(
        capsys,
        *train_argv(tiny_model_dirs["gpt2"], data, tmp_path / "o", "--chosen_column", "better"),
    )
    assert code == 2 and "column 'better' not found" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning_rate", "-1"], "learning_rate must be > 0"),
        (["--beta", "0"], "beta must be > 0"),
        (["--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
        (["--max_steps", "ten"], "max_steps must be an integer"),
        (
            ["--gradient_checkpointing", "yes please"],
            "gradient_checkpointing must be true or false",
        ),
        (
            ["--learning_rat", "1"],
            "unknown option '--learning_rat'; did you mean '--learning_rate'?",
        ),
        (["--train_file", "missing.jsonl"], "train_file: no such file or folder: missing.jsonl"),
        (["--model_name_or_path", "./no/such/model"], "model_name_or_path: no such model folder"),
    ],
)
def test_bad_options_fail_before_any_model_loads(
    tiny_model_dirs, tmp_path, capsys, no_model_loading, flags, message
) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(GOOD)
    code, err = run_cli(capsys, *train_argv(tiny_model_dirs["gpt2"], data, tmp_path / "o", *flags))
    assert code == 2
    err = err.split("is used\n")[-1]  # (after the note on a flag these flags give again)
    assert err.startswith("directpo: error: ") and message in err and err.count("\n") == 1


def test_help_lists_every_option_with_its_default(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in option_names():
        assert f"--{name}" in out, name
    assert "(default: 0.1)" in out  # beta
    # in sections (153 options in one list hid the LoRA ones among the rest), in the order the
    # config declares them; TRL's other spellings said
    from directpo.cli_commands import TRAIN_HELP_GROUPS

    firsts = [option_names().index(first) for _, first in TRAIN_HELP_GROUPS]
    assert firsts == sorted(firsts) and firsts[0] == 0
    headings = [out.index(f"\n{title}:\n") for title, _ in TRAIN_HELP_GROUPS]
    assert headings == sorted(headings)
    lora = out.index("  --lora_r ")
    assert headings[2] < lora < headings[3]  # under "adapters (LoRA, QLoRA)"
    assert "evaluation_strategy (eval_strategy)" in " ".join(out.split())
    assert "or --config FILE, TRL's spelling" in " ".join(out.split())


def test_flags_override_the_yaml_file(tiny_model_dirs, pairs_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"model_name_or_path: {tiny_model_dirs['gpt2']}\ntrain_file: {pairs_file}\n"
        f"output_dir: {out}\nmax_steps: 5\nlogging_steps: 1\nreport_to: none\n"
        "learning_rate: 1e-4\n"
    )
    assert main(["train", str(cfg), "--max_steps", "2"]) == 0
    assert [row["step"] for row in read_metrics(out)] == [1, 2]
    # the last line says how to use the run (it ended at "model saved to ...")
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith(f"next: directpo score --model_name_or_path {out} --input PAIRS.jsonl")
    assert f"directpo plot {out} " in last
    assert "max_steps: 2" in (out / "config.yaml").read_text()
    from directpo.after_run import next_steps

    for given in ("e.jsonl", ["e.jsonl"]):  # (a YAML list of one file, eval_file: [e.jsonl])
        assert "--input e.jsonl --output" in next_steps("out", given)
    assert "--input PAIRS.jsonl" in next_steps("out", ["a.jsonl", "b.jsonl"])


def test_the_next_line_names_the_file_an_eval_pattern_matched(tmp_path, monkeypatch) -> None:
    """eval_file: held/*.jsonl put the pattern in the next: line, which score refuses ('no
    such file or folder: held/*.jsonl'): the one file it matched is named, several are
    PAIRS.jsonl as a list of them is."""
    from directpo.after_run import next_steps

    monkeypatch.chdir(tmp_path)
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "e.jsonl").write_text("")
    assert "--input held/e.jsonl --output" in next_steps("out", "held/*.jsonl")
    assert "--input held/e.jsonl --output" in next_steps("out", ["held/*.jsonl"])
    (tmp_path / "held" / "f.jsonl").write_text("")
    assert "--input PAIRS.jsonl --output" in next_steps("out", "held/*.jsonl")


def entry_point_exit(monkeypatch, *argv: str) -> tuple[int | str | None, bool]:
    """What ``directpo *argv`` (the console script, python -m directpo: __main__.run) exits
    with, in this process, and whether it froze the heap first (the freeze itself is patched
    out: this process goes on)."""
    from directpo import __main__ as entry

    frozen: list[bool] = []
    monkeypatch.setattr(sys, "argv", ["directpo", *argv])
    monkeypatch.setattr(entry.gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as done:
        entry.run()
    return done.value.code, frozen == [True]


def test_the_command_exits_without_the_final_garbage_collections(monkeypatch, capsys) -> None:
    """A process holding torch and transformers spent 2-16 s in the interpreter's final
    collections after its last line (before torchrun or the shell saw it end): the console
    script and python -m directpo freeze the heap before they exit, with main's exit code, an
    error's and argparse's alike; the console script is that entry point."""
    import tomllib
    from pathlib import Path

    assert entry_point_exit(monkeypatch, "train", "--help") == (0, True)
    assert "--beta" in capsys.readouterr().out
    assert entry_point_exit(monkeypatch, "--no-such-option") == (2, True)
    assert "unknown option '--no-such-option'" in capsys.readouterr().err
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["scripts"] == {"directpo": "directpo.__main__:run"}


def test_python_m_directpo_exits_2_with_one_line_and_no_traceback(tmp_path) -> None:
    """(train --help through the same entry point, in-process: the test above)"""
    data = tmp_path / "prefs.jsonl"
    data.write_text(GOOD + "{oops\n")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # data is read before any model loads
    bad = subprocess.run(
        [sys.executable, "-m", "directpo", *train_argv(model, data, tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith(f"directpo: error: {data}: line 2: invalid JSON")
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_skip_invalid_rows_reports_counts(tiny_model_dirs, tmp_path, capsys) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_text(GOOD * 3 + "{oops\n" + '{"prompt": "a", "chosen": "b"}\n')
    flags = ("--skip_invalid_rows", "true", "--max_steps", "1")
    code = main(train_argv(tiny_model_dirs["gpt2"], data, tmp_path / "o", *flags))
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "3 pairs, layout explicit, 2 of them repeat an earlier pair (kept); skipped 2 invalid "
        "rows (1 invalid JSON, 1 missing field)"
    ) in out


def test_a_folder_that_is_not_a_model_gives_one_line(pairs_file, tmp_path, capsys) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    code, err = run_cli(capsys, *train_argv(empty, pairs_file, tmp_path / "o"))
    assert code == 2
    assert err.startswith(f"directpo: error: model_name_or_path: {empty} is not a model folder")
    assert err.count("\n") == 1
    # a datasets folder or a data file passed as the model: said so
    import datasets

    dataset_dir = tmp_path / "data-folder"
    datasets.Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}]).save_to_disk(
        str(dataset_dir)
    )
    capsys.readouterr()  # the save's progress bar
    for wrong, said in ((dataset_dir, "is a datasets folder"), (pairs_file, "is a file, not")):
        code, err = run_cli(
            capsys, "train", "--model_name_or_path", str(wrong), "--train_file", str(pairs_file),
            "--output_dir", str(tmp_path / "o"),
        )  # fmt: skip
        assert code == 2 and said in err and err.count("\n") == 1


def test_a_tracker_that_is_not_installed_is_named(
    tiny_model_dirs, pairs_file, tmp_path, capsys, monkeypatch, no_model_loading
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    train = train_argv(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "o", "--report_to", "wandb")
    code, err = run_cli(capsys, *train)
    assert code == 2
    assert "--report_to wandb: wandb is not installed: pip install wandb" in err


@pytest.fixture
def captured_training(monkeypatch):
    """``directpo train`` reads its options but trains nothing: the options are kept here."""
    import directpo.trainer

    seen = []
    monkeypatch.setattr(directpo.trainer, "train", seen.append)
    return seen


@pytest.mark.parametrize(
    "flags, option",
    [
        (["--output_dir"], "output_dir"),  # the value forgotten, at the end
        (["--train_file"], "train_file"),
        (["--prompt_column"], "prompt_column"),
        (["--beta", "--bf16"], "beta"),  # followed by another flag
        (["--lora_target_modules"], "lora_target_modules"),
        (["--config"], "config"),
    ],
)
def test_an_option_without_a_value_is_refused(
    tiny_model_dirs, pairs_file, tmp_path, capsys, monkeypatch, no_model_loading, flags, option
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = train_argv(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "o", *flags)
    code, err = run_cli(capsys, *argv)
    # (said with the rest, in one error: the line, and no other option's)
    assert code == 2 and f"option --{option} needs a value\n" in err, err
    assert not (tmp_path / "true").exists()


def test_an_option_without_a_value_is_refused_by_every_command(tmp_path, capsys) -> None:
    for argv in (
        ["score", "--input", "a.jsonl", "--output"],
        ["rank", "--output", "r.jsonl", "--beta"],
        ["generate", "--max_new_tokens", "--input", "a.jsonl"],
    ):
        code, err = run_cli(capsys, *argv)
        option = argv[-1] if argv[-1].startswith("--") else "--max_new_tokens"
        assert code == 2 and err == f"directpo: error: option {option} needs a value\n", argv


def test_a_bare_boolean_is_true_and_an_explicit_one_is_read(
    tiny_model_dirs, pairs_file, tmp_path, captured_training
) -> None:
    argv = train_argv(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "o")
    assert main([*argv, "--gradient_checkpointing"]) == 0
    assert main([*argv, "--gradient_checkpointing", "false", "--beta", "0.3"]) == 0
    assert captured_training[0].gradient_checkpointing is True
    assert captured_training[1].gradient_checkpointing is False
    assert captured_training[1].beta == 0.3


def test_lists_take_commas_or_several_values(
    tiny_model_dirs, pairs_file, tmp_path, captured_training
) -> None:
    other = write_jsonl_text(tmp_path / "other.jsonl", GOOD)
    model = tiny_model_dirs["gpt2"]
    for files, modules in (
        ([f"{pairs_file},{other}"], ["q_proj,k_proj"]),  # the documented form
        ([str(pairs_file), str(other)], ["q_proj", "k_proj"]),  # TRL's (argparse nargs='+')
        ([f"{pairs_file}, {other}"], ["q_proj,", "k_proj"]),
    ):
        argv = train_argv(model, files[0], tmp_path / "o")
        argv[argv.index("--train_file") + 1 : argv.index("--train_file") + 2] = files
        assert main([*argv, "--lora_r", "4", "--lora_target_modules", *modules]) == 0
        options = captured_training[-1]
        assert options.train_file == [str(pairs_file), str(other)]
        assert options.lora_target_modules == ["q_proj", "k_proj"]
    # one file stays one file; a file whose name holds a comma is taken whole
    comma = write_jsonl_text(tmp_path / "a,b.jsonl", GOOD)
    assert main(train_argv(model, comma, tmp_path / "o")) == 0
    assert captured_training[-1].train_file == str(comma)
    assert main(train_argv(model, pairs_file, tmp_path / "o")) == 0
    assert captured_training[-1].train_file == str(pairs_file)


def test_named_eval_sets_are_one_flag_value(
    tiny_model_dirs, pairs_file, tmp_path, captured_training
) -> None:
    """--eval_file '{chat: a.jsonl, code: [b.jsonl, c.jsonl]}' (the help's form of named eval
    sets) was cut at its commas into file names: "eval_file: no such file or folder: {chat:
    a.jsonl"."""
    other = write_jsonl_text(tmp_path / "other.jsonl", GOOD)
    argv = train_argv(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "o")
    for value in (
        f"{{chat: {pairs_file}, code: [{pairs_file}, {other}]}}",
        f'{{"chat": "{pairs_file}", "code": ["{pairs_file}", "{other}"]}}',
    ):
        assert main([*argv, "--eval_file", value]) == 0
        sets = captured_training[-1].eval_file
        assert sets == {"chat": str(pairs_file), "code": [str(pairs_file), str(other)]}


def test_a_list_ends_at_the_yaml_file_and_a_stray_value_is_explained(
    tiny_model_dirs, pairs_file, tmp_path, capsys, captured_training
) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_steps: 3\n")
    argv = train_argv(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "o")
    assert main([*argv, "--report_to", "none", str(cfg)]) == 0
    capsys.readouterr()  # (its note: --report_to given twice)
    assert captured_training[-1].max_steps == 3 and captured_training[-1].report_to == ["none"]
    code, err = run_cli(capsys, "train", str(cfg), "--output_dir", "a", "b")
    assert code == 2
    assert err == "directpo: error: unexpected argument 'b' (--output_dir takes one value)\n"


def test_a_data_file_given_as_the_config_is_named(tmp_path, capsys, no_model_loading) -> None:
    jsonl = write_jsonl_text(tmp_path / "one_row.jsonl", GOOD)
    as_json = tmp_path / "rows.json"
    as_json.write_text("[" + GOOD.strip() + "]")
    lines_json = tmp_path / "lines.json"
    lines_json.write_text(GOOD * 2)
    for data in (jsonl, as_json, lines_json):
        for argv in (["train", str(data)], ["train", "--config", str(data)]):
            code, err = run_cli(capsys, *argv)
            assert code == 2 and err.count("\n") == 1
            assert f"{data} looks like a data file, not a YAML config" in err
            assert f"pass it as --train_file {data}" in err
    code, err = run_cli(capsys, "train", str(tmp_path))
    assert code == 2 and f"{tmp_path} is a folder, not a YAML config" in err
    # a JSON config is still a config
    config = tmp_path / "run.json"
    config.write_text('{"max_steps": 2}')
    code, err = run_cli(capsys, "train", str(config))
    assert code == 2 and "model_name_or_path is required" in err


def write_jsonl_text(path, text: str):
    path.write_text(text)
    return path


@pytest.mark.parametrize("rank", [None, "0", "1"])
def test_ctrl_c_outside_the_training_loop_is_one_line_under_torchrun(
    monkeypatch, capsys, tmp_path, rank
) -> None:
    """A Ctrl-C while the models load reaches every worker of a torchrun job: rank 0 (or a
    lone process) says "interrupted" once; every worker printed it (one line per rank)."""
    import directpo.trainer

    monkeypatch.chdir(tmp_path)  # (a train file not there is said before the run starts)
    (tmp_path / "t.jsonl").write_text('{"prompt": "a", "chosen": " b", "rejected": " c"}\n')

    def interrupted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise KeyboardInterrupt

    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
        monkeypatch.setenv("WORLD_SIZE", "2")  # (torchrun sets both)
    monkeypatch.setattr(directpo.trainer, "train", interrupted)
    assert main(["train", "--model_name_or_path", "m", "--train_file", "t.jsonl"]) == 130
    said = capsys.readouterr().err.splitlines()
    assert said == ([] if rank == "1" else ["directpo: interrupted"])


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_file_commands_under_torchrun_are_refused_in_one_line(
    monkeypatch, capsys, tmp_path, command
) -> None:
    """``torchrun --nproc_per_node 2 -m directpo score ...`` ran the whole file in every
    process (each writing the output, each printing its summary): refused, said by rank 0."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    argv = [command, "--model_name_or_path", str(tmp_path), "--input", str(tmp_path / "i.jsonl")]
    assert main([*argv, "--output", str(tmp_path / "out.jsonl")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("directpo: error: score, rank and generate run in one process")
    assert "started 2" in line and not (tmp_path / "out.jsonl").exists()


def test_a_replaced_value_is_said(tmp_path, capsys, monkeypatch) -> None:
    """``--beta 0.1 ... --beta 0.5`` trained with 0.5 without a word (the last flag won), as did
    a flag replacing the YAML file's value; each is now said in a note, and the last one wins."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("beta: 0.1\nbf16: false\nmax_steps: 3\n")
    seen = []
    monkeypatch.setitem(COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=seen.append))
    flags = ("--beta", "0.2", "--beta=0.5", "--bf16", "--no_bf16", "--max_steps", "3")
    code, err = run_cli(capsys, "train", str(recipe), *flags)
    assert code == 0 and seen[0].beta == 0.5 and seen[0].bf16 is False
    assert err.splitlines() == [
        "directpo: note: --beta is given 2 times: the last one (0.5) is used",
        "directpo: note: --bf16 is given 2 times: the last one (false) is used",
        f"directpo: note: --beta 0.5 replaces {recipe}'s beta: 0.1",
    ]


def test_dashed_flag_names_are_the_options_as_in_hf_argument_parser(capsys, monkeypatch) -> None:
    """``--learning-rate 1e-6`` and ``--no-bf16`` (HfArgumentParser takes them; TRL's scripts
    write them) were unknown options."""
    seen = []
    monkeypatch.setitem(COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=seen.append))
    flags = ("--learning-rate", "1e-6", "--per-device-train-batch-size=2", "--bf16", "--no-bf16")
    code, _ = run_cli(capsys, "train", *flags)
    assert code == 0
    options = seen[0]
    assert (options.learning_rate, options.per_device_train_batch_size) == (1e-6, 2)
    assert options.bf16 is False


def test_version_is_one_line_with_the_libraries_and_exit_0(capsys) -> None:
    """``directpo --version`` printed the whole help and exited 2 (no such option)."""
    import tomllib
    from pathlib import Path

    import directpo

    for flag in ("--version", "-V"):
        with pytest.raises(SystemExit) as info:
            main([flag])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"directpo {directpo.__version__} (torch ") and "transformers " in out
        assert out.count("\n") == 1 and "usage" not in out  # (not wrapped at the terminal width)
    from directpo.cli import build_parser

    args, _ = build_parser().parse_known_args(["score", "--input", "x.jsonl"])
    assert "version" not in vars(args)  # (no command reads it as one of its options)
    pyproject = Path(directpo.__file__).parents[2] / "pyproject.toml"
    assert tomllib.loads(pyproject.read_text())["project"]["version"] == directpo.__version__


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--verison"], "unknown option '--verison'; did you mean '--version'?"),
        (["-v"], "unknown option '-v'; did you mean '-V'?"),
        (["--beta", "0.2"], "unknown option '--beta'; options follow a command: directpo train"),
        # the command the line names, and the option as it spells it
        (
            ["--max_new_tokens", "8", "generate"],
            "unknown option '--max_new_tokens'; options "
            "follow a command: directpo generate --max_new_tokens ...\n",
        ),
        (
            ["--bta", "0.1", "train"],
            "unknown option '--bta'; options follow a command: directpo "
            "train --beta ... (train has no --bta: did you mean '--beta'?)\n",
        ),
    ],
)
def test_a_misspelt_flag_before_the_command_is_one_line(argv, said, capsys) -> None:
    """``directpo --verison`` (or ``-v`` before the command) printed the whole help and exited
    2, saying nothing of the flag, and ``directpo --beta 0.2`` read 0.2 as a misspelt command:
    each is now one line naming the flag (the one meant, or that options follow a command)."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"directpo: error: {said}") and captured.err.count("\n") == 1
    assert "usage" not in captured.out + captured.err


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["train", "--version"], "unknown option '--version'; the versions are printed by"),
        (["train", "-V"], "unknown option '-V'; the versions are printed by directpo --version"),
        (["score", "-V"], "unknown option '-V'; the versions are printed by"),
        (["train", "-x"], "unknown option '-x'"),
    ],
)
def test_a_version_flag_after_the_command_says_where_it_goes(argv, said, capsys) -> None:
    """``directpo train -V`` was "config file not found: -V" (a dash token read as the YAML
    file), ``score -V`` "unknown option '--V'" (another flag than the one written), and
    ``train --version`` named no way to the versions."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"directpo: error: {said}") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--do_sample", "; generate samples unless temperature is 0 (greedy decoding)"),
        (
            "--num_beams=4",
            "; there is no beam search: sampling, or temperature 0 (greedy decoding)",
        ),
        ("--max_length", "; max_new_tokens limits each completion (max_prompt_length, the prompt)"),
    ],
)
def test_generates_transformers_spellings_say_the_option_to_use(flag, said, capsys) -> None:
    """``generate --do_sample false``, as transformers' generate() is called, was "unknown
    option '--do_sample'" with no word of how to get greedy decoding."""
    from directpo.command_options import GenerateOptions
    from directpo.errors import ConfigError

    argv = ["generate", "--model_name_or_path", "m", "--input", "a.jsonl", "--output", "b.jsonl"]
    assert main([*argv, flag, "false"]) == 2
    name = flag.split("=")[0]
    # (said with the input that is not there)
    assert f"  unknown option '{name}'{said}\n" in capsys.readouterr().err
    options = GenerateOptions(model_name_or_path="m", input="a.jsonl", output="b.jsonl")
    with pytest.raises(ConfigError) as info:
        setattr(options, name[2:], False)  # a notebook's options.do_sample = False
    assert str(info.value) == f"GenerateOptions: option '{name[2:]}' is unknown{said}"


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_every_unknown_flag_of_a_file_command_is_said_in_one_run(command, capsys) -> None:
    """``score --bta 0.1 --gamma 3`` said --bta alone, and --gamma only on the run after
    --bta was fixed (train says every unknown flag at once, and the README says these
    commands' unknown flags with their other refusals); each is said once, in order."""
    argv = [command, "--model_name_or_path", "m", "--input", "a.jsonl", "--output", "b.jsonl"]
    assert main([*argv, "--bta", "0.1", "--gamma=3", "--do_sample", "--bta", "2"]) == 2
    err = capsys.readouterr().err
    said = [line.split(";")[0] for line in err.splitlines() if "unknown option" in line]
    assert said == [
        "  unknown option '--bta'",
        "  unknown option '--gamma'",
        "  unknown option '--do_sample'",
    ]


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
def test_unknown_flags_beside_an_input_of_several_files_are_said_with_it(command, capsys):
    """``score --input a.jsonl b.jsonl --bta 0.1 --gamma 3`` said only that --input takes one
    file: --bta and --gamma came a run later, once the files were joined. Every unknown flag
    is now said beside it, in the one error (the second file is no flag to name)."""
    argv = [command, "--model_name_or_path", "m", "--input", "a.jsonl", "b.jsonl"]
    assert main([*argv, "--output", "o.jsonl", "--bta", "0.1", "--gamma=3"]) == 2
    err = capsys.readouterr().err
    assert "--input takes one file, given 2: a.jsonl b.jsonl" in err
    said = [line.split(";")[0] for line in err.splitlines() if "unknown option" in line]
    assert said == ["  unknown option '--bta'", "  unknown option '--gamma'"]


@pytest.mark.parametrize("argv", [["--version"], ["train", "--help"], ["score", "-h"], []])
def test_version_and_help_are_printed_by_rank_0_alone(argv, capsys, monkeypatch) -> None:
    """Under torchrun every rank runs the command line: --version and --help were printed once
    per process, interleaved; the other ranks now print nothing and exit as rank 0 does."""
    printed = {}
    monkeypatch.setenv("WORLD_SIZE", "2")  # (torchrun sets both)
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(SystemExit) if argv else contextlib.nullcontext():
            main(argv)
        captured = capsys.readouterr()
        printed[rank] = captured.out + captured.err
    assert "directpo" in printed["0"] and printed["1"] == ""


def test_the_package_says_it_is_typed() -> None:
    """Without PEP 561's py.typed (in the wheel too), mypy read ``from directpo import train``
    as an untyped module ("missing library stubs or py.typed marker"): the hints went unused."""
    import tomllib
    from pathlib import Path

    import directpo

    package = Path(directpo.__file__).parent
    assert (package / "py.typed").is_file()
    pyproject = tomllib.loads((package.parents[1] / "pyproject.toml").read_text())
    assert "py.typed" in pyproject["tool"]["setuptools"]["package-data"]["directpo"]


@pytest.mark.parametrize("first", [["a.yaml"], ["--config", "a.yaml"]])
def test_two_config_files_are_refused(tmp_path, capsys, monkeypatch, first) -> None:
    """``train a.yaml --config b.yaml`` read b.yaml alone: a.yaml's model and data were
    dropped without a word (and the error said they were missing)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.yaml").write_text("model_name_or_path: m\ntrain_file: t.jsonl\n")
    (tmp_path / "b.yaml").write_text("beta: 0.5\n")
    code, err = run_cli(capsys, "train", *first, "--config", "b.yaml")
    assert code == 2  # said with the first file's problems (its train_file is not there)
    assert (
        "two config files, a.yaml and --config b.yaml: give one (flags override its values)\n"
        in err
    )


@pytest.mark.parametrize(
    "word, said",
    [
        ("trian", "did you mean 'train'?"),
        ("Score", "did you mean 'score'?"),
        ("fit", "the commands are train, score, rank, generate, demo, plot"),
    ],
)
def test_a_misspelt_command_is_named_with_the_one_meant(capsys, word, said) -> None:
    """argparse's "argument COMMAND: invalid choice: 'trian' (choose from ...)" left the reader
    to find the command meant."""
    code, err = run_cli(capsys, word, "--beta", "0.1")
    assert (code, err) == (2, f"directpo: error: unknown command '{word}'; {said}\n")


def test_flags_only_commands_name_the_flag_to_give_not_a_yaml_key(tmp_path, capsys) -> None:
    """generate / score / rank take flags alone: their hints said the YAML spelling ('write
    seed: N', 'set prompt_column: Prompt'); they now say the flag (``give --seed N``)."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "x"}\n')
    common = ["--model_name_or_path", str(tmp_path), "--input", str(prompts)]
    assert main(["generate", *common, "--output", str(tmp_path / "o.jsonl"), "--seed", "null"]) == 2
    said = capsys.readouterr().err
    assert "give --seed " in said and "seed: " not in said.replace("--seed ", "")


def test_an_option_before_a_double_dash_is_given_no_value_as_argparse_reads_it(
    tmp_path, capsys
) -> None:
    """``train --beta -- 0.2`` was read as beta 0.2 (argparse: "expected one argument"): the
    value after '--' is positional; it is refused in one line, a bare boolean still true."""
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"prompt": "x", "chosen": "a", "rejected": "b"}\n')
    for argv in (
        ["train", "--train_file", str(pairs), "--beta", "--", "0.2"],
        ["generate", "--seed", "--", "3"],
        ["train", "--learning-rate", "--", "1e-5"],
    ):
        assert main(argv) == 2
        said = capsys.readouterr().err
        assert f"{argv[-3]} is given no value: '--' ends the options, so {argv[-1]} after" in said
        assert said.count("\n") == 1 and "Traceback" not in said
    assert main(["train", "--bf16", "--", str(tmp_path / "r.yaml")]) == 2  # the file, not --bf16
    assert "config file not found" in capsys.readouterr().err


def test_a_double_dash_ends_the_options_as_argparse_reads_it(tmp_path, capsys) -> None:
    """``--`` (the end of options, as argparse and POSIX tools read it) was refused as
    "unknown option '--'"; it is now read so (what follows is positional: train's config file),
    and an option after it is refused saying why."""
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "x"}\n')
    common = ["--model_name_or_path", str(tmp_path), "--input", str(prompts), "--seed", "null"]
    assert main(["generate", *common, "--output", str(tmp_path / "o.jsonl"), "--"]) == 2
    said = capsys.readouterr().err
    assert "'--'" not in said and "give --seed " in said
    assert main(["generate", "--", *common]) == 2
    assert "'--' ends the options, so --model_name_or_path after it" in capsys.readouterr().err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("beta: -1\n")
    assert main(["train", "--", str(recipe)]) == 2
    assert "beta" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["score", "rank", "generate"])
@pytest.mark.parametrize("suffix", [".jsonl.gz", ".arrow"])
def test_the_file_commands_read_and_list_every_input_format(
    command, suffix, tmp_path, capsys
) -> None:
    """The README reads compressed text files and .arrow files in every command that reads
    rows; score / rank / generate did, but their --input help listed .jsonl, .json, .parquet,
    .csv, .tsv and folders alone. The rows of each are read (a row without a prompt is said
    with the model folder that is not there) and the help names the format."""
    import gzip

    import pyarrow as pa
    import pyarrow.feather

    rows = [{"prompt": "a", "chosen": " b", "rejected": " c"}, {"other": "x"}]
    path = tmp_path / f"rows{suffix}"
    if suffix == ".arrow":
        pyarrow.feather.write_feather(pa.Table.from_pylist(rows), str(path))
    else:
        path.write_bytes(gzip.compress(b"\n".join(json.dumps(r).encode() for r in rows)))
    argv = [command, "--model_name_or_path", "./m", "--input", str(path), "--output", "o.jsonl"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    place = "row" if suffix == ".arrow" else "line"  # (rank refuses the pair too)
    assert f"rows{suffix}: {place} " in err and f"{place} 2" in err
    input_help = dict((n, h) for n, h, _ in option_help(COMMANDS[command].options))["input"]
    assert ".gz" in input_help and ".arrow" in input_help
