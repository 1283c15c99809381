"""OpenRLHF's and torchtune's option names: the same meaning is the directpo option, another
meaning is refused in one line saying what to write (foreign_names.py, docs/migrating.md)."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from directpo.cli import COMMANDS, main
from directpo.config import DPOConfig
from directpo.errors import ConfigError


@pytest.fixture
def built(monkeypatch) -> list[DPOConfig]:
    """The configs `directpo train` builds, without training."""
    seen: list[DPOConfig] = []
    monkeypatch.setitem(COMMANDS, "train", dataclasses.replace(COMMANDS["train"], run=seen.append))
    return seen


OPENRLHF_FLAT = [
    "--pretrain", "base", "--ref_pretrain", "ref", "--prompt_key", "question",
    "--chosen_key", "good", "--rejected_key", "bad", "--apply_chat_template",
    "--micro_train_batch_size", "2", "--max_epochs", "3", "--save_path", "out",
    "--lora_rank", "4", "--target_modules", "q_proj", "v_proj", "--nll_loss_coef", "0.2",
    "--l2", "0.01", "--max_norm", "0.5", "--lr_warmup_ratio", "0.03", "--max_ckpt_num", "2",
    "--packing_samples", "--gradient_checkpointing", "--bf16", "--beta", "0.2",
]  # fmt: skip
OPENRLHF_DOTTED = [
    "--model.model_name_or_path", "base", "--ref.model_name_or_path", "ref",
    "--data.prompt_key", "question", "--data.chosen_key", "good", "--data.rejected_key", "bad",
    "--data.apply_chat_template", "--train.micro_batch_size", "2", "--train.max_epochs", "3",
    "--ckpt.output_dir", "out", "--ds.lora.rank", "4", "--ds.lora.target_modules", "q_proj",
    "v_proj", "--model.nll_loss_coef", "0.2", "--adam.weight_decay", "0.01", "--max_norm", "0.5",
    "--lr_warmup_ratio", "0.03", "--ckpt.max_num", "2", "--ds.packing_samples",
    "--model.gradient_checkpointing_enable", "--bf16", "--model.beta", "0.2",
]  # fmt: skip


@pytest.mark.parametrize("flags", [OPENRLHF_FLAT, OPENRLHF_DOTTED], ids=["flat", "dotted"])
def test_an_openrlhf_command_line_trains_as_written(built, capsys, flags) -> None:
    """OpenRLHF's train_dpo flags were unknown options (``--max_epochs``: 'did you mean
    --max_steps?'); those of the same meaning are now the directpo options, in both the flat
    spelling and the dotted one of OpenRLHF's grouped options."""
    assert main(["train", *flags]) == 0, capsys.readouterr().err
    config = built[0]
    assert (config.model_name_or_path, config.ref_model_name_or_path) == ("base", "ref")
    assert (config.prompt_column, config.chosen_column, config.rejected_column) == (
        "question",
        "good",
        "bad",
    )
    assert (config.per_device_train_batch_size, config.num_train_epochs) == (2, 3)
    assert config.output_dir == "out" or config.output_dir.endswith("/out")
    assert (config.lora_r, config.lora_target_modules) == (4, ["q_proj", "v_proj"])
    # nll_loss_coef: the chosen completion's NLL added with that weight (rpo_alpha)
    assert (config.loss_type, config.loss_weights) == (["sigmoid", "sft"], [1.0, 0.2])
    assert (config.weight_decay, config.max_grad_norm, config.warmup_ratio) == (0.01, 0.5, 0.03)
    assert (config.save_total_limit, config.gradient_checkpointing, config.beta) == (2, True, 0.2)


