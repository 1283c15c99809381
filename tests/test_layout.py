"""Prefix sharing and padding-free packing give exactly the plain layout's log-probs."""

from __future__ import annotations

import random

import pytest
import torch
from tiny import tiny_config
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from directpo.batching import PLAIN, Layout, collate_pairs, pack_rows
from directpo.logprobs import attention_allowed, model_logprobs
from directpo.model_checks import check_layout, choose_layout
from directpo.tokenization import TokenizedPair
from directpo.trainer import train

VOCAB = 97
PAIRS = [
    TokenizedPair(list(range(1, 30)), [40, 41], [42]),  # prompt much longer than completions
    TokenizedPair([5], [50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61], [62, 63, 64]),
    TokenizedPair([7, 8, 9], [70], [71, 72, 73, 74, 75, 76]),
    TokenizedPair([11, 12], [80, 81, 82], [83, 84, 85]),  # same length: a tie inside the row
]
LAYOUTS = {
    "shared": Layout(share_prefix=True),
    "packed": Layout(pack=True),
    "shared+packed": Layout(share_prefix=True, pack=True),
    "shared+packed-wide": Layout(share_prefix=True, pack=True, pack_max_tokens=200),
}


def build(style: str, attention: str) -> torch.nn.Module:
    torch.manual_seed(0)
    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    heads = dict(num_attention_heads=4, num_key_value_heads=2, attn_implementation=attention)
    if style == "llama":
        return LlamaForCausalLM(LlamaConfig(**sizes, **heads))
    if style == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**sizes, **heads))
    gpt2 = GPT2Config(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        attn_implementation=attention,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(gpt2)


def logps_and_grads(model, layout, chunk_tokens):
    model.zero_grad()
    logps, counts, log1m = model_logprobs(
        model, collate_pairs(PAIRS, 0, layout=layout), chunk_tokens
    )[:3]
    (logps * torch.linspace(0.5, 1.5, len(logps))).sum().add(0.3 * log1m.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), counts, log1m.detach(), grads


def test_shared_layout_positions_branches_and_predictors() -> None:
    pair = TokenizedPair([1, 2, 3], [4, 5], [6, 7, 8])
    batch = collate_pairs([pair], 0, layout=Layout(share_prefix=True))
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 3, 4, 5]]  # rejected restart at 3
    assert batch.branch_ids.tolist() == [[0, 0, 0, 1, 1, 2, 2, 2]]
    # the first rejected token (6) is predicted by the last prompt token (index 2), not by 5
    assert batch.predict_from.tolist() == [2, 3, 2, 5, 6]
    assert batch.target_sequence.tolist() == [0, 0, 1, 1, 1]
    allowed = attention_allowed(batch)[0].int()
    assert allowed[5].tolist() == [1, 1, 1, 0, 0, 1, 0, 0]  # rejected: prompt + itself
    assert allowed[4].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]  # chosen: prompt + chosen, causal


def test_packed_rows_are_block_diagonal_and_restart_positions() -> None:
    batch = collate_pairs(PAIRS, 0, layout=Layout(share_prefix=True, pack=True))
    lengths = [len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in PAIRS]
    assert lengths == [32, 16, 10, 8]
    # rows as wide as the longest segment; first fit: [32], [16, 10], [8]
    assert batch.input_ids.shape == (3, 32)
    assert batch.num_tokens == sum(lengths)  # computed: each prompt once, no padding
    unshared = [2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in PAIRS]
    assert batch.sequence_tokens == sum(unshared)  # what tokens/s reports, in any layout
    allowed = attention_allowed(batch)
    for row in range(3):
        segments = batch.segment_ids[row]
        for q in range(batch.input_ids.shape[1]):
            for k in range(batch.input_ids.shape[1]):
                if segments[q] != segments[k] and q != k:
                    assert not allowed[row, q, k]
        starts = [t for t in range(len(segments)) if t == 0 or segments[t] != segments[t - 1]]
        assert all(batch.position_ids[row, t] == 0 for t in starts if segments[t] >= 0)


def test_pack_rows_first_fit_within_budget() -> None:
    rng = random.Random(0)
    for _ in range(200):
        lengths = [rng.randint(1, 50) for _ in range(rng.randint(1, 20))]
        budget = max(lengths) + rng.randint(0, 60)
        rows = pack_rows(lengths, budget)
        assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in row) <= budget for row in rows)
        # first fit: no two rows could have been merged
        loads = sorted(sum(lengths[i] for i in row) for row in rows)
        assert len(loads) < 2 or loads[0] + loads[1] > budget


