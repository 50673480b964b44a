"""Who a member is: their address, a one-time code mailed to it, their Slack user.

Nothing here may tell a caller whether an address is registered: ``issue_code`` acts alike for
both (it even records a code that can never match when nobody has the address, so that guessing
at it answers "wrong" as it would for a member), and the reasons ``verify_code`` gives are the
same for both, and the work a request does (queries, writes, hash computations) is the same for
both, so the time it takes does not tell either. Only hashes of codes are stored, keyed with the
server secret and the code's row (the row id alone is public: a 6-digit code would fall out of its
hash in a second); the code itself travels once, in the mail, which keeps it apart from the stored
body (``Mailer.queue(secret=...)``). Addresses are counted, locked and logged by their HMAC with
the secret (``email_hash``), never by a plain SHA-256 anyone could recompute from a guessed address.
Passwords (hashes, policy, signing in) are ``bot.passwords``.
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
from sqlalchemy import text as sql
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.errors import ConfigurationError
from bot.mail import SECRET_PLACEHOLDER, Mailer
from bot.settings import Settings
from bot.storage import audit
from bot.storage.db import rowcount
from bot.storage.members import fold_address
from bot.storage.models import ChannelIdentity, Conversation, Member, OneTimeCode, OutboxMail

log = logging.getLogger("bot.identity")

ACTIVE = "active"
SLACK = "slack"
CODE_DIGITS = 6
#: How much of an address's keyed hash the audit log and the log lines show: enough to tell
#: addresses apart, nothing anyone without the server secret can turn back into an address.
ADDRESS_PREFIX = 12
MAX_CODE_CHARS = 40

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


def server_secret(settings: Settings) -> bytes:
    """The server secret that keys code and address hashes (``build_assistant`` always sets it)."""
    if settings.secret_key is None:
        raise ConfigurationError("settings.secret_key is not set (build_assistant resolves JSUG_SECRET_KEY)")
    return settings.secret_key.get_secret_value().encode("utf-8")


def email_hash(address: str, secret: bytes) -> str:
    """The address's HMAC-SHA256 with the server secret (NFKC, blanks and case folded away), to
    count, lock and trace requests without keeping the address. Keyed, because a plain SHA-256 of
    an address is recomputed by anyone who guesses the address, which would make every hash in a
    log or a table a lookup of who asked."""
    folded = unicodedata.normalize("NFKC", address).strip().lower()
    return hmac.new(secret, f"address:{folded}".encode(), hashlib.sha256).hexdigest()


def session_key(secret: bytes, channel: str, user_ref: str) -> str:
    """A conversation's key for the attempt limits (the count store never sees a user reference)."""
    return hmac.new(secret, f"session:{channel}:{user_ref}".encode(), hashlib.sha256).hexdigest()


def lock_address(session: Session, address_key: str) -> None:
    """Serialise, until the transaction ends, everything that counts requests for one address.

    The hourly limits count rows and then add one; two transactions doing that at once would both
    see the count below the limit (on PostgreSQL, 10 simultaneous reset requests for one address
    mailed 7 to 10 links with a limit of 3). A transaction-level advisory lock on a key from the keyed address hash makes the
    second wait until the first has committed; unregistered addresses take it too. SQLite lets one
    writer in at a time already (and the engine serialises turns on it), so it needs none.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    key = int.from_bytes(bytes.fromhex(address_key[:16]), "big", signed=True)
    session.execute(sql("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def same_work_as_queueing(session: Session) -> None:
    """What queueing a mail costs the turn (one statement on the outbox, a round trip), done when
    nothing is queued: a turn for an unregistered address takes as long as one for a member's."""
    session.execute(select(OutboxMail.id).where(OutboxMail.id == 0))


def record_attempt(
    session: Session, *, actor: str, channel: str, action: str, members: list[Member], address_key: str,
    **details: object,
) -> None:
    """An audit entry of a security event (code requested, wrong code, lock-out, reset requested).

    On each account of the address, so ``members show`` lists it on the member's page; on the
    bare ``address`` when nobody has it. It names the address by its keyed hash's prefix only, and
    never holds a code or a link. One write either way, like the rest of the request.
    """
    after = {"address": address_key[:ADDRESS_PREFIX], **details}
    for member in members:
        audit.record(session, actor=actor, channel=channel, action=action, entity="member",
                     entity_id=member.id, after=after)
    if not members:
        audit.record(session, actor=actor, channel=channel, action=action, entity="address",
                     entity_id=None, after=after)