def test_openrlhf_flags_of_another_meaning_are_refused_saying_what_to_write(capsys) -> None:
    """Each was refused with difflib's nearest name (``--dataset``: '--data_seed',
    ``--train_batch_size``: '--auto_find_batch_size') or none (``--zero_stage``), and
    ``--adam_betas 0.9 0.95`` took 0.95 for the config file."""
    code = main([
        "train", "--dataset", "prefs.jsonl", "--max_len", "512", "--train_batch_size", "128",
        "--zero_stage", "2", "--ipo", "--input_template", "User: {}\nAssistant: ",
        "--adam_betas", "0.9", "0.95", "--ref_offload", "--load_checkpoint",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    lines = {line.strip().split(":", 1)[0]: line for line in err.splitlines()[1:]}
    assert "train_file" in lines["--dataset"] and "dataset_name" in lines["--dataset"]
    assert "give --max_length" in lines["--max_len"] and "drops the pair" in lines["--max_len"]
    assert "--gradient_accumulation_steps train_batch_size / (" in lines["--train_batch_size"]
    assert "--distributed ddp" in lines["--zero_stage"]  # (a flag, as given)
    assert "summed log-ratios" in lines["--ipo"] and "length-normalised" in lines["--ipo"]
    assert "write the template into the file's prompts" in lines["--input_template"]
    assert "--adam_beta1 0.9 and --adam_beta2 0.95" in lines["--adam_betas"]
    assert "--precompute_ref_log_probs runs" in lines["--ref_offload"]
    assert "--resume_from_checkpoint latest" in lines["--load_checkpoint"]
    assert "did you mean" not in err and len(lines) == 9


def test_another_tools_flag_is_told_the_options_as_each_caller_gives_them(tmp_path, capsys) -> None:
    """--use_wandb was told 'give --report_to wandb (run_name names the run)': the option it
    named beside the flag was a recipe's bare key; each caller now reads its own spelling."""
    assert main(["train", "--use_wandb", "true"]) == 2
    assert "give --report_to wandb (--run_name names the run)" in capsys.readouterr().err
    recipe = tmp_path / "r.yaml"
    recipe.write_text("use_wandb: true\n")
    assert main(["train", str(recipe)]) == 2
    assert "set report_to: wandb (run_name names the run)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=re.escape("(run_name=... names the run)")):
        DPOConfig(use_wandb=True)
    # TRL's reference_free and transformers' adafactor: 'choose a reference-free loss_type',
    # 'choose optim among ...', a recipe's bare key to a flag's user too
    assert main(["train", "--reference_free", "true", "--adafactor", "true"]) == 2
    err = capsys.readouterr().err
    assert "give --loss_type simpo or another reference-free loss (orpo, ...)" in err
    assert "give --optim, one of adamw_torch, " in err


TORCHTUNE_RECIPE = """\
output_dir: /tmp/out
model:
  _component_: torchtune.models.llama3_1.lora_llama3_1_8b
  lora_attn_modules: ['q_proj', 'v_proj', 'output_proj']
  lora_rank: 8
  lora_alpha: 16
  lora_dropout: 0.0
tokenizer:
  _component_: torchtune.models.llama3.llama3_tokenizer
  path: /tmp/tokenizer.model
  max_seq_len: 1024
checkpointer:
  _component_: torchtune.training.FullModelHFCheckpointer
  checkpoint_dir: /tmp/Meta-Llama-3.1-8B-Instruct
dataset:
  _component_: torchtune.datasets.preference_dataset
  source: json
  data_files: my_prefs.json
  column_map: {chosen: accepted, rejected: declined}
  train_on_input: true
optimizer:
  _component_: torch.optim.AdamW
  weight_decay: 0.05
  lr: 5.0e-4
lr_scheduler:
  _component_: torchtune.training.lr_schedulers.get_cosine_schedule_with_warmup
  num_warmup_steps: 100
loss:
  _component_: torchtune.rlhf.loss.DPOLoss
  beta: 0.05
  label_smoothing: 0.1
metric_logger:
  _component_: torchtune.training.metric_logging.DiskLogger
  log_dir: ${output_dir}/logs
max_steps_per_epoch: 1000
"""


def test_a_torchtune_recipe_says_each_component_as_directpo_options(tmp_path, capsys) -> None:
    """Its components were 'unknown option' with unrelated hints (metric_logger: 'merge_lora',
    checkpointer: 'gradient_checkpointing_every') and its optimizer 'optimizer must be a
    string'; each now says the options that build what it built, with its own values."""
    recipe = tmp_path / "lora_dpo.yaml"
    recipe.write_text(TORCHTUNE_RECIPE)
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    lines = {line.strip().split(":", 1)[0]: line for line in err.splitlines()[1:]}
    assert (
        "lora_r: 8, lora_alpha: 16, lora_dropout: 0.0, "
        "lora_target_modules: [q_proj, v_proj, o_proj]" in lines["model"]
    )
    assert "set max_length: 1024" in lines["tokenizer"]
    assert "model_name_or_path: /tmp/Meta-Llama-3.1-8B-Instruct" in lines["checkpointer"]
    assert (
        "set train_file: my_prefs.json, chosen_column: accepted, rejected_column: declined; "
        "directpo never trains on the prompt" in lines["dataset"]
    )
    assert "learning_rate: 0.0005, weight_decay: 0.05" in lines["optimizer"]
    assert "lr_scheduler_type: cosine, warmup_steps: 100" in lines["lr_scheduler"]
    assert "loss_type: sigmoid): set beta: 0.05, label_smoothing: 0.1" in lines["loss"]
    assert "report_to" in lines["metric_logger"] and "max_steps" in lines["max_steps_per_epoch"]
    assert "did you mean" not in err and "must be a string" not in err and len(lines) == 9


def test_a_torchtune_components_left_out_values_and_lora_modules_are_said(tmp_path, capsys) -> None:
    """torchtune's LoRA DPO recipes adapt [q_proj, v_proj, output_proj] and the MLP, which the
    model's line said as 'lora_target_modules: all-linear by default' (k_proj adapted too), a
    lora_* model without lora_rank got no adapter options (a full fine-tune), a bare DPOLoss
    'set beta' (no value), RSOLoss 'beta: GAMMA' and AdamW without weight_decay no decay
    (torch's is 0.01; directpo's 0.0): each says the value torchtune trains with."""
    recipe = tmp_path / "lora_dpo.yaml"
    recipe.write_text(
        "model:\n  _component_: torchtune.models.llama3_1.lora_llama3_1_8b\n"
        "  lora_attn_modules: ['q_proj', 'v_proj', 'output_proj']\n  apply_lora_to_mlp: True\n"
        "  apply_lora_to_output: False\n"
        "optimizer: {_component_: torch.optim.AdamW, lr: 5e-4}\n"
        "loss: {_component_: torchtune.rlhf.loss.DPOLoss}\n"
    )
    assert main(["train", str(recipe)]) == 2
    lines = {line.strip().split(":", 1)[0]: line for line in capsys.readouterr().err.splitlines()}
    assert lines["model"].endswith(
        "its adapters: set lora_r: 8, lora_alpha: 16, lora_dropout: 0.0, lora_target_modules: "
        "[q_proj, v_proj, o_proj, gate_proj, up_proj, down_proj] (the modules it adapts, by "
        "their Hugging Face names)"
    )
    assert "set learning_rate: 5e-4, weight_decay: 0.01 (AdamW" in lines["optimizer"]
    assert lines["loss"].endswith("(loss_type: sigmoid): set beta: 0.1")
    recipe.write_text(
        "model:\n  _component_: torchtune.models.llama3_1.qlora_llama3_1_8b\n"
        "  lora_attn_modules: [q_proj, k_proj, v_proj, output_proj]\n  apply_lora_to_mlp: true\n"
        "  use_dora: true\nloss: {_component_: torchtune.rlhf.loss.RSOLoss}\n"
    )
    assert main(["train", str(recipe)]) == 2
    lines = {line.strip().split(":", 1)[0]: line for line in capsys.readouterr().err.splitlines()}
    assert lines["model"].endswith(
        "set lora_r: 8, lora_alpha: 16, lora_dropout: 0.0, use_dora: true, load_in_4bit: true "
        "(lora_target_modules: all-linear, the default)"
    )
    assert lines["loss"].endswith("set loss_type: hinge, beta: 0.1 (RSO's gamma)")


def test_torchtunes_plain_keys_of_the_same_meaning_are_the_options(tmp_path, built) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "epochs: 2\nbatch_size: 4\ngradient_accumulation_steps: 8\nlog_every_n_steps: 5\n"
        "enable_activation_checkpointing: true\nenable_activation_offloading: false\n"
        "compile: false\nclip_grad_norm: null\nshuffle: true\n"
        "log_peak_memory_stats: true\nresume_from_checkpoint: false\n"
    )
    assert main(["train", str(recipe)]) == 0
    config = built[0]
    assert (config.num_train_epochs, config.per_device_train_batch_size) == (2, 4)
    assert (config.gradient_accumulation_steps, config.logging_steps) == (8, 5)
    assert config.gradient_checkpointing is True and config.max_grad_norm in (None, 0)


def test_a_renamed_key_beside_its_directpo_name_is_refused_when_they_differ(capsys) -> None:
    code = main(["train", "--pretrain", "a", "--model_name_or_path", "b"])
    assert code == 2
    assert "--pretrain: also given as --model_name_or_path; keep one" in capsys.readouterr().err


def test_torchtunes_other_components_and_a_disabled_profiler(tmp_path, capsys) -> None:
    """A disabled profiler (every torchtune recipe has one) asks for nothing; SimPO's loss, an
    8-bit optimizer, several datasets and a tokenizer path say their directpo options."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "loss: {_component_: torchtune.rlhf.loss.SimPOLoss, beta: 2.0, gamma: 0.5}\n"
        "optimizer: {_component_: bitsandbytes.optim.PagedAdamW8bit, lr: 1.0e-5}\n"
        "dataset: [{_component_: torchtune.datasets.stack_exchange_paired_dataset}]\n"
        "profiler: {_component_: torchtune.training.setup_torch_profiler, enabled: false}\n"
        "tokenizer: /tmp/tokenizer\n"
    )
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    lines = {line.strip().split(":", 1)[0]: line for line in err.splitlines()[1:]}
    assert "set loss_type: simpo, beta: 2.0, simpo_gamma: 0.5" in lines["loss"]
    assert "(optimizer: adamw, adamw_kahan or rmsprop)" in lines["optimizer"]
    assert "dataset_mixture" in lines["dataset"]
    assert "tokenizer_name_or_path" in lines["tokenizer"]
    assert "profiler" not in lines and len(lines) == 4


def test_an_override_of_a_refused_key_is_said_by_the_option_that_takes_its_value(
    built, capsys
) -> None:
    """``tokenizer.max_seq_len=512`` (torchtune's override) was told as
    ``--tokenizer.max_seq_len 512``, a flag refused in the same error; it is said in directpo's
    spelling, as the renamed names are, and the key's refusal says how the option differs."""
    from directpo.foreign_names import REFUSED, SAME_VALUE_AS

    assert main(["train", "tokenizer.max_seq_len=512", "optimizer.weight_decay=0.1"]) == 2
    err = capsys.readouterr().err
    said = "options are flags here: --max_length 512 --weight_decay 0.1\n"
    assert said in err and "--tokenizer.max_seq_len 512" not in err
    assert "--tokenizer.max_seq_len: give --max_length (prompt + completion tokens" in err
    options = {field.name for field in dataclasses.fields(DPOConfig)}
    assert set(SAME_VALUE_AS) <= set(REFUSED) and set(SAME_VALUE_AS.values()) <= options


def test_torchtunes_overrides_are_flags(built, capsys) -> None:
    """``directpo train recipe.yaml batch_size=8`` (tune run's overrides) was 'unexpected
    argument' (or 'config file not found: batch_size=8'); the line now says the flag, and the
    flags of a component's field of the same meaning are the options."""
    assert main(["train", "batch_size=8"]) == 2
    assert (
        "'batch_size=8': options are flags here: --per_device_train_batch_size 8"
        in capsys.readouterr().err
    )
    # several overrides (tune run's usual line) are said at once, not one a run
    assert main(["train", "batch_size=8", "recipe.yaml", "optimizer.lr=1e-5"]) == 2
    said = "'batch_size=8', 'optimizer.lr=1e-5': options are flags here: "
    assert said + "--per_device_train_batch_size 8 --learning_rate 1e-5" in capsys.readouterr().err
    flags = ["--optimizer.lr", "1e-5", "--loss.beta", "0.2", "--model.lora_rank", "8"]
    assert main(["train", *flags, "--lr_scheduler.num_warmup_steps", "10"]) == 0
    config = built[0]
    assert (config.learning_rate, config.beta, config.lora_r, config.warmup_steps) == (
        1e-5,
        0.2,
        8,
        10,
    )


def test_torchtunes_cpu_device_is_what_a_machine_without_a_gpu_does(
    tmp_path, built, capsys, monkeypatch
) -> None:
    """``device: cpu`` (torchtune's CPU recipes) was refused on a machine without a GPU, where
    the run trains on the CPU anyway; where a GPU is visible it is refused, saying how."""
    import torch

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("device: cpu\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", str(recipe)]) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(["train", str(recipe)]) == 2
    assert "device: directpo trains on CUDA when it can" in capsys.readouterr().err


@pytest.mark.parametrize("written", ["device: cuda", "device: CUDA"])
def test_torchtunes_cuda_device_without_a_gpu_is_refused_naming_the_cpu(
    tmp_path, built, capsys, monkeypatch, written
) -> None:
    """``device: cuda`` on a machine without a GPU trained on the CPU, said only by 'on cpu' in
    the start line, where torchtune stops; refused in one line naming device: cpu (its tune run
    override device=cuda too), and accepted where a GPU is visible."""
    import torch

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(written + "\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", str(recipe)]) == 2
    assert capsys.readouterr().err == (
        f"directpo: error: {recipe}: {written} asks for a GPU and none is visible here "
        "(torchtune stops); device: cpu trains on the CPU\n"
    )
    assert main(["train", "--device", "cuda"]) == 2
    assert "--device cpu trains on the CPU" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert main(["train", str(recipe)]) == 0 and len(built) == 1


