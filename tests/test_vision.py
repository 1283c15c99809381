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
from directpo.model_checks import choose_layout
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
    projector = ".multi_modal_projector." if style == "llava" else ".visual.merger."
    for (name, before), after in zip(start.named_parameters(), trained.parameters(), strict=True):
        if projector in f".{name}":  # the projector trains (Qwen-VL's inside its tower)
            assert not torch.equal(before, after), name
        elif f".{tower}." in f".{name}":  # freeze_vision_tower (the default)
            assert torch.equal(before, after), name
    pairs = zip(start.parameters(), trained.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    assert "AutoModelForImageTextToText" in (out / "README.md").read_text()


def test_freezing_the_vision_tower_leaves_its_projector_training() -> None:
    """Qwen-VL's projector sits inside its tower (visual.merger; Qwen3-VL's deepstack mergers
    too): freeze_vision_tower froze it with the tower, so nothing mapped the images into the
    language model's space any more, where LLaVA's multi_modal_projector trains."""
    from directpo.vision import freeze_vision_tower

    model, _ = build_vlm("qwen3vl")
    freeze_vision_tower(model)
    training = {name for name, param in model.named_parameters() if param.requires_grad}
    projector = {n for n in training if ".visual." in n}
    assert projector and all(".merger." in n or ".deepstack_merger_list." in n for n in projector)
    assert any(".deepstack_merger_list." in n for n in projector)
    assert not any(".visual.blocks." in n or ".patch_embed." in n for n in training)
    assert any(".language_model." in n for n in training)


def test_every_layout_and_image_source_trains(tmp_path) -> None:
    """Explicit (the image placeholder added when the text has none), implicit and
    conversational rows; paths, PIL images and datasets.Image values from Python."""
    import datasets
    from tiny import tiny_config

    from directpo.trainer import train

    model_dir = save_tiny_vlm("llava", tmp_path / "model")
    make_image(tmp_path / "a.png", seed=1)
    explicit = [
        {"image": "a.png", "prompt": "What is shown?", "chosen": " a cat.", "rejected": " a dog."},
        {"images": ["a.png", "a.png"], "prompt": "<image><image>Compare them.",
         "chosen": " the same.", "rejected": " different."},
    ]  # fmt: skip
    implicit = [{"image": "a.png", "chosen": "Describe: bright.", "rejected": "Describe: dull."}]
    for name, rows in (("explicit", explicit), ("implicit", implicit)):
        out = tmp_path / name
        result = train(tiny_config(model_dir, write(tmp_path / f"{name}.jsonl", rows), out,
                                   max_steps=2), echo=lambda _: None)  # fmt: skip
        assert [r["loss"] for r in result.metrics if "loss" in r][0] == pytest.approx(0.693147)
    pil = [{**row, "images": [make_image(seed=2)]} for row in image_rows(tmp_path, 2)]
    train(tiny_config(model_dir, None, tmp_path / "pil", max_steps=1), pil, echo=lambda _: None)
    features = datasets.Dataset.from_list(
        [{**row, "images": [str(tmp_path / "a.png")]} for row in image_rows(tmp_path, 2)]
    ).cast_column("images", datasets.Sequence(datasets.Image()))
    train(tiny_config(model_dir, None, tmp_path / "ds", max_steps=1), features,
          echo=lambda _: None)  # fmt: skip


def test_bad_images_are_one_line_errors_naming_the_row(tmp_path, capsys) -> None:
    from tiny import save_tiny_model

    from directpo.cli import main

    model_dir = save_tiny_vlm("llava", tmp_path / "model")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    good = image_rows(tmp_path, 2)
    cases = [
        ({"images": ["missing.png"]}, "line 3: field 'images': image missing.png not found"),
        ({"image": "https://example.com/a.png"}, "line 3: field 'image': image https://example"),
        # a deep path is said whole (cut at 80 characters, its file name was lost)
        ({"images": [f"{'d' * 90}/shot.png"]}, f"image {'d' * 90}/shot.png not found (looked at"),
        ({"images": ["broken.png"]}, "line 3: cannot read"),
    ]
    for change, message in cases:
        bad = {**good[0], **change}
        bad.pop("images" if "image" in change else "", None)
        data = write(tmp_path / "rows.jsonl", [*good, bad])
        code = main(["train", "--model_name_or_path", str(model_dir), "--train_file", str(data),
                     "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                     "--overwrite_output_dir", "true", "--report_to", "none"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code != 0 and message in err and "Traceback" not in err, err
    # skip_invalid_rows counts them instead
    code = main(["train", "--model_name_or_path", str(model_dir), "--train_file", str(data),
                 "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                 "--overwrite_output_dir", "true", "--report_to", "none",
                 "--skip_invalid_rows", "true"])  # fmt: skip
    assert code == 0 and "1 unreadable image" in capsys.readouterr().out
    # images for a text-only model: said, not ignored
    text_model = save_tiny_model("llama", tmp_path / "text")
    code = main(
        [
            "train",
            "--model_name_or_path",
            str(text_model),
            "--train_file",
            str(data),
            "--output_dir",
            str(tmp_path / "t"),
            "--max_steps",
            "1",
            "--report_to",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0 and "no image processor (not a vision-language model)" in err


def test_precomputed_reference_and_lora_with_images(tmp_path, monkeypatch) -> None:
    """TRL cannot precompute the reference with images; here the cached values equal the live
    reference's (the cache key includes the pixels). LoRA goes on the language model only."""
    from safetensors.torch import load_file
    from tiny import tiny_config

    from directpo.trainer import train

    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model_dir = save_tiny_vlm("qwen2vl", tmp_path / "model")
    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path))
    runs = {}
    for name, extra in (("live", {}), ("cached", {"precompute_ref_log_probs": True})):
        runs[name] = train(tiny_config(model_dir, data, tmp_path / name, max_steps=3,
                                       per_device_train_batch_size=2, **extra),
                           echo=lambda _: None).metrics  # fmt: skip
    for live, cached in zip(runs["live"], runs["cached"], strict=True):
        if "loss" in live:
            assert cached["loss"] == pytest.approx(live["loss"], abs=1e-5)
    out = tmp_path / "lora"
    train(tiny_config(model_dir, data, out, max_steps=2, lora_r=4), echo=lambda _: None)
    keys = list(load_file(out / "adapter_model.safetensors"))
    assert keys and all("language_model" in key for key in keys), keys[:3]


def test_score_and_rank_take_image_prompts(tmp_path, capsys) -> None:
    """After training on image rows, score and rank read the same rows (image paths relative to
    the input file); a reward depends on the image."""
    from tiny import tiny_config

    from directpo.cli import main
    from directpo.reward import ImplicitReward
    from directpo.trainer import train

    model_dir = save_tiny_vlm("qwen2vl", tmp_path / "model")
    rows = image_rows(tmp_path)
    data = write(tmp_path / "rows.jsonl", rows)
    run = tmp_path / "run"
    train(tiny_config(model_dir, data, run, max_steps=6, per_device_train_batch_size=4,
                      learning_rate=2e-2), echo=lambda _: None)  # fmt: skip
    code = main(["score", "--model_name_or_path", str(run), "--input", str(data),
                 "--output", str(tmp_path / "scored.jsonl")])  # fmt: skip
    assert code == 0 and "4 pairs: preference accuracy" in capsys.readouterr().out
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    reward = ImplicitReward.from_run(str(run))
    prompts = [r["prompt"] for r in rows]
    images = [[str(tmp_path / r["images"][0])] for r in rows]
    chosen = reward.score(prompts, [r["chosen"] for r in rows], images)
    assert [r["chosen_reward"] for r in scored] == pytest.approx(chosen, abs=1e-6)
    other = reward.score(prompts, [r["chosen"] for r in rows], images[::-1])
    assert other != pytest.approx(chosen, abs=1e-6)  # the image is part of what is scored

    candidates = [{"images": ["img0.png"], "prompt": rows[0]["prompt"],
                   "responses": [rows[0]["rejected"], rows[0]["chosen"]]}]  # fmt: skip
    code = main(["rank", "--model_name_or_path", str(run),
                 "--input", str(write(tmp_path / "cands.jsonl", candidates)),
                 "--output", str(tmp_path / "ranked.jsonl")])  # fmt: skip
    ranked = json.loads((tmp_path / "ranked.jsonl").read_text())["ranked"]
    expected = sorted(reward.score([rows[0]["prompt"]] * 2, candidates[0]["responses"],
                                   [images[0]] * 2), reverse=True)  # fmt: skip
    assert code == 0 and [r["reward"] for r in ranked] == pytest.approx(expected, abs=1e-6)


def test_generate_and_eval_generate_take_image_prompts(tmp_path) -> None:
    """Sampling sees the image: the same prompt text with another image gives other
    completions (greedy); eval_generate samples held-out image prompts and logs their KL."""
    from tiny import tiny_config

    from directpo.cli import main
    from directpo.trainer import train

    for style in STYLES:
        model_dir = save_tiny_vlm(style, tmp_path / style)
        rows = image_rows(tmp_path)
        prompts = [{"images": [f"img{i}.png"], "prompt": rows[0]["prompt"]} for i in (0, 1, 2)]
        out = tmp_path / f"{style}-completions.jsonl"
        code = main(["generate", "--model_name_or_path", str(model_dir),
                     "--input", str(write(tmp_path / "prompts.jsonl", prompts)),
                     "--output", str(out), "--temperature", "0",
                     "--max_new_tokens", "12"])  # fmt: skip
        assert code == 0
        texts = [json.loads(line)["completions"][0] for line in out.read_text().splitlines()]
        assert len(set(texts)) > 1, texts  # the images differ, so do the completions

    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path))
    result = train(
        tiny_config(save_tiny_vlm("qwen2vl", tmp_path / "m"), data, tmp_path / "run",
                    max_steps=2, eval_file=str(data), eval_generate=2, eval_steps=2,
                    generate_max_new_tokens=6),
        echo=lambda _: None,
    )  # fmt: skip
    evaluation = [row for row in result.metrics if "eval/kl" in row][-1]
    assert evaluation["eval/kl"] == evaluation["eval/kl"]  # finite, computed with the images
    records = [
        json.loads(x) for x in (tmp_path / "run/samples/step-2.jsonl").read_text().split("\n") if x
    ]
    assert records and all(r["images"] == ["img0.png"] or r["images"] for r in records)


def test_the_readme_example_file_trains(tmp_path) -> None:
    from tiny import tiny_config

    from directpo.trainer import train

    example = Path(__file__).resolve().parent.parent / "examples" / "vision_pairs.jsonl"
    result = train(
        tiny_config(save_tiny_vlm("qwen2vl", tmp_path / "m"), example, tmp_path / "out",
                    max_steps=2, per_device_train_batch_size=4),
        echo=lambda _: None,
    )  # fmt: skip
    assert len([r for r in result.metrics if "loss" in r]) == 2


def test_layout_check_at_start_includes_image_pairs(tmp_path) -> None:
    """check_layout scores real image pairs in both layouts (synthetic ids avoid the image
    tokens, which would be an error without their images)."""
    from directpo.model_checks import _reserved_token_ids, check_layout

    model, processor = build_vlm("qwen2vl")
    model.config._attn_implementation = "sdpa"
    reserved = _reserved_token_ids(model)
    assert (
        model.config.image_token_id in reserved and model.config.vision_start_token_id in reserved
    )
    assert processor.tokenizer.eos_token_id not in reserved
    data = load_preferences(str(write(tmp_path / "rows.jsonl", image_rows(tmp_path, 2))))
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    pairs = [encoder.encode(example, Counter()) for example in data.examples]
    attach_rope_positions(model, pairs)
    seen: list[tuple[int, int]] = []

    def spy(module, args, kwargs):  # noqa: ANN001, ANN202
        if "pixel_values" in kwargs:
            seen.append((kwargs["pixel_values"].shape[0], kwargs["input_ids"].shape[0]))

    handle = model.register_forward_pre_hook(spy, with_kwargs=True)
    layout = Layout(share_prefix=True, pack=True)
    assert check_layout(model, layout, pairs) is None
    handle.remove()
    patches = pairs[0].vision.tensors["pixel_values"].shape[0]
    # plain: each image twice (chosen and rejected rows); shared+packed: once
    assert [images for images, _ in seen] == [4 * patches, 2 * patches]


def test_base64_data_uris_and_bytes_are_the_same_image_as_its_file(tmp_path) -> None:
    """Images as transformers' load_image takes them (a data URI, bare base64 text) or as bytes
    give the pixels of the file they encode; a long text that is neither is one short line."""
    import base64

    from directpo.errors import DataError

    _, processor = build_vlm("llava")
    rows = image_rows(tmp_path, 1)
    encoded = base64.b64encode((tmp_path / "img0.png").read_bytes()).decode()
    sources = [[str(tmp_path / "img0.png")], [f"data:image/png;base64,{encoded}"], [encoded],
               [(tmp_path / "img0.png").read_bytes()]]  # fmt: skip
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    digests = []
    for images in sources:
        data = load_preferences([{**rows[0], "images": images}], name="rows")
        digests.append(encoder.encode(data.examples[0], Counter()).vision.digest)
    assert len(set(digests)) == 1
    with pytest.raises(DataError) as error:
        load_preferences([{**rows[0], "images": ["x" * 5000 + ".png"]}], name="rows")
    message = str(error.value)
    assert "rows: row 1: field 'images': image xxx" in message and "(5004 characters)" in message
    assert len(message) < 300


def test_datasets_image_columns_are_read_as_stored_not_decoded(tmp_path) -> None:
    """A Dataset's Image column stays its stored bytes (decoded when a batch needs the pixels,
    not held as pixels by every pair), in a Dataset and an IterableDataset alike; an image
    file that is gone is the row's one-line error, not FileNotFoundError from datasets."""
    import datasets

    from directpo.errors import DataError

    rows = image_rows(tmp_path, 2)
    images = [[make_image(seed=i)] for i in range(2)]
    dataset = datasets.Dataset.from_list(
        [{**row, "images": pictures} for row, pictures in zip(rows, images, strict=True)]
    ).cast_column("images", datasets.Sequence(datasets.Image()))
    for source in (dataset, dataset.to_iterable_dataset()):
        data = load_preferences(source)
        assert all(isinstance(e.images[0], bytes) for e in data.examples)
    _, processor = build_vlm("llava")
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    stored = encoder.encode(data.examples[1], Counter()).vision.tensors["pixel_values"]
    pixels = processor.image_processor(images[1], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(stored, pixels)
    gone = tmp_path / "gone.png"
    make_image(gone)
    dataset = datasets.Dataset.from_list([{**rows[0], "images": [str(gone)]}]).cast_column(
        "images", datasets.Sequence(datasets.Image())
    )
    gone.unlink()
    with pytest.raises(DataError, match=r"^dataset: row 1: field 'images': image .*gone.png not"):
        load_preferences(dataset)


def test_image_parts_carry_images_and_a_placeholder_without_one_is_refused(tmp_path) -> None:
    """{"type": "image", "image": ...} parts (TRL's and transformers' chat format) are the row's
    images; an image placeholder with no image (a bare image part, or the image token in text)
    is the row's error: the vision model had trained on its token with no pixels behind it."""
    from directpo.errors import DataError
    from directpo.tokenization import tokenize_preferences

    _, processor = build_vlm("llava")
    row = image_rows(tmp_path, 1)[0]
    question = {"type": "text", "text": "Describe the image 0."}
    inline = {**row, "prompt": [{"role": "user", "content": [
        {"type": "image", "image": "img0.png"}, question]}]}  # fmt: skip
    inline.pop("images")
    data = load_preferences(str(write(tmp_path / "rows.jsonl", [row, inline])))
    assert data.examples[1].images == (str(tmp_path / "img0.png"),)
    assert data.examples[0].prompt == data.examples[1].prompt
    pairs = tokenize_preferences(data, processor.tokenizer, None, processor=processor).pairs
    first, second = pairs
    assert (first.prompt_ids, first.chosen_ids) == (second.prompt_ids, second.chosen_ids)
    assert first.vision.digest == second.vision.digest
    with pytest.raises(DataError, match="line 1: the prompt's image parts carry images and field"):
        load_preferences(str(write(tmp_path / "rows.jsonl", [{**inline, "images": ["img0.png"]}])))
    bare = {**inline, "prompt": [{"role": "user", "content": [{"type": "image"}, question]}]}
    text = {"prompt": "<image>\nWhat is it?", "chosen": " red", "rejected": " blue"}
    for placeholder in (bare, text):
        data = load_preferences([placeholder], name="rows")
        with pytest.raises(DataError, match="row 1: the prompt has 1 image placeholder"):
            tokenize_preferences(data, processor.tokenizer, None, processor=processor)


def test_a_csv_images_column_holding_a_list_is_that_list(tmp_path) -> None:
    """pandas writes a list column to CSV as its repr ("['img0.png', 'img1.png']"): that cell
    was read as one file name, not found; it is the list of images (JSON lists too)."""
    import pandas as pd

    rows = image_rows(tmp_path, 2)
    two = {**rows[0], "images": ["img0.png", "img1.png"]}
    two["prompt"] = [{"role": "user", "content": "Compare the images."}]
    pd.DataFrame([two, rows[1]]).to_csv(tmp_path / "rows.csv", index=False)
    examples = load_preferences(str(tmp_path / "rows.csv")).examples
    assert [len(e.images) for e in examples] == [2, 1]
    assert examples[0].images[1] == str(tmp_path / "img1.png")
    cell = json.dumps([str(tmp_path / "img0.png"), str(tmp_path / "img1.png")])
    json_cell = load_preferences([{**two, "images": cell}], name="rows")
    assert len(json_cell.examples[0].images) == 2


def test_a_frozen_vision_tower_trained_in_bf16_is_saved_as_stored(tmp_path) -> None:
    """Mixed bf16 holds the frozen tower in bf16; the float32 final folder held each of its
    weights rounded to bf16, though training never changed them. Now they are the stored ones,
    and the trained weights are the float32 masters (they still moved)."""
    from tiny import tiny_config
    from transformers import AutoModelForImageTextToText

    from directpo.trainer import train

    model_dir = save_tiny_vlm("llava", tmp_path / "model")
    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path))
    config = tiny_config(
        model_dir, data, tmp_path / "out", max_steps=2, per_device_train_batch_size=4,
        learning_rate=5e-3, dtype="bfloat16",
    )  # fmt: skip
    train(config, echo=lambda _: None)
    start = AutoModelForImageTextToText.from_pretrained(model_dir)
    trained = AutoModelForImageTextToText.from_pretrained(tmp_path / "out")
    tower = 0
    for (name, before), after in zip(start.named_parameters(), trained.parameters(), strict=True):
        assert after.dtype == torch.float32, name
        if ".vision_tower." in f".{name}":
            tower += 1
            assert torch.equal(before, after), name
    assert tower > 5
    pairs = zip(start.parameters(), trained.parameters(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)


def test_a_prompt_with_images_too_long_names_the_limit_the_user_can_raise(tmp_path) -> None:
    """A prompt with images is never cut; too long, it is refused naming the limit. Without
    max_prompt_length the refusal said 'more than max_prompt_length 19; raise it' for a run that
    set only max_length 20: an option the user never set, at a value they never wrote."""
    from directpo.errors import DataError
    from directpo.tokenization import tokenize_preferences

    _, processor = build_vlm("llava")
    data = load_preferences(str(write(tmp_path / "rows.jsonl", image_rows(tmp_path, 1))))
    for limits, named in (
        ({"max_length": 20}, r"more than max_length 20 \(a prompt keeps at most one less\)"),
        ({"max_length": 200, "max_prompt_length": 10}, "more than max_prompt_length 10 allows"),
    ):
        with pytest.raises(DataError, match=f"line 1: the prompt with its image tokens .*{named}"):
            tokenize_preferences(data, processor.tokenizer, processor=processor, **limits)


@pytest.mark.parametrize("style", ["gemma3", "idefics3"])
def test_pairs_whose_image_inputs_differ_in_shape_batch_as_each_alone(style, tmp_path) -> None:
    """A batch of rows with one image, two images, a short and a wide one and prompts of other
    lengths: Gemma 3's per-token token_type_ids (its image tokens see each other) follow the
    tokens, and Idefics3's [1, tiles, ...] pixels (tiles vary with the images) are padded as its
    processor pads them; each pair's log-probs are those it has alone (a traceback before)."""
    model, processor = build_vlm(style)
    model.config._attn_implementation = "sdpa"
    make_image(tmp_path / "wide.png", seed=5, size=100, height=30)
    rows = image_rows(tmp_path, 3)
    rows[1]["images"] = ["img1.png", "img2.png"]
    rows[1]["prompt"][0]["content"] = "Compare the two images, their colours and shapes."
    rows[2]["images"] = ["wide.png"]
    data = load_preferences(str(write(tmp_path / "rows.jsonl", rows)))
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    pairs = [encoder.encode(example, Counter()) for example in data.examples]
    pad = processor.tokenizer.pad_token_id
    alone = [model_logprobs(model, collate_pairs([pair], pad))[0].detach() for pair in pairs]
    expected = torch.stack(alone, 1).flatten()  # chosen of each pair, then rejected
    shared = Layout(share_prefix=True)
    for layout in (PLAIN,) if style == "gemma3" else (PLAIN, shared):
        batch = collate_pairs(pairs, pad, layout=layout)
        logps = model_logprobs(model, batch)[0].detach()
        torch.testing.assert_close(logps, expected, rtol=1e-5, atol=1e-4)
    if style == "gemma3":  # its image tokens are marked for the model, padding is not
        types = collate_pairs(pairs, pad).token_types["token_type_ids"]
        assert int(types.sum()) == 2 * 4 * (1 + 2 + 1)  # 4 tokens an image, chosen and rejected
        # which the shared rows' mask would not say: Gemma 3 trains in the plain layout
        lines: list[str] = []
        assert choose_layout(shared, [model], lines.append, pairs[:2], longest=100) == PLAIN
        assert "token_type_ids let tokens see later ones" in lines[0]


def test_an_exif_rotated_photo_is_read_upright_as_datasets_decodes_it(tmp_path) -> None:
    """A JPEG stored 60x20 with EXIF orientation 6 (a phone photo held upright) is the 20x60
    image that datasets.Image decodes for TRL, from a path, bytes or a stored dataset value."""
    import datasets
    from PIL import Image

    from directpo.vision import image_values, open_image

    stored = make_image(seed=3, size=60, height=20)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to view
    stored.save(tmp_path / "photo.jpg", exif=exif)
    decoded = datasets.Dataset.from_dict({"image": [str(tmp_path / "photo.jpg")]})
    decoded = decoded.cast_column("image", datasets.Image())[0]["image"].convert("RGB")
    assert decoded.size == (20, 60)
    raw = (tmp_path / "photo.jpg").read_bytes()
    for value in ("photo.jpg", raw, {"bytes": raw, "path": None}):
        (image,) = image_values(value, str(tmp_path))
        assert list(open_image(image).getdata()) == list(decoded.getdata())


def test_16_bit_and_transparent_images_are_the_pixels_the_processor_would_make(tmp_path) -> None:
    """A 16-bit grayscale PNG (a scan, a depth map) trained as a white image (PIL's
    convert("RGB") clipped each value at 255); it is its values scaled to 8 bits. A PNG's
    transparent pixels took the colour hidden under them (black here); they are white, as
    transformers' convert_to_rgb makes the RGBA image datasets.Image decodes for TRL. From a
    path, bytes or a PIL image alike."""
    import numpy as np
    from PIL import Image
    from transformers.image_transforms import convert_to_rgb

    from directpo.vision import image_values, open_image

    ramp = np.arange(0, 65536, 16, dtype=np.uint16).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "scan.png")
    assert Image.open(tmp_path / "scan.png").mode == "I;16"
    half_clear = np.zeros((8, 8, 4), np.uint8)
    half_clear[:, :4] = (200, 30, 30, 255)  # the left half opaque red, the right transparent
    Image.fromarray(half_clear, "RGBA").save(tmp_path / "logo.png")
    expected = {
        "scan.png": np.repeat((ramp >> 8).astype(np.uint8)[..., None], 3, axis=2),
        "logo.png": np.asarray(convert_to_rgb(Image.open(tmp_path / "logo.png"))),
    }
    assert expected["logo.png"][0, 7].tolist() == [255, 255, 255]
    for name, pixels in expected.items():
        raw = (tmp_path / name).read_bytes()
        for value in (name, raw, Image.open(tmp_path / name)):
            (image,) = image_values(value, str(tmp_path))
            assert np.array_equal(np.asarray(open_image(image)), pixels), (name, type(value))
    # a 16-bit PNG's transparent value (its tRNS chunk) is white too, not its scaled dark gray
    keyed = np.array([[1000, 1000], [40000, 65535]], np.uint16)
    Image.fromarray(keyed).save(tmp_path / "keyed.png", transparency=1000)
    assert Image.open(tmp_path / "keyed.png").mode == "I;16"
    laid = np.asarray(open_image(str(tmp_path / "keyed.png")))[..., 0]
    assert laid.tolist() == [[255, 255], [40000 >> 8, 255]]
    # an 8-bit image held in PIL's 32-bit "I" mode keeps its values
    eight_bit = np.arange(64, dtype=np.int32).reshape(8, 8)
    kept = np.asarray(open_image(Image.fromarray(eight_bit, "I")))[..., 0]
    assert np.array_equal(kept, eight_bit.astype(np.uint8))


