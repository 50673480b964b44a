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


def test_after_a_contrast_only_what_follows_decides_the_direction(jsug_index: FaqIndex) -> None:
    lexicon = jsug_index.corpus.lexicon
    assert lexicon.polarity("メールマガジンの停止じゃなくて、受け取りたい") == "start"
    assert lexicon.polarity("入会ではなく退会の手続きを知りたい") == "stop"
    assert lexicon.polarity("停止じゃなくて、年会費はいくらですか") is None  # what it turns down is no cue
    assert lexicon.polarity("JSUGNET の 登録 したい") == "start"  # the spaces normalisation adds


@pytest.mark.parametrize(("query", "faq_id", "opposite"), [
    ("メルマガを止めたいんじゃなくて、むしろ受け取れるようにしたいです", "jsugnet-registration", "newsletter-dm-stop"),
    ("退会じゃなくて、これから入会する方法を知りたい", "join", "withdrawal"),
    ("入会ではなく退会の手続きを教えてください", "withdrawal", "join"),
    ("JSUGNETの登録の解除ではなくて、新規に登録したいです", "jsugnet-registration", "withdrawal"),
])
def test_a_question_that_turns_down_the_opposite_is_answered_in_its_own_direction(
        jsug_index: FaqIndex, query: str, faq_id: str, opposite: str) -> None:
    result = match(jsug_index, query)
    assert result.ranked[0] == faq_id
    assert not (result.outcome is Outcome.ANSWER and result.faq_id == opposite)


def test_a_polarity_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "polarity.yaml").write_text("start: [受け取]\nbackwards: [逆に]\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="contrast"):
        load_lexicon(tmp_path)
