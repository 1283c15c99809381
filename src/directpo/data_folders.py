"""A folder given as a file of rows (score's --input, train_file): the part of it to give.

A folder of data files (a hub dataset's snapshot) or a DatasetDict of several splits is not one
source of rows; the line says which part to give, and how the reading command takes it whole
where it can (train's dataset_name: score, rank and generate have no such option, and were
told to give it as train's).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from directpo.callers import spell_option
from directpo.data_sources import hub_cache_snapshot, is_saved_dataset
from directpo.data_text import rows_ending
from directpo.errors import DataError
from directpo.readers import DATA_KINDS

# how train reads a folder whole (its dataset_name option): said where train reads the folder
TRAIN_WHOLE = "train's dataset_name"


def folder_problem(path: str, label: str, whole: str = "") -> str | None:
    """Why the folder ``path`` cannot be read as one source of rows (not a save_to_disk
    folder; a DatasetDict of several splits), or None. ``whole``: how the reader's command
    reads such a folder whole (train: ``TRAIN_WHOLE``; score, rank and generate have no such
    option: "" says only the part to give)."""
    if not is_saved_dataset(path):
        try:  # (a hub cache folder: its main snapshot's files, not every revision's)
            give = _files_to_give(hub_cache_snapshot(path, label))
        except DataError as exc:
            return str(exc)
        rest = f"; a folder of data files (a hub dataset's snapshot) is read whole by {whole}"
        return f"{label}: a folder, but not a datasets.save_to_disk folder; {give}" + (
            rest if whole else ""
        )
    splits = _splits(path)
    if len(splits) > 1:
        # (train's dataset_train_split / dataset_test_split pick a folder's splits)
        picked = "(dataset_train_split, dataset_test_split)"
        whole = f", or give the folder as {whole} {picked}" if whole else ""
        return (
            f"{label}: holds several splits ({', '.join(splits)}); point to one, e.g. "
            f"{os.path.join(path, splits[0])}{whole}"
        )
    return None


def _splits(path: str) -> list[str]:
    """The splits a save_to_disk folder of a DatasetDict lists (dataset_dict.json), else []."""
    try:
        with open(os.path.join(path, "dataset_dict.json"), encoding="utf-8") as file:
            splits = json.load(file).get("splits", [])
    except (OSError, ValueError, AttributeError):  # a Dataset's folder, or an odd file
        return []
    return [str(split) for split in splits] if isinstance(splits, list) else []


def _files_to_give(folder: str) -> str:
    """What of a folder of data files to give: its data file, or each split's first one by
    name (the first in sorted order was a snapshot's test-00000-of-00001.parquet, shown to
    train_file as the file to give)."""
    files = data_files(folder)
    if not files:
        return "it holds no data files"
    by_split: dict[str | None, list[str]] = {}
    for path in files:
        by_split.setdefault(split_named(path, folder), []).append(path)
    if len(by_split) == 1:
        return f"give one of its data files ({files[0]})"
    order = [*SPLIT_WORDS, None]
    splits = sorted(by_split, key=order.index)
    said = "; ".join(
        f"{split or 'no split'}: {by_split[split][0]}{', ...' if len(by_split[split]) > 1 else ''}"
        for split in splits
    )
    return f"give the data files of one split ({said})"


def data_files(folder: str) -> list[str]:
    """The files under ``folder``, in sorted order, of a type ``open_rows`` reads
    (data/train-...parquet), not a README.md nor a hidden folder's (.cache, .git)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if rows_ending(name) in DATA_KINDS:
                found.append(os.path.join(root, name))
    return found


# the words by which datasets (and the hub's file names: data/test-00000-of-00001.parquet)
# place a data file in a split, as datasets.data_files' SPLIT_KEYWORDS: a word of a file's or
# folder's name between separators (train_prefs-00000-of-00001.parquet is the train split's)
SPLIT_WORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SPLIT_WORD = re.compile(
    r"(?:^|[-._ 0-9])("
    + "|".join(w for ws in SPLIT_WORDS.values() for w in ws)
    + r")(?=[-._ 0-9]|$)"
)
HELD_OUT_SPLITS = ("validation", "test")


