"""Outgoing mail through the outbox table: queued with the change that causes it, sent afterwards.

``queue`` adds the mail in the caller's transaction, so a mail exists if and only if the change
that caused it (a reset token, a one-time code) committed. ``deliver_pending`` sends the queued
mails later, in transactions of its own: an SMTP outage neither rolls back the member's change
nor loses the mail, which stays pending and is tried again, backing off (``retry_delay``: 1 min
doubling to 4 h, over more than a day with the defaults) until ``max_attempts``; then it is
"failed", listed by ``jsug-bot mail list`` and requeued by ``jsug-bot mail retry``.

Several workers may deliver at once. A worker claims one mail at a time with a conditional
``UPDATE ... WHERE status = 'pending'`` (only one claim can succeed, on SQLite and PostgreSQL
alike) and sends it only after that claim has committed, so no mail is sent twice by two workers.
While a mail is claimed its status is ``sending`` and ``sent_at`` holds when the claim was taken;
a claim far older than any send can take belongs to a worker that died, and is released. One
mail's whole SMTP conversation is bounded by ``send_deadline_seconds`` (a watchdog cuts the socket),
so a server that trickles one byte at a time cannot hold a worker.

A mail's secret (a one-time code, a reset link) is stored apart from its body and put in only
when sending; it is purged once the mail is sent, and also once it has expired unsent (such a mail
is useless: it fails as "expired before it could be sent").

Without an SMTP host, mails are shown in the demo mailbox (stderr, never the log) and marked
``logged`` only on the demo database that ``db seed-demo`` made; on any other database delivery
raises ``MailNotConfiguredError`` and touches nothing, so a misconfigured worker can neither print
members' links to a terminal nor mark their mails as done. Log lines name mails by id and masked
address only, never a body, a code or a link.
"""

from __future__ import annotations

import logging
import random
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any

from sqlalchemy import ColumnElement, and_, case, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot import demo_mailbox
from bot.clock import utc
from bot.errors import ConfigurationError
from bot.settings import MailSettings, Settings
from bot.storage import audit
from bot.storage.db import rowcount
from bot.storage.members import is_demo_database
from bot.storage.models import OutboxMail, utcnow

log = logging.getLogger("bot.mail")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
LOGGED = "logged"
#: What ``jsug-bot mail list --status`` accepts.
LIST_STATUSES = (FAILED, PENDING, "all")

#: A claim older than this many send deadlines belongs to a worker that stopped while sending
#: (the SMTP conversation is cut at one deadline; the rest is room for the database).
STALE_CLAIM_DEADLINES = 5
MAX_ERROR_CHARS = 500
#: A retry waits up to this share longer than its nominal delay, so that mails that failed together
#: (an outage) do not all come back in the same second. Only ever longer: the schedule's span holds.
RETRY_JITTER = 0.2
EXPIRED_ERROR = "expired before it could be sent"
#: How long a mail's secret is worth keeping unless told otherwise: the longer of the default
#: lifetimes of a one-time code and a reset link (``Mailer.for_settings`` uses the configured ones).
DEFAULT_SECRET_LIFETIME = timedelta(minutes=max(
    int(Settings.model_fields["code_minutes"].default), int(Settings.model_fields["reset_token_minutes"].default)
))


#: Where a mail's secret (a one-time code, a reset link) goes in its body. The outbox keeps the
#: secret apart (``OutboxMail.secret``), puts it in only when sending, and forgets it once sent.
SECRET_PLACEHOLDER = "{{secret}}"

_ADDRESS = re.compile(r"[^\s<>@\"'(),;:]+@[^\s<>@\"'(),;:]+")


class InvalidMailError(ValueError):
    """A recipient or subject that cannot go into a mail header (e.g. one containing a line break)."""


class MailNotConfiguredError(ConfigurationError):
    """No SMTP host, on a database other than the demo one: nothing was sent and nothing marked.

    Logging mails instead of sending them is for the offline demo only; anywhere else it would show
    members' codes and links to whoever runs the command, and mark their mails as done.
    """

    def __init__(self) -> None:
        super().__init__(
            "mail cannot be delivered: no SMTP host is configured (set JSUG_MAIL__SMTP_HOST, and as needed "
            "JSUG_MAIL__SMTP_PORT, JSUG_MAIL__SMTP_TLS, JSUG_MAIL__SMTP_USER, JSUG_MAIL__SMTP_PASSWORD). "
            "Mails are only shown instead of sent on the demo database made by `jsug-bot db seed-demo`. "
            "Nothing was sent and every mail is still pending."
        )


