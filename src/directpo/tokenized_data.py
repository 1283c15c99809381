"""A file's tokenized pairs (``tokenize_preferences``' result), with what was truncated or
skipped on the way, said in one summary line."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from directpo.pair_store import TokenizedPair
from directpo.pair_truncation import CUT_BY_PROMPT
from directpo.preference_pairs import counted
from directpo.special_text import special_summary


@dataclass
class TokenizedData:
    pairs: Sequence[TokenizedPair]  # a PairStore once tokenized (pair_store.py)
    sources: list[str] = field(default_factory=list)  # "file: line N" of each pair
    truncated: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    # the cache file its ids were read from (token_cache.py), None where tokenized now
    cache_file: str | None = None

    def __len__(self) -> int:
        return len(self.pairs)

    def starved_completions(self) -> int:
        """Completions the prompt's length left under ``short_completion_limit`` tokens."""
        return self.truncated[CUT_BY_PROMPT]

    def summary(self) -> str:
        pairs = counted(len(self.pairs), "pair")
        # one line either way: a cached run said "read from the cache, not tokenized again"
        # and then "40 pairs tokenized", the second contradicting the first
        read = f" (token ids read from the cache, {self.cache_file})" if self.cache_file else ""
        parts = [f"{pairs}{read}" if read else f"{pairs} tokenized"]
        cut = self.truncated  # (it counts rows with special tokens in their text too)
        # in a pair's order (sorted by name, "1 prompts" was said)
        kinds = [counted(cut["prompts"], "prompt")] if cut["prompts"] else []
        kinds += [f"{cut[k]} {k}" for k in ("chosen", "rejected", "responses") if cut[k]]
        if kinds:
            short = (
                f" ({cut[CUT_BY_PROMPT]} of these {CUT_BY_PROMPT})" if cut[CUT_BY_PROMPT] else ""
            )
            parts.append("truncated: " + ", ".join(kinds) + short)
        if note := special_summary(self.truncated):
            parts.append(note)
        if self.skipped:
            parts.append(
                "skipped: " + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
            )
        return "; ".join(parts)
