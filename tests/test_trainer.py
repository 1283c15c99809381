from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
import torch
from tiny import SENTIMENT_PAIRS, quiet, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM

from directpo.config import DPOConfig
from directpo.errors import ConfigError, DataError
from directpo.losses import LOSSES
from directpo.tracking import read_metrics
from directpo.trainer import train

config_for = tiny_config


def train_rows(metrics: list[dict]) -> list[dict]:
    return [row for row in metrics if "loss" in row]


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_first_step_loss_is_ln2_when_policy_equals_reference(
    tiny_model_dirs, pairs_file, tmp_path, style
) -> None:
    result = train(config_for(tiny_model_dirs[style], pairs_file, tmp_path / "out"), echo=quiet)
    first = train_rows(result.metrics)[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_overfits_small_set_reference_frozen_output_reloads(
    tiny_model_dirs, pairs_file, tmp_path, style
) -> None:
    out = tmp_path / "out"
    result = train(
        config_for(
            tiny_model_dirs[style],
            pairs_file,
            out,
            max_steps=40,
            eval_file=str(pairs_file),
            eval_steps=20,
        ),
        echo=quiet,
    )
    rows = train_rows(result.metrics)
    assert [row["step"] for row in rows] == list(range(1, 41))
    assert rows[-1]["rewards/accuracies"] == 1.0
    assert rows[-1]["rewards/margins"] > rows[10]["rewards/margins"] > rows[0]["rewards/margins"]
    assert rows[-1]["loss"] < 0.5 < math.log(2)
    assert all(math.isfinite(row["grad_norm"]) for row in rows)
    evals = [row for row in result.metrics if "eval/loss" in row]
    assert [row["step"] for row in evals] == [20, 40]
    assert evals[-1]["eval/rewards/accuracies"] == 1.0

    # the reference is frozen and unchanged; the policy moved
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[style]).state_dict()
    reference = result.reference.model
    assert not any(p.requires_grad for p in reference.parameters())
    assert all(torch.equal(t, original[k]) for k, t in reference.state_dict().items())
    assert any(not torch.equal(t, original[k]) for k, t in result.policy.state_dict().items())

    # the output folder is a plain Hugging Face model folder with identical logits
    for name in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer_config.json",
        "config.yaml",
        "metrics.jsonl",
        "README.md",
    ):
        assert (out / name).is_file(), name
    ids = torch.tensor([[1, 5, 9, 30, 42]])
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    result.policy.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, result.policy(ids).logits)
    script = (
        "import sys, torch; from transformers import AutoModelForCausalLM;"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r});"
        "assert 'directpo' not in sys.modules;"
        "print(m(torch.tensor([[1, 5, 9, 30, 42]])).logits.sum().item());"
        "import gc; gc.freeze()"  # (the exit's collections of torch's heap: seconds, not tested)
    )
    printed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    with torch.no_grad():
        assert float(printed) == pytest.approx(result.policy(ids).logits.sum().item(), rel=1e-6)
    assert read_metrics(out) == result.metrics


def test_resume_continues_from_the_saved_step_exactly(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    model = tiny_model_dirs["llama"]
    settings = dict(
        max_steps=6,
        save_steps=3,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        logging_steps=2,
        warmup_steps=2,
    )
    full = train(config_for(model, pairs_file, tmp_path / "full", **settings), echo=quiet)
    assert (tmp_path / "full" / "checkpoint-3").is_dir()

    # an interrupted run: only checkpoint-3 and the metrics logged up to it survive
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "full" / "checkpoint-3", resumed_dir / "checkpoint-3")
    (resumed_dir / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in full.metrics if r["step"] <= 3)
        + json.dumps({"step": 4, "loss": 123.0})
        + "\n"
    )  # logged after the checkpoint: dropped
    resumed = train(
        config_for(model, pairs_file, resumed_dir, resume_from_checkpoint="latest", **settings),
        echo=quiet,
    )
    assert resumed.global_step == 6
    for key, tensor in full.policy.state_dict().items():
        assert torch.equal(tensor, resumed.policy.state_dict()[key]), key

    def comparable(rows):
        return [{k: v for k, v in r.items() if not k.endswith("/s")} for r in rows]

    # the window straddling the checkpoint (steps 3-4) is restored too
    assert comparable(read_metrics(resumed_dir)) == comparable(full.metrics)


