"""Activation offloading: the policy's saved tensors go through host memory with the same
gradients, weights and small tensors stay, and only the policy's training forward is hooked."""

from __future__ import annotations

import copy
import gc
import weakref

import pytest
import torch
from tiny import build_model, build_tokenizer, tiny_config

from directpo import failures, logprobs, offload, trainer
from directpo.adapters import apply_lora
from directpo.batching import collate_pairs
from directpo.cli import main
from directpo.config import load_config
from directpo.errors import TrainingStopped
from directpo.logprobs import SequenceScorer
from directpo.model_preparation import enable_activation_checkpointing
from directpo.offload import OffloadActivations, offloaded
from directpo.reference import AdapterDisabledReference, FrozenModelReference
from directpo.step import batch_logps, evaluate, pair_losses
from directpo.tokenization import TokenizedPair
from directpo.tracking import read_metrics

PAIRS = [
    TokenizedPair([5, 6, 7, 8, 9, 10, 11, 12], [13, 14, 40, 41], [15, 16]),
    TokenizedPair([20, 21], [22, 23, 24, 25, 26, 27, 28, 29], [30, 31, 32]),
    TokenizedPair([40, 41, 42], [43, 44], [44, 45, 46, 47, 48]),
]


def _loss_and_grads(model, batch, hooks, chunk: int = 0):
    model.zero_grad(set_to_none=True)
    with hooks if hooks is not None else torch.enable_grad():
        logps = logprobs.model_logprobs(model, batch, chunk)[0]
    loss = -torch.nn.functional.logsigmoid(logps[:3] - logps[3:]).sum()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("variant", ["plain", "checkpointing", "lora"])
def test_losses_and_every_gradient_are_bitwise_those_without_offloading(variant) -> None:
    # train mode (transformers checkpoints only in it); the tiny model has no dropout
    model = build_model("llama", build_tokenizer("llama")).train()
    if variant == "lora":
        model = apply_lora(model, 4, 8, 0.0, ["all-linear"])
    if variant == "checkpointing":
        enable_activation_checkpointing(model)
    batch = collate_pairs(PAIRS, pad_token_id=0)
    expected_loss, expected = _loss_and_grads(model, batch, None, chunk=4)
    hooks = OffloadActivations("cpu")  # CPU tensors go through the host copies too
    loss, grads = _loss_and_grads(model, batch, hooks, chunk=4)
    assert hooks.moved > 0 and hooks.saved > hooks.moved  # copies made, weights kept
    # a checkpointed layer saves its input only: its own hooks hold the rest, recomputed
    assert (hooks.saved < 40) is (variant == "checkpointing"), hooks.saved
    assert torch.equal(loss, expected_loss)
    assert grads.keys() == expected.keys() and len(grads) > 0
    for name, grad in expected.items():
        assert torch.equal(grads[name], grad), name


def test_weights_their_views_broadcast_views_and_small_tensors_are_not_copied() -> None:
    weight = torch.nn.Parameter(torch.randn(64, 64))
    activation = torch.randn(64, 64)
    assert not offloaded(weight, "cpu")
    assert not offloaded(weight.t(), "cpu")  # what a linear layer saves
    assert not offloaded(torch.randn(255), "cpu")  # 1020 bytes
    assert offloaded(torch.randn(256), "cpu") and offloaded(activation[1:], "cpu")
    assert not offloaded(activation, "cuda") and not offloaded(activation, None)
    # a mask expanded over 8 heads (as CUDA's memory-efficient attention saves it): its copy
    # held 8 times the mask, on the host and again on the GPU in backward
    mask = torch.zeros(2, 1, 64, 64)
    assert offloaded(mask, "cpu") and not offloaded(mask.expand(2, 8, 64, 64), "cpu")
    # a linear layer's forward: its input is copied, its weight is not
    layer = torch.nn.Linear(64, 64, bias=False)
    hooks = OffloadActivations("cpu")
    with hooks:
        layer(activation.requires_grad_()).sum().backward()
    assert hooks.moved == 1 and hooks.saved == 2


