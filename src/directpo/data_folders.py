"""A folder given as a file of rows (score's --input, train_file): the part of it to give.

A folder of data files (a hub dataset's snapshot) or a DatasetDict of several splits is not one
source of rows; the line says which part to give, and how the reading command takes it whole
where it can (train's dataset_name: score, rank and generate have no such option, and were
told to give it as train's).
"""

from __future__ import annotations

import json
import os

from directpo.data_sources import is_saved_dataset
from directpo.readers import COMPRESSED, DATA_KINDS

# how train reads a folder whole (its dataset_name option): said where train reads the folder
TRAIN_WHOLE = "train's dataset_name"


def folder_problem(path: str, label: str, whole: str = "") -> str | None:
    """Why the folder ``path`` cannot be read as one source of rows (not a save_to_disk
    folder; a DatasetDict of several splits), or None. ``whole``: how the reader's command
    reads such a folder whole (train: ``TRAIN_WHOLE``; score, rank and generate have no such
    option: "" says only the part to give)."""
    if not is_saved_dataset(path):
        found = first_data_file(path)
        give = f"give one of its data files ({found})" if found else "it holds no data files"
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


def first_data_file(folder: str) -> str | None:
    """The first file, in sorted order, of a type ``open_rows`` reads (data/train-...parquet)."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # not .cache, .git
        for name in sorted(files):
            stem, ext = os.path.splitext(name.lower())
            if ext in COMPRESSED:
                ext = os.path.splitext(stem)[1]
            if ext in DATA_KINDS:
                return os.path.join(root, name)
    return None
