"""One caller value: each entry point names its caller once, every message reads it, and it
ends with its call (threads and forked tokenizing processes keep their caller's)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl

from directpo import parallel_tokenizing
from directpo.callers import (
    UNCALLED,
    Caller,
    Entry,
    Spelling,
    called_by,
    caller,
    entry_point,
    speaking_as,
    spell_option,
)
from directpo.cli import main
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError

PYTHON_TRAIN = Caller(Spelling.PYTHON, Entry.TRAIN)


def test_an_option_is_spelled_as_its_caller_writes_it() -> None:
    assert caller() == UNCALLED and spell_option("beta", 0.1) == "beta: 0.1"  # (as docs write)
    for who, spelled in (
        (Caller(Spelling.FLAGS, Entry.FOLDER), ("--beta 0.1", "--beta", "--beta")),
        (PYTHON_TRAIN, ("beta=0.1", "beta=", "beta=...")),
        (
            Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"),
            ("beta: 0.1 in r.yaml", "beta: in r.yaml", "beta: ... in r.yaml"),
        ),
    ):
        with called_by(who):
            assert (spell_option("beta", 0.1), spell_option("beta"), spell_option("beta", ...)) == (
                spelled
            )
    with called_by(PYTHON_TRAIN):  # a Python string is written as Python writes it
        assert spell_option("loss_type", "ipo") == "loss_type='ipo'"


def test_a_value_is_spelled_as_a_recipe_or_a_shell_reads_it() -> None:
    """A value not a word was said as Python's str of it to a recipe (use_peft: True,
    dataset_mixture: {'datasets': ...}) and bare on a command line, where the shell split it
    (--system_column System Prompt: two words) or globbed it."""
    mixture = {"datasets": [{"id": "a.jsonl"}]}
    with called_by(Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml")):
        assert spell_option("use_peft", True) == "use_peft: true in r.yaml"
        assert spell_option("eval_strategy", "no") == "eval_strategy: 'no' in r.yaml"
        assert spell_option("dataset_mixture", mixture) == (
            "dataset_mixture: {datasets: [{id: a.jsonl}]} in r.yaml"
        )
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        assert spell_option("system_column", "System Prompt") == "--system_column 'System Prompt'"
        assert spell_option("use_peft", True) == "--use_peft"  # (a switch stands alone)
        assert spell_option("dataset_mixture", mixture) == (
            "--dataset_mixture '{datasets: [{id: a.jsonl}]}'"
        )


def test_a_flags_value_that_looks_like_a_flag_is_given_after_an_equals_sign() -> None:
    """A value beginning '--' was said '--run_name --v2', which the command line reads as
    --run_name without a value beside a flag --v2; '--run_name=--v2' is read back as it."""
    import shlex

    from directpo.cli_flags import yaml_and_flags
    from directpo.config import DPOConfig

    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        for value in ("--v2", "-- a b", "-x"):
            said = spell_option("run_name", value)
            assert yaml_and_flags(shlex.split(said), DPOConfig)[1] == {"run_name": value}
        assert spell_option("run_name", "--v2") == "--run_name=--v2"
        assert spell_option("run_name", "-x") == "--run_name -x"  # (a negative reads as ever)


def test_the_outer_entry_is_the_caller_until_its_call_ends() -> None:
    """score's ImplicitReward speaks as score; train's online labeller as train."""
    inner = entry_point(Caller(Spelling.PYTHON, Entry.IMPLICIT_REWARD))(caller)
    assert inner() == Caller(Spelling.PYTHON, Entry.IMPLICIT_REWARD)
    score = Caller(Spelling.FLAGS, Entry.FOLDER)
    with called_by(score):
        assert inner() == score
    with pytest.raises(ValueError), called_by(score):  # ended by an error too
        raise ValueError
    assert caller() == UNCALLED


def _spelled_refusal(*_: object, **__: object) -> None:
    """A refusal that names beta as the caller gave it, with who called."""
    who = caller()
    raise ConfigError(f"{spell_option('beta', 0.1)} [{who.entry.value}]")


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    return capsys.readouterr().err.strip().removeprefix("directpo: error: ")


@pytest.fixture
def files(tmp_path: Path, monkeypatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)
    model = str(save_tiny_model("llama", tmp_path / "model"))
    pairs = str(write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS[:2]))
    return {"model": model, "pairs": pairs, "out": str(tmp_path / "out.jsonl")}


def test_each_entry_point_says_the_same_refusal_in_its_callers_words(
    files, tmp_path, capsys, monkeypatch
) -> None:
    """The command line's flags (train, score, rank, generate), a recipe file's key naming
    the recipe, train()'s and ImplicitReward's keywords: each entry names its own caller."""
    import directpo.reward_files  # noqa: F401
    from directpo.reward import ImplicitReward
    from directpo.trainer import train

    # (reward_files imports run_values_missing by name: imported first while it is patched,
    # it kept the refusal for the rest of the session, and a later score in the process
    # failed with '--beta 0.1 [folder]')
    for target in (
        "directpo.trainer.check_run",
        "directpo.command_options.FileCommandOptions.check_environment",
        "directpo.reward.run_values_missing",
    ):
        monkeypatch.setattr(target, _spelled_refusal)
    model, pairs, out = files["model"], files["pairs"], files["out"]
    train_flags = ["--model_name_or_path", model, "--train_file", pairs, "--report_to", "none"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {model}\ntrain_file: {pairs}\nreport_to: none\n")
    reward = ["--ref_model_name_or_path", model, "--beta", "0.1"]
    command = ["--model_name_or_path", model, "--input", pairs, "--output", out]
    assert _cli(capsys, "train", *train_flags, "--output_dir", "a") == "--beta 0.1 [train]"
    assert _cli(capsys, "train", str(recipe), "--output_dir", "b") == (
        f"beta: 0.1 in {recipe} [train]"
    )
    for name in ("score", "rank"):
        assert _cli(capsys, name, *command, *reward) == "--beta 0.1 [folder]"
    assert _cli(capsys, "generate", *command) == "--beta 0.1 [folder]"
    with pytest.raises(ConfigError, match=r"^beta=0\.1 \[train\]$"):
        train(model_name_or_path=model, train_file=pairs, output_dir="c", echo=None)
    with pytest.raises(ConfigError, match=r"^beta=0\.1 \[implicit_reward\]$"):
        ImplicitReward.from_run(model)
    assert caller() == UNCALLED


def test_a_plain_folders_missing_values_are_asked_as_each_caller_gives_them(files, capsys) -> None:
    """A CLI call after a Python one (and back) in one process: each told in its own words,
    none in the other's (the caller ends with its call)."""
    from directpo.reward import ImplicitReward

    model, pairs, out = files["model"], files["pairs"], files["out"]
    python = r"directpo run: pass ref_model_name_or_path=\.\.\. and beta=\.\.\.$"
    with pytest.raises(ConfigError, match=python):
        ImplicitReward.from_run(model)
    for name in ("score", "rank"):
        said = _cli(capsys, name, "--model_name_or_path", model, "--input", pairs, "--output", out)
        assert "directpo run: give --ref_model_name_or_path and --beta\n" in f"{said}\n", said
        assert "beta=" not in said
    with pytest.raises(ConfigError, match=python):
        ImplicitReward.from_run(model)
    assert caller() == UNCALLED


