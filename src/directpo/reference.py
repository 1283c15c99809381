"""Reference log-probs behind one interface: ``provider.logprobs(batch) -> [2B] tensor``.

The paper's π_ref is the frozen starting model. Providers: a frozen model (here); later,
adapters disabled, a precomputed disk cache, or none for reference-free losses.
"""

from __future__ import annotations

from typing import Protocol

import torch

from directpo.batching import Batch
from directpo.logprobs import model_logprobs


class ReferenceProvider(Protocol):
    def logprobs(self, batch: Batch) -> torch.Tensor:
        """log π_ref of each row of ``batch`` (chosen rows first), without gradient."""
        ...


class FrozenModelReference:
    """A separate copy of the model: eval mode, no gradients, never updated."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval().requires_grad_(False)

    @torch.no_grad()
    def logprobs(self, batch: Batch) -> torch.Tensor:
        return model_logprobs(self.model, batch)[0]
