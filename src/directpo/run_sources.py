"""Where a run's pairs and prompts come from, beside the train file: named eval sets (a dict of
Datasets, eval_file's mapping), dataset_mixture's split, held-out pairs read up to
max_eval_samples, which columns each keeps for a reward_fn, online and eval_generate prompts,
and every source's refused rows joined into one error (run_data.py reads them in this order)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from directpo.callers import spell_setting
from directpo.config import DPOConfig
from directpo.data import load_preferences, read_rows
from directpo.data_sources import is_path_list, python_source, refuse_column_dict
from directpo.errors import ConfigError, DataError
from directpo.mixture import load_mixture
from directpo.preference_pairs import Columns, PreferenceData, counted
from directpo.prompts import (
    distinct_example_prompts,
    load_prompt_rows,
    load_prompts,
    prompts_in_turn,
)
from directpo.refusals import RowsRefused, hint_once
from directpo.stream_reads import is_stream


def mixture_pairs(
    config: DPOConfig,
    columns: Columns,
    eval_dataset: Any,
    echo: Callable[[str], None],
) -> tuple[PreferenceData, PreferenceData | None]:
    """dataset_mixture's training pairs, and its held-out ones (test_split_size) unless
    eval_strategy is no (they are then held out of training, unevaluated, as in TRL)."""
    mixed = load_mixture(
        config.dataset_mixture or {}, columns, skip_invalid_rows=config.skip_invalid_rows,
        echo=echo,
    )  # fmt: skip
    echo(f"train: {mixed.train.summary()}")
    if mixed.test is None:
        return mixed.train, None
    # (test_split_size with eval_dataset too: refused by preflight, before any source is read)
    if config.eval_strategy == "no":
        echo(f"eval: {len(mixed.test)} held-out pairs not evaluated (eval_strategy: no)")
        return mixed.train, None
    test = mixed.test
    if config.max_eval_samples is not None:  # the split is made whole (the handbook's rows)
        test = PreferenceData(test.examples[: config.max_eval_samples], test.layout, test.source)
    echo(f"eval: {test.summary()}")
    return mixed.train, test


def kept_columns(
    columns: Columns,
    *,
    config: DPOConfig,
    train: bool = False,
    held_out: bool = False,
    read_by: PreferenceData | None = None,
) -> Columns:
    """``columns`` keeping each row's other columns only for the pairs whose prompts a
    reward_fn or labeller is given with them: online rounds' (the train pairs', without
    prompt_file) and eval_generate's (the held-out pairs', without eval_prompts_file).
    ``read_by``: the train pairs these columns read, which a held-out file's refusal names."""
    online = train and config.online and not config.prompt_file
    sampled = held_out and bool(config.eval_generate) and not config.eval_prompts_file
    source = read_by.source if read_by is not None else columns.read_by
    return replace(columns, other_columns=online or sampled, read_by=source)


def held_out_pairs(
    source: Any, columns: Columns, config: DPOConfig, name: str | None, echo: Callable[[str], None]
) -> PreferenceData:
    """An eval set's pairs: its first max_eval_samples rows only, the rest never read. A stream
    was read whole before the first step, so an endless one never ended; without the option
    that is said."""
    if is_stream(source) and config.max_eval_samples is None:
        echo(
            f"{name or 'eval_dataset'}: a stream (IterableDataset) without max_eval_samples: it is "
            "read whole before the first step (an endless one never ends: "
            f"{spell_setting('max_eval_samples')})"
        )
    return load_preferences(
        source, columns, skip_invalid_rows=config.skip_invalid_rows, name=name,
        max_pairs=config.max_eval_samples,
    )  # fmt: skip


def named_eval_sets(config: DPOConfig, eval_dataset: Any) -> dict[str, tuple[Any, str]]:
    """Named eval sets, each (source, label), as transformers' Trainer takes an ``eval_dataset``
    dict (a DatasetDict of several splits too: TRL's scripts pass one), or from eval_file's
    mapping {name: file(s)}; empty for one unnamed set."""
    refuse_column_dict(eval_dataset, "eval_dataset")
    if isinstance(eval_dataset, dict) and not (
        len(eval_dataset) == 1 and type(eval_dataset).__name__ == "DatasetDict"
    ):  # (a DatasetDict of one split is that split, unnamed, as for train_dataset)
        if not eval_dataset:
            raise ConfigError("eval_dataset is an empty dict: give it at least one named set")
        sets = {}
        for set_name, value in eval_dataset.items():
            where = f"eval_dataset[{set_name!r}]"
            if not (isinstance(set_name, str) and set_name.replace("-", "_").isidentifier()):
                raise ConfigError(
                    f"{where}: a set name must be a word of letters, digits, _ or - (it "
                    f"becomes part of metric names: eval/<name>_loss)"
                )
            if isinstance(value, dict):
                raise ConfigError(f"{where}: a set is rows, a path or a Dataset, not a dict")
            source = python_source(value, where)
            sets[set_name] = (source, argument_name(source, where))
        return sets
    if isinstance(config.eval_file, dict):
        if eval_dataset is not None:
            raise ConfigError("eval_file and eval_dataset both give held-out pairs: keep one")
        return {set_name: (paths, None) for set_name, paths in config.eval_file.items()}
    return {}


def argument_name(source: Any, name: str) -> str | None:
    """``name`` for rows given from Python; None for a path or paths, which name themselves."""
    if source is None or isinstance(source, str | os.PathLike) or is_path_list(source):
        return None
    return name