def test_an_image_over_pils_pixel_limit_is_said_as_one_to_save_smaller(
    tmp_path, monkeypatch
) -> None:
    """A 400-megapixel scan was 'cannot read ... could be decompression bomb DOS attack.';
    the line says it is PIL's limit and what to do (PIL's limit lowered here: no huge file)."""
    from PIL import Image

    from directpo.vision import ImageError, open_image

    make_image(tmp_path / "scan.png", seed=1, size=40)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # refused over twice this: 1600 > 1200
    with pytest.raises(ImageError) as refused:
        open_image(str(tmp_path / "scan.png"))
    assert refused.value.reason == "unreadable image"
    assert str(refused.value.message).endswith(
        "(Image size (1600 pixels) exceeds limit of 1200 pixels, PIL's guard against "
        "decompression bombs; the processor shrinks every image to its own size: save it smaller)"
    )


def test_a_stored_images_bytes_written_as_base64_by_score_read_back_as_that_image(
    tmp_path,
) -> None:
    """score / rank / generate write a Parquet file's datasets.Image values to JSONL as
    {"bytes": BASE64_TEXT, "path": null}; training on that output (score, filter, train) was
    'cannot read iVBORw0KGgo...' (the text taken for a path, thousands of characters); it is
    the image the Parquet row held."""
    import base64

    import numpy as np

    from directpo.vision import image_values, open_image

    make_image(tmp_path / "a.png", seed=4, size=24)
    raw = (tmp_path / "a.png").read_bytes()
    written = json.loads(json.dumps({"bytes": base64.b64encode(raw).decode(), "path": None}))
    (image,) = image_values([written], str(tmp_path))
    assert image == raw
    expected = np.asarray(open_image(str(tmp_path / "a.png")))
    assert np.array_equal(np.asarray(open_image(image)), expected)


