"""``jsug-bot faq calibrate``: fit the calibrations on question sets of one or more FAQ corpora.

Fit on several corpora (the JSUG development set and a corpus of another domain) so the models
learn what a right answer looks like in general, not on the JSUG FAQ alone. Keep a held-out set
out of the fit to measure the result.

Two calibrations are fitted: the lexical one (the fast path, and the slow path on a machine
without the semantic model) and the semantic one (the slow path with the semantic signals).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.faq.calibration import FEATURES, SEMANTIC_FEATURES, Calibration, fit
from bot.faq.corpus import load_corpus
from bot.faq.evaluate import EvalCase, load_cases
from bot.faq.index import FaqIndex, build_index
from bot.faq.matcher import (
    MatchResult,
    features,
    match,
    match_text,
    question_parts,
    semantic_features,
    semantic_scores,
)
from bot.faq.semantic import Encoder, load_encoder
from bot.settings import Settings
from bot.text.tokens import Analyzer


@dataclass
class Rows:
    """Feature rows and their labels: the right top answer, and in scope with a right answer in the top 3."""

    rows: list[list[float]]
    correct: list[int]
    relevant: list[int]

    def add(self, row: list[float], result: MatchResult, case: EvalCase) -> None:
        self.rows.append(row)
        self.correct.append(int(result.ranked[0] in case.expected))
        self.relevant.append(int(any(faq_id in case.expected for faq_id in result.ranked[:3])))

    def fit(self, trained_on: list[str], features: tuple[str, ...] = FEATURES) -> Calibration:
        arrays = np.asarray(self.rows), np.asarray(self.correct), np.asarray(self.relevant)
        return fit(*arrays, trained_on, features)


def _semantic_rows(index: FaqIndex, case: EvalCase, rows: Rows) -> None:
    """The slow path's rows: the whole message and each question sentence, with semantic scores."""
    for text in (case.query, *question_parts(case.query)):
        semantic = semantic_scores(index, text, match_text(index, text))
        if semantic is None:
            continue
        result = match_text(index, text, semantic)
        if result.candidates and result.query is not None:
            row = features(index, result.query, result.candidates, result.top_faq, result.unanswered_lead,
                           result.neighbours)
            rows.add(row + semantic_features(semantic, result.top_faq), result, case)


def training_rows(
    settings: Settings, sets: list[tuple[Path, Path]], analyzer: Analyzer | None = None,
    encoder: Encoder | None = None,
) -> tuple[Rows, Rows | None]:
    """The lexical rows, and the semantic rows when there is an ``encoder``."""
    analyzer = analyzer or Analyzer()
    lexical, semantic = Rows([], [], []), (Rows([], [], []) if encoder else None)
    for corpus_path, questions in sets:
        corpus = load_corpus(corpus_path, settings.faq_dir)
        lexical_index = build_index(corpus, settings.matcher, analyzer, calibration=None)
        index = lexical_index if encoder is None else build_index(
            corpus, settings.matcher, analyzer, calibration=None, encoder=encoder, cache_dir=settings.cache_dir)
        for case in load_cases(questions, {e.id for e in index.corpus.entries}):
            result = match(lexical_index, case.query)
            if result.candidates and result.query is not None:
                lexical.add(features(lexical_index, result.query, result.candidates, result.top_faq,
                                     result.unanswered_lead, result.neighbours), result, case)
            if semantic is not None:
                _semantic_rows(index, case, semantic)
    return lexical, semantic


def calibrate(settings: Settings, sets: list[tuple[Path, Path]]) -> tuple[Calibration, Calibration | None]:
    """The lexical calibration, and the semantic one unless the model cannot load here."""
    encoder = load_encoder()
    lexical, semantic = training_rows(settings, sets, encoder=encoder)
    names = [f"{corpus.name}:{questions.name}" for corpus, questions in sets]
    return lexical.fit(names), (semantic.fit(names, SEMANTIC_FEATURES) if semantic else None)
