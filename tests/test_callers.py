"""One caller value: each entry point names its caller once, every message reads it, and it
ends with its call (threads and forked tokenizing processes keep their caller's)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl

from directpo import parallel_tokenizing
from directpo.callers import (
    UNCALLED,
    Caller,
    Entry,
    Spelling,
    called_by,
    caller,
    entry_point,
    spell_option,
)
from directpo.cli import main
from directpo.errors import ConfigError

PYTHON_TRAIN = Caller(Spelling.PYTHON, Entry.TRAIN)


def test_an_option_is_spelled_as_its_caller_writes_it() -> None:
    assert caller() == UNCALLED and spell_option("beta", 0.1) == "beta: 0.1"  # (as docs write)
    for who, spelled in (
        (Caller(Spelling.FLAGS, Entry.FOLDER), ("--beta 0.1", "--beta", "--beta")),
        (PYTHON_TRAIN, ("beta=0.1", "beta=", "beta=...")),
        (
            Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"),
            ("beta: 0.1 in r.yaml", "beta: in r.yaml", "beta: ... in r.yaml"),
        ),
    ):
        with called_by(who):
            assert (spell_option("beta", 0.1), spell_option("beta"), spell_option("beta", ...)) == (
                spelled
            )
    with called_by(PYTHON_TRAIN):  # a Python string is written as Python writes it
        assert spell_option("loss_type", "ipo") == "loss_type='ipo'"


def test_a_value_is_spelled_as_a_recipe_or_a_shell_reads_it() -> None:
    """A value not a word was said as Python's str of it to a recipe (use_peft: True,
    dataset_mixture: {'datasets': ...}) and bare on a command line, where the shell split it
    (--system_column System Prompt: two words) or globbed it."""
    mixture = {"datasets": [{"id": "a.jsonl"}]}
    with called_by(Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml")):
        assert spell_option("use_peft", True) == "use_peft: true in r.yaml"
        assert spell_option("eval_strategy", "no") == "eval_strategy: 'no' in r.yaml"
        assert spell_option("dataset_mixture", mixture) == (
            "dataset_mixture: {datasets: [{id: a.jsonl}]} in r.yaml"
        )
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        assert spell_option("system_column", "System Prompt") == "--system_column 'System Prompt'"
        assert spell_option("use_peft", True) == "--use_peft true"
        assert spell_option("dataset_mixture", mixture) == (
            "--dataset_mixture '{datasets: [{id: a.jsonl}]}'"
        )


def test_the_outer_entry_is_the_caller_until_its_call_ends() -> None:
    """score's ImplicitReward speaks as score; train's online labeller as train."""
    inner = entry_point(Caller(Spelling.PYTHON, Entry.IMPLICIT_REWARD))(caller)
    assert inner() == Caller(Spelling.PYTHON, Entry.IMPLICIT_REWARD)
    score = Caller(Spelling.FLAGS, Entry.FOLDER)
    with called_by(score):
        assert inner() == score
    with pytest.raises(ValueError), called_by(score):  # ended by an error too
        raise ValueError
    assert caller() == UNCALLED


def _spelled_refusal(*_: object, **__: object) -> None:
    """A refusal that names beta as the caller gave it, with who called."""
    who = caller()
    raise ConfigError(f"{spell_option('beta', 0.1)} [{who.entry.value}]")


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err.strip().removeprefix("directpo: error: ")


@pytest.fixture
def files(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    model = str(save_tiny_model("llama", tmp_path / "model"))
    pairs = str(write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2]))
    return {"model": model, "pairs": pairs, "out": str(tmp_path / "out.jsonl")}


def test_each_entry_point_says_the_same_refusal_in_its_callers_words(
    files, tmp_path, capsys, monkeypatch
) -> None:
    """The command line's flags (train, score, rank, generate), a recipe file's key naming
    the recipe, train()'s and ImplicitReward's keywords: each entry names its own caller."""
    import directpo.reward_files  # noqa: F401
    from directpo.reward import ImplicitReward
    from directpo.trainer import train

    # (reward_files imports run_values_missing by name: imported first while it is patched,
    # it kept the refusal for the rest of the session, and a later score in the process
    # failed with '--beta 0.1 [folder]')
    for target in (
        "directpo.trainer.check_run",
        "directpo.command_options.FileCommandOptions.check_environment",
        "directpo.reward.run_values_missing",
    ):
        monkeypatch.setattr(target, _spelled_refusal)
    model, pairs, out = files["model"], files["pairs"], files["out"]
    train_flags = ["--model_name_or_path", model, "--train_file", pairs, "--report_to", "none"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {model}\ntrain_file: {pairs}\nreport_to: none\n")
    reward = ["--ref_model_name_or_path", model, "--beta", "0.1"]
    command = ["--model_name_or_path", model, "--input", pairs, "--output", out]
    assert _cli(capsys, "train", *train_flags, "--output_dir", "a") == "--beta 0.1 [train]"
    assert _cli(capsys, "train", str(recipe), "--output_dir", "b") == (
        f"beta: 0.1 in {recipe} [train]"
    )
    for name in ("score", "rank"):
        assert _cli(capsys, name, *command, *reward) == "--beta 0.1 [folder]"
    assert _cli(capsys, "generate", *command) == "--beta 0.1 [folder]"
    with pytest.raises(ConfigError, match=r"^beta=0\.1 \[train\]$"):
        train(model_name_or_path=model, train_file=pairs, output_dir="c", echo=None)
    with pytest.raises(ConfigError, match=r"^beta=0\.1 \[implicit_reward\]$"):
        ImplicitReward.from_run(model)
    assert caller() == UNCALLED


def test_a_plain_folders_missing_values_are_asked_as_each_caller_gives_them(files, capsys) -> None:
    """A CLI call after a Python one (and back) in one process: each told in its own words,
    none in the other's (the caller ends with its call)."""
    from directpo.reward import ImplicitReward

    model, pairs, out = files["model"], files["pairs"], files["out"]
    python = r"directpo run: give ref_model_name_or_path= and beta=$"
    with pytest.raises(ConfigError, match=python):
        ImplicitReward.from_run(model)
    for name in ("score", "rank"):
        said = _cli(capsys, name, "--model_name_or_path", model, "--input", pairs, "--output", out)
        assert "directpo run: give --ref_model_name_or_path and --beta\n" in f"{said}\n", said
        assert "beta=" not in said
    with pytest.raises(ConfigError, match=python):
        ImplicitReward.from_run(model)
    assert caller() == UNCALLED


