"""The final folder: never mixed with an earlier run's files, never half written, never over
someone's files or the model it starts from."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import socket

import pytest
import torch
from safetensors.torch import load_file
from tiny import quiet, tiny_config
from transformers import AutoModelForCausalLM

import directpo.outputs as outputs_module
from directpo.checkpoint import verify_checkpoint
from directpo.errors import CheckpointError, ConfigError
from directpo.outputs import FINAL_STAGING
from directpo.trainer import train


def test_a_finished_lora_run_or_someones_files_are_not_overwritten(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    model = tiny_model_dirs["llama"]
    lora = tmp_path / "lora"
    train(tiny_config(model, pairs_file, lora, lora_r=4), echo=quiet)
    assert not (lora / "config.json").exists()  # an adapter folder: what made it look new
    adapter = (lora / "adapter_model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match=r"already holds a finished run .* overwrite_output_dir"):
        train(tiny_config(model, pairs_file, lora, lora_r=4, seed=1), echo=quiet)
    assert (lora / "adapter_model.safetensors").read_bytes() == adapter

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.md").write_text("my notes\n")
    (notes / "config.yaml").write_text("# my commented config\nbeta: 0.1\n")
    with pytest.raises(
        ConfigError, match=r"already holds other files \(README\.md, config\.yaml\)"
    ):
        train(tiny_config(model, pairs_file, notes), echo=quiet)
    assert (notes / "README.md").read_text() == "my notes\n"
    assert (notes / "config.yaml").read_text().startswith("# my commented config")
    stopped = tmp_path / "stopped"  # killed before save_steps: its record, no checkpoint
    stopped.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (stopped / name).write_text("")
    with pytest.raises(ConfigError, match=r"holds a run stopped before its first checkpoint"):
        train(tiny_config(model, pairs_file, stopped), echo=quiet)

    # resuming another folder's checkpoint does not make this folder's files fair game
    donor = tmp_path / "donor"
    train(tiny_config(model, pairs_file, donor, max_steps=2, save_steps=1), echo=quiet)
    with pytest.raises(ConfigError, match=r"notes already holds other files"):
        resumed = tiny_config(model, pairs_file, notes, max_steps=2)
        resumed.resume_from_checkpoint = str(donor / "checkpoint-1")
        train(resumed, echo=quiet)
    # nor may overwriting clear a folder that holds the model it starts from
    inner = tiny_config(model, pairs_file, donor, overwrite_output_dir=True)
    inner.model_name_or_path = str(donor / "checkpoint-1")
    with pytest.raises(ConfigError, match=r"checkpoint-1 is inside output_dir .* would clear"):
        train(inner, echo=quiet)
    assert (donor / "checkpoint-1" / "model.safetensors").exists()

    other = tiny_model_dirs["gpt2"]
    for policy, reference, key in ((model, None, "model"), (other, model, "ref_model")):
        config = tiny_config(  # refused even with overwrite_output_dir
            policy,
            pairs_file,
            model,
            ref_model_name_or_path=reference and str(reference),
            overwrite_output_dir=True,
        )
        with pytest.raises(ConfigError, match=rf"is the {key}_name_or_path folder"):
            train(config, echo=quiet)


def test_overwriting_replaces_the_earlier_runs_model_files(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A full model overwritten by a LoRA run (and back): no stale weights or adapter stay to be
    loaded in place of, or on top of, the new run's; other files stay."""
    model = tiny_model_dirs["llama"]
    out = tmp_path / "run"
    train(tiny_config(model, pairs_file, out, save_steps=1), echo=quiet)
    assert (out / "model.safetensors").exists()
    (out / "mine.txt").write_text("keep me")
    (out / "samples").mkdir()
    (out / "samples" / "step-9.jsonl").write_text("{}\n")  # the earlier run's per-step files
    (out / "retired-checkpoint-7").mkdir()  # and what one of its resumes moved aside
    (out / "curves.png").write_bytes(b"PNG")  # and `directpo plot`'s curves of it
    train(tiny_config(model, pairs_file, out, lora_r=4, overwrite_output_dir=True), echo=quiet)
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert not list(out.glob("checkpoint-*"))
    assert (out / "mine.txt").read_text() == "keep me"
    assert not (out / "samples").exists() and not (out / "runs").exists()
    assert not (out / "retired-checkpoint-7").exists() and not (out / "curves.png").exists()
    adapter_config = json.loads((out / "adapter_config.json").read_text())
    assert os.path.samefile(adapter_config["base_model_name_or_path"], model)

    train(tiny_config(model, pairs_file, out, overwrite_output_dir=True), echo=quiet)
    assert not (out / "adapter_config.json").exists()
    assert not (out / "adapter_model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(out)
    saved = load_file(out / "model.safetensors")
    state = loaded.state_dict()
    assert all(torch.equal(state[k], saved[k]) for k in saved)


def test_overwriting_deletes_only_what_a_run_wrote_in_folders_of_its_names(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """overwrite_output_dir deleted runs/, samples/, online/ and adapter/ whole, and a
    vocab.json or config.json where no model was: someone's own files kept there went too
    (and a folder holding a config.json alone was called "a finished run")."""
    out = tmp_path / "project"
    mine = {
        "samples/my_data.jsonl": '{"a": 1}\n',
        "runs/exp1/notes.txt": "my TensorBoard notes",
        "online/urls.txt": "https://example.org",
        "adapter/notes.txt": "adapter ideas",
        "vocab.json": '{"my": 1}',
    }
    earlier = [  # what an earlier run (eval_generate, online, TensorBoard, merge_lora) wrote
        "samples/step-3.jsonl", "online/round-0.jsonl", "runs/old/events.out.tfevents.1.host",
        "adapter/adapter_model.safetensors", "adapter/adapter_config.json", "adapter/README.md",
    ]  # fmt: skip
    for name, text in [*mine.items(), *((name, "{}") for name in earlier)]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    model = tiny_model_dirs["llama"]
    settings = tmp_path / "settings"  # a config.json is no model
    settings.mkdir()
    (settings / "config.json").write_text('{"port": 80}')
    with pytest.raises(ConfigError, match=r"already holds other files \(config\.json\);"):
        train(tiny_config(model, pairs_file, settings), echo=quiet)
    train(tiny_config(model, pairs_file, out, overwrite_output_dir=True), echo=quiet)
    assert {name: (out / name).read_text() for name in mine} == mine
    assert not [name for name in earlier if (out / name).exists()]
    assert not (out / "runs" / "old").exists()  # emptied by the removal: gone with it
    assert sorted(p.name for p in (out / "adapter").iterdir()) == ["notes.txt"]

    merged = tiny_config(model, pairs_file, out, lora_r=4, merge_lora=True)
    train(dataclasses.replace(merged, overwrite_output_dir=True), echo=quiet)
    assert (out / "adapter" / "notes.txt").read_text() == "adapter ideas"
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_size > 2


def test_a_full_disk_at_the_final_save_is_one_line_and_leaves_the_folder_as_it_was(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    model = tiny_model_dirs["gpt2"]
    out = tmp_path / "run"
    real = outputs_module.save_run_files

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs_module, "save_run_files", full_disk)
    config = tiny_config(model, pairs_file, out, max_steps=2, save_steps=1)
    with pytest.raises(
        CheckpointError,
        match=r"cannot write the final model to .* \(No space left on device; \d+ MiB free on "
        r"that disk\); its checkpoints are intact \(newest checkpoint-2\): make room, then "
        r"resume with resume_from_checkpoint='latest'$",  # (train()'s keyword)
    ):
        train(config, echo=quiet)
    assert not (out / FINAL_STAGING).exists()
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert verify_checkpoint(out / "checkpoint-2") is None

    monkeypatch.setattr(outputs_module, "save_run_files", real)
    config.resume_from_checkpoint = "latest"
    assert train(config, echo=quiet).global_step == 2
    assert AutoModelForCausalLM.from_pretrained(out) is not None


def test_a_signal_while_the_final_model_is_written_does_not_cost_the_run(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, capsys
) -> None:
    real = outputs_module.save_run_files

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's preemption, mid-save
        return real(*args, **kwargs)

    monkeypatch.setattr(outputs_module, "save_run_files", interrupted)
    out = tmp_path / "run"
    result = train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, out), echo=quiet)
    assert result.global_step == 1
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
    assert "SIGTERM: writing the final model first" in capsys.readouterr().err


