"""auto_find_batch_size (transformers' option): a training step that runs out of GPU memory is
run again with each micro-batch split in two, as if per_device_train_batch_size were halved and
gradient_accumulation_steps doubled, until it fits or a micro-batch holds one pair.

Transformers halves the batch alone, which changes the run (a smaller batch per optimizer
step). Here the step's pairs stay those of the configured batch (the data order is cut by
per_device_train_batch_size x gradient_accumulation_steps) and the loss stays the mean over
them whatever the micro-batches, so the run is the one asked for, in smaller pieces (the same
numbers up to float rounding; aot's loss, which sorts within a micro-batch, would not be:
config_checks refuses the two together); a resume or a rerun of config.yaml takes the same
steps. The split is kept for the rest of the run and said each time it grows.
"""

from __future__ import annotations

import gc
import math
from typing import Any

import torch

from directpo.errors import memory_kind
from directpo.process_state import release_frames


def split_micro_batches(micro_batches: list[list[int]], split: int) -> list[list[int]]:
    """Each micro-batch cut into ``split`` consecutive pieces (fewer when it is small)."""
    if split == 1:
        return micro_batches
    pieces = []
    for indices in micro_batches:
        size = max(1, math.ceil(len(indices) / split))
        pieces += [indices[start : start + size] for start in range(0, len(indices), size)]
    return pieces


def retry_smaller(run: Any, step: int, error: BaseException) -> bool:
    """After ``error`` in step ``step``'s forward or backward: whether it ran out of memory (the
    GPU's, or the host's: errors.memory_kind) and can be run again in smaller micro-batches; if
    so the gradients of the attempt are dropped, its memory freed and the new sizes said. The
    optimizer has not stepped: nothing else changed."""
    config = run.config
    kind = memory_kind(error)
    if kind is None:
        return False
    micro_batches = split_micro_batches(run.source.micro_batches(step), run.micro_split)
    largest = max((len(indices) for indices in micro_batches), default=0)
    if not config.auto_find_batch_size or largest <= 1:
        return False
    release_frames(error)  # the failed attempt's activations, held by the traceback's frames
    run.optimizer.zero_grad(set_to_none=True)
    for param in run.policy.parameters():  # (under mixed precision, the bf16 compute copies')
        param.grad = None
    gc.collect()
    torch.cuda.empty_cache()
    run.micro_split *= 2
    batch = math.ceil(config.per_device_train_batch_size / run.micro_split)
    accumulation = config.gradient_accumulation_steps * run.micro_split
    run.echo(
        f"step {step + 1}: out of {kind} memory with micro-batches of {largest} pairs; "
        f"auto_find_batch_size: trying it again as per_device_train_batch_size {batch}, "
        f"gradient_accumulation_steps {accumulation} (the same pairs per step)"
    )
    return True