def test_gradient_accumulation_equals_the_larger_batch(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    model = tiny_model_dirs["gpt2"]
    common = dict(max_steps=4, optimizer="rmsprop", lr_scheduler_type="cosine", warmup_steps=1)
    big = train(
        config_for(model, pairs_file, tmp_path / "a", per_device_train_batch_size=4, **common),
        echo=quiet,
    )
    small = train(
        config_for(
            model,
            pairs_file,
            tmp_path / "b",
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            **common,
        ),
        echo=quiet,
    )
    for a, b in zip(train_rows(big.metrics), train_rows(small.metrics), strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm", "learning_rate"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key


def test_python_api_with_a_dataset_and_tensorboard(tiny_model_dirs, tmp_path) -> None:
    dataset = datasets.Dataset.from_list(SENTIMENT_PAIRS)
    out = tmp_path / "out"
    result = train(
        config_for(
            tiny_model_dirs["llama"],
            None,
            out,
            max_steps=2,
            report_to=["tensorboard"],
            gradient_checkpointing=True,
        ),
        train_dataset=dataset,
        echo=quiet,
    )
    assert result.global_step == 2
    assert list((out / "runs").glob("events.out.tfevents.*"))
    # TRL's names there (transformers' rewrite_logs), so the curves overlay a TRL run's
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set(EventAccumulator(str(out / "runs")).Reload().Tags()["scalars"])
    assert {"train/loss", "train/rewards/chosen", "train/logps/chosen", "train/entropy"} <= tags
    assert not {"loss", "rewards/chosen"} & tags
    loss = EventAccumulator(str(out / "runs")).Reload().Scalars("train/loss")
    assert [e.step for e in loss] == [row["step"] for row in result.metrics]
    assert [e.value for e in loss] == pytest.approx([row["loss"] for row in result.metrics])


def test_token_statistics_are_computed_on_the_steps_that_log_alone(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's logits/*, entropy and mean_token_accuracy cost passes over the logits: a step
    that does not log skips them, and a logged step's values are those every-step logging
    gives at that step (they never touch the training)."""
    import directpo.logprobs as logprobs

    computed = []
    original = logprobs._token_diagnostics
    monkeypatch.setattr(
        logprobs, "_token_diagnostics", lambda *a: computed.append(1) or original(*a)
    )
    options = dict(max_steps=4, per_device_train_batch_size=2, save_steps=0)
    every = train(
        config_for(
            tiny_model_dirs["llama"], pairs_file, tmp_path / "a", logging_steps=1, **options
        ),
        echo=quiet,
    ).metrics
    calls_every = len(computed)
    computed.clear()
    second = train(
        config_for(
            tiny_model_dirs["llama"], pairs_file, tmp_path / "b", logging_steps=2, **options
        ),
        echo=quiet,
    ).metrics
    assert calls_every > 0 and len(computed) == calls_every / 2
    assert [row["step"] for row in second] == [2, 4]
    for row in second:
        same_step = every[row["step"] - 1]
        for key in ("logits/chosen", "logits/rejected", "entropy", "mean_token_accuracy"):
            assert row[key] == pytest.approx(same_step[key], rel=1e-6), key
        assert row["num_tokens"] == same_step["num_tokens"]


def test_wandb_and_mlflow_get_trls_names() -> None:
    """wandb: train/... and eval/... with train/global_step (TRL's x-axis); MLflow: the plain
    names and eval_..., as transformers' callbacks log a TRL run."""
    from directpo.tracking import _MLflow, _Wandb

    logged = []
    wandb, mlflow = object.__new__(_Wandb), object.__new__(_MLflow)
    wandb.run = SimpleNamespace(log=lambda metrics, step: logged.append((metrics, step)))
    mlflow.mlflow = SimpleNamespace(
        log_metrics=lambda metrics, step: logged.append((metrics, step))
    )
    metrics = {"loss": 0.5, "rewards/chosen": 0.1, "eval/loss": 0.7, "eval/rewards/margins": 0.2}
    wandb.log(7, metrics)
    mlflow.log(7, metrics)
    assert logged == [
        ({"train/loss": 0.5, "train/rewards/chosen": 0.1, "eval/loss": 0.7,
          "eval/rewards/margins": 0.2, "train/global_step": 7}, 7),
        ({"loss": 0.5, "rewards/chosen": 0.1, "eval_loss": 0.7, "eval_rewards/margins": 0.2}, 7),
    ]  # fmt: skip


def test_refuses_to_overwrite_a_finished_run(tiny_model_dirs, pairs_file, tmp_path) -> None:
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out")
    train(config, echo=quiet)
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds a finished run"):
        train(config, echo=quiet)
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    config.overwrite_output_dir = True
    assert train(config, echo=quiet).global_step == 1


@pytest.mark.parametrize("loss_type", sorted(LOSSES))
def test_each_loss_trains_the_policy_with_finite_loss(
    tiny_model_dirs, pairs_file, tmp_path, loss_type
) -> None:
    extra = {"label_smoothing": 1e-3} if loss_type == "exo_pair" else {}
    result = train(
        config_for(
            tiny_model_dirs["gpt2"],
            pairs_file,
            tmp_path / "out",
            loss_type=[loss_type],
            max_steps=3,
            **extra,
        ),
        echo=quiet,
    )
    rows = train_rows(result.metrics)
    assert len(rows) == 3 and all(math.isfinite(r["loss"]) for r in rows)
    assert rows[0][f"loss/{loss_type}"] == pytest.approx(rows[0]["loss"])
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).state_dict()
    assert any(not torch.equal(t, original[k]) for k, t in result.policy.state_dict().items())


def test_reference_free_losses_never_load_a_reference(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    import directpo.reference as reference_module

    loaded = []
    real = reference_module.load_causal_lm
    monkeypatch.setattr(
        reference_module,
        "load_causal_lm",
        lambda path, *a, **k: loaded.append(k["trainable"]) or real(path, *a, **k),
    )
    result = train(
        config_for(
            tiny_model_dirs["llama"],
            pairs_file,
            tmp_path / "out",
            loss_type=["simpo", "sft"],
            loss_weights=[1.0, 0.5],
            max_steps=2,
        ),
        echo=quiet,
    )
    assert loaded == [True] and result.reference is None
    row = train_rows(result.metrics)[0]
    assert row["loss"] == pytest.approx(row["loss/simpo"] + 0.5 * row["loss/sft"], rel=1e-6)


def test_combined_losses_log_each_component(tiny_model_dirs, pairs_file, tmp_path) -> None:
    result = train(
        config_for(
            tiny_model_dirs["gpt2"],
            pairs_file,
            tmp_path / "out",
            loss_type=["sigmoid", "sft"],
            loss_weights=[1.0, 0.2],
            max_steps=2,
        ),
        echo=quiet,
    )
    first = train_rows(result.metrics)[0]
    assert first["loss/sigmoid"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["loss/sft"] > 0
    assert first["loss"] == pytest.approx(first["loss/sigmoid"] + 0.2 * first["loss/sft"], rel=1e-6)


def test_overwrite_keeps_old_checkpoints_when_the_new_input_is_bad(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    out = tmp_path / "out"
    train(
        config_for(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, save_steps=1), echo=quiet
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b"}\n')
    with pytest.raises(DataError):
        train(config_for(tiny_model_dirs["gpt2"], bad, out, overwrite_output_dir=True), echo=quiet)
    assert [p.name for p in sorted(out.glob("checkpoint-*"))] == ["checkpoint-1", "checkpoint-2"]


def test_train_takes_a_list_of_dicts_or_a_dataframe(tiny_model_dirs, tmp_path) -> None:
    import pandas as pd

    runs = {}
    for name, rows in (
        ("list", SENTIMENT_PAIRS),
        ("frame", pd.DataFrame(SENTIMENT_PAIRS)),
        ("dataset", datasets.Dataset.from_list(SENTIMENT_PAIRS)),
    ):
        config = config_for(tiny_model_dirs["gpt2"], None, tmp_path / name, max_steps=2)
        runs[name] = [r["loss"] for r in train_rows(train(config, rows, echo=quiet).metrics)]
    assert runs["list"] == runs["frame"] == runs["dataset"]
    with pytest.raises(DataError, match="expected a file path, a datasets.Dataset"):
        train(config_for(tiny_model_dirs["gpt2"], None, tmp_path / "bad"), 42, echo=quiet)


def test_max_length_alone_and_the_model_card(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """Setting only max_length works (the prompt limit derives from it); the model card names
    the losses as a user wrote them."""
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out", max_length=8,
        loss_type=["sigmoid", "sft"], loss_weights=[1.0, 0.2], skip_invalid_rows=True,
    )  # fmt: skip
    assert config.max_prompt_length is None and config.prompt_limit == 7
    lines: list[str] = []
    train(config, echo=lines.append)
    assert any("truncated" in line for line in lines)  # prompts cut to 7, completions to fit 8
    card = (tmp_path / "out" / "README.md").read_text()
    assert "(loss `sigmoid` x 1 + `sft` x 0.2, beta 0.1)" in card and "['" not in card
    with pytest.raises(ConfigError, match="max_prompt_length must be >= 1 and < max_length"):
        config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "x", max_length=8,
                   max_prompt_length=8)  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [
        {"ld_alpha": 0.3},
        {"ld_alpha": 0.3, "precompute_ref_log_probs": True},
        {"ld_alpha": 0.3, "lora_r": 4},
        {"use_weighting": True, "f_divergence_type": "js_divergence"},
    ],
)
def test_loss_modifiers_reach_policy_and_reference(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, options
) -> None:
    """LD-DPO weighs the reference's tokens as the policy's (live, precomputed, adapters off):
    policy == reference still gives loss ln 2 at the first step; the run then learns."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=6,
                        **options)  # fmt: skip
    rows = train_rows(train(config, echo=quiet).metrics)
    weight = rows[0].get("wpo/pair_weight", 1.0)  # WPO scales each pair's loss
    assert 0 < weight <= 1
    if options.get("use_weighting"):  # the policy's scorer computed WPO's aligned log-probs
        assert weight < 1 - 1e-4, weight
    assert rows[0]["loss"] == pytest.approx(math.log(2) * weight, abs=1e-6)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_what_train_returns_is_public_and_documented() -> None:
    """A script annotating ``-> directpo.TrainResult`` met an AttributeError; ``stopped_by``,
    which a script must read to stop after a signal, was missing from train's docstring."""
    import directpo
    from directpo.trainer import TrainResult

    assert directpo.TrainResult is TrainResult and "TrainResult" in directpo.__all__
    # every error train() raises can be caught by its name: an `except directpo.TrainingStopped`
    # (out of memory) met an AttributeError, raised in place of the error it was to catch
    from directpo import errors

    raised = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert all(getattr(directpo, kind.__name__, None) is kind for kind in raised if
               kind is not errors.ConfigErrors)  # fmt: skip
    documented = {"output_dir", "global_step", "metrics", "policy", "reference", "stopped_by",
                  "train_metrics", "training_loss"}  # fmt: skip
    assert all(f"``{name}``" in train.__doc__ for name in documented)


def test_a_runs_config_yaml_says_which_datasets_came_from_train_arguments(
    tiny_model_dirs, tmp_path
) -> None:
    """config.yaml records train_file: null for pairs given as train_dataset: rerunning it
    failed, and without eval_dataset a rerun did not evaluate, without a word. The file says
    so, and load_config(it) with the same datasets reruns the run."""
    from directpo.config import load_config

    rows = SENTIMENT_PAIRS
    config = config_for(tiny_model_dirs["llama"], None, tmp_path / "out", max_steps=2)
    first = train(config, train_dataset=rows, eval_dataset=rows[:2], echo=quiet)
    record = tmp_path / "out" / "config.yaml"
    assert record.read_text().splitlines()[0] == (
        "# train_dataset and eval_dataset given to train(), not as options: rerun with "
        "train(load_config('config.yaml'), train_dataset=..., eval_dataset=...)"
    )
    again = load_config(record, {"output_dir": str(tmp_path / "again")})
    second = train(again, train_dataset=rows, eval_dataset=rows[:2], echo=quiet)
    assert [row.get("loss") for row in first.metrics] == [row.get("loss") for row in second.metrics]
    assert (tmp_path / "again" / "config.yaml").read_text() == record.read_text().replace(
        str(tmp_path / "out"), str(tmp_path / "again")
    )


def test_echo_none_trains_silently_and_a_value_that_is_no_function_is_refused_first(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """``echo=None`` (a callback's usual "none") failed with "'NoneType' object is not
    callable" at the first line, once the output folder was made; it means silence."""
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out", disable_tqdm=True)
    result = train(config, echo=None)
    assert result.global_step == 1 and capsys.readouterr().out == ""
    with pytest.raises(TypeError, match="^echo must be a function of a line"):
        train(config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "new"), echo="quiet")
    assert not (tmp_path / "new").exists()


def test_a_bad_row_leaves_no_empty_output_folders_behind(tiny_model_dirs, tmp_path) -> None:
    """train made output_dir and its missing parents before reading the rows; a bad row took
    back output_dir alone, leaving the parents it had made empty."""
    data = write_jsonl(tmp_path / "bad.jsonl", [*SENTIMENT_PAIRS[:2], {"prompt": 5}])
    out = tmp_path / "new" / "deeper" / "run"
    with pytest.raises(DataError, match="line 3"):
        train(config_for(tiny_model_dirs["gpt2"], data, out), echo=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]
    (tmp_path / "kept").mkdir()  # a folder that was there stays, with what someone put in it
    with pytest.raises(DataError, match="line 3"):
        train(config_for(tiny_model_dirs["gpt2"], data, tmp_path / "kept" / "a" / "run"))
    assert list((tmp_path / "kept").iterdir()) == []


def test_the_returned_policy_answers_as_the_saved_folder_does(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """train()'s policy was left in training mode: with disable_dropout: false its outputs
    had dropout in them, differing from the saved folder's and from call to call."""
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out",
                        disable_dropout=False)  # fmt: skip
    policy = train(config, echo=quiet).policy
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        first, second = policy(ids).logits, policy(ids).logits
        saved = AutoModelForCausalLM.from_pretrained(tmp_path / "out")(ids).logits
    assert torch.equal(first, second)
    assert torch.allclose(first, saved, atol=1e-6)


@pytest.mark.parametrize("lora", [False, True])
def test_the_returned_policy_has_the_saved_folders_use_cache_and_no_checkpointing(
    tiny_model_dirs, pairs_file, tmp_path, lora
) -> None:
    """train()'s policy kept what only training's steps needed: activation checkpointing on
    and use_cache off (gradient_checkpointing); a notebook's policy.train() went on
    checkpointing, and policy.save_pretrained() wrote use_cache: false. disable_dropout's zeros
    stay (the model as trained, as TRL's)."""
    from transformers import AutoConfig

    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out",
                        gradient_checkpointing=True, disable_dropout=True,
                        **({"lora_r": 4} if lora else {}))  # fmt: skip
    policy = train(config, echo=quiet).policy
    inner = policy.get_base_model() if lora else policy
    assert AutoConfig.from_pretrained(tiny_model_dirs["gpt2"]).use_cache is True
    assert inner.config.use_cache is True and inner.config.attn_pdrop == 0.0
    assert not any(getattr(m, "gradient_checkpointing", False) for m in inner.modules())
    assert not any(m._forward_hooks for m in inner.modules())  # inputs made to require grads


def test_a_notebook_config_changed_after_it_was_built_is_checked_and_used(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """train() checks the config again: an attribute set after construction is refused or takes
    effect as at construction (use_peft: LoRA); every line, step lines too, goes to ``echo``;
    a foreign config or peft_config is a TypeError naming it."""
    config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / "bad")
    config.learning_rate = -1.0
    with pytest.raises(ConfigError, match=r"^learning_rate must be > 0 \(got -1.0\)$"):
        train(config, echo=quiet)
    config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / "lora")
    config.use_peft = True
    lines: list[str] = []
    train(config, echo=lines.append)
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    assert config.lora_r is None  # the caller's object is left as it was
    assert any(line.startswith("step 1/1 loss=") for line in lines)
    assert "step 1/1" not in capsys.readouterr().out
    with pytest.raises(TypeError, match="^train\\(\\) takes a directpo.DPOConfig, got types."):
        train(__import__("types").SimpleNamespace(output_dir="x"))
    with pytest.raises(TypeError, match="^peft_config must be a PEFT config object .* got dict$"):
        train(config, peft_config={"r": 8})


def test_a_run_that_fails_midway_closes_its_trackers(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A notebook's failed train() must not leave TensorBoard's writer (or a wandb / mlflow run
    the next train() would log into) open."""
    from directpo import tracking

    closed: list[int] = []
    monkeypatch.setattr(tracking._TensorBoard, "close", lambda self: closed.append(1))
    opened: list[object] = []
    real_open = tracking._open_tracker
    monkeypatch.setattr(tracking, "_open_tracker", lambda *a: opened.append(1) or real_open(*a))

    def failing_log_step(*args: object) -> str:
        raise RuntimeError("disk went away")

    monkeypatch.setattr("directpo.trainer.log_step", failing_log_step)
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out",
                        report_to=["tensorboard"])  # fmt: skip
    with pytest.raises(RuntimeError, match="disk went away"):
        train(config, echo=quiet)
    assert closed == [1]

    def failing_echo(line: str) -> None:  # a notebook's own callback, broken (or Ctrl-C there)
        if line.startswith("training "):  # the setup's last line: trackers were open then
            raise ValueError("my echo broke")

    with pytest.raises(ValueError, match="my echo broke"):
        train(dataclasses.replace(config, output_dir=str(tmp_path / "echo")), echo=failing_echo)
    assert len(opened) == len(closed)  # (it opened TensorBoard's writer before that line)


def test_the_callers_random_generators_are_its_own_again_after_train(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """train() seeds random, numpy and torch with the run's seed; left so, a sweep drawing its
    settings with random.choice between runs drew the same settings after every run."""
    import random

    import numpy as np

    def draws() -> tuple:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    expected = draws()
    random.seed(11), np.random.seed(11), torch.manual_seed(11)
    first = train(config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "a"), echo=quiet)
    assert draws() == expected
    second = train(config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "b"), echo=quiet)
    assert draws() != expected  # not the same state after every run
    losses = [[row["loss"] for row in train_rows(r.metrics)] for r in (first, second)]
    assert losses[0] == losses[1]  # the runs themselves are still seeded


@pytest.mark.parametrize("stop", ["interrupt", "error"])
def test_a_stopped_run_does_not_keep_its_models_alive_in_the_error(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, stop
) -> None:
    """A notebook keeps the last error (sys.last_exc); its frames held the run's policy,
    reference and optimizer state, so a retry after running out of GPU memory found it full."""
    import gc
    import weakref

    from directpo.errors import TrainingStopped

    held: list[weakref.ref] = []

    def stopping_step(run, step, measure=False):
        held.extend(weakref.ref(m) for m in (run.policy, run.reference.model, run.optimizer))
        raise KeyboardInterrupt if stop == "interrupt" else TrainingStopped("out of memory")

    monkeypatch.setattr("directpo.trainer.train_step", stopping_step)
    config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / "out")
    with pytest.raises((KeyboardInterrupt, TrainingStopped)) as caught:
        train(config, echo=quiet)
    gc.collect()
    assert len(held) == 3 and [ref() for ref in held] == [None, None, None]
    shown = "".join(__import__("traceback").format_exception(caught.value))
    assert "in stopping_step" in shown  # the traceback still names every frame


def test_disable_tqdm_and_log_level_last_for_the_run_only(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """In a notebook, transformers' and datasets' progress bars and verbosity are the
    notebook's again after train() (they stayed off / at the run's level)."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out",
                        disable_tqdm=True, log_level="error")  # fmt: skip
    train(config, echo=quiet)
    assert hf_logging.is_progress_bar_enabled() and not datasets.are_progress_bars_disabled()
    assert hf_logging.get_verbosity() == before


def test_a_run_keeps_token_ids_not_the_files_texts(tiny_model_dirs, tmp_path) -> None:
    """The model card needs one line of the data; the run held every row's texts (a 150k-row
    file: ~5 GB for the whole run) only for it."""
    import gc

    from directpo.data import PreferenceExample
    from directpo.distributed import SINGLE_PROCESS
    from directpo.run import prepare_run

    rows = [{"prompt": f"Review {i}: the film was", "chosen": " moving.", "rejected": " dull."}
            for i in range(200)]  # fmt: skip
    config = tiny_config(tiny_model_dirs["llama"], None, tmp_path / "out", max_steps=1)

    def examples_alive() -> int:
        gc.collect()
        return sum(type(o) is PreferenceExample for o in gc.get_objects())

    before = examples_alive()
    run = prepare_run(config, datasets.Dataset.from_list(rows), None, SINGLE_PROCESS, quiet)
    assert len(run.train.pairs) == 200
    assert examples_alive() - before < 10
    assert run.train_summary.endswith("200 pairs, layout explicit")


def test_prompts_that_fill_max_length_are_warned_of(tiny_model_dirs, tmp_path) -> None:
    """A multi-turn file whose prompts fill max_length trained on 1-token completions with only
    'truncated: N prompts' said (27% of a 10k-row file); many such completions are a warning."""
    from directpo.distributed import SINGLE_PROCESS
    from directpo.run import prepare_run

    long = "Human: tell me about the movie. " * 6
    rows = [{"prompt": long + str(i), "chosen": " wonderful and the acting was great.",
             "rejected": " terrible."} for i in range(4)]  # fmt: skip
    rows.append({"prompt": "Hi", "chosen": " Hello there.", "rejected": " Go away."})
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["llama"], None, tmp_path / "out", max_length=40)
    prepare_run(config, rows, None, SINGLE_PROCESS, lines.append)
    warning = [line for line in lines if line.startswith("warning: train: ")]
    # under a quarter of max_length 40: a toy max_length is not held to 32 tokens
    assert len(warning) == 1 and "8 of 10 completions keep under 10 tokens" in warning[0]
    assert any("(8 of these completions cut short by their prompt)" in line for line in lines)
    lines.clear()
    config = tiny_config(tiny_model_dirs["llama"], None, tmp_path / "out2", max_length=400)
    prepare_run(config, rows, None, SINGLE_PROCESS, lines.append)
    assert not any(line.startswith("warning") for line in lines)


def test_a_chat_template_that_writes_todays_date_is_noted(tiny_model_dirs, tmp_path) -> None:
    """Llama 3.1+ templates write strftime_now's date into every prompt: a run resumed on
    another day was refused as "trained on other pairs" with no word of why."""
    from directpo.distributed import SINGLE_PROCESS
    from directpo.run import prepare_run

    dated = (
        "{% if not date_string is defined %}{% set date_string = strftime_now('%d %b %Y') %}"
        "{% endif %}Today Date: {{ date_string }}\n{% for m in messages %}{{ m['content'] }}"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    user = [{"role": "user", "content": "Hi"}]
    rows = [{"prompt": user, "chosen": "Hello.", "rejected": "Go."}]
    notes = []
    for kwargs in (None, {"date_string": "26 Jul 2024"}):
        lines: list[str] = []
        config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / str(len(notes)),
                             chat_template=dated, chat_template_kwargs=kwargs)  # fmt: skip
        run = prepare_run(config, rows, None, SINGLE_PROCESS, lines.append)
        notes.append([line for line in lines if "writes today's date" in line])
        prompt = run.tokenizer.decode(run.train.pairs[0].prompt_ids)
        assert prompt.startswith("Today Date: " + (kwargs or {}).get("date_string", ""))
    assert notes[0] == [
        "note: the chat template writes today's date into each prompt (strftime_now, as Llama "
        "3.1+ templates do), so a resume on another day sees other prompts and is refused; pin "
        "it with chat_template_kwargs: {date_string: '26 Jul 2024'}"
    ]
    assert notes[1] == []


def test_system_column_reaches_the_chat_template(tiny_model_dirs, tmp_path) -> None:
    """Intel/orca_dpo_pairs' system text was lost (no option read it); system_column makes it
    each prompt's system turn, and a tokenizer without a chat template is refused at start,
    naming the option, rather than every text row as "conversational"."""
    import shutil

    from directpo.distributed import SINGLE_PROCESS
    from directpo.run import prepare_run

    rows = [
        {"system": "Be exact.", "question": "What is 1+1?", "chosen": "2.", "rejected": "3."},
        {"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."},
    ]
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "out",
                         prompt_column="question", system_column="system")  # fmt: skip
    run = prepare_run(config, rows, None, SINGLE_PROCESS, lambda line: None)
    prompts = [run.tokenizer.decode(pair.prompt_ids) for pair in run.train.pairs]
    assert sorted(prompts) == sorted([
        "<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n"
        "<|im_start|>assistant\n",
        "<|im_start|>user\nSky?<|im_end|>\n<|im_start|>assistant\n",
    ])  # fmt: skip
    bare = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    config = tiny_config(bare, None, tmp_path / "out2", prompt_column="question",
                         system_column="system")  # fmt: skip
    with pytest.raises(ConfigError, match="^system_column 'system' makes each prompt a conv"):
        prepare_run(config, rows, None, SINGLE_PROCESS, lambda line: None)


