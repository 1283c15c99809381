"""Mixed precision (dtype: bfloat16): bf16 compute over float32 masters, and the update guard."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import SENTIMENT_PAIRS, quiet, save_tiny_model, tiny_config, write_jsonl
from transformers import AutoModelForCausalLM

import directpo.run_models as run_models
import directpo.step as step
from directpo.config import DPOConfig
from directpo.errors import ConfigError, ConfigErrors, TrainingStopped
from directpo.guard import UpdateProbe, UpdateStats, check_update
from directpo.loss_names import LOSS_INFO
from directpo.precision import MasterWeights, PrecisionPolicy
from directpo.tracking import read_metrics
from directpo.trainer import train


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(folder / "model.safetensors").items()}


def change(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(fraction of weights that changed, ‖w − w0‖ / ‖w0‖) over every tensor."""
    changed = total = 0
    delta = norm = 0.0
    for name, w0 in start.items():
        w = end[name]
        changed += int((w != w0).sum())
        total += w0.numel()
        delta += float((w.double() - w0.double()).pow(2).sum())
        norm += float(w0.double().pow(2).sum())
    return changed / total, math.sqrt(delta / norm)


def train_rows(metrics: list[dict]) -> list[dict]:
    return [row for row in metrics if "loss" in row]


def test_bf16_learns_like_float32_at_dpo_learning_rates(tiny_model_dirs, pairs_file, tmp_path):
    """The issue's measurement: at lr 1e-6 a policy *stored* in bf16 changed 1.4% of its
    weights where float32 changed 76.6%. Mixed precision must move them as float32 does."""
    model = tiny_model_dirs["llama"]
    start = weights(model)
    results = {}
    for dtype in ("float32", "bfloat16"):
        out = tmp_path / dtype
        config = tiny_config(model, pairs_file, out, learning_rate=1e-6, max_steps=5, dtype=dtype)
        results[dtype] = (train(config, echo=quiet), weights(out))
    fraction32, ratio32 = change(start, results["float32"][1])
    fraction16, ratio16 = change(start, results["bfloat16"][1])
    assert fraction32 > 0.5
    assert fraction16 >= 0.9 * fraction32
    assert ratio16 == pytest.approx(ratio32, rel=0.1)
    # the folder holds the float32 masters (save_dtype: auto)
    assert all(
        t.dtype == torch.float32
        for t in load_file(tmp_path / "bfloat16" / "model.safetensors").values()
    )
    losses32 = [row["loss"] for row in train_rows(results["float32"][0].metrics)]
    losses16 = [row["loss"] for row in train_rows(results["bfloat16"][0].metrics)]
    assert losses16 == pytest.approx(losses32, abs=2e-3)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_bf16_policy_equals_bf16_reference_at_the_start(
    tiny_model_dirs, pairs_file, tmp_path, style
):
    """The compute copy runs exactly as the bf16 reference: zero reward at step 1."""
    config = tiny_config(tiny_model_dirs[style], pairs_file, tmp_path / "out", dtype="bfloat16")
    first = train_rows(train(config, echo=quiet).metrics)[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == 0.0


def test_bf16_dora_policy_equals_its_reference_at_the_start(tiny_model_dirs, pairs_file, tmp_path):
    """DoRA's magnitudes are the norms of the bf16 base the forward sees, not of the float32
    one (about 1e-5 of reward apart at step 1 before): policy == reference exactly."""
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", dtype="bfloat16", lora_r=4,
        use_dora=True,
    )  # fmt: skip
    first = train_rows(train(config, echo=quiet).metrics)[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["rewards/margins"] == 0.0
    assert first["rewards/chosen"] == 0.0


def test_bf16_trains_the_tiny_set_and_saves_bf16_on_request(tiny_model_dirs, pairs_file, tmp_path):
    out = tmp_path / "out"
    config = tiny_config(
        tiny_model_dirs["gpt2"], pairs_file, out, bf16=True, max_steps=20, save_dtype="bfloat16",
        learning_rate=5e-3,
    )  # fmt: skip
    assert config.dtype == "bfloat16"  # TRL's spelling
    result = train(config, echo=quiet)
    rows = train_rows(result.metrics)
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.2
    assert all(0 < row["update_ratio"] < 1 for row in rows)
    assert AutoModelForCausalLM.from_pretrained(out).dtype == torch.bfloat16
    card = (out / "README.md").read_text()
    assert "Rounding to bfloat16 for saving:" in card and "still differ from their start" in card


@pytest.mark.parametrize(
    "storage",
    [{}, {"master_weights": "bfloat16", "optimizer": "adamw_kahan"}],
    ids=["mixed", "bf16-storage-kahan"],
)
def test_resume_of_a_bf16_run_is_bitwise_exact(tiny_model_dirs, pairs_file, tmp_path, storage):
    """Also bf16 storage + adamw_kahan, whose step count and "set up" flag live in the param
    group (resume had reset them: Adam's bias correction restarted at the first resumed step)."""
    model = tiny_model_dirs["llama"]
    straight = tmp_path / "straight"
    config = tiny_config(
        model, pairs_file, straight, dtype="bfloat16", max_steps=4, save_steps=2,
        per_device_train_batch_size=2, **storage,
    )  # fmt: skip
    train(config, echo=quiet)
    # the checkpoint holds the masters and optimizer state in the storage dtype
    master = torch.bfloat16 if storage else torch.float32
    step2 = load_file(straight / "checkpoint-2" / "model.safetensors")
    assert all(t.dtype == master for t in step2.values())
    optimizer = torch.load(straight / "checkpoint-2" / "optimizer.pt", weights_only=True)
    assert all(s["exp_avg"].dtype == master for s in optimizer["state"].values())

    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoint-4")
    (resumed / "model.safetensors").unlink()
    kept = [row for row in read_metrics(resumed) if row["step"] <= 2]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    config.output_dir, config.resume_from_checkpoint = str(resumed), "latest"
    train(config, echo=quiet)
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[name], b[name]) for name in a)
    timing = {"pairs/s", "tokens/s"}
    for x, y in zip(read_metrics(straight), read_metrics(resumed), strict=True):
        assert {k: v for k, v in x.items() if k not in timing} == {
            k: v for k, v in y.items() if k not in timing
        }


