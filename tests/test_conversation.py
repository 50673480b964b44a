"""The conversation engine as a member meets it, through its one entry point ``Engine.handle``.

The tests follow a member: asking the FAQ, small talk and cancelling, proving who they are with a
one-time code, stopping the newsletter, withdrawing, asking the secretariat; then what must hold
whatever happens (state in the database, faults, bad input) and the terminal's ``--script`` mode.
Every database test runs on SQLite and, with TEST_POSTGRES_URL set, on PostgreSQL; mails go to a
real SMTP server (aiosmtpd on 127.0.0.1), and the one-time codes are read out of the mails there.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import INTENT_THRESHOLD, build_assistant
from bot.cli import main
from bot.dialogue.engine import MAX_MESSAGE_CHARS, Engine, EngineInputError
from bot.dialogue.intents import IntentIndex, load_intents
from bot.dialogue.replies import Reply
from bot.errors import ServiceUnavailableError
from bot.faq.index import FaqIndex
from bot.mail import Mailer
from bot.messages import message
from bot.settings import MailSettings, Settings
from bot.storage.db import make_engine, session_factory, upgrade
from bot.storage.members import seed_demo
from bot.storage.models import (
    AuditLog,
    Conversation,
    Member,
    Message,
    OutboxMail,
    Preferences,
    RequestEvent,
    SecretariatRequest,
)
from handlers.registry import build_handlers
from tests.conftest import TEST_SECRET, Clock
from tests.mail_support import SMTP_HOST, Inbox, SmtpServer, body, free_port, start_smtp

SECRETARIAT = "secretariat@jsug.org"
UNREACHABLE_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"

# The demo members (bot/storage/demo_members.csv):
TANAKA = "tanaka@example.com"  # one account (demo-tanaka), representative of デモ商事; newsletter and DM on
YAMADA = "yamada@example.com"  # two accounts: demo-yamada (personal) and demo-yamada-rep (representative)
TAKAHASHI = "takahashi@example.com"  # one account, not a representative; newsletter off, DM on
SATO = "sato@example.com"  # one account; newsletter and DM both off already
NOBODY = "nobody@example.com"  # no account

NEWSLETTER_DONE_SUBJECT = "【JSUG】配信設定を変更しました"
#: Audit entries of proving who one is (security events), apart from the changes a member's action makes.
IDENTITY_AUDIT = ("identity_verified", "identity_assumed", "one_time_code_requested", "one_time_code_wrong",
                  "identity_locked_out")


# --- a real SMTP server ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


# --- the engine on the seeded demo database -------------------------------------------------------


def settings_for(database_url: str, smtp_port: int) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET,
                    mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_port))


@pytest.fixture
def seeded(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """The migrated test database with the demo companies and members."""
    with sessions.begin() as session:
        seed_demo(session)
    return sessions


@pytest.fixture
def make_bot(
    database_url: str, seeded: sessionmaker[Session], jsug_index: FaqIndex, smtp_server: SmtpServer, clock: Clock
) -> Iterator[Callable[..., Engine]]:
    """Build engines (workers) on the test database; ``smtp_port`` may point where nobody listens.

    No background mail worker: the ``Chat`` helper delivers the outbox after each turn itself, as the
    worker would a moment later, so a test reads the mail of the turn it just made."""
    built = []

    def make(smtp_port: int | None = None) -> Engine:
        assistant = build_assistant(settings_for(database_url, smtp_port or smtp_server.port), faq=jsug_index,
                                    deliver_mail=False, clock=clock)
        built.append(assistant)
        return assistant.engine

    yield make
    for assistant in built:
        assistant.close()


@pytest.fixture
def bot(make_bot: Callable[..., Engine], inbox: Inbox) -> Engine:
    return make_bot()


class Replies(list[Reply]):
    """What one turn answered, with the views the tests need."""

    @property
    def texts(self) -> list[str]:
        return [reply.text for reply in self]

    @property
    def kinds(self) -> list[str]:
        return [reply.kind for reply in self]

    @property
    def actions(self) -> list[str]:
        return [button.action for reply in self for button in reply.buttons]

    def says(self, key: str, **values: object) -> bool:
        return message(key, **values) in self.texts


class Chat:
    """One member's side of a conversation: what they type and which buttons they press."""

    def __init__(self, bot: Engine, user_ref: str = "web-member-1", channel: str = "web") -> None:
        self.bot = bot
        self.user_ref = user_ref
        self.channel = channel

    def say(self, said: str) -> Replies:
        return self._delivered(self.bot.handle(self.channel, self.user_ref, text=said))

    def press(self, action: str) -> Replies:
        return self._delivered(self.bot.handle(self.channel, self.user_ref, action=action))

    def _delivered(self, replies: list[Reply]) -> Replies:
        self.bot.mailer.deliver_pending()  # what the mail worker does right after the turn
        return Replies(replies)

    def on(self, bot: Engine) -> Chat:
        """The same conversation, served by another worker."""
        return Chat(bot, self.user_ref, self.channel)


@pytest.fixture
def chat(bot: Engine) -> Chat:
    return Chat(bot)


def verify(chat: Chat, inbox: Inbox, email: str, account: str | None = None) -> Replies:
    """Answer the identity questions: the address, the code from the mail, maybe the account."""
    replies = chat.say(email)
    assert replies.texts == [message("identity_code_sent", minutes=10)]
    replies = chat.say(inbox.code_for(email))
    if account is not None:
        assert replies.says("identity_choose_account"), replies.texts
        replies = chat.press(f"account:{account}")
    assert replies.says("identity_verified"), replies.texts
    return replies


def start_verified(chat: Chat, inbox: Inbox, handler: str, email: str, account: str | None = None) -> Replies:
    """Press an action's button and prove who one is; the replies are the handler's first step."""
    assert chat.press(f"start:{handler}").texts == [message("identity_intro")]
    return verify(chat, inbox, email, account)