def split_named(path: str, root: str) -> str | None:
    """The split whose word names ``path`` (its name, or a folder's between ``root`` and it),
    as datasets reads a folder's splits from its files' names; None where no word does."""
    relative = os.path.relpath(path, root).replace("\\", "/").lower()
    for part in reversed(relative.split("/")):  # (the file's own name first)
        found = _SPLIT_WORD.search(part)
        if found is not None:
            return next(s for s, words in SPLIT_WORDS.items() if found[1] in words)
    return None


# how a hub snapshot's files are read by split, for train_file / eval_file
BY_SPLIT = (
    "the dataset's folder as dataset_name (dataset_train_split, dataset_test_split pick its splits)"
)


def mixed_splits(key: str, paths: Any, by_split: str = BY_SPLIT) -> str | None:
    """Why ``key``'s files (train_file / eval_file, a glob's matches or a list: the shell
    expands ``data/*.parquet`` into one) mix the train split's files with held-out ones, by
    their names, or None: ``data/*.parquet`` of a hub snapshot matched its test files too, and
    the test pairs were trained on (or, as eval_file, training pairs evaluated as held out).
    ``by_split``: how the source reads such files by split instead (train_file's dataset_name);
    a ``key`` other than eval_file's is trained on."""
    if isinstance(paths, dict):  # named eval sets, each its own
        said = (mixed_splits(f"{key} {name}", f, by_split) for name, f in paths.items())
        return next((line for line in said if line), None)
    if not isinstance(paths, list) or len(paths) < 2:
        return None
    files = [str(path) for path in paths if os.path.isfile(str(path))]
    if len(files) < 2:
        return None
    if revisions := _revisions(key, files):
        return revisions
    root = os.path.commonpath([os.path.dirname(os.path.abspath(f)) for f in files])
    named: dict[str, list[str]] = {}
    for path in files:
        split = split_named(os.path.abspath(path), root)
        if split is not None:
            named.setdefault(split, []).append(path)
    held_out = [split for split in HELD_OUT_SPLITS if split in named]
    if "train" not in named or not held_out:
        return _hub_splits(key, files, by_split)
    trained = not key.startswith("eval_file")
    wanted, unwanted = (["train"], held_out) if trained else (held_out, ["train"])
    stray = [path for split in unwanted for path in named[split]]
    kept = [path for split in wanted for path in named[split]]
    what = (
        "held-out pairs would be trained on"
        if trained
        else "training pairs would be evaluated as held out"
    )
    splits = " and ".join(unwanted)
    groups = {"train": kept, "held_out": stray} if trained else {"held": kept, "seen": stray}
    return (
        f"{key}: {_some(stray)} {'is' if len(stray) == 1 else 'are'} the {splits} split's by "
        f"name, beside the "
        f"{' and '.join(wanted)} split's ({_some(kept)}): {what}; give only the "
        f"{' and '.join(wanted)} split's files, or {by_split}{_deliberately(key, groups)}"
    )


# a hub dataset's data file, named by its split: data/train_prefs-00000-of-00001.parquet
_HUB_SHARD = re.compile(r"(.+)-\d{5}-of-\d{5}\.[^/\\]+")


def _hub_splits(key: str, files: list[str], by_split: str) -> str | None:
    """Why ``files`` mix the shards of several splits of one hub dataset (one folder's
    ``{split}-00000-of-0000n`` files of two names), or None: data/train*.parquet of
    HuggingFaceH4/ultrafeedback_binarized read train_prefs, train_sft and train_gen as one,
    the same pairs three times over, said only as 'repeat an earlier pair (kept)'."""
    by_folder: dict[str, dict[str, list[str]]] = {}
    for path in files:
        shard = _HUB_SHARD.fullmatch(os.path.basename(path))
        if shard is not None:
            folder = by_folder.setdefault(os.path.dirname(os.path.abspath(path)), {})
            folder.setdefault(shard[1], []).append(path)
    splits = next((found for found in by_folder.values() if len(found) > 1), None)
    if splits is None:
        return None
    said = "; ".join(f"{split}: {_some(paths)}" for split, paths in splits.items())
    return (
        f"{key}: lists the files of {len(splits)} splits of one dataset, by the names the hub "
        f"gives a split's files ({said}), read as one: give one split's files, or {by_split}"
        f"{_deliberately(key, splits)}"
    )


