"""A refused config whose options come from a file and from overrides (a recipe and the flags
after it, ``train("recipe.yaml", **keywords)``) is built once: each option said in the words of
the source that set it, each line headed by the source its problem names. The table pins the
messages (recipe + flags, train()'s keywords, DPOConfig(...), load_config with overrides, a
TRL-style recipe, an unknown key or a missing path beside a checked value)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny import SENTIMENT_PAIRS, write_jsonl

from directpo import DPOConfig, train
from directpo.cli import main
from directpo.config import load_config
from directpo.errors import ConfigError

BASE = "model_name_or_path: m\ntrain_file: pairs.jsonl\n"

# (case, entry, the recipe r.yaml, the flags or keywords, the message's lines)
REFUSALS: list[tuple[str, str, str | None, Any, list[str]]] = [
    (
        "cli_flag_named_by_file_line",
        "cli",
        BASE + "lora_target_modules: [q_proj]\n",
        ["--lora_r", "0"],
        [
            "lora_target_modules is set but lora_r is 0 (no LoRA); give --lora_r 16",
        ],
    ),
    (
        "cli_file_value_under_flag",
        "cli",
        BASE + "eval_dtype: bfloat16\n",
        ["--dtype", "float32"],
        [
            "eval_dtype: bfloat16 under --dtype float32: the run computes in float32 "
            "and so does its evaluation; give --dtype bfloat16 (mixed precision) to "
            "evaluate as bf16 computes",
        ],
    ),
    (
        "cli_each_source_a_line",
        "cli",
        BASE + "beta: -1\n",
        ["--learning_rate", "-1"],
        [
            "2 options cannot be used:",
            "  r.yaml: beta must be > 0 (got -1)",
            "  command line: learning_rate must be > 0 (got -1)",
        ],
    ),
    (
        "cli_only_file_line",
        "cli",
        BASE + "beta: -1\n",
        ["--max_steps", "1"],
        [
            "beta must be > 0 (got -1)",
        ],
    ),
    (
        "cli_only_flag_line",
        "cli",
        BASE,
        ["--beta", "-1"],
        [
            "beta must be > 0 (got -1)",
        ],
    ),
    (
        "cli_unknown_key_beside_flag_value",
        "cli",
        BASE + "bogus_key: 1\n",
        ["--beta", "-1"],
        [
            "2 options cannot be used:",
            "  r.yaml: unknown option 'bogus_key'",
            "  command line: beta must be > 0 (got -1)",
        ],
    ),
    (
        "cli_missing_path_beside_flag_value",
        "cli",
        "model_name_or_path: m\ntrain_file: missing.jsonl\n",
        ["--beta", "-1"],
        [
            "2 options cannot be used:",
            "  command line: beta must be > 0 (got -1)",
            "  r.yaml: train_file: no such file or folder: missing.jsonl",
        ],
    ),
    (
        "cli_trl_recipe",
        "cli",
        "model_name_or_path: m\ndataset_name: pairs.jsonl\nfp16: true\nuse_peft: true\nlora_r: 0\n",
        ["--use_peft", "false"],
        [
            "2 options cannot be used:",
            "  fp16: float16 mixed precision is not supported (its narrow range needs "
            "a loss scaler); use bf16: true (mixed precision in bfloat16) or dtype: "
            "float32",
            "  dataset_name: pairs.jsonl is a file; give it as train_file "
            "(dataset_name reads a dataset folder or a hub id)",
        ],
    ),
    (
        "cli_remove_advice_flag",
        "cli",
        BASE + "use_peft: true\n",
        ["--lora_r", "0"],
        [
            "--lora_r 0 with use_peft: true: an adapter of rank 0 trains nothing "
            "(peft refuses it); remove --lora_r 0 for rank 16 (TRL's default), or "
            "use_peft to train every weight",
        ],
    ),
    (
        "train_keyword_named_by_file_line",
        "train",
        BASE + "lora_target_modules: [q_proj]\n",
        {"lora_r": 0},
        [
            "lora_target_modules is set but lora_r is 0 (no LoRA); pass lora_r=16",
        ],
    ),
    (
        "train_file_value_under_keyword",
        "train",
        BASE + "eval_dtype: bfloat16\n",
        {"dtype": "float32"},
        [
            "eval_dtype: bfloat16 under dtype='float32': the run computes in float32 "
            "and so does its evaluation; pass dtype='bfloat16' (mixed precision) to "
            "evaluate as bf16 computes",
        ],
    ),
    (
        "train_each_source_a_line",
        "train",
        BASE + "beta: -1\n",
        {"learning_rate": -1},
        [
            "2 options cannot be used:",
            "  r.yaml: beta must be > 0 (got -1)",
            "  train(): learning_rate must be > 0 (got -1)",
        ],
    ),
    (
        "train_only_file_line",
        "train",
        BASE + "eval_dtype: bfloat16\ndtype: float32\n",
        {"max_steps": 1},
        [
            "eval_dtype: bfloat16 under dtype: float32: the run computes in float32 "
            "and so does its evaluation; set dtype: bfloat16 (mixed precision) to "
            "evaluate as bf16 computes",
        ],
    ),
    (
        "train_only_keyword_line",
        "train",
        BASE,
        {"beta": -1},
        [
            "beta must be > 0 (got -1)",
        ],
    ),
    (
        "train_unknown_keys_both",
        "train",
        BASE + "bogus_key: 1\n",
        {"other_bogus": 2},
        [
            "2 options cannot be used:",
            "  r.yaml: unknown option 'bogus_key'",
            "  train(): unknown option 'other_bogus'",
        ],
    ),
    (
        "train_unknown_key_beside_keyword_value",
        "train",
        BASE + "bogus_key: 1\n",
        {"beta": -1},
        [
            "2 options cannot be used:",
            "  r.yaml: unknown option 'bogus_key'",
            "  train(): beta must be > 0 (got -1)",
        ],
    ),
    (
        "train_missing_path_beside_keyword_value",
        "train",
        "model_name_or_path: m\ntrain_file: missing.jsonl\n",
        {"beta": -1},
        [
            "2 options cannot be used:",
            "  train(): beta must be > 0 (got -1)",
            "  r.yaml: train_file: no such file or folder: missing.jsonl",
        ],
    ),
    (
        "train_trl_recipe",
        "train",
        "model_name_or_path: m\ndataset_name: pairs.jsonl\nfp16: true\n",
        {"dtype": "float32", "eval_dtype": "bfloat16"},
        [
            "3 options cannot be used:",
            "  r.yaml: fp16: float16 mixed precision is not supported (its narrow "
            "range needs a loss scaler); use bf16: true (mixed precision in bfloat16) "
            "or dtype='float32'",
            "  train(): eval_dtype='bfloat16' under dtype='float32': the run computes "
            "in float32 and so does its evaluation; pass dtype='bfloat16' (mixed "
            "precision) to evaluate as bf16 computes",
            "  r.yaml: dataset_name: pairs.jsonl is a file; give it as train_file "
            "(dataset_name reads a dataset folder or a hub id)",
        ],
    ),
    (
        "train_remove_advice_keyword",
        "train",
        BASE + "use_peft: true\n",
        {"lora_r": 0},
        [
            "lora_r=0 with use_peft: true: an adapter of rank 0 trains nothing (peft "
            "refuses it); remove lora_r=0 for rank 16 (TRL's default), or use_peft to "
            "train every weight",
        ],
    ),
    (
        "train_mixed_lines",
        "train",
        BASE + "eval_dtype: bfloat16\nbeta: -1\n",
        {"dtype": "float32"},
        [
            "2 options cannot be used:",
            "  train(): eval_dtype: bfloat16 under dtype='float32': the run computes "
            "in float32 and so does its evaluation; pass dtype='bfloat16' (mixed "
            "precision) to evaluate as bf16 computes",
            "  r.yaml: beta must be > 0 (got -1)",
        ],
    ),
    (
        "dpoconfig_python",
        "dpoconfig",
        None,
        {
            "model_name_or_path": "m",
            "train_file": "pairs.jsonl",
            "lora_target_modules": ["q_proj"],
            "lora_r": 0,
            "bogus": 1,
        },
        [
            "DPOConfig: 2 options cannot be used:",
            "  unknown option 'bogus'",
            "  lora_target_modules is set but lora_r is 0 (no LoRA); pass lora_r=16",
        ],
    ),
    (
        "load_config_with_overrides",
        "load_config",
        BASE + "lora_target_modules: [q_proj]\n",
        {"lora_r": 0},
        [
            "lora_target_modules is set but lora_r is 0 (no LoRA); give --lora_r 16",
        ],
    ),
    (
        "cli_default_option_in_flag_line",
        "cli",
        BASE,
        ["--lora_target_modules", "q_proj"],
        [
            "lora_target_modules is set but lora_r is 0 (no LoRA); give --lora_r 16",
        ],
    ),
    (
        "cli_default_options_in_flag_advice",
        "cli",
        BASE,
        ["--fp16"],
        [
            "--fp16: float16 mixed precision is not supported (its narrow range needs "
            "a loss scaler); use --bf16 (mixed precision in bfloat16) or --dtype "
            "float32",
        ],
    ),
    (
        "train_default_option_in_keyword_line",
        "train",
        BASE,
        {"lora_target_modules": ["q_proj"]},
        [
            "lora_target_modules is set but lora_r is 0 (no LoRA); pass lora_r=16",
        ],
    ),
    (
        "train_default_options_in_keyword_advice",
        "train",
        BASE,
        {"fp16": True},
        [
            "fp16=True: float16 mixed precision is not supported (its narrow range "
            "needs a loss scaler); use bf16=True (mixed precision in bfloat16) or "
            "dtype='float32'",
        ],
    ),
    (
        "cli_file_line_advises_a_flags_option",
        "cli",
        BASE + "fp16: true\n",
        ["--dtype", "float32"],
        [
            "fp16: float16 mixed precision is not supported (its narrow range needs a "
            "loss scaler); use bf16: true (mixed precision in bfloat16) or --dtype "
            "float32",
        ],
    ),
]
# where a line naming an override also says an option no source set (its default), the line
# is said again wholly in the override's words ('give --lora_r 16' to a flag's user): the one
# case built twice (option_loading._said_as_the_overrides)
BUILT_TWICE = {
    "cli_default_option_in_flag_line",
    "cli_default_options_in_flag_advice",
    "train_default_option_in_keyword_line",
    "train_default_options_in_keyword_advice",
}


def _refusal(entry: str, options: Any, capsys: pytest.CaptureFixture[str]) -> str:
    """The message each entry refuses ``options`` with (the CLI's without its 'error:')."""
    if entry == "cli":
        assert main(["train", "r.yaml", *options]) == 2
        return capsys.readouterr().err.strip().removeprefix("directpo: error: ")
    with pytest.raises(ConfigError) as refused:
        if entry == "train":
            train("r.yaml", **options)
        elif entry == "dpoconfig":
            DPOConfig(**options)
        else:
            load_config("r.yaml", options)
    return str(refused.value)


@pytest.fixture
def counted_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """In a folder with pairs.jsonl; each DPOConfig built adds to the list."""
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)
    builds: list[int] = []
    original = DPOConfig.__init__

    def counted(self: DPOConfig, *args: Any, **values: Any) -> None:
        builds.append(1)
        original(self, *args, **values)

    monkeypatch.setattr(DPOConfig, "__init__", counted)
    return builds


