"""Two processes (gloo, CPU) under torchrun train exactly like one process with twice the batch."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from launch import TORCHRUN, each_run, free_port, torchrun
from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM

from directpo import failures as failures_module
from directpo.batching import eval_batches
from directpo.checkpoint import list_checkpoints, verify_checkpoint
from directpo.config import DPOConfig
from directpo.distributed import World, shard
from directpo.errors import CheckpointError, ConfigError, TrainingStopped
from directpo.outputs import LOCK_FILE, model_files
from directpo.tracking import read_metrics
from directpo.trainer import train

TIMING = {"pairs/s", "tokens/s"}


def settings(model: Path, data: Path, out: Path, batch: int, **overrides):
    """5 pairs, global batch 4: every epoch ends with a 1-pair micro-batch, so the second rank
    computes a weight-0 stand-in there."""
    return tiny_config(
        model,
        data,
        out,
        eval_file=str(data),
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch,
        max_steps=4,
        eval_steps=2,
        **overrides,
    )


def assert_same_metrics(
    ours: list[dict], theirs: list[dict], tolerance: float = 1e-4, counted: float | None = None
) -> None:
    """``counted``: the tolerance of mean_token_accuracy (a share of argmax hits, which bf16
    noise flips a token at a time at a random model's near-ties), if not ``tolerance``."""
    assert [row["step"] for row in ours] == [row["step"] for row in theirs]
    compared = 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        # epoch counts micro-batches, as transformers' Trainer does: with another accumulation
        # an epoch's last step holds another share of them (the steps themselves are compared)
        for key in a.keys() - TIMING - {"epoch"}:
            allowed = counted if counted is not None and "token_accuracy" in key else tolerance
            expected = pytest.approx(b[key], rel=allowed, abs=allowed)
            assert a[key] == expected, (a["step"], key)
            compared += 1
    assert compared > 20


@pytest.fixture(scope="module")
def five_pairs(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("data") / "pairs.jsonl", SENTIMENT_PAIRS[:5])


@pytest.fixture(scope="module")
def single_bf16(tiny_model_dirs, five_pairs, tmp_path_factory) -> Path:
    """The one-process bf16 run (global batch 4) that DDP's and FSDP2's must follow."""
    out = tmp_path_factory.mktemp("single-bf16") / "run"
    config = settings(tiny_model_dirs["llama"], five_pairs, out, batch=4, dtype="bfloat16")
    train(config, echo=lambda _: None)
    return out


@pytest.fixture(scope="module")
def single_lora(tiny_model_dirs, five_pairs, tmp_path_factory) -> Path:
    """The one-process LoRA run (global batch 4) that DDP's and FSDP2's must equal."""
    out = tmp_path_factory.mktemp("single-lora") / "run"
    config = settings(tiny_model_dirs["llama"], five_pairs, out, batch=4, lora_r=4, lora_alpha=8)
    train(config, echo=lambda _: None)
    return out


@pytest.fixture(scope="module")
def single(tiny_model_dirs, five_pairs, tmp_path_factory):
    """The one-process run with the global batch (4) that the two-process runs must match."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(settings(tiny_model_dirs["llama"], five_pairs, out, batch=4), echo=lambda _: None)
    return out


def test_shards_are_disjoint_contiguous_and_cover_the_batch() -> None:
    for size in (1, 2, 3):
        for n in range(0, 8):
            indices = list(range(100, 100 + n))
            parts = [shard(indices, World("ddp", rank, size)) for rank in range(size)]
            real = [mine for mine, stand_in in parts if not stand_in]
            assert [i for mine in real for i in mine] == indices  # same order as one process
            assert all(mine == indices[:1] for mine, stand_in in parts if stand_in)
    assert eval_batches(5, 4) == [[0, 1, 2, 3], [4]]


@pytest.mark.parametrize(
    "launcher, cases",
    [
        # DDP launched by accelerate (torchrun launches the other DDP tests): 2 ranks x batch 1
        # x 2 micro-batches = 4 pairs
        ("accelerate", [("ddp", False, 2, {})]),
        # (plain fsdp: the first run of test_fsdp_resume_continues_the_same_trajectory)
        # two runs in one launch: FSDP2 with the reference precomputed; then per-layer
        # activation checkpointing inside FSDP2 units, shards and Adam state on CPU
        (
            "torchrun",
            [
                ("fsdp", True, 2, {}),
                ("fsdp", False, 1, {"gradient_checkpointing": True, "fsdp_offload": True}),
            ],
        ),
    ],
    ids=["ddp-accelerate", "fsdp-precompute-then-checkpointing-offload"],
)
def test_two_processes_equal_one_process_with_twice_the_batch(
    tiny_model_dirs, five_pairs, single, tmp_path, monkeypatch, launcher, cases
) -> None:
    """Each case (mode, precompute_ref_log_probs, accumulation, other options) of a launch, one
    run after another in its processes, equals the one-process run with twice the batch."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    files = []
    for index, (mode, precompute, accumulation, extra) in enumerate(cases):
        config = settings(
            tiny_model_dirs["llama"],
            five_pairs,
            tmp_path / f"run{index}",
            batch=2 // accumulation,
            distributed=mode,
            precompute_ref_log_probs=precompute,
            gradient_accumulation_steps=accumulation,
            **extra,
        )
        config.save_steps = 2
        files.append(tmp_path / f"config{index}.yaml")
        config.save_yaml(files[-1])
    done = torchrun(files, launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    for index, ((mode, precompute, _, extra), said) in enumerate(
        zip(cases, each_run(done, len(cases)), strict=True)
    ):
        if precompute:  # each rank scored its slices; the gathered table was cached by rank 0
            assert "reference log-probs: computed for 5 pairs" in said.stdout
            assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 1
        assert_equals_one_process(said, tmp_path / f"run{index}", single, mode, extra)


def assert_equals_one_process(
    done: subprocess.CompletedProcess, out: Path, single: Path, mode: str, extra: dict
) -> None:
    """A 2-process run of ``settings`` (batch 2, save_steps 2) in ``out`` said what rank 0
    alone says and trained as the one-process run ``single`` with twice the batch."""
    assert done.stdout.count("model saved to") == 1  # only rank 0 prints
    assert done.stdout.count("step 1/4 loss=") == 1
    if mode == "ddp":  # transformers' bars too: rank 0's (policy, reference), not every rank's
        assert done.stderr.count("Loading weights: 100%") == 2
    assert "2 processes" in done.stdout
    if extra.get("fsdp_offload"):
        assert "2 processes (fsdp, offloaded to CPU)" in done.stdout
    assert_same_metrics(read_metrics(out), read_metrics(single))

    # the output folder is one whole model that plain transformers loads, equal to 1 process
    ours = AutoModelForCausalLM.from_pretrained(out)
    theirs = AutoModelForCausalLM.from_pretrained(single)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4), name
    if mode == "fsdp":
        assert (out / "checkpoint-2" / "sharded" / ".metadata").is_file()
        assert not (out / "checkpoint-2" / "model.safetensors").exists()
    # every rank's tokens, the whole model's parameters (FSDP's shards counted whole)
    flos = [json.loads((f / "trainer_state.json").read_text())["total_flos"] for f in (out, single)]
    assert flos[0] == flos[1] > 0
    # each process's random state, as transformers names them
    assert {p.name for p in (out / "checkpoint-2").glob("rng_state*")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }


def test_bf16_two_processes_follow_the_one_process_bf16_trajectory(
    tiny_model_dirs, five_pairs, single_bf16, tmp_path
) -> None:
    """Mixed precision is the same policy everywhere: one process (bf16 compute copy + float32
    masters), DDP (the same, gradients reduced in float32) and FSDP2 (float32 shards,
    MixedPrecisionPolicy) agree to bf16 tolerance, with gradient accumulation (DDP's run and
    FSDP2's in one launch, each compared with the one process)."""
    model = tiny_model_dirs["llama"]
    single = single_bf16
    modes = ("ddp", "fsdp")
    launch_each_mode(
        {
            mode: settings(
                model,
                five_pairs,
                tmp_path / mode,
                batch=1,
                distributed=mode,
                dtype="bfloat16",
                gradient_accumulation_steps=2,
            )  # fmt: skip
            for mode in modes
        },
        tmp_path,
    )
    theirs = AutoModelForCausalLM.from_pretrained(single)
    start = AutoModelForCausalLM.from_pretrained(model)
    for mode in modes:
        out = tmp_path / mode
        metrics = read_metrics(out)
        assert_same_metrics(metrics, read_metrics(single), tolerance=2e-2, counted=0.05)
        ours = AutoModelForCausalLM.from_pretrained(out)
        assert ours.dtype == theirs.dtype == torch.float32, mode  # the masters
        # Adam normalises each weight's step, so bf16 noise in a near-zero gradient can flip a
        # step's sign: compare the updates as a whole, relative to their size (measured with
        # TRL's data order: the whole model 0.03, a norm weight's small update up to 0.11)
        differences, updates = [], []
        for (name, a), b, w0 in zip(
            ours.named_parameters(), theirs.parameters(), start.parameters(), strict=True
        ):
            differences.append((a - b).flatten())
            updates.append((b - w0).flatten())
            difference, update = float((a - b).norm()), float((b - w0).norm())
            assert difference <= 0.15 * update, (mode, name)
        whole = float(torch.cat(differences).norm()) / float(torch.cat(updates).norm())
        assert whole <= 0.05, (mode, whole)


def test_fsdp_resume_continues_the_same_trajectory(
    tiny_model_dirs, five_pairs, single, tmp_path
) -> None:
    """The resumed run is the uninterrupted one: its metrics and weights, and on every rank its
    random stream. The ranks' streams part (each draws its own count of numbers every
    micro-batch, as dropout on its own pairs does); only process 0's was saved and every rank
    resumed from it, so rank 1 went on drawing process 0's numbers."""
    out = tmp_path / "run"
    config = settings(
        tiny_model_dirs["llama"], five_pairs, out, batch=2, distributed="fsdp", save_steps=2
    )
    config.save_yaml(tmp_path / "first.yaml")
    draws = {"DIRECTPO_TEST_FAULT": "rank_draws", "DIRECTPO_TEST_FAULT_RANK": "all"}
    first = torchrun(tmp_path / "first.yaml", fault=draws)
    assert first.returncode == 0, first.stderr[-3000:]
    # (one launch for two checks: the plain FSDP run equals one process with twice the batch)
    assert_equals_one_process(first, out, single, "fsdp", {})
    straight = [load_rng(out / "checkpoint-4", rank) for rank in (0, 1)]
    assert not same_rng(*straight)  # the ranks' streams parted
    # what a stop after step 2 leaves: checkpoint-2, the metrics of steps 1-2, no final model
    shutil.rmtree(out / "checkpoint-4")
    (out / "model.safetensors").unlink()
    kept = [row for row in read_metrics(out) if row["step"] <= 2]
    (out / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
    config.resume_from_checkpoint = "latest"
    config.save_yaml(tmp_path / "resume.yaml")
    resumed = torchrun(tmp_path / "resume.yaml", fault=draws)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "checkpoint-2" in resumed.stdout
    assert "random state of" not in resumed.stdout  # each rank had its own
    assert_same_metrics(read_metrics(out), read_metrics(single))
    ours = AutoModelForCausalLM.from_pretrained(out)
    theirs = AutoModelForCausalLM.from_pretrained(single)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4), name
    for rank in (0, 1):  # each rank drew, after the resume, what it drew without the stop
        assert same_rng(load_rng(out / "checkpoint-4", rank), straight[rank]), rank

    # torch.distributed.checkpoint reshards: the 2-rank checkpoint resumes on 1 process with the
    # same global batch (per-device 4) and still continues the same trajectory
    alone = tmp_path / "alone"
    shutil.copytree(out, alone)
    shutil.rmtree(alone / "checkpoint-4")
    kept = [row for row in read_metrics(alone) if row["step"] <= 2]
    (alone / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
    config.output_dir = str(alone)
    config.per_device_train_batch_size = config.per_device_eval_batch_size = 4
    lines: list[str] = []
    train(config, echo=lines.append)
    assert any("1 processes (fsdp)" in line for line in lines)
    # another process count: process 0's random state, said in one line
    assert "resume: checkpoint-2 holds the random states of 2 processes, this run has 1: each" in (
        "\n".join(lines)
    )
    assert_same_metrics(read_metrics(alone), read_metrics(single))

    # another global batch would change the data order: refused in one line
    config.per_device_train_batch_size = 2
    said = r"4 pairs per step as 4 x 1 \(per_device_train_batch_size x processes, .*this run 2"
    with pytest.raises(ConfigError, match=said):
        train(config, echo=lambda _: None)
    config.per_device_train_batch_size = 4

    # a sharded checkpoint cannot be resumed without fsdp: said in one line
    config.distributed = "none"
    with pytest.raises(CheckpointError, match="written by distributed: fsdp"):
        train(config, echo=lambda _: None)


def load_rng(checkpoint: Path, rank: int) -> dict:
    return torch.load(checkpoint / f"rng_state_{rank}.pth", weights_only=False)


def same_rng(a: dict, b: dict) -> bool:
    """Python's, NumPy's and torch's generator states are bitwise the same."""
    numpy_same = all(
        (x == y).all() if hasattr(x, "shape") else x == y
        for x, y in zip(a["numpy"], b["numpy"], strict=True)
    )
    return a["python"] == b["python"] and numpy_same and torch.equal(a["torch"], b["torch"])


def test_fsdp_resume_with_weight_decay_changed(tiny_model_dirs, five_pairs, tmp_path) -> None:
    """A sharded checkpoint saved without weight decay (one param group) resumes with it (two:
    norms undecayed), and back, as a plain checkpoint does (optimizers.fit_saved_groups); it
    failed in torch.distributed.checkpoint with a traceback (missing param_groups.1 keys)."""
    runs = {}
    for distributed in ("none", "fsdp"):
        for before, after in ((0.0, 0.1), (0.1, 0.0)):
            out = tmp_path / f"{distributed}-{before}"
            config = settings(
                tiny_model_dirs["llama"], five_pairs, out, batch=4, save_steps=2,
                distributed=distributed, weight_decay=before, learning_rate=1e-3,
            )  # fmt: skip
            train(config, echo=lambda _: None)
            shutil.rmtree(out / "checkpoint-4")
            config.weight_decay, config.resume_from_checkpoint = after, "latest"
            config.overwrite_output_dir = False
            lines: list[str] = []
            train(config, echo=lines.append)
            assert any("weight_decay changed since the checkpoint" in line for line in lines)
            runs[distributed, before] = AutoModelForCausalLM.from_pretrained(out)
    # another model's sharded checkpoint is said in one line (torch's CheckpointException is
    # a BaseException: it escaped as a traceback)
    config.resume_from_checkpoint = str(out / "checkpoint-2")
    config.model_name_or_path = config.ref_model_name_or_path = tiny_model_dirs["gpt2"]
    with pytest.raises(CheckpointError, match="checkpoint-2: cannot restore") as info:
        train(config, echo=lambda _: None)
    assert "\n" not in str(info.value) and "Missing key" in str(info.value)
    for before in (0.0, 0.1):
        plain, sharded = runs["none", before], runs["fsdp", before]
        for (name, a), b in zip(sharded.named_parameters(), plain.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-5), (before, name)


def launch_each_mode(configs: dict[str, DPOConfig], tmp_path: Path) -> None:
    """The 2-process runs of ``configs`` (DDP's, FSDP2's) in turn, in one torchrun launch: a
    launch's start-up is most of its time."""
    for mode, config in configs.items():
        config.save_yaml(tmp_path / f"{mode}.yaml")
    done = torchrun([tmp_path / f"{mode}.yaml" for mode in configs])
    assert done.returncode == 0, done.stderr[-3000:]


def test_lora_two_processes_equal_one_process(
    tiny_model_dirs, five_pairs, single_lora, tmp_path
) -> None:
    """LoRA: the reference is the policy with adapters off, also when the policy is sharded:
    DDP's run and FSDP2's (one launch) each equal the one-process run."""
    from peft import AutoPeftModelForCausalLM

    lora = dict(lora_r=4, lora_alpha=8)
    model = tiny_model_dirs["llama"]
    single = single_lora
    modes = ("ddp", "fsdp")
    runs = {
        m: settings(model, five_pairs, tmp_path / m, batch=2, distributed=m, **lora) for m in modes
    }
    launch_each_mode(runs, tmp_path)
    theirs = AutoPeftModelForCausalLM.from_pretrained(single).merge_and_unload()
    for mode in modes:
        out = tmp_path / mode
        assert_same_metrics(read_metrics(out), read_metrics(single))
        last = [row for row in read_metrics(out) if "loss" in row][-1]
        assert last["rewards/margins"] != 0, mode  # the adapters did train
        ours = AutoPeftModelForCausalLM.from_pretrained(out).merge_and_unload()
        for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-4), (mode, name)


def test_fsdp_lora_modules_to_save_trains_as_without_fsdp(
    tiny_model_dirs, five_pairs, tmp_path
) -> None:
    """peft's modules_to_save holds a module twice (original_module, the trained copy), both
    one tensor of the model's files: FSDP's meta build filled only one and refused the run
    ('no weights for ...modules_to_save.default.weight')."""
    from peft import AutoPeftModelForCausalLM

    lora = dict(lora_r=4, lora_alpha=8, lora_modules_to_save=["norm"], learning_rate=1e-3)
    runs = {}
    for distributed in ("none", "fsdp"):
        out = tmp_path / distributed
        config = settings(
            tiny_model_dirs["llama"], five_pairs, out, batch=4, distributed=distributed, **lora
        )
        train(config, echo=lambda _: None)
        runs[distributed] = read_metrics(out)
        merged = AutoPeftModelForCausalLM.from_pretrained(out).merge_and_unload()
        runs[distributed, "model"] = merged
    assert_same_metrics(runs["fsdp"], runs["none"])
    ours, theirs = runs["fsdp", "model"], runs["none", "model"]
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), name
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    assert not torch.equal(ours.model.norm.weight, start.model.norm.weight)  # trained copy