def test_a_flag_replacing_a_value_the_recipe_spells_otherwise_is_said(
    tmp_path, built, capsys
) -> None:
    """``epochs: 2`` in a torchtune-style recipe and ``--num_train_epochs 3`` trained 3 epochs
    without the note a flag replacing the file's value gets (the names differed); TRL's
    ``torch_dtype`` under ``--dtype`` likewise."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("epochs: 2\ntorch_dtype: float32\n")
    code = main(["train", str(recipe), "--num_train_epochs", "3", "--dtype", "bfloat16"])
    assert code == 0 and built[0].num_train_epochs == 3
    err = capsys.readouterr().err
    assert f"note: --num_train_epochs 3 replaces {recipe}'s epochs: 2" in err
    assert f"note: --dtype bfloat16 replaces {recipe}'s torch_dtype: float32" in err


def test_omegaconfs_interpolations_are_resolved_as_omegaconf_does(
    tmp_path, built, capsys, monkeypatch
) -> None:
    """A recipe's ``${output_dir}`` / ``${oc.env:HOME}`` was read as text: the run wrote a
    folder named '${oc.env:HOME}' and a component's line said 'write model_name_or_path:
    ${model_dir}'. They are resolved as OmegaConf resolves them; what cannot be is refused."""
    monkeypatch.setenv("DPO_HOME", "/data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "output_dir: ${oc.env:DPO_HOME}/dpo\nlogging_dir: ${output_dir}/logs\n"
        "epochs: 2\nnum_train_epochs: ${epochs}\nrun_name: '\\${literal}'\n"
    )
    assert main(["train", str(recipe)]) == 0
    config = built[0]
    assert (config.output_dir, config.logging_dir) == ("/data/dpo", "/data/dpo/logs")
    assert config.num_train_epochs == 2 and config.run_name == "${literal}"
    recipe.write_text(
        "base: /models/llama\nmetric_logger:\n  _component_: x.DiskLogger\n  log_dir: ${nope}\n"
        "checkpointer:\n  _component_: x.FullModelHFCheckpointer\n  checkpoint_dir: ${base}\n"
    )
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "checkpointer: set model_name_or_path: /models/llama" in err and "metric_logger" in err
    for text, said in [
        ("output_dir: ${nope}/x\n", "output_dir: '${nope}': the file has no key nope"),
        ("output_dir: ${oc.env:DPO_UNSET_X}\n", "the environment variable DPO_UNSET_X is not set"),
        ("output_dir: ${a}\na: ${output_dir}\n", "loops (output_dir -> a -> output_dir)"),
        ("output_dir: ${oc.decode:1}\n", "OmegaConf's resolver oc.decode is not read here"),
    ]:
        recipe.write_text(text)
        assert main(["train", str(recipe)]) == 2
        assert said in capsys.readouterr().err


