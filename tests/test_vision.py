"""Vision-language DPO: image rows, the processor's image tokens, and each pair's image encoded
once with prefix sharing (tiny LLaVA-style and Qwen2-VL-style models, built offline)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from tiny_vlm import build_vlm, make_image, save_tiny_vlm

from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.data import load_preferences
from directpo.logprobs import model_logprobs
from directpo.tokenization import PairTokenizer
from directpo.vision import attach_rope_positions

STYLES = ("llava", "qwen2vl")


def image_rows(folder: Path, count: int = 4) -> list[dict]:
    """Conversational rows, each with its own image file (sizes differ)."""
    rows = []
    for i in range(count):
        make_image(folder / f"img{i}.png", seed=i, size=40 + 8 * i)
        rows.append({
            "images": [f"img{i}.png"],
            "prompt": [{"role": "user", "content": f"Describe the image {i}."}],
            "chosen": [{"role": "assistant", "content": "a bright and colourful scene" + "!" * i}],
            "rejected": [{"role": "assistant", "content": "a dull photo"}],
        })  # fmt: skip
    return rows


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize("style", STYLES)
def test_shared_and_packed_rows_give_the_plain_layouts_logprobs_and_gradients(
    style, tmp_path
) -> None:
    model, processor = build_vlm(style)
    model.config._attn_implementation = "sdpa"
    data = load_preferences(str(write(tmp_path / "rows.jsonl", image_rows(tmp_path))))
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    pairs = [encoder.encode(example, Counter()) for example in data.examples]
    assert all(p.vision is not None for p in pairs)
    attach_rope_positions(model, pairs)
    assert (pairs[0].vision.positions is not None) == (style == "qwen2vl")
    pad = processor.tokenizer.pad_token_id
    results = {}
    for name, layout in (
        ("plain", PLAIN),
        ("shared", Layout(share_prefix=True)),
        ("packed", Layout(share_prefix=True, pack=True)),
    ):
        model.zero_grad()
        batch = collate_pairs(pairs, pad, layout=layout)
        images = batch.images["pixel_values"].shape[0]
        logps = model_logprobs(model, batch)[0]
        logps.sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[name] = (logps.detach(), grads, images)
    plain_logps, plain_grads, plain_images = results["plain"]
    for name in ("shared", "packed"):
        logps, grads, images = results[name]
        torch.testing.assert_close(logps, plain_logps, rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(grads, plain_grads, rtol=1e-4, atol=1e-5)
        assert 2 * images == plain_images  # each pair's image once, not twice


@pytest.mark.parametrize("style", STYLES)
def test_training_a_vlm_writes_a_folder_that_loads_without_directpo(style, tmp_path) -> None:
    from tiny import tiny_config
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from directpo.trainer import train

    model_dir = save_tiny_vlm(style, tmp_path / "model")
    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path))
    out = tmp_path / "out"
    lines: list[str] = []
    result = train(
        tiny_config(model_dir, data, out, max_steps=4, per_device_train_batch_size=4,
                    learning_rate=5e-3),
        echo=lines.append,
    )  # fmt: skip
    rows = [r for r in result.metrics if "loss" in r]
    assert rows[0]["loss"] == pytest.approx(0.693147, abs=1e-5)  # policy == reference
    assert rows[-1]["loss"] < rows[0]["loss"]
    start = AutoModelForImageTextToText.from_pretrained(model_dir)
    trained = AutoModelForImageTextToText.from_pretrained(out)
    AutoProcessor.from_pretrained(out)
    tower = "vision_tower" if style == "llava" else "visual"
    for (name, before), after in zip(start.named_parameters(), trained.parameters(), strict=True):
        if f".{tower}." in f".{name}":  # freeze_vision_tower (the default)
            assert torch.equal(before, after), name
    pairs = zip(start.parameters(), trained.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    assert "AutoModelForImageTextToText" in (out / "README.md").read_text()
