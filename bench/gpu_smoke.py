"""GPU correctness checks (run on a lent GPU by bench/gpu.sh; not part of the suite).

    PYTHONPATH=src:tests python bench/gpu_smoke.py

1. The varlen kernel (flash_attn or PyTorch's varlen_attn) against the exact math backend on
   random bf16 segments with queries shorter than keys (bottom-right causal alignment) and GQA:
   outputs and gradients.
2. A tiny Qwen2-style model (GQA) in bf16: prefix-shared + packed log-probs and gradients through
   directpo_varlen equal the plain padded layout through SDPA.
3. Mixed precision on CUDA at lr 1e-6: the share of weights a bf16 run moves, against float32.
4. Training the tiny test models on CUDA (float32 and bf16, checkpointing on and off): the first
   loss is ln 2 (policy == reference, exactly in bf16 too), the set is learned.
Prints one line per check and a final verdict.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
from tiny import SENTIMENT_PAIRS, save_tiny_model, tiny_config, write_jsonl

import directpo.attention as attention
from directpo.attention import build_plan, register
from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.logprobs import model_logprobs
from directpo.tokenization import TokenizedPair
from directpo.trainer import train

failures = 0


def verdict(name: str, ok: bool, detail: str) -> None:
    global failures
    failures += not ok
    print(f"{'OK  ' if ok else 'FAIL'} {name}: {detail}", flush=True)


def kernel_check() -> None:
    torch.manual_seed(0)
    rows = [[(0, 40, [7, 9]), (56, 3, [20, 1])], [(0, 100, [33, 12])]]
    plan = build_plan(160, rows).to("cuda")
    tokens = 2 * 160
    q = torch.randn(tokens, 8, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    kv = torch.randn(2, tokens, 2, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    results = {}
    for backend in ("auto", "math"):
        attention.use_backend(backend)
        k, v = kv[0][plan.key_index], kv[1][plan.key_index]
        out = attention._varlen(q, k, v, plan, 0.125)
        grads = torch.autograd.grad(out.float().square().sum(), (q, kv))
        results[backend] = (out.float(), [g.float() for g in grads])
    attention.use_backend("auto")
    fast = attention.available_backend(torch.device("cuda"))
    out_diff = float((results["auto"][0] - results["math"][0]).abs().max())
    grad_diff = max(
        float((a - b).abs().max() / b.abs().max())
        for a, b in zip(results["auto"][1], results["math"][1], strict=True)
    )
    verdict(
        f"varlen kernel ({fast}) vs math",
        out_diff < 3e-2 and grad_diff < 3e-2,
        f"max |out diff| {out_diff:.2e}, max relative grad diff {grad_diff:.2e}",
    )


def model_check() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = dict(vocab_size=257, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=8, num_key_value_heads=2)  # fmt: skip
    plain = Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation="sdpa"))
    varlen = Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation=register()))
    varlen.load_state_dict(plain.state_dict())
    generator = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 257, (n,), generator=generator).tolist()

    pairs = [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in ((300, 50, 80), (20, 120, 7))]
    got = {}
    for name, model, layout in (
        ("plain", plain, PLAIN),
        ("varlen", varlen, Layout(True, True, varlen=True, pad_multiple=128)),
    ):
        model.to("cuda", torch.bfloat16).eval()
        logps = model_logprobs(model, collate_pairs(pairs, 0, layout=layout).to("cuda"))[0]
        logps.float().sum().backward()
        got[name] = (logps.float().detach(), model.model.embed_tokens.weight.grad.float())
    diff = float((got["plain"][0] - got["varlen"][0]).abs().max())
    scale = float(got["plain"][0].abs().max())
    grad = float((got["plain"][1] - got["varlen"][1]).norm() / got["plain"][1].norm())
    verdict(
        "tiny Qwen2 bf16: varlen shared+packed vs plain SDPA",
        diff <= 0.01 * scale and grad < 0.05,
        f"log-prob diff {diff:.3g} (of {scale:.0f}), embedding grad relative diff {grad:.3g}",
    )


def learning_check(root: Path, data: Path) -> None:
    from safetensors.torch import load_file

    model = save_tiny_model("llama", root / "llama-lr")
    start = load_file(model / "model.safetensors")
    changed = {}
    for dtype in ("float32", "bfloat16"):
        out = root / f"lr-{dtype}"
        train(
            tiny_config(model, data, out, learning_rate=1e-6, max_steps=5, dtype=dtype),
            echo=lambda _: None,
        )
        end = load_file(out / "model.safetensors")
        moved = sum(int((end[k].float() != v.float()).sum()) for k, v in start.items())
        changed[dtype] = moved / sum(v.numel() for v in start.values())
    verdict(
        "lr 1e-6: weights moved, bf16 mixed vs float32",
        changed["bfloat16"] >= 0.9 * changed["float32"] > 0,
        f"{changed['bfloat16']:.1%} vs {changed['float32']:.1%}",
    )


def training_check(root: Path, data: Path) -> None:
    for style in ("llama", "gpt2"):
        model = save_tiny_model(style, root / style)
        for dtype in ("float32", "bfloat16"):
            for checkpointing in (False, True):
                torch.cuda.reset_peak_memory_stats()
                start = time.perf_counter()
                config = tiny_config(
                    model, data, root / f"out-{style}-{dtype}-{checkpointing}", max_steps=30,
                    per_device_train_batch_size=3, gradient_accumulation_steps=2, dtype=dtype,
                    gradient_checkpointing=checkpointing, eval_file=str(data), eval_steps=15,
                    save_steps=15,
                )  # fmt: skip
                lines: list[str] = []
                rows = [r for r in train(config, echo=lines.append).metrics if "loss" in r]
                first, last = rows[0], rows[-1]
                notices = [line for line in lines if " off " in line]
                verdict(
                    f"train {style} {dtype} checkpointing={checkpointing}",
                    abs(first["loss"] - math.log(2)) < 1e-6
                    and last["rewards/accuracies"] == 1.0
                    and not notices,
                    f"first loss {first['loss']:.6f}, last {last['loss']:.4f}, accuracy "
                    f"{last['rewards/accuracies']:.2f}, peak "
                    f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB, "
                    f"{time.perf_counter() - start:.1f} s {notices}",
                )


def main() -> None:
    assert torch.cuda.is_available(), "no CUDA device"
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    root = Path(tempfile.mkdtemp())
    data = write_jsonl(root / "pairs.jsonl", SENTIMENT_PAIRS)
    for check in (kernel_check, model_check):
        try:
            check()
        except Exception as exc:  # one broken check must not hide the others
            verdict(check.__name__, False, repr(exc)[:300])
    for check in (learning_check, training_check):
        try:
            check(root, data)
        except Exception as exc:
            verdict(check.__name__, False, repr(exc)[:300])
    print("GPU smoke:", "all OK" if not failures else f"{failures} FAILED", flush=True)


if __name__ == "__main__":
    main()
