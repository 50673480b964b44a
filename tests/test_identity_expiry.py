"""Identity that expires: a proof of who the member is lasts ``identity_minutes`` (30 by default,
``JSUG_IDENTITY_MINUTES``); a change after that asks again before it is applied.

Through ``build_assistant`` and ``Assistant.handle`` with the engine's clock moved forward by the
tests, on SQLite and PostgreSQL; the codes come from the mails a real SMTP server received. The
member keeps the conversation going (the flow itself expires after 30 idle minutes), so that only
the age of the proof is at stake.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.faq.index import FaqIndex
from bot.messages import message
from bot.settings import MailSettings, Settings
from bot.storage.models import Conversation, Member, Preferences, SecretariatRequest
from tests.conftest import TEST_SECRET, Clock
from tests.mail_support import SMTP_HOST, Inbox, SmtpServer, start_smtp

TANAKA = "tanaka@example.com"  # demo-tanaka: representative of デモ商事, newsletter and postal DM on
SLACK_USER = "U0TANAKA"


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def make_assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex,
                   smtp_server: SmtpServer, clock: Clock) -> Iterator[Callable[..., Assistant]]:
    built: list[Assistant] = []

    def make(**overrides: Any) -> Assistant:
        settings = Settings(database_url=database_url, secret_key=TEST_SECRET,
                            mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_server.port), **overrides)
        assistant = build_assistant(settings, faq=jsug_index, deliver_mail=False, clock=clock)
        built.append(assistant)
        return assistant

    yield make
    for assistant in built:
        assistant.close()


@pytest.fixture
def assistant(make_assistant: Callable[..., Assistant], inbox: Inbox) -> Assistant:
    return make_assistant()


class Chat:
    def __init__(self, assistant: Assistant, user_ref: str = "web-expiry", channel: str = "web") -> None:
        self.assistant, self.user_ref, self.channel = assistant, user_ref, channel

    def say(self, text: str) -> list[str]:
        return self._texts(self.assistant.handle(self.channel, self.user_ref, text=text))

    def press(self, action: str) -> list[str]:
        return self._texts(self.assistant.handle(self.channel, self.user_ref, action=action))

    def _texts(self, replies: list[Any]) -> list[str]:
        self.assistant.mailer.deliver_pending()
        self.last = replies
        return [reply.text for reply in replies]

    @property
    def actions(self) -> list[str]:
        return [button.action for reply in self.last for button in reply.buttons]


def verify_by_code(chat: Chat, inbox: Inbox) -> list[str]:
    assert chat.say(TANAKA) == [message("identity_code_sent", minutes=10)]
    replies = chat.say(inbox.code_for(TANAKA))
    assert replies[0] == message("identity_verified"), replies
    return replies


def stored(assistant: Assistant, chat: Chat) -> Conversation:
    with assistant.sessions() as session:
        return session.scalars(select(Conversation).where(
            Conversation.channel == chat.channel, Conversation.user_ref == chat.user_ref)).one()


def preferences(assistant: Assistant) -> tuple[bool, bool]:
    with assistant.sessions() as session:
        prefs = session.scalars(select(Preferences).join(Member, Member.id == Preferences.member_id)
                                .where(Member.login_id == "demo-tanaka")).one()
        return prefs.newsletter, prefs.postal_dm


def requests(assistant: Assistant) -> int:
    with assistant.sessions() as session:
        return session.scalar(select(func.count()).select_from(SecretariatRequest)) or 0


def asked_again(replies: list[str], minutes: int = 30) -> bool:
    return replies == [message("identity_expired", minutes=minutes), message("identity_intro")]


# === the proof's time =================================================================================


def test_verifying_by_code_records_when(assistant: Assistant, inbox: Inbox, clock: Clock) -> None:
    chat = Chat(assistant)
    chat.press("start:newsletter_optout")
    clock.advance(minutes=2)  # the code arrives and is typed a little later
    verify_by_code(chat, inbox)
    conversation = stored(assistant, chat)
    assert conversation.member_id is not None
    assert conversation.verified_at is not None
    assert abs(conversation.verified_at.replace(tzinfo=timezone.utc) - clock.now) < timedelta(seconds=1)


def test_identity_minutes_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().identity_minutes == 30
    monkeypatch.setenv("JSUG_IDENTITY_MINUTES", "5")
    assert Settings().identity_minutes == 5


# === a change after the proof has lapsed asks again ===================================================


def test_the_newsletter_optout_confirmed_31_minutes_after_the_code_asks_again_first(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(assistant)
    chat.press("start:newsletter_optout")
    verify_by_code(chat, inbox)
    clock.advance(minutes=20)
    assert chat.press("stop:both") == ["メールマガジン・郵送DMを停止します。よろしいですか。"]
    clock.advance(minutes=11)  # 31 minutes after the code, 11 after the last step

    assert asked_again(chat.press("confirm"))
    assert preferences(assistant) == (True, True)  # nothing applied on the old proof
    conversation = stored(assistant, chat)
    assert (conversation.member_id, conversation.verified_email, conversation.verified_at) == (None, None, None)

    # Proved again, the member starts the change afresh and it goes through.
    assert "stop:both" in [*verify_by_code(chat, inbox), *chat.actions]
    chat.press("stop:both")
    assert chat.press("confirm")[0].startswith("メールマガジン・郵送DMを停止しました")
    assert preferences(assistant) == (False, False)


def test_within_the_identity_minutes_the_change_goes_through(assistant: Assistant, inbox: Inbox, clock: Clock) -> None:
    chat = Chat(assistant)
    chat.press("start:newsletter_optout")
    verify_by_code(chat, inbox)
    clock.advance(minutes=20)
    chat.press("stop:newsletter")
    clock.advance(minutes=9)  # 29 minutes
    assert chat.press("confirm")[0].startswith("メールマガジンを停止しました")
    assert preferences(assistant) == (False, True)


def test_a_withdrawal_confirmed_after_the_identity_minutes_asks_again_and_files_nothing(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(assistant)
    chat.press("start:withdrawal_request")
    verify_by_code(chat, inbox)
    clock.advance(minutes=15)
    chat.press("kind:user_deregistration")
    clock.advance(minutes=14)
    assert chat.say("なし")[0].endswith("を事務局に申し込みます。よろしいですか。")
    clock.advance(minutes=2)  # 31 minutes after the code

    assert asked_again(chat.press("confirm"))
    assert requests(assistant) == 0
    verify_by_code(chat, inbox)
    assert "kind:user_deregistration" in chat.actions  # the request begins again


def test_a_secretariat_request_for_a_member_confirmed_late_asks_again(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(assistant)
    chat.say("会社名の変更を申請します")
    chat.press("start:secretariat_request")
    assert chat.press("kind:company_name_change") == [message("identity_intro")]
    verify_by_code(chat, inbox)
    clock.advance(minutes=25)
    assert "デモ新商事" in chat.say("デモ新商事株式会社(2027年4月1日から)")[0]
    clock.advance(minutes=6)

    assert asked_again(chat.say("はい"))
    assert requests(assistant) == 0


def test_a_new_action_after_the_identity_minutes_starts_with_proving_it_again(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(assistant)
    chat.press("start:newsletter_optout")
    verify_by_code(chat, inbox)
    chat.press("stop:postal_dm")
    chat.press("confirm")
    clock.advance(minutes=31)

    assert chat.say("パスワードを忘れました")  # a question is simply answered
    assert chat.press("start:withdrawal_request") == [message("identity_intro")]
    assert stored(assistant, chat).member_id is None


def test_the_identity_minutes_setting_is_what_counts(
    make_assistant: Callable[..., Assistant], inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(make_assistant(identity_minutes=5))
    chat.press("start:newsletter_optout")
    verify_by_code(chat, inbox)
    clock.advance(minutes=4)
    chat.press("stop:both")
    clock.advance(minutes=2)
    assert asked_again(chat.press("confirm"), minutes=5)


# === other proofs: Slack, an operator =================================================================


def test_a_slack_identity_expires_too_and_is_read_again_from_the_link(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    assert assistant.link_identity("slack", SLACK_USER, TANAKA)
    chat = Chat(assistant, SLACK_USER, channel="slack")
    assert chat.press("start:newsletter_optout")[0] == message("identity_verified")
    assert stored(assistant, chat).verified_at is not None
    clock.advance(minutes=20)
    chat.press("stop:both")
    clock.advance(minutes=11)

    replies = chat.press("confirm")

    assert replies[:2] == [message("identity_expired", minutes=30), message("identity_verified")]
    assert "stop:both" in chat.actions  # verified again from the link, the member confirms afresh
    assert preferences(assistant) == (True, True)


def test_an_operators_assumed_identity_lasts_the_identity_minutes_from_its_first_use(
    assistant: Assistant, inbox: Inbox, clock: Clock
) -> None:
    chat = Chat(assistant, "terminal-operator", channel="terminal")
    assistant.assume_identity("terminal", chat.user_ref, TANAKA, "operator:test")
    assert chat.press("start:newsletter_optout")[0] == message("identity_verified")  # no code asked
    assert stored(assistant, chat).verified_at is not None
    clock.advance(minutes=20)
    chat.press("stop:both")
    clock.advance(minutes=11)

    assert asked_again(chat.press("confirm"))
    assert preferences(assistant) == (True, True)


def test_an_operator_may_choose_among_the_accounts_of_the_address_they_vouched_for(
    assistant: Assistant, inbox: Inbox
) -> None:
    chat = Chat(assistant, "terminal-operator-yamada", channel="terminal")
    assistant.assume_identity("terminal", chat.user_ref, "yamada@example.com", "operator:test")
    assert chat.press("start:withdrawal_request") == [message("identity_choose_account")]
    assert chat.press("account:demo-yamada-rep")[0] == message("identity_verified")
    assert stored(assistant, chat).verified_at is not None