def test_lora_in_bf16_keeps_float32_adapters_over_a_bf16_base(
    tiny_model_dirs, pairs_file, tmp_path
):
    out = tmp_path / "out"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, dtype="bfloat16", lora_r=4, max_steps=6,
        learning_rate=5e-2,
    )  # fmt: skip
    result = train(config, echo=quiet)
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and all(t.dtype == torch.float32 for t in adapter.values())
    base = [p for n, p in result.policy.named_parameters() if "lora_" not in n]
    assert all(p.dtype == torch.bfloat16 for p in base)
    rows = train_rows(result.metrics)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_master_weights_accumulate_in_float32_and_push_to_the_compute_copy() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1))
    reference = [p.detach().clone() for p in model.parameters()]
    masters = MasterWeights(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(m.dtype == torch.float32 for m in masters.parameters())
    assert all(torch.equal(m, r) for m, r in zip(masters.parameters(), reference, strict=True))
    inputs = torch.randn(2, 4, 8)
    expected = [torch.zeros_like(r) for r in reference]
    for x in inputs:
        model(x.bfloat16()).sum().backward()
        # streamed: the bf16 gradient is gone, its value is in the master's float32 gradient
        assert all(p.grad is None for p in model.parameters())
        for e, p in zip(expected, _bf16_grads(reference, x), strict=True):
            e += p
    for master, e in zip(masters.parameters(), expected, strict=True):
        assert master.grad.dtype == torch.float32
        torch.testing.assert_close(master.grad, e, rtol=2e-2, atol=1e-2)
    with torch.no_grad():
        for master in masters.parameters():
            master.add_(1e-5)  # far below bf16's resolution of these weights
    masters.push()
    for p, m in zip(model.parameters(), masters.parameters(), strict=True):
        assert torch.equal(p, m.to(torch.bfloat16))
    with masters.in_model():
        assert all(p.dtype == torch.float32 for p in model.parameters())
    masters.release()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    for p, r in zip(model.parameters(), reference, strict=True):
        assert torch.equal(p.detach(), r + 1e-5)  # the small update survived in the masters


def test_weights_kept_in_float32_are_trained_under_mixed_precision() -> None:
    """A model's ``_keep_in_fp32_modules`` (gpt-oss's norms, MoE routers) stay float32 under
    bf16 compute; a trainable one is its own master: the optimizer must see it (it was left
    out, so those weights silently never changed)."""

    class KeepsNormInFloat32(torch.nn.Module):
        _keep_in_fp32_modules = ["norm"]

        def __init__(self) -> None:
            super().__init__()
            self.linear, self.norm = torch.nn.Linear(8, 8), torch.nn.LayerNorm(8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm(self.linear(x).float())

    torch.manual_seed(0)
    model = KeepsNormInFloat32()
    masters = MasterWeights(model, torch.bfloat16)
    assert model.linear.weight.dtype == torch.bfloat16 and model.norm.weight.dtype == torch.float32
    trainable = masters.parameters()
    assert len(trainable) == sum(1 for p in model.parameters() if p.requires_grad) == 4
    start = model.norm.weight.detach().clone()
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model(torch.randn(4, 8, dtype=torch.bfloat16)).pow(3).sum().backward()
    optimizer.step()
    assert not torch.equal(model.norm.weight.detach(), start)


def _bf16_grads(reference: list[torch.Tensor], x: torch.Tensor) -> list[torch.Tensor]:
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 1)).bfloat16()
    with torch.no_grad():
        for p, r in zip(model.parameters(), reference, strict=True):
            p.copy_(r)
    model(x.bfloat16()).sum().backward()
    return [p.grad.float() for p in model.parameters()]