def test_an_unread_system_column_names_the_option_as_the_run_was_given(files) -> None:
    """train's data line said a recipe's ``system_column: System`` to every caller: a
    command line's user is told the flag, a recipe's the file, train()'s the keyword."""
    from directpo.data import load_preferences

    rows = [{"System": "Be kind.", "prompt": "Hi?", "chosen": "Hello!", "rejected": "No."}]
    data = load_preferences(rows)
    for who, spelled in (
        (UNCALLED, "system_column: System"),
        (Caller(Spelling.FLAGS, Entry.TRAIN), "--system_column System"),
        (Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"), "system_column: System in r.yaml"),
        (PYTHON_TRAIN, "system_column='System'"),
    ):
        with called_by(who):
            assert data.summary().endswith(f"({spelled} makes it their system turn)")


def test_train_says_its_data_line_in_its_callers_words(files, tmp_path, capsys) -> None:
    """The note as ``directpo train`` prints it, given flags and given a recipe."""
    rows = [{"System": "Be kind.", **pair} for pair in SENTIMENT_PAIRS[:2]]
    pairs = str(write_jsonl(tmp_path / "system.jsonl", rows))
    run = ["--max_steps", "1", "--report_to", "none", "--save_strategy", "no"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"model_name_or_path: {files['model']}\ntrain_file: {pairs}\n")
    for argv, spelled in (
        (["--model_name_or_path", files["model"], "--train_file", pairs], "--system_column"),
        ([str(recipe)], "system_column: System in " + str(recipe)),
    ):
        out = str(tmp_path / f"out{len(argv)}")
        assert main(["train", *argv, *run, "--output_dir", out]) == 0
        said = capsys.readouterr().out
        assert f"({spelled}" in said and "makes it their system turn" in said, said


class _CallerProbe:
    """An encoder whose "encoding" is the caller it runs under."""

    def encode_many(self, examples: list, cuts: Counter) -> list:
        return [caller() for _ in examples]


@pytest.mark.skipif(not parallel_tokenizing.can_fork(), reason="no fork here")
@pytest.mark.parametrize("num_proc", [None, 2])
def test_the_tokenizing_thread_and_processes_keep_the_caller(num_proc) -> None:
    """Each batch is encoded on a thread (in each forked process with dataset_num_proc): a
    new thread starts with no caller, so its messages were a command line's whoever called."""
    batches = parallel_tokenizing.encoded_batches(_CallerProbe(), list(range(8)), 2, num_proc)
    with called_by(PYTHON_TRAIN):
        seen = {who for _, encoded, _ in batches for who in encoded}
    assert seen == {PYTHON_TRAIN}


def test_a_setting_is_asked_for_in_the_callers_words() -> None:
    """'set X: V' (a recipe's key) was said to every caller: a command line's user is told
    the flags to give, a Python caller the keywords to pass, with Python's values."""
    from directpo.callers import Blank, spell_setting

    settings = (("lora_r", 16), ("overwrite_output_dir", True), ("dtype", "bfloat16"))
    for who, said in (
        (UNCALLED, "set lora_r: 16, overwrite_output_dir: true, dtype: bfloat16"),
        (
            Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"),
            "set lora_r: 16, overwrite_output_dir: true, dtype: bfloat16",
        ),
        (
            Caller(Spelling.FLAGS, Entry.TRAIN),
            "give --lora_r 16, --overwrite_output_dir, --dtype bfloat16",
        ),
        (PYTHON_TRAIN, "pass lora_r=16, overwrite_output_dir=True, dtype='bfloat16'"),
    ):
        with called_by(who):
            assert spell_setting(*settings) == said
    with called_by(PYTHON_TRAIN):  # a name alone, a blank to fill, None, a list, two joined
        assert spell_setting("eval_generate") == "pass eval_generate=..."
        assert spell_setting(("eval_generate", Blank("N"))) == "pass eval_generate=N"
        assert spell_setting(("resume_from_checkpoint", None)) == (
            "pass resume_from_checkpoint=None"
        )
        assert spell_setting(("a", 1), ("b", 2), last=" and ") == "pass a=1 and b=2"
    with called_by(Caller(Spelling.FLAGS, Entry.TRAIN)):
        assert spell_setting(("loss_type", ["sigmoid", "sft"])) == "give --loss_type sigmoid,sft"
        assert spell_setting(("prompt_column", "My prompt")) == "give --prompt_column 'My prompt'"
        assert spell_setting(("torch_compile", False)) == "give --torch_compile false"
    with called_by(Caller(Spelling.RECIPE, Entry.TRAIN)):
        assert spell_setting(("resume_from_checkpoint", None)) == "set resume_from_checkpoint: null"


# the commonest refusals naming an option to set, each as (options, what a recipe's user
# reads, a command line's, a Python caller's)
REFUSALS = [
    ({"lora_alpha": 64}, "set lora_r: 16", "give --lora_r 16", "pass lora_r=16"),
    (  # (--online was told a recipe's keys)
        {"online": True, "prompt_file": "p.jsonl"},
        "online needs a labeller: reward_fn, reward_model_name_or_path or implicit_reward_model "
        "(several: their sum, weighted by reward_weights)",
        "--online needs a labeller: --reward_fn, --reward_model_name_or_path or "
        "--implicit_reward_model (several: their sum, weighted by --reward_weights)",
        "online=True needs a labeller: reward_fn=..., reward_model_name_or_path=... or "
        "implicit_reward_model=... (several: their sum, weighted by reward_weights=...)",
    ),
    (
        {"online_prompts_per_round": 4},
        "online is off; set online: true",
        "online is off; give --online",
        "online is off; pass online=True",
    ),
    (
        {"eval_generate_samples": 2},
        "nothing is sampled; set eval_generate: N",
        "nothing is sampled; give --eval_generate N",
        "nothing is sampled; pass eval_generate=N",
    ),
    (
        {"dtype": "float32", "eval_dtype": "bfloat16"},
        "set dtype: bfloat16 (mixed precision)",
        "give --dtype bfloat16 (mixed precision)",
        "pass dtype='bfloat16' (mixed precision)",
    ),
    (
        {"use_peft": False, "lora_alpha": 64},
        "but use_peft: false turns LoRA off; set use_peft: true for adapters",
        "but --use_peft false turns LoRA off; give --use_peft for adapters",
        "but use_peft=False turns LoRA off; pass use_peft=True for adapters",
    ),
    # (were in a recipe's words for every caller: '>= 2', 'use loss_type sigmoid')
    (
        {"loss_type": "aot", "per_device_train_batch_size": 1},
        "set per_device_train_batch_size: 2 or more (gradient_accumulation_steps does not widen "
        "the sort), or loss_type: sigmoid",
        "give --per_device_train_batch_size 2 or more (gradient_accumulation_steps does not "
        "widen the sort), or --loss_type sigmoid",
        "pass per_device_train_batch_size=2 or more (gradient_accumulation_steps does not widen "
        "the sort), or loss_type='sigmoid'",
    ),
    # a problem's lead-in, two settings together (were a recipe's words for every caller)
    (
        {"use_peft": True, "lora_r": 0},
        "lora_r: 0 with use_peft: true: an adapter",
        "--lora_r 0 with --use_peft: an adapter",
        "lora_r=0 with use_peft=True: an adapter",
    ),
    (
        {"dtype": "bfloat16", "eval_dtype": "float32", "attn_implementation": "flash_attention_2"},
        "eval_dtype: float32 with attn_implementation: flash_attention_2, whose kernels compute "
        "in bf16/fp16 only; set attn_implementation: varlen or sdpa, or eval_dtype: auto",
        "--eval_dtype float32 with --attn_implementation flash_attention_2, whose kernels "
        "compute in bf16/fp16 only; give --attn_implementation varlen or sdpa, or --eval_dtype "
        "auto",
        "eval_dtype='float32' with attn_implementation='flash_attention_2', whose kernels "
        "compute in bf16/fp16 only; pass attn_implementation='varlen' or 'sdpa', or "
        "eval_dtype='auto'",
    ),
    # a lead-in naming sampling options beside greedy decoding (the recipe's bare keys were
    # said to every caller: 'generate_top_k only shapes sampling, but generate_temperature is 0')
    (
        {"eval_generate": 2, "generate_temperature": 0, "generate_top_k": 4},
        "generate_top_k only shapes sampling, but generate_temperature is 0 (",
        "--generate_top_k 4 only shapes sampling, but --generate_temperature 0 (",
        "generate_top_k=4 only shapes sampling, but generate_temperature=0 (",
    ),
    (
        {"eval_generate": 2, "eval_generate_samples": 3, "generate_temperature": 0},
        "eval_generate_samples: 3 needs sampling, but generate_temperature is 0 (",
        "--eval_generate_samples 3 needs sampling, but --generate_temperature 0 (",
        "eval_generate_samples=3 needs sampling, but generate_temperature=0 (",
    ),
    # a value is said as it was written: YAML's and a flag's true, Python's True
    (
        {"max_steps": True},
        "got true: a number, not a switch",
        "got true: a number, not a switch",
        "got True: a number, not a switch",
    ),
    (  # (TR-DPO with adapters: 'use ref_model_mixup_alpha: 1.0' was said to every caller)
        {"lora_r": 8, "sync_ref_model": True, "ref_model_mixup_alpha": 0.6},
        "set ref_model_mixup_alpha: 1.0 (the hard update)",
        "give --ref_model_mixup_alpha 1.0 (the hard update)",
        "pass ref_model_mixup_alpha=1.0 (the hard update)",
    ),
]


def _flags_of(options: dict) -> list[str]:
    return [token for key, value in options.items() for token in (f"--{key}", str(value))]


@pytest.mark.parametrize(("options", "recipe", "flags", "python"), REFUSALS)
def test_each_caller_is_told_the_setting_as_it_writes_options(
    files, tmp_path, capsys, options, recipe, flags, python
) -> None:
    """The same refusal from a recipe file, command-line flags, train() and DPOConfig(): a
    Python caller read 'set lora_r: 16' (a recipe's key), a command line's user too."""
    import yaml

    from directpo.config import DPOConfig, load_config
    from directpo.trainer import train

    run = {"model_name_or_path": files["model"], "train_file": files["pairs"]}
    written = tmp_path / "recipe.yaml"
    written.write_text(yaml.safe_dump({**run, **options, "output_dir": "r"}))
    said = {
        "recipe": _cli(capsys, "train", str(written)),
        "flags": _cli(capsys, "train", *_flags_of({**run, **options, "output_dir": "f"})),
    }
    with pytest.raises(ConfigError) as from_train:
        train(**run, **options, output_dir=str(tmp_path / "p"), echo=None)
    with pytest.raises(ConfigError) as from_config:
        DPOConfig(**options)
    with pytest.raises(ConfigError) as from_recipe:  # (load_config: a recipe read in Python)
        load_config(str(written))
    said |= {"train()": str(from_train.value), "DPOConfig()": str(from_config.value)}
    for caller_name, wanted in (
        ("recipe", recipe),
        ("flags", flags),
        ("train()", python),
        ("DPOConfig()", python),
    ):
        assert wanted in said[caller_name], (caller_name, said[caller_name])
        others = {recipe, flags, python} - {wanted}
        assert not any(other in said[caller_name] for other in others), said[caller_name]
    assert recipe in str(from_recipe.value)
    # beside a flag refused as written (said with the others before the options were built)
    beside = _cli(capsys, "train", *_flags_of({**run, **options}), "--learning_rate")
    assert "--learning_rate needs a value" in beside and flags in beside, beside
    assert recipe == flags or recipe not in beside, beside
    assert caller() == UNCALLED


def test_an_output_folder_in_use_is_told_the_overwrite_as_each_caller_writes_it(
    files, tmp_path, capsys
) -> None:
    """'set overwrite_output_dir: true' was said to train()'s and the flags' users too."""
    from directpo.trainer import train

    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    run = ["--model_name_or_path", files["model"], "--train_file", files["pairs"]]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_name_or_path: {files['model']}\ntrain_file: {files['pairs']}\n"
        f"output_dir: {used}\nreport_to: none\n"
    )
    flags = _cli(capsys, "train", *run, "--output_dir", str(used), "--report_to", "none")
    assert "or give --overwrite_output_dir (it replaces" in flags, flags
    assert "or set overwrite_output_dir: true (it replaces" in _cli(capsys, "train", str(recipe))
    with pytest.raises(ConfigError, match=r"or pass overwrite_output_dir=True \(it replaces"):
        train(
            model_name_or_path=files["model"],
            train_file=files["pairs"],
            output_dir=str(used),
            report_to="none",
            echo=None,
        )
    assert (used / "notes.txt").read_text() == "mine"