def test_fsdp_on_one_process_without_a_launcher(tiny_model_dirs, five_pairs, tmp_path) -> None:
    """distributed: fsdp on one process (the 1-GPU path): float32 gives the plain run's
    numbers; bfloat16 compute keeps float32 master weights and saves them (save_dtype: auto),
    or a bfloat16 folder with save_dtype: bfloat16."""
    model = tiny_model_dirs["gpt2"]  # tied embeddings: one FSDP unit must hold both uses
    plain = train(settings(model, five_pairs, tmp_path / "plain", batch=4), echo=lambda _: None)
    lines: list[str] = []
    sharded = train(
        settings(model, five_pairs, tmp_path / "fsdp", batch=4, distributed="fsdp"),
        echo=lines.append,
    )
    assert any("1 processes (fsdp)" in line for line in lines)
    assert_same_metrics(sharded.metrics, plain.metrics)
    # the shards went with the process group: the result's policy is the saved folder, plain,
    # and its reference is loaded again on first use, as the run loaded it
    assert sharded.trained is None and sharded.kept_reference is None
    for a, b in zip(
        sharded.reference.model.parameters(), plain.reference.model.parameters(), strict=True
    ):
        assert a.device.type == "cpu" and torch.equal(a, b)
    for (name, a), b in zip(
        sharded.policy.named_parameters(), plain.policy.parameters(), strict=True
    ):
        assert not hasattr(a, "to_local") and torch.allclose(a, b, atol=1e-4), name
    for save_dtype, expected in (("auto", torch.float32), ("bfloat16", torch.bfloat16)):
        out = tmp_path / f"bf16-{save_dtype}"
        mixed = train(
            settings(
                model, five_pairs, out, batch=4, distributed="fsdp", dtype="bfloat16",
                save_dtype=save_dtype,
            ),
            echo=lambda _: None,
        )  # fmt: skip
        assert all(math.isfinite(row["loss"]) for row in mixed.metrics if "loss" in row)
        reloaded = AutoModelForCausalLM.from_pretrained(out)
        assert reloaded.dtype == expected
        assert reloaded.lm_head.weight.data_ptr() == reloaded.transformer.wte.weight.data_ptr()


