"""Resuming a run: the seed it takes, and what a resume says changed since its checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from tiny import tiny_config

from directpo.cli_flags import yaml_and_flags
from directpo.config import DPOConfig, load_config
from directpo.resume import _say_objective_changes, objective
from directpo.sources import FixedPairs, OnlineRounds
from directpo.trainer import train
from directpo.yaml_interpolation import read_run_record


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
    # (train() of a DPOConfig: said as its keyword is written; a recipe's reads 'seed: null')
    said = [m for line in lines if (m := re.fullmatch(r"seed=None: drew seed (\d+) .*", line))]
    assert len(said) == 1 and "(recorded in config.yaml)" in said[0].group(0)
    seed = int(said[0].group(1))
    for folder in (out, out / "checkpoint-1", out / "checkpoint-2"):
        assert read_run_record(str(folder / "config.yaml"))["seed"] == seed
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
    assert f"seed=None: resuming with checkpoint-1's seed {seed}" in lines
    step_2 = [[row["loss"] for row in run.metrics if row["step"] == 2] for run in (first, resumed)]
    assert step_2[0] == step_2[1] and len(step_2[0]) == 1


def _said(source: object, now: bool, state: dict) -> list[str]:
    """The resume lines of a run of ``source``'s kind with assistant_only_loss ``now``, from a
    checkpoint whose trainer state is ``state``."""
    lines: list[str] = []
    run = SimpleNamespace(
        config=DPOConfig(assistant_only_loss=now), source=source, echo=lines.append,
        model_files={},
    )  # fmt: skip
    _say_objective_changes(run, state, 4)
    return lines


def test_assistant_only_loss_changed_is_said_only_where_it_can_leave_tokens_out() -> None:
    """An online run resumed with assistant_only_loss turned on or off was told 'the loss and
    reward curves change there', where its pairs (the policy's samples, one reply each) leave
    nothing out; so was a checkpoint written before the effect was recorded, as if it were
    known. Online: not said; a checkpoint that does not record it: said with the condition."""
    online, fixed = object.__new__(OnlineRounds), object.__new__(FixedPairs)
    was_on = {"objective": objective(DPOConfig(assistant_only_loss=True))}
    was_off = {"objective": objective(DPOConfig()), "leaves_tokens_out": None}
    assert _said(online, False, {**was_on, "leaves_tokens_out": None}) == []
    assert _said(online, True, was_off) == []
    said = _said(fixed, False, was_on)  # (a checkpoint from before leaves_tokens_out)
    assert said == [
        "resume: assistant_only_loss True -> False (a change only where a completion holds a "
        "message the model does not write) changed since the checkpoint; the steps after 4 "
        "optimize this run's objective (the loss and reward curves change there)"
    ]
    assert _said(fixed, False, {**was_on, "leaves_tokens_out": False}) == []
    recorded = _said(fixed, False, {**was_on, "leaves_tokens_out": True})
    assert recorded[0].startswith("resume: assistant_only_loss True -> False changed since")


def test_a_resume_in_another_compute_dtype_says_so(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """A float32 run resumed with bf16: true (or back) computed its policy's and reference's
    log-probs in another dtype from the resume on, without a word; the checkpoint records its
    compute dtype and a resume in another one says where the curves may step."""
    out = tmp_path / "run"
    options = {"save_steps": 1, "per_device_train_batch_size": 3}
    train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=1, **options),
          echo=lambda _: None)  # fmt: skip
    lines: list[str] = []
    resumed = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, bf16=True,
                          resume_from_checkpoint=str(out / "checkpoint-1"), **options)  # fmt: skip
    train(resumed, echo=lines.append)
    assert (
        "resume: the steps up to 1 computed in float32, from here in bfloat16 (dtype / bf16): "
        "the loss and reward curves may step there"
    ) in lines


def test_a_resume_on_other_held_out_pairs_says_so(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """A resume with another eval_file (or its rows edited) compared the best eval value so
    far, measured on the others, with this run's and evaluated on without a word (the eval
    curves stepped). The checkpoint records its held-out pairs; a resume on others says so;
    on the same pairs, nothing."""
    from tiny import SENTIMENT_PAIRS, write_jsonl

    out, first = tmp_path / "run", write_jsonl(tmp_path / "a.jsonl", SENTIMENT_PAIRS[:3])
    other = write_jsonl(tmp_path / "b.jsonl", SENTIMENT_PAIRS[3:])
    options = {"save_steps": 1, "eval_steps": 1, "eval_strategy": "steps",
               "per_device_train_batch_size": 3, "metric_for_best_model": "eval/loss",
               "load_best_model_at_end": True}  # fmt: skip
    train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=1, eval_file=str(first),
                      **options), echo=lambda _: None)  # fmt: skip

    def said(eval_file: Path) -> list[str]:
        lines: list[str] = []
        config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2,
                             eval_file=str(eval_file), **options,
                             resume_from_checkpoint=str(out / "checkpoint-1"))  # fmt: skip
        train(config, echo=lines.append)
        return [line for line in lines if line.startswith("resume: the held-out pairs")]

    assert said(first) == []
    (line,) = said(other)
    assert re.fullmatch(
        r"resume: the held-out pairs differ from those evaluated up to step 1: the eval curves "
        r"step there; the best eval/loss so far \(\S+, step 1\) was measured on the others, "
        r"compared as it is with this run's",
        line,
    )


def test_a_resume_in_smaller_micro_batches_of_the_same_step_goes_on(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A resume with per_device_train_batch_size 1 and gradient_accumulation_steps 2 (after
    running out of memory) from a checkpoint of 2 x 1 was refused ('the data order would
    differ'), though each step is one slice of the epoch's order either way. It goes on, said
    in a line, and its steps are the uninterrupted run's; another number of pairs per step is
    still refused."""
    import json

    import pytest

    from directpo.errors import ConfigError

    def run(out: Path, steps: int, **options) -> list[str]:
        lines: list[str] = []
        config = tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=steps,
                             save_steps=1, **options)  # fmt: skip
        train(config, echo=lines.append)
        return lines

    def step_2(out: Path) -> dict:
        rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        return [row for row in rows if row.get("step") == 2 and "loss" in row][-1]

    whole, split = tmp_path / "whole", tmp_path / "split"
    run(whole, 2, per_device_train_batch_size=2)
    run(split, 1, per_device_train_batch_size=2)
    checkpoint = str(split / "checkpoint-1")
    lines = run(split, 2, per_device_train_batch_size=1, gradient_accumulation_steps=2,
                resume_from_checkpoint=checkpoint)  # fmt: skip
    assert (
        f"resume: {checkpoint} took its 2 pairs per step as 2 x 1 (per_device_train_batch_size x "
        "processes, gradient_accumulation_steps), this run as 1 x 2: the same pairs at each step"
    ) in lines
    for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
        assert step_2(split)[key] == pytest.approx(step_2(whole)[key], rel=1e-4, abs=1e-6), key
    with pytest.raises(ConfigError, match=r"took 2 pairs per step as 2 x 1 .* this run 1 as "
                       r"1 x 1; the data order would differ: resume with 2 pairs"):  # fmt: skip
        run(split, 2, per_device_train_batch_size=1, resume_from_checkpoint=checkpoint)


