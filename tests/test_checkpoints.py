from __future__ import annotations

import dataclasses
import errno
import json
import math
import re
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
import torch
import yaml
from tiny import quiet, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM

import directpo.checkpoint as checkpoint_module
import directpo.free_space as free_space_module
import directpo.run as run_module
import directpo.run_models as run_models
import directpo.trainer as trainer_module
from directpo.checkpoint import read_state, resolve_checkpoint, verify_checkpoint
from directpo.config import DPOConfig
from directpo.errors import CheckpointError, ConfigError, TrainingStopped
from directpo.trainer import train


def config_for(model, data, out, **overrides) -> DPOConfig:
    return tiny_config(
        model,
        data,
        out,
        **{"save_steps": 1, "per_device_train_batch_size": 3, "max_steps": 3, **overrides},
    )


@pytest.fixture
def run_dir(tiny_model_dirs, pairs_file, tmp_path):
    out = tmp_path / "run"
    train(config_for(tiny_model_dirs["gpt2"], pairs_file, out), echo=lambda _: None)
    return out


def test_every_checkpoint_has_a_verifying_manifest(run_dir) -> None:
    for step in (1, 2, 3):
        path = run_dir / f"checkpoint-{step}"
        manifest = json.loads((path / "manifest.json").read_text())
        assert manifest["step"] == step
        assert {"model.safetensors", "optimizer.pt", "trainer_state.json"} <= set(manifest["files"])
        assert verify_checkpoint(path) is None
    assert not list(run_dir.glob(".checkpoint-*"))  # no temporary folder left behind


def test_latest_skips_corrupt_checkpoints_and_says_why(run_dir) -> None:
    weights = run_dir / "checkpoint-3" / "model.safetensors"
    size = weights.stat().st_size
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    (run_dir / "checkpoint-2" / "manifest.json").unlink()  # never completed
    lines: list[str] = []
    assert resolve_checkpoint("latest", run_dir, lines.append) == run_dir / "checkpoint-1"
    assert lines == [
        f"resume: skipped checkpoint-3: model.safetensors has 100 bytes, the manifest says {size}",
        "resume: skipped checkpoint-2: no manifest (incomplete or not a directpo checkpoint)",
        "resume: took checkpoint-1, the newest checkpoint that verifies",
    ]
    opt = run_dir / "checkpoint-1" / "optimizer.pt"
    opt.write_bytes(b"x" * opt.stat().st_size)  # same size, other bytes
    with pytest.raises(CheckpointError, match="optimizer.pt does not match its checksum"):
        resolve_checkpoint("latest", run_dir, lambda _: None)


