"""Outgoing mail through the outbox table: queued with the change that causes it, sent afterwards.

``queue`` adds the mail in the caller's transaction, so a mail exists if and only if the change
that caused it (a reset token, a one-time code) committed. ``deliver_pending`` sends the queued
mails later, in transactions of its own: an SMTP outage neither rolls back the member's change
nor loses the mail, which stays pending and is tried again up to ``max_attempts`` times.

Several workers may deliver at once. A worker claims one mail at a time with a conditional
``UPDATE ... WHERE status = 'pending'`` (only one claim can succeed, on SQLite and PostgreSQL
alike) and sends it only after that claim has committed, so no mail is sent twice by two workers.
While a mail is claimed its status is ``sending`` and ``sent_at`` holds when the claim was taken;
a claim far older than any send can take belongs to a worker that died, and is released.

Without an SMTP host (the embedded default) nothing is sent: each mail is marked ``logged`` and
written, body included, to the ``bot.mail`` logger, so the offline demo shows the codes and links a
member would have received. With a real host, the log names mails by id and masked address only.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from sqlalchemy import ColumnElement, and_, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import utc
from bot.settings import MailSettings
from bot.storage.db import rowcount
from bot.storage.models import OutboxMail, utcnow

log = logging.getLogger("bot.mail")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
FAILED = "failed"
LOGGED = "logged"

#: A claim older than this many SMTP timeouts belongs to a worker that stopped while sending.
#: One send is a dozen socket operations at most, each bounded by the timeout.
STALE_CLAIM_TIMEOUTS = 30
MAX_ERROR_CHARS = 500


#: Where a mail's secret (a one-time code, a reset link) goes in its body. The outbox keeps the
#: secret apart (``OutboxMail.secret``), puts it in only when sending, and forgets it once sent.
SECRET_PLACEHOLDER = "{{secret}}"


class InvalidMailError(ValueError):
    """A recipient or subject that cannot go into a mail header (e.g. one containing a line break)."""


@dataclass
class DeliveryReport:
    """What one ``deliver_pending`` run did, by outbox id.

    ``failed`` lists every mail whose attempt failed in this run; those that also reached
    ``max_attempts`` (status "failed", not tried again) are listed in ``gave_up`` as well.
    """

    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    logged: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)


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


class _MailRejected(Exception):
    """The server refused this one mail (sender, recipient or content); the connection is still usable."""


class _LinkDown(Exception):
    """The server cannot be reached or dropped the connection; no further mail this run."""


def mask_address(address: str) -> str:
    """An address fit for a log line: ``t***@example.com``."""
    local, at, domain = address.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


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


class _SmtpLink:
    """One SMTP connection for a delivery run, opened at the first mail and closed at the end."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> _SmtpLink:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        assert settings.smtp_host is not None
        client = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds)
        try:
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
        try:
            if self.client is None:
                self.client = self._connect()
            self.client.send_message(message, from_addr=sender, to_addrs=[recipient])
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            raise _MailRejected(_describe(exc)) from exc
        except (OSError, smtplib.SMTPException) as exc:  # refused, timed out, dropped, TLS or login failed
            self.close()
            raise _LinkDown(_describe(exc)) from exc

    def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


