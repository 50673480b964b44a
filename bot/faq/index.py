"""The search index of a corpus: three TF-IDF views of every phrasing, built once at start-up.

Views (each a TF-IDF of sublinear counts, ``bot.faq.tfidf``):
- ``chars``: character 2–3-grams of the folded text — robust to typos and to words the analyser
  splits differently;
- ``words``: Sudachi's normalised content words — robust to inflection and spelling variants;
- ``reading``: character 2–3-grams of the kana reading — robust to misconverted kanji, kana-only
  and romaji input.

Each FAQ is indexed through its question and team-written alternates (one row each, the best row
wins) and, with less weight, its answer. Inverse document frequencies are counted per FAQ, not per
row, so an entry with many alternates does not make its own words look common.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from scipy import sparse

from bot.faq.calibration import SEMANTIC_CALIBRATION_FILE, SEMANTIC_FEATURES, Calibration, load_calibration
from bot.faq.corpus import POLARITIES, Corpus, FaqEntry, load_corpus
from bot.faq.semantic import Encoder, SemanticView, build_semantic, load_encoder
from bot.faq.tfidf import TermCounter, as_terms, char_ngrams, l2_rows, smooth_idf, sublinear_tfidf
from bot.settings import MatcherSettings
from bot.text.normalize import Normalized, Normalizer, ascii_words, clean
from bot.text.tokens import Analysis, Analyzer

if TYPE_CHECKING:
    from bot.settings import Settings

log = logging.getLogger(__name__)

FIELDS = ("chars", "words", "reading")


@dataclass(frozen=True)
class Document:
    """One text in every form the index compares."""

    normalized: Normalized
    analysis: Analysis

    def field(self, name: str) -> str | tuple[str, ...]:
        if name == "chars":
            return self.normalized.chars
        if name == "words":
            return self.analysis.words
        return self.analysis.reading


class FieldSpace:
    """One TF-IDF view; vectorises queries with their unseen terms counted in the norm.

    A TF-IDF vectoriser drops terms it has not seen, so '天気 パスワード' would look exactly like
    'パスワード'. Here every unseen term weighs as much as the rarest known one, which pulls the
    similarity of off-topic text down instead of ignoring the off-topic part.
    """

    def __init__(self, name: str, counter: TermCounter, idf: np.ndarray, rows: sparse.spmatrix) -> None:
        self.name = name
        self.analyze: Callable[[object], Sequence[str]] = counter.analyze
        self.vocabulary: dict[str, int] = counter.vocabulary
        self.terms: np.ndarray = counter.terms
        self.idf = idf
        self.unseen_idf = float(idf.max()) if len(idf) else 1.0
        inverted = sparse.csr_matrix(rows.T, dtype=np.float32)
        inverted.sort_indices()
        self._indptr = inverted.indptr.astype(np.int64)
        self._rows = inverted.indices.astype(np.int32)
        self._data = inverted.data
        self._row_count = rows.shape[0]

    def query_vector(self, value: str | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """The query's known terms (columns) and their weights, normalised with unseen terms included."""
        counts = Counter(self.analyze(value))
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
        found = np.fromiter((self.vocabulary.get(term, -1) for term in counts), dtype=np.int64, count=len(counts))
        weight = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        known = found >= 0
        columns = found[known]
        values = weight[known] * self.idf[columns]
        unseen = float(np.sum((weight[~known] * self.unseen_idf) ** 2))
        norm = math.sqrt(float(values @ values) + unseen)
        return columns, (values / norm if norm else values)

    def postings(self) -> sparse.csr_matrix:
        """Terms × rows: the weight of each term in each indexed document."""
        return sparse.csr_matrix((self._data, self._rows, self._indptr), shape=(len(self._indptr) - 1, self._row_count))

    def similarities(self, value: str | tuple[str, ...]) -> np.ndarray:
        """Cosine similarity of the query to every indexed document, through the postings.

        Walking the postings of the query's few terms costs a handful of numpy calls, where a
        sparse matrix product pays scipy's per-call overhead several times over.
        """
        columns, weights = self.query_vector(value)
        starts = self._indptr[columns]
        lengths = self._indptr[columns + 1] - starts
        total = int(lengths.sum())
        if not total:
            return np.zeros(self._row_count, dtype=np.float64)
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(total)
        contributions = self._data[offsets] * np.repeat(weights, lengths)
        return np.bincount(self._rows[offsets], weights=contributions, minlength=self._row_count)