def test_a_tensor_saved_twice_while_alive_is_copied_once() -> None:
    """q_proj, k_proj and v_proj save the same normed hidden state: one host copy of it."""
    torch.manual_seed(0)
    a, b = torch.nn.Linear(64, 64, bias=False), torch.nn.Linear(64, 64, bias=False)
    x = torch.randn(16, 64, requires_grad=True)
    (a(x) * b(x)).sum().backward()
    expected = [t.grad.clone() for t in (x, a.weight, b.weight)]
    for t in (x, a.weight, b.weight):
        t.grad = None
    hooks = OffloadActivations("cpu")
    with hooks:
        y = a(x) * b(x)  # x saved by both layers; a(x) and b(x) by the product
    assert hooks.saved == 6 and hooks.moved == 3 and not hooks.same  # forgotten at exit
    y.sum().backward()
    for tensor, grad in zip((x, a.weight, b.weight), expected, strict=True):
        assert torch.equal(tensor.grad, grad)


def test_a_forward_that_never_reaches_backward_frees_its_graph(monkeypatch) -> None:
    """A step out of memory after part of its forward (auto_find_batch_size runs it again):
    once its tensors are dropped, its host copies are freed. exp keeps its own (small) output,
    which the hook handed back as it was: a cycle only backward broke."""
    copies: list[weakref.ref] = []
    to_host = offload.to_host

    def recording(tensor: torch.Tensor) -> torch.Tensor:
        copies.append(weakref.ref(host := to_host(tensor)))
        return host

    monkeypatch.setattr(offload, "to_host", recording)
    x = torch.randn(64, 64, requires_grad=True)
    with OffloadActivations("cpu"):
        out = (x * x).sum(-1).exp()  # x copied; exp's 64 floats kept
    assert len(copies) == 1 and copies[0]() is not None
    del out
    gc.collect()
    assert copies[0]() is None


def _hooked_calls(monkeypatch) -> list[tuple[bool, bool]]:
    """(grad enabled, saved-tensor hooks active) of each model_logprobs call."""
    calls: list[tuple[bool, bool]] = []
    original = logprobs.model_logprobs

    def recording(*args, **kwargs):
        hooked = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
        calls.append((torch.is_grad_enabled(), hooked))
        return original(*args, **kwargs)

    monkeypatch.setattr(logprobs, "model_logprobs", recording)
    return calls


@pytest.mark.parametrize("reference_kind", ["frozen", "adapters off"])
def test_only_the_policys_forward_runs_under_the_hooks(monkeypatch, reference_kind) -> None:
    model = build_model("llama", build_tokenizer("llama"))
    if reference_kind == "frozen":
        reference = FrozenModelReference(copy.deepcopy(model))
    else:
        model = apply_lora(model, 4, 8, 0.0, ["all-linear"])
        reference = AdapterDisabledReference(model)
    policy = SequenceScorer(model)
    calls = _hooked_calls(monkeypatch)
    hooks = OffloadActivations("cpu")
    batch = collate_pairs(PAIRS, pad_token_id=0)
    batch_logps(policy, reference, batch, offload=hooks).chosen.sum().backward()
    assert calls == [(True, True), (False, False)]  # the policy hooked, the reference not
    assert hooks.moved > 0
    config = tiny_config("unused", None, "unused", per_device_eval_batch_size=3)
    moved = hooks.moved
    evaluate(policy, reference, list(PAIRS), config, 0, torch.device("cpu"))
    assert calls[2:] == [(False, False), (False, False)] and hooks.moved == moved
    losses = pair_losses(policy, reference, batch, config, offload=hooks)[0]
    losses.sum().backward()
    assert calls[4:] == [(True, True), (False, False)] and hooks.moved == 2 * moved


