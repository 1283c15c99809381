from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

import directpo.config
from directpo.config import DPOConfig, load_config, option_names
from directpo.errors import ConfigError, ConfigErrors
from directpo.preflight import check_environment


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_values_are_typed_and_flags_override(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "beta: 0.5\nlearning_rate: 1e-5\nmax_steps: 7\n"
        "gradient_checkpointing: true\nreport_to: [none]\n",
    )
    config = load_config(path, {"beta": "0.25", "gradient_checkpointing": "false"})
    assert config.beta == 0.25  # flag wins
    assert config.learning_rate == 1e-5  # YAML's "1e-5" string read as the number it means
    assert config.max_steps == 7 and isinstance(config.max_steps, int)
    assert config.gradient_checkpointing is False
    assert config.report_to == ["none"]


def test_eval_file_takes_named_sets_from_yaml_and_flags(tmp_path: Path) -> None:
    """Named eval sets (transformers' eval_dataset dict) have a YAML form: a mapping of names
    to a file or a list of files; a name that cannot be part of a metric name is refused."""
    path = write(tmp_path, "eval_file: {chat: a.jsonl, code: [b.jsonl, c.jsonl]}\n")
    expected = {"chat": "a.jsonl", "code": ["b.jsonl", "c.jsonl"]}
    assert load_config(path).eval_file == expected
    assert (
        load_config(None, {"eval_file": "{chat: a.jsonl, code: [b.jsonl, c.jsonl]}"}).eval_file
        == expected
    )
    assert load_config(None, {"eval_file": "a.jsonl"}).eval_file == "a.jsonl"
    with pytest.raises(ConfigError, match="^eval_file: set name a/b must be a word"):
        load_config(None, {"eval_file": {"a/b": "x.jsonl"}})
    with pytest.raises(ConfigError, match="^eval_file.chat must name at least one file"):
        load_config(None, {"eval_file": {"chat": []}})


def test_flags_alone_work_and_lists_split_on_commas() -> None:
    config = load_config(
        None,
        {"model_name_or_path": "m", "report_to": "tensorboard,wandb", "save_total_limit": "none"},
    )
    assert config.report_to == ["tensorboard", "wandb"]
    assert config.save_total_limit is None


def test_max_steps_0_is_the_epochs_run_as_transformers_4_read_it(tmp_path: Path) -> None:
    """``max_steps: 0`` (transformers 4 and TrainingArguments' help: only > 0 is a count) was
    refused 'must be -1 or >= 1'; it is num_train_epochs' run, -1, and recorded so."""
    config = load_config(write(tmp_path, "model_name_or_path: m\nmax_steps: 0\n"))
    assert config.max_steps == -1 == DPOConfig(model_name_or_path="m", max_steps=0).max_steps
    assert config.to_dict()["max_steps"] == -1
    with pytest.raises(ConfigError, match=r"max_steps must be -1 or 0 \(num_train_epochs "):
        DPOConfig(model_name_or_path="m", max_steps=-5)