@pytest.mark.parametrize(("style", "dtype"), [("gpt2", "float32"), ("llama", "bfloat16")])
def test_weight_decay_spares_biases_and_norms_as_transformers_trainer(
    tiny_model_dirs, pairs_file, tmp_path, style, dtype
) -> None:
    # after one step, weight decay changes exactly the weights that transformers' Trainer (so
    # TRL) decays: biases and norm weights keep Adam's update alone
    from transformers import Trainer

    model = tiny_model_dirs[style]
    weights = {}
    for decay in (0.0, 0.5):
        out = tmp_path / str(decay)
        config = config_for(model, pairs_file, out, weight_decay=decay, dtype=dtype)
        weights[decay] = dict(train(config, echo=quiet).policy.named_parameters())
    base = AutoModelForCausalLM.from_pretrained(model)
    decayed = set(Trainer.get_decay_parameter_names(None, base))
    assert len(decayed) < len(weights[0.0])  # the model has biases or norms
    for name, tensor in weights[0.0].items():
        assert torch.equal(tensor, weights[0.5][name]) == (name not in decayed), name


def test_logged_epoch_counts_micro_batches_as_transformers_trainer(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    # 6 pairs, batch 1 x accumulation 4: an epoch is 6 micro-batches in 2 steps (4, then 2);
    # transformers' epoch = micro-batches done / micro-batches per epoch
    config = config_for(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=3,
        per_device_train_batch_size=1, gradient_accumulation_steps=4,
    )  # fmt: skip
    epochs = [row["epoch"] for row in train_rows(train(config, echo=quiet).metrics)]
    assert epochs == pytest.approx([4 / 6, 1.0, 1 + 4 / 6])


def test_eval_on_start_logs_the_starting_models_baseline_at_step_0(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """TRL's eval_on_start was refused: the baseline a run starts from (policy = reference:
    loss ln 2, every reward 0) is logged at step 0. As in transformers it is no candidate for
    the best model (here it would be: a smaller margin is 'better'); it asks for evaluations."""
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", max_steps=2,
        eval_file=str(pairs_file), eval_steps=2, eval_on_start=True, load_best_model_at_end=True,
        metric_for_best_model="eval_rewards/margins", greater_is_better=False,
    )  # fmt: skip
    result = train(config, echo=lines.append)
    evals = [row for row in result.metrics if "eval/loss" in row]
    assert [row["step"] for row in evals] == [0, 2]
    assert evals[0]["eval/loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert evals[0]["eval/rewards/chosen"] == evals[0]["eval/rewards/margins"] == 0
    assert evals[1]["eval/rewards/margins"] > 0
    assert [row["step"] for row in read_metrics(tmp_path / "run") if "eval/loss" in row] == [0, 2]
    assert not (tmp_path / "run" / "checkpoint-0").exists()
    assert any(line.startswith("loaded the best model: step 2") for line in lines)
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "x", eval_on_start=True)
    # (train(): the keywords to pass)
    with pytest.raises(
        ConfigError, match=r"^eval_on_start needs evaluations: pass eval_file=\.\.\."
    ):
        train(config, echo=quiet)


def test_named_eval_sets_log_each_set_under_its_name(tiny_model_dirs, tmp_path) -> None:
    """transformers' Trainer (so TRL) takes eval_dataset={"name": ds, ...} and logs
    eval_<name>_loss ...; directpo refused a dict. Each set is now evaluated on its own pairs
    (the same values as that set given alone), logged eval/<name>_..., and
    metric_for_best_model may name one (eval_chat_loss); eval_file takes the same mapping."""
    from directpo.demo.plots import _series

    chat, code = SENTIMENT_PAIRS[:4], SENTIMENT_PAIRS[4:8]
    alone = train(
        tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "alone", max_steps=1),
        SENTIMENT_PAIRS, code, echo=quiet,
    )  # fmt: skip
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["gpt2"], None, tmp_path / "named", max_steps=1,
        metric_for_best_model="eval_chat_loss", load_best_model_at_end=True,
    )  # fmt: skip
    named = train(config, SENTIMENT_PAIRS, {"chat": chat, "code": code}, echo=lines.append)
    (expected,) = [row for row in alone.metrics if "eval/loss" in row]
    (row,) = [row for row in named.metrics if "eval/code_loss" in row]
    metrics = [key.removeprefix("eval/") for key in expected if key.startswith("eval/")]
    assert metrics and {f"eval/chat_{m}" for m in metrics} | {
        f"eval/code_{m}" for m in metrics
    } == {key for key in row if key.startswith("eval/")}
    for metric in metrics:
        assert row[f"eval/code_{metric}"] == pytest.approx(expected[f"eval/{metric}"], rel=1e-5)
    assert any(line.startswith("loaded the best model: step 1, eval/chat_loss") for line in lines)
    assert list(_series(named.metrics, "loss")) == ["train", "eval chat", "eval code"]
    # the YAML form: eval_file: {name: file(s)}
    files = {name: str(write_jsonl(tmp_path / f"{name}.jsonl", rows))
             for name, rows in (("chat", chat), ("code", code))}  # fmt: skip
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "files", max_steps=1,
                         eval_file=files)  # fmt: skip
    (row,) = [
        r for r in train(config, SENTIMENT_PAIRS, echo=quiet).metrics if "eval/code_loss" in r
    ]
    assert row["eval/code_loss"] == pytest.approx(expected["eval/loss"], rel=1e-5)
    # the default metric (eval/loss) is no set's: said with the sets' losses
    config = tiny_config(tiny_model_dirs["gpt2"], None, tmp_path / "x", max_steps=1,
                         load_best_model_at_end=True)  # fmt: skip
    with pytest.raises(ConfigError, match=r"by default eval_loss, which named eval sets do not "
                                          r"log .*\(eval_chat_loss, or another"):  # fmt: skip
        train(config, SENTIMENT_PAIRS, {"chat": chat}, echo=quiet)
    with pytest.raises(ConfigError, match=r"^eval_dataset\['a b'\]: a set name must be a word"):
        train(config, SENTIMENT_PAIRS, {"a b": chat}, echo=quiet)
    # a DatasetDict of several splits is named sets, as transformers' Trainer takes it; of one
    # split, that split unnamed (as train_dataset's)
    from directpo.run_sources import named_eval_sets

    split = datasets.Dataset.from_list(chat)
    several = datasets.DatasetDict({"valid": split, "test": split})
    assert {k: v[1] for k, v in named_eval_sets(config, several).items()} == {
        "valid": "eval_dataset['valid']", "test": "eval_dataset['test']"
    }  # fmt: skip
    assert named_eval_sets(config, datasets.DatasetDict({"test": split})) == {}


