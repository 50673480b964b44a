"""Japanese text normalisation shared by the corpus index and member queries.

Both sides go through the same steps, so a variant spelled one way in the FAQ and another
way by a member meets in the middle: NFKC (full/half width), case, romaji typed instead of
kana, the synonym dictionary, filler phrases, then — for the character fields — kana,
long-vowel and repeated-character folding.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable

import ahocorasick
import jaconv

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ASCII_WORD = re.compile(r"[a-z][a-z'\-]*")
# One romaji syllable (Hepburn and kunrei), a syllabic n, a doubled consonant (small tsu)
# or a long-vowel hyphen. Words that are not a chain of these stay as they are.
_ROMAJI = re.compile(
    r"^(?:(?:sh|ch|ts|[kgsztdnhbpmrfvjcyw])?y?[aiueo]|n'?|([kgsztdbpcjfhm])(?=\1)|-)+$"
)
_NON_WORD = re.compile(r"[^\w]+")
_LONG_VOWEL = re.compile(r"[ー〜~]+")
_REPEAT = re.compile(r"(.)\1{2,}")
_SMALL_KANA = str.maketrans("ァィゥェォッャュョヮヵヶ", "アイウエオツヤユヨワカケ")


def clean(text: str, max_chars: int | None = None) -> str:
    """Make any input safe to process: no surrogates, no control characters, NFKC, lower case."""
    text = _SURROGATE.sub("", text)
    text = _CONTROL.sub(" ", text)
    if max_chars is not None:
        text = text[:max_chars]
    return unicodedata.normalize("NFKC", text).lower().strip()


def romaji_to_kana(text: str, known: frozenset[str] = frozenset()) -> str:
    """Rewrite words typed in romaji ('pasuwado wasureta') as hiragana.

    Only whole words that parse as a chain of romaji syllables are touched, and never words in
    ``known`` (English and abbreviations the corpus or the synonym dictionary already knows).
    """

    def convert(match: re.Match[str]) -> str:
        word = match.group(0)
        if len(word) < 4 or word in known or not _ROMAJI.match(word):
            return word
        return jaconv.alphabet2kana(word)

    return _ASCII_WORD.sub(convert, text)


def is_english(text: str) -> bool:
    """Whether a message is written mainly in English: most of its letters are Latin (a message
    that only names JSUGNET or a login id among Japanese words is not)."""
    latin = sum(ch.isascii() and ch.isalpha() for ch in text)
    letters = sum(ch.isalpha() for ch in text)
    return letters >= 8 and latin / letters >= 0.6 and len(ascii_words(clean(text))) >= 3


def ascii_words(text: str) -> list[str]:
    """The Latin-letter words of a cleaned (lower-case) text: candidates for romaji."""
    return _ASCII_WORD.findall(text)


def fold_chars(text: str) -> str:
    """The form compared character by character: katakana, no long vowels, no punctuation.

    'ぱすわーど', 'パスワード' and 'ﾊﾟｽﾜｰﾄﾞ!!' all become 'パスワド'.
    """
    text = jaconv.hira2kata(text)
    text = _LONG_VOWEL.sub("", text)
    text = text.translate(_SMALL_KANA)
    text = _NON_WORD.sub("", text).replace("_", "")
    return _REPEAT.sub(r"\1", text)


def _variants_of(term: str) -> set[str]:
    """A dictionary term in every script a member might type it in."""
    base = clean(term)
    return {base, jaconv.hira2kata(base), jaconv.kata2hira(base)} - {""}


def _is_word_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


class PhraseTable:
    """Finds dictionary phrases in a text, leftmost-longest, with an Aho–Corasick automaton.

    A phrase that begins or ends with a Latin letter or digit only counts as a whole word, so the
    abbreviation 'pw' is found in 'pwを忘れた' but not in 'pwa'.
    """

    def __init__(self, phrases: dict[str, str]) -> None:
        self._automaton: ahocorasick.Automaton | None = None
        if phrases:
            self._automaton = ahocorasick.Automaton()
            for phrase, value in phrases.items():
                self._automaton.add_word(phrase, (phrase, value))
            self._automaton.make_automaton()

    def find(self, text: str) -> list[tuple[int, int, str, str]]:
        """(start, end, phrase, value) of each match, left to right."""
        if self._automaton is None:
            return []
        found = []
        for last, (phrase, value) in self._automaton.iter_long(text):
            start, end = last - len(phrase) + 1, last + 1
            if _is_word_char(phrase[0]) and start > 0 and _is_word_char(text[start - 1]):
                continue
            if _is_word_char(phrase[-1]) and end < len(text) and _is_word_char(text[end]):
                continue
            found.append((start, end, phrase, value))
        return found

    def replace(self, text: str, replacement: Callable[[str, str], str]) -> str:
        pieces, position = [], 0
        for start, end, phrase, value in self.find(text):
            pieces += [text[position:start], replacement(phrase, value)]
            position = end
        return "".join(pieces) + text[position:]


@dataclass(frozen=True)
class QuestionType:
    """A question that asks for a fact (a date, an amount), and the patterns of answers that give it."""

    name: str
    asks: tuple[str, ...]
    answered_by: tuple[re.Pattern[str], ...]

    def asked_in(self, normalized: str) -> bool:
        return any(word in normalized for word in self.asks)

    def answered_in(self, answer: str) -> bool:
        return any(pattern.search(answer) for pattern in self.answered_by)


_JOINED = re.compile(r"(?<=[^\x00-\x7f]) +| +(?=[^\x00-\x7f])")
"""The spaces normalisation put around a Japanese word (「登録 したい」), which cues are written without."""


@dataclass(frozen=True)
class Lexicon:
    """The synonym dictionary (variant → canonical term) and the filler phrases."""

    synonyms: dict[str, str] = field(default_factory=dict)
    fillers: tuple[str, ...] = ()
    off_topic: tuple[str, ...] = ()
    polarity_cues: dict[str, str] = field(default_factory=dict)
    """A cue (as it reads after normalisation) → "start" or "stop", longest cues first."""
    question_types: tuple[QuestionType, ...] = ()
    contrasts: tuple[str, ...] = ()
    """Phrases that turn down what comes before them (「停止じゃなくて、受け取りたい」)."""

    @classmethod
    def from_groups(
        cls, groups: dict[str, list[str]], fillers: list[str], off_topic: list[str] | None = None,
        polarity: dict[str, list[str]] | None = None, contrasts: list[str] | None = None,
    ) -> "Lexicon":
        mapping: dict[str, str] = {}
        for canonical, variants in groups.items():
            target = clean(canonical)
            # The canonical spellings map to themselves, so that a variant contained in its own
            # canonical term (アドレス in メールアドレス) never rewrites it.
            for form in _variants_of(canonical):
                mapping.setdefault(form, target)
            for variant in variants:
                for form in _variants_of(variant):
                    if form != target:
                        mapping[form] = target
        filler_forms = {form for phrase in fillers for form in _variants_of(phrase)}
        off_topic_forms = {form for term in off_topic or [] for form in _variants_of(term)}
        forms = {form: kind for kind, words in (polarity or {}).items() for word in words
                 for form in _variants_of(word)}
        cues = {form: forms[form] for form in sorted(forms, key=len, reverse=True)}  # longest first
        return cls(
            mapping,
            tuple(sorted(filler_forms, key=len, reverse=True)),
            tuple(sorted(off_topic_forms, key=len, reverse=True)),
            cues,
            contrasts=tuple(sorted({form for phrase in contrasts or [] for form in _variants_of(phrase)},
                                   key=len, reverse=True)),
        )

    def polarity(self, text: str) -> str | None:
        """Whether ``text`` (normalised) asks to start or to stop something; None when neither or both.
        Longer cues win ("希望しない" is a stop, though it holds "希望"). After a contrast
        (「メルマガの停止じゃなくて、逆に受け取りたい」) only what follows the last one counts: what
        comes before it is what the member does not want."""
        text = _JOINED.sub("", text)
        ends = [text.rfind(phrase) + len(phrase) for phrase in self.contrasts if phrase in text]
        if ends:
            text = text[max(ends):]
        found: set[str] = set()
        for cue in self.polarity_cues:
            if cue in text:
                found.add(self.polarity_cues[cue])
                text = text.replace(cue, " ")
        return found.pop() if len(found) == 1 else None


@dataclass(frozen=True)
class Normalized:
    """A text after normalisation, with what was done to it (for the matcher's explanation)."""

    text: str
    chars: str
    synonyms_applied: tuple[tuple[str, str], ...] = ()
    fillers_removed: tuple[str, ...] = ()
    off_topic: tuple[str, ...] = ()


class Normalizer:
    """Applies a ``Lexicon``; built once per corpus, then pure and thread-safe."""

    def __init__(self, lexicon: Lexicon, known_ascii: frozenset[str] = frozenset()) -> None:
        self.lexicon = lexicon
        self.known_ascii = known_ascii | {
            word for term in lexicon.synonyms for word in ascii_words(term)
        }
        self._synonyms = PhraseTable(lexicon.synonyms)
        self._fillers = PhraseTable({f: "" for f in lexicon.fillers})
        self._off_topic = PhraseTable({t: t for t in lexicon.off_topic})

    def off_topic_terms(self, text: str) -> tuple[str, ...]:
        """The off-topic words ``text`` (already cleaned) contains, each once."""
        return tuple(dict.fromkeys(phrase for _, _, phrase, _ in self._off_topic.find(text)))

    def normalize(self, text: str, max_chars: int | None = None, detect_off_topic: bool = False) -> Normalized:
        text = clean(text, max_chars)
        off_topic = self.off_topic_terms(text) if detect_off_topic else ()
        text = romaji_to_kana(text, self.known_ascii)
        applied: list[tuple[str, str]] = []

        def substitute(phrase: str, canonical: str) -> str:
            if canonical != phrase:
                applied.append((phrase, canonical))
            return f" {canonical} "

        text = self._synonyms.replace(text, substitute)
        removed: list[str] = []

        def drop(phrase: str, _: str) -> str:
            removed.append(phrase)
            return " "

        text = self._fillers.replace(text, drop)
        text = " ".join(text.split())
        return Normalized(text, fold_chars(text), tuple(applied), tuple(removed), off_topic)
