"""jsonl.options_key: the key naming which options a partial output (StagedJsonl) of score,
rank and generate was written with."""

from __future__ import annotations

import dataclasses

import pytest

from directpo.command_options import GenerateOptions, RankOptions, ScoreOptions
from directpo.jsonl import StagedJsonl, options_key
from directpo.option_loading import accepting_spellings
from directpo.options import option


def key(options) -> str:
    return options_key(options, options.NOT_IN_ROWS, [options.model_name_or_path])


def made(cls, **values):
    return cls(model_name_or_path="org/model", input="in.jsonl", output="out.jsonl", **values)


# the keys the scheme that took every option gave (directpo before keys left defaults out):
# partial outputs written then are continued only while these stay the same
KEYS_WRITTEN_BEFORE = [
    (ScoreOptions, {}, "05277475e0bb"),
    (RankOptions, {}, "e41e33652039"),
    (GenerateOptions, {}, "d94a67afc62e"),
]


@pytest.mark.parametrize("cls, values, written", KEYS_WRITTEN_BEFORE)
def test_the_keys_of_partial_outputs_written_before_stay_the_same(cls, values, written) -> None:
    assert key(made(cls, **values)) == written


def upgraded(cls, name: str, default):
    """``cls`` as an upgrade makes it: the same command with an option more (same name)."""
    return accepting_spellings(
        dataclasses.make_dataclass(
            cls.__name__,
            [(name, type(default), option(default, "an option added later"))],
            bases=(cls,),
        )
    )


@pytest.mark.parametrize("cls", [ScoreOptions, RankOptions, GenerateOptions])
def test_an_option_added_at_its_default_keeps_the_key_and_one_set_otherwise_changes_it(
    cls,
) -> None:
    """Adding --keep_special_tokens to generate changed the key of every partial output, so a
    run stopped before an upgrade started over after it; an option added since is in the key
    only away from its default. Every option set otherwise still changes the key."""
    before = key(made(cls))
    newer = upgraded(cls, "frequency_penalty", 0.0)
    assert key(made(newer)) == before
    assert key(made(newer, frequency_penalty=0.5)) != before
    assert key(made(newer, dtype="bfloat16")) == key(made(cls, dtype="bfloat16")) != before
    assert key(made(cls, prompt_column="question")) != before
    assert key(made(cls, batch_size=1)) == before  # (not in the rows: continued with another)


def test_every_option_the_rows_depend_on_changes_the_key() -> None:
    """Each generate option but those not in the rows, set away from its default (or back to
    it from another value), gives another key: none is lost from it."""
    base = made(GenerateOptions, temperature=0.7)
    other = {"max_new_tokens": 3, "temperature": 1.0, "top_p": 0.5, "top_k": 5,
             "num_return_sequences": 2, "min_p": 0.1, "repetition_penalty": 1.2, "seed": 1,
             "completions_column": "c", "keep_special_tokens": True, "max_prompt_length": 9,
             "dtype": "bfloat16", "prompt_column": "q", "system_column": "s"}  # fmt: skip
    fields = {f.name for f in dataclasses.fields(GenerateOptions)}
    assert set(other) == fields - set(GenerateOptions.NOT_IN_ROWS) - {"model_name_or_path"}
    keys = {key(dataclasses.replace(base, **{name: value})) for name, value in other.items()}
    assert len(keys) == len(other) and key(base) not in keys


def test_a_partial_output_of_the_old_key_is_continued(tmp_path) -> None:
    """The same staging file, by the key a run with every option at its default writes."""
    options = made(GenerateOptions)
    target = tmp_path / "out.jsonl"
    with StagedJsonl(target, "d94a67afc62e") as out:  # written before keys left defaults out
        out.write([{"prompt": "a", "completions": ["x"]}])
    with StagedJsonl(target, key(options)) as out:
        assert out.resumed({"prompt": "a"}, ["completions"]) == {
            "prompt": "a",
            "completions": ["x"],
        }
        out.commit()
    assert target.read_text() == '{"prompt": "a", "completions": ["x"]}\n'


def test_which_source_set_an_option_is_not_in_the_key(tmp_path, monkeypatch) -> None:
    """``directpo score s.yaml --input in.jsonl --output out.jsonl`` stopped out of memory, then
    run again with ``--batch_size 4`` (not in the rows): the options loaded from a file and
    flags kept which ones the flags set (for train's messages), which went into the key, and
    the partial output of the first run was discarded, not continued. Likewise an option moved
    from a flag into the file."""
    from directpo.option_loading import load_options

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("model_name_or_path: org/model\n")
    (tmp_path / "both.yaml").write_text("model_name_or_path: org/model\ninput: in.jsonl\n")
    flags = {"input": "in.jsonl", "output": "out.jsonl"}
    first = load_options(ScoreOptions, "s.yaml", flags)
    assert key(first) == key(made(ScoreOptions))
    assert key(load_options(ScoreOptions, "s.yaml", {**flags, "batch_size": "4"})) == key(first)
    assert key(load_options(ScoreOptions, "both.yaml", {"output": "out.jsonl"})) == key(first)
    assert key(load_options(ScoreOptions, "s.yaml", {**flags, "beta": "0.5"})) != key(first)
