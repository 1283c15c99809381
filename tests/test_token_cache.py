"""The tokenized pairs' cache: a rerun reads it; anything that changes the ids misses it."""

from __future__ import annotations

import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tiny import SENTIMENT_PAIRS, build_tokenizer, tiny_config, write_jsonl

from directpo import token_cache
from directpo.data import load_preferences
from directpo.run_tokenizing import tokenize_set
from directpo.tokenization import tokenize_preferences

CONVERSATIONS = [
    {
        "prompt": [{"role": "user", "content": row["prompt"]}],
        "chosen": [{"role": "assistant", "content": row["chosen"]}],
        "rejected": [{"role": "assistant", "content": row["rejected"]}],
    }
    for row in SENTIMENT_PAIRS
]


def _run(data, tokenizer, config, calls: Counter, monkeypatch) -> tuple[list, list[str]]:
    """``tokenize_set`` as a run calls it, counting real tokenizations; (ids, lines said)."""

    def counted(*args, **kwargs):
        calls["tokenize"] += 1
        return tokenize_preferences(*args, **kwargs)

    monkeypatch.setattr("directpo.run_tokenizing.tokenize_preferences", counted)
    said: list[str] = []
    pairs = tokenize_set(data, tokenizer, config, "train", said.append)
    ids = [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in pairs.pairs]
    return [ids, pairs.sources], said


@pytest.mark.parametrize("rows", [SENTIMENT_PAIRS, CONVERSATIONS], ids=["text", "messages"])
def test_a_rerun_reads_the_tokenized_pairs_from_the_cache(tmp_path, monkeypatch, rows) -> None:
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "pairs.jsonl", rows)))
    config = tiny_config(tmp_path, None, tmp_path / "out", max_length=64)
    calls: Counter = Counter()
    first, said_first = _run(data, tokenizer, config, calls, monkeypatch)
    config.beta = 0.5  # a hyperparameter that does not touch the ids
    again, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert calls["tokenize"] == 1
    assert again == first
    (cached,) = token_cache.cache_folder().glob("*.npz")  # readable as any file the user writes
    assert stat.S_IMODE(cached.stat().st_mode) == 0o666 & ~token_cache._umask()
    # one true line of the set: "read from the cache, not tokenized again" was followed by
    # "train: N pairs tokenized"
    pairs = said_first[0].removesuffix(" tokenized")
    assert pairs == f"train: {len(first[0])} pairs"
    assert said[0] == f"{pairs} (token ids read from the cache, {cached})"
    assert said[1:] == said_first[1:]  # the same warnings


def _variants(tmp_path: Path):
    """(what changed, data, tokenizer, config overrides): each must give other ids."""
    base = write_jsonl(tmp_path / "a.jsonl", CONVERSATIONS)
    edited = [dict(row) for row in CONVERSATIONS]
    edited[3] = {**edited[3], "chosen": [{"role": "assistant", "content": " a movie."}]}
    other_template = build_tokenizer("llama")
    other_template.chat_template = other_template.chat_template.replace("<|im_start|>", "<s>")
    yield "nothing", base, build_tokenizer("llama"), {}
    yield "a row's text", write_jsonl(tmp_path / "b.jsonl", edited), build_tokenizer("llama"), {}
    yield "max_length", base, build_tokenizer("llama"), {"max_length": 40}
    yield "max_prompt_length", base, build_tokenizer("llama"), {"max_prompt_length": 10}
    yield "max_completion_length", base, build_tokenizer("llama"), {"max_completion_length": 2}
    kwargs = {"chat_template_kwargs": {"unused": True}}  # same ids, still another key
    yield "chat_template_kwargs", base, build_tokenizer("llama"), kwargs
    yield "the chat template", base, other_template, {}
    yield "the tokenizer", base, build_tokenizer("gpt2"), {}


