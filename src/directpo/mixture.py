"""``dataset_mixture``: training (and held-out) pairs drawn from several sources, as the
alignment-handbook's recipes write them and its ``get_dataset`` builds them::

    dataset_mixture:
      datasets:
        - id: HuggingFaceH4/ultrafeedback_binarized  # a hub id (offline: the local cache), a
          config: default                            # dataset folder, or a data file
          split: train_prefs
          columns: [chosen, rejected]
          weight: 0.5
      seed: 0
      test_split_size: 2000   # a fraction in (0, 1), or a number of rows

The rows are the handbook's, row for row (``datasets``' own permutations: numpy's PCG64 seeded
with ``seed``): each source is restricted to ``columns``, shuffled and cut to its first
``int(rows * weight)`` rows (``weight`` defaults to 1.0: all rows, shuffled); the sources are
concatenated in order and shuffled; ``test_split_size`` then holds out rows as
``Dataset.train_test_split(test_size, seed=seed)`` does. ``shuffle: false`` (what TRL's
``DatasetMixtureConfig`` at a config's top level is read as) keeps each source's rows and the
concatenation in their order, as TRL's ``get_dataset`` does, and takes its ``fraction``s
(shares of the mixture: each source's first rows, ``kept_counts``). Entries may use TRL's
``DatasetConfig`` names too (``path`` for ``id``, ``name`` for ``config``, ``data_dir``,
``data_files``). Each source is read by readers.py / ``datasets`` as ``train_file`` or
``dataset_name`` would read it, and its rows are validated in its own layout, so an error names
the source and its row; only the rows a weight keeps are validated (the handbook's trainer never
sees the others), and the start line says how many were left out unchecked. A source is read
twice, once to count its rows and once for the rows its share keeps: only those are held (a 5%
share of a 300k-row file held all 300k); once where a weight of 1 keeps every row. Everything is a
function of the files and ``seed``: every process of a run, and a resumed run, has the same
pairs in the same order.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from directpo.data import preferences_of_rows
from directpo.data_sources import dataset_splits, picked_split
from directpo.errors import DataError, collected
from directpo.mixture_entries import Source, parse_mixture, path_missing
from directpo.option_values import value_shown
from directpo.preference_pairs import Columns, PreferenceData
from directpo.readers import RowError, open_rows
from directpo.refusals import hint_once


def kept_counts(fractions: list[float], sizes: list[int]) -> list[int]:
    """TRL's get_dataset's rows of each source for ``fraction``s (shares of the mixture): the
    largest mixture in which no source gives more rows than it has, each its first
    ``round(share x total)`` rows."""
    shares = [fraction / sum(fractions) for fraction in fractions]
    total = min(size / share for size, share in zip(sizes, shares, strict=True) if share > 0)
    return [round(share * total) for share in shares]


@dataclass
class MixedData:
    """The mixture's training pairs, and its held-out pairs when test_split_size is set."""

    train: PreferenceData
    test: PreferenceData | None