def identity_fresh(conversation: Conversation, now: datetime, settings: Settings) -> bool:
    """Whether the conversation's proof of identity is younger than ``settings.identity_minutes``."""
    verified_at = conversation.verified_at
    return verified_at is not None and utc(now) - utc(verified_at) < timedelta(minutes=settings.identity_minutes)


def members_by_email(session: Session, email: str) -> list[Member]:
    """The active accounts registered with ``email`` (NFKC- and case-folded, as the import stores
    addresses), oldest first; the comparison uses the index on ``lower(email)``."""
    query = (
        select(Member)
        .where(func.lower(Member.email) == fold_address(email), Member.status == ACTIVE)
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


def _code_hash(secret: bytes, code_id: int, code: str) -> str:
    """The code keyed by the server secret and its row: equal codes of different rows hash apart,
    and without the secret nobody can try the million codes against a stored hash."""
    return hmac.new(secret, f"one-time-code:{code_id}:{code}".encode(), hashlib.sha256).hexdigest()


def issue_code(
    session: Session, mailer: Mailer, settings: Settings, channel: str, user_ref: str, email: str, now: datetime,
    *, actor: str | None = None,
) -> None:
    """Mail a fresh code to ``email`` if it has an account; to the caller both cases look the same.

    Earlier unused codes of this (channel, user_ref) stop working in either case. When no active
    account has the address, the new code row keeps neither the address nor a matchable hash, so
    every guess is "wrong", just as a guess at a member's code would be. Text that is not an
    address at all is treated the same way (callers should have asked again with ``parse_email``).
    At most ``settings.codes_per_hour`` codes are mailed to an address in an hour, also when
    requests arrive at once (``lock_address``); beyond that the row is unmatchable, like a guess.
    Each request is in the audit log (``record_attempt``), as ``actor`` (default: the conversation).
    """
    address = unicodedata.normalize("NFKC", email or "").strip()[:MAX_EMAIL_CHARS]
    now = utc(now)
    secret = server_secret(settings)
    address_key = email_hash(address, secret)
    lock_address(session, address_key)
    session.execute(
        update(OneTimeCode)
        .where(OneTimeCode.channel == channel, OneTimeCode.user_ref == user_ref, OneTimeCode.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    members = members_by_email(session, address)
    recipient = members[0].email if members else ""
    row = OneTimeCode(
        channel=channel,
        user_ref=user_ref,
        email=recipient,
        code_hash="",
        attempts=0,
        expires_at=now + timedelta(minutes=settings.code_minutes),
        created_at=now,
    )
    session.add(row)
    session.flush()
    # From here on the same work for every address: the count, a code and its keyed hash, the same
    # statements (a row that must never match gets a random hash, which no code's HMAC can equal).
    within_limit = _codes_mailed_within_hour(session, recipient, now) <= settings.codes_per_hour
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    code_hash = _code_hash(secret, row.id, code)
    mailed = bool(members) and within_limit
    row.code_hash = code_hash if mailed else secrets.token_hex(32)
    if mailed:
        mail = mailer.queue(
            session,
            recipient,
            MESSAGES["code_subject"],
            MESSAGES["code_body"].format(code=SECRET_PLACEHOLDER, minutes=settings.code_minutes),
            secret=code,
        )
        log.info("one-time code %d for address %s… queued as mail %d", row.id, address_key[:ADDRESS_PREFIX], mail.id)
    else:
        row.email = ""  # over the hourly limit, or nobody's: unmatchable, like a guess; no inbox flooded
        same_work_as_queueing(session)
        reason = "hourly limit reached" if members else "no active account"
        log.info("one-time code %d: %s for address %s…", row.id, reason, address_key[:ADDRESS_PREFIX])
    record_attempt(session, actor=actor or f"{channel}:{user_ref}", channel=channel,
                   action="one_time_code_requested", members=members, address_key=address_key,
                   code_id=row.id, mailed=mailed)


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
    typed = re.sub(r"[\s-]", "", unicodedata.normalize("NFKC", code or ""))[:MAX_CODE_CHARS]
    expected = current.code_hash
    computed = _code_hash(server_secret(settings), current.id, typed)  # computed for unmatchable rows too
    if not (expected and hmac.compare_digest(computed, expected)):
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

