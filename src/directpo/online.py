"""Online DPO: one round = sample from the current policy, label, build pairs.

A round's prompts are cut into chunks of ``per_device_eval_batch_size``; chunk c is sampled
with its own seed (seed, round, c), so the samples do not depend on how many processes share
the round: rank r samples chunks r, r + W, ... and the pairs are gathered in chunk order, which
makes a 2-process run sample exactly what one process does. Under FSDP every rank runs the same
number of ``generate`` calls (a rank short of chunks repeats its last one, discarded).

The labellers that score a round's samples are labellers.py's (``load_labeller``);
``missing_eos_penalty`` is subtracted from a completion that never ended (TRL's).

A round's metrics carry TRL OnlineDPOTrainer's names and formulas, over the round's samples:
``objective/scores`` (mean reward), ``objective/scores_margin`` (mean chosen − rejected reward
of the pairs built), ``objective/kl`` (mean Σ_t log π − log π_ref of a sample, π the policy
that sampled it), ``objective/non_score_reward`` (−β·kl), ``objective/rlhf_reward`` (reward −
β·kl), ``objective/entropy`` (−mean Σ_t log π), ``val/contain_eos_token``, ``beta``; the kl
terms only when a reference is loaded (a reference-free loss without eval_generate has none).

Pairs per prompt: ``best_worst`` (the highest- against the lowest-reward completion) or
``above_gap`` (every pair whose gap exceeds ``online_reward_gap``, largest gaps first, at most
``online_max_pairs_per_prompt``); never two identical completions.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from directpo.batching import collate_sequences
from directpo.config import DPOConfig
from directpo.distributed import World, all_gather_objects, unsharded_root
from directpo.errors import DirectpoError
from directpo.eval_samples import samples_logprobs
from directpo.generate import Sample, sample_completions, stop_token_ids
from directpo.jsonl import write_jsonl
from directpo.labellers import Labeller
from directpo.messages import Text
from directpo.preference_pairs import ImagePrompt, counted, prompt_of
from directpo.reference import ReferenceProvider
from directpo.rewardfn import (
    STATE,
    labelling_at,
    trainer_state,
)
from directpo.sources import PairSet
from directpo.tokenization import TokenizedPair
from directpo.tokenizer_loading import pad_token_id


@dataclass(frozen=True)
class OnlineData:
    """What the model card says of an online run's training data."""

    prompts: int
    source: str

    def summary(self) -> str:
        prompts = counted(self.prompts, "prompt")
        return f"{self.source}: {prompts}, pairs sampled online from the policy"


def build_pairs(
    candidates: Sequence[tuple[Sample, float]], mode: str, gap: float, limit: int
) -> list[tuple[Sample, Sample, float, float]]:
    """(chosen, rejected, chosen reward, rejected reward) of one prompt's scored samples."""
    usable = [(s, r) for s, r in candidates if s.completion_ids and not math.isnan(r)]
    if mode == "best_worst":
        if len(usable) < 2:
            return []
        best = max(usable, key=lambda item: item[1])
        worst = min(usable, key=lambda item: item[1])
        distinct = best[0].completion_ids != worst[0].completion_ids
        if best[1] - worst[1] > gap and distinct:
            return [(best[0], worst[0], best[1], worst[1])]
        return []
    pairs = [
        (a, b, ra, rb)
        for a, ra in usable
        for b, rb in usable
        if ra - rb > gap and a.completion_ids != b.completion_ids
    ]
    pairs.sort(key=lambda p: -(p[2] - p[3]))
    return pairs[:limit] if limit else pairs


