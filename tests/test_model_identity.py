"""model_identity: the same model at another path is the same identity, another model is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tiny import save_tiny_model

from directpo.config import DPOConfig
from directpo.model_identity import model_identity, reference_change, reference_record


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


def _resaved(source: Path, folder: Path, **save_kwargs) -> Path:
    """``source``'s model loaded and written again by save_pretrained (a checkpoint copied into
    a model folder, the model pushed and pulled): other header metadata, maybe other shards."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source)
    model.save_pretrained(folder, **save_kwargs)
    config = json.loads((folder / "config.json").read_text())
    config["transformers_version"] = "9.99.0"  # (a save by another version writes its own)
    (folder / "config.json").write_text(json.dumps(config, indent=4))
    return folder


def test_the_same_weights_saved_again_or_resharded_are_the_same_model(
    tiny_model_dirs, tmp_path, monkeypatch
) -> None:
    """A reference re-saved with save_pretrained (a new config.json text, new safetensors
    header metadata, another shard split) was 'another reference model' at resume: the
    identity hashed config.json's bytes and the weight files' names and sizes. What decides the
    weights is compared now: a re-save or re-shard is the same model; one tensor changed, or
    the weights in another dtype, is another."""
    source = tiny_model_dirs["llama"]
    before = model_identity(str(source))
    resharded = _resaved(source, tmp_path / "resharded", max_shard_size="20KB")
    assert len(list(resharded.glob("*.safetensors"))) > 1
    assert model_identity(str(_resaved(source, tmp_path / "again"))) == before
    assert model_identity(str(resharded)) == before
    tensors = load_file(source / "model.safetensors")
    name = sorted(tensors)[len(tensors) // 2]
    changed = shutil.copytree(source, tmp_path / "changed")
    save_file({**tensors, name: tensors[name] + 1}, changed / "model.safetensors")
    assert model_identity(str(changed)) != before
    halved = shutil.copytree(source, tmp_path / "bf16")
    save_file(
        {key: value.bfloat16() for key, value in tensors.items()}, halved / "model.safetensors"
    )
    assert model_identity(str(halved)) != before
    # a MoE of tens of thousands of tensors samples the values of some, chosen by name: the
    # same ones whichever shard holds them
    monkeypatch.setattr("directpo.model_identity.SAMPLED_TENSORS", 3)
    fewer = model_identity(str(source))
    assert fewer != before and model_identity(str(resharded)) == fewer


def _cached_hub_model(cache: Path, repo: str, snapshots: dict[str, Path]) -> None:
    """``repo`` in a Hugging Face cache at ``cache``: each branch's snapshot a copy of a folder."""
    root = cache / f"models--{repo.replace('/', '--')}"
    for number, (branch, folder) in enumerate(snapshots.items()):
        commit = f"{number:040d}"
        shutil.copytree(folder, root / "snapshots" / commit)
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / branch).write_text(commit)


def test_a_hub_reference_is_the_revision_the_run_loaded(tiny_model_dirs, tmp_path) -> None:
    """A hub id was identified by its main snapshot whatever revision the run loaded
    (model_revision / model_init_kwargs' revision): a resume on another revision said nothing,
    and a main updated since said the reference changed. It is the revision loaded."""
    other = save_tiny_model("gpt2", tmp_path / "other", seed=1)
    cache = tmp_path / "hub"
    _cached_hub_model(cache, "org/model", {"main": tiny_model_dirs["gpt2"], "v2": other})
    config = DPOConfig(
        model_name_or_path="org/model",
        model_init_kwargs={"revision": "v2", "cache_dir": str(cache)},
    )
    record = reference_record(config)
    assert record["identity"] == model_identity(str(other))
    assert record["location"] == {"revision": "v2", "cache_dir": str(cache)}
    main = {**record, "identity": model_identity(str(tiny_model_dirs["gpt2"]))}
    assert reference_change(main, record) == "the reference model's files at org/model"
    main["location"] = {"cache_dir": str(cache)}  # (a checkpoint of main's: said by revision)
    said = reference_change(main, record)
    assert said == "the reference model org/model's revision main -> v2"


