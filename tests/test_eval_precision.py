"""Held-out metrics of bf16 runs computed in float32 (eval_dtype; precision.float32_compute):
as float32 reads the same weights, and exactly 0 at the start."""

from __future__ import annotations

import json

import pytest
import torch
from launch import torchrun
from tiny import SENTIMENT_PAIRS, bf16_grid_copy, quiet, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM

from directpo.config import DPOConfig
from directpo.errors import ConfigError
from directpo.precision import MasterWeights, evaluates_in_float32, float32_compute
from directpo.reward import ImplicitReward
from directpo.tracking import read_metrics
from directpo.trainer import train


def eval_rows(metrics: list[dict]) -> list[dict]:
    return [row for row in metrics if "eval/rewards/chosen" in row]


@pytest.mark.parametrize(
    "setup",
    [
        {"lora_r": 4, "learning_rate": 5e-3},
        {"lora_r": 4, "learning_rate": 5e-3, "precompute_ref_log_probs": True},
        {"learning_rate": 1e-5},
        {"learning_rate": 1e-5, "stored": "float32"},
        {"learning_rate": 1e-5, "stored": "float32", "precompute_ref_log_probs": True},
        {
            "learning_rate": 1e-3,
            "master_weights": "bfloat16",
            "optimizer": "adamw_kahan",
            "save_dtype": "float32",
        },  # (read without the compensation the float32 save holds)
    ],
    ids=[
        "lora",
        "lora-precomputed",
        "full",
        "full-float32-stored",
        "full-precomputed",
        "full-kahan-float32-save",
    ],
)
def test_bf16_runs_evaluate_in_float32_as_their_saved_weights_score(
    tiny_model_dirs, pairs_file, tmp_path, setup
):
    """A bf16 run's held-out rewards read as float32 reads the same weights (they read far
    lower: bf16 rounds a young adapter's contribution, and updates below half its grid, back
    onto the start), and are exactly 0 before any update."""
    setup = dict(setup)
    model = tiny_model_dirs["llama"]  # stored in float32: its reference is kept in float32 too
    if setup.pop("stored", "bfloat16") == "bfloat16":  # as hub models: on bf16's grid
        model = bf16_grid_copy(model, tmp_path / "model")
    out = tmp_path / "out"
    config = tiny_config(
        model, pairs_file, out, dtype="bfloat16", max_steps=3, eval_file=str(pairs_file),
        eval_on_start=True, eval_steps=3, **setup,
    )  # fmt: skip
    assert_float32_rewards(eval_rows(train(config, echo=quiet).metrics), out, SENTIMENT_PAIRS)


def assert_float32_rewards(evaluations: list[dict], out, pairs: list[dict]) -> None:
    """Held-out rewards 0 at the start and, at the end, float32 scoring's of the saved run."""
    start, end = evaluations[0], evaluations[-1]
    assert start["eval/rewards/chosen"] == 0.0 and start["eval/rewards/rejected"] == 0.0
    scorer = ImplicitReward.from_run(str(out))  # float32
    prompts = [pair["prompt"] for pair in pairs]
    for side in ("chosen", "rejected"):
        rewards = scorer.score(prompts, [pair[side] for pair in pairs])
        assert end[f"eval/rewards/{side}"] == pytest.approx(sum(rewards) / len(rewards), abs=2e-6)
    assert abs(end["eval/rewards/margins"]) > 1e-4  # the run moved: the check above can fail
    # the card says which of its numbers are float32's (the training ones are bf16's)
    card = (out / "README.md").read_text()
    assert "Held-out metrics (eval/*) were computed in float32 (eval_dtype)." in card
    assert "Training metrics (loss, rewards/*, logps/*) are those of the bfloat16 forward." in card


