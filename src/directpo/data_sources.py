"""What a source of rows is, before its rows are read (readers.py reads them).

A Python value given to ``train()`` (a ``pathlib.Path``, a list of paths, a one-split
``DatasetDict``; a dict of columns or a list of datasets refused in one line), a dataset name
(``dataset_name``: a folder, a ``save_to_disk`` folder or a hub id, loaded through
``datasets``, offline from the local cache where the hub is unreachable), and how a source is
named in messages.
"""

from __future__ import annotations

import contextlib
import logging
import lzma
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

from directpo.callers import said, spell_setting
from directpo.data_text import rows_ending
from directpo.errors import ConfigError, DataError, first_line
from directpo.file_types import ALONE, ALONE_IN_A_MIXTURE, refuse_changed_values
from directpo.hub import cache_only_where_unreachable, unreachable_reason
from directpo.option_paths import builder_without_files
from directpo.readers import COMPRESSED, compression_of, csv_separator
from directpo.row_places import remember_saved_files, remember_split_files


def python_source(source: Any, argument: str) -> Any:
    """``train(train_dataset=...)``'s value as the readers take it: a ``pathlib.Path`` (or a
    list of them) as a path; a ``DatasetDict`` of one split as that split (several: refused,
    as a ``save_to_disk`` folder of several is)."""
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    if is_path_list(source):
        return [os.fspath(path) for path in source]
    refuse_column_dict(source, argument)
    if isinstance(source, list | tuple) and any(map(_is_table, source)):
        # (its rows were "row 1: expected an object, got Dataset")
        several = "a dict of named sets, evaluated apart" if argument == "eval_dataset" else ""
        raise DataError(
            f"{argument}: a list of datasets; pass one (datasets.concatenate_datasets joins "
            f"them){f', or {several}' if several else ''}"
        )
    if (
        isinstance(source, dict)
        and source
        and all(hasattr(split, "column_names") for split in source.values())
    ):
        splits = list(source)
        if len(splits) != 1:
            raise DataError(
                f"{argument}: a DatasetDict of several splits ({', '.join(splits)}); pass one, "
                f"e.g. {argument}=dataset[{splits[0]!r}]"
            )
        return source[splits[0]]
    return source


def refuse_column_dict(value: Any, argument: str) -> None:
    """A plain dict of equal-length column lists holding chosen and rejected (the layout
    ``Dataset.from_dict`` takes) refused in one line: it was "got dict", and as eval_dataset
    (a dict of named sets) its texts were read as file paths ("Q: 1?: no such file")."""
    if not (type(value) is dict and {"chosen", "rejected"} <= set(value)):
        return
    lists = [column for column in value.values() if isinstance(column, list | tuple)]
    if len(lists) == len(value) and len({len(column) for column in lists}) == 1:
        raise DataError(
            f"{argument}: a dict of columns ({', '.join(map(str, value))}); give its rows, "
            f"e.g. datasets.Dataset.from_dict({argument})"
        )


def _is_table(value: Any) -> bool:
    """A Dataset, IterableDataset or DataFrame (not a row)."""
    return hasattr(value, "column_names") or hasattr(value, "columns")


def load_named_dataset(config: Any, key: str, *, required: str | None) -> Any:
    """``config.dataset_name``'s split named by option ``key`` (dataset_train_split /
    dataset_test_split) through ``datasets.load_dataset`` (a local folder, or a hub id where
    the hub is reachable); None when the split does not exist and ``required`` (what needs
    it, said in the error) is None."""
    split = getattr(config, key)
    name = config.dataset_name
    # dataset_streaming: load_dataset reads the files as they are iterated (a save_to_disk
    # folder is memory-mapped: its rows are read as iterated too)
    streaming = True if config.dataset_streaming and not is_saved_dataset(name) else None
    loaded = dataset_splits(
        name, config.dataset_config, f"dataset_name '{name}'", config.dataset_train_split,
        streaming=streaming,
    )  # fmt: skip
    label = f"dataset_name '{name}'"
    if key == "dataset_test_split" and shares_rows(loaded, config.dataset_train_split, split):
        # (train+test, or train[:90%] beside train[80%:]: as dataset_test_split: train is)
        # (as the caller sets options: 'give eval_file, or set --eval_strategy no' was said
        # to a flag's user, 'set eval_strategy='no'' to a keyword's)
        instead = spell_setting("eval_file", ("eval_strategy", "no"), last=" or ")
        raise ConfigError(
            f"{said('dataset_test_split', split)} holds rows of "
            f"{said('dataset_train_split', config.dataset_train_split)}, so held-out pairs "
            "would be training pairs; name rows held out of training (train[:90%] beside "
            f"train[90%:]), or {instead}"
        )
    picked = picked_split(loaded, split, label, key)
    if picked is None:
        if required is None:
            return None
        raise DataError(
            f"{label}: no split '{split}' (it has {', '.join(loaded)}) for {required}; "
            f"{spell_setting(key)}"
        )
    return picked