def test_a_full_disk_stops_the_run_and_keeps_the_previous_checkpoint(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    real = torch.save
    calls = {"n": 0}

    def save(obj, path, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:  # checkpoint-1 writes 3 files with torch.save; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    out = tmp_path / "run"
    with pytest.raises(
        CheckpointError,
        match=r"cannot write checkpoint-2 .* \(No space left on "
        r"device; \d+ MiB free on that disk\); earlier checkpoints are intact "
        r"\(checkpoint-1\)",
    ):
        train(config_for(tiny_model_dirs["gpt2"], pairs_file, out), echo=lambda _: None)
    assert verify_checkpoint(out / "checkpoint-1") is None
    assert not list(out.glob(".checkpoint-*"))
    monkeypatch.setattr(checkpoint_module.torch, "save", real)
    resumed = train(
        config_for(tiny_model_dirs["gpt2"], pairs_file, out, resume_from_checkpoint="latest"),
        echo=lambda _: None,
    )
    assert resumed.global_step == 3


def _fills_the_disk(handle):  # noqa: ANN001, ANN202
    """``handle``, whose first write writes half its text, then finds no space left."""
    real_write = handle.write

    def write(text):  # noqa: ANN001, ANN202
        real_write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    handle.write = write
    return handle


@pytest.mark.parametrize("name", ["config.yaml", "metrics.jsonl"])
def test_a_full_disk_at_a_resumes_start_keeps_the_runs_files(
    name, tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    """A killed run is resumed from its own record (``directpo train out/config.yaml
    --resume_from_checkpoint latest``), which the resume writes again before its first step,
    as it writes metrics.jsonl again with the rows up to the checkpoint. config.yaml was
    rewritten in place: a full disk (or a kill) mid-write left it cut short, the run's recipe
    lost; either file's OSError came out as a traceback (metrics.jsonl's leaving its staging
    file behind)."""
    from directpo.cli import main

    out = tmp_path / "run"
    train(config_for(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2), echo=lambda _: None)
    for entry in out.iterdir():  # killed after checkpoint-1: no final model, no checkpoint-2
        if entry.name not in ("checkpoint-1", "config.yaml", "metrics.jsonl"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    before = {entry.name: entry.read_text() for entry in out.iterdir() if entry.is_file()}
    real_open = Path.open

    def full_disk_open(self, mode="r", *args, **kwargs):  # half the file, then no space
        handle = real_open(self, mode, *args, **kwargs)
        if "w" not in mode or self.parent != out or name not in self.name:
            return handle
        return _fills_the_disk(handle)

    monkeypatch.setattr(Path, "open", full_disk_open)
    code = main(["train", str(out / "config.yaml"), "--resume_from_checkpoint", "latest"])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert re.search(
        rf"cannot write {re.escape(str(out / name))} \(No space left on device; \d+ MiB free "
        rf"on that disk\): stopped before training; the earlier {name} there is as it was",
        err,
    ), err
    assert {entry.name: entry.read_text() for entry in out.iterdir() if entry.is_file()} == before
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "config.yaml", "metrics.jsonl"]
    monkeypatch.setattr(Path, "open", real_open)  # space freed: the same command resumes
    assert main(["train", str(out / "config.yaml"), "--resume_from_checkpoint", "latest"]) == 0
    assert (out / "checkpoint-2").is_dir()


def test_too_little_free_space_is_refused_before_training(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(free_space_module.shutil, "disk_usage", lambda _: usage(10**6, 0, 1000))
    with pytest.raises(  # (a small model's sizes in MiB: both were "0.00 GiB")
        ConfigError,
        match=r"0\.0 MiB free, but the final model and one checkpoint need about 0\.[1-9] MiB$",
    ):
        train(
            config_for(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "run"), echo=lambda _: None
        )
    assert not list((tmp_path / "run").glob("checkpoint-*"))


def test_the_free_space_check_counts_tr_dpos_moved_reference(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TR-DPO writes its moved reference beside the final model (reference/) and in each
    checkpoint: a second copy of the model the check did not count."""
    import re

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(free_space_module.shutil, "disk_usage", lambda _: usage(10**6, 0, 0))
    model = tiny_model_dirs["gpt2"]
    needs = []
    for sync in (False, True):
        config = config_for(model, pairs_file, tmp_path / "run", sync_ref_model=sync)
        with pytest.raises(ConfigError, match="need about") as err:
            train(config, echo=lambda _: None)
        needs.append(float(re.search(r"need about ([\d.]+) MiB", str(err.value)).group(1)))
    params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(model).parameters())
    # float32: one copy beside the final model, one in the checkpoint, with the 10% margin
    assert needs[1] - needs[0] == pytest.approx(1.1 * 2 * 4 * params / 2**20, abs=0.1)


def test_overwriting_counts_the_space_it_frees(run_dir, tiny_model_dirs, pairs_file, monkeypatch):
    """An overwrite on a disk the earlier run had filled was refused for want of the space
    its own deletions give back."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(free_space_module.shutil, "disk_usage", lambda _: usage(10**7, 0, 1000))
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, max_steps=1, overwrite_output_dir=True
    )
    assert train(config, echo=lambda _: None).global_step == 1
    assert [p.name for p in run_dir.glob("checkpoint-*")] == ["checkpoint-1"]


@pytest.mark.parametrize("disable_tqdm", [False, True])
def test_out_of_memory_names_the_knobs(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, disable_tqdm
) -> None:
    """... and the step it struck, also without the progress bar (whose count stays at the
    start when it is off: under disable_tqdm, and on every rank but 0)."""
    real, calls = trainer_module.pair_losses, []

    def oom_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "pair_losses", oom_at_step_3)
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, tmp_path / "run", disable_tqdm=disable_tqdm
    )
    with pytest.raises(TrainingStopped) as info:
        train(config, echo=lambda _: None)
    assert str(info.value).startswith(
        "out of GPU memory at step 3: pass a lower per_device_train_batch_size=..."
    )
    assert "gradient_checkpointing" in str(info.value) and info.value.rank is None


@pytest.mark.parametrize(
    ("overrides", "advised"),
    [
        ({}, ["gradient_checkpointing=True", "precompute_ref_log_probs=True", "lora_r=16"]),
        ({"lora_r": 4, "gradient_checkpointing": True, "precompute_ref_log_probs": True}, []),
        ({"loss_type": ["simpo"], "lora_r": 4}, ["gradient_checkpointing=True"]),
    ],
    ids=["full", "lora-precomputed-checkpointed", "reference-free-lora"],
)
def test_out_of_memory_advises_only_what_the_run_does_not_do_yet(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, overrides, advised
) -> None:
    """The advice named lora_r: 16, precompute_ref_log_probs and gradient_checkpointing to a
    run that had them (or no reference to precompute), which changes nothing."""
    real, calls = trainer_module.pair_losses, []

    def oom_at_step_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "pair_losses", oom_at_step_2)
    config = config_for(tiny_model_dirs["llama"], pairs_file, tmp_path / "run", **overrides)
    with pytest.raises(TrainingStopped) as info:
        train(config, echo=lambda _: None)
    said = str(info.value)
    assert said.startswith(  # (train()'s keywords, each change of a value said as one)
        "out of GPU memory at step 2: pass a lower per_device_train_batch_size=... (pass a higher "
        "gradient_accumulation_steps=... to keep the batch"
    )
    # (train(config)'s keywords: a recipe's words were said to every caller)
    knobs = ["gradient_checkpointing=True", "precompute_ref_log_probs=True", "lora_r=16"]
    assert [knob for knob in knobs if knob in said] == advised
    assert said.endswith("a smaller max_length=... / logprob_chunk_tokens=...")


def test_a_full_disk_while_logging_stops_in_one_line(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """metrics.jsonl refused by a full disk at step 2 (it was a traceback): one line naming the
    file and the checkpoint to resume from, which is intact."""
    from directpo.tracking import MetricsLogger

    real_log = MetricsLogger.log

    def log(self, step, metrics):
        if step == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        real_log(self, step, metrics)

    monkeypatch.setattr(MetricsLogger, "log", log)
    out = tmp_path / "run"
    with pytest.raises(CheckpointError) as info:
        train(config_for(tiny_model_dirs["gpt2"], pairs_file, out), echo=lambda _: None)
    assert str(info.value) == (
        f"step 2: cannot write {out / 'metrics.jsonl'} (No space left on device); its "
        "checkpoints are intact (newest checkpoint-1): make room, then resume with "
        "resume_from_checkpoint='latest'"  # (train()'s keyword)
    )
    assert verify_checkpoint(out / "checkpoint-1") is None


def test_load_best_model_at_end_and_early_stopping(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """'Best' by a metric that only gets worse here (the reward margin, smaller is better): the
    first evaluation is the best; the final folder holds its weights; patience 2 stops two
    evaluations later; save_total_limit never deletes the best checkpoint; resume keeps it."""
    from safetensors.torch import load_file

    from directpo.tracking import read_metrics

    def config(out, **extra):
        return tiny_config(
            tiny_model_dirs["llama"], pairs_file, out, max_steps=12, eval_file=str(pairs_file),
            eval_steps=2, save_steps=4, save_total_limit=1, load_best_model_at_end=True,
            metric_for_best_model="eval_rewards/margins", greater_is_better=False,
            **extra,
        )  # fmt: skip

    out = tmp_path / "best"
    lines: list[str] = []
    result = train(config(out), echo=lines.append)
    assert result.global_step == 12
    best = load_file(out / "checkpoint-2" / "model.safetensors")  # kept: the best
    final = load_file(out / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-12", "checkpoint-2"]
    assert any("loaded the best model: step 2, eval/rewards/margins" in line for line in lines)
    assert "Weights of the best evaluation: step 2" in (out / "README.md").read_text()

    stopped = tmp_path / "early"
    result = train(config(stopped, early_stopping_patience=2), echo=lines.append)
    assert result.global_step == 6  # evaluations at 2 (best), 4, 6: two without improvement
    assert max(r["step"] for r in read_metrics(stopped)) == 6
    assert any(line.startswith("early stopping after step 6") for line in lines)

    # resume after step 4: the tracker (best = step 2) comes back with the checkpoint
    straight = tmp_path / "straight"
    run_config = config(straight)
    run_config.save_total_limit = None
    train(run_config, echo=lambda _: None)
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    for later in ("checkpoint-8", "checkpoint-12", "model.safetensors"):
        path = resumed / later
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    kept = [r for r in read_metrics(resumed) if r["step"] <= 4]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    state = read_state(resumed / "checkpoint-4")
    assert state["best"]["step"] == 2 and state["best"]["checkpoint"] == "checkpoint-2"
    # the checkpoint an improvement writes names itself as the best (resuming from it must not
    # go back to the previous best, or to none)
    state = read_state(resumed / "checkpoint-2")
    assert state["best"]["step"] == 2 and state["best"]["checkpoint"] == "checkpoint-2"
    shutil.rmtree(straight)  # the resumed run must use its own copy of the best checkpoint
    run_config.output_dir, run_config.resume_from_checkpoint = str(resumed), "latest"
    train(run_config, echo=lambda _: None)
    final = load_file(resumed / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)


def test_resume_from_an_earlier_checkpoint_retires_the_later_ones(
    run_dir, tiny_model_dirs, pairs_file, monkeypatch
) -> None:
    """Resuming at checkpoint-1 of a 3-step run: checkpoint-2/3 belong to the replaced
    trajectory; they are moved aside (not deleted), so save_total_limit keeps the new ones and
    `latest` never goes back to them. A bare checkpoint name is looked up in output_dir, and
    transformers' resume_from_checkpoint=True means `latest`."""
    lines: list[str] = []
    (run_dir.parent / "checkpoint-1").mkdir()  # the same name in the working directory
    monkeypatch.chdir(run_dir.parent)
    for step in (1, 3):  # eval_generate's per-step files of the replaced trajectory
        (run_dir / "samples").mkdir(exist_ok=True)
        (run_dir / "samples" / f"step-{step}.jsonl").write_text("{}\n")
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="checkpoint-1",
        save_total_limit=1, beta=0.5,
    )  # fmt: skip
    train(config, echo=lines.append)
    assert f"resumed from {run_dir / 'checkpoint-1'} at step 1" in lines  # output_dir's first
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step-1.jsonl"]
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["beta"] == 0.5 and saved["resume_from_checkpoint"] is None  # rerunnable
    assert sorted(p.name for p in run_dir.glob("*checkpoint-*")) == [
        "checkpoint-3", "retired-checkpoint-2", "retired-checkpoint-3",
    ]  # fmt: skip
    assert "resume: checkpoint-3 is later than step 1: moved aside to retired-checkpoint-3" in lines
    state = json.loads((run_dir / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert DPOConfig(resume_from_checkpoint=True).resume_from_checkpoint == "latest"
    assert DPOConfig(resume_from_checkpoint="false").resume_from_checkpoint is None


def test_resume_takes_this_runs_schedule_and_refuses_other_pairs(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Unchanged options resume exactly (tested elsewhere); a changed learning_rate or a longer
    max_steps takes effect from the next step, as a fresh run of those options would have it,
    and is said; a checkpoint trained on other pairs is refused."""
    from directpo.tracking import read_metrics

    model = tiny_model_dirs["llama"]
    out = tmp_path / "run"
    train(config_for(model, pairs_file, out, max_steps=4, save_steps=2), echo=lambda _: None)
    longer = tmp_path / "longer"
    train(
        config_for(model, pairs_file, longer, max_steps=8, learning_rate=1e-3, save_steps=0),
        echo=lambda _: None,
    )
    want = {r["step"]: r["learning_rate"] for r in read_metrics(longer)}
    lines: list[str] = []
    resumed = config_for(
        model, pairs_file, out, max_steps=8, learning_rate=1e-3, save_steps=0,
        resume_from_checkpoint="latest",
    )  # fmt: skip
    train(resumed, echo=lines.append)
    got = {r["step"]: r["learning_rate"] for r in read_metrics(out) if r["step"] > 4}
    assert got == pytest.approx({step: want[step] for step in range(5, 9)}, rel=1e-12)
    assert any(
        line.startswith(
            "resume: learning_rate, lr schedule, total steps (max_steps / num_train_epochs) "
            "4 -> 8 changed since the checkpoint"
        )
        for line in lines
    ), lines

    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    other = pairs_file.with_name("shuffled.jsonl")
    other.write_text("".join(json.dumps(row) + "\n" for row in reversed(rows)))  # same count
    with pytest.raises(ConfigError, match=r"checkpoint-4 was trained on other pairs"):
        train(
            config_for(
                model, other, out, max_steps=8, resume_from_checkpoint=str(out / "checkpoint-4")
            ),
            echo=lambda _: None,
        )


def test_a_metrics_line_torn_by_a_kill_does_not_stop_the_resume(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """SIGKILL can land mid-append: the torn last line is dropped, never a traceback."""
    from directpo.tracking import read_metrics

    metrics = run_dir / "metrics.jsonl"
    rows = read_metrics(run_dir)
    shutil.rmtree(run_dir / "checkpoint-3")
    metrics.write_text(metrics.read_text() + '{"step": 4, "loss": 0.57')
    assert read_metrics(run_dir) == rows
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="latest"
    )
    train(config, echo=lambda _: None)
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert all(line.endswith("}") for line in metrics.read_text().splitlines())


def test_a_best_metric_spelled_near_a_named_sets_metric_is_told_it() -> None:
    """eval_chat/rewards/margins (a named set's margins, with a slash where the set's metrics
    have an underscore) was told the 26 names an evaluation logs, the one meant among them."""
    from directpo.best import BestModel, metric_name

    logged = {"eval/chat_loss": 0.6, "eval/chat_rewards/margins": 0.2, "eval/text_loss": 0.7}
    best = BestModel(metric_name("eval_chat/rewards/margins"), greater_is_better=True)
    with pytest.raises(ConfigError) as err:
        best.update(2, logged)
    assert str(err.value).startswith(
        "metric_for_best_model: evaluations log no eval/chat/rewards/margins; did you mean "
        "eval/chat_rewards/margins? (they log eval/chat_loss, "
    )
    assert "did you mean" not in str(pytest.raises(ConfigError, BestModel("eval/bleu").update,
                                                    2, logged).value)  # fmt: skip


def test_a_best_metric_no_evaluation_logs_is_said_as_its_caller_set_it() -> None:
    """metric_for_best_model no evaluation logs: a flag's and a keyword's user were told the
    recipe's key ('metric_for_best_model: evaluations log no eval/accuracy'); each reads its
    own, and the key alone where no one set it (the default)."""
    from directpo.best import BestModel, metric_name
    from directpo.callers import Caller, Entry, Spelling, speaking_as

    config = DPOConfig(
        model_name_or_path="m", train_file="t.jsonl", eval_steps=2, load_best_model_at_end=True,
        metric_for_best_model="eval_accuracy",
    )  # fmt: skip
    said = {}
    for spelling in Spelling:
        with speaking_as(Caller(spelling, Entry.TRAIN)), pytest.raises(ConfigError) as err:
            BestModel(metric_name("eval_accuracy")).check_logged({"eval/loss": 0.5}, config)
        said[spelling] = str(err.value).split(": evaluations log no eval/accuracy")[0]
    assert said == {
        Spelling.RECIPE: "metric_for_best_model",
        Spelling.FLAGS: "--metric_for_best_model eval_accuracy",
        Spelling.PYTHON: "metric_for_best_model='eval_accuracy'",
    }
    config.metric_for_best_model = None
    with speaking_as(Caller(Spelling.FLAGS, Entry.TRAIN)), pytest.raises(ConfigError) as err:
        BestModel("eval/loss").check_logged({"eval/reward": 0.5}, config)
    assert str(err.value).startswith("metric_for_best_model: evaluations log no eval/loss")


def test_a_best_metric_no_evaluation_logs_is_refused_at_the_first_evaluation() -> None:
    """metric_for_best_model naming a training metric (online/reward_mean) or a typo used to
    be ignored: the final folder silently held the last weights, not the best."""
    from directpo.best import BestModel

    best = BestModel("eval/online/reward_mean", greater_is_better=True, keep_checkpoint=True)
    with pytest.raises(ConfigError) as err:
        best.update(2, {"step": 2, "eval/loss": 0.5, "eval/reward": 1.0})
    assert str(err.value) == (
        "metric_for_best_model: evaluations log no eval/online/reward_mean "
        "(they log eval/loss, eval/reward)"
    )
    assert BestModel("", keep_checkpoint=False).update(2, {"eval/loss": 0.5}) is False
    assert BestModel("eval/loss", keep_checkpoint=True).update(2, {"eval/loss": 0.5}) is True


@pytest.mark.parametrize(
    ("first", "then"),
    [({}, {"optimizer": "rmsprop"}),
     ({"dtype": "bfloat16", "master_weights": "bfloat16", "optimizer": "adamw_kahan"}, {})],
)  # fmt: skip
def test_resume_with_another_optimizer_is_refused_naming_both(
    tiny_model_dirs, pairs_file, tmp_path, first, then
) -> None:
    """AdamW's checkpoint resumed with rmsprop or adamw_kahan stopped at the first step with a
    KeyError traceback; adamw_kahan's resumed with adamw said "cannot restore ('step')"."""
    out = tmp_path / "out"
    train(config_for(tiny_model_dirs["llama"], pairs_file, out, max_steps=1, **first),
          echo=lambda _: None)  # fmt: skip
    written = first.get("optimizer", "adamw")
    wanted = then.get("optimizer", "adamw")
    config = config_for(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=2,
        resume_from_checkpoint="latest", **{**first, **then, "optimizer": wanted},
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=rf"written with optimizer: {written}, this run "
                       rf"has optimizer: {wanted}.*resume with optimizer: {written}"):  # fmt: skip
        train(config, echo=lambda _: None)


def test_resume_of_kahan_state_over_other_weights_is_refused(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """adamw_kahan keeps a compensation for bf16 weights only: its checkpoint over float32
    masters resumed with master_weights: bfloat16 stopped at the first step with an
    AttributeError traceback from torch-optimi."""
    out = tmp_path / "out"
    kahan = {"dtype": "bfloat16", "optimizer": "adamw_kahan"}
    train(config_for(tiny_model_dirs["llama"], pairs_file, out, max_steps=1, **kahan),
          echo=lambda _: None)  # fmt: skip
    config = config_for(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=2, master_weights="bfloat16",
        resume_from_checkpoint="latest", **kahan,
    )  # fmt: skip
    with pytest.raises(CheckpointError, match=r"adamw_kahan over float32 weights, this run's "
                       r"are bfloat16 \(master_weights\)"):  # fmt: skip
        train(config, echo=lambda _: None)


def test_a_sharded_write_failing_on_some_ranks_names_them_and_the_cause() -> None:
    """torch.distributed.checkpoint raises the same CheckpointException on every rank when a
    rank's write fails; its text is each failed rank's traceback, so the line said
    "CheckpointException ranks:dict_keys([1])" and never why (a full disk)."""
    import traceback

    from torch.distributed.checkpoint.api import CheckpointException

    def fails(failures: dict) -> None:
        wrapped = {r: (e, traceback.StackSummary()) for r, e in failures.items()}
        raise CheckpointException("save failed", wrapped)

    full = OSError(errno.ENOSPC, "No space left on device")
    assert checkpoint_module.attempt_write(lambda: fails({1: full})) == (
        "rank 1: No space left on device"
    )
    mixed = {2: full, 0: full, 1: RuntimeError("torch.save failed\nmore")}
    assert checkpoint_module.attempt_write(lambda: fails(mixed)) == (
        "ranks 0, 2: No space left on device; rank 1: torch.save failed"
    )


def test_torch_saves_full_disk_text_is_said_in_words(tmp_path) -> None:
    """On a full disk torch.save raises its C++ assertion: "[enforce fail at
    inline_container.cc:672] . unexpected pos 264000 vs 263892" was the whole reason given."""

    def fails() -> None:
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . unexpected pos 264000 vs 263892"
        )

    why = checkpoint_module.attempt_write(fails, tmp_path)
    assert why.startswith("torch.save could not write the whole file (unexpected pos 264000")
    assert why.endswith("MiB free on that disk") and "enforce fail" not in why


@pytest.mark.parametrize("decays", [(0.0, 0.1), (0.1, 0.0)])
def test_optimizer_state_follows_its_tensors_when_weight_decay_regroups(decays) -> None:
    # weight decay puts biases and norms into a second param group: a checkpoint saved with
    # the other grouping (weight_decay changed on resume, or written before the split) resumes
    # with each tensor's own moments
    from directpo.optimizers import build_optimizer, fit_saved_groups, no_decay_ids

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    params = list(model.parameters())
    no_decay = no_decay_ids(model, None)
    assert {id(p) for p in params} - no_decay == {id(model[0].weight), id(model[2].weight)}
    saved_with, resumed_with = (DPOConfig(weight_decay=decay) for decay in decays)
    before = build_optimizer(params, saved_with, no_decay=no_decay)
    model(torch.randn(5, 3)).square().sum().backward()
    before.step()
    after = build_optimizer(params, resumed_with, no_decay=no_decay)
    assert len(before.param_groups) != len(after.param_groups)
    after.load_state_dict(fit_saved_groups(before.state_dict(), after, params, no_decay))
    for param in params:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(after.state[param][key], before.state[param][key]), key


@pytest.mark.parametrize("decays", [(0.0, 0.1), (0.1, 0.0)])
def test_kahan_step_counts_stay_per_group_when_weight_decay_regroups(decays) -> None:
    # torch-optimi keeps its step count in the param group: the regrouped groups shared the
    # saved group's tensor, which each group then advanced (step 4 after 2 steps + 1: Adam's
    # bias correction silently off)
    from directpo.optimizers import build_optimizer, fit_saved_groups, no_decay_ids

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    params = list(model.parameters())
    no_decay = no_decay_ids(model, None)
    saved_with, resumed_with = (
        DPOConfig(weight_decay=decay, optimizer="adamw_kahan") for decay in decays
    )
    before = build_optimizer(params, saved_with, no_decay=no_decay)
    for _ in range(2):
        model(torch.randn(5, 3)).square().sum().backward()
        before.step()
    after = build_optimizer(params, resumed_with, no_decay=no_decay)
    after.load_state_dict(fit_saved_groups(before.state_dict(), after, params, no_decay))
    model(torch.randn(5, 3)).square().sum().backward()
    after.step()
    assert [int(group["step"]) for group in after.param_groups] == [3] * len(after.param_groups)


def test_resume_with_weight_decay_turned_on(run_dir, tiny_model_dirs, pairs_file) -> None:
    lines: list[str] = []  # run_dir trained without weight decay: one param group
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="checkpoint-2",
        weight_decay=0.1,
    )  # fmt: skip
    assert train(config, echo=lines.append).global_step == 3
    assert any(line.startswith("resume: weight_decay changed") for line in lines)


def test_resume_past_the_runs_last_step_is_refused(run_dir, tiny_model_dirs, pairs_file) -> None:
    # the final folder would silently get step 3's weights from a run of 2 steps
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="latest", max_steps=2
    )
    with pytest.raises(ConfigError, match="is at step 3, past this run's 2 steps"):
        train(config, echo=lambda _: None)
    assert sorted(p.name for p in run_dir.glob("*checkpoint-*")) == [
        "checkpoint-1", "checkpoint-2", "checkpoint-3",
    ]  # fmt: skip


def test_what_a_killed_run_left_half_written_is_removed_by_the_next(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """A kill mid-checkpoint (or mid final save) leaves its hidden staging folder; it was removed
    only by a later save of the same step, so a resume with other save_steps, or an overwrite,
    kept a model's worth of disk in it for good."""

    def kill_leftovers() -> list[str]:
        for name in (".checkpoint-5.tmp", ".final.tmp"):
            (run_dir / name).mkdir()
            (run_dir / name / "model.safetensors").write_bytes(b"half written")
        return sorted(p.name for p in run_dir.glob(".*.tmp"))

    assert kill_leftovers() == [".checkpoint-5.tmp", ".final.tmp"]
    model = tiny_model_dirs["gpt2"]
    train(
        config_for(model, pairs_file, run_dir, resume_from_checkpoint="latest"), echo=lambda _: None
    )
    assert not list(run_dir.glob(".*.tmp"))
    assert verify_checkpoint(run_dir / "checkpoint-3") is None

    kill_leftovers()
    train(
        config_for(model, pairs_file, run_dir, overwrite_output_dir=True, max_steps=1),
        echo=lambda _: None,
    )
    assert not list(run_dir.glob(".*.tmp"))


def test_a_checkpoint_killed_before_its_rename_is_moved_into_place_and_resumed(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """A run killed after a checkpoint's manifest but before its rename (or, saving the
    resumed step again, between moving the old one aside and the new one into place) leaves it
    staged and whole. It was removed as half written and the resume went back a checkpoint
    (saving the resumed step again it deleted the old one first: a kill during that delete
    lost the very checkpoint the run had resumed from)."""
    (run_dir / "checkpoint-3").rename(run_dir / ".checkpoint-3.tmp")
    shutil.copytree(run_dir / "checkpoint-2", run_dir / ".checkpoint-3.replaced.tmp")
    half = run_dir / ".checkpoint-4.tmp"  # another, cut short: no manifest
    shutil.copytree(run_dir / "checkpoint-2", half)
    (half / "manifest.json").unlink()
    lines: list[str] = []
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="latest", max_steps=4
    )
    assert train(config, echo=lines.append).global_step == 4
    assert "resume: took checkpoint-3, the newest checkpoint that verifies" in lines
    assert not list(run_dir.glob(".*.tmp"))
    assert all(verify_checkpoint(p) is None for p in run_dir.glob("checkpoint-*"))


def test_a_first_checkpoint_killed_before_its_rename_is_resumed_not_refused(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """The run's only checkpoint staged whole: 'latest' was refused ('no checkpoint ... set
    resume_from_checkpoint: null to start a new run') before the folder was looked at."""
    for entry in run_dir.iterdir():
        if entry.name not in ("checkpoint-1", "config.yaml", "metrics.jsonl"):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    (run_dir / "checkpoint-1").rename(run_dir / ".checkpoint-1.tmp")
    lines: list[str] = []
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, resume_from_checkpoint="latest", max_steps=2
    )
    assert train(config, echo=lines.append).global_step == 2
    assert "resume: took checkpoint-1, the newest checkpoint that verifies" in lines


def test_resume_with_other_adapter_settings_is_refused_naming_them(
    run_dir, tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A LoRA checkpoint resumed without LoRA said "'LlamaForCausalLM' object has no attribute
    'peft_config'", with another lora_r a screenful of size mismatches, and a full checkpoint
    resumed with LoRA a list of missing keys; another lora_alpha (or rsLoRA) resumed without a
    word, each update then scaled otherwise than it was trained."""
    model, out = tiny_model_dirs["llama"], tmp_path / "lora"
    train(config_for(model, pairs_file, out, max_steps=1, lora_r=4), echo=lambda _: None)

    def resumed(folder, **options):
        config = config_for(model, pairs_file, folder, resume_from_checkpoint="latest", **options)
        with pytest.raises(CheckpointError) as refused:
            train(config, echo=lambda _: None)
        return str(refused.value)

    # (train()'s caller: the settings in Python's words)
    assert "written with lora_r=4, this run has lora_r=0; " in resumed(out)
    assert "written with lora_r=4, this run has lora_r=8; " in resumed(out, lora_r=8)
    said = resumed(out, lora_r=4, lora_alpha=8)
    assert "written with lora_alpha=32, this run has lora_alpha=8; " in said
    assert said.endswith("resume with lora_alpha=32, or start a new run from its weights "
                         f"(model_name_or_path='{out / 'checkpoint-1'}', "
                         f"ref_model_name_or_path='{model}')")  # fmt: skip
    assert "written with use_rslora=False" in resumed(out, lora_r=4, use_rslora=True)
    full = resumed(run_dir, lora_r=4, model_name_or_path=str(tiny_model_dirs["gpt2"]))
    assert "written with lora_r=0, this run has lora_r=4; " in full
    # the same settings (lora_dropout may change) resume
    config = config_for(model, pairs_file, out, max_steps=2, lora_r=4, lora_dropout=0.1,
                        resume_from_checkpoint="latest")  # fmt: skip
    assert train(config, echo=lambda _: None).global_step == 2


def test_resume_of_a_peft_config_checkpoint_with_other_adapters_names_its_kind(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A checkpoint of train(peft_config=IA3Config(...)) resumed without it said "written with
    lora_r: IA3Config ... resume with lora_r: IA3Config", a setting that does not exist, and
    with lora_r a list of unexpected keys; the same peft_config resumes."""
    from peft import IA3Config

    model, out = tiny_model_dirs["llama"], tmp_path / "ia3"

    def run(steps: int, peft_config=None, **options):
        config = config_for(model, pairs_file, out, max_steps=steps, **options)
        return train(config, peft_config=peft_config, echo=lambda _: None)

    run(1, IA3Config(task_type="CAUSAL_LM"))
    for options, mine in (({}, "lora_r=0"), ({"lora_r": 4}, "lora_r=4")):  # (train()'s words)
        with pytest.raises(CheckpointError) as refused:
            run(2, resume_from_checkpoint="latest", **options)
        assert f"written with peft_config IA3Config, this run has {mine}; " in str(refused.value)
        assert "resume with train(peft_config=...) of the IA3Config it was written" in str(
            refused.value
        )
    resumed = run(2, IA3Config(task_type="CAUSAL_LM"), resume_from_checkpoint="latest")
    assert resumed.global_step == 2


def test_weights_of_another_model_size_are_refused_in_a_short_line(
    tiny_model_dirs, tmp_path
) -> None:
    """torch's size-mismatch error listed every tensor: a line of kilobytes for a real model."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from directpo.checkpoint import load_model_weights

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    narrower = AutoConfig.from_pretrained(tiny_model_dirs["llama"])
    narrower.intermediate_size = 48
    other = AutoModelForCausalLM.from_config(narrower)
    (tmp_path / "ckpt").mkdir()
    save_file(dict(other.state_dict()), tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(CheckpointError) as refused:
        load_model_weights(model, tmp_path / "ckpt")
    said = str(refused.value)
    assert said.endswith("weights do not fit the model: 6 tensors have other shapes "
                         "(model.layers.0.mlp.down_proj.weight: [32, 48] in the checkpoint, "
                         "[32, 64] in the model); it was written for another model")  # fmt: skip


def test_a_best_metric_no_evaluation_logs_is_refused_before_the_first_step(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """metric_for_best_model spelled as a classification run spells it (eval_accuracy) failed
    the run at its first evaluation, after eval_steps of training; the names an evaluation logs
    are known at start (one held-out pair's metrics), so it fails before step 1."""
    lines: list[str] = []
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", max_steps=2, eval_steps=2,
        eval_file=str(pairs_file), load_best_model_at_end=True,
        metric_for_best_model="eval_accuracy",
    )  # fmt: skip
    with pytest.raises(ConfigError) as err:
        train(config, echo=lines.append)
    assert str(err.value).startswith(  # (a keyword's user reads the keyword it passed)
        "metric_for_best_model='eval_accuracy': evaluations log no eval/accuracy (they log "
        "eval/entropy, "
    )
    assert "eval/rewards/accuracies" in str(err.value)
    assert not any(line.startswith("step ") for line in lines)  # no step trained
    config.metric_for_best_model = "eval_rewards/accuracies"  # TRL's spelling of a logged one
    assert train(config, echo=lines.append).global_step == 2


def test_named_eval_sets_without_metric_for_best_model_name_the_option_to_set(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """load_best_model_at_end with named eval sets and no metric_for_best_model was refused as
    "metric_for_best_model: evaluations log no eval/loss (they log <24 names>)", an option the
    user had not set, and only once the model had loaded (eval_file's sets are known at once)."""
    wanted = (
        "load_best_model_at_end / early_stopping_patience compare metric_for_best_model, by "
        "default eval_loss, which named eval sets do not log (each logs its own): set "
        "metric_for_best_model to one of theirs (eval_chat_loss, eval_code_loss, or another of "
        "their metrics)"
    )
    sets = {"chat": str(pairs_file), "code": str(pairs_file)}
    for tracked in (dict(load_best_model_at_end=True), dict(early_stopping_patience=1)):
        with pytest.raises(ConfigError) as err:
            DPOConfig(model_name_or_path="m", eval_file=sets, **tracked)
        assert str(err.value) == wanted
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "run", max_steps=1,
                         load_best_model_at_end=True)  # fmt: skip
    with pytest.raises(ConfigError) as err:  # sets from Python: known once they are read
        train(config, eval_dataset={"chat": str(pairs_file), "code": str(pairs_file)}, echo=None)
    assert str(err.value) == wanted
    DPOConfig(model_name_or_path="m", eval_file=sets, load_best_model_at_end=True,
              metric_for_best_model="eval_code_loss")  # fmt: skip


def test_a_nan_evaluation_is_never_the_best() -> None:
    """A NaN first evaluation became the best, and no later value compared better with it:
    load_best_model_at_end kept the NaN step's weights (and early stopping counted every
    evaluation after it as no gain)."""
    from directpo.best import BestModel

    for greater in (False, True):
        best = BestModel("eval/loss", greater_is_better=greater, keep_checkpoint=True)
        kept = [best.update(step, {"eval/loss": value})
                for step, value in enumerate([math.nan, 0.7, math.nan, 0.6], start=1)]  # fmt: skip
        assert kept == [False, True, False, not greater], greater
        assert (best.step, best.evals_without_improvement) == ((2, 2) if greater else (4, 0))


def test_early_stopping_threshold_is_transformers_early_stopping_callbacks() -> None:
    """early_stopping_threshold (EarlyStoppingCallback's) was an unknown option. A gain of at
    most the threshold is still the best (load_best_model_at_end) but counts against the
    patience, as in transformers; without early_stopping_patience it does nothing: refused."""
    from directpo.best import BestModel

    config = DPOConfig(
        eval_file="e.jsonl", early_stopping_patience=2, early_stopping_threshold=0.1,
        load_best_model_at_end=True, metric_for_best_model="eval_loss",
    )  # fmt: skip
    best = BestModel.from_config(config)
    spent = []
    for step, loss in enumerate([1.0, 0.95, 0.80, 0.79, 0.78], start=1):
        best.update(step, {"eval/loss": loss})
        spent.append(best.patience_spent())
    assert spent == [False, False, False, False, True]
    assert (best.value, best.step, best.checkpoint) == (0.78, 5, "checkpoint-5")
    with pytest.raises(ConfigError, match="early_stopping_threshold is set but early_stopping_pa"):
        DPOConfig(early_stopping_threshold=0.1)
    with pytest.raises(ConfigError, match="early_stopping_threshold must be >= 0"):
        DPOConfig(eval_file="e.jsonl", early_stopping_patience=1, early_stopping_threshold=-1.0)


def test_a_runs_config_yaml_resumes_from_any_working_directory(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """config.yaml stored data paths as given: a run started with train_file: pairs.jsonl,
    resumed (or rerun) from another folder, read no file there, or another one of that name.
    A run's local files and folders are recorded as absolute paths, as its model folders are."""
    from directpo.config import load_config

    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(pairs_file, work / "pairs.jsonl")
    (work / "template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    monkeypatch.chdir(work)
    config = tiny_config(tiny_model_dirs["gpt2"], None, "run", train_file="pairs.jsonl",
                         eval_file={"held": ["pairs.jsonl"]}, chat_template="template.jinja",
                         save_steps=1, max_steps=1, per_device_train_batch_size=3,
                         model_init_kwargs={"cache_dir": "hub"})  # fmt: skip
    train(config, echo=lambda _: None)
    saved = yaml.safe_load((work / "run" / "config.yaml").read_text())
    # (nested in a dict option: it stayed relative, another cache from another folder)
    assert saved["model_init_kwargs"] == {"cache_dir": str(work / "hub")}
    reference = dataclasses.replace(config, ref_model_name_or_path=str(tiny_model_dirs["gpt2"]),
                                    ref_model_init_kwargs={"cache_dir": "hub", "revision": "v1",
                                                           "offload_folder": "off"})  # fmt: skip
    assert reference.record()["ref_model_init_kwargs"] == {
        "cache_dir": str(work / "hub"),
        "revision": "v1",
        "offload_folder": str(work / "off"),
    }
    assert saved["train_file"] == str(work / "pairs.jsonl")
    assert saved["eval_file"] == {"held": [str(work / "pairs.jsonl")]}
    assert saved["chat_template"] == str(work / "template.jinja")
    assert saved["output_dir"] == str(work / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(str(work / "run" / "config.yaml"),
                         {"resume_from_checkpoint": "latest", "max_steps": "2"})  # fmt: skip
    lines: list[str] = []
    train(config, echo=lines.append)
    assert any(line.startswith("resumed from") for line in lines), lines
    assert (work / "run" / "checkpoint-2").is_dir() and not (elsewhere / "run").exists()


def test_save_only_model_writes_weights_alone_loads_the_best_and_never_resumes(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's save_only_model was refused. Its checkpoints hold no optimizer, schedule or RNG
    state; load_best_model_at_end still gives the best evaluation's weights (those of the
    same run with full checkpoints); such a checkpoint is refused as a resume point in one
    line (transformers cannot resume one either), and 'latest' passes over it to a complete
    one: the checkpoint a signal writes, complete so that the run continues exactly."""
    settings = dict(
        max_steps=4, save_steps=2, per_device_train_batch_size=2, eval_file=str(pairs_file),
        eval_steps=1, load_best_model_at_end=True, metric_for_best_model="eval/rewards/margins",
        greater_is_better=False,
    )  # fmt: skip
    model = tiny_model_dirs["llama"]
    full = train(tiny_config(model, pairs_file, tmp_path / "full", **settings), echo=quiet)
    lines: list[str] = []
    config = tiny_config(model, pairs_file, tmp_path / "only", save_only_model=True, **settings)
    only = train(config, echo=lines.append)
    assert any(line.startswith("loaded the best model: step 1") for line in lines)
    for key, tensor in full.policy.state_dict().items():
        assert torch.equal(tensor, only.policy.state_dict()[key]), key
    state_files = {"optimizer.pt", "scheduler.pt", "rng_state.pth"}
    for step in (1, 2, 4):
        files = {p.name for p in (tmp_path / "only" / f"checkpoint-{step}").iterdir()}
        assert "model.safetensors" in files and not files & state_files
        assert verify_checkpoint(tmp_path / "only" / f"checkpoint-{step}") is None
        assert state_files <= {p.name for p in (tmp_path / "full" / f"checkpoint-{step}").iterdir()}
    resumed = dataclasses.replace(config, resume_from_checkpoint="latest")
    with pytest.raises(CheckpointError) as refused:
        train(resumed, echo=quiet)
    only = tmp_path / "only"
    assert str(refused.value) == (
        f"resume_from_checkpoint='latest': no usable checkpoint in {only} (checkpoint-4, "
        "checkpoint-2, checkpoint-1: written with save_only_model: true (no optimizer, schedule "
        "or RNG state): not resumable); start a new run from its weights (model_name_or_path="
        f"'{only / 'checkpoint-4'}', ref_model_name_or_path='{model}')"  # (train()'s words)
    )
    explicit = dataclasses.replace(
        config, resume_from_checkpoint=str(tmp_path / "only/checkpoint-4")
    )
    with pytest.raises(CheckpointError, match="not resumable; start a new run from its weights"):
        train(explicit, echo=quiet)

    # a signal after step 3: its checkpoint is complete, and the run continues from it exactly
    real = trainer_module._stop_requested

    def signal_at_step_3(run, stop):
        if run.logger.rows and run.logger.rows[-1]["step"] == 3:
            stop.requested = "SIGTERM"
        return real(run, stop)

    plain = dict(max_steps=4, save_steps=1, per_device_train_batch_size=2)
    whole = train(tiny_config(model, pairs_file, tmp_path / "whole", **plain), echo=quiet)
    monkeypatch.setattr(trainer_module, "_stop_requested", signal_at_step_3)
    config = tiny_config(model, pairs_file, tmp_path / "stopped", save_only_model=True, **plain)
    assert train(config, echo=quiet).stopped_by == "SIGTERM"
    monkeypatch.setattr(trainer_module, "_stop_requested", real)
    files = {p.name for p in (tmp_path / "stopped" / "checkpoint-3").iterdir()}
    assert state_files <= files
    lines.clear()
    continued = train(
        dataclasses.replace(config, resume_from_checkpoint="latest"), echo=lines.append
    )
    assert "resume: took checkpoint-3, the newest checkpoint that verifies" in lines
    for key, tensor in whole.policy.state_dict().items():
        assert torch.equal(tensor, continued.policy.state_dict()[key]), key


def test_a_save_only_model_checkpoint_is_refused_before_the_data_and_models_load(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Resuming from a save_only_model checkpoint (named, or 'latest' where all are) was refused
    after the data was tokenized and the models loaded (minutes for a large model); its state
    file says so at once, in the same line."""
    out = tmp_path / "only"
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, max_steps=2, save_steps=1,
                         save_only_model=True)  # fmt: skip
    train(config, echo=quiet)

    def loaded(*args, **kwargs):
        raise AssertionError("the data and models were loaded before the refusal")

    monkeypatch.setattr(run_module, "load_run_data", loaded)
    for value, said, start in [
        (str(out / "checkpoint-1"), f"'{out / 'checkpoint-1'}': ", "checkpoint-1"),
        ("latest", f"'latest': no usable checkpoint in {out} (checkpoint-2, checkpoint-1: ",
         "checkpoint-2"),
    ]:  # fmt: skip
        with pytest.raises(CheckpointError) as refused:
            train(dataclasses.replace(config, resume_from_checkpoint=value), echo=quiet)
        assert str(refused.value).startswith(f"resume_from_checkpoint={said}written with "
                                             "save_only_model: true")  # fmt: skip
        assert str(refused.value).endswith(  # (train()'s words)
            f"(model_name_or_path='{out / start}', ref_model_name_or_path="
            f"'{tiny_model_dirs['gpt2']}')"
        )


def test_a_checkpoint_tokenized_by_other_rules_is_named_as_such_only_where_its_pairs_differ():
    """A checkpoint written before a change of the tokenization rules (no number recorded:
    rules 1) resumes as ever where its data gives the same ids, and where it does not, the
    refusal says that directpo changed, not the data (the user changed nothing)."""
    from directpo.sources import RULE_CHANGES, _check_same
    from directpo.tokenization import TOKENIZATION_RULES

    now = {"batch_size": 2, "seed": 1, "pairs_fingerprint": "a"}
    now["tokenization_rules"] = TOKENIZATION_RULES
    old = {"batch_size": 2, "seed": 1, "pairs_fingerprint": "a"}
    _check_same(old, now, "ckpt")  # the same ids: resumes
    _check_same({**old, "tokenization_rules": TOKENIZATION_RULES}, now, "ckpt")
    with pytest.raises(ConfigError, match=r"ckpt was tokenized by an earlier directpo .*rules 1"):
        _check_same({**old, "pairs_fingerprint": "b"}, now, "ckpt")
    with pytest.raises(ConfigError, match=r"ckpt was trained on other pairs"):
        _check_same(
            {**old, "pairs_fingerprint": "b", "tokenization_rules": TOKENIZATION_RULES}, now, "ckpt"
        )
    # the refusal says what changed since the checkpoint's rules, not the first change only
    previous = {**old, "pairs_fingerprint": "b", "tokenization_rules": TOKENIZATION_RULES - 1}
    with pytest.raises(ConfigError) as refused:
        _check_same(previous, now, "ckpt")
    assert RULE_CHANGES[TOKENIZATION_RULES] in str(refused.value)
    assert RULE_CHANGES[TOKENIZATION_RULES - 1] not in str(refused.value)


def test_a_resume_that_changes_the_loss_says_which_options_changed(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """A checkpoint records the options that decide what a step optimizes; a resume under
    another beta or loss_type trained on without a word (its curves then changed for no visible
    reason), or under another assistant_only_loss. The same options say nothing."""
    from directpo.resume import OBJECTIVE

    state = read_state(run_dir / "checkpoint-2")
    assert set(state["objective"]) == set(OBJECTIVE)
    assert state["objective"]["beta"] == 0.1 and state["objective"]["loss_type"] == ["sigmoid"]

    def resumed(**options) -> list[str]:
        lines: list[str] = []
        config = config_for(
            tiny_model_dirs["gpt2"], pairs_file, run_dir, max_steps=3,
            resume_from_checkpoint=str(run_dir / "checkpoint-2"), **options,
        )  # fmt: skip
        train(config, echo=lines.append)
        return [line for line in lines if "changed since the checkpoint" in line]

    assert resumed() == []
    said = resumed(beta=0.3, loss_type=["ipo"])
    assert said == [
        "resume: loss_type ['sigmoid'] -> ['ipo'], beta 0.1 -> 0.3 changed since the checkpoint; "
        "the steps after 2 optimize this run's objective (the loss and reward curves change there)"
    ]
    # which tokens log π(y|x) sums is the objective too (a tool's result's, or not), where it
    # leaves any out: plain-text pairs have none (test_assistant_only_loss_on_resume_...)
    assert resumed(assistant_only_loss=True) == []


def test_a_resume_against_another_reference_model_says_so(
    run_dir, tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A resume with another ref_model_name_or_path trained on against it without a word (the
    objective changed at the resumed step). The same model at another path (a copy) is no
    change; another model (same architecture and sizes, other weights) is said."""
    from tiny import save_tiny_model

    copy = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "copy")
    other = save_tiny_model("gpt2", tmp_path / "other", seed=1)

    def said(reference: Path) -> list[str]:
        lines: list[str] = []
        config = config_for(tiny_model_dirs["gpt2"], pairs_file, run_dir, max_steps=3,
                            ref_model_name_or_path=str(reference),
                            resume_from_checkpoint=str(run_dir / "checkpoint-2"))  # fmt: skip
        train(config, echo=lines.append)
        return [line for line in lines if "changed since the checkpoint" in line]

    assert said(copy) == []
    assert said(other) == [
        f"resume: the reference model {tiny_model_dirs['gpt2']} -> {other} changed since the "
        "checkpoint; the steps after 2 optimize this run's objective (the loss and reward "
        "curves change there)"
    ]


def test_a_checkpoint_records_the_reference_as_it_was_loaded(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Each checkpoint read the reference folder's identity as it was then: a newer revision
    written into it mid-run (a download into the cache, a save into the folder) was recorded
    as the reference trained against, and a resume against those files said nothing though
    the run's reference had been the earlier one. The files are read as the model is loaded."""
    from tiny import save_tiny_model

    from directpo.model_identity import IDENTITY_SCHEME, model_identity

    start = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "start")
    loaded = model_identity(str(start))
    step = trainer_module.checkpoint_step

    def rewrite_then_checkpoint(*args, **kwargs):
        save_tiny_model("gpt2", start, seed=1)  # another model written there mid-run
        return step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "checkpoint_step", rewrite_then_checkpoint)
    out = tmp_path / "run"
    train(config_for(start, pairs_file, out, max_steps=1), echo=lambda _: None)
    recorded = read_state(out / "checkpoint-1")["reference"]
    assert recorded == {"path": str(start), "identity": loaded, "scheme": IDENTITY_SCHEME}
    # ... as loaded, not before: a hub id's first load downloads the weights its config sat
    # beside (read before the load, a resume would say the files had changed)
    monkeypatch.undo()
    fetched = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "fetched")
    weights = (fetched / "model.safetensors").rename(tmp_path / "weights.safetensors")
    load = run_models.load_policy_and_reference

    def download_then_load(*args, **kwargs):
        shutil.move(weights, fetched / "model.safetensors")
        return load(*args, **kwargs)

    monkeypatch.setattr(run_models, "load_policy_and_reference", download_then_load)
    train(config_for(fetched, pairs_file, tmp_path / "run2", max_steps=1), echo=lambda _: None)
    assert read_state(tmp_path / "run2" / "checkpoint-1")["reference"]["identity"] == loaded


def test_assistant_only_loss_on_resume_is_said_where_it_leaves_tokens_out(
    tiny_model_dirs, tmp_path
) -> None:
    """A resume turning assistant_only_loss on or off was said as an objective change for
    plain-text pairs too, where it changes nothing. Said where the side that has it on leaves
    tokens out (a user turn between replies), both ways; not for replies of one message."""
    user = {"role": "user", "content": "more"}
    reply = [{"role": "assistant", "content": "great"}]
    rows = [
        {"prompt": [{**user, "content": f"hello {i}"}], "chosen": reply + [user, *reply],
         "rejected": [{"role": "assistant", "content": "terrible"}]}
        for i in range(6)
    ]  # fmt: skip
    turns = write_jsonl(tmp_path / "turns.jsonl", rows)
    single = write_jsonl(tmp_path / "single.jsonl", [{**row, "chosen": reply} for row in rows])

    def changes(data: Path, out: str, first: bool, then: bool) -> list[str]:
        model = tiny_model_dirs["gpt2"]
        train(config_for(model, data, tmp_path / out, max_steps=2, assistant_only_loss=first),
              echo=lambda _: None)  # fmt: skip
        lines: list[str] = []
        checkpoint = str(tmp_path / out / "checkpoint-2")
        resumed = config_for(model, data, tmp_path / out, assistant_only_loss=then,
                             resume_from_checkpoint=checkpoint)  # fmt: skip
        train(resumed, echo=lines.append)
        return [line for line in lines if line.startswith("resume: assistant_only_loss")]

    said = "resume: assistant_only_loss {} changed since the checkpoint; the steps after 2 "
    assert changes(turns, "on", False, True) == [said.format("False -> True") + (
        "optimize this run's objective (the loss and reward curves change there)")]  # fmt: skip
    assert changes(turns, "off", True, False)[0].startswith(said.format("True -> False"))
    assert changes(single, "single", False, True) == []


def test_a_resume_with_other_scored_tokens_or_truncation_says_which_option_changed(
    run_dir, tiny_model_dirs, pairs_file
) -> None:
    """assistant_only_loss changes the tokens scored, not the ids the pairs' checksum holds: a
    resume that changed it trained on without a word. A resume refused for other pairs (here
    a shorter max_prompt_length) listed what might differ, not the option that did."""
    saved = yaml.safe_load((run_dir / "checkpoint-2" / "config.yaml").read_text())
    lines: list[str] = []
    options = {"max_steps": 3, "resume_from_checkpoint": str(run_dir / "checkpoint-2")}
    config = config_for(tiny_model_dirs["gpt2"], pairs_file, run_dir, **options,
                        assistant_only_loss=True)  # fmt: skip
    train(config, echo=lines.append)
    # plain-text pairs: no token left out, nothing changed (chat rows: the test below)
    assert [line for line in lines if "changed since the checkpoint" in line] == []
    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, **options, max_prompt_length=2
    )
    with pytest.raises(ConfigError, match="was trained on other pairs") as refused:
        train(config, echo=lambda _: None)
    assert str(refused.value).endswith(
        f"(changed since the checkpoint: max_prompt_length {saved['max_prompt_length']} -> 2)"
    )


def test_a_checkpoint_records_the_options_it_was_trained_with(
    run_dir, tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """transformers' checkpoints carry training_args.bin; directpo's carried no options: a
    resume with another beta rewrote output_dir/config.yaml, and score then read the earlier
    checkpoints as trained at the new beta; a checkpoint copied elsewhere had no record."""
    from directpo.reward import run_config

    config = config_for(
        tiny_model_dirs["gpt2"], pairs_file, run_dir, beta=0.5,
        resume_from_checkpoint=str(run_dir / "checkpoint-1"),
    )  # fmt: skip
    train(config, echo=lambda _: None)
    assert run_config(run_dir).beta == 0.5
    assert run_config(run_dir / "retired-checkpoint-2").beta == 0.1
    assert run_config(run_dir / "checkpoint-1").beta == 0.1
    assert run_config(run_dir / "checkpoint-2").beta == 0.5
    copied = shutil.copytree(run_dir / "retired-checkpoint-3", tmp_path / "elsewhere")
    saved = run_config(copied)
    assert saved.beta == 0.1 and saved.resume_from_checkpoint is None
    assert verify_checkpoint(run_dir / "checkpoint-2") is None  # listed in the manifest


def test_latest_with_no_checkpoint_is_refused_before_the_data_and_models_load(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """resume_from_checkpoint: true (latest) in a folder without checkpoints was refused only
    after the data was tokenized and the models loaded (minutes for a large model)."""

    def loaded(*args, **kwargs):
        raise AssertionError("the data and models were loaded before the refusal")

    monkeypatch.setattr(run_module, "load_run_data", loaded)
    out = tmp_path / "fresh"
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, resume_from_checkpoint=True)
    with pytest.raises(CheckpointError) as refused:
        train(config, echo=quiet)
    assert str(refused.value) == (
        f"resume_from_checkpoint='latest': no checkpoint in {out} to resume; pass "
        "resume_from_checkpoint=None to start a new run"  # (train()'s keyword)
    )


def test_a_trl_checkpoint_is_refused_before_loading_naming_what_to_do(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A TRL run's checkpoint-N (training_args.bin, no manifest) given to resume_from_checkpoint
    was refused after the models loaded as "no manifest (incomplete or not a directpo
    checkpoint)", as if it were damaged; now at once, saying what it is and what to do."""
    trl = tmp_path / "trl" / "checkpoint-500"
    shutil.copytree(tiny_model_dirs["gpt2"], trl)
    (trl / "training_args.bin").write_bytes(b"pickle")
    (trl / "trainer_state.json").write_text('{"global_step": 500, "log_history": []}')

    def loaded(*args, **kwargs):
        raise AssertionError("the data and models were loaded before the refusal")

    monkeypatch.setattr(run_module, "load_run_data", loaded)
    config = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out", resume_from_checkpoint=str(trl)
    )
    with pytest.raises(CheckpointError) as refused:
        train(config, echo=quiet)
    assert str(refused.value) == (
        f"resume_from_checkpoint='{trl}': written by transformers' Trainer (a TRL run: "
        "training_args.bin), not by directpo: its optimizer state and data order continue only "
        f"there; start a new run from its weights (model_name_or_path='{trl}', "
        "ref_model_name_or_path=the run's starting model)"  # (train()'s words)
    )
    assert verify_checkpoint(trl).startswith("written by transformers' Trainer")
    # latest in a TRL run's output_dir: the same, at once
    config = dataclasses.replace(config, output_dir=str(trl.parent), resume_from_checkpoint=True)
    with pytest.raises(CheckpointError) as refused:
        train(config, echo=quiet)
    assert str(refused.value).startswith(
        f"resume_from_checkpoint='latest': no directpo checkpoint in {trl.parent} (checkpoint-500: "
        "written by transformers' Trainer"
    )


def test_a_resume_over_more_of_a_stream_says_what_the_pairs_are() -> None:
    """A run over a stream resumed with a longer max_steps reads more of it: the refusal was
    "trained with num_examples=12, this run has 24", not saying why they differ. A file whose
    rows were edited was said as a stream's ('the pairs read (of a stream: max_steps x pairs
    per step)=6'), and no refusal said what to set: the checkpoint's value is given."""
    from directpo.sources import _check_same

    with pytest.raises(ConfigError, match=r"ckpt was trained with the pairs read \(of a stream: "
                       r"max_steps x pairs per step\)=12, this run has 24"):  # fmt: skip
        stream = {"streamed": True}
        _check_same({"num_examples": 12, **stream}, {"num_examples": 24, **stream}, "ckpt")
    # a file's pairs: its rows were edited, not read further (said as the stream's before)
    with pytest.raises(ConfigError, match=r"^resume_from_checkpoint: ckpt was trained on 6 pairs, "
                       r"this run has 7 \(the data's rows differ\): resume with the data as it "
                       r"was, or start a new output_dir$"):  # fmt: skip
        _check_same({"num_examples": 6}, {"num_examples": 7, "streamed": False}, "ckpt")
    with pytest.raises(ConfigError, match=r"processes\)=2, this run has 3; the data order would "
                       r"differ: resume with 2, or start a new output_dir$"):  # fmt: skip
        _check_same({"batch_size": 2}, {"batch_size": 3}, "ckpt")


def test_a_resume_over_more_of_a_stream_goes_on_as_one_longer_run(tiny_model_dirs, tmp_path):
    """A run over a stream resumed with a longer max_steps was refused (it reads more rows).
    A stream's pairs are now trained in its order, as TRL reads it, so the longer run's first
    steps are the shorter one's: the resume continues through the rows it had not read, with
    the weights and losses of one uninterrupted run of that max_steps."""
    import datasets

    from directpo.tracking import read_metrics

    def stream():  # noqa: ANN202
        return datasets.IterableDataset.from_generator(
            lambda: ({"prompt": f"Q{n}:", "chosen": " yes", "rejected": " no"} for n in range(99))
        )

    def run(out, max_steps, **more):  # noqa: ANN001, ANN202
        config = config_for(
            tiny_model_dirs["gpt2"], None, out, max_steps=max_steps, save_steps=2,
            per_device_train_batch_size=2, lr_scheduler_type="constant", **more,
        )  # fmt: skip
        lines: list[str] = []
        return train(config, train_dataset=stream(), echo=lines.append), lines

    whole, _ = run(tmp_path / "whole", 4)
    run(tmp_path / "part", 2)
    resumed, lines = run(tmp_path / "part", 4, resume_from_checkpoint="latest")
    assert any("read the stream's first 4 pairs, this run reads 8" in line for line in lines)
    losses = [{r["step"]: r["loss"] for r in read_metrics(tmp_path / n)} for n in ("whole", "part")]
    assert losses[1] == losses[0] and len(losses[0]) == 4
    for a, b in zip(whole.policy.parameters(), resumed.policy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_resume_over_the_same_pairs_given_otherwise_than_as_a_stream_is_refused() -> None:
    """A stream's pairs train in its order, other data shuffled: a run over a stream resumed
    with the same rows as a list (or the reverse, or a checkpoint of a stream from before its
    pairs were in order) passed every check and went on in another order."""
    from directpo.sources import FixedPairs, PairSet
    from directpo.tokenization import TokenizedPair

    pairs = [TokenizedPair([1], [2], [3]), TokenizedPair([1], [3], [2])]
    stream, listed = (FixedPairs(PairSet(pairs, ["a", "b"], streamed=s), 1, 1, 0) for s in (1, 0))
    for saved, now, said in (
        (stream, listed, "trained its pairs in their order (a stream), this run's shuffled"),
        (listed, stream, "trained its pairs shuffled (a Dataset or file), this run's in their"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"ckpt {said}")):
            now.restore(saved.state(), "ckpt")
    old = {k: v for k, v in listed.state().items() if k != "streamed"}  # before the key
    assert listed.restore(old, "ckpt") == []
    with pytest.raises(ConfigError, match=r"ckpt trained its pairs shuffled"):
        stream.restore(old, "ckpt")


@pytest.mark.parametrize("style", ["qwen2vl", "mixtral"])
def test_weights_saved_under_transformers_stored_names_load_back(style, tmp_path) -> None:
    """save_pretrained writes the names transformers stores, not the model's: a VLM's
    ``visual.*`` for ``model.visual.*``, Mixtral's experts one tensor each where the model fuses
    them. Every checkpoint of a full VLM or MoE fine-tune was refused on resume ('weights do
    not match the model') and so was load_best_model_at_end; they load as from_pretrained
    reads them."""
    from directpo.checkpoint import load_model_weights

    if style == "qwen2vl":
        from tiny_vlm import build_vlm

        def build() -> torch.nn.Module:
            return build_vlm("qwen2vl")[0]
    else:
        from transformers import MixtralConfig, MixtralForCausalLM

        config = MixtralConfig(
            vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, num_local_experts=4,
            num_experts_per_tok=2, max_position_embeddings=64,
        )  # fmt: skip

        def build() -> torch.nn.Module:
            return MixtralForCausalLM(config)

    torch.manual_seed(0)
    saved = build()
    saved.save_pretrained(tmp_path)
    torch.manual_seed(1)
    model = build()
    load_model_weights(model, tmp_path)
    for (name, want), got in zip(
        saved.state_dict().items(), model.state_dict().values(), strict=True
    ):
        assert torch.equal(want, got), name


def test_starting_anew_from_a_checkpoint_keeps_the_runs_reference(tmp_path) -> None:
    """A checkpoint that cannot resume said 'start a new run from its weights
    (model_name_or_path: ckpt)': followed, the checkpoint became the new run's reference too,
    another objective without a word. The run's own reference is named beside it; none for a
    loss that reads none."""
    from directpo.checkpoint import start_from

    DPOConfig(model_name_or_path="/m/start", ref_model_name_or_path="/m/ref").save_record(
        tmp_path / "config.yaml"
    )
    assert start_from(tmp_path) == (
        f"start a new run from its weights (model_name_or_path: {tmp_path}, "
        "ref_model_name_or_path: /m/ref)"
    )
    DPOConfig(model_name_or_path="/m/start", loss_type="simpo").save_record(
        tmp_path / "config.yaml"
    )
    assert (
        start_from(tmp_path) == f"start a new run from its weights (model_name_or_path: {tmp_path})"
    )


def test_a_moved_runs_config_yaml_says_where_its_checkpoints_are(tmp_path, capsys) -> None:
    """``directpo train moved/config.yaml --resume_from_checkpoint latest`` after ``mv run
    moved``: the run's config.yaml records its output_dir made absolute (run), so the resume was
    told 'no checkpoint in run; set resume_from_checkpoint: null to start a new run', there.
    The file's own folder holding the checkpoints is said, with the flag that resumes them."""
    from directpo.cli import main

    moved = tmp_path / "moved"
    (moved / "checkpoint-2").mkdir(parents=True)
    (moved / "checkpoint-10").mkdir()
    recorded = {"model_name_or_path": str(tmp_path / "m"), "output_dir": str(tmp_path / "run")}
    (moved / "config.yaml").write_text(yaml.safe_dump(recorded))
    assert main(["train", str(moved / "config.yaml"), "--resume_from_checkpoint", "latest"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run'}, {moved / 'config.yaml'}'s output_dir, holds no checkpoint" in err
    assert f"its own folder holds checkpoint-10: the run was moved? resume it there with " \
           f"--output_dir {moved}" in err  # fmt: skip


def test_a_copied_runs_config_yaml_does_not_write_into_the_original_run(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    """``cp -r run copy; directpo train copy/config.yaml`` wrote into run (the output_dir the
    record holds, made absolute), beside or, with overwrite_output_dir, over its files. It is
    refused saying the flag to give; the run's own record, a checkpoint's record and a recipe
    naming a run's folder are not."""
    import dataclasses

    from directpo.cli import COMMANDS, main

    started: list = []
    train = dataclasses.replace(COMMANDS["train"], run=started.append)
    monkeypatch.setitem(COMMANDS, "train", train)
    run, copy = tmp_path / "run", tmp_path / "copy"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        output_dir=str(run), overwrite_output_dir=True,
    )  # fmt: skip
    for folder in (run, run / "checkpoint-1", copy):
        folder.mkdir(parents=True)
        config.save_record(folder / "config.yaml")
    for folder in (run, copy):
        (folder / "metrics.jsonl").write_text("")
    assert main(["train", str(copy / "config.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"copy/config.yaml is the record of the run in {run} (copied or moved here?)" in err
    # (the file's caller is told its key; it was told a flag, as a resume given as one is)
    assert f"set output_dir (a new folder, or {copy} to rerun here)" in err and not started
    for given in ([str(run / "config.yaml")], [str(run / "checkpoint-1" / "config.yaml")],
                  [str(copy / "config.yaml"), "--output_dir", str(copy)]):  # fmt: skip
        assert main(["train", *given]) == 0
    assert [str(options.output_dir) for options in started] == [str(run), str(run), str(copy)]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {run}\n")
    flags = ["--model_name_or_path", str(tiny_model_dirs["gpt2"]), "--train_file", str(pairs_file)]
    assert main(["train", str(recipe), *flags]) == 0


def test_a_copied_runs_record_resumes_the_copy_or_says_which(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    """``cp -r run /disk2/run; directpo train /disk2/run/config.yaml --resume_from_checkpoint
    latest`` went on from the original's latest checkpoint, in its folder (its record names
    it, absolute), not the copy's; a loose copy of the file edited into a recipe was told to
    rerun in the folder it lies in (the working directory). Both now say the flag to give."""
    import dataclasses

    from directpo.cli import COMMANDS, main

    started: list = []
    monkeypatch.setitem(
        COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=started.append)
    )
    run, copy = tmp_path / "run", tmp_path / "disk2" / "run"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        output_dir=str(run),
    )  # fmt: skip
    for folder in (run / "checkpoint-2", copy / "checkpoint-2"):
        folder.mkdir(parents=True)
        config.save_record(folder / "config.yaml")
        config.save_record(folder.parent / "config.yaml")
    for record in (copy / "config.yaml", copy / "checkpoint-2" / "config.yaml"):
        for resume in ("latest", str(copy / "checkpoint-2")):
            assert main(["train", str(record), "--resume_from_checkpoint", resume]) == 2
            err = capsys.readouterr().err
            assert "resumed as it is, it would go on in that run's folder, from " in err
            assert f"give --output_dir {copy} to resume this copy (or --output_dir {run} " \
                   f"to go on with that run)" in err  # fmt: skip
    assert not started
    for given in (["--output_dir", str(copy)], ["--output_dir", str(run)], []):
        resume = str(run / "checkpoint-2") if not given else "latest"
        assert (
            main(["train", str(copy / "config.yaml"), "--resume_from_checkpoint", resume, *given])
            == 0
        )
    assert [str(o.output_dir) for o in started] == [str(copy), str(run), str(run)]
    retired = run / "retired-checkpoint-3-2"  # (a checkpoint a resume moved aside: the run's)
    retired.mkdir()
    config.save_record(retired / "config.yaml")
    assert main(["train", str(retired / "config.yaml")]) == 0
    linked = tmp_path / "current.yaml"  # (a link to the run's own record: the run's)
    linked.symlink_to(run / "config.yaml")
    assert main(["train", str(linked)]) == 0 and str(started[-1].output_dir) == str(run)
    loose = tmp_path / "edited.yaml"  # (the record copied beside the user's files, edited)
    config.save_record(loose)
    assert main(["train", str(loose)]) == 2
    assert "set output_dir (a new folder)\n" in capsys.readouterr().err


def test_a_copied_runs_record_is_refused_to_python_and_in_each_callers_words(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """``train("copy/config.yaml")`` wrote into the original run's folder (only the CLI checked
    a copied record), and ``directpo train copy/config.yaml`` was told 'give --output_dir' for
    a file it ran: each caller now reads its own words."""
    from directpo.callers import Caller, Entry, Spelling, speaking_as
    from directpo.option_paths import refuse_moved_or_copied_record
    from directpo.trainer import train

    run, copy = tmp_path / "run", tmp_path / "copy"
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
        output_dir=str(run),
    )  # fmt: skip
    for folder in (run, copy):
        folder.mkdir()
        config.save_record(folder / "config.yaml")
        (folder / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError) as err:
        train(str(copy / "config.yaml"), echo=None)
    assert str(err.value).endswith(f"pass output_dir=... (a new folder, or {copy} to rerun here)")
    assert not (run / "checkpoint-1").exists()
    for folder in (run, copy):  # (a resume of the copy's latest: the original's was taken)
        (folder / "checkpoint-2").mkdir()
    said = {}
    for spelling in Spelling:
        with speaking_as(Caller(spelling, Entry.TRAIN)), pytest.raises(ConfigError) as err:
            resumed = dataclasses.replace(config, resume_from_checkpoint="latest")
            refuse_moved_or_copied_record(str(copy / "config.yaml"), resumed, {})
        said[spelling] = str(err.value).split("; ")[-1]
    assert said == {
        Spelling.RECIPE: f"set output_dir: {copy} to resume this copy (or output_dir: {run} to "
        "go on with that run)",
        Spelling.FLAGS: f"give --output_dir {copy} to resume this copy (or --output_dir {run} "
        "to go on with that run)",
        Spelling.PYTHON: f"pass output_dir='{copy}' to resume this copy (or output_dir='{run}' "
        "to go on with that run)",
    }


def test_a_staged_checkpoint_whose_manifest_was_cut_short_is_no_checkpoint(tmp_path) -> None:
    """A kill while a staged checkpoint's manifest.json was written left it cut short: its
    presence alone let 'latest' past the early refusal, the data and models loaded, and the
    run was then refused all the same (the staged folder, half written, removed). A manifest
    that does not read is no checkpoint; a whole one still lets the resume go on."""
    from directpo.resumable import refuse_model_only

    staged = tmp_path / ".checkpoint-3.tmp"
    staged.mkdir()
    (staged / "manifest.json").write_text('{"step": 3, "files": {"model.safet')
    with pytest.raises(CheckpointError, match="latest: no checkpoint in .* to resume"):
        refuse_model_only("latest", tmp_path)
    (staged / "manifest.json").write_text(json.dumps({"step": 3, "files": {}}))
    refuse_model_only("latest", tmp_path)  # (verified when moved into place: finish_staged)


def _small_checkpoint(folder: Path, step: int, weights: bytes) -> Path:
    """A folder that verifies as checkpoint ``step`` (one file and its manifest)."""
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(weights)
    checksum = checkpoint_module._checksum(folder / "model.safetensors")
    files = {"model.safetensors": {"size": len(weights), "blake2b": checksum}}
    checkpoint_module.write_manifest(folder, {"step": step, "files": files})
    return folder


def test_a_manifest_write_that_fails_midway_leaves_the_earlier_one(tmp_path, monkeypatch) -> None:
    """manifest.json was written in place: a full disk or a kill mid-write left it cut short,
    the folder then read as 'unreadable manifest'. It is replaced whole or not at all."""
    folder = _small_checkpoint(tmp_path / "checkpoint-2", 2, b"weights")
    before = (folder / "manifest.json").read_text()
    real_open = Path.open

    def full_disk(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return _fills_the_disk(handle) if "w" in mode else handle

    monkeypatch.setattr(Path, "open", full_disk)
    with pytest.raises(OSError, match="No space"):
        checkpoint_module.write_manifest(folder, {"step": 3, "files": {}})
    monkeypatch.undo()
    assert (folder / "manifest.json").read_text() == before
    assert verify_checkpoint(folder) is None
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.safetensors"]


def test_a_replacing_save_that_does_not_verify_keeps_the_earlier_checkpoint(tmp_path) -> None:
    """Saving a step again moves the old checkpoint-STEP aside first; a run killed before the
    new one took its name, with the new one not verifying, lost both: the staged one and the
    one aside were removed as half written. The earlier one is put back, said in one line."""
    _small_checkpoint(tmp_path / ".checkpoint-3.replaced.tmp", 3, b"earlier weights")
    staged = _small_checkpoint(tmp_path / ".checkpoint-3.tmp", 3, b"new weights")
    (staged / "model.safetensors").write_bytes(b"new weightz")  # same size, another checksum
    lines: list[str] = []
    checkpoint_module.finish_staged(tmp_path, lines.append)
    kept = tmp_path / "checkpoint-3"
    assert (kept / "model.safetensors").read_bytes() == b"earlier weights"
    assert verify_checkpoint(kept) is None
    assert lines == [
        "checkpoint-3: its new save was cut short (model.safetensors does not match its "
        "checksum); the earlier checkpoint-3 it was replacing is kept"
    ]

    # a verifying new one takes the name as before, the earlier one left to be removed
    other = tmp_path / "other"
    other.mkdir()
    _small_checkpoint(other / ".checkpoint-3.replaced.tmp", 3, b"earlier weights")
    _small_checkpoint(other / ".checkpoint-3.tmp", 3, b"new weights")
    checkpoint_module.finish_staged(other, lines.append)
    assert (other / "checkpoint-3" / "model.safetensors").read_bytes() == b"new weights"
    assert len(lines) == 1


def test_a_failed_move_into_place_keeps_the_earlier_checkpoint(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """Saving a step again (after a resume), the new checkpoint-STEP's rename failing after the
    old one was moved aside left no checkpoint-STEP (an OSError's traceback; the next save
    removed the one aside). The earlier one is put back and the error says so."""
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"])
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dirs["gpt2"])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    def save() -> None:
        checkpoint_module.save_checkpoint(
            tmp_path, 3, model, tokenizer, optimizer, scheduler, {}, save_total_limit=None
        )

    save()
    before = (tmp_path / "checkpoint-3" / "manifest.json").read_text()
    real_replace = checkpoint_module.os.replace

    def refuse_the_new_one(source, target):
        if Path(source).name == ".checkpoint-3.tmp":
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(checkpoint_module.os, "replace", refuse_the_new_one)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # the new save differs
    with pytest.raises(CheckpointError, match=r"\(Input/output error\); the earlier checkpoint-3"):
        save()
    assert (tmp_path / "checkpoint-3" / "manifest.json").read_text() == before
    assert verify_checkpoint(tmp_path / "checkpoint-3") is None
