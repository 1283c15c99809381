"""The header of several refusals counts the options they are about, not their lines."""

from __future__ import annotations

import pytest

from directpo.config import DPOConfig
from directpo.errors import ConfigErrors, options_named


@pytest.mark.parametrize(
    ("options", "header", "lines"),
    [
        # one line about two options, beside one about a third: was '2 options'
        ({"warmup_steps": 10, "warmup_ratio": 0.1, "beta": -1}, "3 options cannot be used:", 2),
        # three lines about two options: was '3 options'
        ({"warmup_steps": -1, "warmup_ratio": 2.0}, "2 options cannot be used:", 3),
        # 'a cannot be used with b' is about both: was '2 options'
        (
            {"sync_ref_model": True, "precompute_ref_log_probs": True, "beta": -1},
            "3 options cannot be used:",
            2,
        ),
        # two pairs, each one line: was '2 options'
        (
            {"load_in_4bit": True, "load_in_8bit": True, "warmup_steps": 1, "warmup_ratio": 0.1},
            "4 options cannot be used:",
            2,
        ),
    ],
)
def test_the_count_says_how_many_options_the_lines_are_about(options, header, lines) -> None:
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(**options)
    said = str(refused.value).split("\n")
    assert said[0] == header and len(said) == 1 + lines, said


def test_a_line_that_names_no_option_first_is_one_of_its_own() -> None:
    """An unknown key's line, a foreign key's, a data file's: each one option, as before."""
    lines = [
        "unknown option 'lerning_rate'; did you mean 'learning_rate'?",
        "unknown option 'bta'; did you mean 'beta'?",
        "--pretrain: also given as --model_name_or_path; keep one",
        "--beta and --max_steps: x",  # (a flag's spelling leads too)
        "beta must be > 0 (got -1)",
    ]
    assert options_named(lines) == 5
    assert str(ConfigErrors("", lines[3:])).startswith("2 options cannot be used:\n")


def test_lines_headed_by_their_source_count_the_options_they_name(
    tmp_path, monkeypatch, capsys
) -> None:
    """Flags and a file refused together head each line by its source ('m.yaml: warmup_steps
    and warmup_ratio are both set', 'command line: max_steps ...'): the count was of lines
    then (5 of 7 options, 6 of 8 with a device line and an unknown flag)."""
    from directpo.cli import main

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    recipe = tmp_path / "m.yaml"
    recipe.write_text(
        "model_name_or_path: base\nwarmup_steps: 5\nwarmup_ratio: 0.1\nbeta: -1\n"
        "load_in_4bit: true\nload_in_8bit: true\n"
    )
    flags = ["--max_steps", "-3", "--lora_target_modules", "q_proj", "--nosuch", "3"]
    assert main(["train", str(recipe), *flags, "--learning_rate", "x"]) == 2
    said = capsys.readouterr().err.strip().split("\n")
    assert said[0] == "directpo: error: 9 options cannot be used:", said
    heads = (f"  {recipe}: ", "  command line: ")
    assert len(said) == 8 and all(line.startswith(heads) for line in said[1:]), said
    lines = ["train(): beta must be > 0", "out/c.yaml: warmup_steps and warmup_ratio are both"]
    spaced = "my runs/m.yaml: load_in_4bit and load_in_8bit are both set: choose one"
    assert options_named([*lines, "unknown option 'x': beta?", spaced]) == 6
