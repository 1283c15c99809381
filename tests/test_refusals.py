"""refusals.py: the hint after a source's refused rows, in its caller's words."""

from __future__ import annotations

import pytest
from tiny import write_jsonl

from directpo.cli import main
from directpo.config import DPOConfig
from directpo.data import load_preferences
from directpo.errors import ConfigError, DataError

GOOD = {"prompt": "a", "chosen": " b", "rejected": " c"}
BAD = [{"prompt": "a", "chosen": " b", "rejected": " b"}, {"prompt": "a", "chosen": " b"}]


def test_the_skip_hint_is_written_as_the_caller_sets_options(tmp_path, capsys) -> None:
    """'skip_invalid_rows: true skips them' ended every refused-rows line, a recipe's YAML
    whoever called: a command line's user could not paste it back (--skip_invalid_rows is
    a switch). It is said as each caller sets the option; a library call as the docs do."""
    (tmp_path / "config.json").write_text("{}")
    bad = write_jsonl(tmp_path / "bad.jsonl", BAD)
    rows = f"{bad}: line 1: chosen and rejected are identical; line 2: missing field 'rejected'"
    flags = ["--model_name_or_path", str(tmp_path), "--train_file", str(bad)]
    assert main(["train", *flags, "--output_dir", str(tmp_path / "out")]) == 2
    assert f"{rows}; --skip_invalid_rows skips them" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {tmp_path}\ntrain_file: {bad}\n")
    assert main(["train", str(recipe), "--output_dir", str(tmp_path / "out")]) == 2
    assert f"{rows}; skip_invalid_rows: true skips them" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="skip_invalid_rows=True skips them"):
        DPOConfig(model_name_or_path=str(tmp_path), train_file=str(bad), beta=-1)
    with pytest.raises(DataError, match="; skip_invalid_rows: true skips them$"):
        load_preferences(str(bad))  # (a library function outside any entry: the docs' words)


def test_a_single_refused_row_is_told_what_skips_it_as_several_are(tmp_path, capsys) -> None:
    """One bad row (in 60k) was refused without 'skip_invalid_rows skips them', said only
    when several were: it is said for one row too, in each caller's words, as the whole line.
    score / rank take no skip_invalid_rows: their rows are told no hint, one or several."""
    (tmp_path / "config.json").write_text("{}")
    bad = write_jsonl(tmp_path / "bad.jsonl", [GOOD, {"prompt": "a", "chosen": " b"}])
    row = f"{bad}: line 2: missing field 'rejected'"
    out = ["--output_dir", str(tmp_path / "out")]
    flags = ["--model_name_or_path", str(tmp_path), "--train_file", str(bad)]
    assert main(["train", *flags, *out]) == 2
    assert capsys.readouterr().err == f"directpo: error: {row}; --skip_invalid_rows skips them\n"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: {tmp_path}\ntrain_file: {bad}\n")
    assert main(["train", str(recipe), *out]) == 2
    said = capsys.readouterr().err
    assert said == f"directpo: error: {row}; skip_invalid_rows: true skips them\n"
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=str(tmp_path), train_file=str(bad), beta=-1)
    assert info.value.rows == [row, "skip_invalid_rows=True skips them"]
    several = write_jsonl(tmp_path / "several.jsonl", [{"prompt": "a", "chosen": " b"}] * 2)
    for command in ("score", "rank"):
        for rows in (bad, several):
            assert main([command, "--model_name_or_path", str(tmp_path), "--input", str(rows)])
            said = capsys.readouterr().err
            assert f"{rows}: line" in said and "skips them" not in said, said
