"""GPU correctness checks (run on a lent GPU by bench/gpu.sh; not part of the suite).

    PYTHONPATH=src:tests python bench/gpu_smoke.py

1. The varlen kernel (flash_attn or PyTorch's varlen_attn) against the exact math backend on
   random bf16 segments with queries shorter than keys (bottom-right causal alignment) and GQA:
   outputs and gradients.
2. A tiny Qwen2-style model (GQA, 6 heads) in bf16: prefix-shared + packed log-probs and
   gradients through directpo_varlen and through directpo_flex (compiled FlexAttention, two
   batch widths) equal the plain padded layout through SDPA.
3. Mixed precision on CUDA at lr 1e-6: the share of weights a bf16 run moves, against float32.
4. Training the tiny test models on CUDA (float32 and bf16, checkpointing on and off): the first
   loss is ln 2 (policy == reference, exactly in bf16 too), the set is learned.
5. This wave's options in bf16 on CUDA: TR-DPO, a Mixtral-style MoE's balancing loss, QLoRA
   (``python bench/gpu_smoke.py features`` runs only these).
6. Device syncs inside one micro-batch (varlen and flex), and use_liger_kernel's kernels against
   transformers' modules (last: Liger patches module-wide functions).
   (2. also runs the fallback without either kernel: SDPA with one additive 4D mask.)
7. ``python bench/gpu_smoke.py compile`` (bench/gpu.sh runs it after the rest): torch_compile on
   Llama, GPT-2, Qwen2 and Gemma2 tiny models and with LoRA, bf16, against the eager run.
8. ``python bench/gpu_smoke.py precision`` (bench/gpu.sh runs it last): ``tf32: true`` and
   ``full_determinism: true`` on CUDA (two runs bitwise equal), and what ``eval_dtype: auto``'s
   float32 evaluation and eval_generate's float32 KL scoring cost against bf16 on a
   Qwen2.5-0.5B-shaped random model (seconds of one evaluation, and the ratio).
9. ``python bench/gpu_smoke.py offload`` (bench/gpu.sh runs it; OFFLOAD_CHECK=0 skips):
   activation_offloading on a Qwen2.5-0.5B-shaped random model in bf16, one batch: peak GPU
   memory and step time with and without it, and their ratio (< 60 s). Without CUDA it is a
   dry run on a tiny model (nothing moves on a CPU).
Without CUDA, ``features``, ``offload`` and ``precision`` run as CPU dry runs (tiny models, no
tf32, no QLoRA): the script's own paths checked before a lent GPU runs them.
Prints one line per check and a final verdict.
"""

from __future__ import annotations

import gc
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GROUPS = ("features", "compile", "precision", "offload")  # run alone: gpu_smoke.py GROUP
if __name__ == "__main__" and (sys.argv[2:] or sys.argv[1:] and sys.argv[1] not in GROUPS):
    # checked before the imports: a misspelt group ran the whole smoke, minutes of a lent GPU
    print(f"usage: gpu_smoke.py [{' | '.join(GROUPS)}]; got {' '.join(sys.argv[1:])}")
    sys.exit(2)

import torch  # noqa: E402

DRY_RUNS = (["features"], ["offload"], ["precision"])  # groups whose code runs on a CPU
if __name__ == "__main__" and not torch.cuda.is_available() and sys.argv[1:] not in DRY_RUNS:
    # one line, before directpo's imports: it was an AssertionError's traceback in main()
    sys.exit(
        f"gpu_smoke.py {' '.join(sys.argv[1:]) or '(all checks)'} needs a CUDA device; "
        "without one, features, offload and precision run as CPU dry runs"
    )

# the test suite's tiny models: `python bench/gpu_smoke.py features`, as docs/performance.md
# runs it, failed with "No module named 'tiny'" unless PYTHONPATH named tests/
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny import (  # noqa: E402
    SENTIMENT_PAIRS,
    build_tokenizer,
    save_tiny_model,
    tiny_config,
    write_jsonl,
)

