from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl

import directpo
from directpo.config import DPOConfig
from directpo.trainer import train

KEYS = (
    "loss",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/margins",
    "logps/chosen",
    "grad_norm",
)


def config_for(model, data, out, **overrides) -> DPOConfig:
    return tiny_config(
        model,
        data,
        out,
        **{
            "eval_file": str(data),
            "max_steps": 4,
            "per_device_train_batch_size": 4,
            "per_device_eval_batch_size": 3,
            **overrides,
        },
    )


@pytest.mark.parametrize("lora", [0, 8])
def test_precomputed_reference_gives_the_same_training(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, lora
) -> None:
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model = tiny_model_dirs["llama"]
    extra = {"lora_r": lora} if lora else {}
    plain = train(config_for(model, pairs_file, tmp_path / "plain", **extra), echo=lambda _: None)
    lines: list[str] = []
    cached = train(
        config_for(model, pairs_file, tmp_path / "pre", precompute_ref_log_probs=True, **extra),
        echo=lines.append,
    )
    # the run let its reference model go; the result loads it again only when asked
    assert cached.kept_reference is None and cached.reference_source is not None
    assert any("reference log-probs: computed for 6 pairs" in line for line in lines)
    for a, b in zip(plain.metrics, cached.metrics, strict=True):
        assert a.keys() == b.keys()
        for key in (k for k in a if k in KEYS or k.startswith("eval/")):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), key


def test_disable_tqdm_silences_the_precompute_and_tokenize_bars(
    tiny_model_dirs, tmp_path, monkeypatch, capsys
) -> None:
    from directpo.tokenization import TOKENIZE_BATCH

    data = write_jsonl(tmp_path / "many.jsonl", SENTIMENT_PAIRS * (TOKENIZE_BATCH // 6 + 1))
    for quiet in (True, False):
        monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / f"cache{quiet}"))  # none to reuse
        config = config_for(
            tiny_model_dirs["gpt2"], data, tmp_path / f"out{quiet}", max_steps=1, eval_file=None,
            precompute_ref_log_probs=True, per_device_eval_batch_size=64, disable_tqdm=quiet,
        )  # fmt: skip
        train(config, echo=lambda _: None)
        err = capsys.readouterr().err
        bars = ("reference log-probs:" in err, "tokenize train:" in err)
        assert bars == ((False, False) if quiet else (True, True)), quiet


