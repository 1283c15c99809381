"""Files of another trainer's format said by what they are (row_kinds.py)."""

from __future__ import annotations

import pytest
from tiny import write_jsonl

from directpo.config import DPOConfig
from directpo.data import load_preferences
from directpo.errors import ConfigError, DataError
from directpo.row_kinds import command_rows_fix, other_format, paired_replies

NEEDS = "DPO needs a chosen and a rejected reply per prompt"
TURNS = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]


def said(rows: list[dict]) -> str:
    with pytest.raises(DataError) as info:
        load_preferences(rows)
    return str(info.value)


def test_files_of_other_trainers_are_said_by_their_format_not_a_column_to_set() -> None:
    """KTO, SFT and GRPO files were told "column 'chosen' not found; set chosen_column /
    rejected_column", which no column setting fixes: each is said by what it holds."""
    kto = said([{"prompt": "a", "completion": "b", "label": True}])
    assert "unpaired preference rows (prompt, completion, label) as TRL's KTOTrainer" in kto
    assert NEEDS in kto and "chosen_column" not in kto
    sft = said([{"messages": TURNS}])
    assert f"conversations (messages) as TRL's SFTTrainer reads: {NEEDS}" in sft
    assert "prompt_file" not in sft  # (a conversation is no prompt online DPO reads)
    assert "text rows (text) as TRL's SFTTrainer" in said([{"text": "Hello world"}])
    completions = said([{"prompt": "a", "completion": "b"}])
    assert "prompt-completion rows (prompt, completion) as TRL's SFTTrainer" in completions
    assert "prompt_file with online: true" in completions
    prompts = said([{"prompt": "a"}, {"prompt": "b"}])
    assert f"prompts alone (prompt) as TRL's GRPOTrainer reads: {NEEDS}" in prompts
    assert "chosen_column" not in prompts + sft + completions


def test_pairs_under_other_names_keep_the_column_hint_only_where_a_rename_reads_them() -> None:
    """A rename reads response_a / response_b only where no column says which one won."""
    winner = said([{"prompt": "a", "response_a": "b", "response_b": "c", "winner": "model_b"}])
    assert "pairs under other names (response_a, response_b, winner)" in winner
    assert "preferred reply said by 'winner'" in winner and "chosen_column" not in winner
    plain = said([{"prompt": "a", "response_a": "b", "response_b": "c"}])
    assert plain.endswith(
        "set chosen_column: response_a, rejected_column: response_b if response_a is always "
        "the preferred reply"
    )
    renamed = said([{"prompt": "a", "chosen_response": "b", "rejected_response": "c"}])
    assert renamed.endswith(
        "set chosen_column: chosen_response, rejected_column: rejected_response"
    )
    assert paired_replies(["prompt", "response_0", "response_1"]) == ("response_0", "response_1")
    assert paired_replies(["history", "human_ref_A", "human_ref_B"]) == (
        "human_ref_A",
        "human_ref_B",
    )
    assert paired_replies(["data", "beta"]) is None  # (a name ending in a is no pair's)
    assert other_format(["context", "good", "bad"]) is None  # an unknown layout: the old hint


def test_several_replies_a_prompt_and_red_team_transcripts_are_said_by_what_they_hold() -> None:
    """Nectar's ranked answers, UltraFeedback's raw completions, directpo generate's and rank's
    own output, and Anthropic's red-team transcripts were told "set chosen_column /
    rejected_column", which no column names in them: each is said by what it holds, with the
    pairs to write (and a column pair beside such a list keeps the column hint)."""
    ranked = [{"answer": "Mango.", "model": "m", "rank": 1.0}, {"answer": "No.", "rank": 2.0}]
    nectar = said([{"prompt": "\n\nHuman: Fruit?\n\nAssistant:", "answers": ranked}])
    for rows, column in (
        ([{"prompt": "a", "answers": ranked, "turns": 1}], "answers"),
        ([{"instruction": "a", "completions": [{"response": "b", "overall_score": 8}]}],
         "completions"),
        ([{"prompt": "a", "completions": ["b", "c"]}], "completions"),  # generate's output
        ([{"prompt": "a", "responses": ["b", "c"], "ranked": [{"response": "b"}]}], "responses"),
    ):  # fmt: skip
        text = said(rows)
        assert f"several replies per prompt ({column}), as Nectar" in text, text
        assert f"{NEEDS}; write rows of prompt, chosen, rejected, a better-ranked" in text
        assert "chosen_column" not in text
    assert nectar.startswith("rows: several replies per prompt (answers)")
    red_team = said([{"transcript": "\n\nHuman: a\n\nAssistant: b", "rating": 0}])
    assert red_team == (
        "rows: one conversation a row (transcript), each rated alone as Anthropic's red-team "
        f"attempts are: {NEEDS}; write rows of prompt, chosen, rejected"
    )
    beside = said([{"prompt": "a", "completions": ["b"], "chosen_text": "b", "rejected_text": "c"}])
    assert beside.endswith("set chosen_column: chosen_text, rejected_column: rejected_text")


