"""Mixture-of-Experts policies: the router load-balancing loss (router_aux_loss_coef, TRL's
meaning), LoRA on fused expert weights (lora_target_parameters); and ref_model_init_kwargs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from tiny import build_tokenizer, quiet, save_tiny_model, tiny_config
from transformers import (
    GraniteMoeConfig,
    GraniteMoeForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)

from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.errors import ConfigError
from directpo.logprobs import model_inputs, model_logprobs, router_logprobs
from directpo.model_checks import check_heads
from directpo.models import resolve_router_aux
from directpo.tokenization import TokenizedPair
from directpo.trainer import train


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("mixtral")
    tokenizer = build_tokenizer("llama")
    torch.manual_seed(0)
    config = MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    MixtralForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rows(metrics: list[dict]) -> list[dict]:
    return [row for row in metrics if "loss" in row]


@pytest.mark.parametrize(
    "layout", [PLAIN, Layout(share_prefix=True, pack=True)], ids=["plain", "shared"]
)
@pytest.mark.parametrize("chunk", [0, 4])
def test_router_loss_is_the_models_own_over_real_tokens(mixtral, layout, chunk) -> None:
    model = MixtralForCausalLM.from_pretrained(mixtral)
    pairs = [
        TokenizedPair([1, 5, 9, 30], [40, 41], [42]),
        TokenizedPair([1, 7], [50, 51, 52, 53], [60, 61, 62]),
    ]
    batch = collate_pairs(pairs, 0, layout=layout)
    *logps, aux = router_logprobs(model, batch, chunk)
    for ours, plain in zip(logps, model_logprobs(model, batch, chunk), strict=True):
        torch.testing.assert_close(ours, plain)
    if layout is PLAIN:  # the architecture's own aux_loss on the same rows and padding mask
        expected = model(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask,
            output_router_logits=True,
        ).aux_loss  # fmt: skip
        torch.testing.assert_close(aux, expected)
    assert aux.requires_grad and math.isfinite(float(aux))


def test_training_adds_the_declared_coefficient_times_the_aux_loss(
    mixtral, pairs_file, tmp_path
) -> None:
    results = {}
    for coefficient in (None, 0.0, 0.5):
        out = tmp_path / f"coef-{coefficient}"
        result = train(
            tiny_config(mixtral, pairs_file, out, max_steps=2, per_device_train_batch_size=3,
                        router_aux_loss_coef=coefficient),
            echo=quiet,
        )  # fmt: skip
        results[coefficient] = result
    for coefficient, expected in ((None, 0.001), (0.5, 0.5)):  # None: Mixtral's config says 0.001
        for row in rows(results[coefficient].metrics):
            assert row["aux_loss"] > 0
            assert row["loss"] - row["loss/sigmoid"] == pytest.approx(
                expected * row["aux_loss"], rel=1e-4
            )
    for row in rows(results[0.0].metrics):
        assert "aux_loss" not in row and row["loss"] == row["loss/sigmoid"]

    def router(result) -> torch.Tensor:
        return dict(result.policy.named_parameters())["model.layers.0.mlp.gate.weight"]

    # the balancing loss reaches the routers: their update differs with the coefficient
    assert not torch.allclose(router(results[0.5]), router(results[0.0]), atol=1e-6)


def test_a_coefficient_for_a_model_without_experts_is_refused(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "moe", router_aux_loss_coef=0.01
    )
    with pytest.raises(ConfigError, match="not a Mixture-of-Experts model"):
        train(config, echo=quiet)
    plain = train(tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "ok"), echo=quiet)
    assert "aux_loss" not in rows(plain.metrics)[0]  # unset: off for a dense model
    # and the card lists no coefficient the user never set (it said router_aux_loss_coef: 0.0)
    card = (tmp_path / "ok" / "README.md").read_text()
    assert "router_aux_loss_coef" not in card and "learning_rate" in card


def test_lora_on_fused_expert_weights(mixtral, pairs_file, tmp_path) -> None:
    pytest.importorskip("peft")
    out = tmp_path / "lora"
    result = train(
        tiny_config(mixtral, pairs_file, out, lora_r=4, max_steps=3, learning_rate=5e-2,
                    lora_target_modules=["q_proj"],
                    lora_target_parameters=["mlp.experts.gate_up_proj"]),
        echo=quiet,
    )  # fmt: skip
    assert rows(result.metrics)[0]["loss/sigmoid"] == pytest.approx(math.log(2), abs=1e-6)
    saved = load_file(out / "adapter_model.safetensors")
    experts = [key for key in saved if "experts" in key]
    assert experts and any("q_proj" in key for key in saved)
    assert any(float(saved[key].abs().sum()) > 0 for key in experts if "lora_B" in key)


def test_ref_model_init_kwargs_load_the_reference_alone(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """from_pretrained keyword arguments for the reference only: here another model in a
    subfolder (as a revision would be); model_init_kwargs would apply to both."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], model)
    save_tiny_model("llama", model / "other", seed=1)
    change = {"subfolder": "other"}
    both = train(
        tiny_config(model, pairs_file, tmp_path / "both", model_init_kwargs=change), echo=quiet
    )
    assert rows(both.metrics)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)
    alone = train(
        tiny_config(model, pairs_file, tmp_path / "ref", ref_model_init_kwargs=change), echo=quiet
    )
    assert abs(rows(alone.metrics)[0]["loss"] - math.log(2)) > 1e-4
    with pytest.raises(ConfigError, match="no separate reference model is loaded"):
        tiny_config(model, pairs_file, tmp_path / "x", lora_r=4, ref_model_init_kwargs=change)
    with pytest.raises(
        ConfigError, match="ref_model_init_kwargs: dtype: float16 is directpo.s dtype option"
    ):
        tiny_config(model, pairs_file, tmp_path / "x", ref_model_init_kwargs={"dtype": "float16"})