def test_saved_folders_keep_the_base_models_config_json(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """disable_dropout zeroes the dropout of the config the layers read while training, and
    gradient checkpointing turns use_cache off; the final folder, its checkpoints and a merged
    LoRA model wrote that config (attn_pdrop: 0.0, use_cache: false, ...), so whoever trained
    the output further had no dropout. TRL's folders keep the base's."""
    gpt2 = tiny_model_dirs["gpt2"]  # its config has dropout 0.1
    base = json.loads((gpt2 / "config.json").read_text())
    assert base["attn_pdrop"] == 0.1 and base["use_cache"] is True
    config = tiny_config(gpt2, pairs_file, tmp_path / "full", save_steps=1,
                         gradient_checkpointing=True)  # fmt: skip
    full = train(config, echo=quiet)
    merged = tiny_config(gpt2, pairs_file, tmp_path / "merged", lora_r=4, merge_lora=True)
    train(merged, echo=quiet)
    for name, extra in (("fsdp", {}), ("fsdp-merged", {"lora_r": 4, "merge_lora": True})):
        train(tiny_config(gpt2, pairs_file, tmp_path / name, distributed="fsdp", **extra),
              echo=quiet)  # fmt: skip
    for folder in ("full", "full/checkpoint-1", "merged", "fsdp", "fsdp-merged"):
        assert json.loads((tmp_path / folder / "config.json").read_text()) == base, folder
    assert full.policy.config.attn_pdrop == 0.0  # the trained model in memory: still off
    assert full.policy.config.use_cache is True  # (training's alone: finish.as_saved)


def test_the_model_card_names_a_hub_base_model_only(tmp_path) -> None:
    """The card's base_model metadata held the local folder trained from, which the Hub refuses
    when the folder is uploaded ('Invalid metadata in README.md'); TRL's card leaves it out."""
    import yaml

    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    def metadata(model: str) -> dict:
        card = model_card(DPOConfig(model_name_or_path=model, output_dir="out"), "6 pairs", [])
        assert f"from `{model}`" in card  # the text names it either way
        return yaml.safe_load(card.split("---")[1])

    assert "base_model" not in metadata(str(tmp_path))
    assert metadata("HuggingFaceTB/SmolLM2-135M-Instruct")["base_model"] == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )


def test_the_model_card_lists_the_hub_datasets_trained_on(tmp_path) -> None:
    """TRL's card lists dataset_name in its metadata (the Hub links model and dataset); directpo's
    had no datasets at all. A local folder or file is no id the Hub accepts: left out."""
    import yaml

    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    def datasets(**options) -> list[str] | None:
        config = DPOConfig(model_name_or_path="m", output_dir="out", **options)
        return yaml.safe_load(model_card(config, "6 pairs", []).split("---")[1]).get("datasets")

    assert datasets(dataset_name="trl-lib/ultrafeedback_binarized") == [
        "trl-lib/ultrafeedback_binarized"
    ]
    local = tmp_path / "pairs"
    local.mkdir()
    assert datasets(dataset_name=str(local)) is None
    mixture = {"datasets": [{"id": "HuggingFaceH4/ultrafeedback_binarized"}, {"id": str(local)}]}
    assert datasets(dataset_mixture=mixture) == ["HuggingFaceH4/ultrafeedback_binarized"]


def test_a_hub_token_in_model_init_kwargs_is_written_nowhere(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """config.yaml, the model card (uploaded with the folder) and TensorBoard's hparams held
    model_init_kwargs' token in plain text; from_pretrained uses the login's without it."""
    from directpo.config import load_config

    secret = "hf_notarealtoken1234"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "run", save_steps=1,
        model_init_kwargs={"token": secret, "revision": "main"}, report_to=["tensorboard"],
    )  # fmt: skip
    train(config, echo=quiet)
    files = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    assert len(files) > 10 and not [p for p in files if secret.encode() in p.read_bytes()]
    recorded = load_config(str(tmp_path / "run" / "config.yaml"))
    assert recorded.model_init_kwargs == {"revision": "main"}