def test_an_unread_system_column_names_the_option_as_the_run_was_given(files) -> None:
    """train's data line said a recipe's ``system_column: System`` to every caller: a
    command line's user is told the flag, a recipe's the file, train()'s the keyword."""
    from directpo.data import load_preferences

    rows = [{"System": "Be kind.", "prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}]
    data = load_preferences(rows)
    for who, spelled in (
        (UNCALLED, "system_column: System"),
        (Caller(Spelling.FLAGS, Entry.TRAIN), "--system_column System"),
        (Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"), "system_column: System in r.yaml"),
        (PYTHON_TRAIN, "system_column='System'"),
    ):
        with called_by(who):
            assert data.summary().endswith(f"({spelled} makes it their system turn)")


def test_train_says_its_data_line_in_its_callers_words(files, tmp_path, capsys) -> None:
    """The note as ``directpo train`` prints it, given flags and given a recipe."""
    rows = [{"System": "Be kind.", **pair} for pair in SENTIMENT_PAIRS[:2]]
    pairs = str(write_jsonl(tmp_path / "system.jsonl", rows))
    run = ["--max_steps", "1", "--report_to", "none", "--save_strategy", "no"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {files['model']}\ntrain_file: {pairs}\n")
    for argv, spelled in (
        (["--model_name_or_path", files["model"], "--train_file", pairs], "--system_column"),
        ([str(recipe)], "system_column: System in " + str(recipe)),
    ):
        out = str(tmp_path / f"out{len(argv)}")
        assert main(["train", *argv, *run, "--output_dir", out]) == 0
        said = capsys.readouterr().out
        assert f"({spelled}" in said and "makes it their system turn" in said, said


class _CallerProbe:
    """An encoder whose "encoding" is the caller it runs under."""

    def encode_many(self, examples: list, cuts: Counter) -> list:
        return [caller() for _ in examples]


@pytest.mark.skipif(not parallel_tokenizing.can_fork(), reason="no fork here")
@pytest.mark.parametrize("num_proc", [None, 2])
def test_the_tokenizing_thread_and_processes_keep_the_caller(num_proc) -> None:
    """Each batch is encoded on a thread (in each forked process with dataset_num_proc): a
    new thread starts with no caller, so its messages were a command line's whoever called."""
    batches = parallel_tokenizing.encoded_batches(_CallerProbe(), list(range(8)), 2, num_proc)
    with called_by(PYTHON_TRAIN):
        seen = {who for _, encoded, _ in batches for who in encoded}
    assert seen == {PYTHON_TRAIN}
