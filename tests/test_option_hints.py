"""An unknown option's hint names the option meant, for every command: the spellings carried
from transformers', TRL's and other tools' scripts (--model, --lr, --dataset, --epochs)."""

from __future__ import annotations

import pytest
import yaml

from directpo import command_options
from directpo.cli import main
from directpo.command_options import ScoreOptions
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError
from directpo.option_loading import load_options


@pytest.mark.parametrize(
    "argv, said",
    [
        # (every command reads the flag's value: the setting said with it, not only the name
        # to retype; score, rank and generate said "did you mean" to a value after a space)
        (["score", "--model", "run/"], "unknown option '--model'; give --model_name_or_path run/"),
        (["rank", "--model", "run/"], "give --model_name_or_path run/"),
        (["generate", "--model", "run/"], "give --model_name_or_path run/"),
        (["train", "--model", "run/"], "unknown option '--model'; give --model_name_or_path run/"),
        (["score", "--model_path", "run/"], "give --model_name_or_path run/"),
        (["score", "--model", "--input", "a.jsonl"], "did you mean '--model_name_or_path'?"),
        (["score", "--dataset", "a.jsonl"], "unknown option '--dataset'; did you mean '--input'?"),
        (["generate", "--data", "a.jsonl"], "did you mean '--input'?"),
        # (told 'did you mean --data_seed?', which orders the pairs)
        (["train", "--data", "a.jsonl"], "unknown option '--data'; did you mean '--train_file'?"),
        (["train", "--lr", "1e-6"], "unknown option '--lr'; give --learning_rate 1e-6"),
        (["score", "--lr", "1e-6"], "'--lr'; --learning_rate is an option of directpo train, not"),
        (["generate", "--epochs", "2"], "--num_train_epochs is an option of directpo train"),
        (["demo", "--batch_size", "2"], "--batch_size is an option of directpo score, rank and"),
        (["train", "--validation_file", "e.jsonl"], "did you mean '--eval_file'?"),
        (["generate", "--max_tokens", "8"], "give --max_new_tokens 8"),
        # TRL's sampling trainers' names (told it is train's option; 'did you mean
        # --generation_kwargs?')
        (["generate", "--max_completion_length", "8"], "give --max_new_tokens 8"),
        (["generate", "--num_generations", "4"], "give --num_return_sequences 4"),
        (["train", "--num_generations", "4"], "give --online_samples_per_prompt 4"),
        # (told 'did you mean --auto_find_batch_size?')
        (["train", "--generation_batch_size", "8"], "give --online_prompts_per_round 8"),
        (["generate", "--generation_batch_size", "8"], "give --batch_size 8"),
        # the command whose option a spelling means (told train's online_samples_per_prompt)
        (
            ["score", "--num_generations", "4"],
            "--num_return_sequences is an option of directpo generate, not",
        ),
        (["rank", "--max_tokens", "8"], "--max_new_tokens is an option of directpo generate, not"),
        # vLLM's stops (told 'did you mean --top_p?')
        (["generate", "--stop", "###"], "'--stop'; a completion ends at the model's own stop"),
        (["generate", "--stop_strings", "x"], "or after max_new_tokens: no other stop, a string"),
        # accelerate's (told 'did you mean --model_revision?')
        (["train", "--mixed_precision", "bf16"], "did you mean '--dtype'?"),
        # another command's own option (train's was 'did you mean --num_train_epochs?')
        (["rank", "--top_k", "3"], "'--top_k'; --top_k is an option of directpo generate, not"),
        # generate's, which train has as options of its own sampling (told generate's alone)
        (
            ["train", "--num_return_sequences", "2"],
            "did you mean '--online_samples_per_prompt' (completions per prompt in an online "
            "round) or '--eval_generate_samples' (completions per held-out prompt in "
            "eval_generate)? (num_return_sequences is directpo generate's)",
        ),
        (["generate", "--online_samples_per_prompt", "2"], "is an option of directpo train"),
        (["rank", "--num_return_sequences", "2"], "sequences is an option of directpo generate"),
        (["generate", "--beta", "1"], "--beta is an option of directpo train, score and rank, not"),
        (["train", "--input", "a.jsonl"], "unknown option '--input'; did you mean '--train_file'?"),
        # one-letter flags other CLIs take, and --config misspelt
        (["score", "-m", "run/"], "unknown option '-m'; give --model_name_or_path run/"),
        (["train", "-m", "run/"], "unknown option '-m'; give --model_name_or_path run/"),
        (["score", "-m"], "unknown option '-m'; did you mean '--model_name_or_path'?"),
        (["generate", "-o", "x.jsonl"], "unknown option '-o'; give --output x.jsonl"),
        (["train", "-c", "r.yaml"], "unknown option '-c'; did you mean '--config'?"),
        (["train", "--conifg", "r.yaml"], "unknown option '--conifg'; did you mean '--config'?"),
        # a flag before the command (--lr was told 'did you mean --help?')
        (["--lr", "1e-6", "train"], "directpo train --learning_rate ... (train has no --lr"),
        (["--model", "m", "score"], "directpo score --model_name_or_path ..."),
        # (told to write 'directpo rank --top_k ...', and '--lr 1 score': 'did you mean --help?')
        (
            ["--top_k", "3", "rank"],
            "'--top_k'; --top_k is an option of directpo generate, not of rank",
        ),
        (["--lr", "1", "score"], "--learning_rate is an option of directpo train, not of score"),
        # a reward model's folder: train's online labeller (score's was told nothing)
        (["train", "--reward_pretrain", "rm/"], "give --reward_model_name_or_path rm/"),
        (
            ["score", "--reward_model", "rm/"],
            "--reward_model_name_or_path is an option of directpo train, not of this command",
        ),
    ],
)
def test_an_unknown_flag_is_told_the_option_other_tools_spell_so(capsys, argv, said) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert "--help'?" not in err