import directpo.attention as attention  # noqa: E402
import directpo.flexattention as flexattention  # noqa: E402
from directpo.attention import build_plan, register  # noqa: E402
from directpo.batching import PLAIN, Layout, collate_pairs  # noqa: E402
from directpo.logprobs import model_logprobs  # noqa: E402
from directpo.tokenization import TokenizedPair  # noqa: E402
from directpo.trainer import train  # noqa: E402

failures = 0
# 6 query heads over 2 key/value heads: not a power of two, as Qwen2.5's 14
TINY_QWEN2 = dict(vocab_size=257, hidden_size=384, intermediate_size=512, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2)  # fmt: skip


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
    config = TINY_QWEN2
    models = {
        name: Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation=implementation))
        for name, implementation in (
            ("plain", "sdpa"), ("varlen", register()), ("flex", flexattention.register()),
            ("sdpa-mask", "sdpa"),
        )
    }  # fmt: skip
    for model in models.values():
        model.load_state_dict(models["plain"].state_dict())
        model.to("cuda", torch.bfloat16).eval()
    layouts = {
        "plain": PLAIN,
        "varlen": Layout(True, True, varlen=True, pad_multiple=128),
        "flex": Layout(True, True, flex=True, pad_multiple=128),
        # no varlen kernel, no FlexAttention: SDPA with one additive 4D mask (the fallback)
        "sdpa-mask": Layout(True, True),
    }
    generator = torch.Generator().manual_seed(1)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 257, (n,), generator=generator).tolist()

    lengths = [  # two batches of different widths: the compiled FlexAttention sees two shapes
        ((300, 50, 80), (20, 120, 7)),
        ((700, 200, 90), (5, 300, 310), (128, 128, 128)),
    ]
    for number, batch_lengths in enumerate(lengths, start=1):
        pairs = [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in batch_lengths]
        got = {}
        for name, model in models.items():
            model.zero_grad()
            batch = collate_pairs(pairs, 0, layout=layouts[name]).to("cuda")
            logps = model_logprobs(model, batch)[0]
            logps.float().sum().backward()
            got[name] = (logps.float().detach(), model.model.embed_tokens.weight.grad.float())
        scale = float(got["plain"][0].abs().max())
        for name in ("varlen", "flex", "sdpa-mask"):
            diff = float((got["plain"][0] - got[name][0]).abs().max())
            grad = float((got["plain"][1] - got[name][1]).norm() / got["plain"][1].norm())
            verdict(
                f"tiny Qwen2 bf16 (6 heads, GQA), batch {number}: {name} shared+packed vs plain",
                diff <= 0.01 * scale and grad < 0.05,
                f"log-prob diff {diff:.3g} (of {scale:.0f}), embedding grad relative diff "
                f"{grad:.3g}",
            )
    for name in ("varlen", "flex"):
        sync_audit(name, models[name], layouts[name], pairs)


