"""TRL configs port: TRL's option names run with TRL's meaning, or every problem is named at
once, one line each (trl_compat.py)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import os
import re
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from tiny import SENTIMENT_PAIRS, tiny_config

from directpo.cli import main
from directpo.config import LOSS_TYPES, DPOConfig, load_config
from directpo.errors import ConfigError, ConfigErrors
from directpo.option_values import exponent_numbers
from directpo.tracking import read_metrics

# the keys a TRL DPO recipe (alignment-handbook style) carries, written for the tiny model
TRL_RECIPE = """\
# Model arguments
model_name_or_path: {model}
torch_dtype: null
attn_implementation: sdpa
use_peft: true
lora_r: 8
lora_alpha: 16
lora_dropout: 0.05
lora_target_modules: all-linear
lora_task_type: CAUSAL_LM
# Data
train_file: {data}
eval_file: {data}
dataset_num_proc: 4
preprocessing_num_workers: 4
# DPOTrainer arguments
bf16: true
beta: 0.1
do_eval: true
evaluation_strategy: steps
eval_steps: 2
gradient_accumulation_steps: 1
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: false
hub_model_id: me/tiny-dpo
push_to_hub: false
learning_rate: 5.0e-3
log_level: info
logging_steps: 1
logging_first_step: true
lr_scheduler_type: cosine
max_length: null
num_train_epochs: 2
optim: adamw_torch_fused
output_dir: {out}
per_device_train_batch_size: 3
per_device_eval_batch_size: 3
remove_unused_columns: false
report_to:
- tensorboard
run_name: tiny-dpo
save_strategy: "no"
save_total_limit: 1
seed: 42
warmup_ratio: 0.5
dataloader_num_workers: 2
ddp_find_unused_parameters: false
"""


def test_a_trl_recipe_runs_unchanged_with_trls_meaning(tiny_model_dirs, pairs_file, tmp_path):
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TRL_RECIPE.format(model=tiny_model_dirs["llama"], data=pairs_file, out=out))
    config = load_config(str(recipe))
    assert config.dtype == "bfloat16" and config.optimizer == "adamw" and config.lora_r == 8
    assert config.eval_strategy == "steps" and config.max_length is None
    assert main(["train", str(recipe)]) == 0
    rows = read_metrics(out)
    train_rows = [r for r in rows if "loss" in r]
    assert len(train_rows) == 4  # 6 pairs, batch 3, 2 epochs
    # warmup_ratio 0.5 of 4 steps: 2 warmup steps from 0, then the cosine decay
    assert [round(r["learning_rate"], 6) for r in train_rows[:3]] == [0.0, 0.0025, 0.005]
    assert [r["step"] for r in rows if "eval/loss" in r] == [2, 4]  # eval_strategy: steps
    assert not list(out.glob("checkpoint-*"))  # save_strategy: no
    assert (out / "adapter_model.safetensors").exists()  # use_peft: LoRA adapters
    assert (out / "runs" / "tiny-dpo").is_dir()  # run_name


def test_unusable_trl_options_are_all_named_at_once(tiny_model_dirs, pairs_file, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dirs['llama']}\ntrain_file: {pairs_file}\n"
        "push_to_hub: true\ndeepspeed: ds_zero3.json\nneftune_noise_alpha: 5\n"
        "learnin_rate: 1e-6\nbf16: true\n"
    )
    code = main(["train", str(recipe), "--output_dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert lines[0] == f"directpo: error: {recipe}: 4 options cannot be used:"
    assert lines[1].startswith("  push_to_hub: true is not supported: directpo does not upload")
    assert lines[2].startswith("  deepspeed: ds_zero3.json is not supported: set distributed: fsdp")
    assert lines[3].startswith("  neftune_noise_alpha: 5 is not supported")
    assert lines[4] == "  unknown option 'learnin_rate'; did you mean 'learning_rate'?"
    assert len(lines) == 5


def test_refused_trl_keys_and_wrong_values_are_named_in_one_pass(tmp_path) -> None:
    """A TRL config with neftune_noise_alpha (a key directpo refuses) and fp16 / a Liger loss
    kernel (values refused by the options' checks) took two runs to fix: the second pass named
    fp16 only once the refused key was gone. Every problem, of the file and of the flags, is
    one error now."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "neftune_noise_alpha: 5\nfp16: true\nuse_liger_kernel: true\n"
        "liger_kernel_config: {cross_entropy: true}\n"
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(str(recipe), {"learning_rate": "-1", "bogus": "3"})
    problems = info.value.problems  # (each headed by its source: the flags' were the file's)
    assert [p.split(": ")[1].split()[0].split(":")[0] for p in problems] == [
        "neftune_noise_alpha", "unknown", "fp16", "learning_rate", "liger_kernel_config"
    ]  # fmt: skip
    assert [p.split(": ")[0] for p in problems] == [
        str(recipe), "command line", str(recipe), "command line", str(recipe)
    ]  # fmt: skip
    assert problems[1] == "command line: unknown option '--bogus'"
    assert str(info.value).startswith("5 options cannot be used:")
    with pytest.raises(ConfigErrors) as info:  # from Python, TRL's names and values alike
        DPOConfig(neftune_noise_alpha=5, fp16=True, beta=-1)
    problems = [re.split("[:=]", p)[0].split()[0] for p in info.value.problems]
    assert problems == ["neftune_noise_alpha", "fp16", "beta"]
    with pytest.raises(ConfigError, match="^DPOConfig: neftune_noise_alpha=5 is not supported"):
        DPOConfig(neftune_noise_alpha=5, beta=0.2)  # alone, as before
    assert load_config(None, {"torch_dtype": "bfloat16"}).dtype == "bfloat16"


def test_a_wrong_value_under_a_trl_alias_is_named_as_written(tmp_path) -> None:
    """A TRL alias with a bad value was refused under directpo's name ("generate_max_new_tokens
    must be >= 1"), which the user's file, flags or call do not hold. It is named as written
    now, with directpo's name beside it; a flag that sets directpo's name wins that name back."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_new_tokens: -5\ntorch_dtype: float64\nmax_target_length: 0\n")
    held = tmp_path / "held.jsonl"  # (its rows are read beside refused values: good ones)
    held.write_text('{"prompt": "a", "chosen": " b", "rejected": " c"}\n')
    with pytest.raises(ConfigErrors) as info:
        load_config(str(recipe), {"eval_generate": "2", "eval_file": str(held)})
    assert info.value.problems == [
        "torch_dtype (directpo: dtype) must be one of float32, bfloat16 (got float64)",
        "max_target_length (directpo: max_completion_length) must be null or >= 1 (got 0)",
        "max_new_tokens (directpo: generate_max_new_tokens) must be >= 1 (got -5)",
    ]
    with pytest.raises(ConfigError, match=r"^--temperature \(directpo: generate_temperature\) "
                                          "must be a finite number"):  # fmt: skip
        load_config(None, {"temperature": "hot"})
    with pytest.raises(ConfigError) as info:  # directpo's own name, given last, is as written
        load_config(str(recipe), {"generate_max_new_tokens": "0", "max_target_length": "4",
                                  "dtype": "float32"})  # fmt: skip
    assert info.value.problems[0] == "generate_max_new_tokens must be >= 1 (got 0)"
    with pytest.raises(ConfigError, match=r"^max_new_tokens \(directpo: generate_max_new_tokens\)"
                                          " must be >= 1"):  # fmt: skip
        DPOConfig(max_new_tokens=0, eval_generate=2, eval_file=str(held))
    from directpo.arguments import checked_arguments

    config = DPOConfig(temperature=0.5, eval_generate=2, eval_file=str(held))
    config.max_new_tokens = 0  # set in a notebook: checked again by train()
    config.temperature = -1.0
    config.generate_temperature = -2.0  # directpo's own name, set last, is as written
    with pytest.raises(ConfigError) as info:
        checked_arguments(config, None, print)
    assert info.value.problems == [
        "max_new_tokens (directpo: generate_max_new_tokens) must be >= 1 (got 0)",
        "generate_temperature must be >= 0 (got -2.0)",
    ]
    recipe.write_text("datasets: [{id: data.jsonl, weight: 7}]\n")  # TRL's mixture keys
    with pytest.raises(ConfigError) as info:
        load_config(str(recipe))
    assert [line.split("): ")[1].split(": ")[0] for line in info.value.problems] == [
        "datasets[0]",
        "data.jsonl",  # (not there)
    ]
    assert all(
        line.startswith("datasets (directpo: dataset_mixture)") for line in info.value.problems
    )


def test_trl_command_line_style(tiny_model_dirs, pairs_file, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    recipe = tmp_path / "base.yaml"
    recipe.write_text(f"model_name_or_path: {tiny_model_dirs['gpt2']}\nreport_to: none\n")
    code = main([
        "train", "--config", str(recipe), "--train_file", str(pairs_file), "--output_dir", str(out),
        "--bf16", "--logging_first_step", "--no_remove_unused_columns", "--max_steps", "2",
        "--logging_steps", "5", "--warmup_steps", "0.5", "--learning_rate", "-1e-5",
    ])  # fmt: skip
    assert code == 2 and "learning_rate must be > 0 (got -1e-5)" in capsys.readouterr().err
    code = main([
        "train", str(recipe), "--bf16", "--train_file", str(pairs_file), "--output_dir", str(out),
        "--logging_first_step", "--max_steps", "2", "--logging_steps", "5",
    ])  # fmt: skip
    assert code == 0
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [1, 2]  # first step logged


def test_trl_spellings_from_python_and_their_contradictions() -> None:
    config = DPOConfig(bf16=True, optim="adamw_torch", use_peft=True, rpo_alpha=0.5)
    assert (config.dtype, config.optimizer, config.lora_r) == ("bfloat16", "adamw", 16)
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, 0.5]
    assert DPOConfig(optim="adamw_anyprecision").optimizer == "adamw_kahan"
    assert DPOConfig(optim="paged_adamw_32bit").optimizer == "adamw"  # QLoRA recipes' choice
    # SmolLM3's recipe: reentrant or not, the same gradients (it was refused)
    assert DPOConfig(
        gradient_checkpointing_kwargs={"use_reentrant": True}
    ).gradient_checkpointing_kwargs
    assert DPOConfig(gradient_checkpointing_use_reentrant=True) == DPOConfig()  # ScriptArguments'
    # ModelConfig's model_revision is model_init_kwargs' revision (it was refused unless main)
    revised = DPOConfig(model_name_or_path="org/m", model_revision="it-SFT")
    assert revised.model_init_kwargs == {"revision": "it-SFT"} and revised.model_revision == "main"
    assert revised.tokenizer_location == {"revision": "it-SFT"}
    assert DPOConfig(**revised.to_dict()) == revised  # config.yaml reruns it
    with pytest.raises(ConfigError, match="model_revision v2 contradicts model_init_kwargs'"):
        DPOConfig(model_revision="v2", model_init_kwargs={"revision": "v1"})
    assert DPOConfig(warmup_steps=0.1).warmup_for(50) == 5
    assert DPOConfig(warmup_ratio=0.25).warmup_for(10) == math.ceil(2.5)
    # its own name: constant is the one whose warmup TRL would ignore (said at start)
    assert DPOConfig(lr_scheduler_type="constant_with_warmup").lr_scheduler_type == (
        "constant_with_warmup"
    )
    for options, message in (
        ({"optim": "adamw_bnb_8bit"}, "^optim='adamw_bnb_8bit' is bitsandbytes' 8-bit"),
        ({"optim": "sgd"}, "^optim='sgd' is plain SGD, which directpo does not offer"),
        ({"optim": "sgdd"}, "optim must be one of"),
        ({"use_peft": False, "lora_r": 8}, "lora_r=8 is set with use_peft=False: remove one"),
        # a rank of 0 asked for was the unset rank: 16 without a word
        ({"use_peft": True, "lora_r": 0}, "^lora_r=0 with use_peft=True: .* remove lora_r"),
        ({"warmup_steps": 3, "warmup_ratio": 0.1}, "both set"),
        ({"warmup_steps": 2.5}, "whole number of steps"),
        ({"gradient_checkpointing_kwargs": {"preserve_rng_state": False}}, "only use_reentrant"),
        ({"rpo_alpha": 1.0, "loss_type": ["sigmoid", "sft"]}, "already has"),
        (
            {"cpo_alpha": 1.0, "loss_type": ["sigmoid"]},
            "^cpo_alpha is TRL CPOTrainer's; .* pass loss_type='simpo'",
        ),
        ({"save_strategy": "best"}, "^save_strategy='best' .* load_best_model_at_end=True"),
    ):
        with pytest.raises(ConfigError, match=message):
            DPOConfig(**options)


def test_an_8bit_optimizer_is_told_what_directpo_offers_for_less_optimizer_memory() -> None:
    """optim: adamw_8bit / paged_adamw_8bit / adamw_bnb_8bit (TRL's, transformers' names) and
    optimizer: adamw_8bit were told only the list of choices; the first line says directpo has
    no 8-bit optimizer and what it has for a smaller optimizer state."""
    offered = "dtype='bfloat16', master_weights='bfloat16' and optimizer='adamw_kahan'"
    for key, name in (
        ("optim", "adamw_8bit"),
        ("optim", "paged_adamw_8bit"),
        ("optim", "adamw_bnb_8bit"),
        ("optimizer", "adamw_8bit"),
    ):
        with pytest.raises(ConfigError) as refused:
            DPOConfig(**{key: name})
        first = str(refused.value).splitlines()[0]
        assert (
            first.startswith(f"{key}={name!r} is bitsandbytes' 8-bit optimizer")
            and offered in first
        )
        assert "must be one of" not in str(refused.value)  # (said once, not with the list too)
    # the state those options keep is what directpo's adamw_kahan trains with
    config = DPOConfig(dtype="bfloat16", master_weights="bfloat16", optimizer="adamw_kahan")
    assert config.optimizer == "adamw_kahan"

    # torchao's low-bit AdamW (transformers 5) were told the list alone, 4-bit too, or named
    # bitsandbytes'; bitsandbytes' 32-bit RMSprop ('bnb' read as 8-bit) was refused as 8-bit
    low_bit = {"adamw_torch_8bit": "torchao's 8-bit", "adamw_torch_4bit": "torchao's 4-bit",
               "rmsprop_bnb_8bit": "bitsandbytes' 8-bit"}  # fmt: skip
    for name, owner in low_bit.items():
        with pytest.raises(ConfigError) as refused:
            DPOConfig(optim=name)
        assert str(refused.value).startswith(f"optim={name!r} is {owner} optimizer, which ")
        assert offered in str(refused.value)
    # bitsandbytes' 8-bit Lion and AdEMAMix were 'an 8-bit optimizer' alone, adamw_kahan read
    # as the same update in less memory: the line says which update they are
    other_updates = {"lion_8bit": "Lion (sign-of-momentum updates)",
                     "paged_lion_8bit": "Lion (sign-of-momentum updates)",
                     "ademamix_8bit": "AdEMAMix (two momenta)",
                     "paged_ademamix_8bit": "AdEMAMix (two momenta)"}  # fmt: skip
    for name, update in other_updates.items():
        with pytest.raises(ConfigError) as refused:
            DPOConfig(optim=name)
        said = f"optim={name!r} is bitsandbytes' 8-bit {update}, which directpo does not offer"
        assert str(refused.value).startswith(said)
    for name in ("rmsprop_bnb", "rmsprop_bnb_32bit"):  # transformers: RMSprop, 32-bit state
        assert DPOConfig(optim=name).optimizer == DPOConfig(optim="rmsprop").optimizer == "rmsprop"


def test_every_transformers_optimizer_trains_as_the_same_update_or_is_refused_naming_it() -> None:
    """transformers' other optim names (sgd, adafactor, lion_32bit, galore_*, ...) were told
    the list of choices alone, as if misspelt, and the device kernels of AdamW
    (adamw_torch_xla, adamw_torch_npu_fused, adamw_apex_fused) too. Each name transformers
    knows now trains as the update it is here or is refused saying what it is."""
    from transformers.training_args import OptimizerNames

    from directpo.callers import Caller, Entry, Spelling, called_by

    for name in ("adamw_torch_xla", "adamw_torch_npu_fused", "adamw_apex_fused"):
        assert DPOConfig(optim=name).optimizer == DPOConfig(optim="adamw_torch").optimizer
    told = {
        "sgd": "plain SGD",
        "adagrad": "Adagrad",
        "lion_32bit": "Lion",
        "paged_lion_32bit": "Lion",
        "adafactor": "Adafactor",
        "galore_adafactor_layerwise": "GaLore",
        "apollo_adamw": "APOLLO",
        "schedule_free_radam": "a schedule-free optimizer",
        "stable_adamw": "StableAdamW",
        "paged_ademamix_32bit": "AdEMAMix",
        "grokadamw": "GrokAdamW",
        "adalomo": "AdaLomo",
    }
    for name, what in told.items():
        with pytest.raises(ConfigError) as refused:
            DPOConfig(optim=name)
        assert str(refused.value).startswith(f"optim={name!r} is {what}")
        assert "which directpo does not offer; directpo's optimizers are AdamW (optim='" in str(
            refused.value
        )
    with pytest.raises(ConfigError) as refused:  # directpo's own option, its own names
        DPOConfig(optimizer="sgd")
    assert str(refused.value).startswith("optimizer='sgd' is plain SGD, which directpo does not")
    assert str(refused.value).endswith("are adamw, adamw_kahan (AdamW, bf16 state) and rmsprop")
    for name in (option.value for option in OptimizerNames):  # none told the list alone
        try:
            DPOConfig(optim=name)
        except ConfigError as error:
            assert str(error).startswith(f"optim={name!r} is "), str(error)
    with pytest.raises(ConfigError) as refused:  # a misspelling is still told the names
        DPOConfig(optim="adamw_torchh")
    assert str(refused.value).startswith("optim must be one of adamw_torch, ")
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)), pytest.raises(ConfigError) as refused:
        DPOConfig(optim="adamw_8bit")  # (a command line's words, as it gave them)
    assert str(refused.value).startswith("--optim adamw_8bit is bitsandbytes' 8-bit optimizer")
    assert "use --dtype bfloat16, --master_weights bfloat16 and --optimizer adamw_kahan" in str(
        refused.value
    )


def test_another_transformers_tracker_is_said_as_not_logged_to() -> None:
    """report_to: comet_ml (swanlab, neptune, ...: transformers' trackers) was told 'must be a
    list of tensorboard, wandb, ...' as if misspelt; the line names the tracker as one
    directpo does not log to, and the ones it does."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    for name in INTEGRATION_TO_CALLBACK:
        if name in ("tensorboard", "wandb", "mlflow", "trackio"):
            continue
        with pytest.raises(ConfigError) as refused:
            DPOConfig(report_to=["wandb", name])
        assert str(refused.value) == (
            f"report_to=['wandb', '{name}']: {name} is a transformers tracker directpo does not "
            "log to; it logs to tensorboard, wandb, mlflow, trackio (or 'none' for no tracker)"
        )
    with pytest.raises(ConfigError) as refused:  # each named (the second was the next run's)
        DPOConfig(report_to=["wandb", "comet_ml", "neptune"])
    assert str(refused.value).startswith(
        "report_to=['wandb', 'comet_ml', 'neptune']: comet_ml and neptune are transformers "
        "trackers directpo does not log to; "
    )
    with pytest.raises(ConfigError) as refused:  # a misspelling is told the words
        DPOConfig(report_to=["wand"])
    assert str(refused.value).startswith("report_to must be a list of tensorboard, wandb")


def test_a_reward_model_recipes_own_keys_say_what_they_are(tmp_path) -> None:
    """RewardConfig's center_rewards_coefficient was 'unknown option' (eos_token, SFT's too,
    was refused with a reason already): at its default it ports, another value is refused
    as a reward model's training option, in the caller's spelling of the key."""
    trl = pytest.importorskip("trl")

    dpo_names = {f.name for f in dataclasses.fields(trl.DPOConfig)}
    reward_only = {f.name: f.default for f in dataclasses.fields(trl.RewardConfig)}
    reward_only = {k: v for k, v in reward_only.items() if k not in dpo_names}
    assert "center_rewards_coefficient" in reward_only
    recipe = tmp_path / "reward.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", **reward_only}))
    assert load_config(str(recipe)) == DPOConfig(model_name_or_path="m")
    recipe.write_text("model_name_or_path: m\ncenter_rewards_coefficient: 0.01\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert "center_rewards_coefficient: 0.01 is not supported: RewardConfig's, a reward " in str(
        refused.value
    )
    assert "unknown option" not in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", center_rewards_coefficient=0.01)
    assert str(refused.value).startswith("DPOConfig: center_rewards_coefficient=0.01 is not")