@dataclass
class FaqIndex:
    """Everything the matcher needs, immutable after ``build_index``, but for the semantic view and its
    calibration, which a server may attach once, later (``start_semantic``)."""

    corpus: Corpus
    settings: MatcherSettings
    normalizer: Normalizer
    analyzer: Analyzer
    spaces: dict[str, FieldSpace]
    variant_faq: np.ndarray
    variant_starts: np.ndarray
    variant_chars: np.ndarray
    """The folded text of every phrasing row (an object array, so a shortlist is one fancy index)."""
    variant_readings: np.ndarray
    variant_texts: list[str]
    entry_terms: sparse.csr_matrix
    calibration: Calibration | None = None
    polar_entries: dict[str, np.ndarray] = field(default_factory=dict)
    """For "start" and "stop": the positions of the entries marked with that polarity."""
    semantic: SemanticView | None = None
    semantic_calibration: Calibration | None = None
    """The slow path's calibration, reading the semantic signals too."""
    corpus_words: frozenset[str] = frozenset()
    """The words the entries use (the unanswered questions' words are not the corpus's)."""
    word_entries: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Per word of the words view: how many entries use it."""
    off_topic_used: tuple[frozenset[str], ...] = ()
    """Per entry: the off-topic words it uses itself, found as in a question (whole words for
    English): "fi" in an alternate's "finance" does not make the entry one about SAP FI."""
    word_focus: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    """Per word of the words view: the share of the phrasings using it that belong to one entry,
    the one with most of them (1.0: a word of one entry only; 0 for a word no phrasing uses)."""

    @property
    def size(self) -> int:
        return len(self.corpus.entries)

    def entry_words(self, number: int) -> frozenset[str]:
        """The words of an entry's phrasings and answer (for explanations)."""
        row = self.entry_terms.indices[self.entry_terms.indptr[number] : self.entry_terms.indptr[number + 1]]
        return frozenset(self.spaces["words"].terms[row])

    def document(self, text: str) -> Document:
        """A member's question, normalised and analysed like the corpus."""
        normalized = self.normalizer.normalize(text, self.settings.max_query_chars, detect_off_topic=True)
        return Document(normalized, self.analyzer.analyze(normalized.text))


def _known_ascii(entries: Sequence[FaqEntry]) -> frozenset[str]:
    """English words and abbreviations the corpus uses, which must never be read as romaji."""
    words: set[str] = set()
    for entry in entries:
        for text in (entry.question, entry.answer, *entry.alternates):
            words.update(ascii_words(text.lower()))
    return frozenset(words)


