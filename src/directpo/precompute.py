"""Precomputed reference log-probs (``precompute_ref_log_probs: true``).

One batched no-grad pass of the reference over every pair before training; the results are
cached in ``DIRECTPO_CACHE/reference_logps/<key>.safetensors``, where the key hashes the
reference weights (every tensor's bytes) and config (and the adapter it runs with), the token
ids of every pair, the dtype and the directpo version, so a later run with the same reference,
data and settings reuses them (and says so), and any change recomputes them. A damaged cache
file counts as absent (recomputed and replaced, with a notice); a cache location that cannot
be written is one warning line, and training goes on with the values just computed. The
reference model can then be freed: training needs one model in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

import directpo
from directpo.batching import PLAIN, Batch, Layout, collate_pairs, eval_batches
from directpo.distributed import (
    SINGLE_PROCESS,
    World,
    all_gather_objects,
    all_reduce_sum,
    broadcast,
    shard,
)
from directpo.errors import first_line
from directpo.reference import ReferenceProvider
from directpo.tokenization import TokenizedPair


class PrecomputedReference:
    """Reads the reference log-probs that ``collate_pairs`` attached to the batch."""

    def logprobs(self, batch: Batch) -> torch.Tensor:
        if batch.reference_logps is None:
            raise RuntimeError("batch has no precomputed reference log-probs")
        return batch.reference_logps


def cache_root() -> Path:
    root = os.environ.get("DIRECTPO_CACHE") or Path.home() / ".cache" / "directpo"
    return Path(root) / "reference_logps"


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


def data_fingerprint(pairs: Sequence[TokenizedPair]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for pair in pairs:
        for ids in (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids):
            digest.update(len(ids).to_bytes(4, "little"))
            digest.update(b"".join(i.to_bytes(4, "little") for i in ids))
        if pair.vision is not None:  # the same image tokens with other pixels differ
            digest.update(pair.vision.digest.encode())
    return digest.hexdigest()


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
    table = torch.zeros(len(pairs), 2, dtype=torch.float64)
    with torch.no_grad():
        for indices in tqdm(
            eval_batches(len(pairs), batch_size * world.size),
            desc="reference log-probs",
            dynamic_ncols=True,
            disable=not (world.is_main and progress),
        ):
            mine, stand_in = shard(indices, world)
            batch = collate_pairs([pairs[i] for i in mine], pad_token_id, layout=layout)
            logps = reference.logprobs(batch.to(device)).double().cpu()
            if not stand_in:
                table[mine, 0] = logps[: batch.num_pairs]
                table[mine, 1] = logps[batch.num_pairs :]
    table = torch.tensor(all_reduce_sum(table.flatten().tolist(), world)).view(-1, 2).float()
    if not world.is_main:
        return table
    problem = _write_cache(path, table)
    if problem is None:
        echo(f"reference log-probs: computed for {len(pairs)} pairs, cached in {path}")
    else:
        echo(
            f"reference log-probs: computed for {len(pairs)} pairs; not cached ({problem}); "
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


def _write_cache(path: Path, table: torch.Tensor) -> str | None:
    """Save ``table`` at ``path`` via a temporary file and a rename; None, or why it could not
    be written (a read-only or full disk): the caller goes on without a cache."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"logps": table}, str(tmp))
        os.replace(tmp, path)
    except Exception as exc:  # OSError, or safetensors' own error wrapping one
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        reason = getattr(exc, "strerror", None) or first_line(exc)
        return f"cannot write {path.parent}: {reason}"
    return None
