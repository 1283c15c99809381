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

import difflib
import glob
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from directpo.data import preferences_of_rows
from directpo.data_folders import mixed_splits
from directpo.data_sources import dataset_splits, picked_split
from directpo.errors import ConfigError, DataError, collected, refuse_all
from directpo.model_locations import looks_local
from directpo.option_values import value_shown
from directpo.preference_pairs import Columns, PreferenceData
from directpo.readers import DATA_KINDS, RowError, open_rows
from directpo.refusals import hint_once

ENTRY_KEYS = ("id", "config", "split", "columns", "weight", "data_dir", "data_files", "fraction")
TRL_NAMES = {"path": "id", "name": "config"}  # TRL's DatasetConfig spellings
MIXTURE_KEYS = ("datasets", "seed", "test_split_size", "shuffle")
FILE_SUFFIXES = tuple(
    f"{ext}{packed}" for ext in DATA_KINDS for packed in ("", ".gz", ".bz2", ".xz")
)


@dataclass(frozen=True)
class Source:
    """One entry of ``dataset_mixture.datasets``."""

    id: str
    config: str | None = None
    split: str = "train"
    columns: tuple[str, ...] | None = None
    weight: float = 1.0  # the handbook's default: every row, shuffled
    data_dir: str | None = None
    data_files: Any = None
    # TRL's DatasetConfig.fraction: this source's share of the mixture, its first rows (None:
    # weight's rows); see kept_counts
    fraction: float | None = None

    @property
    def label(self) -> str:
        """How messages name it: a file by its path, a dataset by id[split], with the files of
        a builder's entry (``id: json`` with data_files: two of them were both "json[train]",
        and a bad row's line named no file)."""
        is_file = os.path.isfile(os.path.expanduser(self.id)) or self.id.endswith(FILE_SUFFIXES)
        if is_file:
            return self.id
        files = self.data_dir or _files_named(self.data_files, self.split)
        return f"{self.id}({files})[{self.split}]" if files else f"{self.id}[{self.split}]"


def _files_named(data_files: Any, split: str) -> str:
    """data_files in a label: a path, the first of a list and how many more, a mapping's entry
    for ``split`` (else all of it); "" for none."""
    if isinstance(data_files, dict):
        return _files_named(data_files.get(split, list(data_files.values())), split)
    if isinstance(data_files, list | tuple):
        names = [_files_named(item, split) for item in data_files]
        names = [name for name in names if name]
        more = f" and {len(names) - 1} more" if len(names) > 1 else ""
        return f"{names[0]}{more}" if names else ""
    return str(data_files) if data_files else ""


@dataclass(frozen=True)
class Mixture:
    sources: tuple[Source, ...]
    seed: int = 0
    test_split_size: float | int | None = None
    # false: TRL's DatasetMixtureConfig, which concatenates the sources' rows as they are (its
    # trainer's sampler alone shuffles them), so that a step trains TRL's pairs
    shuffle: bool = True


def parse_mixture(value: Any) -> Mixture:
    """``dataset_mixture``'s mapping, checked (a ConfigError naming the key otherwise)."""
    where = "dataset_mixture"
    if not isinstance(value, dict):
        raise ConfigError(
            f"{where} must be a mapping with a 'datasets' list, got {value_shown(value)}"
        )
    _known(value, MIXTURE_KEYS, where)
    entries = value.get("datasets")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(
            f"{where}: datasets must be a non-empty list of sources ({{id: ..., split: ..., "
            f"weight: ...}}), got {value_shown(entries)}"
        )
    problems: list[str] = []  # every entry's, and the seed's and split's: one pass
    sources = []
    for i, entry in enumerate(entries):
        with collected(problems):
            sources.append(_source(entry, f"{where}: datasets[{i}]"))
    seed = value.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        # (numpy's generators, which datasets' shuffle uses, refuse a negative seed: a traceback)
        problems.append(f"{where}: seed must be an integer >= 0, got {value_shown(seed)}")
    size = value.get("test_split_size")
    if size is not None:
        fraction = isinstance(size, float) and 0 < size < 1
        count = isinstance(size, int) and not isinstance(size, bool) and size >= 1
        if not (fraction or count):
            problems.append(
                f"{where}: test_split_size must be a fraction in (0, 1) or a number of rows "
                f">= 1, got {value_shown(size)}"
            )
    shuffle = value.get("shuffle", True)
    if not isinstance(shuffle, bool):
        problems.append(f"{where}: shuffle must be true or false, got {value_shown(shuffle)}")
    problems += _fraction_problems(sources, shuffle, where)
    refuse_all(problems)
    return Mixture(tuple(sources), seed, size, shuffle)