def test_sharegpt_conversations_are_said_by_what_they_hold() -> None:
    """A ShareGPT / LLaMA-Factory supervised file (conversations of {from, value} messages) was
    "column 'chosen' not found (columns: conversations); set chosen_column / rejected_column",
    which no column in it fixes, where TRL's messages were said as SFT rows. It is said as
    ShareGPT conversations, with the pairs to write in the form a template reads. One
    conversation given as the file (its messages read as rows: a .jsonl of one conversation on
    one line) was "column 'chosen' not found (columns: role, content)": said as messages."""
    turns = [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "a"}]
    for row in ({"conversations": turns}, {"id": "x", "conversations": turns, "system": ""}):
        assert said([row]) == (
            "rows: ShareGPT conversations (conversations), as LLaMA-Factory's supervised data "
            f"holds them: {NEEDS}; write rows of prompt, chosen, rejected (messages as role / "
            "content, not from / value)"
        )
    for messages, keys in (
        (turns, "from, value"),
        ([{"role": "user", "content": "Q"}, {"role": "assistant"}], "role, content"),
    ):
        assert said(messages) == (  # (one conversation given as the file's rows)
            f"rows: messages as rows ({keys}): one conversation, not rows of pairs: {NEEDS}; "
            "write rows of prompt, chosen, rejected, a conversation's messages in one row's prompt"
        )
    ranked = {"conversations": turns[:1], "chosen": turns[1], "rejected": turns[1]}
    assert "ShareGPT conversations" not in said([ranked])  # (pairs: the chosen one is said)


def test_a_kto_file_says_whether_pairs_can_be_written_from_it(tmp_path) -> None:
    """A prompt with a true and a false reply anywhere in the file (not only its first row)
    is said; a file without one is told no pair can be made."""
    rows = [
        {"prompt": "p1", "completion": "a", "label": True},
        {"prompt": "p2", "completion": "b", "label": True},
        {"prompt": "p3", "completion": "c", "label": False},
        {"prompt": "p2", "completion": "d", "label": False},
    ]
    both = said(rows)
    assert "its prompt 'p2' has a reply labelled true and one labelled false" in both
    assert "directpo does not pair them itself" in both
    none = said(rows[:3])
    assert none.endswith(
        "no prompt of it has both a true and a false reply, so no pair can be made of it"
    )
    path = write_jsonl(tmp_path / "kto.jsonl", rows)
    assert said(str(path)).startswith(f"{path}: unpaired preference rows")
    sheet = tmp_path / "kto.csv"  # a CSV's labels read back as text
    sheet.write_text("prompt,completion,label\np1,a,True\np1,b,False\n")
    assert "its prompt 'p1' has a reply labelled true and one labelled false" in said(str(sheet))


def test_an_eval_file_of_another_format_is_said_so(tmp_path) -> None:
    """The eval file's rows are read as the train file's: the same line for them."""
    good = {"prompt": "a", "chosen": " b", "rejected": " c"}
    train = write_jsonl(tmp_path / "train.jsonl", [good])
    held = write_jsonl(tmp_path / "eval.jsonl", [{"messages": TURNS}])
    (tmp_path / "config.json").write_text("{}")  # (a model folder, as far as the check looks)
    with pytest.raises(ConfigError) as info:
        DPOConfig(
            model_name_or_path=str(tmp_path),
            train_file=str(train),
            eval_file=str(held),
            learning_rate=-1,
        )
    assert (
        str(info.value)
        .splitlines()[-1]
        .startswith(f"  {held}: conversations (messages) as TRL's SFTTrainer reads: {NEEDS}")
    )


