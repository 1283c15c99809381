"""Prompt files (online prompt_file, eval_prompts_file): every bad row said in one line."""

from __future__ import annotations

import pytest
from tiny import write_jsonl

from directpo.errors import DataError
from directpo.prompts import load_prompt_rows, load_prompts


@pytest.mark.parametrize("load", [load_prompts, load_prompt_rows])
def test_every_bad_row_of_a_prompt_file_is_said_at_once(tmp_path, load) -> None:
    """A prompt file stopped at its first bad row (fixed one row per run); its bad rows are now
    said together, as a pairs file's are (a prompt file has no rows to skip)."""
    rows = [{"prompt": "a"}, {"prompt": 5}, {"text": "b"}, {"prompt": "c"}, {"prompt": ""}]
    path = write_jsonl(tmp_path / "prompts.jsonl", rows)
    path.write_text(path.read_text() + "{oops\n")
    with pytest.raises(DataError) as err:
        load(str(path))
    assert str(err.value) == (
        f"{path}: line 2: field 'prompt' must be a string, got a number; line 3: missing "
        "field 'prompt'; line 5: field 'prompt' is empty; line 6: invalid JSON (Expecting "
        "property name enclosed in double quotes at column 2)"
    )
    path.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "a"}\n')
    assert len(load(str(path))[0]) == (2 if load is load_prompts else 3)


@pytest.mark.parametrize("load", [load_prompts, load_prompt_rows])
def test_a_prompt_of_empty_messages_is_said_as_an_empty_text_is(tmp_path, load) -> None:
    """generate, prompt_file and rank sampled replies to a prompt whose one user turn was empty,
    where a prompt "" was refused; it is refused alike (an implicit pair's shared turns too)."""
    empty = [{"role": "user", "content": ""}]
    pair = {"chosen": [*empty, {"role": "assistant", "content": "a"}],
            "rejected": [*empty, {"role": "assistant", "content": "b"}]}  # fmt: skip
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": [{"role": "user", "content": "hi"}]},
                                              {"prompt": empty}])  # fmt: skip
    with pytest.raises(DataError, match=r"line 2: field 'prompt' has only empty messages$"):
        load(str(path))
    path = write_jsonl(tmp_path / "q.jsonl", [pair])
    with pytest.raises(DataError, match=r"line 1: the prompt \(the turns 'chosen' and 'rej"):
        load(str(path))


