"""score, rank and generate say a refused option and the --input file's bad rows in one run."""

import json

import pytest

from directpo import cli


def _input(tmp_path, rows, tail=b""):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows) + tail)
    return str(path)


def _run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_missing_model_and_bad_rows_said_together(tmp_path, capsys):
    """score with a model folder that is not there said only the folder; the rows (an empty
    rejected, a missing one, a line not UTF-8) took the next run."""
    rows = [{"prompt": "a", "chosen": "b", "rejected": ""}, {"prompt": "a", "chosen": "b"}]
    source = _input(tmp_path, rows, b"\xff\xfe\n")
    code, err = _run(capsys, "score", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert "no such model folder" in lines[1]
    assert lines[2] == "and the data files' rows:"
    assert f"{source}: line 1: field 'rejected' is empty; line 2: missing field 'rejected'" in err
    assert "line 3: not UTF-8 text" in lines[3]
    assert not (tmp_path / "out.jsonl").exists()


def test_refused_value_and_bad_rows_said_together(tmp_path, capsys):
    """generate with a refused value (top_p 0) said only the value; its prompt rows (a
    missing prompt, a row already holding completions) came a run later."""
    source = _input(tmp_path, [{"question": "q"}, {"prompt": "p", "completions": ["c"]}])
    code, err = _run(capsys, "generate", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"),
                     "--top_p", "0", "--prompt_column", "prompt")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "top_p must be in (0, 1]" in err and "no such model folder" in err
    rows = err.split("and the data files' rows:\n")[1]
    assert "line 1: missing field 'prompt'" in rows
    assert "line 2: the row already has a field 'completions'" in rows


def test_rank_rows_said_with_missing_model(tmp_path, capsys):
    """rank: a row without candidates said with the refused model folder."""
    source = _input(tmp_path, [{"prompt": "p", "responses": []}, {"prompt": "p"}])
    code, err = _run(capsys, "rank", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert code == 2
    rows = err.split("and the data files' rows:\n")[1]
    assert "line 1: field 'responses' is an empty list" in rows
    assert "line 2: missing field 'responses'" in rows


def test_rows_not_checked_when_their_columns_are_unknown(tmp_path, capsys):
    """The model folder (whose run names the columns) is not there and the rows lack the
    default-named column: not said as 'missing field', which the run may have named."""
    source = _input(tmp_path, [{"question": "q", "chosen": "b", "rejected": "c"}])
    code, err = _run(capsys, "score", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert code == 2 and "missing field" not in err
    assert f"the rows of {source} are not checked: prompt_column" in err


def test_adapter_whose_base_is_missing_said_with_the_rows(tmp_path, capsys):
    """An adapter folder whose base is not there was said alone, once its tokenizer was
    looked for, and the rows a run later."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    base = tmp_path / "gone"
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": str(base), "peft_type": "LORA"})
    )
    source = _input(tmp_path, [{"prompt": "a", "chosen": "", "rejected": "c"}])
    code, err = _run(capsys, "score", "--model_name_or_path", str(adapter),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert f"  model '{adapter}': its adapter_config.json names" in err
    assert f"{source}: line 1: field 'chosen' is empty" in err.split("data files' rows:")[1]


def test_unknown_flag_said_with_refused_values_and_rows(tmp_path, capsys):
    """generate --do_sample (transformers' spelling) was refused alone, before the other
    flags' values and the input's rows were looked at."""
    source = _input(tmp_path, [{"question": "q"}])
    code, err = _run(capsys, "generate", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"), "--do_sample",
                     "--top_k", "-1", "--prompt_column", "prompt")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    lines = err.splitlines()
    assert "unknown option '--do_sample'" in lines[1]
    assert "top_k must be >= 0 (got -1)" in err and "no such model folder" in err
    assert f"{source}: line 1: missing field 'prompt'" in err.split("data files' rows:")[1]


def test_rows_not_checked_when_their_column_option_is_refused(tmp_path, capsys):
    """A refused column name: the rows, read by it, are said not checked (and why)."""
    source = _input(tmp_path, [{"prompt": "a", "chosen": "", "rejected": "c"}])
    code, err = _run(capsys, "score", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"),
                     "--chosen_column", "x", "--rejected_column", "x")  # fmt: skip
    assert code == 2 and "is empty" not in err
    assert err.splitlines()[-1] == (
        f"  the rows of {source} are not checked: chosen_column, rejected_column (what they "
        "are read by) must be fixed first"
    )


def _plain_folder(tmp_path):
    """A model folder that is not a directpo run (no config.yaml to take beta from)."""
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return str(folder)


def test_plain_folder_without_beta_said_with_refused_values_and_rows(tmp_path, capsys):
    """score of a folder that is not a run, with a refused value: "give --beta and
    --ref_model_name_or_path" was said a run after the value (and the rows) were fixed."""
    source = _input(tmp_path, [{"prompt": "a", "chosen": "b"}])
    plain = _plain_folder(tmp_path)
    code, err = _run(capsys, "score", "--model_name_or_path", plain, "--input", source,
                     "--output", str(tmp_path / "out.jsonl"), "--batch_size", "0")  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert err.splitlines()[1:4] == [
        "  batch_size must be >= 1 (got 0)",
        f"  {plain} has no config.yaml from a directpo run: give --ref_model_name_or_path and "
        "--beta",
        "and the data files' rows:",
    ]
    code, err = _run(capsys, "rank", "--model_name_or_path", plain, "--input", source,
                     "--output", str(tmp_path / "out.txt"), "--beta", "0.1")  # fmt: skip
    assert code == 2 and "the output is JSON Lines" in err
    assert f"{plain} has no config.yaml from a directpo run: give --ref_model_name_or_path\n" in err


def test_unknown_flag_said_with_missing_paths(tmp_path, capsys):
    """An unknown flag was said alone when the other values passed: a missing --input, or a
    plain folder's missing --beta, took the next run."""
    plain = _plain_folder(tmp_path)
    code, err = _run(capsys, "score", "--model_name_or_path", plain, "--input",
                     str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "out.jsonl"),
                     "--bogus", "1")  # fmt: skip
    assert code == 2
    assert err.splitlines()[1:] == [
        "  unknown option '--bogus'",
        f"  input: no such file or folder: {tmp_path / 'none.jsonl'}",
        f"  {plain} has no config.yaml from a directpo run: give --ref_model_name_or_path and "
        "--beta",
    ]


def test_rank_of_a_pairs_file_is_told_score_reads_pairs(tmp_path, capsys):
    """rank of a pairs file (chosen, rejected; OpenAI's preferred_output, non_preferred_output)
    was told to name the field of its responses with --responses_column, which no column of a
    pair fits: it is told that score reads pairs; a row of other fields keeps the option."""
    rows = [
        {"prompt": "p", "chosen": "a", "rejected": "b"},
        {"input": {"messages": [{"role": "user", "content": "p"}]},
         "preferred_output": [{"role": "assistant", "content": "a"}],
         "non_preferred_output": [{"role": "assistant", "content": "b"}]},
        {"prompt": "p", "samples": ["a", "b"]},
    ]  # fmt: skip
    source = _input(tmp_path, rows)
    code, err = _run(capsys, "rank", "--model_name_or_path", str(tmp_path / "nope"),
                     "--input", source, "--output", str(tmp_path / "out.jsonl"))  # fmt: skip
    assert code == 2
    said = err.split("and the data files' rows:\n")[1]
    pair = "a preference pair: score it with directpo score (rank sorts a list of candidates)"
    assert f"'prompt', 'chosen', 'rejected': {pair}" in said
    assert f"'preferred_output', 'non_preferred_output': {pair}" in said
    assert "'prompt', 'samples': name the field of its responses with --responses_column" in said


def test_score_rank_and_generate_say_a_template_fix_they_take(tmp_path, capsys):
    """A chat template's refusal told score and generate to give one 'with the chat_template
    option', or to set tokenizer_name_or_path: train's options, which they refuse as unknown
    (they render with the model folder's own template). They say to put one in the model
    folder; train still names its option."""
    from tiny import save_tiny_model

    model = save_tiny_model("llama", tmp_path / "model")  # its template renders no tool calls
    bare = save_tiny_model("gpt2", tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    chat = {"prompt": [{"role": "user", "content": "p"}],
            "chosen": [{"role": "assistant", "content": "a"}],
            "rejected": [{"role": "assistant", "content": "b"}]}  # fmt: skip
    tool = {**chat, "chosen": [{"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {}}}]}]}  # fmt: skip
    reference = ["--beta", "0.1", "--ref_model_name_or_path", str(bare)]
    for command, folder, row, fix in (
        ("score", bare, chat, "put one in the model folder (its chat_template.jinja), or use a"),
        ("generate", bare, chat, "put one in the model folder (its chat_template.jinja)"),
        ("score", model, tool, "give one that does in the model folder's chat template (its"),
    ):
        extra = reference if command == "score" else []
        code, err = _run(capsys, command, "--model_name_or_path", str(folder), "--input",
                         _input(tmp_path, [row]), "--output", str(tmp_path / "out.jsonl"),
                         *extra)  # fmt: skip
        assert code == 2 and fix in err, err
        assert "chat_template option" not in err and "tokenizer_name_or_path" not in err


def test_a_template_fix_is_said_in_the_python_callers_words(tmp_path):
    """score_file / rank_file / generate_file and ImplicitReward said "with the chat_template
    option", train's option, in Python (the CLI alone reworded it): each says what its caller
    can do where the message is made (the model folder's template; ImplicitReward's tokenizer)."""
    from tiny import save_tiny_model

    from directpo.command_options import GenerateOptions, RankOptions, ScoreOptions
    from directpo.errors import DirectpoError
    from directpo.generate_files import generate_file
    from directpo.reward import ImplicitReward
    from directpo.reward_files import rank_file, score_file

    bare = save_tiny_model("gpt2", tmp_path / "bare")
    (bare / "chat_template.jinja").unlink()
    turn = [{"role": "user", "content": "p"}]
    answer = [{"role": "assistant", "content": "a"}]
    folder_fix = "put one in the model folder (its chat_template.jinja), or use a model whose"
    common = {"model_name_or_path": str(bare), "output": str(tmp_path / "out.jsonl")}
    reward = {"ref_model_name_or_path": str(bare), "beta": 0.1}
    other = [{"role": "assistant", "content": "b"}]
    pair = {"prompt": turn, "chosen": answer, "rejected": other}
    for run, options, row in (
        (score_file, ScoreOptions, pair),
        (rank_file, RankOptions, {"prompt": turn, "responses": [answer, other]}),
        (generate_file, GenerateOptions, {"prompt": turn}),
    ):
        given = {**common, **(reward if run is not generate_file else {})}
        with pytest.raises(DirectpoError) as refused:
            run(options(**given, input=_input(tmp_path, [row])), echo=lambda _: None)
        said = str(refused.value)
        assert folder_fix in said and "chat_template option" not in said, said
    scorer = ImplicitReward(str(bare), str(bare), beta=0.1)
    with pytest.raises(DirectpoError) as refused:
        scorer.score(turn, answer)
    said = str(refused.value)
    assert "pass ImplicitReward a tokenizer that has one (its tokenizer argument)" in said
    assert "chat_template option" not in said


def test_a_rows_missing_responses_are_fixed_in_the_callers_words() -> None:
    """rank's row without its responses: the option and the command named as the caller
    writes them (a Python caller of rank_file was told ``--responses_column`` and
    ``directpo score``, which its call does not take)."""
    from directpo.callers import Caller, Entry, Spelling, speaking_as
    from directpo.command_row_parsers import require_responses
    from directpo.errors import DataError

    said = {}
    for spelling in (Spelling.FLAGS, Spelling.PYTHON):
        for row in (
            {"prompt": "p", "outputs": ["a"]},
            {"prompt": "p", "chosen": "a", "rejected": "b"},
        ):
            with speaking_as(Caller(spelling, Entry.FOLDER)), pytest.raises(DataError) as err:
                require_responses(row, "responses", "responses_column", "f.jsonl: line 1", {})
            said[spelling, "chosen" in row] = str(err.value)
    assert said[Spelling.FLAGS, False].endswith(
        "name the field of its responses with --responses_column"
    )
    assert said[Spelling.PYTHON, False].endswith(
        "name the field of its responses with responses_column=..."
    )
    assert "a preference pair: score it with directpo score (" in said[Spelling.FLAGS, True]
    assert (
        "a preference pair: score it with score_file(ScoreOptions(...)) ("
        in said[Spelling.PYTHON, True]
    )


def test_a_row_of_several_responses_names_rank_as_its_caller_runs_it(tmp_path) -> None:
    """score's row holding a list of responses: "use directpo rank" was said in Python too."""
    from directpo.callers import Caller, Entry, Spelling, speaking_as
    from directpo.command_options import ScoreOptions
    from directpo.command_row_parsers import score_item
    from directpo.errors import DataError

    columns = dict(prompt_column="prompt", response_column="response")
    columns |= dict(chosen_column="chosen", rejected_column="rejected")
    options = ScoreOptions(model_name_or_path="m", input="in.jsonl", output="o.jsonl", **columns)
    row = {"prompt": "p", "response": ["a", "b"]}
    said = {}
    for spelling in (Spelling.FLAGS, Spelling.PYTHON):
        with speaking_as(Caller(spelling, Entry.FOLDER)), pytest.raises(DataError) as err:
            score_item(options, str(tmp_path), "in.jsonl: line 1", row)
        said[spelling] = str(err.value).rsplit("; use ", 1)[-1]
    assert said == {Spelling.FLAGS: "directpo rank", Spelling.PYTHON: "rank_file(RankOptions(...))"}


def test_a_commands_refused_number_is_said_as_the_flag_wrote_it(tmp_path, capsys):
    """score --beta -1 was refused as 'beta must be > 0 (got -1.0)', generate --temperature
    -2 as '(got -2.0)': numbers nobody typed. Each is said as given now."""
    source = _input(tmp_path, [{"prompt": "a", "chosen": "b", "rejected": "c"}])
    output = str(tmp_path / "out.jsonl")
    for command, flag, written, must in (
        ("score", "--beta", "-1", "beta must be > 0"),
        ("score", "--batch_size", "0", "batch_size must be >= 1"),
        ("generate", "--temperature", "-2", "temperature must be >= 0"),
        ("generate", "--top_p", "1.50", "top_p must be in (0, 1]"),
        ("generate", "--repetition_penalty", "0", "repetition_penalty must be > 0"),
    ):
        code, err = _run(capsys, command, "--model_name_or_path", str(tmp_path), "--input",
                         source, "--output", output, flag, written)  # fmt: skip
        assert code == 2 and f"{must} (got {written})" in err, (flag, err)