def test_a_checkpoints_way_on_is_said_as_each_caller_writes_it(tmp_path) -> None:
    """'start a new run from its weights (model_name_or_path: ckpt, ...)' was a recipe's keys
    to train()'s and the command line's users too; a reference no record names is words."""
    from directpo.checkpoint import start_from
    from directpo.config import DPOConfig

    DPOConfig(model_name_or_path="/m/start", ref_model_name_or_path="/m/ref").save_record(
        tmp_path / "config.yaml"
    )
    for who, said in (
        (UNCALLED, f"model_name_or_path: {tmp_path}, ref_model_name_or_path: /m/ref"),
        (
            Caller(Spelling.FLAGS, Entry.TRAIN),
            f"--model_name_or_path {tmp_path}, --ref_model_name_or_path /m/ref",
        ),
        (PYTHON_TRAIN, f"model_name_or_path='{tmp_path}', ref_model_name_or_path='/m/ref'"),
    ):
        with called_by(who):
            assert start_from(tmp_path) == f"start a new run from its weights ({said})"
    (tmp_path / "config.yaml").unlink()
    with called_by(PYTHON_TRAIN):
        assert start_from(tmp_path).endswith("ref_model_name_or_path=the run's starting model)")


@pytest.mark.parametrize(
    ("spelling", "kernel", "seed", "drop_last", "batch"),
    [
        (Spelling.RECIPE, "set attn_implementation: auto or sdpa", "data_seed: 3",
         "dataloader_drop_last: false", "set per_device_train_batch_size and "
         "gradient_accumulation_steps"),
        (Spelling.FLAGS, "give --attn_implementation auto or sdpa", "--data_seed 3",
         "--dataloader_drop_last false", "give --per_device_train_batch_size and "
         "--gradient_accumulation_steps"),
        (Spelling.PYTHON, "pass attn_implementation='auto' or 'sdpa'", "data_seed=3",
         "dataloader_drop_last=False", "pass per_device_train_batch_size=... and "
         "gradient_accumulation_steps=..."),
    ],
)  # fmt: skip
def test_a_kernels_and_a_resumes_fix_are_said_as_each_caller_writes_options(
    tmp_path, spelling, kernel, seed, drop_last, batch
) -> None:
    """'use auto or sdpa' (flash_attention_2 off CUDA), 'resume with 3' / 'resume with false'
    (a checkpoint's data order's seed, its drop_last) and auto_find_batch_size's 'set
    per_device_train_batch_size' under torchrun were a recipe's words, or no option's, for
    every caller; each names the option as its caller sets it."""
    from directpo.callers import setting_verb
    from directpo.config import DPOConfig
    from directpo.device_checks import check_device
    from directpo.run import prepare_run
    from directpo.sources import FixedPairs, PairSet, _check_same

    drops = {Spelling.RECIPE: "dataloader_drop_last: true",
             Spelling.FLAGS: "--dataloader_drop_last",
             Spelling.PYTHON: "dataloader_drop_last=True"}[spelling]  # fmt: skip

    config = DPOConfig(model_name_or_path="m", attn_implementation="flash_attention_2")
    batched = DPOConfig(model_name_or_path="m", auto_find_batch_size=True,
                        output_dir=str(tmp_path / "o"))  # fmt: skip
    with called_by(Caller(spelling, Entry.TRAIN)):
        with pytest.raises(ConfigError) as refused:
            check_device(config, "cpu")
        assert str(refused.value).endswith(f"; {kernel}")
        with pytest.raises(ConfigError) as refused:
            _check_same({"seed": 3}, {"seed": 4}, "ckpt")
        assert str(refused.value).endswith(f"resume with {seed}, or start a new output_dir")
        with pytest.raises(ConfigError) as refused:  # (was a recipe's model_name_or_path: ckpt)
            _check_same({"tokenization_rules": 1, "pairs_fingerprint": "a"},
                        {"tokenization_rules": 2, "pairs_fingerprint": "b"}, "ckpt")  # fmt: skip
        went_on = {Spelling.RECIPE: "model_name_or_path: ckpt, ",
                   Spelling.FLAGS: "--model_name_or_path ckpt, ",
                   Spelling.PYTHON: "model_name_or_path='ckpt', "}[spelling]  # fmt: skip
        assert f"as it was: start a new run from its weights ({went_on}" in str(refused.value)
        with pytest.raises(ConfigError) as refused:
            _check_same({"drop_last": False}, {"drop_last": True}, "ckpt")
        assert f"resume with {drop_last}, or start" in str(refused.value)
        with pytest.raises(ConfigError) as refused:  # (was 'dataloader_drop_last: true ...:
            # set it false' to every caller)
            FixedPairs(PairSet([], []), 4, 1, 0, drop_last=True)
        assert str(refused.value).startswith(f"{drops} drops every epoch's short last batch")
        assert f"processes): {setting_verb()} {drop_last}, or lower" in str(refused.value)
        with pytest.raises(ConfigError) as refused:
            prepare_run(batched, None, None, _World(2), print)  # type: ignore[arg-type]
        assert str(refused.value).endswith(f"retry the same step; {batch}")


class _World:
    """A run's processes, as prepare_run reads them (its size alone before any refusal)."""

    def __init__(self, size: int) -> None:
        self.size, self.rank, self.is_main = size, 0, True


def test_a_recipe_given_to_train_is_refused_in_the_files_words(tmp_path, monkeypatch) -> None:
    """train(config='recipe.yaml') said the file's own values as keywords
    ("eval_dtype='bfloat16' under dtype='float32'; pass dtype='bfloat16'") to a caller who
    wrote none; they are said as the file holds them, as `directpo train recipe.yaml` says
    them. A refusal the keywords bring stays in Python's words, line by line."""
    from directpo import train

    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("pairs.jsonl"), SENTIMENT_PAIRS)
    Path("recipe.yaml").write_text(
        "model_name_or_path: m\ntrain_file: pairs.jsonl\neval_dtype: bfloat16\ndtype: float32\n"
    )
    file_line = (
        "eval_dtype: bfloat16 under dtype: float32: the run computes in float32 and so does its "
        "evaluation; set dtype: bfloat16 (mixed precision) to evaluate as bf16 computes"
    )
    for keywords in ({}, {"max_steps": 1}):
        with pytest.raises(ConfigError) as refused:
            train(config="recipe.yaml", **keywords)
        assert str(refused.value) == file_line
    assert main(["train", "recipe.yaml"]) == 2  # (the command's line, for comparison)

    Path("recipe.yaml").write_text("model_name_or_path: m\ntrain_file: pairs.jsonl\nfp16: true\n")
    with pytest.raises(ConfigError) as refused:
        train(config="recipe.yaml", dtype="float32", eval_dtype="bfloat16")
    assert refused.value.problems == [  # (each line headed by the source that brought it;
        # the keyword's dtype in its words: the file's 'dtype: float32' is one it overrides)
        "recipe.yaml: fp16: float16 mixed precision is not supported (its narrow range needs a "
        "loss scaler); use bf16: true (mixed precision in bfloat16) or dtype='float32'",
        "train(): eval_dtype='bfloat16' under dtype='float32': the run computes in float32 and "
        "so does its evaluation; pass dtype='bfloat16' (mixed precision) to evaluate as bf16 "
        "computes",
    ]