def build_index(
    corpus: Corpus,
    settings: MatcherSettings,
    analyzer: Analyzer | None = None,
    calibration: Calibration | None | bool = True,
    encoder: Encoder | None = None,
    cache_dir: Path | None = None,
) -> FaqIndex:
    """Index ``corpus``; ``calibration=True`` loads the shipped calibrations, ``None`` uses raw scores.
    With an ``encoder`` the index has a semantic view too (its embeddings cached in ``cache_dir``)."""
    analyzer = analyzer or Analyzer()
    semantic_calibration = None
    if calibration is True:
        calibration = load_calibration()
        if encoder is not None:
            semantic_calibration = load_calibration(SEMANTIC_CALIBRATION_FILE, SEMANTIC_FEATURES)
    normalizer = Normalizer(corpus.lexicon, _known_ascii(corpus.entries))
    variant_texts = [text for entry in corpus.entries for text in (entry.question, *entry.alternates)]
    faq_of = np.asarray([n for n, entry in enumerate(corpus.entries) for _ in (entry.question, *entry.alternates)])
    answer_texts = [corpus.render_answer(entry)[0] for entry in corpus.entries]
    # The reading of long answers adds little to matching and would cost a third of the build.
    documents = _analyse(variant_texts, normalizer, analyzer, with_reading=True)
    documents += _analyse(answer_texts, normalizer, analyzer, with_reading=False)
    documents += _analyse(list(corpus.unanswered), normalizer, analyzer, with_reading=True)
    row_entry = np.r_[faq_of, np.arange(len(corpus.entries)), np.full(len(corpus.unanswered), len(corpus.entries))]

    spaces: dict[str, FieldSpace] = {}
    presence: dict[str, sparse.csr_matrix] = {}
    for name in FIELDS:
        spaces[name], presence[name] = _field_space(
            name, [d.field(name) for d in documents], row_entry, faq_of, len(corpus.entries))
    variants = documents[: len(variant_texts)]
    word_entries = np.asarray(presence["words"].sum(axis=0)).ravel().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, faq_of[1:] != faq_of[:-1]])
    semantic = None
    if encoder is not None:
        semantic = build_semantic(encoder, variant_texts, _passages(corpus), starts, cache_dir,
                                  settings.semantic_wait_seconds, corpus.unanswered)
    return FaqIndex(
        corpus=corpus,
        settings=settings,
        normalizer=normalizer,
        analyzer=analyzer,
        spaces=spaces,
        variant_faq=faq_of,
        variant_starts=starts,
        variant_chars=np.array([d.normalized.chars for d in variants], dtype=object),
        variant_readings=np.array([d.analysis.reading for d in variants], dtype=object),
        variant_texts=variant_texts,
        entry_terms=presence["words"],
        corpus_words=frozenset(spaces["words"].terms[word_entries > 0]),
        word_entries=word_entries,
        word_focus=_word_focus(spaces["words"], faq_of, len(corpus.entries)),
        off_topic_used=tuple(frozenset(normalizer.off_topic_terms(_entry_text(entry))) for entry in corpus.entries),
        calibration=calibration or None,
        polar_entries={kind: np.array([i for i, e in enumerate(corpus.entries) if e.polarity == kind], dtype=np.intp)
                       for kind in POLARITIES},
        semantic=semantic,
        semantic_calibration=semantic_calibration,
    )


def _entry_text(entry: FaqEntry) -> str:
    return clean("\n".join((entry.question, *entry.alternates, entry.answer)))


def _passages(corpus: Corpus) -> list[str]:
    """What the model reads of each entry: its question and its answer as a member sees it."""
    return [f"{entry.question}\n{corpus.render_answer(entry)[0]}" for entry in corpus.entries]


def _word_focus(space: FieldSpace, faq_of: np.ndarray, entries: int) -> np.ndarray:
    uses = (space.postings()[:, : len(faq_of)] > 0).astype(np.float32)
    per_entry = (uses @ _membership(faq_of, entries).T).tocsr()
    phrasings = np.asarray(per_entry.sum(axis=1), dtype=np.float64).ravel()
    most = per_entry.max(axis=1).toarray().ravel().astype(np.float64)
    return np.divide(most, phrasings, out=np.zeros_like(phrasings), where=phrasings > 0)


def _analyse(texts: list[str], normalizer: Normalizer, analyzer: Analyzer, with_reading: bool) -> list[Document]:
    documents = []
    for text in texts:
        normalized = normalizer.normalize(text)
        documents.append(Document(normalized, analyzer.analyze(normalized.text, with_reading)))
    return documents


def _membership(owner: np.ndarray, groups: int) -> sparse.csr_matrix:
    """A groups × rows matrix with a 1 where the row belongs to the group."""
    return sparse.csr_matrix(
        (np.ones(len(owner), dtype=np.float32), (owner, np.arange(len(owner)))), shape=(groups, len(owner))
    )


