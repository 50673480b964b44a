"""Limits that hold: the hourly limits under concurrent requests, and limits on codes and guesses
that an attacker's conversations cannot turn into a lock-out of the member.

The concurrent tests start their threads together at a barrier, each thread with a session and a
transaction of its own, on PostgreSQL (where nothing else serialises them: SQLite lets one
writer in at a time, and the engine serialises its turns on it). The other tests run the
conversation through ``build_assistant`` and ``Assistant.handle`` on SQLite and PostgreSQL, with
the codes read out of the mails a real SMTP server (aiosmtpd) received.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from limits.storage import storage_from_string
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.attempt_limits import AttemptLimits
from bot.faq.index import FaqIndex
from bot.identity import ADDRESS_PREFIX, email_hash, issue_code
from bot.mail import Mailer
from bot.messages import message
from bot.settings import MailSettings, Settings, WebSettings
from bot.storage.models import AuditLog, OneTimeCode, OutboxMail, PasswordResetRequest, PasswordResetToken
from handlers.password_reset import request_reset
from tests.conftest import TEST_SECRET
from tests.mail_support import CODE, SATO, SMTP_HOST, Inbox, Members, SmtpServer, start_smtp

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
TANAKA = "tanaka@example.com"  # a demo member (bot/storage/demo_members.csv)
NOBODY = "nobody@example.com"
REDIS = "redis://127.0.0.1:6379"
SECRET = TEST_SECRET.get_secret_value().encode()
SECURITY_EVENTS = ("one_time_code_requested", "one_time_code_wrong", "identity_locked_out", "password_reset_requested")


# === the hourly limits, under concurrency =============================================================


def at_once(count: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run ``work(0..count-1)`` in threads released together; the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(number: int) -> None:
        barrier.wait()
        try:
            work(number)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.fixture
def postgres_only(database_url: str) -> str:
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite lets one writer in at a time (and the engine serialises turns on it)")
    return database_url


def count(sessions: sessionmaker[Session], model: type, *where: Any) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_ten_simultaneous_reset_requests_for_one_address_mail_at_most_the_hourly_limit(
    postgres_only: str, sessions: sessionmaker[Session], members: Members
) -> None:
    settings = Settings(database_url=postgres_only, secret_key=TEST_SECRET)
    mailer = Mailer(settings.mail, sessions)

    def request(number: int) -> None:
        with sessions.begin() as session:
            request_reset(session, mailer, settings, SATO, "web", f"web:visitor-{number}", NOW)

    assert at_once(10, request) == []

    assert count(sessions, PasswordResetRequest) == 10  # every request counted
    assert count(sessions, PasswordResetToken) == settings.reset_requests_per_hour == 3
    assert count(sessions, OutboxMail, OutboxMail.recipient == SATO) == 3


def test_twelve_simultaneous_code_requests_for_one_address_mail_at_most_the_hourly_limit(
    postgres_only: str, sessions: sessionmaker[Session], members: Members
) -> None:
    settings = Settings(database_url=postgres_only, secret_key=TEST_SECRET)
    mailer = Mailer(settings.mail, sessions)

    def request(number: int) -> None:
        with sessions.begin() as session:
            issue_code(session, mailer, settings, "web", f"web-{number}", SATO, NOW)

    assert at_once(12, request) == []

    assert count(sessions, OneTimeCode) == 12
    assert count(sessions, OutboxMail, OutboxMail.recipient == SATO) == settings.codes_per_hour == 5
    assert count(sessions, OneTimeCode, OneTimeCode.email == SATO) == 5  # the others can never match


# === limits on codes and guesses, through the conversation ===========================================


@pytest.fixture(scope="module")
def smtp_server() -> Iterator[SmtpServer]:
    server = start_smtp()
    yield server
    server.stop()


@pytest.fixture
def make_assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex,
                   smtp_server: SmtpServer) -> Iterator[Callable[..., Assistant]]:
    built: list[Assistant] = []

    def make(**overrides: Any) -> Assistant:
        settings = Settings(database_url=database_url, secret_key=overrides.pop("secret_key", TEST_SECRET),
                            mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_server.port), **overrides)
        assistant = build_assistant(settings, faq=jsug_index, deliver_mail=False)
        built.append(assistant)
        return assistant

    yield make
    for assistant in built:
        assistant.close()


class Visitor:
    """One conversation on the web, its mails delivered after each turn (as the worker would)."""

    def __init__(self, assistant: Assistant, user_ref: str) -> None:
        self.assistant, self.user_ref = assistant, user_ref

    def say(self, text: str | None = None, action: str | None = None) -> list[str]:
        replies = self.assistant.handle("web", self.user_ref, text=text, action=action)
        self.assistant.mailer.deliver_pending()
        return [reply.text for reply in replies]

    def ask_code(self, email: str) -> list[str]:
        assert self.say(action="start:newsletter_optout") == [message("identity_intro")]
        return self.say(email)


def code_sent() -> list[str]:
    return [message("identity_code_sent", minutes=10)]


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def waited(replies: list[str], key: str) -> int:
    """The minutes a limit's reply asks to wait (checking it is that reply)."""
    [said] = replies
    found = re.search(r"(\d+)分ほど", said)
    assert found and said == message(key, minutes=int(found.group(1))), said
    return int(found.group(1))