def test_a_trl_config_with_activation_offloading_trains(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    """TRL's key ports; the hooks wrap every training forward (nothing else), copies made (the
    hooks told to move CPU tensors here) and the losses are those of a run without it."""
    made: list[OffloadActivations] = []

    def moving(enabled, device, echo):  # CPU tensors moved, so that the copies really run
        assert enabled and device.type == "cpu"
        made.append(OffloadActivations("cpu"))
        return made[-1]

    calls = _hooked_calls(monkeypatch)
    losses = {}
    for enabled in (False, True):
        out = tmp_path / f"out-{enabled}"
        recipe = tmp_path / f"{enabled}.yaml"
        recipe.write_text(
            f"model_name_or_path: {tiny_model_dirs['llama']}\ntrain_file: {pairs_file}\n"
            f"eval_file: {pairs_file}\noutput_dir: {out}\nactivation_offloading: {enabled}\n"
            "max_steps: 2\neval_steps: 1\nlogging_steps: 1\nper_device_train_batch_size: 3\n"
            "learning_rate: 0.005\nreport_to: none\nsave_strategy: 'no'\n"
        )
        assert load_config(str(recipe)).activation_offloading is enabled
        if enabled:
            monkeypatch.setattr("directpo.run.activation_offload", moving)
            calls.clear()
        assert main(["train", str(recipe)]) == 0
        losses[enabled] = [r["loss"] for r in read_metrics(out) if "loss" in r]
    assert len(made) == 1 and made[0].moved > 0
    started = [line for line in capsys.readouterr().out.splitlines() if line.startswith("training")]
    assert ["activations offloaded to CPU" in line for line in started] == [False, True]
    trained = [hooked for grad, hooked in calls if grad]
    assert trained == [True, True]  # 2 steps, 1 micro-batch each
    assert not any(hooked for grad, hooked in calls if not grad)  # reference and evaluation
    assert losses[True] == losses[False] and len(losses[True]) == 2


def test_on_a_cpu_the_run_says_it_has_no_effect(tiny_model_dirs, pairs_file, tmp_path, capsys):
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "o", activation_offloading=True
    )
    hooks = offload.activation_offload(True, torch.device("cpu"), print)
    assert hooks is not None and hooks.device_type is None
    assert capsys.readouterr().out == (
        "note: activation_offloading has no effect on cpu: activations are in host memory\n"
    )
    assert offload.activation_offload(False, torch.device("cuda"), print) is None
    assert trainer.train(config) is not None
    assert "activation_offloading has no effect on cpu" in capsys.readouterr().out


def test_under_fsdp2_the_gathered_weights_stay_and_the_losses_are_the_same(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """distributed: fsdp on one process, bf16: FSDP2's gathered weights (views of its unsharded
    parameters) are not copied: as many tensors move as in the run without FSDP."""
    made: list[OffloadActivations] = []

    def moving(enabled, device, echo):
        made.append(OffloadActivations("cpu") if enabled else None)
        return made[-1]

    monkeypatch.setattr("directpo.run.activation_offload", moving)
    losses = {}
    for distributed in ("auto", "fsdp"):
        for enabled in (False, True):
            config = tiny_config(
                tiny_model_dirs["gpt2"], pairs_file, tmp_path / f"{distributed}-{enabled}",
                distributed=distributed, dtype="bfloat16", max_steps=2,
                per_device_train_batch_size=3, activation_offloading=enabled,
            )  # fmt: skip
            result = trainer.train(config, echo=lambda _: None)
            losses[distributed, enabled] = [r["loss"] for r in result.metrics if "loss" in r]
    plain, sharded = made[1], made[3]
    assert plain.moved > 0 and sharded.moved == plain.moved and sharded.saved == plain.saved
    assert losses["fsdp", True] == losses["fsdp", False] == losses["auto", True]


def test_out_of_gpu_memory_advises_activation_offloading_unless_the_run_has_it(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A step out of GPU memory names activation_offloading: true among what lowers it; not to
    a run that offloads already, nor for host memory (offloading fills it)."""

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "pair_losses", out_of_memory)
    said = {}
    for enabled in (False, True):
        config = tiny_config(
            tiny_model_dirs["llama"], pairs_file, tmp_path / f"o-{enabled}",
            activation_offloading=enabled,
        )  # fmt: skip
        with pytest.raises(TrainingStopped) as info:
            trainer.train(config, echo=lambda _: None)
        said[enabled] = str(info.value)
    assert said[False].startswith("out of GPU memory at step 1")
    # (train(config): a Python caller's keywords; a recipe's words were said to every caller)
    assert "does it), pass gradient_checkpointing=True, activation_offloading=True, " in said[False]
    assert "activation_offloading" not in said[True]
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "host")
    assert "activation_offloading" not in failures.memory_knobs(config, False, "host")