def test_rows_with_a_reply_under_another_name_keep_the_column_hint() -> None:
    """Only a prompt with a GRPO dataset's extras is 'prompts alone': a column that may hold a
    reply (good, rejected) keeps the hint to name it."""
    assert other_format(["prompt", "answer", "id"]) is not None
    assert other_format(["prompt", "good", "rejected"]) is None
    assert other_format(["prompt", "good"]) is None
    assert said([{"prompt": "a", "good": "b"}]).endswith("set chosen_column / rejected_column")


def test_score_and_rank_say_a_file_of_another_format_by_what_it_holds(tmp_path, capsys) -> None:
    """score and rank told an SFT, GRPO or comparison file to "name the field of its responses
    with --response_column", which no column of it fits: each is said by what it holds."""
    from directpo import cli

    rows = {
        "sft": {"messages": TURNS},
        "grpo": {"prompt": "a", "id": 4},  # (with an answer: the response to name, maybe)
        "ab": {"prompt": "a", "response_a": "b", "response_b": "c", "winner": "model_a"},
        "kto": {"prompt": "a", "completion": "b", "label": False},
    }
    said = {}
    for command in ("score", "rank"):
        for name, row in rows.items():
            source = write_jsonl(tmp_path / f"{name}.jsonl", [row])
            pairs = ["--chosen_column", "chosen", "--rejected_column", "rejected"]
            argv = [command, "--model_name_or_path", str(tmp_path / "nope"), "--input", str(source)]
            argv += ["--output", str(tmp_path / "out.jsonl"), "--prompt_column", "prompt"]
            code = cli.main(argv + pairs * (command == "score"))
            assert code == 2
            said[command, name] = capsys.readouterr().err.split("and the data files' rows:\n")[-1]
    for key, fix in {
        ("score", "sft"): "the row has 'messages': conversations (messages) as TRL's SFTTrainer "
        "reads: score reads a prompt and its response (prompt, response) or a pair",
        ("rank", "sft"): "rank reads a prompt and a list of candidate responses",
        ("score", "grpo"): "prompts alone (prompt) as TRL's GRPOTrainer reads: score reads",
        ("rank", "grpo"): "sample responses with directpo generate, whose output directpo rank",
        ("score", "ab"): "score it with --chosen_column response_a --rejected_column response_b",
        ("rank", "ab"): "score it with directpo score --chosen_column response_a --rejected_col",
        ("rank", "kto"): "one response a row ('completion'): score it with directpo score",
    }.items():
        assert fix in said[key], said[key]
        assert "name the field of its responses" not in said[key]
    assert "missing field" not in said["score", "kto"]  # (a response a row: what score reads)


def test_score_and_rank_say_nectars_ranked_answers_as_candidates(tmp_path, capsys) -> None:
    """A Nectar file (prompt, answers: [{answer, model, rank}]) was told "name the field of its
    responses with --response_column" by score, which reads one response a row; rank named no
    column, and with --responses_column answers said "got one conversation" of the answers.
    score says to rank them, rank names the column, and its objects are said as objects."""
    from directpo import cli

    answers = [{"answer": "Mango.", "model": "m", "rank": 1.0}, {"answer": "No.", "rank": 2.0}]
    source = str(write_jsonl(tmp_path / "nectar.jsonl", [{"prompt": "Fruit?", "answers": answers}]))
    rank_input = str(write_jsonl(tmp_path / "rank.jsonl", [{"prompt": "a", "responses": ["b"]}]))
    said = {}
    for command, path, extra in (
        ("score", source, []),
        ("rank", source, []),
        ("rank", source, ["--responses_column", "answers"]),
        ("score", rank_input, []),
    ):
        argv = [command, "--model_name_or_path", str(tmp_path / "nope"), "--input", path]
        argv += ["--output", str(tmp_path / "out.jsonl"), "--prompt_column", "prompt", *extra]
        pairs = ["--chosen_column", "chosen", "--rejected_column", "rejected"]  # (no run)
        assert cli.main(argv + pairs * (command == "score")) == 2
        said[command, path, bool(extra)] = capsys.readouterr().err
    assert (
        "several replies per prompt ('answers'): rank them with directpo rank --responses_column "
        "answers (score reads one response a row, or a pair)" in said["score", source, False]
    )
    assert (
        "its candidates are in 'answers': --responses_column answers" in said["rank", source, False]
    )
    assert (
        "field 'answers' must be a list of candidate responses, got objects (answer, model, "
        "rank), not responses: write each candidate's text as a string of the list"
        in said["rank", source, True]
    )
    assert (
        "several replies per prompt ('responses'): rank them with directpo rank (score"
        in (said["score", rank_input, False])
    )