def test_a_pairs_file_in_openais_format_gives_its_prompts(tmp_path) -> None:
    """generate, prompt_file and eval_prompts_file on a pairs file in OpenAI's preference
    format said "missing field 'prompt'" of every row, where training reads input.messages
    as the prompt (with input.tools)."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    messages = [{"role": "user", "content": "Hi"}]
    reply = [{"role": "assistant", "content": "Hello"}]
    other = [{"role": "assistant", "content": "No"}]
    row = {"input": {"messages": messages, "tools": tools},
           "preferred_output": reply, "non_preferred_output": other}  # fmt: skip
    path = write_jsonl(tmp_path / "openai.jsonl", [row, {**row, "input": {"messages": messages}}])
    prompts, _ = load_prompt_rows(str(path))
    assert prompts[0].prompt == messages and prompts[0].template_args == {"tools": tools}
    assert prompts[1] == messages
    assert load_prompts(str(path))[0][0].prompt == messages  # (distinct: one per prompt)
    lacking = {"input": row["input"], "non_preferred_output": reply}  # said by OpenAI's names
    with pytest.raises(DataError, match=r"line 1: missing field 'preferred_output'"):
        load_prompts(str(write_jsonl(tmp_path / "bad.jsonl", [lacking])))


@pytest.mark.parametrize("load", [load_prompt_rows, load_prompts])
def test_an_implicit_pairs_file_gives_the_prompts_training_reads(tmp_path, load) -> None:
    """generate (and prompt_file, eval_prompts_file) of an Anthropic HH file, chosen and
    rejected alone, said "missing field 'prompt'" of every row of a file train reads: its
    prompts are now the pairs' shared start, as training's."""
    hh = {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!",
          "rejected": "\n\nHuman: Hi\n\nAssistant: Go away."}  # fmt: skip
    user = [{"role": "user", "content": "Hi"}]
    chat = {"chosen": [*user, {"role": "assistant", "content": "Hello!"}],
            "rejected": [*user, {"role": "assistant", "content": "Go away."}]}  # fmt: skip
    path = write_jsonl(tmp_path / "hh.jsonl", [hh, chat])
    prompts, others = load(str(path))
    assert prompts == ["\n\nHuman: Hi\n\nAssistant:", user]
    assert others[0] == hh
    # a question column of its own is named, as training names it
    orca = {"system": "", "question": "Sky?", "chosen": "Blue.", "rejected": "Green."}
    with pytest.raises(DataError, match=r"line 1: there is no 'prompt' column, .* prompt_column"):
        load(str(write_jsonl(tmp_path / "orca.jsonl", [orca])))
    with pytest.raises(DataError, match=r"line 1: missing field 'prompt'$"):
        load(str(write_jsonl(tmp_path / "other.jsonl", [{"chosen": "Blue."}])))


def test_a_prompt_header_of_another_case_is_named_in_the_refusal(tmp_path) -> None:
    """generate's --input with a spreadsheet's ``Prompt`` header said "missing field 'prompt'"
    alone; the refusal names the column as the header writes it."""
    rows = write_jsonl(tmp_path / "prompts.jsonl", [{"Prompt": "Hi", "System": "Be kind."}])
    said = "missing field 'prompt'; its columns are named in another case: set prompt_column: "
    with pytest.raises(DataError, match=said + "Prompt, system_column: System"):
        load_prompts(str(rows), system_column="system")


def test_a_prompt_under_a_well_known_name_is_named_in_the_refusal(tmp_path, capsys) -> None:
    """generate's --input of {"question": ..., "system": ...} rows (Intel/orca_dpo_pairs')
    said "missing field 'prompt'" alone; the refusal names the column holding it, as the flag
    to give on the command line."""
    from directpo.cli import main

    rows = write_jsonl(tmp_path / "prompts.jsonl", [{"question": "Hi", "system": "Be kind."}])
    with pytest.raises(DataError, match="missing field 'prompt'; set prompt_column: question"):
        load_prompts(str(rows))
    args = ["--model_name_or_path", str(tmp_path), "--input", str(rows), "--output", "o.jsonl"]
    assert main(["generate", *args]) == 2
    assert "missing field 'prompt'; give --prompt_column question" in capsys.readouterr().err


def test_the_default_prompt_column_beside_another_given_is_named(tmp_path, capsys) -> None:
    """rank / generate --prompt_column question of {"prompt": ...} rows said "missing field
    'question'" alone (score's pair rows, "share no common prefix"): the refusal names the
    row's prompt column, as the flag to give."""
    from directpo.cli import main
    from directpo.prompts import parse_prompt_and_responses

    rows = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": "Hi"}])
    with pytest.raises(DataError, match="missing field 'question'; set prompt_column: prompt$"):
        load_prompts(str(rows), prompt_column="question")
    with pytest.raises(DataError, match="'question'; set prompt_column: prompt$"):  # rank's
        parse_prompt_and_responses({"prompt": "Hi", "responses": ["a"]}, "question", "x", "l 1")
    args = ["--model_name_or_path", str(tmp_path), "--input", str(rows), "--output", "o.jsonl"]
    assert main(["generate", *args, "--prompt_column", "question"]) == 2
    assert "missing field 'question'; give --prompt_column prompt" in capsys.readouterr().err


@pytest.mark.parametrize("load", [load_prompts, load_prompt_rows])
def test_a_prompt_files_rows_held_by_one_json_object_are_read_as_its_rows(tmp_path, load):
    """{"data": [prompt rows]} saved as .jsonl on one line (as some exports write it) was one
    row of a column 'data' ("missing field 'prompt'") for generate --input, prompt_file and
    eval_prompts_file, where the pair form and the pretty-printed one were read as rows; a
    row whose column holds objects (tools) without a prompt each is still a row."""
    import json

    rows = [{"prompt": "a"}, {"prompt": [{"role": "user", "content": "b"}]}, {"prompt": "c"}]
    wanted = ["a", [{"role": "user", "content": "b"}], "c"]
    for name, text in (
        ("one_line.jsonl", json.dumps({"data": rows}) + "\n"),
        ("versioned.jsonl", json.dumps({"rows": rows, "version": 2})),
        ("pretty.jsonl", json.dumps({"data": rows}, indent=2)),
    ):
        (tmp_path / name).write_text(text)
        assert load(str(tmp_path / name))[0] == wanted, name
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    turn = [{"role": "user", "content": "a"}]
    path = write_jsonl(tmp_path / "tools.jsonl", [{"prompt": turn, "tools": [tool]}])
    assert len(load(str(path))[0]) == 1