@dataclass
class DeliveryReport:
    """What one ``deliver_pending`` run did, by outbox id.

    ``failed`` lists every mail whose attempt failed in this run; those that also reached
    ``max_attempts`` (status "failed", not tried again) are listed in ``gave_up`` as well.
    ``expired``: unsent mails whose code or link expired in the meantime, failed and purged.
    """

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    logged: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)


@dataclass
class RequeueReport:
    """What ``requeue`` did: the mails due again now, and those it left alone with the reason."""

    requeued: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Claim:
    id: int
    recipient: str
    subject: str
    body: str
    attempts: int
    secret: str | None = None

    @property
    def text(self) -> str:
        """The body as the recipient reads it, the secret put in."""
        return self.body.replace(SECRET_PLACEHOLDER, self.secret) if self.secret is not None else self.body

    @property
    def lost_its_secret(self) -> bool:
        """A mail whose code or link was purged (expired): sending it would mail a placeholder."""
        return self.secret is None and SECRET_PLACEHOLDER in self.body


class _MailRejected(Exception):
    """The server refused this one mail (sender, recipient or content); the connection is still usable."""


class _LinkDown(Exception):
    """The server cannot be reached, dropped the connection or overran the deadline; no further mail this run."""


def mask_address(address: str) -> str:
    """An address fit for a log line: ``t***@example.com``."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_addresses(text: str) -> str:
    """``text`` with every address in it masked (an SMTP error may quote the recipient)."""
    return _ADDRESS.sub(lambda found: mask_address(found.group(0)), text)


def retry_delay(attempts: int, settings: MailSettings, jitter: float = 0.0) -> timedelta:
    """How long a mail waits after its ``attempts``-th failed attempt.

    ``retry_first_seconds`` doubled per attempt, capped at ``retry_max_seconds``: a short outage is
    bridged within minutes, a long one costs few attempts. ``jitter`` (0 to 1, scaled by
    ``RETRY_JITTER``) only lengthens the wait, so the documented span is a lower bound.
    """
    exponent = min(max(attempts - 1, 0), 40)  # 2**40 minutes is far past any cap; no float overflow
    seconds = min(settings.retry_first_seconds * 2**exponent, settings.retry_max_seconds)
    return timedelta(seconds=seconds * (1 + RETRY_JITTER * jitter))


def retry_schedule(settings: MailSettings) -> list[timedelta]:
    """The nominal waits between a mail's attempts (no jitter); their sum is the shortest span."""
    return [retry_delay(attempts, settings) for attempts in range(1, settings.max_attempts)]


