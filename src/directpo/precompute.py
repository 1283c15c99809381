"""Precomputed reference log-probs (``precompute_ref_log_probs: true``).

One batched no-grad pass of the reference over every pair before training; the results are
cached in ``DIRECTPO_CACHE/reference_logps/<key>.safetensors``, where the key hashes the
reference weights (every tensor's bytes) and config (and the adapter it runs with), the token
ids of every pair, what else sets the numbers (``scoring_settings``: dtype, row layout,
attention kernel, chunked head) and the directpo version, so a later run with the same reference,
data and settings reuses them (and says so), and any change recomputes them. A damaged cache
file counts as absent (recomputed and replaced, with a notice); a cache location that cannot
be written is one warning line, and training goes on with the values just computed. The
reference model can then be freed: training needs one model in memory.

An interrupted pass (Ctrl-C, a signal, a crash, a lost node) keeps what it scored: every
``CHUNK_PAIRS`` pairs go to ``<key>.partial/`` as they are done, and the next run with the same
key (a resume, or the same command again) continues after them, with a line saying so. A
stopped process keeps the batches since the last piece too (under torchrun each rank its own
rows of them, which the next pass combines). With the
same batch size the table is bit-identical to an uninterrupted pass's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import directpo
from directpo.batching import PLAIN, Batch, Layout, collate_pairs, eval_batches
from directpo.callers import spell_change
from directpo.distributed import (
    SINGLE_PROCESS,
    World,
    all_gather_objects,
    all_reduce_sum,
    broadcast,
    shard,
)
from directpo.errors import TrainingStopped, first_line, memory_kind
from directpo.option_paths import cache_home
from directpo.pair_store import PairStore, id_parts
from directpo.preference_pairs import counted
from directpo.reference import FrozenModelReference, ReferenceProvider
from directpo.tokenization import TokenizedPair

if TYPE_CHECKING:
    from directpo.config import DPOConfig
    from directpo.run import Run


class PrecomputedReference:
    """Reads the reference log-probs that ``collate_pairs`` attached to the batch."""

    def logprobs(self, batch: Batch) -> torch.Tensor:
        if batch.reference_logps is None:
            raise RuntimeError("batch has no precomputed reference log-probs")
        return batch.reference_logps


CHUNK_PAIRS = 4096  # pairs per saved piece of an unfinished pass: the most an interruption loses


class Pieces:
    """The saved rows of an unfinished reference pass, ``<key>.partial/<first row>.safetensors``
    (consecutive rows, float64 as computed), so that a pass stopped by Ctrl-C, a signal or a
    crash continues where it stopped: hours of a large set's pass are not scored again. Removed
    once the whole table is cached."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.writable = True  # a location that refused one piece is not tried again

    def load(
        self, rows: int, echo: Callable[[str], None], batch: int = 1
    ) -> tuple[torch.Tensor, int] | None:
        """The table with the saved rows filled in and how many there are, or None. ``batch``:
        the pass's global batch; rank tails (``save_tail``) count in whole batches of it."""
        if not self.folder.is_dir():
            return None
        files = {int(f.stem): f for f in self.folder.glob("*.safetensors") if f.stem.isdigit()}
        table, done = torch.zeros(rows, 2, dtype=torch.float64), 0
        while done in files:  # consecutive pieces from the first row (a later one is stale)
            try:
                piece = load_file(files[done])["logps"]
                problem = None
                if piece.dim() != 2 or piece.shape[1] != 2 or not 0 < len(piece) <= rows - done:
                    problem = f"a {list(piece.shape)} table"
            except Exception as exc:  # safetensors' own error, OSError, KeyError
                problem = f"unreadable ({first_line(exc)})"
            if problem is not None:  # cut short by a crash: from here on it is scored again
                echo(f"reference log-probs: the saved piece {files[done]} is {problem}")
                break
            table[done : done + len(piece)] = piece.double()
            done += len(piece)
        done = self._with_tails(table, done, batch, echo)
        if not done:
            return None
        echo(
            f"reference log-probs: continuing an interrupted pass at pair {done} of {rows} "
            f"(saved in {self.folder})"
        )
        return table, done

    def save(self, first: int, rows: torch.Tensor) -> None:
        if self.writable:  # else the whole table's write says why nothing is cached
            problem = _write_cache(self.folder / f"{first}.safetensors", rows.clone())
            self.writable = problem is None

    def save_tail(self, first: int, rank: int, indices: list[int], logps: torch.Tensor) -> None:
        """The rows one rank of several scored after the last piece (``indices``, from row
        ``first`` on), kept when it is stopped: the rows of the other ranks need a collective
        that an interrupted process cannot make, so each rank keeps its own."""
        rows = torch.tensor(indices, dtype=torch.int64)
        if self.writable and indices:
            path = self.folder / f"{first}.rank{rank}.safetensors"
            self.writable = _write_cache(path, {"logps": logps.clone(), "rows": rows}) is None

    def _with_tails(
        self, table: torch.Tensor, done: int, batch: int, echo: Callable[[str], None]
    ) -> int:
        """``done`` moved past the whole batches that the ranks' tails at row ``done`` cover
        together (each rank keeps its slice of every batch it finished: a batch counts once
        every rank's slice is there). Their rows are filled in ``table``; no other row past
        ``done`` is left non-zero, since the ranks' rows are summed."""
        covered = torch.zeros(len(table) - done, dtype=torch.bool)
        tails = sorted(self.folder.glob(f"{done}.rank*.safetensors"))
        for path in tails:
            try:
                saved = load_file(path)
                rows, logps = saved["rows"] - done, saved["logps"].double()
                if rows.numel() and (rows.min() < 0 or rows.max() >= len(covered)):
                    raise ValueError("rows out of range")
            except Exception as exc:  # damaged: those rows are scored again
                echo(f"reference log-probs: the saved piece {path} is unreadable ({exc})")
                continue
            table[rows + done] = logps
            covered[rows] = True
        whole = int(covered.int().cumprod(0).sum())
        if whole < len(covered):  # only whole batches: the rest is scored again as before
            whole -= whole % batch
        table[done + whole :] = 0
        if whole:  # one piece now, which later pieces follow (a tail is read at its row only)
            self.save(done, table[done : done + whole])
            for path in tails if self.writable else ():
                path.unlink(missing_ok=True)
        return done + whole

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def cache_root() -> Path:
    return cache_home() / "reference_logps"