def test_openrlhfs_flags_at_their_defaults_are_accepted_and_its_deepspeed_ones_said(
    built, capsys
) -> None:
    """``--ring_attn_size 1`` (OpenRLHF's default, in its scripts: no context parallelism) was
    refused as context parallelism, and train_dpo's --zpg, --grad_accum_dtype,
    --disable_trace_cache, --ring_head_stride, --wandb_org and --wandb_group were 'unknown
    option' without what to write."""
    defaults = ["--ring_attn_size", "1", "--ring_head_stride", "1", "--zpg", "1"]
    assert main(["train", *defaults, "--ds.ring_attn_size", "1"]) == 0
    asks = ["--ring_attn_size", "2", "--zpg", "8", "--grad_accum_dtype", "fp32"]
    asks += ["--disable_trace_cache", "--wandb_org", "me", "--wandb_group", "g"]
    assert main(["train", *asks]) == 2
    err = capsys.readouterr().err
    assert "unknown option" not in err and "6 options cannot be used" in err
    assert "--wandb_org: set WANDB_ENTITY" in err and "--zpg: ZeRO++" in err


def test_openrlhfs_dataset_is_said_as_the_option_its_value_is(tmp_path, capsys) -> None:
    """``--dataset prefs.jsonl`` said 'a file ... is train_file, a hub id dataset_name' and
    left the user to spell it; a local file (or glob) now says ``--train_file prefs.jsonl``,
    a hub id ``--dataset_name org/name`` (a flag, as the user gave theirs; a glob quoted)."""
    pairs = tmp_path / "prefs.jsonl"
    pairs.write_text('{"chosen": "a", "rejected": "b"}\n')
    for value, said in [
        (str(pairs), f"--dataset: give --train_file {pairs} "),
        (f"{tmp_path}/*.jsonl", f"--dataset: give --train_file '{tmp_path}/*.jsonl' "),
        (  # (the other option named as a flag too: it was 'a local file is train_file')
            "Anthropic/hh-rlhf",
            "--dataset: give --dataset_name Anthropic/hh-rlhf (a hub id; a local file is "
            "--train_file)",
        ),
    ]:
        assert main(["train", "--dataset", value]) == 2
        assert said in capsys.readouterr().err
    assert main(["train", "--dataset", "data/missing.jsonl"]) == 2
    assert "dataset_name data/missing" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["data/missing.ndjson", "data/missing.jsonl.xz", "data/M.JSONL"])