def test_a_run_already_writing_into_output_dir_refuses_a_second(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """Two runs started into one folder at once both found it empty and wrote into it together
    (mixed checkpoints, metrics.jsonl, final files): the second is refused while the first
    holds the folder, takes it once the first is done, and leaves no lock file behind."""
    out = tmp_path / "run"
    out.mkdir()
    first = outputs_module.OutputLock()  # a run that is writing here now
    first.acquire(out)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, out, save_steps=1)
    with pytest.raises(ConfigError) as info:
        train(config, echo=quiet)
    assert str(info.value) == (
        f"output_dir {out} is in use by another run (directpo pid {os.getpid()} on "
        f"{socket.gethostname()}); wait for it to end, or choose another output_dir"
    )
    assert sorted(p.name for p in out.iterdir()) == [".directpo.lock"]  # nothing written
    first.release()
    train(config, echo=quiet)
    assert (out / "model.safetensors").is_file() and not (out / ".directpo.lock").exists()


def test_a_run_refused_before_writing_leaves_no_folder_it_made(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """A LoRA target the model lacks is found once the model loads, after output_dir was made:
    the empty folder stayed behind. A folder that existed before stays, as it was."""
    from directpo.errors import DirectpoError

    out = tmp_path / "new" / "run"
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, out, lora_r=4,
                         lora_target_modules=["no_such_proj"])  # fmt: skip
    with pytest.raises(DirectpoError, match="no_such_proj"):
        train(config, echo=quiet)
    assert not out.exists()
    out.mkdir(parents=True)
    with pytest.raises(DirectpoError, match="no_such_proj"):
        train(config, echo=quiet)
    assert out.is_dir() and list(out.iterdir()) == []


def test_the_model_cards_snippet_is_python_for_any_output_folder() -> None:
    """The card's "Use" code put output_dir inside double quotes as it was: a folder with a
    quote, or a Windows path's backslashes, made it a syntax error or another path."""
    import ast

    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    for folder in ('runs/the "best" one', "C:\\runs\\new", "it's"):
        card = model_card(DPOConfig(model_name_or_path="m", output_dir=folder), "6 pairs", [])
        code = card.split("```python\n")[1].split("```")[0]
        calls = [n for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]
        assert [c.args[0].value for c in calls] == [folder, folder]


def test_the_model_card_of_an_adapter_folder_says_peft(tiny_model_dirs, pairs_file, tmp_path):
    """A LoRA run's folder holds an adapter, but its card said library_name: transformers
    (replacing the card peft writes, which says peft): uploaded, the Hub took it for a full
    model. A merged run's folder is a plain model; its adapter/ keeps peft's own card."""
    import yaml

    def metadata(folder) -> dict:
        return yaml.safe_load((folder / "README.md").read_text().split("---")[1])

    llama = tiny_model_dirs["llama"]
    train(tiny_config(llama, pairs_file, tmp_path / "lora", lora_r=4), echo=quiet)
    train(tiny_config(llama, pairs_file, tmp_path / "merged", lora_r=4, merge_lora=True),
          echo=quiet)  # fmt: skip
    assert metadata(tmp_path / "lora")["library_name"] == "peft"
    assert metadata(tmp_path / "merged")["library_name"] == "transformers"
    assert metadata(tmp_path / "merged" / "adapter")["library_name"] == "peft"


def test_the_model_card_says_how_it_trained_beside_the_rounding_note() -> None:
    """With save_dtype bfloat16 the rounding note replaced the precision line: the card no
    longer said that the run was mixed precision, nor in which dtype the weights were saved."""
    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    config = DPOConfig(model_name_or_path="m", output_dir="out", bf16=True, save_dtype="bfloat16")
    note = "Rounding to bfloat16 for saving: 99.0% of the weights ... still differ."
    card = model_card(config, "6 pairs", [], note)
    precision = card.split("## Precision\n\n")[1].split("\n")[0]
    assert precision == (
        "Trained in mixed precision (bfloat16 compute, float32 master weights); weights saved "
        f"in bfloat16. {note}"
    )