def test_a_recipes_refusal_a_keyword_bears_on_is_told_as_the_keyword(tmp_path, monkeypatch):
    """train('recipe.yaml', lora_r=0) beside the file's lora_target_modules was told 'set
    lora_r: 16' (the file's words), a fix the keyword then overrode; and lines of the file and
    of the keywords came under one heading, the file's: a keyword's unknown option was looked
    for in the file. A line whose problem names a keyword is said as a keyword; lines of both
    sources each name theirs."""
    from directpo import train

    monkeypatch.chdir(tmp_path)
    write_jsonl(Path("pairs.jsonl"), SENTIMENT_PAIRS)
    base = "model_name_or_path: m\ntrain_file: pairs.jsonl\n"
    Path("recipe.yaml").write_text(base + "lora_target_modules: [q_proj]\n")
    with pytest.raises(ConfigError) as refused:
        train("recipe.yaml", lora_r=0)
    assert str(refused.value) == (
        "lora_target_modules is set but lora_r is 0 (no LoRA); pass lora_r=16"
    )
    Path("recipe.yaml").write_text(base + "eval_dtype: bfloat16\n")
    with pytest.raises(ConfigError) as refused:
        train("recipe.yaml", dtype="float32")
    assert str(refused.value).endswith("; pass dtype='bfloat16' (mixed precision) to evaluate "
                                       "as bf16 computes")  # fmt: skip
    Path("recipe.yaml").write_text(base + "bogus_key: 1\n")
    with pytest.raises(ConfigError) as refused:
        train("recipe.yaml", other_bogus=2)
    assert refused.value.problems == [
        "recipe.yaml: unknown option 'bogus_key'",
        "train(): unknown option 'other_bogus'",
    ]
    assert str(refused.value).startswith("2 options cannot be used:\n")
    Path("recipe.yaml").write_text(base + "beta: -1\n")
    with pytest.raises(ConfigError) as refused:
        train("recipe.yaml", learning_rate=-1)
    assert refused.value.problems == [
        "recipe.yaml: beta must be > 0 (got -1)",
        "train(): learning_rate must be > 0 (got -1)",
    ]
    Path("mixed.yaml").write_text(base + "eval_dtype: bfloat16\nbeta: -1\n")
    with pytest.raises(ConfigError) as refused:  # (the file's eval_dtype in its words, beside
        train("mixed.yaml", dtype="float32")  # the keyword's dtype: it was eval_dtype=...)
    assert refused.value.problems[0].startswith(
        "train(): eval_dtype: bfloat16 under dtype='float32': the run computes in float32"
    )
    assert refused.value.problems[1] == "mixed.yaml: beta must be > 0 (got -1)"
    from directpo.arguments import config_file

    assert config_file("recipe.yaml", {"beta": 0.25}).beta == 0.25  # (a keyword over the file)


def test_precision_and_rank_refusals_name_the_options_as_each_caller_gave_them(
    tmp_path, monkeypatch, capsys
) -> None:
    """``--fp16`` was told 'fp16: float16 ... is not supported', ``--use_peft false --lora_r 8``
    'lora_r is set with --use_peft false', ``--lora_r 0 --use_peft`` 'remove lora_r ... or
    use_peft', ``--dtype float16 --bf16`` 'dtype: float16 with bf16: true ... remove dtype': a
    recipe's keys to a command line and to Python; each is now named as it was given (the
    recipe's words unchanged)."""
    monkeypatch.chdir(tmp_path)
    expected = {
        "flags": [
            "--fp16: float16 mixed precision is not supported",
            "--dtype float16 with --bf16: float16 is not supported (its narrow range needs a "
            "loss scaler); remove --dtype float16 (--bf16 means --dtype bfloat16,",
            "--lora_r 0 with --use_peft: an adapter of rank 0 trains nothing (peft refuses it); "
            "remove --lora_r 0 for rank 16 (TRL's default), or --use_peft to train",
        ],
        "python": [
            "fp16=True: float16 mixed precision is not supported",
            "dtype='float16' with bf16=True: float16 is not supported (its narrow range needs a "
            "loss scaler); remove dtype='float16' (bf16=True means dtype='bfloat16',",
            "lora_r=0 with use_peft=True: an adapter of rank 0 trains nothing (peft refuses it); "
            "remove lora_r=0 for rank 16 (TRL's default), or use_peft=True to train",
        ],
        "recipe": [
            "fp16: float16 mixed precision is not supported",
            "dtype: float16 with bf16: true: float16 is not supported (its narrow range needs a "
            "loss scaler); remove dtype (bf16: true means dtype: bfloat16,",
            "lora_r: 0 with use_peft: true: an adapter of rank 0 trains nothing (peft refuses "
            "it); remove lora_r for rank 16 (TRL's default), or use_peft to train",
        ],
    }
    flags = ["--fp16", "--dtype", "float16", "--bf16", "--lora_r", "0", "--use_peft"]
    assert main(["train", "--model_name_or_path", "./m", "--output_dir", "o", *flags]) == 2
    said = {"flags": capsys.readouterr().err}
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", fp16=True, dtype="float16", bf16=True, lora_r=0,
                  use_peft=True)  # fmt: skip
    said["python"] = str(refused.value)
    Path("r.yaml").write_text("fp16: true\ndtype: float16\nbf16: true\nlora_r: 0\nuse_peft: true\n")
    with pytest.raises(ConfigError) as refused:
        load_config("r.yaml")
    said["recipe"] = str(refused.value)
    for caller_, lines in expected.items():
        assert all(line in said[caller_] for line in lines), (caller_, said[caller_])
    assert (
        main(["train", "--model_name_or_path", "./m", "--use_peft", "false", "--lora_r", "8"]) == 2
    )
    assert "--lora_r 8 is set with --use_peft false: remove one" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"^lora_r=8 is set with use_peft=False: remove one"):
        DPOConfig(model_name_or_path="m", use_peft=False, lora_r=8)


def test_contradicting_and_unsupported_values_are_named_as_each_caller_gave_them(
    tmp_path, monkeypatch, capsys
) -> None:
    """``--optim adamw_torch --optimizer rmsprop`` was told 'optim: adamw_torch contradicts
    optimizer: rmsprop', ``--save_strategy best`` 'save_strategy: best is not supported' and
    ``--dataset_streaming true`` 'dataset_streaming: true reads only ...': a recipe's lines to
    a command line and to Python, which now read their own spelling."""
    monkeypatch.chdir(tmp_path)
    options = {"save_strategy": "best", "optim": "adamw_torch", "optimizer": "rmsprop"}
    options["dataset_streaming"] = True
    flags = [t for k, v in options.items() for t in (f"--{k}", str(v).lower())]
    assert main(["train", "--model_name_or_path", "./m", "--output_dir", "o", *flags]) == 2
    said = capsys.readouterr().err
    for line in (
        "--optim adamw_torch contradicts --optimizer rmsprop",
        "--save_strategy best is not supported: --load_best_model_at_end writes",
        "--dataset_streaming reads only the rows max_steps trains on: give --max_steps",
    ):
        assert f"  {line}" in said, said
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", train_file="x.jsonl", **options)
    for line in (
        "optim='adamw_torch' contradicts optimizer='rmsprop'",
        "save_strategy='best' is not supported: load_best_model_at_end=True writes",
        "dataset_streaming=True reads only the rows max_steps trains on: pass max_steps=...",
    ):
        assert f"  {line}" in str(refused.value), str(refused.value)


def test_precision_and_round_values_are_named_as_each_caller_gave_them(capsys) -> None:
    """``--dtype auto``, ``--weight_decay 0.1`` beside ``--master_weights bfloat16`` and
    ``--dataloader_drop_last true`` beside ``--online true`` were told in a recipe's words
    ('dtype: auto is not supported', 'weight_decay: 0.1 with master_weights: bfloat16', 'set it
    false'); a command line and Python now read their own."""
    flags = ["--dtype", "auto", "--dataloader_drop_last", "true", "--online", "true"]
    assert main(["train", "--model_name_or_path", "./m", *flags, "--reward_fn", "len"]) == 2
    said = capsys.readouterr().err
    assert "  --dtype auto is not supported: choose bfloat16" in said, said
    assert "  --dataloader_drop_last with --online: a round trains every pair it found " in said
    assert "give --dataloader_drop_last false" in said
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", dtype="bfloat16", master_weights="bfloat16",
                  optimizer="adamw_kahan", weight_decay=0.1)  # fmt: skip
    assert str(refused.value).startswith(
        "weight_decay=0.1 with master_weights='bfloat16' does nothing"
    ) and str(refused.value).endswith("or weight_decay=0")


# (option values, then what a recipe, a command line and Python are told): each opened with a
# recipe's 'key: value' (or 'set ...') whoever called
MAPPING_AND_LIST_REFUSALS = [
    (
        {"loss_type": "orpo", "f_divergence_type": "js_divergence"},
        "f_divergence_type: js_divergence applies to",
        "--f_divergence_type js_divergence applies to",
        "f_divergence_type='js_divergence' applies to",
    ),
    (
        {"use_liger_kernel": True, "liger_kernel_config": {"fused_linear_cross_entropy": True}},
        "liger_kernel_config: fused_linear_cross_entropy must be false (",
        "fused_linear_cross_entropy in --liger_kernel_config must be false (",
        "liger_kernel_config['fused_linear_cross_entropy'] must be False (",
    ),
    (
        {"generation_kwargs": {"top_p": 0.5}},
        "generation_kwargs: top_p is set by directpo's own options: use generate_top_p",
        "top_p in --generation_kwargs is set by directpo's own options: use --generate_top_p",
        "generation_kwargs['top_p'] is set by directpo's own options: use generate_top_p=...",
    ),
    (
        {"generation_kwargs": {"stop_strings": ["x"]}},
        "generation_kwargs: stop_strings is not supported",
        "stop_strings in --generation_kwargs is not supported",
        "generation_kwargs['stop_strings'] is not supported",
    ),
    (
        {"online": True, "reward_fn": "len", "reward_weights": [1.0, 2.0]},
        "reward_weights: [1.0, 2.0] gives 2 weights for 1 labeller (reward_fn): give one",
        "--reward_weights 1.0,2.0 gives 2 weights for 1 labeller (--reward_fn): give one",
        "reward_weights=[1.0, 2.0] gives 2 weights for 1 labeller (reward_fn=...): give one",
    ),
    (
        {"gradient_checkpointing_kwargs": {"preserve_rng_state": False}},
        "gradient_checkpointing_kwargs: {preserve_rng_state: false} is not supported: only",
        "--gradient_checkpointing_kwargs '{preserve_rng_state: false}' is not supported: only",
        "gradient_checkpointing_kwargs={'preserve_rng_state': False} is not supported: only",
    ),
    (
        {"report_to": "comet_ml"},
        "report_to: comet_ml is a transformers tracker",
        "--report_to comet_ml: comet_ml is a transformers tracker",
        "report_to='comet_ml': comet_ml is a transformers tracker",
    ),
    (
        {"report_to": ["none", "wandb"]},
        "report_to: none cannot be combined",
        "--report_to none,wandb: none cannot be combined",
        "report_to=['none', 'wandb']: 'none' cannot be combined",
    ),
    (
        {"report_to": "off"},
        "report_to: 'off' is written none (no tracker)",
        "--report_to off is written none (no tracker)",
        "report_to='off' is written 'none' (no tracker)",
    ),
]


