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
