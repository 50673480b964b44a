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

from sudachipy import Dictionary, Morpheme, SplitMode

from bot.text.normalize import fold_chars

_PUNCTUATION = frozenset({"補助記号", "空白"})
_SKIPPED_POS = frozenset({"助詞", "助動詞", "記号"})
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
        self._categories: dict[int, str] = {}

    def _tokenizer(self):  # type: ignore[no-untyped-def]
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._dictionary.tokenizer(mode=SplitMode.A)
            self._local.tokenizer = tokenizer
        return tokenizer

    def _category(self, pos_id: int) -> str:
        """The top-level part of speech of a POS id; ids are few, so each is looked up once."""
        category = self._categories.get(pos_id)
        if category is None:
            category = self._categories[pos_id] = self._dictionary.pos_of(pos_id)[0]
        return category

    def analyze(self, text: str, with_reading: bool = True) -> Analysis:
        """Content words and, unless ``with_reading`` is off (long answers), the folded reading."""
        words: list[str] = []
        reading: list[str] = []
        tokenizer = self._tokenizer()
        categories = self._categories
        for start in range(0, len(text), _CHUNK):
            for morpheme in tokenizer.tokenize(text[start : start + _CHUNK]):
                pos_id = morpheme.part_of_speech_id()
                pos = categories.get(pos_id) or self._category(pos_id)
                if pos in _PUNCTUATION:
                    continue
                if with_reading:
                    reading.append(_reading_of(morpheme.reading_form(), morpheme))
                if pos in _SKIPPED_POS:
                    if pos == "助動詞" and morpheme.normalized_form() in _NEGATIONS:
                        words.append(NEGATION)
                    continue
                word = morpheme.normalized_form().lower()
                if word not in _STOP_WORDS and word.strip():
                    words.append(word)
        return Analysis(tuple(words), fold_chars("".join(reading)))


def _reading_of(reading: str, morpheme: Morpheme) -> str:
    """Sudachi gives an empty or odd reading to unknown words; the surface is the best guess then."""
    if not reading or reading == "キゴウ":
        surface = morpheme.surface()
        return reading if surface == "記号" else surface
    return reading
