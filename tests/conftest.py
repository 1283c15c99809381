from __future__ import annotations

from pathlib import Path

import pytest
from tiny import SENTIMENT_PAIRS, save_tiny_model, write_jsonl

STYLES = ("llama", "gpt2")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {style: save_tiny_model(style, root / style) for style in STYLES}


@pytest.fixture
def pairs_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", SENTIMENT_PAIRS)


@pytest.fixture(autouse=True)
def _hub_offline_flags_kept():
    """A test that finds the hub unreachable sets the libraries' offline mode for the process
    (directpo.hub): given back after each test, so that no test sees another's."""
    from directpo.hub import offline_flags_kept

    with offline_flags_kept():
        yield


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test its own DIRECTPO_CACHE (tokenized pairs, reference log-probs): none writes to
    the user's, and none reads what another test cached (a test that counts tokenizer calls
    would see none)."""
    monkeypatch.setenv("DIRECTPO_CACHE", str(tmp_path_factory.mktemp("directpo-cache")))
