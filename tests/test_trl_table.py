"""The key tables' advice (trl_table.NO_EFFECT, foreign_names.REFUSED, torchtune's components)
as each caller reads it: a recipe's YAML keys, a command line's flags, a Python call's
keywords. The advice was a recipe's YAML rewritten afterwards by regular expressions, which
missed what they did not know (a mapping, a value with a space or colon, a name alone)."""

from __future__ import annotations

import ast
import dataclasses
import re
import shlex
from typing import Any

import pytest
import yaml

from directpo.callers import Spelling
from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError
from directpo.foreign_names import REFUSED
from directpo.option_values import as_yaml
from directpo.trl_compat import source_spelling, translate
from directpo.trl_table import NO_EFFECT

KNOWN = [f.name for f in dataclasses.fields(DPOConfig)]
SOURCES = {
    Spelling.RECIPE: "recipe.yaml",
    Spelling.FLAGS: "command line",
    Spelling.PYTHON: "DPOConfig",
}
# values tried in turn until one is refused (a table's entry refuses some values only)
CANDIDATES: tuple[Any, ...] = (True, "other", 7, -1, "0.9 0.95", ["x"], {"x": 1}, "org/name")
COMPONENTS: list[tuple[str, Any]] = [
    ("loss", {"_component_": "torchtune.rlhf.loss.DPOLoss", "beta": 0.1}),
    ("loss", {"_component_": "torchtune.rlhf.loss.SimPOLoss", "beta": 2.0, "gamma": 0.5}),
    ("loss", {"_component_": "torchtune.rlhf.loss.RSOLoss"}),
    ("model", {"_component_": "torchtune.models.llama3_1.lora_llama3_1_8b", "lora_rank": 8}),
    ("checkpointer", {"_component_": "torchtune.training.FullModelHFCheckpointer"}),
    ("ref_checkpointer", {"_component_": "x.Checkpointer", "checkpoint_dir": "/m/ref model"}),
    ("tokenizer", {"_component_": "torchtune.models.llama3.llama3_tokenizer", "max_seq_len": 9}),
    ("optimizer", {"_component_": "torch.optim.AdamW", "lr": 5e-4, "weight_decay": 0.05}),
    ("optimizer", {"_component_": "torch.optim.SGD"}),
    (
        "lr_scheduler",
        {
            "_component_": "torchtune.training.get_cosine_schedule_with_warmup",
            "num_warmup_steps": 100,
        },
    ),  # fmt: skip
    ("dataset", {"_component_": "torchtune.datasets.stack_exchange_paired_dataset"}),
    (
        "dataset",
        {
            "_component_": "torchtune.datasets.preference_dataset",
            "source": "json",
            "data_files": "my prefs.json",
            "column_map": {"chosen": "accepted"},
        },
    ),  # fmt: skip
    ("dataset", [{"_component_": "a"}, {"_component_": "b"}]),
    ("metric_logger", {"_component_": "torchtune.training.metric_logging.DiskLogger"}),
    ("profiler", {"_component_": "torchtune.training.setup_torch_profiler"}),
]


def _as_written(value: Any, spelling: Spelling) -> Any:
    """``value`` as the source hands it over: a flag's text, YAML's and Python's values."""
    if spelling is not Spelling.FLAGS or isinstance(value, str):
        return value
    return as_yaml(value)


def _problem(key: str, value: Any, spelling: Spelling, as_text: bool = True) -> str | None:
    """The one line refusing ``key: value`` from a source of ``spelling`` (None: accepted);
    ``as_text``: a flag's value as the text it is (a component, a mapping, is kept one)."""
    given = _as_written(value, spelling) if as_text else value
    try:
        translate({key: given}, KNOWN, SOURCES[spelling])
    except ConfigError as error:
        problems = getattr(error, "problems", None) or [str(error)]
        assert len(problems) == 1, problems
        return problems[0]
    return None


def _refused_value(key: str) -> Any:
    """A value the entry refuses (as a recipe writes it), or None where it takes every one."""
    for value in CANDIDATES:
        if _problem(key, value, Spelling.RECIPE) is not None:
            return value
    return None


def _check_spelling(advice: str, spelling: Spelling, key: str) -> None:
    """``advice`` writes options only as ``spelling`` does, and each option it writes exists."""
    flags = re.findall(r"(?<![\w-])--([a-z][\w.]*)", advice)
    keywords = re.findall(r"\b([a-z][a-z0-9_]*)=(?!=)", advice)
    keys = [name for name in re.findall(r"\b([a-z][a-z0-9_]*): ", advice) if name in KNOWN]
    if spelling is Spelling.RECIPE:
        assert not flags and not [k for k in keywords if k in KNOWN], (key, advice)
    if spelling is Spelling.FLAGS:
        assert not keys and not [k for k in keywords if k in KNOWN], (key, advice)
        assert set(flags) <= set(KNOWN), (key, advice)  # (each flag one directpo takes)
    if spelling is Spelling.PYTHON:
        assert not flags and not keys, (key, advice)
        assert set(keywords) <= set(KNOWN), (key, advice)  # (each keyword DPOConfig's)