def test_model_init_kwargs_own_options_are_refused_leading_with_the_value_written() -> None:
    """model_init_kwargs: {torch_dtype: float32} was told to set dtype: bfloat16 first, the
    value the user had not written; each key directpo has an option for (dtype, torch_dtype,
    quantization_config) is said with its value and the option that asks for that value."""
    for key in ("torch_dtype", "dtype"):
        with pytest.raises(ConfigError) as refused:
            DPOConfig(model_init_kwargs={key: "float32"})
        said = str(refused.value)
        assert said.startswith(f"model_init_kwargs: {key}: float32 is directpo's dtype option")
        assert "bfloat16" not in said and "dtype='float32' (the default)" in said
    with pytest.raises(ConfigError, match=r"^ref_model_init_kwargs: torch_dtype: torch.float32 "):
        DPOConfig(ref_model_init_kwargs={"torch_dtype": "torch.float32"})
    with pytest.raises(ConfigError) as refused:  # no dtype directpo trains in: both said
        DPOConfig(model_init_kwargs={"torch_dtype": "float16"})
    assert str(refused.value).startswith("model_init_kwargs: torch_dtype: float16 is directpo's")
    assert str(refused.value).endswith("or dtype='float32'")
    quantized = {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "llm_int8_threshold": 6}
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_init_kwargs={"quantization_config": quantized})
    assert str(refused.value).endswith(
        "remove it there and pass load_in_4bit=True, bnb_4bit_quant_type='fp4' (directpo has no "
        "option for llm_int8_threshold)"
    )


