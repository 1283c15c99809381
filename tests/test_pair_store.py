"""Tokenized pairs held in one id buffer: the model gets the same ids as from lists."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

import numpy as np
import pytest
import torch
from test_token_cache import CONVERSATIONS
from tiny import SENTIMENT_PAIRS, build_tokenizer, write_jsonl

from directpo.batching import PLAIN, Layout, collate_pairs
from directpo.data import load_preferences
from directpo.pair_store import (
    PairStore,
    TokenizedPair,
    longest_sequence,
    pair_store,
    with_images,
)
from directpo.precompute import data_fingerprint
from directpo.sources import pairs_fingerprint
from directpo.tokenization import PairTokenizer, tokenize_preferences
from directpo.vision import VisionInputs

PACKED = Layout(share_prefix=True, pack=True, pack_max_tokens=64)
LAYOUTS = [PLAIN, Layout(share_prefix=True), PACKED]


def _data(rows: list[dict], tmp_path):
    return load_preferences(str(write_jsonl(tmp_path / "pairs.jsonl", rows)))


def _as_lists(data, tokenizer) -> list[TokenizedPair]:
    """The pairs as the encoder gives them: Python lists, as runs held them before."""
    encoder = PairTokenizer(tokenizer, 48)
    return list(encoder.encode_many(data.examples, Counter()))


def _ids(pair: TokenizedPair) -> tuple[list[int], ...]:
    return pair.prompt_ids, pair.chosen_ids, pair.rejected_ids


def _same_batch(a, b) -> None:
    for item in fields(a):
        x, y = getattr(a, item.name), getattr(b, item.name)
        if isinstance(x, torch.Tensor):
            assert torch.equal(x, y), item.name
        elif item.name != "_block_mask":
            assert x == y, item.name


@pytest.mark.parametrize("rows", [SENTIMENT_PAIRS, CONVERSATIONS], ids=["text", "messages"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=["plain", "shared", "packed"])
def test_batches_from_the_store_are_those_of_the_lists(tmp_path, rows, layout) -> None:
    tokenizer = build_tokenizer("llama")
    data = _data(rows, tmp_path)
    lists = _as_lists(data, tokenizer)
    store = tokenize_preferences(data, tokenizer, 48).pairs
    assert isinstance(store, PairStore)  # 2 bytes a token (lists took 8 and more)
    assert store.ids.nbytes == 2 * sum(len(ids) for p in lists for ids in _ids(p))
    for indices in ([0, 1, 2], [5, 3], list(range(len(lists)))[::-1]):
        expected = collate_pairs([lists[i] for i in indices], 0, layout=layout)
        _same_batch(collate_pairs([store[i] for i in indices], 0, layout=layout), expected)
    assert list(store) == lists and store[-1] == lists[-1] and store[1:3] == lists[1:3]
    # the checksums a checkpoint and the precomputed reference are keyed by
    assert pairs_fingerprint(store) == pairs_fingerprint(lists)
    assert data_fingerprint(store) == data_fingerprint(lists)
    assert longest_sequence(store) == max(p.longest_sequence for p in lists)


def test_ids_are_held_in_two_bytes_a_token_or_four_for_a_large_vocabulary() -> None:
    small = pair_store([TokenizedPair([1, 2], [3], [65535, 4])])
    assert small.ids.dtype == np.uint16 and small.ids.nbytes == 2 * 5
    large = pair_store([TokenizedPair([1, 2], [70000], [5])] * 3000)  # past one flush
    assert large.ids.dtype == np.int32 and large.ids.nbytes == 4 * 4 * 3000
    assert large[2999] == TokenizedPair([1, 2], [70000], [5])
    assert all(type(i) is int for i in large[0].prompt_ids)  # not numpy scalars
    with pytest.raises(IndexError):
        large[3000]


def test_a_pairs_image_inputs_stay_with_it_and_are_found_without_lists() -> None:
    vision = VisionInputs({"pixel_values": torch.zeros(1, 3)}, {}, "d")
    pairs = [TokenizedPair([1], [2], [3]), TokenizedPair([4], [5], [6], vision)] * 2
    store = pair_store(pairs)
    assert store[1].vision is vision and store[3].vision is vision and store[0].vision is None
    assert with_images(store) == with_images(pairs) == [pairs[1], pairs[3]]
    assert with_images(store, 1) == [pairs[1]]
    assert data_fingerprint(store) == data_fingerprint(pairs)