def test_the_start_line_names_the_attention_and_checkpointing_chosen(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """attn_implementation: auto picks by device and dtype (varlen on CUDA in bf16, else SDPA)
    and the start-up checks may fall back: the start line says what the policy runs, and
    whether activations are recomputed (off by default, where TRL's default is on). It said
    neither, so a GPU user could not tell whether the fast kernel ran."""
    from directpo import attention
    from directpo.precision import PrecisionPolicy
    from directpo.start_line import kernel_words

    def start_line(out: str, **options) -> str:
        lines: list[str] = []
        config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / out, **options)
        train(config, echo=lines.append)
        return next(line for line in lines if line.startswith("training "))

    assert start_line("default").endswith(" accumulation, attention sdpa")
    assert start_line("one", max_steps=1).startswith("training 1 step (")  # (not "1 steps")
    line = start_line("varlen", attn_implementation="varlen", gradient_checkpointing=True)
    assert line.endswith(", attention varlen (math), gradient checkpointing")  # exact on CPU
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    policy.config._attn_implementation = attention.IMPLEMENTATION
    monkeypatch.setattr(attention, "available_backend", lambda device: "flash_attn")
    cuda, bf16 = torch.device("cuda"), PrecisionPolicy(compute=torch.bfloat16)
    assert kernel_words(policy, cuda, bf16, False) == "attention varlen (flash_attn)"
    assert kernel_words(policy, cuda, PrecisionPolicy(), False) == "attention varlen (math)"