def test_the_model_card_of_the_best_model_gives_that_evaluations_metrics(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """With load_best_model_at_end the folder holds the best evaluation's weights, but the
    card's metrics table was the last step's: a reader saw another model's eval/loss (and an
    eval/rewards/margins contradicting the best value the card names)."""
    import yaml

    out = tmp_path / "best"
    config = tiny_config(
        tiny_model_dirs["llama"], pairs_file, out, max_steps=4, eval_file=str(pairs_file),
        eval_steps=2, load_best_model_at_end=True, greater_is_better=False,
        metric_for_best_model="eval/rewards/margins",
    )  # fmt: skip
    result = train(config, echo=quiet)
    evals = {row["step"]: row for row in result.metrics if "eval/loss" in row}
    assert evals[4]["eval/rewards/margins"] > evals[2]["eval/rewards/margins"]  # 2 is best
    card = (out / "README.md").read_text()
    section = card.split("## Final metrics\n\n")[1].split("## Use")[0]
    assert section.startswith("At step 2, the weights saved here:")
    rows = [line.strip("| ").split(" | ") for line in section.splitlines()[2:] if line]
    table = {name: value for name, value in rows[2:]}  # past the header and its rule
    trained = [row for row in result.metrics if row["step"] == 2 and "loss" in row]
    assert float(table["eval/loss"]) == pytest.approx(evals[2]["eval/loss"], rel=1e-5)
    assert float(table["loss"]) == pytest.approx(trained[0]["loss"], rel=1e-5)
    assert "Weights of the best evaluation: step 2" in card
    assert yaml.safe_load(card.split("---")[1])["library_name"] == "transformers"


def test_an_fsdp_runs_folders_keep_the_base_models_generation_config(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """FSDP builds the model from config.json on the meta device (and a merge from config
    again), so its folders wrote a generation_config.json derived from config.json: a chat
    model's end-of-turn ids (eos_token_id [1, 4], where vLLM and TGI stop) and its sampling
    defaults were lost, where a one-process run keeps them."""
    import shutil

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dirs["llama"], base)
    stored = json.loads((base / "generation_config.json").read_text())
    wanted = {"eos_token_id": [1, 4], "temperature": 0.6, "top_p": 0.9, "do_sample": True}
    (base / "generation_config.json").write_text(json.dumps({**stored, **wanted}))
    runs = {"fsdp": {}, "merged": {"lora_r": 4, "merge_lora": True}}
    for name, extra in runs.items():
        train(tiny_config(base, pairs_file, tmp_path / name, distributed="fsdp", **extra),
              echo=quiet)  # fmt: skip
    for folder in ("fsdp", "merged"):
        saved = json.loads((tmp_path / folder / "generation_config.json").read_text())
        assert {key: saved.get(key) for key in wanted} == wanted, folder


def test_the_model_cards_code_loads_from_hub_model_id() -> None:
    """TRL's hub_model_id (the repository the folder is uploaded to) was accepted and dropped:
    the card, uploaded with `huggingface-cli upload`, told readers to load the trainer's local
    folder ('/home/me/runs/dpo'). It now loads from the repository; a value that is no
    repository id is refused in one line."""
    import ast

    from directpo.config import DPOConfig, load_config
    from directpo.outputs import model_card

    def loaded_from(config: DPOConfig) -> list[str]:
        code = model_card(config, "6 pairs", []).split("```python\n")[1].split("```")[0]
        return [n.args[0].value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Call)]

    config = load_config(None, {"model_name_or_path": "m", "output_dir": "/home/me/runs/dpo",
                                "hub_model_id": "me/tiny-dpo"})  # fmt: skip
    assert loaded_from(config) == ["me/tiny-dpo", "me/tiny-dpo"]
    assert loaded_from(dataclasses.replace(config, hub_model_id=None)) == [
        "/home/me/runs/dpo", "/home/me/runs/dpo",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="hub_model_id must be a Hub repository id"):
        DPOConfig(model_name_or_path="m", hub_model_id="/home/me/runs/dpo")