def test_precision_options_and_trl_spellings() -> None:
    assert DPOConfig(bf16=True).dtype == "bfloat16"
    assert DPOConfig(bf16=True).precision == PrecisionPolicy(
        torch.bfloat16, torch.float32, torch.float32
    )
    assert DPOConfig(dtype="bfloat16", master_weights="bfloat16").precision.save == torch.bfloat16
    assert DPOConfig(dtype="bfloat16", save_dtype="bfloat16").precision.mixed
    assert not DPOConfig().precision.mixed
    # (named as Python gives it: fp16=True, as --fp16 on a command line, fp16 in a recipe)
    with pytest.raises(ConfigError, match="^fp16=True: float16 mixed precision is not supported"):
        DPOConfig(fp16=True)
    # refused with the other options' problems in one pass, not one per run (they raised first)
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(fp16=True, dtype="auto", learning_rate=-1.0)
    assert [re.split("[:= ]", line)[0] for line in refused.value.problems] == [
        "fp16", "dtype", "learning_rate",
    ]  # fmt: skip
    # bf16: true made dtype: float16 bfloat16 silently; ModelConfig's auto and float32 mean it
    with pytest.raises(
        ConfigError, match=r"^torch_dtype='float16' \(directpo: dtype\) with bf16=True: float16 is"
    ):
        DPOConfig(bf16=True, torch_dtype="float16")
    assert DPOConfig(bf16=True, dtype="auto").dtype == "bfloat16"
    assert DPOConfig(bf16=True, dtype="float32").precision.mixed
    with pytest.raises(ConfigError, match="master_weights is set but dtype is float32"):
        DPOConfig(master_weights="bfloat16")
    # optimi's and torch's decay act on the bf16 weights themselves: at lr 5e-7 it rounded away
    # (final weights bit-identical to a run without it)
    with pytest.raises(ConfigError, match=r"^weight_decay=0.1 with master_weights=.bfloat16. does"):
        DPOConfig(
            dtype="bfloat16", master_weights="bfloat16", optimizer="adamw_kahan", weight_decay=0.1
        )
    assert DPOConfig(dtype="bfloat16", weight_decay=0.1).precision.mixed
    with pytest.raises(ConfigError, match="save_dtype must be one of"):
        DPOConfig(save_dtype="float16")
    # TRL users load the weights in bf16 this way: here it says which option does what
    for key in ("torch_dtype", "dtype"):
        with pytest.raises(
            ConfigError,
            match=rf"^model_init_kwargs: {key}: bfloat16 is directpo's dtype option.*pass "
            r"dtype='bfloat16' "
            r"\(bf16 compute over float32 master weights.*master_weights='bfloat16'",
        ):
            DPOConfig(model_init_kwargs={key: "bfloat16"})