# (each was said in one caller's words to all: 'prompt_file with online: true' to a flag's and
# a keyword's user, 'directpo score --chosen_column a' to a Python caller of rank_file)
ROW_KIND_FIXES = [
    (
        lambda: other_format(["prompt", "completion"]),
        "prompt_file with online: true",
        "--prompt_file with --online",
        "prompt_file=... with online=True",
    ),
    (
        lambda: other_format(["prompt"]),
        "give this file as prompt_file with online: true,",
        "give this file as --prompt_file with --online,",
        "give this file as prompt_file=... with online=True,",
    ),
    (
        lambda: command_rows_fix(["prompt", "response_a", "response_b"], "rank", "prompt"),
        "score it with directpo score --chosen_column response_a --rejected_column response_b",
        "score it with directpo score --chosen_column response_a --rejected_column response_b",
        "score it with score_file(ScoreOptions(chosen_column='response_a', "
        "rejected_column='response_b'))",
    ),
    (
        lambda: command_rows_fix(["prompt", "response_a", "response_b"], "score", "prompt"),
        "score it with chosen_column: response_a, rejected_column: response_b",
        "score it with --chosen_column response_a --rejected_column response_b",
        "score it with chosen_column='response_a', rejected_column='response_b'",
    ),
    (
        lambda: command_rows_fix(["prompt", "answers"], "score", "prompt"),
        "rank them with directpo rank --responses_column answers (",
        "rank them with directpo rank --responses_column answers (",
        "rank them with rank_file(RankOptions(responses_column='answers')) (",
    ),
    (
        lambda: command_rows_fix(["prompt", "answers"], "rank", "prompt"),
        "its candidates are in 'answers': responses_column: answers",
        "its candidates are in 'answers': --responses_column answers",
        "its candidates are in 'answers': responses_column='answers'",
    ),
    (
        lambda: command_rows_fix(["prompt", "completion", "label"], "rank", "prompt"),
        "score it with directpo score (",
        "score it with directpo score (",
        "score it with score_file(ScoreOptions(...)) (",
    ),
    (
        lambda: command_rows_fix(["prompt"], "rank", "prompt"),
        "sample responses with directpo generate, whose output directpo rank reads",
        "sample responses with directpo generate, whose output directpo rank reads",
        "sample responses with generate_file(GenerateOptions(...)), whose output "
        "rank_file(RankOptions(...)) reads",
    ),
]


@pytest.mark.parametrize(("make", "recipe", "flags", "python"), ROW_KIND_FIXES)
def test_a_files_kind_is_fixed_in_the_callers_words(make, recipe, flags, python) -> None:
    """A file of another kind's fix names the options and the command as its caller writes
    them: a recipe's keys, a command line's flags and ``directpo score``, a Python caller's
    keywords and ``score_file(ScoreOptions(...))`` (each was told one caller's words)."""
    from directpo.callers import Caller, Entry, Spelling, speaking_as

    for spelling, expected in (
        (Spelling.RECIPE, recipe),
        (Spelling.FLAGS, flags),
        (Spelling.PYTHON, python),
    ):
        entry = Entry.TRAIN if spelling is Spelling.RECIPE else Entry.FOLDER
        with speaking_as(Caller(spelling, entry)):
            said = make()
        assert expected in said, (spelling, said)
