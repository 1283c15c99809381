"""An FSDP2 model's weights from and to a Hugging Face folder, no rank holding more than its
shards: a meta-built model filled from the safetensors files, the final model (or adapter)
written from the shards."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from directpo.data_parallel import unwrap
from directpo.errors import ModelLoadError
from directpo.logprobs import unwrap_peft
from directpo.meta_models import WEIGHTS_FOLDER, WEIGHTS_KEYS, safetensors_keys
from directpo.model_preparation import config_as_loaded
from directpo.process_group import World


def materialize(module: torch.nn.Module, device: torch.device) -> bool:
    """Give a meta-built, ``fully_shard``-ed module memory on this rank's device and fill its
    shards from the model folder's safetensors files; True if it was meta-built.

    torch.distributed.checkpoint's ``HuggingFaceStorageReader`` reads, on each rank, only the
    slices of each tensor that the rank holds (measured faster here than rank 0 reading and
    scattering: docs/distributed.md), so no process holds more than its shards. What was real
    before (buffers such as rotary tables, LoRA adapters initialised on the CPU) is kept.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    model = unwrap_peft(unwrap(module))
    folder, file_keys = getattr(model, WEIGHTS_FOLDER, None), getattr(model, WEIGHTS_KEYS, {})
    tensors = [*module.named_parameters(), *module.named_buffers()]
    if folder is None or not any(_local(t).is_meta for _, t in tensors):
        return False
    kept = {name: _local(t).detach().clone() for name, t in tensors if not _local(t).is_meta}
    unfilled = {id(t) for _, t in module.named_parameters() if _local(t).is_meta}
    module.to_empty(device=device)  # the CPU under fsdp_offload
    with torch.no_grad():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if name in kept:
                _local(tensor).copy_(kept[name])
    params = {id(p): p for _, p in module.named_parameters()}
    state = get_model_state_dict(module)  # clean names, the parameters themselves
    available = safetensors_keys(folder)
    wanted: dict[str, torch.Tensor] = {}
    copies: list[tuple[torch.Tensor, str]] = []  # a second parameter of the same file tensor
    for name, tensor in state.items():
        key = checkpoint_key(name)
        key = file_keys.get(key, key)  # the name the files use (transformers' renamings)
        owner = id(tensor) if id(tensor) in params else None  # usually the parameter itself
        if owner is None:
            owner = next((i for i, p in params.items() if _same(p, tensor)), None)
        if owner in unfilled and key in available:
            # peft's modules_to_save holds the module twice (original_module and the trained
            # copy): both start as the file's tensor, which dcp reads into one of them
            if key in wanted:
                copies.append((tensor, key))
            else:
                wanted[key] = tensor
            unfilled.discard(owner)
    if unfilled:
        names = [n for n, p in module.named_parameters() if id(p) in unfilled]
        raise ModelLoadError(f"{folder}: no weights for {', '.join(names[:3])} in its files")
    dcp.load(wanted, storage_reader=HuggingFaceStorageReader(folder))
    with torch.no_grad():
        for tensor, key in copies:  # the same shape, so the same shards on this rank
            _local(tensor).copy_(_local(wanted[key]))
    return True


def _same(param: torch.Tensor, tensor: torch.Tensor) -> bool:
    local, other = _local(param), _local(tensor)
    return local.data_ptr() == other.data_ptr() and local.shape == other.shape


def _local(tensor: torch.Tensor) -> torch.Tensor:
    to_local = getattr(tensor, "to_local", None)  # an FSDP2 shard (DTensor)
    return to_local() if to_local is not None else tensor


def checkpoint_key(name: str) -> str:
    """The key of a (scorer, peft-wrapped) parameter name in the model's own safetensors files:
    ``model.`` of the scorer, peft's ``base_model.model.`` and ``.base_layer`` /
    ``.original_module`` / ``.modules_to_save.<adapter>`` segments removed."""
    name = name.removeprefix("module.").removeprefix("model.")
    name = name.removeprefix("base_model.model.")
    name = re.sub(r"\.(base_layer|original_module|modules_to_save\.[^.]+)(?=\.)", "", name)
    return name