def test_openrlhfs_dataset_of_any_data_file_ending_is_not_told_a_hub_id(name, capsys) -> None:
    """``--dataset data/prefs.ndjson`` (or .jsonl.bz2 / .xz, or .JSONL) not there yet was told
    'give --dataset_name data/prefs.ndjson (a hub id ...)': this hint kept its own, shorter list
    of data file endings; it reads the one list the readers and the other hints read."""
    assert main(["train", "--dataset", name]) == 2
    assert f"dataset_name {name}" not in capsys.readouterr().err


def test_a_runs_own_config_yaml_is_read_without_interpolation(tmp_path) -> None:
    """A run's config.yaml records its values as given (a run_name holding '${x}' from a
    flag): score's and rank's reading of it must not take that for an OmegaConf reference."""
    from directpo.config import DPOConfig
    from directpo.reward import run_config

    DPOConfig(run_name="ab${x}", output_dir=str(tmp_path)).save_record(tmp_path / "config.yaml")
    assert run_config(tmp_path).run_name == "ab${x}"


@pytest.mark.parametrize("text", ["costs ${price}", "$${x}", "\\${x}", "${a}${b} \\\\${c}"])
def test_a_runs_own_config_yaml_reruns_with_its_texts_as_given(tmp_path, built, text) -> None:
    """``--run_name 'costs ${price}'`` was recorded as-is; ``directpo train out/config.yaml``
    then read it as a reference to a key price (refused, or another value). The record escapes
    it, so that every reader (train, resume's comparison, score) reads back the text given."""
    assert main(["train", "--run_name", text, "--output_dir", str(tmp_path)]) == 0
    given = dataclasses.replace(built[0], chat_template_kwargs={"note": text})
    given.save_record(tmp_path / "config.yaml")
    assert main(["train", str(tmp_path / "config.yaml")]) == 0
    assert built[1].run_name == text and built[1].chat_template_kwargs == {"note": text}
    from directpo.reward import run_config
    from directpo.yaml_interpolation import read_run_record

    assert read_run_record(str(tmp_path / "config.yaml"))["run_name"] == text
    assert run_config(tmp_path).run_name == text


