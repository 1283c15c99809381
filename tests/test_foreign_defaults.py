"""Another tool's defaults where its recipe leaves an option out: said in one start line."""

from __future__ import annotations

import dataclasses
import re

import pytest

from directpo.arguments import rebuilt_config
from directpo.callers import Caller, Entry, Spelling, called_by
from directpo.cli import COMMANDS, main
from directpo.config import DPOConfig, load_config
from directpo.foreign_defaults import (
    NOT_OPENRLHF,
    OPENRLHF,
    TORCHTUNE,
    TORCHTUNE_NAMES,
    TRL,
    foreign_defaults_note,
    tool_of,
)
from directpo.foreign_names import REFUSED, RENAMED
from directpo.start_notes import start_notes


def _recipe(tmp_path, text: str) -> DPOConfig:
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_config(str(path))


def _said(note: str | None) -> dict[str, str]:
    """The settings a note says to write (``set a: 1, b: {c: 0.1}`` -> {a: '1', ...})."""
    assert note is not None
    settings = note.split(": set ", 1)[1].rsplit(" for ", 1)[0]
    return dict(re.findall(r"(\w+): (\{[^}]*\}|[^,]+)", settings))


def test_an_openrlhf_recipe_is_told_the_defaults_it_left_out(tmp_path) -> None:
    """An OpenRLHF setup trained with directpo's schedule, Adam betas, learning rate, length,
    batch and lora_alpha without a word (docs/migrating.md said so; no run did): a start line
    lists exactly the unset ones, with the settings that give OpenRLHF's training."""
    config = _recipe(tmp_path, "pretrain: base\nlora_rank: 8\nlearning_rate: 5.0e-7\n")
    note = foreign_defaults_note(config)
    assert note is not None and note.startswith("OpenRLHF's defaults differ from directpo's")
    assert _said(note) == {
        "lr_scheduler_type": "cosine_with_min_lr",
        "lr_scheduler_kwargs": "{min_lr_rate: 0.1}",
        "warmup_ratio": "0.03",
        "adam_beta2": "0.95",
        "gradient_accumulation_steps": "16",  # train_batch_size 128 / 8 pairs a micro-step
        "max_length": "512",
        "lora_alpha": "16",
    }  # (learning_rate was set: not said; the flat flags' --bf16 was off by default)
    assert "here lr_scheduler_type linear" in note
    assert start_notes(config, 10, lora=True)[0] == note  # the run's first start line
    # the settings said, written out: OpenRLHF's training, nothing left to say
    written = "".join(f"{key}: {value}\n" for key, value in _said(note).items())
    assert foreign_defaults_note(_recipe(tmp_path, f"pretrain: base\nlora_rank: 8\n{written}"))
    full = _recipe(tmp_path, f"pretrain: base\nlora_rank: 8\nlearning_rate: 1.0e-5\n{written}")
    assert foreign_defaults_note(full) is None
    # the grouped options' versions train in bf16 by default (--ds.param_dtype)
    grouped = _recipe(tmp_path, f"model.model_name_or_path: base\nds.lora.rank: 8\n{written}")
    assert _said(foreign_defaults_note(grouped)) == {"learning_rate": "1e-05", "bf16": "true"}


def test_the_min_lr_floor_is_said_only_for_openrlhfs_schedule(tmp_path) -> None:
    config = _recipe(tmp_path, "pretrain: base\nlr_scheduler_type: cosine\n")
    assert "lr_scheduler_kwargs" not in _said(foreign_defaults_note(config))
    assert "lr_scheduler_type" not in _said(foreign_defaults_note(config))
    # a warmup given in steps is a warmup chosen
    config = _recipe(tmp_path, "pretrain: base\nwarmup_steps: 10\n")
    assert "warmup_ratio" not in _said(foreign_defaults_note(config))
    # without LoRA, lora_alpha trains nothing
    assert "lora_alpha" not in _said(foreign_defaults_note(_recipe(tmp_path, "pretrain: b\n")))


def test_an_openrlhf_command_line_is_told_them_as_flags(monkeypatch, capsys) -> None:
    built: list[DPOConfig] = []
    monkeypatch.setitem(COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=built.append))
    flags = ["--pretrain", "base", "--micro_train_batch_size", "4", "--bf16", "--max_length", "256"]
    assert main(["train", *flags]) == 0, capsys.readouterr().err
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        note = foreign_defaults_note(built[0])
    assert note is not None
    assert "give --learning_rate 1e-05, --lr_scheduler_type cosine_with_min_lr" in note
    assert "--gradient_accumulation_steps 32" in note  # 128 pairs a step, 4 a micro-step
    monkeypatch.setenv("WORLD_SIZE", "8")  # (torchrun's 8 processes: 128 pairs a step still)
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        assert "--gradient_accumulation_steps 4 for" in foreign_defaults_note(built[0])
    monkeypatch.delenv("WORLD_SIZE")
    assert "max_length" not in note and "bf16" not in note  # set by the command line
    # a resume's config rebuilt (a drawn seed, ...) keeps the tool its names were
    assert foreign_defaults_note(rebuilt_config(built[0], seed=7)) == foreign_defaults_note(
        built[0]
    )