def audit(assistant: Assistant, *actions: str) -> list[AuditLog]:
    with assistant.sessions() as session:
        return list(session.scalars(select(AuditLog).where(AuditLog.action.in_(actions)).order_by(AuditLog.id)))


def test_an_attackers_conversation_asking_codes_is_stopped_before_it_locks_the_member_out(
    make_assistant: Callable[..., Assistant], inbox: Inbox
) -> None:
    assistant = make_assistant()
    attacker = Visitor(assistant, "attacker")
    for _ in range(assistant.settings.code_requests_per_session):
        assert attacker.ask_code(TANAKA) == code_sent()
    minutes = waited(attacker.ask_code(TANAKA), "identity_code_requests_limited")
    assert 55 <= minutes <= 60

    member = Visitor(assistant, "member")
    assert member.ask_code(TANAKA) == code_sent()
    assert member.say(inbox.code_for(TANAKA))[0] == message("identity_verified")


def test_an_attackers_wrong_guesses_do_not_stop_the_members_own_code(
    make_assistant: Callable[..., Assistant], inbox: Inbox
) -> None:
    assistant = make_assistant()
    attacker = Visitor(assistant, "guesser")
    for _ in range(2):  # two codes, five wrong guesses each: the conversation's ten
        assert attacker.ask_code(TANAKA) == code_sent()
        replies = [attacker.say(wrong(inbox.code_for(TANAKA))) for _ in range(assistant.settings.code_attempts)]
        assert replies[-1] == [message("identity_code_failed")]
    assert attacker.ask_code(TANAKA) == code_sent()
    waited(attacker.say(inbox.code_for(TANAKA)), "identity_wrong_codes_limited")  # even the right one now

    member = Visitor(assistant, "member")
    assert member.ask_code(TANAKA) == code_sent()
    assert member.say(wrong(inbox.code_for(TANAKA))) == [message("identity_code_wrong", left=4)]  # a typo
    assert member.say(inbox.code_for(TANAKA))[0] == message("identity_verified")

    entries = audit(assistant, "one_time_code_wrong", "identity_locked_out")
    assert [e.action for e in entries].count("one_time_code_wrong") == 11
    assert {e.after["reason"] for e in entries if e.action == "identity_locked_out"} == {
        "code_attempts", "wrong-codes_per_session"}


