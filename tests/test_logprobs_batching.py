from __future__ import annotations

import math

import torch

from directpo.batching import DataSchedule, collate_pairs, eval_batches
from directpo.logprobs import completion_logprobs
from directpo.tokenization import TokenizedPair

PAIRS = [TokenizedPair([1, 2], [3, 4, 5], [6]), TokenizedPair([7], [8], [9, 10, 11, 12])]


def test_collate_layout_masks_exactly_the_completions() -> None:
    batch = collate_pairs(PAIRS, pad_token_id=0)
    assert batch.num_pairs == 2
    assert batch.input_ids.tolist() == [
        [1, 2, 3, 4, 5],
        [7, 8, 0, 0, 0],  # chosen rows first
        [1, 2, 6, 0, 0],
        [7, 9, 10, 11, 12],
    ]
    assert batch.attention_mask.sum(1).tolist() == [5, 2, 3, 5]
    # token (row, t) of a completion is scored by the logits at (row, t - 1)
    assert batch.predict_from.tolist() == [1, 2, 3, 5, 11, 15, 16, 17, 18]
    assert batch.target_ids.tolist() == [3, 4, 5, 8, 6, 9, 10, 11, 12]
    assert batch.target_sequence.tolist() == [0, 0, 0, 1, 2, 3, 3, 3, 3]
    assert batch.completion_tokens.tolist() == [3, 1, 1, 4]
    assert batch.position_ids is None and batch.segment_ids is None  # plain causal rows


def test_completion_logprobs_equal_a_plain_loop() -> None:
    torch.manual_seed(0)
    batch = collate_pairs(PAIRS, pad_token_id=0)
    logits = torch.randn(4, 5, 13, dtype=torch.float64)
    logps, counts, log1m = completion_logprobs(logits, batch)[:3]
    completion_spans = [(2, 5), (1, 2), (2, 3), (1, 5)]
    for row, (first, end) in enumerate(completion_spans):
        expected = expected_log1m = 0.0
        for t in range(first, end):
            p = torch.softmax(logits[row, t - 1], -1)[batch.input_ids[row, t]].item()
            expected += math.log(p)
            expected_log1m += math.log(1 - p)
        assert abs(logps[row].item() - expected) < 1e-9
        assert abs(log1m[row].item() - expected_log1m) < 1e-9
    assert counts.tolist() == [3, 1, 1, 4]


def test_schedule_visits_every_pair_once_per_epoch_and_is_reproducible() -> None:
    schedule = DataSchedule(num_examples=11, batch_size=3, accumulation=2, seed=5)
    assert schedule.micro_batches_per_epoch == 4 and schedule.steps_per_epoch == 2
    for epoch in range(3):
        seen = [
            i
            for step in range(epoch * 2, epoch * 2 + 2)
            for mb in schedule.micro_batches(step)
            for i in mb
        ]
        assert sorted(seen) == list(range(11))
    again = DataSchedule(11, 3, 2, 5)
    assert [again.micro_batches(s) for s in range(6)] == [
        schedule.micro_batches(s) for s in range(6)
    ]
    assert schedule.permutation(0) != schedule.permutation(1)
    assert schedule.total_steps(1.5, -1) == 3 and schedule.total_steps(1.0, 7) == 7


def test_eval_batches_cover_in_order() -> None:
    assert eval_batches(5, 2) == [[0, 1], [2, 3], [4]]
