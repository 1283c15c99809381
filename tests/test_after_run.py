"""The lines a finished run prints: the suggested score command reads what the run evaluated."""

from __future__ import annotations

import json
import subprocess

from directpo.after_run import next_steps


def test_the_next_score_reads_only_the_rows_max_eval_samples_evaluated(tmp_path) -> None:
    """With max_eval_samples the run read the eval file's first N rows only, but the next:
    line scored the whole file (rows the run never read, which may be bad or endless)."""
    held = tmp_path / "held.jsonl"
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    held.write_text("".join(json.dumps(row) + "\n" for row in rows))
    line = next_steps("out", str(held), 2)
    command = line.removeprefix("next: ").split(" (")[0]
    cut, score = command.split(" && ")
    assert score == (
        "directpo score --model_name_or_path out --input held.first2.jsonl --output scored.jsonl"
    )
    subprocess.run(cut, shell=True, cwd=tmp_path, check=True)  # the line's own cut
    kept = (tmp_path / "held.first2.jsonl").read_text().splitlines()
    assert [json.loads(row) for row in kept] == rows[:2]
    assert "first 2 rows, as the run evaluated" in line


def test_a_file_it_cannot_cut_is_said_to_be_read_whole(tmp_path) -> None:
    line = next_steps("out", str(tmp_path / "held.parquet"), 7)
    assert f"--input {tmp_path}/held.parquet" in line
    assert "it reads every row, the run evaluated the first 7: max_eval_samples" in line
    assert "head" not in next_steps("out", str(tmp_path / "held.jsonl"))  # (every row read)


def test_the_cut_keeps_the_rows_the_run_evaluated_across_blank_lines(tmp_path) -> None:
    """The reader skips blank lines, so a file with one after each row ran its first 2 rows,
    but 'head -n 2' kept the first row alone: score's accuracy was of half the pairs."""
    held = tmp_path / "held.jsonl"
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    held.write_text("".join(json.dumps(row) + "\n\n" for row in rows))
    line = next_steps("out", str(held), 2)
    cut = line.removeprefix("next: ").split(" && ")[0]
    subprocess.run(cut, shell=True, cwd=tmp_path, check=True)
    kept = (tmp_path / "held.first2.jsonl").read_text().splitlines()
    assert [json.loads(row) for row in kept if row.strip()] == rows[:2]


def test_a_file_of_no_more_rows_than_evaluated_is_scored_as_it_is(tmp_path) -> None:
    held = tmp_path / "held.jsonl"
    held.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n\n')
    line = next_steps("out", str(held), 2)
    assert "head" not in line
    assert f"--input {held} --output scored.jsonl" in line
    assert "(its implicit rewards, of every row the run evaluated)" in line


def test_a_json_list_saved_as_jsonl_is_said_to_be_read_whole(tmp_path) -> None:
    """A .jsonl holding one JSON list is read as a list (readers.holds_a_json_list): 'head -n 2'
    of it kept "[" and the first row's opening line, a file score refused."""
    held = tmp_path / "held.jsonl"
    rows = [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(5)]
    for text in (json.dumps(rows, indent=2), json.dumps({"data": rows}) + "\n"):
        held.write_text(text)  # (the object on one line: 'head -n 2' kept every row)
        line = next_steps("out", str(held), 2)
        assert "head" not in line and f"--input {held} --output scored.jsonl" in line
        assert "it reads every row, the run evaluated the first 2: max_eval_samples" in line