@pytest.mark.parametrize("spelling", list(SOURCES))
@pytest.mark.parametrize("key", sorted(NO_EFFECT))
def test_each_no_effect_entry_is_told_in_the_callers_words(key: str, spelling: Spelling) -> None:
    """Every NO_EFFECT entry (a new one is covered as it is added): the refused value leads as
    the caller wrote it (``--key value``, ``key: value``, ``key=value``), and its advice
    writes options only as that caller does, each one an option DPOConfig has."""
    value = _refused_value(key)
    if value is None:  # (an entry that asks for nothing whatever its value: it is dropped)
        assert _problem(key, "other", spelling) is None
        return
    problem = _problem(key, value, spelling)
    assert problem is not None
    lead, _, advice = problem.partition(" is not supported")
    written = {
        Spelling.RECIPE: f"{key}: ",
        Spelling.FLAGS: f"--{key} ",
        Spelling.PYTHON: f"{key}=",
    }[spelling]
    assert lead.startswith(written), problem
    _check_spelling(advice, spelling, key)


@pytest.mark.parametrize("spelling", list(SOURCES))
@pytest.mark.parametrize("key", sorted(REFUSED))
def test_each_foreign_names_refusal_is_told_in_the_callers_words(
    key: str, spelling: Spelling
) -> None:
    """Every OpenRLHF / torchtune key of REFUSED, as NO_EFFECT's are."""
    value = _refused_value(key)
    if value is None:  # (one asking for what directpo does anyway: accepted)
        assert _problem(key, True, spelling) is None
        return
    problem = _problem(key, value, spelling)
    assert problem is not None
    flag = "--" if spelling is Spelling.FLAGS else ""
    assert problem.startswith(f"{flag}{key}: "), problem
    _check_spelling(problem.removeprefix(f"{flag}{key}: "), spelling, key)


@pytest.mark.parametrize("spelling", list(SOURCES))
@pytest.mark.parametrize(("key", "value"), COMPONENTS)
def test_each_torchtune_component_is_told_in_the_callers_words(
    key: str, value: Any, spelling: Spelling
) -> None:
    """A torchtune component's options, each written as the caller writes options."""
    problem = _problem(key, value, spelling, as_text=False)
    assert problem is not None
    flag = "--" if spelling is Spelling.FLAGS else ""
    _check_spelling(problem.removeprefix(f"{flag}{key}: "), spelling, key)


def test_a_setting_of_any_value_reads_back_as_the_value_it_names(tmp_path) -> None:
    """A value with a space and a colon (a local file OpenRLHF's --dataset names): the setting
    the advice gives parses back, in each caller's own syntax, as that file. The regular
    expressions cut such a value at its first space ('--train_file /tmp/my')."""
    data = tmp_path / "my prefs: v2.jsonl"
    data.write_text("")
    for spelling in SOURCES:
        problem = _problem("dataset", str(data), spelling)
        assert problem is not None
        advice = problem.split(": ", 1)[1].removesuffix(" (a file, glob or datasets folder)")
        verb, setting = advice.split(" ", 1)
        if spelling is Spelling.RECIPE:
            assert verb == "set" and yaml.safe_load(setting) == {"train_file": str(data)}
        if spelling is Spelling.FLAGS:
            assert verb == "give" and shlex.split(setting) == ["--train_file", str(data)]
        if spelling is Spelling.PYTHON:
            call = ast.parse(f"f({setting})").body[0].value  # type: ignore[attr-defined]
            assert verb == "pass" and ast.literal_eval(call.keywords[0].value) == str(data)
    betas = _problem("adam_betas", "0.9 0.95", Spelling.PYTHON)  # (a flag's text, typed)
    assert betas == "adam_betas: pass adam_beta1=0.9 and adam_beta2=0.95"