# --- reading the database -------------------------------------------------------------------------


def count(sessions: sessionmaker[Session], model: type, *where: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def member_id(sessions: sessionmaker[Session], login_id: str) -> int:
    with sessions() as session:
        return session.scalars(select(Member.id).where(Member.login_id == login_id)).one()


def preferences(sessions: sessionmaker[Session], login_id: str) -> tuple[bool, bool]:
    with sessions() as session:
        prefs = session.scalars(
            select(Preferences).join(Member, Member.id == Preferences.member_id).where(Member.login_id == login_id)
        ).one()
        return prefs.newsletter, prefs.postal_dm


def business_state(sessions: sessionmaker[Session]) -> dict[str, Any]:
    """Everything a member's action may change: preferences, members, requests, the audit log
    (apart from the entries that record who the member proved to be, and the attempts to)."""
    with sessions() as session:
        return {
            "preferences": sorted(
                tuple(row) for row in session.execute(
                    select(Preferences.member_id, Preferences.newsletter, Preferences.postal_dm))
            ),
            "members": sorted(
                tuple(row) for row in session.execute(
                    select(Member.id, Member.login_id, Member.email, Member.status, Member.company_id,
                           Member.is_representative))
            ),
            "requests": session.scalar(select(func.count()).select_from(SecretariatRequest)),
            "request_events": session.scalar(select(func.count()).select_from(RequestEvent)),
            "audit": session.scalar(
                select(func.count()).select_from(AuditLog).where(AuditLog.action.not_in(IDENTITY_AUDIT))),
        }


def requests(sessions: sessionmaker[Session]) -> list[SecretariatRequest]:
    with sessions() as session:
        return list(session.scalars(select(SecretariatRequest).order_by(SecretariatRequest.id)))


def conversation(sessions: sessionmaker[Session], chat: Chat) -> Conversation:
    with sessions() as session:
        return session.scalars(
            select(Conversation).where(Conversation.channel == chat.channel, Conversation.user_ref == chat.user_ref)
        ).one()


def audit_rows(sessions: sessionmaker[Session], action: str) -> list[AuditLog]:
    with sessions() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.id)))


# === the FAQ ========================================================================================


def test_a_question_the_faq_answers_gets_the_answer_with_its_links(chat: Chat, jsug_index: FaqIndex) -> None:
    replies = chat.say("会社名を変更したいのですが、どうしたらよいですか?")

    answer = replies[0]
    assert answer.kind == "answer"
    assert answer.faq_id == "company-name-change"
    assert answer.question == jsug_index.corpus.get("company-name-change").question
    assert answer.text and "](" not in answer.text  # markdown links rendered as plain text
    assert answer.links and all(set(link) == {"label", "text", "url"} for link in answer.links)
    assert all(link["url"].startswith("http") for link in answer.links)
    assert set(answer.as_dict()) == {"kind", "faq_id", "question", "text", "links"}


@pytest.mark.parametrize(
    ("question", "faq_id", "handler"),
    [
        ("パスワードを忘れました", "password-reset", "password_reset"),
        ("メールマガジンおよび郵送DMの停止方法を教えてください。", "newsletter-dm-stop", "newsletter_optout"),
        ("JSUGを退会したい", "withdrawal", "withdrawal_request"),
    ],
)
def test_an_answer_with_a_self_service_action_offers_a_button_to_start_it(
    chat: Chat, question: str, faq_id: str, handler: str
) -> None:
    replies = chat.say(question)

    assert replies.kinds == ["answer", "buttons"]
    assert replies[0].faq_id == faq_id
    assert replies[1].text == message("action_offer")
    [button] = replies[1].buttons
    assert button.action == f"start:{handler}"
    assert button.label == message(f"action_button_{handler}")


def test_a_vague_question_gets_suggestions_and_picking_one_shows_its_answer(chat: Chat) -> None:
    replies = chat.say("変更したい")

    assert replies.kinds == ["suggestions", "buttons"]
    suggestions = replies[0]
    assert suggestions.text == message("suggestions_intro")
    assert len(suggestions.items) >= 2
    assert all(set(item) == {"faq_id", "question"} for item in suggestions.items)
    assert replies[1].text == message("suggestions_none_fit")  # a guess keeps the way to a person open
    assert [b.action for b in replies[1].buttons] == ["start:secretariat_request"]

    picked = suggestions.items[1]
    shown = chat.press(f"faq:{picked['faq_id']}")
    assert shown[0].kind == "answer"
    assert (shown[0].faq_id, shown[0].question) == (picked["faq_id"], picked["question"])


def test_a_message_asking_two_things_answers_one_and_offers_the_other(chat: Chat) -> None:
    replies = chat.say("会社名が変わったので変更方法を知りたいのと、あと請求書を経理部に送ってほしいのですがどうすればいいですか")

    assert replies.kinds[0] == "answer" and "suggestions" in replies.kinds
    answered, offered = replies[0], replies[replies.kinds.index("suggestions")]
    assert offered.text == message("also_intro")
    assert {answered.faq_id, *(item["faq_id"] for item in offered.items)} == {"company-name-change", "billing-address"}

    other = offered.items[0]
    shown = chat.press(f"faq:{other['faq_id']}")
    assert (shown[0].kind, shown[0].faq_id) == ("answer", other["faq_id"])


def test_a_question_the_faq_does_not_answer_is_offered_to_the_secretariat_not_answered(chat: Chat) -> None:
    """「部会コミュニティへの参加申請が…」 would get how to take part; it is one of the questions the
    FAQ does not answer (unanswered.yaml), so the member is offered the secretariat."""
    replies = chat.say("部会コミュニティへの参加申請が承認されません")

    assert replies.kinds == ["buttons"]
    assert replies.texts == [message("fallback_offer")]
    assert replies.actions == ["start:secretariat_request"]