def picked_split(splits: Mapping[str, Any], spec: str, label: str, key: str) -> Any:
    """``splits[spec]``, or datasets' split arithmetic over them as ``load_dataset(split=...)``
    reads it (``train[:10%]``, ``train[100:200]``, ``train+test``); None where ``spec`` names
    no split. It was 'no split train[:10%] (it has train, test)', a split that was there."""
    if spec in splits:
        return splits[spec]
    pieces = _split_pieces(splits, spec, label, key)
    if pieces is None:
        return None
    import datasets

    # (an empty piece, train[100:200] of 25 rows, is left out as datasets leaves it out: it
    # was an IndexError traceback; one that picks no row at all is refused as datasets does)
    pieces = [piece for piece in pieces if piece.from_ < piece.to]
    if not pieces:
        held = ", ".join(f"{name}: {len(split)} rows" for name, split in splits.items())
        raise DataError(f"{label}: {key}: {spec} picks no rows (it has {held})")
    parts = [splits[piece.splitname].select(range(piece.from_, piece.to)) for piece in pieces]
    try:
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    except ValueError as exc:  # (a saved DatasetDict's splits of other types: a traceback)
        problem = first_line(exc)
        raise DataError(
            f"{label}: {key}: {spec} joins splits of other columns ({problem})"
        ) from None


def shares_rows(splits: Mapping[str, Any], first: str, second: str) -> bool:
    """Whether split specs ``first`` and ``second`` pick a row in common (the same split, or
    overlapping slices of one)."""
    if first == second and first in splits:
        return True
    ranges = [_split_pieces(splits, spec, "", "") or [] for spec in (first, second)]
    return any(
        a.splitname == b.splitname and max(a.from_, b.from_) < min(a.to, b.to)
        for a in ranges[0]
        for b in ranges[1]
    )


def _split_pieces(splits: Mapping[str, Any], spec: str, label: str, key: str) -> list | None:
    """datasets' absolute row ranges of ``spec`` over ``splits`` (its own rounding and
    clamping), or None where it is no such spec or names a split that is not there. A stream
    (dataset_streaming) has no length to take a slice or a percent of: refused in one line."""
    from datasets import ReadInstruction

    try:
        instruction = ReadInstruction.from_spec(spec)
    except (ValueError, AssertionError):
        return None
    if not all(hasattr(split, "__len__") for split in splits.values()):
        if not label:
            return None
        raise DataError(
            f"{label}: {key}: {spec} slices or joins splits, which a stream "
            f"({said('dataset_streaming')}) cannot; name one split, or leave dataset_streaming "
            "off"
        )
    named = [_SPLIT_NAME.match(part.strip()) for part in spec.split("+")]
    if not all(name and name[0] in splits for name in named):
        return None  # (said as no split '...', with the splits there are)
    try:
        return instruction.to_absolute({name: len(split) for name, split in splits.items()})
    except (ValueError, AssertionError) as exc:
        # (pct1_dropremainder of a split under 100 rows: it was 'no split', of one that is)
        if not label:
            return None
        raise DataError(f"{label}: {key}: {spec}: {first_line(exc)}") from None


# a split's name at the start of one of a spec's '+' parts (datasets' own pattern)
_SPLIT_NAME = re.compile(r"[\w-]+(?:\.[\w-]+)*")


