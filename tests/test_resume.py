"""Resuming a run: the seed it takes."""

from __future__ import annotations

import re

from tiny import tiny_config

from directpo.cli_flags import yaml_and_flags
from directpo.config import DPOConfig, load_config
from directpo.options import read_record
from directpo.trainer import train


def test_a_null_seed_is_drawn_said_recorded_and_resumed_with(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """torchtune's ``seed: null`` (every recipe's: a seed drawn each run) was refused; a run
    draws one, says it and records it in config.yaml (the checkpoints' too), and a resume with
    ``seed: null`` takes its checkpoint's, so that it trains the steps the run trained."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: null\n")
    assert load_config(*yaml_and_flags([str(recipe)], DPOConfig)).seed is None
    out = tmp_path / "run"
    options = {"seed": None, "max_steps": 2, "save_steps": 1, "per_device_train_batch_size": 2}
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, **options)
    first = train(config, echo=lines.append)
    said = [m for line in lines if (m := re.fullmatch(r"seed: null: drew seed (\d+) .*", line))]
    assert len(said) == 1 and "(recorded in config.yaml)" in said[0].group(0)
    seed = int(said[0].group(1))
    for folder in (out, out / "checkpoint-1", out / "checkpoint-2"):
        assert read_record(str(folder / "config.yaml"))["seed"] == seed
    lines.clear()
    resumed = train(
        tiny_config(
            tiny_model_dirs["gpt2"],
            pairs_file,
            out,
            resume_from_checkpoint="checkpoint-1",
            **options,
        ),  # fmt: skip
        echo=lines.append,
    )
    assert f"seed: null: resuming with checkpoint-1's seed {seed}" in lines
    step_2 = [[row["loss"] for row in run.metrics if row["step"] == 2] for run in (first, resumed)]
    assert step_2[0] == step_2[1] and len(step_2[0]) == 1