# a file of a hub cache folder's snapshot: .../datasets--org--name/snapshots/<commit>/...
_SNAPSHOT = re.compile(r"(.*[/\\](?:datasets|models)--[^/\\]+)[/\\]snapshots[/\\]([^/\\]+)[/\\]")


def _revisions(key: str, files: list[str]) -> str | None:
    """Why ``files`` are those of several snapshots (revisions) of one hub cache folder, or
    None: snapshots/*/data/*.parquet trained each revision's pairs, the same pairs once per
    revision downloaded, said only as 'repeat an earlier pair (kept)'."""
    by_folder: dict[str, dict[str, list[str]]] = {}
    for path in files:
        found = _SNAPSHOT.match(os.path.abspath(path))
        if found is not None:
            by_folder.setdefault(found[1], {}).setdefault(found[2], []).append(path)
    folder, snapshots = next(
        ((f, held) for f, held in by_folder.items() if len(held) > 1), (None, None)
    )
    if folder is None or snapshots is None:
        return None
    said = ", ".join(sorted(snapshots))
    return (
        f"{key}: lists the files of {len(snapshots)} snapshots (revisions) of one hub cache "
        f"folder ({said}), each revision's pairs read once more: give one snapshot's files, "
        f"or the folder as dataset_name (its refs/main snapshot is read): {folder}"
    )


def _deliberately(key: str, groups: dict[str, list[str]]) -> str:
    """How to read such files together on purpose (train on train.jsonl and dev.jsonl for a
    final run, evaluate a sample of the training pairs beside the held-out ones): the line
    gave no way but renaming the files. A train_file's are sources of a mixture (a file as
    its own source is read whole, whatever its name); an eval_file's, sets of their own, each
    named by ``groups``' key."""
    if not key.startswith(("train_file", "eval_file")):
        return ""  # (a mixture's data_files: its by_split already names each split's files)
    if key.startswith("eval_file"):
        sets = {name: files[0] if len(files) == 1 else files for name, files in groups.items()}
        return f" (to evaluate them all, name each its own set: {spell_option('eval_file', sets)})"
    files = [path for paths in groups.values() for path in paths]
    firsts = [paths[0] for paths in groups.values()][:2]
    sources = spell_option("dataset_mixture", {"datasets": [{"id": path} for path in firsts]})
    more = ", and so for each other file" if len(files) > 2 else ""
    return (
        f" (to train on them all, give each file as its own source in train_file's place: "
        f"{sources}{more})"
    )


def _some(paths: list[str]) -> str:
    """The first two paths, and how many more."""
    more = f" and {len(paths) - 2} more" if len(paths) > 2 else ""
    return ", ".join(paths[:2]) + more


def repeated_file(key: str, paths: Any) -> str | None:
    """Why ``key``'s files list one file twice (a pattern and a file it matches, or the same
    file by two paths), or None: its pairs were each trained twice, said only as "5 of them
    repeat an earlier pair (kept)"."""
    if isinstance(paths, dict):  # named eval sets, each its own
        said = (repeated_file(f"{key} {name}", files) for name, files in paths.items())
        return next((line for line in said if line), None)
    if not isinstance(paths, list):
        return None
    seen: dict[str, str] = {}
    for path in map(str, paths):
        same = os.path.realpath(os.path.expanduser(path))
        if same in seen and os.path.isfile(same):
            twice = path if seen[same] == path else f"{seen[same]} (as {path} too)"
            return (
                f"{key}: lists {twice} twice (a glob pattern beside the file's own path, or "
                "two paths of one file), so each of its pairs would be read twice; list it once"
            )
        seen[same] = path
    return None