def _describe(exc: BaseException) -> str:
    """An error for ``last_error``: its class and the server's words, never the credentials."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = f"{type(exc).__name__}: {exc.smtp_code} {_text(exc.smtp_error)}"
    elif isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = sorted({f"{code} {_text(message)}" for code, message in exc.recipients.values()})
        text = f"SMTPRecipientsRefused: {'; '.join(replies)}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class _Client(smtplib.SMTP):
    """smtplib's client, handing its socket to the link the moment it exists: the greeting is read
    inside ``connect``, and a server that trickles it must be cut there too."""

    def __init__(self, on_socket: Callable[[socket.socket], None], timeout: float) -> None:
        self._on_socket = on_socket
        super().__init__(timeout=timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock: socket.socket = super()._get_socket(host, port, timeout)  # type: ignore[misc]
        self._on_socket(sock)
        return sock


class _SmtpLink:
    """One SMTP connection for a delivery run, opened at the first mail and closed at the end.

    Each mail's conversation (connecting if need be, MAIL, RCPT, DATA) and the closing QUIT run
    under a deadline: a watchdog timer shuts the socket down when it passes, which wakes the
    blocked read at once. A socket timeout alone cannot do this: it bounds each read, and a server
    that sends one byte every few seconds never lets a read time out.
    """

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self.client: _Client | None = None
        self._lock = threading.Lock()
        self._raw: socket.socket | None = None
        self._overran = False

    def __enter__(self) -> _SmtpLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @contextmanager
    def _deadline(self) -> Iterator[None]:
        with self._lock:
            self._overran = False
        timer = threading.Timer(self.settings.send_deadline_seconds, self._cut)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _cut(self) -> None:
        """The watchdog: the conversation overran its deadline, so end it from outside."""
        with self._lock:
            self._overran = True
            sockets = [self._raw, self.client.sock if self.client is not None else None]
        for sock in sockets:
            _shut(sock)

    def _watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._raw = sock
            overran = self._overran
        if overran:  # the deadline passed while the TCP connection was being set up
            _shut(sock)

    def _connect(self) -> _Client:
        settings = self.settings
        assert settings.smtp_host is not None
        client = _Client(self._watch, timeout=min(settings.timeout_seconds, settings.send_deadline_seconds))
        try:
            client.connect(settings.smtp_host, settings.smtp_port)
            client.ehlo()
            if settings.smtp_tls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.smtp_user:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                client.login(settings.smtp_user, password)
        except BaseException:
            client.close()
            raise
        return client

    def send(self, message: EmailMessage, sender: str, recipient: str) -> None:
        with self._deadline():
            try:
                if self.client is None:
                    self.client = self._connect()
                self.client.send_message(message, from_addr=sender, to_addrs=[recipient])
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                if not self._overran:
                    raise _MailRejected(_describe(exc)) from exc
                self._drop()
                raise _LinkDown(self._overrun_error()) from exc
            except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, dropped, TLS or login failed
                self._drop()
                raise _LinkDown(self._overrun_error() if self._overran else _describe(exc)) from exc

    def _overrun_error(self) -> str:
        return f"TimeoutError: the SMTP conversation took longer than {self.settings.send_deadline_seconds:g} s"

    def _drop(self) -> None:
        """Forget a connection that failed, without a QUIT it would not answer."""
        client, self.client = self.client, None
        if client is not None:
            client.close()

    def close(self) -> None:
        if self.client is None:
            return
        with self._deadline():
            client, self.client = self.client, None
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()


def _shut(sock: socket.socket | None) -> None:
    if sock is None:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, or detached by STARTTLS (its TLS socket is shut instead)


class Mailer:
    """Queues mails in the outbox and delivers them (see the module docstring)."""

    def __init__(
        self, settings: MailSettings, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow,
        secret_lifetime: timedelta = DEFAULT_SECRET_LIFETIME, jitter: Callable[[], float] = random.random,
        mailbox: Callable[[int, str, str, str], None] = demo_mailbox.show,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock
        self.secret_lifetime = secret_lifetime
        self.jitter = jitter
        self.mailbox = mailbox

    @classmethod
    def for_settings(cls, settings: Settings, sessions: sessionmaker[Session], **options: Any) -> Mailer:
        """A mailer whose secrets live as long as the configured codes and reset links, no longer."""
        lifetime = timedelta(minutes=max(settings.code_minutes, settings.reset_token_minutes))
        return cls(settings.mail, sessions, secret_lifetime=lifetime, **options)

    # -- queueing, in the caller's transaction -------------------------------------------------

    def queue(self, session: Session, recipient: str, subject: str, body: str, *,
              secret: str | None = None) -> OutboxMail:
        """Add a pending mail to ``session`` (flushed, so it has an id); it is sent once committed.

        ``secret`` (a code or a link) replaces ``SECRET_PLACEHOLDER`` in ``body`` at send time only,
        so the stored body never holds it and the stored secret is purged once the mail is sent.
        """
        if (secret is not None) != (SECRET_PLACEHOLDER in body):
            raise InvalidMailError(f"a secret needs the placeholder {SECRET_PLACEHOLDER} in the body, and only then")
        recipient = recipient.strip()
        _name, address = parseaddr(recipient)
        if not address or "@" not in address or len(recipient) > 320 or _has_line_break(recipient):
            raise InvalidMailError("the recipient is not a single e-mail address")
        if _has_line_break(subject) or len(subject) > 300:
            raise InvalidMailError("the subject must be one line of at most 300 characters")
        mail = OutboxMail(recipient=recipient, subject=subject, body=body, status=PENDING, attempts=0, secret=secret)
        session.add(mail)
        session.flush()
        return mail

    def pending_for(self, session: Session, outbox_ids: Iterable[int]) -> list[OutboxMail]:
        """The mails among ``outbox_ids`` that have not gone out (pending, being sent, or failed).

        An empty list means every one of them was sent (or, on the demo database, shown).
        """
        ids = list(outbox_ids)
        if not ids:
            return []
        query = (
            select(OutboxMail)
            .where(OutboxMail.id.in_(ids), OutboxMail.status.not_in((SENT, LOGGED)))
            .order_by(OutboxMail.id)
        )
        return list(session.scalars(query))

    # -- delivery, in transactions of its own --------------------------------------------------

    def deliver_pending(self, limit: int = 50) -> DeliveryReport:
        """Send up to ``limit`` due mails, oldest first (on the demo database without SMTP: show them).

        Raises ``MailNotConfiguredError``, before touching any mail, when there is no SMTP host and
        this is not the demo database.
        """
        demo = self.settings.smtp_host is None
        if demo and not self._on_demo_database():
            raise MailNotConfiguredError()
        report = DeliveryReport()
        self._release_stale_claims()
        report.expired = self._expire_secrets()
        candidates = self._candidates(limit)
        if demo:
            for mail_id in candidates:
                if self._show_in_demo_mailbox(mail_id):
                    report.logged.append(mail_id)
            return report
        sender = parseaddr(self.settings.sender)[1]
        with _SmtpLink(self.settings) as link:
            for mail_id in candidates:
                claim = self._claim(mail_id)
                if claim is None:
                    continue  # another worker took it, or it is no longer due
                if claim.lost_its_secret:
                    self._record_expired(claim)
                    report.expired.append(claim.id)
                    continue
                try:
                    link.send(self._message(claim, sender), sender, claim.recipient)
                except (_MailRejected, _LinkDown) as exc:
                    retry_at = self._record_failure(claim, str(exc))
                    report.failed.append(claim.id)
                    if retry_at is None:
                        report.gave_up.append(claim.id)
                    log.warning(
                        "mail %d to %s: attempt %d of %d failed (%s); %s",
                        claim.id, mask_address(claim.recipient), claim.attempts, self.settings.max_attempts,
                        str(exc).partition(":")[0],  # the error's class only: the server's words may quote addresses
                        "given up" if retry_at is None else f"next attempt at {retry_at:%Y-%m-%d %H:%M:%S} UTC",
                    )
                    if isinstance(exc, _LinkDown):
                        break  # the server is unreachable: one attempt spent, the rest stay untouched
                    continue
                self._record_sent(claim)
                report.sent.append(claim.id)
                log.info("mail %d sent to %s", claim.id, mask_address(claim.recipient))
        return report

    def _now(self) -> datetime:
        return utc(self.clock())

    def _on_demo_database(self) -> bool:
        with self.sessions() as session:
            return is_demo_database(session)

    def _due(self) -> ColumnElement[bool]:
        """Pending, with attempts left, and not waiting out a backoff."""
        return and_(
            OutboxMail.status == PENDING,
            OutboxMail.attempts < self.settings.max_attempts,
            or_(OutboxMail.next_attempt_at.is_(None), OutboxMail.next_attempt_at <= self._now()),
        )

    def _candidates(self, limit: int) -> list[int]:
        query = select(OutboxMail.id).where(self._due()).order_by(OutboxMail.created_at, OutboxMail.id).limit(limit)
        with self.sessions() as session:
            return list(session.scalars(query))

    def _claim(self, mail_id: int) -> _Claim | None:
        """Take the mail for this worker; None when another worker was first.

        The conditional UPDATE is the lock: PostgreSQL makes a concurrent claimer wait for this
        transaction and then re-checks the condition, SQLite lets one writer at a time in. The
        attempt is counted here, so the count also tells a late worker that its claim was released.
        """
        with self.sessions.begin() as session:
            claimed = rowcount(session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail_id, self._due())
                .values(status=SENDING, attempts=OutboxMail.attempts + 1, sent_at=self._now())
                .execution_options(synchronize_session=False)
            ))
            if claimed != 1:
                return None
            row = session.execute(
                select(OutboxMail.recipient, OutboxMail.subject, OutboxMail.body, OutboxMail.attempts,
                       OutboxMail.secret).where(OutboxMail.id == mail_id)
            ).one()
        return _Claim(mail_id, row.recipient, row.subject, row.body, row.attempts, row.secret)

    def _record_sent(self, claim: _Claim) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(OutboxMail)
                .where(_still_ours(claim))
                .values(status=SENT, sent_at=self._now(), secret=None, next_attempt_at=None)
                .execution_options(synchronize_session=False)
            )

    def _record_failure(self, claim: _Claim, error: str) -> datetime | None:
        """Back to pending until its next attempt, or "failed" after the last; the next attempt's time,
        None if it gave up."""
        gave_up = claim.attempts >= self.settings.max_attempts
        retry_at = None if gave_up else self._now() + retry_delay(claim.attempts, self.settings, self.jitter())
        with self.sessions.begin() as session:
            session.execute(
                update(OutboxMail)
                .where(_still_ours(claim))
                .values(status=FAILED if gave_up else PENDING, last_error=error, sent_at=None,
                        next_attempt_at=retry_at)
                .execution_options(synchronize_session=False)
            )
        return retry_at

    def _record_expired(self, claim: _Claim) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(OutboxMail)
                .where(_still_ours(claim))
                .values(status=FAILED, last_error=EXPIRED_ERROR, sent_at=None, next_attempt_at=None, secret=None)
                .execution_options(synchronize_session=False)
            )

    def _expire_secrets(self) -> list[int]:
        """Purge the secrets of unsent mails older than a secret lives; pending ones fail for good.

        A code or link that expired opens nothing, and a mail carrying one would only confuse the
        member; keeping it would keep a secret in the database for nothing. Mails being sent right
        now are left to their worker (a released claim is purged by the next run).
        """
        cutoff = self._now() - self.secret_lifetime
        old = and_(OutboxMail.secret.is_not(None), OutboxMail.created_at < cutoff)
        with self.sessions.begin() as session:
            expired = list(session.scalars(select(OutboxMail.id).where(old, OutboxMail.status == PENDING)))
            if expired:
                session.execute(
                    update(OutboxMail)
                    .where(OutboxMail.id.in_(expired), OutboxMail.status == PENDING)
                    .values(status=FAILED, last_error=EXPIRED_ERROR, secret=None, next_attempt_at=None)
                    .execution_options(synchronize_session=False)
                )
            session.execute(
                update(OutboxMail)
                .where(old, OutboxMail.status == FAILED)
                .values(secret=None)
                .execution_options(synchronize_session=False)
            )
        if expired:
            log.warning("%d unsent mail(s) expired before they could be sent; their codes and links were purged",
                        len(expired))
        return expired

    def _release_stale_claims(self) -> None:
        """Give back mails claimed by a worker that stopped mid-send (counted as a failed attempt)."""
        cutoff = self._now() - timedelta(seconds=STALE_CLAIM_DEADLINES * self.settings.send_deadline_seconds)
        with self.sessions.begin() as session:
            released = rowcount(session.execute(
                update(OutboxMail)
                .where(OutboxMail.status == SENDING, OutboxMail.sent_at < cutoff)
                .values(
                    status=case((OutboxMail.attempts >= self.settings.max_attempts, FAILED), else_=PENDING),
                    last_error="interrupted: the worker stopped while sending; the mail may or may not have gone out",
                    sent_at=None,
                    next_attempt_at=None,
                )
                .execution_options(synchronize_session=False)
            ))
        if released:
            log.warning("released %d mail(s) left in 'sending' by a stopped worker", released)

    def _show_in_demo_mailbox(self, mail_id: int) -> bool:
        """The demo database without SMTP: mark the mail logged (its secret purged) and show it.

        Read and marked in one transaction, the UPDATE conditional on "pending": when two workers
        race, only the one whose UPDATE matched shows the mail.
        """
        with self.sessions.begin() as session:
            row = session.execute(
                select(OutboxMail.recipient, OutboxMail.subject, OutboxMail.body, OutboxMail.secret)
                .where(OutboxMail.id == mail_id)
            ).one_or_none()
            if row is None:
                return False
            claimed = rowcount(session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail_id, self._due())
                .values(status=LOGGED, attempts=OutboxMail.attempts + 1, sent_at=self._now(), secret=None,
                        next_attempt_at=None)
                .execution_options(synchronize_session=False)
            ))
            if claimed != 1:
                return False
        claim = _Claim(mail_id, row.recipient, row.subject, row.body, 1, row.secret)
        self.mailbox(mail_id, claim.recipient, claim.subject, claim.text)
        log.info("mail %d to %s shown in the demo mailbox (no SMTP host on the demo database)",
                 mail_id, mask_address(claim.recipient))
        return True

    def _message(self, claim: _Claim, sender: str) -> EmailMessage:
        """The mail as sent; a row that cannot make one (written around ``queue``) is rejected."""
        message = EmailMessage()
        try:
            message["From"] = self.settings.sender
            message["To"] = claim.recipient
            message["Subject"] = claim.subject
            message["Date"] = format_datetime(self._now())
            message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
            message.set_content(claim.text)
        except ValueError as exc:
            raise _MailRejected(_describe(exc)) from exc
        return message


# -- the secretariat's view of the outbox ----------------------------------------------------------


def list_outbox(session: Session, status: str = FAILED) -> list[dict[str, Any]]:
    """The outbox for ``jsug-bot mail list``: ``failed``, ``pending`` (waiting or being sent) or ``all``.

    Recipients and any address in an error are masked; neither body nor secret is ever included,
    so the listing can be pasted into a ticket.
    """
    if status not in LIST_STATUSES:
        raise ValueError(f"status must be one of {', '.join(LIST_STATUSES)}")
    query = select(OutboxMail).order_by(OutboxMail.created_at, OutboxMail.id)
    if status == PENDING:
        query = query.where(OutboxMail.status.in_((PENDING, SENDING)))
    elif status == FAILED:
        query = query.where(OutboxMail.status == FAILED)
    return [
        {
            "id": mail.id,
            "status": mail.status,
            "recipient": mask_address(mail.recipient),
            "subject": mail.subject,
            "attempts": mail.attempts,
            "last_error": mask_addresses(mail.last_error) if mail.last_error else None,
            "created_at": utc(mail.created_at).isoformat(),
            "next_attempt_at": _next_attempt(mail),
        }
        for mail in session.scalars(query)
    ]


def _next_attempt(mail: OutboxMail) -> str | None:
    """When the mail is tried next: its backoff's end, "now" if due, None if it will not be."""
    if mail.status != PENDING:
        return None
    return utc(mail.next_attempt_at).isoformat() if mail.next_attempt_at is not None else "now"


