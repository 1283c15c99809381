"""The validated pair and its set, as data.py hands them on: ``PreferenceExample`` (one pair,
with its row's images, tools and chat template arguments), ``PreferenceData`` (a source's pairs
and the start line's summary of them), ``Columns`` (which columns hold them) and
``ImagePrompt`` (a prompt with what renders it besides its text). No reading here: data.py
reads rows, pair_rows.py checks each one."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from directpo.callers import spell_option
from directpo.messages import Text
from directpo.template_args import joined_args
from directpo.vision import image_key

LAYOUTS = ("explicit", "conversational", "implicit")


@dataclass(frozen=True)
class ImagePrompt:
    """A prompt with what renders it besides its text, for sampling and scoring: its images (a
    vision-language model's) and its row's own chat template arguments (tools,
    chat_template_kwargs), either of which may be empty."""

    prompt: Text
    images: tuple[Any, ...]
    template_args: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        """For JSON records: the prompt, and image paths (or a count of in-memory images)."""
        names = [image for image in self.images if isinstance(image, str)]
        return {"prompt": self.prompt, "images": names or len(self.images)}


def prompt_of(prompt: Text | ImagePrompt) -> Text:
    """The text or messages of a prompt, with or without images."""
    return prompt.prompt if isinstance(prompt, ImagePrompt) else prompt


@dataclass(frozen=True)
class PreferenceExample:
    """One validated preference pair. ``prompt`` is a string or a message list."""

    prompt: Text
    chosen: Text
    rejected: Text
    where: str = ""
    tools: list[dict[str, Any]] | None = None  # function schemas for the chat template
    images: tuple[Any, ...] | None = None  # the prompt's images: paths, bytes or PIL images
    chat_template_kwargs: dict[str, Any] | None = None  # the row's own, as TRL reads them
    # the row's other columns than the prompt (an online or eval_generate reward_fn gets them)
    columns: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)

    @property
    def template_args(self) -> dict[str, Any] | None:
        """The row's arguments for the chat template: its tools and chat_template_kwargs."""
        return joined_args(self.tools, self.chat_template_kwargs)

    @property
    def full_prompt(self) -> Text | ImagePrompt:
        """The prompt with its images and chat template arguments, if any (what sampling
        needs)."""
        if self.images or self.template_args:
            return ImagePrompt(self.prompt, self.images or (), self.template_args)
        return self.prompt


# how to leave tied pairs out, by what they were read from: a Python caller's rows were told
# to drop them "from the file" they never had, and a hub dataset's user too
TIES_LEFT_OUT = {
    "file": "drop tied rows from the file to leave them out",
    "files": "drop tied rows from the files to leave them out",
    "list": "drop tied rows from the list to leave them out",
    "DataFrame": "drop tied rows from the DataFrame to leave them out",
    "Dataset": "filter tied rows out of the Dataset (Dataset.filter) to leave them out",
    "hub": "to leave them out, give a file of the dataset's other rows",
}


def source_kind(source: Any, python_caller: bool) -> str:
    """What pairs are read from, as TIES_LEFT_OUT names it: a file (a path), a list, a
    DataFrame or a Dataset a Python caller passed; from a recipe or flags, a source that is no
    path is a hub dataset (dataset_name) loaded here."""
    if isinstance(source, str):
        return "file"
    if not python_caller:
        return "hub"
    if isinstance(source, list | tuple):
        return "list"
    return "DataFrame" if hasattr(source, "to_dict") and hasattr(source, "columns") else "Dataset"


@dataclass
class PreferenceData:
    examples: list[PreferenceExample]
    layout: str
    source: str
    skipped: Counter[str] = field(default_factory=Counter)
    # a system prompt column left unread, and its rows with text (unread_columns.py)
    unread_system: tuple[str, int] | None = None
    # pairs whose own rating columns rate both replies alike (pair_rows.rating_tie), the first
    # one said
    ties: int = 0
    first_tie: str | None = None
    # what the pairs were read from, for what to drop tied rows from (TIES_LEFT_OUT's keys)
    source_kind: str = "file"

    def __len__(self) -> int:
        return len(self.examples)

    @cached_property
    def duplicates(self) -> int:
        """Pairs that repeat an earlier one exactly (kept: a repeat weighs a pair twice).
        Counted once: a large file's texts take seconds to compare."""
        keys = {(_digest(e), _context_key(e)) for e in self.examples}
        return len(self.examples) - len(keys)

    def summary(self) -> str:
        text = f"{self.source}: {counted(len(self.examples), 'pair')}, layout {self.layout}"
        if self.duplicates:
            verb = "repeats" if self.duplicates == 1 else "repeat"
            text += f", {self.duplicates} of them {verb} an earlier pair (kept)"
        if self.skipped:
            reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
            text += f"; skipped {counted(sum(self.skipped.values()), 'invalid row')} ({reasons})"
        if self.ties:
            text += (
                f"; {counted(self.ties, 'pair')} {'rates' if self.ties == 1 else 'rate'} "
                "chosen and rejected alike "
                # (kept, not 'trained': an eval file's line says it too, of pairs evaluated)
                f"({self.first_tie}{', ...' if self.ties > 1 else ''}): kept as "
                f"labelled, as TRL does ({TIES_LEFT_OUT[self.source_kind]})"
            )
        if self.unread_system:
            name, rows = self.unread_system
            text += (
                f"; column '{name}' is not read: {counted(rows, 'prompt')} "
                f"{'goes' if rows == 1 else 'go'} without the "
                f"system prompt it holds ({spell_option('system_column', name)} makes it their "
                "system turn)"
            )
        return text


def counted(number: int, noun: str) -> str:
    """'1 pair', '2 pairs'."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _context_key(example: PreferenceExample) -> tuple[Any, ...]:
    """What else makes a pair differ from one with the same texts: its images (paths, a digest
    of bytes, or the PIL object itself) and its chat template arguments."""
    images = tuple(map(image_key, example.images or ()))
    args = example.template_args
    return images, args and json.dumps(args, sort_keys=True, default=str)


def _digest(example: PreferenceExample) -> bytes:
    """A pair's texts or messages as a 16-byte digest: the set of each pair's messages as JSON
    held a second copy of a conversational file's texts while they were counted, at the peak
    of reading it (a text and the messages that would write it differ: JSON quotes one)."""
    pair = json.dumps([example.prompt, example.chosen, example.rejected], default=repr)
    return hashlib.blake2b(pair.encode("utf-8", "surrogatepass"), digest_size=16).digest()


@dataclass(frozen=True)
class Columns:
    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    # a non-default prompt column must exist; the default one may be absent (implicit layout)
    prompt_required: bool = False
    # a column whose text is each prompt's system turn (Intel/orca_dpo_pairs' system)
    system: str | None = None
    # each example keeps its row's other columns (``PreferenceExample.columns``: what a
    # reward_fn is given); False keeps only a system prompt column's, which the start line
    # reads, since the others (HH's whole chosen / rejected conversations, UltraFeedback's
    # ``messages``) held the texts of 100k rows twice or more while they were tokenized
    other_columns: bool = True
    # a source these columns already read (the train file, where this is its eval file): a
    # fix renaming them for this source's headers would refuse that one
    read_by: str | None = None
