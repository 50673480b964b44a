"""Words and readings from SudachiPy, the morphological analyser (dictionary: sudachidict_small).

Sudachi was chosen because it installs from PyPI with its dictionary as a wheel (no download at
run time), is maintained, is fast (a Rust core), and gives each word a *normalised form* that
merges spelling variants (シュミレーション → シミュレーション, 申し込み/申込 → 申し込む) and a
*reading* that lets a misconverted kanji or a kana-only query meet the right word.

The *small* dictionary holds the everyday vocabulary members use; the core one adds mostly proper
nouns, costs about 70 MB more resident memory, and measured no better on the team's question sets.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sudachipy import Dictionary, SplitMode

from bot.text.normalize import fold_chars

_SKIPPED_POS = frozenset({"助詞", "助動詞", "補助記号", "記号", "空白"})
# Normalised forms so common in questions that they only add noise.
_STOP_WORDS = frozenset({"為る", "居る", "有る", "成る", "良い", "御", "様", "事", "物", "此の", "其の", "です", "ます"})
# Negation is kept as one word: "受け取りたい" and "受け取らない" ask opposite things.
_NEGATIONS = frozenset({"ない", "ず", "ぬ"})
NEGATION = "ない"
# Sudachi refuses input over ~49 kB; queries are cut well before, corpus answers are chunked.
_CHUNK = 8000
DICTIONARY = "small"


@dataclass(frozen=True)
class Analysis:
    """Content words (normalised forms) and the folded reading of the whole text."""

    words: tuple[str, ...]
    reading: str


class Analyzer:
    """A thread-safe front to Sudachi: one tokenizer per thread, the dictionary shared."""

    def __init__(self) -> None:
        self._dictionary = Dictionary(dict=DICTIONARY)
        self._local = threading.local()

    def _tokenizer(self):  # type: ignore[no-untyped-def]
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._dictionary.tokenizer(mode=SplitMode.A)
            self._local.tokenizer = tokenizer
        return tokenizer

    def analyze(self, text: str) -> Analysis:
        words: list[str] = []
        reading: list[str] = []
        tokenizer = self._tokenizer()
        for start in range(0, len(text), _CHUNK):
            for morpheme in tokenizer.tokenize(text[start : start + _CHUNK]):
                pos = morpheme.part_of_speech()[0]
                surface = morpheme.surface()
                if pos in ("補助記号", "空白"):
                    continue
                reading.append(_reading_of(morpheme.reading_form(), surface))
                word = morpheme.normalized_form().lower()
                if pos == "助動詞" and word in _NEGATIONS:
                    words.append(NEGATION)
                    continue
                if pos in _SKIPPED_POS:
                    continue
                if word not in _STOP_WORDS and word.strip():
                    words.append(word)
        return Analysis(tuple(words), fold_chars("".join(reading)))


def _reading_of(reading: str, surface: str) -> str:
    """Sudachi gives an empty or odd reading to unknown words; the surface is the best guess then."""
    if not reading or (reading == "キゴウ" and surface != "記号"):
        return surface
    return reading
