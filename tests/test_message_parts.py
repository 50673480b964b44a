"""Long messages and what a question asks: the sentence that asks is matched on its own, so background
(a product named in passing, an apology, the situation) neither vetoes the answer nor drowns it; a
message that asks two things gets one answered and the other offered with it; a question for a date
or an amount the FAQ does not hold is never answered with a how-to entry."""

from __future__ import annotations

import time

import pytest

from bot.faq.index import FaqIndex
from bot.faq.matcher import Outcome, match, question_parts, topic_parts

RAMBLING = ("いつもお世話になっております。現在、弊社ではS/4HANA移行のプロジェクトが佳境で、毎日バタバタしております。"
            "そんな中で恐縮なのですが、JSUGNETのパスワードを忘れてしまいました。再設定の方法を教えていただけますか。")


def test_a_product_named_in_a_background_sentence_does_not_veto_the_answer(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, RAMBLING)
    assert result.outcome is Outcome.ANSWER and result.faq_id == "password-reset"
    assert result.question_part is not None and "s/4hana" not in result.question_part


def test_a_product_in_the_question_itself_still_falls_back(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, "いつもお世話になっております。S/4HANAのパスワードを忘れたので再設定の方法を教えてください。")
    assert result.outcome is Outcome.FALLBACK


def test_short_or_single_sentence_messages_are_matched_whole() -> None:
    assert question_parts("パスワードを忘れました") == []
    assert question_parts("パスワードを忘れてしまったので再設定の方法を教えていただきたいのですがよろしいでしょうか") == []
    parts = question_parts(RAMBLING)
    assert parts and all("S/4HANA" not in part for part in parts)


def test_a_question_for_a_date_the_faq_does_not_hold_is_at_most_suggested(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, "次回の部会はいつ開催されますか？")
    assert result.outcome is not Outcome.ANSWER
    assert match(jsug_index, "部会に参加するにはどうすればいいですか").outcome is not Outcome.FALLBACK


def test_a_question_for_a_count_the_faq_does_not_hold_is_at_most_suggested(jsug_index: FaqIndex) -> None:
    """The member list's entry says where the list is, not how many companies are on it; the
    JSUGNET entry does say how many may register (何名でも), so that question is still answered."""
    assert match(jsug_index, "会員企業って何社あるの？").outcome is not Outcome.ANSWER
    result = match(jsug_index, "JSUGNETには社員が何人まで登録できますか")
    assert (result.outcome, result.faq_id) == (Outcome.ANSWER, "jsugnet-registration")


def test_every_asking_sentence_is_matched_on_its_own_when_the_background_asks_too(jsug_index: FaqIndex) -> None:
    """「…知りたいと思っています」 reads as asking (〜たい), yet it is background: the product it names
    must not veto the sentence that asks for the password."""
    message = "S/4HANAの移行で他社の事例を知りたいと思っています。その前にJSUGNETのパスワードを忘れたので再設定したいです。"
    assert len(question_parts(message)) == 2

    result = match(jsug_index, message)

    assert (result.outcome, result.faq_id) == (Outcome.ANSWER, "password-reset")
    assert result.question_part is not None and "s/4hana" not in result.question_part


@pytest.mark.parametrize("message", [
    "SAPのS-ユーザーIDのパスワードを忘れてしまいました。再設定はどこでできますか？",
    "SAP for Meのパスワードを忘れてしまい、困っております。再設定はどこでできますか？",
])
def test_a_short_question_about_a_product_named_just_before_it_falls_back(jsug_index: FaqIndex, message: str) -> None:
    """「再設定はどこで…？」 alone would be the JSUG password; its subject is the SAP account named in
    the sentence before it, which shares the password entry's own word (パスワード)."""
    assert "再設定はどこでできますか？" in question_parts(message)

    assert match(jsug_index, message).outcome is Outcome.FALLBACK


def test_a_short_question_after_a_background_sentence_is_still_answered(jsug_index: FaqIndex) -> None:
    message = "いつもお世話になっております。弊社では現在S/4HANA移行のプロジェクトを担当しております。メルマガを止めたいです。"

    result = match(jsug_index, message)

    assert (result.outcome, result.faq_id) == (Outcome.ANSWER, "newsletter-dm-stop")


