"""How well the matcher answers member questions it was not written for.

The question sets in tests/data/ were written by the team independently of faq.yaml's alternates.
``dev_questions`` was used to fit the calibration; ``holdout_questions`` never was, so it shows
what members who were never seen will get. The floors on answered-correctly are regression
guards at today's level, below the issue's 95 % target (see README, "Quality").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bot.faq.calibration import (
    CALIBRATION_FILE,
    FEATURES,
    SEMANTIC_CALIBRATION_FILE,
    SEMANTIC_FEATURES,
    load_calibration,
)
from bot.faq.corpus import load_corpus
from bot.faq.evaluate import EvalCase, evaluate, load_cases
from bot.faq.index import FaqIndex, build_index
from bot.faq.matcher import features, match, match_text
from bot.settings import Settings
from bot.text.normalize import clean
from bot.text.tokens import Analyzer
from tests.bench.baselines import Bm25Baseline, CharTfidfBaseline
from tests.conftest import DATA

WRONG_ANSWER_TARGET = 0.02


@pytest.fixture(scope="module")
def dev_report(jsug_index: FaqIndex) -> dict:
    return evaluate(jsug_index, load_cases(DATA / "dev_questions.jsonl"))["metrics"]


@pytest.fixture(scope="module")
def holdout_report(jsug_index: FaqIndex) -> dict:
    return evaluate(jsug_index, load_cases(DATA / "holdout_questions.jsonl"))["metrics"]


@pytest.fixture(scope="module")
def city_index(settings: Settings, analyzer: Analyzer) -> FaqIndex:
    return build_index(load_corpus(DATA / "city_faq.jsonl", settings.faq_dir), settings.matcher, analyzer)


def test_question_sets_are_large_and_varied_enough() -> None:
    dev = load_cases(DATA / "dev_questions.jsonl")
    assert len(dev) >= 250
    assert sum(1 for c in dev if not c.expected) >= 40
    holdout = load_cases(DATA / "holdout_questions.jsonl")
    assert len(holdout) >= 100


def test_no_test_question_was_copied_into_the_alternates(jsug_index: FaqIndex) -> None:
    phrasings = {clean(t) for e in jsug_index.corpus.entries for t in (e.question, *e.alternates)}
    for name in ("dev_questions.jsonl", "holdout_questions.jsonl"):
        copied = [c.query for c in load_cases(DATA / name) if clean(c.query) in phrasings]
        assert copied == [], f"{name} questions found in faq.yaml: {copied}"


def test_dev_questions_get_few_wrong_answers_and_rank_the_right_faq_high(dev_report: dict) -> None:
    assert dev_report["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert dev_report["top3_recall"] >= 0.97
    assert dev_report["mrr"] >= 0.95
    assert dev_report["in_scope_answered_correctly"] >= 0.70
    assert dev_report["out_of_scope_fallback"] >= 0.95


def test_unseen_holdout_questions_stay_within_the_wrong_answer_target(holdout_report: dict) -> None:
    assert holdout_report["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert holdout_report["top3_recall"] >= 0.95
    assert holdout_report["mrr"] >= 0.90
    assert holdout_report["in_scope_answered_correctly"] >= 0.60
    assert holdout_report["out_of_scope_fallback"] >= 0.95


@pytest.mark.parametrize(
    "text",
    [
        "今日の天気は？",
        "明日は雨が降りますか",
        "ABAPでSELECT文を書く方法",
        "asdfgh",
        "😀😀😀",
        "'; DROP TABLE members; --",
        "<script>alert('x')</script>",
        "1234567890",
        "おすすめのランチのお店",
        "What time is it in New York?",
    ],
)
def test_off_topic_input_falls_back(jsug_index: FaqIndex, text: str) -> None:
    assert match(jsug_index, text).outcome.value == "fallback"


@pytest.mark.parametrize(
    ("text", "faq_id"),
    [
        ("パスワード忘れた", "password-reset"),
        ("ﾊﾟｽﾜｰﾄﾞ忘れた", "password-reset"),
        ("ぱすわーど わすれた", "password-reset"),
        ("pasuwaado wasureta", "password-reset"),
        ("メルマガ止めたい", "newsletter-dm-stop"),
        ("退会したい", "withdrawal"),
        ("インボイスの登録番号は？", "consumption-tax"),
    ],
)
def test_everyday_spellings_reach_the_right_answer(jsug_index: FaqIndex, text: str, faq_id: str) -> None:
    result = match(jsug_index, text)
    assert (result.outcome.value, result.faq_id) == ("answer", faq_id)


def test_two_close_faqs_give_suggestions_not_a_coin_toss(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, "会員について")
    assert result.outcome.value == "suggest"
    assert 2 <= len(result.suggestions) <= 3


@pytest.mark.parametrize("path, names", [(CALIBRATION_FILE, FEATURES), (SEMANTIC_CALIBRATION_FILE, SEMANTIC_FEATURES)])
def test_both_calibrations_take_agreeing_neighbours_for_sureness_and_a_near_unanswered_question_for_doubt(
        path: Path, names: tuple[str, ...]) -> None:
    """Whether the answer is right reads both signals; whether the question is in scope at all (a
    right answer in the top three) reads the lead: the neighbours say little about the runners-up."""
    calibration = load_calibration(path, names)
    assert calibration.answer.coef[names.index("neighbours")] > 0
    for model in (calibration.answer, calibration.relevant):
        assert model.coef[names.index("unanswered_lead")] < 0


def test_the_more_of_the_nearest_phrasings_are_the_best_faqs_the_surer_its_answer(jsug_index: FaqIndex) -> None:
    """A message about an entry meets many of its phrasings; one whose nearest phrasings are spread
    over several entries is borderline, however well its best phrasing fits."""
    result = match_text(jsug_index, "請求書の送付先を経理部に変更したい")
    assert result.query is not None and jsug_index.calibration is not None
    sureness = [jsug_index.calibration.probabilities(
        features(jsug_index, result.query, result.candidates, result.top_faq, result.unanswered_lead, share))[0]
        for share in (0.1, 0.4, 0.7, 1.0)]
    assert sureness == sorted(sureness) and sureness[0] < sureness[-1]


def test_answer_explains_matched_terms_synonyms_and_candidate_scores(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, "メルマガを止めたいです")
    assert 0 < result.as_dict()["neighbours"] <= 1  # type: ignore[operator]
    assert ("メルマガ", "メールマガジン") in result.synonyms_applied
    assert "止める" in result.matched_terms
    top = result.candidates[0]
    assert top.faq_id == "newsletter-dm-stop"
    assert set(top.parts) == {"chars", "words", "reading", "answer", "centroid", "fuzzy"}
    assert top.score > result.candidates[1].score


def test_on_another_corpus_without_alternates_ranking_beats_bm25_and_char_tfidf(city_index: FaqIndex) -> None:
    cases = [c for c in load_cases(DATA / "city_queries.jsonl") if c.expected]

    def mrr(rank) -> float:  # type: ignore[no-untyped-def]
        total = 0.0
        for case in cases:
            ranked = rank(case.query)[:10]
            total += next((1 / r for r, f in enumerate(ranked, 1) if f in case.expected), 0.0)
        return total / len(cases)

    ours = mrr(lambda q: match(city_index, q).ranked)
    assert ours > mrr(Bm25Baseline(city_index.corpus).rank) + 0.03
    assert ours > mrr(CharTfidfBaseline(city_index.corpus).rank)


def test_on_another_corpus_out_of_scope_questions_are_not_answered(city_index: FaqIndex) -> None:
    cases = load_cases(DATA / "city_queries.jsonl")
    metrics = evaluate(city_index, cases)["metrics"]
    assert metrics["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert metrics["out_of_scope_fallback"] >= 0.95


def test_an_eval_case_expecting_two_faqs_accepts_either(jsug_index: FaqIndex) -> None:
    report = evaluate(jsug_index, [EvalCase("パスワード忘れた", ("password-reset", "join"))])
    assert report["metrics"]["in_scope_answered_correctly"] == 1.0


@pytest.mark.parametrize("question", ["会員について", "登録", "変更"])
def test_a_single_word_many_entries_share_is_suggested_not_answered(jsug_index: FaqIndex, question: str) -> None:
    result = match(jsug_index, question)
    assert result.outcome.value == "suggest"
    assert len(result.suggestions) >= 2


@pytest.mark.parametrize(("question", "faq_id"), [("入会したい", "join"), ("退会", "withdrawal")])
def test_a_single_word_of_one_entry_is_still_answered(jsug_index: FaqIndex, question: str, faq_id: str) -> None:
    result = match(jsug_index, question)
    assert (result.outcome.value, result.faq_id) == ("answer", faq_id)


def test_an_off_topic_abbreviation_inside_a_longer_word_of_the_entry_still_vetoes(jsug_index: FaqIndex) -> None:
    """「FI」 (SAP's finance module) is off-topic; an alternate that says "finance" does not make the
    invoice entry one about SAP FI."""
    entries = tuple(
        dataclasses.replace(e, alternates=(*e.alternates, "send the invoice to our finance department"))
        if e.id == "billing-address" else e for e in jsug_index.corpus.entries)
    corpus = dataclasses.replace(jsug_index.corpus, entries=entries)
    index = build_index(corpus, jsug_index.settings, jsug_index.analyzer)

    result = match(index, "SAP FIで請求書の送付先を設定するには")

    assert result.outcome.value == "fallback"
    assert result.off_topic_terms == ["fi"]