def test_an_fsdp_run_stopped_by_a_signal_refuses_its_policy_naming_the_checkpoint(
    tiny_model_dirs, five_pairs, tmp_path
) -> None:
    """A stopped FSDP run returned its sharded policy, whose parameters the process group took
    with it: using it failed with "got mixed torch.Tensor and DTensor"; it says where the
    weights are and how to finish the run."""
    import signal

    def echo(line: str) -> None:
        if line.startswith("step 1/"):
            signal.raise_signal(signal.SIGTERM)

    out = tmp_path / "fsdp"
    config = settings(tiny_model_dirs["llama"], five_pairs, out, batch=2, distributed="fsdp")
    stopped = train(config, echo=echo)
    step = stopped.global_step
    assert stopped.stopped_by == "SIGTERM" and step < config.max_steps
    with pytest.raises(CheckpointError, match=rf"checkpoint-{step}'s shards .* resume it"):
        stopped.policy  # noqa: B018 - the property reads the weights


def test_fsdp_checkpoint_write_failure_keeps_earlier_checkpoints(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    import errno

    import directpo.checkpoint as checkpoint_module

    real_save = checkpoint_module.save_sharded
    calls = []

    def full_disk_on_second_save(folder, scorer, optimizer):
        calls.append(folder)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(folder, scorer, optimizer)

    monkeypatch.setattr(checkpoint_module, "save_sharded", full_disk_on_second_save)
    out = tmp_path / "run"
    config = settings(
        tiny_model_dirs["llama"], five_pairs, out, batch=4, distributed="fsdp", save_steps=1
    )
    with pytest.raises(CheckpointError) as info:
        train(config, echo=lambda _: None)
    message = str(info.value)
    assert "No space left on device" in message and "checkpoint-1" in message
    assert "\n" not in message
    assert [p.name for p in out.iterdir() if p.name.startswith(("checkpoint", ".checkpoint"))] == [
        "checkpoint-1"
    ]
    assert checkpoint_module.verify_checkpoint(out / "checkpoint-1") is None


def test_fsdp_final_save_failing_on_rank_0_alone_stops_every_rank(
    tiny_model_dirs, five_pairs, tmp_path
) -> None:
    """Rank 0's own part of the final save (config.json) fails on a full disk: every rank
    stops with the one line (the other ranks waited in a barrier rank 0 never reached: a
    hang), the checkpoints stay intact and no model files are published."""
    out = tmp_path / "run"
    config = settings(
        tiny_model_dirs["llama"], five_pairs, out, batch=2, distributed="fsdp", save_steps=2
    )
    config.save_yaml(tmp_path / "c.yaml")
    done = torchrun(tmp_path / "c.yaml", fault={"DIRECTPO_TEST_FAULT": "final_config"}, timeout=150)
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("directpo: error:")]
    assert len(errors) == 1 and "cannot write the final model" in errors[0], done.stderr[-3000:]
    assert "No space left on device" in errors[0] and "checkpoint-4" in errors[0]
    assert "exitcode  : 2" in done.stderr and "[rank" not in done.stderr  # no worker traceback
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    assert all(verify_checkpoint(p) is None for p in list_checkpoints(out))
    assert not model_files(out) and not (out / ".final.tmp").exists()