def test_a_number_option_given_a_switch_says_it_takes_a_number(tmp_path: Path) -> None:
    """``eval_generate: true`` (a count of held-out prompts, read as a switch) was 'must be an
    integer, got True', Python's spelling of what the user wrote as true."""
    for line, said in (
        ("eval_generate: true", "eval_generate must be an integer, got true: a number, not a "
         "switch"),
        ("learning_rate: false", "learning_rate must be a number, got false: not a switch"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            load_config(write(tmp_path, f"model_name_or_path: m\n{line}\n"))
        assert said in [part.strip() for part in str(refused.value).splitlines()]
        # the flag's text (--eval_generate true) says the same: it was "got 'true'"
        key, value = line.split(": ")
        with pytest.raises(ConfigError) as flagged:
            load_config(None, {"model_name_or_path": "m", key: value})
        assert str(flagged.value) == str(refused.value)
    for key, value in (("max_steps", "yes"), ("save_steps", "off")):
        with pytest.raises(ConfigError, match=f"got {value}: (a number, )?not a switch"):
            load_config(None, {"model_name_or_path": "m", key: value})
    assert load_config(None, {"model_name_or_path": "m", "max_steps": "1"}).max_steps == 1


def test_a_flow_mapping_without_the_space_after_its_colons_says_where_it_goes(
    tmp_path: Path,
) -> None:
    """``--eval_file {chat:a.jsonl}`` (JSON's habit: no space after the colon) is read by YAML
    as one set named 'chat:a.jsonl' of no files, and was refused as a set name not a word;
    ``--loss_type {sigmoid:1.0}`` was told to write loss_weights: [None]. The line says where
    the space goes, or the options to write for the mapping meant; a recipe says the same."""
    for key, value, said in (
        ("eval_file", "{chat:a.jsonl,code:b.jsonl}", "eval_file: {chat:a.jsonl, code:b.jsonl} "
         "has no space after a colon (YAML reads chat:a.jsonl as one name with no value): "
         "write {chat: a.jsonl, code: b.jsonl}"),
        ("model_init_kwargs", "{attn_implementation:eager}", "write {attn_implementation: "
         "eager}"),
        ("train_file", "{train:a.jsonl,test:c.jsonl}", "train_file: {train: a.jsonl, test: "
         "c.jsonl} is datasets' data_files mapping (splits by name): write train_file: "
         "a.jsonl and eval_file: c.jsonl"),
        ("loss_type", "{sigmoid:1.0,sft:0.5}", "loss_type: {sigmoid: 1.0, sft: 0.5} maps "
         "losses to weights: write loss_type: [sigmoid, sft] and loss_weights: [1.0, 0.5]"),
        # an absolute path after the colon (was 'set name chat:/data/a.jsonl must be a word',
        # and train_file's 'must be a file or a list of files', its splits said nowhere)
        ("eval_file", "{chat:/data/a.jsonl}", "eval_file: {chat:/data/a.jsonl} has no space "
         "after a colon (YAML reads chat:/data/a.jsonl as one name with no value): write "
         "{chat: /data/a.jsonl}"),
        ("train_file", "{train:/d/a.jsonl,test:/d/c.jsonl}", "write train_file: /d/a.jsonl "
         "and eval_file: /d/c.jsonl"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as flagged:
            load_config(None, {"model_name_or_path": "m", key: value})
        assert any(said in part for part in str(flagged.value).splitlines()), flagged.value
        with pytest.raises(ConfigError) as refused:
            load_config(write(tmp_path, f"model_name_or_path: m\n{key}: {value}\n"))
        assert str(refused.value) == str(flagged.value)
    # a name holding a colon with files is no flow mapping's slip, nor a URL's or a drive's
    # colon (one path YAML read as a set of one): said as a set name, no space advised
    with pytest.raises(ConfigError, match="set name a:b must be a word"):
        DPOConfig(model_name_or_path="m", eval_file={"a:b": "x.jsonl"})
    for path in ("s3://bucket/a.jsonl", "C:/data/a.jsonl", "C:\\data\\a.jsonl", "hf://d/x"):
        with pytest.raises(ConfigError, match=f"set name {re.escape(path)} must be a word"):
            load_config(None, {"model_name_or_path": "m", "eval_file": f"{{{path}}}"})


def test_a_list_option_given_one_value_of_another_type_says_what_its_list_holds(
    tmp_path: Path,
) -> None:
    """``lora_target_modules: 5`` was 'must be a list, got 5' (of what, and that a,b is one,
    said nowhere), and YAML's ``loss_weights: 1.0`` refused where the flag ``--loss_weights
    1.0`` is the list [1.0]: one number is a list of one, as the flag's."""
    recipe = write(tmp_path, "model_name_or_path: m\nloss_weights: 1.0\n")
    assert load_config(recipe).loss_weights == load_config(None, {"model_name_or_path": "m",
        "loss_weights": "1.0"}).loss_weights == [1.0]  # fmt: skip
    for line, said in (
        ("lora_target_modules: 5", "lora_target_modules must be a list of names (a YAML list, "
         "or comma-separated: a,b), got 5"),
        ("loss_weights: true", "loss_weights must be a list of numbers (a YAML list, or "
         "comma-separated: a,b), got true"),
        # (was 'eval_file must be a string, got True', then '... files, got True')
        ("eval_file: yes", "eval_file must be a file or a list of files, got true (YAML reads "
         "a bare yes, on or true as a boolean: quote the word meant, e.g. 'yes')"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            load_config(write(tmp_path, f"model_name_or_path: m\nlora_r: 8\n{line}\n"))
        assert said in [part.strip() for part in str(refused.value).splitlines()]
    # a word option given a class from Python (was 'must be a string, got a builtins.type
    # object'): its words, and the class by name
    with pytest.raises(ConfigError, match=r"^optimizer must be one of adamw, .*\(got the class "
                       r"torch\.optim\.adamw\.AdamW; write one of these words\)$"):  # fmt: skip
        DPOConfig(model_name_or_path="m", optimizer=torch.optim.AdamW)


def test_a_data_files_mapping_or_weighted_losses_is_told_the_options_to_write(
    tmp_path: Path,
) -> None:
    """datasets' ``data_files`` mapping as train_file (TRL scripts pass {train: ..., test:
    ...}) was 'must be a file or a list of files', and ``loss_type: {sigmoid: 1.0, sft: 0.5}``
    the loss words alone: each line names the two options to write, from a recipe, a flag
    (a YAML flow mapping) and Python."""
    for line, said in (
        ("train_file: {train: a.jsonl}", "train_file: {train: a.jsonl} is datasets' "
         "data_files mapping (splits by name): write train_file: a.jsonl"),
        ("train_file: {train: [a.jsonl, b.jsonl], test: c.jsonl}", "write train_file: "
         "[a.jsonl, b.jsonl] and eval_file: c.jsonl"),
        ("train_file: {train: a.jsonl, test: c.jsonl, validation: d.jsonl}", "write "
         "train_file: a.jsonl and eval_file: {test: c.jsonl, validation: d.jsonl}"),
        # eval_file's named sets stay; one named train is the data_files mapping
        ("eval_file: {train: a.jsonl, test: c.jsonl}", "eval_file: {train: a.jsonl, "
         "test: c.jsonl} is datasets' data_files mapping (splits by name): write "
         "train_file: a.jsonl and eval_file: c.jsonl"),
        ("train_file: {chat: a.jsonl}", "train_file must be a file or a list of files, got "
         "{chat: a.jsonl} (named sets are eval_file's)"),
        ("loss_type: {sigmoid: 1.0, sft: 0.5}", "loss_type: {sigmoid: 1.0, sft: 0.5} maps "
         "losses to weights: write loss_type: [sigmoid, sft] and loss_weights: [1.0, 0.5]"),
    ):  # fmt: skip
        with pytest.raises(ConfigError) as refused:
            load_config(write(tmp_path, f"model_name_or_path: m\n{line}\n"))
        lines = [part.strip() for part in str(refused.value).splitlines()]
        assert any(said in part for part in lines), (line, lines)
        key, value = line.split(": ", 1)
        with pytest.raises(ConfigError) as flagged:  # the flag's text: the same line
            load_config(None, {"model_name_or_path": "m", key: value})
        assert str(flagged.value) == str(refused.value)
    with pytest.raises(ConfigError, match=r"write loss_type: \[sigmoid, sft\] and loss_weig"):
        DPOConfig(model_name_or_path="m", loss_type={"sigmoid": 1.0, "sft": 0.5})
    assert DPOConfig(model_name_or_path="m", eval_file={"test": "c.jsonl"}).eval_file == {
        "test": "c.jsonl"
    }


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"learning_rate": "-1e-5"}, "learning_rate"),
        ({"learning_rate": "abc"}, "learning_rate"),
        ({"learning_rate": "nan"}, "learning_rate"),
        ({"beta": "0"}, "beta"),
        ({"beta": "-0.1"}, "beta"),
        ({"per_device_train_batch_size": "0"}, "per_device_train_batch_size"),
        ({"gradient_accumulation_steps": "1.5"}, "gradient_accumulation_steps"),
        ({"label_smoothing": "0.5"}, "label_smoothing"),
        ({"max_prompt_length": "2048"}, "max_prompt_length"),
        ({"gradient_checkpointing": "maybe"}, "gradient_checkpointing"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"dtype": "float16"}, "dtype"),
        ({"max_steps": "-2"}, "max_steps"),
        ({"report_to": "tensorboard,comet"}, "report_to"),
        ({"lr_scheduler_type": "reduce_lr_on_plateau"}, "lr_scheduler_type"),
        ({"logging_steps": "0"}, "logging_steps"),
        ({"save_steps": "2.5"}, "save_steps"),
        ({"prompt_column": "chosen"}, "prompt_column"),
        ({"system_column": "chosen"}, "system_column"),
        ({"system_column": " "}, "system_column"),
        ({"distributed": "deepspeed"}, "distributed"),
        ({"attn_implementation": "flash"}, "attn_implementation"),
        ({"pack_max_tokens": "-1"}, "pack_max_tokens"),
        ({"padding_free": "false", "pack_max_tokens": "512"}, "pack_max_tokens"),
        ({"prefix_sharing": "sometimes"}, "prefix_sharing"),
        ({"optimizer": "rmsprop", "adam_beta2": "0.95"}, "adam_beta2"),  # ignored by RMSprop
        ({"optim": "rmsprop", "adam_beta1": "0.8"}, "adam_beta1"),
    ],
)
def test_impossible_values_name_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert message.startswith(key) and "\n" not in message


def test_every_wrong_value_is_reported_at_once(tmp_path: Path) -> None:
    """A config file with three mistakes took three runs to fix: each run named one."""
    path = write(tmp_path, "learning_rate: -1\nbeta: 0\nmax_length: 1\noptimizer: sgd\n")
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    keys = sorted(problem.split()[0].rstrip(":") for problem in info.value.problems)
    assert keys == ["beta", "learning_rate", "max_length", "optimizer"]
    assert str(info.value).startswith("4 options cannot be used:")
    with pytest.raises(ConfigErrors) as info:  # values of the wrong type: all of them too
        load_config(None, {"max_steps": "x", "beta": "y", "gradient_checkpointing": "maybe"})
    assert sorted(p.split()[0] for p in info.value.problems) == [
        "beta",
        "gradient_checkpointing",
        "max_steps",
    ]
    config = DPOConfig()  # outside construction, a refusal is raised at once, as before
    config.beta = -1.0
    with pytest.raises(ConfigError, match="beta must be > 0"):
        config._require(config.beta > 0, "beta", "> 0")


@pytest.mark.parametrize(
    "overrides, keys",
    [  # each refused value alone is reported, not a check of another option reading it
        ({"max_length": 0, "max_prompt_length": 8}, ["max_length"]),
        ({"loss_type": [], "beta": 0.2, "simpo_gamma": 1.0}, ["loss_type"]),
        ({"loss_type": ["bogus"], "loss_weights": [1.0, 2.0], "beta": 0}, ["beta", "loss_type"]),
        ({"loss_type": ["bogus"], "f_divergence_type": "js_divergence"}, ["loss_type"]),
        ({"loss_type": ["bogus"], "precompute_ref_log_probs": True}, ["loss_type"]),
        ({"chosen_column": " ", "rejected_column": " "}, ["chosen_column", "rejected_column"]),
        (
            {"online": True, "train_file": None, "prompt_file": __file__, "reward_fn": "m:f",
             "max_length": 1},  # (a file that is there: a missing one is said too)
            ["max_length"],
        ),
    ],
)  # fmt: skip
def test_a_refused_value_is_not_blamed_on_other_options(overrides: dict, keys: list) -> None:
    """Values are checked together since every wrong value is reported at once: a later check
    read an earlier refused value, adding a line blaming another option ('max_prompt_length
    must be < max_length (0)', 'beta is set but no chosen loss uses it (loss_type: )') or
    stopping the checks with a swallowed KeyError (an unknown loss_type left beta unchecked)."""
    with pytest.raises(ConfigError) as info:
        DPOConfig(**overrides)
    problems = getattr(info.value, "problems", [str(info.value)])
    assert sorted(problem.split()[0] for problem in problems) == keys, problems


def test_objects_where_options_take_values_are_named_by_class_in_one_line(
    tiny_model_dirs,
) -> None:
    """A TRL habit, DPOTrainer(model=model): the model's whole repr (hundreds of lines) was the
    error. Objects are named by their class; a model or tokenizer says how to pass it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dirs["llama"])
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path=model)
    assert str(info.value) == (
        "model_name_or_path takes a folder or hub id, got a "
        "transformers.models.llama.modeling_llama.LlamaForCausalLM object: save it first "
        "(obj.save_pretrained('folder'), and its tokenizer there too) and pass 'folder'"
    )
    with pytest.raises(ConfigError, match=r"^beta must be a finite number, got a builtins.object "):
        DPOConfig(model_name_or_path="m", beta=object())
    with pytest.raises(ConfigError) as info:
        DPOConfig(model_name_or_path="m", max_steps="x" * 500)
    assert len(str(info.value)) < 150 and "\n" not in str(info.value)


def test_unknown_keys_are_rejected_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown option 'learnig_rate'; did you mean 'learning_rate'"
    ):
        load_config(write(tmp_path, "learnig_rate: 0.1\n"))
    with pytest.raises(ConfigError, match="unknown option '--bogus'"):
        load_config(None, {"bogus": 1})


def test_wrong_yaml_types_and_broken_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="beta must be a finite number"):
        load_config(write(tmp_path, "beta: {x: 1}\n"))
    with pytest.raises(ConfigError, match="max_steps must be an integer"):
        load_config(write(tmp_path, "max_steps: true\n"))
    with pytest.raises(ConfigError, match=r"cfg.yaml: line \d+"):
        load_config(write(tmp_path, "beta: [1, 2\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- beta\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "missing.yaml"))


def test_missing_files_fail_in_environment_check(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    config = DPOConfig(
        model_name_or_path=str(model), train_file=str(tmp_path / "nope.jsonl"), report_to=["none"]
    )
    with pytest.raises(ConfigError, match="model is not a model folder .*it holds nothing"):
        check_environment(config)
    (model / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="train_file: no such file"):
        check_environment(config)
    config = DPOConfig(model_name_or_path=str(tmp_path / "no-model"), report_to=["none"])
    with pytest.raises(ConfigError, match="model_name_or_path: no such model folder"):
        check_environment(config)


def test_a_logging_dir_that_cannot_be_made_is_refused_before_any_model_loads(
    tiny_model_dirs, pairs_file, tmp_path: Path
) -> None:
    """TensorBoard's logging_dir under a file was found when the tracker started, after the
    models loaded (minutes for a large one): it is said by the environment check."""
    (tmp_path / "afile").write_text("")
    config = DPOConfig(
        model_name_or_path=str(tiny_model_dirs["llama"]), train_file=str(pairs_file),
        logging_dir=str(tmp_path / "afile" / "tb"), report_to=["tensorboard"],
    )  # fmt: skip
    with pytest.raises(ConfigError, match="logging_dir: .*afile/tb cannot be made: .* is a file"):
        check_environment(config)
    config.report_to = ["none"]  # no tracker writes there
    check_environment(config)
    config.report_to, config.logging_dir = ["tensorboard"], str(tmp_path / "new" / "tb")
    check_environment(config)  # made when the tracker starts


def test_resume_from_checkpoint_names_a_checkpoint_not_the_run_folder(
    tiny_model_dirs, pairs_file, tmp_path: Path
) -> None:
    """output_dir itself was refused as "no manifest (incomplete or not a directpo
    checkpoint)"; a missing absolute path was named twice ("X (nor X)")."""
    out = tmp_path / "run"
    out.mkdir()
    for named in (str(out), f"{out}/", "."):
        config = DPOConfig(model_name_or_path=str(tiny_model_dirs["llama"]),
                           train_file=str(pairs_file), output_dir=str(out), report_to=["none"],
                           resume_from_checkpoint=named)  # fmt: skip
        with pytest.raises(ConfigError, match=r"is output_dir itself, not one of its checkp"):
            check_environment(config)
    config.resume_from_checkpoint = str(out / "checkpoint-9")
    with pytest.raises(ConfigError) as missing:
        check_environment(config)
    assert str(missing.value) == (
        f"resume_from_checkpoint: no such checkpoint folder: {out / 'checkpoint-9'}; 'latest' "
        "takes the newest in output_dir"
    )


