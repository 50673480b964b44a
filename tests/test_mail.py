"""The outbox: queued with the caller's change, delivered to a real SMTP server, retried, never twice.

Backoff, deadlines, secrets, the demo mailbox and the operator's commands: ``test_mail_reliability.py``.
"""

from __future__ import annotations

import logging
import socket
import threading
from datetime import datetime, timedelta

import pytest
from aiosmtpd.smtp import AuthResult
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import utc
from bot.mail import DeliveryReport, InvalidMailError, Mailer, MailNotConfiguredError
from bot.settings import MailSettings, Settings
from bot.storage.members import mark_demo_database
from bot.storage.models import OutboxMail, utcnow
from tests.mail_support import SMTP_HOST, SmtpServer, free_port, start_smtp

SUBJECT = "【JSUG】テストのお知らせ"
BODY = "山田 様\n\nこれはテストのメールです。\n\nJSUG事務局"


def queue(mailer: Mailer, sessions: sessionmaker[Session], *recipients: str) -> list[int]:
    with sessions.begin() as session:
        return [mailer.queue(session, recipient, SUBJECT, BODY).id for recipient in recipients]


def outbox(sessions: sessionmaker[Session], mail_id: int) -> OutboxMail:
    with sessions() as session:
        mail = session.get(OutboxMail, mail_id)
        assert mail is not None
        return mail


def unreachable_settings(**mail: object) -> Settings:
    return Settings(mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=free_port(), **mail))