def test_tf32_sets_cudas_matmul_precision_for_the_run_and_gives_it_back() -> None:
    """TRL's tf32 was refused. On CUDA it sets the float32 precision of matmuls and cuDNN (each
    backend itself: the generic switch transformers sets does not override one set before);
    the caller's setting is back afterwards; on the CPU it changes nothing and says so."""
    from directpo.process_state import _tf32_switches, numeric_switches

    def values() -> list:
        return [getattr(target, name) for target, name, _, _ in _tf32_switches()]

    before = values()
    lines: list[str] = []
    for wanted in (True, False):
        with numeric_switches(wanted, False, torch.device("cuda"), lines.append):
            inside = values()
        assert inside == [on if wanted else off for _, _, on, off in _tf32_switches()]
        assert values() == before
    with numeric_switches(True, False, torch.device("cpu"), lines.append):
        assert values() == before
    assert lines == ["tf32: true has no effect on the CPU (TF32 is a CUDA matmul mode)"]


def test_full_determinism_holds_during_the_run_and_is_undone_after(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's full_determinism was refused. As transformers' enable_full_determinism: torch's
    deterministic algorithms, cuDNN deterministic without benchmark and the variables CUDA and
    cuBLAS read, during the run (a CPU run trains under them); the caller's state after it."""
    import os

    import directpo.trainer as trainer_module

    seen = []
    step = trainer_module.train_step

    def recording(*args, **kwargs):
        seen.append((
            torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        ))  # fmt: skip
        return step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", recording)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "a", max_steps=2)
    plain = train(config, echo=quiet)
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "b", max_steps=2, full_determinism=True
    )
    determined = train(config, echo=quiet)
    assert seen == [(False, False, False, None)] * 2 + [(True, True, False, ":16:8")] * 2
    assert not torch.are_deterministic_algorithms_enabled()
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    # the same numbers (the CPU's kernels are deterministic already)
    assert [r["loss"] for r in train_rows(plain.metrics)] == [
        r["loss"] for r in train_rows(determined.metrics)
    ]


def test_torch_empty_cache_steps_empties_the_cache_every_n_steps(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's torch_empty_cache_steps was refused: the accelerator's cache is emptied after
    every N-th optimizer step (steps 2 and 4 of 5 here), as transformers does."""
    import directpo.trainer as trainer_module

    calls: list[int] = []
    step = trainer_module.train_step

    def counting(run, index, **kwargs):
        calls.append(-(index + 1))  # the step about to run
        return step(run, index, **kwargs)

    monkeypatch.setattr(trainer_module, "train_step", counting)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(0))
    for every in (None, 2):
        calls.clear()
        config = tiny_config(
            tiny_model_dirs["llama"], pairs_file, tmp_path / f"run{every}", max_steps=5,
            per_device_train_batch_size=2, torch_empty_cache_steps=every,
        )  # fmt: skip
        train(config, echo=quiet)
        emptied_after = [-calls[i - 1] for i, call in enumerate(calls) if call == 0 and i]
        assert emptied_after == ([] if every is None else [2, 4])


def test_data_seed_orders_the_pairs_and_seed_the_rest(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's data_seed was refused ('seed sets the data order'). As in transformers, it alone
    orders the pairs; seed still sets everything else (here a LoRA adapter's initialisation);
    a run resumed with it continues exactly, and one resumed with another is refused."""
    from directpo.sources import FixedPairs

    orders: dict[str, list] = {}
    batches = FixedPairs.micro_batches
    current: list[str] = []

    def recording(self, step):
        indices = batches(self, step)
        orders.setdefault(current[0], []).append(indices)
        return indices

    monkeypatch.setattr(FixedPairs, "micro_batches", recording)
    model = tiny_model_dirs["llama"]
    common = dict(max_steps=4, per_device_train_batch_size=2, lora_r=4, save_steps=2)
    results = {}
    for name, seeds in {
        "a": dict(seed=1, data_seed=7), "b": dict(seed=2, data_seed=7),
        "c": dict(seed=1, data_seed=8), "d": dict(seed=1, data_seed=None),
    }.items():  # fmt: skip
        current[:] = [name]
        config = tiny_config(model, pairs_file, tmp_path / name, **common, **seeds)
        results[name] = train(config, echo=quiet).policy.state_dict()
    assert orders["a"] == orders["b"]
    assert orders["a"] != orders["c"] and orders["c"] != orders["d"]
    lora = [key for key in results["a"] if "lora_A" in key]
    assert lora and not torch.equal(results["a"][lora[0]], results["b"][lora[0]])
    # resumed at step 2 with the same options: the uninterrupted run's weights exactly
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-2", resumed_dir / "checkpoint-2")
    current[:] = ["resumed"]
    config = tiny_config(
        model, pairs_file, resumed_dir, **common, seed=1, data_seed=7,
        resume_from_checkpoint="latest",
    )  # fmt: skip
    resumed = train(config, echo=quiet).policy.state_dict()
    assert all(torch.equal(resumed[key], results["a"][key]) for key in results["a"])
    config = dataclasses.replace(config, data_seed=8, resume_from_checkpoint="latest")
    with pytest.raises(ConfigError, match="data_seed"):
        train(config, echo=quiet)


@pytest.mark.parametrize(
    ("strategy", "delay", "evaluated"),
    [("steps", 3, [4, 6]), ("steps", 7, []), ("epoch", 2, [4, 6]), ("steps", 0, [2, 4, 6])],
)
def test_eval_delay_holds_evaluations_back(
    tiny_model_dirs, pairs_file, tmp_path, strategy, delay, evaluated
) -> None:
    """TRL's eval_delay was refused ('use eval_steps'). As transformers: no evaluation before
    that many steps (eval_strategy steps) or epochs (epoch), the last step's neither."""
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", max_steps=6,
        per_device_train_batch_size=3, eval_file=str(pairs_file), eval_strategy=strategy,
        eval_steps=2 if strategy == "steps" else 0, eval_delay=delay,
    )  # fmt: skip
    lines: list[str] = []
    result = train(config, echo=lines.append)
    assert [row["step"] for row in result.metrics if "eval/loss" in row] == evaluated
    said = (  # (train()'s keyword)
        "eval_delay 7: no evaluation in this run (6 steps); pass a lower eval_delay=... to "
        "evaluate "
    )
    assert (said + "after fewer steps" in lines) == (not evaluated)


def test_eval_delay_without_anything_to_evaluate_is_refused(tiny_model_dirs, pairs_file) -> None:
    """eval_delay with no held-out data was taken without a word (eval_steps is refused so)."""
    from directpo.preflight import check_environment

    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, pairs_file.parent, eval_delay=2)
    with pytest.raises(ConfigError) as err:
        check_environment(config)
    assert str(err.value) == (
        "eval_delay is set but there is nothing to evaluate: set eval_file (held-out pairs) or "
        "eval_generate (sampled completions), or remove eval_delay"
    )
    check_environment(config, eval_dataset_given=True)  # train(eval_dataset=...) evaluates
    check_environment(dataclasses.replace(config, eval_file=str(pairs_file)))