def test_when_many_conversations_use_up_an_address_the_member_is_told_how_long_to_wait(
    make_assistant: Callable[..., Assistant], inbox: Inbox
) -> None:
    assistant = make_assistant()
    per_session = assistant.settings.code_requests_per_session
    for number in range(assistant.settings.codes_per_hour):
        assert Visitor(assistant, f"attacker-{number // per_session}").ask_code(TANAKA) == code_sent()

    member = Visitor(assistant, "member")
    minutes = waited(member.ask_code(TANAKA), "identity_code_requests_limited")
    assert 55 <= minutes <= 60

    # The secretariat sees it all on the member's page (jsug-bot members show), by keyed address only.
    [account] = assistant.member_accounts(TANAKA)
    trail = [(entry["action"], entry["actor"], entry["after"]) for entry in account["audit"]]
    assert [action for action, _actor, _after in trail].count("one_time_code_requested") == 5
    address = email_hash(TANAKA, SECRET)[:ADDRESS_PREFIX]
    assert ("identity_locked_out", "web:member",
            {"address": address, "reason": "code-requests_per_address", "minutes": minutes}) in trail
    written = json.dumps([after for action, _actor, after in trail if action in SECURITY_EVENTS])
    codes = [found.group(1) for mail in inbox.to(TANAKA) if (found := CODE.search(mail.get_content()))]
    assert len(codes) == 5
    assert "@" not in written and not any(code in written for code in codes)


def test_a_limit_answers_alike_for_a_registered_and_an_unregistered_address(
    make_assistant: Callable[..., Assistant], inbox: Inbox
) -> None:
    assistant = make_assistant()
    answers: dict[str, list[list[str]]] = {}
    for email in (TANAKA, NOBODY):
        answers[email] = [Visitor(assistant, f"{email}-{number}").ask_code(email)
                          for number in range(assistant.settings.codes_per_hour + 1)]
    assert answers[TANAKA] == answers[NOBODY]
    assert answers[TANAKA][-1][0].startswith("確認コードのご請求が続いたため")
    entries = audit(assistant, "identity_locked_out")
    assert [(e.entity, e.after["reason"]) for e in entries] == [
        ("member", "code-requests_per_address"), ("address", "code-requests_per_address")]


def test_the_overall_limit_stops_code_requests_for_every_address(
    make_assistant: Callable[..., Assistant], inbox: Inbox
) -> None:
    assistant = make_assistant(code_requests_overall=3)
    for number, email in enumerate(("a@example.com", "b@example.com", TANAKA)):
        assert Visitor(assistant, f"visitor-{number}").ask_code(email) == code_sent()
    waited(Visitor(assistant, "one-more").ask_code("c@example.com"), "identity_code_requests_limited")


def test_the_counts_live_in_redis_for_every_process(make_assistant: Callable[..., Assistant], inbox: Inbox) -> None:
    try:
        answers = storage_from_string(REDIS).check()
    except Exception:  # noqa: BLE001 - no Redis here
        answers = False
    if not answers:
        pytest.skip("Redis does not answer at 127.0.0.1:6379")
    # A secret of this run's own: the keys in Redis are HMACs with it, so earlier runs' counts
    # (kept for an hour) are not this run's.
    secret = SecretStr(secrets.token_urlsafe(40))
    first, second = (make_assistant(secret_key=secret, web=WebSettings(rate_limit_storage=REDIS)) for _ in range(2))
    for _ in range(first.settings.code_requests_per_session):
        assert Visitor(first, "one-conversation").ask_code(TANAKA) == code_sent()
    # The same conversation served by another process: the count is shared.
    waited(Visitor(second, "one-conversation").ask_code(TANAKA), "identity_code_requests_limited")


def test_a_count_store_that_is_down_lets_attempts_through() -> None:
    limits = AttemptLimits(Settings(secret_key=TEST_SECRET), storage=storage_from_string("redis://127.0.0.1:1"))
    assert limits.request_code("session", "address") is None  # logged; the database's limits still hold
    assert limits.may_guess("session", "address") is None
    limits.wrong_code("session", "address")
