"""Score a member's question against the index and decide: answer, suggest or fall back.

The matcher is a pure function of (index, text): no database, no settings lookups at call time.
The decision uses the best candidate's own score *and* its margin over the runner-up, because two
close FAQs mean "もしかして…", not a coin toss between them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cdist

from bot.faq.index import FIELDS, Document, FaqIndex
from bot.text.normalize import clean, is_english


class Outcome(str, Enum):
    ANSWER = "answer"
    SUGGEST = "suggest"
    FALLBACK = "fallback"


@dataclass(frozen=True)
class Candidate:
    """One FAQ's score, with the parts it was fused from, so a person can see why."""

    faq_id: str
    score: float
    parts: dict[str, float]
    best_phrasing: str

    def as_dict(self) -> dict[str, object]:
        return {
            "faq_id": self.faq_id,
            "score": round(self.score, 4),
            "parts": {k: round(v, 4) for k, v in self.parts.items()},
            "best_phrasing": self.best_phrasing,
        }


@dataclass(frozen=True)
class MatchResult:
    outcome: Outcome
    faq_id: str | None
    score: float
    suggestions: list[str]
    candidates: list[Candidate]
    matched_terms: list[str]
    synonyms_applied: list[tuple[str, str]] = field(default_factory=list)
    fillers_removed: list[str] = field(default_factory=list)
    normalized: str = ""
    truncated: bool = False
    relevance: float = 0.0
    off_topic_terms: list[str] = field(default_factory=list)
    query: Document | None = field(default=None, repr=False, compare=False)
    top_faq: int = -1
    question_part: str | None = None
    """The sentence of a long message the decision was made on (None: the whole message)."""
    slow_path: bool = False
    """Whether the lexical views were unsure and the message was matched again (semantic view, sentences)."""
    unanswered_match: str | None = None
    """The unanswered question (``unanswered.yaml``) the message is closer to than to the best FAQ."""
    unanswered_lead: float = 0.0
    """How much nearer the message is to the nearest unanswered question than to the best FAQ's
    nearest phrasing, by the lexical views (a calibration signal; above ``unanswered_margin``, a veto)."""
    neighbours: float = 0.0
    """The share of the 10 phrasings nearest to the message that belong to the best FAQ (a calibration signal)."""
    also: list[str] = field(default_factory=list)
    """With an answer: the other entries a message of several questions asks about, each answered
    on its own in a sentence or clause of it (``topic_parts``); offered after the answer."""

    @property
    def ranked(self) -> list[str]:
        return [c.faq_id for c in self.candidates]

    def as_dict(self) -> dict[str, object]:
        return {
            "outcome": self.outcome.value,
            "faq_id": self.faq_id,
            "score": round(self.score, 4),
            "relevance": round(self.relevance, 4),
            "suggestions": self.suggestions,
            "matched_terms": self.matched_terms,
            "synonyms_applied": [{"from": a, "to": b} for a, b in self.synonyms_applied],
            "fillers_removed": self.fillers_removed,
            "off_topic_terms": self.off_topic_terms,
            "normalized": self.normalized,
            "question_part": self.question_part,
            "slow_path": self.slow_path,
            "unanswered_match": self.unanswered_match,
            "unanswered_lead": round(self.unanswered_lead, 4),
            "neighbours": self.neighbours,
            "also": self.also,
            "truncated": self.truncated,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def _field_similarities(index: FaqIndex, query: Document) -> dict[str, dict[str, np.ndarray]]:
    """Per kind of row ("variant": each phrasing, "answer", "centroid": each FAQ's phrasings'
    centroid, "unanswered": each unanswered question), per field, the similarity to the query."""
    variants, entries = len(index.variant_faq), index.size
    kinds: dict[str, dict[str, np.ndarray]] = {"variant": {}, "answer": {}, "centroid": {}, "unanswered": {}}
    for name in FIELDS:
        similarities = index.spaces[name].similarities(query.field(name))
        kinds["variant"][name] = similarities[:variants]
        kinds["answer"][name] = similarities[variants : variants + entries]
        kinds["centroid"][name] = similarities[variants + entries : variants + 2 * entries]
        kinds["unanswered"][name] = similarities[variants + 2 * entries :]
    return kinds


def _fuse(parts: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(weights.values())
    fused = np.zeros_like(parts[FIELDS[0]], dtype=np.float64)
    for name in FIELDS:
        fused += weights[name] * parts[name]
    return fused / total


FUZZY_ROWS = 64
"""Edit distance is measured against this many phrasings at most, the nearest by the TF-IDF views: a
phrasing within the fuzzy floor of the question shares most of its character n-grams anyway."""


def _fuzzy(index: FaqIndex, query: Document, rows: np.ndarray) -> np.ndarray:
    """Edit-distance similarity of short queries to the phrasings in ``rows`` (typos, dropped kana)."""
    settings = index.settings
    scores = np.zeros(len(rows), dtype=np.float32)
    if not (2 <= len(query.normalized.chars) <= settings.fuzzy_max_length) or not len(rows):
        return scores
    chars = index.variant_chars[rows].tolist()
    readings = index.variant_readings[rows].tolist()
    by_chars = cdist([query.normalized.chars], chars, scorer=fuzz.ratio, dtype=np.float32)[0]
    by_reading = cdist([query.analysis.reading], readings, scorer=fuzz.ratio, dtype=np.float32)[0]
    scores = np.maximum(by_chars, by_reading) / 100.0
    return np.where(scores >= settings.fuzzy_floor, scores, 0.0)


@dataclass(frozen=True)
class Scores:
    """Every score of one query: per FAQ (``total``) and per phrasing row, by field."""

    total: np.ndarray
    by_row: np.ndarray
    row_parts: dict[str, np.ndarray]
    answer: np.ndarray
    centroid: np.ndarray
    lexical: np.ndarray
    """``total`` before the semantic score and the polarity rule were applied to it."""
    unanswered: np.ndarray
    """The (lexical) similarity of each of the corpus's unanswered questions, fused like a phrasing's."""
    semantic: np.ndarray | None = None

    def best_row(self, index: FaqIndex, faq: int) -> int:
        start = int(index.variant_starts[faq])
        end = int(index.variant_starts[faq + 1]) if faq + 1 < len(index.variant_starts) else len(self.by_row)
        return start + int(np.argmax(self.by_row[start:end]))


def kana_share(text: str) -> float:
    """The share of a message's letters that are kana (1.0 for 「ぱすわーどわすれた」)."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum("\u3040" <= ch <= "\u30ff" for ch in letters) / len(letters)


def view_weights(index: FaqIndex, query: Document) -> dict[str, float]:
    """The views' weights for this question: a kana-only question (or romaji, read as kana) has no
    kanji for the word and character views to meet, so its reading counts for more."""
    s = index.settings
    boost = max(0.0, (kana_share(query.normalized.text) - 0.6) / 0.4)
    moved = 0.5 * boost
    return {"chars": s.weight_chars * (1 - moved), "words": s.weight_words * (1 - moved),
            "reading": s.weight_reading + moved * (s.weight_chars + s.weight_words)}


def semantic_weight(index: FaqIndex, text: str) -> float:
    """The semantic view's weight for this message: an English one meets the Japanese corpus only
    through the glossary's words, so the multilingual model's judgement counts for more."""
    s = index.settings
    return s.weight_semantic_english if is_english(text) else s.weight_semantic


def score_all(index: FaqIndex, query: Document, semantic: np.ndarray | None = None,
              semantic_weight: float = 1.0) -> Scores:
    """The lexical score of every FAQ, plus the weighted ``semantic`` score when it is given."""
    s = index.settings
    weights = view_weights(index, query)
    kinds = _field_similarities(index, query)
    per_variant = kinds["variant"]
    variant_score = _fuse(per_variant, weights)
    answer_score = _fuse(kinds["answer"], weights)
    centroid_score = _fuse(kinds["centroid"], weights)
    phrasing_weight = 1 - s.weight_answer - s.weight_centroid
    entry_score = s.weight_answer * answer_score + s.weight_centroid * centroid_score

    best = np.maximum.reduceat(variant_score, index.variant_starts)
    shortlist = np.argsort(-(phrasing_weight * best + entry_score))[: s.shortlist]
    listed = np.zeros(index.size, dtype=bool)
    listed[shortlist] = True
    rows = np.flatnonzero(listed[index.variant_faq])
    if len(rows) > FUZZY_ROWS:
        rows = rows[np.argpartition(-variant_score[rows], FUZZY_ROWS)[:FUZZY_ROWS]]
    fuzzy = np.zeros_like(variant_score)
    fuzzy[rows] = _fuzzy(index, query, rows)
    per_variant["fuzzy"] = fuzzy
    variant_score = np.maximum(variant_score, fuzzy)

    best = np.maximum.reduceat(variant_score, index.variant_starts)
    lexical = phrasing_weight * best + entry_score
    total = lexical if semantic is None else lexical + semantic_weight * semantic
    unanswered = _fuse(kinds["unanswered"], weights)
    return Scores(total, variant_score, per_variant, answer_score, centroid_score, lexical.copy(), unanswered, semantic)


def _top(values: np.ndarray, k: int) -> np.ndarray:
    if len(values) > k:
        head = np.argpartition(-values, k)[:k]
        return head[np.argsort(-values[head], kind="stable")]
    return np.argsort(-values, kind="stable")


def _candidates(index: FaqIndex, scores: Scores, order: np.ndarray) -> list[Candidate]:
    """The ranked FAQs with the parts of their best phrasing, read out of the arrays at once."""
    faqs = order.tolist()
    rows = [scores.best_row(index, faq) for faq in faqs]
    columns = {name: values[rows].tolist() for name, values in scores.row_parts.items()}
    columns["answer"] = scores.answer[order].tolist()
    columns["centroid"] = scores.centroid[order].tolist()
    if scores.semantic is not None:
        columns["semantic"] = scores.semantic[order].tolist()
    totals = scores.total[order].tolist()
    return [
        Candidate(index.corpus.entries[faq].id, totals[n], {name: column[n] for name, column in columns.items()},
                  index.variant_texts[rows[n]])
        for n, faq in enumerate(faqs)
    ]


def features(index: FaqIndex, query: Document, candidates: list[Candidate], top_faq: int,
             unanswered_lead: float, neighbours: float) -> list[float]:
    """The signals of the best candidate that the calibration reads (see ``calibration.FEATURES``)."""
    top = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else 0.0
    words = query.analysis.words
    known = index.corpus_words
    count = len(words) or 1
    unseen = sum(word not in known for word in words) / count
    entry_words = index.entry_words(top_faq)
    coverage = sum(word in entry_words for word in words) / count
    parts = top.parts
    return [
        top.score,
        top.score - runner_up,
        runner_up / top.score if top.score > 0 else 1.0,
        parts["chars"],
        parts["words"],
        parts["reading"],
        parts["answer"],
        parts["centroid"],
        parts["fuzzy"],
        unseen,
        coverage,
        math.log1p(len(query.normalized.chars)),
        unanswered_lead,
        neighbours,
    ]


def semantic_features(semantic: np.ndarray, top_faq: int) -> list[float]:
    """The semantic signals of the best candidate (``calibration.SEMANTIC_FEATURES``): its score,
    its lead over the semantically best other FAQ, and whether it is that view's first choice too."""
    others = np.delete(semantic, top_faq)
    best_other = float(others.max()) if len(others) else 0.0
    return [float(semantic[top_faq]), float(semantic[top_faq]) - best_other, float(int(np.argmax(semantic)) == top_faq)]


def _probabilities(index: FaqIndex, query: Document, candidates: list[Candidate], top_faq: int,
                   semantic: np.ndarray | None, lead: float, neighbours: float) -> tuple[float, float]:
    """(confidence that the best candidate is right, confidence that the question is in scope)."""
    signals = features(index, query, candidates, top_faq, lead, neighbours)
    if semantic is not None and index.semantic_calibration is not None:
        return index.semantic_calibration.probabilities(signals + semantic_features(semantic, top_faq))
    if index.calibration is not None:
        return index.calibration.probabilities(signals)
    return candidates[0].score, candidates[0].score


OPPOSITE_PENALTY = 0.4


NO_UNANSWERED_LEAD = -0.3
"""The lead of a message decided without the unanswered questions: a typical in-scope question's."""


def unanswered_lead(index: FaqIndex, text: str, scores: Scores, faq: int) -> float:
    """How much nearer (by the lexical views) the message is to the nearest unanswered question than
    to the nearest phrasing of ``faq``. The calibration reads it, and above ``unanswered_margin`` it
    sends the message to the secretariat: 「年会費の領収書がほしい」 is nearer to an unanswered
    「領収書を発行してもらえますか」 than to the billing entry's 「請求書の宛先を変えたい」.
    English messages are decided without the list: they meet the Japanese phrasings only through
    the glossary, so an English unanswered question would beat them on its English words alone."""
    if not len(scores.unanswered) or is_english(text):
        return NO_UNANSWERED_LEAD
    return float(scores.unanswered.max()) - float(scores.by_row[scores.best_row(index, faq)])


NEIGHBOURS = 10
"""How many of the nearest phrasings ``neighbour_share`` counts: fewer than any JSUG entry has."""


def neighbour_share(index: FaqIndex, scores: Scores, faq: int) -> float:
    """The share of the phrasings nearest to the message that are ``faq``'s: a message about an entry
    meets many of its phrasings, a borderline one meets a few of several entries'."""
    rows = scores.by_row
    nearest = np.argpartition(-rows, NEIGHBOURS)[:NEIGHBOURS] if len(rows) > NEIGHBOURS else np.arange(len(rows))
    return float(np.count_nonzero(index.variant_faq[nearest] == faq)) / NEIGHBOURS


def closest_unanswered(index: FaqIndex, scores: Scores, lead: float) -> str | None:
    """The unanswered question a message with this ``lead`` is sent to the secretariat for, or None."""
    if lead <= index.settings.unanswered_margin:
        return None
    return index.corpus.unanswered[int(np.argmax(scores.unanswered))]


def _clears_floor(index: FaqIndex, text: str, scores: Scores, faq: int) -> bool:
    """Whether the best FAQ shares enough of the question's words to be answered at all. An English
    question meets the Japanese FAQ only through the glossary, so there the semantic view's
    judgement (in the calibration) stands in for the overlap."""
    return float(scores.lexical[faq]) >= index.settings.answer_floor or is_english(text)


VAGUE_FOCUS = 0.5
"""A word that fewer than this share of its phrasings use for one entry points to none of them."""


def _too_vague(index: FaqIndex, query: Document) -> bool:
    """A one-word question whose word the phrasings of many entries share (「会員について」,
    「登録」, 「変更」) picks no entry by itself, however well one phrasing happens to fit: it is
    at most suggested. A word mostly of one entry (「入会したい」, 「退会」) still picks that entry."""
    words = set(query.analysis.words)
    if len(words) != 1:
        return False
    column = index.spaces["words"].vocabulary.get(next(iter(words)))
    return column is not None and 0 < index.word_focus[column] < VAGUE_FOCUS


def _asks_what_entry_lacks(index: FaqIndex, normalized: str, faq: int) -> bool:
    """A question for a date or an amount (``question_types.yaml``) whose entry's answer holds none:
    the entry is at most suggested (「次回の部会はいつ開催されますか」 is not how to take part)."""
    answer = index.corpus.entries[faq].answer
    return any(kind.asked_in(normalized) and not kind.answered_in(answer) for kind in index.corpus.lexicon.question_types)


def _keep_polarity(index: FaqIndex, normalized: str, totals: np.ndarray) -> None:
    """Scale down the entries of the opposite polarity: a question to stop the newsletter is never
    answered with how to receive it, nor a cancellation with how to join (``polarity.yaml``)."""
    wanted = index.corpus.lexicon.polarity(normalized)
    if wanted is not None:
        totals[index.polar_entries["stop" if wanted == "start" else "start"]] *= OPPOSITE_PENALTY


_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")
_QUESTION_MARKS = ("?", "？", "か。", "か", "ください", "下さい", "たい", "教えて", "方法", "どう", "どこ", "いつ",
                   "何", "ほしい", "欲しい", "でしょう", "ますか", "願い")
LONG_MESSAGE_CHARS = 40
_RANK = {Outcome.ANSWER: 2, Outcome.SUGGEST: 1, Outcome.FALLBACK: 0}


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_END.split(text) if len(part.strip()) >= 4]


def question_parts(text: str) -> list[str]:
    """The sentences of a long message that ask something (a question mark, 〜か, 〜たい, 教えて …);
    empty for a short message or one of a single sentence. Background sentences ("S/4HANA移行の
    プロジェクト中で…") are left out, so a product named in passing does not veto the answer; when
    every sentence reads as asking (「…知りたいと思っています。…方法を教えてください。」), each is
    still matched on its own."""
    if len(text) < LONG_MESSAGE_CHARS:
        return []
    sentences = _sentences(text)
    if len(sentences) < 2:
        return []
    return [sentence for sentence in sentences if any(mark in sentence for mark in _QUESTION_MARKS)]


_ENGLISH_QUESTION = re.compile(
    r"(?:how|where|what|when|which|can|could|would|should|may|do|does|is|are|please"
    r"|i\s+(?:want|need|would\s+like)|i'd\s+like)\b", re.IGNORECASE)
"""An English clause that asks; 「I'm also our company representative」 only tells."""
_TOPIC_JOINS = re.compile(
    r"(?<=[たいっ]のと)、?(?![同一比違])"
    r"|(?<=たいし)、|(?<=けど)、|(?<=けれど)、"
    r"|[、\s](?=(?:あと|それと|それから|ついでに|あわせて|併せて|合わせて|加えて|それに|さらに)[、,\s]?)"
    r"|(?<=[a-z]),?\s+and\s+(?=(?:also|how|where|what|when|can|could|should|do|does|is|are|i|i'd)\b)",
    re.IGNORECASE)
"""Where one sentence joins two questions: 「パスワードを忘れたのと、住所を変えたい」, 「参加したいし、
案内も受け取りたい」, 「…忘れた、あと請求書の送り先も…」, "reset my password, and where do I update
my phone number". 「変わるのと同時に」 joins nothing."""
TOPIC_MIN_CHARS = 6
"""A shorter clause (「タダ？」) says too little to be matched on its own."""


def topic_parts(text: str) -> list[str]:
    """The sentences and joined clauses of a message that ask something, when it holds two or more
    (else empty). Each is matched on its own, so that one clear question is not drowned by the
    other. A clause listed before a join (「パスワードを忘れたのと、」, 「…忘れた、あと…」) asks by
    its place; a statement (「会社は会員です」, 「企業代表者も私です」) is left out: matched alone it
    is sure of an entry the member did not ask about."""
    asking: list[str] = []
    clauses = 0
    for sentence in _sentences(text):
        pieces = _TOPIC_JOINS.split(sentence)
        for number, piece in enumerate(pieces):
            clause = piece.strip(" 、,")
            if len(clause) < TOPIC_MIN_CHARS:
                continue
            clauses += 1
            listed = number < len(pieces) - 1 and not clause.endswith(("けど", "けれど"))
            if listed or _asks(clause):
                asking.append(clause)
    return asking if clauses >= 2 else []


def _asks(clause: str) -> bool:
    return any(mark in clause for mark in _QUESTION_MARKS) or bool(_ENGLISH_QUESTION.match(clause))


SHORT_QUESTION_CHARS = 16
"""A question sentence shorter than this (「再設定はどこでできますか？」) may take its subject from
the sentence before it."""
SPECIFIC_SHARE = 0.2
"""A word used by at most this share of the entries (or by two) is specific to them."""


def _product_is_the_subject(index: FaqIndex, text: str, whole: MatchResult, part: str, result: MatchResult) -> bool:
    """Whether a short question takes its subject from a sentence before it that names an
    out-of-scope product: in 「SAPのS-ユーザーのパスワードを忘れました。再設定はどこで…？」 the first
    sentence names the product *and* a word specific to the question's FAQ (パスワード), so the
    question is about the product's password. A background sentence shares no such word."""
    if not whole.off_topic_terms or result.top_faq < 0 or len(part) >= SHORT_QUESTION_CHARS:
        return False
    sentences = _sentences(text)
    position = sentences.index(part) if part in sentences else 0
    if not position:
        return False
    before = sentences[position - 1]
    if not any(term in clean(before) for term in whole.off_topic_terms):
        return False
    entry_words, vocabulary = index.entry_words(result.top_faq), index.spaces["words"].vocabulary
    limit = max(2, int(SPECIFIC_SHARE * index.size))
    return any(word in entry_words and index.word_entries[vocabulary[word]] <= limit
               for word in index.document(before).analysis.words if word in vocabulary)


MAX_PARTS = 6
"""A message is matched part by part for its first few questions only, within the part of it that
is read at all (``max_query_chars``): each part costs a match, on the slow path the model too, and
a message of a thousand questions must not take seconds."""


def match(index: FaqIndex, text: str) -> MatchResult:
    """Rank the FAQ for ``text`` and decide. When the lexical views are not sure of an answer (the
    slow path), the message is matched again with the semantic view added, and by its question
    sentences and clauses too (``question_parts``, ``topic_parts``); an answer to the whole message
    stands, else the most decisive result wins (an answer over a suggestion over a fallback, then
    the higher confidence). A message sure of its answer whose sentences or clauses ask something
    is a slow path too: those are matched on their own, and the entries they are sure of, other
    than the answer, come with it (``also``)."""
    whole = match_text(index, text)
    read = text[: index.settings.max_query_chars]
    topics = topic_parts(read)[:MAX_PARTS]
    if whole.outcome is Outcome.ANSWER:
        if not topics:
            return whole  # the fast path: sure of the whole message, which asks one thing
        return replace(whole, also=_also(whole, [match_text(index, part) for part in topics]), slow_path=True)
    results = [_with_semantic(index, text, whole)]
    for part in list(dict.fromkeys([*question_parts(read), *topics]))[:MAX_PARTS]:
        lexical = match_text(index, part)
        result = _with_semantic(index, part, lexical)
        if not (_product_is_the_subject(index, text, whole, part, result)
                or _unanswered_both_ways(results[0], lexical, result)):
            results.append(result)
    slow = index.semantic is not None or len(results) > 1
    best = results[0]
    if best.outcome is not Outcome.ANSWER:
        best = max(results, key=lambda r: (_RANK[r.outcome], r.score))
    also = _also(best, results[1:])
    if best is not results[0]:
        return replace(best, question_part=best.normalized, truncated=whole.truncated, slow_path=slow, also=also)
    return replace(results[0], slow_path=slow, also=also)


def _unanswered_both_ways(whole: MatchResult, lexical: MatchResult, part: MatchResult) -> bool:
    """Whether a part is answered only because the model overruled its unanswered question, when
    the whole message is an unanswered question too: 「部会にオンラインで参加できますか？録画の
    配信はありますか」 and its first sentence are both nearest to 「カンファレンスってオンラインでも
    見られる？」; the model, reading the sentence without the recording, would take it for the entry
    on taking part, which does not say."""
    return (whole.unanswered_match is not None and lexical.unanswered_match is not None
            and part.outcome is Outcome.ANSWER)


def _also(answer: MatchResult, parts: list[MatchResult]) -> list[str]:
    """The other entries that parts of an answered message are answered with, in order."""
    if answer.outcome is not Outcome.ANSWER:
        return []
    others = [r.faq_id for r in parts if r.outcome is Outcome.ANSWER and r.faq_id and r.faq_id != answer.faq_id]
    return list(dict.fromkeys(others))


SEMANTIC_MAX_CHARS = 400
"""How much of a message the model reads: its time grows with the length, and the question
sentences of a longer message are read on their own anyway (``question_parts``)."""


def _semantic_text(text: str, lexical: MatchResult) -> str:
    """What the model reads: the message as written, except romaji (「pasuwaado wo wasureta」),
    which it reads far better as the kana the normaliser made of it."""
    romaji = kana_share(text) < 0.2 and kana_share(lexical.normalized) > 0.6
    return (lexical.normalized if romaji else text)[:SEMANTIC_MAX_CHARS]


def semantic_scores(index: FaqIndex, text: str, lexical: MatchResult) -> np.ndarray | None:
    """The semantic view's score of every FAQ for ``text`` (None without the view or a question)."""
    if index.semantic is None or not lexical.candidates:
        return None
    return index.semantic.scores(_semantic_text(text, lexical))


UNANSWERED_VETO = -0.02
"""The model's cosines differ by about 0.01 between near paraphrases: only a clearer preference
for the FAQ's phrasings overrules an unanswered question that is nearer in words."""


def _with_semantic(index: FaqIndex, text: str, lexical: MatchResult) -> MatchResult:
    """The message matched with the semantic view. An unanswered question that is nearer only in
    words, while the model clearly finds the FAQ nearer in meaning, does not keep the message
    from its FAQ."""
    semantic = semantic_scores(index, text, lexical)
    if semantic is None or index.semantic is None:
        return lexical
    result = match_text(index, text, semantic)
    if result.unanswered_match is not None:
        lead = index.semantic.unanswered_lead(_semantic_text(text, lexical), result.top_faq)
        if lead is not None and lead < UNANSWERED_VETO:
            return match_text(index, text, semantic, heed_unanswered=False)
    return result


def match_text(index: FaqIndex, text: str, semantic: np.ndarray | None = None,
               heed_unanswered: bool = True) -> MatchResult:
    """Rank the FAQ for ``text`` as a whole (with the ``semantic`` scores when given) and decide;
    ``heed_unanswered=False`` leaves the unanswered questions out of the decision."""
    s = index.settings
    truncated = len(text) > s.max_query_chars
    query = index.document(text)
    if not query.analysis.words and len(query.normalized.chars) < 2:
        return MatchResult(Outcome.FALLBACK, None, 0.0, [], [], [], normalized=query.normalized.text, truncated=truncated)

    scores = score_all(index, query, semantic, 1.0 if semantic is None else semantic_weight(index, text))
    _keep_polarity(index, query.normalized.text, scores.total)
    order = _top(scores.total, 10)
    candidates = _candidates(index, scores, order)
    best = int(order[0])
    top = candidates[0]
    runner_up = candidates[1].score if len(candidates) > 1 else 0.0
    lead = unanswered_lead(index, text, scores, best) if heed_unanswered else NO_UNANSWERED_LEAD
    neighbours = neighbour_share(index, scores, best)
    confidence, relevance = _probabilities(index, query, candidates, best, semantic, lead, neighbours)
    threshold = s.answer_threshold if semantic is None else s.semantic_answer_threshold
    off_topic = [t for t in query.normalized.off_topic if t not in index.off_topic_used[best]]
    unanswered = closest_unanswered(index, scores, lead)
    suggestions: list[str]
    if off_topic or unanswered:
        outcome, faq_id, suggestions = Outcome.FALLBACK, None, []
    elif (confidence >= threshold and top.score - runner_up >= s.answer_margin
          and _clears_floor(index, text, scores, best) and not _too_vague(index, query)
          and not _asks_what_entry_lacks(index, query.normalized.text, best)):
        outcome, faq_id, suggestions = Outcome.ANSWER, top.faq_id, []
    elif relevance >= s.suggest_threshold or confidence >= threshold:
        outcome, faq_id = Outcome.SUGGEST, None
        floor = top.score * s.suggest_ratio
        suggestions = [c.faq_id for c in candidates[: s.max_suggestions] if c.score >= floor]
    else:
        outcome, faq_id, suggestions = Outcome.FALLBACK, None, []
    matched = sorted(set(query.analysis.words) & index.entry_words(best))
    return MatchResult(
        outcome=outcome,
        faq_id=faq_id,
        score=confidence,
        relevance=relevance,
        suggestions=suggestions,
        candidates=candidates,
        matched_terms=matched,
        off_topic_terms=off_topic,
        synonyms_applied=list(query.normalized.synonyms_applied),
        fillers_removed=list(query.normalized.fillers_removed),
        normalized=query.normalized.text,
        truncated=truncated,
        query=query,
        top_faq=best,
        unanswered_match=unanswered,
        unanswered_lead=lead,
        neighbours=neighbours,
    )