def test_auto_find_batch_size_retries_a_step_in_halves_with_the_same_pairs(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's auto_find_batch_size was refused. A step that runs out of GPU memory (injected
    here past 2 pairs per micro-batch) runs again with its micro-batches halved (accumulation
    doubled), until it fits: the same pairs per step and the same loss, so the weights are
    those of a run with those micro-batches set. Without the option, or once a
    micro-batch holds one pair, the error stops the run as before."""
    import directpo.trainer as trainer_module
    from directpo.errors import TrainingStopped

    real = trainer_module.pair_losses
    sizes: list[int] = []

    def limited(limit):
        def pair_losses(*args, **kwargs):
            losses, stats = real(*args, **kwargs)
            sizes.append(len(losses))
            if len(losses) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return losses, stats

        return pair_losses

    model = tiny_model_dirs["llama"]
    common = dict(max_steps=3, per_device_train_batch_size=6)
    plain = train(tiny_config(model, pairs_file, tmp_path / "plain", **common), echo=quiet)
    small = dict(per_device_train_batch_size=2, gradient_accumulation_steps=3)  # what it finds
    smaller = train(
        tiny_config(model, pairs_file, tmp_path / "small", **{**common, **small}), echo=quiet
    )
    monkeypatch.setattr(trainer_module, "pair_losses", limited(2))
    lines: list[str] = []
    config = tiny_config(model, pairs_file, tmp_path / "fit", auto_find_batch_size=True, **common)
    fitted = train(config, echo=lines.append)
    assert sizes == [6, 3] + [2, 2, 2] * 3  # then micro-batches of 2 for every step
    said = [line for line in lines if line.startswith("step 1: out of GPU memory")]
    assert said == [
        "step 1: out of GPU memory with micro-batches of 6 pairs; auto_find_batch_size: trying "
        "it again as per_device_train_batch_size 3, gradient_accumulation_steps 2 (the same "
        "pairs per step)",
        "step 1: out of GPU memory with micro-batches of 3 pairs; auto_find_batch_size: trying "
        "it again as per_device_train_batch_size 2, gradient_accumulation_steps 4 (the same "
        "pairs per step)",
    ]
    # the micro-batches it found, op for op: the same weights; the whole batch: the same loss
    for key, tensor in smaller.policy.state_dict().items():
        assert torch.equal(tensor, fitted.policy.state_dict()[key]), key
    for a, b in zip(train_rows(plain.metrics), train_rows(fitted.metrics), strict=True):
        for key in ("loss", "rewards/margins", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    monkeypatch.setattr(trainer_module, "pair_losses", limited(0))  # not even one pair fits
    with pytest.raises(TrainingStopped, match="^out of GPU memory at step 1: .*auto_find"):
        train(dataclasses.replace(config, output_dir=str(tmp_path / "none")), echo=quiet)
    sizes.clear()
    config = tiny_config(model, pairs_file, tmp_path / "off", **common)
    with pytest.raises(TrainingStopped, match="^out of GPU memory at step 1"):
        train(config, echo=quiet)
    assert sizes == [6]


CPU_OOM = (
    "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you "
    "tried to allocate 6710886400 bytes. Error code 12 (Cannot allocate memory)"
)
MPS_OOM = "MPS backend out of memory (MPS allocated: 17.84 GB, other allocations: 1.23 GB)"


@pytest.mark.parametrize("message, kind", [(CPU_OOM, "host"), (MPS_OOM, "MPS")])
def test_other_allocators_out_of_memory_are_retried_and_said_in_one_line(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, message, kind
) -> None:
    """The CPU allocator (and MPS) run out with a plain RuntimeError, not torch.OutOfMemoryError:
    auto_find_batch_size did not retry the step, and the run stopped with torch's traceback.
    Now both are retried as the GPU's is, and said in one line naming the memory."""
    from transformers import LlamaModel

    from directpo.errors import TrainingStopped

    real = LlamaModel.forward  # the decoder: directpo runs its own LM head
    rows_seen: list[int] = []

    def forward(self, input_ids=None, **kwargs):
        rows_seen.append(len(input_ids))  # chosen and rejected rows together
        if len(input_ids) == 8:  # the step's 4 pairs at once (the checks at start use fewer)
            raise RuntimeError(message)
        return real(self, input_ids=input_ids, **kwargs)

    monkeypatch.setattr(LlamaModel, "forward", forward)
    model = tiny_model_dirs["llama"]
    lines: list[str] = []
    plain = dict(max_steps=1, per_device_train_batch_size=4, prefix_sharing=False,
                 padding_free=False)  # 2 rows a pair  # fmt: skip
    config = tiny_config(model, pairs_file, tmp_path / "fit", auto_find_batch_size=True,
                         **plain)  # fmt: skip
    train(config, echo=lines.append)
    # then two micro-batches of 2 pairs, each through the reference and the policy
    assert rows_seen[rows_seen.index(8) :] == [8, 4, 4, 4, 4]
    said = f"step 1: out of {kind} memory with micro-batches of 4 pairs; auto_find_batch_size"
    assert any(line.startswith(said) for line in lines)
    config = tiny_config(model, pairs_file, tmp_path / "off", **plain)
    with pytest.raises(TrainingStopped, match=f"^out of {kind} memory at step 1: pass a lower "):
        train(config, echo=quiet)


def test_out_of_memory_in_an_evaluation_names_the_evaluations_batch(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """An evaluation out of GPU memory was said as a training step's, with the training knobs
    (per_device_train_batch_size, "auto_find_batch_size: true does it"), which change nothing
    there, even with auto_find_batch_size on."""
    import directpo.loop_steps as loop_steps  # (the evaluation step's)
    from directpo.errors import TrainingStopped

    def evaluate(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop_steps, "evaluate", evaluate)
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=2,
                         eval_file=str(pairs_file), eval_steps=2, auto_find_batch_size=True,
                         per_device_eval_batch_size=4)  # fmt: skip
    with pytest.raises(TrainingStopped) as stopped:
        train(config, echo=quiet)
    assert str(stopped.value) == (
        "out of GPU memory evaluating at step 2: pass a lower per_device_eval_batch_size=... (now "
        "4; the "
        "held-out pairs' batches and eval_generate's sampling chunks)"
    )
    # a bf16 run evaluates in float32 (eval_dtype: auto): the advice names the way back to bf16
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "bf16", max_steps=2,
                         eval_file=str(pairs_file), eval_steps=2, bf16=True,
                         per_device_eval_batch_size=4)  # fmt: skip
    # (train(): the keyword to pass, in Python's words)
    with pytest.raises(TrainingStopped, match=r"chunks\), or pass eval_dtype='bfloat16' \(the"):
        train(config, echo=quiet)


