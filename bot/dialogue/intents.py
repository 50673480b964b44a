"""Intents (``intents/*.yaml``): greeting, thanks, cancel, asking for a person, and the actions.

Each intent is a list of example phrases, matched by the same engine as the FAQ (an intent is an
entry whose phrasings are its examples), so the secretariat edits them like FAQ alternates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot.faq.corpus import Corpus, CorpusError, FaqEntry, read_yaml
from bot.faq.index import FaqIndex, build_index
from bot.faq.matcher import match
from bot.settings import MatcherSettings
from bot.text.normalize import Lexicon
from bot.text.tokens import Analyzer

CONVERSATIONAL = frozenset({"greeting", "thanks", "cancel", "human"})
# Intents are short phrases: the best example decides; nothing is diluted by answers or centroids.
INTENT_MATCHER = MatcherSettings(weight_answer=0.0, weight_centroid=0.0)


@dataclass(frozen=True)
class Intent:
    name: str
    handler: str | None
    examples: tuple[str, ...]


@dataclass(frozen=True)
class IntentMatch:
    """The intent found; ``covered``: every word of the message occurs in that intent's examples."""

    name: str
    handler: str | None
    score: float
    covered: bool


def load_intents(folder: Path, known_handlers: frozenset[str]) -> list[Intent]:
    intents: list[Intent] = []
    for path in sorted(folder.glob("*.yaml")):
        raw = read_yaml(path)
        if not isinstance(raw, dict) or not isinstance(raw.get("intent"), str):
            raise CorpusError(path, "needs 'intent: NAME' and a list 'examples'")
        examples = raw.get("examples")
        if not isinstance(examples, list) or not examples or not all(isinstance(e, str) for e in examples):
            raise CorpusError(path, "'examples' must be a non-empty list of phrases", f"'{raw['intent']}'")
        handler = raw.get("handler")
        if handler is not None and handler not in known_handlers:
            raise CorpusError(path, f"unknown handler '{handler}'", f"'{raw['intent']}'")
        intents.append(Intent(raw["intent"], handler, tuple(e.strip() for e in examples if e.strip())))
    if not intents:
        raise CorpusError(folder, "holds no intent files (*.yaml)")
    return intents


class IntentIndex:
    """Finds the intent of a short message, or none."""

    def __init__(self, intents: list[Intent], lexicon: Lexicon, analyzer: Analyzer, threshold: float) -> None:
        self.intents = {intent.name: intent for intent in intents}
        entries = tuple(
            FaqEntry(id=i.name, question=i.examples[0], answer=" ", alternates=i.examples[1:]) for i in intents
        )
        self.index: FaqIndex = build_index(Corpus(entries, {}, lexicon), INTENT_MATCHER, analyzer, calibration=None)
        self.threshold = threshold

    def detect(self, text: str) -> IntentMatch | None:
        result = match(self.index, text)
        if not result.candidates:
            return None
        top = result.candidates[0]
        runner_up = result.candidates[1].score if len(result.candidates) > 1 else 0.0
        if top.score < self.threshold or top.score - runner_up < INTENT_MATCHER.answer_margin:
            return None
        intent = self.intents[top.faq_id]
        words = set(result.query.analysis.words) if result.query else set()
        covered = words <= self.index.entry_words(result.top_faq)
        return IntentMatch(intent.name, intent.handler, top.score, covered)
