"""A config's data rows checked beside its refused values (early_rows.py)."""

from __future__ import annotations

import pytest
from tiny import write_jsonl

from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.preflight import check_run

GOOD = {"prompt": "a", "chosen": " b", "rejected": " c"}


def test_a_refused_value_and_bad_rows_are_said_in_one_run(tmp_path) -> None:
    """A bad value was refused first and the train file's bad rows said only by the next run;
    both are said at once now (the rows need no model), or that the rows could not be checked
    because of a refused column name."""
    train = write_jsonl(tmp_path / "train.jsonl", [GOOD, {"prompt": "a", "chosen": " b"}])
    held = write_jsonl(tmp_path / "eval.jsonl", [GOOD, {**GOOD, "rejected": ""}, GOOD])
    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    options = dict(model_name_or_path=str(tmp_path), train_file=str(train), eval_file=str(held))
    with pytest.raises(ConfigError) as info:
        DPOConfig(**options, learning_rate=-1)
    assert str(info.value).splitlines() == [  # (the rows are no options: a heading of their own)
        "1 option cannot be used:",
        "  learning_rate must be > 0 (got -1)",
        "and the data files' rows:",
        f"  {train}: line 2: missing field 'rejected'",
        f"  {held}: line 2: field 'rejected' is empty",
        "  skip_invalid_rows=True skips them",  # (one bad row a file: skipped as several are)
    ]
    with pytest.raises(ConfigError) as info:
        DPOConfig(**options, learning_rate=-1, chosen_column="")
    assert str(info.value).splitlines()[-1] == (
        f"  the rows of {train}, {held} are not checked: chosen_column (the columns they are "
        "read by) must be fixed first"
    )
    # an option refused at start (CUDA only, on a CPU) likewise
    config = DPOConfig(**options, use_liger_kernel=True, output_dir=str(tmp_path / "out"))
    with pytest.raises(ConfigError) as info:
        check_run(config, "cpu")
    assert str(info.value).splitlines()[2:] == [
        "and the data files' rows:",
        f"  {train}: line 2: missing field 'rejected'",
        f"  {held}: line 2: field 'rejected' is empty",
        "  skip_invalid_rows: true skips them",  # (check_run's own caller: a recipe's words)
    ]
    write_jsonl(train, [GOOD])  # good rows: the value alone, as before
    write_jsonl(held, [GOOD])
    with pytest.raises(ConfigError) as info:
        DPOConfig(**options, learning_rate=-1)
    assert str(info.value) == "learning_rate must be > 0 (got -1)"


def test_the_rows_given_to_train_are_said_beside_a_refused_value(tmp_path) -> None:
    """train(config, train_dataset=rows) with a refused value said the value alone, and the
    rows given only on the next run (early_rows read the config's files only): now the rows
    given are said with it, in place of the files they replace, built as train() builds the
    config (a TRL-style dict here) or refused at start (check_run)."""
    from directpo import train

    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    stale = write_jsonl(tmp_path / "stale.jsonl", [{"prompt": "a"}])  # replaced: not said
    rows = [GOOD, {"prompt": "a", "chosen": " b"}, {**GOOD, "rejected": " b"}]
    held = write_jsonl(tmp_path / "eval.jsonl", [GOOD, {**GOOD, "chosen": ""}])
    options = {"model_name_or_path": str(tmp_path), "train_file": str(stale),
               "eval_file": str(held), "output_dir": str(tmp_path / "out")}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        train({**options, "beta": -1}, train_dataset=rows, echo=None)
    assert str(info.value).splitlines() == [
        "1 option cannot be used:",
        "  beta must be > 0 (got -1)",
        "and the data files' rows:",
        f"  {held}: line 2: field 'chosen' is empty",
        "  train_dataset: row 2: missing field 'rejected'; row 3: chosen and rejected are "
        "identical",
        "  skip_invalid_rows=True skips them",  # (train()'s keyword)
    ]
    # a path given that is not there was left to the run, which said it only once beta was
    # fixed: it is said with it, as the run says it
    with pytest.raises(ConfigError) as info:
        train({**options, "beta": -1}, train_dataset=str(tmp_path / "none.jsonl"), echo=None)
    assert str(info.value).splitlines()[-3:] == [
        f"  {held}: line 2: field 'chosen' is empty",
        f"  {tmp_path}/none.jsonl: no such file",
        "  skip_invalid_rows=True skips them",  # (said once, after every source)
    ]
    with pytest.raises(ConfigError) as info:  # refused at start: CUDA only, on a CPU
        train(DPOConfig(**options, use_liger_kernel=True), train_dataset=rows, echo=None)
    assert str(info.value).splitlines()[-2].startswith("  train_dataset: row 2: missing field")
    assert str(stale) not in str(info.value)


