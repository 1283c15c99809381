"""Sampling whose draws depend on each completion's own seed, not on the rows batched with it
(``directpo generate``): transformers' multinomial draws every row of a batch from one shared
stream, so a prompt sampled beside others got other tokens than alone. Each row here has its
own generator and draws by the Gumbel-max trick under greedy decoding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.generation.logits_process import (
    LogitsProcessor,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def warpers_of(
    temperature: float, top_p: float, top_k: int, min_p: float | None
) -> list[LogitsProcessor]:
    """The sampling warpers transformers applies after the other processors, in its order."""
    warpers: list[LogitsProcessor] = []
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p is not None:
        warpers.append(MinPLogitsWarper(min_p))
    return warpers


class SeededSampling(LogitsProcessor):
    """Each row's next token drawn with its own generator: the Gumbel-max trick (the argmax of
    the warped log-probabilities plus −log of Exp(1) noise is a sample of their softmax), run
    under greedy decoding. The shared stream that transformers' multinomial draws from gives a
    row other tokens when its batch holds other rows; here a row's draws depend on its seed
    alone, and a row draws one noise vector per step, whatever the other rows do."""

    def __init__(self, seeds: Sequence[int]):
        self.seeds = list(seeds)
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.generators:  # on the scores' device, at the first step
            self.generators = [
                torch.Generator(scores.device).manual_seed(seed) for seed in self.seeds
            ]
        noise = torch.empty_like(scores, dtype=torch.float32)
        for row, generator in zip(noise, self.generators, strict=True):
            row.exponential_(generator=generator)
        # a draw of exactly 0 (1 in 2^24 in float32) would make a -inf score NaN, which argmax
        # takes: the smallest normal float instead, which still wins among allowed tokens
        return scores.float() - noise.clamp_(min=torch.finfo(torch.float32).tiny).log()


def sample_seed(prompt_seed: int, number: int) -> int:
    """The seed of a prompt's ``number``-th completion (an odd-multiplier mix, 64 bits)."""
    return (prompt_seed + number * 0xBF58476D1CE4E5B9) % 2**64


def row_seed(seed: int, index: int) -> int:
    """The seed of the input's row ``index`` (0-based): ``seed`` mixed with the index by a
    fixed odd multiplier (64 bits), so that neighbouring rows draw unrelated samples."""
    return (seed + index * 0x9E3779B97F4A7C15) % 2**64