def load_mixture(
    value: dict[str, Any],
    columns: Columns,
    *,
    skip_invalid_rows: bool = False,
    echo: Callable[[str], None] = lambda _: None,
) -> MixedData:
    """Read every source, keep its share, mix and split (see the module docstring)."""
    mixture = parse_mixture(value)
    kept: list[tuple[int, str]] = []  # (entry, where) of each row, in the concatenation's order
    examples: list[dict[str, Any]] = []  # per entry: where -> example (a skipped row: absent)
    layouts: list[str] = []
    refused: list[str] = []  # every source's problems, said together after the last
    seed = mixture.seed if mixture.shuffle else None  # (None: each source in its order)
    opened, counts = _fraction_counts(mixture.sources)
    for index, source in enumerate(mixture.sources):
        examples.append({})
        with collected(refused, DataError):
            data, total, order = _source_pairs(
                source, seed, columns, skip_invalid_rows,
                counts[index] if counts else None, opened[index] if opened else None,
            )  # fmt: skip
            kept += [(index, where) for where in order]
            examples[index] = {e.where: e for e in data.examples} if data else {}
            if data:
                layouts.append(data.layout)
            summary = data.summary() if data else f"{source.label}: no pairs"
            # the rows a weight leaves out are not validated, as the handbook's get_dataset
            # hands TRL only the rows it keeps: said, so a bad row there is no surprise later
            unread = (
                f"; the {total - len(order)} left out are not checked" if total > len(order) else ""
            )
            share = (
                f"weight {source.weight:g}" if source.fraction is None
                else f"fraction {source.fraction:g}"
            )  # fmt: skip
            echo(f"dataset_mixture: {summary} ({len(order)} of {total} rows, {share}{unread})")
    if refused:
        raise DataError("; ".join(hint_once(refused)))
    if not kept:
        raise DataError("dataset_mixture: no rows (the weights keep none)")
    mixed = [kept[i] for i in _shuffled(len(kept), mixture.seed)] if mixture.shuffle else kept
    train, test = mixed, []
    if mixture.test_split_size is not None:
        train, test = _train_test_split(mixed, mixture.test_split_size, mixture.seed)
    layout = "+".join(dict.fromkeys(layouts))
    labels = ", ".join(source.label for source in mixture.sources)

    def pairs(rows: list[tuple[int, str]], split: str) -> PreferenceData:
        found = [examples[i].get(f"{mixture.sources[i].label}: {where}") for i, where in rows]
        chosen = [example for example in found if example is not None]
        if not chosen:
            raise DataError(f"dataset_mixture: no valid rows in its {split} split")
        skipped = Counter({"reasons per source above": len(found) - len(chosen)})
        name = f"dataset_mixture[{split}] of {labels}"
        return PreferenceData(chosen, layout, name, +skipped)

    return MixedData(pairs(train, "train"), pairs(test, "test") if test else None)


def _fraction_counts(
    sources: tuple[Source, ...],
) -> tuple[list[SourceRows] | None, list[int] | None]:
    """Each source opened (its rows counted) and its rows kept by TRL's ``fraction``s (None,
    None: weights, each source opened as it is read): TRL's get_dataset loads them all before
    choosing; here each is counted once, as it is read, and the count is kept."""
    if sources[0].fraction is None:
        return None, None
    opened, refused = [], []
    for source in sources:
        with collected(refused, DataError):
            opened.append(_opened(source))
    if refused:
        raise DataError("; ".join(hint_once(refused)))
    fractions = [source.fraction or 0.0 for source in sources]
    return opened, kept_counts(fractions, [rows.size for rows in opened])


def _source_pairs(
    source: Source,
    seed: int | None,
    columns: Columns,
    skip_invalid_rows: bool,
    count: int | None = None,
    opened: SourceRows | None = None,
) -> tuple[PreferenceData | None, int, list[str]]:
    """A source's kept rows validated (None: a weight that keeps none of a small source), its
    row count, and the kept rows' places in the mixture's order (shuffled by ``seed``; None:
    the file's order). ``count``: the rows kept (TRL's fraction), else its weight's;
    ``opened``: the source already opened (counted), else opened here. Only the
    kept rows are held: a 300k-row source of which a weight keeps 5% held every row (2.7 GB
    to keep 21k rows of two files); now it is read twice, to count its rows, then for those
    the permutation of that count picks (the same rows, in the same order; a weight of 1:
    once, every row held)."""
    if columns.system is not None and source.columns and columns.system not in source.columns:
        # kept out by the entry's columns, not missing from its file (which it was said to be)
        raise DataError(
            f"dataset_mixture: {source.label}: its columns ({', '.join(source.columns)}) "
            f"leave out system_column '{columns.system}'; add it to them"
        )
    opened = opened or _opened(source, hold=count is None and source.weight >= 1)
    size = opened.size
    order = list(range(size)) if seed is None else _shuffled(size, seed)
    kept = order[: int(size * source.weight) if count is None else count]
    # validated in the file's order: its bad rows are said as they are written, first first
    chosen = set(kept)
    in_file = [row for index, row in enumerate(opened.read()) if index in chosen]
    if len(in_file) != len(chosen):  # (a file written to while it is read)
        raise DataError(
            f"dataset_mixture: {source.label}: it changed while it was read ({size} rows, then "
            f"{len(in_file)} of the kept ones)"
        )
    where = dict(zip(sorted(kept), (place for place, _ in in_file), strict=True))
    data = None
    if in_file:
        data = preferences_of_rows(
            in_file, opened.names, source.label, columns, skip_invalid_rows, opened.base_dir
        )
        # what to drop tied rows from: a hub dataset's entry was told 'from the file'
        is_file = os.path.isfile(os.path.expanduser(source.id))
        data.source_kind = "file" if is_file else "files" if source.data_files else "hub"
    return data, size, [where[i] for i in kept]