def test_a_lora_resume_over_another_base_says_the_policy_changed(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A LoRA checkpoint holds the adapters alone; its base (model_name_or_path) replaced by
    other weights between the checkpoint and the resume (a hub snapshot updated, a folder
    overwritten) made the trained adapters sit on another model. With the base as reference
    the resume said only 'the reference model's files changed', with a reference-free loss
    (simpo) nothing. The base is recorded and its change said as the policy's; a full
    fine-tune's checkpoint holds every weight and records none."""
    import shutil

    from tiny import save_tiny_model

    base = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "base")
    lora = {"lora_r": 2, "lora_target_modules": ["c_attn"], "save_steps": 1, "max_steps": 1}
    said: dict[str, list[str]] = {}
    for loss in ("sigmoid", "simpo"):
        out = tmp_path / loss
        train(tiny_config(base, pairs_file, out, loss_type=loss, **lora), echo=lambda _: None)
    shutil.rmtree(base)
    save_tiny_model("gpt2", base, seed=1)  # other weights where the base was
    for loss in ("sigmoid", "simpo"):
        said[loss] = lines = []
        again = {**lora, "max_steps": 2, "resume_from_checkpoint": "latest"}
        train(tiny_config(base, pairs_file, tmp_path / loss, loss_type=loss, **again),
              echo=lines.append)  # fmt: skip
    changed = f"resume: the base model's files at {base} changed since the checkpoint: the " \
              "trained adapters now apply to other weights"  # fmt: skip
    assert [line for line in said["sigmoid"] if "base model" in line] == [
        f"{changed} (the reference, the base with adapters off, too), another policy from "
        "step 1 (its loss and rewards jump there); resume with the base as it was, or start a "
        "new output_dir"
    ]
    assert [line for line in said["simpo"] if "base model" in line][0].startswith(
        f"{changed}, another policy from step 1"
    )
    full = {"save_steps": 1, "max_steps": 1}
    train(tiny_config(base, pairs_file, tmp_path / "full", **full), echo=lambda _: None)
    state = json.loads((tmp_path / "full" / "checkpoint-1" / "trainer_state.json").read_text())
    assert "adapted_base" in json.dumps(state) and '"adapted_base": null' in json.dumps(state)