SHARD_BYTES = 5 * 2**30  # per output safetensors file (save_pretrained's default is larger)


def save_sharded_model(
    folder: Path, scorer: torch.nn.Module, model: torch.nn.Module, dtype: torch.dtype,
    world: World, compensations: dict[str, torch.Tensor] | None = None,
    replaced: dict[str, torch.Tensor] | None = None,
) -> None:  # fmt: skip
    """The final weights of an FSDP2-trained (non-PEFT) model as a Hugging Face folder, with
    no rank ever holding more than its shards: every rank writes its shards in ``dtype``, then
    ``HuggingFaceStorageWriter`` consolidates them into ``model-0000k-of-0000n.safetensors``
    files of at most ~5 GiB with ``model.safetensors.index.json``; rank 0 adds config.json.
    Tied weights are written once, as ``save_pretrained`` does. ``compensations`` (by
    parameter name: Kahan-compensated bf16 weights) are added before the cast; ``replaced``
    (by name, sharded alike) are written instead of the parameters (a bf16 reference's float32
    weights). Every rank must
    call; it ends with no collective (the caller, ``write_staged``, agrees on the outcome)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    # a tied weight under its first name only (named_parameters drops the repeats, on every
    # rank alike; the state dict's DTensors of tied names are distinct objects)
    kept = {name for name, _ in scorer.named_parameters()} | {n for n, _ in scorer.named_buffers()}
    compensations = compensations or {}
    state = {}
    for name, tensor in get_model_state_dict(scorer).items():
        if name not in kept:
            continue
        tensor = (replaced or {}).get(name, tensor)
        if name in compensations:
            tensor = tensor.float() + compensations[name].float()
        state[checkpoint_key(name)] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    mapping, index, size = {}, 1, 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if size and size + nbytes > SHARD_BYTES:
            index, size = index + 1, 0
        mapping[key], size = index, size + nbytes
    writer = HuggingFaceStorageWriter(
        str(folder), fqn_to_index_mapping=mapping, save_distributed=True,
        enable_consolidation=True,
    )  # fmt: skip
    dcp.save(state, storage_writer=writer)
    if world.is_main:
        import shutil

        shutil.rmtree(folder / "sharded", ignore_errors=True)  # the per-rank staging files
        if index == 1:  # one file: save_pretrained's name, no index
            (folder / "model-00001-of-00001.safetensors").replace(folder / "model.safetensors")
            (folder / "model.safetensors.index.json").unlink()
        config = unwrap_peft(model).config
        config.dtype = dtype
        with config_as_loaded(model):
            config.save_pretrained(folder)
    # no barrier here: a failed write on rank 0 (a full disk) would skip it, and the other
    # ranks, waiting in it, would hang while rank 0 waits in write_staged's agreement


def save_sharded_adapter(
    folder: Path, model: torch.nn.Module, dtype: torch.dtype, world: World
) -> None:
    """The trained adapter of an FSDP2-sharded PEFT model: only the adapter tensors are
    gathered (to rank 0), never the base. Every rank must call; as ``save_sharded_model``, it
    ends with no collective after rank 0's writes (the caller agrees on the outcome)."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from directpo.adapter_starts import write_as_plain_lora

    active = model.active_adapter
    gathered = {}
    for name, param in model.named_parameters():
        if param.requires_grad:  # the active adapter (and modules_to_save)
            full = getattr(param, "full_tensor", None)
            value = full() if full is not None else param.detach()
            gathered[name] = value.to(dtype).cpu()
    if world.is_main:
        adapter = get_peft_model_state_dict(model, state_dict=gathered, adapter_name=active)
        save_file({k: v.contiguous() for k, v in adapter.items()},
                  str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})  # fmt: skip
        model.peft_config[active].save_pretrained(str(folder))
        write_as_plain_lora(model, folder)
