"""TR-DPO (sync_ref_model): the reference follows the policy, ref <- a*policy + (1-a)*ref, every
ref_model_sync_steps steps; it is checkpoint state and resumes exactly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from launch import torchrun
from safetensors.torch import load_file
from test_distributed import assert_same_metrics
from tiny import SENTIMENT_PAIRS, quiet, tiny_config, write_jsonl

from directpo.errors import CheckpointError, ConfigError
from directpo.tracking import read_metrics
from directpo.trainer import train

LN2 = math.log(2)


def losses(metrics: list[dict]) -> list[float]:
    return [row["loss"] for row in metrics if "loss" in row]


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


def reference(folder: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's reference, keyed like the model's own weights."""
    state = load_file(folder / "reference.safetensors")
    return {key.removeprefix("model."): value for key, value in state.items()}


def test_the_reference_moves_by_the_papers_update(tiny_model_dirs, pairs_file, tmp_path) -> None:
    model = tiny_model_dirs["llama"]
    out = tmp_path / "run"
    config = tiny_config(
        model, pairs_file, out, max_steps=4, save_steps=1, per_device_train_batch_size=2,
        sync_ref_model=True, ref_model_mixup_alpha=0.25, ref_model_sync_steps=2,
    )  # fmt: skip
    train(config, echo=quiet)
    start = weights(model)
    policy = {step: weights(out / f"checkpoint-{step}") for step in (1, 2, 3, 4)}
    ref = {step: reference(out / f"checkpoint-{step}") for step in (1, 2, 3, 4)}
    shared = start.keys() & ref[1].keys()
    assert len(shared) >= len(start) - 1  # (a tied LM head is one weight)
    for name in shared:
        assert torch.equal(ref[1][name], start[name])  # no sync yet
        expected = 0.25 * policy[2][name] + 0.75 * start[name]
        torch.testing.assert_close(ref[2][name], expected, rtol=0, atol=1e-6)
        assert torch.equal(ref[3][name], ref[2][name])
        expected = 0.25 * policy[4][name] + 0.75 * ref[2][name]
        torch.testing.assert_close(ref[4][name], expected, rtol=0, atol=1e-6)
    assert any(not torch.equal(ref[4][n], start[n]) for n in shared)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"dtype": "bfloat16"},  # the reference takes the masters' values, in bf16: the compute copy
        {"lora_r": 4, "learning_rate": 5e-2},  # the "ref" adapter
    ],
    ids=["float32", "bf16", "lora"],
)
def test_the_hard_update_makes_every_step_start_from_the_policy(
    tiny_model_dirs, pairs_file, tmp_path, options
) -> None:
    """alpha 1 every step: each step begins with reference == policy, so its loss is ln 2, while
    the policy still learns (plain DPO's loss falls below ln 2 on the same data)."""
    model = tiny_model_dirs["llama"]
    common = dict(max_steps=4, per_device_train_batch_size=3, **options)
    synced = train(
        tiny_config(model, pairs_file, tmp_path / "tr", sync_ref_model=True,
                    ref_model_mixup_alpha=1.0, ref_model_sync_steps=1, **common),
        echo=quiet,
    )  # fmt: skip
    assert losses(synced.metrics) == pytest.approx([LN2] * 4, abs=1e-6)
    plain = train(tiny_config(model, pairs_file, tmp_path / "dpo", **common), echo=quiet)
    assert min(losses(plain.metrics)[1:]) < LN2 - 1e-3
    if "lora_r" in options:  # the policy's adapter learns; the "ref" adapter is not output
        saved = load_file(tmp_path / "tr" / "adapter_model.safetensors")
        assert saved and not any(".ref." in key for key in saved)
        assert (
            sum(p.requires_grad for n, p in synced.policy.named_parameters() if ".ref." in n) == 0
        )


