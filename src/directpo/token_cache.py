"""Tokenized pairs cached between runs (``cache_tokenized``, on by default).

Tokenizing is most of a large file's start: 100k pairs of a few hundred words each take minutes
on a CPU (as TRL's ``map`` does), every time a run changes only ``beta`` or the learning rate.
The pairs are cached in ``DIRECTPO_CACHE/tokenized/<key>.npz``, where the key hashes everything
that decides the ids: each validated pair's texts or messages and its chat template arguments
(what reading made of the file, so the file's format, columns, ``system_column`` and the
mixture all count), the tokenizer as ``save_pretrained`` writes it (vocabulary, merges, special
tokens, chat template, the ``chat_template`` option's replacement; what a template that reads
the clock writes now, Llama 3.1+'s date), the tokenization options,
the source of the tokenization rules and the library versions. Where a row sits (its "line N")
does not count: it names the row, and is read again from this run's rows.

Rows with images (or a vision-language model's processor) are not cached: their pixels would
have to be hashed. A damaged file counts as absent (tokenized again, replaced); a cache that
cannot be written (a full disk) is one line, the part written removed, and the run goes on.
The cache keeps ``cache_tokenized_max_gb`` of files: those used longest ago are removed first
(8 entries of 1M long pairs took 16 GB whatever the disk), never one in use.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import directpo
from directpo.callers import said
from directpo.errors import first_line
from directpo.option_paths import cache_home
from directpo.pair_store import PairStore, pair_store
from directpo.preference_pairs import PreferenceData
from directpo.tokenized_data import TokenizedData

FORMAT = 1  # of the files: a change of layout makes other keys
MAX_BYTES = 10 * 10**9  # cache_tokenized_max_gb's default: files kept, newest used first
# a file used (written or read) this recently may be another run's, about to be read (the other
# processes of a torchrun node read the one their first process wrote): never removed
IN_USE_SECONDS = 600
TEMPORARY = ".tmp"  # a file being written (renamed to <key>.npz when whole)
# a part-written file this old is a killed run's (a write takes seconds a GB of ids)
STALE_SECONDS = 6 * 3600
# the modules whose code decides the ids (messages.py: how message content reaches the chat
# template, text parts joined; data.py's rows, preference_pairs.py's pairs, are hashed as what
# it made of them)
RULES = (
    "tokenization.py",
    "fast_encoding.py",
    "pair_truncation.py",  # (PairLimits: the truncation rules a PairTokenizer holds)
    "image_pairs.py",  # (the functions PairTokenizer encodes rows with images with)
    "prompt_windows.py",  # (which texts are tokenized for each pair's ids)
    "chat_render.py",
    "chat_split.py",
    "turn_masks.py",
    "stops.py",
    "vision.py",
    "messages.py",
    "special_text.py",  # (which rows are refused, and the count of the others said)
    "parallel_tokenizing.py",  # (puts dataset_num_proc's batches back in order)
)


def cache_folder() -> Path:
    return cache_home() / "tokenized"


def cached_tokenization(
    data: PreferenceData,
    tokenizer: Any,
    options: dict[str, Any],
    tokenize: Callable[[], TokenizedData],
    echo: Callable[[str], None],
    name: str,
    max_bytes: int = MAX_BYTES,
) -> TokenizedData:
    """``tokenize()``'s result, read from the cache when an earlier run with the same key
    wrote it, else computed and written (``options``: every tokenization option; ``max_bytes``:
    what the cache folder keeps, cache_tokenized_max_gb)."""
    key = tokenization_key(data, tokenizer, options)
    if key is None:
        return tokenize()
    path = cache_folder() / f"{key}.npz"
    cached = _read(path, data, echo, name)
    if cached is not None:  # (its summary says so: the caller's one line of the set)
        cached.cache_file = str(path)
        return cached
    tokenized = tokenize()
    problem = _write(path, tokenized, data, max_bytes)
    if problem:
        echo(
            f"{name}: tokenized pairs not cached ({problem}); training goes on (set "
            f"DIRECTPO_CACHE to a writable folder, or {said('cache_tokenized', False)})"
        )
    return tokenized


def tokenization_key(data: PreferenceData, tokenizer: Any, options: dict[str, Any]) -> str | None:
    """The hash of everything that decides the pairs' ids; None for pairs with images or
    a tokenizer that cannot be keyed."""
    if any(example.images for example in data.examples):
        return None
    tokenizer_digest = _tokenizer_digest(tokenizer)
    if tokenizer_digest is None:
        return None
    import tokenizers
    import transformers

    digest = hashlib.blake2b(digest_size=20)
    settings = {
        "format": FORMAT,
        "options": options,
        "versions": [directpo.__version__, transformers.__version__, tokenizers.__version__],
    }
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    digest.update(tokenizer_digest)
    clock = _clock_in_template(tokenizer, options.get("chat_template_kwargs"))
    if clock is None:
        return None
    digest.update(clock.encode())
    for module in RULES:
        digest.update((Path(__file__).parent / module).read_bytes())
    for example in data.examples:
        row = [example.prompt, example.chosen, example.rejected, example.template_args]
        digest.update(json.dumps(row, default=repr).encode())  # (ASCII: a lone surrogate too)
        digest.update(b"\0")
    return digest.hexdigest()


def _clock_in_template(tokenizer: Any, template_kwargs: dict[str, Any] | None) -> str | None:
    """What a chat template that reads the clock (``strftime_now``: Llama 3.1+ write "Today
    Date: ...") writes now, as a probe renders it: the same pairs are other ids on another
    day (or minute, for a template that writes the time, which is then never reused). "" for
    a template that does not read it; None when the probe cannot be rendered (not cached)."""
    if "strftime_now" not in str(getattr(tokenizer, "chat_template", None) or ""):
        return ""
    probe = [{"role": "user", "content": "x"}]
    try:
        return tokenizer.apply_chat_template(
            probe, tokenize=False, add_generation_prompt=True, **(template_kwargs or {})
        )
    except Exception:  # a template that refuses the probe: its date cannot be read
        return None


def _tokenizer_digest(tokenizer: Any) -> bytes | None:
    """The files ``save_pretrained`` writes for the tokenizer, hashed (None if it cannot)."""
    digest = hashlib.blake2b(type(tokenizer).__name__.encode(), digest_size=20)
    try:
        with tempfile.TemporaryDirectory(prefix="directpo-tokenizer-") as folder:
            tokenizer.save_pretrained(folder)
            for file in sorted(Path(folder).rglob("*")):
                if file.is_file():
                    digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    except Exception:  # a tokenizer that cannot save itself, no temporary folder: not cached
        return None
    return digest.digest()


def _write(
    path: Path, tokenized: TokenizedData, data: PreferenceData, max_bytes: int = MAX_BYTES
) -> str | None:
    """Write the pairs as flat ids plus lengths (an atomic rename); a problem, or None."""
    store = pair_store(tokenized.pairs)  # (already one after tokenize_preferences)
    ids, lengths = store.ids, store.lengths
    if ids.dtype.itemsize > 4:  # (the file holds 2 or 4 bytes an id, as it always has)
        return "a token id does not fit 32 bits"
    meta = {
        "truncated": dict(tokenized.truncated),
        "skipped": dict(tokenized.skipped),
        "examples": len(data.examples),
        # each pair's unscored spans (assistant_only_loss): few pairs have any
        "unscored": {str(index): spans for index, spans in store.unscored.items()},
    }
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=TEMPORARY)
        with os.fdopen(handle, "wb") as file:
            np.savez(
                file,
                ids=ids,
                lengths=lengths,
                kept=np.array(_kept_rows(data, tokenized.sources), dtype=np.int64),
                meta=np.array(json.dumps(meta)),
            )
        os.chmod(temporary, 0o666 & ~_umask())  # as open() would make it (mkstemp: 0600)
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:  # (the folder named: 'No such file or directory' alone said none)
        return f"cannot write {path.parent}: {exc.strerror or exc}"
    finally:  # a full disk (or Ctrl-C) part way left the part written, never read, for good
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
    _prune(path.parent, max_bytes, keep=path)
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _kept_rows(data: PreferenceData, sources: list[str]) -> list[int]:
    """The index of each tokenized pair's example (``sources`` are theirs, in order; a row
    refused with skip_invalid_rows has none)."""
    kept, at = [], 0
    for index, example in enumerate(data.examples):
        if at < len(sources) and example.where == sources[at]:
            kept.append(index)
            at += 1
    return kept


def _read(
    path: Path, data: PreferenceData, echo: Callable[[str], None], name: str
) -> TokenizedData | None:
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            ids, lengths, kept = stored["ids"], stored["lengths"], stored["kept"]
            meta = json.loads(str(stored["meta"]))
        unscored = {
            int(index): tuple(tuple((int(a), int(b)) for a, b in side) for side in spans)
            for index, spans in meta.get("unscored", {}).items()
        }
        if (
            meta["examples"] != len(data.examples)
            or lengths.shape != (len(kept), 3)
            or int(lengths.sum()) != len(ids)
            or (len(lengths) and int(lengths.min()) < 0)
            or (len(kept) and not 0 <= kept.min() <= kept.max() < len(data.examples))
            or ids.ndim != 1
            or ids.dtype.kind not in "iu"  # (ids held as read: never floats or objects)
            or (len(ids) and int(ids.min()) < 0)
        ):
            raise ValueError("its arrays do not fit the pairs")
    except Exception as exc:  # numpy raises several types for a file cut short or garbled
        echo(f"{name}: the cached tokenized pairs are unreadable ({first_line(exc)}): tokenizing")
        return None
    with contextlib.suppress(OSError):  # (a cache shared read-only is still read)
        os.utime(path)  # the newest used are the ones kept
    return TokenizedData(
        pairs=PairStore(ids, lengths, unscored=unscored),  # held as read: 2 or 4 bytes an id
        sources=[data.examples[i].where for i in kept.tolist()],
        truncated=Counter(meta["truncated"]),
        skipped=Counter(meta["skipped"]),
    )


def _prune(folder: Path, max_bytes: int, keep: Path) -> None:
    """Remove the files used longest ago until the rest hold ``max_bytes``, sparing ``keep``
    (this run's) and any used in the last ``IN_USE_SECONDS`` (a file another run has opened
    stays readable on POSIX until closed; one it is about to open would be gone), and the
    part-written files of runs killed while writing (``kill -9``, a power loss), which nothing
    else would: each the size of its pairs' ids. One younger than ``STALE_SECONDS`` may be
    another run's write in progress."""
    try:
        now = time.time()
        files = [(file, file.stat()) for file in folder.glob("*.npz")]
        total = sum(stat.st_size for _, stat in files)
        for file, stat in sorted(files, key=lambda item: item[1].st_mtime):  # oldest first
            if total <= max_bytes:
                break
            if file == keep or now - stat.st_mtime < IN_USE_SECONDS:
                continue
            file.unlink(missing_ok=True)
            total -= stat.st_size
        for part in folder.glob(f"*{TEMPORARY}"):
            if now - part.stat().st_mtime > STALE_SECONDS:
                part.unlink(missing_ok=True)
    except OSError:
        pass  # another run pruned them first