def test_an_off_topic_question_is_sent_to_the_secretariat_after_confirmation(
    bot: Engine, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    chat = Chat(bot, user_ref="U0SLACK42", channel="slack")
    question = "来月の東京の天気を教えてください"

    offer = chat.say(question)
    assert offer.kinds == ["buttons"]
    assert offer.texts == [message("fallback_offer")]
    assert offer.actions == ["start:secretariat_request"]
    assert requests(seeded) == []  # nothing is sent before the member agrees

    confirm = chat.press("start:secretariat_request")
    assert confirm.kinds == ["buttons"] and question in confirm.texts[0]
    assert confirm.actions == ["confirm", "cancel"]
    assert requests(seeded) == [] and inbox.messages == []

    done = chat.press("confirm")
    [request] = requests(seeded)
    assert done.texts == [f"事務局にお送りしました(受付番号: {request.id})。事務局からの回答は、このチャットでお知らせします。"]
    assert (request.kind, request.status, request.member_id) == ("inquiry", "open", None)
    assert (request.channel, request.user_ref) == ("slack", "U0SLACK42")  # the answer goes back there
    assert request.details["details"] == question
    said = [line["text"] for line in request.details["transcript"] if line["from"] == "member"]
    assert question in said
    [mail] = inbox.to(SECRETARIAT)
    assert f"#{request.id}" in mail["Subject"] and "お問い合わせ" in mail["Subject"]
    assert question in body(mail) and "チャネル: slack" in body(mail)
    assert count(seeded, RequestEvent, RequestEvent.request_id == request.id) == 1
    assert [row.entity_id for row in audit_rows(seeded, "request_opened")] == [request.id]


# === small talk, a person, cancelling ===============================================================


def test_a_greeting_and_thanks_get_a_friendly_reply(chat: Chat) -> None:
    assert chat.say("こんにちは").texts == [message("greeting")]
    assert chat.say("ありがとうございました").texts == [message("thanks")]


def test_asking_for_a_person_starts_an_inquiry_to_the_secretariat(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    assert chat.say("担当者と話したい").texts == ["お問い合わせの内容を入力してください。"]
    assert chat.say("年会費の請求書を再発行してほしいです").actions == ["confirm", "cancel"]
    chat.press("confirm")

    [request] = requests(seeded)
    assert (request.kind, request.details["details"]) == ("inquiry", "年会費の請求書を再発行してほしいです")
    assert len(inbox.to(SECRETARIAT)) == 1


@pytest.mark.parametrize("said", ["キャンセル", "やめる"])
def test_cancel_without_a_running_flow_says_there_is_nothing_to_cancel(chat: Chat, said: str) -> None:
    assert chat.say(said).texts == [message("nothing_to_cancel")]
    assert chat.press("cancel").texts == [message("nothing_to_cancel")]


def _identity_email_step(chat: Chat, inbox: Inbox) -> None:
    assert chat.press("start:newsletter_optout").says("identity_intro")


def _identity_code_step(chat: Chat, inbox: Inbox) -> None:
    _identity_email_step(chat, inbox)
    assert chat.say(TANAKA).says("identity_code_sent", minutes=10)


def _identity_account_step(chat: Chat, inbox: Inbox) -> None:
    assert chat.press("start:withdrawal_request").says("identity_intro")
    chat.say(YAMADA)
    assert chat.say(inbox.code_for(YAMADA)).actions == ["account:demo-yamada", "account:demo-yamada-rep"]


def _newsletter_choose_step(chat: Chat, inbox: Inbox) -> None:
    assert "stop:both" in start_verified(chat, inbox, "newsletter_optout", TANAKA).actions


def _newsletter_confirm_step(chat: Chat, inbox: Inbox) -> None:
    _newsletter_choose_step(chat, inbox)
    assert chat.press("stop:both").actions == ["confirm", "cancel"]


def _withdrawal_choose_step(chat: Chat, inbox: Inbox) -> None:
    assert "kind:company_withdrawal" in start_verified(chat, inbox, "withdrawal_request", TANAKA).actions


def _withdrawal_reason_step(chat: Chat, inbox: Inbox) -> None:
    _withdrawal_choose_step(chat, inbox)
    assert chat.press("kind:company_withdrawal").actions == ["skip"]  # the optional reason: 「省略する」


def _withdrawal_confirm_step(chat: Chat, inbox: Inbox) -> None:
    _withdrawal_reason_step(chat, inbox)
    assert chat.say("SAPの利用を終了するため").actions == ["confirm", "cancel"]


def _secretariat_choose_step(chat: Chat, inbox: Inbox) -> None:
    assert "kind:inquiry" in chat.press("start:secretariat_request").actions


def _secretariat_details_step(chat: Chat, inbox: Inbox) -> None:
    _secretariat_choose_step(chat, inbox)
    assert chat.press("kind:inquiry").texts == ["お問い合わせの内容を入力してください。"]


def _secretariat_confirm_step(chat: Chat, inbox: Inbox) -> None:
    _secretariat_details_step(chat, inbox)
    assert chat.say("部会の資料はどこで見られますか").actions == ["confirm", "cancel"]


STEPS = {
    "identity-email": _identity_email_step,
    "identity-code": _identity_code_step,
    "identity-account": _identity_account_step,
    "newsletter-choose": _newsletter_choose_step,
    "newsletter-confirm": _newsletter_confirm_step,
    "withdrawal-choose": _withdrawal_choose_step,
    "withdrawal-reason": _withdrawal_reason_step,
    "withdrawal-confirm": _withdrawal_confirm_step,
    "secretariat-choose": _secretariat_choose_step,
    "secretariat-details": _secretariat_details_step,
    "secretariat-confirm": _secretariat_confirm_step,
}


@pytest.mark.parametrize("cancel", ["text:キャンセル", "text:やめる", "action:cancel"])
@pytest.mark.parametrize("step", list(STEPS))
def test_cancel_at_any_step_of_any_flow_stops_it_and_writes_nothing(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session], step: str, cancel: str
) -> None:
    before = business_state(seeded)
    STEPS[step](chat, inbox)

    how, value = cancel.split(":", 1)
    replies = chat.say(value) if how == "text" else chat.press(value)

    assert replies.texts == [message("cancelled")]
    assert conversation(seeded, chat).state == {}
    assert chat.press("confirm").texts == [message("stale_button")]  # the flow is gone
    assert business_state(seeded) == before
    assert inbox.to(SECRETARIAT) == [] and inbox.to(TANAKA, NEWSLETTER_DONE_SUBJECT) == []


# === who the member is: a one-time code by mail (web) ================================================


def test_identity_asks_for_a_well_formed_address_again_in_japanese(chat: Chat, inbox: Inbox) -> None:
    _identity_email_step(chat, inbox)

    for typed in ("tanaka", "tanaka example.com"):  # a third would end the flow
        assert chat.say(typed).texts == [message("identity_email_invalid")]
        assert "メールアドレスの形式が正しくない" in message("identity_email_invalid")
    assert inbox.messages == []

    assert chat.say(TANAKA).says("identity_code_sent", minutes=10)  # still asking
    assert len(inbox.to(TANAKA)) == 1


def test_identity_gives_up_after_three_malformed_addresses(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    _identity_email_step(chat, inbox)
    chat.say("a")
    chat.say("b")
    assert chat.say("c").texts == [message("identity_email_failed")]
    assert conversation(seeded, chat).state == {}
    assert not chat.say(TANAKA).says("identity_code_sent", minutes=10)  # the flow is over
    assert inbox.messages == []


def test_identity_accepts_an_address_typed_in_full_width_characters(chat: Chat, inbox: Inbox) -> None:
    _identity_email_step(chat, inbox)

    assert chat.say("ｔａｎａｋａ＠ｅｘａｍｐｌｅ．ｃｏｍ").says("identity_code_sent", minutes=10)
    assert chat.say(inbox.code_for(TANAKA)).says("identity_verified")


def test_a_registered_address_gets_a_six_digit_code_that_verifies_the_member(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    _identity_email_step(chat, inbox)

    chat.say(TANAKA)
    [mail] = inbox.to(TANAKA)
    assert mail["Subject"] == "【JSUG】確認コードのお知らせ"
    code = inbox.code_for(TANAKA)
    assert re.fullmatch(r"\d{6}", code)

    replies = chat.say(code)
    assert replies[0].text == message("identity_verified")
    assert "stop:newsletter" in replies.actions  # the waiting action goes on at once
    stored = conversation(seeded, chat)
    assert stored.member_id == member_id(seeded, "demo-tanaka")
    assert stored.verified_email == TANAKA
    [entry] = audit_rows(seeded, "identity_verified")
    assert (entry.entity, entry.entity_id, entry.after) == ("conversation", stored.id, {"member_id": stored.member_id})


def test_an_address_with_two_accounts_chooses_the_account_by_button(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    _identity_account_step(chat, inbox)
    assert len(inbox.to(YAMADA)) == 1  # one code for the address, though it has two accounts

    assert chat.press("account:demo-tanaka").texts == [message("stale_button")]  # not an account of this address
    assert conversation(seeded, chat).member_id is None

    replies = chat.press("account:demo-yamada-rep")
    assert replies.says("identity_verified")
    assert conversation(seeded, chat).member_id == member_id(seeded, "demo-yamada-rep")
    assert "kind:company_withdrawal" in replies.actions  # the representative account was chosen


def test_an_unregistered_address_gets_the_same_reply_and_no_mail(bot: Engine, inbox: Inbox) -> None:
    member, stranger = Chat(bot, "web-member"), Chat(bot, "web-stranger")
    _identity_email_step(member, inbox)
    _identity_email_step(stranger, inbox)

    registered = member.say(TANAKA)
    unregistered = stranger.say(NOBODY)

    assert unregistered == registered
    assert inbox.to(NOBODY) == [] and len(inbox.messages) == 1
    # A guessed code fails alike for both: nothing tells the stranger the address has no account.
    wrong = f"{(int(inbox.code_for(TANAKA)) + 1) % 10**6:06d}"
    assert stranger.say(wrong) == member.say(wrong) == [Reply("text", message("identity_code_wrong", left=4))]


def test_five_wrong_codes_fail_and_the_right_code_no_longer_verifies(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    _identity_code_step(chat, inbox)
    code = inbox.code_for(TANAKA)
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    for left in (4, 3, 2, 1):
        assert chat.say(wrong).texts == [message("identity_code_wrong", left=left)]
    assert chat.say(wrong).texts == [message("identity_code_failed")]

    assert not chat.say(code).says("identity_verified")
    stored = conversation(seeded, chat)
    assert stored.member_id is None and stored.verified_email is None
    assert chat.press("start:newsletter_optout").texts == [message("identity_intro")]  # asked again from the start


def test_an_expired_code_does_not_verify(chat: Chat, inbox: Inbox, clock: Clock, seeded: sessionmaker[Session]) -> None:
    _identity_code_step(chat, inbox)
    code = inbox.code_for(TANAKA)

    clock.advance(minutes=11)

    assert chat.say(code).texts == [message("identity_code_failed")]
    assert conversation(seeded, chat).member_id is None


# === newsletter_optout ===============================================================================


@pytest.mark.parametrize(
    ("choice", "after", "items"),
    [
        ("action:stop:newsletter", (False, True), "メールマガジン"),
        ("action:stop:postal_dm", (True, False), "郵送DM"),
        ("action:stop:both", (False, False), "メールマガジン・郵送DM"),
        ("text:両方", (False, False), "メールマガジン・郵送DM"),
        ("text:郵送DMだけ止めたいです", (True, False), "郵送DM"),
    ],
)
def test_newsletter_optout_stops_what_the_member_chose_with_audit_and_mail(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session], choice: str, after: tuple[bool, bool], items: str
) -> None:
    assert preferences(seeded, "demo-tanaka") == (True, True)
    buttons = start_verified(chat, inbox, "newsletter_optout", TANAKA)
    assert buttons.actions == ["stop:newsletter", "stop:postal_dm", "stop:both"]

    how, value = choice.split(":", 1)
    confirm = chat.say(value) if how == "text" else chat.press(value)
    assert confirm.texts == [f"{items}を停止します。よろしいですか。"]
    assert preferences(seeded, "demo-tanaka") == (True, True)  # nothing before the confirmation

    done = chat.press("confirm")

    assert done.texts == [f"{items}を停止しました。JSUGや部会からのお知らせ等は引き続きお届けします。"]
    assert preferences(seeded, "demo-tanaka") == after
    [entry] = audit_rows(seeded, "preferences_changed")
    tanaka = member_id(seeded, "demo-tanaka")
    assert (entry.actor, entry.channel, entry.entity, entry.entity_id) == (f"member:{tanaka}", "web", "member", tanaka)
    assert entry.before == {"newsletter": True, "postal_dm": True}
    assert entry.after == {"newsletter": after[0], "postal_dm": after[1]}
    [mail] = inbox.to(TANAKA, NEWSLETTER_DONE_SUBJECT)
    assert "田中 美咲 様" in body(mail) and items in body(mail)


def test_pressing_the_confirmation_twice_changes_once_and_mails_once(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    _newsletter_confirm_step(chat, inbox)

    chat.press("confirm")
    again = chat.press("confirm")

    assert again.texts == [message("stale_button")]
    assert len(audit_rows(seeded, "preferences_changed")) == 1
    assert len(inbox.to(TANAKA, NEWSLETTER_DONE_SUBJECT)) == 1
    assert count(seeded, OutboxMail, OutboxMail.subject == NEWSLETTER_DONE_SUBJECT) == 1


def test_a_member_with_everything_already_off_is_told_so_and_nothing_changes(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    before = business_state(seeded)

    replies = start_verified(chat, inbox, "newsletter_optout", SATO)

    assert replies.texts == [message("identity_verified"),
                             "メールマガジン・郵送DMとも、すでに停止されています。JSUGや部会からのお知らせは引き続きお届けします。"]
    assert replies.actions == []
    assert business_state(seeded) == before
    assert conversation(seeded, chat).state == {}
    assert inbox.to(SATO, NEWSLETTER_DONE_SUBJECT) == []


def test_only_what_is_still_on_is_offered(chat: Chat, inbox: Inbox) -> None:
    replies = start_verified(chat, inbox, "newsletter_optout", TAKAHASHI)  # newsletter already off
    assert replies.actions == ["stop:postal_dm"]
    assert chat.press("stop:newsletter").texts == [  # a forged button for what is already off
        "ボタンでお選びいただくか、「メルマガ」「DM」「両方」のいずれかでお答えください。"]


def test_a_typed_request_to_stop_the_newsletter_shows_how_and_offers_to_do_it_here(chat: Chat) -> None:
    shown = chat.say("メルマガを止めてください")
    assert shown.kinds == ["answer", "buttons"]
    assert shown[0].faq_id == "newsletter-dm-stop" and "マイページ" in shown[0].text
    assert shown.actions == ["start:newsletter_optout"]
    assert chat.press("start:newsletter_optout").texts == [message("identity_intro")]


# === withdrawal_request ==============================================================================


def test_user_deregistration_is_recorded_as_a_request_and_nothing_is_deleted(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    members_before = business_state(seeded)["members"]
    choices = start_verified(chat, inbox, "withdrawal_request", TAKAHASHI)
    assert choices.actions == ["kind:user_deregistration"]

    assert chat.press("kind:user_deregistration").actions == ["skip"]
    assert chat.say("担当を外れたため").actions == ["confirm", "cancel"]
    done = chat.press("confirm")

    [request] = requests(seeded)
    assert done.texts[0].startswith(f"JSUGNET利用登録の解除のお申し込みを受け付けました(受付番号: {request.id})")
    takahashi = member_id(seeded, "demo-takahashi")
    assert (request.kind, request.status, request.member_id) == ("user_deregistration", "open", takahashi)
    assert (request.channel, request.user_ref) == ("web", chat.user_ref)
    assert request.details["reason"] == "担当を外れたため" and request.details["transcript"]
    assert business_state(seeded)["members"] == members_before  # still there, still active
    [member_mail] = inbox.to(TAKAHASHI, "お申し込みを受け付けました")
    assert f"受付番号: {request.id}" in member_mail["Subject"]
    [secretariat_mail] = inbox.to(SECRETARIAT)
    assert "demo-takahashi" in body(secretariat_mail) and "担当を外れたため" in body(secretariat_mail)


def test_the_representative_may_request_the_company_withdrawal(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    choices = start_verified(chat, inbox, "withdrawal_request", TANAKA)
    assert choices.actions == ["kind:user_deregistration", "kind:company_withdrawal"]

    chat.press("kind:company_withdrawal")
    assert chat.press("skip").actions == ["confirm", "cancel"]  # the reason skipped with its button
    chat.press("confirm")

    [request] = requests(seeded)
    assert (request.kind, request.member_id) == ("company_withdrawal", member_id(seeded, "demo-tanaka"))
    assert request.details["reason"] == ""
    with seeded() as session:
        member = session.get(Member, request.member_id)
        assert request.company_id == member.company_id and member.status == "active"
        assert member.company.status == "active"
    assert len(inbox.to(TANAKA, "企業としての退会")) == 1
    assert "企業代表者: はい" in body(inbox.to(SECRETARIAT)[0])


def test_a_non_representative_never_gets_the_company_withdrawal_and_is_refused_if_forcing_it(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    # Yamada's address also owns the representative account; the personal account is chosen here.
    choices = start_verified(chat, inbox, "withdrawal_request", YAMADA, account="demo-yamada")
    assert "kind:company_withdrawal" not in choices.actions

    refused = chat.press("kind:company_withdrawal")

    assert refused.texts == ["企業としての退会は、企業代表者の方からお申し込みいただく必要があります。"
                             "ご自身のJSUGNET利用登録の解除でしたら、こちらから承ります。"]
    assert chat.press("confirm").texts == ["ボタンでお選びください。"]  # still choosing; nothing to confirm
    assert requests(seeded) == []
    assert inbox.to(SECRETARIAT) == []


# === secretariat_request =============================================================================


def test_a_company_name_change_needs_identity_first_then_records_the_details(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    shown = chat.say("会社名の変更を申請します")  # the FAQ's answer first, with the offer to do it here
    assert shown[0].faq_id == "company-name-change" and shown.actions == ["start:secretariat_request"]
    assert "kind:company_name_change" in chat.press("start:secretariat_request").actions

    assert chat.press("kind:company_name_change").texts == [message("identity_intro")]
    verified = verify(chat, inbox, TANAKA)
    assert verified.texts[-1] == "新しい会社名(転職・転籍の場合は新しい所属先の会社名)と、変更の時期を入力してください。"
    details = "デモホールディングス株式会社(2027年4月1日から)"
    assert details in chat.say(details).texts[0]
    done = chat.say("はい")  # a typed yes confirms like the button

    [request] = requests(seeded)
    assert done.texts[0].startswith(f"事務局にお送りしました(受付番号: {request.id})")
    assert (request.kind, request.member_id) == ("company_name_change", member_id(seeded, "demo-tanaka"))
    assert request.company_id is not None and request.details["details"] == details
    [mail] = inbox.to(SECRETARIAT)
    assert "会社名の変更" in mail["Subject"] and details in body(mail) and "demo-tanaka" in body(mail)


# === the conversation lives in the database ==========================================================


def test_two_workers_continue_one_conversation(
    make_bot: Callable[..., Engine], inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    first = Chat(make_bot(), "web-two-workers")
    second = first.on(make_bot())

    assert first.press("start:newsletter_optout").says("identity_intro")
    assert second.say(TANAKA).says("identity_code_sent", minutes=10)
    assert "stop:newsletter" in first.say(inbox.code_for(TANAKA)).actions
    assert second.press("stop:newsletter").actions == ["confirm", "cancel"]
    assert first.press("confirm").texts[0].startswith("メールマガジンを停止しました")

    assert preferences(seeded, "demo-tanaka") == (False, True)
    stored = conversation(seeded, first)
    assert count(seeded, Message, Message.conversation_id == stored.id, Message.direction == "in") == 5
    assert count(seeded, Message, Message.conversation_id == stored.id, Message.direction == "out") >= 5


def test_a_flow_left_longer_than_the_timeout_expires(
    chat: Chat, inbox: Inbox, clock: Clock, seeded: sessionmaker[Session], bot: Engine
) -> None:
    timeout = bot.settings.conversation_timeout_minutes
    _newsletter_choose_step(chat, inbox)

    clock.advance(minutes=timeout - 1)
    assert chat.press("stop:both").actions == ["confirm", "cancel"]  # still within the timeout

    clock.advance(minutes=timeout + 1)
    expired = chat.press("confirm")

    assert expired.texts == [message("flow_expired"), message("stale_button")]
    assert preferences(seeded, "demo-tanaka") == (True, True)
    assert audit_rows(seeded, "preferences_changed") == []
    assert conversation(seeded, chat).state == {}


def test_a_question_after_an_expired_flow_is_answered_as_a_question(
    chat: Chat, inbox: Inbox, clock: Clock, bot: Engine
) -> None:
    _secretariat_details_step(chat, inbox)
    clock.advance(minutes=bot.settings.conversation_timeout_minutes + 1)

    replies = chat.say("パスワードを忘れました")

    assert replies[0].text == message("flow_expired")
    assert replies[1].kind == "answer" and replies[1].faq_id == "password-reset"


# === faults ==========================================================================================


def test_smtp_down_during_a_withdrawal_keeps_the_request_and_delivers_the_mail_later(
    make_bot: Callable[..., Engine], inbox: Inbox, seeded: sessionmaker[Session], smtp_server: SmtpServer
) -> None:
    chat = Chat(make_bot(), "web-smtp-down")
    start_verified(chat, inbox, "withdrawal_request", TANAKA)
    chat = chat.on(make_bot(smtp_port=free_port()))  # from here on, nobody answers on the SMTP port
    inbox.envelopes.clear()

    chat.press("kind:user_deregistration")
    chat.say("なし")
    replies = chat.press("confirm")

    [request] = requests(seeded)
    assert replies.texts == [f"JSUGNET利用登録の解除のお申し込みを受け付けました(受付番号: {request.id})。"
                             "事務局での手続きが完了しましたら、ご連絡いたします。手続き完了までは、ご登録はそのまま残ります。"]
    assert inbox.messages == []
    with seeded() as session:
        pending = list(session.scalars(select(OutboxMail).where(OutboxMail.status == "pending")))
    assert sorted(mail.recipient for mail in pending) == sorted([SECRETARIAT, TANAKA])

    later = datetime.now(timezone.utc) + timedelta(minutes=5)  # past the failed attempt's backoff (1 min)
    report = Mailer(MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_server.port), seeded,
                    clock=lambda: later).deliver_pending()

    assert sorted(report.sent) == sorted(mail.id for mail in pending)
    assert len(inbox.to(SECRETARIAT)) == 1 and len(inbox.to(TANAKA, "受付番号")) == 1
    assert count(seeded, OutboxMail, OutboxMail.status != "sent") == 0


def test_an_unreachable_database_is_one_specific_error_with_the_apology_for_members(jsug_index: FaqIndex) -> None:
    settings = settings_for(UNREACHABLE_DATABASE, free_port())
    database = make_engine(UNREACHABLE_DATABASE)
    sessions = session_factory(database)
    handlers = build_handlers()
    intents = IntentIndex(load_intents(settings.intents_dir, frozenset(handlers)), jsug_index.corpus.lexicon,
                          jsug_index.analyzer, INTENT_THRESHOLD)
    bot = Engine(settings, sessions, jsug_index, intents, Mailer(settings.mail, sessions), handlers)
    try:
        for turn in ({"text": "パスワードを忘れました"}, {"text": "メルマガを止めてください"}, {"action": "confirm"}):
            with pytest.raises(ServiceUnavailableError) as raised:
                bot.handle("web", "web-offline", **turn)
            assert raised.value.member_message == message("database_unavailable")
    finally:
        database.dispose()


@pytest.mark.parametrize(
    ("choices", "audits"),
    [(("stop:both", "stop:both"), 1), (("stop:newsletter", "stop:postal_dm"), 2)],
    ids=["same-choice", "different-choices"],
)
def test_two_conversations_of_one_member_confirming_at_once_give_one_consistent_result(
    bot: Engine, inbox: Inbox, seeded: sessionmaker[Session], choices: tuple[str, str], audits: int
) -> None:
    tabs = [Chat(bot, "web-tab-1"), Chat(bot, "web-tab-2")]
    for tab, choice in zip(tabs, choices, strict=True):
        start_verified(tab, inbox, "newsletter_optout", TANAKA)
        assert tab.press(choice).actions == ["confirm", "cancel"]
    barrier = threading.Barrier(len(tabs))
    results: dict[int, Any] = {}

    def confirm(number: int, tab: Chat) -> None:
        barrier.wait()
        try:
            results[number] = tab.press("confirm")
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[number] = exc

    threads = [threading.Thread(target=confirm, args=(n, tab)) for n, tab in enumerate(tabs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert all(isinstance(result, list) for result in results.values()), results
    assert len(results) == 2
    for result in results.values():
        assert result[0].text.endswith("を停止しました。JSUGや部会からのお知らせ等は引き続きお届けします。"), result
    assert preferences(seeded, "demo-tanaka") == (False, False)
    entries = audit_rows(seeded, "preferences_changed")
    assert len(entries) == audits
    assert entries[0].before == {"newsletter": True, "postal_dm": True}
    for earlier, later in zip(entries, entries[1:], strict=False):
        assert later.before == earlier.after  # no lost update: each change saw the one before it
    assert entries[-1].after == {"newsletter": False, "postal_dm": False}
    assert len(inbox.to(TANAKA, NEWSLETTER_DONE_SUBJECT)) == audits


def test_a_double_click_on_one_confirmation_records_one_request(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    start_verified(chat, inbox, "withdrawal_request", TAKAHASHI)
    chat.press("kind:user_deregistration")
    chat.say("なし")
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def confirm() -> None:
        barrier.wait()
        try:
            results.append(chat.press("confirm"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            results.append(exc)

    threads = [threading.Thread(target=confirm) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 3 and all(isinstance(result, list) for result in results), results
    [request] = requests(seeded)
    done = f"JSUGNET利用登録の解除のお申し込みを受け付けました(受付番号: {request.id})"
    for result in results:  # the first press is taken; the others see it done, or a stale button
        assert result[0].text.startswith(done) or result.texts == [message("stale_button")], result
    assert len(inbox.to(SECRETARIAT)) == 1 and len(inbox.to(TAKAHASHI, "お申し込み")) == 1


# === bad input =======================================================================================


@pytest.mark.parametrize("said", ["", " ", "　\n\t "], ids=["empty", "space", "blanks"])
def test_an_empty_message_asks_for_a_question(chat: Chat, said: str) -> None:
    assert chat.say(said).texts == [message("empty_question")]


@pytest.mark.parametrize(
    "said",
    ["\x00\x01\x07\x1b[31m", "パスワード\x00を忘れました\x1b", "\ud800", "質問\udc00です\ud83d", "😀🎉", "パスワードを忘れました😭"],
    ids=["controls", "controls-in-question", "lone-surrogate", "surrogates-in-question", "emoji", "emoji-in-question"],
)
def test_odd_characters_get_an_answer_and_are_recorded(
    chat: Chat, seeded: sessionmaker[Session], said: str
) -> None:
    replies = chat.say(said)

    assert replies and all(reply.kind in ("answer", "suggestions", "text", "buttons") for reply in replies)
    assert not replies.says("database_unavailable")
    with seeded() as session:
        stored = session.scalars(select(Message.text).where(Message.direction == "in")).all()
    assert len(stored) == 1
    assert "\x00" not in stored[0] and not any(0xD800 <= ord(ch) <= 0xDFFF for ch in stored[0])
    if "パスワード" in said:
        assert replies[0].kind == "answer" and replies[0].faq_id == "password-reset"


def test_an_overlong_message_is_cut_with_a_note_and_still_answered(
    chat: Chat, seeded: sessionmaker[Session]
) -> None:
    said = "パスワードを忘れました。" + "よろしくお願いします。" * 1000  # about 10 kB of text

    replies = chat.say(said)

    assert replies[0].text == message("message_too_long", limit=MAX_MESSAGE_CHARS)
    assert len(replies) >= 2 and replies[1].kind in ("answer", "suggestions", "buttons")
    with seeded() as session:
        [stored] = session.scalars(select(Message.text).where(Message.direction == "in")).all()
    assert len(stored) == MAX_MESSAGE_CHARS


@pytest.mark.parametrize(
    "details",
    ["'; DROP TABLE members; --", "<script>alert('x')</script><b>太字</b>&amp;", "Robert'); DELETE FROM audit_log;--"],
    ids=["sql", "html", "sql-delete"],
)
def test_free_text_in_an_inquiry_is_stored_verbatim_as_plain_text(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session], details: str
) -> None:
    before = business_state(seeded)
    chat.say("担当者と話したい")
    assert details in chat.say(details).texts[0]
    chat.press("confirm")

    [request] = requests(seeded)
    assert request.details["details"] == details
    assert details in [line["text"] for line in request.details["transcript"]]
    assert details in body(inbox.to(SECRETARIAT)[0])
    after = business_state(seeded)
    assert after["members"] == before["members"] and after["preferences"] == before["preferences"]
    assert after["audit"] == before["audit"] + 1  # the request's own entry, nothing removed


def test_control_characters_and_surrogates_are_dropped_from_inquiry_details(
    chat: Chat, inbox: Inbox, seeded: sessionmaker[Session]
) -> None:
    chat.say("担当者と話したい")
    chat.say("請求書\x00について\x07質問\ud800です😀")
    chat.press("confirm")

    [request] = requests(seeded)
    kept = request.details["details"]
    assert kept.startswith("請求書について質問") and kept.endswith("です😀")
    assert all(ch.isprintable() for ch in kept)
    assert not any(0xD800 <= ord(ch) <= 0xDFFF for ch in kept)


@pytest.mark.parametrize(
    ("channel", "user_ref"),
    [("fax", "u1"), ("", "u1"), ("WEB", "u1"), ("web", ""), ("web", "u" * 201), ("web", "u\x00"),
     ("web", "u\ud800"), ("web", "u\n1")],
)
def test_a_channel_calling_wrongly_gets_an_engine_input_error(bot: Engine, channel: str, user_ref: str) -> None:
    with pytest.raises(EngineInputError):
        bot.handle(channel, user_ref, text="こんにちは")


@pytest.mark.parametrize(
    "action",
    ["confirm", "explode", "", "start:no_such_handler", "faq:no-such-entry", "feedback:no-such-entry:up",
     "account:demo-tanaka",
     "kind:company_withdrawal", "stop:both", "'; DROP TABLE members; --", "\ud800"],
)
def test_an_unknown_or_stale_action_gets_the_stale_button_reply(
    chat: Chat, seeded: sessionmaker[Session], action: str
) -> None:
    before = business_state(seeded)

    assert chat.press(action).texts == [message("stale_button")]
    assert business_state(seeded) == before
    assert conversation(seeded, chat).member_id is None


@pytest.mark.parametrize("said", ["キャンセル料はかかりますか", "キャンセル待ちについて教えてください"])
def test_a_message_that_only_mentions_cancelling_is_not_taken_for_a_cancel(chat: Chat, said: str) -> None:
    assert chat.say("やっぱりやめます").says("nothing_to_cancel")  # a real cancel phrase still is one
    assert not chat.say(said).says("nothing_to_cancel")  # a question, to answer or pass on
    chat.press("cancel")  # forget that question before starting an inquiry afresh
    _secretariat_details_step(chat, Inbox())
    assert not chat.say(said).says("cancelled")  # the inquiry's text, to confirm and send


# === the terminal: jsug-bot chat --script --json ====================================================


@pytest.fixture
def demo_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated, seeded SQLite file named by DATABASE_URL, and no JSUG_ settings from outside."""
    url = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    database = make_engine(url)
    upgrade(database)
    with session_factory(database).begin() as session:
        seed_demo(session)
    database.dispose()
    for name in list(os.environ):
        if name.startswith("JSUG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", url)
    return url


def test_chat_script_prints_each_turn_as_one_json_line(
    demo_database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["こんにちは", "パスワードを忘れました", "変更したい", "メルマガを止めてください", "!start:newsletter_optout",
             "!stop:both", "!confirm"]
    script = tmp_path / "script.txt"
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert main(["chat", "--as", TANAKA, "--script", str(script), "--json"]) == 0

    captured = capsys.readouterr()
    turns = [json.loads(line) for line in captured.out.splitlines()]
    assert [turn["in"] for turn in turns] == lines
    kinds = [[reply["kind"] for reply in turn["replies"]] for turn in turns]
    assert kinds == [["text"], ["answer", "buttons"], ["suggestions", "buttons"], ["answer", "buttons"], ["text", "buttons"],
                     ["buttons"], ["text"]]
    assert turns[0]["replies"] == [{"kind": "text", "text": message("greeting")}]
    assert turns[1]["replies"][0]["faq_id"] == "password-reset"
    assert turns[2]["replies"][0]["items"]
    assert turns[3]["replies"][0]["faq_id"] == "newsletter-dm-stop"  # how to do it on マイページ, and the offer
    assert turns[4]["replies"][0]["text"] == message("identity_verified")  # --as: no code on the demo database
    assert turns[6]["replies"][0]["text"].startswith("メールマガジン・郵送DMを停止しました")
    sessions = session_factory(make_engine(demo_database))
    try:
        assert preferences(sessions, "demo-tanaka") == (False, False)
        assert [row.after for row in audit_rows(sessions, "identity_assumed")] == [{"email": TANAKA}]
        assert count(sessions, OutboxMail, OutboxMail.status == "logged") == 1  # no SMTP host: logged
        # ... and shown in the demo mailbox on stderr, never in the log (nor among stdout's JSON lines)
        assert "[demo mailbox]" in captured.err and f"To: {TANAKA}" in captured.err
    finally:
        sessions.kw["bind"].dispose()


def test_chat_as_on_a_postgresql_database_needs_trust_identity(
    demo_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "script.txt"
    script.write_text("メルマガを止めてください\n", encoding="utf-8")
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE)

    assert main(["chat", "--as", TANAKA, "--script", str(script), "--json"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "--trust-identity" in captured.err