@pytest.mark.parametrize(
    ("fault", "where"),
    [("oom", "1"), ("data", "1"), ("missing", "1"), (None, None)],
    ids=["oom", "data", "missing-file", "bad-row"],
)
def test_an_error_of_one_rank_alone_is_said_by_that_rank(
    tiny_model_dirs, five_pairs, tmp_path, fault, where
) -> None:
    """An out-of-memory error at step 2, or a data file missing on its node (found as the run
    reads it, or before, by the file checks), strikes rank 1 alone: it says so in its one line
    (only rank 0 printed errors: the run ended with no word of why), and rank 0, whose
    collective lost its peer, says nothing (it printed gloo's "Connection closed by peer"
    traceback). An error every rank has (a bad row) is said once, by rank 0 (it was one line
    per rank); out of memory on every rank: test_settle_says_an_error_every_rank_has_once."""
    data = five_pairs
    if fault is None:
        data = write_jsonl(tmp_path / "bad.jsonl", [*SENTIMENT_PAIRS[:2], {"prompt": "x"}])
    config = settings(tiny_model_dirs["llama"], data, tmp_path / "run", batch=2, distributed="ddp")
    config.save_yaml(tmp_path / "c.yaml")
    injected = {"DIRECTPO_TEST_FAULT": fault, "DIRECTPO_TEST_FAULT_RANK": where} if fault else None
    done = torchrun(tmp_path / "c.yaml", fault=injected, timeout=150)
    assert done.returncode != 0
    said = "directpo: error:"  # (rank 0's progress bar may lead the line)
    errors = [line[line.index(said) :] for line in done.stderr.splitlines() if said in line]
    knobs = failures_module.memory_knobs(config, lora=False)
    auto = "auto_find_batch_size: true"  # (a recipe's run: its keys)
    oom = failures_module.OOM_HELP.format(
        step=2, kind="GPU", knobs=knobs, auto=auto,
        lower_batch="lower per_device_train_batch_size",
        raise_accumulation="raise gradient_accumulation_steps",
    )  # fmt: skip
    why = {
        ("oom", "1"): f"rank 1: {oom}",
        ("data", "1"): f"rank 1: {five_pairs}: no such file (on this node only)",
        ("missing", "1"): "rank 1: 2 options cannot be used:",  # train_file, eval_file: below
        (None, None): f"{data}: line 3: missing field 'chosen'; skip_invalid_rows: true skips them",
    }
    assert errors == [f"directpo: error: {why[fault, where]}"], done.stderr[-3000:]
    if fault == "missing":
        assert f"  train_file: no such file or folder: {five_pairs}\n" in done.stderr
    assert "[rank0]:" not in done.stderr and "[rank1]:" not in done.stderr  # no traceback
    assert not (tmp_path / "run").exists() or not model_files(tmp_path / "run")
    assert not (tmp_path / "run" / LOCK_FILE).exists()  # released before torchrun stops rank 0


