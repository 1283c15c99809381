"""refusals.py: the hint after a source's refused rows, in its caller's words."""

from __future__ import annotations

from dataclasses import replace

import pytest
from tiny import SKIP_HINTS, build_tokenizer, write_jsonl

from directpo.callers import Caller, Entry, Spelling, called_by
from directpo.cli import main
from directpo.config import DPOConfig
from directpo.data import PreferenceData, PreferenceExample, load_preferences
from directpo.errors import ConfigError, DataError
from directpo.tokenization import tokenize_preferences

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


def test_a_row_whose_problem_says_how_to_skip_it_is_not_told_again() -> None:
    """A row cut to identical replies ended '... or set skip_invalid_rows: true to drop such
    rows; skip_invalid_rows: true skips them': the advice twice, one row or several. It is said
    once, in each caller's words; a line with a row of another problem keeps the hint (it is
    what skips that row)."""
    tokenizer = build_tokenizer("gpt2")
    cut_alike = PreferenceExample("The movie was", " great and more", " great but less", "")
    bare = PreferenceExample("The movie was", " great", " great", "")
    callers = {"recipe": Spelling.RECIPE, "flags": Spelling.FLAGS, "python": Spelling.PYTHON}
    for name, spelling in callers.items():
        option = SKIP_HINTS[name].removesuffix(" skips them")
        for rows in (1, 3):
            examples = [replace(cut_alike, where=f"f: line {i}") for i in range(1, rows + 1)]
            with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(DataError) as info:
                tokenize_preferences(PreferenceData(examples, "explicit", "f"), tokenizer, 5, 3)
            said = str(info.value)
            assert f"{option} to drop such rows" in said and said.count(option) == 1, said
            assert "skips them" not in said and said.startswith("f: line 1: "), said
        mixed = [replace(cut_alike, where="f: line 1"), replace(bare, where="f: line 2")]
        with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(DataError) as info:
            tokenize_preferences(PreferenceData(mixed, "explicit", "f"), tokenizer, 5, 3)
        said = str(info.value)
        assert said.endswith(f"; {SKIP_HINTS[name]}") and said.count(option) == 2, said
