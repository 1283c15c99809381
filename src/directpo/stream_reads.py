"""Streams read before a run: how much of a stream (an ``IterableDataset``, or a file read
with dataset_streaming) a run of max_steps reads, and the start line that says it, once read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from directpo.callers import spell_setting
from directpo.config import DPOConfig
from directpo.preference_pairs import counted


def is_stream(source: Any) -> bool:
    """A ``datasets.IterableDataset`` (``load_dataset(..., streaming=True)``, a generator)."""
    return type(source).__name__ == "IterableDataset" and hasattr(source, "take")


def stream_head(stream: Any, config: DPOConfig, echo: Callable[[str], None]) -> Any:
    """The rows of an online run's stream that its rounds sample (an endless one was read until
    memory ran out, before the first round): ⌈max_steps / steps_per_round⌉ rounds of
    online_prompts_per_round; without max_steps, the whole stream."""
    if read_whole(config, "train_dataset: a stream (IterableDataset)", echo):
        return stream
    rounds = math.ceil(config.max_steps / config.steps_per_round)
    rows = rounds * config.online_prompts_per_round
    echo(
        f"train_dataset: a stream (IterableDataset): its first {counted(rows, 'row')} "
        f"{'is' if rows == 1 else 'are'} read, {counted(rounds, 'online round')} of "
        f"{counted(config.online_prompts_per_round, 'prompt')} (max_steps)"
    )
    return stream.take(rows)


@dataclass(frozen=True)
class StreamPlan:
    label: str
    pairs: int  # what max_steps takes: the most pairs read
    steps: int
    per_step: int  # pairs per step, every process's

    def said(self, read: int) -> str:
        """The start line, once the stream was read: a stream shorter than the run (24 pairs
        for 40) was said to be read for "its first 40 pairs", then went round again."""
        order = (
            "in the stream's order as TRL reads it (stream.shuffle(seed=..., buffer_size=...) "
            "mixes it)"
        )
        if read >= self.pairs:
            return (
                f"{self.label}: its first {counted(self.pairs, 'pair')} "
                f"{'is' if self.pairs == 1 else 'are'} read, {counted(self.steps, 'step')} of "
                f"{counted(self.per_step, 'pair')} (max_steps), {order}"
            )
        return (
            f"{self.label}: it ends after {counted(read, 'pair')}, fewer than the {self.pairs} of "
            f"{counted(self.steps, 'step')} of {counted(self.per_step, 'pair')} (max_steps): the "
            "run goes over them "
            f"again, {self.pairs / read:.3g} passes, each {order}"
        )


def stream_plan(
    config: DPOConfig, world_size: int, echo: Callable[[str], None]
) -> StreamPlan | None:
    """How many pairs of a stream (a train_dataset stream, or dataset_streaming's source) a run
    of max_steps reads: max_steps × pairs per step, what TRL's run over it reads (an endless one
    was read until memory ran out, before the first step); rows skipped as invalid do not count.
    None without max_steps: the whole stream, each epoch over it (TRL refuses that). They are
    trained in the stream's order, as TRL's run takes it, so a longer max_steps begins with a
    shorter one's steps (a resume may raise it)."""
    label = "train_dataset: a stream (IterableDataset)"
    if config.dataset_streaming:  # (dataset_name's is a stream too: the option says why)
        label = "train: dataset_streaming"
    if read_whole(config, label, echo):
        return None
    per_step = config.per_device_train_batch_size * config.gradient_accumulation_steps
    per_step *= world_size
    return StreamPlan(label, config.max_steps * per_step, config.max_steps, per_step)


def read_whole(config: DPOConfig, label: str, echo: Callable[[str], None]) -> bool:
    """Whether a stream is read whole (no max_steps), which is said."""
    if config.max_steps > 0:
        return False
    echo(
        f"{label} without max_steps: it is read whole before the first step (an endless one "
        f"never ends: {spell_setting('max_steps')})"
    )
    return True