def _as_flags(options: dict) -> list[str]:
    import yaml

    def text(value: object) -> str:
        if isinstance(value, dict):
            return yaml.safe_dump(value, default_flow_style=True).strip()
        if isinstance(value, list):
            return ",".join(map(str, value))
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [token for key, value in options.items() for token in (f"--{key}", text(value))]


@pytest.mark.parametrize(("options", "recipe", "flags", "python"), MAPPING_AND_LIST_REFUSALS)
def test_mapping_and_list_refusals_name_the_option_as_each_caller_gave_it(
    tmp_path, monkeypatch, capsys, options, recipe, flags, python
) -> None:
    """f_divergence_type, liger_kernel_config, generation_kwargs, reward_weights,
    gradient_checkpointing_kwargs and report_to refusals opened with a recipe's 'key: value'
    for a command line and Python too ('generation_kwargs: top_p ... use generate_top_p')."""
    import yaml

    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"model_name_or_path": "m", **options}))
    said = {"recipe": _cli(capsys, "train", "r.yaml")}
    said["flags"] = _cli(capsys, "train", "--model_name_or_path", "m", *_as_flags(options))
    with pytest.raises(ConfigError) as refused:
        DPOConfig(model_name_or_path="m", **options)
    said["python"] = str(refused.value)
    for caller_name, wanted in (("recipe", recipe), ("flags", flags), ("python", python)):
        assert wanted in said[caller_name], (caller_name, said[caller_name])


# a refusal's "remove X", each as (options, a recipe's words, a command line's, Python's; a
# line's end as \n): the recipe's bare key was said to a command line's user and to Python
REMOVALS = [
    (
        {"loss_type": ["simpo"], "ld_alpha": 0.5},
        "leave length out); remove ld_alpha\n",
        "leave length out); remove --ld_alpha 0.5\n",
        "leave length out); remove ld_alpha=0.5\n",
    ),
    (
        {"loss_type": ["aot"], "per_device_train_batch_size": 2, "auto_find_batch_size": True},
        "mid-run; remove auto_find_batch_size\n",
        "mid-run; remove --auto_find_batch_size\n",
        "mid-run; remove auto_find_batch_size=True\n",
    ),
    (
        {"sync_ref_model": True, "ref_model_name_or_path": "r"},
        "starts as the policy; remove ref_model_name_or_path\n",
        "starts as the policy; remove --ref_model_name_or_path r\n",
        "starts as the policy; remove ref_model_name_or_path='r'\n",
    ),
    (
        {"dataset_train_split": "train_prefs"},
        "dataset_train_split: train_prefs picks a split of dataset_name (a dataset folder or hub "
        "id), but train_file p.jsonl is a data file, without splits: remove dataset_train_split "
        "(its",
        "--dataset_train_split train_prefs picks a split of dataset_name (a dataset folder or hub "
        "id), but train_file p.jsonl is a data file, without splits: remove "
        "--dataset_train_split train_prefs (its",
        "dataset_train_split='train_prefs' picks a split of dataset_name (a dataset folder or hub "
        "id), but train_file p.jsonl is a data file, without splits: remove "
        "dataset_train_split='train_prefs' (its",
    ),
]

SPELLINGS = {
    "recipe": Caller(Spelling.RECIPE, Entry.TRAIN, "r.yaml"),
    "flags": Caller(Spelling.FLAGS, Entry.TRAIN),
    "python": PYTHON_TRAIN,
}


@pytest.mark.parametrize(("options", "recipe", "flags", "python"), REMOVALS)
def test_an_option_to_remove_is_named_as_each_caller_gave_it(
    tmp_path, monkeypatch, capsys, options, recipe, flags, python
) -> None:
    """'remove ld_alpha' (a recipe's key) was said to ``--ld_alpha 0.5`` and to
    ``ld_alpha=0.5``: each caller is told to remove the option as it gave it."""
    import yaml

    monkeypatch.chdir(tmp_path)
    run = {"model_name_or_path": "m", "train_file": "p.jsonl"}
    Path("r.yaml").write_text(yaml.safe_dump({**run, **options}))
    with pytest.raises(ConfigError) as from_recipe:
        load_config("r.yaml")
    with pytest.raises(ConfigError) as from_python:
        DPOConfig(**run, **options)
    argv = [t for k, v in {**run, **options}.items() for t in (f"--{k}", flag_text(v))]
    said = {
        "recipe": str(from_recipe.value),
        "flags": _cli(capsys, "train", *argv),
        "python": str(from_python.value),
    }
    said = {name: f"{text}\n" for name, text in said.items()}  # (each line ends so)
    wanted = {"recipe": recipe, "flags": flags, "python": python}
    for name, line in wanted.items():
        assert line in said[name], (name, said[name])
        assert not any(other in said[name] for other in set(wanted.values()) - {line})


def flag_text(value: object) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def test_an_option_a_run_check_says_to_remove_is_named_as_each_caller_gave_it(tmp_path) -> None:
    """The checks before a model loads (nothing to evaluate, a CUDA kernel off CUDA, LoRA
    options beside an adapter folder) said a recipe's key to every caller: 'remove
    eval_steps', 'remove use_liger_kernel', 'remove lora_r'."""
    from directpo.device_checks import check_device
    from directpo.eval_checks import check_evaluation
    from directpo.preflight import _check_models

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "b"}')
    config = DPOConfig(model_name_or_path=str(adapter), lora_r=8, eval_steps=5)
    config.use_liger_kernel = True  # (set after: its own checks are not the ones read here)
    removed = {
        "recipe": ("eval_steps", "use_liger_kernel", "lora_r"),
        "flags": ("--eval_steps 5", "--use_liger_kernel", "--lora_r 8"),
        "python": ("eval_steps=5", "use_liger_kernel=True", "lora_r=8"),
    }
    for name, (steps, liger, rank) in removed.items():
        with called_by(SPELLINGS[name]):
            with pytest.raises(ConfigError, match=rf"\(sampled completions\), or remove {steps}$"):
                check_evaluation(config, eval_dataset_given=False)
            with pytest.raises(ConfigError, match=rf"this run is on cpu; remove {liger}$"):
                check_device(config, "cpu")
            with pytest.raises(ConfigError, match=rf"continues that adapter; remove {rank} \("):
                _check_models(config, [])


def test_score_rank_and_generate_options_built_in_python_are_told_keywords(files, capsys) -> None:
    """ScoreOptions(...) / RankOptions(...) / GenerateOptions(...) built in Python, and
    score_file / rank_file given them, were told the commands' flags ('give
    --ref_model_name_or_path and --beta', 'set temperature > 0'), or train's recipe
    ('implicit_reward_model takes a folder directpo train wrote') beside a refused value:
    each is told its keywords now, and the command line its flags as before."""
    from directpo.command_options import GenerateOptions, RankOptions, ScoreOptions
    from directpo.reward_files import rank_file, score_file

    model, pairs, out = files["model"], files["pairs"], files["out"]
    keywords = (
        "has no config.yaml from a directpo run: pass ref_model_name_or_path=... and beta=..."
    )
    flags = "has no config.yaml from a directpo run: give --ref_model_name_or_path and --beta"
    for options, command in ((ScoreOptions, score_file), (RankOptions, rank_file)):
        built = {"model_name_or_path": model, "input": pairs, "output": out}
        for extra, asked in (  # (beside a value refused, and a name)
            ({"beta": -1.0}, keywords.removesuffix(" and beta=...")),
            ({"output_file": "x.jsonl"}, keywords),
        ):
            with pytest.raises(ConfigError) as refused:
                options(**built, **extra)
            assert f"{asked}\n" in f"{refused.value}\n", str(refused.value)  # (a line's end)
        with pytest.raises(ConfigError) as refused:
            command(options(**built))
        assert f"{keywords}\n" in f"{refused.value}\n", str(refused.value)
        name = "score" if options is ScoreOptions else "rank"
        argv = ["--model_name_or_path", model, "--input", pairs, "--output", out]
        assert flags in _cli(capsys, name, *argv)
    greedy = {"model_name_or_path": model, "input": pairs, "temperature": 0.0, "top_p": 0.5}
    with pytest.raises(ConfigError) as refused:
        GenerateOptions(**greedy)
    assert str(refused.value).endswith("drop it or pass temperature=... above 0")
    argv = [t for k, v in greedy.items() for t in (f"--{k}", str(v))]
    assert _cli(capsys, "generate", *argv).endswith("drop it or give --temperature above 0")
    assert caller() == UNCALLED


