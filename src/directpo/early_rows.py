"""A config's data rows checked beside its refused values.

A config with a bad value and a data file with bad rows took two runs: the value was refused
when the config was built, and the rows were read only by the next run, once the value was
fixed. Reading the rows needs no model (seconds for 100k rows), so a config refused for its
values reads its train and eval files (and a dataset_mixture of local files) too and says
their bad rows in the same error (a path given to train() that is not there too); where a
refused value is one the rows are read by (a column name), the line says that they were not
checked, and why.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from directpo.errors import ConfigError, ConfigErrors, DataError
from directpo.options import names_any
from directpo.refusals import hint_once

# the options that decide how rows are read: refused, the rows cannot be checked
READ_BY = ("prompt_column", "chosen_column", "rejected_column", "system_column")


def row_problems(
    config: Any, refused: list[str], given: Mapping[str, Any] | None = None
) -> list[str]:
    """One line of each data file's bad rows (``load_preferences``' own line), or one saying
    the rows were not checked because of a refused option they are read by. ``refused``: the
    config's refused lines; ``given``: the rows given to ``train()`` (``train_dataset`` /
    ``eval_dataset``), which replace the config's train_file / eval_file.
    The config's files that are not there (said among its options), glob patterns, streamed
    files (read only as far as max_steps takes) and an online run's prompts are left to the
    run."""
    given = {key: value for key, value in (given or {}).items() if value is not None}
    sources: list[tuple[str | None, Any]] = [
        (None, path) for path in _local_files(config, replaced=set(given))
    ]
    sources += _given_rows(given, config)
    mixture = None if "train_file" in given else _local_mixture(config)
    if not sources and mixture is None:
        return []
    blocking = [key for key in READ_BY if any(names_any(line, {key}) for line in refused)]
    if blocking:
        files = [name or path for name, path in sources] + (["dataset_mixture"] * bool(mixture))
        return [
            f"the rows of {', '.join(files)} are not checked: {', '.join(blocking)} (the "
            "columns they are read by) must be fixed first"
        ]
    from directpo.data import load_preferences  # (data imports the config's module)
    from directpo.preference_pairs import Columns

    columns = Columns(
        config.prompt_column, config.chosen_column, config.rejected_column,
        prompt_required=config.prompt_column != "prompt", system=config.system_column,
    )  # fmt: skip
    problems = []
    for name, source in sources:
        try:
            load_preferences(
                source, columns, skip_invalid_rows=bool(config.skip_invalid_rows), name=name
            )
        except DataError as error:
            problems.append(str(error))
    if mixture is not None:
        from directpo.mixture import load_mixture

        try:
            load_mixture(mixture, columns, skip_invalid_rows=bool(config.skip_invalid_rows))
        except DataError as error:
            problems.append(str(error))
    return hint_once(problems, apart=True)


def _local_mixture(config: Any) -> dict[str, Any] | None:
    """``dataset_mixture`` of its entries that the run reads here: those whose own values pass
    (one with a refused weight left out: the others' rows are still the run's) and that name a
    local file or folder that is there (a hub id's rows are the run's to read; a missing path
    is said already). None when there is none, or its seed is refused (it picks the rows)."""
    from directpo.mixture_entries import parse_mixture

    value = config.dataset_mixture
    if not isinstance(value, dict) or config.online:
        return None
    entries, seed = value.get("datasets"), value.get("seed", 0)
    if not isinstance(entries, list) or isinstance(seed, bool) or not isinstance(seed, int):
        return None
    kept = []
    for entry in entries:
        try:
            (source,) = parse_mixture({"datasets": [entry]}).sources
        except ConfigError:
            continue  # (its values are among the refused)
        if os.path.exists(os.path.expanduser(source.id)):
            kept.append(entry)
    # shuffle decides which rows a weight keeps (false: the first ones): the run's rows
    picked = {key: value[key] for key in ("shuffle",) if key in value}
    return {"datasets": kept, "seed": seed, **picked} if kept else None


def with_given_rows(
    error: ConfigError, config: Any, options: Mapping[str, Any], given: Mapping[str, Any]
) -> ConfigError:
    """``error``, a config refused as ``train()`` built it from ``config`` (a DPOConfig, TRL's
    config, a dict or None) and ``options``, with the bad rows of the ``given`` datasets
    (``train_dataset`` / ``eval_dataset``) said beside: they were read only by the next run.
    The rows of the config's own files, where given rows replace them, are not said."""
    if not any(value is not None for value in given.values()):
        return error
    return _with_rows_read(error, _option_values(config, options), given)