def sync_audit(name: str, model: torch.nn.Module, layout: Layout, pairs: list) -> None:
    """Device syncs inside one micro-batch (move, policy forward through the chunked head,
    reference forward, loss, backward): each one drains the GPU's queue while the CPU catches
    up. The step's end reads its metrics and gradient norm once; that is not counted here."""
    import traceback
    import warnings

    from directpo.logprobs import SequenceScorer

    scorer = SequenceScorer(model, chunk_tokens=1024)
    batch = collate_pairs(pairs, 0, layout=layout)
    places: list[str] = []

    def record(message, category, filename, lineno, file=None, line=None):  # noqa: ANN001
        frames = [f for f in traceback.extract_stack()[:-1] if "warnings" not in f.filename]
        places.append(" < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[-4:]))

    for _ in range(2):  # the first pass compiles and warms caches
        places.clear()
        torch.cuda.synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = record
            torch.cuda.set_sync_debug_mode("warn")
            try:
                moved = batch.to("cuda")
                policy = scorer(moved)[0]
                with torch.no_grad():
                    reference = scorer(moved)[0]
                n = moved.num_pairs
                margin = (policy[:n] - reference[:n]) - (policy[n:] - reference[n:])
                torch.nn.functional.logsigmoid(0.1 * margin).neg().mean().backward()
            finally:
                torch.cuda.set_sync_debug_mode(0)
    verdict(
        f"{name}: no device sync inside a micro-batch",
        not places,
        f"{len(places)} syncs" + (f"; first at {places[0]}" if places else ""),
    )


def liger_check() -> None:
    """use_liger_kernel: Liger's RMSNorm / SwiGLU / rotary kernels give the same log-probs and
    gradients as transformers' modules (bf16, varlen shared+packed rows). Runs last: Liger
    patches the rotary function of the whole modeling module, for every model after it."""
    import copy

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from directpo.config import DPOConfig
    from directpo.model_preparation import apply_liger_kernels

    torch.manual_seed(0)
    config = TINY_QWEN2
    plain = Qwen2ForCausalLM(Qwen2Config(**config, attn_implementation=register()))
    plain.to("cuda", torch.bfloat16).eval()
    liger = copy.deepcopy(plain)
    generator = torch.Generator().manual_seed(2)

    def ids(n: int) -> list[int]:
        return torch.randint(1, 257, (n,), generator=generator).tolist()

    pairs = [TokenizedPair(ids(p), ids(c), ids(r)) for p, c, r in ((300, 50, 80), (20, 120, 7))]
    batch = collate_pairs(pairs, 0, layout=Layout(True, True, varlen=True)).to("cuda")
    got = {}
    for name, model in (("transformers", plain), ("liger", liger)):
        if name == "liger":
            kernels = DPOConfig(model_name_or_path="m", use_liger_kernel=True).liger_kernels()
            apply_liger_kernels(model, kernels or {})
        logps = model_logprobs(model, batch)[0]
        logps.float().sum().backward()
        got[name] = (logps.float().detach(), model.model.embed_tokens.weight.grad.float())
    patched = sum(
        getattr(m.forward, "__qualname__", "").startswith("Liger") for m in liger.modules()
    )
    scale = float(got["transformers"][0].abs().max())
    diff = float((got["transformers"][0] - got["liger"][0]).abs().max())
    grad = float((got["transformers"][1] - got["liger"][1]).norm() / got["transformers"][1].norm())
    verdict(
        "use_liger_kernel: tiny Qwen2 bf16, varlen rows, Liger vs transformers",
        diff <= 0.01 * scale and grad < 0.05 and patched > 0,
        f"log-prob diff {diff:.3g} (of {scale:.0f}), embedding grad relative diff {grad:.3g}, "
        f"{patched} modules running Liger's forward",
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


def features_check(root: Path, data: Path) -> None:
    """This wave's options on CUDA in bf16 (varlen attention by default there): TR-DPO's hard
    update keeps every step's loss at ln 2; a Mixtral-style MoE adds 0.001 x its balancing loss;
    QLoRA (4-bit base, bitsandbytes) trains when bitsandbytes is installed."""
    from transformers import MixtralConfig, MixtralForCausalLM

    model = save_tiny_model("llama", root / "llama-features")
    rows = _rows(train(
        tiny_config(model, data, root / "trdpo", max_steps=6, per_device_train_batch_size=3,
                    dtype="bfloat16", sync_ref_model=True, ref_model_mixup_alpha=1.0,
                    ref_model_sync_steps=1, save_steps=3),
        echo=lambda _: None,
    ))  # fmt: skip
    worst = max(abs(r["loss"] - math.log(2)) for r in rows)
    verdict(
        "TR-DPO bf16 alpha 1 every step: loss ln 2", worst < 1e-4, f"max |loss - ln 2| {worst:.2e}"
    )

    tokenizer = build_tokenizer("llama")
    torch.manual_seed(0)
    moe = MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    MixtralForCausalLM(moe).save_pretrained(root / "mixtral")
    tokenizer.save_pretrained(root / "mixtral")
    rows = _rows(train(
        tiny_config(root / "mixtral", data, root / "moe", max_steps=8,
                    per_device_train_batch_size=3, dtype="bfloat16"),
        echo=lambda _: None,
    ))  # fmt: skip
    gap = max(abs(r["loss"] - r["loss/sigmoid"] - 0.001 * r["aux_loss"]) for r in rows)
    verdict(
        "MoE bf16: loss = DPO + 0.001 x aux_loss",
        gap < 1e-5 and all(math.isfinite(r["aux_loss"]) for r in rows),
        f"max gap {gap:.2e}, aux_loss {rows[0]['aux_loss']:.3f} -> {rows[-1]['aux_loss']:.3f}, "
        f"loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}",
    )

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        print("SKIP QLoRA: bitsandbytes is not installed here", flush=True)
        return
    torch.cuda.reset_peak_memory_stats()
    rows = _rows(train(
        tiny_config(model, data, root / "qlora", max_steps=20, per_device_train_batch_size=3,
                    dtype="bfloat16", lora_r=8, load_in_4bit=True, learning_rate=2e-2),
        echo=lambda _: None,
    ))  # fmt: skip
    adapter = (root / "qlora" / "adapter_model.safetensors").is_file()
    verdict(
        "QLoRA 4-bit bf16",
        abs(rows[0]["loss"] - math.log(2)) < 1e-3
        and rows[-1]["loss"] < rows[0]["loss"]
        and adapter,
        f"loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}, adapter saved {adapter}, "
        f"peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB",
    )


def compile_check(root: Path, data: Path) -> None:
    """``torch_compile: true`` across architectures and modes on CUDA in bf16, against the same
    run uncompiled: the first loss is ln 2 either way, the losses agree, and no model falls back
    to uncompiled (the evidence a compile-by-default decision needs; it is opt-in today)."""
    from transformers import (
        AutoTokenizer,
        Gemma2Config,
        Gemma2ForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    tokenizer = build_tokenizer("llama")
    shapes = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    models = {"llama": save_tiny_model("llama", root / "c-llama"),
              "gpt2": save_tiny_model("gpt2", root / "c-gpt2")}  # fmt: skip
    for name, (config_class, model_class, extra) in {
        "qwen2": (Qwen2Config, Qwen2ForCausalLM, {}),
        "gemma2": (Gemma2Config, Gemma2ForCausalLM, {"head_dim": 16}),
    }.items():
        folder = models[name] = root / f"c-{name}"
        model_class(config_class(**shapes, **extra)).config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        loaded = AutoTokenizer.from_pretrained(folder)  # its class follows the model type
        ids = dict(
            vocab_size=len(loaded), bos_token_id=loaded.bos_token_id,
            eos_token_id=loaded.eos_token_id, pad_token_id=loaded.pad_token_id,
        )  # fmt: skip
        torch.manual_seed(0)
        model_class(config_class(**ids, **shapes, **extra)).save_pretrained(folder)
    runs = [(name, {}) for name in models] + [("llama", {"lora_r": 8, "learning_rate": 2e-2})]
    for name, extra in runs:
        losses, times, notices = {}, {}, []
        for compiled in (False, True):
            torch._dynamo.reset()
            start = time.perf_counter()
            config = tiny_config(
                models[name], data, root / f"c-out-{name}-{len(extra)}-{compiled}", max_steps=6,
                per_device_train_batch_size=3, dtype="bfloat16", torch_compile=compiled, **extra,
            )  # fmt: skip
            lines: list[str] = []
            losses[compiled] = [r["loss"] for r in _rows(train(config, echo=lines.append))]
            times[compiled] = time.perf_counter() - start
            notices += [line for line in lines if " off" in line]
        gap = max(abs(a - b) for a, b in zip(losses[False], losses[True], strict=True))
        # with LoRA the policy (adapters on) and the reference (off) are two compiled graphs,
        # fused differently: their bf16 roundings differ, so the first loss is ln 2 to ~1e-4
        start = abs(losses[True][0] - math.log(2))
        verdict(
            f"torch_compile {name}{' LoRA' if extra else ''} bf16",
            start < (1e-3 if extra else 1e-6) and gap < 2e-2 and not notices,
            f"first loss - ln 2 {start:.1e}, max loss gap {gap:.2e}, {times[False]:.1f} s "
            f"eager, {times[True]:.1f} s compiled (6 steps) {notices}",
        )


def precision_check(root: Path, data: Path) -> None:
    """tf32 and full_determinism on CUDA; the cost of a float32 evaluation (eval_dtype: auto)
    against a bf16 one, with and without eval_generate (its KL scored in eval_dtype). Each a
    check of its own (one that raises loses none of the others). Without CUDA a dry run: tf32
    skipped, the evaluations on a tiny model (the script's paths, not the costs)."""
    model = save_tiny_model("llama", root / "llama-precision")
    # full_determinism first: it sets CUBLAS_WORKSPACE_CONFIG, which cuBLAS reads once per
    # process, so a tf32 run before it would leave its own workspace (a possible false FAIL).
    for check in (determinism_check, tf32_check, evaluation_cost):
        try:
            check(root, data, model)
        except Exception as exc:
            verdict(check.__name__, False, repr(exc)[:300])


def tf32_check(root: Path, data: Path, model: Path) -> None:
    if not torch.cuda.is_available():
        print("SKIP tf32: CUDA only (CPU dry run)", flush=True)
        return
    rows = _rows(train(
        tiny_config(model, data, root / "tf32", max_steps=6, per_device_train_batch_size=3,
                    tf32=True),
        echo=lambda _: None,
    ))  # fmt: skip
    verdict(
        "tf32: true, float32 run",
        abs(rows[0]["loss"] - math.log(2)) < 1e-6 and rows[-1]["loss"] < rows[0]["loss"],
        f"loss {rows[0]['loss']:.6f} -> {rows[-1]['loss']:.4f}",
    )


def determinism_check(root: Path, data: Path, model: Path) -> None:
    from safetensors.torch import load_file

    runs = []
    for attempt in range(2):
        out = root / f"deterministic-{attempt}"
        config = tiny_config(
            model, data, out, max_steps=6, per_device_train_batch_size=3, dtype="bfloat16",
            full_determinism=True,
        )  # fmt: skip
        runs.append(([r["loss"] for r in _rows(train(config, echo=lambda _: None))], out))
    weights = [load_file(out / "model.safetensors") for _, out in runs]
    same = runs[0][0] == runs[1][0] and all(
        torch.equal(value, weights[1][key]) for key, value in weights[0].items()
    )
    verdict("full_determinism: true, bf16 twice: bitwise the same", same, f"losses {runs[0][0]}")


def evaluation_cost(root: Path, data: Path, model: Path) -> None:
    """Seconds of one evaluation in bf16 and in float32 (eval_dtype auto): from the step's log
    line to the evaluation's, on a 0.5B-shaped model (the tiny one without CUDA)."""
    cuda = torch.cuda.is_available()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from workloads import make_data, qwen_random

    big = qwen_random("qwen2.5-0.5b-random", root / "qwen-0.5b") if cuda else model
    held_out = root / "held-out.jsonl"
    words, pairs = ((300, 150), 64) if cuda else ((30, 15), 8)
    make_data(held_out, prompt_words=words[0], completion_words=words[1], pairs=pairs, seed=3)
    seconds = {}
    for eval_dtype in ("bfloat16", "auto"):
        for generate in (0, 16):
            stamps: list[tuple[float, str]] = []
            config = tiny_config(
                big, held_out, root / f"eval-{eval_dtype}-{generate}", max_steps=1,
                per_device_train_batch_size=4, per_device_eval_batch_size=16, dtype="bfloat16",
                eval_file=str(held_out), eval_steps=1, eval_dtype=eval_dtype,
                eval_generate=generate, save_strategy="no",
                # only with eval_generate: alone, the option is refused as doing nothing
                **({"generate_max_new_tokens": 64 if cuda else 8} if generate else {}),
            )  # fmt: skip
            train(config, echo=lambda line, s=stamps: s.append((time.perf_counter(), line)))
            trained = next(t for t, line in stamps if line.startswith("step 1/1 loss="))
            evaluated = next(t for t, line in stamps if "eval/loss=" in line)
            seconds[eval_dtype, generate] = evaluated - trained
    for generate in (0, 16):
        bf16, float32 = seconds["bfloat16", generate], seconds["auto", generate]
        verdict(
            f"evaluation cost, {'0.5B' if cuda else 'tiny, CPU dry run'}, {pairs} pairs"
            f"{f', eval_generate {generate}' if generate else ''}",
            True,  # a measurement: docs/performance.md records it
            f"bf16 {bf16:.2f} s, float32 (eval_dtype auto) {float32:.2f} s: {float32 / bf16:.2f}x",
        )


def offload_check(root: Path, data: Path) -> None:
    """activation_offloading on a Qwen2.5-0.5B-shaped random model in bf16, one batch of 4
    pairs (~1.3k-token sequences): peak GPU memory and step time with and without it, their
    ratio, and the losses of the two runs (the copies change no value). Without CUDA (a dry run
    of this script) a tiny model on the CPU, where the option moves nothing."""
    cuda = torch.cuda.is_available()
    if cuda:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from workloads import make_data, qwen_random

        model = qwen_random("qwen2.5-0.5b-random", root / "qwen-0.5b-offload")
        data = root / "offload.jsonl"
        make_data(data, prompt_words=300, completion_words=150, pairs=16, seed=5)
    else:
        model = save_tiny_model("llama", root / "llama-offload")
    steps, measured = 4, {}
    for offloading in (False, True):
        stamps: list[tuple[float, str]] = []
        gc.collect()  # the other run's models (its result held them) off the GPU first
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        config = tiny_config(
            model, data, root / f"offload-{offloading}", max_steps=steps,
            per_device_train_batch_size=4, dtype="bfloat16" if cuda else "float32",
            activation_offloading=offloading, save_strategy="no",
        )  # fmt: skip
        result = train(config, echo=lambda line, s=stamps: s.append((time.perf_counter(), line)))
        at = [t for t, line in stamps if line.startswith("step ")]
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
        said = any("activations offloaded to CPU" in line for _, line in stamps)
        # steps 2..n: the first step pays for allocations and kernel choices
        measured[offloading] = (peak, (at[-1] - at[0]) / (steps - 1), _rows(result), said)
        del result
    (peak, step, rows, _), (peak_off, step_off, rows_off, said) = measured[False], measured[True]
    same_first = rows[0]["loss"] == rows_off[0]["loss"]
    drift = max(abs(a["loss"] - b["loss"]) for a, b in zip(rows, rows_off, strict=True))
    verdict(
        f"activation_offloading, {'0.5B bf16' if cuda else 'tiny, CPU dry run'}, batch 4",
        same_first and drift < 1e-3 and said == cuda,
        f"peak {peak:.2f} GiB -> {peak_off:.2f} GiB "
        f"({peak_off / peak if peak else 0:.2f}x), step {step:.3f} s -> {step_off:.3f} s "
        f"({step_off / step:.2f}x), loss drift {drift:.2g}",
    )


def _rows(result: Any) -> list[dict]:
    return [r for r in result.metrics if "loss" in r]


def main() -> None:
    """Exits 1 when a check failed (bench/gpu.sh's summary says so); 2 for an unknown group
    (checked at the top, before the imports)."""
    groups = {
        "features": features_check,
        "compile": compile_check,
        "precision": precision_check,
        "offload": offload_check,
    }
    root = Path(tempfile.mkdtemp())
    data = write_jsonl(root / "pairs.jsonl", SENTIMENT_PAIRS)
    if not torch.cuda.is_available():  # (the others stopped at the top: they need CUDA)
        groups[sys.argv[1]](root, data)  # its CPU dry run: the script's paths, tiny models
        print("GPU smoke (CPU dry run):", "all OK" if not failures else "FAILED", flush=True)
        sys.exit(1 if failures else 0)
    print("device:", torch.cuda.get_device_name(0), "torch", torch.__version__, flush=True)
    if sys.argv[1:]:  # one group alone (a short device call)
        checks = [groups[sys.argv[1]]]
    else:
        checks = [kernel_check, model_check, learning_check, training_check, features_check]
        checks.append(liger_check)  # last: Liger patches module-wide functions
    for check in checks:
        try:
            check(*(() if check in (kernel_check, model_check, liger_check) else (root, data)))
        except Exception as exc:  # one broken check must not hide the others
            verdict(check.__name__, False, repr(exc)[:300])
    print("GPU smoke:", "all OK" if not failures else f"{failures} FAILED", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
