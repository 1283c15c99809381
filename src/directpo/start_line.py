"""The line a training run starts with ("training 40 steps (20 per epoch) on cuda, 80 pairs,
batch 2 x 2 accumulation, ..."): what it trains, in what precision, with which attention kernel,
as the start-up chose them."""

from __future__ import annotations

import torch

from directpo import attention, flexattention
from directpo.batching import eval_left_out
from directpo.config import DPOConfig
from directpo.distributed import World
from directpo.logprobs import attention_implementation
from directpo.precision import PrecisionPolicy
from directpo.preference_pairs import counted
from directpo.run_data import RunData
from directpo.sources import FixedPairs, OnlineRounds


def start_line(
    config: DPOConfig,
    world: World,
    data: RunData,
    pair_source: FixedPairs | OnlineRounds,
    total_steps: int,
    precision: PrecisionPolicy,
    policy: torch.nn.Module,
    compiled: bool,
    offloaded_activations: bool,
) -> str:
    """Steps, pairs, batch and processes, then precision, attention kernel, compiled layers
    and activation offloading, as set up."""
    device = world.device
    offloaded = ", offloaded to CPU" if config.fsdp_offload else ""
    processes = f" x {world.size} processes ({world.mode}{offloaded})" if world.enabled else ""
    return (
        f"training {counted(total_steps, 'step')} ({pair_source.steps_per_epoch} per epoch) on "
        f"{device}, "
        f"{what_trains(pair_source, len(data.train.pairs))}, batch "
        f"{config.per_device_train_batch_size} x "
        f"{config.gradient_accumulation_steps} accumulation{processes}"
        + (f", {left}" if (left := eval_left_out_words(config, data, world)) else "")
        + (f", {precision_words(precision)}" if precision.compute != torch.float32 else "")
        + f", {kernel_words(policy, device, precision, config.gradient_checkpointing)}"
        + (", compiled decoder layers" if compiled else "")
        + (", activations offloaded to CPU" if offloaded_activations else "")
    )


def precision_words(precision: PrecisionPolicy) -> str:
    def name(dtype: torch.dtype) -> str:
        return str(dtype).removeprefix("torch.")

    return f"compute {name(precision.compute)}, weights {name(precision.master)}"


def kernel_words(
    policy: torch.nn.Module, device: torch.device, precision: PrecisionPolicy, checkpointing: bool
) -> str:
    """The attention the policy trains with and whether activations are recomputed: auto
    chooses by device and dtype, and the start-up checks may fall back, so only the outcome
    tells a GPU user whether the fast kernel runs."""
    name = attention_implementation(policy)
    if name == attention.IMPLEMENTATION:  # its kernel: fast on CUDA in bf16, else exact math
        fast = precision.compute in (torch.bfloat16, torch.float16)
        name = f"varlen ({fast and attention.available_backend(device) or 'math'})"
    elif name == flexattention.IMPLEMENTATION:
        name = "flex_attention"
    return f"attention {name}" + (", gradient checkpointing" if checkpointing else "")


def eval_left_out_words(config: DPOConfig, data: RunData, world: World) -> str:
    sizes = [len(pair_set.pairs) for pair_set in data.evaluations.values()]
    batch = config.per_device_eval_batch_size * world.size  # (dataloader_drop_last)
    return eval_left_out(sizes, batch, config.dataloader_drop_last)


def what_trains(source: FixedPairs | OnlineRounds, pairs: int) -> str:
    if isinstance(source, OnlineRounds):
        first = f", round 0 from {pairs} given pairs" if source.first_round else ""
        prompts = counted(source.num_prompts, "prompt")
        steps = counted(source.steps_per_round, "step")
        return f"online: {prompts}, {source.prompts_per_round} per round, {steps} per round{first}"
    schedule = source.schedule  # dataloader_drop_last: the pairs an epoch leaves out, said
    left = (
        pairs - schedule.micro_batches_per_epoch * schedule.batch_size if schedule.drop_last else 0
    )
    return counted(pairs, "pair") + (f" ({left} left out of each epoch)" if left else "")
