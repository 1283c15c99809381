"""FlexAttention (flexattention.py): the collator's blocks are the ones ``create_block_mask`` finds
from the dense attention rule, and models running ``directpo_flex`` give the plain layout's
log-probs. Forward only: PyTorch's FlexAttention has no backward on CPU (gpu_smoke.py checks the
gradients on CUDA)."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_attention import pairs_strategy
from test_layout import LAYOUTS, PAIRS, build
from tiny import tiny_config
from torch.nn.attention.flex_attention import create_block_mask
from transformers import Qwen2Config, Qwen2ForCausalLM

import directpo.flexattention as flexattention
import directpo.model_checks as model_checks
from directpo.attention import choose_implementation
from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.config import DPOConfig
from directpo.device_checks import check_device
from directpo.errors import ConfigError
from directpo.flexattention import BLOCK, flex_blocks, register
from directpo.logprobs import attention_implementation, may_attend, model_logprobs
from directpo.model_checks import choose_layout
from directpo.tokenization import TokenizedPair
from directpo.trainer import train


def rule_blocks(batch, block: int):
    """``create_block_mask`` over the dense rule, every (query, key) pair evaluated."""
    segment, branch = batch.segment_ids, batch.branch_ids

    def mask_mod(b, h, q, k):
        return may_attend(q, k, segment[b, q], segment[b, k], branch[b, q], branch[b, k])

    rows, width = segment.shape
    return create_block_mask(mask_mod, rows, None, width, width, device="cpu", BLOCK_SIZE=block)


def visited(counts: torch.Tensor, indices: torch.Tensor) -> list[list[list[int]]]:
    """Per row and query block: the key blocks listed (the first ``count`` indices)."""
    return [
        [indices[r, 0, qb, : int(counts[r, 0, qb])].tolist() for qb in range(counts.shape[-1])]
        for r in range(counts.shape[0])
    ]


@settings(max_examples=60, deadline=None)
@given(
    lengths=pairs_strategy,
    share=st.booleans(),
    pack=st.booleans(),
    budget=st.sampled_from([0, 12, 40]),
    multiple=st.sampled_from([1, 8]),
    block=st.sampled_from([2, 4, 8]),
)
def test_collator_blocks_are_the_dense_rules_blocks(
    lengths, share, pack, budget, multiple, block
) -> None:
    if not (share or pack):
        share = True
    pairs = [TokenizedPair(list(range(1, p + 1)), [50] * c, [60] * r) for p, c, r in lengths]
    batch = collate_pairs(pairs, 0, layout=Layout(share, pack, budget, pad_multiple=multiple))
    spans = segment_spans(batch)
    mine = flex_blocks(batch.input_ids.shape[1], spans, block)
    expected = rule_blocks(batch, block)
    assert visited(mine.kv_num_blocks, mine.kv_indices) == visited(
        expected.kv_num_blocks, expected.kv_indices
    )
    assert visited(mine.full_kv_num_blocks, mine.full_kv_indices) == visited(
        expected.full_kv_num_blocks, expected.full_kv_indices
    )


def segment_spans(batch) -> list[list[tuple[int, int, list[int]]]]:
    """The collator's (offset, prompt length, completion lengths) per row, read back from ids."""
    rows = []
    for segment, branch in zip(batch.segment_ids.tolist(), batch.branch_ids.tolist(), strict=True):
        spans, t = [], 0
        while t < len(segment) and segment[t] >= 0:
            start, index = t, segment[t]
            while t < len(segment) and segment[t] == index:
                t += 1
            branches = branch[start:t]
            n_prompt = branches.count(0)
            completions = [branches.count(b) for b in range(1, max(branches) + 1)]
            spans.append((start, n_prompt, completions))
        rows.append(spans)
    return rows


def test_the_collator_attaches_blocks_that_skip_what_no_token_sees() -> None:
    """Two long pairs in one row: the second pair's queries never visit the first pair's keys,
    and the chosen branch's keys are skipped by the rejected queries."""
    pair = TokenizedPair(list(range(1, 257)), [5] * 256, [6] * 256)  # 2 blocks each
    layout = Layout(share_prefix=True, pack=True, flex=True, pad_multiple=BLOCK)
    batch = collate_pairs([pair, pair], 0, layout=layout)
    blocks = batch.flex
    assert batch.input_ids.shape == (1, 6 * 256)  # one row, 12 blocks
    rows = visited(blocks.kv_num_blocks, blocks.kv_indices)[0]
    full = visited(blocks.full_kv_num_blocks, blocks.full_kv_indices)[0]
    seen = [sorted(p + f) for p, f in zip(rows, full, strict=True)]
    assert seen[0] == [0] and full[1] == [0]  # causal inside the prompt
    assert seen[4] == [0, 1, 4]  # rejected: the prompt and itself, not chosen (2, 3)
    assert seen[5] == [0, 1, 4, 5]
    assert seen[11] == [6, 7, 10, 11]  # the second pair sees nothing of the first
    assert sum(map(len, seen)) < 12 * 13 / 2 / 2  # well under half the causal blocks
    mask = batch.flex_block_mask()
    assert batch.flex_block_mask() is mask  # one mask for the policy's and reference's forwards
    assert batch.to("cpu")._block_mask is None  # a moved batch makes its own
    assert mask.shape == (1, 1, 6 * 256, 6 * 256)