def test_a_torchtune_recipe_is_told_the_defaults_it_left_out(tmp_path) -> None:
    """torchtune clips no gradient without clip_grad_norm, keeps lr constant without an
    lr_scheduler, decays with AdamW's 0.01 and cuts nothing without max_seq_len."""
    text = "checkpointer.checkpoint_dir: base\nepochs: 1\nbatch_size: 4\nmodel.lora_rank: 8\n"
    config = _recipe(tmp_path, text)
    assert tool_of(["epochs", "batch_size"]) == TORCHTUNE
    note = foreign_defaults_note(config)
    assert note is not None and note.startswith("torchtune's defaults differ")
    assert _said(note) == {
        "max_grad_norm": "null",
        "lr_scheduler_type": "constant",
        "weight_decay": "0.01",
        "max_length": "null",
        "lora_alpha": "16",
    }
    # a num_warmup_steps override is its cosine schedule's
    warm = _recipe(tmp_path, text + "lr_scheduler.num_warmup_steps: 10\n")
    assert _said(foreign_defaults_note(warm))["lr_scheduler_type"] == "cosine"
    written = "clip_grad_norm: null\nlr_scheduler_type: constant\nweight_decay: 0.01\n"
    written += "max_length: null\nmodel.lora_alpha: 16\n"
    assert foreign_defaults_note(_recipe(tmp_path, text + written)) is None


def test_a_trl_recipe_is_told_trls_epochs_and_precision(tmp_path) -> None:
    """TRL's DPOConfig trains 3 epochs in bf16 where a recipe leaves them out; its other
    defaults that change the result (lr, schedule, beta, lengths, loss, betas) are ours."""
    text = "model_name_or_path: base\ntorch_dtype: float32\npush_to_hub: false\n"
    config = _recipe(tmp_path, text)
    assert tool_of(["torch_dtype"]) == tool_of(["push_to_hub"]) == tool_of(["use_peft"]) == TRL
    assert _said(foreign_defaults_note(config)) == {"num_train_epochs": "3"}  # (dtype: set)
    config = _recipe(tmp_path, "model_name_or_path: base\nuse_peft: true\n")
    assert _said(foreign_defaults_note(config)) == {"num_train_epochs": "3", "bf16": "true"}
    done = "model_name_or_path: base\nuse_peft: true\nmax_steps: 100\nbf16: true\n"
    assert foreign_defaults_note(_recipe(tmp_path, done)) is None


@pytest.mark.parametrize(
    "text",
    [
        "model_name_or_path: base\n",
        "model_name_or_path: base\nbf16: true\nseed: 3\n",
        # padding_free is TRL's name too (trl_table.NO_EFFECT): here directpo's own option
        "model_name_or_path: base\npadding_free: false\n",
    ],
)
def test_directpos_own_names_are_told_no_tools_defaults(tmp_path, text) -> None:
    assert foreign_defaults_note(_recipe(tmp_path, text)) is None
    assert foreign_defaults_note(DPOConfig(model_name_or_path="base")) is None


def test_the_tools_names_are_those_foreign_names_reads() -> None:
    known = set(RENAMED) | set(REFUSED)
    assert known >= TORCHTUNE_NAMES | NOT_OPENRLHF
    assert tool_of(["pretrain"]) == tool_of(["ds.zero_stage"]) == OPENRLHF
    assert tool_of(["max_train_samples"]) is None
    assert tool_of(["seed", "output_dir"]) is None  # the same names in every tool


def test_a_run_from_openrlhfs_names_says_the_line_once(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """The line reaches a run's start, in the recipe's words (the CLI's run rebuilds the loaded
    config on its way); train()'s keywords are told theirs."""
    from directpo.trainer import train

    recipe = tmp_path / "openrlhf.yaml"
    recipe.write_text(
        f"pretrain: {tiny_model_dirs['llama']}\ntrain_file: {pairs_file}\n"
        f"save_path: {tmp_path / 'out'}\nmax_steps: 1\nreport_to: [none]\nsave_steps: 0\n"
        "micro_train_batch_size: 6\nmax_length: 256\nlearning_rate: 1.0e-5\n"
    )
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    (said,) = [line for line in out.splitlines() if line.startswith("OpenRLHF's defaults")]
    assert said.endswith(
        "set lr_scheduler_type: cosine_with_min_lr, lr_scheduler_kwargs: {min_lr_rate: 0.1}, "
        "warmup_ratio: 0.03, adam_beta2: 0.95, gradient_accumulation_steps: 21 for OpenRLHF's "
        "training"
    )
    lines: list[str] = []
    train(str(recipe), echo=lines.append, output_dir=str(tmp_path / "again"))
    (said,) = [line for line in lines if line.startswith("OpenRLHF's defaults")]
    assert "pass lr_scheduler_type='cosine_with_min_lr'" in said


def test_a_torchtune_recipes_drawn_seed_keeps_the_line(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """torchtune's recipes write seed: null: the config rebuilt with the drawn seed kept the
    tool its names were (the line was lost with it)."""
    recipe = tmp_path / "torchtune.yaml"
    recipe.write_text(
        f"checkpointer.checkpoint_dir: {tiny_model_dirs['llama']}\ntrain_file: {pairs_file}\n"
        f"output_dir: {tmp_path / 'out'}\nmax_steps: 1\nreport_to: [none]\nsave_steps: 0\n"
        "batch_size: 6\nseed: null\nlearning_rate: 1.0e-5\n"
    )
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "drew seed" in out
    (said,) = [line for line in out.splitlines() if line.startswith("torchtune's defaults")]
    assert said.endswith(
        "set max_grad_norm: null, lr_scheduler_type: constant, weight_decay: 0.01, "
        "max_length: null for torchtune's training"
    )
