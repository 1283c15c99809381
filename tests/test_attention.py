"""Varlen attention (attention.py): the segment bookkeeping renders the same attention rule as
the dense mask, and models running it give the plain layout's log-probs and gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_layout import PAIRS, build, logps_and_grads
from tiny import tiny_config

import directpo.attention as attention
from directpo.attention import VarlenPlan, choose_implementation, register
from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.logprobs import attention_allowed, attention_implementation, model_logprobs
from directpo.model_checks import choose_layout
from directpo.tokenization import TokenizedPair
from directpo.trainer import train


def plan_allowed(plan: VarlenPlan, tokens: int) -> torch.Tensor:
    """[tokens, tokens] bool over the flattened batch: the pairs the plan lets attend."""
    allowed = torch.zeros(tokens, tokens, dtype=torch.bool)
    for q0, q1, k0, k1 in plan.segments:
        keys = plan.key_index[k0:k1]
        n_q, n_k = q1 - q0, k1 - k0
        visible = torch.ones(n_q, n_k, dtype=torch.bool).tril(n_k - n_q)  # bottom-right causal
        for i in range(n_q):
            allowed[q0 + i, keys[visible[i]]] = True
    return allowed


def dense_allowed(batch) -> torch.Tensor:
    """The dense rule (``may_attend``) per row, as one block-diagonal matrix."""
    rows = attention_allowed(batch)
    return torch.block_diag(*rows)


pairs_strategy = st.lists(
    st.tuples(st.integers(0, 6), st.integers(0, 5), st.integers(0, 5)).filter(
        lambda t: t[0] + t[1] > 0 and t[0] + t[2] > 0
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(
    lengths=pairs_strategy,
    share=st.booleans(),
    budget=st.sampled_from([0, 12, 40]),
    multiple=st.sampled_from([1, 8]),
)
def test_plan_renders_the_dense_attention_rule(lengths, share, budget, multiple) -> None:
    pairs = [TokenizedPair(list(range(1, p + 1)), [50] * c, [60] * r) for p, c, r in lengths]
    for varlen_rows in (True, False):
        layout = Layout(share, True, budget if varlen_rows else 0, True, multiple)
        batch = collate_pairs(pairs, 0, layout=layout)
        tokens = batch.input_ids.numel()
        assert int(batch.varlen.cu_seq_q[-1]) == tokens  # every token is a query exactly once
        assert torch.equal(plan_allowed(batch.varlen, tokens), dense_allowed(batch))


def test_prefix_is_computed_once_and_rejected_keys_continue_from_it() -> None:
    pair = TokenizedPair([1, 2, 3], [4, 5], [6, 7, 8])
    batch = collate_pairs([pair], 0, layout=Layout(True, True, varlen=True))
    plan = batch.varlen
    assert plan.cu_seq_q.tolist() == [0, 5, 8]  # [prompt + chosen], [rejected]
    assert plan.key_index.tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 5, 6, 7]  # prompt keys again
    assert (plan.max_q, plan.max_k) == (5, 6)


@pytest.mark.parametrize("style", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("name", ["shared", "packed", "shared+packed", "shared+packed-wide"])
def test_varlen_gives_the_plain_layout_values_and_gradients(style, name) -> None:
    from test_layout import LAYOUTS

    layout = LAYOUTS[name]
    plain_model = build(style, "sdpa").eval()
    varlen_model = build(style, register()).eval()
    expected = logps_and_grads(plain_model, PLAIN, 0)
    for chunk in (0, 7):
        got = logps_and_grads(varlen_model, Layout(**{**vars(layout), "varlen": True}), chunk)
        torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
        assert torch.equal(got[1], expected[1])
        torch.testing.assert_close(got[2], expected[2], atol=1e-5, rtol=1e-5)
        for key, grad in expected[3].items():
            torch.testing.assert_close(got[3][key], grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("style", ["llama", "qwen2", "gpt2"])
def test_a_planned_forward_skips_transformers_packed_row_detection(style, monkeypatch) -> None:
    """Its ``.all()`` is a device sync per forward on CUDA; a varlen forward never uses it."""
    from test_layout import LAYOUTS
    from transformers import masking_utils

    calls: list[torch.Tensor] = []
    detect = masking_utils.find_packed_sequence_indices

    def spy(position_ids: torch.Tensor) -> torch.Tensor | None:
        calls.append(position_ids)
        return detect(position_ids)

    monkeypatch.setattr(masking_utils, "find_packed_sequence_indices", spy)
    varlen_model = build(style, register()).eval()
    layout = Layout(**{**vars(LAYOUTS["shared+packed"]), "varlen": True})
    with torch.no_grad():
        got = model_logprobs(varlen_model, collate_pairs(PAIRS, 0, layout=layout), 0)[0]
    assert calls == []
    plain_model = build(style, "sdpa").eval()
    with torch.no_grad():
        plain = model_logprobs(plain_model, collate_pairs(PAIRS, 0, layout=PLAIN), 0)[0]
        torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-5)
        # any other implementation still gets the detection (the spy sees it)
        plain_model(
            input_ids=torch.tensor([[1, 2, 3, 4]]),
            position_ids=torch.tensor([[0, 1, 0, 1]]),
            use_cache=False,
        )
    assert len(calls) == 1


def test_a_varlen_failure_falls_back_to_the_dense_mask(monkeypatch) -> None:
    model = build("llama", register())

    def broken(*args, **kwargs):
        raise RuntimeError("no kernel for this device")

    monkeypatch.setattr(attention, "_varlen", broken)
    lines: list[str] = []
    layout = choose_layout(Layout(True, True), [model], lines.append)
    assert layout == Layout(True, True)  # sharing and packing kept, through SDPA's mask
    assert attention_implementation(model) == "sdpa"
    assert any("directpo_varlen off (RuntimeError: no kernel" in line for line in lines)


def soft_capped_gemma2(attention: str) -> torch.nn.Module:
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                          attn_logit_softcapping=1.0, attn_implementation=attention)  # fmt: skip
    return Gemma2ForCausalLM(config).eval()


@pytest.mark.parametrize("layout", [Layout(True, True), PLAIN])
def test_a_model_sdpa_cannot_run_leaves_varlen_for_eager(layout) -> None:
    """Gemma 2's soft-capped attention logits: varlen refuses them, and the fallback set SDPA,
    which transformers refuses for Gemma 2 (a ValueError's traceback at start: attn_implementation
    varlen, or auto on CUDA in bf16); plain rows went through SDPA inside varlen (the same error
    at the first forward). Now eager, with the values of a model built eager."""
    eager = model_logprobs(soft_capped_gemma2("eager"), collate_pairs(PAIRS, 0))[0]
    model = soft_capped_gemma2(register())
    lines: list[str] = []
    assert choose_layout(layout, [model], lines.append, longest=64) == layout
    assert attention_implementation(model) == "eager"
    if not layout.is_plain:
        [line] = lines
        assert line.startswith("attention: directpo_varlen off (ValueError: ") and "softcap" in line
        assert line.endswith("; using eager with a dense mask")
    laid_out = model_logprobs(model, collate_pairs(PAIRS, 0, layout=layout))[0]
    assert torch.allclose(laid_out, eager, atol=1e-5)
    assert choose_implementation("varlen", torch.device("cpu"), torch.float32, True) == "auto"


def test_implementation_choice() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert choose_implementation("auto", cpu, torch.bfloat16, False) == "auto"
    assert choose_implementation("varlen", cpu, torch.float32, False) == "directpo_varlen"
    assert choose_implementation("sdpa", cuda, torch.bfloat16, False) == "sdpa"
    assert choose_implementation("auto", cuda, torch.float32, False) in ("auto",)
    assert choose_implementation("auto", cuda, torch.bfloat16, True) == "auto"  # plain rows


def test_training_with_varlen_follows_the_dense_mask_run(tiny_model_dirs, pairs_file, tmp_path):
    runs = {}
    for attn in ("sdpa", "varlen"):
        config = tiny_config(
            tiny_model_dirs["llama"], pairs_file, tmp_path / attn, attn_implementation=attn,
            max_steps=3, per_device_train_batch_size=3,
        )  # fmt: skip
        lines: list[str] = []
        runs[attn] = [r for r in train(config, echo=lines.append).metrics if "loss" in r]
        assert not any("off" in line for line in lines)
    for a, b in zip(runs["varlen"], runs["sdpa"], strict=True):
        for key in ("loss", "rewards/margins", "logps/chosen", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
