"""Token ids -> model-ready tensors, and the order in which pairs are visited.

Every batch, whatever its layout, yields one log-prob per *sequence*: the B chosen sequences
(prompt + chosen) first, then the B rejected ones (prompt + rejected). Three layouts
(``Layout``), all giving the same log-probs:

* plain: 2B right-padded rows, causal attention with a 2D padding mask (any model).
* ``share_prefix``: each pair is one segment ``[prompt][chosen][rejected]``; rejected tokens
  see the prompt and themselves, not the chosen tokens, and their position ids continue from
  the prompt's end, so the prompt is encoded once instead of twice.
* ``pack``: segments are packed into rows, first-fit by decreasing length, up to a token
  budget; attention is block-diagonal (a segment never sees another) and position ids restart
  at each segment, so almost no padding is computed.

The non-plain layouts need a per-row attention rule (``segment_ids`` / ``branch_ids``, made into
a 4D mask, varlen segments or a FlexAttention block mask by ``logprobs.model_inputs``). Which token
predicts which is explicit: completion token k is scored by the logits at ``predict_from[k]``
(a flat index into the [rows × width] grid), because with prefix sharing the first rejected
token is predicted by the last prompt token, not by its left neighbour.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from directpo.attention import VarlenPlan, build_plan
from directpo.devices import to_device
from directpo.flexattention import FlexBlocks, block_mask, flex_blocks
from directpo.pair_store import Spans
from directpo.tokenization import TokenizedPair
from directpo.vision import VisionInputs, batch_tensors

PROMPT_BRANCH = 0  # branch id of prompt tokens; completions are 1, 2, ...

# How an epoch's permutation is seeded (a checkpoint records it: ``data_order``).
# 1: directpo's own, ``seed × 1000003 + epoch`` (checkpoints without the number; online rounds'
#    pairs, whose per-round seeds ``seed × 1000003 + round`` would otherwise make one round's
#    second epoch the next round's first).
# 2: TRL's: transformers' Trainer shuffles through accelerate's SeedableRandomSampler,
#    ``torch.randperm(n)`` from a CPU generator seeded ``data_seed + epoch`` (data_seed:
#    seed when null), so the same seed visits the pairs in TRL's order, step by step.
LEGACY_ORDER = 1
TRL_ORDER = 2


@dataclass(frozen=True)
class Layout:
    """How the sequences of a batch are laid out in rows (see the module docstring)."""

    share_prefix: bool = False
    pack: bool = False
    pack_max_tokens: int = 0  # row budget when packing; 0: see ``row_budget``
    varlen: bool = False  # attention by segments (attention.py), not by a dense mask
    flex: bool = False  # attention by FlexAttention blocks (flexattention.py)
    pad_multiple: int = 1  # row width rounded up to a multiple of this (repeating shapes)

    def row_budget(self, lengths: Sequence[int]) -> int:
        """Tokens per packed row: ``pack_max_tokens``, else the longest segment (a dense mask
        costs width² per row) or, with varlen or FlexAttention (which skip what a segment does
        not see), everything in one row (no padding)."""
        if self.pack_max_tokens:
            return max(self.pack_max_tokens, *lengths)
        return sum(lengths) if self.varlen or self.flex else max(lengths)

    @property
    def is_plain(self) -> bool:
        return not (self.share_prefix or self.pack)


PLAIN = Layout()


@dataclass
class Batch:
    input_ids: torch.Tensor  # [R, T] long
    attention_mask: torch.Tensor  # [R, T] long, 1 on real tokens
    predict_from: torch.Tensor  # [K] long: flat index (row * T + t) of the logits scoring ...
    target_ids: torch.Tensor  # [K] long: ... completion token k
    target_sequence: torch.Tensor  # [K] long: which sequence token k belongs to
    num_sequences: int  # 2B for pairs: chosen sequences first, then rejected
    num_pairs: int
    sequence_tokens: int  # Σ over sequences of len(prompt + completion), whatever the layout
    position_ids: torch.Tensor | None = None  # [R, T]; None: 0, 1, 2, ... in every row
    segment_ids: torch.Tensor | None = None  # [R, T]; None: plain causal rows
    branch_ids: torch.Tensor | None = None  # [R, T]; 0 prompt, 1.. completions
    reference_logps: torch.Tensor | None = None  # [2B], when precomputed
    varlen: VarlenPlan | None = None  # segments for varlen attention (layout.varlen)
    flex: FlexBlocks | None = None  # FlexAttention's visited blocks (layout.flex)
    # vision-language models: image tensors in row order (pixel_values, image_grid_thw, ...)
    # and per-token types [R, T] by input name (mm_token_type_ids, Gemma 3's token_type_ids;
    # Mllama's cross_attention_mask, [R, T, images, tiles]);
    # position_ids are then [3, R, T] for 3D rotary models
    images: dict[str, torch.Tensor] | None = None
    token_types: dict[str, torch.Tensor] | None = None
    token_counts: torch.Tensor | None = None  # completion_tokens, kept from before a move
    # the BlockMask of ``flex``, made once for the policy's and the reference's forwards (an
    # init field: DDP rebuilds dataclass inputs with replace())
    _block_mask: Any = field(default=None, repr=False, compare=False)

    def flex_block_mask(self) -> Any:
        """FlexAttention's ``BlockMask`` for these rows (needs ``flex``: layout.flex)."""
        assert self.flex is not None and self.segment_ids is not None
        assert self.branch_ids is not None
        if self._block_mask is None:
            self._block_mask = block_mask(self.flex, self.segment_ids, self.branch_ids)
        return self._block_mask

    @property
    def num_tokens(self) -> int:
        """Tokens the model computes (padding excluded)."""
        return int(self.attention_mask.sum())

    @property
    def completion_tokens(self) -> torch.Tensor:
        """[num_sequences] number of scored tokens of each sequence."""
        if self.token_counts is not None:
            return self.token_counts
        return torch.bincount(self.target_sequence, minlength=self.num_sequences)

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device`` (queued behind the GPU's work, not waiting for it)."""

        def move(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else to_device(tensor, device)

        return replace(
            self,
            input_ids=to_device(self.input_ids, device),
            attention_mask=to_device(self.attention_mask, device),
            predict_from=to_device(self.predict_from, device),
            target_ids=to_device(self.target_ids, device),
            target_sequence=to_device(self.target_sequence, device),
            # counted where the ids are (a bincount on the GPU would wait for it)
            token_counts=to_device(self.completion_tokens, device),
            position_ids=move(self.position_ids),
            segment_ids=move(self.segment_ids),
            branch_ids=move(self.branch_ids),
            reference_logps=move(self.reference_logps),
            varlen=None if self.varlen is None else self.varlen.to(device),
            flex=None if self.flex is None else self.flex.to(device),
            images=None if self.images is None else {k: move(v) for k, v in self.images.items()},
            token_types=None
            if self.token_types is None
            else {k: to_device(v, device) for k, v in self.token_types.items()},
            _block_mask=None,  # made again on the new device
        )


@dataclass(frozen=True)
class Segment:
    """A prompt followed by completions that each see the prompt but not one another."""

    prompt: Sequence[int]
    completions: Sequence[Sequence[int]]
    sequences: Sequence[int]  # output index of each completion
    vision: VisionInputs | None = None  # the prompt's images
    # each completion's token spans left unscored (assistant_only_loss): none by default
    unscored: Sequence[Spans] = ()

    def __len__(self) -> int:
        return len(self.prompt) + sum(len(c) for c in self.completions)


def collate_pairs(
    pairs: Sequence[TokenizedPair],
    pad_token_id: int,
    reference_logps: torch.Tensor | None = None,
    layout: Layout = PLAIN,
) -> Batch:
    """B pairs -> one batch whose 2B sequences are the chosen ones, then the rejected ones.

    ``reference_logps`` ([B, 2], chosen and rejected), when precomputed, rides along.
    """
    n = len(pairs)
    if layout.share_prefix:
        segments = [
            Segment(p.prompt_ids, (p.chosen_ids, p.rejected_ids), (i, n + i), p.vision, p.unscored)
            for i, p in enumerate(pairs)
        ]
    else:
        segments = [
            Segment(p.prompt_ids, (p.chosen_ids,), (i,), p.vision, p.unscored[:1])
            for i, p in enumerate(pairs)
        ]
        segments += [
            Segment(p.prompt_ids, (p.rejected_ids,), (n + i,), p.vision, p.unscored[1:])
            for i, p in enumerate(pairs)
        ]
    batch = collate_segments(segments, pad_token_id, 2 * n, layout, num_pairs=n)
    if reference_logps is not None:
        batch.reference_logps = torch.cat([reference_logps[:, 0], reference_logps[:, 1]])
    return batch


def _unscored_positions(unscored: Sequence[Spans], index: int) -> set[int]:
    """Token positions of completion ``index`` that are not scored (assistant_only_loss)."""
    spans = unscored[index] if index < len(unscored) else ()
    return {j for start, end in spans for j in range(start, end)}


def collate_sequences(rows: Sequence[tuple[Any, ...]], pad_token_id: int) -> Batch:
    """Plain right-padded (prompt, completion) rows, or (prompt, completion, image inputs) for
    a vision-language model, or (prompt, completion, image inputs, unscored spans:
    assistant_only_loss); sequence i is row i."""
    segments = [
        Segment(row[0], (row[1],), (i,), row[2] if len(row) > 2 else None, row[3:4])
        for i, row in enumerate(rows)
    ]
    return collate_segments(segments, pad_token_id, len(rows), PLAIN)


def pack_rows(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """First-fit decreasing: indices of the items in each row, every row within ``budget``."""
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        row = next((r for r, space in enumerate(free) if space >= lengths[index]), None)
        if row is None:
            rows.append([])
            free.append(budget)
            row = len(rows) - 1
        rows[row].append(index)
        free[row] -= lengths[index]
    return rows


def collate_segments(
    segments: Sequence[Segment],
    pad_token_id: int,
    num_sequences: int,
    layout: Layout,
    num_pairs: int = 0,
) -> Batch:
    """Lay segments out in right-padded rows (one per segment, or packed) with their targets."""
    lengths = [len(s) for s in segments]
    if layout.pack:
        rows = pack_rows(lengths, layout.row_budget(lengths))
    else:
        rows = [[i] for i in range(len(segments))]
    width = max(sum(lengths[i] for i in row) for row in rows)
    width = -(-width // layout.pad_multiple) * layout.pad_multiple
    canvas = _Canvas.empty(segments, len(rows), width, pad_token_id)
    for r, row in enumerate(rows):
        offset = 0
        for index in row:
            offset = _place_segment(canvas, segments[index], index, r, offset)
    return _batch(canvas, segments, layout, num_sequences, num_pairs)


@dataclass
class _Canvas:
    """A batch's rows as they are filled in, segment by segment: the [R, T] tensors (3D rotary
    positions [3, R, T]), each row's segment spans, the scored tokens and the rows' images."""

    width: int
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    segment_ids: torch.Tensor
    branch_ids: torch.Tensor
    positions_3d: torch.Tensor | None
    token_types: dict[str, torch.Tensor]
    suffix: dict[str, int]  # a completion's token types where they are not 0
    spans: list[list[tuple[int, int, list[int]]]]
    predict_from: list[int] = field(default_factory=list)
    target_ids: list[int] = field(default_factory=list)
    target_sequence: list[int] = field(default_factory=list)
    row_images: list[VisionInputs] = field(default_factory=list)  # in the rows' order

    @classmethod
    def empty(
        cls, segments: Sequence[Segment], num_rows: int, width: int, pad_token_id: int
    ) -> _Canvas:
        shape = (num_rows, width)
        visions = [s.vision for s in segments]
        # 3D rotary models: [3, R, T] positions (text tokens count alike on every axis)
        rope_3d = any(v is not None and v.positions is not None for v in visions)
        type_keys = sorted({key for v in visions if v is not None for key in v.token_types})
        token_types = {key: torch.zeros(shape, dtype=torch.long) for key in type_keys}
        # per-token masks ([R, T, images, tiles]), zero-padded to the batch's most images and tiles
        for key, trailing in _mask_shapes(visions).items():
            token_types[key] = torch.zeros((*shape, *trailing), dtype=torch.long)
        return cls(
            width=width,
            input_ids=torch.full(shape, pad_token_id, dtype=torch.long),
            attention_mask=torch.zeros(shape, dtype=torch.long),
            position_ids=torch.zeros(shape, dtype=torch.long),
            segment_ids=torch.full(shape, -1, dtype=torch.long),  # padding: a segment of its own
            branch_ids=torch.zeros(shape, dtype=torch.long),
            positions_3d=torch.zeros((3, *shape), dtype=torch.long) if rope_3d else None,
            token_types=token_types,
            # (PaliGemma's suffix: 1)
            suffix={k: t for v in visions if v is not None for k, t in v.completion_types.items()},
            spans=[[] for _ in range(num_rows)],
        )


def _place_segment(canvas: _Canvas, segment: Segment, index: int, r: int, offset: int) -> int:
    """Segment ``index`` written into row ``r`` from ``offset``, its completion tokens scored;
    where the row's next segment starts."""
    n_prompt = len(segment.prompt)
    canvas.spans[r].append((offset, n_prompt, [len(c) for c in segment.completions]))
    ids = list(segment.prompt)
    positions = list(range(n_prompt))
    vision = segment.vision
    prompt_positions = None if vision is None else vision.positions
    # a completion continues from the prompt's largest position (M-RoPE numbers text
    # after an image from there)
    first = n_prompt if prompt_positions is None else int(prompt_positions.max()) + 1
    if vision is not None:
        canvas.row_images.append(vision)
        for key, types in vision.token_types.items():
            canvas.token_types[key][r, offset : offset + n_prompt] = torch.tensor(types)
    branches = [PROMPT_BRANCH] * n_prompt
    for branch, (completion, sequence) in enumerate(
        zip(segment.completions, segment.sequences, strict=True), start=1
    ):
        start = offset + len(ids)
        _score_completion(canvas, segment, branch, sequence, row=r, offset=offset, start=start)
        ids += completion
        positions += range(first, first + len(completion))
        branches += [branch] * len(completion)
    end = offset + len(ids)
    for key, value in canvas.suffix.items():
        canvas.token_types[key][r, offset + n_prompt : end] = value
    for key, mask in ({} if vision is None else vision.token_masks).items():
        # a completion's tokens read the images its prompt's last token reads
        cut = tuple(slice(size) for size in mask.shape[1:])
        canvas.token_types[key][(r, slice(offset, offset + n_prompt), *cut)] = mask
        canvas.token_types[key][(r, slice(offset + n_prompt, end), *cut)] = mask[-1]
    canvas.input_ids[r, offset:end] = torch.tensor(ids, dtype=torch.long)
    canvas.attention_mask[r, offset:end] = 1
    canvas.position_ids[r, offset:end] = torch.tensor(positions, dtype=torch.long)
    if canvas.positions_3d is not None:
        canvas.positions_3d[:, r, offset:end] = torch.tensor(positions, dtype=torch.long)
        if prompt_positions is not None:
            canvas.positions_3d[:, r, offset : offset + n_prompt] = prompt_positions
    canvas.segment_ids[r, offset:end] = index
    canvas.branch_ids[r, offset:end] = torch.tensor(branches, dtype=torch.long)
    return end


def _score_completion(
    canvas: _Canvas,
    segment: Segment,
    branch: int,
    sequence: int,
    *,
    row: int,
    offset: int,
    start: int,
) -> None:
    """The scored tokens of completion ``branch`` (1-based), output ``sequence``, of the
    segment at ``offset`` in ``row``, the completion's first token at ``start``."""
    # Token j of the completion (position n_prompt + j) is predicted by the token
    # at position n_prompt + j - 1: the prompt's last token for j = 0.
    completion = segment.completions[branch - 1]
    n_prompt = len(segment.prompt)
    skipped = _unscored_positions(segment.unscored, branch - 1)
    for j, token in enumerate(completion):
        source = start + j - 1 if j > 0 else offset + n_prompt - 1
        # an empty prompt leaves the first token unscored
        if source >= offset and j not in skipped:
            canvas.predict_from.append(row * canvas.width + source)
            canvas.target_ids.append(token)
            canvas.target_sequence.append(sequence)


def _batch(
    canvas: _Canvas,
    segments: Sequence[Segment],
    layout: Layout,
    num_sequences: int,
    num_pairs: int,
) -> Batch:
    """The filled rows as a Batch: positions, segments and attention plans where the layout
    is not plain."""
    plain = layout.is_plain
    width, spans, positions_3d = canvas.width, canvas.spans, canvas.positions_3d
    position_ids = canvas.position_ids if positions_3d is None else positions_3d
    return Batch(
        input_ids=canvas.input_ids,
        attention_mask=canvas.attention_mask,
        predict_from=torch.tensor(canvas.predict_from, dtype=torch.long),
        target_ids=torch.tensor(canvas.target_ids, dtype=torch.long),
        target_sequence=torch.tensor(canvas.target_sequence, dtype=torch.long),
        num_sequences=num_sequences,
        num_pairs=num_pairs,
        sequence_tokens=sum(
            len(s.prompt) * len(s.completions) + len(s) - len(s.prompt) for s in segments
        ),
        position_ids=None if plain else position_ids,
        segment_ids=None if plain else canvas.segment_ids,
        branch_ids=None if plain else canvas.branch_ids,
        varlen=build_plan(width, spans) if layout.varlen and not plain else None,
        flex=flex_blocks(width, spans) if layout.flex and not plain else None,
        images=batch_tensors(canvas.row_images) if canvas.row_images else None,
        token_types=canvas.token_types or None,
    )


@dataclass(frozen=True)
class DataSchedule:
    """Which pairs each optimizer step uses: a pure function of (seed, step).

    Each epoch visits the pairs in a fresh seeded permutation (``order``: by default TRL's for
    the same seed), cut into micro-batches of ``batch_size`` (the last may be smaller, or be
    dropped: ``drop_last``);
    ``accumulation`` consecutive micro-batches make one optimizer step (the epoch's last step
    may have fewer). Because the position is derived from the step number alone, resuming
    needs nothing but the step.
    """

    num_examples: int
    batch_size: int
    accumulation: int
    seed: int
    # False: the pairs in their order, every epoch (a stream's, as TRL reads an
    # IterableDataset: a longer run over it then trains the shorter one's steps first)
    shuffle: bool = True
    order: int = TRL_ORDER  # how each epoch's permutation is seeded (LEGACY_ORDER, TRL_ORDER)
    drop_last: bool = False  # an epoch's short last micro-batch is not trained (TRL's option)

    @property
    def micro_batches_per_epoch(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
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

    def epochs_done(self, steps: int) -> float:
        """Epochs after ``steps`` optimizer steps, counted in micro-batches as transformers'
        Trainer counts its ``epoch`` (an epoch's last step may hold fewer of them)."""
        epoch, within = divmod(steps - 1, self.steps_per_epoch)
        done = min((within + 1) * self.accumulation, self.micro_batches_per_epoch)
        return epoch + done / self.micro_batches_per_epoch

    @functools.lru_cache(maxsize=2)  # noqa: B019 - frozen and tiny; one epoch is reused
    def permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(self.num_examples))
        seed = self.seed + epoch if self.order == TRL_ORDER else self.seed * 1_000_003 + epoch
        generator = torch.Generator().manual_seed(seed)
        return torch.randperm(self.num_examples, generator=generator).tolist()

    def micro_batches(self, step: int) -> list[list[int]]:
        """Example indices of each micro-batch of optimizer step ``step`` (0-based)."""
        order = self.permutation(self.epoch_of(step))
        first = (step % self.steps_per_epoch) * self.accumulation
        last = min(first + self.accumulation, self.micro_batches_per_epoch)
        return [order[m * self.batch_size : (m + 1) * self.batch_size] for m in range(first, last)]


def eval_batches(num_examples: int, batch_size: int, drop_last: bool = False) -> list[list[int]]:
    """The eval batches of ``batch_size`` (per_device_eval_batch_size x processes) pairs, in
    order. ``drop_last`` (dataloader_drop_last): the short last one is left out, as transformers'
    Trainer's eval dataloader does (TRL's eval metrics are of the full batches: with every pair
    here, the curves differed from TRL's), unless no batch is full (TRL's would evaluate
    nothing: every pair is scored)."""
    if drop_last and num_examples >= batch_size:
        num_examples -= num_examples % batch_size
    return [
        list(range(start, min(start + batch_size, num_examples)))
        for start in range(0, num_examples, batch_size)
    ]


def eval_left_out(sizes: list[int], batch_size: int, drop_last: bool) -> str:
    """What ``eval_batches`` leaves out of held-out sets of ``sizes`` pairs, said on the start
    line ("" where none): the eval metrics are of fewer pairs than the sets hold."""
    left = sum(n - sum(map(len, eval_batches(n, batch_size, drop_last))) for n in sizes)
    said = f"held-out: {left} of {sum(sizes)} pairs left out of each evaluation"
    return f"{said} (dataloader_drop_last: the short last eval batch)" if left else ""


def _mask_shapes(visions: list[VisionInputs | None]) -> dict[str, tuple[int, ...]]:
    """Each per-token mask's largest trailing shape in a batch (Mllama's images and tiles)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for vision in visions:
        for key, mask in ({} if vision is None else vision.token_masks).items():
            old = shapes.get(key, (0,) * (mask.dim() - 1))
            shapes[key] = tuple(max(a, b) for a, b in zip(old, mask.shape[1:], strict=True))
    return shapes