def test_anything_that_changes_the_ids_misses_the_cache(tmp_path, monkeypatch) -> None:
    """Every variant is tokenized afresh and its ids are what tokenizing it gives, never a
    neighbour's; the unchanged run is read from the cache."""
    calls: Counter = Counter()
    keys = set()
    for what, path, tokenizer, overrides in _variants(tmp_path):
        config = tiny_config(tmp_path, None, tmp_path / "out", **{"max_length": 64, **overrides})
        data = load_preferences(str(path))
        before = calls["tokenize"]
        ids, _ = _run(data, tokenizer, config, calls, monkeypatch)
        options = {k: getattr(config, k) for k in ("max_length", "max_prompt_length")}
        keys.add(
            token_cache.tokenization_key(
                data, tokenizer, {**options, "more": config.max_completion_length}
            )
        )
        fresh = tokenize_preferences(
            data, tokenizer, **options, max_completion_length=config.max_completion_length,
            chat_template_kwargs=config.chat_template_kwargs,
        )  # fmt: skip
        assert ids[0] == [(p.prompt_ids, p.chosen_ids, p.rejected_ids) for p in fresh.pairs]
        assert calls["tokenize"] == before + 1, what  # no earlier variant's cache was read
        if what == "nothing":  # and this one, once more, is read from the cache
            _run(data, tokenizer, config, calls, monkeypatch)
            assert calls["tokenize"] == before + 1
    assert len(keys) == 7  # "nothing" and chat_template_kwargs share these options' key


def test_skipped_rows_and_sources_come_back_from_the_cache(tmp_path, monkeypatch) -> None:
    """A row refused by tokenization (cut to the same first token) is skipped again, and each
    pair keeps its own row's place."""
    same_start = {"prompt": "The movie was", "chosen": " wonderful x", "rejected": " wonderful y"}
    rows = [SENTIMENT_PAIRS[0], same_start, *SENTIMENT_PAIRS[1:3]]
    tokenizer = build_tokenizer("gpt2")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", rows)))
    config = tiny_config(
        tmp_path, None, tmp_path / "out", max_completion_length=1, skip_invalid_rows=True
    )
    calls: Counter = Counter()
    first, said_first = _run(data, tokenizer, config, calls, monkeypatch)
    again, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert calls["tokenize"] == 1 and again == first
    assert said[0].split("; ", 1)[1] == said_first[0].split("; ", 1)[1]  # the cuts, the skips
    assert "2 identical after truncation" in said[0] and said[1:] == said_first[1:]
    assert [where.split(": ")[1] for where in again[1]] == ["line 1", "line 4"]


def _cached_once(tmp_path, monkeypatch):
    """The sentiment pairs tokenized once through the cache, and the file it wrote."""
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    config = tiny_config(tmp_path, None, tmp_path / "out")
    calls: Counter = Counter()
    first, _ = _run(data, tokenizer, config, calls, monkeypatch)
    (cached,) = token_cache.cache_folder().glob("*.npz")
    return data, tokenizer, config, calls, first, cached


def test_a_damaged_cache_file_is_tokenized_again_and_replaced(tmp_path, monkeypatch) -> None:
    data, tokenizer, config, calls, first, cached = _cached_once(tmp_path, monkeypatch)
    cached.write_bytes(cached.read_bytes()[:100])
    again, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert again == first and calls["tokenize"] == 2
    assert any("unreadable" in line for line in said)
    assert _run(data, tokenizer, config, calls, monkeypatch)[0] == first
    assert calls["tokenize"] == 2  # the file was written again


@pytest.mark.parametrize("garble", ["float ids", "negative lengths", "2-D ids"])
def test_cache_arrays_of_the_wrong_kind_are_never_read_as_ids(tmp_path, monkeypatch, garble):
    """The pairs are held as the file's arrays: ids that are not integers, or lengths that
    slice the buffer backwards, would be batches of other tokens (or a traceback)."""
    data, tokenizer, config, calls, first, cached = _cached_once(tmp_path, monkeypatch)
    with np.load(cached) as stored:
        arrays = dict(stored)
    if garble == "float ids":
        arrays["ids"] = arrays["ids"].astype(np.float64) + 0.5
    elif garble == "negative lengths":  # the same total
        chosen = arrays["lengths"][0, 1]
        arrays["lengths"][0, 0] += 2 * chosen
        arrays["lengths"][0, 1] = -chosen
    else:
        arrays["ids"] = arrays["ids"].reshape(1, -1)
    np.savez(cached, **arrays)
    again, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert again == first and calls["tokenize"] == 2
    assert any("unreadable" in line for line in said)


