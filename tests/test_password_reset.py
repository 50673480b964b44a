"""Password reset: the conversation, the mails through a real SMTP server, the link, the new password."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.dialogue.flow import FlowContext, Step
from bot.identity import ADDRESS_PREFIX, InvalidEmailError, email_hash
from bot.mail import Mailer
from bot.messages import message as member_text
from bot.passwords import verify_password
from bot.settings import Settings
from bot.storage.models import (
    AuditLog,
    Conversation,
    Member,
    OutboxMail,
    PasswordResetRequest,
    PasswordResetToken,
)
from handlers.password_reset import (
    PasswordPolicyError,
    PasswordResetHandler,
    TokenError,
    check_token,
    request_reset,
    reset_password,
)
from tests.conftest import TEST_SECRET
from tests.mail_support import SATO, WITHDRAWN, YAMADA, Members, SmtpServer

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
SECRET = TEST_SECRET.get_secret_value().encode()
LINK = re.compile(r"(\S+)/reset-password\?token=([A-Za-z0-9_-]+)")
LOGIN_ID = re.compile(r"ログインID: (\S+)")
NEW_PASSWORD = "sakura-2026-haru"
# Made by the earlier code (scrypt, bot/identity.py's hash_password) from "correct horse 7".
LEGACY_PASSWORD = "correct horse 7"
LEGACY_HASH = "scrypt$32768$8$1$yiFF9K7dzzTyBtquAnwa8w==$1pWchkXdnxLUegm3EOH/BgYCoxY1ZhhVkmnoar7CD70="


@pytest.fixture
def settings(smtp_server: SmtpServer) -> Settings:
    return smtp_server.settings().model_copy(update={"secret_key": TEST_SECRET})


@pytest.fixture
def mailer(settings: Settings, sessions: sessionmaker[Session]) -> Mailer:
    return Mailer(settings.mail, sessions)


def request(sessions, mailer, settings, email: str, now: datetime = NOW) -> None:
    with sessions.begin() as session:
        assert request_reset(session, mailer, settings, email, "web", "web:visitor", now) is None


def delivered(mailer: Mailer, smtp_server: SmtpServer) -> list[EmailMessage]:
    mailer.deliver_pending()
    return smtp_server.inbox.messages


def token_of(message: EmailMessage) -> str:
    match = LINK.search(message.get_content())
    assert match, message.get_content()
    return match.group(2)


def login_id_of(message: EmailMessage) -> str:
    match = LOGIN_ID.search(message.get_content())
    assert match
    return match.group(1)


def count(sessions, model) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def password_hash(sessions, member_id: int) -> str | None:
    with sessions() as session:
        member = session.get(Member, member_id)
        assert member is not None
        return member.password_hash


# -- requesting ----------------------------------------------------------------------------------


def test_each_account_of_the_address_gets_its_own_mail_and_link(
    sessions, mailer, settings, smtp_server, members: Members
) -> None:
    request(sessions, mailer, settings, "yamada@EXAMPLE.com")

    messages = delivered(mailer, smtp_server)

    assert len(messages) == 2
    assert {message["Subject"] for message in messages} == {"【JSUG】パスワード再設定のご案内"}
    by_login = {login_id_of(message): message for message in messages}
    assert set(by_login) == {"yamada", "beta-rep"}
    assert by_login["beta-rep"]["To"] == "Yamada@Example.com"  # the address as registered
    for message in messages:
        assert LINK.search(message.get_content()).group(1) == settings.public_url
        assert f"{settings.reset_token_minutes}分以内" in message.get_content()
    with sessions.begin() as session:
        assert check_token(session, token_of(by_login["yamada"]), NOW).id == members.yamada_personal
        assert check_token(session, token_of(by_login["beta-rep"]), NOW).id == members.yamada_representative
    with sessions.begin() as session:
        reset_password(session, token_of(by_login["beta-rep"]), NEW_PASSWORD, "web", NOW)
    assert verify_password(NEW_PASSWORD, password_hash(sessions, members.yamada_representative))
    assert password_hash(sessions, members.yamada_personal) is None
    with sessions.begin() as session:  # the other account's link still works
        assert check_token(session, token_of(by_login["yamada"]), NOW).id == members.yamada_personal


def test_only_hashes_are_stored_and_the_audit_log_holds_no_token(
    sessions, mailer, settings, smtp_server, members: Members
) -> None:
    request(sessions, mailer, settings, YAMADA)
    tokens = [token_of(message) for message in delivered(mailer, smtp_server)]

    with sessions() as session:
        stored = [row.token_hash for row in session.scalars(select(PasswordResetToken))]
        entries = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert len(stored) == 2 and not set(tokens) & set(stored)
    assert [(entry.action, entry.actor, entry.channel) for entry in entries] == [
        ("password_reset_requested", "web:visitor", "web")] * 2
    assert {entry.entity_id for entry in entries} == {members.yamada_personal, members.yamada_representative}
    written = json.dumps([[entry.before, entry.after] for entry in entries])
    assert not any(token in written for token in tokens)


def test_an_unknown_address_gets_no_mail_and_the_same_result(
    sessions, mailer, settings, smtp_server, members
) -> None:
    for address in ("nobody@example.com", WITHDRAWN):
        request(sessions, mailer, settings, address)

    assert delivered(mailer, smtp_server) == []
    assert count(sessions, PasswordResetToken) == 0
    assert count(sessions, PasswordResetRequest) == 2  # counted for the limit all the same
    with sessions() as session:  # the secretariat sees the attempts, on the keyed address only
        entries = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(e.action, e.entity, e.entity_id, e.after) for e in entries] == [
        ("password_reset_requested", "address", None, {"address": email_hash(address, SECRET)[:ADDRESS_PREFIX]})
        for address in ("nobody@example.com", WITHDRAWN)]


def test_address_hashes_are_keyed_and_the_outbox_keeps_no_link(
    sessions, mailer, settings, smtp_server, members
) -> None:
    request(sessions, mailer, settings, SATO)
    with sessions() as session:
        [stored] = session.scalars(select(PasswordResetRequest.email_hash)).all()
        [pending] = session.scalars(select(OutboxMail)).all()
    assert stored == email_hash(SATO, SECRET) != hashlib.sha256(SATO.encode()).hexdigest()
    assert "{{secret}}" in pending.body and "token=" not in pending.body

    [message] = delivered(mailer, smtp_server)
    token = token_of(message)
    with sessions() as session:
        [sent] = session.scalars(select(OutboxMail)).all()
    assert sent.status == "sent" and token not in sent.body and sent.secret is None


def test_requests_over_the_limit_are_audited_too(sessions, mailer, settings, smtp_server, members: Members) -> None:
    for minute in range(settings.reset_requests_per_hour + 1):
        request(sessions, mailer, settings, SATO, now=NOW + timedelta(minutes=minute))
    with sessions() as session:
        entries = session.scalars(select(AuditLog).order_by(AuditLog.id)).all()
    assert [(e.action, e.entity_id) for e in entries] == [("password_reset_requested", members.sato)] * 4
    assert entries[-1].after == {"address": email_hash(SATO, SECRET)[:ADDRESS_PREFIX], "limited": True}


def test_the_fourth_request_in_an_hour_sends_nothing(sessions, mailer, settings, smtp_server, members) -> None:
    for minute in range(settings.reset_requests_per_hour + 1):
        request(sessions, mailer, settings, SATO, now=NOW + timedelta(minutes=minute))

    assert len(delivered(mailer, smtp_server)) == settings.reset_requests_per_hour
    assert count(sessions, PasswordResetRequest) == settings.reset_requests_per_hour + 1

    request(sessions, mailer, settings, "SATO@example.co.jp", now=NOW + timedelta(minutes=30))
    assert len(delivered(mailer, smtp_server)) == settings.reset_requests_per_hour  # any spelling of it
    # Refused requests count too, so the limit holds while someone keeps asking; then it lifts.
    request(sessions, mailer, settings, SATO, now=NOW + timedelta(minutes=91))
    assert len(delivered(mailer, smtp_server)) == settings.reset_requests_per_hour + 1


def test_a_malformed_address_is_refused_before_anything_is_written(sessions, mailer, settings, members) -> None:
    with sessions.begin() as session, pytest.raises(InvalidEmailError):
        request_reset(session, mailer, settings, "<b>yamada</b>@example.com", "web", "web:visitor", NOW)
    assert count(sessions, PasswordResetRequest) == 0


# -- the link ------------------------------------------------------------------------------------


@pytest.fixture
def sato_token(sessions, mailer, settings, smtp_server, members) -> str:
    request(sessions, mailer, settings, SATO)
    [message] = delivered(mailer, smtp_server)
    return token_of(message)


def test_the_link_sets_the_password_once(sessions, sato_token: str, members: Members) -> None:
    with sessions.begin() as session:
        assert reset_password(session, sato_token, NEW_PASSWORD, "web", NOW).id == members.sato
    changed = password_hash(sessions, members.sato)
    assert changed and changed.startswith("$argon2id$") and verify_password(NEW_PASSWORD, changed)

    with sessions.begin() as session, pytest.raises(TokenError) as used:
        reset_password(session, sato_token, "another-password-9", "web", NOW + timedelta(minutes=1))
    assert used.value.reason == "used"
    assert password_hash(sessions, members.sato) == changed  # the second use changed nothing

    with sessions() as session:
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "password_changed")).all()
    assert (entry.actor, entry.channel, entry.entity_id) == (f"member:{members.sato}", "web", members.sato)
    written = json.dumps([entry.before, entry.after])
    assert "scrypt" not in written and "argon2" not in written and changed not in written
    assert NEW_PASSWORD not in written


def test_a_reset_replaces_a_legacy_scrypt_hash(sessions, sato_token: str, members: Members) -> None:
    with sessions.begin() as session:
        member = session.get(Member, members.sato)
        assert member is not None
        member.password_hash = LEGACY_HASH
    assert verify_password(LEGACY_PASSWORD, password_hash(sessions, members.sato))

    with sessions.begin() as session:
        reset_password(session, sato_token, NEW_PASSWORD, "web", NOW)

    changed = password_hash(sessions, members.sato)
    assert changed and changed.startswith("$argon2id$") and changed != LEGACY_HASH
    assert verify_password(NEW_PASSWORD, changed) and not verify_password(LEGACY_PASSWORD, changed)
    with sessions() as session:
        [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "password_changed")).all()
    assert (entry.before, entry.after["password_set"]) == ({"password_set": True}, True)
    assert LEGACY_HASH not in json.dumps([entry.before, entry.after])


def test_a_reset_kills_the_members_other_links(sessions, mailer, settings, smtp_server, members) -> None:
    request(sessions, mailer, settings, SATO)
    request(sessions, mailer, settings, SATO, now=NOW + timedelta(minutes=1))
    first, second = (token_of(message) for message in delivered(mailer, smtp_server))

    with sessions.begin() as session:
        reset_password(session, second, NEW_PASSWORD, "web", NOW + timedelta(minutes=2))
    with sessions.begin() as session, pytest.raises(TokenError) as stale:
        check_token(session, first, NOW + timedelta(minutes=3))
    assert stale.value.reason == "used"


def test_an_expired_link_is_refused(sessions, settings, sato_token: str, members: Members) -> None:
    expiry = NOW + timedelta(minutes=settings.reset_token_minutes)
    with sessions.begin() as session:
        assert check_token(session, sato_token, expiry - timedelta(seconds=1)).id == members.sato
    with sessions.begin() as session, pytest.raises(TokenError) as expired:
        reset_password(session, sato_token, NEW_PASSWORD, "web", expiry)
    assert expired.value.reason == "expired"
    assert password_hash(sessions, members.sato) is None


@pytest.mark.parametrize("forged", ["", "   ", "x" * 5000, "' OR '1'='1", "../../etc/passwd"])
def test_a_forged_link_is_unknown(sessions, sato_token: str, forged: str) -> None:
    for token in (forged, secrets.token_urlsafe(32), sato_token[:-1]):
        with sessions.begin() as session, pytest.raises(TokenError) as unknown:
            check_token(session, token, NOW)
        assert unknown.value.reason == "unknown"


def test_a_link_of_a_withdrawn_member_is_unknown(sessions, sato_token: str, members: Members) -> None:
    with sessions.begin() as session:
        member = session.get(Member, members.sato)
        assert member is not None
        member.status = "withdrawn"
    with sessions.begin() as session, pytest.raises(TokenError) as unknown:
        check_token(session, sato_token, NOW)
    assert unknown.value.reason == "unknown"


@pytest.mark.parametrize(
    ("password", "says"),
    [("abc1234", "12文字以上128文字以内"), ("ab1-" * 32 + "x", "12文字以上128文字以内"), ("", "12文字以上"),
     ("12345678", "12文字以上"), ("１２３４５６７８９", "12文字以上"), ("sakura-2026", "12文字以上"),
     ("sato-spring-2026", "ログインID"), ("Haru-SATO-2026", "ログインID"),
     ("password1234", "よく使われる"), ("QWERTYUIOP12", "よく使われる"), ("１２３４５６７８９０１２", "よく使われる"),
     ("a" * 128, "同じ文字"), ("777777777777777", "同じ文字")],
)
def test_the_password_policy_refuses_and_the_link_stays_usable(
    sessions, sato_token: str, members: Members, password: str, says: str
) -> None:
    with sessions.begin() as session, pytest.raises(PasswordPolicyError) as refused:
        reset_password(session, sato_token, password, "web", NOW)
    assert says in str(refused.value)
    assert password_hash(sessions, members.sato) is None
    with sessions() as session:
        assert session.scalars(select(AuditLog).where(AuditLog.action == "password_changed")).all() == []
    good = "ab1-" * 32  # 128 characters, the longest allowed
    with sessions.begin() as session:  # a second try with a good password still works
        reset_password(session, sato_token, good, "web", NOW)
    assert verify_password(good, password_hash(sessions, members.sato))


def test_the_policy_is_checked_against_the_login_id_of_the_links_account(
    sessions, mailer, settings, smtp_server, members: Members
) -> None:
    request(sessions, mailer, settings, YAMADA)
    by_login = {login_id_of(message): token_of(message) for message in delivered(mailer, smtp_server)}
    with sessions.begin() as session, pytest.raises(PasswordPolicyError) as refused:
        reset_password(session, by_login["beta-rep"], "my-BETA-REP-2026", "web", NOW)
    assert "ログインID" in str(refused.value)
    with sessions.begin() as session:  # the other account's login ID is no part of this one's
        reset_password(session, by_login["yamada"], "my-BETA-REP-2026", "web", NOW)
    assert verify_password("my-BETA-REP-2026", password_hash(sessions, members.yamada_personal))


# -- the conversation ----------------------------------------------------------------------------


class Chat:
    """Turns of the password_reset flow, each in its own committed transaction, like the engine's."""

    visitors = 0

    def __init__(self, sessions: sessionmaker[Session], mailer: Mailer, settings: Settings) -> None:
        self.sessions, self.mailer, self.settings = sessions, mailer, settings
        self.handler = PasswordResetHandler()
        self.state: dict | None = None
        Chat.visitors += 1
        self.user_ref = f"visitor-{Chat.visitors}"
        with sessions.begin() as session:
            conversation = Conversation(channel="web", user_ref=self.user_ref)
            session.add(conversation)
            session.flush()
            self.conversation_id = conversation.id

    def _turn(self, run) -> Step:  # type: ignore[no-untyped-def]
        with self.sessions.begin() as session:
            conversation = session.get(Conversation, self.conversation_id)
            ctx = FlowContext(session=session, settings=self.settings, mailer=self.mailer,
                              conversation=conversation, channel="web", user_ref=self.user_ref, now=NOW)
            step = run(ctx)
        self.state = step.state
        json.dumps(step.state)  # the engine stores it as JSON
        return step

    def start(self, **slots: str) -> Step:
        return self._turn(lambda ctx: self.handler.start(ctx, dict(slots)))

    def say(self, text: str | None) -> Step:
        assert self.state is not None, "the flow has ended"
        return self._turn(lambda ctx: self.handler.resume(ctx, self.state, text, None))


