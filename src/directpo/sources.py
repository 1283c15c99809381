"""Where each optimizer step's pairs come from: a fixed file of pairs, or online rounds.

The training loop asks its source, before every step, to ``prepare(step)`` and then for that
step's micro-batches (indices into ``pairs``). Both sources hand the loop tokenized pairs, so
the step, logging, evaluation and checkpointing code is the same for offline and online DPO.

* ``FixedPairs``: today's offline DPO: a ``DataSchedule`` (seeded permutation per epoch) over
  the tokenized pairs of ``train_file``.
* ``OnlineRounds``: online (iterative) DPO. Steps are grouped in rounds of ``steps_per_round``;
  at the first step of a round the current policy samples completions for that round's prompts,
  a labeller scores them and pairs are built (online.py); the round's steps then run a
  ``DataSchedule`` over those pairs. The round's pairs are part of every checkpoint, so a run
  resumed in the middle of a round continues on exactly the same pairs.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from directpo.batching import LEGACY_ORDER, TRL_ORDER, DataSchedule
from directpo.callers import spell_option, spell_setting
from directpo.cli_flags import as_written
from directpo.errors import ConfigError
from directpo.pair_store import id_parts
from directpo.resumable import start_from
from directpo.tokenization import TOKENIZATION_RULES, TokenizedPair


@dataclass
class PairSet:
    """Tokenized pairs, the row each came from, and their precomputed reference log-probs."""

    pairs: Sequence[TokenizedPair]  # a PairStore for a file's pairs (pair_store.py)
    sources: list[str]
    reference_table: torch.Tensor | None = None  # [N, 2] when precomputed
    streamed: bool = False  # a stream's first rows: trained in their order, never shuffled


class FixedPairs:
    """The pairs of a file, visited in a seeded order that depends on the step alone."""

    def __init__(
        self,
        pairs: PairSet,
        batch_size: int,
        accumulation: int,
        seed: int,
        drop_last: bool = False,
    ):
        if drop_last and len(pairs.pairs) < batch_size:  # (TRL would train no step)
            raise ConfigError(  # (a recipe's words were said to every caller)
                f"{spell_option('dataloader_drop_last', True, in_recipe=False)} drops every "
                f"epoch's short last batch, and the {len(pairs.pairs)} training pairs fill no "
                f"batch of {batch_size} (per_device_train_batch_size x processes): "
                f"{spell_setting(('dataloader_drop_last', False))}, or lower "
                "per_device_train_batch_size"
            )
        self.pairs = pairs
        self.schedule = DataSchedule(
            len(pairs.pairs), batch_size, accumulation, seed, shuffle=not pairs.streamed,
            drop_last=drop_last,
        )  # fmt: skip
        self._fingerprint: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        return self.schedule.steps_per_epoch

    def total_steps(self, epochs: float, max_steps: int) -> int:
        return self.schedule.total_steps(epochs, max_steps)

    def prepare(self, step: int) -> dict[str, float]:
        return {}

    def micro_batches(self, step: int) -> list[list[int]]:
        return self.schedule.micro_batches(step)

    def epoch_of(self, step: int) -> int:
        return self.schedule.epoch_of(step)

    def epochs_done(self, steps: int) -> float:
        return self.schedule.epochs_done(steps)

    def state(self) -> dict[str, Any]:
        schedule = self.schedule
        if self._fingerprint is None:
            self._fingerprint = pairs_fingerprint(self.pairs.pairs)
        return {
            "num_examples": schedule.num_examples,
            "batch_size": schedule.batch_size,
            "accumulation": schedule.accumulation,
            "seed": schedule.seed,
            "pairs_fingerprint": self._fingerprint,
            "tokenization_rules": TOKENIZATION_RULES,
            "streamed": self.pairs.streamed,
            "data_order": schedule.order,
            "drop_last": schedule.drop_last,
        }

    def restore(self, state: dict[str, Any], checkpoint: str) -> list[str]:
        """Refuse a checkpoint whose data order differs from this run's. A stream's pairs are
        trained in order, so a longer max_steps, which reads more of it, continues as an
        uninterrupted run of that max_steps would, when the checkpoint's rows begin this run's:
        said in a line (it was refused). A checkpoint of directpo's earlier data order goes on
        in that order (its next steps are the pairs an uninterrupted run would have taken)."""
        notes = self._keep_order(state.get("data_order", LEGACY_ORDER), checkpoint)
        now, seen = self.state(), state.get("num_examples")
        if note := _regrouped(state, now, checkpoint):
            notes.append(note)  # (the same pairs each step: compared as the checkpoint's)
            now = {**now, "batch_size": state["batch_size"], "accumulation": state["accumulation"]}
        longer = now.get("streamed") and state.get("streamed") and seen < now["num_examples"]
        if not longer:
            _check_same(state, now, checkpoint)
            return notes
        prefix = pairs_fingerprint(self.pairs.pairs[:seen])
        _check_same(state, {**now, "num_examples": seen, "pairs_fingerprint": prefix}, checkpoint)
        return [
            *notes,
            f"resume: {checkpoint} read the stream's first {seen} pairs, this run reads "
            f"{now['num_examples']} (max_steps): it goes on through them in the stream's order, "
            "as an uninterrupted run of this max_steps",
        ]

    def _keep_order(self, saved: int, checkpoint: str) -> list[str]:
        """The checkpoint's data order from here on (a stream's pairs are never shuffled, so
        its order changes nothing there); a line saying so where it is not TRL's."""
        if saved == self.schedule.order or not self.schedule.shuffle:
            return []
        self.schedule = replace(self.schedule, order=saved)
        if saved == TRL_ORDER:
            return []
        return [
            f"resume: {checkpoint} was written by a directpo that shuffled the pairs in its "
            "own order, not TRL's; the run goes on in that order (a new run takes TRL's)"
        ]


