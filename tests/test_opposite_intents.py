"""Opposite intents are never confused: a question to stop, withdraw or deregister is never
answered with how to receive, join or register, and the other way round — in Japanese and in
English (``faq_data/polarity.yaml``, the ``polarity`` of FAQ entries, ``faq_data/english.yaml``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.faq.corpus import CorpusError, load_lexicon
from bot.faq.index import FaqIndex
from bot.faq.matcher import Outcome, match

PAIRS = Path(__file__).parent / "data" / "opposite_intents.jsonl"


def _pairs() -> list[dict]:
    return [json.loads(line) for line in PAIRS.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_no_question_is_answered_with_the_entry_of_the_opposite_polarity(jsug_index: FaqIndex) -> None:
    polar = {entry.id for entry in jsug_index.corpus.entries if entry.polarity}
    cases = [case for case in _pairs() if case["expected"][0] in polar and case["opposite_of"] in polar]
    assert len(cases) >= 40
    confused = [case["query"] for case in cases
                if (result := match(jsug_index, case["query"])).outcome is Outcome.ANSWER
                and result.faq_id == case["opposite_of"]]
    assert confused == []


@pytest.mark.parametrize("query", ["I want to cancel our membership", "We'd like to terminate our membership",
                                   "How do I unsubscribe from the newsletter?", "メルマガの配信を希望しない",
                                   "JSUGNETの利用登録を解除したい"])
def test_a_cancellation_or_a_stop_is_never_answered_with_joining_or_registering(
        jsug_index: FaqIndex, query: str) -> None:
    result = match(jsug_index, query)
    assert not (result.outcome is Outcome.ANSWER and result.faq_id in ("join", "jsugnet-registration"))
    assert result.ranked[0] not in ("join", "jsugnet-registration")


@pytest.mark.parametrize(("query", "faq_id"), [
    ("JSUGの会員を解約したい", "withdrawal"),
    ("メールマガジンを受信できるようにしたいです", "jsugnet-registration"),
    ("メルマガの受信を止めたい", "newsletter-dm-stop"),
    ("加盟申請の窓口を教えてください", "join"),
    ("We'd like to become a JSUG member company", "join"),
])
def test_each_direction_ranks_its_own_entry_first(jsug_index: FaqIndex, query: str, faq_id: str) -> None:
    assert match(jsug_index, query).ranked[0] == faq_id


def test_longer_cues_win_and_mixed_questions_have_no_polarity(jsug_index: FaqIndex) -> None:
    lexicon = jsug_index.corpus.lexicon
    assert lexicon.polarity("メールマガジンの配信を希望しない") == "stop"
    assert lexicon.polarity("メールマガジンを受け取りたい") == "start"
    assert lexicon.polarity("退会して、また入会したい") is None
    assert lexicon.polarity("年会費はいくらですか") is None


def test_a_polarity_file_of_the_wrong_shape_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "polarity.yaml").write_text("begin: [始め]\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="polarity.yaml"):
        load_lexicon(tmp_path)