def dataset_splits(
    name: str,
    dataset_config: str | None,
    label: str,
    lone_split: str,
    config_key: str = "dataset_config",
    **options: Any,
) -> Any:
    """The splits (a mapping) of a dataset folder, a ``save_to_disk`` folder (one saved
    Dataset is the split ``lone_split``) or a hub id (offline: from the local cache), through
    ``datasets``; ``options`` go to ``load_dataset`` (data_dir, data_files). ``label`` names
    the source in the one-line error, ``config_key`` the option holding ``dataset_config``."""
    import datasets

    name = hub_cache_snapshot(name, label)
    saved = is_saved_dataset(name)  # load_dataset refuses these ("use load_from_disk")
    if saved and dataset_config == "default":
        # the name of a dataset without named configurations (load_dataset takes it for a
        # data folder): a recipe's `config: default` still reads that dataset saved to disk
        dataset_config = None
    given = {config_key: dataset_config, **options}
    extra = next((key for key, value in given.items() if value is not None), None)
    if saved and extra is not None:
        raise DataError(
            f"{label} is a datasets.save_to_disk folder, which has no configurations; "
            f"remove {extra} ({given[extra]})"
        )
    if builder_without_files(name, options):
        give = "its data_files" if "data_files" in options else "the file as train_file"
        raise DataError(
            f"{label} is datasets' {name} reader without data_files, which reads every {name} "
            f"file under the working directory: give {give}"
        )
    offline = False
    failed: list[str] = []  # the files datasets could not read (_failed_files)
    try:
        if saved:
            loaded = datasets.load_from_disk(name)
            for split in loaded.values() if hasattr(loaded, "values") else [loaded]:
                remember_saved_files(split)
            if isinstance(loaded, datasets.Dataset):  # one split, saved without a name
                loaded = {lone_split: loaded}
        else:
            options = {key: value for key, value in options.items() if value is not None}
            offline = cache_only_where_unreachable(name)
            streamed = bool(options.get("streaming"))
            local = os.path.isdir(name) or "data_files" in options
            built = {key: value for key, value in options.items() if key != "streaming"}
            files = _split_files(name, dataset_config, built) if local else None
            alone = ALONE if config_key == "dataset_config" else ALONE_IN_A_MIXTURE
            if files is not None and not streamed:  # (each file's own types: what one table
                for split_files in files.values():  # of them changes; read whole, not streamed)
                    refuse_changed_values([str(path) for path in split_files], label, alone)
            # (streamed too: a folder's CSV headers alone are read; its '007' trained as 7.0,
            # refused as 'a number', where dataset_streaming: false and the file alone read it
            # as written)
            headers = _csv_headers(files, options) if files is not None else {}
            with _failed_files(failed):
                if len(set(headers.values())) > 1:  # (splits of different columns)
                    loaded = _each_split_as_text(name, dataset_config, options, files, headers)
                else:
                    text = _as_text(next(iter(headers.values()))) if headers else {}
                    loaded = datasets.load_dataset(name, dataset_config, **text, **options)
            if files is not None and not streamed:
                remember_split_files(loaded, files)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types: offline, missing, malformed
        why = f"; {unreachable_reason()}, so only the local cache was read" if offline else ""
        problem = _load_problem(exc, failed)
        # "Config name is missing." alone: the configurations are on the lines after it
        configs = [line for line in str(exc).splitlines() if "available configs:" in line]
        if configs:
            problem = f"{problem.rstrip('.')}; it has {configs[0].split(':', 1)[1].strip()}"
            # (a dataset_mixture entry's key, config, is no option: its entry's words)
            own = config_key == "dataset_config"
            why = f"{why}; {spell_setting(config_key) if own else f'set {config_key}'}"
        raise DataError(f"{label}: cannot load ({problem}){why}") from None
    return loaded