def test_trainable_tokens_follow_the_policy_into_the_moved_reference(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A peft_config with trainable_token_indices: peft names those rows
    token_adapter.trainable_tokens_delta.ref (the adapter last, not .ref.), so TR-DPO never
    moved them, checkpoints lacked them and the final save ended in peft's KeyError traceback
    after the last step."""
    from peft import LoraConfig

    from directpo import ImplicitReward

    lora = LoraConfig(r=4, target_modules=["q_proj"], trainable_token_indices=list(range(5, 13)))
    out = tmp_path / "tr"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=2, per_device_train_batch_size=3,
        sync_ref_model=True, ref_model_mixup_alpha=1.0, ref_model_sync_steps=1, save_steps=1,
        learning_rate=5e-2,
    )  # fmt: skip
    result = train(config, echo=quiet, peft_config=lora)
    assert losses(result.metrics) == pytest.approx([LN2] * 2, abs=1e-6)
    rows = {n: p for n, p in result.policy.named_parameters() if "trainable_tokens" in n}
    (moved,) = [p for n, p in rows.items() if n.endswith(".ref")]
    (trained,) = [p for n, p in rows.items() if n.endswith(".default")]
    assert torch.equal(moved, trained) and not moved.requires_grad
    assert any("trainable_tokens_delta.ref" in key for key in reference(out / "checkpoint-1"))
    prompts = [row["prompt"] for row in SENTIMENT_PAIRS[:3]]
    responses = [row["chosen"] for row in SENTIMENT_PAIRS[:3]]
    rewards = ImplicitReward.from_run(str(out)).score(prompts, responses)
    assert rewards == pytest.approx([0.0] * 3, abs=1e-6)


def test_lora_tr_dpo_checkpoints_hold_the_trained_adapter_alone_and_resume_exactly(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """peft saved every adapter: each checkpoint also held the "ref" adapter in ref/, a copy of
    reference.safetensors, which is what resume restores the moved reference from."""
    values = dict(
        max_steps=4, save_steps=1, per_device_train_batch_size=2, sync_ref_model=True,
        ref_model_mixup_alpha=1.0, ref_model_sync_steps=3, lora_r=4, learning_rate=5e-2,
    )  # fmt: skip
    model, whole = tiny_model_dirs["llama"], tmp_path / "whole"
    train(tiny_config(model, pairs_file, whole, **values), echo=quiet)
    assert (whole / "checkpoint-2" / "reference.safetensors").is_file()
    assert not (whole / "checkpoint-2" / "ref").exists()
    saved = load_file(whole / "checkpoint-2" / "adapter_model.safetensors")
    assert saved and not any(".ref." in key for key in saved)
    part = tmp_path / "part"
    shutil.copytree(whole / "checkpoint-2", part / "checkpoint-2")
    train(tiny_config(model, pairs_file, part, resume_from_checkpoint="latest", **values),
          echo=quiet)  # fmt: skip
    final = load_file(whole / "adapter_model.safetensors")
    for name, value in load_file(part / "adapter_model.safetensors").items():
        torch.testing.assert_close(value, final[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_resume_across_a_sync_continues_the_same_run(
    tiny_model_dirs, pairs_file, tmp_path, dtype
) -> None:
    """bfloat16: the checkpoint holds the moved reference's float32 weights (sync.py), which
    the resumed run mixes on from."""
    model = tiny_model_dirs["llama"]
    values = dict(
        max_steps=5, save_steps=1, per_device_train_batch_size=2, sync_ref_model=True,
        ref_model_mixup_alpha=0.5, ref_model_sync_steps=2, dtype=dtype,
    )  # fmt: skip
    whole = tmp_path / "whole"
    train(tiny_config(model, pairs_file, whole, **values), echo=quiet)
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    for step in (4, 5):  # a stop after step 3 (one sync behind it, one ahead)
        shutil.rmtree(part / f"checkpoint-{step}")
    (part / "model.safetensors").unlink()
    kept = [row for row in read_metrics(part) if row["step"] <= 3]
    (part / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in kept))
    train(tiny_config(model, pairs_file, part, resume_from_checkpoint="latest", **values),
          echo=quiet)  # fmt: skip
    assert_same_metrics(read_metrics(part), read_metrics(whole), tolerance=1e-6)
    for name, value in weights(whole).items():
        torch.testing.assert_close(weights(part)[name], value, rtol=0, atol=1e-6)

    # a checkpoint of plain DPO cannot continue as TR-DPO (its reference is unknown): one line
    plain = tmp_path / "plain"
    train(tiny_config(model, pairs_file, plain, max_steps=2, save_steps=1), echo=quiet)
    (plain / "model.safetensors").unlink()
    config = tiny_config(model, pairs_file, plain, resume_from_checkpoint="latest", **values)
    with pytest.raises(CheckpointError, match="no reference.safetensors: it was written without"):
        train(config, echo=quiet)

    # ... nor a TR-DPO checkpoint as plain DPO (its moved reference was dropped without a word)
    values.pop("ref_model_mixup_alpha"), values.pop("ref_model_sync_steps")
    (whole / "model.safetensors").unlink()
    config = tiny_config(model, pairs_file, whole, resume_from_checkpoint="latest",
                         **{**values, "sync_ref_model": False})  # fmt: skip
    with pytest.raises(CheckpointError, match="written by TR-DPO .sync_ref_model.: its reference"):
        train(config, echo=quiet)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"precompute_ref_log_probs": True}, "go stale"),
        ({"loss_type": ["simpo"]}, "no chosen loss uses a reference"),
        ({"ref_model_mixup_alpha": 1.5}, r"ref_model_mixup_alpha must be in \[0, 1\]"),
        ({"ref_model_sync_steps": 0}, "ref_model_sync_steps must be >= 1"),
        ({"lora_r": 4}, "ref_model_mixup_alpha 0.6 would mix two adapters"),
        ({"ref_model_name_or_path": "elsewhere"}, "remove ref_model_name_or_path"),
        ({"ref_model_init_kwargs": {"subfolder": "x"}}, "remove ref_model_init_kwargs"),
        ({"sync_ref_model": False, "ref_model_sync_steps": 8}, "set but sync_ref_model is false"),
    ],
)
def test_settings_that_cannot_work_are_refused(
    tiny_model_dirs, pairs_file, tmp_path, options, message
) -> None:
    values = {"sync_ref_model": True, **options}
    with pytest.raises(ConfigError, match=message):
        train(tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "x", **values),
              echo=quiet)  # fmt: skip


def test_trl_spelling_is_accepted_with_trls_defaults(tiny_model_dirs, tmp_path) -> None:
    from directpo.config import DPOConfig

    values = DPOConfig.translate({"sync_ref_model": True}, ["sync_ref_model"], "trl.yaml")
    config = DPOConfig(model_name_or_path=str(tiny_model_dirs["llama"]), train_file="x", **values)
    assert (config.ref_model_mixup_alpha, config.ref_model_sync_steps) == (0.6, 512)


def test_two_processes_sync_as_one_process(tiny_model_dirs, tmp_path) -> None:
    """Under DDP every rank mixes its replica; under FSDP2 each rank mixes its own shards. The
    (gathered) reference and the metrics match the one-process run with the same global batch.
    The runs sample too (eval_generate: each rank samples its prompts; the KL against the moved
    reference): the same completions and KL as one process. DDP's run and FSDP2's in one
    launch, each compared with the one process."""
    from transformers import AutoModelForCausalLM

    data = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:4])
    model = tiny_model_dirs["llama"]
    values = dict(
        max_steps=4, save_steps=4, sync_ref_model=True, ref_model_mixup_alpha=0.5,
        ref_model_sync_steps=2, eval_file=str(data), eval_steps=2, eval_generate=3,
        eval_generate_samples=2, generate_max_new_tokens=5,
        per_device_eval_batch_size=4,  # samples drawn in batches of 4 on each side
    )  # fmt: skip
    single = tmp_path / "single"
    train(tiny_config(model, data, single, per_device_train_batch_size=4, **values), echo=quiet)
    modes = ("ddp", "fsdp")
    for mode in modes:
        tiny_config(
            model, data, tmp_path / mode, per_device_train_batch_size=2, distributed=mode, **values
        ).save_yaml(tmp_path / f"{mode}.yaml")
    done = torchrun([tmp_path / f"{mode}.yaml" for mode in modes])
    assert done.returncode == 0, done.stderr[-3000:]
    for mode in modes:
        out = tmp_path / mode
        assert_same_metrics(read_metrics(out), read_metrics(single))
        assert any("eval/kl" in row for row in read_metrics(out))
        for step in (2, 4):
            mine, expected = (
                [json.loads(line) for line in (folder / f"samples/step-{step}.jsonl").open()]
                for folder in (out, single)
            )
            assert len(mine) == 3 * 2  # eval_generate prompts x eval_generate_samples
            assert [r["completion"] for r in mine] == [r["completion"] for r in expected], mode
            assert [r["kl"] for r in mine] == pytest.approx([r["kl"] for r in expected], abs=1e-4)
        ours, theirs = reference(out / "checkpoint-4"), reference(single / "checkpoint-4")
        assert ours.keys() == theirs.keys()
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=0, atol=1e-4)
        # the final folder's moved reference (FSDP2: written from the shards), as one process's
        ours, theirs = (
            AutoModelForCausalLM.from_pretrained(folder / "reference").state_dict()
            for folder in (out, single)
        )
        for name, value in theirs.items():
            torch.testing.assert_close(ours[name], value, rtol=0, atol=1e-4)


@pytest.mark.parametrize("lora", [0, 4, "pissa"], ids=["full", "lora", "pissa"])
def test_rewards_are_relative_to_the_moved_reference_saved_beside_the_model(
    tiny_model_dirs, pairs_file, tmp_path, lora
) -> None:
    """score / rank / from_run scored a TR-DPO run against its starting model, not the reference
    its policy trained against, which lived in checkpoints only (and train()'s LoRA reference,
    the "ref" adapter, was refused by ImplicitReward). The final folder now holds it in
    reference/; with alpha 1 at every step it is the policy, so every reward is 0. PiSSA: the
    ref adapter ran on the base its init rewrote; reference/ was saved as a plain adapter, which
    loaded it on the stored base (rewards of 0.07 nats against a reference equal to the policy)."""
    from peft import LoraConfig

    from directpo import ImplicitReward

    model, out = tiny_model_dirs["llama"], tmp_path / "tr"
    extra = {"lora_r": 4, "learning_rate": 5e-2} if lora == 4 else {}
    peft_config = None
    if lora == "pissa":
        peft_config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=lora)
        extra = {"learning_rate": 5e-2}
    result = train(
        tiny_config(model, pairs_file, out, max_steps=2, per_device_train_batch_size=3,
                    sync_ref_model=True, ref_model_mixup_alpha=1.0, ref_model_sync_steps=1,
                    save_steps=1, **extra),
        echo=quiet, peft_config=peft_config,
    )  # fmt: skip
    assert (out / "reference" / ("adapter_config.json" if lora else "config.json")).is_file()
    prompts = [row["prompt"] for row in SENTIMENT_PAIRS[:3]]
    responses = [row["chosen"] for row in SENTIMENT_PAIRS[:3]]
    notes: list[str] = []
    moved = ImplicitReward.from_run(str(out), echo=notes.append).score(prompts, responses)
    assert moved == pytest.approx([0.0] * 3, abs=1e-6)
    (note,) = notes
    assert f"against its moved reference {out / 'reference'} (the starting model: {model})" in note
    in_memory = ImplicitReward(result.policy, result.reference, beta=0.1)
    assert in_memory.score(prompts, responses) == pytest.approx(moved, abs=1e-6)
    # the starting model on request: the policy has moved away from it
    starting = ImplicitReward.from_run(str(out), ref_model_name_or_path=str(model))
    assert max(abs(r) for r in starting.score(prompts, responses)) > 1e-3
    card = (out / "README.md").read_text()
    assert "`reference/` holds it as the policy last trained against it" in card
    # a checkpoint: its own moved reference (reference.safetensors), not the starting model's
    notes.clear()
    at_1 = ImplicitReward.from_run(str(out / "checkpoint-1"), echo=notes.append)
    assert at_1.score(prompts, responses) == pytest.approx([0.0] * 3, abs=1e-6)
    assert (
        f"against its moved reference {out / 'checkpoint-1' / 'reference.safetensors'}"
        in (notes[0])
    )


def test_the_best_models_reference_is_the_one_saved_beside_it(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """load_best_model_at_end: the final policy is the best checkpoint's, and so is reference/
    (the reference that policy trained against), not the last step's."""
    out = tmp_path / "run"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=3, save_steps=1, eval_steps=1,
        eval_file=str(pairs_file), sync_ref_model=True, ref_model_mixup_alpha=0.5,
        ref_model_sync_steps=1, load_best_model_at_end=True, metric_for_best_model="eval_loss",
        greater_is_better=True, learning_rate=0.1,  # the worst: the first step's
    )  # fmt: skip
    lines: list[str] = []
    train(config, echo=lines.append)
    assert "loaded the best model: step 1," in "\n".join(lines)
    saved = weights(out / "reference")
    for step in (1, 3):
        moved = reference(out / f"checkpoint-{step}")
        assert all(torch.equal(saved[k], moved[k]) for k in moved) == (step == 1), step


