"""An FSDP2 run's state stored and gathered: every rank's shards of model and optimizer in a
checkpoint (torch.distributed.checkpoint) and read back, resharded to this run's process count;
the whole weights gathered to rank 0 (``full_model_state``, ``consolidated_model``). The final
folder written from the shards themselves: distributed.py (``save_sharded_model``)."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch

from directpo.adapters import peft_wrapping
from directpo.distributed import World
from directpo.logprobs import unwrap_peft
from directpo.model_preparation import CONFIG_AS_LOADED


def full_model_state(scorer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole, unsharded weights of an FSDP scorer's model, on CPU (every rank must call;
    only rank 0 receives them), with the Hugging Face model's own key names."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(scorer, options=options)
    return {key.removeprefix("model."): value for key, value in state.items()}


def save_sharded(folder: os.PathLike, scorer: torch.nn.Module, optimizer: Any) -> None:
    """Every rank writes its shards of model and optimizer (torch.distributed.checkpoint);
    of the model alone when ``optimizer`` is None (save_only_model)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is None:
        dcp.save({"model": get_model_state_dict(scorer)}, checkpoint_id=folder)
        return
    model_state, optimizer_state = get_state_dict(scorer, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)


def load_sharded(folder: os.PathLike, scorer: torch.nn.Module, optimizer: Any) -> None:
    """Every rank reads its shards of model and optimizer. A checkpoint saved with the other
    param grouping (weight decay's second group, optimizers.py) resumes too: its moments are
    keyed by parameter name, so only the groups' options are read in its layout, then the
    groups are this optimizer's (their options the saved first group's, as fit_saved_groups
    does; resume.py then applies this run's)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    from directpo.optimizers import own_options

    if optimizer is None:  # the weights alone (the best model of a run)
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            set_model_state_dict,
        )

        weights = {"model": get_model_state_dict(scorer)}
        try:
            dcp.load(weights, checkpoint_id=folder)
        except CheckpointException as exc:
            raise RuntimeError(str(exc).strip().splitlines()[-1]) from None
        set_model_state_dict(scorer, weights["model"])
        return
    model_state, optimizer_state = get_state_dict(scorer, optimizer)
    groups = optimizer_state["param_groups"]
    saved = dcp.FileSystemReader(folder).read_metadata().state_dict_metadata
    count = len({key.split(".")[2] for key in saved if key.startswith("optimizer.param_groups.")})
    regroup = count not in (0, len(groups))
    if regroup:
        optimizer_state = {
            **optimizer_state,
            "param_groups": [dict(groups[0]) for _ in range(count)],
        }
    state = {"model": model_state, "optimizer": optimizer_state}
    try:
        dcp.load(state, checkpoint_id=folder)
    except CheckpointException as exc:  # a BaseException, which no `except Exception` catches
        raise RuntimeError(str(exc).strip().splitlines()[-1]) from None
    if regroup:
        first = state["optimizer"]["param_groups"][0]
        fitted = [{**own_options(first), "params": group["params"]} for group in groups]
        state["optimizer"] = {**state["optimizer"], "param_groups": fitted}
    set_state_dict(
        scorer, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"]
    )


def consolidated_model(
    scorer: torch.nn.Module,
    model: torch.nn.Module,
    dtype: torch.dtype,
    world: World,
) -> torch.nn.Module | None:
    """On rank 0, a plain (unsharded, CPU) copy of an FSDP-trained ``model`` in ``dtype``;
    None on the other ranks. Every rank must call it.

    A PEFT policy comes back as a peft model with the same adapter configs (the adapters stay
    float32, as peft keeps them), so that the adapter or the merged model is written as on one
    process.
    """
    state = full_model_state(scorer)
    if not world.is_main:
        return None
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    from directpo.vision import is_vision_config

    base = unwrap_peft(model)
    auto = AutoModelForImageTextToText if is_vision_config(base.config) else AutoModelForCausalLM
    whole = auto.from_config(base.config)
    setattr(whole, CONFIG_AS_LOADED, getattr(base, CONFIG_AS_LOADED, {}))  # saved as the base's
    whole.generation_config = copy.deepcopy(base.generation_config)  # not from config.json's
    configs = getattr(model, "peft_config", None)
    if configs:  # the same adapters (every one, e.g. a continued adapter's frozen "ref")
        from peft import get_peft_model

        names = list(configs)
        with peft_wrapping():
            whole = get_peft_model(whole, configs[names[0]], adapter_name=names[0])
        for name in names[1:]:
            whole.add_adapter(name, configs[name])
    whole.load_state_dict(state)
    for name, parameter in whole.named_parameters():
        if "lora_" not in name:
            parameter.data = parameter.data.to(dtype)
    return whole
