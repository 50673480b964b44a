"""Mail that is never lost, and secrets that do not outlive their use (issue 7).

Backoff per mail over more than a day, ``mail retry`` and ``mail list`` for the secretariat, a
``mail deliver --every`` worker that outlives a database outage, a deadline on the whole SMTP
conversation against a tarpit, the purge of codes and links on send and on expiry, and "show
instead of send" on the demo database only. Real SMTP servers (aiosmtpd, or a tarpit written
here), real databases of both kinds.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from bot.cli import main
from bot.clock import utc
from bot.mail import (
    EXPIRED_ERROR,
    SECRET_PLACEHOLDER,
    DeliveryReport,
    Mailer,
    MailNotConfiguredError,
    retry_schedule,
)
from bot.mail_worker import MailWorker, deliver_every
from bot.settings import MailSettings, Settings
from bot.storage.db import make_engine, session_factory
from bot.storage.members import DEMO_CSV, import_members, mark_demo_database
from bot.storage.models import AuditLog, OutboxMail, utcnow
from tests.api_support import TcpProxy
from tests.conftest import TEST_SECRET
from tests.mail_support import SMTP_HOST, SmtpServer, body, free_port

JSUG_BOT = str(Path(sys.executable).with_name("jsug-bot"))
MEMBER = "sato@example.com"
OTHER = "tanaka@example.com"
CODE_SUBJECT = "【JSUG】確認コードのお知らせ"
CODE_BODY = f"確認コード: {SECRET_PLACEHOLDER}\n\nこのコードは10分間有効です。\n\nJSUG事務局"
LINK_SUBJECT = "【JSUG】パスワード再設定のご案内"
LINK_BODY = f"次のリンクからパスワードを再設定してください。\n{SECRET_PLACEHOLDER}\n\nJSUG事務局"
PLAIN_SUBJECT = "【JSUG】お問い合わせを受け付けました"
PLAIN_BODY = "お問い合わせを受け付けました。\n\nJSUG事務局"


class Clock:
    """A clock the test moves on, so a day of backoff takes no real time."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def a_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def a_link() -> str:
    return f"http://127.0.0.1:8000/reset-password?token={secrets.token_urlsafe(32)}"


def queue(mailer: Mailer, sessions: sessionmaker[Session], recipient: str = MEMBER, subject: str = PLAIN_SUBJECT,
          text: str = PLAIN_BODY, secret: str | None = None) -> int:
    with sessions.begin() as session:
        return mailer.queue(session, recipient, subject, text, secret=secret).id


def stored(sessions: sessionmaker[Session], mail_id: int) -> OutboxMail:
    with sessions() as session:
        mail = session.get(OutboxMail, mail_id)
        assert mail is not None
        return mail