def test_liger_kernels_missing_at_load_are_removed_as_each_caller_gave_them(monkeypatch) -> None:
    """liger-kernel not importable when the model loads said 'remove use_liger_kernel' (a
    recipe's key) to ``--use_liger_kernel`` and to ``use_liger_kernel=True`` too."""
    import sys

    from directpo.model_preparation import apply_liger_kernels

    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", None)
    for name, removed in (
        ("recipe", "use_liger_kernel"),
        ("flags", "--use_liger_kernel"),
        ("python", "use_liger_kernel=True"),
    ):
        with called_by(SPELLINGS[name]), pytest.raises(ConfigError) as refused:
            apply_liger_kernels(object(), {})  # type: ignore[arg-type]
        assert str(refused.value).endswith(f"pip install liger-kernel, or remove {removed}")


@pytest.mark.parametrize(
    ("spelling", "tracker", "kernel", "thinking"),
    [
        (Spelling.RECIPE, "report_to: wandb is not installed: pip install nothing_here, or "
         "choose another tracker, or set report_to: none", "attn_implementation: "
         "flash_attention_2 runs", "set by chat_template_kwargs: {enable_thinking: false} or a "
         "row's own chat_template_kwargs), so no reply can think after it: to train replies "
         "that reason, drop enable_thinking false (or set it true); to train"),
        (Spelling.FLAGS, "--report_to wandb: wandb is not installed: pip install nothing_here, "
         "or choose another tracker, or give --report_to none", "--attn_implementation "
         "flash_attention_2 runs", "set by --chat_template_kwargs '{enable_thinking: false}' "
         "or a row's own chat_template_kwargs), so no reply can think after it: to train "
         "replies that reason, drop enable_thinking false (or set it true); to train"),
        (Spelling.PYTHON, "report_to=['wandb']: 'wandb' is not installed: pip install "
         "nothing_here, or choose another tracker, or pass report_to='none'",
         "attn_implementation='flash_attention_2' runs", "set by chat_template_kwargs="
         "{'enable_thinking': False} or a row's own chat_template_kwargs), so no reply can think "
         "after it: to train replies that reason, drop enable_thinking false (or set it True); "
         "to train"),
    ],
)  # fmt: skip
def test_a_tracker_a_kernel_and_a_closed_think_block_are_said_as_each_caller_writes_options(
    monkeypatch, spelling, tracker, kernel, thinking
) -> None:
    """'report_to: 'wandb' is not installed', 'attn_implementation: flash_attention_2 runs on
    CUDA only' and a closed think block's '(chat_template_kwargs enable_thinking: false) ...
    drop enable_thinking: false' were a recipe's words for every caller; score, rank and
    generate (which have no such option) are told the rows' and the run's config.yaml."""
    import directpo.config
    from directpo.chat_split import split_rendered
    from directpo.device_checks import check_device
    from directpo.preflight import _check_trackers
    from directpo.readers import RowError

    monkeypatch.setitem(directpo.config.TRACKER_MODULES, "wandb", "nothing_here")
    config = DPOConfig(model_name_or_path="m", attn_implementation="flash_attention_2",
                       report_to=["wandb"])  # fmt: skip
    reasoning = [{"role": "assistant", "content": "<think>add</think>4"}]

    def closed(who: Caller) -> str:  # a prompt ending in an empty think block (Qwen3's)
        with called_by(who), pytest.raises(RowError) as refused:
            split_rendered(lambda _: "U: 2+2\nA: <think>add</think>4", [], reasoning,
                           "U: 2+2\nA: <think></think>")  # fmt: skip
        return refused.value.message

    with called_by(Caller(spelling, Entry.TRAIN)):
        problems: list[str] = []
        _check_trackers(config, problems)
        assert problems == [tracker]
        with pytest.raises(ConfigError) as refused:
            check_device(config, "cpu")
        assert str(refused.value).startswith(f"{kernel} on CUDA only"), str(refused.value)
    assert f"empty <think></think> ({thinking} without" in closed(Caller(spelling, Entry.TRAIN))
    assert "so no reply can think after it: to train replies that reason" in closed(
        Caller(spelling, Entry.TRAIN)
    )
    for entry in (Entry.FOLDER, Entry.IMPLICIT_REWARD):  # (score, rank: told 'to train')
        said = closed(Caller(spelling, entry))
        assert (
            "(enable_thinking false, set by a row's chat_template_kwargs or the run's config.yaml)"
            in said
        )
        assert "to score replies that reason" in said and "train" not in said, said


def test_what_lowers_a_steps_memory_is_said_as_each_caller_sets_options() -> None:
    """A step out of memory was told 'set gradient_checkpointing: true, ..., lora_r: 16' (a
    recipe's keys) whoever called; the set-up's 'train LoRA adapters (lora_r: 16; ...' too."""
    from directpo.failures import memory_knobs, setup_out_of_memory

    config = DPOConfig(model_name_or_path="m")
    for spelling, said in (
        (Spelling.RECIPE, "set gradient_checkpointing: true, activation_offloading: true, "
         "precompute_ref_log_probs: true, lora_r: 16, or a smaller"),
        (Spelling.FLAGS, "give --gradient_checkpointing, --activation_offloading, "
         "--precompute_ref_log_probs, --lora_r 16, or a smaller"),
        (Spelling.PYTHON, "pass gradient_checkpointing=True, activation_offloading=True, "
         "precompute_ref_log_probs=True, lora_r=16, or a smaller"),
    ):  # fmt: skip
        with called_by(Caller(spelling, Entry.TRAIN)):
            assert memory_knobs(config, lora=False).startswith(said)
            lora = said.split(", ")[-2]  # (lora_r: 16, --lora_r 16, lora_r=16)
            # (load_in_4bit as the first knob is said: load_in_4bit: true, --load_in_4bit, ...)
            first = said.split(", ")[0].split(" ", 1)[1]
            quantized = first.replace("gradient_checkpointing", "load_in_4bit")
            stopped = setup_out_of_memory(RuntimeError("CUDA error: out of memory"), config)
            assert f"train LoRA adapters ({lora}; {quantized} on a GPU)" in str(stopped)


def test_a_step_out_of_memory_and_a_nondeterministic_op_are_said_as_each_caller_sets_options():
    """A step out of memory said 'auto_find_batch_size: true does it' (a recipe's key) beside
    '--gradient_checkpointing' or 'gradient_checkpointing=True'; an op full_determinism has no
    kernel for said 'set full_determinism: false' to every caller."""
    import types

    from directpo.distributed import SINGLE_PROCESS
    from directpo.errors import TrainingStopped
    from directpo.failures import explain_failures

    config = DPOConfig(model_name_or_path="m")
    run = types.SimpleNamespace(
        config=config, start_step=0, eval_float32=False, policy=object(), world=SINGLE_PROCESS
    )
    for spelling, auto, determinism, batch in (
        (Spelling.RECIPE, "auto_find_batch_size: true", "set full_determinism: false",
         "lower per_device_train_batch_size (raise gradient_accumulation_steps"),
        (Spelling.FLAGS, "--auto_find_batch_size", "give --full_determinism false",
         "lower --per_device_train_batch_size (raise --gradient_accumulation_steps"),
        (Spelling.PYTHON, "auto_find_batch_size=True", "pass full_determinism=False",
         "pass a lower per_device_train_batch_size=... (pass a higher "
         "gradient_accumulation_steps=..."),
    ):  # fmt: skip
        with called_by(Caller(spelling, Entry.TRAIN)):
            said = []
            for error in (
                RuntimeError("CUDA error: out of memory"),
                RuntimeError("index_add_cuda_ does not have a deterministic implementation"),
            ):
                with pytest.raises(TrainingStopped) as stopped, explain_failures(run):
                    raise error
                said.append(str(stopped.value))
        assert said[0].startswith(
            f"out of GPU memory at step 1: {batch} to keep the batch; {auto} does it), "
            + determinism.split(" ")[0]  # (set, give, pass)
            + " "
            + auto.replace("auto_find_batch_size", "gradient_checkpointing")
        ), said[0]
        assert said[1] == (
            "step 1: full_determinism: index_add_cuda_ has no deterministic implementation on "
            f"this device (torch.use_deterministic_algorithms); {determinism}"
        )


def _refused_line(check) -> str:
    try:
        check()
    except Exception as error:  # noqa: BLE001 (each check's own error class)
        return str(error)
    raise AssertionError("not refused")


def _launcher_fsdp(monkeypatch) -> str:
    from directpo.launchers import launcher_mode

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_OFFLOAD_PARAMS", "true")
    return _refused_line(lambda: launcher_mode("auto", False))


def _launcher_bf16(monkeypatch) -> str:
    import torch

    from directpo.launchers import check_launcher_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    return _refused_line(lambda: check_launcher_precision(torch.float32))


def _custom_code(monkeypatch) -> str:
    from directpo.models import _load_hint

    class Options:
        trust_remote_code = False

    return _load_hint(ValueError("requires you to execute custom code"), Options(), None)