def _fraction_problems(sources: list[Source], shuffle: Any, where: str) -> list[str]:
    """TRL's rules for ``fraction`` (its get_dataset's ValueErrors), said before any reading;
    its first rows are TRL's unshuffled sources' (the handbook's shuffled mixture has weight)."""
    fractions = [source.fraction for source in sources]
    if all(fraction is None for fraction in fractions):
        return []
    if any(fraction is None for fraction in fractions):
        return [f"{where}: fraction must be set for every source or none (TRL's rule)"]
    if not sum(fractions):  # type: ignore[arg-type]
        return [f"{where}: the fractions are all 0: no source keeps a row"]
    if shuffle is not False:
        return [
            f"{where}: fraction (TRL's share: each source's first rows, unshuffled) needs "
            "shuffle: false; with the handbook's shuffled mixture use weight"
        ]
    return []


def kept_counts(fractions: list[float], sizes: list[int]) -> list[int]:
    """TRL's get_dataset's rows of each source for ``fraction``s (shares of the mixture): the
    largest mixture in which no source gives more rows than it has, each its first
    ``round(share x total)`` rows."""
    shares = [fraction / sum(fractions) for fraction in fractions]
    total = min(size / share for size, share in zip(sizes, shares, strict=True) if share > 0)
    return [round(share * total) for share in shares]


def missing_sources(value: Any) -> list[str]:
    """A line for each of the mixture's sources named by a path that is not there (read
    from the entries as written: said beside their other refused values)."""
    entries = value.get("datasets") if isinstance(value, dict) else None
    ids = [
        entry.get("id", entry.get("path"))
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict)
    ]
    lines = [
        f"dataset_mixture: {source}: no such file or folder"
        for source in dict.fromkeys(i for i in ids if isinstance(i, str) and i)
        if _missing(source)
    ]
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and (entry.get("data_files") or entry.get("data_dir")):
            lines += _missing_files(entry)
    return list(dict.fromkeys(lines))


def _missing_files(entry: dict[str, Any]) -> list[str]:
    """A builder's entry (``id: json``) whose data_dir or local data_files are not there (a
    pattern that matches nothing): ``datasets`` said 'Unable to find ...' or 'StopIteration'
    after seconds of imports, and the line blamed the unreachable Hub. A hub dataset's
    data_files are its repository's, not read here."""
    from directpo.option_paths import packaged_builders  # (datasets': read only here)

    source = entry.get("id", entry.get("path"))
    if not isinstance(source, str) or os.path.exists(source) or source not in packaged_builders():
        return []
    where, data_dir = f"dataset_mixture: {source}", entry.get("data_dir")
    if isinstance(data_dir, str) and not os.path.isdir(os.path.expanduser(data_dir)):
        return [f"{where}: data_dir: no such folder: {data_dir}"]
    base = os.path.expanduser(data_dir) if isinstance(data_dir, str) else ""
    files = entry.get("data_files")
    groups = files.values() if isinstance(files, dict) else [files]
    paths = [p for g in groups for p in ([g] if isinstance(g, str) else g or [])]
    lines: list[str] = []
    all_found: list[str] = []
    for path in paths:
        if not isinstance(path, str) or "://" in path:
            continue  # (a URL, hf://: datasets reads it)
        found = glob.glob(os.path.join(base, os.path.expanduser(path)), recursive=True)
        if not found and any(c in path for c in "*?["):
            lines.append(f"{where}: data_files: no file matches the pattern {path}")
        elif not found:
            lines.append(f"{where}: data_files: no such file or folder: {path}")
        all_found += sorted(found)
    by_split = "data_files: {train: ..., test: ...} naming each split's (split picks one)"
    if isinstance(files, dict):  # (the split read: a mapping's train was not checked)
        read = str(entry.get("split", "train")).split("[")[0]  # (train[:50%]: train's)
        group = files.get(read)
        found = [
            p
            for path in ([group] if isinstance(group, str) else group or [])
            if isinstance(path, str) and "://" not in path
            for p in sorted(glob.glob(os.path.join(base, os.path.expanduser(path)), recursive=True))
        ]
        mixed = mixed_splits(f"{where}: data_files: {read}", found, by_split)
    else:  # (data_files of no split names are all datasets' train split)
        mixed = mixed_splits(f"{where}: data_files", all_found, by_split)
    if mixed:
        lines.append(mixed)
    return lines