def test_tr_dpo_with_adapters_and_a_soft_update_is_refused_before_anything_loads(
    tmp_path,
) -> None:
    """lora_r (or an adapter folder as the model) with sync_ref_model and TRL's default
    ref_model_mixup_alpha 0.6 was refused only once the policy had loaded, after the data was
    read and tokenized: now by the config's checks, and the adapter folder's before loading."""
    from directpo.config import DPOConfig
    from directpo.preflight import check_environment

    with pytest.raises(ConfigError, match="ref_model_mixup_alpha 0.6 would mix two adapters"):
        DPOConfig(model_name_or_path="m", lora_r=4, sync_ref_model=True)
    DPOConfig(model_name_or_path="m", lora_r=4, sync_ref_model=True, ref_model_mixup_alpha=1.0)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    config = DPOConfig(model_name_or_path=str(adapter), sync_ref_model=True)
    with pytest.raises(ConfigError, match="ref_model_mixup_alpha 0.6 would mix two adapters"):
        check_environment(config, need_train_file=False)


def test_a_bf16_runs_moved_reference_is_saved_as_its_float32_weights(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """bf16, alpha 1 at every step: the reference is the policy, so every reward is 0. The
    final folder held the policy's float32 masters beside reference/ in bf16, its rounding:
    score read rewards of 2e-4. Both are float32 now (sync.followed_weights), in checkpoints
    too."""
    from directpo import ImplicitReward

    out = tmp_path / "tr"
    train(
        tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=2, save_steps=1,
                    per_device_train_batch_size=3, dtype="bfloat16", learning_rate=1e-3,
                    sync_ref_model=True, ref_model_mixup_alpha=1.0, ref_model_sync_steps=1),
        echo=quiet,
    )  # fmt: skip
    prompts = [row["prompt"] for row in SENTIMENT_PAIRS[:3]]
    responses = [row["chosen"] for row in SENTIMENT_PAIRS[:3]]
    for run in (out, out / "checkpoint-1"):
        scored = ImplicitReward.from_run(str(run), echo=quiet).score(prompts, responses)
        assert scored == [0.0, 0.0, 0.0], run
    saved = load_file(out / "reference" / "model.safetensors")
    assert {value.dtype for value in saved.values()} == {torch.float32}