class RoundBuilder:
    """Builds a round's pairs for ``OnlineRounds`` with the run's policy and labeller."""

    def __init__(
        self,
        config: DPOConfig,
        world: World,
        tokenizer: Any,
        prompts: list[Text | ImagePrompt],
        columns: list[dict[str, Any]],
        labeller: Labeller,
        output_dir: Any,
    ):
        self.config, self.world, self.tokenizer = config, world, tokenizer
        self.prompts, self.columns, self.labeller = prompts, columns, labeller
        self.output_dir = output_dir
        self.policy: torch.nn.Module | None = None  # set once the run holds it
        self.scorer: torch.nn.Module | None = None  # the FSDP root to unshard for generation
        self.reference: ReferenceProvider | None = None  # for the samples' KL (when loaded)
        self.max_steps = 0  # the run's (reward functions' trainer_state), set once known
        self._forwarded = False

    def __call__(self, round_index: int, prompt_indices: list[int]) -> tuple[PairSet, dict]:
        start = time.perf_counter()
        scored = self._sample_and_label(round_index, prompt_indices)
        pairs, sources, records, rewards, margins = [], [], [], [], []
        measured: list[SampleStats] = []
        for prompt_index, candidates, stats in scored:
            rewards += [r for _, r in candidates]
            measured += stats
            built = build_pairs(
                candidates, self.config.online_pairs, self.config.online_reward_gap,
                self.config.online_max_pairs_per_prompt,
            )  # fmt: skip
            for chosen, rejected, chosen_reward, rejected_reward in built:
                ids = (chosen.prompt_ids, chosen.completion_ids, rejected.completion_ids)
                pairs.append(TokenizedPair(*ids))
                sources.append(f"round {round_index}, prompt {prompt_index}")
                margins.append(chosen_reward - rejected_reward)
            records.append(
                {
                    "round": round_index,
                    "prompt": prompt_of(self.prompts[prompt_index]),
                    "completions": [s.text for s, _ in candidates],
                    "rewards": [None if math.isnan(r) else r for _, r in candidates],
                    "pairs": [[c.text, r.text] for c, r, _, _ in built],
                }
            )
        if self.world.is_main:
            folder = self.output_dir / "online"
            folder.mkdir(exist_ok=True)
            write_jsonl(folder / f"round-{round_index}.jsonl", records)
        metrics = {
            "online/round": float(round_index),
            **round_objective(rewards, margins, measured, self.config.beta),
        }
        if rewarded(rewards):  # (a max of nothing is no reward of 0)
            metrics["online/reward_max"] = max(rewarded(rewards))
        metrics |= {
            "online/pairs": float(len(pairs)),
            "online/samples": float(len(rewards)),
            "online/scored": float(len(rewarded(rewards))),
            "online/sampling_seconds": time.perf_counter() - start,
        }
        return PairSet(pairs, sources), metrics

    def _sample_and_label(
        self, round_index: int, prompt_indices: list[int]
    ) -> list[tuple[int, list[tuple[Sample, float]], list[SampleStats]]]:
        """(prompt index, [(sample, reward)], [its samples' stats]) of every prompt of the
        round, in round order, whichever rank sampled it."""
        world, size = self.world, self.config.per_device_eval_batch_size
        chunks = [prompt_indices[i : i + size] for i in range(0, len(prompt_indices), size)]
        ranks = world.size if world.enabled else 1
        mine = list(range(world.rank, len(chunks), ranks))
        scored: list[tuple[int, int, list[tuple[Sample, float]], list[SampleStats]]] = []
        for call in range(-(-len(chunks) // ranks)):  # the same number of calls on every rank
            own = call < len(mine)
            chunk_index = mine[call] if own else mine[-1] if mine else 0
            indices = chunks[chunk_index]
            samples, stats = self._sample(indices, round_index, chunk_index)
            if own:
                with labelling_at(f"online round {round_index}"):
                    rewards = self._label(indices, samples, self._trainer_state(round_index))
                penalty = self.config.missing_eos_penalty  # TRL's: cut by the token limit
                if penalty is not None:
                    rewards = [
                        r if stat.ended else r - penalty
                        for r, stat in zip(rewards, stats, strict=True)
                    ]
                for offset in range(len(indices)):
                    mask = [sample.prompt_index == offset for sample in samples]
                    candidates = [
                        (sample, reward)
                        for sample, reward, keep in zip(samples, rewards, mask, strict=True)
                        if keep
                    ]
                    kept = [stat for stat, keep in zip(stats, mask, strict=True) if keep]
                    scored.append((chunk_index, offset, candidates, kept))
        gathered = [item for part in all_gather_objects(scored, world) for item in part]
        gathered.sort(key=lambda item: (item[0], item[1]))
        return [(chunks[c][offset], cands, stats) for c, offset, cands, stats in gathered]

    def _sample(
        self, indices: list[int], round_index: int, chunk_index: int
    ) -> tuple[list[Sample], list[SampleStats]]:
        config = self.config
        assert self.policy is not None
        sharded = self.world.mode == "fsdp"
        gather = sharded and self.scorer is not None
        if gather and not self._forwarded:  # FSDP initialises on its root's first forward
            self._forward_once()
        prompt_tokens, new_tokens = config.online_sampling  # the pairs fit max_length
        with unsharded_root(self.scorer) if gather else contextlib.nullcontext():
            samples = sample_completions(
                self.policy,
                self.tokenizer,
                [self.prompts[i] for i in indices],
                num_samples=config.online_samples_per_prompt,
                max_new_tokens=new_tokens,
                seed=(config.seed * 1_000_003 + round_index) * 10_007 + chunk_index,
                batch_size=max(1, len(indices)),
                max_prompt_length=prompt_tokens,
                synced=sharded and self.world.size > 1,
                **config.sampling,
            )
            return samples, self._stats(samples)

    @torch.no_grad()
    def _stats(self, samples: list[Sample]) -> list[SampleStats]:
        """Each sample's log π (the policy that sampled it), log π_ref and whether it ended:
        TRL's objective/* and val/contain_eos_token. A chunk's prompts at a time (an eval
        batch), so that every FSDP rank runs as many forwards as the others: one per sample of
        a prompt, whatever the chunk's size."""
        assert self.policy is not None
        width = max(1, -(-len(samples) // self.config.online_samples_per_prompt))
        logps, ref = samples_logprobs(
            samples, self.policy, self.reference, pad_token_id(self.tokenizer),
            self.world.device, width,
        )  # fmt: skip
        ref_logps: list[float | None] = [None] * len(samples) if ref is None else ref.tolist()
        stops = set(stop_token_ids(self.policy, self.tokenizer))
        return [
            SampleStats(logp, ref_logp, bool(s.completion_ids) and s.completion_ids[-1] in stops)
            for s, logp, ref_logp in zip(samples, logps.tolist(), ref_logps, strict=True)
        ]

    @torch.no_grad()
    def _forward_once(self) -> None:
        """One tiny forward through the FSDP root (every rank), before the first generation."""
        assert self.scorer is not None
        batch = collate_sequences([([0, 1], [2])], 0).to(self.world.device)
        self.scorer(batch)
        self._forwarded = True

    def _trainer_state(self, round_index: int) -> Any:
        """TRL's trainer_state at the round's first step (a round is sampled before it)."""
        per_round = min(self.config.online_prompts_per_round, len(self.prompts))
        rounds_per_epoch = -(-len(self.prompts) // per_round)
        steps = self.config.steps_per_round
        return trainer_state(round_index * steps, self.max_steps, rounds_per_epoch * steps)

    def _label(self, indices: list[int], samples: list[Sample], state: Any = None) -> list[float]:
        prompts = [self.prompts[indices[s.prompt_index]] for s in samples]
        # each sample's row: its prompt's other columns and its token ids (TRL's completion_ids)
        given = {} if state is None else {STATE: state}  # (TRL's trainer_state)
        rows = [
            {**self.columns[indices[s.prompt_index]], "completion_ids": s.completion_ids, **given}
            for s in samples
        ]
        rewards = self.labeller(prompts, [s.text for s in samples], rows)
        if len(rewards) != len(samples):
            raise DirectpoError(
                f"the online labeller returned {len(rewards)} rewards for {len(samples)} samples"
            )
        return [float(r) for r in rewards]


@dataclass(frozen=True)
class SampleStats:
    """A sampled completion's log π, log π_ref (None without a reference) and whether it ends
    with a stop token."""

    logp: float
    ref_logp: float | None
    ended: bool


def round_objective(
    rewards: list[float], margins: list[float], stats: list[SampleStats], beta: float
) -> dict[str, float]:
    """TRL OnlineDPOTrainer's metrics of a round's samples (same names, same formulas): its
    rewards (after missing_eos_penalty), the built pairs' reward margins and the samples'
    log-probs. A round whose samples no labeller scored has no ``objective/scores`` nor
    ``objective/rlhf_reward`` (a mean of nothing: it was logged as a reward of 0)."""
    n = max(len(stats), 1)
    metrics = {"objective/scores": mean(rewarded(rewards))} if rewarded(rewards) else {}
    if margins:
        metrics["objective/scores_margin"] = sum(margins) / len(margins)
    if stats and all(s.ref_logp is not None for s in stats):
        kls = [s.logp - s.ref_logp for s in stats]  # type: ignore[operator]
        kl = sum(kls) / n
        rlhf = [r - beta * k for r, k in zip(rewards, kls, strict=True)]
        metrics |= {
            "objective/kl": kl,
            "objective/non_score_reward": -beta * kl,
        }
        if rewarded(rlhf):
            metrics["objective/rlhf_reward"] = mean(rewarded(rlhf))
    metrics["objective/entropy"] = -sum(s.logp for s in stats) / n
    metrics["val/contain_eos_token"] = sum(s.ended for s in stats) / n
    metrics["beta"] = beta
    return metrics


def rewarded(values: list[float]) -> list[float]:
    """The values of scored completions (an unscored one's reward is NaN)."""
    return [v for v in values if not math.isnan(v)]


def mean(values: list[float]) -> float:
    return sum(values) / max(len(values), 1)