def with_rows(
    error: ConfigError, config: Any, given: Mapping[str, Any] | None = None
) -> ConfigError:
    """``error`` (an option refused once the config was built: an output_dir in use) with the
    bad rows of the run's data (``row_problems``) said beside it, where there are any."""
    if isinstance(error, ConfigErrors) and error.rows:
        return error  # (said already)
    return _with_rows_read(error, config, given)


def _with_rows_read(
    error: ConfigError, config: Any, given: Mapping[str, Any] | None
) -> ConfigError:
    """``error``'s refused lines with ``row_problems``' lines (those it had replaced)."""
    problems = error.problems if isinstance(error, ConfigErrors) else [str(error)]
    try:
        rows = row_problems(config, problems, given)
    except Exception:  # (a value no check read may be odd: the refusal is the news)
        return error
    if not rows:
        return error
    return ConfigErrors(getattr(error, "where", ""), problems, rows)


def _option_values(config: Any, options: Mapping[str, Any]) -> SimpleNamespace:
    """The options rows are read by, as ``config`` and ``options`` set them (the defaults
    elsewhere): the config that holds them was refused, so it does not exist. TRL's ``args=``
    is the config, as train() reads it: an OnlineDPOConfig's prompts were read as pairs."""
    from directpo.arguments import ported_fields, trainer_arguments
    from directpo.config import DPOConfig

    values = {f.name: f.default for f in dataclasses.fields(DPOConfig)}
    try:
        config, options = trainer_arguments(config, dict(options))
    except ConfigError:  # (its own refusals are in the error)
        config = options.get("args", config)
    fields = ported_fields(config)
    if fields is not None:
        values.update({k: v for k, v in fields.items() if k in values})
    elif config is not None:
        values.update({k: getattr(config, k) for k in values if hasattr(config, k)})
    values.update({k: v for k, v in options.items() if k in values})
    return SimpleNamespace(**values)


def _given_rows(given: Mapping[str, Any], config: Any) -> list[tuple[str | None, Any]]:
    """(name, rows) of each dataset given to ``train()`` that is read whole: not a stream,
    nor eval_dataset's dict of named sets."""
    from directpo.data_sources import is_path_list, python_source
    from directpo.stream_reads import is_stream

    read = []
    for key, value in given.items():
        name = {"train_file": "train_dataset", "eval_file": "eval_dataset"}[key]
        if (key == "train_file" and config.online) or is_stream(value):
            continue
        source = python_source(value, name)
        if isinstance(source, Mapping) or is_stream(source):
            continue
        # a path is named as itself; one that is not there is said as the run would say it
        # (it was left to the run, which said it only once the refused value was fixed)
        path = isinstance(source, str) or (isinstance(source, list) and is_path_list(source))
        read.append((None if path else name, source))
    return read


def _local_files(config: Any, replaced: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The train and eval files the run reads whole, each once, that are there (those that
    rows given to ``train()`` replace, ``replaced``, aside)."""
    from directpo.preflight import listed_paths

    keys = ["eval_file"]
    if not config.online and not config.dataset_streaming:
        keys.insert(0, "train_file")
    keys = [key for key in keys if key not in replaced]
    paths = [p for key in keys for p in listed_paths(getattr(config, key))]
    local = [os.path.expanduser(p) for p in paths if isinstance(p, str)]
    plain = [p for p in local if not any(c in p for c in "*?[")]  # (a pattern: the run's)
    return list(dict.fromkeys(p for p in plain if os.path.isfile(p)))