def test_settle_says_an_error_every_rank_has_once(monkeypatch) -> None:
    """failures.settle, each rank's half in turn over one store (as under torchrun): an error
    rank 0 has too, even one that names its rank (out of memory at step 2 on every rank), is
    said by rank 0 alone; rank 1's own (a file missing on its node) by rank 1, as "rank 1: ...";
    rank 0 always says its own."""
    from directpo import errors

    class Store(dict):  # the process group's key-value store
        def set(self, key, value):
            self[key] = value.encode()

        def check(self, keys):
            return all(key in self for key in keys)

        def get(self, key):
            return self[key]

    store = Store()
    monkeypatch.setattr(failures_module.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(failures_module.dist.distributed_c10d, "_get_default_store", lambda: store)
    monkeypatch.setattr(failures_module, "OWN_ERROR_WAIT_S", 0.0)

    def settled(rank: int, text: str, own_rank: int | None) -> errors.DirectpoError:
        error = TrainingStopped(text)
        error.rank = own_rank
        failures_module.settle(error, World("ddp", rank=rank, size=2, run=7))
        return error

    out_of_memory = "out of GPU memory at step 2: lower per_device_train_batch_size"
    first = settled(0, out_of_memory, own_rank=0)
    assert not first.said_by_rank_0 and first.rank == 0  # rank 0 says it (rank 0: ...)
    assert settled(1, out_of_memory, own_rank=1).said_by_rank_0  # the same: not said again
    store.clear()
    assert settled(0, "bad row", None).rank is None  # said as rank 0's plain line
    other = settled(1, "pairs.jsonl: no such file (on this node only)", None)
    assert not other.said_by_rank_0 and other.rank == 1  # rank 1's own: said by rank 1
    store.clear()  # rank 0 never said an error (it waits in a collective)
    alone = settled(1, "pairs.jsonl: no such file (on this node only)", None)
    assert not alone.said_by_rank_0 and alone.rank == 1


def test_a_collective_that_lost_its_peer_is_one_line_and_any_other_error_stays_a_bug(
    monkeypatch,
) -> None:
    """What gloo raises in the surviving rank's collective becomes one line naming this rank
    (said only where torchrun did not stop the rank first); any other RuntimeError is a bug
    and keeps its traceback."""
    monkeypatch.setattr(failures_module, "PEER_EXIT_WAIT_S", 0.0)
    world = World("ddp", rank=1, size=2)
    gloo = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
        "[127.0.0.1]:18309. This is typically caused by a remote worker crashing.\nmore"
    )
    lost = failures_module.peer_gone(gloo, world)
    assert isinstance(lost, TrainingStopped) and lost.rank == 1 and "\n" not in str(lost)
    assert "another rank's process ended" in str(lost) and "Connection closed by peer" in str(lost)
    assert failures_module.peer_gone(RuntimeError("mat1 and mat2 shapes cannot be"), world) is None
    assert failures_module.peer_gone(gloo, World()) is None  # one process: no peer to lose


def _meta_loaded(configs: list, tmp_path: Path) -> list[dict]:
    """The whole weights FSDP2 runs on 2 processes start from (tests/fsdp_load_worker.py), one
    launch preparing each config in turn."""
    files = []
    for index, config in enumerate(configs):
        config.save_yaml(tmp_path / f"load-{index}.yaml")
        files += [str(tmp_path / f"load-{index}.yaml"), str(tmp_path / f"loaded-{index}.pt")]
    command = [*TORCHRUN, "--nproc_per_node=2"]
    command += [
        f"--master_port={free_port()}",
        str(Path(__file__).with_name("fsdp_load_worker.py")),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run([*command, *files], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out) for out in files[1::2]]


def _assert_bitwise(got: dict, want: dict, rename=lambda key: key) -> None:
    for key, value in got.items():
        expected = want[rename(key)]
        assert value.dtype == expected.dtype, key
        assert torch.equal(value, expected), key


# (style, overrides, what the case is)
META_LOAD_CASES = [
    ("llama", {}, "untied, a separate frozen reference"),
    ("gpt2", {"lora_r": 4, "lora_alpha": 8}, "tied embeddings; adapters off = reference"),
    ("llama", {"dtype": "bfloat16"}, "float32 masters, the reference held in bfloat16"),
    ("llava", {}, "a VLM whose files keep transformers' older key names (language_model.*)"),
]


