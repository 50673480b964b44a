"""Japanese normalisation: members' spellings meet the FAQ's."""

from __future__ import annotations

import pytest

from bot.text.normalize import Lexicon, Normalizer, clean, fold_chars, romaji_to_kana
from bot.text.tokens import Analyzer


@pytest.fixture(scope="module")
def normalizer() -> Normalizer:
    lexicon = Lexicon.from_groups(
        {"メールマガジン": ["メルマガ"], "パスワード": ["PW", "パスワ"], "メールアドレス": ["アドレス"]},
        ["教えてください", "どうすればいいですか"],
    )
    return Normalizer(lexicon, frozenset({"jsug"}))


def test_full_and_half_width_and_case_are_folded() -> None:
    assert clean("ＪＳＵＧ　ﾊﾟｽﾜｰﾄﾞ") == "jsug パスワード"


@pytest.mark.parametrize("text", ["パスワード", "ぱすわーど", "ﾊﾟｽﾜｰﾄﾞ", "パスワードー!!", "パスワーーード"])
def test_kana_long_vowels_and_repeats_fold_to_one_form(text: str) -> None:
    assert fold_chars(clean(text)) == "パスワド"


def test_romaji_words_become_kana_but_known_english_does_not() -> None:
    assert romaji_to_kana("pasuwado wasureta") == "ぱすわど わすれた"
    assert romaji_to_kana("jsug sap asdfgh", frozenset({"jsug"})) == "jsug sap asdfgh"


def test_synonyms_are_applied_in_any_script_and_reported(normalizer: Normalizer) -> None:
    result = normalizer.normalize("めるまがとpwを教えてください")
    assert "メールマガジン" in result.text and "パスワード" in result.text
    assert ("めるまが", "メールマガジン") in result.synonyms_applied
    assert result.fillers_removed == ("教えてください",)


def test_a_variant_inside_its_own_canonical_word_is_left_alone(normalizer: Normalizer) -> None:
    assert normalizer.normalize("メールアドレス").text == "メールアドレス"
    assert normalizer.normalize("パスワード").synonyms_applied == ()


def test_ascii_abbreviations_match_only_as_whole_words(normalizer: Normalizer) -> None:
    assert "パスワード" in normalizer.normalize("PWを忘れた").text
    assert "パスワード" not in normalizer.normalize("pwa").text


@pytest.mark.parametrize("text", ["", "   ", "\x00\x1f\x7f", "\ud800abc", "😀" * 50, "a" * 100_000])
def test_hostile_or_empty_text_normalises_without_error(normalizer: Normalizer, text: str) -> None:
    result = normalizer.normalize(text, max_chars=2000)
    assert len(result.text) <= 2000
    assert "\x00" not in result.text


def test_analyzer_merges_spelling_variants_and_reads_kana() -> None:
    analyzer = Analyzer()
    assert analyzer.analyze("シュミレーション").words == analyzer.analyze("シミュレーション").words
    assert analyzer.analyze("退会").reading == analyzer.analyze("たいかい").reading
    assert analyzer.analyze("助詞は、除かれます").words == ("助詞", "除く")
