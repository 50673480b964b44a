"""Questions the FAQ does not answer (``faq_data/unanswered.yaml``): a message nearer to one of them
than to every phrasing of its best FAQ goes to the secretariat instead of getting that FAQ's answer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bot.faq.corpus import Corpus, CorpusError, load_corpus
from bot.faq.index import FaqIndex, build_index
from bot.faq.matcher import (
    NO_UNANSWERED_LEAD,
    Outcome,
    features,
    match,
    match_text,
    score_all,
    semantic_features,
    semantic_scores,
)
from bot.faq.semantic import Encoder
from bot.faq.validate import validate
from bot.settings import Settings
from bot.text.tokens import Analyzer

FAQ_DIR = Path(__file__).resolve().parent.parent / "faq_data"


@pytest.fixture(scope="module")
def jsug_corpus(settings: Settings) -> Corpus:
    return load_corpus(settings.faq_dir, settings.faq_dir)


@pytest.fixture(scope="module")
def without_list(jsug_corpus: Corpus, settings: Settings, analyzer: Analyzer) -> FaqIndex:
    """The shipped corpus as it would be without its unanswered questions."""
    return build_index(dataclasses.replace(jsug_corpus, unanswered=()), settings.matcher, analyzer)


@pytest.fixture(scope="module")
def semantic_index(jsug_corpus: Corpus, settings: Settings, analyzer: Analyzer, encoder: Encoder) -> FaqIndex:
    return build_index(jsug_corpus, settings.matcher, analyzer, encoder=encoder, cache_dir=settings.cache_dir)


@pytest.fixture(scope="module")
def semantic_without_list(jsug_corpus: Corpus, settings: Settings, analyzer: Analyzer, encoder: Encoder) -> FaqIndex:
    return build_index(dataclasses.replace(jsug_corpus, unanswered=()), settings.matcher, analyzer,
                       encoder=encoder, cache_dir=settings.cache_dir)


def test_the_shipped_corpus_has_its_list_of_unanswered_questions(jsug_corpus: Corpus) -> None:
    assert len(jsug_corpus.unanswered) >= 100
    assert len(set(jsug_corpus.unanswered)) == len(jsug_corpus.unanswered)


# === what a member notices ==========================================================================


def test_a_question_near_an_unanswered_one_goes_to_the_secretariat(
    jsug_index: FaqIndex, without_list: FaqIndex, jsug_corpus: Corpus
) -> None:
    question = "会員企業一覧の更新頻度を知りたい"

    assert match(without_list, question).outcome is Outcome.ANSWER  # what the list prevents
    result = match(jsug_index, question)

    assert (result.outcome, result.faq_id) == (Outcome.FALLBACK, None)
    assert result.unanswered_match in jsug_corpus.unanswered and "更新頻度" in result.unanswered_match
    assert result.as_dict()["unanswered_match"] == result.unanswered_match  # --explain shows why
    assert result.as_dict()["unanswered_lead"] > jsug_index.settings.unanswered_margin


def test_a_question_its_faq_answers_is_answered_though_it_shares_words_with_an_unanswered_one(
    jsug_index: FaqIndex, jsug_corpus: Corpus
) -> None:
    assert any("請求書の送付先" in q for q in jsug_corpus.unanswered)

    result = match(jsug_index, "請求書の送付先を経理部に変えたい")

    assert (result.outcome, result.faq_id, result.unanswered_match) == (Outcome.ANSWER, "billing-address", None)


@pytest.mark.parametrize("question", [
    "パスワードを忘れました", "メルマガを止めたい", "会社名が変わりました", "退会したい", "請求書の宛先を変えたい",
])
def test_plain_questions_are_answered_as_without_the_list(
    jsug_index: FaqIndex, without_list: FaqIndex, question: str
) -> None:
    with_list, without = match(jsug_index, question), match(without_list, question)

    assert with_list.outcome is Outcome.ANSWER
    assert (with_list.outcome, with_list.faq_id) == (without.outcome, without.faq_id)


def test_an_english_question_is_not_sent_away_by_the_english_words_of_an_unanswered_one(jsug_index: FaqIndex) -> None:
    """The English unanswered questions share English words with an English message, which the
    Japanese phrasings cannot; so English messages are decided without the list."""
    question = "Can you share the member company list before we join?"
    assert any("member company list" in q for q in jsug_index.corpus.unanswered)

    result = match(jsug_index, question)

    assert result.unanswered_match is None and result.unanswered_lead == NO_UNANSWERED_LEAD
    assert result.ranked[0] == "member-companies"


LEADS = (-0.6, -0.3, -0.1, 0.0)


def _falls_with_the_lead(probabilities: list[tuple[float, float]]) -> bool:
    confidences = [confidence for confidence, _ in probabilities]
    relevances = [relevance for _, relevance in probabilities]
    return all(values == sorted(values, reverse=True) and values[0] > values[-1] for values in (confidences, relevances))


def test_the_nearer_a_message_is_to_an_unanswered_question_the_less_sure_its_answer(
    jsug_index: FaqIndex, semantic_index: FaqIndex
) -> None:
    """Below the veto the lead still counts: the calibrations (lexical and semantic) read it, so a
    message that is almost as near to an unanswered question as to its FAQ is answered less surely
    and is less often taken for a question the FAQ answers at all."""
    question = "請求書の送付先を経理部に変更したい"
    lexical = match_text(jsug_index, question)
    semantic = semantic_scores(semantic_index, question, match_text(semantic_index, question))
    assert semantic is not None
    slow = match_text(semantic_index, question, semantic)
    assert lexical.query is not None and slow.query is not None
    assert jsug_index.calibration is not None and semantic_index.semantic_calibration is not None

    fast_path = [jsug_index.calibration.probabilities(
        features(jsug_index, lexical.query, lexical.candidates, lexical.top_faq, lead, lexical.neighbours)) for lead in LEADS]
    slow_path = [semantic_index.semantic_calibration.probabilities(
        features(semantic_index, slow.query, slow.candidates, slow.top_faq, lead, slow.neighbours)
        + semantic_features(semantic, slow.top_faq)) for lead in LEADS]

    assert _falls_with_the_lead(fast_path) and _falls_with_the_lead(slow_path)


# === how the list is read ===========================================================================


def test_words_only_the_unanswered_questions_use_leave_every_faq_score_unchanged(
    jsug_index: FaqIndex, without_list: FaqIndex
) -> None:
    """The unanswered questions are indexed with the corpus, but weigh no word: 領収 (a word only
    they use) counts as an unknown word does, and every entry scores exactly as before."""
    assert "領収" not in without_list.spaces["words"].vocabulary
    assert "領収" in jsug_index.spaces["words"].vocabulary
    for question in ("年会費の領収書がほしい", "パスワードを忘れました", "二段階認証", "天気", "請求書の送付先を変更"):
        with_list, without = jsug_index.document(question), without_list.document(question)
        np.testing.assert_allclose(score_all(jsug_index, with_list).total, score_all(without_list, without).total,
                                   rtol=1e-6, atol=1e-9)
    assert jsug_index.corpus_words == frozenset(without_list.spaces["words"].vocabulary)


def test_a_corpus_without_the_file_has_no_unanswered_questions(tmp_path: Path) -> None:
    (tmp_path / "faq.yaml").write_text((FAQ_DIR / "faq.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "links.yaml").write_text((FAQ_DIR / "links.yaml").read_text(encoding="utf-8"), encoding="utf-8")

    corpus = load_corpus(tmp_path, FAQ_DIR)

    assert corpus.unanswered == ()


@pytest.mark.parametrize("content, problem", [
    ("unanswered: [a]\n", "must be a list of questions"),
    ("- 領収書がほしい\n- ''\n", "must be a list of questions"),
    ("- 領収書がほしい\n- 12\n", "must be a list of questions"),
    ("- [nested]\n", "must be a list of questions"),
    ("- 'unclosed\n", "bad YAML"),
])
def test_a_broken_unanswered_file_is_refused_with_where_and_why(tmp_path: Path, content: str, problem: str) -> None:
    for name in ("faq.yaml", "links.yaml"):
        (tmp_path / name).write_text((FAQ_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "unanswered.yaml").write_text(content, encoding="utf-8")

    with pytest.raises(CorpusError) as refused:
        load_corpus(tmp_path, FAQ_DIR)

    assert "unanswered.yaml" in str(refused.value) and problem in str(refused.value)


def test_validate_refuses_an_unanswered_question_that_is_also_a_phrasing(tmp_path: Path) -> None:
    for name in ("faq.yaml", "links.yaml"):
        (tmp_path / name).write_text((FAQ_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "unanswered.yaml").write_text("- 領収書がほしい\n- JSUGに入会する方法を教えてください。\n", encoding="utf-8")

    with pytest.raises(CorpusError) as refused:
        validate(tmp_path, FAQ_DIR)

    assert "JSUGに入会する方法を教えてください。" in str(refused.value) and "'join'" in str(refused.value)


def test_the_shipped_list_passes_validation(settings: Settings) -> None:
    assert validate(settings.faq_dir, settings.faq_dir).unanswered


# === the slow path: the model's view ================================================================


def test_the_model_finds_a_paraphrase_nearer_the_unanswered_question_than_the_faq(semantic_index: FaqIndex) -> None:
    assert semantic_index.semantic is not None
    faq = [e.id for e in semantic_index.corpus.entries].index("billing-address")

    lead = semantic_index.semantic.unanswered_lead("請求書をもう一度発行してもらえますか", faq)
    answered = semantic_index.semantic.unanswered_lead("請求書の送付先を経理部に変更したい", faq)

    assert lead is not None and answered is not None
    assert lead > 0 > answered


def test_the_model_overrules_an_unanswered_question_that_is_nearer_only_in_words(
    semantic_index: FaqIndex, semantic_without_list: FaqIndex
) -> None:
    """「会社名が旧社名のままになってる」 shares 旧社名 and のまま with an unanswered question about the
    registration form's pull-down, but the model finds the company-name entry's own phrasings nearer
    in meaning: the message is decided as if the list were not there."""
    question = "会社名が旧社名のままになってる"
    assert match_text(semantic_index, question).unanswered_match == "社名変更を連絡したのに、JSUGNETの社名プルダウンがまだ旧社名のままです"

    result, without = match(semantic_index, question), match(semantic_without_list, question)

    assert result.unanswered_match is None and result.unanswered_lead == NO_UNANSWERED_LEAD
    # Without the list the message is answered on the fast path; with it, the unanswered question
    # sends it to the slow path, where the model's scores join the ranking: the answer is the same.
    assert (result.outcome, result.faq_id) == (without.outcome, without.faq_id) == (Outcome.ANSWER, "company-name-change")
    assert result.slow_path and not without.slow_path