# (each was said in a recipe's words to every caller: 'set fsdp_offload: true', 'bf16: true',
# 'allow its code with trust_remote_code: true', to a flag's and a keyword's user)
HARD_CODED_SETTINGS = [
    (
        _launcher_fsdp,
        "offload_params: set fsdp_offload: true (with distributed: fsdp)",
        "offload_params: give --fsdp_offload (with --distributed fsdp)",
        "offload_params: pass fsdp_offload=True (with distributed='fsdp')",
    ),
    (
        _launcher_bf16,
        "in float32: set bf16: true, or",
        "in float32: give --bf16, or",
        "in float32: pass bf16=True, or",
    ),
    (
        _custom_code,
        "; allow its code: set trust_remote_code: true",
        "; allow its code: give --trust_remote_code",
        "; allow its code: pass trust_remote_code=True",
    ),
]


@pytest.mark.parametrize(("said", "recipe", "flags", "python"), HARD_CODED_SETTINGS)
def test_a_settings_fix_written_in_one_callers_words_is_each_callers(
    said, recipe, flags, python, monkeypatch
) -> None:
    """A fix that hard-coded a recipe's ``key: true`` reads as each caller sets it."""
    for spelling, expected in (
        (Spelling.RECIPE, recipe),
        (Spelling.FLAGS, flags),
        (Spelling.PYTHON, python),
    ):
        with speaking_as(Caller(spelling, Entry.TRAIN)):
            line = said(monkeypatch)
        assert expected in line, (spelling, line)


# a fix said after the options' checks (while training, at a launch, in a start note), as
# (what a recipe's user reads, a command line's, a Python caller's)
RUN_TIME_FIXES = {
    "guard": (
        "set master_weights: float32 or optimizer: adamw_kahan",
        "give --master_weights float32 or --optimizer adamw_kahan",
        "pass master_weights='float32' or optimizer='adamw_kahan'",
    ),
    "checkpointing": (
        "set gradient_checkpointing_every: 1",
        "give --gradient_checkpointing_every 1",
        "pass gradient_checkpointing_every=1",
    ),
    "launch": (
        "distributed: none, but the launcher started 2 processes; set distributed: ddp (or "
        "fsdp, or auto)",
        "--distributed none, but the launcher started 2 processes; give --distributed ddp (or "
        "fsdp, or auto)",
        "distributed='none', but the launcher started 2 processes; pass distributed='ddp' (or "
        "'fsdp', or 'auto')",
    ),
    "fsdp": (
        "distributed: fsdp: Linear names no transformer block class (_no_split_modules); set "
        "distributed: ddp",
        "--distributed fsdp: Linear names no transformer block class (_no_split_modules); give "
        "--distributed ddp",
        "distributed='fsdp': Linear names no transformer block class (_no_split_modules); pass "
        "distributed='ddp'",
    ),
    "notes": (
        "warning: master_weights: bfloat16 with optimizer: adamw: updates below 1/256 of a "
        "weight are rounded away; optimizer: adamw_kahan keeps them",
        "warning: --master_weights bfloat16 with --optimizer adamw: updates below 1/256 of a "
        "weight are rounded away; --optimizer adamw_kahan keeps them",
        "warning: master_weights='bfloat16' with optimizer='adamw': updates below 1/256 of a "
        "weight are rounded away; optimizer='adamw_kahan' keeps them",
    ),
}


def _run_time_refusal(kind: str, monkeypatch) -> str:
    import torch

    from directpo.data_parallel import wrap
    from directpo.errors import DirectpoError
    from directpo.guard import UpdateStats, check_update
    from directpo.model_preparation import enable_activation_checkpointing
    from directpo.process_group import World, setup
    from directpo.start_notes import start_notes

    if kind == "notes":
        config = DPOConfig(dtype="bfloat16", master_weights="bfloat16", optimizer="adamw")
        return "\n".join(start_notes(config, 4, lora=False))

    class Block(torch.nn.Module):  # (a block transformers gives no per-layer switch)
        pass

    class Model(torch.nn.Module):
        _no_split_modules = ["Block"]

        def __init__(self) -> None:
            super().__init__()
            self.config = SimpleNamespace(use_cache=True)
            self.blocks = torch.nn.ModuleList([Block(), Block()])

        def gradient_checkpointing_enable(self, **_: object) -> None:
            pass

    stuck = UpdateStats(changed=0, movable=100, ratio=0.0)
    refusals = {
        "guard": lambda: check_update(stuck, 3, 1e-6, 1.0, 0.69, torch.bfloat16, "adamw"),
        "checkpointing": lambda: enable_activation_checkpointing(Model(), every=2),
        "launch": lambda: setup("none"),
        "fsdp": lambda: wrap(
            type("Scorer", (), {"model": torch.nn.Linear(2, 2)})(), World(mode="fsdp"), None
        ),
    }
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(DirectpoError) as err:
        refusals[kind]()
    return str(err.value)


@pytest.mark.parametrize("kind", sorted(RUN_TIME_FIXES))
def test_a_fix_said_while_running_is_worded_as_each_caller_sets_options(
    kind: str, monkeypatch
) -> None:
    """A bf16 run whose updates vanished, gradient_checkpointing_every on a model without a
    per-layer switch, distributed: none under a launcher of 2, FSDP of a model without blocks
    and the master_weights: bfloat16 start note said a recipe's 'use master_weights: float32'
    (YAML) to a flag's and a keyword's user too; each now reads its own spelling."""
    wanted = dict(zip(Spelling, RUN_TIME_FIXES[kind], strict=True))
    for spelling, said in wanted.items():
        with called_by(Caller(spelling, Entry.TRAIN)):
            line = _run_time_refusal(kind, monkeypatch)
        assert said in line, (spelling, line)
        assert not any(other in line for other in set(wanted.values()) - {said}), line


def test_a_null_seeds_resume_from_a_checkpoint_without_one_is_told_per_caller(
    tmp_path, monkeypatch
) -> None:
    """seed: null resumed from a checkpoint that records no seed was told "seed: null: ...:
    give the run's seed" whoever called (a flag's verb to a recipe's user, YAML's null to a
    Python caller's seed=None); each now reads its own spelling."""
    from directpo import resume
    from directpo.process_group import SINGLE_PROCESS

    checkpoint = tmp_path / "checkpoint-1"
    checkpoint.mkdir()
    (checkpoint / "config.yaml").write_text("beta: 0.1\n")  # (an earlier version's: no seed)
    monkeypatch.setattr(resume, "resolve_checkpoint", lambda *args: checkpoint)
    config = DPOConfig(seed=None, resume_from_checkpoint=str(checkpoint))
    wanted = {
        Spelling.RECIPE: ("seed: null: ", "; set seed: N, the seed the run trained with"),
        Spelling.FLAGS: ("--seed null: ", "; give --seed N, the seed the run trained with"),
        Spelling.PYTHON: ("seed=None: ", "; pass seed=N, the seed the run trained with"),
    }
    for spelling, (lead, fix) in wanted.items():
        with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(ConfigError) as refused:
            resume.run_seed(config, SINGLE_PROCESS, lambda line: None)
        assert str(refused.value) == f"{lead}{checkpoint} records no seed to resume with{fix}"


# a fix that names an option without its value ("raise max_length", "set max_steps", "set
# skip_invalid_rows"), as (a recipe's user reads it, a command line's, a Python caller's):
# each was a recipe's words to every caller (callers.spell_change)
VALUE_CHANGES = {
    "truncation": (
        "which are the same; raise max_length, lower max_prompt_length, or set "
        "skip_invalid_rows: true to drop such rows",
        "which are the same; raise --max_length, lower --max_prompt_length, or give "
        "--skip_invalid_rows to drop such rows",
        "which are the same; pass a higher max_length=..., pass a lower max_prompt_length=..., "
        "or pass skip_invalid_rows=True to drop such rows",
    ),
    "warmup": (
        "reaches at most 75% of learning_rate; lower warmup_steps / warmup_ratio",
        "reaches at most 75% of learning_rate; lower --warmup_steps / --warmup_ratio",
        "reaches at most 75% of learning_rate; pass a lower warmup_steps=... / warmup_ratio=...",
    ),
    "vanished": (
        "can represent; raise learning_rate (DPO's usual range",
        "can represent; raise --learning_rate (DPO's usual range",
        "can represent; pass a higher learning_rate=... (DPO's usual range",
    ),
    "stream": (
        "(an endless one never ends: set max_steps)",
        "(an endless one never ends: give --max_steps)",
        "(an endless one never ends: pass max_steps=...)",
    ),
    "eval_delay": (
        "no evaluation in this run (6 steps); lower eval_delay to evaluate after fewer steps",
        "no evaluation in this run (6 steps); lower --eval_delay to evaluate after fewer steps",
        "no evaluation in this run (6 steps); pass a lower eval_delay=... to evaluate after "
        "fewer steps",
    ),
    "memory": (
        "lora_r: 16, or a smaller max_length / logprob_chunk_tokens",
        "--lora_r 16, or a smaller --max_length / --logprob_chunk_tokens",
        "lora_r=16, or a smaller max_length=... / logprob_chunk_tokens=...",
    ),
    # a resume's refusal led with 'resume_from_checkpoint: latest:' for every caller
    "resume": (
        "resume_from_checkpoint: latest: no checkpoint in {out} to resume; set "
        "resume_from_checkpoint: null to start a new run",
        "--resume_from_checkpoint latest: no checkpoint in {out} to resume; give "
        "--resume_from_checkpoint null to start a new run",
        "resume_from_checkpoint='latest': no checkpoint in {out} to resume; pass "
        "resume_from_checkpoint=None to start a new run",
    ),
    "configs": (
        "cannot load (Config name is missing; it has ['en', 'de']); set dataset_config",
        "cannot load (Config name is missing; it has ['en', 'de']); give --dataset_config",
        "cannot load (Config name is missing; it has ['en', 'de']); pass dataset_config=...",
    ),
    # (and the way on after a failed write or a stop: 'resume_from_checkpoint: latest' too)
    "kept": (
        "(newest checkpoint-2): make room, then resume with resume_from_checkpoint: latest",
        "(newest checkpoint-2): make room, then resume with --resume_from_checkpoint latest",
        "(newest checkpoint-2): make room, then resume with resume_from_checkpoint='latest'",
    ),
}