# -- the silent non-learning guard ------------------------------------------------------------


def test_guard_stops_a_learning_rate_below_float32_resolution(
    tiny_model_dirs, pairs_file, tmp_path
):
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", learning_rate=1e-30
    )
    with pytest.raises(TrainingStopped, match=r"step 1: the update vanished .*learning_rate 1e-30"):
        train(config, echo=quiet)


def test_guard_stops_bf16_storage_without_a_compensated_optimizer(
    tiny_model_dirs, pairs_file, tmp_path
):
    model = tiny_model_dirs["llama"]
    lines: list[str] = []
    config = tiny_config(
        model, pairs_file, tmp_path / "plain", learning_rate=1e-6, dtype="bfloat16",
        master_weights="bfloat16",
    )  # fmt: skip
    # (train() of a DPOConfig: said as its keywords are written)
    with pytest.raises(TrainingStopped, match=r"stored in bfloat16.*optimizer='adamw_kahan'"):
        train(config, echo=lines.append)
    assert any(
        line.startswith("warning: master_weights='bfloat16' with optimizer='adamw'")
        for line in lines
    )

    # Kahan-compensated AdamW keeps the updates: no stop, and the weights learn as float32's
    kahan = tiny_config(
        model, pairs_file, tmp_path / "kahan", learning_rate=1e-6, dtype="bfloat16",
        master_weights="bfloat16", optimizer="adamw_kahan", max_steps=5,
    )  # fmt: skip
    result = train(kahan, echo=quiet)
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "kahan").dtype == torch.bfloat16
    assert all(row["update_ratio"] > 0 for row in train_rows(result.metrics))


def test_kahan_runs_save_the_compensated_weights(tiny_model_dirs, pairs_file, tmp_path):
    """bf16 storage + adamw_kahan at lr 1e-7: the updates live in the compensation buffer (a
    bf16 weight rounds them away). save_dtype: float32 writes weight + compensation, so the
    folder holds what the run learned, as a float32 run's would; bfloat16 the nearest bf16.
    FSDP2 (one process) writes its shards with the compensation added too."""
    model = tiny_model_dirs["llama"]
    start = {name: w.bfloat16().float() for name, w in weights(model).items()}
    changed = {}
    for save_dtype, distributed in (("float32", "none"), ("bfloat16", "none"), ("float32", "fsdp")):
        out = tmp_path / f"{save_dtype}-{distributed}"
        config = tiny_config(
            model, pairs_file, out, learning_rate=1e-7, max_steps=3, dtype="bfloat16",
            master_weights="bfloat16", optimizer="adamw_kahan", save_dtype=save_dtype,
            distributed=distributed,
        )  # fmt: skip
        train(config, echo=quiet)
        changed[save_dtype, distributed] = change(start, weights(out))[0]
    assert changed["float32", "none"] > 0.5  # was 0.2%: the compensation was dropped
    assert changed["float32", "fsdp"] == changed["float32", "none"]
    assert changed["bfloat16", "none"] < 0.05  # the nearest bf16: updates below 1/256 are lost


def test_guard_stops_when_every_parameter_is_frozen(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
):
    load = run_models.load_policy_and_reference

    def frozen(*args, **kwargs):
        policy, reference = load(*args, **kwargs)
        policy.requires_grad_(False)
        return policy, reference

    monkeypatch.setattr(run_models, "load_policy_and_reference", frozen)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out")
    with pytest.raises(TrainingStopped, match="no trainable parameters"):
        train(config, echo=quiet)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


