"""The chunked, completion-only log-prob path equals the naive full-logits path."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import build_model, build_tokenizer
from transformers import LlamaForCausalLM

from directpo.adapters import apply_lora
from directpo.batching import collate_pairs
from directpo.logprobs import backbone_and_head, model_logprobs
from directpo.model_checks import check_heads
from directpo.tokenization import TokenizedPair

PAIRS = [
    TokenizedPair([5, 6, 7, 8, 9, 10, 11, 12], [13, 14], [15]),  # prompt longer than completions
    TokenizedPair([20], [21, 22, 23, 24, 25, 26, 27, 28, 29], [30, 31, 32]),
    TokenizedPair([40, 41, 42], [43], [44, 45, 46, 47, 48]),
]


def run(model, batch, chunk):
    model.zero_grad()
    logps, counts, log1m = model_logprobs(model, batch, chunk)[:3]
    (logps.sum() + 0.3 * log1m.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), counts, log1m.detach(), grads


@pytest.mark.parametrize("style", ["llama", "gpt2"])
@pytest.mark.parametrize("chunk", [1, 4, 4096])
def test_values_and_gradients_match_the_full_logits_path(style, chunk) -> None:
    model = build_model(style, build_tokenizer(style)).eval()  # no dropout: deterministic
    assert backbone_and_head(model) is not None  # the chunked path is really taken
    batch = collate_pairs(PAIRS, pad_token_id=0)
    full = run(model, batch, 0)
    chunked = run(model, batch, chunk)
    assert torch.allclose(chunked[0], full[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(chunked[1], full[1])
    assert torch.allclose(chunked[2], full[2], atol=1e-5, rtol=1e-5)
    assert full[3].keys() == chunked[3].keys()
    for name, grad in full[3].items():
        assert torch.allclose(chunked[3][name], grad, atol=1e-5, rtol=1e-4), name


def test_lora_models_take_the_chunked_path_too() -> None:
    model = apply_lora(build_model("llama", build_tokenizer("llama")), 4, 8, 0.0, ["all-linear"])
    assert backbone_and_head(model) is not None
    batch = collate_pairs(PAIRS, pad_token_id=0)
    full, chunked = run(model, batch, 0), run(model, batch, 3)
    assert torch.allclose(chunked[0], full[0], atol=1e-5)
    for name, grad in full[3].items():
        assert torch.allclose(chunked[3][name], grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("saved", [["lm_head"], ["lm_head", "embed_tokens"]])
def test_a_trained_copy_of_the_head_takes_the_chunked_path(saved) -> None:
    """lora_modules_to_save: [lm_head] (new chat tokens) wraps the head in peft's
    ModulesToSaveWrapper, which was taken for a head of another kind: full logits, the
    [tokens x vocab] tensor the chunks avoid. Now chunked, with the full path's values and
    gradients, and the base head's values with the adapters off (the reference)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], modules_to_save=saved)
    model = get_peft_model(build_model("llama", build_tokenizer("llama")), config)
    with torch.no_grad():  # the trained copy moved away from the base head
        model.base_model.model.lm_head.modules_to_save["default"].weight.mul_(1.5)
    assert backbone_and_head(model) is not None
    batch = collate_pairs(PAIRS, pad_token_id=0)
    full, chunked = run(model, batch, 0), run(model, batch, 3)
    assert torch.allclose(chunked[0], full[0], atol=1e-5)
    assert full[3].keys() == chunked[3].keys() and any("modules_to_save" in k for k in full[3])
    for name, grad in full[3].items():
        assert torch.allclose(chunked[3][name], grad, atol=1e-5, rtol=1e-4), name
    with torch.no_grad(), model.disable_adapter():
        off = model_logprobs(model, batch, 3)[0]
        assert torch.allclose(off, model_logprobs(model, batch, 0)[0], atol=1e-5)
    assert not torch.allclose(off, full[0], atol=1e-2)


def test_models_that_transform_logits_fall_back_to_full_logits() -> None:
    model = build_model("llama", build_tokenizer("llama"))
    model.config.final_logit_softcapping = 30.0
    assert backbone_and_head(model) is None


class ScaledLogitsLlama(LlamaForCausalLM):
    """Logits scaled after the LM head under a name directpo does not know (Falcon-H1's
    lm_head_multiplier, remote code)."""

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 0.3
        return out


def test_logits_transformed_under_an_unknown_name_are_measured_and_scored_whole() -> None:
    plain = build_model("llama", build_tokenizer("llama")).eval()
    model = ScaledLogitsLlama(plain.config).eval()
    model.load_state_dict(plain.state_dict())
    batch = collate_pairs(PAIRS, pad_token_id=0)
    whole = model_logprobs(model, batch, 0)[0].detach()
    # what the chunked path trained on before: the head's output without the model's scaling
    assert not torch.allclose(model_logprobs(model, batch, 4)[0], whole, atol=1e-2)

    notices: list[str] = []
    check_heads([model, plain, model], notices.append)
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith("logprob_chunk_tokens: off for ScaledLogitsLlama")
    assert backbone_and_head(model) is None and backbone_and_head(plain) is not None
    assert torch.allclose(model_logprobs(model, batch, 4)[0], whole, atol=1e-6)


