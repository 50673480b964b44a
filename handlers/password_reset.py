"""The password_reset action: mail a one-time reset link to every account of an address.

Anyone may ask, so nothing here tells the asker whether the address is registered: the reply,
the return value and the writes that can be observed from outside are the same either way, and
the hourly limit counts requests for unregistered addresses too. Each account of the address gets
its own mail with its login ID and a single-use link; only the link token's SHA-256 is stored, and
the outbox keeps the link apart from the body until it is sent (``Mailer.queue(secret=...)``).

``request_reset``, ``check_token`` and ``reset_password`` are also what the web reset page
calls; ``PasswordResetHandler`` is the conversation that leads to ``request_reset``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.dialogue import replies
from bot.dialogue.flow import FlowContext, Step
from bot.identity import (
    ADDRESS_PREFIX,
    InvalidEmailError,
    email_hash,
    lock_address,
    members_by_email,
    parse_email,
    record_attempt,
    same_work_as_queueing,
    server_secret,
)
from bot.mail import SECRET_PLACEHOLDER, Mailer
from bot.messages import message
from bot.passwords import PasswordPolicyError, check_password_policy, hash_password
from bot.settings import Settings
from bot.storage import audit
from bot.storage.db import rowcount
from bot.storage.models import Member, PasswordResetRequest, PasswordResetToken

log = logging.getLogger("handlers.password_reset")

ACTIVE = "active"
MAX_TOKEN_CHARS = 200
MAX_EMAIL_TRIES = 3

__all__ = [
    "PasswordPolicyError",  # raised by reset_password; defined with the policy in bot.passwords
    "PasswordResetHandler",
    "TokenError",
    "check_token",
    "request_reset",
    "reset_password",
    "token_hash",
]


class TokenError(Exception):
    """A reset link that cannot be used; ``reason``: "unknown" (also forged), "expired" or "used"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def request_reset(
    session: Session, mailer: Mailer, settings: Settings, email: str, channel: str, actor: str, now: datetime
) -> None:
    """Queue a reset mail for each active account of ``email``, in the caller's transaction.

    Returns None whether or not the address is registered, and whether or not the hourly limit
    (``settings.reset_requests_per_hour`` per address) has been reached; over the limit nothing
    is mailed. The limit holds when requests arrive at once (``lock_address``: the count and the
    new request row are one step per address). Every request is in the audit log, on each account
    of the address or on the bare address (``record_attempt``: its keyed hash, never a link). The
    work is alike for a registered and an unregistered address, so the turn's time tells nothing.
    Raises ``InvalidEmailError`` for text that is not an address (ask again first).
    """
    address = parse_email(email)
    if address is None:
        raise InvalidEmailError("not an e-mail address")
    now = utc(now)
    address_hash = email_hash(address, server_secret(settings))
    lock_address(session, address_hash)
    recent = session.scalar(
        select(func.count(PasswordResetRequest.id)).where(
            PasswordResetRequest.email_hash == address_hash,
            PasswordResetRequest.created_at > now - timedelta(hours=1),
        )
    )
    session.add(PasswordResetRequest(email_hash=address_hash, created_at=now))
    members = members_by_email(session, address)
    if recent is not None and recent >= settings.reset_requests_per_hour:
        record_attempt(session, actor=actor, channel=channel, action="password_reset_requested", members=members,
                       address_key=address_hash, limited=True)
        log.info("password reset for address %s… not sent: hourly limit reached", address_hash[:ADDRESS_PREFIX])
        return
    expires_at = now + timedelta(minutes=settings.reset_token_minutes)
    base_url = settings.public_url.rstrip("/")
    for member in members:
        token = secrets.token_urlsafe(32)
        row = PasswordResetToken(
            member_id=member.id, token_hash=token_hash(token), email_hash=address_hash, expires_at=expires_at,
            created_at=now,
        )
        session.add(row)  # written by the queue's flush below: one flush per account, not two
        mail = mailer.queue(
            session,
            member.email,
            message("password_reset_mail_subject"),
            message(
                "password_reset_mail_body",
                name=member.name,
                login_id=member.login_id,
                minutes=settings.reset_token_minutes,
                link=SECRET_PLACEHOLDER,
            ),
            secret=f"{base_url}/reset-password?token={token}",
        )
        record_attempt(session, actor=actor, channel=channel, action="password_reset_requested", members=[member],
                       address_key=address_hash, reset_token_id=row.id, outbox_id=mail.id,
                       expires_at=expires_at.isoformat())
        log.info("password reset token %d for member %d queued as mail %d", row.id, member.id, mail.id)
    if not members:
        # What one account's mail costs the turn, without writing one: a token and its hash, a
        # statement each for the token and the mail, the audit entry.
        token_hash(secrets.token_urlsafe(32))
        session.execute(select(PasswordResetToken.id).where(PasswordResetToken.id == 0))
        same_work_as_queueing(session)
        record_attempt(session, actor=actor, channel=channel, action="password_reset_requested", members=[],
                       address_key=address_hash)
        log.info("password reset for address %s…: no active account", address_hash[:ADDRESS_PREFIX])