def test_image_parts_go_in_the_first_user_turn_when_no_message_names_one(tmp_path) -> None:
    """A system turn written as text parts, or a user turn as text parts without an image part,
    names no image: the row's images go first in the first user turn, as for string contents
    (TRL's rlaif-v style rows). They were refused: 0 image tokens for 1 image."""
    _, processor = build_vlm("llava")
    rows = image_rows(tmp_path, 2)
    rows[0]["prompt"] = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": "Describe the image 0."},
    ]
    rows[1]["prompt"] = [
        {"role": "user", "content": [{"type": "text", "text": "Describe the image 1."}]}
    ]
    data = load_preferences(str(write(tmp_path / "rows.jsonl", rows)))
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    texts = ("Describe the image 0.", "Describe the image 1.")
    for example, text in zip(data.examples, texts, strict=True):
        user = example.prompt[-1]
        assert user["content"] == [{"type": "image"}, {"type": "text", "text": text}]
        pair = encoder.encode(example, Counter())
        assert pair.prompt_ids.count(image_id) == 16  # one image's tokens


def test_lora_leaves_idefics3s_connector_alone_as_other_projectors(tmp_path) -> None:
    """Idefics3 / SmolVLM call their projector "connector": with LoRA the adapters go on the
    language model only, as on LLaVA's multi_modal_projector (it got adapters)."""
    from safetensors.torch import load_file
    from tiny import tiny_config

    from directpo.trainer import train

    model_dir = save_tiny_vlm("idefics3", tmp_path / "model")
    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path, 2))
    out = tmp_path / "lora"
    train(tiny_config(model_dir, data, out, max_steps=1, lora_r=4), echo=lambda _: None)
    keys = list(load_file(out / "adapter_model.safetensors"))
    assert keys and all(".text_model." in key for key in keys), [k for k in keys if "text" not in k]