def test_an_op_full_determinism_refuses_stops_the_run_in_one_line(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Under full_determinism an op with no deterministic CUDA kernel raises torch's paragraph
    (a traceback mid-run); it is one line naming the op and the option now."""
    import directpo.trainer as trainer_module
    from directpo.errors import TrainingStopped

    def nondeterministic(*args, **kwargs):
        raise RuntimeError(
            "index_add_cuda_ does not have a deterministic implementation, but you set "
            "'torch.use_deterministic_algorithms(True)'. You can turn off determinism just for "
            "this operation, or you can use the 'warn_only=True' option, if that's acceptable."
        )

    monkeypatch.setattr(trainer_module, "pair_losses", nondeterministic)
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", full_determinism=True
    )
    with pytest.raises(TrainingStopped) as stopped:
        train(config, echo=quiet)
    assert str(stopped.value) == (
        "step 1: full_determinism: index_add_cuda_ has no deterministic implementation on this "
        "device (torch.use_deterministic_algorithms); pass full_determinism=False"
    )


@pytest.mark.parametrize("where", ["loading", "checks"])
def test_out_of_memory_before_the_first_step_is_one_line(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, where
) -> None:
    """Out of memory while a run set up (loading the models, the start-up checks) was torch's
    traceback; in the layout check it was read as the model not honouring the shared layout
    (a fallback to the plain one, which needs more memory, and a misleading notice)."""
    from transformers import LlamaModel

    import directpo.run_models as run_models
    from directpo.errors import TrainingStopped

    def out_of_memory(*args, **kwargs):
        raise RuntimeError(CPU_OOM if where == "checks" else "CUDA error: out of memory")

    if where == "loading":
        monkeypatch.setattr(run_models, "load_policy_and_reference", out_of_memory)
    else:
        real = LlamaModel.forward

        def forward(self, *args, **kwargs):  # the checks run in eval mode, training does not
            return real(self, *args, **kwargs) if self.training else out_of_memory()

        monkeypatch.setattr(LlamaModel, "forward", forward)
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=1,
                         lora_r=4)  # fmt: skip
    lines: list[str] = []
    with pytest.raises(TrainingStopped) as stopped:
        train(config, echo=lines.append)
    kind = "host" if where == "checks" else "GPU"
    assert str(stopped.value).startswith(f"out of {kind} memory before the first step (loading")
    assert "lora_r: 16" not in str(stopped.value)  # (it trains LoRA already)
    assert "load_in_4bit" in str(stopped.value) and "precompute_ref_log_probs" in str(stopped.value)
    assert not any("layout" in line and "Error" in line for line in lines), lines


def test_the_retry_that_out_of_memory_at_step_1_advises_is_not_refused(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Out of memory at step 1 said 'pass a lower per_device_train_batch_size=...'; the retry
    with it, in the same output_dir, was refused: 'already holds a run stopped before its first
    checkpoint'. A run that stops before it logs a step takes back its own record
    (config.yaml, an empty metrics.jsonl) from a folder that was empty; a folder that held
    someone's file keeps it, and one run that logged a step is still refused."""
    import directpo.trainer as trainer_module
    from directpo.errors import TrainingStopped

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    model = tiny_model_dirs["llama"]
    real_step = trainer_module.train_step
    monkeypatch.setattr(trainer_module, "train_step", out_of_memory)
    kept = tmp_path / "kept"
    kept.mkdir()
    for out in (tmp_path / "new" / "out", kept):
        with pytest.raises(TrainingStopped, match="lower per_device_train_batch_size"):
            train(tiny_config(model, pairs_file, out), echo=None)
    assert not (tmp_path / "new").exists() and kept.is_dir() and not list(kept.iterdir())
    monkeypatch.setattr(trainer_module, "train_step", real_step)
    for out in (tmp_path / "new" / "out", kept):
        assert train(tiny_config(model, pairs_file, out, per_device_train_batch_size=3),
                     echo=None).global_step == 1  # fmt: skip

    theirs = tmp_path / "theirs"  # someone's file beside: the folder was not empty
    theirs.mkdir()
    (theirs / "notes.txt").write_text("mine\n")
    monkeypatch.setattr(trainer_module, "train_step", out_of_memory)
    with pytest.raises(ConfigError, match="already holds other files"):
        train(tiny_config(model, pairs_file, theirs), echo=None)

    # a run refused by another's lock wrote no record: the other run's (written after this
    # one found the folder empty) stays
    from directpo.outputs import OutputLock

    busy, other = tmp_path / "busy", OutputLock()
    busy.mkdir()
    other.acquire(busy)
    for name in ("config.yaml", "metrics.jsonl"):
        (busy / name).write_text("")
    monkeypatch.setattr(trainer_module, "visible_entries", lambda folder: [])
    with pytest.raises(ConfigError, match="already holds a run stopped before its first"):
        train(tiny_config(model, pairs_file, busy), echo=None)
    other.release()
    assert sorted(path.name for path in busy.iterdir()) == ["config.yaml", "metrics.jsonl"]
    monkeypatch.undo()

    def fails_at_step_2(run, step, measure=False):
        return real_step(run, step, measure) if step == 0 else out_of_memory()

    logged = tmp_path / "logged"
    monkeypatch.setattr(trainer_module, "train_step", fails_at_step_2)
    with pytest.raises(TrainingStopped):
        train(tiny_config(model, pairs_file, logged, max_steps=2), echo=None)
    assert len(read_metrics(logged)) == 1  # its row is kept
    with pytest.raises(ConfigError, match="holds a run stopped before its first checkpoint"):
        train(tiny_config(model, pairs_file, logged), echo=None)


def test_a_recipes_env_is_the_callers_again_after_train(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """``train("a.yaml")`` whose ``env:`` set WANDB_PROJECT left it set in the notebook: a later
    ``train("b.yaml")`` without it still logged into a.yaml's project. The variables the file
    sets are the caller's again after the run (one it had, as it was; one it had not, unset),
    after a refused run too; load_config(path) still sets them, as TRL's parser does."""
    import yaml

    from directpo.config import load_config

    monkeypatch.setenv("DIRECTPO_TEST_MINE", "mine")
    monkeypatch.delenv("DIRECTPO_TEST_NEW", raising=False)
    seen: dict[str, str | None] = {}
    recipe = tmp_path / "a.yaml"
    for beta in (-1.0, 0.1):  # a refused run, then one that trains
        out = tmp_path / f"out{beta}"
        recipe.write_text(yaml.safe_dump({
            "model_name_or_path": str(tiny_model_dirs["llama"]), "train_file": str(pairs_file),
            "output_dir": str(out), "report_to": ["none"], "max_steps": 1, "beta": beta,
            "env": {"DIRECTPO_TEST_MINE": "recipe's", "DIRECTPO_TEST_NEW": "recipe's"},
        }))  # fmt: skip

        def seeing(line: str) -> None:
            seen.setdefault("during", os.environ.get("DIRECTPO_TEST_NEW"))

        try:
            train(str(recipe), echo=seeing)
        except ConfigError:
            assert beta < 0
        assert os.environ["DIRECTPO_TEST_MINE"] == "mine"
        assert "DIRECTPO_TEST_NEW" not in os.environ
    assert seen == {"during": "recipe's"}
    load_config(str(recipe))
    assert os.environ["DIRECTPO_TEST_NEW"] == "recipe's"


def test_a_recipes_env_is_given_back_when_the_run_rewrites_the_recipe(
    tmp_path, monkeypatch
) -> None:
    """A resume from the run's own record, ``train('out/config.yaml',
    resume_from_checkpoint='latest')`` with env: added to it by hand (wandb's WANDB_RUN_ID),
    rewrites that file without env: (a record keeps no variables: they may hold tokens); its
    variables, read from the file after the run, stayed set for good. They are read before."""
    from directpo.process_state import recipe_environment_kept

    monkeypatch.setenv("DIRECTPO_TEST_MINE", "mine")
    monkeypatch.delenv("DIRECTPO_TEST_NEW", raising=False)
    recipe = tmp_path / "config.yaml"
    recipe.write_text("beta: 0.1\nenv: {DIRECTPO_TEST_MINE: run, DIRECTPO_TEST_NEW: run}\n")

    @recipe_environment_kept
    def run(config: str) -> None:  # (sets the file's env:, then rewrites it as a record)
        os.environ.update({"DIRECTPO_TEST_MINE": "run", "DIRECTPO_TEST_NEW": "run"})
        Path(config).write_text("beta: 0.1\n")

    run(str(recipe))
    assert os.environ["DIRECTPO_TEST_MINE"] == "mine"
    assert "DIRECTPO_TEST_NEW" not in os.environ


def test_options_given_to_train_are_the_configs(tmp_path, monkeypatch) -> None:
    """``train(model_name_or_path=..., beta=0.2)`` and ``train(config, lerning_rate=...)`` were
    TypeErrors ("unexpected keyword argument") naming no real option; they are DPOConfig's
    options, a misspelt one refused with the closest real one, before anything loads."""
    import directpo.trainer

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    with pytest.raises(KeyboardInterrupt):
        train(model_name_or_path="m", train_file="p.jsonl", beta=0.2, echo=None)
    assert (seen[0].model_name_or_path, seen[0].beta) == ("m", 0.2)
    base = DPOConfig(model_name_or_path="m", beta=0.3, learning_rate=1e-6)
    with pytest.raises(KeyboardInterrupt):
        train(base, beta=0.2, echo=None)
    assert (seen[1].beta, seen[1].learning_rate, base.beta) == (0.2, 1e-6, 0.3)
    with pytest.raises(ConfigError, match="option 'lerning_rate'; did you mean 'learning_rate'"):
        train(base, lerning_rate=1e-5, echo=None)


def test_trls_trainer_arguments_given_to_train_are_taken_or_said(tmp_path, monkeypatch) -> None:
    """TRL's ``DPOTrainer(model=..., args=..., processing_class=...)`` keywords were "unknown
    option 'args'" or a misleading did-you-mean: ``args`` is the config, a model or tokenizer
    named by a string its option; a loaded object, or an argument with no counterpart, is one
    line saying what to give instead, before anything loads."""
    import directpo.trainer

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    base = DPOConfig(model_name_or_path="m", beta=0.3)
    with pytest.raises(KeyboardInterrupt):
        train(args=base, model="other", ref_model=tmp_path, processing_class="tok", echo=None)
    assert (seen[0].model_name_or_path, seen[0].ref_model_name_or_path) == ("other", str(tmp_path))
    assert (seen[0].tokenizer_name_or_path, seen[0].beta) == ("tok", 0.3)

    class LoadedModel:
        name_or_path = "/models/base"

    with pytest.raises(ConfigError) as refused:
        train(base, model=LoadedModel(), callbacks=[print], args=base, echo=None)
    said = str(refused.value)
    assert said.startswith("train(): 3 ") and "give the config once" in said
    assert "save this LoadedModel (.save_pretrained(DIR)) and give model_name_or_path=DIR" in said
    assert "(model_name_or_path='/models/base' if it is that folder's, unchanged)" in said
    assert "callbacks (TRL's DPOTrainer argument): directpo takes no callbacks" in said
    assert len(seen) == 1


def test_a_trl_model_argument_beside_its_own_option_naming_another_is_refused() -> None:
    """train(model='run/', model_name_or_path='base') trained run/ without a word: TRL's keyword
    silently replaced the option naming another model (processing_class= beside tokenizer=
    likewise). Both naming one folder is taken; two folders are refused, naming both."""
    from directpo.arguments import trainer_arguments

    same = trainer_arguments(None, {"model": "run/", "model_name_or_path": "run/"})[1]
    assert same == {"model_name_or_path": "run/"}
    with pytest.raises(ConfigError) as refused:
        trainer_arguments(None, {"model_name_or_path": "base", "model": "run/"})
    assert str(refused.value) == (
        "train(): model='run/' and model_name_or_path='base' are both given, naming two models: "
        "pass model_name_or_path alone"
    )
    with pytest.raises(ConfigError) as refused:
        trainer_arguments(None, {"processing_class": "a", "tokenizer": "b"})
    assert str(refused.value) == (
        "train(): tokenizer='b' and processing_class='a' are both given, naming two tokenizers: "
        "pass tokenizer_name_or_path alone"
    )


def test_trls_quantization_config_and_default_trainer_arguments(monkeypatch) -> None:
    """TRL's ``DPOTrainer(quantization_config=BitsAndBytesConfig(...))`` was "unknown option
    'quantization_config'": it is the load_in_* / bnb_4bit_* options now (its own values), one
    they cannot say is refused naming its field; TRL's defaults ``callbacks=None``,
    ``optimizers=(None, None)``, ``ref_model=None`` ask for nothing and were refused as if
    they asked ("save this NoneType")."""
    from transformers import BitsAndBytesConfig

    import directpo.trainer

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    four_bit = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    for quantized in (four_bit, BitsAndBytesConfig(load_in_8bit=True), None):
        with pytest.raises(KeyboardInterrupt):  # (ref_model=None was "save this NoneType")
            train(model="m", quantization_config=quantized, callbacks=None, ref_model=None,
                  processing_class=None, optimizers=(None, None), data_collator=None,
                  echo=None)  # fmt: skip
    assert (seen[0].load_in_4bit, seen[0].bnb_4bit_compute_dtype) == (True, "bfloat16")
    assert (seen[0].bnb_4bit_quant_type, seen[0].bnb_4bit_quant_storage) == ("fp4", None)
    assert (seen[1].load_in_8bit, seen[1].load_in_4bit, seen[1].bnb_4bit_quant_type) == (
        True, False, "nf4"
    )  # fmt: skip
    assert not (seen[2].load_in_8bit or seen[2].load_in_4bit)
    assert (seen[2].ref_model_name_or_path, seen[2].tokenizer_name_or_path) == (None, None)
    with pytest.raises(ConfigError) as refused:
        train(model="m", quantization_config=BitsAndBytesConfig(load_in_8bit=True,
              llm_int8_threshold=5.0), callbacks=[object()], echo=None)  # fmt: skip
    said = str(refused.value)
    assert said.startswith("train(): 2 ") and "no option sets its llm_int8_threshold" in said
    assert "callbacks (TRL's DPOTrainer argument)" in said and len(seen) == 3


def test_a_yaml_file_as_trains_config_is_read_as_the_command_reads_it(
    tmp_path, monkeypatch
) -> None:
    """``train("recipe.yaml")`` (the file ``directpo train recipe.yaml`` runs) was a TypeError
    "train() takes a directpo.DPOConfig, got builtins.str": it is the file read as the command
    reads it (TRL's names, the keywords over its keys, as flags are), and a string that is no
    file (a model folder, TRL's ``DPOTrainer("model-id", ...)`` order) says what to write."""
    import directpo.trainer
    from directpo.config import load_config

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_name_or_path: m\ntrain_file: p.jsonl\nbeta: 0.3\ntorch_dtype: bfloat16\n"
        "eval_strategy: steps\neval_steps: 2\n"
    )
    for given in (str(recipe), recipe):  # eval_file completes the file, as a flag would
        with pytest.raises(KeyboardInterrupt):
            train(given, beta=0.2, eval_file="e.jsonl", echo=None)
    assert seen[0] == seen[1] == load_config(recipe, {"beta": 0.2, "eval_file": "e.jsonl"})
    assert (seen[0].beta, seen[0].dtype, seen[0].eval_file) == (0.2, "bfloat16", "e.jsonl")
    with pytest.raises(ConfigError) as refused:  # (its train_file, not there, said with it)
        train(recipe, lerning_rate=1e-6, echo=None)
    assert refused.value.problems == [  # (each line headed by its source: the keyword's
        # and the file's train_file were both under train()'s heading)
        "train(): unknown option 'lerning_rate'; did you mean 'learning_rate'?",
        f"{recipe}: train_file: no such file or folder: p.jsonl",
    ]
    (tmp_path / "model").mkdir()
    for path, kind in ((tmp_path / "model", "a folder"), ("org/model", "no file")):
        with pytest.raises(ConfigError) as refused:
            train(str(path), echo=None)
        assert str(refused.value) == (
            f"train({str(path)!r}): the first argument is the config (a DPOConfig, a YAML file "
            f"or a dict of options), and {str(path)!r} is {kind}; a model is "
            f"train(model_name_or_path={str(path)!r}, ...), rows train_dataset=..."
        )
    assert len(seen) == 2


@pytest.mark.parametrize("name", ["recipe.yaml", "Recipe.YAML", "recipe.Yml"])
def test_a_yaml_name_in_any_case_as_trains_config_is_a_recipe_not_there(tmp_path, name) -> None:
    """train('configs/Recipe.YAML') not there was told 'the first argument is the config ...
    and it is no file; a model is train(model_name_or_path=...)' where recipe.yaml was told the
    config file is not found: train() read .yaml / .yml in lower case only, the CLI in any
    case; both read one rule (option_loading.names_yaml)."""
    path = str(tmp_path / name)
    with pytest.raises(ConfigError) as refused:
        train(path, echo=None)
    assert str(refused.value) == f"config file not found: {path}"


def test_trls_reward_funcs_is_reward_fn_and_its_list_of_one_is_the_one(monkeypatch) -> None:
    """OnlineDPOTrainer's ``reward_funcs=[fn]`` took three tries: "unknown option
    'reward_funcs'; did you mean 'reward_fn'?", then reward_fn=[...] "must be a string, got
    [<function ...>]", then the line that says to give the function by its file. The keyword
    is reward_fn's, a list of one is its item (a function then said at once), and several are
    one line saying how directpo sums labellers."""
    import directpo.trainer

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    def my_reward(prompts, completions):
        return [0.0] * len(completions)

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    online = dict(model="m", online=True, prompt_file="p.jsonl", echo=None)
    for given in (["rewards.py:score"], "rewards.py:score", ("rewards.py:score",)):
        with pytest.raises(KeyboardInterrupt):
            train(reward_funcs=given, **online)
        assert seen.pop().reward_fn == "rewards.py:score"
    with pytest.raises(KeyboardInterrupt):
        train(reward_fn=["rewards.py:score"], **online)
    assert seen.pop().reward_fn == "rewards.py:score"
    for key in ("reward_funcs", "reward_fn"):
        with pytest.raises(ConfigError, match=r"reward_fn is a function: .*='my_rewards.py:my_re"):
            train(**{key: [my_reward]}, **online)
        with pytest.raises(ConfigError, match=r"reward_fn takes one function \(got a list of 2"):
            train(**{key: [my_reward, "rewards.py:score"]}, **online)
    with pytest.raises(ConfigError, match="reward_funcs and reward_fn are both given"):
        train(reward_funcs="a.py:f", reward_fn="a.py:f", **online)
    assert not seen


def test_rows_given_from_python_say_which_data_options_they_replace(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """train(config, train_dataset=rows) with a config whose train_file / eval_file (or
    dataset_name) is set too trained on the rows and passed over the files without a word;
    each replaced option is now a note, before anything loads, and a replaced file that is
    not there is no longer refused as missing."""
    import directpo.trainer

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "prepare_run", stop)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out",
                         eval_file=str(pairs_file))  # fmt: skip
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        train(config, train_dataset=SENTIMENT_PAIRS, eval_dataset=SENTIMENT_PAIRS,
              echo=lines.append)  # fmt: skip
    assert lines == [
        f"note: train_dataset replaces train_file ({pairs_file})",
        f"note: eval_dataset replaces eval_file ({pairs_file})",
    ]
    lines.clear()
    with pytest.raises(KeyboardInterrupt):
        train(config, train_dataset=SENTIMENT_PAIRS, echo=lines.append)
    assert lines == [f"note: train_dataset replaces train_file ({pairs_file})"]
    # a replaced file is never read: one not there (a config.yaml rerun elsewhere) is no error
    gone = str(tmp_path / "gone.jsonl")
    with pytest.raises(KeyboardInterrupt):
        train(config, train_file=gone, eval_file=gone, train_dataset=SENTIMENT_PAIRS,
              eval_dataset=SENTIMENT_PAIRS, echo=None)  # fmt: skip
    with pytest.raises(ConfigError, match=r"^eval_file: no such file or folder: .*gone.jsonl$"):
        train(config, eval_file=gone, train_dataset=SENTIMENT_PAIRS, echo=None)