def test_cache_tokenized_false_and_an_unwritable_cache_tokenize_every_time(
    tmp_path, monkeypatch
) -> None:
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    calls: Counter = Counter()
    off = tiny_config(tmp_path, None, tmp_path / "out", cache_tokenized=False)
    _run(data, tokenizer, off, calls, monkeypatch)
    _run(data, tokenizer, off, calls, monkeypatch)
    assert calls["tokenize"] == 2 and not token_cache.cache_folder().exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("DIRECTPO_CACHE", str(blocker))  # a file: no folder can be made in it
    on = tiny_config(tmp_path, None, tmp_path / "out")
    _, said = _run(data, tokenizer, on, calls, monkeypatch)
    assert calls["tokenize"] == 3
    # the folder that could not be written is named (it said "(Not a directory)" alone)
    assert f"not cached (cannot write {blocker / 'tokenized'}: Not a directory)" in "\n".join(said)


def test_ids_of_a_large_vocabulary_come_back_whole(tmp_path) -> None:
    """Ids are stored in 2 bytes where they fit, else 4: an id above 65535 is not wrapped."""
    from directpo.data import PreferenceData, PreferenceExample
    from directpo.tokenization import TokenizedPair
    from directpo.tokenized_data import TokenizedData

    for big in (65535, 65536, 151_000):
        data = PreferenceData([PreferenceExample("p", "a", "b", where="line 1")], "explicit", "f")
        pairs = [TokenizedPair([1, big], [big, 2], [3])]
        path = tmp_path / f"{big}.npz"
        assert token_cache._write(path, TokenizedData(pairs, ["line 1"]), data) is None
        back = token_cache._read(path, data, print, "train")
        assert back is not None and back.pairs == pairs and back.sources == ["line 1"]


def test_a_read_only_cache_is_read_and_a_tokenizer_that_cannot_save_is_not_cached(
    tmp_path, monkeypatch
) -> None:
    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    config = tiny_config(tmp_path, None, tmp_path / "out")
    calls: Counter = Counter()
    first, said_first = _run(data, tokenizer, config, calls, monkeypatch)

    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    with monkeypatch.context() as patch:
        patch.setattr(token_cache.os, "utime", refused)  # a cache shared read-only
        again, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert again == first and calls["tokenize"] == 1 and "read from the cache" in said[0]
    assert len(said) == len(said_first) and "pairs tokenized" not in said[0]
    monkeypatch.setattr(tokenizer, "save_pretrained", refused)
    for _ in range(2):
        assert _run(data, tokenizer, config, calls, monkeypatch)[0] == first
    assert calls["tokenize"] == 3


def test_a_template_that_writes_the_date_is_keyed_by_the_date_it_writes(tmp_path, monkeypatch):
    """Llama 3.1+ templates write today's date (strftime_now): the same rows are other ids on
    another day, which must not read the ids cached the day before."""
    import datetime

    import transformers.utils.chat_template_utils as templates

    class Clock:
        today = datetime.datetime(2026, 3, 1)

        @classmethod
        def now(cls) -> datetime.datetime:
            return cls.today

    monkeypatch.setattr(templates, "datetime", Clock)
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", CONVERSATIONS[:3])))
    config = tiny_config(tmp_path, None, tmp_path / "out", max_length=64)
    tokenizer = build_tokenizer("llama")
    tokenizer.chat_template = "{{ strftime_now('%d %b %Y') }}" + tokenizer.chat_template
    calls: Counter = Counter()
    ids = {}
    for day in (1, 1, 2, 1):
        Clock.today = datetime.datetime(2026, 3, day)
        ids[day] = _run(data, tokenizer, config, calls, monkeypatch)[0][0]
    assert calls["tokenize"] == 2  # day 1, day 2; day 1 again from the cache
    assert ids[1] != ids[2]
    assert "02 Mar 2026" in tokenizer.decode(ids[2][0][0])