def test_an_fsdp2_bf16_runs_moved_reference_is_saved_as_its_float32_weights(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """The same run sharded with FSDP2 (a one-process group, in process): reference/ was cast
    to bf16 beside the policy's float32 weights (the one-process path wrote its float32 ones),
    so its rewards read the rounding. It is written as the weights sync keeps now."""
    from directpo import ImplicitReward

    out = tmp_path / "tr"
    train(
        tiny_config(tiny_model_dirs["llama"], pairs_file, out, max_steps=2, distributed="fsdp",
                    per_device_train_batch_size=3, dtype="bfloat16", learning_rate=1e-3,
                    sync_ref_model=True, ref_model_mixup_alpha=1.0, ref_model_sync_steps=1),
        echo=quiet,
    )  # fmt: skip
    policy = load_file(out / "model.safetensors")
    saved = load_file(out / "reference" / "model.safetensors")
    assert {value.dtype for value in saved.values()} == {torch.float32}
    assert saved.keys() == policy.keys()
    for key, value in policy.items():  # alpha 1: the reference is the policy, bitwise
        assert torch.equal(saved[key], value), key
    prompts = [row["prompt"] for row in SENTIMENT_PAIRS[:3]]
    responses = [row["chosen"] for row in SENTIMENT_PAIRS[:3]]
    scored = ImplicitReward.from_run(str(out), echo=quiet).score(prompts, responses)
    assert scored == [0.0, 0.0, 0.0]


def test_a_tr_dpo_run_that_never_synced_is_not_said_to_have_moved(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A TR-DPO run shorter than ref_model_sync_steps never moved its reference, yet scoring
    it said "its reference moved during training ... against its moved reference": the note
    now says it never moved and that the rewards are against the starting model."""
    from directpo.reward import ImplicitReward

    model, out = tiny_model_dirs["llama"], tmp_path / "tr"
    config = tiny_config(model, pairs_file, out, sync_ref_model=True, ref_model_sync_steps=5)
    train(config, echo=quiet)
    notes: list[str] = []
    ImplicitReward.from_run(str(out), echo=notes.append)
    (note,) = notes
    assert "moved during training" not in note
    assert "up to step 1, before ref_model_sync_steps (5): its reference never moved" in note
    assert note.endswith(f"against its starting model {model}")