def _value_change(kind: str, out: Path) -> str:
    import torch

    from directpo.data_sources import dataset_splits
    from directpo.due import no_evaluation
    from directpo.failures import memory_knobs, what_is_kept
    from directpo.guard import UpdateStats, check_update
    from directpo.pair_truncation import PairLimits
    from directpo.resumable import refuse_model_only
    from directpo.start_notes import start_notes
    from directpo.stream_reads import read_whole

    said: list[str] = []
    if kind == "configs":  # (datasets' refusal of a hub dataset of several configurations)
        import datasets

        def refused(*args: object, **kwargs: object) -> None:
            raise ValueError(
                "Config name is missing.\nPlease pick one among the available configs: ['en', 'de']"
            )

        (out / "prefs").mkdir(exist_ok=True)
        with pytest.MonkeyPatch.context() as patched:
            patched.setattr(datasets, "load_dataset", refused)
            with pytest.raises(Exception) as refusal:
                dataset_splits(str(out / "prefs"), None, "dataset_name prefs", "train")
        said.append(str(refusal.value))
    if kind == "warmup":
        said += start_notes(DPOConfig(warmup_steps=4), 4, lora=False)
    elif kind == "stream":
        read_whole(DPOConfig(max_steps=-1), "train_dataset", said.append)
    elif kind == "eval_delay":
        config = DPOConfig(eval_delay=7)
        said.append(no_evaluation(SimpleNamespace(config=config, total_steps=6)))  # type: ignore[arg-type]
    elif kind == "kept":
        (out / "checkpoint-2").mkdir(exist_ok=True)
        said.append(what_is_kept(out))
    elif kind == "memory":
        said.append(memory_knobs(DPOConfig(model_name_or_path="m"), lora=False))
    refusals = {
        "truncation": lambda: PairLimits.of(15, None, None, None).require_distinct(
            14, ([1], [2]), ([1], [1])
        ),
        "vanished": lambda: check_update(
            UpdateStats(changed=0, movable=100, ratio=0.0),
            3,
            1e-6,
            1.0,
            0.69,
            torch.float32,
            "adamw",
        ),
        "resume": lambda: refuse_model_only("latest", out),
    }
    if kind in refusals:
        with pytest.raises(Exception) as refused:  # (a RowError, a DirectpoError)
            refusals[kind]()
        said.append(str(refused.value))
    return "\n".join(said)


@pytest.mark.parametrize("kind", sorted(VALUE_CHANGES))
def test_a_fix_that_leaves_the_value_to_the_user_is_worded_as_each_caller_sets_options(
    kind: str, tmp_path
) -> None:
    """'raise max_length', 'set skip_invalid_rows', 'lower warmup_steps / warmup_ratio', 'set
    max_steps' named a recipe's key to a flag's and a keyword's user too (and a resume's
    refusal led with 'resume_from_checkpoint: latest:'); each now reads its own spelling."""
    wanted = dict(
        zip(Spelling, [text.format(out=tmp_path) for text in VALUE_CHANGES[kind]], strict=True)
    )
    for spelling, said in wanted.items():
        with called_by(Caller(spelling, Entry.TRAIN)):
            line = _value_change(kind, tmp_path)
        assert said in line, (spelling, line)
        assert not any(other in line for other in set(wanted.values()) - {said}), line


def test_a_resume_given_as_a_flag_beside_a_recipe_is_refused_in_the_flags_words(
    files, tmp_path, capsys
) -> None:
    """``directpo train recipe.yaml --resume_from_checkpoint latest`` (as TRL's and
    transformers' users resume) in a folder of no checkpoint was told the recipe's
    'resume_from_checkpoint: latest: ...; set resume_from_checkpoint: null', keys its file
    does not hold; the flag's user reads the flag's words, the recipe's its keys."""
    import yaml

    recipe = tmp_path / "recipe.yaml"
    run = {"model_name_or_path": files["model"], "train_file": files["pairs"]}
    recipe.write_text(yaml.safe_dump({**run, "output_dir": "fresh"}))
    said = _cli(capsys, "train", str(recipe), "--resume_from_checkpoint", "latest")
    assert said == (
        "--resume_from_checkpoint latest: no checkpoint in fresh to resume; give "
        "--resume_from_checkpoint null to start a new run"
    )
    recipe.write_text(
        yaml.safe_dump({**run, "output_dir": "fresh", "resume_from_checkpoint": True})
    )
    said = _cli(capsys, "train", str(recipe))
    assert said == (
        "resume_from_checkpoint: latest: no checkpoint in fresh to resume; set "
        "resume_from_checkpoint: null to start a new run"
    )


@pytest.mark.parametrize(
    ("given", "said"),
    [
        # (flag words typed apart were said 'sigmod,sft'; a repeat '[sigmoid, sigmoid]', YAML's
        # list, to a flag's and Python's user too)
        (["--loss_type", "sigmod", "sft"], "(got sigmod sft); did you mean sigmoid sft?"),
        (["--loss_type=sigmod,sft"], "(got sigmod,sft); did you mean sigmoid,sft?"),
        ("loss_type: [sigmod, sft]", "(got [sigmod, sft]); did you mean [sigmoid, sft]?"),
        (
            {"loss_type": ["sigmod", "sft"]},
            "(got ['sigmod', 'sft']); did you mean ['sigmoid', 'sft']?",
        ),  # fmt: skip
        (
            ["--loss_type", "sigmoid", "sigmoid"],
            "loss_type must be without repeats (got sigmoid sigmoid)",
        ),  # fmt: skip
        (["--loss_type", "sigmoid,sigmoid"], "without repeats (got sigmoid,sigmoid)"),
        # (the fix of an unknown word that another word already is: said once, not the
        # 'did you mean sigmoid sigmoid?' that the next run refused as a repeat)
        (["--loss_type", "sigmod", "sigmoid"], "(got sigmod sigmoid); did you mean sigmoid?"),
        (
            "loss_type: [sigmod, sft, sigmoid]",
            "(got [sigmod, sft, sigmoid]); did you mean [sigmoid, sft]?",
        ),  # fmt: skip
        (["--report_to=wandbb,wandb"], "(got wandbb,wandb); did you mean wandb?"),
        ("loss_type: [sigmoid, sigmoid]", "without repeats (got [sigmoid, sigmoid])"),
        ({"loss_type": ["sigmoid", "sigmoid"]}, "without repeats (got ['sigmoid', 'sigmoid'])"),
        ({"loss_type": ("sigmoid", "sigmoid")}, "without repeats (got ('sigmoid', 'sigmoid'))"),
        (
            ["--report_to", "wandbb", "tensorbord"],
            "(got wandbb tensorbord); did you mean wandb tensorboard?",
        ),  # fmt: skip
        (
            "report_to: [wandbb, tensorbord]",
            "(got [wandbb, tensorbord]); did you mean [wandb, tensorboard]?",
        ),  # fmt: skip
        (
            {"report_to": ["wandbb", "tensorbord"]},
            "(got ['wandbb', 'tensorbord']); did you mean ['wandb', 'tensorboard']?",
        ),  # fmt: skip
        ({"loss_type": ["sigmoid", "sft"], "loss_weights": (-1, 2)}, "(got (-1, 2))"),
        (
            ["--online", "--reward_fn", "m:f", "--reward_weights", "1", "2"],
            "--reward_weights 1 2 gives 2 weights for 1 labeller",
        ),  # fmt: skip
        (
            ["--online", "--reward_fn", "m:f", "--reward_weights=1,2"],
            "--reward_weights 1,2 gives 2 weights",
        ),  # fmt: skip
    ],
)
def test_a_list_options_value_is_echoed_as_its_caller_wrote_it(
    given, said, tmp_path, capsys
) -> None:
    """A list option's value in a refusal, as the user wrote it in each caller: a flag's words
    as typed (apart or with commas), a recipe's YAML list, Python's list or tuple."""
    base = {"model_name_or_path": "m", "train_file": "p.jsonl"}
    if isinstance(given, dict):
        with pytest.raises(ConfigError) as refused:
            DPOConfig(**base, **given)
        lines = str(refused.value).splitlines()
    else:
        recipe = tmp_path / "r.yaml"
        recipe.write_text("".join(f"{k}: {v}\n" for k, v in base.items()))
        if isinstance(given, str):
            recipe.write_text(recipe.read_text() + given + "\n")
        assert main(["train", str(recipe), *([] if isinstance(given, str) else given)]) == 2
        lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if said in line] != [], lines
    # (no other spelling of the value beside it: '[sigmoid, sigmoid]' to a flag's user)
    assert not any("[" in line for line in lines if said in line and "[" not in said)