class Clock:
    """A clock the test moves on, so backoff waits take no real time."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def test_a_queued_mail_arrives_with_its_subject_and_body(sessions, smtp_server: SmtpServer) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    [mail_id] = queue(mailer, sessions, "yamada@example.com")

    report = mailer.deliver_pending()

    assert report == DeliveryReport(sent=[mail_id])
    [message] = smtp_server.inbox.messages
    assert message["Subject"] == SUBJECT
    assert message["To"] == "yamada@example.com"
    assert "no-reply@jsug.org" in message["From"] and "JSUG事務局" in message["From"]
    assert message.get_content().replace("\r\n", "\n").strip() == BODY
    assert smtp_server.inbox.envelopes[0].mail_from == "no-reply@jsug.org"
    stored = outbox(sessions, mail_id)
    assert (stored.status, stored.attempts, stored.last_error) == ("sent", 1, None)
    assert stored.sent_at is not None
    assert mailer.deliver_pending() == DeliveryReport()  # nothing left, nothing sent twice
    assert len(smtp_server.inbox.envelopes) == 1


def test_a_mail_exists_only_if_the_change_that_queued_it_committed(sessions, smtp_server: SmtpServer) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    with pytest.raises(RuntimeError), sessions.begin() as session:
        mailer.queue(session, "yamada@example.com", SUBJECT, BODY)
        raise RuntimeError("the change failed")

    assert mailer.deliver_pending() == DeliveryReport()
    assert smtp_server.inbox.envelopes == []


def test_pending_for_tells_whether_the_callers_mails_went_out(sessions, smtp_server: SmtpServer) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    ids = queue(mailer, sessions, "a@example.com", "b@example.com")
    with sessions() as session:
        assert [mail.id for mail in mailer.pending_for(session, ids)] == ids
    mailer.deliver_pending()
    with sessions() as session:
        assert mailer.pending_for(session, ids) == []
        assert mailer.pending_for(session, []) == []


def test_with_smtp_down_the_mail_stays_pending_and_goes_out_when_it_is_back(sessions) -> None:
    settings = unreachable_settings()
    clock = Clock()
    mailer = Mailer(settings.mail, sessions, clock=clock)
    first, second = queue(mailer, sessions, "yamada@example.com", "sato@example.co.jp")

    report = mailer.deliver_pending()

    assert report == DeliveryReport(failed=[first])
    down = outbox(sessions, first)
    assert (down.status, down.attempts, down.sent_at) == ("pending", 1, None)
    assert "ConnectionRefusedError" in (down.last_error or "")
    assert down.next_attempt_at is not None and utc(down.next_attempt_at) > clock.now  # backing off
    # The server is unreachable: the run stopped instead of spending an attempt of every mail.
    assert outbox(sessions, second).attempts == 0

    server = start_smtp(settings.mail.smtp_port)
    try:
        clock.advance(minutes=2)  # past the first mail's backoff
        report = mailer.deliver_pending()
    finally:
        server.stop()

    assert report == DeliveryReport(sent=[first, second])
    assert sorted(message["To"] for message in server.inbox.messages) == ["sato@example.co.jp", "yamada@example.com"]
    assert (outbox(sessions, first).status, outbox(sessions, first).attempts) == ("sent", 2)


def test_a_server_that_never_answers_times_out_and_the_mail_stays_pending(sessions) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind((SMTP_HOST, 0))
        silent.listen(1)  # the connection is accepted by the kernel, but no greeting ever comes
        settings = Settings(mail=MailSettings(smtp_host=SMTP_HOST, smtp_port=silent.getsockname()[1],
                                              timeout_seconds=0.3))
        mailer = Mailer(settings.mail, sessions)
        [mail_id] = queue(mailer, sessions, "yamada@example.com")

        assert mailer.deliver_pending() == DeliveryReport(failed=[mail_id])

    stored = outbox(sessions, mail_id)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert "timed out" in (stored.last_error or "")


def test_after_max_attempts_the_mail_is_failed_and_left_alone(sessions) -> None:
    clock = Clock()
    mailer = Mailer(unreachable_settings(max_attempts=2).mail, sessions, clock=clock)
    [mail_id] = queue(mailer, sessions, "yamada@example.com")

    assert mailer.deliver_pending() == DeliveryReport(failed=[mail_id])
    clock.advance(hours=1)
    assert mailer.deliver_pending() == DeliveryReport(failed=[mail_id], gave_up=[mail_id])
    clock.advance(days=30)
    assert mailer.deliver_pending() == DeliveryReport()

    stored = outbox(sessions, mail_id)
    assert (stored.status, stored.attempts, stored.next_attempt_at) == ("failed", 2, None)
    assert stored.last_error
    with sessions() as session:
        assert [mail.id for mail in mailer.pending_for(session, [mail_id])] == [mail_id]  # it never went out


def test_a_refused_recipient_fails_alone_and_the_others_go_out(sessions, smtp_server: SmtpServer) -> None:
    smtp_server.inbox.refuse.add("nobody@example.com")
    mailer = Mailer(smtp_server.settings().mail, sessions)
    refused, accepted = queue(mailer, sessions, "nobody@example.com", "yamada@example.com")

    assert mailer.deliver_pending() == DeliveryReport(sent=[accepted], failed=[refused])

    stored = outbox(sessions, refused)
    assert (stored.status, stored.attempts) == ("pending", 1)
    assert "550" in (stored.last_error or "")
    assert [message["To"] for message in smtp_server.inbox.messages] == ["yamada@example.com"]


def test_two_workers_at_once_send_each_mail_exactly_once(sessions, smtp_server: SmtpServer) -> None:
    smtp_server.inbox.delay_seconds = 0.01  # keep both workers busy at the same time
    mailer = Mailer(smtp_server.settings().mail, sessions)
    ids = queue(mailer, sessions, *(f"member{number}@example.com" for number in range(24)))
    start = threading.Barrier(2)
    reports: list[DeliveryReport] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            start.wait()
            reports.append(mailer.deliver_pending())
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert errors == []
    sent = [mail_id for report in reports for mail_id in report.sent]
    assert sorted(sent) == ids  # every mail by exactly one worker
    recipients = [message["To"] for message in smtp_server.inbox.messages]
    assert sorted(recipients) == sorted(f"member{number}@example.com" for number in range(24))
    with sessions() as session:
        assert set(session.scalars(select(OutboxMail.status))) == {"sent"}
        assert set(session.scalars(select(OutboxMail.attempts))) == {1}


def test_on_the_demo_database_without_smtp_the_mail_is_shown_on_stderr_and_marked_logged(
    sessions, caplog, capsys
) -> None:
    with sessions.begin() as session:
        mark_demo_database(session)
    mailer = Mailer(Settings(mail=MailSettings()).mail, sessions)
    [mail_id] = queue(mailer, sessions, "yamada@example.com")

    with caplog.at_level(logging.DEBUG):
        report = mailer.deliver_pending()

    assert report == DeliveryReport(logged=[mail_id])
    shown = capsys.readouterr().err  # the demo mailbox: the terminal of whoever runs the demo
    assert "To: yamada@example.com" in shown and SUBJECT in shown and BODY in shown
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "yamada@example.com" not in logged and BODY not in logged  # never through logging
    stored = outbox(sessions, mail_id)
    assert (stored.status, stored.attempts) == ("logged", 1)
    assert mailer.deliver_pending() == DeliveryReport()


def test_without_smtp_on_any_other_database_delivery_refuses_and_touches_nothing(sessions, capsys) -> None:
    mailer = Mailer(Settings(mail=MailSettings()).mail, sessions)
    ids = queue(mailer, sessions, "yamada@example.com", "sato@example.co.jp")

    with pytest.raises(MailNotConfiguredError, match="JSUG_MAIL__SMTP_HOST"):
        mailer.deliver_pending()

    assert capsys.readouterr() == ("", "")
    for mail_id in ids:
        stored = outbox(sessions, mail_id)
        assert (stored.status, stored.attempts, stored.sent_at, stored.last_error) == ("pending", 0, None, None)


def test_a_mail_left_in_sending_by_a_stopped_worker_is_sent_again(sessions, smtp_server: SmtpServer) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    [stuck, fresh] = queue(mailer, sessions, "yamada@example.com", "sato@example.co.jp")
    with sessions.begin() as session:  # a worker claimed both and died; one claim is old, one recent
        session.execute(update(OutboxMail).where(OutboxMail.id == stuck)
                        .values(status="sending", attempts=1, sent_at=utcnow() - timedelta(hours=1)))
        session.execute(update(OutboxMail).where(OutboxMail.id == fresh)
                        .values(status="sending", attempts=1, sent_at=utcnow()))

    assert mailer.deliver_pending() == DeliveryReport(sent=[stuck])

    stored = outbox(sessions, stuck)
    assert (stored.status, stored.attempts) == ("sent", 2)
    assert "interrupted" in (stored.last_error or "")
    assert outbox(sessions, fresh).status == "sending"  # may still be on its way: not touched


@pytest.mark.parametrize(
    ("recipient", "subject"),
    [
        ("yamada@example.com\r\nBcc: everyone@example.com", SUBJECT),
        ("yamada@example.com", "件名\nBcc: everyone@example.com"),
        ("not an address", SUBJECT),
        ("", SUBJECT),
    ],
)
def test_queue_refuses_what_cannot_be_a_header(sessions, recipient: str, subject: str) -> None:
    mailer = Mailer(MailSettings(), sessions)
    with sessions.begin() as session, pytest.raises(InvalidMailError):
        mailer.queue(session, recipient, subject, BODY)
    with sessions() as session:
        assert session.scalars(select(OutboxMail)).all() == []


def test_smtp_login_and_a_refused_login_that_does_not_record_the_password(sessions) -> None:
    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        accepted = (auth_data.login, auth_data.password) == (b"bot", b"right-password")
        return AuthResult(success=accepted, handled=False)  # handled=False: the server answers 535 itself

    server = start_smtp(authenticator=authenticate, auth_require_tls=False)
    try:
        good = Mailer(server.settings(smtp_user="bot", smtp_password="right-password").mail, sessions)
        [first] = queue(good, sessions, "yamada@example.com")
        assert good.deliver_pending() == DeliveryReport(sent=[first])

        bad = Mailer(server.settings(smtp_user="bot", smtp_password="wrong-password").mail, sessions)
        [second] = queue(bad, sessions, "sato@example.co.jp")
        assert bad.deliver_pending() == DeliveryReport(failed=[second])
    finally:
        server.stop()

    stored = outbox(sessions, second)
    assert stored.status == "pending"
    assert "SMTPAuthenticationError" in (stored.last_error or "")
    assert "wrong-password" not in (stored.last_error or "")
    assert len(server.inbox.envelopes) == 1