def test_an_unfrozen_vision_tower_with_lora_is_refused(tmp_path, capsys) -> None:
    """freeze_vision_tower: false with LoRA: only adapters train, none on the vision tower, so
    it stayed frozen without a word; the option is refused instead (one line, exit 2)."""
    from directpo.cli import main

    model_dir = save_tiny_vlm("llava", tmp_path / "model")
    data = write(tmp_path / "rows.jsonl", image_rows(tmp_path, 2))
    capsys.readouterr()
    code = main(["train", "--model_name_or_path", str(model_dir), "--train_file", str(data),
                 "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none",
                 "--lora_r", "4", "--freeze_vision_tower", "false"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err, err
    assert err.splitlines()[-1] == (  # (was a recipe's words: 'set lora_r 0', not even those)
        "directpo: error: --freeze_vision_tower false trains the vision tower, but with LoRA "
        "only the adapters train and they go on the language model only; give "
        "--freeze_vision_tower, or --lora_r 0 to train every weight"
    ), err
    from directpo.errors import ConfigError
    from directpo.trainer import train

    with pytest.raises(ConfigError) as refused:  # train()'s keywords
        train(model_name_or_path=str(model_dir), train_file=str(data), lora_r=4,
              freeze_vision_tower=False, output_dir=str(tmp_path / "py"), report_to="none",
              max_steps=1, echo=None)  # fmt: skip
    assert str(refused.value).startswith("freeze_vision_tower=False trains the vision tower")
    assert str(refused.value).endswith("; pass freeze_vision_tower=True, or lora_r=0 to train "
                                       "every weight")  # fmt: skip


def _direct_logps(model: torch.nn.Module, pair) -> list[float]:  # noqa: ANN001
    """A pair's chosen and rejected log-probs from the model's own forward of prompt +
    completion alone (its own positions, masks and image features). PaliGemma's completion is
    its processor's suffix: token type 1 (attending causally), the prefix 0."""
    suffix = int(type(model).__name__.startswith("PaliGemma"))
    sums = []
    for completion in (pair.chosen_ids, pair.rejected_ids):
        ids = torch.tensor([pair.prompt_ids + completion])
        inputs = dict(pair.vision.tensors) if pair.vision is not None else {}
        for key, types in (pair.vision.token_types if pair.vision is not None else {}).items():
            inputs[key] = torch.tensor([types + [suffix] * len(completion)])
        for key, mask in (pair.vision.token_masks if pair.vision is not None else {}).items():
            # as the processor masks text after the last image: each token reads them all
            inputs[key] = torch.cat([mask, mask[-1:].expand(len(completion), *mask.shape[1:])])[
                None
            ]
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **inputs).logits
        scored = logits[0, len(pair.prompt_ids) - 1 : -1].float().log_softmax(-1)
        sums.append(float(scored.gather(-1, torch.tensor(completion)[:, None]).sum()))
    return sums


FAMILIES = ["qwen2_5vl", "qwen3vl", "onevision", "idefics3", "gemma3", "paligemma", "internvl",
            "aya_vision", "mllama", "smolvlm", "mistral3"]  # fmt: skip
# whose token_type_ids make the model's own attention mask, or whose cross-attention reads a
# row's images: they train in the plain layout only
OWN_MASKS = ("gemma3", "paligemma", "mllama")


@pytest.mark.parametrize("style", FAMILIES)
def test_each_familys_logprobs_in_every_layout_are_its_own_forwards(style, tmp_path) -> None:
    """Qwen2.5-VL (windowed vision attention), Qwen3-VL (deepstack features, interleaved
    M-RoPE), LLaVA-OneVision (anyres tiles), Idefics3 (tiles, pixel_attention_mask) and Gemma 3
    (token_type_ids): a batch of a one-image, a two-image, a wide-image and a text-only pair
    scores each pair as the model's own forward of it alone, in the plain, prefix-shared and
    packed layouts (Gemma 3: the plain layout, the only one it trains in)."""
    model, processor = build_vlm(style)
    model.config._attn_implementation = "sdpa"
    make_image(tmp_path / "wide.png", seed=5, size=100, height=30)
    rows = image_rows(tmp_path, 3)
    rows[1]["images"] = ["img1.png", "img2.png"]
    rows[1]["prompt"][0]["content"] = "Compare the two images."
    rows[2]["images"] = ["wide.png"]
    rows.append({**rows[0], "prompt": [{"role": "user", "content": "No picture here."}]})
    rows[3].pop("images")
    if style == "paligemma":  # no chat template (its prompts are text), nor text-only rows
        rows = [{**row, **{k: row[k][0]["content"] for k in ("prompt", "chosen", "rejected")}}
                for row in rows[:3]]  # fmt: skip
    rows = rows[:3] if style == "mllama" else rows  # no text-only rows
    data = load_preferences(str(write(tmp_path / "rows.jsonl", rows)))
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    pairs = [encoder.encode(example, Counter()) for example in data.examples]
    assert [p.vision is None for p in pairs] == [False, False, False, True][: len(rows)]
    attach_rope_positions(model, pairs)
    direct = [_direct_logps(model, pair) for pair in pairs]
    expected = torch.tensor([d[0] for d in direct] + [d[1] for d in direct])
    pad = processor.tokenizer.pad_token_id
    layouts = (PLAIN, Layout(share_prefix=True), Layout(share_prefix=True, pack=True))
    for layout in layouts[:1] if style in OWN_MASKS else layouts:
        with torch.no_grad():
            logps = model_logprobs(model, collate_pairs(pairs, pad, layout=layout))[0]
        torch.testing.assert_close(logps.float(), expected, rtol=1e-5, atol=1e-4)


def test_a_prefix_lms_text_only_row_is_refused_and_its_processors_labels_stay_out() -> None:
    """PaliGemma (a prefix-LM): its model attends both ways over every token of a prompt given
    without token_type_ids (a text-only row's completion saw its own future) and its processor
    refuses a prompt without images, so such a row is refused in one line; an image row's
    processor labels (its prompt's -100s) are no model input (the forward failed on them); it
    trains in the plain layout, with a note."""
    from directpo.tokenization import tokenize_preferences

    model, processor = build_vlm("paligemma")
    text = {"prompt": "Hi", "chosen": " a", "rejected": " b"}
    rows = [text, {**text, "images": [make_image(seed=1)]}]
    tokenized = tokenize_preferences(
        load_preferences(rows, name="rows"), processor.tokenizer, None, processor=processor,
        skip_invalid_rows=True,
    )  # fmt: skip
    (pair,) = tokenized.pairs
    assert "labels" not in pair.vision.tensors and pair.vision.completion_types == {
        "token_type_ids": 1
    }
    # its prefix, seen both ways, is what shared / packed rows' causal mask cannot say
    lines: list[str] = []
    assert (
        choose_layout(Layout(share_prefix=True), [model], lines.append, [pair], longest=100)
        == PLAIN
    )
    assert "PaliGemma's image and prompt" in lines[0]
    with pytest.raises(Exception, match=r"no images, and PaliGemmaProcessor's model \(a prefix"):
        tokenize_preferences(load_preferences(rows[:1], name="rows"), processor.tokenizer, None,
                             processor=processor)  # fmt: skip


def test_a_cross_attention_vlms_mask_rides_with_its_rows_and_a_text_only_row_is_refused(
    tmp_path,
) -> None:
    """Mllama (Llama 3.2 Vision) reads its images through cross-attention layers, with a
    cross_attention_mask per prompt token: it was refused. The mask is now laid out with the
    rows (own forwards: the family test); it trains in the plain layout, with a note, and a
    row without images (a batch's images are one entry per row) is refused in one line. Its
    LM head scores in chunks as other models' do."""
    from directpo.model_checks import check_heads
    from directpo.tokenization import tokenize_preferences

    model, processor = build_vlm("mllama")
    rows = image_rows(tmp_path, 2)
    tokenized = tokenize_preferences(
        load_preferences(str(write(tmp_path / "rows.jsonl", rows))), processor.tokenizer, None,
        processor=processor,
    )  # fmt: skip
    pair = tokenized.pairs[0]
    mask = pair.vision.token_masks["cross_attention_mask"]
    assert "cross_attention_mask" not in pair.vision.tensors
    assert mask.shape[0] == len(pair.prompt_ids) and int(mask[-1].sum()) > 0
    lines: list[str] = []
    assert (
        choose_layout(Layout(share_prefix=True), [model], lines.append, [pair], longest=99) == PLAIN
    )
    assert "cross-attention layers take a batch's images one entry per row" in lines[0]
    # its embeddings' 8 image rows past the LM head's: the chunked-head probe drew them as
    # targets, failed ('Target ... is out of bounds') and turned logprob_chunk_tokens off
    check_heads([model], lines.append)
    assert len(lines) == 1, lines
    rows[0].pop("images")
    data = load_preferences(str(write(tmp_path / "rows.jsonl", rows[:1])))
    with pytest.raises(Exception, match=r"no images, and MllamaProcessor's model \(cross-atten"):
        tokenize_preferences(data, processor.tokenizer, None, processor=processor)


@pytest.mark.parametrize(
    "style",
    ["qwen3vl", "onevision", "paligemma", "internvl", "aya_vision", "mllama", "smolvlm",
     "mistral3"],
)  # fmt: skip
def test_a_family_trains_resumes_and_its_folder_generates_without_directpo(style, tmp_path):
    """Train with a held-out file and checkpoints; resuming from the first checkpoint (refused
    before: save_pretrained stores the weights under transformers' names, 'weights do not match
    the model') goes on as the uninterrupted run; the final folder loads and generates with
    AutoModelForImageTextToText and AutoProcessor alone."""
    from tiny import tiny_config
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from directpo.trainer import train

    model_dir = save_tiny_vlm(style, tmp_path / "model")
    rows = image_rows(tmp_path)
    if style == "paligemma":  # text prompts: no chat template
        rows = [{**row, **{k: row[k][0]["content"] for k in ("prompt", "chosen", "rejected")}}
                for row in rows]  # fmt: skip
    data = write(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    options = dict(max_steps=2, per_device_train_batch_size=2, save_steps=1, eval_file=str(data))
    first = train(tiny_config(model_dir, data, out, **options), echo=lambda _: None).metrics
    again = train(
        tiny_config(model_dir, data, out, resume_from_checkpoint=str(out / "checkpoint-1"),
                    **options),
        echo=lambda _: None,
    ).metrics  # fmt: skip
    assert [r["loss"] for r in again if "loss" in r] == [r["loss"] for r in first if "loss" in r]
    assert again[-1]["eval/loss"] == first[-1]["eval/loss"] < 0.693
    model = AutoModelForImageTextToText.from_pretrained(out)
    processor = AutoProcessor.from_pretrained(out)
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    text = "<image>Hi"
    if style != "paligemma":
        text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[make_image(seed=1)], return_tensors="pt")
    inputs.pop("labels", None)
    generated = model.generate(**inputs, min_new_tokens=3, max_new_tokens=3, do_sample=False)
    assert generated.shape[1] == inputs["input_ids"].shape[1] + 3


def test_a_text_prompts_images_are_written_as_the_chat_template_writes_an_image() -> None:
    """A text prompt (no placeholder of its own) gets one placeholder per image in front: for
    Qwen-VL it was the bare <|image_pad|>, without the <|vision_start|> / <|vision_end|>
    markers the model always sees around an image. It is now the image part as the
    processor's chat template writes it; LLaVA's and Gemma 3's stay their image token."""
    from directpo.tokenization import tokenize_preferences

    row = {"images": [make_image(seed=1)], "prompt": "What is shown?", "chosen": " a cat.",
           "rejected": " a dog."}  # fmt: skip
    expected = {
        "qwen2vl": "<|vision_start|>" + "<|image_pad|>" * 4 + "<|vision_end|>What is shown?",
        "llava": "<s>" + "<image>" * 16 + "What is shown?",
        "gemma3": "<bos>\n\n<start_of_image>" + "<image_soft_token>" * 4 + "<end_of_image>\n\n"
        "What is shown?",
    }
    for style, text in expected.items():
        _, processor = build_vlm(style)
        data = load_preferences([row], name="rows")
        (pair,) = tokenize_preferences(data, processor.tokenizer, None, processor=processor).pairs
        assert processor.tokenizer.decode(pair.prompt_ids) == text, style


def test_a_vlm_whose_processor_class_does_not_load_is_said_so(tmp_path) -> None:
    """AutoProcessor gives a VLM folder's tokenizer alone when the processor class it names is
    unknown: its image rows were refused as given to 'not a vision-language model'. That
    the processor did not load is said, with the class named."""
    from directpo.errors import ModelLoadError
    from directpo.tokenizer_loading import load_processor

    folder = save_tiny_vlm("qwen2vl", tmp_path / "model")
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        path.write_text(path.read_text().replace("TinyQwen2VLProcessor", "NoSuchProcessor"))
    with pytest.raises(ModelLoadError, match=r"loaded its tokenizer alone, .*\(NoSuchProcessor: "):
        load_processor(str(folder))


def test_a_mistral3_image_of_one_token_is_the_rows_error_not_a_traceback() -> None:
    """Mistral 3's model fails on a forward whose images make one image token (an image of one
    16-pixel cell here, 28 for Mistral Small 3.x; transformers squeezes that token away): a
    run with such an image stopped with split_with_sizes' traceback. The row is refused in
    one line (skip_invalid_rows counts it); an image a pixel larger (two cells) trains."""
    from directpo.tokenization import tokenize_preferences

    model, processor = build_vlm("mistral3")
    row = {"prompt": "What is it?", "chosen": " a cat.", "rejected": " a dog."}
    icon = {**row, "images": [make_image(seed=1, size=16)]}
    rows = [icon, {**row, "images": [make_image(seed=2, size=17, height=16)]}]
    tokenized = tokenize_preferences(
        load_preferences(rows, name="rows"), processor.tokenizer, None, processor=processor,
        skip_invalid_rows=True,
    )  # fmt: skip
    assert tokenized.skipped == {"image too small": 1}, tokenized.skipped
    (pair,) = tokenized.pairs
    batch = collate_pairs(
        [pair], processor.tokenizer.pad_token_id, layout=Layout(share_prefix=True)
    )
    with torch.no_grad():
        assert model_logprobs(model, batch)[0].isfinite().all()
    with pytest.raises(Exception, match=r"rows: row 1: an image of 16x16 pixels is one image tok"):
        tokenize_preferences(load_preferences([icon], name="rows"), processor.tokenizer, None,
                             processor=processor)  # fmt: skip


@pytest.mark.parametrize(
    ("style", "token"),
    [("llava", "<image>"), ("qwen2vl", "<|image_pad|>"), ("qwen2vl", "<|vision_start|>"),
     ("mistral3", "[IMG]"), ("mistral3", "[IMG_END]")],
)  # fmt: skip
def test_a_text_holding_the_models_image_token_is_the_rows_error(style, token, tmp_path) -> None:
    """A reply that writes the model's image token literally ("look at [IMG] here") trained
    into 'Image features and image tokens do not match' in the model's forward; the row is
    refused naming its column and the token (image, video and image-boundary tokens, in the
    chosen, rejected and a prompt beyond its images' placeholders), and skip_invalid_rows
    counts it. The image token where the prompt's image goes is its place, as before."""
    import re

    from directpo.data import RowError
    from directpo.errors import DataError
    from directpo.tokenization import tokenize_preferences

    _, processor = build_vlm(style)
    make_image(tmp_path / "img.png", size=64)
    good = {"prompt": "Describe it.", "chosen": " red", "rejected": " blue",
            "images": [str(tmp_path / "img.png")]}  # fmt: skip
    rows = [{**good, "chosen": f" look at {token} here"}, {**good, "rejected": f"a {token}"}]
    rows.append({**good, "prompt": f"look {token} {token} {token}"})  # more than one image's
    rows.append({k: v for k, v in {**good, "prompt": f"no image {token}"}.items() if k != "images"})
    placed = {**good, "prompt": f"look at {token} here"}
    data = load_preferences([*rows, good], name="rows")
    with pytest.raises(DataError) as err:
        tokenize_preferences(data, processor.tokenizer, None, processor=processor)
    lines = str(err.value)
    assert f"row 1: the chosen holds {token}" in lines
    assert f"row 2: the rejected holds {token}" in lines
    assert "row 3: the prompt holds" in lines and "row 4" in lines and "row 5" not in lines
    kept = tokenize_preferences(data, processor.tokenizer, None, processor=processor,
                                skip_invalid_rows=True)  # fmt: skip
    assert len(kept.pairs) == 1 and sum(kept.skipped.values()) == 4
    assert kept.skipped["image token in text"] >= 3
    encoder = PairTokenizer(processor.tokenizer, None, processor=processor)
    for images in ((str(tmp_path / "img.png"),), None):  # score's and rank's responses, too
        with pytest.raises(RowError, match=f"the response holds {re.escape(token)}"):
            encoder.encode_scored("Describe it.", f"a {token}", images)
    text_only = {"prompt": "Hi", "chosen": f"a {token}", "rejected": "b"}
    with pytest.raises(DataError, match=f"row 1: the chosen holds {re.escape(token)}"):
        tokenize_preferences(load_preferences([text_only], name="rows"), processor.tokenizer,
                             None, processor=processor)  # fmt: skip
    if token == processor.image_token:  # where the image goes: accepted, and no special text
        data = load_preferences([placed], name="rows")
        summary = tokenize_preferences(data, processor.tokenizer, None, processor=processor)
        assert summary.summary() == "1 pair tokenized"


def test_a_config_pad_id_kept_as_underscore_pad_is_no_placeholder() -> None:
    """Idefics3 / SmolVLM configs keep their pad id as ``_pad_token_id``: it was taken for an
    image placeholder (``<|endoftext|>``), which sampling then never drew."""
    from directpo.vision import placeholder_token_ids

    model, _ = build_vlm("idefics3")
    assert placeholder_token_ids(model.config) == {model.config.image_token_id}