# A round's pairs come from sampling with the current policy: (round, prompt indices) -> pairs
RoundBuilder = Callable[[int, list[int]], tuple[PairSet, dict[str, float]]]


@dataclass
class OnlineRounds:
    """Online DPO's rounds over a list of prompts (see the module docstring)."""

    num_prompts: int
    prompts_per_round: int
    steps_per_round: int
    batch_size: int  # pairs per global micro-batch
    accumulation: int
    seed: int
    build_round: RoundBuilder
    first_round: PairSet | None = None  # pairs given in train_file: round 0, already on-policy
    # how rounds sample, label and pair (options by name): a change on resume is said
    sampling: dict[str, Any] = field(default_factory=dict)
    round: int = -1  # the round whose pairs are loaded
    pairs: PairSet = field(default_factory=lambda: PairSet([], []))
    schedule: DataSchedule | None = None

    def __post_init__(self) -> None:
        self.prompts_per_round = min(self.prompts_per_round, self.num_prompts)

    @property
    def rounds_per_epoch(self) -> int:
        return math.ceil(self.num_prompts / self.prompts_per_round)

    @property
    def steps_per_epoch(self) -> int:
        return self.rounds_per_epoch * self.steps_per_round

    def total_steps(self, epochs: float, max_steps: int) -> int:
        if max_steps > 0:
            return max_steps
        return max(1, math.ceil(epochs * self.rounds_per_epoch)) * self.steps_per_round

    def epoch_of(self, step: int) -> int:
        return step // self.steps_per_epoch

    def epochs_done(self, steps: int) -> float:
        return steps / self.steps_per_epoch

    def round_of(self, step: int) -> int:
        return step // self.steps_per_round

    def round_prompts(self, round_index: int) -> list[int]:
        """Prompt indices of a round: consecutive slices of a seeded permutation per epoch."""
        first = round_index * self.prompts_per_round
        indices = []
        for position in range(first, first + self.prompts_per_round):
            epoch, offset = divmod(position, self.num_prompts)
            indices.append(self._permutation(epoch)[offset])
        return indices

    def _permutation(self, epoch: int) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 7)
        return torch.randperm(self.num_prompts, generator=generator).tolist()

    def prepare(self, step: int) -> dict[str, float]:
        """Load the pairs of ``step``'s round (sampling them at its first step); the round's
        metrics when a round was sampled now."""
        round_index = self.round_of(step)
        if round_index == self.round:
            return {}
        metrics: dict[str, float] = {}
        if round_index == 0 and self.first_round is not None:
            self.pairs = self.first_round
            metrics = {"online/round": 0.0, "online/pairs": float(len(self.pairs.pairs))}
        else:
            self.pairs, metrics = self.build_round(round_index, self.round_prompts(round_index))
        self.round = round_index
        self.schedule = None
        if self.pairs.pairs:
            self.schedule = self._round_schedule(len(self.pairs.pairs), round_index)
        return metrics

    def _round_schedule(self, num_pairs: int, round_index: int) -> DataSchedule:
        """A round's pairs in directpo's own order (no TRL trainer shuffles rounds; each
        round's seed, seed x 1000003 + round, keeps one round's second epoch from being the
        next round's first, which TRL's seed + epoch would make it)."""
        return DataSchedule(
            num_pairs, self.batch_size, self.accumulation, self.seed * 1_000_003 + round_index,
            order=LEGACY_ORDER,
        )  # fmt: skip

    def micro_batches(self, step: int) -> list[list[int]]:
        """This step's micro-batches of the round's pairs (none when the round found none)."""
        if self.schedule is None:
            return []
        return self.schedule.micro_batches(step - self.round * self.steps_per_round)

    def state(self) -> dict[str, Any]:
        return {
            "online": True,
            "num_prompts": self.num_prompts,
            "prompts_per_round": self.prompts_per_round,
            "steps_per_round": self.steps_per_round,
            "batch_size": self.batch_size,
            "accumulation": self.accumulation,
            "seed": self.seed,
            "round": self.round,
            "round_pairs": [[p.prompt_ids, p.chosen_ids, p.rejected_ids] for p in self.pairs.pairs],
            "round_sources": self.pairs.sources,
            "sampling": self.sampling,
        }

    def restore(self, state: dict[str, Any], checkpoint: str) -> list[str]:
        """Continue from a checkpoint: the same data order, and the round's pairs as they were.
        Returns what is said: sampling options changed since the checkpoint, which later rounds
        use (the run then differs from an uninterrupted one from the next round on)."""
        mine = self.state()
        _check_same(
            state,
            {k: mine[k] for k in mine if k not in ("round", "round_pairs", "round_sources",
                                                   "sampling")},
            checkpoint,
        )  # fmt: skip
        saved = state.get("sampling", {})
        changed = [
            said_change(key, saved[key], value)
            for key, value in self.sampling.items()
            if key in saved and saved[key] != value
        ]
        self.round = state["round"]
        pairs = [TokenizedPair(*p) for p in state["round_pairs"]]
        self.pairs = PairSet(pairs, list(state["round_sources"]))
        self.schedule = None
        if pairs:
            self.schedule = self._round_schedule(len(pairs), self.round)
        if not changed:
            return []
        return [
            f"resume: {', '.join(changed)} since the checkpoint; rounds after round "
            f"{self.round} sample with this run's values"
        ]


