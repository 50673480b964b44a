"""Who a member is: their address, a one-time code mailed to it, their Slack user.

Nothing here may tell a caller whether an address is registered: ``issue_code`` acts alike for
both (it even records a code that can never match when nobody has the address, so that guessing
at it answers "wrong" as it would for a member), and the reasons ``verify_code`` gives are the
same for both. Only hashes of codes are stored. Passwords (hashes, policy, signing in) are
``bot.passwords``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.mail import Mailer
from bot.settings import Settings
from bot.storage import audit
from bot.storage.db import rowcount
from bot.storage.models import ChannelIdentity, Member, OneTimeCode

log = logging.getLogger("bot.identity")

ACTIVE = "active"
SLACK = "slack"
CODE_DIGITS = 6

MESSAGES = {
    "code_subject": "【JSUG】確認コードのお知らせ",
    "code_body": (
        "JSUGアシスタントをご利用いただき、ありがとうございます。\n"
        "\n"
        "確認コード: {code}\n"
        "\n"
        "アシスタントの画面でこのコードを入力してください。有効期限は{minutes}分です。\n"
        "このコードは第三者に教えないでください。\n"
        "お心当たりのない場合は、このメールを破棄してください。\n"
        "\n"
        "JSUG事務局"
    ),
}

# The dot-atom form of RFC 5322, ASCII only, with a dotted domain: what members type, without
# quoted or IP forms. It accepts every address the member import accepts (bot/storage/members.py),
# so no registered member is ever told that their own address is malformed.
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL_PATTERN = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")
MAX_EMAIL_CHARS = 320  # the column's length


class InvalidEmailError(ValueError):
    """Not an e-mail address; callers ask again (see ``parse_email``) before acting on one."""


def parse_email(text: str | None) -> str | None:
    """The address ``text`` holds, or None when it is not one.

    Full-width characters typed through a Japanese input method are folded (NFKC) and surrounding
    blanks removed; anything else that is not a plain ``local@domain.tld`` (spaces, quotes,
    brackets, markup, several addresses) is refused.
    """
    if not text:
        return None
    candidate = unicodedata.normalize("NFKC", text).strip()
    if len(candidate) > MAX_EMAIL_CHARS or EMAIL_PATTERN.fullmatch(candidate) is None:
        return None
    return candidate


def email_hash(address: str) -> str:
    """The address's SHA-256 (lower-cased), to count and trace requests without keeping the address."""
    return hashlib.sha256(address.strip().lower().encode("utf-8")).hexdigest()


def members_by_email(session: Session, email: str) -> list[Member]:
    """The active accounts registered with ``email`` (case-insensitive), oldest first."""
    query = (
        select(Member)
        .where(func.lower(Member.email) == email.strip().lower(), Member.status == ACTIVE)
        .order_by(Member.id)
    )
    return list(session.scalars(query))


# -- one-time codes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeCheck:
    """``reason``: "ok", "wrong", "expired", "too_many" (attempts used up) or "none" (no code)."""

    ok: bool
    email: str | None
    reason: str


def _code_hash(code_id: int, code: str) -> str:
    """The code keyed by its row, so equal codes of different rows hash apart."""
    return hmac.new(f"one-time-code:{code_id}".encode(), code.encode("utf-8"), hashlib.sha256).hexdigest()


def issue_code(
    session: Session, mailer: Mailer, settings: Settings, channel: str, user_ref: str, email: str, now: datetime
) -> None:
    """Mail a fresh code to ``email`` if it has an account; to the caller both cases look the same.

    Earlier unused codes of this (channel, user_ref) stop working in either case. When no active
    account has the address, the new code row keeps neither the address nor a matchable hash, so
    every guess is "wrong", just as a guess at a member's code would be. Text that is not an
    address at all is treated the same way (callers should have asked again with ``parse_email``).
    """
    address = unicodedata.normalize("NFKC", email or "").strip()[:MAX_EMAIL_CHARS]
    now = utc(now)
    session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.channel == channel, OneTimeCode.user_ref == user_ref, OneTimeCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    members = members_by_email(session, address)
    row = OneTimeCode(
        channel=channel,
        user_ref=user_ref,
        email=members[0].email if members else "",
        code_hash="",
        attempts=0,
        expires_at=now + timedelta(minutes=settings.code_minutes),
        created_at=now,
    )
    session.add(row)
    session.flush()
    if not members:
        log.info("one-time code %d: no active account for address %s…", row.id, email_hash(address)[:12])
        return
    if _codes_mailed_within_hour(session, members[0].email, now) > settings.codes_per_hour:
        # The row stays unmatchable, like a guess: the caller sees no difference, the inbox no flood.
        row.email = ""
        log.info("one-time code %d: hourly limit reached for %s…", row.id, email_hash(address)[:12])
        return
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    row.code_hash = _code_hash(row.id, code)
    mail = mailer.queue(
        session,
        members[0].email,
        MESSAGES["code_subject"],
        MESSAGES["code_body"].format(code=code, minutes=settings.code_minutes),
    )
    log.info("one-time code %d queued as mail %d", row.id, mail.id)