def test_guard_stops_on_an_exactly_zero_gradient(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
):
    import directpo.trainer as trainer_module

    real = trainer_module.pair_losses

    def detached(*args, **kwargs):
        losses, stats = real(*args, **kwargs)
        return losses * 0.0, stats

    monkeypatch.setattr(trainer_module, "pair_losses", detached)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "out")
    with pytest.raises(TrainingStopped, match="step 1: the gradient is exactly zero"):
        train(config, echo=quiet)


def test_guard_waits_past_a_batch_at_the_losss_minimum(tiny_model_dirs, tmp_path) -> None:
    """Hinge with a reference that already puts this batch's margins beyond 1/beta: loss 0 and
    gradient 0 is the loss's minimum, not a loss cut off from the weights. The run goes on and
    the next step is the one checked (here a learning rate below float32's resolution)."""
    reference = save_tiny_model("llama", tmp_path / "reference", seed=1)
    flipped = {**SENTIMENT_PAIRS[0], "chosen": SENTIMENT_PAIRS[0]["rejected"]}
    flipped["rejected"] = SENTIMENT_PAIRS[0]["chosen"]
    data = write_jsonl(tmp_path / "pairs.jsonl", [flipped, SENTIMENT_PAIRS[1]])
    options = dict(
        ref_model_name_or_path=str(reference), loss_type=["hinge"], beta=5.0,
        per_device_train_batch_size=1, max_steps=2,
    )  # fmt: skip
    model = tiny_model_dirs["llama"]
    with pytest.raises(TrainingStopped, match=r"^step 2: the update vanished"):
        train(tiny_config(model, data, tmp_path / "a", learning_rate=1e-30, **options), echo=quiet)
    rows = train_rows(read_metrics(tmp_path / "a"))
    assert rows[0]["loss"] == 0.0 and rows[0]["grad_norm"] == 0.0  # step 1: saturated
    # the guard's rule itself: zero gradient at zero loss is not judged; at a positive loss it is
    nothing = UpdateStats(changed=0, movable=0, ratio=0.0)
    assert check_update(nothing, 1, 1e-6, 0.0, 0.0, torch.float32, "adamw") is False
    with pytest.raises(TrainingStopped, match="the gradient is exactly zero"):
        check_update(nothing, 1, 1e-6, 0.0, 0.69, torch.float32, "adamw")


def test_guard_waits_for_warmup_and_counts_kahan_compensation() -> None:
    """With warmup the first steps' learning rate is ~0: the check waits for a tenth of the
    peak. A probe sees what an optimizer step did, compensation included."""
    weight = torch.nn.Parameter(torch.full((64,), 1.0, dtype=torch.bfloat16))
    from optimi import AdamW

    optimizer = AdamW([weight], lr=1e-5, kahan_sum=True)
    probe = UpdateProbe([weight], optimizer)
    weight.grad = torch.ones_like(weight)
    snapshot = probe.before()
    optimizer.step()
    assert torch.equal(weight.detach(), torch.ones_like(weight))  # rounded away in bf16 ...
    stats = probe.after(snapshot)
    assert stats.changed_fraction == 1.0  # ... but held in the compensation
    assert stats.ratio == pytest.approx(1e-5, rel=0.05)


def test_guard_does_not_fire_during_warmup(tiny_model_dirs, pairs_file, tmp_path):
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", warmup_steps=3, max_steps=4,
        learning_rate=1e-6,
    )  # fmt: skip
    rows = train_rows(train(config, echo=quiet).metrics)
    assert rows[0]["learning_rate"] == 0.0 and len(rows) == 4


def test_fsdp_lora_in_bf16_equals_one_process(tiny_model_dirs, pairs_file, tmp_path) -> None:
    """Under FSDP2 the frozen LoRA base is sharded in bf16, the adapters in float32."""
    runs = {}
    for mode in ("none", "fsdp"):
        out = tmp_path / mode
        config = tiny_config(
            tiny_model_dirs["llama"], pairs_file, out, dtype="bfloat16", lora_r=4, max_steps=4,
            learning_rate=5e-2, distributed=mode,
        )  # fmt: skip
        runs[mode] = [row["loss"] for row in train_rows(train(config, echo=quiet).metrics)]
        adapter = load_file(out / "adapter_model.safetensors")
        assert all(t.dtype == torch.float32 for t in adapter.values())
    assert runs["fsdp"] == pytest.approx(runs["none"], abs=1e-3)
    assert runs["none"][-1] < runs["none"][0]