def test_ddp_bf16_lora_evaluates_in_float32_and_a_checkpoint_changes_nothing(
    tiny_model_dirs, tmp_path
) -> None:
    """Two gloo processes: each rank upcasts its replica and scores its slice of the pairs in
    float32 (the held-out rewards are the saved adapter's float32 scores), and a checkpoint
    every step (save_steps: 1) changes nothing of the bf16 training: the same adapters,
    bitwise, as the run without checkpoints (the ranks stay together past each one). Both
    runs in one launch, the one without checkpoints first."""
    from safetensors.torch import load_file

    pairs = SENTIMENT_PAIRS[:5]
    data = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    model = bf16_grid_copy(tiny_model_dirs["llama"], tmp_path / "model")
    for save_steps in (0, 1):
        config = tiny_config(
            model, data, tmp_path / f"run{save_steps}", dtype="bfloat16", lora_r=4, max_steps=3,
            eval_file=str(data), eval_on_start=True, eval_steps=3, per_device_train_batch_size=2,
            per_device_eval_batch_size=2, distributed="ddp", save_steps=save_steps,
        )  # fmt: skip
        config.save_yaml(tmp_path / f"config{save_steps}.yaml")
    done = torchrun([tmp_path / "config0.yaml", tmp_path / "config1.yaml"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("model saved to") == 2  # (each run's, rank 0's alone)
    adapters = [load_file(tmp_path / f"run{s}" / "adapter_model.safetensors") for s in (0, 1)]
    out = tmp_path / "run1"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        f"checkpoint-{i}" for i in (1, 2, 3)
    ]
    assert_float32_rewards(eval_rows(read_metrics(out)), out, pairs)
    assert adapters[0].keys() == adapters[1].keys()
    for name, weight in adapters[0].items():
        assert torch.equal(weight, adapters[1][name]), name


def test_eval_dtype_choices_and_where_float32_cannot_run() -> None:
    assert DPOConfig().eval_dtype == "auto"
    with pytest.raises(ConfigError, match="eval_dtype must be one of"):
        DPOConfig(dtype="bfloat16", eval_dtype="float16")
    with pytest.raises(ConfigError, match=r"^eval_dtype='bfloat16' under dtype='float32'"):
        DPOConfig(eval_dtype="bfloat16")
    with pytest.raises(ConfigError, match=r"^eval_dtype='float32' with attn_implementation='flash"):
        DPOConfig(dtype="bfloat16", eval_dtype="float32", attn_implementation="flash_attention_2")
    bf16, f32 = torch.bfloat16, torch.float32
    assert evaluates_in_float32("auto", bf16, "auto", sharded=False)
    assert not evaluates_in_float32("auto", f32, "auto", sharded=False)  # float32 already
    assert not evaluates_in_float32("bfloat16", bf16, "auto", sharded=False)
    assert not evaluates_in_float32("auto", bf16, "auto", sharded=True)  # FSDP gathers in bf16
    assert not evaluates_in_float32("auto", bf16, "flash_attention_2", sharded=False)
    with pytest.raises(ConfigError, match=r"^eval_dtype: float32 under FSDP"):
        evaluates_in_float32("float32", bf16, "auto", sharded=True)


def test_float32_compute_upcasts_and_gives_back_the_same_bf16_weights() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2, bias=False))
    model[1].requires_grad_(False)
    masters = MasterWeights(model, torch.bfloat16)
    frozen = model[1].weight.data.clone()
    x = torch.randn(3, 4)
    with float32_compute([model], [masters]):
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert model[0].weight.data_ptr() == masters.pairs[0][1].data_ptr()  # the master itself
        got = model(x)
    expected = x @ masters.pairs[0][1].T + masters.pairs[1][1]
    assert torch.allclose(got, expected @ frozen.float().T, atol=1e-6)
    assert model[1].weight.dtype == torch.bfloat16 and torch.equal(model[1].weight.data, frozen)
    assert model[0].weight.dtype == torch.bfloat16
    # the parameter is the one DDP hooked: its gradient accumulator is still the same
    accumulator = model[0].weight.view_as(model[0].weight).grad_fn.next_functions[0][0]
    fired: list[int] = []
    accumulator.register_hook(lambda *_: fired.append(1))
    with torch.no_grad(), float32_compute([model], [masters]):
        model(x)
    model(x.to(torch.bfloat16)).sum().backward()
    assert fired == [1]


