"""Host → device copies that do not stall the GPU.

A copy from pageable host memory makes CUDA wait for every kernel queued before it (the driver
stages the bytes synchronously), so moving each micro-batch with a plain ``.to("cuda")`` drained
the GPU's queue once per micro-batch while the CPU collated the next one. Through pinned memory
the copy is queued like a kernel (``non_blocking``); PyTorch's pinned-memory cache keeps the
staging buffer alive until the copy has run.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import torch

T = TypeVar("T")


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """``tensor`` on ``device``; CPU → CUDA goes through pinned memory, without waiting."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def tensors_to(record: T, device: torch.device | str) -> T:
    """A copy of the dataclass ``record`` with every tensor field on ``device`` (``to_device``)."""
    moved = {}
    for field in dataclasses.fields(record):  # type: ignore[arg-type]
        value = getattr(record, field.name)
        if isinstance(value, torch.Tensor):
            moved[field.name] = to_device(value, device)
    return dataclasses.replace(record, **moved)  # type: ignore[type-var]