def test_the_key_follows_the_code_of_every_module_that_renders_or_encodes(tmp_path, monkeypatch):
    """An upgrade that changes how a message's content reaches the chat template (messages.py's
    text parts joined, a prefill's test) gives other ids for the same rows: the key hashes the
    source of every directpo module whose functions tokenization.py, chat_render.py and vision.py
    call, and of the classes of the objects a PairTokenizer holds and calls (data.py,
    preference_pairs.py and readers.py: their result, the rows, is hashed instead; errors.py
    and refusals.py only word refusals)."""
    import inspect
    import sys
    from pathlib import Path

    import directpo.chat_render
    import directpo.tokenization
    import directpo.vision

    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", CONVERSATIONS)))
    options = {"max_length": 64}
    key = token_cache.tokenization_key(data, tokenizer, options)
    called = {
        Path(sys.modules[value.__module__].__file__).name
        for module in (directpo.tokenization, directpo.chat_render, directpo.vision)
        for value in vars(module).values()
        if inspect.isfunction(value) and value.__module__.startswith("directpo.")
    } - {"data.py", "preference_pairs.py", "readers.py", "errors.py", "refusals.py", "callers.py"}
    # (errors.py, refusals.py and callers.py word the refusal of rows that cannot be
    # tokenized, in the caller's spelling: no ids)
    # and the modules of the objects a PairTokenizer holds (its truncation rules, its renderer)
    encoder = directpo.tokenization.PairTokenizer(tokenizer, 64)
    called |= {
        Path(inspect.getfile(type(held))).name
        for held in vars(encoder).values()
        if type(held).__module__.startswith("directpo.")
    }
    assert {"messages.py", "pair_truncation.py", "image_pairs.py"} <= called
    real = Path.read_bytes
    for name in sorted(called):
        with monkeypatch.context() as patch:
            patch.setattr(
                Path, "read_bytes",
                lambda self, n=name: real(self) + b"# edited" if self.name == n else real(self),
            )  # fmt: skip
            assert token_cache.tokenization_key(data, tokenizer, options) != key, name


def test_a_full_disk_leaves_no_part_written_cache_file(tmp_path, monkeypatch) -> None:
    """A write that fails part way (ENOSPC) said the cache was not written but left the part
    written (as big as the ids) in the cache folder for good; a killed run's too."""
    import errno
    import os
    import time

    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    config = tiny_config(tmp_path, None, tmp_path / "out")
    real_savez = np.savez

    def full_disk(file, **arrays):
        file.write(b"PK" + b"\0" * 4096)  # some of it written, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("directpo.token_cache.np.savez", full_disk)
    calls: Counter = Counter()
    first, said = _run(data, tokenizer, config, calls, monkeypatch)
    assert any(": No space left on device); training goes on" in line for line in said)
    assert list(token_cache.cache_folder().iterdir()) == []
    monkeypatch.setattr("directpo.token_cache.np.savez", real_savez)
    killed = token_cache.cache_folder() / "tmpkilled.tmp"  # a run killed while writing it
    writing = token_cache.cache_folder() / "tmpwriting.tmp"  # another run writing now
    for part in (killed, writing):
        part.write_bytes(b"PK\0\0")
    old = time.time() - token_cache.STALE_SECONDS - 60
    os.utime(killed, (old, old))
    again, _ = _run(data, tokenizer, config, calls, monkeypatch)
    assert again == first
    assert sorted(p.suffix for p in token_cache.cache_folder().iterdir()) == [".npz", ".tmp"]
    assert writing.exists() and not killed.exists()