def test_a_gguf_model_says_how_to_convert_it(tmp_path: Path) -> None:
    folder = tmp_path / "gguf"
    folder.mkdir()
    (folder / "model.Q4_K_M.gguf").write_bytes(b"GGUF")
    hint = r"; a GGUF file is not trained from: convert it once .*gguf_file='model\.Q4_K_M\.gguf'"
    for path in (folder, folder / "model.Q4_K_M.gguf"):
        config = DPOConfig(model_name_or_path=str(path), report_to=["none"])
        with pytest.raises(ConfigError, match=r"model_name_or_path: .*" + hint):
            check_environment(config)
    with pytest.raises(ConfigError, match="model_name_or_path is required"):
        check_environment(DPOConfig())


def test_every_option_has_help_and_a_default() -> None:
    for f in dataclasses.fields(DPOConfig):
        assert f.metadata.get("help"), f.name
    assert len(option_names()) == len(set(option_names()))
    # the TRL names the foundation promises
    for name in [
        "model_name_or_path",
        "ref_model_name_or_path",
        "train_file",
        "eval_file",
        "output_dir",
        "beta",
        "loss_type",
        "label_smoothing",
        "learning_rate",
        "optimizer",
        "lr_scheduler_type",
        "warmup_steps",
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "num_train_epochs",
        "max_steps",
        "max_length",
        "max_prompt_length",
        "dtype",
        "gradient_checkpointing",
        "logging_steps",
        "eval_steps",
        "save_steps",
        "save_total_limit",
        "resume_from_checkpoint",
        "seed",
    ]:
        assert name in option_names()


def test_saved_yaml_round_trips(tmp_path: Path) -> None:
    config = DPOConfig(model_name_or_path="m", beta=0.3, report_to=["none"], max_steps=5)
    config.save_yaml(tmp_path / "c.yaml")
    assert load_config(str(tmp_path / "c.yaml")) == config