SYSTEM_TEXT_HINT = (
    "; a system turn is read from a column of the rows: {} (each row's system text); there is "
    "no option for one text: write it into the rows"
)


@pytest.mark.parametrize(
    "argv, said",
    [
        *[
            ([command, "--system_prompt", "Be brief."], "unknown option '--system_prompt'"
             + SYSTEM_TEXT_HINT.format("--system_column NAME"))
            for command in ("train", "score", "rank", "generate")
        ],
        (["generate", "--generate_temperature", "0.7"], "unknown option "
         "'--generate_temperature'; did you mean '--temperature'? (generate_temperature is "
         "train's, for its own sampling)"),
        (["generate", "--generate_max_new_tokens", "8"], "did you mean '--max_new_tokens'?"),
        # (no sampling in score: whose option it is)
        (["score", "--generate_top_k", "3"], "--generate_top_k is an option of directpo train"),
        (["demo", "--system_prompt", "x"], "unknown option '--system_prompt'"),
    ],
)  # fmt: skip
def test_another_commands_option_is_told_what_stands_for_it_in_each_command(
    capsys, argv, said
) -> None:
    """score --system_prompt (a system text, as other tools take one) was asked 'did you mean
    --system_column?', which takes a column's name, and generate --generate_temperature
    (train's name) was told it is train's, not that generate's is --temperature."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err, err
    assert "did you mean '--system_column'" not in err


def test_a_yaml_system_prompt_key_is_told_the_column_as_yaml_writes_it(tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("system_prompt: Be brief.\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert SYSTEM_TEXT_HINT.format("system_column: NAME") in str(refused.value)


def test_a_yaml_key_and_a_python_keyword_are_told_the_same(tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("lr: 1.0e-6\nmodel_path: m\n")
    with pytest.raises(ConfigError) as refused:
        load_options(DPOConfig, recipe)
    said = str(refused.value)
    assert "unknown option 'lr'; set learning_rate: 1e-06" in said
    assert "unknown option 'model_path'; set model_name_or_path: m" in said
    with pytest.raises(ConfigError, match="'model' is unknown; pass model_name_or_path='run'$"):
        ScoreOptions(model="run")  # (the keyword's value with it: ScoreOptions' own words)


@pytest.mark.parametrize(
    "argv, said",
    [
        (["score", "--dtype", "bf16"], "float32, bfloat16 (got bf16); did you mean bfloat16?"),
        (["train", "--dtype", "torch.bfloat16"], "(got torch.bfloat16); did you mean bfloat16?"),
        (["train", "--save_dtype", "fp32"], "(got fp32); did you mean float32?"),
        # float16's short name led as float16 is (was told the list alone)
        (["train", "--dtype", "fp16"], "(got fp16); did you mean bfloat16?"),
        (["train", "--dtype", "float16"], "(got float16); did you mean bfloat16?"),
        # torch's aliases (torch.half, torch.float) led as their names are
        (["train", "--dtype", "torch.half"], "(got torch.half); did you mean bfloat16?"),
        (["train", "--dtype", "float"], "(got float); did you mean float32?"),
        (["train", "--f_divergence_type", "reverse-kl"], "; did you mean reverse_kl?"),
    ],
)  # fmt: skip
def test_a_choice_spelt_as_other_tools_do_is_told_the_one_meant(capsys, argv, said) -> None:
    """``--dtype bf16`` (accelerate's and many scripts' spelling) was told the list of choices
    alone."""
    assert main(argv) == 2
    assert said in capsys.readouterr().err
    assert main(["train", "--dtype", "float64"]) == 2  # another precision: no lead
    assert "did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "recipe, said",
    [
        ("loss_type: Sigmoid", "orpo (got 'Sigmoid'); did you mean sigmoid?"),
        ("loss_type: sigmod", "(got 'sigmod'); did you mean sigmoid?"),
        ("loss_type: [sigmoid, SFT]", "(got ['sigmoid', 'SFT']); did you mean ['sigmoid', 'sft']?"),
        ("loss_type: [Sigmoid, bogus]", "(got ['Sigmoid', 'bogus']); did you mean sigmoid for S"),
        ("report_to: wand", "trackio, none (got 'wand'); did you mean wandb?"),
        ("report_to: 'None'", "(got 'None'); did you mean none?"),  # (transformers' spelling)
        ("report_to: [wandb, tensorbord]", "did you mean ['wandb', 'tensorboard']?"),
    ],
)  # fmt: skip
def test_a_list_of_words_is_told_the_words_meant(recipe, said) -> None:
    """A list option's word spelt as a word option's would be led (loss_type: Sigmoid, TRL's
    loss names capitalised, report_to: wand) was told its whole list of words alone: eighteen
    for loss_type, none of them marked as the one meant."""
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", **yaml.safe_load(recipe))
    assert said in str(refused.value)
    for unmeant in ("loss_type: bogus", "report_to: [wandb, foo]", "loss_type: [aot_pair]"):
        with pytest.raises(ConfigError) as refused:  # no word is close: no lead
            DPOConfig(model_name_or_path="m", **yaml.safe_load(unmeant))
        assert "did you mean" not in str(refused.value)


@pytest.mark.parametrize(
    "option, given, recipe, flags, python",
    [
        ("loss_type", "ipoo", "(got ipoo); did you mean ipo?", "(got ipoo); did you mean ipo?",
         "(got 'ipoo'); did you mean ipo?"),
        ("loss_type", ["sigmoid", "ipoo"], "(got [sigmoid, ipoo]); did you mean [sigmoid, ipo]?",
         "(got sigmoid,ipoo); did you mean sigmoid,ipo?",
         "(got ['sigmoid', 'ipoo']); did you mean ['sigmoid', 'ipo']?"),
        ("report_to", "wand", "(got wand); did you mean wandb?", "(got wand); did you mean",
         "(got 'wand'); did you mean wandb?"),
    ],
)  # fmt: skip
def test_a_list_options_refused_words_are_said_as_given(
    tmp_path, capsys, option, given, recipe, flags, python
) -> None:
    """``loss_type: ipoo`` (one word) was told 'got [ipoo]', the list it was read into, by a
    recipe, a command line and Python alike; each is told the value as it gave it."""
    written = tmp_path / "recipe.yaml"
    written.write_text(yaml.safe_dump({"model_name_or_path": "m", option: given}))
    assert main(["train", str(written)]) == 2
    assert recipe in capsys.readouterr().err
    flag = given if isinstance(given, str) else ",".join(given)
    assert main(["train", "--model_name_or_path", "m", f"--{option}", flag]) == 2
    assert flags in capsys.readouterr().err
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", **{option: given})
    assert python in str(refused.value)


@pytest.mark.parametrize(
    "argv, said",
    [
        # (told 'did you mean --gradient_checkpointing?', '--lora_r?', and nothing)
        (["train", "--gradient_acc", "8"], "'--gradient_acc'; did you mean '--gradient_accumulati"),
        (["train", "--gradient_checkpoint", "true"], "did you mean '--gradient_checkpointing'?"),
        (
            ["train", "--per_device", "2"],
            "'--per_device'; 2 options begin so, write one whole: "
            "'--per_device_eval_batch_size' or '--per_device_train_batch_size'",
        ),
        (["train", "--lora_tar", "q"], "'--lora_target_modules' or '--lora_target_parameters'"),
        (["train", "--max", "8"], "7 options begin so, write one whole: '--max_completion_length'"),
        (["generate", "--max", "8"], "'--max_new_tokens' or '--max_prompt_length'"),
        # ... of another tool's spelling (told 'did you mean --eval_strategy?', and nothing)
        (["train", "--eval_batch", "2"], "did you mean '--per_device_eval_batch_size'?"),
        (["train", "--batch", "2"], "did you mean '--per_device_train_batch_size'?"),
        (["score", "--batch", "2"], "did you mean '--batch_size'?"),
        # before the command (told to write 'directpo train --per_device ...' alone)
        (["--per_device", "2", "train"], "(train has no --per_device: 2 options begin so, wr"),
    ],
)
def test_an_abbreviated_flag_is_told_the_options_it_begins(capsys, argv, said) -> None:
    """argparse's abbreviations (TRL's scripts take --gradient_acc 8 where one option begins
    so) were given difflib's closest name, another option, or nothing where several begin so."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert said in err, err