def test_each_source_is_told_in_its_own_words(tmp_path, capsys) -> None:
    """A recipe's keys in YAML, the flags beside it as flags, and train()'s keywords as a
    Python call's (they were told a recipe's 'push_to_hub: true', 'set distributed: fsdp')."""
    from directpo.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\nfsdp: full_shard\n")
    assert main(["train", str(recipe), "--use_flash_attention_2", "true"]) == 2
    err = capsys.readouterr().err
    assert "fsdp: full_shard is not supported: set distributed: fsdp (FSDP2)" in err
    assert "--use_flash_attention_2 true is not supported: give --attn_implementation " in err
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe), {"push_to_hub": True}, overrides_from="train()")
    said = "\n".join(getattr(refused.value, "problems", [str(refused.value)]))
    assert "push_to_hub=True is not supported" in said
    assert "fsdp: full_shard is not supported: set distributed: fsdp" in said
    assert source_spelling("train()") is source_spelling("DPOConfig") is Spelling.PYTHON
    assert source_spelling("command line") is Spelling.FLAGS
    assert source_spelling(str(recipe)) is source_spelling("config") is Spelling.RECIPE


def test_advice_made_outside_any_translate_is_the_callers(capsys) -> None:
    """The tables' advice is made when the message is, so that it reads in the caller of the
    moment's words (none is fixed text spelled for a recipe)."""
    from directpo.callers import Caller, Entry, called_by
    from directpo.trl_table import advice_text

    _, advice = NO_EFFECT["generate_during_eval"]
    said = {}
    for spelling in SOURCES:
        with called_by(Caller(spelling, Entry.TRAIN)):
            said[spelling] = advice_text(advice)
    assert said == {
        Spelling.RECIPE: "set eval_generate: N",
        Spelling.FLAGS: "give --eval_generate N",
        Spelling.PYTHON: "pass eval_generate=N",
    }


@pytest.mark.parametrize("spelling", list(SOURCES))
@pytest.mark.parametrize(
    "options",
    [
        {"model_init_kwargs": {"torch_dtype": "bfloat16"}},
        {"model_init_kwargs": {"dtype": "float16"}},
        {"ref_model_init_kwargs": {"torch_dtype": "float32"}},
        {
            "model_init_kwargs": {
                "quantization_config": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
            }
        },  # fmt: skip
        {"save_strategy": "best"},
    ],
)
def test_trl_meanings_fixes_are_said_in_the_callers_words(
    options: dict[str, Any], spelling: Spelling
) -> None:
    """TRL's loading kwargs and save_strategy: best, refused as a DPOConfig is checked: the
    fix (set dtype: bfloat16, load_in_4bit: true, load_best_model_at_end: true) was a recipe's
    YAML whoever called."""
    from directpo.callers import Caller, Entry, called_by

    with called_by(Caller(spelling, Entry.TRAIN)), pytest.raises(ConfigError) as refused:
        DPOConfig(**options)
    problem = str(refused.value).removeprefix("DPOConfig: ")
    fix = problem.split("remove it there", 1)[-1].split("is not supported", 1)[-1]
    _check_spelling(fix, spelling, next(iter(options)))
    assert re.search(r"\b(dtype|load_in_4bit|load_best_model_at_end)\b", fix), problem