def test_an_output_dir_in_use_is_said_with_the_bad_rows(tmp_path) -> None:
    """An output_dir holding another run is refused once the config is built (as the run
    prepares its folder): its train file's bad rows were said only by the next run, and the
    options refused at start (check_run) were said without it."""
    from directpo import train

    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    used = tmp_path / "out"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    data = write_jsonl(tmp_path / "train.jsonl", [GOOD, {"prompt": "a", "chosen": " b"}])
    options = {"model_name_or_path": str(tmp_path), "output_dir": str(used)}
    with pytest.raises(ConfigError) as info:
        train(DPOConfig(**options, train_file=str(data)), echo=None)
    said = str(info.value).splitlines()
    assert said[1].startswith(f"  output_dir {used} already holds other files (notes.txt)")
    assert said[2:] == [
        "and the data files' rows:",
        f"  {data}: line 2: missing field 'rejected'",
        "  skip_invalid_rows=True skips them",
    ]
    # with an option refused at start (CUDA only, on a CPU): both said (the folder took a run)
    with pytest.raises(ConfigError) as info:
        check_run(DPOConfig(**options, train_file=str(data), use_liger_kernel=True), "cpu")
    said = str(info.value).splitlines()
    assert said[0] == "2 options cannot be used:" and said[1].startswith("  use_liger_kernel")
    assert said[2].startswith(f"  output_dir {used} already holds other files (notes.txt)")
    assert said[3:] == [
        "and the data files' rows:",
        f"  {data}: line 2: missing field 'rejected'",
        "  skip_invalid_rows: true skips them",  # (check_run's own caller: a recipe's words)
    ]
    with pytest.raises(ConfigError) as info:  # rows given to train() in place of the file
        train(DPOConfig(**options), train_dataset=[GOOD, {"prompt": "a"}], echo=None)
    assert str(info.value).splitlines()[-2:] == [
        "  train_dataset: row 2: missing field 'chosen'",
        "  skip_invalid_rows=True skips them",
    ]


def test_trls_args_decide_how_the_rows_given_to_train_are_read(tmp_path) -> None:
    """train(args=trl OnlineDPOConfig(...), train_dataset=prompts) with a refused value said the
    prompts "column 'chosen' not found; set chosen_column / rejected_column": the rows were
    read by the defaults (offline pairs), not by the args= config train() builds (online, whose
    prompts are read by the run). A TRL DPOConfig's given rows are still said."""
    online_dpo = pytest.importorskip("trl.experimental.online_dpo")
    import warnings

    from trl import DPOConfig as TRLConfig

    from directpo import train

    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "a"}, {"prompt": "b"}])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        online = online_dpo.OnlineDPOConfig(
            output_dir=str(tmp_path / "o"), report_to="none", bf16=False
        )
        offline = TRLConfig(output_dir=str(tmp_path / "o"), report_to="none", bf16=False)
    with pytest.raises(ConfigError) as info:
        train(args=online, model=str(tmp_path), train_dataset=str(prompts), beta=-1, echo=None)
    assert "chosen" not in str(info.value)
    assert str(info.value).splitlines()[:2] == [
        "2 options cannot be used:",
        "  beta must be > 0 (got -1)",
    ]
    with pytest.raises(ConfigError) as info:
        train(args=offline, model=str(tmp_path), train_dataset=str(prompts), beta=-1, echo=None)
    assert (
        str(info.value)
        .splitlines()[-1]
        .startswith(  # (said by what it holds: row_kinds)
            f"  {prompts}: prompts alone (prompt) as TRL's GRPOTrainer reads"
        )
    )


def test_train_and_eval_files_say_the_skip_hint_once_on_a_line_of_its_own(tmp_path) -> None:
    """A refused value with bad rows in the train and the eval file ended each file's line
    with "skip_invalid_rows: true skips them"; it is one line after them."""
    bad = [{**GOOD, "rejected": ""}] * 2
    (tmp_path / "config.json").write_text("{}")
    train_file = write_jsonl(tmp_path / "train.jsonl", bad)
    eval_file = write_jsonl(tmp_path / "eval.jsonl", bad)
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=str(tmp_path), train_file=str(train_file),
                  eval_file=str(eval_file), beta=-1)  # fmt: skip
    assert str(info.value).splitlines()[-3:] == [
        f"  {train_file}: line 1: field 'rejected' is empty (1 more row like it: line 2)",
        f"  {eval_file}: line 1: field 'rejected' is empty (1 more row like it: line 2)",
        "  skip_invalid_rows=True skips them",  # (DPOConfig's keyword)
    ]