@pytest.fixture
def chat(sessions, mailer, settings) -> Chat:
    return Chat(sessions, mailer, settings)


def said(step: Step) -> str:
    return "\n".join(reply.text for reply in step.replies)


REQUESTED = member_text("password_reset_requested", minutes=30)


def test_the_flow_asks_for_the_address_and_requests_the_reset(chat: Chat, smtp_server, mailer, members) -> None:
    handler = PasswordResetHandler()
    assert (handler.name, handler.needs_identity) == ("password_reset", False)

    first = chat.start()
    assert said(first) == member_text("password_reset_ask_email") and not first.done and first.state

    last = chat.say(" ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏｍ ")
    assert (said(last), last.state, last.done) == (REQUESTED, None, True)
    assert "30分以内" in REQUESTED and "登録されている場合" in REQUESTED
    assert len(delivered(mailer, smtp_server)) == 2


def test_an_address_given_with_the_request_is_not_asked_again(chat: Chat, smtp_server, mailer, members) -> None:
    step = chat.start(email=SATO)
    assert (said(step), step.done) == (REQUESTED, True)
    assert [message["To"] for message in delivered(mailer, smtp_server)] == [SATO]


def test_a_registered_and_an_unknown_address_get_the_same_answer(sessions, mailer, settings, members) -> None:
    answers = [said(Chat(sessions, mailer, settings).start(email=address))
               for address in (SATO, "nobody@example.com", WITHDRAWN)]
    assert answers == [REQUESTED] * 3