def test_torchtunes_null_seed_is_told_an_integer_to_write(tmp_path, capsys) -> None:
    """torchtune's ``seed: null`` (a random seed each run) got 'seed must be an integer, got
    None'; generate's line says what null means there and gives a drawn integer to write
    (train draws one itself: tests/test_resume.py)."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("seed: null\nbatch_size: 2\n")
    for argv in (["train", str(recipe)], ["train", "--seed", "null"]):
        assert main(argv) == 2  # (no model: the seed itself passes)
        assert "seed" not in capsys.readouterr().err
    assert main(["generate", "--seed", "none"]) == 2
    said = re.search(
        r"null \(torchtune's: a random seed, another each run\) is not read "
        r"here: give --seed (\d+) \(drawn now\)",  # (generate takes flags alone)
        capsys.readouterr().err,
    )
    assert said and 0 <= int(said.group(1)) < 2**31


@pytest.mark.parametrize("template", ["User: {}\nAssistant: ", 'Q\'s {}:\n"A": '])
def test_openrlhfs_input_template_is_told_the_command_that_writes_it(tmp_path, capsys, template):
    """``--input_template "User: {}\nAssistant: "`` was told 'write the template into the
    file's prompts' without how (and YAML read the template as a mapping). The line gives the
    command; run, it writes OpenRLHF's texts (template.format(prompt)), the rest as it was."""
    import shlex
    import subprocess
    import sys

    assert main(["train", "--input_template", template]) == 2
    said = re.search(r"OpenRLHF's: (python -c '.*' < prefs.jsonl > templated.jsonl);",
                     capsys.readouterr().err)  # fmt: skip
    rows = [{"prompt": "Hi {there}?", "chosen": " a", "rejected": " b"}, {"prompt": "x"}]
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = shlex.split(said.group(1).split(" < ")[0])
    with open(prefs) as given:
        written = subprocess.run([sys.executable, *argv[1:]], stdin=given, capture_output=True,
                                 text=True, check=True).stdout  # fmt: skip
    assert [json.loads(line) for line in written.splitlines()] == [
        {**row, "prompt": template.format(row["prompt"])} for row in rows
    ]


