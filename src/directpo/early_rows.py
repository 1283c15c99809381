"""A config's data rows checked beside its refused values.

A config with a bad value and a data file with bad rows took two runs: the value was refused
when the config was built, and the rows were read only by the next run, once the value was
fixed. Reading the rows needs no model (seconds for 100k rows), so a config refused for its
values reads its train and eval files too and says their bad rows in the same error; where a
refused value is one the rows are read by (a column name), the line says that they were not
checked, and why.
"""

from __future__ import annotations

import os
from typing import Any

from directpo.errors import DataError
from directpo.options import names_any

# the options that decide how rows are read: refused, the rows cannot be checked
READ_BY = ("prompt_column", "chosen_column", "rejected_column", "system_column")


def row_problems(config: Any, refused: list[str]) -> list[str]:
    """One line of each data file's bad rows (``load_preferences``' own line), or one saying
    the rows were not checked because of a refused option they are read by. ``refused``: the
    config's refused lines.
    Files that are not there, glob patterns, streamed files (read only as far as max_steps
    takes) and an online run's prompts are left to the run."""
    files = _local_files(config)
    if not files:
        return []
    blocking = [key for key in READ_BY if any(names_any(line, {key}) for line in refused)]
    if blocking:
        return [
            f"the rows of {', '.join(files)} are not checked: {', '.join(blocking)} (the "
            "columns they are read by) must be fixed first"
        ]
    from directpo.data import Columns, load_preferences  # (data imports the config's module)

    columns = Columns(
        config.prompt_column, config.chosen_column, config.rejected_column,
        prompt_required=config.prompt_column != "prompt", system=config.system_column,
    )  # fmt: skip
    problems = []
    for path in files:
        try:
            load_preferences(path, columns, skip_invalid_rows=bool(config.skip_invalid_rows))
        except DataError as error:
            problems.append(str(error))
    return problems


def _local_files(config: Any) -> list[str]:
    """The train and eval files the run reads whole, each once, that are there."""
    from directpo.preflight import listed_paths

    keys = ["eval_file"]
    if not config.online and not config.dataset_streaming:
        keys.insert(0, "train_file")
    paths = [p for key in keys for p in listed_paths(getattr(config, key))]
    local = [os.path.expanduser(p) for p in paths if isinstance(p, str)]
    plain = [p for p in local if not any(c in p for c in "*?[")]  # (a pattern: the run's)
    return list(dict.fromkeys(p for p in plain if os.path.isfile(p)))
