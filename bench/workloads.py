"""The benchmark's workloads: generated preference data, the models it trains (tiny test
models, SmolLM2, random models of Qwen2.5 shapes), the pairs' token counts and the FLOPs of a
DPO step. bench/vs_trl.py runs them; bench/gpu_smoke.py builds its 0.5B model here too."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's directpo (vs_trl.py says why)

WORDS = [
    "the",
    "film",
    "story",
    "actor",
    "scene",
    "great",
    "dull",
    "plot",
    "music",
    "light",
    "dark",
    "long",
    "short",
    "funny",
    "moving",
    "cast",
    "script",
    "camera",
    "ending",
    "start",
    "character",
    "moment",
    "screen",
    "drama",
    "comedy",
    "director",
    "writer",
    "frame",
    "color",
    "sound",
    "voice",
    "heart",
    "mind",
]
SETS = {"long-prompt": (96, 32), "short-prompt": (16, 48)}  # words: prompt, completion
SETS["image-prompt"] = (8, 32)  # for tiny-vlm: a 256-token image + a short question
# the GPU plan's sets: ~1.6k-token (long-prompt, 3:1) and ~1.3k-token (short-prompt) sequences
GPU_SETS = {"long-prompt": (300, 100), "short-prompt": (60, 240)}
# both frameworks' max_length: no pair may reach it, since each truncates in its own way (directpo
# the prompt from the left, TRL the whole sequence from the right): that would compare other data
MAX_LENGTH = 4096


def make_data(
    path: Path,
    prompt_words: int,
    completion_words: int,
    pairs: int,
    seed: int,
    image_token: str | None = None,
) -> None:
    """Random-word pairs; with ``image_token`` (a vision model) each prompt starts with its own
    random image (PNG files beside ``path``)."""
    rng = random.Random(seed)

    def text(n: int) -> str:
        return " " + " ".join(rng.choice(WORDS) for _ in range(n))

    with path.open("w") as handle:
        for _ in range(pairs):
            row = {
                "prompt": text(prompt_words).strip(),
                "chosen": text(completion_words),
                "rejected": text(completion_words),
            }
            if image_token is not None:
                image = path.parent / f"{path.stem}-{len(row['prompt'])}-{rng.random():.6f}.png"
                sys.path.insert(0, str(ROOT / "tests"))
                from tiny_vlm import make_image

                make_image(image, seed=rng.randrange(1 << 30), size=160)
                row["prompt"] = image_token + row["prompt"]
                row["images"] = [image.name]
            handle.write(json.dumps(row) + "\n")


# -- FLOPs --------------------------------------------------------------------------------------


def pair_lengths(model: str, data: str) -> list[tuple[int, int, int]]:
    """(prompt, chosen, rejected) token counts of each pair, tokenized as directpo does."""
    from directpo.data import Columns, load_preferences
    from directpo.tokenization import tokenize_preferences
    from directpo.tokenizer_loading import load_processor, load_tokenizer

    processor = load_processor(model)
    tokenized = tokenize_preferences(
        load_preferences(data, Columns("prompt", "chosen", "rejected")),
        load_tokenizer(model) if processor is None else processor.tokenizer,
        None,  # whole: check_lengths compares them with MAX_LENGTH
        processor=processor,
    )
    return [(len(p.prompt_ids), len(p.chosen_ids), len(p.rejected_ids)) for p in tokenized.pairs]


def check_lengths(lengths: list[tuple[int, int, int]], where: str) -> None:
    """Stop when a pair's longer sequence would be truncated (``--scale`` too large)."""
    longest = max(p + max(c, r) for p, c, r in lengths)
    if longest > MAX_LENGTH:
        sys.exit(
            f"{where}: a pair of {longest} tokens is over max_length {MAX_LENGTH}, which "
            "directpo and TRL truncate differently (an unequal comparison): use a smaller --scale"
        )


def training_flops(model: str, lengths: list[tuple[int, int, int]]) -> dict[str, float]:
    """FLOPs per pair of one DPO step (policy forward + backward = 3 forwards, reference forward
    = 1; recomputation not counted): as directpo lays a pair out (the prompt once, the LM head on
    completion tokens) and as TRL does (two sequences, the LM head on every position)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model)
    cfg = getattr(cfg, "text_config", None) or cfg  # a VLM: the language model (tower excluded)
    d, layers, vocab = cfg.hidden_size, cfg.num_hidden_layers, cfg.vocab_size
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or d // heads
    kv = getattr(cfg, "num_key_value_heads", heads)
    ffn = getattr(cfg, "intermediate_size", 4 * d)
    per_layer = d * (heads * head_dim + 2 * kv * head_dim) + heads * head_dim * d + 3 * d * ffn
    linear = layers * per_layer  # matmul weights per token, embeddings and head excluded
    attention = 4 * layers * heads * head_dim  # per (query, key) pair: QK^T and PV

    def forward(tokens: float, pairs: float, head_tokens: float) -> float:
        return 2 * linear * tokens + attention * pairs + 2 * d * vocab * head_tokens

    ours = theirs = 0.0
    for p, c, r in lengths:
        ours += forward(p + c + r, (p + c) ** 2 / 2 + r * p + r**2 / 2, c + r)
        theirs += forward(2 * p + c + r, ((p + c) ** 2 + (p + r) ** 2) / 2, 2 * p + c + r)
    n = len(lengths)
    return {"directpo": 4 * ours / n, "trl": 4 * theirs / n}


# -- models -------------------------------------------------------------------------------------

QWEN_SHAPES = {  # Qwen2.5-0.5B and -1.5B (and Qwen2-0.5B, the same shape as 2.5-0.5B)
    "qwen2.5-0.5b-random": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                                num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b-random": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                num_attention_heads=12, num_key_value_heads=2),
}  # fmt: skip
QWEN_SHAPES["qwen2-0.5b-random"] = QWEN_SHAPES["qwen2.5-0.5b-random"]


def qwen_random(name: str, folder: Path) -> Path:
    """A random-initialised model of a Qwen2.5 shape with the tests' byte-level tokenizer: the
    benchmark needs the shape, not the weights (built on the GPU when there is one)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import torch
    from tiny import build_tokenizer
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tokenizer("gpt2")
    config = Qwen2Config(
        vocab_size=151936,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **QWEN_SHAPES[name],
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny import save_tiny_model

    return save_tiny_model("llama", folder)


def build_model(name: str, work: Path) -> Path:
    if name == "tiny":
        return tiny_model(work / "tiny")
    if name == "tiny-vlm":  # LLaVA-style: 128x128 images, 8x8 patches -> 256 image tokens
        sys.path.insert(0, str(ROOT / "tests"))
        from tiny_vlm import save_tiny_vlm

        return save_tiny_vlm("llava", work / "tiny-vlm", image_size=128)
    if name in QWEN_SHAPES:
        return qwen_random(name, work / name)
    if name == "smollm2":
        from directpo.demo.assets import smollm2_dir

        return smollm2_dir()
    sys.exit(f"unknown model {name}")


MODELS = ("tiny", "tiny-vlm", "smollm2", *QWEN_SHAPES)