def test_a_vision_language_moe_reads_its_experts_from_the_text_config() -> None:
    """Qwen3-VL-MoE keeps output_router_logits, router_aux_loss_coef and its experts in
    text_config (TRL reads them there): the coefficient resolves to the declared one and the
    router loss is the model's own, where both read 'not a Mixture-of-Experts model'."""
    from types import SimpleNamespace

    from transformers import Qwen3VLMoeConfig, Qwen3VLMoeForConditionalGeneration

    from directpo.models import resolve_router_aux

    torch.manual_seed(0)
    text = dict(vocab_size=128, hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_experts=4,
                num_experts_per_tok=2, head_dim=8,
                rope_parameters={"rope_type": "default", "rope_theta": 1e4,
                                 "mrope_section": [1, 1, 2]})  # fmt: skip
    vision = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2,
                  out_hidden_size=32, patch_size=14, num_position_embeddings=16,
                  deepstack_visual_indexes=[0])  # fmt: skip
    model = Qwen3VLMoeForConditionalGeneration(
        Qwen3VLMoeConfig(text_config=text, vision_config=vision)
    )
    for name, param in model.named_parameters():  # routers start at zero: make them route
        if name.endswith("mlp.gate.weight"):
            torch.nn.init.normal_(param)
    for given, expected in ((None, 0.001), (0.5, 0.5)):
        config = SimpleNamespace(router_aux_loss_coef=given)
        assert resolve_router_aux(config, model).router_aux_loss_coef == expected
    pairs = [
        TokenizedPair([1, 5, 9, 30], [40, 41], [42]),
        TokenizedPair([1, 7], [50, 51, 52, 53], [60, 61, 62]),
    ]
    batch = collate_pairs(pairs, 0, layout=PLAIN)
    *logps, aux = router_logprobs(model, batch)
    torch.testing.assert_close(logps[0], model_logprobs(model, batch)[0])
    expected = model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_router_logits=True
    ).aux_loss
    torch.testing.assert_close(aux, expected)
    assert float(aux) > 0


def granite_moe() -> GraniteMoeForCausalLM:
    """A Mixture-of-Experts model that divides its logits after the LM head (logits_scaling)."""
    torch.manual_seed(0)
    model = GraniteMoeForCausalLM(
        GraniteMoeConfig(vocab_size=len(build_tokenizer("llama")), hidden_size=32,
                         intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
                         logits_scaling=4.0)
    )  # fmt: skip
    for name, param in model.named_parameters():  # routers start at zero: make them route
        if "router" in name:
            torch.nn.init.normal_(param)
    return model