@pytest.mark.parametrize("style", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("layout_name", list(LAYOUTS))
@pytest.mark.parametrize("chunk_tokens", [0, 5])
def test_values_and_gradients_equal_the_plain_layout(
    style, attention, layout_name, chunk_tokens
) -> None:
    model = build(style, attention).eval()
    plain = logps_and_grads(model, PLAIN, 0)
    laid_out = logps_and_grads(model, LAYOUTS[layout_name], chunk_tokens)
    assert torch.allclose(laid_out[0], plain[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(laid_out[1], plain[1])
    assert torch.allclose(laid_out[2], plain[2], atol=1e-5, rtol=1e-5)
    assert laid_out[3].keys() == plain[3].keys()
    for name, grad in plain[3].items():
        assert torch.allclose(laid_out[3][name], grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_no_cross_contamination_between_packed_pairs(style) -> None:
    """Changing one pair's tokens leaves every other pair of its row unchanged.

    (With a 2D padding mask and restarting position ids, current transformers would let the
    pairs of a row attend to each other on CPU; the 4D mask is what keeps them apart.)
    """
    model = build(style, "sdpa").eval()
    layout = Layout(share_prefix=True, pack=True, pack_max_tokens=1000)
    before = collate_pairs(PAIRS, 0, layout=layout)
    assert before.input_ids.shape[0] == 1  # all four pairs share one row
    changed = [TokenizedPair([90] * 40, [91, 92], [93]), *PAIRS[1:]]
    after = collate_pairs(changed, 0, layout=layout)
    with torch.no_grad():
        logps_before = model_logprobs(model, before)[0]
        logps_after = model_logprobs(model, after)[0]
    n = len(PAIRS)
    others = [i for i in range(2 * n) if i not in (0, n)]
    assert torch.allclose(logps_after[others], logps_before[others], atol=1e-5)
    assert not torch.allclose(logps_after[[0, n]], logps_before[[0, n]], atol=1e-2)


class PositionBlindGPT2(GPT2LMHeadModel):
    """A model that ignores position ids: the shared layout would score it wrongly."""

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, **kwargs):
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


class No4DMaskLlama(LlamaForCausalLM):
    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        if attention_mask is not None and attention_mask.dim() == 4:
            raise ValueError("custom 4D attention masks are not supported")
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def test_models_that_cannot_take_the_layout_fall_back_with_a_notice() -> None:
    layout = Layout(share_prefix=True, pack=True)
    good = build("llama", "sdpa")
    assert check_layout(good, layout) is None
    assert choose_layout(layout, [good], echo=pytest.fail) == layout

    blind = PositionBlindGPT2(build("gpt2", "sdpa").config)
    assert "differ" in check_layout(blind, Layout(share_prefix=True))
    refusing = No4DMaskLlama(build("llama", "sdpa").config)
    assert "4D attention masks are not supported" in check_layout(refusing, layout)
    notices: list[str] = []
    assert choose_layout(layout, [good, refusing], notices.append) == PLAIN
    assert len(notices) == 1 and "No4DMaskLlama" in notices[0] and "\n" not in notices[0]
    assert refusing.training  # the probe leaves the training mode as it found it
    from directpo.adapters import apply_lora  # a LoRA policy: the notice names the model

    wrapped = apply_lora(No4DMaskLlama(build("llama", "sdpa").config), 4, 8, 0.0, ["all-linear"])
    assert choose_layout(layout, [wrapped], notices.append) == PLAIN
    assert notices[-1].startswith("prefix_sharing/padding_free: off for No4DMaskLlama,")


@pytest.mark.parametrize("family", ["mistral", "gemma2"])  # every layer / every other layer
def test_sliding_window_models_keep_the_layout_only_within_their_window(family) -> None:
    torch.manual_seed(0)
    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    heads = dict(num_attention_heads=4, num_key_value_heads=2, sliding_window=16)
    if family == "mistral":
        model = MistralForCausalLM(MistralConfig(**sizes, **heads))
    else:
        model = Gemma2ForCausalLM(Gemma2Config(**sizes, **heads, head_dim=8))
    layout = Layout(share_prefix=True, pack=True)
    plain = model_logprobs(model, collate_pairs(PAIRS, 0))[0]
    laid_out = model_logprobs(model, collate_pairs(PAIRS, 0, layout=layout))[0]
    # the layout's mask lets the 31-token pair see past the window: what must never train
    assert not torch.allclose(laid_out, plain, atol=1e-3)
    assert check_layout(model, layout) is None  # its short synthetic pairs cannot tell

    longest = max(pair.longest_sequence for pair in PAIRS)
    notices: list[str] = []
    assert choose_layout(layout, [model], notices.append, longest=longest) == PLAIN
    assert len(notices) == 1 and "sliding-window attention sees the last 16" in notices[0]
    assert choose_layout(layout, [model], notices.append) == PLAIN  # unbounded lengths
    # up to the window it changes nothing: the layout stays
    assert choose_layout(layout, [model], pytest.fail, longest=16) == layout
    assert choose_layout(layout, [build("llama", "sdpa")], pytest.fail) == layout


def test_a_window_size_that_no_layer_uses_keeps_the_layout() -> None:
    """A config that lists every layer as full attention (a Gemma 3 variant, older Qwen2 files
    with use_sliding_window: false) keeps a window size it never uses: no fallback for it."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from directpo.model_checks import attention_window

    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                 sliding_window=16)  # fmt: skip
    full = Gemma3ForCausalLM(Gemma3TextConfig(**sizes, layer_types=["full_attention"] * 2))
    assert attention_window(full) is None
    layout = Layout(share_prefix=True, pack=True)
    assert choose_layout(layout, [full], pytest.fail) == layout
    plain = model_logprobs(full, collate_pairs(PAIRS, 0))[0]
    laid_out = model_logprobs(full, collate_pairs(PAIRS, 0, layout=layout))[0]
    assert torch.allclose(laid_out, plain, atol=1e-4)
    mixed = Gemma3TextConfig(**sizes, layer_types=["sliding_attention", "full_attention"])
    assert attention_window(Gemma3ForCausalLM(mixed)) == 16


def falcon_h1() -> torch.nn.Module:
    """A hybrid whose every layer runs a Mamba-2 mixer beside attention (layer_types: hybrid)."""
    from transformers import FalconH1Config, FalconH1ForCausalLM

    torch.manual_seed(0)
    config = FalconH1Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            head_dim=8, mamba_d_ssm=64, mamba_n_heads=8, mamba_d_head=8,
                            mamba_d_state=8, initializer_range=0.2)  # fmt: skip
    return FalconH1ForCausalLM(config).to(torch.bfloat16).eval()


def lfm2() -> torch.nn.Module:
    from transformers import Lfm2Config, Lfm2ForCausalLM

    torch.manual_seed(0)
    config = Lfm2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                        layer_types=["conv", "full_attention"], initializer_range=0.2)  # fmt: skip
    return Lfm2ForCausalLM(config).eval()


@pytest.mark.parametrize("make", [falcon_h1, lfm2])
def test_models_with_recurrent_layers_never_share_or_pack(make) -> None:
    """A recurrent state (Mamba, short conv) runs from one sequence of a row into the next: the
    layout is wrong for them by nats on real pairs, while check_layout's short probes in bf16
    stayed within its tolerance (a bf16 Falcon-H1 trained on those log-probs)."""
    from directpo.model_checks import stateful_layers

    model = make()
    layout = Layout(share_prefix=True, pack=True)
    with torch.no_grad():
        plain = model_logprobs(model, collate_pairs(PAIRS, 0))[0]
        laid_out = model_logprobs(model, collate_pairs(PAIRS, 0, layout=layout))[0]
    assert (laid_out - plain).abs().max() > 0.3
    notices: list[str] = []
    assert choose_layout(layout, [model], notices.append, longest=32) == PLAIN
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "layers carry a state from token to token" in notices[0]
    assert stateful_layers(model) in ("hybrid", "conv")
    assert stateful_layers(build("llama", "sdpa")) is None


OPTIMISATIONS_OFF = dict(prefix_sharing=False, padding_free=False, logprob_chunk_tokens=0)
OPTIMISATIONS_ON = dict(logprob_chunk_tokens=7, precompute_ref_log_probs=True)


@pytest.mark.parametrize("style", ["llama", "gpt2"])
def test_training_trajectory_is_the_same_with_optimisations_on_and_off(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, style
) -> None:
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))

    lines: list[str] = []

    def run(name: str, **options):
        config = tiny_config(
            tiny_model_dirs[style],
            pairs_file,
            tmp_path / name,
            eval_file=str(pairs_file),
            max_steps=4,
            per_device_train_batch_size=2,
            gradient_accumulation_steps=2,
            per_device_eval_batch_size=4,
            **options,
        )
        return train(config, echo=lines.append)

    off, on = run("off", **OPTIMISATIONS_OFF), run("on", **OPTIMISATIONS_ON)
    assert not any("prefix_sharing/padding_free: off" in line for line in lines)
    assert any("reference log-probs: computed" in line for line in lines)
    assert on.metrics[0]["tokens/s"] > 0 and "eval/loss" in on.metrics[-1]
    compared = 0
    for step, (a, b) in enumerate(zip(off.metrics, on.metrics, strict=True)):
        for key in a.keys() - {"pairs/s", "tokens/s"}:
            if step == 0 and key == "rewards/accuracies":
                # policy == reference at step 1: every reward is 0 up to the float32 rounding of
                # the precomputed pass's other batches (~1e-8), and which of a pair's two is
                # larger is a coin toss that depends on torch's thread count (gpt2 read 0.25
                # with 2 threads, 0.0 with 1); the margins themselves are compared
                assert abs(b["rewards/margins"]) < 1e-6
                continue
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-4), key
            compared += 1
    assert compared > 30
    for (name, p_off), p_on in zip(
        off.policy.named_parameters(), on.policy.parameters(), strict=True
    ):
        assert torch.allclose(p_on, p_off, atol=1e-4), name


def test_sequences_past_the_trained_positions_of_a_rotary_model_are_noted() -> None:
    """A rotary model has no position table to index past (check_positions refuses those):
    sequences longer than its max_position_embeddings trained silently on extrapolated
    positions. Now one note per model folder, none within the range or with rope scaling."""
    from directpo.model_checks import trained_positions_notes

    sizes = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1)
    sizes.update(num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    plain = Qwen2ForCausalLM(Qwen2Config(**sizes))
    models = [("model_name_or_path", "m", plain), ("ref_model_name_or_path", "m", plain)]
    notes = trained_positions_notes(models, 65)
    assert notes == [
        "note: sequences here reach 65 tokens, past the 64 positions model_name_or_path 'm' was "
        "trained on (max_position_embeddings): positions beyond are extrapolated, which "
        "degrades most models; set max_length: 64 to cut them"
    ]
    assert "have no length limit" in trained_positions_notes(models, None)[0]
    assert trained_positions_notes(models, 64) == []
    for scaling in ({"rope_type": "linear", "factor": 4.0}, {"rope_type": "yarn", "factor": 4.0}):
        scaled = Qwen2ForCausalLM(Qwen2Config(**sizes, rope_scaling=scaling))
        assert trained_positions_notes([("model_name_or_path", "s", scaled)], 200) == []
        # the scaled rotary positions of shared/packed rows give the plain rows' log-probs
        layout = Layout(share_prefix=True, pack=True)
        assert choose_layout(layout, [scaled], pytest.fail, longest=200) == layout
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=16, n_head=2))
    assert trained_positions_notes([("model_name_or_path", "g", gpt2)], 65) == []  # refused


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_layers_share_one_additive_mask(monkeypatch, dtype) -> None:
    """A boolean 4D mask is converted to a float one inside every SDPA call, and each copy is
    kept for backward: a [T, T] float tensor per layer (7.5 GB more than the plain layout for
    SmolLM2 at 8k tokens on CPU). The layout's mask now reaches every layer as one additive
    tensor in the model's dtype, and gives the plain rows' log-probs."""
    import torch.nn.functional as F

    masks: list[torch.Tensor] = []
    sdpa = F.scaled_dot_product_attention

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        masks.append(kwargs.get("attn_mask"))
        return sdpa(*args, **kwargs)

    model = build("llama", "sdpa").to(dtype)
    plain = model_logprobs(model, collate_pairs(PAIRS, 0))[0]
    monkeypatch.setattr(F, "scaled_dot_product_attention", recording)
    layout = LAYOUTS["shared+packed"]
    batch = collate_pairs(PAIRS, 0, layout=layout)
    shared = model_logprobs(model, batch)[0]
    assert len(masks) == 2 and masks[0] is masks[1]  # one tensor for both layers
    assert masks[0].dtype == dtype
    allowed = attention_allowed(batch)[:, None]
    assert torch.equal(masks[0] == 0, allowed)
    assert bool((masks[0][~allowed] == torch.finfo(dtype).min).all())
    assert torch.allclose(shared, plain, atol=1e-4 if dtype == torch.float32 else 0.3)