def test_cache_is_reused_and_invalidated_by_new_data(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model = tiny_model_dirs["gpt2"]
    first: list[str] = []
    train(
        config_for(model, pairs_file, tmp_path / "a", precompute_ref_log_probs=True),
        echo=first.append,
    )
    second: list[str] = []
    train(
        config_for(model, pairs_file, tmp_path / "b", precompute_ref_log_probs=True),
        echo=second.append,
    )
    # train and eval are the same file here: the eval set already finds the train set's cache
    assert [("computed for" in x, "reusing" in x) for x in first if "reference" in x] == [
        (True, False),
        (False, True),
    ]
    assert sum("reusing the cache" in line for line in second) == 2
    changed = write_jsonl(
        tmp_path / "changed.jsonl",
        [dict(SENTIMENT_PAIRS[0], chosen=" fine.")] + SENTIMENT_PAIRS[1:],
    )
    third: list[str] = []
    train(
        config_for(model, changed, tmp_path / "c", eval_file=None, precompute_ref_log_probs=True),
        echo=third.append,
    )
    assert any("computed for 6 pairs" in line for line in third)
    # a cache written by another directpo version is not read (it may have scored otherwise)
    monkeypatch.setattr(directpo, "__version__", "0.0.1")
    fourth: list[str] = []
    train(
        config_for(model, changed, tmp_path / "d", eval_file=None, precompute_ref_log_probs=True),
        echo=fourth.append,
    )
    assert any("computed for 6 pairs" in line for line in fourth)


def test_cache_is_not_reused_for_the_same_weights_under_another_config(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """A config edited beside unchanged weights (here the rotary base) computes other
    reference log-probs: the first step, policy = reference, must still be at ln 2."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    edited = tmp_path / "edited"
    shutil.copytree(tiny_model_dirs["llama"], edited)
    config = json.loads((edited / "config.json").read_text())
    config["rope_parameters"]["rope_theta"] = 7.0
    (edited / "config.json").write_text(json.dumps(config))
    for name, model in (("a", tiny_model_dirs["llama"]), ("b", edited)):
        lines: list[str] = []
        result = cached_run(model, pairs_file, tmp_path / name, lines)
        assert any("reference log-probs: computed" in line for line in lines), name
        assert result.metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-6), name


def test_cache_is_not_reused_under_another_layout_kernel_or_chunked_head(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """The cache key left out the row layout (plain / prefix-shared / packed), the attention
    kernel and logprob_chunk_tokens: a run with any of them changed read another's table,
    computed otherwise (in bf16 on a GPU, by more than rounding). Now each recomputes; the
    same settings still reuse."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model = tiny_model_dirs["llama"]
    runs = {
        "a": {},
        "plain": {"prefix_sharing": False, "padding_free": False},
        "eager": {"attn_implementation": "eager"},
        "chunk": {"logprob_chunk_tokens": 0},
        "again": {},
    }
    computed = {}
    for name, overrides in runs.items():
        lines: list[str] = []
        config = config_for(
            model, pairs_file, tmp_path / name, eval_file=None, precompute_ref_log_probs=True,
            **overrides,
        )  # fmt: skip
        train(config, echo=lines.append)
        computed[name] = any("reference log-probs: computed" in line for line in lines)
    assert computed == {"a": True, "plain": True, "eager": True, "chunk": True, "again": False}


def cached_run(model, data, out, lines: list[str]):
    return train(
        config_for(model, data, out, eval_file=None, precompute_ref_log_probs=True),
        echo=lines.append,
    )


@pytest.mark.parametrize("damage", ["truncated", "garbled", "empty"])
def test_a_damaged_cache_is_recomputed_and_replaced(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, damage
) -> None:
    from safetensors.torch import load_file

    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model = tiny_model_dirs["gpt2"]
    first: list[str] = []
    good = cached_run(model, pairs_file, tmp_path / "a", first)
    (path,) = (tmp_path / "cache" / "reference_logps").iterdir()
    whole = path.read_bytes()
    path.write_bytes(
        {"truncated": whole[: len(whole) // 2], "garbled": b"\xff" * len(whole), "empty": b""}[
            damage
        ]
    )
    second: list[str] = []
    again = cached_run(model, pairs_file, tmp_path / "b", second)
    notices = [line for line in second if "reference log-probs" in line]
    assert len(notices) == 2 and all(line.count("\n") == 0 for line in notices)
    assert notices[0].startswith(f"reference log-probs: the cache {path} is unreadable (")
    assert notices[0].endswith("): recomputing")
    assert "computed for 6 pairs, cached in" in notices[1]
    assert load_file(path)["logps"].shape == (6, 2)  # the bad file was replaced
    assert [m["loss"] for m in again.metrics] == pytest.approx([m["loss"] for m in good.metrics])
    third: list[str] = []
    cached_run(model, pairs_file, tmp_path / "c", third)
    assert any("reusing the cache" in line for line in third)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize("how", ["a file in the way", "read-only"])
def test_an_unwritable_cache_warns_and_training_goes_on(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, how
) -> None:
    import errno

    import directpo.precompute

    if how == "a file in the way":  # DIRECTPO_CACHE/reference_logps cannot be made
        (tmp_path / "cache").write_text("not a folder")
    else:  # as on a read-only mount (the tests may run as root, who may write anywhere)

        def read_only(*args, **kwargs):
            raise OSError(errno.EROFS, "Read-only file system")

        monkeypatch.setattr(directpo.precompute, "save_file", read_only)
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    model = tiny_model_dirs["gpt2"]
    plain = train(config_for(model, pairs_file, tmp_path / "plain", eval_file=None), echo=print)
    lines: list[str] = []
    result = cached_run(model, pairs_file, tmp_path / "pre", lines)
    (notice,) = [line for line in lines if "reference log-probs" in line]
    assert notice.startswith("reference log-probs: computed for 6 pairs; not cached (cannot write")
    assert "training goes on" in notice and "\n" not in notice
    assert [m["loss"] for m in result.metrics] == pytest.approx(
        [m["loss"] for m in plain.metrics], rel=1e-5
    )
    assert (tmp_path / "pre" / "config.yaml").is_file()


def random_adapter(base, folder, seed: int):
    """A LoRA adapter folder on ``base`` with random (nonzero) factors drawn from ``seed``."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("where", ["model_name_or_path", "ref_model_name_or_path"])
def test_two_adapters_on_one_base_do_not_share_a_cache(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch, where
) -> None:
    """The reference is an adapter on a base (a continued adapter's start, or an adapter folder
    as the reference): another adapter on the same base is another reference. Its cache key
    counted the base's weights only, so the second adapter read the first one's log-probs."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    base = tiny_model_dirs["llama"]
    for name, seed in (("a", 1), ("b", 2), ("a2", 1)):
        adapter = random_adapter(base, tmp_path / f"adapter_{name}", seed)
        models = {"model_name_or_path": adapter}
        if where == "ref_model_name_or_path":
            models = {"model_name_or_path": base, "ref_model_name_or_path": adapter}
        lines: list[str] = []
        config = config_for(
            base, pairs_file, tmp_path / name, eval_file=None, precompute_ref_log_probs=True,
            max_steps=1, **models,
        )  # fmt: skip
        result = train(config, echo=lines.append)
        computed = any("reference log-probs: computed" in line for line in lines)
        assert computed == (name != "a2"), name  # the same adapter again reuses its cache
        if where == "model_name_or_path":  # policy == reference at the first step
            assert result.metrics[0]["loss"] == pytest.approx(math.log(2), abs=1e-6), name


def test_precompute_ref_batch_size_sets_the_pass_batches(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """TRL's precompute_ref_batch_size sizes the reference pass (it was accepted and ignored:
    per_device_eval_batch_size was used, e.g. a size chosen to fit memory did nothing)."""
    import directpo.precompute
    from directpo.errors import ConfigError

    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    sizes: list[int] = []
    collate = directpo.precompute.collate_pairs
    monkeypatch.setattr(
        directpo.precompute,
        "collate_pairs",
        lambda pairs, *args, **kwargs: sizes.append(len(pairs)) or collate(pairs, *args, **kwargs),
    )
    model = tiny_model_dirs["gpt2"]
    for name, size, expected in (("a", 2, [2, 2, 2]), ("b", None, [3, 3])):
        sizes.clear()
        monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / f"cache_{name}"))
        config = config_for(
            model, pairs_file, tmp_path / name, eval_file=None, precompute_ref_log_probs=True,
            precompute_ref_batch_size=size, max_steps=1,
        )  # fmt: skip
        train(config, echo=lambda _: None)
        assert sizes == expected, name
    with pytest.raises(ConfigError, match="precompute_ref_batch_size is set but precompute_ref"):
        config_for(model, pairs_file, tmp_path / "c", precompute_ref_batch_size=4)
    with pytest.raises(ConfigError, match="precompute_ref_batch_size must be None or >= 1"):
        config_for(
            model, pairs_file, tmp_path / "c", precompute_ref_log_probs=True,
            precompute_ref_batch_size=0,
        )  # fmt: skip


def test_an_interrupted_pass_continues_where_it_stopped(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """Ctrl-C (or a crash) during the reference pass lost all of it: the next run (a resume,
    or the same command) scored every pair again, hours on a large set. Its pieces are now
    kept, and the continued table is bit-identical to an uninterrupted pass's."""
    from safetensors.torch import load_file

    import directpo.precompute

    monkeypatch.setattr(directpo.precompute, "CHUNK_PAIRS", 4)  # a piece every 4 pairs
    calls: list[int] = []
    collate = directpo.precompute.collate_pairs

    def counted(pairs, *args, **kwargs):
        calls.append(len(pairs))
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return collate(pairs, *args, **kwargs)

    monkeypatch.setattr(directpo.precompute, "collate_pairs", counted)
    model = tiny_model_dirs["llama"]

    def run(cache: str, out: str, lines: list[str]):
        monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / cache))
        config = config_for(
            model, pairs_file, tmp_path / out, eval_file=None, precompute_ref_log_probs=True,
            precompute_ref_batch_size=1, max_steps=1,
        )  # fmt: skip
        return train(config, echo=lines.append)

    stop_at = 0
    whole = run("whole", "w", [])
    # interrupted at the 6th pair: 4 in a saved piece, the 5th kept as the process stops
    calls.clear()
    stop_at = 6
    with pytest.raises(KeyboardInterrupt):
        run("cache", "a", [])
    (partial,) = (tmp_path / "cache" / "reference_logps").glob("*.partial")
    assert sorted(p.name for p in partial.iterdir()) == ["0.safetensors", "4.safetensors"]
    calls.clear()
    lines: list[str] = []
    again = run("cache", "b", lines)
    assert calls == [1]  # only the 6th pair is scored again
    assert any("continuing an interrupted pass at pair 5 of 6" in line for line in lines)
    tables = [
        load_file(next((tmp_path / cache / "reference_logps").glob("*.safetensors")))["logps"]
        for cache in ("whole", "cache")
    ]
    assert torch.equal(tables[0], tables[1])
    assert [m["loss"] for m in again.metrics] == [m["loss"] for m in whole.metrics]
    assert not partial.exists()  # the pieces go once the whole table is cached
    # a piece cut short by a crash: the pass continues from the pieces before it
    calls.clear()
    stop_at = 6
    with pytest.raises(KeyboardInterrupt):
        run("cut", "c", [])
    (partial,) = (tmp_path / "cut" / "reference_logps").glob("*.partial")
    (partial / "4.safetensors").write_bytes(b"\xff" * 10)
    calls.clear()
    lines = []
    run("cut", "d", lines)
    assert calls == [1, 1]
    notes = [line for line in lines if "piece" in line or "continuing" in line]
    assert len(notes) == 2 and "4.safetensors is unreadable (" in notes[0]
    assert "continuing an interrupted pass at pair 4 of 6" in notes[1]
    cut = load_file(next((tmp_path / "cut" / "reference_logps").glob("*.safetensors")))["logps"]
    assert torch.equal(cut, tables[0])


def test_out_of_memory_in_the_reference_pass_is_one_line(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """The reference pass runs before the training loop, whose out-of-memory line it lacked: a
    precompute_ref_batch_size (per_device_eval_batch_size, 8 by default) too large for the GPU
    ended in torch's traceback. The pairs scored before it are kept for the next run."""
    import directpo.precompute
    from directpo.errors import TrainingStopped

    collate = directpo.precompute.collate_pairs
    calls: list[int] = []

    def limited(pairs, *args, **kwargs):
        calls.append(len(pairs))
        if len(calls) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return collate(pairs, *args, **kwargs)

    monkeypatch.setattr(directpo.precompute, "collate_pairs", limited)
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    config = config_for(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", eval_file=None,
        precompute_ref_log_probs=True, precompute_ref_batch_size=2, max_steps=1,
    )  # fmt: skip
    with pytest.raises(TrainingStopped) as stopped:
        train(config, echo=None)
    assert str(stopped.value) == (
        "out of GPU memory in the reference log-probs pass (precompute_ref_log_probs), batches "
        "of 2 pairs: pass a lower precompute_ref_batch_size=...; the pairs scored are kept and "
        "the next "
        "run continues after them"
    )
    monkeypatch.setattr(directpo.precompute, "collate_pairs", collate)
    lines: list[str] = []
    train(config, echo=lines.append)
    assert any("continuing an interrupted pass at pair 4 of 6" in line for line in lines)


def test_each_rank_keeps_its_rows_since_the_last_piece_when_stopped(tmp_path, monkeypatch):
    """Under torchrun an interrupted pass kept only whole 4,096-pair pieces: the batches each
    rank scored since the last one were lost (their sum over ranks needs a collective). Now
    each rank keeps its own rows of them; the next pass continues after the whole batches they
    cover together, with the values an uninterrupted pass computes."""
    import directpo.precompute as precompute
    from directpo.distributed import World
    from directpo.tokenization import TokenizedPair

    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(precompute, "all_reduce_sum", lambda values, world: values)
    monkeypatch.setattr(precompute, "broadcast", lambda value, world: value)
    pairs = [TokenizedPair([1, i + 1], [i + 2], [i + 3, 1]) for i in range(10)]

    class Reference:  # a sequence's log-prob: the sum of its ids, whatever its batch
        def __init__(self, stop_at: int | None = None):
            self.calls, self.stop_at = 0, stop_at

        def logprobs(self, batch):
            self.calls += 1
            if self.calls == self.stop_at:
                raise KeyboardInterrupt
            return batch.input_ids.sum(1).double()

    def table(reference, world=precompute.SINGLE_PROCESS, lines=None, batch=1):
        return precompute.precompute_reference_logps(
            reference, "weights", pairs, 0, batch, torch.device("cpu"), "settings",
            echo=(lines if lines is not None else []).append, world=world, progress=False,
        )  # fmt: skip

    # batches of 2 pairs (1 a rank): rank 0 stops after pairs 0 and 2, rank 1 after pair 1
    for rank, stop_at in ((0, 3), (1, 2)):
        with pytest.raises(KeyboardInterrupt):
            table(Reference(stop_at), World(mode="ddp", rank=rank, size=2))
    lines: list[str] = []
    continued = Reference()
    got = table(continued, lines=lines, batch=2)  # the same batches of 2 pairs, one process
    assert "reference log-probs: continuing an interrupted pass at pair 2 of 10" in lines[0]
    assert continued.calls == 4  # pairs 2..9: pair 2, whose batch was not whole, again
    want = torch.tensor([[sum(p.prompt_ids + p.chosen_ids), sum(p.prompt_ids + p.rejected_ids)]
                         for p in pairs], dtype=torch.float32)  # fmt: skip
    assert torch.equal(got, want)


def test_data_fingerprint_is_the_hash_of_each_id_in_four_little_endian_bytes():
    """The cache key's data part: changing how it is computed must not change existing keys
    (caches written before stay valid), so it is checked against the rule spelled out per id."""
    import hashlib

    from directpo.precompute import data_fingerprint
    from directpo.tokenization import TokenizedPair

    pairs = [
        TokenizedPair([1, 2, 151_645], [0, 65_535, 65_536], []),
        TokenizedPair([], [7], [2**31 + 5, 3]),
    ]
    digest = hashlib.blake2b(digest_size=16)
    for pair in pairs:
        for ids in (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids):
            digest.update(len(ids).to_bytes(4, "little"))
            for token in ids:
                digest.update(token.to_bytes(4, "little"))
    assert data_fingerprint(pairs) == digest.hexdigest()
    moved = [TokenizedPair([1, 2], [151_645, 0, 65_535, 65_536], []), pairs[1]]
    assert data_fingerprint(moved) != data_fingerprint(pairs)  # the boundaries count


def test_ctrl_c_while_a_cache_file_is_written_leaves_no_partial_file(tmp_path, monkeypatch):
    """The temporary file was removed after an error but not after Ctrl-C (KeyboardInterrupt
    is no Exception): each interrupted write left a half-written file in the cache."""
    import directpo.precompute

    def interrupted(tensors, filename):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(directpo.precompute, "save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        directpo.precompute._write_cache(tmp_path / "table.safetensors", torch.zeros(3))
    assert list(tmp_path.iterdir()) == []


def test_the_reference_is_freed_before_the_run_resumes_or_trains(
    tiny_model_dirs, pairs_file, tmp_path, monkeypatch
) -> None:
    """precompute_ref_log_probs freed the reference model, but prepare_run's locals held it
    (and its float32 masters, under eval_dtype float32) through the rest of the set-up: a
    resume's checkpoint load, the peak of a run's memory, ran with both models in memory."""
    import gc
    import weakref

    import directpo.run as run_module
    import directpo.run_models as run_models
    from directpo.distributed import SINGLE_PROCESS

    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path / "cache"))
    config = config_for(
        tiny_model_dirs["llama"], pairs_file, tmp_path / "out", precompute_ref_log_probs=True,
        dtype="bfloat16", eval_dtype="float32",
    )  # fmt: skip
    loaded: list[weakref.ref] = []
    load = run_models.load_policy_and_reference

    def loading(*args, **kwargs):
        policy, reference = load(*args, **kwargs)
        loaded.append(weakref.ref(reference.model))
        return policy, reference

    masters = run_models.FrozenMasters

    def keeping(*args, **kwargs):
        kept = masters(*args, **kwargs)
        loaded.append(weakref.ref(kept))
        return kept

    alive_at_resume: list[bool] = []
    replace_or_resume = run_module._replace_or_resume

    def resuming(*args, **kwargs):
        gc.collect()
        alive_at_resume.extend(held() is not None for held in loaded)
        return replace_or_resume(*args, **kwargs)

    monkeypatch.setattr(run_models, "load_policy_and_reference", loading)
    monkeypatch.setattr(run_models, "FrozenMasters", keeping)
    monkeypatch.setattr(run_module, "_replace_or_resume", resuming)
    run = run_module.prepare_run(config, None, None, SINGLE_PROCESS, lambda _: None)
    assert len(loaded) == 2  # the model and its float32 masters
    assert alive_at_resume == [False] * len(loaded)
    assert run.reference_masters is None and run.train.reference_table is not None