def _shuffled(count: int, seed: int) -> list[int]:
    """``Dataset.shuffle(seed=seed)``'s order of ``count`` rows."""
    return np.random.default_rng(seed).permutation(count).tolist()


def _train_test_split(rows: list[Any], size: float | int, seed: int) -> tuple[list, list]:
    """``Dataset.train_test_split(test_size=size, seed=seed)``'s (train, test) rows."""
    total = len(rows)
    test = math.ceil(size * total) if isinstance(size, float) else size
    if test >= total:
        raise DataError(
            f"dataset_mixture: test_split_size {size} leaves no training pairs (the mixture "
            f"has {total} rows)"
        )
    order = _shuffled(total, seed)
    return [rows[i] for i in order[test:]], [rows[i] for i in order[:test]]


@dataclass
class SourceRows:
    """A source opened: its rows counted, never held (each pass reads them afresh)."""

    read: Callable[[], Iterable[tuple[str, Any]]]  # its rows as (where, row or RowError)
    names: list[str] | None  # its column names, when the format declares them
    base_dir: str | None  # the folder its image paths are relative to
    size: int


def _opened(source: Source, hold: bool = False) -> SourceRows:
    """A source's rows, restricted to its columns (its checks made in one pass that counts
    them). ``hold``: every row is kept (a weight of 1): held from that pass, not read again."""
    label = f"dataset_mixture: {source.label}"
    path = os.path.expanduser(source.id)
    base_dir = None
    if os.path.isfile(path):
        extra = [k for k in ("config", "data_dir", "data_files") if getattr(source, k)]
        if extra or source.split != "train":
            given = extra[0] if extra else f"split: {value_shown(source.split)}"
            raise DataError(
                f"{label}: a file holds one split (train) and no configurations; remove "
                f"{given}, or list each file as its own source"
            )
        base_dir = os.path.dirname(os.path.abspath(path))
        opened: Any = path
    elif path_missing(source.id):
        raise DataError(f"{label}: no such file or folder")
    else:
        splits = dataset_splits(
            path, source.config, label, "train", "config",
            data_dir=source.data_dir, data_files=source.data_files,
        )  # fmt: skip
        picked = picked_split(splits, source.split, label, "split")  # (train[:10%] too)
        if picked is None:
            raise DataError(
                f"{label}: no split '{source.split}' (it has {', '.join(splits)}); set split"
            )
        opened = picked

    first, names = open_rows(opened, source.label, lazy=True)
    held: list[tuple[str, Any]] | None = [] if hold else None
    size = 0
    keys: dict[str, None] = {}  # (a JSON Lines file's columns: its rows' keys)
    for item in first:
        size += 1
        if held is not None:
            held.append(item)
        if names is None and source.columns is not None and isinstance(item[1], dict):
            keys.update(dict.fromkeys(item[1]))

    def rows() -> Iterable[tuple[str, Any]]:
        return held if held is not None else open_rows(opened, source.label, lazy=True)[0]

    if not size:
        raise DataError(f"{label}: no rows")
    if source.columns is None:
        return SourceRows(rows, names, base_dir, size)
    # a JSON Lines file declares no columns: its rows' keys are its columns (a misspelt entry
    # column was dropped from every row, and the file was said to lack the one it misspelt)
    present = names or list(keys)
    missing = [c for c in source.columns if c not in present]
    if missing:
        raise DataError(
            f"{label}: column '{missing[0]}' not found (columns: {', '.join(present)}); "
            "fix the source's columns"
        )
    columns = source.columns

    def selected() -> Iterable[tuple[str, Any]]:
        return ((where, _select(row, columns)) for where, row in rows())

    return SourceRows(selected, None if names is None else list(columns), base_dir, size)


def _select(row: Any, columns: tuple[str, ...]) -> Any:
    """``select_columns``: the row's listed columns (a row without one fails validation)."""
    if isinstance(row, RowError) or not isinstance(row, dict):
        return row
    return {key: row[key] for key in columns if key in row}
