"""Tokenized pairs held compactly through a run: every pair's ids end to end in one numpy
buffer (2 bytes a token for a vocabulary under 65536, else 4), with each part's length.

Python lists took ~8 bytes a token plus each list's header (~480 MB per 100k pairs, held through
training in every process, on every rank under torchrun). A pair is made into lists only when a
batch, a fingerprint or a check asks for it: ``store[i]`` is the same ``TokenizedPair``, id for
id, as the lists it was built from.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from directpo.vision import VisionInputs

FLUSH = 1024  # pairs held as lists before they join the buffer

# [start, end) token spans of a completion that are not scored: the tokens of messages the model
# does not write (a tool's result, a user turn; ``assistant_only_loss``, turn_masks.py)
Spans = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class TokenizedPair:
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    vision: VisionInputs | None = None  # the prompt's image inputs (vision-language models)
    unscored: tuple[Spans, Spans] = ((), ())  # chosen's and rejected's tokens left unscored

    @property
    def num_tokens(self) -> int:
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)

    @property
    def longest_sequence(self) -> int:
        """Tokens of prompt + the longer completion."""
        return len(self.prompt_ids) + max(len(self.chosen_ids), len(self.rejected_ids))


def smallest_dtype(top: int) -> type:
    """The narrowest unsigned/signed type that holds ids up to ``top``."""
    if top < 2**16:
        return np.uint16
    if top < 2**31:
        return np.int32
    return np.int64


class PairStore(Sequence[TokenizedPair]):
    """A read-only sequence of ``TokenizedPair`` over one flat id buffer."""

    def __init__(
        self,
        ids: np.ndarray,
        lengths: np.ndarray,
        vision: dict[int, VisionInputs] | None = None,
        unscored: dict[int, tuple[Spans, Spans]] | None = None,
    ):
        self.ids = ids
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(
            -1, 3
        )  # prompt, chosen, rejected
        if int(self.lengths.sum()) != len(ids):
            raise ValueError("the lengths do not add up to the ids")
        ends = np.cumsum(self.lengths.reshape(-1))
        self._starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        self.vision = vision or {}  # pair index -> its prompt's image inputs
        self.unscored = unscored or {}  # pair index -> its unscored spans (few pairs have any)

    def __len__(self) -> int:
        return len(self.lengths)

    @overload
    def __getitem__(self, index: int) -> TokenizedPair: ...
    @overload
    def __getitem__(self, index: slice) -> list[TokenizedPair]: ...
    def __getitem__(self, index: int | slice) -> TokenizedPair | list[TokenizedPair]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("pair index out of range")
        at = 3 * index
        parts = []
        for k in range(3):
            start = int(self._starts[at + k])
            parts.append(self.ids[start : start + int(self.lengths[index, k])].tolist())
        return TokenizedPair(*parts, self.vision.get(index), self.unscored.get(index, ((), ())))

    def __iter__(self) -> Iterator[TokenizedPair]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # (mutable-looking, as a list is)

    def __repr__(self) -> str:
        return f"PairStore({len(self)} pairs, {len(self.ids)} ids as {self.ids.dtype})"

    def parts(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, VisionInputs | None]]:
        """Each pair's prompt, chosen and rejected ids as views of the buffer (no lists)."""
        for index in range(len(self)):
            at = 3 * index
            views = [
                self.ids[int(self._starts[at + k]) : int(self._starts[at + k]) + int(length)]
                for k, length in enumerate(self.lengths[index])
            ]
            yield views[0], views[1], views[2], self.vision.get(index)

    def longest_sequence(self) -> int:
        """Tokens of the longest prompt + its longer completion (0 when empty)."""
        if not len(self):
            return 0
        return int((self.lengths[:, 0] + self.lengths[:, 1:].max(axis=1)).max())


class PairStoreBuilder:
    """Pairs appended one at a time, joined into the buffer ``FLUSH`` pairs at a time (so lists
    of at most that many pairs are held at once)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._lengths: list[tuple[int, int, int]] = []
        self._pending: list[int] = []
        self._pending_pairs = 0
        self._vision: dict[int, VisionInputs] = {}
        self._unscored: dict[int, tuple[Spans, Spans]] = {}

    def append(self, pair: TokenizedPair) -> None:
        if pair.vision is not None:
            self._vision[len(self._lengths)] = pair.vision
        if any(pair.unscored):
            self._unscored[len(self._lengths)] = pair.unscored
        parts = (pair.prompt_ids, pair.chosen_ids, pair.rejected_ids)
        self._lengths.append((len(parts[0]), len(parts[1]), len(parts[2])))
        for part in parts:
            self._pending.extend(part)
        self._pending_pairs += 1
        if self._pending_pairs >= FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._pending:  # each chunk as narrow as its ids (int64 chunks took 8 bytes a token)
            chunk = np.array(self._pending, dtype=np.int64)
            self._chunks.append(chunk.astype(smallest_dtype(int(chunk.max()))))
        self._pending, self._pending_pairs = [], 0

    def build(self) -> PairStore:
        self._flush()
        dtype = np.result_type(np.uint16, *(chunk.dtype for chunk in self._chunks))
        ids = np.concatenate([np.empty(0, dtype), *self._chunks], dtype=dtype)
        self._chunks = []
        lengths = np.array(self._lengths, dtype=np.int64).reshape(-1, 3)
        return PairStore(ids, lengths, self._vision, self._unscored)


def pair_store(pairs: Any) -> PairStore:
    """``pairs`` (any iterable of ``TokenizedPair``) as a store; a store is returned as it is."""
    if isinstance(pairs, PairStore):
        return pairs
    builder = PairStoreBuilder()
    for pair in pairs:
        builder.append(pair)
    return builder.build()


def longest_sequence(pairs: Sequence[TokenizedPair]) -> int:
    """Tokens of the longest prompt + its longer completion, read from a store's lengths
    without making its pairs into lists."""
    if isinstance(pairs, PairStore):
        return pairs.longest_sequence()
    return max((p.longest_sequence for p in pairs), default=0)


def id_parts(
    pairs: Sequence[TokenizedPair],
) -> Iterator[tuple[Sequence[int], Sequence[int], Sequence[int], VisionInputs | None]]:
    """Each pair's (prompt, chosen, rejected ids, vision) for checksums: a store's as views of
    its buffer, without making lists of them."""
    if isinstance(pairs, PairStore):
        yield from pairs.parts()
        return
    for pair in pairs:
        yield pair.prompt_ids, pair.chosen_ids, pair.rejected_ids, pair.vision


def with_images(pairs: Sequence[TokenizedPair], limit: int | None = None) -> list[TokenizedPair]:
    """The pairs whose prompts have images (the first ``limit``), found in a store's index of
    them rather than by making every pair into lists."""
    if isinstance(pairs, PairStore):
        return [pairs[i] for i in sorted(pairs.vision)[:limit]]
    return [pair for pair in pairs if pair.vision is not None][:limit]