def said_change(key: str, before: Any, after: Any) -> str:
    """``key before -> after``; a long value (a chat template's text) is only said changed."""
    if max(len(str(before)), len(str(after))) > 60:
        return f"{key} (changed)"
    return f"{key} {before} -> {after}"


def pairs_fingerprint(pairs: Sequence[TokenizedPair]) -> str:
    """A checksum of the tokenized pairs in their order (the data a checkpoint was trained on:
    file, rows, tokenizer and truncation options)."""
    digest = hashlib.blake2b(digest_size=16)
    for *parts, _ in id_parts(pairs):
        for ids in parts:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes())
            digest.update(b"|")
    return digest.hexdigest()


# what each TOKENIZATION_RULES number changed, said when a checkpoint's pairs differ
RULE_CHANGES = {
    2: "a chat completion ends at the model's end-of-turn token, with no EOS after it",
    3: "a text prompt's images are written as the chat template writes an image (Qwen-VL's "
    "<|vision_start|> and <|vision_end|> around its image tokens)",
}


def _regrouped(saved: dict[str, Any], now: dict[str, Any], checkpoint: str) -> str:
    """A resume whose step takes the checkpoint's pairs per step in micro-batches of another
    size (a smaller per_device_train_batch_size after running out of memory, more
    gradient_accumulation_steps): each step is one slice of the epoch's order either way, so
    its pairs are the same (a dropped short last micro-batch depends on the size: not then).
    It was refused; it goes on, said in a line. "" where nothing was regrouped."""
    before = (saved.get("batch_size"), saved.get("accumulation"))
    after = (now["batch_size"], now["accumulation"])
    if None in before or before == after or now.get("drop_last") or saved.get("drop_last"):
        return ""
    if before[0] * before[1] != after[0] * after[1]:
        return ""
    return (
        f"resume: {checkpoint} took its {after[0] * after[1]} pairs per step as {before[0]} x "
        f"{before[1]} (per_device_train_batch_size x processes, gradient_accumulation_steps), "
        f"this run as {after[0]} x {after[1]}: the same pairs at each step"
    )


