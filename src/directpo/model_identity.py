"""A model folder's identity, read cheaply: what tells the same model at another path (a copy,
a hub id and its cached snapshot) from another model. A checkpoint records its reference's,
so that a resume against another reference says so (its objective changed without a word).

Reading a 70B model's weights whole to hash them would take minutes; its config.json, the
names and sizes of its weight files, and a few samples of the first shard's bytes (a
fine-tune of the same architecture has the same sizes and the same safetensors header, but
other values wherever one looks) take milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from directpo.adapters import adapter_base
from directpo.errors import ModelLoadError
from directpo.models import _cached_snapshot

if TYPE_CHECKING:
    from directpo.config import DPOConfig

SAMPLE_BYTES = 1 << 16  # read at the start, the middle and the end of the first weight file
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")  # in the order loads prefer
# a trainer's state saved beside the weights (a Trainer checkpoint as the model): no weights
STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state")


def model_identity(name_or_path: str) -> str | None:
    """A hash of the model ``name_or_path`` names (a folder, or a hub id's cached snapshot);
    None where there are no files to read (a hub id not in the cache)."""
    folder = Path(_cached_snapshot(name_or_path))
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    if (folder / "config.json").is_file():
        digest.update(b"config.json" + (folder / "config.json").read_bytes())
    if (folder / "adapter_config.json").is_file():
        adapter = _adapter_identity(str(folder))
        if adapter is None:
            return None
        digest.update(adapter.encode())
    weights = _weight_files(folder)
    for path in weights:
        digest.update(f"{path.name}:{path.stat().st_size};".encode())
    if weights:
        digest.update(_samples(weights[0]))
    return digest.hexdigest()[:16]


def _adapter_identity(folder: str) -> str | None:
    """An adapter folder's settings and its base model's identity. The file names the base by
    path (the fix for a moved base is to edit it there): the path is left out and the model
    it names is read instead, so a moved base is no change and another base at that path is."""
    try:
        with open(os.path.join(folder, "adapter_config.json")) as handle:
            settings = json.load(handle)
        base = adapter_base(folder)
    except (OSError, ValueError, ModelLoadError):
        return None  # (loading it says what is wrong)
    if not isinstance(settings, dict):
        return None
    settings.pop("base_model_name_or_path", None)
    base_identity = model_identity(base) if base else "merged"  # (a folder with config.json)
    return json.dumps(settings, sort_keys=True) + f"base:{base_identity}"


def _weight_files(folder: Path) -> list[Path]:
    """The files a load reads ``folder``'s weights from, found as transformers looks: the
    single file, else the shards its index names, in safetensors then PyTorch's format; else
    the files of the first format in ``WEIGHT_SUFFIXES`` it has (an adapter's, a GGUF). A
    snapshot that another tool filled with the same model in another format (pytorch_model.bin
    beside model.safetensors, a consolidated.safetensors) is the same model."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):  # fmt: skip
        if (folder / single).is_file():
            return [folder / single]
        try:
            named = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
        if named and all((folder / name).is_file() for name in named):
            return [folder / name for name in named]
    files = sorted(
        path
        for path in folder.iterdir()
        if path.name.endswith(WEIGHT_SUFFIXES)
        and not path.name.startswith(STATE_FILES)
        and path.is_file()
    )
    for suffix in WEIGHT_SUFFIXES:
        if chosen := [path for path in files if path.name.endswith(suffix)]:
            return chosen
    return []


def _samples(path: Path) -> bytes:
    """``SAMPLE_BYTES`` at the start, the middle and the end of ``path``."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        parts = []
        middle, end = max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)
        for offset in sorted({0, middle, end}):
            handle.seek(offset)
            parts.append(handle.read(SAMPLE_BYTES))
    return b"".join(parts)


def reference_record(config: DPOConfig) -> dict[str, str | None] | None:
    """The model a run's losses take their reference from (ref_model_name_or_path, else the
    starting model: a LoRA run's base, adapters off) and its identity; None for
    reference-free losses and for TR-DPO, whose moved reference the checkpoint holds itself."""
    if not config.loss_needs_reference or config.sync_ref_model:
        return None
    path = config.ref_model_name_or_path or config.model_name_or_path
    shown = os.path.abspath(path) if os.path.exists(path) else path  # resumed from anywhere
    return {"path": shown, "identity": model_identity(path)}


def reference_change(saved: dict[str, str | None] | None, now: dict[str, str | None] | None) -> str:
    """What changed of the reference since a checkpoint (``reference_record``'s), or "": the
    same model at another path is no change; one without files to read says nothing."""
    if not saved or not now or None in (saved.get("identity"), now["identity"]):
        return ""
    if saved["identity"] == now["identity"]:
        return ""
    if saved.get("path") == now["path"]:
        return f"the reference model's files at {now['path']}"
    return f"the reference model {saved.get('path')} -> {now['path']}"