def test_openrlhfs_grouped_steps_are_said_as_the_option_their_value_is(capsys) -> None:
    """``--ckpt.save_steps -1`` (OpenRLHF's default) was told 'save_steps: N ...; save_strategy:
    no ...' and ``--eval.steps -1`` 'use eval_steps', which refuses -1: each now says the
    option its value is."""
    assert main(["train", "--eval.steps", "-1", "--ckpt.save_steps", "-1"]) == 2
    err = capsys.readouterr().err
    assert "--eval.steps: give --eval_strategy epoch" in err
    assert "--ckpt.save_steps: give --save_strategy no" in err
    assert main(["train", "--eval.steps", "50", "--ckpt.save_steps", "100"]) == 2
    err = capsys.readouterr().err
    assert "--eval.steps: give --eval_steps 50" in err and "give --save_steps 100" in err


def test_openrlhfs_script_defaults_say_when_their_option_applies(tmp_path, capsys) -> None:
    """train_dpo_llama.sh's --eval.steps -1 (no --eval.dataset) was told 'give --eval_strategy
    epoch', which a run without held-out pairs refuses ('nothing to evaluate'), and
    --ckpt.load_enable 'give --resume_from_checkpoint latest', which a first run refuses ('no
    checkpoint ... to resume'; OpenRLHF resumes only where one exists): each says when it
    applies."""
    assert main(["train", "--eval.steps", "-1", "--ckpt.load_enable"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert (
        "  --eval.steps: give --eval_strategy epoch with held-out pairs (--eval_file), or remove "
        "it: without them it evaluates nothing (OpenRLHF's -1)" in lines
    )
    assert (
        "  --ckpt.load_enable: give --resume_from_checkpoint latest to continue a run whose "
        "--output_dir holds a checkpoint; a first run: remove it" in lines
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text("ckpt.load_enable: true\n")
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "set resume_from_checkpoint: latest to continue a run whose output_dir holds" in err


def test_transformers_example_scripts_max_train_samples_says_what_to_do(capsys) -> None:
    """``--max_train_samples 1000`` (transformers' example scripts, the alignment handbook) got
    "did you mean 'max_eval_samples'?", the held-out set's limit: a wrong lead."""
    assert main(["train", "--max_train_samples", "1000"]) == 2
    err = capsys.readouterr().err
    assert "max_train_samples" in err and "head -n N" in err and "dataset_streaming" in err
    assert "max_eval_samples" not in err


@pytest.mark.parametrize("value", ["sweep 3: β=0.1", 'it\'s "quoted"', "1e-5"])
def test_a_same_value_keys_advice_pasted_back_sets_that_value(tmp_path, value) -> None:
    """OpenRLHF's wandb_run_name / train_split were told 'set run_name' / 'give
    --dataset_train_split' without their value, no setting to paste back; the advice now
    carries the value as each caller writes it, and pasted back (the recipe's key, the
    shell's words, the call's keyword) it sets exactly that value."""
    import ast
    import shlex

    import yaml

    from directpo.cli_flags import yaml_and_flags
    from directpo.config import load_config
    from directpo.errors import ConfigError

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n')
    base = {"model_name_or_path": "m", "train_file": str(pairs)}
    recipe = tmp_path / "r.yaml"

    def refusal(load) -> str:
        with pytest.raises(ConfigError) as refused:
            load()
        return str(refused.value)

    recipe.write_text(yaml.safe_dump({**base, "wandb_run_name": value}, allow_unicode=True))
    said = refusal(lambda: load_config(str(recipe)))
    setting = said.split("wandb_run_name: set ", 1)[1]
    recipe.write_text(yaml.safe_dump(base) + setting + "\n")
    assert load_config(str(recipe)).run_name == value

    flags = [f"--{key}={given}" for key, given in base.items()]
    said = refusal(lambda: load_config(None, yaml_and_flags([*flags, "--wandb_run_name", value],
                                                            DPOConfig)[1]))  # fmt: skip
    tokens = shlex.split(said.split("--wandb_run_name: give ", 1)[1])
    assert load_config(None, yaml_and_flags([*flags, *tokens], DPOConfig)[1]).run_name == value

    said = refusal(lambda: DPOConfig(**base, wandb_run_name=value))
    name, text = said.split("wandb_run_name: pass ", 1)[1].split("=", 1)
    assert DPOConfig(**base, **{name: ast.literal_eval(text)}).run_name == value

    recipe.write_text(yaml.safe_dump({**base, "train_split": "train[:10%]"}))
    assert refusal(lambda: load_config(str(recipe))).endswith(
        "train_split: set dataset_train_split: train[:10%]"
    )
