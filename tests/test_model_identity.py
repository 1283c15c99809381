"""model_identity: the same model at another path is the same identity, another model is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tiny import save_tiny_model

from directpo.model_identity import model_identity


def _adapter(folder: Path, base: Path) -> Path:
    """A LoRA adapter folder (what peft's save_pretrained writes) on ``base``."""
    folder.mkdir()
    settings = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["c_attn"],
                "base_model_name_or_path": str(base)}  # fmt: skip
    (folder / "adapter_config.json").write_text(json.dumps(settings, indent=2))
    weights = {"base_model.model.h.0.attn.c_attn.lora_A.weight": torch.ones(2, 8)}
    save_file(weights, folder / "adapter_model.safetensors")
    return folder


def test_an_adapters_moved_base_is_the_same_model_and_another_base_is_not(
    tiny_model_dirs, tmp_path
) -> None:
    """An adapter folder (a continued adapter, or a reference run as base + adapter) names its
    base by path; moving the base to another disk means editing that path (as the load error
    for a missing base says), and the identity hashed the file's bytes: a resume said the
    reference had changed. Another model put at the base's path was no change at all."""
    base = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "base")
    adapter = _adapter(tmp_path / "adapter", base)
    before = model_identity(str(adapter))
    moved = shutil.move(base, tmp_path / "other_disk")
    settings = json.loads((adapter / "adapter_config.json").read_text())
    settings["base_model_name_or_path"] = str(moved)
    (adapter / "adapter_config.json").write_text(json.dumps(settings))
    assert model_identity(str(adapter)) == before
    shutil.rmtree(moved)
    save_tiny_model("gpt2", Path(moved), seed=1)  # another model where the base was
    assert model_identity(str(adapter)) not in (before, None)


def test_the_same_weights_beside_other_formats_and_trainer_state_are_the_same_model(
    tiny_model_dirs, tmp_path
) -> None:
    """A hub snapshot fills as tools download: transformers fetched model.safetensors, another
    tool later pytorch_model.bin or a consolidated.safetensors of the same repository; a
    Trainer checkpoint used as the model holds training_args.bin and optimizer.pt. Every such
    file was hashed, so a resume said the reference had changed. A folder is the files a load
    reads: another model in them still is another identity."""
    folder = shutil.copytree(tiny_model_dirs["gpt2"], tmp_path / "model")
    before = model_identity(str(folder))
    names = ("pytorch_model.bin", "consolidated.safetensors", "training_args.bin", "optimizer.pt")
    for name in (*names, "rng_state.pth"):
        (folder / name).write_bytes(b"x" * 100)
    assert model_identity(str(folder)) == before
    sharded = tmp_path / "sharded"
    shutil.copytree(tiny_model_dirs["gpt2"], sharded)
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00001.safetensors")
    index = {"weight_map": {"lm_head.weight": "model-00001-of-00001.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    before = model_identity(str(sharded))
    (sharded / "consolidated.safetensors").write_bytes(b"y" * 10)
    assert model_identity(str(sharded)) == before
    other = save_tiny_model("gpt2", tmp_path / "other", seed=1)
    shutil.copy(other / "model.safetensors", sharded / "model-00001-of-00001.safetensors")
    assert model_identity(str(sharded)) != before