@pytest.mark.parametrize("chunk", [0, 3])
def test_wpo_aligned_sums_only_when_asked(chunk) -> None:
    """WPO's Σ_t [log p_t − log Σ_v p_v²] per sequence, by brute force over the full softmax;
    without ``wpo`` the two extra passes over the logits are skipped (zeros)."""
    model = build_model("llama", build_tokenizer("llama")).eval()
    batch = collate_pairs(PAIRS, pad_token_id=0)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        probs = logits.double().softmax(-1).flatten(0, 1)[batch.predict_from]
        token = (
            probs.gather(1, batch.target_ids[:, None]).squeeze(1).log()
            - probs.square().sum(-1).log()
        )
        expected = torch.zeros(batch.num_sequences, dtype=torch.float64).index_add(
            0, batch.target_sequence, token
        )
        aligned = model_logprobs(model, batch, chunk, wpo=True)[3]
        assert torch.allclose(aligned.double(), expected, atol=1e-4)
        assert expected.abs().min() > 1e-2  # not trivially zero
        assert torch.equal(model_logprobs(model, batch, chunk)[3], torch.zeros_like(aligned))


def brute_force_diagnostics(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[K, 3] in float64: the vocabulary-mean logit, −Σ_v p_v log p_v, target == argmax."""
    logits = logits.double()
    probs = logits.softmax(-1)
    top1 = (logits.argmax(-1) == targets).double()
    return torch.stack([logits.mean(-1), -torch.special.xlogy(probs, probs).sum(-1), top1], 1)


def test_token_diagnostics_are_trls_token_statistics() -> None:
    """TRL's logits/*, entropy and mean_token_accuracy per token, against the formulas."""
    from directpo.logprobs import _token_logprobs

    torch.manual_seed(0)
    logits = torch.randn(6, 11, dtype=torch.float64) * 3
    targets = torch.tensor([0, 1, 2, 3, 4, 5])
    logits[1, 1] = logits[3, 9] = 30.0  # the target is the argmax (row 1), is not (row 3)
    stats = _token_logprobs(logits, targets, diagnostics=True)[3]
    assert torch.allclose(stats, brute_force_diagnostics(logits, targets), atol=1e-9)
    assert stats[1, 2] == 1 and stats[3, 2] == 0 and stats[1, 1] < 1e-6 < stats[0, 1]
    # float32 at a real model's scale (logits ~25 over a 49k vocabulary): the entropy within
    # 3e-6 (logsumexp − E[logit] was off by 1e-4 to 2e-4); a −inf logit adds nothing (was NaN)
    logits = torch.randn(6, 49152, dtype=torch.float64) * 4 + 25
    logits[0, 5] = -math.inf
    entropy = _token_logprobs(logits.float(), targets, diagnostics=True)[3][:, 1].double()
    assert torch.allclose(entropy, brute_force_diagnostics(logits, targets)[:, 1], atol=3e-6)


@pytest.mark.parametrize("chunk", [0, 3])
@pytest.mark.parametrize("share", [False, True])
def test_diagnostics_sum_per_sequence_on_every_path_and_only_when_asked(chunk, share) -> None:
    """The per-sequence sums of the diagnostics, from the whole or the chunked head and from
    plain or prefix-shared packed rows, equal the brute force over the plain batch's logits;
    zeros unless asked (the reference never pays for them)."""
    from directpo.batching import Layout

    model = build_model("llama", build_tokenizer("llama")).eval()
    batch = collate_pairs(PAIRS, pad_token_id=0)
    layout = Layout(share_prefix=True, pack=True) if share else None
    scored = batch if layout is None else collate_pairs(PAIRS, pad_token_id=0, layout=layout)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        token = brute_force_diagnostics(logits.flatten(0, 1)[batch.predict_from], batch.target_ids)
        expected = torch.zeros(batch.num_sequences, 3, dtype=torch.float64)
        expected.index_add_(0, batch.target_sequence, token)
        got = model_logprobs(model, scored, chunk, diagnostics=True)[4]
        assert torch.allclose(got.double(), expected, atol=1e-4)
        assert expected[:, 1].min() > 1.0  # entropies of a random model: far from zero
        assert torch.equal(model_logprobs(model, scored, chunk)[4], torch.zeros_like(got))


def test_a_float32_residual_stream_meets_a_bf16_head_in_the_heads_dtype() -> None:
    """Mamba keeps its residual stream float32 under bf16 (residual_in_fp32) and casts it to its
    head's dtype in its own forward; the chunked head refused it (a dtype error, which
    check_heads read as 'logits are not its LM head's output': chunking off for every Mamba)."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    config = MambaConfig(vocab_size=64, hidden_size=32, state_size=8, num_hidden_layers=2,
                         residual_in_fp32=True)  # fmt: skip
    model = MambaForCausalLM(config).to(torch.bfloat16).eval()
    batch = collate_pairs(PAIRS, pad_token_id=0)
    with torch.no_grad():
        whole, chunked = model_logprobs(model, batch, 0)[0], model_logprobs(model, batch, 4)[0]
    torch.testing.assert_close(chunked, whole, atol=0.05, rtol=1e-3)
    check_heads([model], pytest.fail)  # no notice: the chunked path stays on
    assert backbone_and_head(model) is not None
