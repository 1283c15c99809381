"""The lines a run prints as it ends: the command that resumes a stopped run, and those that
use a finished one (scoring its held-out pairs, drawing its curves)."""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from directpo.errors import ConfigError
from directpo.launchers import under_launcher
from directpo.option_paths import expand_patterns


def resume_command(tokens: Sequence[str]) -> str:
    """The command that continues a stopped run: the train command as given (without its own
    resume_from_checkpoint), resuming from the newest checkpoint."""
    kept: list[str] = []
    skip = False
    for token in tokens:
        if skip:
            skip = False
            continue
        if token == "--resume_from_checkpoint":
            skip = True  # (its value follows)
            continue
        if not token.startswith("--resume_from_checkpoint="):
            kept.append(token)
    resume = "--resume_from_checkpoint latest"
    if under_launcher():  # (the launcher's own arguments are not this process's)
        return f"resume: the same launch with {resume}"
    return f"resume: {shlex.join(['directpo', 'train', *kept])} {resume}"


def next_steps(output_dir: str, eval_file: Any, max_eval_samples: int | None = None) -> str:
    """The commands that use a finished run (it ended at "model saved to ..."): its held-out
    pairs scored by the implicit reward when they are one file, its curves drawn. With
    ``max_eval_samples`` the run read the file's first rows only (the rest, perhaps bad or
    endless, never): a JSON Lines file is cut to those first (``head -n`` their lines), scored
    alone; of another format the line says that score reads every row."""
    run = shlex.quote(output_dir)
    if isinstance(eval_file, str | list):  # a glob pattern is the files it matches (score
        # reads no pattern: it said 'no such file' of the one the run had read)
        with contextlib.suppress(ConfigError):  # (matched when the run read it)
            eval_file = expand_patterns("eval_file", eval_file)
    if isinstance(eval_file, list) and len(eval_file) == 1:  # (a list of one file: that file)
        eval_file = eval_file[0]
    pairs = shlex.quote(eval_file) if isinstance(eval_file, str) else "PAIRS.jsonl"
    score = _score_command(run, pairs)
    said = "its implicit rewards"
    if max_eval_samples is not None and isinstance(eval_file, str):
        n = max_eval_samples
        if eval_file.lower().endswith(".jsonl") and _cut_by_lines(eval_file):
            lines = _lines_of_first_rows(eval_file, n)
            if lines is None:  # (the file holds no more rows: the run evaluated them all)
                said = "its implicit rewards, of every row the run evaluated"
            else:
                first = shlex.quote(f"{Path(eval_file).stem}.first{n}.jsonl")
                score = f"head -n {lines} {pairs} > {first} && {_score_command(run, first)}"
                said = f"the implicit rewards of the first {n} rows, as the run evaluated"
        else:
            said += f"; it reads every row, the run evaluated the first {n}: max_eval_samples"
    return f"next: {score} ({said}); directpo plot {run} (training curves)"


def _cut_by_lines(path: str) -> bool:
    """A JSON Lines file, whose first rows ``head -n`` keeps (not a JSON list, nor an object
    holding the rows, saved as .jsonl, which is read whole: its first lines are no rows; 'head
    -n 2' of a one-line {"data": [rows]} kept every row)."""
    from directpo.json_files import json_document
    from directpo.readers import holds_a_json_list

    try:
        return os.path.isfile(path) and not (holds_a_json_list(path) or json_document(path))
    except (OSError, UnicodeDecodeError, EOFError):
        return False


def _lines_of_first_rows(path: str, rows: int) -> int | None:
    """The count of the file's lines that hold its first ``rows`` rows, as the reader counts
    them (blank lines between rows are skipped: ``head -n rows`` of a file with one after each
    row kept half of what the run evaluated); None when the file holds no more rows."""
    from directpo.readers import open_rows

    try:
        read, _ = open_rows(path, path, lazy=True)
        for index, (where, _) in enumerate(read):
            if index == rows:  # (the next row: the lines before its first are the rows')
                return int(str(where).split()[-1]) - 1
    except Exception:  # a file that changed since the run read it: the rows' count, as lines
        return rows
    return None


def _score_command(run: str, pairs: str) -> str:
    return f"directpo score --model_name_or_path {run} --input {pairs} --output scored.jsonl"