def test_another_batch_size_refused_says_the_pairs_per_step_that_go_on() -> None:
    """A checkpoint of 4 x 1 pairs per step resumed as 3 x 1 was told 'resume with 4' (the
    batch size alone), though 2 x 2 (smaller micro-batches after running out of memory) goes
    on: the refusal says the pairs per step and a smaller split of them. With
    dataloader_drop_last (no other split) it says the batch size as before."""
    import pytest

    from directpo.errors import ConfigError
    from directpo.sources import _check_same

    saved = {"batch_size": 4, "accumulation": 1}
    with pytest.raises(ConfigError) as refused:
        _check_same(saved, {"batch_size": 3, "accumulation": 1}, "ckpt")
    assert str(refused.value) == (
        "resume_from_checkpoint: ckpt took 4 pairs per step as 4 x 1 (per_device_train_batch_size"
        " x processes, gradient_accumulation_steps), this run 3 as 3 x 1; the data order would "
        "differ: resume with 4 pairs per step (4 x 1, or 2 x 2), or start a new output_dir"
    )
    with pytest.raises(ConfigError, match=r"resume with 3 pairs per step \(1 x 3\), or start"):
        _check_same({"batch_size": 1, "accumulation": 3}, {"batch_size": 1, "accumulation": 2}, "c")
    dropping = {**saved, "drop_last": True}
    with pytest.raises(ConfigError, match=r"processes\)=4, this run has 3; .* resume with 4, or"):
        _check_same(dropping, {"batch_size": 3, "accumulation": 1, "drop_last": True}, "ckpt")


def test_a_resume_with_another_total_says_it_under_a_constant_schedule(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A resume that changes max_steps was said only through the learning rate it moved: under
    a constant schedule nothing changed there, so the longer (or shorter) run went on without a
    word. The checkpoint's total and this run's are said whatever the schedule."""
    out = tmp_path / "run"
    options = {"lr_scheduler_type": "constant", "save_steps": 1, "per_device_train_batch_size": 2}
    train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, **options), echo=str)
    lines: list[str] = []
    again = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, out, max_steps=4, resume_from_checkpoint="latest",
        **options,
    )  # fmt: skip
    train(again, echo=lines.append)
    said = [line for line in lines if "changed since the checkpoint" in line]
    assert said == [
        "resume: total steps (max_steps / num_train_epochs) 2 -> 4 changed since the "
        "checkpoint; the optimizer state continues under this run's values (learning rate now "
        f"{again.learning_rate:.3g})"
    ]
    lines.clear()
    same = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, out, max_steps=4,
        resume_from_checkpoint=str(out / "checkpoint-3"), **options,
    )  # fmt: skip
    train(same, echo=lines.append)
    assert [line for line in lines if "changed since the checkpoint" in line] == []


def test_a_resume_into_another_output_dir_keeps_the_curve_before_its_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A checkpoint resumed into another output_dir (a copy on faster disk, a fork of the run):
    the new folder's metrics.jsonl, its checkpoints' and its final trainer_state.json (the
    plot, the model card's curve) began at the resumed step, the steps before it lost; they
    are the checkpoint's own log (its trainer_state.json), as in transformers."""
    from directpo.tracking import read_metrics
    from directpo.trainer_state import logged_rows

    model, first, second = tiny_model_dirs["llama"], tmp_path / "first", tmp_path / "second"
    settings = dict(
        max_steps=4, save_steps=2, per_device_train_batch_size=2, eval_file=str(pairs_file),
        eval_steps=2,
    )  # fmt: skip
    train(tiny_config(model, pairs_file, first, **settings), echo=lambda _: None)
    resumed_from = str(first / "checkpoint-2")
    config = tiny_config(model, pairs_file, second, resume_from_checkpoint=resumed_from, **settings)
    train(config, echo=lambda _: None)

    def untimed(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if not k.endswith("/s")} for row in rows]

    assert [row["step"] for row in read_metrics(second)] == [1, 2, 2, 3, 4, 4]  # (evaluations)
    assert untimed(read_metrics(second)) == untimed(read_metrics(first))
    assert untimed(logged_rows(second / "checkpoint-4")) == untimed(
        logged_rows(first / "checkpoint-4")
    )
    # the final one's too, but its summary (train_loss: transformers' mean over this process's
    # steps, as after any resume)
    assert untimed(logged_rows(second)[:-1]) == untimed(logged_rows(first)[:-1])
