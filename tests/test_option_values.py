from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from directpo.config import DPOConfig, load_config
from directpo.errors import ConfigError
from directpo.option_values import as_yaml, value_shown


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # a list, a boolean, a mapping: as YAML writes them, not Python's repr
        ("dtype: [bfloat16]", "(got [bfloat16]; write one of these words)"),
        (
            "loss_weights: true",
            "must be a list of numbers (a YAML list, or comma-separated: a,b), got true",
        ),
        ("eval_file: yes", "must be a file or a list of files, got true (YAML reads a bare yes"),
        ("max_steps: [1, 2]", "max_steps must be an integer, got [1, 2]"),
        ("beta: {a: 1}", "beta must be a finite number, got {a: 1}"),
        ("lora_target_modules: {q: 1}", "lora_target_modules must be a list of names"),
        # a string bare where YAML reads it back as that string, quoted where it would not
        ("dtype: bf16", "(got bf16); did you mean bfloat16?"),
        ("dtype: 'yes'", "(got 'yes')"),
        ("dtype: 16", "(got 16); did you mean bfloat16?"),  # (was '16', a string)
        ("optim: foo", "optim must be one of adamw_torch"),
        ("report_to: [comet]", "(got [comet])"),
        ("report_to: [comet_ml]", "report_to: comet_ml is a transformers tracker"),
        ("optim: 'on'", "(got 'on')"),
        # the mappings and lists of the checks after the types (were {'power': 2}, ['A'])
        ("lr_scheduler_kwargs: {power: 2}", "lr_scheduler_kwargs {power: 2} do not fit"),
        ("lr_scheduler_type: constant\nlr_scheduler_kwargs: {power: 2}", "(got {power: 2})"),
        ("env: [A]", "env must be a mapping of VARIABLE: value, got [A]"),
        ("dataset_mixture: {datasets: yes}", "got true"),
        ("dataset_mixture: {datasets: [{id: t.jsonl}], shuffle: [x]}", "false, got [x]"),
        ("dataset_mixture: {datasets: [{id: t.jsonl, columns: [a, 1]}]}", "got [a, 1]"),
        # the column and generation checks (were got 'chosen', generation_kwargs: 'top_kk')
        ("system_column: chosen", "column of its own (got chosen, which is chosen_column too)"),
        ("generation_kwargs: {top_kk: 5}", "generation_kwargs: top_kk is not an option of"),
    ],
)
def test_a_refused_value_is_said_as_the_recipe_writes_it(
    tmp_path: Path, line: str, said: str
) -> None:
    """A refusal shows the value as YAML writes it: dtype: [bfloat16] was "got ['bfloat16']",
    loss_weights: true "got True", eval_file: yes "got True (YAML reads a bare yes ...)",
    Python's repr of what the user wrote as YAML (or a flag, whose text is YAML too)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model_name_or_path: m\nlora_r: 8\n{line}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(str(recipe))
    message = str(refused.value)
    assert said in message, message
    assert "True" not in message and "['" not in message and "{'" not in message, message


@pytest.mark.parametrize(
    ("flag", "value", "said"),
    [
        ("dtype", "[bfloat16]", "(got [bfloat16]; write one of these words)"),
        ("loss_weights", "true", "got true"),
        ("max_steps", "2.5", "max_steps must be an integer, got 2.5"),  # (was '2.5')
        ("beta", "0x10", "beta must be a finite number, got 0x10"),  # (was '0x10', quoted)
        ("dtype", "bf16", "(got bf16); did you mean bfloat16?"),
        ("lr_scheduler_type", "constant", None),
    ],
)
def test_a_refused_flag_value_is_said_as_typed(flag: str, value: str, said: str | None) -> None:
    overrides = {"model_name_or_path": "m", flag: value}
    if said is None:
        load_config(None, overrides)
        return
    with pytest.raises(ConfigError) as refused:
        load_config(None, overrides)
    assert said in str(refused.value), str(refused.value)
    assert "'" not in str(refused.value).partition("got ")[2].partition(")")[0]


def test_a_python_callers_object_is_named_by_its_class() -> None:
    """Objects no YAML writes are named by class (a model's repr runs to hundreds of lines);
    a Python caller's True, None and lists are said as YAML writes them, like a recipe's."""
    with pytest.raises(ConfigError, match=r"got a builtins\.object object"):
        DPOConfig(model_name_or_path=object())
    with pytest.raises(ConfigError, match=r"got the class builtins\.dict$"):
        DPOConfig(model_name_or_path="m", output_dir=dict)
    with pytest.raises(ConfigError, match=r"\(got \[bfloat16\]; write one of these words\)"):
        DPOConfig(model_name_or_path="m", dtype=["bfloat16"])


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        (False, "false"),
        (None, "null"),
        (["a", "b"], "[a, b]"),
        (("a", 1), "[a, 1]"),
        ({"k": "v", "n": [1, 2]}, "{k: v, n: [1, 2]}"),
        ("plain", "plain"),
        ("yes", "'yes'"),
        ("5", "'5'"),
        ("a: b", "'a: b'"),
        ("a\nb", '"a\\nb"'),  # one line, its break written
        # ... the values beside it as written (were quoted and tagged: !!int "1", !!bool "true")
        ({"a": "x\ny", "b": 1, "c": True}, '{a: "x\\ny", b: 1, c: true}'),
        (["x\ny", 2, None, "yes"], "[\"x\\ny\", 2, null, 'yes']"),
        ("grüße", "grüße"),  # as written, not escaped
        (-1e-05, "-1e-05"),
        (3, "3"),
        ("x" * 100, "x" * 77 + "..."),
    ],
)
def test_value_shown_reads_back_as_the_value(value: object, shown: str) -> None:
    """The spelling reads back (YAML) as the value it names, where it is not cut short."""
    assert value_shown(value) == shown
    if not shown.endswith("..."):
        read = yaml.safe_load(as_yaml(value))
        assert read == (list(value) if isinstance(value, tuple) else value)


def test_a_mappings_python_objects_are_the_values_they_stand_for(tmp_path: Path) -> None:
    """A notebook's model_init_kwargs={"cache_dir": Path(...)} or lr_scheduler_kwargs={"power":
    np.float64(2.0)} (a sweep's value) was kept as the object, and the run stopped in YAML's
    traceback ('cannot represent an object') when its config.yaml was written."""
    import enum

    import numpy as np

    class Mode(enum.Enum):
        STEPS = "steps"

    config = DPOConfig(
        model_name_or_path="m",
        model_init_kwargs={"cache_dir": tmp_path / "cache", "low_cpu_mem_usage": np.bool_(True)},
        lr_scheduler_type="polynomial",
        lr_scheduler_kwargs={"power": np.float64(2.0), "lr_end": np.int64(0)},
        chat_template_kwargs={"mode": Mode.STEPS},
    )
    assert config.model_init_kwargs == {
        "cache_dir": str(tmp_path / "cache"),
        "low_cpu_mem_usage": True,
    }
    assert type(config.lr_scheduler_kwargs["power"]) is float
    assert config.lr_scheduler_kwargs == {"power": 2.0, "lr_end": 0}
    assert config.chat_template_kwargs == {"mode": "steps"}
    record = tmp_path / "config.yaml"
    config.save_yaml(record)
    assert load_config(str(record)) == config
    import torch

    placed = DPOConfig(
        model_name_or_path="m", model_init_kwargs={"device_map": {"": torch.device("cpu")}}
    )
    assert placed.model_init_kwargs == {"device_map": {"": "cpu"}}


def test_a_recipes_number_is_said_as_its_text_writes_it(tmp_path) -> None:
    """A recipe's 'beta: .inf' was refused as 'got inf' and 'beta: -1_0' as 'got -10', texts
    the file does not hold (a search for them finds nothing): a recipe's number is said as
    written; a flag's over it as the flag's text, and a mapping (no text) as read."""

    def refusal(text: str, **overrides) -> str:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model_name_or_path: m\nbeta: {text}\n")
        with pytest.raises(ConfigError) as refused:
            load_config(str(recipe), overrides)
        return str(refused.value)

    assert refusal(".inf").endswith("beta must be a finite number, got .inf")
    assert refusal("-.Inf").endswith("beta must be a finite number, got -.Inf")
    assert refusal("-1_0").endswith("beta must be > 0 (got -1_0)")
    assert refusal("-1_0", beta="-3").endswith("beta must be > 0 (got -3)")
    with pytest.raises(ConfigError, match=r"beta must be a finite number, got inf$"):
        load_config({"model_name_or_path": "m", "beta": float("inf")})


def test_one_options_two_limits_are_one_line_and_a_recipes_list_is_said_as_written(
    tmp_path,
) -> None:
    """loss_weights: [1e-1, -2e0] beside one loss read '2 options cannot be used:' over two
    lines of loss_weights alone, its list said '1e-1 -2e0' (a flag's words; YAML 1.1 reads
    1e-1 as text) and [1e-1, -2.0] as '[0.1, -2.0]': one line now, the list as written."""

    def refusal(text: str, **overrides) -> str:
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model_name_or_path: m\nloss_weights: {text}\n")
        with pytest.raises(ConfigError) as refused:
            load_config(str(recipe), overrides)
        return str(refused.value)

    both = "loss_weights must be one weight per loss_type (1) and >= 0 and not all 0"
    assert refusal("[1e-1, -2e0]") == f"{both} (got [1e-1, -2e0])"
    assert refusal("[1e-1, -2.0]") == f"{both} (got [1e-1, -2.0])"
    assert refusal("[-1e-1]") == "loss_weights must be >= 0 and not all 0 (got [-1e-1])"
    assert refusal("[1]", loss_weights=["1", "-2"]) == f"{both} (got 1 -2)"  # (the flag's)
    with pytest.raises(ConfigError) as refused:
        load_config(None, {"model_name_or_path": "m", "loss_weights": "-1,2", "beta": "-1"})
    assert str(refused.value) == (
        f"2 options cannot be used:\n  {both} (got -1,2)\n  beta must be > 0 (got -1)"
    )


def test_a_recipes_fraction_for_a_whole_number_is_said_as_written(tmp_path) -> None:
    """max_steps: 1_0.5 (or 2.5e+3's kin, 1.05e+1) was said 'must be an integer, got 10.5', a
    text not in the file, where a float option's number is said as the recipe wrote it."""
    for text in ("1_0.5", "1.05e+1", ".inf"):
        recipe = tmp_path / "r.yaml"
        recipe.write_text(f"model_name_or_path: m\nmax_steps: {text}\n")
        with pytest.raises(ConfigError) as refused:
            load_config(str(recipe))
        assert str(refused.value) == f"max_steps must be an integer, got {text}"
    with pytest.raises(ConfigError) as refused:  # (a flag's and Python's: as before)
        load_config(None, {"model_name_or_path": "m", "max_steps": 10.5})
    assert str(refused.value) == "max_steps must be an integer, got 10.5"


def test_a_repeated_loss_type_is_said_as_typed_and_not_after_an_unknown_name() -> None:
    """--loss_type sigmoid,sigmoid read 'without repeats (got [sigmoid, sigmoid])', a list the
    flag never wrote; --loss_type sigmod,sigmod was told the unknown name and then the repeats
    of that unknown name on a line of its own ('2 options cannot be used' of one option)."""
    for typed, said in (
        ("sigmoid,sigmoid", "loss_type must be without repeats (got sigmoid,sigmoid)"),
        ("sigmod,sigmod", "loss_type must be one or more of sigmoid, "),
    ):
        with pytest.raises(ConfigError) as refused:
            load_config(None, {"model_name_or_path": "m", "loss_type": typed})
        assert str(refused.value).startswith(said), str(refused.value)
        assert "repeats" not in str(refused.value).partition("\n")[2]
        assert "options cannot be used" not in str(refused.value)


# fifty misspelt loss names, five of each of ten losses
FIFTY_TYPOS = [
    name + end
    for name in ("sigmoid", "robust", "hinge", "ipo", "exo_pair", "nca_pair", "bco_pair",
                 "sppo_hard", "apo_zero", "apo_down")
    for end in "xyzqw"
]  # fmt: skip


@pytest.mark.parametrize("words", [FIFTY_TYPOS, [*FIFTY_TYPOS, "?"]])
def test_a_long_did_you_mean_is_shortened_as_the_got_is(words) -> None:
    """Fifty misspelt words were told 'did you mean' of them all (a screenful) where the '(got
    ...)' beside them stops at 80 characters; both are shortened the same way: the list meant
    where each word means a loss, else each word's loss."""
    with pytest.raises(ConfigError) as refused:
        DPOConfig(loss_type=words)
    said = str(refused.value)
    meant = said.split("; did you mean ", 1)[1].removesuffix("?")
    got = said.split(" (got ", 1)[1].split("); did you mean")[0]
    assert len(meant) == len(got) == 80 and meant.endswith("...") and got.endswith("..."), said
    each = "?" in words
    assert meant.startswith("sigmoid for sigmoidx, " if each else "['sigmoid', 'robust', ")
