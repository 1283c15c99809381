"""``dataset_mixture``'s mapping read and checked, before anything is loaded: its sources
(``Source``: TRL's ``DatasetConfig`` spellings too), seed, ``test_split_size``, ``shuffle`` and
``fraction``s, each refused value said in one pass; the options a mixture cannot be combined
with; a source's path, or a builder's (``id: json``) data_files or data_dir, that is not there.
Loading the rows is mixture.py's."""

from __future__ import annotations

import difflib
import glob
import os
from dataclasses import dataclass
from typing import Any

from directpo.data_folders import mixed_splits
from directpo.errors import ConfigError, collected, refuse_all
from directpo.model_locations import looks_local
from directpo.option_values import value_shown
from directpo.readers import COMPRESSED, DATA_KINDS

ENTRY_KEYS = ("id", "config", "split", "columns", "weight", "data_dir", "data_files", "fraction")
TRL_NAMES = {"path": "id", "name": "config"}  # TRL's DatasetConfig spellings
MIXTURE_KEYS = ("datasets", "seed", "test_split_size", "shuffle")
FILE_SUFFIXES = tuple(f"{ext}{packed}" for ext in DATA_KINDS for packed in ("", *COMPRESSED))


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
        if path_missing(source)
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


def path_missing(source: str) -> bool:
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
