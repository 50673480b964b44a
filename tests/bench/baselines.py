"""Plain baselines the matcher is measured against, over the same text (question + answer).

- ``Bm25Baseline``: BM25 (bm25s) over Sudachi surface words, no normalisation beyond NFKC.
- ``CharTfidfBaseline``: scikit-learn's TfidfVectorizer on character 2–3-grams, cosine ranking.
"""

from __future__ import annotations

import unicodedata

import bm25s
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sudachipy import Dictionary, SplitMode

from bot.faq.corpus import Corpus
from bot.text.tokens import DICTIONARY


def _texts(corpus: Corpus, with_alternates: bool = True) -> list[str]:
    texts = []
    for entry in corpus.entries:
        parts = [entry.question, *(entry.alternates if with_alternates else ()), corpus.render_answer(entry)[0]]
        texts.append("\n".join(parts))
    return texts


class Bm25Baseline:
    def __init__(self, corpus: Corpus) -> None:
        self.ids = [e.id for e in corpus.entries]
        self.tokenizer = Dictionary(dict=DICTIONARY).tokenizer(mode=SplitMode.C)
        self.index = bm25s.BM25()
        self.index.index([self._tokens(t) for t in _texts(corpus)], show_progress=False)

    def _tokens(self, text: str) -> list[str]:
        text = unicodedata.normalize("NFKC", text).lower()
        return [m.surface() for m in self.tokenizer.tokenize(text) if m.part_of_speech()[0] not in ("補助記号", "空白")] or ["_"]

    def rank(self, query: str, k: int = 10) -> list[str]:
        tokens = self._tokens(query)
        scores = self.index.get_scores(tokens)
        order = np.argsort(-scores)[:k]
        return [self.ids[i] for i in order if scores[i] > 0]


class CharTfidfBaseline:
    def __init__(self, corpus: Corpus) -> None:
        self.ids = [e.id for e in corpus.entries]
        self.vectorizer = TfidfVectorizer(analyzer="char", ngram_range=(2, 3), sublinear_tf=True)
        self.matrix = self.vectorizer.fit_transform(_texts(corpus))

    def rank(self, query: str, k: int = 10) -> list[str]:
        scores = (self.matrix @ self.vectorizer.transform([query]).T).toarray().ravel()
        order = np.argsort(-scores)[:k]
        return [self.ids[i] for i in order if scores[i] > 0]