def test_fsdp_meta_device_load_is_bitwise_the_plain_load(tiny_model_dirs, five_pairs, tmp_path):
    """Every rank builds policy and reference on the meta device and reads its own slices of
    the safetensors files: gathered, the weights are bitwise from_pretrained's (tied ones
    included), and LoRA adapters are those of a one-process run (seeded initialisation). One
    launch prepares every case of META_LOAD_CASES."""
    from tiny_vlm import save_tiny_vlm
    from transformers import AutoModelForImageTextToText

    from directpo.distributed import SINGLE_PROCESS
    from directpo.run import prepare_run

    configs = []
    for index, (style, overrides, _) in enumerate(META_LOAD_CASES):
        model = (
            save_tiny_vlm(style, tmp_path / style) if style == "llava" else tiny_model_dirs[style]
        )
        out = tmp_path / f"fsdp-{index}"
        config = settings(model, five_pairs, out, batch=2, distributed="fsdp")
        for key, value in overrides.items():
            setattr(config, key, value)
        configs.append(config)
    for config, loaded, (style, overrides, case) in zip(
        configs, _meta_loaded(configs, tmp_path), META_LOAD_CASES, strict=True
    ):
        assert any("filled shard by shard" in line for line in loaded["lines"]), (case, loaded)
        model = Path(config.model_name_or_path)
        auto = AutoModelForImageTextToText if style == "llava" else AutoModelForCausalLM
        states = loaded["states"]
        plain = auto.from_pretrained(model, dtype=torch.float32).state_dict()
        base = {k: v for k, v in states["policy"].items() if "lora_" not in k}
        _assert_bitwise(
            base, plain, lambda k: k.removeprefix("base_model.model.").replace(".base_layer", "")
        )
        if "lora_r" in overrides:  # the same adapters as a one-process run starts with
            config.distributed, config.output_dir = "none", str(tmp_path / "single")
            single = prepare_run(config, None, None, SINGLE_PROCESS, lambda _: None).policy
            adapters = {k: v for k, v in states["policy"].items() if "lora_" in k}
            assert adapters, case
            _assert_bitwise(adapters, single.state_dict())
            assert "reference" not in states, case
        else:
            dtype = getattr(torch, config.dtype) if config.dtype != "auto" else torch.float32
            reference = auto.from_pretrained(model, dtype=dtype).state_dict()
            _assert_bitwise(states["reference"], reference)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_fsdp_final_save_writes_shard_files_with_an_index(
    tiny_model_dirs, tmp_path, monkeypatch, style
) -> None:
    """The final save streams shards into several safetensors files with an index (as
    save_pretrained with max_shard_size): plain transformers loads them, bitwise the trained
    weights, tied ones written once; one file is plain model.safetensors."""
    from directpo import distributed, sharded_weights
    from directpo.logprobs import SequenceScorer
    from directpo.precision import PrecisionPolicy

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[style], dtype=torch.float32)
    want = {k: v.clone() for k, v in model.state_dict().items()}
    world = distributed.setup("fsdp")
    try:
        scorer = distributed.wrap(SequenceScorer(model), world, PrecisionPolicy())
        # (read where save_sharded_model reads it: distributed names no SHARD_BYTES to patch)
        monkeypatch.setattr(sharded_weights, "SHARD_BYTES", 20_000)
        distributed.save_sharded_model(tmp_path / "many", scorer, model, torch.float32, world)
        monkeypatch.setattr(sharded_weights, "SHARD_BYTES", 2**40)
        distributed.save_sharded_model(tmp_path / "one", scorer, model, torch.float32, world)
    finally:
        distributed.teardown(world)
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and all((tmp_path / "many" / f).is_file() for f in files)
    assert not (tmp_path / "many" / "sharded").exists()  # the staging files are gone
    assert sorted(p.name for p in (tmp_path / "one").glob("*.safetensors")) == ["model.safetensors"]
    if style == "gpt2":  # tied: stored once, under the embedding's name
        assert "lm_head.weight" not in index["weight_map"]
    for folder in ("many", "one"):
        loaded = AutoModelForCausalLM.from_pretrained(tmp_path / folder).state_dict()
        assert loaded.keys() == want.keys()
        for key, value in want.items():
            assert torch.equal(loaded[key], value), (folder, key)


def test_fsdp_offload_puts_every_unit_under_cpu_offload(tiny_model_dirs) -> None:
    from torch.distributed.fsdp import CPUOffloadPolicy

    from directpo import distributed
    from directpo.logprobs import SequenceScorer
    from directpo.precision import PrecisionPolicy

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"], dtype=torch.float32)
    blocks = distributed.decoder_layers(model)  # before fully_shard renames their classes
    world = distributed.setup("fsdp")
    try:
        scorer = distributed.wrap(SequenceScorer(model), world, PrecisionPolicy(), offload=True)
        units = [scorer, *blocks]
        policies = [unit._get_fsdp_state()._fsdp_param_group.offload_policy for unit in units]
        assert len(policies) == 1 + model.config.num_hidden_layers
        assert all(isinstance(policy, CPUOffloadPolicy) for policy in policies)
    finally:
        distributed.teardown(world)


def test_ddp_timeout_is_the_process_groups_timeout(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    """ddp_timeout (transformers' seconds; handbook recipes raise it for long rank-0 work) is
    how long a collective waits: it was accepted and ignored, every group waiting 30 minutes."""
    import datetime

    from directpo import distributed

    timeouts = []
    original = distributed.dist.init_process_group

    def recording(*args, **kwargs):
        timeouts.append(kwargs["timeout"])
        return original(*args, **kwargs)

    monkeypatch.setattr(distributed.dist, "init_process_group", recording)
    options = {"per_device_train_batch_size": 4, "distributed": "ddp", "ddp_timeout": 5400}
    config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "out", **options)
    train(config, echo=lambda _: None)
    assert timeouts == [datetime.timedelta(seconds=5400)]
    assert DPOConfig().ddp_timeout == 1800  # transformers' default
    with pytest.raises(ConfigError, match=r"ddp_timeout must be > 0 \(seconds\)"):
        DPOConfig(ddp_timeout=0)


def test_a_device_map_is_refused_under_ddp_and_fsdp(tiny_model_dirs, five_pairs, tmp_path) -> None:
    """model_init_kwargs' device_map spreads a model over every GPU its process sees, where a
    ddp / fsdp rank keeps its model on its own GPU: it was passed on (DDP then moved the model,
    leaving accelerate's hooks sending activations to the mapped devices). One process keeps it."""
    reference = shutil.copytree(tiny_model_dirs["llama"], tmp_path / "reference")
    for mode, name in (("ddp", "model_init_kwargs"), ("fsdp", "ref_model_init_kwargs")):
        config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / mode,
                             distributed=mode, **{name: {"device_map": "auto"}},
                             ref_model_name_or_path=str(reference))  # fmt: skip
        with pytest.raises(ConfigError, match=f"^{name}: device_map .* distributed: {mode} "):
            train(config, echo=lambda _: None)
        assert not (tmp_path / mode).exists()  # refused before anything was loaded or written
    config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "one",
                         model_init_kwargs={"device_map": "auto"})  # fmt: skip
    assert train(config, echo=lambda _: None).global_step == 1


