"""batching.collate_segments: the exact tensors of a small batch, pinned on each layout (packed
with varlen / FlexAttention and 3D positions, a row per segment, packed without images), so
that its steps can be moved without changing one value."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from directpo import batching
from directpo.batching import Layout, Segment, collate_segments
from directpo.vision import VisionInputs


def _segments(with_vision: bool) -> list[Segment]:
    """A prompt of 3 tokens with an image (3D positions, token types, a completion's type, a
    per-token mask) and its first completion's first token unscored; a prompt of 1 token."""
    vision = VisionInputs(
        tensors={"pixel_values": torch.arange(6.0).reshape(1, 2, 3)},
        token_types={"token_type_ids": [0, 1, 1]},
        digest="d",
        positions=torch.tensor([[0, 1, 1], [0, 1, 2], [0, 2, 1]]),
        completion_types={"token_type_ids": 1},
        token_masks={"cross_attention_mask": torch.tensor([[[0, 0]], [[1, 0]], [[1, 1]]])},
    )
    return [
        Segment(
            [5, 6, 7], ([8, 9], [10]), (0, 2), vision if with_vision else None, (((0, 1),), ())
        ),
        Segment([11], ([12, 13, 14], [15]), (1, 3)),
    ]


def _laid_out(monkeypatch, layout: Layout, with_vision: bool = True) -> dict[str, Any]:
    """The batch's fields as lists, and what the varlen / flex plans were built from."""
    built: dict[str, Any] = {}

    def recorded(kind: str):
        return lambda width, spans: built.setdefault(kind, (width, spans)) and kind

    monkeypatch.setattr(batching, "build_plan", recorded("varlen"))
    monkeypatch.setattr(batching, "flex_blocks", recorded("flex"))
    batch = collate_segments(_segments(with_vision), 0, 4, layout, num_pairs=2)
    fields: dict[str, Any] = {}
    for name, value in vars(batch).items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        elif isinstance(value, dict):
            value = {key: tensor.tolist() for key, tensor in value.items()}
        fields[name] = value
    return {**fields, "built": built}


# what every layout shares: the scored tokens (the unscored first token of sequence 0 left out;
# predict_from indexes the flat [R * T] logits) and the counts
SCORED = {
    "predict_from": [3, 2, 6, 7, 8, 6],
    "target_ids": [9, 10, 12, 13, 14, 15],
    "target_sequence": [0, 2, 1, 1, 1, 3],
    "num_sequences": 4,
    "num_pairs": 2,
    "sequence_tokens": 15,
    "reference_logps": None,
    "token_counts": None,
    "_block_mask": None,
}
PIXELS = {"pixel_values": [[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]]}
MASK_OFF, MASK_ONE, MASK_ALL = [[0, 0]], [[1, 0]], [[1, 1]]
SPANS = [[(0, 3, [2, 1]), (6, 1, [3, 1])]]  # (offset, prompt tokens, completion lengths)


@pytest.mark.parametrize("case", ["packed varlen", "plain", "packed text"])
def test_collated_segments_are_the_tensors_they_were(monkeypatch, case: str) -> None:
    if case == "packed varlen":  # both segments in one row of 12 (11 tokens, a multiple of 4)
        layout = Layout(pack=True, varlen=True, flex=True, pad_multiple=4)
        expected = {
            "input_ids": [[5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0]],
            "attention_mask": [[1] * 11 + [0]],
            "position_ids": [
                [[0, 1, 1, 3, 4, 3, 0, 1, 2, 3, 1, 0]],
                [[0, 1, 2, 3, 4, 3, 0, 1, 2, 3, 1, 0]],
                [[0, 2, 1, 3, 4, 3, 0, 1, 2, 3, 1, 0]],
            ],
            "segment_ids": [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]],
            "branch_ids": [[0, 0, 0, 1, 1, 2, 0, 1, 1, 1, 2, 0]],
            "varlen": "varlen",
            "flex": "flex",
            "images": PIXELS,
            "token_types": {
                "token_type_ids": [[0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0]],
                "cross_attention_mask": [[MASK_OFF, MASK_ONE] + [MASK_ALL] * 4 + [MASK_OFF] * 6],
            },
            "built": {"varlen": (12, SPANS), "flex": (12, SPANS)},
        }
        assert _laid_out(monkeypatch, layout) == {**SCORED, **expected}
    elif case == "plain":  # a row per segment; no positions, segments or branches
        expected = {
            "input_ids": [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 0]],
            "attention_mask": [[1] * 6, [1] * 5 + [0]],
            "position_ids": None,
            "segment_ids": None,
            "branch_ids": None,
            "varlen": None,
            "flex": None,
            "images": PIXELS,
            "token_types": {
                "token_type_ids": [[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 0]],
                "cross_attention_mask": [
                    [MASK_OFF, MASK_ONE] + [MASK_ALL] * 4,
                    [MASK_OFF] * 6,
                ],
            },
            "built": {},
        }
        assert _laid_out(monkeypatch, Layout()) == {**SCORED, **expected}
    else:  # packed, each row within the longest segment: a row each, 2D positions
        expected = {
            "input_ids": [[5, 6, 7, 8, 9, 10], [11, 12, 13, 14, 15, 0]],
            "attention_mask": [[1] * 6, [1] * 5 + [0]],
            "position_ids": [[0, 1, 2, 3, 4, 3], [0, 1, 2, 3, 1, 0]],
            "segment_ids": [[0] * 6, [1] * 5 + [-1]],
            "branch_ids": [[0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 2, 0]],
            "varlen": None,
            "flex": None,
            "images": None,
            "token_types": None,
            "built": {},
        }
        assert _laid_out(monkeypatch, Layout(pack=True), with_vision=False) == {
            **SCORED,
            **expected,
        }