def unreachable(**mail: object) -> MailSettings:
    return MailSettings(smtp_host=SMTP_HOST, smtp_port=free_port(), **mail)  # type: ignore[arg-type]


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Everything the assistant's records say, arguments and tracebacks included (not the records
    of aiosmtpd, ``mail.log``: the test's SMTP server stands in for the member's mailbox)."""
    return "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in caplog.records
                     if not record.name.startswith("mail.log"))


@pytest.fixture
def cli_env(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """The CLI on the test database with no JSUG_ settings from outside; ``cli_env(**JSUG_ values)``."""
    for name in list(os.environ):
        if name.startswith("JSUG_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DATABASE_URL", database_url)

    def configure(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"JSUG_{name.upper()}", value)

    return configure


# === backoff ==========================================================================================


def test_the_default_schedule_spreads_the_attempts_over_more_than_a_day() -> None:
    waits = retry_schedule(MailSettings())

    assert [wait.total_seconds() / 60 for wait in waits] == [1, 2, 4, 8, 16, 32, 64, 128, 240, 240, 240, 240, 240]
    assert sum(waits, timedelta()) >= timedelta(hours=24)
    assert len(waits) + 1 == MailSettings().max_attempts


def test_a_mail_is_tried_on_its_backoff_schedule_and_fails_only_after_a_day(sessions) -> None:
    clock = Clock()
    mailer = Mailer(unreachable(), sessions, clock=clock)
    mail_id = queue(mailer, sessions)
    attempts_at: list[datetime] = []

    while stored(sessions, mail_id).status == "pending":
        mail = stored(sessions, mail_id)
        if mail.next_attempt_at is not None:
            too_early = utc(mail.next_attempt_at) - timedelta(seconds=1)
            clock.now = too_early
            assert mailer.deliver_pending() == DeliveryReport()  # not due yet: not tried, not counted
            assert stored(sessions, mail_id).attempts == mail.attempts
            clock.now = utc(mail.next_attempt_at)
        report = mailer.deliver_pending()
        assert report.failed == [mail_id]
        attempts_at.append(clock.now)

    failed = stored(sessions, mail_id)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", 14, None)
    assert len(attempts_at) == 14
    assert attempts_at[-1] - attempts_at[0] >= timedelta(hours=24)
    gaps = [later - earlier for earlier, later in zip(attempts_at, attempts_at[1:], strict=False)]
    for gap, nominal in zip(gaps, retry_schedule(MailSettings()), strict=True):
        assert nominal <= gap <= nominal * 1.2 + timedelta(seconds=1)  # jitter only ever lengthens a wait


def test_a_refused_connection_costs_one_attempt_of_one_mail_and_the_others_stay_untouched(sessions) -> None:
    clock = Clock()
    mailer = Mailer(unreachable(), sessions, clock=clock)
    first, second, third = (queue(mailer, sessions, f"member{n}@example.org") for n in range(3))

    assert mailer.deliver_pending() == DeliveryReport(failed=[first])

    tried = stored(sessions, first)
    assert tried.attempts == 1 and tried.next_attempt_at is not None
    assert timedelta(seconds=60) <= utc(tried.next_attempt_at) - clock.now <= timedelta(seconds=72)
    for untouched in (second, third):
        mail = stored(sessions, untouched)
        assert (mail.attempts, mail.next_attempt_at, mail.last_error) == (0, None, None)

    for _ in range(20):  # a worker ticking every few seconds through a long outage
        clock.advance(seconds=2)
        mailer.deliver_pending()
    with sessions() as session:
        rows = session.execute(select(OutboxMail.status, OutboxMail.attempts)).all()
    assert all((status, attempts) == ("pending", 1) for status, attempts in rows)  # one attempt each, none lost


def test_a_second_worker_does_not_retry_a_mail_that_is_backing_off(sessions, smtp_server: SmtpServer) -> None:
    clock = Clock()
    mail_id = queue(Mailer(unreachable(), sessions, clock=clock), sessions)
    assert Mailer(unreachable(), sessions, clock=clock).deliver_pending().failed == [mail_id]

    other = Mailer(smtp_server.settings().mail, sessions, clock=clock)
    assert other.deliver_pending() == DeliveryReport()
    assert smtp_server.inbox.envelopes == []

    clock.advance(minutes=2)
    assert other.deliver_pending() == DeliveryReport(sent=[mail_id])


# === mail retry and mail list ==========================================================================


def failed_mail(sessions: sessionmaker[Session], recipient: str = MEMBER, **queued: str) -> int:
    """A mail that used up its attempts on a server that was down."""
    mailer = Mailer(unreachable(max_attempts=1), sessions)
    mail_id = queue(mailer, sessions, recipient, **queued)
    assert mailer.deliver_pending().gave_up == [mail_id]
    return mail_id


def test_mail_retry_failed_requeues_every_failed_mail_with_an_audit_row(
    sessions, cli_env, smtp_server: SmtpServer, capsys
) -> None:
    cli_env()
    ids = [failed_mail(sessions, MEMBER), failed_mail(sessions, OTHER)]
    before = utcnow()

    assert main(["mail", "retry", "--failed"]) == 0

    assert f"requeued 2 mail(s): {ids[0]}, {ids[1]}" in capsys.readouterr().out
    for mail_id in ids:
        mail = stored(sessions, mail_id)
        assert (mail.status, mail.attempts) == ("pending", 0)
        assert mail.next_attempt_at is not None and before <= utc(mail.next_attempt_at) <= utcnow()
    with sessions() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.action == "mail_requeued").order_by(AuditLog.id)).all()
    assert [(row.entity, row.entity_id, row.channel) for row in rows] == [("outbox", ids[0], "cli"),
                                                                        ("outbox", ids[1], "cli")]
    assert all(row.actor.startswith("operator:") for row in rows)
    assert rows[0].before is not None and (rows[0].before["status"], rows[0].before["attempts"]) == ("failed", 1)
    assert rows[0].after is not None and (rows[0].after["status"], rows[0].after["attempts"]) == ("pending", 0)

    assert Mailer(smtp_server.settings().mail, sessions).deliver_pending() == DeliveryReport(sent=ids)


def test_mail_retry_by_id_requeues_those_and_names_what_it_left_alone(
    sessions, cli_env, smtp_server: SmtpServer, capsys
) -> None:
    cli_env()
    failed = failed_mail(sessions)
    sent = queue(Mailer(smtp_server.settings().mail, sessions), sessions, OTHER)
    Mailer(smtp_server.settings().mail, sessions).deliver_pending()
    untouched = failed_mail(sessions, OTHER)

    assert main(["mail", "retry", str(failed), str(sent), "999999"]) == 1

    captured = capsys.readouterr()
    assert f"requeued 1 mail(s): {failed}" in captured.out
    assert f"mail {sent} not requeued: it is sent" in captured.err
    assert "mail 999999 not requeued: no such mail" in captured.err
    assert (stored(sessions, failed).status, stored(sessions, failed).attempts) == ("pending", 0)
    assert stored(sessions, sent).status == "sent"
    assert stored(sessions, untouched).status == "failed"  # not named


def test_mail_retry_without_flags_makes_the_mails_waiting_out_a_backoff_due_now(sessions, cli_env, capsys) -> None:
    cli_env()
    mailer = Mailer(unreachable(), sessions)
    waiting = queue(mailer, sessions)
    assert mailer.deliver_pending().failed == [waiting]
    failed = failed_mail(sessions, OTHER)

    assert main(["mail", "retry"]) == 0

    assert f"requeued 1 mail(s): {waiting}" in capsys.readouterr().out
    mail = stored(sessions, waiting)
    assert (mail.status, mail.attempts) == ("pending", 0)
    assert mail.next_attempt_at is not None and utc(mail.next_attempt_at) <= utcnow()
    assert stored(sessions, failed).status == "failed"  # --failed is needed for those


def test_mail_retry_leaves_a_mail_whose_code_expired_failed(sessions, cli_env, capsys) -> None:
    cli_env()
    clock = Clock()
    mailer = Mailer(unreachable(), sessions, clock=clock)
    mail_id = queue(mailer, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=a_code())
    clock.advance(minutes=31)
    assert mailer.deliver_pending().expired == [mail_id]

    assert main(["mail", "retry", "--failed"]) == 0

    assert "expired" in capsys.readouterr().err
    assert (stored(sessions, mail_id).status, stored(sessions, mail_id).last_error) == ("failed", EXPIRED_ERROR)


def test_mail_list_shows_the_secretariat_failed_mails_without_body_secret_or_full_address(
    sessions, cli_env, capsys
) -> None:
    cli_env()
    code = a_code()
    mail_id = failed_mail(sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)
    with sessions.begin() as session:  # what a server may answer: the address quoted in the error
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id)
                        .values(last_error=f"SMTPRecipientsRefused: 550 5.1.1 <{MEMBER}>: unknown user"))
    failed_mail(sessions, OTHER)
    pending = queue(Mailer(unreachable(), sessions), sessions, "someone@example.org")

    assert main(["mail", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["status"] for row in rows] == ["failed", "failed"]  # the default: what needs attention
    first = rows[0]
    assert first["id"] == mail_id and first["recipient"] == "s***@example.com"
    assert first["subject"] == CODE_SUBJECT and first["attempts"] == 1 and first["next_attempt_at"] is None
    assert first["last_error"] == "SMTPRecipientsRefused: 550 5.1.1 <s***@example.com>: unknown user"
    assert set(first) == {"id", "status", "recipient", "subject", "attempts", "last_error", "created_at",
                          "next_attempt_at"}

    assert main(["mail", "list"]) == 0
    text = capsys.readouterr().out
    assert f"#{mail_id}" in text and "s***@example.com" in text and "t***@example.com" in text
    assert CODE_SUBJECT in text and "attempts 1" in text and "last error:" in text
    for hidden in (MEMBER, OTHER, code, "確認コード:", SECRET_PLACEHOLDER):
        assert hidden not in text

    assert main(["mail", "list", "--status", "pending", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["id"], row["status"], row["next_attempt_at"]) == (pending, "pending", "now")
    assert main(["mail", "list", "--status", "all", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3


def test_mail_list_shows_when_a_pending_mail_is_tried_next(sessions, cli_env, capsys) -> None:
    cli_env()
    mailer = Mailer(unreachable(), sessions)
    mail_id = queue(mailer, sessions)
    mailer.deliver_pending()

    assert main(["mail", "list", "--status", "pending"]) == 0

    text = capsys.readouterr().out
    retry_at = utc(stored(sessions, mail_id).next_attempt_at)  # type: ignore[arg-type]
    assert f"next attempt: {retry_at.isoformat()[:19]}" in text and "ConnectionRefusedError" in text


# === the worker through a database outage ============================================================


class _ProxyOnPort(TcpProxy):
    """A ``TcpProxy`` on a port of the test's choosing, so a database can come back where it was."""

    def __init__(self, target: tuple[str, int], port: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))  # SO_REUSEADDR: the port is free again at once
        self.port = port
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()