def test_a_bf16_run_without_held_out_pairs_keeps_no_float32_reference(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """The float32 copy of a reference stored in float32 (4 more bytes per weight) is for the
    held-out evaluation alone: a run with nothing to evaluate keeps none and loads the
    reference in bf16 as before."""
    import directpo.run_models as run_models

    kept: list[bool] = []
    real = run_models.FrozenMasters

    def recording(model, compute):
        masters = real(model, compute)
        kept.append(bool(masters))
        return masters

    monkeypatch.setattr(run_models, "FrozenMasters", recording)
    common = {"dtype": "bfloat16", "max_steps": 1, "learning_rate": 1e-5}
    model = tiny_model_dirs["llama"]  # stored in float32
    train(tiny_config(model, pairs_file, tmp_path / "plain", **common), echo=quiet)
    assert kept == []
    evaluated = tiny_config(model, pairs_file, tmp_path / "eval", eval_file=str(pairs_file),
                            **common)  # fmt: skip
    train(evaluated, echo=quiet)
    assert kept == [True]


def test_tr_dpo_on_a_float32_stored_model_evaluates_0_before_its_first_sync(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """sync_ref_model kept no float32 reference: the step-0 evaluation ran a bf16-rounded
    reference against the float32 masters (rewards 3e-5, not 0). The float32 start is kept
    until the first sync moves the reference, then dropped."""
    out = tmp_path / "out"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, dtype="bfloat16", max_steps=2,
        learning_rate=1e-4, eval_file=str(pairs_file), eval_on_start=True, eval_steps=2,
        sync_ref_model=True, ref_model_sync_steps=1, ref_model_mixup_alpha=0.5,
    )  # fmt: skip
    start, end = eval_rows(train(config, echo=quiet).metrics)
    assert start["eval/rewards/chosen"] == 0.0 and start["eval/rewards/rejected"] == 0.0
    assert end["eval/rewards/chosen"] != 0.0


def test_a_continued_adapter_evaluates_in_float32_against_its_float32_start(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Continuing an adapter folder: the reference is the frozen ``ref`` copy of the adapter,
    which was held in bf16 only, so the float32 evaluation read rewards of -1e-5 at step 0 and
    a reference other than the saved adapter's. Its float32 start is kept now."""
    model = bf16_grid_copy(tiny_model_dirs["llama"], tmp_path / "model")
    first = tmp_path / "first"
    common = {"dtype": "bfloat16", "lora_r": 4, "learning_rate": 5e-3, "max_steps": 2}
    train(tiny_config(model, pairs_file, first, **common), echo=quiet)
    out = tmp_path / "out"
    config = tiny_config(
        first, pairs_file, out, **(common | {"lora_r": 0}), eval_file=str(pairs_file),
        eval_on_start=True, eval_steps=2,
    )  # fmt: skip
    assert_float32_rewards(eval_rows(train(config, echo=quiet).metrics), out, SENTIMENT_PAIRS)


@pytest.mark.parametrize(
    "setup",
    [{"loss_type": ["simpo"]}, {"precompute_ref_log_probs": True}, {"lora_r": 4}],
    ids=["reference-free", "precomputed", "lora"],
)
def test_eval_generate_scores_its_samples_kl_in_float32(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, setup
) -> None:
    """eval_generate's KL was scored in bf16: a young policy's eval/kl read bf16's rounding
    noise (SmolLM2-135M LoRA after 2 steps: -0.030, samples +-0.3 nats apart, where float32
    reads 0.009). Its samples are now scored as the held-out pairs are: in float32, against
    the float32 start (a reference the losses never run, SimPO's or a precomputed one, keeps
    its float32 weights for it), so eval/kl is exactly 0 at step 0 and the logged log-probs
    are float32 scoring's of the saved model."""
    import directpo.eval_samples as eval_samples
    from directpo.reference import FrozenModelReference

    drawn: list = []

    def recording(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    real = eval_samples.sample_completions
    monkeypatch.setattr(eval_samples, "sample_completions", recording)
    base, out = tiny_model_dirs["llama"], tmp_path / "out"  # stored in float32
    if "lora_r" in setup:  # a LoRA base is held in bf16 only: one on its grid (docs/performance.md)
        base = bf16_grid_copy(base, tmp_path / "model")
    config = tiny_config(
        base, pairs_file, out, dtype="bfloat16", max_steps=1, learning_rate=1e-3,
        eval_file=str(pairs_file), eval_on_start=True, eval_steps=1, eval_generate=2,
        eval_generate_samples=1, generate_max_new_tokens=3, **setup,
    )  # fmt: skip
    assert eval_rows(train(config, echo=quiet).metrics)[0]["eval/kl"] == 0.0
    records = [json.loads(line) for line in (out / "samples" / "step-1.jsonl").open()]
    policy = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    start = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    reference = FrozenModelReference(start)
    logps, ref_logps = eval_samples.samples_logprobs(
        drawn[-1], policy, reference, 0, torch.device("cpu"), 2
    )
    assert [r["logp"] for r in records] == pytest.approx(logps.tolist(), abs=1e-5)
    assert [r["ref_logp"] for r in records] == pytest.approx(ref_logps.tolist(), abs=1e-5)


def test_the_float32_evaluation_of_a_compiled_model_runs_eagerly() -> None:
    """torch_compile: float32 weights were a new variant of every compiled decoder layer (one
    recompile each, taking a LoRA run's layers past dynamo's recompile limit); the float32
    pass now runs eagerly, as float32 scoring does."""
    from types import SimpleNamespace

    from torch._dynamo.testing import CompileCounter

    from directpo.run import evaluation_precision

    class Two(torch.nn.Sequential):  # (dynamo skips torch.nn's own forwards)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[1](self[0](x))

    model = Two(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    masters = MasterWeights(model, torch.bfloat16)
    counter = CompileCounter()
    model.compile(backend=counter)
    x = torch.randn(3, 4)
    with torch.no_grad():
        model(x.to(torch.bfloat16))
        run = SimpleNamespace(
            eval_float32=True, policy=model, reference=None, kl_reference=None, masters=masters,
            reference_masters=None, config=SimpleNamespace(torch_compile=True), optimizer=None,
            precision=SimpleNamespace(save=torch.float32),
        )  # fmt: skip
        with evaluation_precision(run):
            got = model(x)
        (w1, b1), (w2, b2) = [(masters.pairs[i][1], masters.pairs[i + 1][1]) for i in (0, 2)]
    assert counter.frame_count == 1
    assert torch.equal(got, torch.nn.functional.linear(x @ w1.T + b1, w2, b2))
    assert model[0].weight.dtype == torch.bfloat16


def test_a_resume_from_a_bf16_evaluated_checkpoint_says_its_best_is_a_bf16_value(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A checkpoint written before eval_dtype (a bf16 run evaluated in bf16) resumed: its best
    value, a bf16 reading, was compared with float32 evaluations without a word."""
    from directpo.checkpoint import _checksum

    out = tmp_path / "out"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, dtype="bfloat16", lora_r=4, max_steps=1,
        eval_file=str(pairs_file), eval_steps=1, save_steps=1, early_stopping_patience=3,
    )  # fmt: skip
    train(config, echo=quiet)
    checkpoint = out / "checkpoint-1"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    own = state["stateful_callbacks"]["directpo"]
    assert own["eval_dtype"] == "float32"
    # as written before eval_dtype existed: no record of it, in the state or the options
    del own["eval_dtype"]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    options = (checkpoint / "config.yaml").read_text().splitlines()
    kept = [line for line in options if not line.startswith("eval_dtype:")]
    (checkpoint / "config.yaml").write_text("\n".join(kept) + "\n")
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    for name in ("trainer_state.json", "config.yaml"):
        size, digest = (checkpoint / name).stat().st_size, _checksum(checkpoint / name)
        manifest["files"][name] = {"size": size, "blake2b": digest}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    lines: list[str] = []
    config.max_steps, config.resume_from_checkpoint = 2, str(checkpoint)
    train(config, echo=lines.append)
    best = own["best"]["value"]
    said = [line for line in lines if "computed in bfloat16, from here in float32" in line]
    assert len(said) == 1 and f"eval/loss so far ({best:.6g}, step 1)" in said[0]