def test_fsdp_computes_the_modules_kept_in_float32_in_float32() -> None:
    """gpt-oss keeps its norms in float32 (``_keep_in_fp32_modules``). FSDP2 computes a whole
    unit in its one param_dtype, so under bf16 they were computed in bf16 there (one process
    keeps them float32); each is now a float32 unit of its own: the same log-probs and
    gradients as one process, bitwise."""
    import copy

    from transformers import GptOssConfig, GptOssForCausalLM

    from directpo import distributed
    from directpo.batching import collate_pairs
    from directpo.logprobs import SequenceScorer
    from directpo.tokenization import TokenizedPair

    torch.manual_seed(0)
    config = GptOssConfig(
        vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, num_local_experts=4,
        num_experts_per_tok=2, sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
    )  # fmt: skip
    model = GptOssForCausalLM(config).float()
    with torch.no_grad():  # trained norms are not all ones (which bf16 holds exactly)
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1 + 0.1 * torch.randn_like(param))
    other = copy.deepcopy(model)
    batch = collate_pairs([TokenizedPair([1, 2, 3, 9, 11], [4, 5], [6, 7, 8])], 0)
    masters = MasterWeights(model, torch.bfloat16)
    one = SequenceScorer(model)(batch)[0]
    one.sum().backward()
    world = distributed.setup("fsdp")
    try:
        precision = PrecisionPolicy(torch.bfloat16, torch.float32, torch.float32)
        sharded = distributed.wrap(SequenceScorer(other), world, precision)
        assert sharded.model.model.norm.weight.dtype == torch.float32
        fsdp = sharded(batch)[0]
        fsdp.sum().backward()
        grads = {n: p.grad.full_tensor() for n, p in other.named_parameters()}
    finally:
        distributed.teardown(world)
    assert torch.equal(one, fsdp)
    norms = [n for n, _ in model.named_parameters() if "norm" in n]
    assert len(norms) == 5
    masters_of = dict(zip([id(p) for p, _ in masters.pairs], masters.parameters(), strict=False))
    for name, param in model.named_parameters():
        grad = masters_of[id(param)].grad if id(param) in masters_of else param.grad
        assert torch.equal(grad, grads[name]), name


def test_swapping_masters_in_keeps_the_gradient_hooks_ddp_relies_on() -> None:
    """DDP hooks each parameter's gradient accumulator; giving a parameter float32 data (the
    masters in, for a checkpoint or a resume) dropped that accumulator, so after the first
    checkpoint of a bf16 DDP run no gradient was reduced and the ranks trained apart, each on
    its own pairs, without a word."""
    model = torch.nn.Linear(4, 2)
    masters = MasterWeights(model, torch.bfloat16)
    accumulator = model.weight.view_as(model.weight).grad_fn.next_functions[0][0]
    fired: list[int] = []
    accumulator.register_hook(lambda *_: fired.append(1))
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    with masters.in_model():
        pass
    model(x).sum().backward()
    assert fired == [1]
    assert masters.pairs[0][1].grad is not None  # and the master received the gradient