@contextmanager
def database_behind_a_proxy(database_url: str) -> Iterator[tuple[str, Callable[[], None], Callable[[], None]]]:
    """The PostgreSQL test database through a proxy: its URL, ``cut()`` and ``restore()``."""
    url = make_url(database_url)
    target = (url.host or "127.0.0.1", url.port or 5432)
    port = free_port()
    proxies = [_ProxyOnPort(target, port)]

    def cut() -> None:
        proxies[-1].cut()

    def restore() -> None:
        proxies.append(_ProxyOnPort(target, port))

    try:
        yield url.set(port=port).render_as_string(hide_password=False), cut, restore
    finally:
        proxies[-1].cut()


def test_deliver_every_keeps_running_through_a_database_outage(
    database_url: str, sessions, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file does not go away; the PostgreSQL run covers it")
    direct = Mailer(smtp_server.settings().mail, sessions)
    with database_behind_a_proxy(database_url) as (url, cut, restore):
        engine = make_engine(url)
        mailer = Mailer(smtp_server.settings().mail, session_factory(engine))
        first = queue(direct, sessions)
        later: list[int] = []
        waits: list[float] = []

        def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:
                cut()
                later.append(queue(direct, sessions, OTHER))  # queued by a turn while the worker is cut off
            elif len(waits) == 3:
                restore()

        reports: list[DeliveryReport] = []
        try:
            with caplog.at_level(logging.WARNING, logger="bot.mail"):
                deliver_every(mailer, 0.5, reports.append, sleep=sleep, runs=5)
        finally:
            engine.dispose()

    assert waits == [0.5] * 4
    assert [report.sent for report in reports] == [[first], later, []]  # runs 2 and 3 hit the outage
    outage = [record for record in caplog.records if "database is unavailable" in record.getMessage()]
    assert len(outage) == 2 and all(record.levelno == logging.WARNING for record in outage)
    assert all("SELECT" not in record.getMessage() and "UPDATE" not in record.getMessage() for record in outage)
    assert [message["To"] for message in smtp_server.inbox.messages] == [MEMBER, OTHER]


def test_deliver_every_logs_a_failed_run_and_carries_on(sessions, smtp_server: SmtpServer, caplog) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    real = mailer.deliver_pending
    runs = iter([False, True, True, False])

    def flaky(limit: int = 50) -> DeliveryReport:
        if next(runs):
            raise OperationalError("SELECT outbox.id WHERE ...", {"p": "secret"}, ConnectionError("gone"))
        return real(limit)

    mailer.deliver_pending = flaky  # type: ignore[method-assign]
    mail_id = queue(mailer, sessions)
    reports: list[DeliveryReport] = []

    with caplog.at_level(logging.WARNING, logger="bot.mail"):
        deliver_every(mailer, 1.0, reports.append, sleep=lambda _seconds: None, runs=4)

    assert [report.sent for report in reports] == [[mail_id], []]
    assert [record.getMessage() for record in caplog.records if record.name == "bot.mail"] == [
        "mail delivery: the database is unavailable (OperationalError); trying again in 1 s"] * 2


def test_mail_deliver_every_as_a_process_outlives_a_database_outage(database_url: str, sessions,
                                                                    smtp_server: SmtpServer) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file does not go away; the PostgreSQL run covers it")
    direct = Mailer(smtp_server.settings().mail, sessions)
    with database_behind_a_proxy(database_url) as (url, cut, restore):
        env = {name: value for name, value in os.environ.items() if not name.startswith("JSUG_")}
        env.update(DATABASE_URL=url, JSUG_MAIL__SMTP_HOST=SMTP_HOST, JSUG_MAIL__SMTP_PORT=str(smtp_server.port))
        process = subprocess.Popen([JSUG_BOT, "mail", "deliver", "--every", "0.2"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = queue(direct, sessions)
            wait_for(lambda: stored(sessions, first).status == "sent")
            cut()
            time.sleep(1.5)  # several runs against a database that is gone
            assert process.poll() is None, "the worker died with the database"
            second = queue(direct, sessions, OTHER)
            restore()
            wait_for(lambda: stored(sessions, second).status == "sent")
            assert process.poll() is None
        finally:
            process.terminate()
            out, err = process.communicate(timeout=10)
    assert "database is unavailable" in err and "Traceback" not in err
    assert "sent 1" in out


def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# === a tarpit SMTP server ================================================================================


@contextmanager
def tarpit(after_data: bool) -> Iterator[int]:
    """An SMTP port that trickles one byte ("2") every 0.5 s, from the greeting on, or only once the
    client has sent a whole mail (``after_data``): no single read ever waits long enough to time out."""
    listener = socket.create_server((SMTP_HOST, 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def converse(connection: socket.socket) -> None:
        try:
            if after_data:
                speak_until_the_mail_is_in(connection)
            while not stop.is_set():
                connection.sendall(b"2")
                stop.wait(0.5)
        except OSError:
            pass
        finally:
            connection.close()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=converse, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def speak_until_the_mail_is_in(connection: socket.socket) -> None:
    reader = connection.makefile("rb")
    connection.sendall(b"220 tarpit ESMTP\r\n")
    for line in reader:
        verb = line[:4].upper()
        if verb in (b"EHLO", b"HELO"):
            connection.sendall(b"250 tarpit\r\n")
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            connection.sendall(b"250 OK\r\n")
        elif verb == b"DATA":
            connection.sendall(b"354 go ahead\r\n")
            for data in reader:
                if data == b".\r\n":
                    return  # the mail is in; its "250" will take forever
            return


@pytest.mark.parametrize("after_data", [False, True], ids=["trickled-greeting", "trickled-reply-to-data"])
def test_a_tarpit_server_holds_a_delivery_no_longer_than_its_deadline(sessions, after_data: bool) -> None:
    with tarpit(after_data) as port:
        settings = MailSettings(smtp_host=SMTP_HOST, smtp_port=port, timeout_seconds=10, send_deadline_seconds=2)
        mailer = Mailer(settings, sessions)
        first = queue(mailer, sessions)
        second = queue(mailer, sessions, OTHER)

        started = time.monotonic()
        report = mailer.deliver_pending()
        elapsed = time.monotonic() - started

    assert elapsed < 3.0, f"the delivery run took {elapsed:.1f} s"
    assert report == DeliveryReport(failed=[first])
    mail = stored(sessions, first)
    assert (mail.status, mail.attempts) == ("pending", 1)
    assert mail.next_attempt_at is not None and utc(mail.next_attempt_at) > utcnow()
    assert "took longer than 2 s" in (mail.last_error or "")
    assert stored(sessions, second).attempts == 0  # the link was down: the rest wait, untouched


# === secrets in the outbox ==============================================================================


@pytest.mark.parametrize(("subject", "text", "make_secret"), [(CODE_SUBJECT, CODE_BODY, a_code),
                                                              (LINK_SUBJECT, LINK_BODY, a_link)],
                         ids=["code", "link"])
def test_a_sent_mail_keeps_neither_its_code_nor_its_link(
    sessions, smtp_server: SmtpServer, subject: str, text: str, make_secret: Callable[[], str]
) -> None:
    secret = make_secret()
    mailer = Mailer(smtp_server.settings().mail, sessions)
    mail_id = queue(mailer, sessions, subject=subject, text=text, secret=secret)
    assert stored(sessions, mail_id).secret == secret  # kept apart until it is sent

    assert mailer.deliver_pending() == DeliveryReport(sent=[mail_id])

    [received] = smtp_server.inbox.messages
    assert secret in body(received) and SECRET_PLACEHOLDER not in body(received)
    mail = stored(sessions, mail_id)
    assert mail.status == "sent" and mail.secret is None
    assert secret not in mail.body and SECRET_PLACEHOLDER in mail.body


def test_a_mail_that_failed_keeps_its_secret_for_the_retry_while_it_is_valid(
    sessions, smtp_server: SmtpServer
) -> None:
    clock = Clock()
    code = a_code()
    mail_id = queue(Mailer(unreachable(), sessions), sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)
    assert Mailer(unreachable(), sessions, clock=clock).deliver_pending().failed == [mail_id]
    assert stored(sessions, mail_id).secret == code

    clock.advance(minutes=5)
    assert Mailer(smtp_server.settings().mail, sessions, clock=clock).deliver_pending() == DeliveryReport(sent=[mail_id])

    assert code in body(smtp_server.inbox.messages[0])
    assert stored(sessions, mail_id).secret is None


def test_an_unsent_mail_loses_its_secret_once_expired_and_is_never_sent(sessions, smtp_server: SmtpServer) -> None:
    clock = Clock()
    link = a_link()
    mail_id = queue(Mailer(unreachable(), sessions), sessions, subject=LINK_SUBJECT, text=LINK_BODY, secret=link)
    plain = queue(Mailer(unreachable(), sessions), sessions, OTHER)
    Mailer(unreachable(), sessions, clock=clock).deliver_pending()

    clock.advance(minutes=31)  # a reset link lives 30 minutes, a code 10
    report = Mailer(smtp_server.settings().mail, sessions, clock=clock).deliver_pending()

    assert report.expired == [mail_id] and report.sent == [plain]  # a mail without a secret does not expire
    mail = stored(sessions, mail_id)
    assert (mail.status, mail.last_error, mail.secret, mail.next_attempt_at) == ("failed", EXPIRED_ERROR, None, None)
    assert link not in mail.body
    assert smtp_server.inbox.to(MEMBER) == []


def test_a_failed_mail_loses_its_secret_once_expired(sessions) -> None:
    clock = Clock()
    code = a_code()
    mailer = Mailer(unreachable(max_attempts=1), sessions, clock=clock)
    mail_id = queue(mailer, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)
    assert mailer.deliver_pending().gave_up == [mail_id]
    assert stored(sessions, mail_id).secret == code

    clock.advance(minutes=31)
    mailer.deliver_pending()

    mail = stored(sessions, mail_id)
    assert (mail.status, mail.secret) == ("failed", None)
    assert "ConnectionRefusedError" in (mail.last_error or "")  # why it failed stays readable


def test_the_secret_lives_as_long_as_the_configured_code_or_link(sessions) -> None:
    clock = Clock()
    settings = Settings(code_minutes=10, reset_token_minutes=45, mail=unreachable())
    mailer = Mailer.for_settings(settings, sessions, clock=clock)
    mail_id = queue(mailer, sessions, subject=LINK_SUBJECT, text=LINK_BODY, secret=a_link())
    mailer.deliver_pending()

    clock.advance(minutes=44)
    assert mailer.deliver_pending().expired == []
    assert stored(sessions, mail_id).secret is not None
    clock.advance(minutes=2)
    assert mailer.deliver_pending().expired == [mail_id]
    assert stored(sessions, mail_id).secret is None


def test_a_claimed_mail_whose_secret_is_gone_is_failed_instead_of_mailing_the_placeholder(
    sessions, smtp_server: SmtpServer
) -> None:
    mailer = Mailer(smtp_server.settings().mail, sessions)
    mail_id = queue(mailer, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=a_code())
    with sessions.begin() as session:  # e.g. purged while a stale claim was being released
        session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(secret=None))

    assert mailer.deliver_pending() == DeliveryReport(expired=[mail_id])

    assert smtp_server.inbox.envelopes == []
    assert (stored(sessions, mail_id).status, stored(sessions, mail_id).last_error) == ("failed", EXPIRED_ERROR)


def test_log_lines_name_mails_by_id_and_masked_address_only(sessions, smtp_server: SmtpServer, caplog) -> None:
    clock = Clock()
    code, link = a_code(), a_link()
    smtp_server.inbox.refuse.add(OTHER)
    with caplog.at_level(logging.DEBUG):
        good = Mailer(smtp_server.settings().mail, sessions, clock=clock)
        queue(good, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)
        queue(good, sessions, OTHER, subject=CODE_SUBJECT, text=CODE_BODY, secret=a_code())
        good.deliver_pending()  # one sent, one refused by the server
        down = Mailer(unreachable(), sessions, clock=clock)
        queue(down, sessions, subject=LINK_SUBJECT, text=LINK_BODY, secret=link)
        down.deliver_pending()  # the server is unreachable
        clock.advance(hours=1)
        down.deliver_pending()  # the link expired
    text = logged_text(caplog)
    assert "s***@example.com" in text and "t***@example.com" in text
    for secret in (MEMBER, OTHER, code, link, "確認コード:", "パスワードを再設定"):
        assert secret not in text


# === show instead of send: the demo database only =====================================================


def test_the_demo_mailbox_shows_the_mail_with_its_secret_on_stderr_and_keeps_no_secret(
    sessions, capsys, caplog
) -> None:
    with sessions.begin() as session:
        mark_demo_database(session)
    code = a_code()
    mailer = Mailer(MailSettings(), sessions)
    mail_id = queue(mailer, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)

    with caplog.at_level(logging.DEBUG):
        assert mailer.deliver_pending() == DeliveryReport(logged=[mail_id])

    shown = capsys.readouterr()
    assert shown.out == ""
    assert f"To: {MEMBER}" in shown.err and CODE_SUBJECT in shown.err and f"確認コード: {code}" in shown.err
    assert code not in logged_text(caplog) and MEMBER not in logged_text(caplog)
    mail = stored(sessions, mail_id)
    assert (mail.status, mail.secret) == ("logged", None) and code not in mail.body


def test_without_smtp_a_non_demo_database_raises_and_nothing_is_shown_sent_or_marked(sessions, capsys) -> None:
    code = a_code()
    mailer = Mailer(MailSettings(), sessions)
    mail_id = queue(mailer, sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)
    stale = queue(mailer, sessions, OTHER)
    with sessions.begin() as session:  # even a stale claim or an old secret is left alone
        session.execute(update(OutboxMail).where(OutboxMail.id == stale)
                        .values(status="sending", attempts=1, sent_at=utcnow() - timedelta(days=1),
                                created_at=utcnow() - timedelta(days=1)))

    with pytest.raises(MailNotConfiguredError) as raised:
        Mailer(MailSettings(), sessions, clock=lambda: utcnow() + timedelta(days=1)).deliver_pending()

    assert "JSUG_MAIL__SMTP_HOST" in str(raised.value) and "seed-demo" in str(raised.value)
    assert capsys.readouterr() == ("", "")
    mail = stored(sessions, mail_id)
    assert (mail.status, mail.attempts, mail.secret, mail.last_error) == ("pending", 0, code, None)
    assert (stored(sessions, stale).status, stored(sessions, stale).attempts) == ("sending", 1)


def test_mail_deliver_without_smtp_outside_the_demo_database_exits_2_and_marks_nothing(
    sessions, cli_env, capsys
) -> None:
    cli_env()
    code = a_code()
    mail_id = queue(Mailer(MailSettings(), sessions), sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)

    for argv in (["mail", "deliver"], ["mail", "deliver", "--every", "0.1"]):
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert "JSUG_MAIL__SMTP_HOST" in captured.err and "Traceback" not in captured.err
        assert code not in captured.out + captured.err and MEMBER not in captured.out + captured.err

    mail = stored(sessions, mail_id)
    assert (mail.status, mail.attempts, mail.secret) == ("pending", 0, code)


def test_mail_deliver_on_the_demo_database_shows_the_mails(sessions, cli_env, capsys) -> None:
    cli_env()
    with sessions.begin() as session:
        mark_demo_database(session)
    code = a_code()
    mail_id = queue(Mailer(MailSettings(), sessions), sessions, subject=CODE_SUBJECT, text=CODE_BODY, secret=code)

    assert main(["mail", "deliver"]) == 0

    captured = capsys.readouterr()
    assert "logged 1" in captured.out and code not in captured.out
    assert f"確認コード: {code}" in captured.err
    assert (stored(sessions, mail_id).status, stored(sessions, mail_id).secret) == ("logged", None)


def test_mail_deliver_with_smtp_sends_and_reports(sessions, cli_env, smtp_server: SmtpServer, capsys) -> None:
    cli_env(mail__smtp_host=SMTP_HOST, mail__smtp_port=str(smtp_server.port))
    queue(Mailer(MailSettings(), sessions), sessions)

    assert main(["mail", "deliver"]) == 0

    assert "sent 1, logged 0, failed 0, expired 0" in capsys.readouterr().out
    assert len(smtp_server.inbox.to(MEMBER)) == 1


def test_the_in_process_worker_says_once_that_mail_is_not_configured_and_keeps_going(
    sessions, caplog, capsys
) -> None:
    mail_id = queue(Mailer(MailSettings(), sessions), sessions)
    worker = MailWorker(Mailer(MailSettings(), sessions), interval=0.05)
    with caplog.at_level(logging.INFO, logger="bot.mail"):
        worker.start()
        try:
            time.sleep(0.5)  # about ten runs
            assert worker._thread is not None and worker._thread.is_alive()
            assert stored(sessions, mail_id).status == "pending"
            with sessions.begin() as session:  # the database becomes the demo: the same thread now shows it
                mark_demo_database(session)
            wait_for(lambda: stored(sessions, mail_id).status == "logged", 5)
        finally:
            worker.stop()
    complaints = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(complaints) == 1 and "no SMTP host is configured" in complaints[0].getMessage()
    assert f"To: {MEMBER}" in capsys.readouterr().err


def test_a_chat_turn_outside_the_demo_database_shows_nobody_elses_mail(
    database_url: str, sessions, cli_env, tmp_path: Path, capsys, caplog
) -> None:
    cli_env(secret_key=TEST_SECRET.get_secret_value())
    with sessions.begin() as session:  # the demo's members, but not the demo database
        import_members(session, DEMO_CSV)
    link = a_link()
    mail_id = queue(Mailer(MailSettings(), sessions), sessions, OTHER, LINK_SUBJECT, LINK_BODY, secret=link)
    script = tmp_path / "script.txt"
    script.write_text("こんにちは\nパスワードを忘れました\n", encoding="utf-8")

    with caplog.at_level(logging.DEBUG):
        assert main(["chat", "--script", str(script), "--json"]) == 0

    captured = capsys.readouterr()
    for secret in (link, OTHER, "token="):
        assert secret not in captured.out + captured.err + logged_text(caplog)
    mail = stored(sessions, mail_id)
    assert (mail.status, mail.attempts, mail.secret) == ("pending", 0, link)
