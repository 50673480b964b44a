"""Kana-only and romaji questions: with no kanji for the word and character views to meet, the
reading view counts for more, in proportion to how much of the question is kana."""

from __future__ import annotations

import pytest

from bot.faq.index import FaqIndex
from bot.faq.matcher import kana_share, match, view_weights


@pytest.mark.parametrize(("question", "faq_id"), [
    ("ぱすわーどをわすれました", "password-reset"),
    ("めーるまがじんをとめたい", "newsletter-dm-stop"),
    ("かいしゃめいがかわりました", "company-name-change"),
])
def test_a_kana_only_question_ranks_its_faq_first(jsug_index: FaqIndex, question: str, faq_id: str) -> None:
    assert match(jsug_index, question).ranked[0] == faq_id


def test_the_reading_weighs_more_the_more_of_the_question_is_kana(jsug_index: FaqIndex) -> None:
    kana = view_weights(jsug_index, jsug_index.document("ぱすわーどをわすれました"))
    mixed = view_weights(jsug_index, jsug_index.document("パスワードを忘れました"))
    kanji = view_weights(jsug_index, jsug_index.document("会員登録情報変更"))
    assert kana["reading"] > mixed["reading"] >= kanji["reading"]
    for weights in (kana, mixed, kanji):
        assert sum(weights.values()) == pytest.approx(sum(kanji.values()))
    assert kana_share("ぱすわーど") == 1.0 and kana_share("会員") == 0.0 and kana_share("123") == 0.0