def test_an_abbreviated_yaml_key_is_told_the_options_it_begins(tmp_path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("warmup: 10\n")
    with pytest.raises(ConfigError, match="'warmup'; 2 options begin so, write one whole: 'wa"):
        load_options(DPOConfig, recipe)


def test_a_negated_flag_written_as_a_key_is_told_the_key(tmp_path) -> None:
    """HfArgumentParser's --no_remove_unused_columns (TRL's DPO docs) written as a YAML key was
    told 'did you mean rejected_column?'; it is told the option's own key set false, as YAML
    and as a keyword; a no_ key of no option keeps the plain refusal."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("no_remove_unused_columns: true\nno_bf16: true\nno_such: 1\n")
    with pytest.raises(ConfigError) as refused:
        load_options(DPOConfig, recipe)
    said = str(refused.value).splitlines()
    flag = "the flag --no_remove_unused_columns is written remove_unused_columns: false here"
    assert f"  unknown option 'no_remove_unused_columns'; {flag}" in said
    assert "  unknown option 'no_bf16'; the flag --no_bf16 is written bf16: false here" in said
    assert "  unknown option 'no_such'" in said
    with pytest.raises(ConfigError, match="--no_bf16 is written bf16=False here"):
        DPOConfig(no_bf16=True)


@pytest.mark.parametrize(
    ("build", "said"),
    [
        (
            lambda: ScoreOptions(learning_rate=1e-5),
            "learning_rate is an option of DPOConfig (train()), not of these options",
        ),
        (
            lambda: command_options.RankOptions(top_k=3),
            "top_k is an option of GenerateOptions, not of these options",
        ),
        (
            lambda: command_options.GenerateOptions(beta=0.1),
            "beta is an option of DPOConfig (train()), ScoreOptions and RankOptions, not of",
        ),
        (
            lambda: DPOConfig(responses_column="x"),
            "responses_column is an option of RankOptions, not",
        ),
    ],
)
def test_another_classes_option_is_named_by_its_class_to_a_python_caller(build, said) -> None:
    """A keyword of another options class: a Python caller was told "X is an option of
    directpo train, not of this command", a command it did not run; it reads the class."""
    with pytest.raises(ConfigError) as err:
        build()
    assert said in str(err.value) and "directpo" not in str(err.value).split(";")[-1]


def test_another_tools_spelling_with_its_value_is_told_the_setting_as_each_caller_writes_it(
    tmp_path, capsys, monkeypatch
) -> None:
    """TRL's and transformers' ``--model run/`` (``model: run/`` in a recipe, ``lr=1e-6`` to
    train()) was told "did you mean '--model_name_or_path'?", the value then retyped under it:
    where the value is known the setting is said with it, as each caller writes options; a
    bare flag, a hub id for a file's option and dtype's other spellings keep the name alone."""
    from directpo.trainer import train

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.jsonl").write_text("")
    for argv, said in (
        (["train", "--model", "run/"], "unknown option '--model'; give --model_name_or_path run/"),
        (["train", "--ref_model", "my ref"], "give --ref_model_name_or_path 'my ref'"),
        (["train", "--grad_accum", "4"], "give --gradient_accumulation_steps 4"),
        (["train", "--data", "a.jsonl"], "unknown option '--data'; give --train_file a.jsonl"),
        (["score", "--model=run/"], "unknown option '--model'; give --model_name_or_path run/"),
        (["score", "--model", "run/"], "unknown option '--model'; give --model_name_or_path run/"),
        (["rank", "--input", "a.jsonl", "--ref", "r/"], "give --ref_model_name_or_path r/"),
        (["train", "--model"], "unknown option '--model'; did you mean '--model_name_or_path'?"),
        (["train", "--data", "org/prefs"], "'--data'; did you mean '--train_file'?"),
        (["train", "--mixed_precision", "bf16"], "did you mean '--dtype'?"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert said in err, (argv, err)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model: run/\nlr: 1.0e-6\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    assert "unknown option 'model'; set model_name_or_path: run/" in str(refused.value)
    assert "unknown option 'lr'; set learning_rate: 1e-06" in str(refused.value)
    with pytest.raises(ConfigError) as refused:
        train(model_name_or_path="run/", lr=1e-6, ref_model_path="ref/", echo=None)
    assert "unknown option 'lr'; pass learning_rate=1e-06" in str(refused.value)
    assert "option 'ref_model_path'; pass ref_model_name_or_path='ref/'" in str(refused.value)
