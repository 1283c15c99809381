"""What a run reads before its models load, and what it keeps of it."""

from __future__ import annotations

import gc

import torch
from tiny import SENTIMENT_PAIRS, tiny_config, write_jsonl

from directpo.data import PreferenceExample
from directpo.run_data import load_run_data


def test_the_validated_rows_are_let_go_once_tokenized(tiny_model_dirs, tmp_path) -> None:
    """A run held every validated row (its texts: 400-600 MB for 100k pairs) while its models
    loaded and trained, for one summary line: only the tokenized pairs and that line are kept."""
    pairs = write_jsonl(tmp_path / "p.jsonl", SENTIMENT_PAIRS)
    config = tiny_config(tiny_model_dirs["gpt2"], pairs, tmp_path / "out", eval_file=str(pairs))
    said: list[str] = []
    data = load_run_data(config, None, None, torch.device("cpu"), said.append)
    gc.collect()
    assert not [o for o in gc.get_objects() if type(o) is PreferenceExample]
    assert len(data.train.pairs) == len(SENTIMENT_PAIRS)
    assert data.train_data.summary() == f"{pairs}: {len(SENTIMENT_PAIRS)} pairs, layout explicit"
    assert said[0] == f"train: {data.train_data.summary()}"