def _missing(source: str) -> bool:
    """A path (not a hub id, which would be looked up on the hub, in vain, for a while)
    that is not there."""
    local = looks_local(source) or source.endswith(FILE_SUFFIXES)
    return local and not os.path.exists(os.path.expanduser(source))


def _known(entry: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    for key in entry:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{where}: unknown key '{key}'{hint}")


def _source(entry: Any, where: str) -> Source:
    if not isinstance(entry, dict):
        raise ConfigError(
            f"{where} must be a mapping ({{id: ..., split: ...}}), got {value_shown(entry)}"
        )
    values = dict(entry)
    for trl, ours in TRL_NAMES.items():
        if trl in values:
            if ours in values:
                raise ConfigError(f"{where}: {trl} and {ours} name the same thing; keep one")
            values[ours] = values.pop(trl)
    _known(values, ENTRY_KEYS, where)
    for key in ("id", "data_dir", "data_files"):  # a Python caller's pathlib.Path: its text
        if key in values:
            values[key] = _path_text(values[key])
    source = values.get("id")
    if source is None or source == "":
        raise ConfigError(f"{where}: id (a hub id, a dataset folder or a file) is required")
    if not isinstance(source, str):  # (id: 5, or an object, was told the id 'is required')
        raise ConfigError(
            f"{where}: id must be a hub id, a dataset folder or a file, got {value_shown(source)}"
        )
    for key in ("config", "split", "data_dir"):
        if values.get(key) is not None and not isinstance(values[key], str):
            raise ConfigError(f"{where}: {key} must be a string, got {value_shown(values[key])}")
    columns = values.get("columns")
    if columns is not None and (
        not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns)
    ):
        raise ConfigError(
            f"{where}: columns must be a list of column names, got {value_shown(columns)}"
        )
    weight = values.get("weight")
    weight = 1.0 if weight is None else weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
        raise ConfigError(
            f"{where}: weight must be a fraction in (0, 1] of the source's rows, "
            f"got {value_shown(weight)}"
        )
    fraction = values.get("fraction")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or fraction < 0:
            raise ConfigError(
                f"{where}: fraction must be a number >= 0, got {value_shown(fraction)}"
            )
        if values.get("weight") is not None:
            raise ConfigError(
                f"{where}: fraction (TRL's share of the mixture) and weight (the handbook's "
                "share of this source) both set: keep one"
            )
    files = values.get("data_files")
    if files is not None and not _files_value(files):
        raise ConfigError(
            f"{where}: data_files must be a path, a list of paths or a mapping of split: "
            f"path(s), got {value_shown(files)}"
        )
    return Source(
        source, values.get("config"), values.get("split") or "train",
        tuple(columns) if columns else None, float(weight), values.get("data_dir"), files,
        None if fraction is None else float(fraction),
    )  # fmt: skip


def _path_text(value: Any) -> Any:
    """``value`` with each ``os.PathLike`` in it (a list's, a mapping's) as its text: a Python
    mixture's {id: Path("a.jsonl")} was refused as if no id were given."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_path_text(item) for item in value]
    if isinstance(value, dict):
        return {key: _path_text(item) for key, item in value.items()}
    return value


def _files_value(files: Any) -> bool:
    """data_files as load_dataset takes them: a path, paths, or split: path(s)."""
    if isinstance(files, dict):
        return all(map(_paths, files.values()))
    return _paths(files)


def _paths(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(item, str) for item in value)
    )


def check_mixture(config: Any) -> None:
    """The mixture's own checks, and the options it cannot be combined with."""
    mixture = parse_mixture(config.dataset_mixture)
    for key in ("train_file", "dataset_name"):
        if getattr(config, key):
            raise ConfigError(f"dataset_mixture and {key} are both set: choose one")
    if mixture.test_split_size is not None and config.eval_file:
        raise ConfigError(
            "dataset_mixture's test_split_size and eval_file both give held-out pairs: keep one"
        )


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
    elif _missing(source.id):
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