@pytest.mark.parametrize(
    "held_out, precomputed",
    [(True, False), (False, False), (False, True)],
    ids=["with-eval", "without-eval", "precomputed"],
)
def test_a_bf16_runs_result_scores_in_memory_as_its_folder(
    tiny_model_dirs, tmp_path, held_out, precomputed
):
    """The README's in-memory scorer, ImplicitReward(result.policy, result.reference, beta): a
    bf16 run's policy ends holding its float32 masters, while its reference was handed back in
    bf16, so the reference's rounding read as reward (rewards of another sign than `directpo
    score` of the folder). The reference now comes back in float32: the float32 weights its
    evaluation kept, or (none kept: no held-out pairs) loaded again in float32."""
    from directpo.reward import ImplicitReward

    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    out = tmp_path / "run"
    evaluation = {"eval_file": str(pairs)} if held_out else {}
    evaluation["precompute_ref_log_probs"] = precomputed  # (its reference: loaded again)
    config = tiny_config(
        tiny_model_dirs["llama"], pairs, out, dtype="bfloat16", learning_rate=1e-5, **evaluation
    )
    result = train(config, echo=quiet)
    prompts = ["The movie was", "I love this film,", "The movie was"]
    responses = [" great.", " a dull waste.", " a dull waste."]
    want = ImplicitReward.from_run(str(out)).score(prompts, responses)
    got = ImplicitReward(result.policy, result.reference, beta=0.1).score(prompts, responses)
    assert got == pytest.approx(want, abs=1e-6)
    reference = result.reference.model
    assert {p.dtype for p in reference.parameters() if p.is_floating_point()} == {torch.float32}


@pytest.mark.parametrize("held_out", [True, False])
def test_a_bf16_continued_adapters_returned_reference_holds_its_float32_start(
    tiny_model_dirs, tmp_path, held_out
) -> None:
    """Continuing an adapter in bf16, the reference is the adapter's start, a frozen ``ref``
    copy on the policy: it came back in bf16 beside the policy's float32 adapter, so
    ImplicitReward(result.policy, result.reference) read its rounding as reward (a reward
    26% off score's on the tiny model); it comes back as the starting adapter's float32
    weights, as saved. Without held-out pairs too: no float32 evaluation kept them, and the
    ``ref`` adapter came back in bf16."""
    from safetensors.torch import load_file

    pairs = write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    first = tmp_path / "first"
    train(tiny_config(tiny_model_dirs["llama"], pairs, first, lora_r=4), echo=quiet)
    start = load_file(first / "adapter_model.safetensors")
    bf16 = dict(dtype="bfloat16", learning_rate=1e-4)
    bf16 |= {"eval_file": str(pairs)} if held_out else {}
    result = train(tiny_config(first, pairs, tmp_path / "on", **bf16), echo=quiet)
    held = {
        name.replace(".ref.", "."): param
        for name, param in result.reference.model.named_parameters()
        if ".ref." in name
    }
    assert held.keys() == start.keys()
    assert all(torch.equal(held[name], start[name]) for name in start)


# Each loss family as a user runs it in bf16: (name, options). rpo_alpha and a loss_weights
# mixture add the SFT term; use_weighting / ld_alpha / f_divergence_type reweight the sigmoid.
LOSS_RECIPES = [
    *((name, {"loss_type": name}) for name in LOSS_INFO if name not in ("sigmoid", "exo_pair")),
    ("exo_pair", {"loss_type": "exo_pair", "label_smoothing": 1e-3}),
    ("sigmoid", {}),
    ("cdpo", {"label_smoothing": 0.1}),
    ("sft_mixture", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]}),
    ("rpo", {"rpo_alpha": 1.0}),
    ("wpo", {"use_weighting": True}),
    ("ld", {"ld_alpha": 0.5}),
    ("js_divergence", {"f_divergence_type": "js_divergence"}),
]
# losses whose margins need not grow from a tie: DiscoPOP's modulation (τ = 0.05) slopes the
# loss down towards negative margins at z = 0 (as TRL's and the paper's formula: the loss
# still falls), and the unpaired / likelihood-only losses have no pair margin to push
MARGIN_MAY_FALL = {"discopop", "sft", "unlikelihood"}


@pytest.mark.parametrize("name, options", LOSS_RECIPES, ids=[n for n, _ in LOSS_RECIPES])
def test_every_loss_learns_in_bf16_as_in_float32(
    tiny_model_dirs, pairs_file, tmp_path, name, options
):
    """Mixed bf16 follows the float32 run of each loss step by step (a policy whose updates
    round away stays at its first loss, nats from float32's), and learns: the loss falls, the
    margins grow, nothing turns NaN."""
    runs = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config(
            tiny_model_dirs["llama"], pairs_file, tmp_path / dtype, dtype=dtype, max_steps=6,
            **options,
        )  # fmt: skip
        runs[dtype] = train_rows(train(config, echo=quiet).metrics)
    for row32, row16 in zip(runs["float32"], runs["bfloat16"], strict=True):
        assert math.isfinite(row16["loss"]) and math.isfinite(row16["rewards/margins"])
        assert row16["loss"] == pytest.approx(row32["loss"], rel=1e-2, abs=2e-3)
        assert row16["rewards/margins"] == pytest.approx(row32["rewards/margins"], abs=2e-2)
    rows = runs["bfloat16"]
    assert rows[-1]["loss"] < rows[0]["loss"]
    if name not in MARGIN_MAY_FALL:
        assert rows[-1]["rewards/margins"] > rows[0]["rewards/margins"] + 0.05


