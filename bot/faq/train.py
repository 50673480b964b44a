"""``jsug-bot faq calibrate``: fit the calibration on question sets of one or more FAQ corpora.

Fit on several corpora (the JSUG development set and a corpus of another domain) so the models
learn what a right answer looks like in general, not on the JSUG FAQ alone. Keep a held-out set
out of the fit to measure the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.faq.calibration import Calibration, fit
from bot.faq.corpus import load_corpus
from bot.faq.evaluate import load_cases
from bot.faq.index import build_index
from bot.faq.matcher import features, match
from bot.settings import Settings
from bot.text.tokens import Analyzer


def training_rows(
    settings: Settings, sets: list[tuple[Path, Path]], analyzer: Analyzer | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows and labels (right top answer, in scope with a right answer in the top 3)."""
    analyzer = analyzer or Analyzer()
    rows: list[list[float]] = []
    correct: list[int] = []
    relevant: list[int] = []
    for corpus_path, questions in sets:
        index = build_index(load_corpus(corpus_path, settings.faq_dir), settings.matcher, analyzer, calibration=None)
        for case in load_cases(questions, {e.id for e in index.corpus.entries}):
            result = match(index, case.query)
            if not result.candidates or result.query is None:
                continue
            rows.append(features(index, result.query, result.candidates, result.top_faq))
            correct.append(int(result.ranked[0] in case.expected))
            relevant.append(int(any(faq_id in case.expected for faq_id in result.ranked[:3])))
    return np.asarray(rows), np.asarray(correct), np.asarray(relevant)


def calibrate(settings: Settings, sets: list[tuple[Path, Path]]) -> Calibration:
    rows, correct, relevant = training_rows(settings, sets)
    names = [f"{corpus.name}:{questions.name}" for corpus, questions in sets]
    return fit(rows, correct, relevant, names)