def test_a_checkpoint_of_the_earlier_identity_is_compared_by_it(tiny_model_dirs, tmp_path) -> None:
    """A checkpoint written before the identity read tensors by name recorded the earlier hash
    (no scheme): it is compared with this model's earlier hash, not said changed at every
    resume; another model is still said. Where the recorded path still holds the model it
    recorded, that model is read by this hash: a re-save of it is no change either."""
    folder = str(tiny_model_dirs["gpt2"])
    now = reference_record(DPOConfig(model_name_or_path=folder))
    saved = {"path": now["path"], "identity": model_identity(folder, scheme=1)}
    assert saved["identity"] != now["identity"]
    assert reference_change(saved, now) == ""
    other = str(save_tiny_model("gpt2", tmp_path / "other", seed=1))
    assert reference_change({**saved, "identity": model_identity(other, scheme=1)}, now)
    # the recorded model, still at its path, re-saved elsewhere: read again by this hash
    resaved = _resaved(Path(folder), tmp_path / "resaved", max_shard_size="20KB")
    assert (
        reference_change(saved, reference_record(DPOConfig(model_name_or_path=str(resaved)))) == ""
    )
    assert reference_change(saved, reference_record(DPOConfig(model_name_or_path=other)))


def test_a_reference_converted_from_pytorch_model_bin_to_safetensors_is_the_same_model(
    tiny_model_dirs, tmp_path
) -> None:
    """A reference held as pytorch_model.bin (torch.save's state dict) and converted to
    safetensors (or back) between a checkpoint and its resume: a pickle was identified by its
    files' names and sizes, so the resume said 'the reference model's files changed' of the
    same weights. Its tensors are read by name as safetensors' are (memory-mapped): the same
    weights are the same model in either format, and in another dtype another. A checkpoint of
    the earlier hash of a pickle still compares by it."""
    source = tiny_model_dirs["llama"]
    tensors = load_file(source / "model.safetensors")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(source / "config.json", pickled)
    torch.save(tensors, pickled / "pytorch_model.bin")
    assert model_identity(str(pickled)) == model_identity(str(source))
    halved = shutil.copytree(pickled, tmp_path / "halved")
    torch.save({k: v.bfloat16() for k, v in tensors.items()}, halved / "pytorch_model.bin")
    assert model_identity(str(halved)) != model_identity(str(pickled))
    bf16 = shutil.copytree(source, tmp_path / "bf16")
    save_file({k: v.bfloat16() for k, v in tensors.items()}, bf16 / "model.safetensors")
    assert model_identity(str(halved)) == model_identity(str(bf16))
    saved = reference_record(DPOConfig(model_name_or_path=str(pickled)))
    saved = {**saved, "identity": model_identity(str(pickled), scheme=2), "scheme": 2}
    converted = reference_record(DPOConfig(model_name_or_path=str(source)))
    assert reference_change(saved, converted) == ""
    assert reference_change(saved, reference_record(DPOConfig(model_name_or_path=str(bf16))))
    whole = tmp_path / "whole"  # (torch.save of a module: not read by name, no error either)
    whole.mkdir()
    shutil.copy(source / "config.json", whole)
    torch.save(torch.nn.Linear(2, 2), whole / "pytorch_model.bin")
    assert model_identity(str(whole)) not in (None, model_identity(str(source)))


def test_a_tied_models_pickle_converted_to_safetensors_is_the_same_model(tmp_path) -> None:
    """torch.save(model.state_dict()) of a tied model (SmolLM2, Llama 3.2 1B, ...) holds its
    embedding twice, as lm_head.weight too; safetensors cannot, and save_pretrained writes it
    once: the converted reference was 'another model' (its LM head's name). A checkpoint's
    scheme-3 record of the pickle (both names) still compares as the same model."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=True,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(tmp_path / "converted")
    assert "lm_head.weight" not in load_file(tmp_path / "converted" / "model.safetensors")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    shutil.copy(tmp_path / "converted" / "config.json", pickled)
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    assert model_identity(str(pickled)) == model_identity(str(tmp_path / "converted"))
    untied = shutil.copytree(pickled, tmp_path / "untied")  # (another LM head: another model)
    state = {**model.state_dict(), "lm_head.weight": torch.zeros(64, 16)}
    torch.save(state, untied / "pytorch_model.bin")
    assert model_identity(str(untied)) != model_identity(str(pickled))
    saved = reference_record(DPOConfig(model_name_or_path=str(pickled)))
    saved = {**saved, "identity": model_identity(str(pickled), scheme=3), "scheme": 3}
    assert saved["identity"] != model_identity(str(pickled))
    converted = reference_record(DPOConfig(model_name_or_path=str(tmp_path / "converted")))
    assert reference_change(saved, converted) == ""