def test_an_accelerate_configs_fsdp_or_deepspeed_is_not_ignored(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    """`accelerate launch --config_file fsdp.yaml` (or a ZeRO-3 one, as TRL's and the
    handbook's recipes launch) passes its choice as environment variables, which went unread:
    every rank trained the whole model under DDP. FSDP's makes distributed: auto fsdp;
    DeepSpeed's, or FSDP's beside distributed: ddp or without fsdp_offload, is refused."""
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    lines: list[str] = []
    train(tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "auto"), echo=lines.append)
    assert any(" x 1 processes (fsdp)" in line for line in lines if line.startswith("training"))
    for env, options, message in (
        ({"FSDP_OFFLOAD_PARAMS": "true"}, {}, "pass fsdp_offload=True"),  # (train()'s words)
        ({}, {"distributed": "ddp"}, "asks for FSDP but distributed is ddp"),
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, {}, "asks for DeepSpeed, which directpo does not"),
    ):
        with monkeypatch.context() as patched:
            for key, value in env.items():
                patched.setenv(key, value)
            config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "x", **options)
            with pytest.raises(ConfigError, match=message):
                train(config, echo=lambda _: None)
    assert not (tmp_path / "x").exists()


def test_an_accelerate_configs_mixed_precision_is_not_ignored(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    """`accelerate launch --mixed_precision bf16` (or a config's mixed_precision) arrives as an
    environment variable: a run without bf16: true trained in float32 without a word. bf16 with
    bf16 trains; bf16 without it, and fp16, are refused before anything is written; accelerate's
    default (no) leaves the run's own choice."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    for options, message in (
        ({}, "asks for mixed_precision bf16 but this run computes in float32: pass bf16=True"),
        ({"bf16": True, "ACCELERATE": "fp16"}, "mixed_precision fp16, which directpo does not"),
    ):
        with monkeypatch.context() as patched:
            if "ACCELERATE" in options:
                patched.setenv("ACCELERATE_MIXED_PRECISION", options.pop("ACCELERATE"))
            config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "x", **options)
            with pytest.raises(ConfigError, match=message):
                train(config, echo=lambda _: None)
    assert not (tmp_path / "x").exists()
    lines: list[str] = []
    config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "bf16", bf16=True)
    train(config, echo=lines.append)
    assert any("compute bfloat16" in line for line in lines if line.startswith("training"))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    train(tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "no"), echo=lambda _: None)


def test_fsdp_save_only_model_shards_the_weights_alone_and_loads_the_best(
    tiny_model_dirs, five_pairs, tmp_path
) -> None:
    """save_only_model under distributed: fsdp: each checkpoint's shards hold the model without
    optimizer state, and load_best_model_at_end reads the best one's weights from them (the
    same final weights as with complete checkpoints)."""
    import torch.distributed.checkpoint as dcp

    best = dict(
        distributed="fsdp", save_steps=2, load_best_model_at_end=True,
        metric_for_best_model="eval/rewards/margins", greater_is_better=False,
    )  # fmt: skip
    model = tiny_model_dirs["llama"]
    runs = {}
    for only in (False, True):
        out = tmp_path / f"only-{only}"
        config = settings(model, five_pairs, out, batch=4, save_only_model=only, **best)
        config.eval_steps = 1
        lines: list[str] = []
        train(config, echo=lines.append)
        assert any(line.startswith("loaded the best model: step 1") for line in lines)
        runs[only] = AutoModelForCausalLM.from_pretrained(out)
        saved = dcp.FileSystemReader(out / "checkpoint-1" / "sharded").read_metadata()
        assert any(key.startswith("optimizer.") for key in saved.state_dict_metadata) != only
    for (name, a), b in zip(runs[True].named_parameters(), runs[False].parameters(), strict=True):
        assert torch.equal(a, b), name


def test_a_callers_process_group_is_left_settled_and_kept(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    """train() inside the caller's own process group (a notebook, a multi-run launcher) leaves the
    group to the caller, but settled as a group of its own is: a final barrier (no rank's gloo
    thread still in an earlier collective) and no DDP reducer left in a reference cycle holding
    it. It skipped both: a rank then aborted at interpreter exit ('terminate called without an
    active exception') when the caller's atexit destroyed the group (seen in CI)."""
    import gc

    from directpo import distributed

    dist = distributed.dist
    dist.init_process_group(backend="gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        barriers = []  # the function that called each barrier
        original = dist.barrier

        def barrier(*args, **kwargs):
            barriers.append(sys._getframe(1).f_code.co_name)
            return original(*args, **kwargs)

        monkeypatch.setattr(dist, "barrier", barrier)
        options = {"per_device_train_batch_size": 4, "distributed": "ddp"}
        config = tiny_config(tiny_model_dirs["llama"], five_pairs, tmp_path / "out", **options)
        train(config, echo=lambda _: None)
        assert dist.is_initialized()  # the caller's, still there for its next run
        assert barriers[-1] == "teardown"  # the run's last collective: every rank is done
        reducers = [o for o in gc.get_objects() if type(o).__name__ == "Reducer"]
        assert reducers == []
    finally:
        dist.destroy_process_group()


TWO_GROUPS = """
import time
from directpo import distributed
for run in range(2):
    world = distributed.setup("ddp", timeout_s=30)
    total = distributed.all_reduce_sum([world.rank + 1.0], world)
    distributed.teardown(world, settled=True)
    print(run, world.run, total[0], flush=True)
    if world.is_main:
        time.sleep(1)  # rank 0 writes the run's final folder: the other rank starts first
"""


def test_a_second_run_in_one_torchrun_process_makes_its_own_group(tmp_path) -> None:
    """train() twice in one script under torchrun (a sweep): the first run destroys the group it
    made, and the second made its own under the same keys of torchrun's store, which outlives
    it: gloo met the first group's stale addresses ('Connection closed by peer', then "another
    rank's process ended" with every rank alive). Two processes joined as torchrun's workers
    join, the store held here as torchrun's agent holds it; each run's group sums."""
    from datetime import timedelta

    port = free_port()
    store = torch.distributed.TCPStore(  # noqa: F841 - torchrun's agent's store, kept open
        "127.0.0.1", port, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60)
    )
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    env |= {"TORCHELASTIC_USE_AGENT_STORE": "True", "OMP_NUM_THREADS": "1"}
    for out in _two_workers(TWO_GROUPS, env):
        assert out.split("\n")[:2] == ["0 0 3.0", "1 1 3.0"]


def _two_workers(script: str, env: dict[str, str]) -> list[str]:
    """``script``'s stdout in ranks 0 and 1, started as a launcher starts them (both exit 0)."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    try:
        done = [worker.communicate(timeout=60) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, err) in zip(workers, done, strict=True):
        assert worker.returncode == 0, err[-2000:]
    return [out for out, _ in done]


# rank 0 ends its first run late (a big model's teardown): rank 1 starts the second run first
TWO_GROUPS_RANK_0_LATE = """
import time
import torch.distributed as dist
from directpo import distributed
destroy = dist.destroy_process_group
def late(*args, **kwargs):
    time.sleep(2 if dist.get_rank() == 0 else 0)
    destroy(*args, **kwargs)
dist.destroy_process_group = late
for run in range(2):
    world = distributed.setup("ddp", timeout_s=15)
    total = distributed.all_reduce_sum([world.rank + 1.0], world)
    distributed.teardown(world, settled=True)
    print(run, world.run, total[0], flush=True)
"""


def test_a_second_run_without_torchruns_store_joins_the_same_store(tmp_path) -> None:
    """srun / mpirun / one's own launcher (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set, no
    torchrun agent store): rank 0's rendezvous serves the store on MASTER_PORT itself. A second
    run made a new server there; rank 1, there before rank 0 had destroyed its first group,
    joined the old one, which then closed ('Failed to recv' on rank 1, 'waiting for clients'
    on rank 0). The store is kept for the process: both runs' groups sum."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    env |= {"WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
    env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
    for out in _two_workers(TWO_GROUPS_RANK_0_LATE, env):
        assert out.split("\n")[:2] == ["0 0 3.0", "1 1 3.0"]


GLOO_THREADS_AFTER_TRAIN = """
import os, sys
from directpo import train
train(sys.argv[1], echo=None)
tasks = os.listdir("/proc/self/task")
names = [open(f"/proc/self/task/{task}/comm").read().strip() for task in tasks]
print(sorted(name for name in names if "gloo" in name))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="Linux's /proc lists threads")
def test_an_fsdp_run_frees_its_process_group_before_the_interpreter_exits(
    tiny_model_dirs, five_pairs, tmp_path
) -> None:
    """destroy_process_group at the end of an FSDP run freed nothing: DTensor's caches
    (sharding decisions, redistribution plans, mesh topologies) held the mesh and its group, so
    gloo's threads ran on and the group's destructor was left to the interpreter's exit, where
    a gloo thread releasing a collective's tensors aborts the process ('terminate called
    without an active exception'). A fresh interpreter (empty caches), the run's own
    one-process group: no gloo thread is left once train() returns."""
    config = tiny_config(
        tiny_model_dirs["llama"], five_pairs, tmp_path / "out", distributed="fsdp",
        per_device_train_batch_size=4, max_steps=2, save_steps=2, eval_file=str(five_pairs),
        eval_steps=1,
    )  # fmt: skip
    config.save_yaml(tmp_path / "fsdp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    done = subprocess.run(
        [sys.executable, "-c", GLOO_THREADS_AFTER_TRAIN, str(tmp_path / "fsdp.yaml")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_peer_gone_after_the_last_agreement_is_one_line_not_teardowns_traceback(
    tiny_model_dirs, five_pairs, tmp_path, monkeypatch
) -> None:
    """A rank killed after the run's last agreement (the final model agreed and written; SIGKILL,
    the OOM killer): the other ranks' final barrier, in train()'s teardown, raised gloo's
    RuntimeError as a traceback, outside the handling of the run's body. Now the one line that
    says the run had finished; the group is still destroyed (a next run makes its own). In
    one process: the run's world says 2 ranks and teardown's barrier fails as gloo's does."""
    from dataclasses import replace

    from directpo import distributed, trainer

    monkeypatch.setattr(failures_module, "PEER_EXIT_WAIT_S", 0.0)
    real_setup = distributed.setup
    monkeypatch.setattr(trainer, "setup_world", lambda *args: replace(real_setup(*args), size=2))
    original = distributed.dist.barrier

    def barrier(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if sys._getframe(1).f_code.co_name == "teardown":
            raise RuntimeError(
                "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by "
                "peer [127.0.0.1]:18309\nmore"
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(distributed.dist, "barrier", barrier)
    out = tmp_path / "out"
    options = {"per_device_train_batch_size": 4, "distributed": "ddp"}
    config = tiny_config(tiny_model_dirs["llama"], five_pairs, out, **options)
    with pytest.raises(TrainingStopped) as info:
        train(config, echo=lambda _: None)
    message = str(info.value)
    assert message.startswith("another rank's process ended after the run had finished")
    assert str(out) in message and "Connection closed by peer" in message and "\n" not in message
    assert model_files(out)  # the final model the run agreed on is there
    assert not distributed.dist.is_initialized()  # the run's group destroyed all the same


def test_sharding_caches_a_torch_lacks_are_passed_and_the_rest_emptied(monkeypatch) -> None:
    """release_sharding_caches reads torch's private names: a torch without one of them (the
    _redistribute module, DTensor's dispatcher renamed) failed the whole teardown with an
    ImportError or AttributeError after a finished FSDP run. Each missing one is passed; the
    caches this torch has are still emptied."""
    import torch.distributed.tensor as tensor_package
    from torch.distributed.tensor import DTensor, _collective_utils

    from directpo import distributed

    cleared = []

    def recorder(name: str) -> object:
        def build(*args: object) -> None: ...

        build.cache_clear = lambda: cleared.append(name)
        return build

    monkeypatch.delattr(tensor_package, "_redistribute")
    monkeypatch.setitem(sys.modules, "torch.distributed.tensor._redistribute", None)
    monkeypatch.delattr(DTensor, "_op_dispatcher")
    monkeypatch.setattr(_collective_utils.MeshTopoInfo, "build_from_mesh", recorder("topology"))
    monkeypatch.setattr(
        torch._C, "_clear_DTensor_sharding_propagator_cache", lambda: cleared.append("C++"),
        raising=False,
    )  # fmt: skip
    distributed.release_sharding_caches()
    assert cleared == ["topology", "C++"]


def test_a_launch_without_local_rank_on_a_node_of_several_gpus_is_refused(monkeypatch) -> None:
    """srun / mpirun (or a launcher of one's own) that sets RANK and WORLD_SIZE but not
    LOCAL_RANK (SLURM_LOCALID, OMPI_COMM_WORLD_LOCAL_RANK are their names): every process took
    cuda:0 of a node of several GPUs, and NCCL failed later with a traceback. Refused in one
    line naming what to set."""
    from directpo import distributed

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.delenv("MASTER_ADDR", raising=False)  # (a rendezvous would fail at once)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ConfigError) as info:
        distributed.setup("ddp")
    message = str(info.value)
    assert "without LOCAL_RANK" in message and "SLURM_LOCALID" in message and "\n" not in message
    assert not torch.distributed.is_initialized()