def _pairs_per_step(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """Another batch size or accumulation refused, said as the pairs per step that a resume
    keeps in micro-batches of any size (``_regrouped``): 'resume with 4' of a checkpoint of
    4 x 1 did not say that 2 x 2, after running out of memory, goes on. "" where a short last
    micro-batch is dropped (no other size then) or the checkpoint does not record both."""
    before = (saved.get("batch_size"), saved.get("accumulation"))
    after = (now.get("batch_size"), now.get("accumulation"))
    if None in before or None in after or saved.get("drop_last") or now.get("drop_last"):
        return ""
    size, accumulation = before
    smaller = next((d for d in range(2, size + 1) if size % d == 0), None)
    split = f", or {size // smaller} x {accumulation * smaller}" if smaller else ""
    return (
        f"took {size * accumulation} pairs per step as {size} x {accumulation} "
        f"(per_device_train_batch_size x processes, gradient_accumulation_steps), this run "
        f"{after[0] * after[1]} as {after[0]} x {after[1]}; the data order would differ: resume "
        f"with {size * accumulation} pairs per step ({size} x {accumulation}{split}), or start "
        "a new output_dir"
    )


# a recorded data setting and the option that sets it again (data_seed: the order's seed,
# whichever option gave it)
RESUMED_AS = {"drop_last": "dataloader_drop_last", "seed": "data_seed"}


def _check_same(saved: dict[str, Any], now: dict[str, Any], checkpoint: str) -> None:
    names = {
        "batch_size": "batch_size (per_device_train_batch_size x processes)",
        "drop_last": "dataloader_drop_last",
        "seed": "the data order's seed (data_seed, or seed when data_seed is null)",
        # (a stream's pairs are its first max_steps x pairs-per-step rows: a longer max_steps
        # reads more of them, and "num_examples=12" alone did not say why they differ)
        "num_examples": "the pairs read (of a stream: max_steps x pairs per step)",
    }
    rules = saved.get("tokenization_rules", 1)  # (checkpoints before the number: 1)
    # a stream's pairs train in its order, other data shuffled (checkpoints before: shuffled)
    if "streamed" in now and saved.get("streamed", False) != now["streamed"]:
        kinds = ("shuffled (a Dataset or file)", "in their order (a stream)")
        raise ConfigError(
            f"resume_from_checkpoint: {checkpoint} trained its pairs "
            f"{kinds[bool(saved.get('streamed'))]}, this run's {kinds[now['streamed']]}, so its "
            "steps would take other pairs; resume with the data as it was given "
            "(dataset_streaming too), or start a new output_dir"
        )
    for key, value in now.items():
        if key in ("tokenization_rules", "streamed", "data_order"):
            # said only where the pairs differ (the rules may not touch this data); the data
            # order is the checkpoint's (FixedPairs.restore)
            continue
        if (
            key == "pairs_fingerprint"
            and key in saved
            and saved[key] != value
            and rules != (now.get("tokenization_rules", rules))
        ):
            changes = "; ".join(RULE_CHANGES[n] for n in sorted(RULE_CHANGES) if n > rules)
            raise ConfigError(
                f"resume_from_checkpoint: {checkpoint} was tokenized by an earlier directpo "
                f"(tokenization rules {rules}, now {TOKENIZATION_RULES}: {changes}), so its pairs "
                "are other ids now and the run cannot continue as it was: "
                f"{start_from(Path(checkpoint))} in a new output_dir"
            )
        if key == "pairs_fingerprint" and key in saved and saved[key] != value:
            raise ConfigError(
                f"resume_from_checkpoint: {checkpoint} was trained on other pairs (the data's "
                "rows, their order, the tokenizer, the truncation options or the date a "
                "chat template writes, as Llama 3.1+ do, differ); resume with the same data "
                "(the date pinned by chat_template_kwargs: {date_string: ...}), or start a new "
                "output_dir"
            )
        # (drop_last: checkpoints before it kept an epoch's short batch)
        before = saved.get(key, False if key == "drop_last" else None)
        if key == "num_examples" and before != value and not now.get("streamed"):
            # a file's pairs, not a stream's first ones: its rows were edited (or another file)
            raise ConfigError(
                f"resume_from_checkpoint: {checkpoint} was trained on {before} pairs, this run "
                f"has {value} (the data's rows differ): resume with the data as it was, or "
                "start a new output_dir"
            )
        per_step = key in ("batch_size", "accumulation") and before != value
        if per_step and (said := _pairs_per_step(saved, now)):  # (smaller micro-batches go on)
            raise ConfigError(f"resume_from_checkpoint: {checkpoint} {said}")
        if key != "pairs_fingerprint" and before != value:
            # (values as the YAML file and flags write them: "resume with True" is no YAML)
            was, has = as_written(before), as_written(value)
            # (the fix was "resume with false" / "with 5", of no option, in every caller's words)
            option = RESUMED_AS.get(key)
            again = spell_option(option, before, in_recipe=False) if option else was
            raise ConfigError(
                f"resume_from_checkpoint: {checkpoint} was trained with "
                f"{names.get(key, key)}={was}, this run has {has}; the data order "
                f"would differ: resume with {again}, or start a new output_dir"
            )