def test_train_with_no_config_says_the_options_it_needs(tmp_path, monkeypatch) -> None:
    """train() alone, or train(train_dataset=rows) with no model, was a TypeError "train()
    takes a directpo.DPOConfig, got builtins.NoneType": it is the one line naming the
    missing options, as the command line says it."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        train(echo=None)
    assert str(refused.value).splitlines()[1:] == [
        "  model_name_or_path is required",
        "  train_file is required (or train(train_dataset=...): a Dataset, a DataFrame or a list "
        "of dicts)",
    ]
    with pytest.raises(ConfigError, match="^model_name_or_path is required$"):
        train(train_dataset=SENTIMENT_PAIRS, echo=None)


@pytest.mark.parametrize(
    ("flags", "advice"), [(["--max_length", "2048"], "give --max_length 512"), ([], None)]
)
def test_a_refusal_after_the_data_says_a_flag_beside_a_recipe_as_the_flag(
    tiny_model_dirs, tmp_path, capsys, flags, advice
) -> None:
    """Lines said once the data is read (the models' position tables here) named a flag given
    beside a recipe as the recipe's key ('set max_length: 512'), a key the file lacks; the
    recipe's own key is still said as its key."""
    from directpo.cli import main

    long_row = {"prompt": "word " * 600, "chosen": " yes", "rejected": " no"}
    data = write_jsonl(tmp_path / "pairs.jsonl", [*SENTIMENT_PAIRS, long_row])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dirs['gpt2']}\ntrain_file: {data}\n"
        f"output_dir: {tmp_path / 'out'}\nmax_steps: 1\n" + ("" if flags else "max_length: 2048\n")
    )
    assert main(["train", str(recipe), *flags]) == 2
    err = capsys.readouterr().err
    assert "learned positions" in err, err
    assert (advice or "set max_length: 512") in err, err
    if advice:
        assert "set max_length" not in err, err


@pytest.mark.parametrize(
    ("in_recipe", "flags", "said"),
    [
        ("seed: null\n", ["--tf32", "true"], "--tf32 has no effect on the CPU"),
        ("", ["--seed", "null"], "--seed null: drew seed "),
    ],
)
def test_a_drawn_seed_keeps_a_flag_beside_a_recipe_said_as_the_flag(
    tiny_model_dirs, tmp_path, capsys, in_recipe, flags, said
) -> None:
    """A recipe's seed: null (torchtune's; or --seed null) rebuilt the config with the drawn
    seed, and the rebuild forgot which options the flags set: --max_length 2048 was told the
    recipe's 'set max_length: 512', a key the file lacks; the seed's line (--seed null) and
    the CPU's tf32 note (--tf32 true) were said as a recipe's keys too."""
    from directpo.cli import main

    long_row = {"prompt": "word " * 600, "chosen": " yes", "rejected": " no"}
    data = write_jsonl(tmp_path / "pairs.jsonl", [*SENTIMENT_PAIRS, long_row])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dirs['gpt2']}\ntrain_file: {data}\n"
        f"output_dir: {tmp_path / 'out'}\nmax_steps: 1\n{in_recipe}"
    )
    assert main(["train", str(recipe), "--max_length", "2048", *flags]) == 2
    captured = capsys.readouterr()
    said_all = captured.out + captured.err
    assert "give --max_length 512" in captured.err and "set max_length" not in said_all
    assert said in said_all, said_all