def test_a_cpo_config_trains_simpo_with_its_nll_weight() -> None:
    """TRL CPOConfig's cpo_alpha (SimPO recipes set it, 0 for SimPO alone) was refused as an
    unknown option with a hint to rpo_alpha; it is the sft weight, as rpo_alpha."""
    simpo = {"loss_type": "simpo", "beta": 2.0, "simpo_gamma": 0.5}
    config = DPOConfig(**simpo, cpo_alpha=0.3)
    assert config.loss_type == ["simpo", "sft"] and config.loss_weights == [1.0, 0.3]
    assert config.cpo_alpha is None and DPOConfig(**config.to_dict()) == config  # config.yaml
    alone = DPOConfig(**simpo, cpo_alpha=0.0)
    assert alone.loss_type == ["simpo"] and alone.loss_weights is None
    # CPOConfig's AlphaPO alpha at its default is SimPO (it was "unknown option; ld_alpha?")
    assert DPOConfig(**simpo, cpo_alpha=0.0, alpha=0.0) == alone
    with pytest.raises(ConfigError, match="alpha=0.25 is not supported: AlphaPO.s reward"):
        DPOConfig(**simpo, alpha=0.25)


def test_a_cpo_alpha_beside_a_loss_with_a_reference_is_told_the_fix_as_each_caller_sets_it(
    tmp_path, capsys
) -> None:
    """cpo_alpha beside CPO's sigmoid said 'use loss_type simpo ..., or drop cpo_alpha', a
    recipe's words, to a flag's and a keyword's user too; each now reads its own."""
    from directpo.cli import main

    recipe = tmp_path / "cpo.yaml"
    recipe.write_text("cpo_alpha: 1\n")
    for argv, fix in (
        ([str(recipe)], "set loss_type: simpo (SimPO, as CPOTrainer's), or drop cpo_alpha "),
        (["--cpo_alpha", "1"], "give --loss_type simpo (SimPO, as CPOTrainer's), or drop "
                               "--cpo_alpha 1 "),
    ):  # fmt: skip
        assert main(["train", *argv]) == 2
        assert fix in capsys.readouterr().err
    with pytest.raises(ConfigError) as refused:
        DPOConfig(cpo_alpha=0.5, loss_type="hinge")
    assert "pass loss_type='simpo' (SimPO, as CPOTrainer's), or drop cpo_alpha=0.5 " in str(
        refused.value
    )


def test_eval_and_save_strategies(tiny_model_dirs, pairs_file, tmp_path) -> None:
    base = dict(eval_file=str(pairs_file), per_device_train_batch_size=2, max_steps=6)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "epoch",
                         eval_strategy="epoch", save_strategy="epoch", **base)  # fmt: skip
    from directpo.trainer import train

    result = train(config, echo=lambda _: None)
    assert [r["step"] for r in result.metrics if "eval/loss" in r] == [3, 6]  # 3 steps per epoch
    assert sorted(p.name for p in (tmp_path / "epoch").glob("checkpoint-*")) == [
        "checkpoint-3", "checkpoint-6",
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="eval_strategy is no but there is held-out data"):
        train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "no",
                          eval_strategy="no", **base), echo=lambda _: None)  # fmt: skip
    with pytest.raises(ConfigError, match="eval_steps is set but there is nothing to evaluate"):
        train(tiny_config(tiny_model_dirs["gpt2"], pairs_file, tmp_path / "x", eval_steps=2),
              echo=lambda _: None)  # fmt: skip