def test_a_malformed_address_is_asked_again_and_the_third_ends_the_flow(chat: Chat, sessions, members) -> None:
    chat.start()
    for _ in range(2):
        step = chat.say("yamada.example.com")
        assert said(step) == member_text("password_reset_malformed_email") and not step.done
        assert "形式" in said(step)
    step = chat.say("yamada@")
    assert (said(step), step.state, step.done) == (member_text("password_reset_gave_up"), None, True)
    assert count(sessions, PasswordResetRequest) == 0


def test_a_good_address_after_a_malformed_one_goes_through(chat: Chat, smtp_server, mailer, members) -> None:
    chat.start(email="sato at example.co.jp")
    assert said(chat.say(SATO)) == REQUESTED
    assert len(delivered(mailer, smtp_server)) == 1


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE members; --",
        "x@example.com' OR '1'='1",
        "<script>alert('x')</script>@example.com",
        '"><img src=x onerror=alert(1)>',
        "yamada@example.com\r\nBcc: everyone@example.com",
        "yamada@example.com, sato@example.co.jp",
        "",
    ],
)
def test_hostile_input_is_a_malformed_address_and_nothing_is_written(
    chat: Chat, sessions, members, hostile: str
) -> None:
    chat.start()
    step = chat.say(hostile)
    assert said(step) == member_text("password_reset_malformed_email")
    assert not hostile or hostile not in said(step)  # never echoed back
    for model in (PasswordResetRequest, PasswordResetToken, OutboxMail, AuditLog):
        assert count(sessions, model) == 0
    assert count(sessions, Member) == 4


def test_a_well_formed_address_that_looks_like_sql_is_just_unknown(chat: Chat, sessions, mailer, members) -> None:
    step = chat.start(email="admin'--@example.com")
    assert said(step) == REQUESTED
    assert count(sessions, OutboxMail) == 0
    assert count(sessions, Member) == 4