def test_rows_refused_while_a_batch_waits_are_held_a_batch_at_most(tmp_path, monkeypatch):
    """Rows ``parse`` refuses after a row waiting for ``check_many`` were held until its batch
    was checked: a good first row, then a million refused ones (a wrong prompt_column's),
    held every refusal to the file's end. At most a batch's are held now, and every refusal
    is said in the file's order, as rows checked one at a time say them."""
    from directpo import prompts

    lengths: list[int] = []

    class Watched(prompts._InOrder):
        def add(self, where: str, problem: str) -> None:
            super().add(where, problem)
            lengths.append(len(self.held))

    def parse(where, row):
        if "prompt" not in row:
            raise DataError(f"{where}: missing field 'prompt'")
        return row["prompt"]

    def check_many(items):
        return [None if prompt != "refused" else "the template refused it" for _, prompt in items]

    rows = [{"prompt": "ok"}, *[{"text": "x"}] * 40, {"prompt": "refused"}, *[{"text": "x"}] * 40]
    data = str(write_jsonl(tmp_path / "p.jsonl", rows))
    monkeypatch.setattr(prompts, "_InOrder", Watched)
    said = []
    for together in (8, 1):
        monkeypatch.setattr(prompts, "CHECKED_TOGETHER", together)
        with pytest.raises(DataError) as refused:
            prompts.check_every_row(data, parse, check_many=check_many)
        said.append(str(refused.value))
    assert said[0] == said[1] and "line 42: the template refused it" in said[0]
    assert max(lengths) <= 8


def test_refusals_at_a_batch_boundary_of_128_are_said_in_the_files_order(tmp_path) -> None:
    """Rows refused by ``check_many`` (the template) and by ``parse`` (a field) on each side of
    the boundaries of ``CHECKED_TOGETHER`` (128) rows are said in the file's order, as rows
    checked one at a time say them."""
    from directpo import prompts

    def parse(where, row):
        if "prompt" not in row:
            raise DataError(f"{where}: missing field 'prompt' ({row['text']})")
        return row["prompt"]

    def check_many(items):
        assert len(items) <= prompts.CHECKED_TOGETHER
        return [None if not p.startswith("bad") else f"refused {p}" for _, p in items]

    rows = [{"prompt": "ok"} for _ in range(300)]
    for line in (128, 129, 257):  # the last of a batch, the first of the next
        rows[line - 1] = {"prompt": f"bad {line}"}
    for line in (127, 130):
        rows[line - 1] = {"text": str(line)}
    data = str(write_jsonl(tmp_path / "p.jsonl", rows))
    said = []
    for together in (128, 1):
        prompts.CHECKED_TOGETHER, default = together, prompts.CHECKED_TOGETHER
        try:
            with pytest.raises(DataError) as refused:
                prompts.check_every_row(data, parse, check_many=check_many)
        finally:
            prompts.CHECKED_TOGETHER = default
        said.append(str(refused.value))
    assert said[0] == said[1]
    assert said[0].endswith(
        "line 127: missing field 'prompt' (127); line 128: refused bad 128; line 129: refused "
        "bad 129; 2 more rows with other problems: line 130, line 257"
    )


def test_a_rows_document_on_a_prompt_files_line_is_said(tmp_path) -> None:
    """{"data": [prompts]} on line 1 of a file of prompts a line was "line 1: missing field
    'prompt'", not saying what the line is (generate --input, prompt_file alike)."""
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"data": [{"prompt": "a"}, {"prompt": "b"}]}\n{"prompt": "c"}\n')
    with pytest.raises(DataError) as err:
        load_prompts(str(path))
    assert str(err.value) == (
        f"{path}: line 1: missing field 'prompt'; it is a JSON document of rows ('data' lists "
        "2 rows) inside a JSON Lines file, whose every line is one row; split it out into a "
        ".json file of its own, or write its rows one a line"
    )