def requeue(session: Session, ids: Iterable[int], *, failed: bool, actor: str, now: datetime,
            channel: str = "cli") -> RequeueReport:
    """Make mails due now with their attempts reset, each with an audit row (``jsug-bot mail retry``).

    ``ids``: these mails, pending or failed; without ids, every failed mail (``failed``) or every
    pending one waiting out a backoff. Mails whose code or link expired are left failed: the member
    has to ask again, as a requeued mail would carry nothing usable.
    """
    wanted = sorted(set(ids))
    report = RequeueReport()
    query = select(OutboxMail).order_by(OutboxMail.id)
    if wanted:
        query = query.where(OutboxMail.id.in_(wanted))
    elif failed:
        query = query.where(OutboxMail.status == FAILED)
    else:
        query = query.where(OutboxMail.status == PENDING, OutboxMail.next_attempt_at.is_not(None))
    found = {mail.id: mail for mail in session.scalars(query.with_for_update())}
    for mail_id in wanted:
        if mail_id not in found:
            report.skipped[mail_id] = "no such mail"
    moment = utc(now)
    for mail in found.values():
        if mail.status not in (PENDING, FAILED):
            report.skipped[mail.id] = f"it is {mail.status}"
            continue
        if mail.secret is None and SECRET_PLACEHOLDER in mail.body:
            report.skipped[mail.id] = "its code or link expired; the member has to ask again"
            continue
        before = {"status": mail.status, "attempts": mail.attempts,
                  "next_attempt_at": utc(mail.next_attempt_at).isoformat() if mail.next_attempt_at else None}
        mail.status, mail.attempts, mail.next_attempt_at = PENDING, 0, moment
        audit.record(session, actor=actor, channel=channel, action="mail_requeued", entity="outbox",
                     entity_id=mail.id, before=before,
                     after={"status": PENDING, "attempts": 0, "next_attempt_at": moment.isoformat()})
        report.requeued.append(mail.id)
    session.flush()
    return report


def _still_ours(claim: _Claim) -> ColumnElement[bool]:
    """The row as this worker claimed it: not released and re-claimed by another in between."""
    return and_(OutboxMail.id == claim.id, OutboxMail.status == SENDING, OutboxMail.attempts == claim.attempts)


def _has_line_break(value: str) -> bool:
    return any(char in value for char in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