def _codes_mailed_within_hour(session: Session, email: str, now: datetime) -> int:
    since = now - timedelta(hours=1)
    query = select(func.count()).select_from(OneTimeCode).where(
        OneTimeCode.email == email, OneTimeCode.created_at >= since
    )
    return int(session.scalar(query) or 0)


def verify_code(
    session: Session, settings: Settings, channel: str, user_ref: str, code: str, now: datetime
) -> CodeCheck:
    """Check the latest code of (channel, user_ref): single use, ``settings.code_attempts`` tries.

    Every try is counted before comparing, in one conditional UPDATE, so concurrent guesses
    cannot exceed the limit; the try that uses up the limit already answers "too_many".
    """
    now = utc(now)
    current = session.execute(
        select(OneTimeCode.id, OneTimeCode.email, OneTimeCode.code_hash, OneTimeCode.expires_at)
        .where(OneTimeCode.channel == channel, OneTimeCode.user_ref == user_ref, OneTimeCode.used_at.is_(None))
        .order_by(OneTimeCode.id.desc())
        .limit(1)
    ).first()
    if current is None:
        return CodeCheck(False, None, "none")
    if utc(current.expires_at) <= now:
        return CodeCheck(False, None, "expired")
    attempts = session.execute(
        update(OneTimeCode)
        .where(
            OneTimeCode.id == current.id,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.attempts < settings.code_attempts,
        )
        .values(attempts=OneTimeCode.attempts + 1)
        .returning(OneTimeCode.attempts)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if attempts is None:
        return CodeCheck(False, None, "too_many")
    typed = re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", code or ""))
    expected = current.code_hash
    if not (expected and hmac.compare_digest(_code_hash(current.id, typed), expected)):
        return CodeCheck(False, None, "too_many" if attempts >= settings.code_attempts else "wrong")
    used = rowcount(session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.id == current.id, OneTimeCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ))
    if used != 1:
        return CodeCheck(False, None, "none")  # used by a concurrent check a moment ago
    return CodeCheck(True, current.email, "ok")


# -- Slack ---------------------------------------------------------------------------------------


def link_slack_user(session: Session, slack_user_id: str, verified_email: str | None, now: datetime) -> list[Member]:
    """Link a Slack user to the accounts of the address Slack has verified for them.

    Call it with the profile's current verified address whenever a conversation starts: the link
    follows the profile, and is removed when the address no longer belongs to an active account.
    The schema keeps one link per Slack user, to the oldest account of the address;
    ``slack_members`` finds the address's other accounts through it. Returns those accounts.
    """
    now = utc(now)
    address = parse_email(verified_email)
    members = members_by_email(session, address) if address else []
    link = session.scalars(
        select(ChannelIdentity).where(ChannelIdentity.channel == SLACK, ChannelIdentity.external_id == slack_user_id)
    ).first()
    actor = f"{SLACK}:{slack_user_id}"
    if not members:
        if link is not None:
            audit.record(
                session, actor=actor, channel=SLACK, action="slack_unlinked", entity="member",
                entity_id=link.member_id, before={"slack_user": slack_user_id}, after=None,
            )
            session.delete(link)
        return []
    primary = members[0]
    if link is None:
        session.add(ChannelIdentity(channel=SLACK, external_id=slack_user_id, member_id=primary.id, verified_at=now))
        audit.record(
            session, actor=actor, channel=SLACK, action="slack_linked", entity="member",
            entity_id=primary.id, before=None, after={"slack_user": slack_user_id},
        )
    elif link.member_id != primary.id:
        audit.record(
            session, actor=actor, channel=SLACK, action="slack_linked", entity="member",
            entity_id=primary.id, before={"member_id": link.member_id}, after={"slack_user": slack_user_id},
        )
        link.member_id = primary.id
        link.verified_at = now
    else:
        link.verified_at = now
    session.flush()
    return members


def slack_members(session: Session, slack_user_id: str) -> list[Member]:
    """The active accounts of the linked member's address; empty when the Slack user is not linked."""
    linked = session.scalars(
        select(Member)
        .join(ChannelIdentity, ChannelIdentity.member_id == Member.id)
        .where(ChannelIdentity.channel == SLACK, ChannelIdentity.external_id == slack_user_id)
    ).first()
    return members_by_email(session, linked.email) if linked is not None else []