def test_loss_type_takes_one_name_a_list_or_commas(tmp_path: Path) -> None:
    assert load_config(None, {"loss_type": "ipo"}).loss_type == ["ipo"]
    assert load_config(
        None, {"loss_type": "sigmoid,sft", "loss_weights": "1.0,0.2"}
    ).loss_weights == [1.0, 0.2]
    config = load_config(write(tmp_path, "loss_type: [sigmoid, sft]\nloss_weights: [1, 0.5]\n"))
    assert config.loss_type == ["sigmoid", "sft"] and config.loss_weights == [1.0, 0.5]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"loss_type": "dpo"}, "loss_type must be one or more of sigmoid"),
        ({"loss_type": "sigmoid,sigmoid"}, "loss_type must be without repeats"),
        (
            {"loss_type": "sigmoid,sft", "loss_weights": "1.0"},
            "loss_weights must be one weight per",
        ),
        ({"loss_weights": "-1"}, "loss_weights must be >= 0"),
        ({"loss_type": "exo_pair"}, "label_smoothing must be > 0 for exo_pair"),
        (
            {"loss_type": "ipo", "label_smoothing": "0.1"},
            "label_smoothing is set but no chosen loss uses it (loss_type: ipo)",
        ),
        (
            {"simpo_gamma": "1.0"},
            "simpo_gamma is set but no chosen loss uses it (loss_type: sigmoid); "
            "it applies to simpo",
        ),
        ({"discopop_tau": "0.1", "loss_type": "hinge"}, "discopop_tau is set but no chosen loss"),
        (
            {"loss_type": "sft", "beta": "0.5"},
            "beta is set but no chosen loss uses it (loss_type: sft)",
        ),
        (  # LD-DPO weighs log-ratios; these per-token means take every token (it did nothing)
            {"loss_type": "simpo", "ld_alpha": "0.5", "cpo_alpha": "1.0"},
            "ld_alpha weighs the log-ratios of policy and reference (LD-DPO), and loss_type "
            "simpo, sft uses no reference",
        ),
        (  # AOT sorts each micro-batch's margins: one pair to sort trained as sigmoid DPO
            {
                "loss_type": "aot",
                "per_device_train_batch_size": "1",
                "gradient_accumulation_steps": "16",
            },
            "loss_type aot sorts the margins within each micro-batch, and "
            "per_device_train_batch_size 1 leaves one pair to sort: that is sigmoid DPO",
        ),
        (
            {"loss_type": "sigmoid,aot_unpaired", "per_device_train_batch_size": "1"},
            "loss_type aot_unpaired sorts the margins",
        ),
        (  # an out-of-memory split would have sorted halves: another loss, said nowhere
            {"loss_type": "aot", "auto_find_batch_size": "true"},
            "auto_find_batch_size splits a step's micro-batches when memory runs out, and "
            "loss_type aot sorts the margins within each micro-batch",
        ),
    ],
)
def test_loss_options_are_checked_per_loss(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(None, overrides)


def test_reference_needed_only_by_reference_based_losses() -> None:
    assert DPOConfig(loss_type=["sigmoid", "sft"]).needs_reference
    assert not DPOConfig(loss_type=["simpo", "sft"]).needs_reference
    assert not DPOConfig(loss_type=["orpo"]).needs_reference
    # the KL of eval_generate needs a reference even when the losses do not
    sampling = DPOConfig(loss_type=["sft"], eval_generate=4)
    assert sampling.needs_reference and not sampling.loss_needs_reference
    # a reference no loss (nor eval_generate) reads was not loaded: refused, not ignored
    DPOConfig(loss_type=["simpo"], eval_generate=4, ref_model_name_or_path="ref")
    with pytest.raises(ConfigError, match=re.escape(
        "ref_model_name_or_path is set but no chosen loss uses a reference (loss_type: simpo, "
        "sft), nor eval_generate's KL"
    )):  # fmt: skip
        DPOConfig(loss_type=["simpo", "sft"], ref_model_name_or_path="ref")


def test_a_key_given_twice_a_missing_dataset_folder_and_an_output_file_are_refused(
    tmp_path, tiny_model_dirs, pairs_file
) -> None:
    from directpo.trainer import train

    config = tmp_path / "twice.yaml"
    config.write_text("beta: 0.1\nlearning_rate: 1e-5\nbeta: 0.2\n")
    with pytest.raises(ConfigError, match=r"twice\.yaml: line 3: option 'beta' is given twice"):
        load_config(str(config))
    merged = tmp_path / "merged.yaml"  # YAML merge keys may be overridden: not a repeat
    merged.write_text("chat_template_kwargs:\n  <<: {a: 1, b: 2}\n  b: 3\nbeta: 0.2\n")
    assert load_config(str(merged)).chat_template_kwargs == {"a": 1, "b": 3}
    unhashable = tmp_path / "unhashable.yaml"
    unhashable.write_text("? [a, b]\n: 1\n")
    with pytest.raises(ConfigError, match=r"line 1: found unhashable key"):
        load_config(str(unhashable))
    missing = DPOConfig(model_name_or_path=str(tiny_model_dirs["gpt2"]), dataset_name="./no/data")
    with pytest.raises(ConfigError, match=r"dataset_name: no such dataset folder: \./no/data"):
        check_environment(missing)  # at once, not after retrying the hub
    file = tmp_path / "out.txt"
    file.write_text("x")
    with pytest.raises(ConfigError, match=r"output_dir .*out\.txt is a file, not a folder"):
        train(DPOConfig(model_name_or_path=str(tiny_model_dirs["gpt2"]), train_file=str(pairs_file),
                        output_dir=str(file), report_to=["none"]), echo=lambda _: None)  # fmt: skip
    assert file.read_text() == "x"


def test_paths_from_python_are_folders_and_files(tmp_path: Path) -> None:
    """pathlib.Path values (one, or a list of files) are the paths they name; the saved record
    holds strings, so config.yaml stays plain YAML."""
    config = DPOConfig(
        model_name_or_path=tmp_path / "model",
        output_dir=tmp_path / "out",
        train_file=[tmp_path / "a.jsonl", tmp_path / "b.jsonl"],
        eval_file=tmp_path / "e.jsonl",
    )
    assert config.model_name_or_path == str(tmp_path / "model")
    assert config.output_dir == str(tmp_path / "out")
    assert config.train_file == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    assert config.eval_file == str(tmp_path / "e.jsonl")
    config.save_record(tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == config


def test_a_reward_function_object_is_refused_with_how_to_name_it() -> None:
    def judge(prompts, completions):
        return [0.0] * len(completions)

    with pytest.raises(ConfigError) as err:
        DPOConfig(reward_fn=judge)
    assert str(err.value) == (
        "reward_fn is a function: give it as 'module:function' or 'path/file.py:function' "
        "(config.yaml records it), e.g. def judge(prompts, completions) in my_rewards.py and "
        "reward_fn='my_rewards.py:judge'"
    )


def test_reward_funcs_objects_are_named_as_config_yaml_records_them(tmp_path, monkeypatch) -> None:
    """train(reward_funcs=[my_rewards.score]) (a module's function, as TRL's trl.rewards
    ones are) was refused as "a function": it is importable by its name, so it is that
    name; one defined where no import finds it (a script, a notebook, a closure) is refused,
    and a loaded reward model (TRL takes one) is told reward_model_name_or_path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "imported_rewards_mod", raising=False)
    (tmp_path / "imported_rewards_mod.py").write_text(
        "def score(prompts, completions):\n    return [0.0] * len(completions)\n"
    )
    import imported_rewards_mod

    for given in (imported_rewards_mod.score, [imported_rewards_mod.score]):
        config = DPOConfig(reward_fn=given, online=True)
        assert config.reward_fn == "imported_rewards_mod:score"
        assert DPOConfig(**config.to_dict()) == config
    # a loaded reward model (TRL's reward_funcs takes one) was told to be written as a def
    from transformers import LlamaConfig, LlamaForSequenceClassification

    model = LlamaForSequenceClassification(
        LlamaConfig(vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=1, num_labels=1)
    )  # fmt: skip
    model.name_or_path = "org/rm"
    with pytest.raises(ConfigError) as refused:
        DPOConfig(reward_fn=[model], online=True)
    assert str(refused.value) == (
        "reward_fn is a model object (LlamaForSequenceClassification): a reward model is given "
        "by its folder or hub id, reward_model_name_or_path: save it and its tokenizer there "
        "(.save_pretrained(DIR)) and give reward_model_name_or_path=DIR ('org/rm' if it is "
        "that folder's, unchanged)"
    )
    imported_rewards_mod.score.__module__ = "__main__"  # defined in a script
    with pytest.raises(ConfigError, match="^reward_fn is a function: give it as"):
        DPOConfig(reward_fn=imported_rewards_mod.score, online=True)


def test_several_samples_per_prompt_need_sampling() -> None:
    """Greedy decoding has one completion per prompt: asking for several is refused up front
    (transformers' generate raised a ValueError traceback, after training for eval_generate)."""
    from directpo.command_options import GenerateOptions
    from directpo.generate import sample_completions

    online = dict(online=True, reward_fn="m:f", generate_temperature=0.0)
    greedy = r"online_samples_per_prompt=4 needs sampling, but generate_temperature=0.0 \("
    with pytest.raises(ConfigError, match=greedy):
        DPOConfig(**online)
    with pytest.raises(ConfigError, match="eval_generate_samples=2 needs sampling"):
        DPOConfig(eval_generate=2, eval_generate_samples=2, generate_temperature=0.0)
    with pytest.raises(ConfigError, match="num_return_sequences=3 needs sampling"):
        GenerateOptions(num_return_sequences=3, temperature=0.0)
    with pytest.raises(ConfigError, match="need temperature > 0"):
        sample_completions(None, None, ["hi"], num_samples=2, temperature=0.0)
    # one greedy completion per prompt is fine
    DPOConfig(eval_generate=2, generate_temperature=0.0)
    GenerateOptions(temperature=0.0)


def test_an_option_set_after_construction_is_spelt_as_at_construction() -> None:
    """``config.lerning_rate = 1e-5`` in a notebook was a plain attribute that nothing read:
    the run trained at the default rate without a word. Setting an option takes the names the
    constructor takes (TRL's renamed and no-effect ones too) and refuses the others."""
    config = DPOConfig(model_name_or_path="m")
    with pytest.raises(
        ConfigError,
        match=r"^DPOConfig: unknown option 'lerning_rate'; did you mean 'learning_rate'\?$",
    ):
        config.lerning_rate = 1e-5
    assert "lerning_rate" not in vars(config)
    with pytest.raises(ConfigError, match=r"push_to_hub=True is not supported"):
        config.push_to_hub = True
    config.evaluation_strategy = "no"  # transformers < 4.46's name: renamed
    config.push_to_hub = False  # asks for nothing: dropped
    config.beta = 0.3
    assert (config.eval_strategy, config.beta) == ("no", 0.3)
    assert not {"evaluation_strategy", "push_to_hub"} & set(vars(config))
    assert dataclasses.replace(config) == config


def test_load_config_takes_a_mapping_as_a_files_contents(tmp_path: Path) -> None:
    """``load_config(dict)`` failed inside os.stat (a TypeError about paths); a mapping is read
    as a YAML file's contents: TRL's names, its ``env:`` and the overrides on top."""
    given = {"model_name_or_path": "m", "evaluation_strategy": "no", "beta": "0.5"}
    config = load_config(given, {"beta": 0.25})
    assert (config.eval_strategy, config.beta) == ("no", 0.25)
    assert config == load_config(Path(write(tmp_path, yaml.safe_dump(given))), {"beta": 0.25})
    assert "evaluation_strategy" in given  # the caller's dict is left as it was
    with pytest.raises(ConfigError, match=r"^config: unknown option 'betaa'; did you mean 'beta'"):
        load_config({"betaa": 0.1})


def test_numpy_and_torch_numbers_are_the_values_they_hold() -> None:
    """A notebook sweep over np.arange / np.logspace (or a DataFrame's column) gives numpy
    scalars: "max_steps must be an integer, got a numpy.int64 object" refused them all."""
    import numpy as np
    import torch

    config = DPOConfig(
        model_name_or_path="m", max_steps=np.int64(7), beta=np.float32(0.25),
        learning_rate=torch.tensor(0.5), gradient_checkpointing=np.bool_(True),
        loss_type=["sigmoid", "sft"], loss_weights=np.array([1.0, 0.5]),
    )  # fmt: skip
    assert (config.max_steps, config.beta, config.learning_rate) == (7, 0.25, 0.5)
    assert config.gradient_checkpointing is True and config.loss_weights == [1.0, 0.5]
    assert type(config.max_steps) is int and type(config.beta) is float
    with pytest.raises(ConfigError, match="max_steps must be an integer, got 2.5"):
        DPOConfig(model_name_or_path="m", max_steps=np.float64(2.5))


def test_a_torch_dtype_names_its_dtype_in_the_dtype_options(tmp_path) -> None:
    """``dtype=torch.bfloat16`` (transformers' from_pretrained spelling, and what the refusal
    of model_init_kwargs' dtype leads a TRL user to write) was refused as "dtype must be a
    string, got a torch.dtype object": each dtype option reads it as its name, which the run's
    config.yaml records; a dtype no option takes, or a dtype given to another option, is still
    refused."""
    import torch

    config = DPOConfig(
        model_name_or_path="m", torch_dtype=torch.bfloat16, master_weights=torch.float32,
        eval_dtype=torch.float32, save_dtype=torch.bfloat16, load_in_4bit=True, lora_r=8,
        bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=torch.bfloat16,
    )  # fmt: skip
    assert (config.dtype, config.master_weights, config.eval_dtype, config.save_dtype) == (
        "bfloat16", "float32", "float32", "bfloat16",
    )  # fmt: skip
    assert (config.bnb_4bit_compute_dtype, config.bnb_4bit_quant_storage) == ("bfloat16",) * 2
    config.save_record(tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["dtype"] == "bfloat16"
    refused = r"dtype must be one of float32, bfloat16 \(got float16"
    with pytest.raises(ConfigError, match=refused):
        DPOConfig(model_name_or_path="m", dtype=torch.float16)
    with pytest.raises(ConfigError, match="model_name_or_path must be a string, got a torch.dtype"):
        DPOConfig(model_name_or_path=torch.bfloat16)


def test_a_leading_tilde_in_a_path_option_is_the_home_folder(tmp_path, monkeypatch) -> None:
    """YAML and Python do not expand ``~`` as a shell does: ``model_name_or_path: ~/models/x``
    was refused as "no such model folder" though it was there, a train_file read as missing,
    an output_dir made as ./~. Every path option, nested ones too, reads it as the home folder."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = DPOConfig(
        model_name_or_path="~/models/x", train_file=["~/a.jsonl", "b.jsonl"],
        eval_file={"chat": "~/c.jsonl"}, output_dir="~/runs/dpo",
        model_init_kwargs={"cache_dir": "~/hub", "revision": "~main"},
        reward_fn="~/rewards.py:score", eval_generate=2, chat_template="~/template.jinja",
    )  # fmt: skip
    assert config.model_name_or_path == f"{tmp_path}/models/x"
    assert config.train_file == [f"{tmp_path}/a.jsonl", "b.jsonl"]
    assert config.eval_file == {"chat": f"{tmp_path}/c.jsonl"}
    assert config.output_dir == f"{tmp_path}/runs/dpo"
    assert config.model_init_kwargs == {"cache_dir": f"{tmp_path}/hub", "revision": "~main"}
    assert config.reward_fn == f"{tmp_path}/rewards.py:score"
    assert config.chat_template == f"{tmp_path}/template.jinja"
    assert DPOConfig(model_name_or_path="org/model").model_name_or_path == "org/model"


def test_a_named_users_home_in_a_path_option_is_expanded(tmp_path) -> None:
    """``~name/x`` (a shell's form for name's home folder) was kept as written: a train_file
    ``~alice/a.jsonl`` was 'no such file or folder'. It is expanded as a shell does; an
    unknown name is left as written, as a shell leaves it."""
    import getpass
    import os

    user = getpass.getuser()
    config = DPOConfig(model_name_or_path=f"~{user}/m", train_file=[f"~{user}/a.jsonl"])
    home = os.path.expanduser(f"~{user}")
    assert not home.startswith("~")
    assert config.model_name_or_path == f"{home}/m"
    assert config.train_file == [f"{home}/a.jsonl"]
    unknown = "~no-such-user-xq/a.jsonl"
    assert DPOConfig(model_name_or_path="m", train_file=unknown).train_file == unknown


def test_sampling_only_options_beside_greedy_decoding_are_refused() -> None:
    """generate_top_p/top_k/min_p with generate_temperature 0 changed nothing (greedy decoding
    takes the most likely token; transformers only warned). They are refused, as TRL's names."""
    base = {"model_name_or_path": "m", "eval_generate": 2, "generate_temperature": 0}
    DPOConfig(**base, generate_repetition_penalty=1.5)  # applies to greedy decoding too
    with pytest.raises(ConfigError, match=r"generate_min_p=0.1 only shapes sampling, but gen"):
        DPOConfig(**base, generate_min_p=0.1)
    with pytest.raises(ConfigError, match=r"generate_top_p=0.9 and generate_top_k=4 only shape"):
        DPOConfig(**base, generate_top_p=0.9, generate_top_k=4)
    # (each keyword with its value, then directpo's name: "min_p (directpo: generate_min_p)=0.1"
    # read as no keyword of either name)
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", eval_generate=2, temperature=0, min_p=0.1)
    assert str(refused.value) == (
        "min_p=0.1 (directpo: generate_min_p) only shapes sampling, but temperature=0 (directpo: "
        "generate_temperature) (greedy decoding takes the most likely token); drop it or pass "
        "generate_temperature=... above 0"
    )
    DPOConfig(**{**base, "generate_temperature": 0.7}, generate_min_p=0.1, generate_top_k=4)


def test_greedy_decoding_with_several_samples_hides_no_other_problem() -> None:
    """Several samples per prompt under greedy decoding was raised at once, so every check after
    it (top_k beside greedy decoding, lora_alpha without lora_r, generate's max_prompt_length)
    was said only on the next run."""
    from directpo.command_options import GenerateOptions

    greedy = dict(eval_generate=2, eval_prompts_file="p.jsonl", generate_temperature=0)
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(**greedy, eval_generate_samples=2, generate_top_k=5, lora_alpha=3)
    lines = refused.value.problems
    assert len(lines) == 4
    assert lines[0].startswith("eval_generate_samples=2 needs sampling")
    assert lines[1].startswith("generate_top_k=5 only shapes sampling")
    assert lines[2].startswith("lora_alpha is set but lora_r is 0")
    assert lines[3] == "eval_prompts_file: no such file or folder: p.jsonl"  # (not there)
    with pytest.raises(ConfigErrors) as refused:
        GenerateOptions(temperature=0, num_return_sequences=2, top_k=5, max_prompt_length=0)
    lines = refused.value.problems
    assert [line.split()[0] for line in lines] == [  # (as Python gave them)
        "num_return_sequences=2",
        "top_k=5",
        "max_prompt_length",
    ]


def test_same_columns_or_unfit_scheduler_kwargs_hide_no_other_problem() -> None:
    """Two options naming one column, and lr_scheduler_kwargs the scheduler does not take, were
    raised at once: lora_alpha without lora_r (and every check after them) came a run later."""
    from directpo.command_options import ScoreOptions

    for refused in (
        dict(chosen_column="x", rejected_column="x"),
        dict(lr_scheduler_type="cosine", lr_scheduler_kwargs={"bogus": 1}),
    ):
        with pytest.raises(ConfigErrors) as error:
            DPOConfig(**refused, lora_alpha=3)
        assert len(error.value.problems) == 2
        assert error.value.problems[1].startswith("lora_alpha is set but lora_r is 0")
    with pytest.raises(ConfigErrors) as error:
        ScoreOptions(chosen_column="x", rejected_column="x", batch_size=0)
    assert error.value.problems == [
        "batch_size must be >= 1 (got 0)",
        "chosen_column and rejected_column must name different columns (got x, x)",
    ]


def test_every_refused_combination_is_reported_in_one_pass() -> None:
    """A combination refused (report_to none with a tracker, 4-bit with 8-bit, a dtype in
    model_init_kwargs, an option set that would do nothing) stopped the checks: the options
    after it were reported only on the next run, one run per mistake."""
    with pytest.raises(ConfigError) as refused:
        DPOConfig(
            model_init_kwargs={"torch_dtype": "bfloat16"},
            lora_dropout=0.1,
            report_to=["none", "tensorboard"],
            load_in_4bit=True,
            load_in_8bit=True,
            attn_implementation="flash3",
            sync_ref_model=False,
            ref_model_sync_steps=8,
            ref_model_mixup_alpha=0.5,
        )
    lines = str(refused.value).splitlines()
    assert lines[0] == "8 options cannot be used:"  # (7 lines: load_in_4bit's is of two)
    said = "\n".join(lines[1:])
    for problem in (
        ": 'none' cannot be combined with other trackers",
        "lora_dropout is set but",
        "attn_implementation must be one of",
        "load_in_4bit and load_in_8bit are both set: choose one",
        "model_init_kwargs: torch_dtype: bfloat16 is directpo's dtype option",
        "ref_model_mixup_alpha is set but sync_ref_model is false",
        "ref_model_sync_steps is set but sync_ref_model is false",
    ):
        assert problem in said


def test_a_value_of_the_wrong_type_does_not_hide_the_other_problems() -> None:
    """``seed: abc`` stopped the checks before any value was judged: report_to's tracker and
    beta's sign were said only on the next run. A line that would judge the default standing in
    for a wrong-typed value (lora_alpha set "without lora_r") is not said."""
    with pytest.raises(ConfigError) as refused:
        DPOConfig(seed="abc", lora_r="sixteen", lora_alpha=64, beta=-1, report_to=["comet_ml"])
    assert str(refused.value).splitlines() == [
        "4 options cannot be used:",
        "  lora_r must be an integer, got sixteen",
        "  seed must be an integer, got abc",
        "  beta must be > 0 (got -1)",
        "  report_to=['comet_ml']: comet_ml is a transformers tracker directpo does not log to; "
        "it logs to tensorboard, wandb, mlflow, trackio (or 'none' for no tracker)",
    ]


def test_a_seed_numpy_cannot_take_is_refused() -> None:
    """seed: -1 (or 2**32) trained until transformers' set_seed passed it to numpy: a
    traceback ('Seed must be between 0 and 2**32 - 1'). data_seed (a torch generator's, which
    takes it) is not refused."""
    for seed in (-1, 2**32):
        with pytest.raises(ConfigError) as refused:
            DPOConfig(seed=seed, data_seed=-1)
        assert str(refused.value) == f"seed must be None or in [0, 2**32) (got {seed})"
    assert DPOConfig(seed=2**32 - 1, data_seed=-1).seed == 2**32 - 1


def test_wandb_disabled_is_honoured_or_refused(monkeypatch) -> None:
    """WANDB_DISABLED (TRL users' switch; transformers 5 no longer reads it) was ignored: a run
    with report_to: all or wandb logged to wandb all the same."""
    monkeypatch.setitem(directpo.config.TRACKER_MODULES, "wandb", "yaml")  # "installed"
    assert DPOConfig(report_to=["all"]).report_to == ["tensorboard", "wandb"]
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert DPOConfig(report_to=["all"]).report_to == ["tensorboard"]
    with pytest.raises(ConfigError, match="report_to has wandb but WANDB_DISABLED is set"):
        DPOConfig(report_to=["wandb"])
    monkeypatch.setenv("WANDB_DISABLED", "false")
    assert DPOConfig(report_to=["wandb"]).report_to == ["wandb"]


def test_unknown_option_said_with_missing_files_and_bad_rows(tmp_path) -> None:
    """``train --bogus 1`` with a train_file that is not there (or with bad rows) said only the
    unknown option: the file and its rows took the next run."""
    missing = tmp_path / "none.jsonl"
    with pytest.raises(ConfigErrors) as info:
        load_config(None, {"bogus": "1", "train_file": str(missing)})
    assert info.value.problems == [
        "unknown option '--bogus'",
        f"train_file: no such file or folder: {missing}",
    ]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": " b", "rejected": ""}\n')
    with pytest.raises(ConfigErrors) as info:
        load_config(None, {"bogus": "1", "train_file": str(bad)})
    assert info.value.problems == ["unknown option '--bogus'"]
    assert info.value.rows == [
        f"{bad}: line 1: field 'rejected' is empty",
        "skip_invalid_rows: true skips them",  # (one bad row: skipped as several are)
    ]


def test_an_unknown_keyword_from_python_is_said_with_missing_files_and_bad_rows(tmp_path) -> None:
    """``DPOConfig(lerning_rate=..., train_file=...)`` said the unknown keyword alone, where
    the command line says the missing model folder and the file's bad rows with it."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": " b", "rejected": ""}\n')
    missing = tmp_path / "no-model"
    with pytest.raises(ConfigErrors) as info:
        DPOConfig(lerning_rate=1e-5, train_file=str(bad), model_name_or_path=str(missing))
    assert info.value.problems == [
        "unknown option 'lerning_rate'; did you mean 'learning_rate'?",
        f"model_name_or_path: no such model folder: {missing}",
    ]
    assert info.value.rows == [
        f"{bad}: line 1: field 'rejected' is empty",
        "skip_invalid_rows=True skips them",  # (Python's keyword)
    ]


@pytest.mark.parametrize(
    "key, meaning, recipe, flag, keyword",
    [
        ("save_steps", "never saves", "save_strategy: 'no'", "--save_strategy no",
         "save_strategy='no'"),
        ("eval_steps", "evaluates at each epoch's end", "eval_strategy: epoch",
         "--eval_strategy epoch", "eval_strategy='epoch'"),
    ],
)  # fmt: skip
def test_openrlhfs_minus_one_steps_are_refused_naming_the_strategy(
    key, meaning, recipe, flag, keyword, tmp_path, capsys
) -> None:
    """``--save_steps -1 --eval_steps -1`` (OpenRLHF's scripts: never save, evaluate each
    epoch) were refused without the option that asks for that; then with it in a recipe's words
    whoever wrote the -1 ('save_strategy: no' to a flag and to DPOConfig(save_steps=-1)) and
    the whole -1 shown as the float it is read as ('got -1.0'). Each caller is told its own
    setting, pasted back as written, and the -1 it wrote."""
    from directpo.cli import main

    must = f"{key} must be a whole number of steps >= 0, or a fraction of the total steps in (0, 1)"
    with pytest.raises(ConfigError) as refused:
        DPOConfig(**{key: -1})
    assert str(refused.value) == f"{must} (got -1); OpenRLHF's -1 {meaning}: pass {keyword}"
    assert main(["train", f"--{key}", "-1"]) == 2
    assert f"{must} (got -1); OpenRLHF's -1 {meaning}: give {flag}\n" in capsys.readouterr().err
    (tmp_path / "recipe.yaml").write_text(f"{key}: -1\n")
    assert main(["train", str(tmp_path / "recipe.yaml")]) == 2
    assert f"{must} (got -1); OpenRLHF's -1 {meaning}: set {recipe}\n" in capsys.readouterr().err
    (tmp_path / "fixed.yaml").write_text(recipe + "\n")  # (the advice pasted back sets it)
    strategy = key.replace("steps", "strategy")
    assert getattr(load_config(tmp_path / "fixed.yaml"), strategy) == keyword.split("'")[1]
    with pytest.raises(ConfigError, match=r"\(got 2\.5\)$"):  # (a fraction of a step: as is)
        DPOConfig(**{key: 2.5})


def test_a_config_file_not_found_names_one_of_a_close_name(tmp_path: Path, capsys) -> None:
    """``directpo train recipe.yml`` beside recipe.yaml: 'config file not found' only."""
    from directpo.cli import main

    (tmp_path / "recipe.yaml").write_text("beta: 0.2\n")
    assert main(["train", str(tmp_path / "recipe.yml")]) == 2
    err = capsys.readouterr().err
    assert f"config file not found: {tmp_path / 'recipe.yml'}; did you mean " in err
    assert err.rstrip().endswith(f"{tmp_path / 'recipe.yaml'}?"), err
    assert main(["train", str(tmp_path / "other.yaml")]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_a_former_trl_loss_name_says_todays() -> None:
    """loss_type aot_pair (TRL before the rename) was told the list alone, where the paired
    'aot' reads as its name: it is aot_unpaired (chosen and rejected log-ratios sorted apart)."""
    with pytest.raises(ConfigError, match="TRL's former aot_pair is aot_unpaired"):
        DPOConfig(loss_type=["aot_pair"])
    with pytest.raises(ConfigError, match="TRL removed kto_pair: KTO is TRL's KTOTrainer"):
        DPOConfig(loss_type="kto_pair")


def test_a_whole_warmup_or_eval_delay_is_written_back_as_an_integer(tmp_path: Path) -> None:
    """warmup_steps (and eval_delay, num_train_epochs) are floats to take a fraction (TRL's
    meaning), so ``warmup_steps: 2`` was written back as ``2.0`` in the run's config.yaml and
    model card; a whole number stays one, a fraction stays a fraction."""
    config = DPOConfig(
        model_name_or_path="/m/start", warmup_steps=2, eval_delay=3.0, num_train_epochs=3
    )
    config.save_record(tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert "\nwarmup_steps: 2\n" in text and "\neval_delay: 3\n" in text
    assert "\nnum_train_epochs: 3\n" in text
    assert yaml.safe_load(text)["warmup_steps"] == 2
    assert DPOConfig(model_name_or_path="/m/start", warmup_steps=0.1).warmup_steps == 0.1
    assert DPOConfig(model_name_or_path="/m/start", warmup_steps=1.0).warmup_steps == 1


def test_a_split_named_for_data_files_is_refused() -> None:
    """dataset_train_split: train_prefs (TRL's ultrafeedback recipe) with train_file data files,
    which have no splits, trained on the whole file without a word, and dataset_test_split:
    validation held nothing out; both are refused, naming the file. A save_to_disk folder's
    splits, dataset_name's, and the defaults stay accepted."""
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(train_file="uf.parquet", dataset_train_split="train_prefs",
                  dataset_test_split="validation")  # fmt: skip
    lines = [line for line in str(refused.value).splitlines() if "_split" in line]
    assert lines == [  # (named as Python passed them: a recipe's keys were said to it)
        "  dataset_train_split='train_prefs' picks a split of dataset_name (a dataset folder or "
        "hub id), but train_file uf.parquet is a data file, without splits: remove "
        "dataset_train_split='train_prefs' (its rows are all trained on)",
        "  dataset_test_split='validation' picks a split of dataset_name (a dataset folder or "
        "hub id), but train_file uf.parquet is a data file, without splits: remove "
        "dataset_test_split='validation' (give the held-out pairs as eval_file)",
    ]
    with pytest.raises(ConfigError, match="train_file a.jsonl, b.csv.gz, ... are data files"):
        DPOConfig(train_file=["a.jsonl", "b.csv.gz", "c.json"], dataset_train_split="x")
    DPOConfig(train_file="saved_folder", dataset_train_split="train_prefs")
    DPOConfig(dataset_name="org/uf", dataset_train_split="train_prefs")
    DPOConfig(train_file="uf.parquet", dataset_train_split="train", dataset_test_split="test")


def test_trls_own_refusals_are_said_with_the_others(tmp_path: Path) -> None:
    """A TRL option's refusal (optim: adamw_8bit, warmup_steps: 2.5, a contradiction) was
    raised alone and hid every other (loss_type: dpo was said a run later); they are said
    together, and loss_type: dpo (OpenRLHF's name) is told sigmoid."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "optim: adamw_8bit\nwarmup_steps: 2.5\nsave_strategy: best\nloss_type: dpo\n"
        "use_peft: false\nlora_r: 8\nmodel_revision: v2\nattn_implementation: sdpa\n"
        "model_init_kwargs: {revision: v1, attn_implementation: eager}\n"
    )
    with pytest.raises(ConfigErrors) as refused:
        load_config(recipe)
    said = str(refused.value)
    assert said.startswith("7 options cannot be used:\n"), said  # (save_strategy once)
    for line in (
        "  optim: adamw_8bit is bitsandbytes' 8-bit optimizer, which directpo does not offer",
        "  warmup_steps must be a whole number of steps or a fraction in (0, 1) (got 2.5)",
        "  save_strategy: best is not supported",
        "  lora_r is set with use_peft: false: remove one of them",
        "; the DPO paper's loss is sigmoid (TRL's name, the default)",
        "  model_revision v2 contradicts model_init_kwargs' revision v1: keep one",
        "  model_init_kwargs: attn_implementation eager contradicts attn_implementation: sdpa",
    ):
        assert line in said


def test_a_lora_option_beside_use_peft_false_is_told_use_peft(tmp_path: Path) -> None:
    """lora_alpha: 64 beside TRL's use_peft: false was told 'lora_r is 0 (no LoRA); set
    lora_r: 16', and that lora_r refused in turn ('lora_r is set but use_peft is false'): the
    line names use_peft, whose true is the adapters the lora_* options configure."""
    recipe = write(tmp_path, "model_name_or_path: m\nuse_peft: false\nlora_alpha: 64\n")
    with pytest.raises(ConfigError) as refused:
        load_config(recipe)
    assert str(refused.value) == (
        "lora_alpha is set but use_peft: false turns LoRA off; set use_peft: true for adapters, "
        "or remove it"
    )
    adapters = load_config(None, {"model_name_or_path": "m", "use_peft": "true", "lora_alpha": 64})
    assert (adapters.lora_r, adapters.lora_alpha) == (16, 64)  # the advice taken runs


def test_null_is_unset_for_an_option_refused_when_it_would_do_nothing(tmp_path: Path) -> None:
    """lora_target_modules: null (peft's choice; the default is [all-linear]) beside lora_r 0
    was 'lora_target_modules is set but lora_r is 0': null differs from the default, but to
    a user it is unset and asks for nothing. A named list is still refused, and null still
    means peft's choice under LoRA."""
    recipe = write(tmp_path, "model_name_or_path: m\nlora_target_modules: null\n")
    assert load_config(recipe).lora_target_modules is None
    flags = {"model_name_or_path": "m", "lora_r": "0", "lora_target_modules": "null"}
    assert load_config(None, flags).lora_target_modules is None
    assert DPOConfig(model_name_or_path="m", lora_target_modules=None).lora_target_modules is None
    with pytest.raises(ConfigError, match="lora_target_modules is set but lora_r is 0"):
        load_config(None, flags | {"lora_target_modules": "q_proj"})
    assert DPOConfig(model_name_or_path="m", lora_r=8, lora_target_modules=None).lora_r == 8


@pytest.mark.parametrize(
    ("options", "first_words"),
    [
        # precision, optimizer, schedule, report_to
        (
            {"fp16": True, "optimizer": "lion", "learning_rate": -1.0, "report_to": ["wand"]},
            ["fp16", "optimizer", "learning_rate", "report_to"],
        ),
        # batching, lengths, LoRA, early stopping
        (
            {
                "early_stopping_threshold": 0.1,
                "lora_dropout": 0.1,
                "max_length": 1,
                "per_device_train_batch_size": 0,
            },
            [
                "per_device_train_batch_size",
                "max_length",
                "lora_dropout",
                "early_stopping_threshold",
            ],
        ),
        # evaluation, distributed engine, quantization, reference
        (
            {
                "precompute_ref_batch_size": 4,
                "load_in_4bit": True,
                "load_in_8bit": True,
                "ddp_timeout": 0,
                "eval_strategy": "no",
                "eval_delay": 3,
            },
            ["eval_delay", "ddp_timeout", "load_in_4bit", "precompute_ref_batch_size"],
        ),
        # seed, data, kernels, tokenization cache
        (
            {
                "liger_kernel_config": {"rms_norm": True},
                "cache_tokenized_max_gb": -1.0,
                "save_total_limit": 0,
                "seed": -1,
            },
            ["seed", "save_total_limit", "cache_tokenized_max_gb", "liger_kernel_config"],
        ),
    ],
)
def test_a_config_with_several_problems_reports_them_in_one_fixed_order(
    options: dict, first_words: list[str]
) -> None:
    """The checks are grouped by concern in config_checks; the order they run in decides which
    problem a user reads first (and the only one where a single line is shown), so it is
    pinned: a config with problems of several concerns names them in the same order."""
    with pytest.raises(ConfigErrors) as refused:
        DPOConfig(model_name_or_path="m", **options)
    named = [re.match(r"\w+", problem).group() for problem in refused.value.problems]
    assert named == first_words


def test_a_backslash_escape_in_double_quotes_is_told_the_single_quoted_text(tmp_path) -> None:
    """peft's regex (Python's r".*\\.(q|v)_proj") or a Windows path written in a recipe's
    double quotes was YAML's "found unknown escape character '.'" alone; the line now says
    what to write: the same text in single quotes, where a backslash is itself."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text('lora_r: 8\nlora_target_modules: ".*\\.(q|v)_proj"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert str(refused.value) == (
        f"{recipe}: line 2: found unknown escape character '.' (in double quotes a backslash "
        "starts an escape: write '.*\\.(q|v)_proj', or double each backslash)"
    )
    recipe.write_text("lora_r: 8\nlora_target_modules: '.*\\.(q|v)_proj'\n")
    assert load_config(str(recipe)).lora_target_modules == [".*\\.(q|v)_proj"]
    recipe.write_text('output_dir: "C:\\runs\\x1"\n')
    with pytest.raises(ConfigError, match=r"write 'C:\\runs\\x1', or double each backslash\)$"):
        load_config(str(recipe))


@pytest.mark.parametrize(
    ("key", "written", "must"),
    [
        ("beta", "-1", "> 0"),
        ("learning_rate", "0", "> 0"),
        ("adam_epsilon", "-1e-8", "> 0"),
        ("warmup_ratio", "2", "in [0, 1)"),
        ("max_grad_norm", "-3", ">= 0 (0 disables clipping)"),
        ("num_train_epochs", "-2", "> 0"),
        ("adam_beta2", "1", "in [0, 1)"),
        ("early_stopping_threshold", "-5", ">= 0"),
        ("logging_steps", "-4", "a whole number of steps > 0, or a fraction of the total "
                                "steps in (0, 1)"),
    ],
)  # fmt: skip
def test_a_refused_number_is_said_as_the_caller_wrote_it(tmp_path, key, written, must) -> None:
    """``--beta -1`` and a recipe's ``beta: -1`` were refused as the float they are read as,
    'beta must be > 0 (got -1.0)', a value the user never wrote; each numeric check now says
    the flag's text or the recipe's number."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"{key}: {written}\n")
    for path, flags in ((str(recipe), {}), (None, {key: written})):
        with pytest.raises(ConfigError) as refused:
            load_config(path, flags)
        assert f"{key} must be {must} (got {written})" in str(refused.value)


@pytest.mark.parametrize(
    ("recipe", "flags", "said"),
    [
        ("rpo_alpha: -1\n", {"rpo_alpha": "-1"}, "rpo_alpha must be >= 0 (the weight of the sft "
                                                 "loss it adds) (got -1)"),
        ("loss_type: simpo\ncpo_alpha: -0.5\n", {"loss_type": "simpo", "cpo_alpha": "-0.5"},
         "cpo_alpha must be >= 0 (the weight of the sft loss it adds) (got -0.5)"),
        ("loss_weights: [-1]\n", {"loss_weights": "-1"}, "loss_weights must be >= 0 and not "
                                                         "all 0 (got {})"),
        ("loss_type: [sigmoid, sft]\nloss_weights: [1, -1]\n",
         {"loss_type": "sigmoid,sft", "loss_weights": "1,-1"},
         "loss_weights must be >= 0 and not all 0 (got {})"),
        ("rpo_alpha: 0.5\nloss_weights: [-2]\n", {"rpo_alpha": "0.5", "loss_weights": "-2"},
         "loss_weights must be >= 0 and not all 0 (got {})"),
        ("rpo_alpha: 0.5\nloss_weights: [1, 2]\n", {"rpo_alpha": "0.5", "loss_weights": "1,2"},
         "loss_weights must be one weight per loss_type (1) (got {})"),
        ("rpo_alpha: 0.5\nloss_type: sigmod\n", {"rpo_alpha": "0.5", "loss_type": "sigmod"},
         "; did you mean sigmoid?"),
    ],
)  # fmt: skip
def test_a_refused_weight_is_said_by_the_option_and_numbers_the_caller_wrote(
    tmp_path, recipe, flags, said
) -> None:
    """--rpo_alpha -1 (TRL's option, folded into loss_type [..., sft] and loss_weights [...,
    alpha]) was told 'loss_weights must be >= 0 and not all 0 (got [1.0, -1.0])': an option
    the user never set, numbers never written; --loss_weights -1 '(got [-1.0])'. Each is
    said by the option given, as the recipe, the flag or the keyword wrote it."""
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    weights = yaml.safe_load(recipe).get("loss_weights")
    for source, given, shown in (
        (str(path), {}, f"[{', '.join(map(str, weights or []))}]"),
        (None, flags, flags.get("loss_weights")),
    ):
        with pytest.raises(ConfigError) as refused:
            load_config(source, given)
        assert said.format(shown) in str(refused.value), str(refused.value)
    keywords = yaml.safe_load(recipe)
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", train_file="t.jsonl", **keywords)
    assert said.format(weights) in str(refused.value), str(refused.value)


def test_weights_given_as_a_flags_words_are_said_as_typed() -> None:
    """--loss_weights 1 2 (the flag's words, as TRL's nargs lists are typed) beside one loss was
    told '(got [1.0, 2.0])', numbers nobody wrote, where --loss_weights 1,2 read '(got 1,2)'."""
    for words, said in (
        (["1", "2"], "loss_weights must be one weight per loss_type (1) (got 1 2)"),
        (["1", "-2"], "(1) and >= 0 and not all 0 (got 1 -2)"),  # (one line: one option)
    ):
        with pytest.raises(ConfigError) as refused:
            load_config(None, {"loss_weights": words, "loss_type": "sigmoid"})
        assert said in str(refused.value), str(refused.value)


def test_a_numpy_number_refused_is_said_as_the_number() -> None:
    """A sweep's ``train(beta=np.float64(-1))`` (np.linspace's values) was told 'beta must be
    > 0 (got np.float64(-1.0))', numpy's repr; it is the number now, as a float's."""
    import numpy as np

    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", train_file="t.jsonl", beta=np.float64(-1))
    assert "beta must be > 0 (got -1.0)" in str(refused.value), str(refused.value)


def test_an_unset_limit_is_named_as_the_caller_writes_it(tmp_path) -> None:
    """max_length: 0 is refused as 'must be null or >= 2', YAML's word (a flag takes it too:
    --max_length null); DPOConfig(max_length=0) was told the same, a word Python does not
    write: it reads None now, as GenerateOptions(min_p=2) does."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("max_length: 0\n")
    for path, flags in ((str(recipe), {}), (None, {"max_length": "0"})):
        with pytest.raises(ConfigError, match=r"max_length must be null or >= 2 \(got 0\)"):
            load_config(path, flags)
    with pytest.raises(ConfigError, match=r"max_length must be None or >= 2 \(got 0\)"):
        DPOConfig(max_length=0)
    from directpo import train

    with pytest.raises(ConfigError, match=r"max_length must be null or >= 2 \(got 0\)"):
        train(str(recipe))  # (the recipe's key, in its words, under a Python call)
    recipe.write_text("beta: 0.2\n")
    with pytest.raises(ConfigError, match=r"max_length must be None or >= 2 \(got 0\)"):
        train(str(recipe), max_length=0)  # (a keyword beside a recipe: Python's word)
    from directpo.command_options import GenerateOptions

    with pytest.raises(ConfigError, match=r"min_p must be None or in \[0, 1\] \(got 2\)"):
        GenerateOptions(model_name_or_path="m", input="i.jsonl", output="o.jsonl", min_p=2)


@pytest.mark.parametrize(
    ("key", "value", "limit"),
    [
        ("max_eval_samples", 0, "must be {} (every pair) or >= 1"),
        ("dataset_num_proc", 0, "must be >= 1 ({}: one process)"),
        ("lora_target_modules", [], "must be a non-empty list (or {}: peft's choice"),
        ("bnb_4bit_compute_dtype", "fp8", "must be {}, float32 or bfloat16"),
        ("system_column", " ", "must be a column name, or {}"),
    ],
)
def test_every_unset_value_in_a_limit_is_named_as_the_caller_writes_it(
    tmp_path, key, value, limit
) -> None:
    """The limits that name an unset value beside another word ('null (every pair)', '(null:
    one process)', 'null, float32 or bfloat16', 'a column name, or null') kept YAML's null for
    a Python keyword after max_length's 'None or' was spelt per caller; they now read None
    there, null in a recipe or on a command line."""
    extra = {"load_in_4bit": True, "lora_r": 8} if key.startswith("bnb") else {}
    with pytest.raises(ConfigError) as refused:
        DPOConfig(**{key: value}, **extra)
    assert f"{key} {limit.format('None')}" in str(refused.value), str(refused.value)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({key: value, **extra}))
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe), {})
    assert f"{key} {limit.format('null')}" in str(refused.value), str(refused.value)
    from directpo.command_options import ScoreOptions

    if key == "system_column":  # (score / rank / generate take it too)
        with pytest.raises(ConfigError) as refused:
            ScoreOptions(model_name_or_path="m", input="i.jsonl", output="o.jsonl", **{key: value})
        assert f"{key} {limit.format('None')}" in str(refused.value), str(refused.value)
