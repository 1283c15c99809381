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
        "  learning_rate must be > 0 (got -1.0)",
        "and the data files' rows:",
        f"  {train}: line 2: missing field 'rejected'",
        f"  {held}: line 2: field 'rejected' is empty",
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
    ]
    write_jsonl(train, [GOOD])  # good rows: the value alone, as before
    write_jsonl(held, [GOOD])
    with pytest.raises(ConfigError) as info:
        DPOConfig(**options, learning_rate=-1)
    assert str(info.value) == "learning_rate must be > 0 (got -1.0)"