def test_the_cache_keeps_its_size_removing_the_entries_used_longest_ago(tmp_path, monkeypatch):
    """The newest 8 entries were kept whatever their size (1M long pairs: 16 GB); the folder
    holds cache_tokenized_max_gb, the entries used longest ago removed first, never the one
    this run uses nor one used in the last IN_USE_SECONDS (another run may be about to read
    it)."""
    import os
    import time

    tokenizer = build_tokenizer("llama")
    data = load_preferences(str(write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)))
    folder = token_cache.cache_folder()
    folder.mkdir(parents=True)
    now = time.time()
    ages = {"oldest": 5000, "older": 4000, "old": 3000, "recent": 60}  # seconds since used
    for name, age in ages.items():
        (folder / f"{name}.npz").write_bytes(b"\0" * 10**6)
        os.utime(folder / f"{name}.npz", (now - age, now - age))
    config = tiny_config(tmp_path, None, tmp_path / "out", cache_tokenized_max_gb=2.5e-3)
    _run(data, tokenizer, config, Counter(), monkeypatch)
    kept = sorted(file.stem for file in folder.glob("*.npz"))
    # 2.5 MB: "recent" (in use) and this run's entry (a few kB) leave room for "old" alone
    assert [name for name in kept if name in ages] == ["old", "recent"]
    assert len(kept) == 3
    zero = tiny_config(tmp_path, None, tmp_path / "out", cache_tokenized_max_gb=0, max_length=64)
    _run(data, tokenizer, zero, Counter(), monkeypatch)
    assert sorted(file.stem for file in folder.glob("*.npz") if file.stem in ages) == ["recent"]
    with pytest.raises(Exception, match="cache_tokenized_max_gb"):
        tiny_config(tmp_path, None, tmp_path / "out", cache_tokenized_max_gb=-1)


def test_a_quoted_home_in_directpo_cache_is_the_home_folder(tmp_path, monkeypatch) -> None:
    """``DIRECTPO_CACHE="~/x"`` (quoted, or set in a config's ``env:`` block: no shell expands
    it) cached into a folder named ``~`` under the working directory; the token cache, the
    reference log-probs and the demo's assets now read it through one helper, ~ expanded."""
    from directpo.demo.assets import cache_dir
    from directpo.precompute import cache_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DIRECTPO_CACHE", "~/x")
    home = tmp_path / "home" / "x"
    assert (token_cache.cache_folder(), cache_root(), cache_dir()) == (
        home / "tokenized",
        home / "reference_logps",
        home,
    )
    monkeypatch.delenv("DIRECTPO_CACHE")
    assert cache_dir() == tmp_path / "home" / ".cache" / "directpo"


# the modules the tokenizing modules import that decide no ids: what reading made of a row is
# hashed as the pairs themselves (preference_pairs, readers), the ids are held (pair_store,
# tokenized_data), the rest words or passes errors (callers, errors, refusals) or unwraps a
# model (logprobs.unwrap_peft, for vision's processor checks)
NOT_DECIDING_IDS = {
    "callers", "errors", "logprobs", "pair_store", "preference_pairs", "readers", "refusals",
    "tokenized_data",
}  # fmt: skip


def test_the_cache_key_reads_every_module_the_tokenizing_modules_import() -> None:
    """The key hashes RULES' source: a tokenizing function moved into a new module (a split by
    concern) would leave the key as it was while its code changes the ids, and a cache written
    before would be read as this code's ids. Each module a RULES module imports is in RULES or
    named here as deciding no ids, so that such a move is decided, not missed."""
    import ast

    folder = Path(token_cache.__file__).parent
    ruled = {name.removesuffix(".py") for name in token_cache.RULES}
    imported = set()
    for module in ruled:
        for node in ast.walk(ast.parse((folder / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("directpo."):
                imported.add(node.module.split(".")[1])
    assert imported - ruled - NOT_DECIDING_IDS == set()
    assert imported >= NOT_DECIDING_IDS  # (a module no longer imported leaves the list)
