"""The demo's two judges of sentiment.

* ``vader_reward``: the ground-truth reward used to label pairs and to measure the frontier:
  VADER's compound score (Hutto & Gilbert 2014) of prompt + completion, in [-1, 1]. It is a
  ``reward_fn`` for training (``directpo.demo.sentiment:vader_reward``).
* ``Judge``: a second opinion that training never sees: a ridge regression on hashed word
  uni- and bigrams, fitted to the human ratings of Rotten Tomatoes sentences (rescaled from
  [-4, 4] to [-1, 1]). If DPO raised VADER by gaming its lexicon, this judge would not follow.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    return " ".join(m["content"] for m in prompt if m["role"] == "user")


def vader_reward(prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
    """VADER compound sentiment of each prompt + completion, in [-1, 1]."""
    analyzer = _vader()
    return [
        analyzer.polarity_scores(prompt_text(p) + c)["compound"]
        for p, c in zip(prompts, completions, strict=True)
    ]


class Judge:
    """Ridge regression on hashed n-grams, fitted to human sentiment ratings."""

    def __init__(self, texts: Sequence[str], ratings: Sequence[float], seed: int = 0):
        from sklearn.feature_extraction.text import HashingVectorizer
        from sklearn.linear_model import Ridge

        self.vectorizer = HashingVectorizer(
            ngram_range=(1, 2), n_features=2**18, alternate_sign=False
        )
        self.model = Ridge(alpha=1.0, random_state=seed)
        self.model.fit(self.vectorizer.transform(list(texts)), np.asarray(ratings) / 4.0)

    def score(self, texts: Sequence[str]) -> list[float]:
        predictions = self.model.predict(self.vectorizer.transform(list(texts)))
        return np.clip(predictions, -1.0, 1.0).tolist()

    def correlation(self, texts: Sequence[str], ratings: Sequence[float]) -> float:
        """Pearson correlation of the judge with human ratings on held-out sentences."""
        return float(np.corrcoef(self.score(texts), ratings)[0, 1])
