"""Output folders a command makes, and takes back when it fails before writing in them.

A command given an output in folders that do not exist yet makes them, but only once its
input passed its checks; one that fails after making them (a model that will not load, a
refused option) removes those it made while they are still empty, so that a failed try
leaves no empty folder behind for the next one to take for someone else's.
"""

from __future__ import annotations

from pathlib import Path


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, deepest first: what making
    ``folder`` creates."""
    missing = []
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first, as ``missing_folders`` gives them) while empty: a
    folder someone wrote into stays, and so do the folders above it."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): what is above it stays too
            return


def nearest_existing(folder: Path) -> Path:
    """``folder``, or its nearest parent that exists: where making it starts."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