class Mailer:
    """Queues mails in the outbox and delivers them (see the module docstring)."""

    def __init__(
        self, settings: MailSettings, sessions: sessionmaker[Session], *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock

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

        An empty list means every one of them was sent (or, in the embedded default, logged).
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
        """Send (or, without an SMTP host, log) up to ``limit`` pending mails, oldest first."""
        report = DeliveryReport()
        self._release_stale_claims()
        candidates = self._candidates(limit)
        if self.settings.smtp_host is None:
            for mail_id in candidates:
                if self._log_instead_of_sending(mail_id):
                    report.logged.append(mail_id)
            return report
        sender = parseaddr(self.settings.sender)[1]
        with _SmtpLink(self.settings) as link:
            for mail_id in candidates:
                claim = self._claim(mail_id)
                if claim is None:
                    continue  # another worker took it, or it is no longer pending
                try:
                    link.send(self._message(claim, sender), sender, claim.recipient)
                except (_MailRejected, _LinkDown) as exc:
                    gave_up = self._record_failure(claim, str(exc))
                    report.failed.append(claim.id)
                    if gave_up:
                        report.gave_up.append(claim.id)
                    log.warning(
                        "mail %d to %s: attempt %d failed (%s)",
                        claim.id, mask_address(claim.recipient), claim.attempts, type(exc.__cause__).__name__,
                    )
                    if isinstance(exc, _LinkDown):
                        break  # the server is unreachable: the rest stay pending, untouched
                    continue
                self._record_sent(claim)
                report.sent.append(claim.id)
                log.info("mail %d sent to %s", claim.id, mask_address(claim.recipient))
        return report

    def _now(self) -> datetime:
        return utc(self.clock())

    def _candidates(self, limit: int) -> list[int]:
        query = (
            select(OutboxMail.id)
            .where(OutboxMail.status == PENDING, OutboxMail.attempts < self.settings.max_attempts)
            .order_by(OutboxMail.created_at, OutboxMail.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return list(session.scalars(query))

    def _claim(self, mail_id: int) -> _Claim | None:
        """Take the mail for this worker; None when another worker was first.

        The conditional UPDATE is the lock: PostgreSQL makes a concurrent claimer wait for this
        transaction and then re-checks ``status``, SQLite lets one writer at a time in. The attempt
        is counted here, so the count also tells a late worker that its claim was released.
        """
        with self.sessions.begin() as session:
            claimed = rowcount(session.execute(
                update(OutboxMail)
                .where(
                    OutboxMail.id == mail_id,
                    OutboxMail.status == PENDING,
                    OutboxMail.attempts < self.settings.max_attempts,
                )
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
                .values(status=SENT, sent_at=self._now(), secret=None)
                .execution_options(synchronize_session=False)
            )

    def _record_failure(self, claim: _Claim, error: str) -> bool:
        """Back to pending for a later run, or "failed" after the last attempt; True if it gave up."""
        gave_up = claim.attempts >= self.settings.max_attempts
        with self.sessions.begin() as session:
            session.execute(
                update(OutboxMail)
                .where(_still_ours(claim))
                .values(status=FAILED if gave_up else PENDING, last_error=error, sent_at=None)
                .execution_options(synchronize_session=False)
            )
        return gave_up

    def _release_stale_claims(self) -> None:
        """Give back mails claimed by a worker that stopped mid-send (counted as a failed attempt)."""
        cutoff = self._now() - timedelta(seconds=STALE_CLAIM_TIMEOUTS * self.settings.timeout_seconds)
        with self.sessions.begin() as session:
            released = rowcount(session.execute(
                update(OutboxMail)
                .where(OutboxMail.status == SENDING, OutboxMail.sent_at < cutoff)
                .values(
                    status=case((OutboxMail.attempts >= self.settings.max_attempts, FAILED), else_=PENDING),
                    last_error="interrupted: the worker stopped while sending; the mail may or may not have gone out",
                    sent_at=None,
                )
                .execution_options(synchronize_session=False)
            ))
        if released:
            log.warning("released %d mail(s) left in 'sending' by a stopped worker", released)

    def _log_instead_of_sending(self, mail_id: int) -> bool:
        """The embedded default: mark the mail logged and write it, body included, to the log."""
        with self.sessions.begin() as session:
            claimed = rowcount(session.execute(
                update(OutboxMail)
                .where(OutboxMail.id == mail_id, OutboxMail.status == PENDING)
                .values(status=LOGGED, attempts=OutboxMail.attempts + 1, sent_at=self._now())
                .execution_options(synchronize_session=False)
            ))
            if claimed != 1:
                return False
            row = session.execute(
                select(OutboxMail.recipient, OutboxMail.subject, OutboxMail.body).where(OutboxMail.id == mail_id)
            ).one()
        # On purpose, and only here: without SMTP the log is how the demo's user reads the mail.
        log.info(
            "mail %d not sent (no SMTP host configured); it reads:\nTo: %s\nSubject: %s\n\n%s",
            mail_id, row.recipient, row.subject, row.body,
        )
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


def _still_ours(claim: _Claim) -> ColumnElement[bool]:
    """The row as this worker claimed it: not released and re-claimed by another in between."""
    return and_(OutboxMail.id == claim.id, OutboxMail.status == SENDING, OutboxMail.attempts == claim.attempts)


def _has_line_break(value: str) -> bool:
    return any(char in value for char in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
