"""Token ids -> padded tensors, and the order in which pairs are visited.

The paired layout: a batch of B pairs becomes 2B right-padded rows, the B chosen sequences
(prompt + chosen) first, then the B rejected ones (prompt + rejected). ``completion_mask`` is
True exactly on completion tokens; the log-prob of token t is read from the logits at t - 1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from directpo.tokenization import TokenizedPair


@dataclass
class Batch:
    input_ids: torch.Tensor  # [2B, T] long
    attention_mask: torch.Tensor  # [2B, T] long, 1 on real tokens
    completion_mask: torch.Tensor  # [2B, T] bool, True on completion tokens
    num_pairs: int
    reference_logps: torch.Tensor | None = None  # [2B], when precomputed

    @property
    def num_tokens(self) -> int:
        return int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        reference = self.reference_logps
        return Batch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.completion_mask.to(device),
            self.num_pairs,
            None if reference is None else reference.to(device),
        )


def collate_pairs(
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    reference_logps: torch.Tensor | None = None,
) -> Batch:
    """The paired layout: B chosen rows, then B rejected rows.

    ``reference_logps`` ([B, 2], chosen and rejected), when precomputed, rides along.
    """
    rows = [(p.prompt_ids, p.chosen_ids) for p in pairs] + [
        (p.prompt_ids, p.rejected_ids) for p in pairs
    ]
    batch = collate_sequences(rows, pad_token_id, num_pairs=len(pairs))
    if reference_logps is not None:
        batch.reference_logps = torch.cat([reference_logps[:, 0], reference_logps[:, 1]])
    return batch


def collate_sequences(
    rows: Sequence[tuple[Sequence[int], Sequence[int]]], pad_token_id: int, num_pairs: int = 0
) -> Batch:
    """Right-padded (prompt + completion) rows with the completion positions marked."""
    width = max(len(prompt) + len(completion) for prompt, completion in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    completion_mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (prompt, completion) in enumerate(rows):
        n_prompt, n_total = len(prompt), len(prompt) + len(completion)
        input_ids[i, :n_total] = torch.tensor([*prompt, *completion], dtype=torch.long)
        attention_mask[i, :n_total] = 1
        completion_mask[i, n_prompt:n_total] = True
    return Batch(input_ids, attention_mask, completion_mask, num_pairs)


@dataclass(frozen=True)
class DataSchedule:
    """Which pairs each optimizer step uses: a pure function of (seed, step).

    Each epoch visits the pairs in a fresh seeded permutation, cut into micro-batches of
    ``batch_size`` (the last may be smaller); ``accumulation`` consecutive micro-batches make one
    optimizer step (the epoch's last step may have fewer). Because the position is derived from
    the step number alone, resuming needs nothing but the step.
    """

    num_examples: int
    batch_size: int
    accumulation: int
    seed: int

    @property
    def micro_batches_per_epoch(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.micro_batches_per_epoch / self.accumulation)

    def total_steps(self, num_train_epochs: float, max_steps: int) -> int:
        if max_steps > 0:
            return max_steps
        return max(1, math.ceil(self.steps_per_epoch * num_train_epochs))

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    @functools.lru_cache(maxsize=2)  # noqa: B019 - frozen and tiny; one epoch is reused
    def permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of optimizer step ``step`` (0-based)."""
        order = self.permutation(self.epoch_of(step))
        first = (step % self.steps_per_epoch) * self.accumulation
        last = min(first + self.accumulation, self.micro_batches_per_epoch)
        return [order[m * self.batch_size : (m + 1) * self.batch_size] for m in range(first, last)]


def eval_batches(num_examples: int, batch_size: int) -> list[list[int]]:
    return [
        list(range(start, min(start + batch_size, num_examples)))
        for start in range(0, num_examples, batch_size)
    ]