def scale_logits(model: torch.nn.Module) -> torch.nn.Module:
    """Logits scaled after the LM head under no config name (remote code): only measured."""
    forward = model.forward

    def scaled(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.logits = out.logits * 0.3
        return out

    model.forward = scaled
    return model


@pytest.mark.parametrize("build", ["granite", "measured"])
def test_a_model_that_transforms_its_logits_gets_its_router_loss_from_its_whole_forward(
    mixtral, build
) -> None:
    """Granite-MoE (logits / logits_scaling), or a model check_heads measured to transform its
    logits: log-probs of its own logits and its own aux loss, where a default run was refused
    ('set it to 0', an option the user never set)."""
    if build == "granite":
        model = granite_moe().eval()
    else:
        model = scale_logits(MixtralForCausalLM.from_pretrained(mixtral).eval())
        notices: list[str] = []
        check_heads([model], notices.append)
        assert len(notices) == 1 and "scoring from its whole logits" in notices[0]
    pairs = [
        TokenizedPair([1, 5, 9, 30], [40, 41], [42]),
        TokenizedPair([1, 7], [50, 51, 52, 53], [60, 61, 62]),
    ]
    for layout in (Layout(share_prefix=True, pack=True), PLAIN):  # a 4D mask: no crash
        batch = collate_pairs(pairs, 0, layout=layout)
        *logps, aux = router_logprobs(model, batch, 4)
        for ours, whole in zip(logps, model_logprobs(model, batch), strict=True):
            torch.testing.assert_close(ours, whole)
    own = model(**model_inputs(model, batch), output_router_logits=True).aux_loss  # plain rows
    torch.testing.assert_close(aux, own)
    assert resolve_router_aux(SimpleNamespace(router_aux_loss_coef=None), model, pytest.fail)


def test_a_declared_coefficient_without_a_router_loss_is_off_with_a_notice() -> None:
    """Llama 4's config declares a coefficient, its module no load-balancing loss: unset, the
    run trains without it and says so (it was refused: 'remove it'); set, it is refused."""
    from transformers import Llama4ForCausalLM, Llama4TextConfig

    model = Llama4ForCausalLM(
        Llama4TextConfig(vocab_size=97, hidden_size=32, intermediate_size=32,
                         intermediate_size_mlp=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, num_local_experts=2)
    )  # fmt: skip
    assert model.config.router_aux_loss_coef and hasattr(model.config, "output_router_logits")
    notices: list[str] = []
    resolved = resolve_router_aux(SimpleNamespace(router_aux_loss_coef=None), model, notices.append)
    assert resolved.router_aux_loss_coef is None  # off, and no coefficient on the card
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith("router_aux_loss_coef: off, though Llama4ForCausalLM's config")
    with pytest.raises(ConfigError, match="not a Mixture-of-Experts model"):
        resolve_router_aux(SimpleNamespace(router_aux_loss_coef=0.01), model, pytest.fail)


def test_a_granite_moe_trains_with_its_declared_coefficient(pairs_file, tmp_path) -> None:
    folder = tmp_path / "granitemoe"
    granite_moe().save_pretrained(folder)
    build_tokenizer("llama").save_pretrained(folder)
    result = train(tiny_config(folder, pairs_file, tmp_path / "out"), echo=quiet)
    assert result.global_step == 1 and rows(result.metrics)[0]["aux_loss"] > 0


@pytest.mark.parametrize("moe", [False, True])
def test_a_load_balancing_function_of_other_parameters_is_not_called_as_switchs(
    moe, pairs_file, tmp_path
) -> None:
    """Doge's load_balancing_loss_func also takes num_keys: a dense Doge (its config declares a
    coefficient) failed at the first step with an IndexError, an MoE one would have had its
    top-k passed as num_keys. Unset: off with a notice; set: refused."""
    from transformers import DogeConfig, DogeForCausalLM

    torch.manual_seed(0)
    config = DogeConfig(vocab_size=len(build_tokenizer("llama")), hidden_size=32,
                        intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, is_moe=moe, num_experts=16,
                        num_experts_per_tok=2)  # fmt: skip
    folder = tmp_path / "doge"
    DogeForCausalLM(config).save_pretrained(folder)
    build_tokenizer("llama").save_pretrained(folder)
    notices: list[str] = []
    result = train(tiny_config(folder, pairs_file, tmp_path / "out"), echo=notices.append)
    assert result.global_step == 1 and "aux_loss" not in rows(result.metrics)[0]
    assert any(n.startswith("router_aux_loss_coef: off, though DogeForCausalLM") for n in notices)
    set_by_user = tiny_config(folder, pairs_file, tmp_path / "set", router_aux_loss_coef=0.01)
    with pytest.raises(ConfigError, match="router_aux_loss_coef is 0.01 but DogeForCausalLM"):
        train(set_by_user, echo=quiet)
