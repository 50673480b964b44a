"""Term counts and TF-IDF weights of the lexical views, computed with numpy and scipy.sparse alone.

The index used three things of scikit-learn: ``CountVectorizer`` (with a character 2–3-gram or a
pass-through analyser), ``TfidfTransformer(sublinear_tf=True)`` and ``normalize``. Importing
scikit-learn at all loads ``scipy.stats`` and ``scipy.optimize``: 67 MB of every server process,
a quarter of its memory, for a few lines of arithmetic. The functions below compute the same
values (``tests/test_tfidf.py`` checks them against scikit-learn on the JSUG corpus); scikit-learn
stays a dependency for fitting the calibration offline (``jsug-bot faq calibrate``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from scipy import sparse

Analyzer = Callable[[object], Sequence[str]]

_WHITE_SPACES = re.compile(r"\s\s+")


def char_ngrams(text: object, low: int = 2, high: int = 3) -> list[str]:
    """The character n-grams of ``text`` after runs of white space are folded to one space."""
    folded = _WHITE_SPACES.sub(" ", str(text))
    return [folded[start:start + size] for size in range(low, min(high, len(folded)) + 1)
            for start in range(len(folded) - size + 1)]


def as_terms(value: object) -> Sequence[str]:
    """For values that are already a sequence of terms (the Sudachi words of a text)."""
    return value  # type: ignore[return-value]


class TermCounter:
    """Counts the terms of documents over a vocabulary learnt from them, sorted as scikit-learn's."""

    def __init__(self, analyze: Analyzer) -> None:
        self.analyze = analyze
        self.vocabulary: dict[str, int] = {}
        self.terms: np.ndarray = np.array([], dtype=object)

    def fit_transform(self, values: Iterable[object]) -> sparse.csr_matrix:
        """Learn the vocabulary of ``values`` and return their counts (documents × terms)."""
        counted = [Counter(self.analyze(value)) for value in values]
        self.terms = np.array(sorted(set().union(*counted)), dtype=object)
        self.vocabulary = {term: column for column, term in enumerate(self.terms)}
        return self._matrix(counted)

    def _matrix(self, counted: list[Counter[str]]) -> sparse.csr_matrix:
        lengths = np.fromiter((len(counts) for counts in counted), dtype=np.int64, count=len(counted))
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        columns = np.fromiter((self.vocabulary[term] for counts in counted for term in counts),
                              dtype=np.int32, count=int(indptr[-1]))
        data = np.fromiter((n for counts in counted for n in counts.values()),
                           dtype=np.float32, count=int(indptr[-1]))
        matrix = sparse.csr_matrix((data, columns, indptr), shape=(len(counted), len(self.terms)))
        matrix.sort_indices()
        return matrix


def smooth_idf(presence: sparse.spmatrix) -> np.ndarray:
    """ln((1 + documents) / (1 + documents using the term)) + 1, per term of ``presence``."""
    documents = presence.shape[0]
    using = np.bincount(sparse.csr_matrix(presence).indices, minlength=presence.shape[1])
    return np.log((documents + 1) / (using + 1.0)) + 1.0


def l2_rows(matrix: sparse.spmatrix) -> sparse.csr_matrix:
    """``matrix`` with each non-empty row scaled to unit Euclidean length."""
    rows = sparse.csr_matrix(matrix, copy=True)
    squares = np.zeros(rows.shape[0])
    np.add.at(squares, np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr)),
              (rows.data * rows.data).astype(np.float64))
    norms = np.sqrt(squares)
    norms[norms == 0] = 1.0
    rows.data = (rows.data / np.repeat(norms, np.diff(rows.indptr))).astype(rows.dtype)
    return rows


def sublinear_tfidf(counts: sparse.spmatrix, idf: np.ndarray) -> sparse.csr_matrix:
    """(1 + ln count) × idf per term, each row of unit length."""
    weighted = sparse.csr_matrix(counts, copy=True)
    weighted.data = np.log(weighted.data) + 1
    weighted.data *= idf[weighted.indices]
    return l2_rows(weighted)
