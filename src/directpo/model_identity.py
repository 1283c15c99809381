"""A model folder's identity, read cheaply: what tells the same model at another path (a copy,
a hub id and its cached snapshot) from another model. A checkpoint records its reference's,
so that a resume against another reference says so (its objective changed without a word).

Reading a 70B model's weights whole to hash them would take minutes. What decides the weights
is read instead: config.json's settings, and each tensor's name, dtype, shape and
a few bytes of its values, read by name through the file's header (a few KB a shard: a
fine-tune of the same architecture has the same names and shapes, but other values wherever
one looks). The files' names, sizes and header bytes are not the model: save_pretrained
writes the same weights again with another transformers_version, other header metadata or
another shard split.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from pickle import PickleError
from typing import TYPE_CHECKING, Any

from directpo.adapters import adapter_base
from directpo.errors import ModelLoadError
from directpo.model_files import cached_snapshot, model_location

if TYPE_CHECKING:
    from directpo.config import DPOConfig

SAMPLE_BYTES = 1 << 16  # read at the start, the middle and the end of a file of another format
TENSOR_SAMPLE = 32  # bytes read at the start, the middle and the end of each safetensors tensor
# tensors whose values are sampled: every one of a dense model (a 70B: 723, ~3 KB a shard); a
# fraction chosen by name of the largest MoEs' (tens of thousands: as many seeks)
SAMPLED_TENSORS = 4096
# config.json's keys that a save writes anew without changing the model (the weights' dtype is
# the tensors' own, hashed with them)
UNSAVED_CONFIG = ("transformers_version", "_name_or_path", "_commit_hash", "torch_dtype", "dtype")
# reference_record's: 1 (no key) hashed config.json's text and file names; 2 a PyTorch pickle's
# file names and sizes (its tensors are read by name since 3, as safetensors'); 3 a tied
# model's pickled lm_head.weight, the embedding saved twice (once since 4, as safetensors)
IDENTITY_SCHEME = 4
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")  # torch.save's (pytorch_model.bin): read with mmap
# safetensors' names of torch's dtypes, so that a pickle's tensors hash as the same safetensors'
SAFETENSORS_DTYPES = {
    "float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "int64": "I64", "int32": "I32",
    "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL",
}  # fmt: skip
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")  # in the order loads prefer
# a trainer's state saved beside the weights (a Trainer checkpoint as the model): no weights
STATE_FILES = ("training_args.bin", "optimizer.pt", "scheduler.pt", "scaler.pt", "rng_state")


def model_identity(
    name_or_path: str, location: dict[str, Any] | None = None, scheme: int = IDENTITY_SCHEME
) -> str | None:
    """A hash of the model ``name_or_path`` names (a folder, or a hub id's cached snapshot at
    ``location``'s revision and cache_dir, in its subfolder: from_pretrained's keywords); None
    where there are no files to read (a hub id not in the cache). ``scheme`` 1 is the hash
    checkpoints recorded before ``IDENTITY_SCHEME`` (a resume of one compares it)."""
    folder = _model_folder(name_or_path, (location or {}) if scheme > 1 else {})
    if folder is None:
        return None
    digest = hashlib.sha256()
    if (config := folder / "config.json").is_file():
        digest.update(
            b"config.json" + (_config_settings(config) if scheme > 1 else config.read_bytes())
        )
    if (folder / "adapter_config.json").is_file():
        adapter = _adapter_identity(str(folder), scheme)
        if adapter is None:
            return None
        digest.update(adapter.encode())
    weights = _weight_files(folder)
    tensors = _tensor_samples(weights, scheme) if weights and scheme > 1 else None
    if tensors is not None:
        digest.update(tensors)
    elif weights:  # (a GGUF, an old pickle: no tensors to read by name)
        for path in weights:
            digest.update(f"{path.name}:{path.stat().st_size};".encode())
        digest.update(_samples(weights[0]))
    return digest.hexdigest()[:16]


def _model_folder(name_or_path: str, location: dict[str, Any]) -> Path | None:
    """The folder a load reads ``name_or_path``'s files from: a hub id's snapshot at the
    revision loaded (not main's, where the run trained another revision), its subfolder."""
    folder = Path(
        cached_snapshot(name_or_path, location.get("revision"), location.get("cache_dir"))
    )
    subfolder = location.get("subfolder")
    if subfolder and (folder / str(subfolder)).is_dir():
        folder = folder / str(subfolder)
    return folder if folder.is_dir() else None


def _config_settings(path: Path) -> bytes:
    """config.json's settings without those a save writes anew (``UNSAVED_CONFIG``); its text
    where it is not a JSON object (loading it says what is wrong)."""
    text = path.read_bytes()
    try:
        settings = json.loads(text)
    except ValueError:
        return text
    if not isinstance(settings, dict):
        return text
    kept = {key: value for key, value in settings.items() if key not in UNSAVED_CONFIG}
    return json.dumps(kept, sort_keys=True).encode()


def _tensor_samples(files: list[Path], scheme: int = IDENTITY_SCHEME) -> bytes | None:
    """Every tensor of the safetensors ``files`` by name: its dtype and shape, and for each of
    ``SAMPLED_TENSORS`` chosen by name (all of them but in the largest MoE models)
    ``TENSOR_SAMPLE`` bytes at the start, the middle and the end of its values; in name order,
    so whichever shard holds it. PyTorch's pickles (pytorch_model.bin; since scheme 3) give
    the same for the same tensors: a reference converted to safetensors is the same model.
    None where a file is neither."""
    pickled = files and all(path.name.endswith(PICKLE_SUFFIXES) for path in files)
    if scheme > 2 and pickled:
        return _pickled_samples(files, aliases=scheme < 4)
    headers = [header for path in files if (header := _header(path)) is not None]
    if len(headers) < len(files):
        return None
    stride = max(1, math.ceil(sum(len(header) for _, header in headers) / SAMPLED_TENSORS))
    tensors: dict[str, list[Any]] = {}
    try:
        for path, (base, header) in zip(files, headers, strict=True):
            with open(path, "rb") as handle:
                spans = sorted((info["data_offsets"], name) for name, info in header.items())
                for name, info in header.items():
                    tensors[name] = [info["dtype"], info["shape"]]
                for (start, end), name in spans:
                    if _sampled(name, stride):
                        tensors[name].append(_values(handle, base + start, base + end))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # (not a safetensors file: loading it says so)
    return json.dumps(sorted(tensors.items())).encode()


def _pickled_samples(files: list[Path], aliases: bool = False) -> bytes | None:
    """``_tensor_samples`` of torch.save's state dicts, memory-mapped (only the sampled bytes
    are read), a tensor saved twice under two names once (``aliases``: twice, scheme 3's);
    None where one is no such file (an old format, another object)."""
    import torch

    tensors: dict[str, list[Any]] = {}
    try:
        for path in files:
            state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
            if not isinstance(state, dict):
                return None
            # (a value that is no tensor: AttributeError, caught below)
            names = list(state) if aliases else _unaliased(state)
            tensors |= {name: _pickled_tensor(state[name]) for name in names}
    except (OSError, RuntimeError, ValueError, KeyError, AttributeError, EOFError, PickleError):
        return None  # (PickleError: a whole model pickled, which weights_only refuses)
    stride = max(1, math.ceil(len(tensors) / SAMPLED_TENSORS))
    return json.dumps(
        sorted(
            (name, entry if _sampled(name, stride) else entry[:2])
            for name, entry in tensors.items()
        )
    ).encode()


def _unaliased(state: dict[str, Any]) -> list[str]:
    """``state``'s names less the aliases of a tensor saved once more under another name: a tied
    model's torch.save(model.state_dict()) holds lm_head.weight as the embedding itself, which
    safetensors cannot hold twice and save_pretrained writes once, as the embedding (the
    converted reference was 'another model'). Of tensors that share their data, the one kept
    is the one not named as the LM head (a tied model's output side), else the first."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for name, value in state.items():
        key = (value.data_ptr(), value.dtype, tuple(value.shape), value.stride())
        groups.setdefault(key if value.numel() else (name,), []).append(name)
    kept = []
    for names in groups.values():
        inputs = [name for name in sorted(names) if not name.startswith(OUTPUT_EMBEDDINGS)]
        kept.append((inputs or sorted(names))[0])
    return kept


# the names of a causal LM's output embedding, which a tied model saves as its input embedding
OUTPUT_EMBEDDINGS = ("lm_head.", "output.", "embed_out.")


def _pickled_tensor(tensor: Any) -> list[Any]:
    """A tensor's safetensors dtype, shape and sampled bytes (as ``_values`` reads them)."""
    import torch

    data = tensor.detach().contiguous().view(-1).view(torch.uint8)
    end = int(data.numel())
    samples = [
        data[offset : offset + min(TENSOR_SAMPLE, end - offset)].numpy().tobytes().hex()
        for offset in sorted({0, end // 2, max(0, end - TENSOR_SAMPLE)})
    ]
    return [
        SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")],
        list(tensor.shape),
        samples,
    ]


def _header(path: Path) -> tuple[int, dict[str, Any]] | None:
    """Where ``path``'s tensor values start and its header's tensors (no ``__metadata__``:
    whichever tool saved them writes its own)."""
    if path.suffix != ".safetensors":
        return None
    try:
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, MemoryError):
        return None
    if not isinstance(header, dict):
        return None
    header.pop("__metadata__", None)
    return 8 + length, header


def _sampled(name: str, stride: int) -> bool:
    """Whether tensor ``name``'s values are sampled: one in ``stride``, chosen by its name (so
    the same tensors whichever shard holds them)."""
    return stride == 1 or int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % stride == 0


def _values(handle: Any, start: int, end: int) -> list[str]:
    """``TENSOR_SAMPLE`` bytes at the start, the middle and the end of bytes start..end."""
    samples = []
    for offset in sorted({start, (start + end) // 2, max(start, end - TENSOR_SAMPLE)}):
        handle.seek(offset)
        samples.append(handle.read(min(TENSOR_SAMPLE, end - offset)).hex())
    return samples


def _adapter_identity(folder: str, scheme: int) -> str | None:
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
    # the base as loaded: at the revision the file names (as peft's AutoPeftModel loads it)
    where = {"revision": settings.get("revision")} if scheme > 1 else {}
    base_identity = model_identity(base, where, scheme) if base else "merged"  # (config.json)
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


def loaded_model_files(config: DPOConfig) -> dict[str, Any]:
    """What a checkpoint records of the models a run loaded: its reference's
    (``reference_record``) and a LoRA run's base's (``adapted_base_record``)."""
    return {"reference": reference_record(config), "adapted_base": adapted_base_record(config)}


def reference_record(config: DPOConfig) -> dict[str, Any] | None:
    """The model a run's losses take their reference from (ref_model_name_or_path, else the
    starting model: a LoRA run's base, adapters off) and its identity; None for
    reference-free losses and for TR-DPO, whose moved reference the checkpoint holds itself."""
    if not config.loss_needs_reference or config.sync_ref_model:
        return None
    path = config.ref_model_name_or_path or config.model_name_or_path
    return _record(path, config.reference_init_kwargs)


def adapted_base_record(config: DPOConfig) -> dict[str, Any] | None:
    """A LoRA run's starting model (its base, or an adapter folder continued) and its
    identity: a checkpoint holds the adapters alone, so a resume over another base trains
    another policy. None where the checkpoint holds every weight."""
    if not config.lora_r:
        return None
    return _record(config.model_name_or_path, config.model_init_kwargs)


def _record(path: str, init_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """Model ``path`` (loaded with ``init_kwargs``) and its identity, as a checkpoint records it."""
    shown = os.path.abspath(path) if os.path.exists(path) else path  # resumed from anywhere
    where = model_location(init_kwargs)  # (never its token: the record is read)
    location = {key: where[key] for key in ("revision", "subfolder", "cache_dir") if where.get(key)}
    record: dict[str, Any] = {"path": shown, "identity": model_identity(path, location)}
    record["scheme"] = IDENTITY_SCHEME
    if location:
        record["location"] = location
    return record


def base_change(saved: dict[str, Any] | None, now: dict[str, Any] | None) -> str:
    """What changed of a LoRA run's base since a checkpoint (``adapted_base_record``'s), or ""."""
    return reference_change(saved, now, role="base model")


def reference_change(
    saved: dict[str, Any] | None, now: dict[str, Any] | None, role: str = "reference model"
) -> str:
    """What changed of the reference (or another ``role``) since a checkpoint
    (``reference_record``'s), or "": the same model at another path is no change; one
    without files to read says nothing."""
    if not saved or not now or None in (saved.get("identity"), now["identity"]):
        return ""
    if saved.get("scheme", 1) != now.get("scheme"):
        saved, now = _same_scheme(saved, now)
    if saved["identity"] == now["identity"]:
        return ""
    revisions = [
        (record.get("location") or {}).get("revision") or "main" for record in (saved, now)
    ]
    if saved.get("path") == now["path"] and "scheme" in saved and revisions[0] != revisions[1]:
        return f"the {role} {now['path']}'s revision {revisions[0]} -> {revisions[1]}"
    if saved.get("path") == now["path"]:
        return f"the {role}'s files at {now['path']}"
    return f"the {role} {saved.get('path')} -> {now['path']}"


def _same_scheme(saved: dict[str, Any], now: dict[str, Any]) -> tuple[dict, dict]:
    """A record of an earlier version's hash (``saved``) and this one's, made comparable:
    where the checkpoint's path still holds the model it recorded, that model is read again
    by this hash (a re-save of it is then no change); else ``now`` is read by the earlier."""
    scheme, path = saved.get("scheme", 1), str(saved.get("path"))
    if model_identity(path, scheme=scheme) == saved["identity"]:
        return {**saved, "identity": model_identity(path, now.get("location"))}, now
    return saved, {**now, "identity": model_identity(str(now["path"]), scheme=scheme)}