def test_the_model_card_names_the_hub_id_of_a_cached_snapshot_folder(tmp_path) -> None:
    """On a machine without internet the model is often named by its folder in the Hugging
    Face cache (config.yaml records it so): the card then had no base_model, though the folder
    says which hub model it is, and the Hub's model tree lost the link."""
    import yaml

    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    def base_model(model: str) -> str | None:
        card = model_card(DPOConfig(model_name_or_path=model, output_dir="out"), "6 pairs", [])
        return yaml.safe_load(card.split("---")[1]).get("base_model")

    snapshot = tmp_path / "hub/models--HuggingFaceTB--SmolLM2-135M-Instruct/snapshots/0a1b2c"
    snapshot.mkdir(parents=True)
    assert base_model(str(snapshot)) == "HuggingFaceTB/SmolLM2-135M-Instruct"
    legacy = tmp_path / "hub/models--gpt2/snapshots/0a1b2c"
    legacy.mkdir(parents=True)
    assert base_model(f"{legacy}/") == "gpt2"
    assert base_model(str(snapshot.parent)) is None  # not a snapshot: a local folder
    assert base_model(str(tmp_path)) is None


def test_the_model_cards_datasets_are_hub_ids_only_and_cached_ones_by_id(tmp_path) -> None:
    """A mixture entry read by a datasets builder (`id: json` with data_files) was listed as
    the Hub dataset 'json'; a dataset given as its Hugging Face cache folder was left out."""
    import yaml

    from directpo.config import DPOConfig
    from directpo.outputs import model_card

    def datasets(**options) -> list[str] | None:
        config = DPOConfig(model_name_or_path="m", output_dir="out", **options)
        return yaml.safe_load(model_card(config, "6 pairs", []).split("---")[1]).get("datasets")

    built = {"id": "json", "data_files": str(tmp_path / "pairs.jsonl")}
    mixture = {"datasets": [built, {"id": "HuggingFaceH4/ultrafeedback_binarized"}]}
    assert datasets(dataset_mixture=mixture) == ["HuggingFaceH4/ultrafeedback_binarized"]
    cached = tmp_path / "hub" / "datasets--trl-lib--ultrafeedback_binarized" / "snapshots" / "0a"
    cached.mkdir(parents=True)
    assert datasets(dataset_name=str(cached)) == ["trl-lib/ultrafeedback_binarized"]
    model_snapshot = tmp_path / "hub" / "models--me--tiny" / "snapshots" / "0a"
    model_snapshot.mkdir(parents=True)
    assert datasets(dataset_name=str(model_snapshot)) is None  # a model's folder: no dataset


def test_overwriting_refuses_to_replace_someones_readme_or_config_yaml(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """overwrite_output_dir lets a run into a folder of someone's files ("other files stay"),
    but a run writes README.md and config.yaml there: a config.yaml kept
    beside the outputs, or one's notes in README.md, were replaced without a word. They are
    refused by name; an earlier run's own are replaced as before."""
    out = tmp_path / "exp1"
    out.mkdir()
    (out / "config.yaml").write_text("beta: 0.2  # my settings\n")
    (out / "notes.txt").write_text("mine")
    config = tiny_config(tiny_model_dirs["llama"], pairs_file, out, overwrite_output_dir=True)
    with pytest.raises(ConfigError, match=r"holds config.yaml, which no directpo run wrote"):
        train(config, echo=quiet)
    assert (out / "config.yaml").read_text() == "beta: 0.2  # my settings\n"
    (out / "config.yaml").unlink()
    train(config, echo=quiet)
    train(config, echo=quiet)  # over its own run: its README.md and config.yaml
    for kept in (out / "README.md", out / "config.yaml", out / "notes.txt"):
        assert kept.is_file()
    (out / "model.safetensors").unlink()  # the run's record alone still reads as a run's
    train(config, echo=quiet)