def weights_fingerprint(
    model: torch.nn.Module, world: World | None = None, adapter: str | None = None
) -> str:
    """A hash of every weight of ``model`` that the reference computes with and of its config:
    the same weights under another config (ALiBi, a rope scaling, a window, a soft cap edited in
    config.json or given as model_init_kwargs) give other log-probs.

    A peft model's adapters do not count (the reference is its base, adapters off), except
    ``adapter``, the one the reference runs with (a continued adapter's start): its weights and
    its config (rank, alpha, targets) count, or two adapters on one base would share a cache.

    With ``world`` (an FSDP2-sharded model; every rank calls) each rank hashes its own shards
    and the digests are combined: the same weights at another world size hash differently, so
    the cache is reused at the same world size only.
    """
    digest = hashlib.blake2b(digest_size=16)
    config = getattr(model, "config", None)
    if hasattr(config, "to_json_string"):
        digest.update(config.to_json_string(use_diff=False).encode())
    adapters = getattr(model, "peft_config", None) or {}
    if adapter is not None:
        settings = adapters[adapter].to_dict()
        digest.update(json.dumps(settings, sort_keys=True, default=_canonical).encode())
    for name, tensor in sorted(model.state_dict().items()):
        # peft names every adapter tensor (lora_A.<name>, modules_to_save.<name>, ...)
        owners = set(name.split(".")) & adapters.keys()
        if owners and owners != {adapter}:  # an adapter the reference runs without
            continue
        to_local = getattr(tensor, "to_local", None)
        local = to_local() if to_local is not None else tensor
        digest.update(name.encode())
        digest.update(local.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    if world is None:
        return digest.hexdigest()
    shards = all_gather_objects(digest.hexdigest(), world)
    return hashlib.blake2b("|".join(shards).encode(), digest_size=16).hexdigest()


def _canonical(value: object) -> object:
    """JSON for what json cannot write: a set (peft's target_modules) in sorted order, since
    its iteration order changes from one process to the next; anything else as its str."""
    if isinstance(value, set | frozenset):
        return sorted(map(str, value))
    return str(value)


def scoring_settings(
    config: DPOConfig,
    model: torch.nn.Module,
    layout: Layout,
    world: World = SINGLE_PROCESS,
    dtype: str | None = None,
) -> str:
    """What, besides the weights and the token ids, sets the numbers of the reference pass: the
    precision (``dtype``; TF32 matmuls on CUDA), the row layout (prefix-shared or packed rows
    and how they pack), the attention kernel the model runs (SDPA, eager, varlen segments,
    FlexAttention: in bf16 they differ by more than rounding, summed over a completion), the
    chunked LM head, Liger's kernels and LD-DPO's alpha. The token ids already hold the
    max_length / truncation, chat template, system column and tokenizer. Left out: the batch
    size, which only pads rows otherwise (a pass out of memory continues at a smaller one), and
    torch_compile, which fuses the same kernels. ``dtype``: the pass's, where it is not the run's
    (held-out pairs evaluated in float32, eval_dtype)."""
    attention = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return "|".join(
        (
            dtype or config.dtype,
            f"tf32={config.tf32 if world.device.type == 'cuda' else None}",
            type(model).__name__,
            f"ld_alpha={config.ld_alpha}",
            f"layout={layout!r}",
            f"attention={attention}",
            f"chunk={config.logprob_chunk_tokens}",
            f"liger={json.dumps(config.liger_kernels(), sort_keys=True)}",
        )
    )


def data_fingerprint(pairs: Sequence[TokenizedPair]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for *parts, vision in id_parts(pairs):
        for ids in parts:
            digest.update(len(ids).to_bytes(4, "little"))
            # 4 little-endian bytes an id, as int.to_bytes wrote them one by one (the same keys),
            # a whole sequence at a time: per-id calls took 37 s for 100k pairs
            digest.update(np.asarray(ids, dtype="<u4").tobytes())
        if vision is not None:  # the same image tokens with other pixels differ
            digest.update(vision.digest.encode())
    # the same ids scored without the tokens of tool results (assistant_only_loss) differ; pairs
    # without such spans keep their earlier keys
    unscored = _unscored(pairs)
    if unscored:
        digest.update(json.dumps(unscored).encode())
    return digest.hexdigest()


def _unscored(pairs: Sequence[TokenizedPair]) -> list[tuple[int, Any]]:
    """(index, unscored spans) of the pairs that have any (a store's from its index of them)."""
    if isinstance(pairs, PairStore):
        return sorted(pairs.unscored.items())
    return [(index, pair.unscored) for index, pair in enumerate(pairs) if any(pair.unscored)]


def precompute_reference_logps(
    reference: ReferenceProvider,
    weights_key: str,
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    batch_size: int,
    device: torch.device,
    settings: str,
    layout: Layout = PLAIN,
    echo: Callable[[str], None] = print,
    world: World = SINGLE_PROCESS,
    progress: bool = True,
) -> torch.Tensor:
    """[N, 2] reference log-probs (chosen, rejected) of every pair, from the cache if present.

    ``weights_key`` is ``weights_fingerprint`` of the reference, taken before any sharding. In
    distributed training each rank scores its slice of every batch of ``batch_size × world``
    pairs and the table is summed across ranks; rank 0 alone reads and writes the cache.
    """
    # another directpo may score otherwise (a fixed truncation or scoring rule): its cache is not
    # this one's, since the table alone cannot tell
    version = directpo.__version__
    key = hashlib.blake2b(
        f"{weights_key}|{data_fingerprint(pairs)}|{settings}|{version}".encode(), digest_size=16
    ).hexdigest()
    path = cache_root() / f"{key}.safetensors"
    cached = _read_cache(path, len(pairs), echo) if world.is_main else None
    cached = broadcast(cached, world)
    if cached is not None:
        echo(f"reference log-probs: reusing the cache {path}")
        return cached
    pieces = Pieces(path.with_name(f"{key}.partial"))
    global_batch = batch_size * world.size
    start = pieces.load(len(pairs), echo, global_batch) if world.is_main else None
    table, first = broadcast(start, world) or (torch.zeros(len(pairs), 2, dtype=torch.float64), 0)
    batches = [[first + i for i in b] for b in eval_batches(len(pairs) - first, global_batch)]
    every = max(1, CHUNK_PAIRS // global_batch)
    saved = done = first  # rows up to ``saved`` are summed over the ranks (and saved)
    fresh: list[int] = []  # the rows this rank scored since then
    bar = tqdm(
        desc="reference log-probs", total=len(pairs), initial=first, unit="pairs",
        dynamic_ncols=True, disable=not (world.is_main and progress),
    )  # fmt: skip
    try:
        with torch.no_grad(), bar:
            for number, indices in enumerate(batches, 1):
                mine, stand_in = shard(indices, world)
                batch = collate_pairs([pairs[i] for i in mine], pad_token_id, layout=layout)
                logps = reference.logprobs(batch.to(device)).double().cpu()
                if not stand_in:
                    table[mine, 0] = logps[: batch.num_pairs]
                    table[mine, 1] = logps[batch.num_pairs :]
                    fresh += mine
                done = indices[-1] + 1
                bar.update(len(indices))
                if number % every == 0 or number == len(batches):
                    # each row is one rank's (zeros on the others): the sum is exact
                    summed = all_reduce_sum(table[saved:done].flatten().tolist(), world)
                    table[saved:done] = torch.tensor(summed, dtype=torch.float64).view(-1, 2)
                    if world.is_main:
                        pieces.save(saved, table[saved:done])
                    saved, fresh = done, []
    except BaseException:
        # the batches since the last piece are kept too: one process's as a piece, each
        # rank's own rows of them as its tail (the sum over ranks needs a collective, which
        # an interrupted process cannot make)
        if not world.enabled and done > saved:
            pieces.save(saved, table[saved:done])
        elif world.enabled:
            pieces.save_tail(saved, world.rank, fresh, table[fresh])
        raise
    table = table.float()
    if not world.is_main:
        return table
    problem = _write_cache(path, table)
    if problem is None:
        pieces.remove()
        echo(f"reference log-probs: computed for {counted(len(pairs), 'pair')}, cached in {path}")
    else:
        echo(
            f"reference log-probs: computed for {counted(len(pairs), 'pair')}; not cached "
            f"({problem}); "
            "training goes on with them (set DIRECTPO_CACHE to a writable folder to cache)"
        )
    return table


def _read_cache(path: Path, rows: int, echo: Callable[[str], None]) -> torch.Tensor | None:
    """The cached [rows, 2] table, or None if absent; a damaged or unreadable file (cut short
    by a crash, garbled, of another shape) counts as absent and is said so: it is recomputed
    and replaced."""
    if not path.is_file():
        return None
    try:
        table = load_file(path)["logps"]
        if table.shape == (rows, 2) and table.is_floating_point():
            return table.float()
        problem = f"a {list(table.shape)} table, not [{rows}, 2]"
    except Exception as exc:  # safetensors raises its own error (or OSError, KeyError)
        problem = f"unreadable ({first_line(exc)})"
    echo(f"reference log-probs: the cache {path} is {problem}: recomputing")
    return None


def _write_cache(path: Path, table: torch.Tensor | dict[str, torch.Tensor]) -> str | None:
    """Save ``table`` (the log-probs, or named tensors) at ``path`` via a temporary file and a
    rename; None, or why it could not be written (a read-only or full disk): the caller goes on
    without a cache."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file(table if isinstance(table, dict) else {"logps": table}, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:  # OSError, or safetensors' own error wrapping one
        reason = getattr(exc, "strerror", None) or first_line(exc)
        return f"cannot write {path.parent}: {reason}"
    finally:  # also after Ctrl-C, which left a half-written file in the cache for good
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return None


def precompute_run_reference(run: Run, reference_weights: str) -> None:
    """Reference log-probs of every pair, computed (or read from the cache) up front and
    attached to the pair sets; the reference model is then freed unless ``eval_generate``
    needs it for the KL of samples."""
    from directpo.run import evaluation_precision  # run.py imports this module

    config, reference = run.config, run.reference
    model = reference.model  # a frozen copy, or the LoRA policy with adapters disabled
    batch = config.precompute_ref_batch_size or config.per_device_eval_batch_size
    for pair_set in (run.train, *run.evals.values()):
        if not pair_set.pairs:
            continue
        # held-out pairs in the precision they are evaluated in (eval_dtype), training's in its
        in_float32 = run.eval_float32 and pair_set is not run.train
        dtype = "float32" if in_float32 else None
        settings = scoring_settings(config, model, run.layout, run.world, dtype)
        try:
            with evaluation_precision(run) if in_float32 else contextlib.nullcontext():
                pair_set.reference_table = precompute_reference_logps(
                    reference,
                    reference_weights,
                    pair_set.pairs,
                    run.pad_id,
                    batch,
                    run.world.device,
                    settings,
                    run.layout,
                    run.echo,
                    run.world,
                    progress=not config.disable_tqdm,
                )
        except (RuntimeError, MemoryError) as exc:  # before the loop, which says its own
            if memory_kind(exc) is None:
                raise
            raise TrainingStopped(
                f"out of {memory_kind(exc)} memory in the reference log-probs pass "
                "(precompute_ref_log_probs), "
                f"batches of {batch} pairs: {spell_change('lower', 'precompute_ref_batch_size')}; "
                "the pairs scored "
                "are kept and the next run continues after them"
            ) from None
    run.kl_reference = reference if config.eval_generate else None
    if run.kl_reference is None:  # its float32 weights served the held-out pass alone: done
        run.reference_masters = None
    if run.kl_reference is None and isinstance(reference, FrozenModelReference):
        del reference.model, reference.scorer  # training now holds one model in memory
        if run.world.device.type == "cuda":
            torch.cuda.empty_cache()
    run.reference = PrecomputedReference()