def _field_space(
    name: str, values: list, row_entry: np.ndarray, faq_of: np.ndarray, entries: int
) -> tuple[FieldSpace, sparse.csr_matrix]:
    """Count every row once; weigh terms by the number of *entries* that use them.

    The rows are the phrasings, the answers, then the unanswered questions, whose words change no
    word's weight (so the entries score as they would without them); the postings hold the
    phrasings, the answers, one centroid row per entry, then the unanswered questions. Also
    returns which terms each entry uses (entries × terms).
    """
    counter = _counter(name)
    counts = counter.fit_transform(values)
    groups = int(row_entry.max()) + 1
    presence = ((_membership(row_entry, groups) @ (counts > 0).astype(np.float32)) > 0).tocsr()[:entries]
    idf = smooth_idf(presence)
    used = np.asarray(presence.sum(axis=0)).ravel() > 0
    if not used.all():
        # A word only the unanswered questions use weighs as a word the corpus has never seen.
        idf = np.where(used, idf, idf[used].max())
    weighted = sublinear_tfidf(counts, idf)
    own = len(faq_of) + entries
    centroids = l2_rows(_membership(faq_of, entries) @ weighted[: len(faq_of)])
    space = FieldSpace(name, counter, idf, sparse.vstack([weighted[:own], centroids, weighted[own:]]))
    return space, presence


def _counter(name: str) -> TermCounter:
    return TermCounter(as_terms if name == "words" else char_ngrams)


def open_index(settings: "Settings", source: Path | None = None, *, background: bool = False) -> FaqIndex:
    """The index of ``source`` (a corpus folder, faq.yaml or .jsonl), by default the configured corpus,
    with the semantic view unless ``JSUG_MATCHER__SEMANTIC=false`` or the model cannot load.

    With ``background`` the index is returned as soon as its lexical views are built and the semantic
    view joins it when the corpus is embedded (a minute at a first start on two cores): a server
    binds its port and answers at once, instead of being taken for dead by a platform's boot timeout."""
    corpus = load_corpus(source or settings.faq_dir, settings.faq_dir)
    encoder = load_encoder() if settings.matcher.semantic else None
    if not background or encoder is None:
        return build_index(corpus, settings.matcher, encoder=encoder, cache_dir=settings.cache_dir)
    index = build_index(corpus, settings.matcher)
    start_semantic(index, encoder, settings.cache_dir)
    return index


def start_semantic(index: FaqIndex, encoder: Encoder, cache_dir: Path | None) -> threading.Thread:
    """Embed the corpus in a daemon thread and attach the semantic view to ``index`` when done.
    Until then the matcher decides on the lexical views, as on a machine without the model."""
    thread = threading.Thread(target=_attach_semantic, args=(index, encoder, cache_dir), name="semantic-view",
                              daemon=True)
    log.info("semantic view: embedding the FAQ in the background; the lexical views answer until it is ready")
    thread.start()
    return thread


def _attach_semantic(index: FaqIndex, encoder: Encoder, cache_dir: Path | None) -> None:
    started = time.perf_counter()
    corpus = index.corpus
    try:
        calibration = (load_calibration(SEMANTIC_CALIBRATION_FILE, SEMANTIC_FEATURES)
                       if index.calibration is not None else None)
        view = build_semantic(encoder, index.variant_texts, _passages(corpus), index.variant_starts, cache_dir,
                              index.settings.semantic_wait_seconds, corpus.unanswered)
    except Exception as exc:  # noqa: BLE001 — whatever failed, the lexical matcher goes on answering
        log.warning("semantic view not built (%s: %s); the matcher runs on its lexical views only",
                    type(exc).__name__, exc)
        return
    # The calibration first: a question that sees the view must find the calibration that reads it.
    index.semantic_calibration = calibration
    index.semantic = view
    log.info("semantic view ready after %.1f s", time.perf_counter() - started)