def _csv_headers(files: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, tuple]:
    """Each split's one header and field separator, where a folder's files are all CSV (or all
    TSV) and the files of each split share them: read as text (_as_text), as directpo's own
    reader reads a CSV train_file, every cell as written. datasets' csv reader (pandas) reads a
    cell that looks like a number, a boolean or a missing value as one: '007' trained (or was
    refused as a number) as 7, '1e5' as 100000.0, 'NaN' and an empty cell as None, and a folder
    whose one file's chosen column is all numbers beside another's words failed naming no file
    ("Failed to parse string: 'true' as a scalar of type int64"). A cell of messages is read as
    that list where the rows are read (readers._dataset_rows). {} for other files, or a split's
    files of different columns or separators (said by the load)."""
    paths = [str(path) for split in files.values() for path in split]
    # (.tsv too: datasets reads it with the same pandas reader, tabs apart; '007' was refused
    # as 'a number' and an empty cell said 'is null'; a .csv.gz's rows as its .csv's)
    kinds = {_table_kind(path) for path in paths}
    if not paths or "features" in options or len(kinds) != 1 or None in kinds:
        return {}
    import pandas

    headers: dict[str, tuple] = {}
    for split, split_files in files.items():
        try:
            # each file's separator as a CSV train_file's: Excel's semicolon (German, French
            # locales) failed the folder ("Expected 1 fields in line 3, saw 2") where the
            # file alone trained
            read = set()
            for path in split_files:
                separator = "\t" if kinds == {".tsv"} else csv_separator(str(path))
                columns = pandas.read_csv(str(path), nrows=0, sep=separator).columns
                read.add((tuple(columns), separator))
        except Exception:  # (a file pandas cannot read: said by the load, as before)
            return {}
        if len(read) != 1:
            return {}
        headers[str(split)] = read.pop()
    return headers


def _as_text(table: tuple) -> dict[str, Any]:
    """load_dataset's options that read a CSV table of ``table`` (its header, its field
    separator) with every cell as text."""
    import datasets

    header, separator = table
    text = datasets.Features({name: datasets.Value("string") for name in header})
    return {"features": text, "keep_default_na": False, "na_filter": False, "sep": separator}


def _each_split_as_text(
    name: str,
    dataset_config: str | None,
    options: Mapping[str, Any],
    files: Mapping[str, Any],
    headers: dict[str, tuple],
) -> Any:
    """A folder whose CSV splits have different columns (a test.csv without train.csv's
    score columns), each split loaded as text on its own: load_dataset takes one table's
    features, and the folder's cells were pandas' numbers ('007' as 7) for every split."""
    import datasets

    loaded = {
        split: datasets.load_dataset(
            name,
            dataset_config,
            split=split,
            **{**options, "data_files": {split: [str(path) for path in files[split]]}},
            **_as_text(header),
        )
        for split, header in headers.items()
    }
    streamed = options.get("streaming")
    return (datasets.IterableDatasetDict if streamed else datasets.DatasetDict)(loaded)


def _table_kind(path: str) -> str | None:
    """The ending ".csv" or ".tsv" of such a file (compressed too: data.tsv.gz), else None."""
    ending = rows_ending(path)
    return ending if ending in (".csv", ".tsv") else None


def _split_files(name: str, dataset_config: str | None, options: Any) -> Any:
    """The local files of each split ``load_dataset`` reads, in its order (its builder's
    data_files): their rows said by file and line (row_places), their JSON files' types
    checked first (file_types); None where the builder cannot be made (said by the load)."""
    import datasets

    try:
        builder = datasets.load_dataset_builder(name, dataset_config, **options)
    except Exception:  # (datasets raises many types; the rows keep their place in the whole)
        return None
    files = builder.config.data_files
    return files if hasattr(files, "items") and hasattr(files, "get") else None


def hub_cache_snapshot(name: str, label: str) -> str:
    """A dataset's folder in the hub's cache (``~/.cache/huggingface/hub/datasets--org--name``,
    where ``snapshot_download`` keeps it) as the snapshot its ``refs/main`` names (else its one
    snapshot): read as a folder, every snapshot's files were one split's (each pair twice once
    it was downloaded at two revisions) and its card's splits, under snapshots/<commit>/, were
    never read (UltraFeedback's train_prefs and train_sft both train)."""
    snapshots = os.path.join(name, "snapshots")
    if not (os.path.basename(os.path.normpath(name)).startswith("datasets--")
            and os.path.isdir(snapshots)):  # fmt: skip
        return name
    try:
        with open(os.path.join(name, "refs", "main"), encoding="utf-8") as file:
            main = file.read().strip()
    except OSError:  # (downloaded at a revision alone)
        main = ""
    held = sorted(entry for entry in os.listdir(snapshots) if not entry.startswith("."))
    if main in held or len(held) == 1:
        return os.path.join(snapshots, main if main in held else held[0])
    if not held:
        raise DataError(f"{label}: the hub cache's folder holds no snapshot; download it again")
    # (a refs/main of a snapshot since deleted, or not yet downloaded, was said to be none)
    ref = f"a refs/main naming {main}, not among them" if main else "no refs/main"
    raise DataError(
        f"{label}: the hub cache's folder holds {len(held)} snapshots ({', '.join(held)}) and "
        f"{ref}: give one, e.g. {os.path.join(snapshots, held[-1])}"
    )