def test_trl_options_that_were_dropped_now_do_what_they_ask(
    tiny_model_dirs, pairs_file, tmp_path, capsys
) -> None:
    """logging_dir, disable_tqdm, chat_template(_path), fractional save/logging steps and list
    flags written as YAML lists take effect; keys whose meaning directpo does not have
    (truncation_mode: keep_end, pad_token, dataset_splits) are refused, not dropped."""
    from transformers import AutoTokenizer

    template = tmp_path / "template.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    out, logs = tmp_path / "out", tmp_path / "tb"
    code = main([
        "train", "--model_name_or_path", str(tiny_model_dirs["llama"]), "--train_file",
        str(pairs_file), "--output_dir", str(out), "--max_steps", "4", "--save_steps", "0.5",
        "--logging_steps", "0.5", "--logging_dir", str(logs), "--disable_tqdm", "true",
        "--chat_template_path", str(template), "--loss_type", "[sigmoid, sft]",
        "--loss_weights", "[1.0, 0.2]", "--truncation_mode", "keep_start",
        "--per_device_train_batch_size", "3",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "train:" not in err  # no progress bar
    assert [r["step"] for r in read_metrics(out) if "loss" in r] == [2, 4]
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert list(logs.glob("events.out.tfevents.*")) and not (out / "runs").exists()
    assert AutoTokenizer.from_pretrained(out).chat_template == template.read_text()
    assert {"loss/sigmoid", "loss/sft"} <= set(read_metrics(out)[-1])

    for key, value, message in (
        ("truncation_mode", "keep_end", "cap prompts with --max_prompt_length"),
        ("pad_token", "<pad>", "padding is masked out"),
        ("dataset_splits", "[train_prefs, test_prefs]", "dataset_train_split"),
        ("ref_model", "x", "give --ref_model_name_or_path x"),
        ("chat_template", "{{ x | nosuchfilter }}", "chat_template: does not compile"),
    ):
        code = main([
            "train", "--model_name_or_path", str(tiny_model_dirs["llama"]), "--train_file",
            str(pairs_file), "--output_dir", str(tmp_path / key), f"--{key}", value,
        ])  # fmt: skip
        assert code == 2 and message in capsys.readouterr().err, key
    assert DPOConfig(save_steps=0.25).every("save_steps", 10) == 3  # rounded up, as HF
    assert DPOConfig(report_to="all").report_to  # every tracker installed, or none


def test_a_trl_scripts_dpoconfig_call_ports_as_written() -> None:
    """DPOConfig(...) from Python takes the TRL names a YAML file may use (it was a TypeError
    'unexpected keyword argument' for remove_unused_columns, evaluation_strategy, ...)."""
    config = DPOConfig(
        model_name_or_path="m",
        remove_unused_columns=False,
        evaluation_strategy="no",
        push_to_hub=False,
        optim="adamw_torch_fused",
        bf16=True,
    )
    assert (config.eval_strategy, config.optimizer, config.dtype) == ("no", "adamw", "bfloat16")
    assert dataclasses.replace(config, beta=0.2).beta == 0.2
    with pytest.raises(ConfigError, match="^DPOConfig: unknown option 'lerning_rate'; did you"):
        DPOConfig(model_name_or_path="m", lerning_rate=1e-6)
    with pytest.raises(ConfigError, match="^DPOConfig: push_to_hub=True is not supported"):
        DPOConfig(model_name_or_path="m", push_to_hub=True)


def test_the_upload_command_push_to_hub_names_is_installed() -> None:
    """push_to_hub: true told users to run `huggingface-cli upload REPO OUTPUT_DIR`, a command
    huggingface_hub 1.0 removed (`hf upload` replaced it): the command named is a console script
    the installed huggingface_hub provides, in the refusal and in hub_model_id's help."""
    installed = {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", push_to_hub=True)
    command = str(refused.value).split("after training run: ")[1].split()[0]
    assert command == "hf" and command in installed
    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "hub_model_id")
    assert "hf upload REPO OUTPUT_DIR" in help_text.metadata["help"]
    assert "huggingface-cli" not in help_text.metadata["help"]


def test_an_online_dpo_config_ports_with_trls_names(tmp_path) -> None:
    """TRL OnlineDPOConfig's sampling, reward model and vLLM keys: renamed to directpo's
    generate_* / reward_model_name_or_path, or dropped when they ask for nothing different
    (they were unknown options, top_p and top_k without a hint)."""
    path = tmp_path / "online.yaml"
    path.write_text(
        "online: true\nreward_model_path: judge\nmax_new_tokens: 48\ntemperature: 0.9\n"
        "top_p: 0.95\ntop_k: 0\nmissing_eos_penalty: 1.0\nuse_vllm: false\nvllm_mode: server\n"
        "ds3_gather_for_generation: true\nrepetition_penalty: 1.0\nreward_weights: [1.0]\n"
    )
    config = load_config(str(path))
    assert (config.reward_model_name_or_path, config.generate_max_new_tokens) == ("judge", 48)
    assert (config.generate_temperature, config.generate_top_p, config.generate_top_k) == (
        0.9, 0.95, 0,
    )  # fmt: skip
    assert config.missing_eos_penalty == 1.0 and config.reward_weights == [1.0]
    path.write_text(
        "online: true\nreward_fn: m:f\nuse_vllm: true\njudge: pairrm\n"
        "reward_processing_classes: tok\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    lines = str(raised.value).splitlines()
    assert any("use_vllm: true is not supported" in line for line in lines)
    assert any("unknown option 'judge'; did you mean 'reward_fn'" in line for line in lines)
    # (it had no hint: the reward model's tokenizer is its folder's)
    assert any(
        "unknown option 'reward_processing_classes'; did you mean 'reward_model_name_or_path'"
        in line
        for line in lines
    )


# keys of TRL / transformers versions before TRL 1.x and transformers 5 (at their defaults
# there) and of the alignment-handbook's recipes
OLDER_TRL_KEYS = {
    "use_logits_to_keep": False,
    "use_num_logits_to_keep": None,
    "force_use_ref_model": False,
    "model_adapter_name": None,
    "ref_adapter_name": None,
    "use_liger_loss": False,
    "base_model_attribute_name": "model",
    "tools": None,
    "gradient_checkpointing_use_reentrant": False,  # ScriptArguments
    "group_by_length": False,
    "save_safetensors": True,
    "hub_model_revision": "v1.0",  # the alignment-handbook's
}


def test_every_trl_key_old_and_new_is_known(tmp_path) -> None:
    """Every field of TRL 1.16's dataclasses (the installed ones) and of older TRL / transformers
    versions is an option, a TRL spelling of one, or accepted / refused with what to do; none
    is an 'unknown option' (train_sampling_strategy, DatasetMixtureConfig's keys and the older
    keys were, some with a hint to an unrelated option: force_use_ref_model -> sync_ref_model).
    A bare YAML `no` (false) is TRL's 'no' strategy, a null eval_steps transformers'
    default, and a null max_grad_norm no clipping (transformers 4)."""
    trl = pytest.importorskip("trl")
    from directpo.trl_compat import ALIASES, NO_EFFECT

    names = {field.name for field in dataclasses.fields(DPOConfig)}
    for cls in (trl.DPOConfig, trl.ModelConfig, trl.ScriptArguments, trl.DatasetMixtureConfig):
        unknown = [
            f.name for f in dataclasses.fields(cls) if f.name not in names | {*ALIASES, *NO_EFFECT}
        ]
        assert not unknown, (cls.__name__, unknown)

    recipe = tmp_path / "old.yaml"
    defaults = {**OLDER_TRL_KEYS, "train_sampling_strategy": "random", "streaming": False}
    recipe.write_text(
        "model_name_or_path: m\n"
        + "".join(f"{key}: {'null' if v is None else v}\n" for key, v in defaults.items())
        + "eval_strategy: no\nsave_strategy: no\neval_steps: null\nmax_grad_norm: null\n"
    )  # transformers 4's null max_grad_norm: no clipping
    config = load_config(str(recipe))
    expected = DPOConfig(
        model_name_or_path="m", eval_strategy="no", save_strategy="no", max_grad_norm=0
    )
    assert config == expected

    for key, value, message in (
        ("train_sampling_strategy", "group_by_length", "directpo shuffles the pairs"),
        ("tools", [{"type": "function"}], "chat_template_kwargs={'tools': [...]}"),
        ("model_adapter_name", "train", "directpo trains one LoRA adapter"),
        ("ref_adapter_name", "reference", "an adapter folder given as model_name_or_path"),
        ("dataset_mixer", {"d": 1.0}, "write it as dataset_mixture={'datasets': [{'id': ..."),
        ("save_safetensors", False, "directpo saves safetensors"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"{key}={value!r} is not supported: ")):
            DPOConfig(model_name_or_path="m", **{key: value})
        with pytest.raises(ConfigError, match=re.escape(message)):
            DPOConfig(model_name_or_path="m", **{key: value})


def test_lr_scheduler_kwargs_and_the_schedules_that_need_them(
    tiny_model_dirs, pairs_file, tmp_path
) -> None:
    """lr_scheduler_kwargs reach transformers' schedule (cosine_with_min_lr, warmup_stable_decay,
    cosine_with_restarts' num_cycles, ...); they were refused, and so were those schedules.
    Arguments a schedule does not take, or lacks, are refused before any model loads."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    from directpo.trainer import train

    config = tiny_config(tiny_model_dirs["llama"], pairs_file, tmp_path / "out", max_steps=4,
                         per_device_train_batch_size=2, lr_scheduler_type="cosine_with_min_lr",
                         lr_scheduler_kwargs='{"min_lr_rate": 0.5}', warmup_steps=1)  # fmt: skip
    logged = [r["learning_rate"] for r in train(config, echo=lambda _: None).metrics if "loss" in r]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.learning_rate)
    expected = get_cosine_with_min_lr_schedule_with_warmup(optimizer, 1, 4, min_lr_rate=0.5)
    assert logged == pytest.approx(
        [config.learning_rate * expected.lr_lambdas[0](s) for s in range(4)]
    )
    assert logged[-1] > 0.5 * config.learning_rate  # where a plain cosine is down to a quarter

    assert DPOConfig(lr_scheduler_type="warmup_stable_decay",
                     lr_scheduler_kwargs={"num_decay_steps": 10}).lr_scheduler_kwargs  # fmt: skip
    for options, message in (
        ({"lr_scheduler_type": "cosine_with_min_lr"}, "One of min_lr or min_lr_rate"),
        ({"lr_scheduler_type": "warmup_stable_decay"}, "num_decay_steps"),
        ({"lr_scheduler_kwargs": {"min_lr_rate": 0.1}}, "unexpected keyword argument 'min_lr_r"),
        ({"lr_scheduler_type": "constant", "lr_scheduler_kwargs": {"x": 1}}, "takes none"),
    ):
        with pytest.raises(ConfigError, match=f"^lr_scheduler_kwargs .*{message}"):
            DPOConfig(**options)
    with pytest.raises(ConfigError) as refused:  # the schedule is not blamed for a bad lr
        DPOConfig(lr_scheduler_type="cosine_with_min_lr", learning_rate=-1.0,
                  lr_scheduler_kwargs={"min_lr_rate": 0.1})  # fmt: skip
    assert str(refused.value) == "learning_rate must be > 0 (got -1.0)"


def test_a_dumped_trl_config_ports_with_its_values(tmp_path) -> None:
    """TRL's DPOConfig(...).to_dict() (what trackers record, what a script may pass on) ports:
    it writes both gradient_checkpointing and activation_checkpointing, accelerator_config at
    its defaults and pad_token as the placeholder '<PAD_TOKEN>', each of which was refused."""
    trl = pytest.importorskip("trl")
    import yaml

    with warnings.catch_warnings():  # transformers' own deprecation of its spelling
        warnings.simplefilter("ignore", FutureWarning)
        trl_config = trl.DPOConfig(
            output_dir=str(tmp_path / "out"), bf16=False, report_to="none", beta=0.3
        )
    dumped = trl_config.to_dict()
    assert dumped["pad_token"] == "<PAD_TOKEN>" and dumped["accelerator_config"]
    config = DPOConfig(**dumped)
    assert (config.num_train_epochs, config.gradient_checkpointing, config.beta) == (3.0, True, 0.3)
    assert (config.eval_strategy, config.optimizer, config.dtype) == ("no", "adamw", "float32")
    recipe = tmp_path / "dumped.yaml"
    recipe.write_text(yaml.safe_dump(dumped))
    assert load_config(str(recipe)) == config
    for options, message in (
        ({"gradient_checkpointing": True, "activation_checkpointing": False}, "keep one"),
        ({"accelerator_config": {"split_batches": True}}, "accelerate launch as it is"),
        ({"pad_token": "<pad>"}, "padding is masked out"),
    ):
        with pytest.raises(ConfigError, match=message):
            DPOConfig(**options)


def test_a_dumped_trl_model_config_ports_with_its_nulls(tmp_path) -> None:
    """TRL's ModelConfig written out (asdict, as a TrlParser recipe holds it) has
    attn_implementation: null, transformers' own choice of kernel: refused as 'must be one of
    auto, ...' where its dtype: null was the default. Both are the defaults (auto, float32)."""
    trl = pytest.importorskip("trl")

    dumped = dataclasses.asdict(trl.ModelConfig(model_name_or_path="m", use_peft=True))
    assert dumped["attn_implementation"] is None
    config = DPOConfig(**dumped)
    assert (config.attn_implementation, config.lora_r, config.lora_target_modules) == (
        "auto", 16, None)  # fmt: skip
    recipe = tmp_path / "model.yaml"
    recipe.write_text(yaml.safe_dump(dumped) + "torch_dtype: null\n")
    assert load_config(str(recipe)) == config
    with pytest.raises(ConfigError, match="attn_implementation must be one of auto"):
        DPOConfig(attn_implementation="flash")  # (a value still refused)


@pytest.fixture
def configs_built_by_train(monkeypatch) -> list[DPOConfig]:
    """The configs train() builds from its arguments, each call stopped there
    (KeyboardInterrupt) before anything loads."""
    import directpo.trainer

    seen: list[DPOConfig] = []

    def stop(config, peft_config, echo):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.trainer, "checked_arguments", stop)
    return seen


def test_trls_config_object_given_to_train_is_ported(tmp_path, configs_built_by_train) -> None:
    """A TRL notebook's ``DPOTrainer(model=..., args=trl.DPOConfig(...), ...)`` cell given to
    train() was a TypeError saying to write ``DPOConfig(**config.to_dict())``: TRL's config
    object (as ``args=`` or the config) and a dict of options are now ported so, every value
    kept, the keywords beside them over its values."""
    trl = pytest.importorskip("trl")
    from directpo.trainer import train

    seen = configs_built_by_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        trl_config = trl.DPOConfig(
            output_dir=str(tmp_path / "out"), bf16=False, report_to="none", beta=0.3,
            max_steps=5, lr_scheduler_type="cosine", per_device_train_batch_size=2,
        )  # fmt: skip
    for given in (
        {"args": trl_config},
        {"config": trl_config},
        {"args": {"output_dir": str(tmp_path / "out"), "beta": 0.3, "max_steps": 5}},
    ):
        with pytest.raises(KeyboardInterrupt):
            train(**given, model="m", learning_rate=2e-6, echo=None)
    trl_run, positional, from_dict = seen
    assert (
        trl_run
        == positional
        == DPOConfig(**{**trl_config.to_dict(), "model_name_or_path": "m", "learning_rate": 2e-6})
    )
    assert (trl_run.beta, trl_run.max_steps, trl_run.lr_scheduler_type) == (0.3, 5, "cosine")
    assert (trl_run.per_device_train_batch_size, trl_run.num_train_epochs) == (2, 3.0)
    assert (from_dict.beta, from_dict.max_steps, from_dict.model_name_or_path) == (0.3, 5, "m")
    assert from_dict.learning_rate == 2e-6


def test_an_online_dpo_config_object_given_to_train_is_an_online_run(
    tmp_path, configs_built_by_train
):
    """``train(args=trl.experimental.online_dpo.OnlineDPOConfig(...), online=True, ...)`` was
    refused before the keywords applied: the ported object was checked alone, its always-set
    max_new_tokens / temperature / missing_eos_penalty "set but online is off". The keywords
    now build the config with it, a keyword under directpo's name replaces TRL's field of the
    same meaning, and an OnlineDPOConfig means online: true."""
    online_dpo = pytest.importorskip("trl.experimental.online_dpo")
    from directpo.trainer import train

    seen = configs_built_by_train
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = online_dpo.OnlineDPOConfig(
            output_dir=str(tmp_path / "out"), bf16=False, report_to="none", max_new_tokens=12,
            missing_eos_penalty=1.0, beta=[0.2],
        )  # fmt: skip
    for options in ({"online": True}, {}, {"generate_max_new_tokens": 5}):
        with pytest.raises(KeyboardInterrupt):
            train(args=args, model="m", reward_fn="r:f", echo=None, **options)
    given, implied, renamed = seen
    assert given.online and implied.online and renamed.online
    assert (given.generate_max_new_tokens, given.generate_temperature) == (12, 0.9)
    assert (given.missing_eos_penalty, given.beta) == (1.0, 0.2)
    assert renamed.generate_max_new_tokens == 5
    with pytest.raises(ConfigError, match="missing_eos_penalty is set but online is off"):
        train(args=args, model="m", online=False, echo=None)


def test_attn_implementation_in_model_init_kwargs_is_the_option() -> None:
    """TRL's scripts pass attn_implementation in model_init_kwargs (over ModelConfig's): here it
    is the attn_implementation option. Beside another value of the option (or in
    ref_model_init_kwargs, since the option loads both models) it was overridden silently: the
    option's kernel ran (on CUDA in bf16, auto's varlen replaced an asked-for eager)."""
    config = DPOConfig(model_init_kwargs={"attn_implementation": "eager"})
    assert config.attn_implementation == "eager"
    assert DPOConfig(**config.to_dict()) == config  # config.yaml reruns as it ran
    same = {"attn_implementation": "sdpa"}
    assert DPOConfig(attn_implementation="sdpa", model_init_kwargs=same).attn_implementation
    for options, name in (
        ({"attn_implementation": "sdpa", "model_init_kwargs": {"attn_implementation": "eager"}},
         "model_init_kwargs"),
        ({"ref_model_name_or_path": "r", "ref_model_init_kwargs": {"attn_implementation": "eager"}},
         "ref_model_init_kwargs"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=f"^{name}: attn_implementation eager contradicts"):
            DPOConfig(**options)


def test_trust_remote_code_in_model_init_kwargs_is_the_option() -> None:
    """TRL's dpo script puts trust_remote_code in model_init_kwargs (and TRL's trainer lets it
    win): here it stayed in the kwargs while the option, which loads the config, tokenizer and
    reference, said false, so a model folder with code was refused as untrusted."""
    config = DPOConfig(model_init_kwargs={"trust_remote_code": True, "revision": "v1"})
    assert config.trust_remote_code is True
    assert config.model_init_kwargs == {"revision": "v1"}  # the option now (config.yaml too)
    assert DPOConfig(**config.to_dict()) == config
    assert DPOConfig(model_init_kwargs={"trust_remote_code": False}).model_init_kwargs is None
    for options, name in (
        ({"trust_remote_code": True, "model_init_kwargs": {"trust_remote_code": False}},
         "model_init_kwargs"),
        ({"ref_model_name_or_path": "r", "ref_model_init_kwargs": {"trust_remote_code": True}},
         "ref_model_init_kwargs"),
    ):  # fmt: skip
        with pytest.raises(ConfigError, match=f"^{name}: trust_remote_code .* contradicts"):
            DPOConfig(**options)


def test_a_config_files_env_mapping_sets_the_environment(tmp_path, monkeypatch) -> None:
    """TRL's `env:` section of a config file (TrlParser sets those variables) was 'unknown option
    env'. It is not an option: config.yaml never records it (it may hold a token)."""
    monkeypatch.delenv("DIRECTPO_TEST_ENV", raising=False)  # restored after the test
    recipe = tmp_path / "env.yaml"
    recipe.write_text("model_name_or_path: m\nenv:\n  DIRECTPO_TEST_ENV: 0\n")
    config = load_config(str(recipe))
    assert os.environ["DIRECTPO_TEST_ENV"] == "0" and "env" not in config.to_dict()
    recipe.write_text("model_name_or_path: m\nenv: [DIRECTPO_TEST_ENV]\n")
    with pytest.raises(ConfigError, match="env must be a mapping of VARIABLE: value"):
        load_config(str(recipe))


# the alignment-handbook's SmolLM3 DPO recipe (recipes/smollm3/dpo/apo.yaml) as written, but for
# its hub dataset_mixture (a file here) and push_to_hub
SMOLLM3_APO = """\
model_name_or_path: HuggingFaceTB/SmolLM3-3B-checkpoints
model_revision: it-SFT
torch_dtype: bfloat16
attn_implementation: flash_attention_2
trust_remote_code: true
train_file: prefs.jsonl
dataset_num_proc: 12
bf16: true
do_eval: false
eval_strategy: 'no'
gradient_accumulation_steps: 2
gradient_checkpointing: true
gradient_checkpointing_kwargs:
  use_reentrant: true
output_dir: data/SmolLM3-DPO
run_name: SmolLM3-DPO
hub_strategy: every_save
hub_model_revision: v1.0
learning_rate: 1.0e-06
log_level: info
logging_steps: 1
logging_strategy: steps
lr_scheduler_type: cosine_with_min_lr
lr_scheduler_kwargs:
  min_lr_rate: 0.1
max_grad_norm: 0.2
beta: 0.05
loss_type: apo_zero
max_length: 24576
num_train_epochs: 1
overwrite_output_dir: true
per_device_train_batch_size: 1
push_to_hub: false
padding_free: true
report_to:
- wandb
save_strategy: steps
save_steps: 0.5
save_total_limit: 1
seed: 42
use_liger_kernel: true
warmup_ratio: 0.1
"""


def test_the_handbooks_smollm3_recipe_loads_with_its_meaning(tmp_path) -> None:
    """Four of its keys were refused: model_revision, hub_model_revision ('unknown option'),
    use_reentrant: true, cosine_with_min_lr with lr_scheduler_kwargs."""
    recipe = tmp_path / "apo.yaml"
    recipe.write_text(SMOLLM3_APO)
    config = load_config(str(recipe))
    assert config.model_init_kwargs == {"revision": "it-SFT"}
    assert (config.lr_scheduler_type, config.lr_scheduler_kwargs) == (
        "cosine_with_min_lr", {"min_lr_rate": 0.1},
    )  # fmt: skip
    assert (config.dtype, config.loss_type, config.attn_implementation) == (
        "bfloat16", ["apo_zero"], "flash_attention_2",
    )  # fmt: skip


def test_transformers_enums_from_a_trl_script_are_their_values(tmp_path) -> None:
    """A TRL script's values are often transformers' str enums (trl_args.eval_strategy is
    IntervalStrategy.STEPS): they passed every check, then config.yaml could not be written
    (yaml RepresenterError, a traceback once training started)."""
    from transformers.trainer_utils import IntervalStrategy, SaveStrategy, SchedulerType
    from transformers.training_args import OptimizerNames

    config = DPOConfig(
        eval_strategy=IntervalStrategy.STEPS,
        save_strategy=SaveStrategy.EPOCH,
        lr_scheduler_type=SchedulerType.COSINE,
        optim=OptimizerNames.ADAMW_TORCH_FUSED,
    )
    values = (config.eval_strategy, config.save_strategy, config.lr_scheduler_type, config.optim)
    assert values == ("steps", "epoch", "cosine", "adamw_torch_fused")
    assert all(type(value) is str for value in values)
    config.save_record(tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")).lr_scheduler_type == "cosine"


def test_no_effect_keys_written_as_flags_mean_what_they_say() -> None:
    """`--no_push_to_hub` (HfArgumentParser's spelling), `--push_to_hub false`, `--use_cpu False`,
    `--eval_on_start 0`: the flag's text 'false' / '0' was judged as a string, so asking for
    nothing was refused ('push_to_hub: 'false' is not supported')."""
    from directpo.cli_flags import yaml_and_flags

    _, flags = yaml_and_flags(
        ["--model_name_or_path", "m", "--no_push_to_hub", "--use_cpu", "False", "--eval_on_start",
         "0", "--save_safetensors", "true", "--dataloader_drop_last", "false", "--do_eval"],
        DPOConfig,
    )  # fmt: skip
    assert load_config(None, flags) == DPOConfig(model_name_or_path="m")
    both = {"gradient_checkpointing": "true", "activation_checkpointing": "True"}  # agreeing
    assert load_config(None, both).gradient_checkpointing
    for key, value in (("push_to_hub", "true"), ("neftune_noise_alpha", "5")):
        with pytest.raises(ConfigError, match=f"--{key} {value} is not supported"):
            load_config(None, {key: value})


def test_use_cpu_is_refused_only_where_a_gpu_would_be_used(monkeypatch) -> None:
    """use_cpu: true was refused on a machine without a GPU too, where it asks for what the run
    does (a TRL user on a CPU sets it: transformers refuses trl.DPOConfig() there without it);
    where a GPU is visible it would be ignored: refused, saying how to hide the GPUs."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert load_config(None, {"model_name_or_path": "m", "use_cpu": "1"}) == DPOConfig(
        model_name_or_path="m"
    )
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(ConfigError, match="--use_cpu 1 is not supported.*CUDA_VISIBLE_DEVICES"):
        load_config(None, {"use_cpu": "1"})
    # a null written as a flag means what it means in a file (it was 'not a finite number')
    nulls = load_config(None, {"eval_steps": "null", "max_grad_norm": "None"})
    assert (nulls.eval_steps, nulls.max_grad_norm) == (0, 0.0)


def test_logging_strategy_no_is_refused_not_ignored(tmp_path) -> None:
    """`logging_strategy: no` (TRL: log nothing) passed as a key that asks for nothing, since
    "no" (a bare YAML no reads as false) was taken for unset: the run logged every
    logging_steps to the trackers as if the key were not there."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: m\nlogging_strategy: no\n")  # YAML reads False
    # said as written (`no`: YAML 1.1 reads it as false, which was said)
    with pytest.raises(ConfigError, match="logging_strategy: no is not supported: directpo"):
        load_config(str(recipe))
    for value in ("no", "epoch"):
        with pytest.raises(ConfigError, match=f"--logging_strategy {value} is not supported"):
            load_config(None, {"logging_strategy": value})
    with pytest.raises(ConfigError, match="logging_strategy='no' is not supported"):
        DPOConfig(logging_strategy="no")
    assert load_config(None, {"logging_strategy": "steps"}) == DPOConfig()


def test_beta_as_online_dpo_configs_one_value_list_is_that_value(tmp_path) -> None:
    """TRL's OnlineDPOConfig types beta as list[float] (one per epoch) and reads [0.1] as 0.1;
    it was refused ('beta must be a finite number'). A longer list is refused in one line."""
    recipe = tmp_path / "online.yaml"
    recipe.write_text("model_name_or_path: m\nbeta: [0.2]\n")
    config = load_config(str(recipe))
    assert config == DPOConfig(model_name_or_path="m", beta=0.2) and config.beta == 0.2
    assert load_config(str(recipe), {"beta": "[0.3]"}).beta == 0.3  # a flag: --beta [0.3]
    assert DPOConfig(beta=(0.4,)).beta == 0.4 and DPOConfig(beta=[1]).loss_options()["beta"] == 1
    config.save_record(tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["beta"] == 0.2
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "beta: a list of per-epoch values ([0.1, 0.05]) is not supported; give one value"
        ),
    ):
        DPOConfig(beta=[0.1, 0.05])
    with pytest.raises(ConfigError, match="beta must be > 0"):
        DPOConfig(beta=[0.0])


# transformers 4's TrainingArguments keys (gone in transformers 5) at their defaults there, as a
# recipe or a dumped config of that time writes them
TRANSFORMERS_4_KEYS = {
    "half_precision_backend": "auto", "fp16_backend": "auto", "fp16_opt_level": "O1",
    "no_cuda": False, "use_mps_device": False, "use_ipex": False, "xpu_backend": None,
    "tpu_num_cores": None, "tpu_metrics_debug": False, "jit_mode_eval": False,
    "torchdynamo": None, "past_index": -1, "push_to_hub_model_id": None,
    "push_to_hub_organization": None, "push_to_hub_token": None, "mp_parameters": "",
    "sharded_ddp": [], "fsdp_min_num_params": 0, "fsdp_transformer_layer_cls_to_wrap": None,
    "split_batches": None, "dispatch_batches": None, "per_gpu_train_batch_size": None,
    "per_gpu_eval_batch_size": None, "adafactor": False, "include_tokens_per_second": False,
    "include_inputs_for_metrics": False, "use_legacy_prediction_loop": False, "ray_scope": "last",
}  # fmt: skip


def test_a_transformers_4_recipe_ports_and_its_gpu_choices_are_named(tmp_path) -> None:
    """transformers 4's TrainingArguments keys (half_precision_backend, no_cuda, per_gpu_*, ...)
    at their defaults ask for nothing directpo does otherwise; each read "unknown option"
    (some with a hint to an unrelated one: fp16_opt_level -> log_level). Another value is
    refused with what to do, and no refusal says "not supported: not supported"."""
    recipe = tmp_path / "old.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", **TRANSFORMERS_4_KEYS}))
    assert load_config(str(recipe)) == DPOConfig(model_name_or_path="m")
    for key, value, message in (
        ("half_precision_backend", "cpu_amp", "bf16=True is directpo's own mixed precision"),
        ("no_cuda", True, "CUDA_VISIBLE_DEVICES= python your_script.py"),
        ("per_gpu_train_batch_size", 4, "pass per_device_train_batch_size=..."),
        ("adafactor", True, "pass optim=..., one of adamw_torch,"),  # (was 'choose optim')
        ("reference_free", True, "pass loss_type='simpo' or another reference-free loss"),
        ("fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer", "pass distributed='fsdp'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"{key}={value!r} is not supported: ")):
            DPOConfig(model_name_or_path="m", **{key: value})
        with pytest.raises(ConfigError, match=re.escape(message)):
            DPOConfig(model_name_or_path="m", **{key: value})
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(debug="underflow_overflow", optim_target_modules=["q_proj"], use_vllm=True)
    assert not any("not supported: not supported" in p for p in refused.value.problems)
    assert "debug='underflow_overflow' is not supported" in refused.value.problems


def test_torch_compile_backend_and_mode_at_directpos_settings_compile(tmp_path) -> None:
    """transformers compiles whenever torch_compile_backend or torch_compile_mode is set, and
    writes torch_compile_backend: inductor into every dump of a compiled config: TRL's
    DPOConfig(torch_compile=True).to_dict() was refused for it. inductor and the default mode
    are torch_compile: true here; another backend or mode, or a contradicting explicit
    torch_compile: false, is refused."""
    trl = pytest.importorskip("trl")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dumped = trl.DPOConfig(
            output_dir=str(tmp_path / "out"), bf16=False, report_to="none", torch_compile=True
        ).to_dict()
    assert dumped["torch_compile_backend"] == "inductor"
    assert DPOConfig(**dumped).torch_compile is True
    for given in ({"torch_compile_backend": "inductor"}, {"torch_compile_mode": "default"}):
        config = DPOConfig(**given)
        assert config.torch_compile is True and config == DPOConfig(torch_compile=True)
    recipe = tmp_path / "compiled.yaml"
    recipe.write_text("model_name_or_path: m\ntorch_compile_backend: inductor\n")
    assert load_config(str(recipe)).torch_compile is True
    for given in (
        {"torch_compile_backend": "aot_eager"},
        {"torch_compile": True, "torch_compile_mode": "max-autotune"},
        {"torch_compile": False, "torch_compile_backend": "inductor"},
    ):
        with pytest.raises(ConfigError, match="is not supported: torch_compile=True compiles"):
            DPOConfig(**given)


def test_dataset_streaming_reads_only_the_rows_max_steps_trains_on(
    tiny_model_dirs, tmp_path, capsys
) -> None:
    """dataset_streaming: true (TRL's ScriptArguments) was refused: a local file could not be
    streamed from the CLI. It now reads only the rows max_steps trains on (a bad row after them
    is never read), in their order; without max_steps it is refused in one line."""
    pairs = tmp_path / "prefs.jsonl"
    pairs.write_text("".join(json.dumps(row) + "\n" for row in SENTIMENT_PAIRS) + "not json\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {tiny_model_dirs['gpt2']}\ntrain_file: {pairs}\n"
        "dataset_streaming: true\nmax_steps: 2\nper_device_train_batch_size: 2\n"
        "report_to: none\nsave_steps: 0\ndisable_tqdm: true\n"
    )
    from directpo.run_data import load_run_data

    lines: list[str] = []  # (what train reads before any model loads: no training run needed)
    config = load_config(str(recipe), {"output_dir": str(tmp_path / "o")})
    data = load_run_data(config, None, None, torch.device("cpu"), lines.append)
    assert len(data.train.pairs) == 4 and data.train.streamed
    assert "train: dataset_streaming: its first 4 pairs are read, 2 steps of 2 pairs" in lines[0]
    assert f"train: {pairs}: 4 pairs, layout explicit" in lines
    code = main(["train", str(recipe), "--max_steps", "-1", "--output_dir", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    # (max_steps is the flag's, which a file's max_steps would not change: the flag is the fix;
    # the file's dataset_streaming named as the file writes it)
    assert (
        "dataset_streaming: true reads only the rows max_steps trains on: give --max_steps" in err
    )
    # online DPO's prompts read whole: a recipe is told to leave streaming off (it was told
    # only a Python call, train(config, train_dataset=...), that no recipe can make)
    code = main(["train", str(recipe), "--online", "true", "--reward_fn", "len",
                 "--output_dir", str(tmp_path / "q")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (
        "dataset_streaming: true with online: online DPO reads its prompts whole: leave "
        "dataset_streaming off (from Python, train(config, train_dataset=" in err
    )
    # without max_steps too: that line alone (it was said beside 'set max_steps', which would
    # have kept the stream the other line refuses)
    for other in ({"online": True, "reward_fn": "len"}, {"dataset_mixture": {"datasets": [
            {"id": str(pairs)}]}, "train_file": None}):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            DPOConfig(model_name_or_path="m", dataset_streaming=True, **other)
        said = str(refused.value)
        assert "dataset_streaming=True with " in said and "max_steps=" not in said, said


def test_refused_values_are_said_as_the_file_or_the_flag_writes_them(tmp_path) -> None:
    """trl_compat's lines spelt values the Python way (push_to_hub: True, --use_cache: 'true',
    {'use_reentrant': True, 'foo': None}, trust_remote_code False): a value the user never
    wrote, nor could write back; now as YAML writes it, a flag's as typed."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model_name_or_path: m\npush_to_hub: true\nsave_safetensors: false\nlogging_strategy: "
        "epoch\n"
    )
    with pytest.raises(ConfigErrors) as refused:
        load_config(str(recipe))
    said = refused.value.problems
    assert [line.split(" is not supported")[0] for line in said] == [
        "push_to_hub: true", "save_safetensors: false", "logging_strategy: epoch",
    ]  # fmt: skip
    with pytest.raises(ConfigErrors) as refused:
        load_config(None, {"use_cache": "true", "logging_strategy": "no", "past_index": "3"})
    assert [line.split(" is not supported")[0] for line in refused.value.problems] == [
        "--use_cache true", "--logging_strategy no", "--past_index 3",
    ]  # fmt: skip
    kwargs = tmp_path / "kwargs.yaml"
    kwargs.write_text("gradient_checkpointing_kwargs: {use_reentrant: true, foo: null}\n")
    written = "gradient_checkpointing_kwargs: {use_reentrant: true, foo: null} is not supported"
    with pytest.raises(ConfigError, match=re.escape(written)):
        load_config(str(kwargs))
    trust = {"model_init_kwargs": {"trust_remote_code": False}, "trust_remote_code": True}
    with pytest.raises(
        ConfigError, match="trust_remote_code false contradicts trust_remote_code: true"
    ):
        load_config(trust)


def test_the_handbooks_preprocessing_num_workers_is_dataset_num_proc(tmp_path) -> None:
    """The alignment-handbook's ``preprocessing_num_workers`` (its processes for rendering the
    rows) was accepted and did nothing: one process tokenized. It is dataset_num_proc, the
    processes that render and tokenize here; beside dataset_num_proc that one counts, and a
    refused value names the key as written."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_name_or_path: m\npreprocessing_num_workers: 3\n")
    assert load_config(str(recipe)).dataset_num_proc == 3
    assert load_config(None, {"preprocessing_num_workers": "2"}).dataset_num_proc == 2
    recipe.write_text("dataset_num_proc: 4\npreprocessing_num_workers: 12\n")
    assert load_config(str(recipe)).dataset_num_proc == 4
    with pytest.raises(ConfigError, match="preprocessing_num_workers"):
        load_config(None, {"preprocessing_num_workers": "0"})


def test_a_schedules_exponent_numbers_in_yaml_are_numbers(tmp_path) -> None:
    """``lr_scheduler_kwargs: {min_lr: 1e-6}``: YAML 1.1 reads 1e-6 (no dot) as text, which
    the top-level options take as the number but a schedule's kwargs passed on: refused as
    "unsupported operand type(s) for /: 'str' and 'float'". They are numbers now; other text
    stays text."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "lr_scheduler_type: cosine_with_min_lr\nlr_scheduler_kwargs: {min_lr: 1e-6}\n"
    )
    assert load_config(str(recipe)).lr_scheduler_kwargs == {"min_lr": 1e-6}
    flagged = load_config(str(recipe), {"lr_scheduler_kwargs": "{min_lr: 5E-7}"})
    assert flagged.lr_scheduler_kwargs == {"min_lr": 5e-7}
    sampled = "eval_generate: 2\ngeneration_kwargs: {epsilon_cutoff: 3e-4, penalty_alpha: x}\n"
    recipe.write_text(sampled)  # (passed to GenerationConfig, met at the first sampling)
    kwargs = load_config(str(recipe)).generation_kwargs
    assert kwargs == {"epsilon_cutoff": 3e-4, "penalty_alpha": "x"}
    assert exponent_numbers({"a": "1e5x", "b": "12", "c": ".5e-3"}) == {
        "a": "1e5x",
        "b": "12",
        "c": 5e-4,
    }


def test_a_yaml_boolean_given_for_a_word_says_how_yaml_read_it(tmp_path) -> None:
    """``report_to: no`` (YAML 1.1: false) was refused as 'report_to must be a list, got
    False', the word written said nowhere; the refusal says how YAML read it."""
    recipe = tmp_path / "recipe.yaml"
    for line, words in (
        ("lora_modules_to_save: no", "no, off or false"),
        ("model_revision: yes", "yes, on or true"),
    ):
        recipe.write_text(line + "\n")
        with pytest.raises(ConfigError, match=f"YAML reads a bare {words} as a boolean: quote"):
            load_config(str(recipe))


@pytest.mark.parametrize(
    "line, said",
    [
        ("eval_dtype: off", "eval_dtype must be one of auto, float32, bfloat16 (got false: YAML "
         "reads a bare no, off or false as a boolean; write one of these words)"),
        ("save_dtype: yes", "save_dtype must be one of auto, float32, bfloat16 (got true: YAML "
         "reads a bare yes, on or true as a boolean; write one of these words)"),
        ("dtype: no", "dtype must be one of float32, bfloat16 (got false: YAML reads a bare no, "
         "off or false as a boolean; write one of these words)"),
        ("log_level: ~", "log_level must be one of passive, debug, info, warning, error, critical "
         "(got null / None: YAML reads a bare null, ~ or an empty value as none; write one of "
         "these words)"),
        ("distributed: off", "distributed must be one of auto, none, ddp, fsdp (got false: YAML "
         "reads a bare no, off or false as a boolean; write one of these words)"),
        ("dtype: 16", "dtype must be one of float32, bfloat16 (got 16); did you mean bfloat16?"),
        # (report_to: null, or report_to: with no value: 'report_to must be a list, got None')
        ("report_to:", "report_to must be one of tensorboard, wandb, mlflow, trackio, none, all "
         "(got null / None: YAML reads a bare null, ~ or an empty value as none; write one of "
         "these words)"),
        ("report_to: 5", "report_to must be one of tensorboard, wandb, mlflow, trackio, none, all "
         "(got 5; write one of these words)"),
        # (loss_type: null, no or 5 was 'loss_type must be a list, got None', no loss named)
        ("loss_type:", f"loss_type must be one or more of {', '.join(LOSS_TYPES)} (got null / "
         "None: YAML reads a bare null, ~ or an empty value as none; write one, or a list of "
         "several)"),
        ("loss_type: no", f"loss_type must be one or more of {', '.join(LOSS_TYPES)} (got false: "
         "YAML reads a bare no, off or false as a boolean; write one, or a list of several)"),
        ("loss_type: 5", f"loss_type must be one or more of {', '.join(LOSS_TYPES)} (got 5; "
         "write one, or a list of several)"),
        ("dtype: [bfloat16]", "dtype must be one of float32, bfloat16 (got [bfloat16]; write "
         "one of these words)"),
    ],
)  # fmt: skip
def test_a_word_option_read_by_yaml_as_another_type_names_its_words_at_once(
    line, said, tmp_path
) -> None:
    """``eval_dtype: off`` (YAML 1.1: false) was told to quote the word meant, and the quoted
    'off' was refused again, only then with the words it takes: the first line names them."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(line + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert said in [part.strip() for part in str(refused.value).splitlines()]
    key, _, value = line.partition(":")
    if not value.strip() or value.strip() == "~":  # a Python caller's None: said as Python's
        with pytest.raises(ConfigError) as given:  # (no YAML read it)
            DPOConfig(**{key: None})
        python = said.replace(
            "null / None: YAML reads a bare null, ~ or an empty value as none", "None"
        )
        assert python in [part.strip() for part in str(given.value).splitlines()]
        with pytest.raises(ConfigError) as flagged:  # --loss_type null (was "got ['null']")
            load_config(None, {key: "null"})
        assert said in [part.strip() for part in str(flagged.value).splitlines()]


def test_report_to_no_is_no_tracker_and_the_word_no_is_told_none(tmp_path) -> None:
    """``report_to: no`` (YAML's false) was refused with 'quote the word meant, e.g. 'no'',
    and the quoted 'no' then 'must be a list of tensorboard, wandb, mlflow, none': a bare
    no / off is no tracker (TRL's none), and the word no / off written is told none."""
    recipe = tmp_path / "recipe.yaml"
    for line in ("report_to: no", "report_to: off", "report_to: false"):
        recipe.write_text(line + "\n")
        assert load_config(str(recipe)).report_to == ["none"]
    for line, word in (('report_to: "no"', "no"), ("report_to: [wandb, 'off']", "off")):
        recipe.write_text(line + "\n")
        with pytest.raises(ConfigError, match=f"report_to: '{word}' is written none"):
            load_config(str(recipe))


def test_an_sft_recipes_keys_port_or_say_what_a_dpo_row_is(tmp_path) -> None:
    """A recipe carried over from the SFT stage: SFTConfig's own keys (and KTOConfig's
    weights) were 'unknown option', some hinted to an unrelated one (packing_strategy ->
    save_strategy, dataset_text_field -> dataset_test_split). At SFT's defaults they ask for
    nothing different and port; another value is refused saying what directpo does."""
    trl = pytest.importorskip("trl")

    dpo_names = {f.name for f in dataclasses.fields(trl.DPOConfig)}
    sft_only = {
        f.name: f.default
        for f in dataclasses.fields(trl.SFTConfig)
        if f.name not in dpo_names and f.default is not dataclasses.MISSING
    }
    assert {"dataset_text_field", "packing", "completion_only_loss"} <= set(sft_only)
    recipe = tmp_path / "sft.yaml"
    kto_weights = {"desirable_weight": 1.0, "undesirable_weight": 1.0}
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "m", **sft_only, **kto_weights}))
    assert load_config(str(recipe)) == DPOConfig(model_name_or_path="m")

    for key, value, message in (
        ("dataset_text_field", "content", "a DPO row is prompt_column, chosen_column and reje"),
        ("dataset_kwargs", {"skip_prepare_dataset": True}, "tokenizes each pair itself"),
        ("eos_token", "<|im_end|>", "set eos_token in the model folder's tokenizer files"),
        ("packing_strategy", "wrapped", "padding_free packs whole sequences, never cut"),
        ("completion_only_loss", False, "DPO's log-probs are the completions' alone"),
        ("desirable_weight", 1.33, "directpo trains on preference pairs"),
    ):
        with pytest.raises(ConfigError) as refused:
            DPOConfig(model_name_or_path="m", **{key: value})
        assert str(refused.value).startswith(f"DPOConfig: {key}={value!r} is not supported: ")
        assert message in str(refused.value)
    assert DPOConfig(model_name_or_path="m", packing=True, shuffle_dataset=True) == DPOConfig(
        model_name_or_path="m"
    )  # padding_free packs each micro-batch already, no pair attending to another


def test_packing_beside_padding_free_off_is_refused_not_dropped(tmp_path, capsys) -> None:
    """SFTConfig's packing (and eval_packing, OpenRLHF's packing_samples) port because
    padding_free packs each micro-batch; beside padding_free: false they were taken and
    dropped, every row padded, without a word. Refused in the caller's words."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\npacking: true\npadding_free: false\n")
    with pytest.raises(ConfigError, match=r"packing: true asks for packed .* padding_free: false"):
        load_config(str(recipe))
    with pytest.raises(ConfigError, match=r"eval_packing=True asks .* padding_free=False turns"):
        DPOConfig(model_name_or_path="m", eval_packing=True, padding_free=False)
    code = main(["train", "--model_name_or_path", "m", "--packing_samples", "--padding_free",
                 "false", "--output_dir", str(tmp_path / "out")])  # fmt: skip
    said = capsys.readouterr().err
    assert code == 2 and "--packing_samples asks for packed sequences" in said
    assert "--padding_free false turns that off" in said
    # packing off (SFT's default) or padding_free on ask for nothing else: they port
    assert not DPOConfig(model_name_or_path="m", packing=False, padding_free=False).padding_free
    assert DPOConfig(model_name_or_path="m", packing=True, eval_packing=True).padding_free


def test_a_refusals_advice_is_written_as_its_caller_gives_options(tmp_path, capsys) -> None:
    """The tables' advice ('use distributed: fsdp', 'write save_strategy: no') was a recipe's
    YAML whoever called: a command line was told 'assistant_only_loss: true', a DPOConfig
    caller 'use torch_compile: true', neither of which they can paste back. Each option the
    advice sets is now written as the caller gives options; a recipe's stays as it was."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\nfsdp: full_shard\ntorchdynamo: inductor\n")
    with pytest.raises(ConfigErrors) as refused:
        load_config(str(recipe))
    said = "\n".join(refused.value.problems)
    assert "set distributed: fsdp (FSDP2) under torchrun, fsdp_offload: true to" in said
    assert "set torch_compile: true" in said
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(model_name_or_path="m", fsdp="full_shard", completion_only_loss=False,
                  **{"ckpt.save_steps": -1, "eval_split": "test"})  # fmt: skip
    said = "\n".join(refused.value.problems)
    assert "pass distributed='fsdp' (FSDP2) under torchrun, fsdp_offload=True to" in said
    assert "(assistant_only_loss=True narrows them" in said
    assert "pass save_strategy='no'" in said  # the strategy, not YAML's false
    assert "pass dataset_test_split='test'" in said  # (its value, to paste back)
    with pytest.raises(ConfigError, match="does not upload: report_to='trackio' logs on this"):
        DPOConfig(report_to="trackio", trackio_space_id="me/space")  # (after another label)
    code = main(["train", "--model_name_or_path", "m", "--fsdp", "full_shard",
                 "--completion_only_loss", "false", "--torchdynamo", "inductor"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "give --distributed fsdp (FSDP2) under torchrun, --fsdp_offload to" in err
    assert "(--assistant_only_loss narrows them" in err and "give --torch_compile" in err
    assert ": true" not in err


def test_what_a_refused_trl_name_says_to_write_is_taken() -> None:
    """A refusal's 'what to write instead' names an option that works: DPOTrainer's
    optimizer_cls_and_kwargs said 'set optim and optim_args instead', and optim_args is
    refused ('use adam_beta1/adam_beta2/adam_epsilon/weight_decay'), a second run later."""
    from directpo.arguments import TRAINER_ONLY
    from directpo.trl_compat import NO_EFFECT
    from directpo.trl_table import advice_text

    refused = {key for key, (accepted, _) in NO_EFFECT.items() if not accepted("x")}
    advice = {
        key: advice_text(said)
        for key, said in {**{k: said for k, (_, said) in NO_EFFECT.items()}, **TRAINER_ONLY}.items()
    }
    for key, said in advice.items():
        named = set(re.findall(r"[a-z0-9]+_[a-z0-9_]+", said)) - {key}
        assert not named & refused, (key, said)
    config = DPOConfig(optim="adamw_torch", adam_beta1=0.8, adam_beta2=0.95, adam_epsilon=1e-6,
                       weight_decay=0.1)  # fmt: skip
    assert (config.adam_beta1, config.adam_beta2, config.weight_decay) == (0.8, 0.95, 0.1)


def test_trls_own_dpo_script_commands_run_as_written(tiny_model_dirs, tmp_path) -> None:
    """The commands in the installed TRL's trl/scripts/dpo.py docstring (full training and
    LoRA), flag for flag, with the hub ids replaced by local paths as a user would (a dataset
    folder of train / test files, the tiny model) and the step counts cut: each trains and
    evaluates. Read from the installed TRL, so a flag a newer TRL adds there is tried too."""
    import importlib.util
    import shlex
    import shutil

    pytest.importorskip("trl")
    from tiny import write_jsonl

    script = importlib.util.find_spec("trl.scripts.dpo").origin
    blocks = re.findall(r"```bash\n(.*?)```", Path(script).read_text(), re.S)
    assert len(blocks) >= 2 and any("--use_peft" in block for block in blocks)
    data = tmp_path / "ultrafeedback"
    data.mkdir()
    write_jsonl(data / "train.jsonl", SENTIMENT_PAIRS)
    write_jsonl(data / "test.jsonl", SENTIMENT_PAIRS[:4])
    local = {"--dataset_name": str(data), "--model_name_or_path": str(tiny_model_dirs["llama"]),
             "--max_steps": "1", "--gradient_accumulation_steps": "1", "--eval_steps": "1",
             "--output_dir": str(tmp_path / "out")}  # fmt: skip
    commands = [shlex.split(block.replace("\\\n", " ")) for block in blocks]
    assert all(tokens[:2] == ["python", "trl/scripts/dpo.py"] for tokens in commands)
    flags = [{t for t in tokens if t.startswith("--")} for tokens in commands]
    # (time) a command whose flags another holds with more is run by that one: the full
    # training's by the LoRA command today
    for block, tokens, own in zip(blocks, commands, flags, strict=True):
        if any(own < other for other in flags):
            continue
        argv = tokens[2:]
        for i, token in enumerate(argv[:-1]):
            argv[i + 1] = local.get(token, argv[i + 1])
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        # report_to none: transformers 5's default, which TRL's commands leave to it
        assert main(["train", *argv, "--report_to", "none"]) == 0, block
        rows = read_metrics(tmp_path / "out")
        assert [r["step"] for r in rows if "eval/loss" in r] == [1]
        assert (tmp_path / "out" / "adapter_config.json").exists() == ("--use_peft" in argv)