def test_layout_options_and_accumulation_agree_in_bf16(tiny_model_dirs, pairs_file, tmp_path):
    """On/off pairs trained in bf16 agree as bf16 can: prefix sharing + padding-free + the
    chunked head + a precomputed reference, packing, and 1x4 vs 4x1 accumulation give the
    plain run's trajectory to bf16's rounding (measured: at most 4e-3 of a reward, a wrong
    mask or a lost micro-batch is nats or a factor away)."""

    def run(name: str, **options) -> list[dict]:
        values = dict(
            eval_file=str(pairs_file), max_steps=4, per_device_train_batch_size=2,
            gradient_accumulation_steps=2, per_device_eval_batch_size=4, dtype="bfloat16",
        )  # fmt: skip
        config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / name, **{
            **values, **options
        })  # fmt: skip
        return train(config, echo=quiet).metrics

    plain = run("plain", prefix_sharing=False, padding_free=False, logprob_chunk_tokens=0)
    others = {
        "optimised": run("optimised", logprob_chunk_tokens=7, precompute_ref_log_probs=True),
        "packed": run("packed", pack_max_tokens=96, logprob_chunk_tokens=7),
    }
    one_by_four = run("1x4", per_device_train_batch_size=1, gradient_accumulation_steps=4)
    four_by_one = run("4x1", per_device_train_batch_size=4, gradient_accumulation_steps=1)
    compared = ("loss", "rewards/margins", "logps/chosen", "eval/loss", "eval/rewards/margins")
    for reference, metrics in [(plain, m) for m in others.values()] + [(one_by_four, four_by_one)]:
        for a, b in zip(reference, metrics, strict=True):
            for key in set(compared) & a.keys():
                assert b[key] == pytest.approx(a[key], rel=1e-2, abs=1e-2), key
    assert train_rows(plain)[-1]["rewards/margins"] > 0.1


@pytest.mark.parametrize(
    "options",
    [
        {"gradient_checkpointing": True},
        {"activation_offloading": True},
        {"lora_r": 4, "gradient_checkpointing": True},
        {"precompute_ref_log_probs": True},
        {"pack_max_tokens": 96},
    ],
    ids=["checkpointing", "offloading", "lora-checkpointing", "precompute", "packing"],
)
def test_memory_saving_options_compute_in_bf16(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, options
):
    """Under mixed bf16 every training forward runs a bf16 policy and a bf16 reference, with
    each memory-saving option and after a float32 evaluation (eval_dtype: auto) swapped the
    masters in: none of them leaves the model upcast to float32."""
    seen: list[set[torch.dtype]] = []
    original = step.batch_logps

    def spy(policy, reference, batch, *args, **kwargs):
        if policy.training:
            models = [policy, getattr(reference, "model", None)]
            seen.append({p.dtype for m in models if m is not None for p in m.parameters()})
        return original(policy, reference, batch, *args, **kwargs)

    monkeypatch.setattr(step, "batch_logps", spy)
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", dtype="bfloat16", max_steps=3,
        per_device_train_batch_size=3, eval_file=str(pairs_file), eval_steps=1, **options,
    )  # fmt: skip
    rows = train_rows(train(config, echo=quiet).metrics)
    # one forward a step, steps 2 and 3 after an evaluation
    assert len(seen) == 3 and all(dtypes == {torch.bfloat16} for dtypes in seen)
    assert rows[-1]["loss"] < rows[0]["loss"]