def long_pairs(count: int, seed: int) -> list[TokenizedPair]:
    rng = random.Random(seed)

    def ids(n):
        return [rng.randrange(1, 97) for _ in range(n)]

    def pair() -> TokenizedPair:
        prompt, chosen, rejected = (rng.randrange(1, n) for n in (300, 200, 200))
        return TokenizedPair(ids(prompt), ids(chosen), ids(rejected))

    return [pair() for _ in range(count)]


def qwen_odd_heads(attention: str) -> torch.nn.Module:
    """6 query heads over 2 key/value heads: not a power of two (Qwen2.5's 14 heads' case)."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=97, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=6, num_key_value_heads=2, attn_implementation=attention,
    )  # fmt: skip
    return Qwen2ForCausalLM(config)


@pytest.mark.parametrize("style", ["llama", "qwen2", "qwen2-6-heads"])
def test_flex_gives_the_plain_layout_log_probs(style, monkeypatch) -> None:
    calls = []
    real = flexattention._flex_attention

    def counted(on_cuda):
        calls.append(on_cuda)
        return real(on_cuda)

    monkeypatch.setattr(flexattention, "_flex_attention", counted)
    make = qwen_odd_heads if style == "qwen2-6-heads" else lambda a: build(style, a)
    plain_model = make("sdpa").eval()
    flex_model = make(register()).eval()
    flex_model.load_state_dict(plain_model.state_dict())
    for pairs in (PAIRS, long_pairs(5, seed=1)):
        with torch.no_grad():
            expected = model_logprobs(plain_model, collate_pairs(pairs, 0))[0]
            for name, layout in LAYOUTS.items():
                chosen = choose_layout(layout, [flex_model])
                assert chosen.flex and chosen.pad_multiple == BLOCK, name
                batch = collate_pairs(pairs, 0, layout=chosen)
                assert batch.input_ids.shape[1] % BLOCK == 0
                got = model_logprobs(flex_model, batch)[0]
                torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-5)
    assert calls  # FlexAttention ran, not the SDPA fallback


def test_a_model_that_refuses_block_masks_falls_back_to_the_dense_mask() -> None:
    model = build("gpt2", register())  # GPT-2's forward reads attention_mask.ndim
    lines: list[str] = []
    layout = choose_layout(Layout(True, True), [model], lines.append)
    assert layout == Layout(True, True)
    assert attention_implementation(model) == "sdpa"
    assert any(line.startswith("attention: directpo_flex off (AttributeError") for line in lines)


def test_transformers_flex_models_get_the_collators_blocks_too(monkeypatch) -> None:
    """transformers' own flex_attention runs our block masks: the collator's blocks, or the rule
    evaluated pair by pair (``create_block_mask``) for a layout that did not ask for blocks."""
    sdpa = build("llama", "sdpa").eval()
    flex = build("llama", "flex_attention").eval()
    flex.load_state_dict(sdpa.state_dict())
    layout = Layout(share_prefix=True, pack=True, flex=True, pad_multiple=BLOCK)
    with torch.no_grad():
        expected = model_logprobs(sdpa, collate_pairs(PAIRS, 0))[0]
        for rows in (layout, Layout(share_prefix=True, pack=True)):
            # transformers compiles its flex call, on CPU too, where a second shape's dynamic
            # recompilation fails in Inductor's C++ code: one shape per compilation
            torch._dynamo.reset()
            got = model_logprobs(flex, collate_pairs(PAIRS, 0, layout=rows))[0]
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    checked: list[Layout] = []
    monkeypatch.setattr(model_checks, "check_layout", lambda m, lay, *a: checked.append(lay))
    assert choose_layout(Layout(share_prefix=True, pack=True), [flex]) == layout
    assert checked == [layout]


def test_flex_is_chosen_on_cuda_and_refused_for_training_elsewhere() -> None:
    cuda = torch.device("cuda")
    assert choose_implementation("flex_attention", cuda, torch.bfloat16, False) == "directpo_flex"
    assert choose_implementation("flex_attention", cuda, torch.bfloat16, True) == "flex_attention"
    with pytest.raises(ConfigError, match="flex_attention trains on CUDA only"):
        check_device(DPOConfig(model_name_or_path="m", attn_implementation="flex_attention"), "cpu")
    check_device(DPOConfig(model_name_or_path="m", attn_implementation="flex_attention"), "cuda")
    assert choose_layout(PLAIN, [build("llama", register())]) == PLAIN


def test_training_with_flex_on_cpu_is_one_line(tiny_model_dirs, pairs_file, tmp_path) -> None:
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", attn_implementation="flex_attention"
    )
    lines: list[str] = []
    with pytest.raises(ConfigError, match="no backward on cpu"):
        train(config, echo=lines.append)
    assert lines == []  # before any data is read or tokenized