# what datasets' file readers log of the file they failed on (its exception names none)
_FAILED_FILE = re.compile(r"Failed to read file '(.+?)' with error")


@contextlib.contextmanager
def _failed_files(failed: list[str]) -> Iterator[None]:
    """The files datasets' builders log as failed while ``load_dataset`` runs, added to
    ``failed``; their log lines (the file's schema and the one asked for, 20 lines or more
    before the error's one line, which says the file) kept off the console."""

    def unsaid(record: logging.LogRecord) -> bool:  # (other records printed as ever)
        return _FAILED_FILE.search(record.getMessage()) is None

    class Found(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if said := _FAILED_FILE.search(record.getMessage()):
                failed.append(said[1])

    logger = logging.getLogger("datasets")
    printing = list(logger.handlers)  # (datasets' own, writing to the console)
    for handler in printing:
        handler.addFilter(unsaid)
    found = Found(logging.ERROR)
    logger.addHandler(found)
    try:
        yield
    finally:
        logger.removeHandler(found)
        for handler in printing:
            handler.removeFilter(unsaid)


def _load_problem(exc: BaseException, failed: list[str]) -> str:
    """``load_dataset``'s error as one line: "An error occurred while generating the dataset"
    said nothing of its cause, a file whose columns are not the others' (a shard with one
    column more, a README's features that the files do not have), which the file names."""
    cause = exc.__cause__
    if cause is None or first_line(exc) != "An error occurred while generating the dataset":
        return first_line(exc)
    where = f"{failed[0]}: " if failed else ""
    found = getattr(cause, "table_column_names", None)  # datasets' CastError
    wanted = getattr(cause, "requested_column_names", None)
    if not (isinstance(found, list) and isinstance(wanted, list)):
        return f"{where}{first_line(cause)}"
    more = [str(name) for name in found if name not in wanted]
    less = [str(name) for name in wanted if name not in found]
    said = "; ".join(
        [f"{', '.join(more)} beside theirs"] * bool(more) + [f"no {', '.join(less)}"] * bool(less)
    )
    file = "a file's" if not failed else "its"
    return (
        f"{where}{file} columns are not those of the other files (or of the card's "
        f"dataset_info): {said or 'their types differ'}"
    )


def no_rows(label: str, source: Any) -> DataError:
    """A source without rows ("the file is empty" only of a file holding no text: not of a
    list or Dataset, nor of a JSON file's ``[]`` or a CSV file's header alone)."""
    empty = isinstance(source, str) and _no_text(source)
    return DataError(f"{label}: no rows" + (" (the file is empty)" if empty else ""))


def _no_text(path: str) -> bool:
    """Whether the file at ``path`` holds nothing but whitespace (a byte-order mark too), once
    decompressed: a gzip file of no text (data.jsonl.gz, or one named data.jsonl) was "no rows"
    alone, its few bytes of gzip header taken for text."""
    try:
        opener = COMPRESSED.get(compression_of(path) or "", open)
        with opener(path, "rb") as handle:
            start = handle.read(4097)  # (no more: a file of text is told by its first bytes)
        return len(start) <= 4096 and not start.decode("utf-8", "replace").strip("\ufeff \t\r\n")
    except (OSError, EOFError, lzma.LZMAError):  # (a folder: a saved dataset of no rows)
        return False


def is_path_list(source: Any) -> bool:
    return (
        isinstance(source, list | tuple)
        and bool(source)
        and all(isinstance(item, str | os.PathLike) for item in source)
    )


def source_label(source: Any) -> str:
    if isinstance(source, str):
        return source
    if isinstance(source, list | tuple):
        return "rows"
    return "DataFrame" if hasattr(source, "to_dict") and hasattr(source, "columns") else "dataset"


def is_saved_dataset(path: str) -> bool:
    """A ``datasets.save_to_disk`` folder (of a Dataset or a DatasetDict)."""
    marks = ("dataset_dict.json",), ("state.json", "dataset_info.json")
    return os.path.isdir(path) and any(
        all(os.path.isfile(os.path.join(path, name)) for name in names) for names in marks
    )