@pytest.mark.parametrize(("message", "parts"), [
    ("メルマガを止めたいのと、登録住所を更新したいです。", ["メルマガを止めたいのと", "登録住所を更新したいです。"]),
    ("パスワードを忘れたのと会社名を変更したい", ["パスワードを忘れたのと", "会社名を変更したい"]),
    ("部会に参加したいし、案内も受け取りたいです", ["部会に参加したいし", "案内も受け取りたいです"]),
    ("パスワード忘れた、あと請求書の送り先も変えたい", ["パスワード忘れた", "あと請求書の送り先も変えたい"]),
    ("How do I reset my password, and where do I update my phone number?",
     ["How do I reset my password", "where do I update my phone number?"]),
])
def test_two_questions_joined_in_one_sentence_are_told_apart(message: str, parts: list[str]) -> None:
    assert topic_parts(message) == parts


@pytest.mark.parametrize("message", [
    "パスワードを忘れました",
    "会社名が変わるのと同時に代表者も変わります",
    "I forgot my password and cannot log in",
    "タダ？🙏",
])
def test_a_message_of_one_clause_is_not_split(message: str) -> None:
    assert topic_parts(message) == []


def test_a_statement_is_not_taken_for_a_second_question() -> None:
    assert topic_parts("会社は会員です。イベントに出るにはどうすればいいですか") == ["イベントに出るにはどうすればいいですか"]
    assert topic_parts("メルマガは止めたいけど、部会の案内は受け取りたい") == ["メルマガは止めたいけど", "部会の案内は受け取りたい"]
    assert topic_parts("ログインしようとしたけど、パスワードを忘れていて困っています") == []
    assert topic_parts("Is it normal to get two reset emails? I'm also our company representative.") == [
        "Is it normal to get two reset emails?"]


@pytest.mark.parametrize(("message", "topics"), [
    ("パスワードを忘れてしまったのと、メルマガも止めたいです", {"password-reset", "newsletter-dm-stop"}),
    ("賛助会員の特典を教えてください。あと協賛金に消費税はかかりますか？", {"supporter-benefits", "consumption-tax"}),
    ("How can I change the company name, and how do I stop the newsletter?", {"company-name-change", "newsletter-dm-stop"}),
])
def test_a_message_asking_two_things_is_answered_with_the_other_entry_offered(
        jsug_index: FaqIndex, message: str, topics: set[str]) -> None:
    result = match(jsug_index, message)

    assert result.outcome is Outcome.ANSWER
    assert {result.faq_id, *result.also} == topics
    assert result.slow_path and "also" in result.as_dict()


def test_a_statement_beside_the_question_is_not_offered_as_a_second_question(jsug_index: FaqIndex) -> None:
    """「会社は会員です」 matched alone is sure of the member list; it tells, it does not ask."""
    result = match(jsug_index, "イベントに参加するための個人の登録はどうすればいいですか。会社は会員です。")

    assert (result.outcome, result.faq_id, result.also) == (Outcome.ANSWER, "jsugnet-registration", [])


def test_a_message_asking_one_thing_stays_on_the_fast_path(jsug_index: FaqIndex) -> None:
    result = match(jsug_index, "パスワードを忘れたので再設定の方法を教えてください")

    assert (result.outcome, result.faq_id, result.also, result.slow_path) == (
        Outcome.ANSWER, "password-reset", [], False)


def test_a_huge_message_of_questions_is_matched_for_its_first_few_only(jsug_index: FaqIndex) -> None:
    """100 KB of questions is decided as quickly as a long message: only what is read of it
    (``max_query_chars``) is split, and only its first few questions are matched on their own."""
    message = "".join(f"パスワードを忘れたのと、部会{n}の案内も受け取りたいです。" for n in range(3000))

    started = time.perf_counter()
    result = match(jsug_index, message)

    assert time.perf_counter() - started < 1.0
    assert result.outcome is Outcome.ANSWER and len(result.also) <= 5