def has_pairs(source: Any, columns: Columns, skip_invalid_rows: bool = False) -> bool:
    """Whether online DPO's train source holds pairs, not only prompts (which it also takes).
    A source of both is refused: its pairs would silently train as prompts, or its prompts be
    refused as pairs missing a field, depending on which came first. With skip_invalid_rows,
    any pair makes it a source of pairs (rows without one are skipped as invalid)."""
    if isinstance(source, list | tuple) and source and isinstance(source[0], str):  # files
        kinds = {path: has_pairs(path, columns, skip_invalid_rows) for path in source}
        if len(set(kinds.values())) > 1:
            paired = next(path for path, pairs in kinds.items() if pairs)
            prompts = next(path for path, pairs in kinds.items() if not pairs)
            raise DataError(
                f"train_file: {paired} holds pairs but {prompts} only prompts: give online "
                "DPO's prompts-only files as prompt_file"
            )
        return all(kinds.values())
    if isinstance(source, list | tuple) and not source:
        return False
    if not isinstance(source, str | list | tuple):  # a Dataset, IterableDataset, DataFrame
        names = getattr(source, "column_names", None) or list(getattr(source, "columns", []))
        if names:
            return columns.chosen in names
        # an IterableDataset of unknown features (from a generator): its rows say
    if isinstance(source, list | tuple):
        rows = list(enumerate(source, 1))
    else:
        rows = read_rows(source, None if isinstance(source, str) else "train_dataset")
    paired = [where for where, row in rows if columns.chosen in row]
    if paired and len(paired) < len(rows) and not skip_invalid_rows:
        alone = next(where for where, row in rows if columns.chosen not in row)
        label = source if isinstance(source, str) else "train_dataset"
        raise DataError(
            f"{label}: {_place(alone)} has no '{columns.chosen}' but {_place(paired[0])} "
            "has: a train file holds pairs, or (for online DPO) only prompts"
        )
    return bool(paired)


@contextlib.contextmanager
def collected(refused: list[DataError]) -> Iterator[None]:
    """The DataError of the source read inside added to ``refused``, so that the next source is
    read too and every file's bad rows are said in one pass."""
    try:
        yield
    except DataError as error:
        refused.append(error)


def joined(refused: list[DataError]) -> DataError:
    """One error of every source's; a file given as train and eval file is said once. A stream
    read only so far (dataset_streaming) counts fewer of the file's bad rows than the whole
    read of it as eval file: the read that counts more is said."""
    said: dict[Any, tuple[int, str]] = {}
    for error in refused:
        key: Any = str(error)
        count = 0
        if isinstance(error, RowsRefused):  # (the same source read twice: the same first row)
            key, count = (error.label, error.first), error.count
        if key not in said or count > said[key][0]:
            said[key] = (count, str(error))
    return DataError("; ".join(hint_once([text for _, text in said.values()])))


def _place(where: str | int) -> str:
    return f"row {where}" if isinstance(where, int) else where


def read_online_prompts(
    config: DPOConfig,
    source: Any,
    train_data: PreferenceData | None,
    echo: Callable[[str], None],
    places: list[str] | None = None,
) -> tuple[list[Any], list[dict[str, Any]]]:
    """Online rounds' prompts and their rows' other columns (for the labeller): prompt_file's,
    else the train file's (its pairs' prompts, or a prompts-only file's); ``places``: a list
    given gets the rows of the file of prompts read ("line 3"), none for a pairs file's."""
    if config.prompt_file:
        prompts, rows = load_prompt_rows(
            config.prompt_file, config.prompt_column, config.system_column, places
        )
    elif train_data is not None:  # a pairs file: its rows' other columns too, as a prompt file's
        prompts, rows = distinct_example_prompts(train_data.examples)
    else:
        prompts, rows = load_prompt_rows(source, config.prompt_column, config.system_column, places)
    echo(f"online: {counted(len(prompts), 'prompt')}")
    return prompts, rows


def read_held_out_prompts(
    config: DPOConfig, example_sets: list[list[Any]], places: list[str] | None = None
) -> tuple[list[Any], list[dict]]:
    """The first ``eval_generate`` distinct held-out prompts (none when sampling is off), of
    each eval set in turn, and their rows' other columns (eval_prompts_file's; for reward_fn);
    ``places``: a list given gets eval_prompts_file's rows of those prompts ("line 3")."""
    if not config.eval_generate:
        return [], []
    if config.eval_prompts_file:
        prompts, rows = load_prompts(
            config.eval_prompts_file, config.prompt_column, config.system_column, places
        )
        if places is not None:
            del places[config.eval_generate :]
    else:
        prompts, rows = prompts_in_turn(example_sets)
    return prompts[: config.eval_generate], rows[: config.eval_generate]


def evaluation_asked(config: DPOConfig) -> str | None:
    """The option that asks for evaluations of held-out pairs, when dataset_name's test split is
    their only source: a missing split is then an error, not a run that never evaluates. A split
    named other than the default "test" is asked for by that name (TRL's script fails on it too)."""
    if config.eval_generate and not config.eval_prompts_file:
        return "the held-out prompts eval_generate samples"
    if not config.eval_generate:  # with it sampled completions are evaluated: split optional
        for key in (
            "eval_steps",
            "eval_delay",
            "eval_on_start",
            "load_best_model_at_end",
            "early_stopping_patience",
        ):
            if getattr(config, key):
                return f"the evaluations {key} asks for"
        if config.eval_strategy in ("steps", "epoch"):
            return f"the evaluations eval_strategy: {config.eval_strategy} asks for"
    if config.dataset_test_split != DPOConfig.__dataclass_fields__["dataset_test_split"].default:
        return "the held-out pairs dataset_test_split names"
    return None