CASES = pytest.mark.parametrize(
    ("case", "entry", "recipe", "options", "lines"), REFUSALS, ids=[row[0] for row in REFUSALS]
)


@CASES
def test_a_refusal_of_a_file_and_its_overrides_says_each_option_in_its_sources_words(
    case: str,
    entry: str,
    recipe: str | None,
    options: Any,
    lines: list[str],
    counted_builds: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    if recipe is not None:
        Path("r.yaml").write_text(recipe)
    assert _refusal(entry, options, capsys) == "\n".join(lines)


@CASES
def test_a_refused_config_is_built_once(
    case: str,
    entry: str,
    recipe: str | None,
    options: Any,
    lines: list[str],
    counted_builds: list[int],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """It was built two times for a recipe and flags, four for train('recipe.yaml', **keywords)
    (the file's words, Python's, the file alone), their lines matched by position."""
    if recipe is not None:
        Path("r.yaml").write_text(recipe)
    _refusal(entry, options, capsys)
    assert len(counted_builds) == (2 if case in BUILT_TWICE else 1)


def test_trains_adapter_checks_say_a_flag_as_a_flag_and_no_python_argument(
    counted_builds: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``directpo train r.yaml --merge_lora --lora_r 0`` was told 'set
    lora_r: 16 (or pass train(peft_config=...))': the recipe's key, which the flag overrides,
    and an argument of Python's train() that no command takes. The flag's fix is said as a
    flag; train()'s keywords keep theirs, and Python's peft_config."""
    Path("r.yaml").write_text(BASE)
    assert _refusal("cli", ["--merge_lora", "--lora_r", "0"], capsys) == (
        "merge_lora is set but lora_r is 0 (no LoRA); give --lora_r 16"
    )
    flags = ["--model_name_or_path", "m", "--train_file", "pairs.jsonl", "--merge_lora"]
    assert main(["train", *flags]) == 2
    assert capsys.readouterr().err.strip() == (
        "directpo: error: merge_lora is set but lora_r is 0 (no LoRA); give --lora_r 16"
    )
    Path("r.yaml").write_text(BASE + "lora_r: 0\nload_in_4bit: true\n")
    assert _refusal("cli", ["--beta", "0.2"], capsys) == (  # (the file's lora_r: its words)
        "load_in_4bit needs adapters: quantized weights do not train; set lora_r: 16"
    )
    Path("r.yaml").write_text(BASE)
    assert _refusal("train", {"merge_lora": True, "lora_r": 0}, capsys) == (
        "merge_lora is set but lora_r is 0 (no LoRA); pass lora_r=16 (or pass "
        "train(peft_config=...))"
    )


def test_a_default_lora_r_is_said_as_the_option_that_asked_for_adapters(
    counted_builds: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``directpo train r.yaml --merge_lora`` (a recipe without lora_r) was told the recipe's
    'set lora_r: 16', a key it lacks, where ``--lora_target_modules q_proj`` beside it is told
    'give --lora_r 16' (the load's rule: a default in the words of the line's own source). A
    lora_r the file wrote stays in its words; train()'s keywords keep theirs."""
    Path("r.yaml").write_text(BASE)
    assert _refusal("cli", ["--merge_lora"], capsys) == (
        "merge_lora is set but lora_r is 0 (no LoRA); give --lora_r 16"
    )
    assert _refusal("cli", ["--load_in_4bit"], capsys) == (
        "load_in_4bit needs adapters: quantized weights do not train; give --lora_r 16"
    )
    Path("r.yaml").write_text(BASE + "merge_lora: true\n")
    assert _refusal("cli", ["--beta", "0.2"], capsys) == (
        "merge_lora is set but lora_r is 0 (no LoRA); set lora_r: 16"
    )
    Path("r.yaml").write_text(BASE + "lora_r: 0\n")
    assert _refusal("cli", ["--load_in_4bit"], capsys) == (
        "load_in_4bit needs adapters: quantized weights do not train; set lora_r: 16"
    )
    assert _refusal("train", {"merge_lora": True}, capsys) == (
        "merge_lora is set but lora_r is 0 (no LoRA); pass lora_r=16 (or pass "
        "train(peft_config=...))"
    )


def test_the_checks_after_the_load_say_a_flag_as_a_flag(
    counted_builds: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    """``directpo train r.yaml --eval_steps 5`` was told the recipe's 'set eval_file ..., or
    remove eval_steps': keys the recipe lacks and a flag named as a key, where the flags alone
    are told 'give --eval_file ..., or remove --eval_steps 5'. The file's own eval_strategy is
    still told in the file's words."""
    Path("r.yaml").write_text(BASE)
    assert _refusal("cli", ["--eval_steps", "5"], capsys) == (
        "eval_steps is set but there is nothing to evaluate: give --eval_file (held-out pairs) "
        "or --eval_generate (sampled completions), or remove --eval_steps 5"
    )
    assert _refusal("cli", ["--eval_strategy", "steps"], capsys) == (
        "eval_strategy is steps but there is nothing to evaluate: give --eval_file (held-out "
        "pairs) or --eval_generate (sampled completions)"
    )
    assert _refusal("cli", ["--eval_generate", "2"], capsys) == (
        "eval_generate needs held-out prompts: give --eval_prompts_file or --eval_file"
    )
    Path("r.yaml").write_text(BASE + "evaluation_strategy: steps\n")
    assert _refusal("cli", ["--beta", "0.2"], capsys) == (
        "eval_strategy is steps but there is nothing to evaluate: set eval_file (held-out "
        "pairs) or eval_generate (sampled completions)"
    )
