"""TF-IDF of word uni- and bigrams with logistic regression: the linear baseline every model here
is measured against (benchmarks/compare.py for accuracy, benchmarks/behaviour.py for behaviour)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression


class TfidfLogreg:
    """Fitted on construction; `predict_proba` gives each text's probability of being positive."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int]) -> None:
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        features = self.vectorizer.fit_transform(_without_breaks(texts))
        self.model = LogisticRegression(C=10, max_iter=1000).fit(features, labels)

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.predict_proba(self.vectorizer.transform(_without_breaks(texts)))[:, 1]


def _without_breaks(texts: Sequence[str]) -> list[str]:
    """IMDB reviews break lines with `<br />`, which would otherwise give tokens `br`."""
    return [text.replace("<br />", " ") for text in texts]