def test_a_recipe_file_named_like_a_class_is_a_recipe(tmp_path, monkeypatch) -> None:
    """``where`` names the source; a file there is a recipe whatever its name."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Recipe").write_text("push_to_hub: true\n")
    assert source_spelling("Recipe") is Spelling.RECIPE
    with pytest.raises(ConfigError, match="push_to_hub: true is not supported"):
        load_config("Recipe")


def test_a_trainer_only_argument_is_told_as_train_takes_keywords() -> None:
    """DPOTrainer's optimizers / optimizer_cls_and_kwargs / model_init given to train() were
    told 'set optim, ...' and 'give model_name_or_path', a recipe's and a flag's verbs; a
    train() caller passes keywords."""
    from directpo.arguments import TRAINER_ONLY
    from directpo.trainer import train

    with pytest.raises(ConfigError) as refused:
        train(model="m", echo=None, **dict.fromkeys(TRAINER_ONLY, object()))
    lines = getattr(refused.value, "problems", [str(refused.value)])
    assert len(lines) == len(TRAINER_ONLY)
    said = {line.split(" ", 1)[0]: line.split("argument): ", 1)[1] for line in lines}
    assert said["model_init"] == "pass model_name_or_path=..."
    assert said["optimizers"].startswith("pass optim=..., learning_rate=..., lr_scheduler_type=")
    for advice in said.values():
        _check_spelling(advice, Spelling.PYTHON, "train()")
        assert not advice.startswith(("set ", "give ")), advice


def test_reward_funcs_naming_a_model_is_told_reward_model_name_or_path(tmp_path) -> None:
    """``reward_funcs: rm/`` (TRL's reward_funcs takes a reward model's folder or hub id) was
    told "did you mean 'reward_fn'?", an option that takes a function: the model's option is
    said in each source's words; so is reward_fn set to a function's spelling, and
    train(reward_funcs="org/rm"), TRL's keyword, sets the model's option."""
    said = {}
    for spelling, where in SOURCES.items():
        for value in ("rm/", ["org/rm"], "rewards.py:score"):
            with pytest.raises(ConfigError) as err:
                translate({"reward_funcs": value}, KNOWN, where)
            said[spelling, str(value)] = str(err.value).split("'; ", 1)[-1]
    assert said[Spelling.RECIPE, "rm/"] == (
        "rm/ is a reward model: set reward_model_name_or_path: rm/ (reward_fn takes a function)"
    )
    assert said[Spelling.FLAGS, "['org/rm']"] == (
        "org/rm is a reward model: give --reward_model_name_or_path org/rm (--reward_fn takes "
        "a function)"
    )
    assert said[Spelling.PYTHON, "rm/"] == (
        "rm/ is a reward model: pass reward_model_name_or_path='rm/' (reward_fn=... takes a "
        "function)"
    )
    # a function was told "did you mean 'reward_fn'?", its value then retyped
    assert said[Spelling.RECIPE, "rewards.py:score"] == (
        "set reward_fn: rewards.py:score (TRL's reward_funcs of one function is reward_fn here)"
    )
    assert said[Spelling.FLAGS, "rewards.py:score"].startswith(
        "give --reward_fn rewards.py:score ("
    )
    assert said[Spelling.PYTHON, "rewards.py:score"].startswith("pass reward_fn='rewards.py:score'")
    with pytest.raises(ConfigError) as err:  # several: reward_fn's own check says to sum them
        translate({"reward_funcs": ["a:f", "b:g"]}, KNOWN, "r.yaml")
    assert str(err.value).endswith("did you mean 'reward_fn'?")
    from directpo.arguments import config_with

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')
    online = {"model_name_or_path": "m", "online": True, "prompt_file": str(prompts)}
    built = config_with(None, {**online, "reward_funcs": "org/rm"})
    assert (built.reward_model_name_or_path, built.reward_fn) == ("org/rm", None)


def test_reward_funcs_listing_a_model_beside_a_function_is_told_both_options() -> None:
    """TRL's ``reward_funcs: [rm/, my_rewards:score]`` (a reward model's and a function's
    rewards summed) was told "did you mean 'reward_fn'?", which takes one function and no
    model; now each goes to its option, in each source's words (a flag's list: a,b)."""
    wanted = {
        Spelling.RECIPE: "rm/ is a reward model and my_rewards:score a function: set "
        "reward_model_name_or_path: rm/ and reward_fn: my_rewards:score (their rewards are "
        "summed, weighted by reward_weights)",
        Spelling.FLAGS: "rm/ is a reward model and my_rewards:score a function: give "
        "--reward_model_name_or_path rm/ and --reward_fn my_rewards:score (their rewards are "
        "summed, weighted by --reward_weights)",
        Spelling.PYTHON: "rm/ is a reward model and my_rewards:score a function: pass "
        "reward_model_name_or_path='rm/' and reward_fn='my_rewards:score' (their rewards are "
        "summed, weighted by reward_weights=...)",
    }
    values = {Spelling.FLAGS: "rm/,my_rewards:score"}
    for spelling, where in SOURCES.items():
        value = values.get(spelling, ["rm/", "my_rewards:score"])
        with pytest.raises(ConfigError) as err:
            translate({"reward_funcs": value}, KNOWN, where)
        assert str(err.value).split("'; ", 1)[-1] == wanted[spelling]
    with pytest.raises(ConfigError) as err:  # (two models: a run scores with one)
        translate({"reward_funcs": ["org/a", "org/b"]}, KNOWN, "recipe.yaml")
    assert "org/a and org/b are reward models, of which a run scores with one" in str(err.value)
    with pytest.raises(ConfigError) as err:  # (functions alone: reward_fn's, as before)
        translate({"reward_funcs": ["a:f", "b:g"]}, KNOWN, "recipe.yaml")
    assert str(err.value).endswith("did you mean 'reward_fn'?")


def test_do_predict_names_the_command_as_its_caller_runs_it() -> None:
    """do_predict was told "use directpo generate" in Python too, which runs no command."""
    said = {}
    for spelling, where in SOURCES.items():
        with pytest.raises(ConfigError) as err:
            translate({"do_predict": True}, KNOWN, where)
        said[spelling] = str(err.value).rsplit("; use ", 1)[-1]
    assert said == {
        Spelling.RECIPE: "directpo generate",
        Spelling.FLAGS: "directpo generate",
        Spelling.PYTHON: "generate_file(GenerateOptions(...))",
    }