def _usable_token(session: Session, token: str, now: datetime, *, lock: bool) -> tuple[PasswordResetToken, Member]:
    now = utc(now)
    token = (token or "").strip()
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise TokenError("unknown")
    query = select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash(token))
    row = session.scalars(query.with_for_update() if lock else query).first()
    if row is None:
        raise TokenError("unknown")
    if row.used_at is not None:
        raise TokenError("used")
    if utc(row.expires_at) <= now:
        raise TokenError("expired")
    member = session.get(Member, row.member_id)
    if member is None or member.status != ACTIVE:
        raise TokenError("unknown")
    return row, member


def check_token(session: Session, token: str, now: datetime) -> Member:
    """The member a reset link belongs to, if it can still be used; else ``TokenError``."""
    return _usable_token(session, token, now, lock=False)[1]


def reset_password(session: Session, token: str, new_password: str, channel: str, now: datetime) -> Member:
    """Set the member's new password with a reset link; the link and the member's others die with it.

    The policy (``bot.passwords.check_password_policy``, with the member's login ID) is checked
    before anything is written, so a refused password leaves the link usable for a second try.
    The new hash is argon2id, whatever the member had before. Raises ``TokenError`` or
    ``PasswordPolicyError``.
    """
    now = utc(now)
    row, member = _usable_token(session, token, now, lock=True)
    check_password_policy(new_password, member.login_id)
    claimed = rowcount(session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.id == row.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ))
    if claimed != 1:
        raise TokenError("used")  # a concurrent reset with the same link got there first
    session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.member_id == member.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    session.expire(row)
    had_password = member.password_hash is not None
    member.password_hash = hash_password(new_password)
    audit.record(
        session, actor=f"member:{member.id}", channel=channel, action="password_changed", entity="member",
        entity_id=member.id, before={"password_set": had_password},
        after={"password_set": True, "reset_token_id": row.id},
    )
    session.flush()
    log.info("password of member %d changed with reset token %d", member.id, row.id)
    return member


class PasswordResetHandler:
    """Ask for the address (unless already given), then request the reset; one reply for all cases."""

    name = "password_reset"
    needs_identity = False
    acts_for_member = False
    """Anyone may ask, for any address: a verified member's lapsed identity is no reason to ask again."""

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        given = slots.get("email")
        if isinstance(given, str) and given.strip():
            return self._take(ctx, given, tries=0)
        return Step([replies.text(message("password_reset_ask_email"))], state={"step": "email", "tries": 0})

    def resume(self, ctx: FlowContext, state: dict[str, Any], text: str | None, action: str | None) -> Step:
        return self._take(ctx, text, tries=int(state.get("tries", 0)))

    def _take(self, ctx: FlowContext, text: str | None, tries: int) -> Step:
        address = parse_email(text)
        if address is None:
            tries += 1
            if tries >= MAX_EMAIL_TRIES:
                return Step([replies.text(message("password_reset_gave_up"))], state=None, done=True)
            return Step([replies.text(message("password_reset_malformed_email"))], state={"step": "email", "tries": tries})
        request_reset(ctx.session, ctx.mailer, ctx.settings, address, ctx.channel, ctx.actor, ctx.now)
        reply = message("password_reset_requested", minutes=ctx.settings.reset_token_minutes)
        return Step([replies.text(reply)], state=None, done=True)
