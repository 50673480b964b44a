"""Members' passwords: argon2id hashes, the legacy scrypt ones, the policy, and signing in.

New hashes are argon2id (``argon2-cffi``'s ``PasswordHasher`` with its default, RFC 9106
parameters). Hashes of the earlier ``scrypt$n$r$p$salt$hash`` format still verify, and
``authenticate`` replaces them (and argon2 hashes with outdated parameters) with a fresh argon2id
hash when the member next signs in; a reset replaces them anyway. Passwords are NFKC-normalised
before hashing, so a password typed in full-width or half-width characters is the same password.

The policy (``check_password_policy``): 12 to 128 characters, not the login ID nor containing it,
not one of the well-known passwords of ``common_passwords.txt``, not one character repeated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import unicodedata
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.messages import message
from bot.storage import audit
from bot.storage.models import Member

log = logging.getLogger("bot.passwords")

ACTIVE = "active"
MIN_PASSWORD_CHARS = 12
MAX_PASSWORD_CHARS = 128
MIN_CONTAINED_LOGIN_ID_CHARS = 3  # shorter login IDs are refused only as the whole password
MAX_LOGIN_ID_CHARS = 100  # the column's length
COMMON_PASSWORDS_FILE = Path(__file__).with_name("common_passwords.txt")

ARGON2_PREFIX = "$argon2id$"
# Bounds of stored argon2 parameters, so that a corrupted row cannot make one check eat memory or minutes.
MAX_ARGON2_MEMORY_KIB = 2**18
MAX_ARGON2_TIME_COST = 16
MAX_ARGON2_PARALLELISM = 16

_hasher = PasswordHasher()


class PasswordPolicyError(ValueError):
    """A new password the policy refuses; the message is the Japanese text to show the member."""


def _normalized(password: str) -> str:
    return unicodedata.normalize("NFKC", password or "")


# -- hashes --------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    """An argon2id hash (``$argon2id$v=19$m=…,t=…,p=…$salt$hash``) with a fresh random salt."""
    return _hasher.hash(_normalized(password))


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches ``stored`` (argon2id or legacy scrypt); False for a missing or
    malformed stored hash, or one whose parameters are out of bounds."""
    if not stored:
        return False
    if stored.startswith(ARGON2_PREFIX):
        return _verify_argon2(password, stored)
    if stored.startswith("scrypt$"):
        return _verify_scrypt(password, stored)
    return False


def needs_rehash(stored: str) -> bool:
    """True for a legacy scrypt hash and for an argon2 hash made with other parameters than today's."""
    if stored.startswith("scrypt$"):
        return True
    try:
        return _hasher.check_needs_rehash(stored)
    except (InvalidHashError, ValueError):
        return False  # malformed: it never verifies, so there is nothing to re-hash


def _verify_argon2(password: str, stored: str) -> bool:
    try:
        parameters = extract_parameters(stored)
    except (InvalidHashError, ValueError):
        return False
    if parameters.type is not Type.ID or not (
        parameters.memory_cost <= MAX_ARGON2_MEMORY_KIB
        and 1 <= parameters.time_cost <= MAX_ARGON2_TIME_COST
        and 1 <= parameters.parallelism <= MAX_ARGON2_PARALLELISM
    ):
        return False
    try:
        return _hasher.verify(stored, _normalized(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


# The legacy format: ``scrypt$n$r$p$salt$hash``, salt and hash in base64 (verified, never produced).


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    secret = _normalized(password).encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=256 * r * (n + p) + 2**20)


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        scheme, n_text, r_text, p_text, salt_text, digest_text = stored.split("$")
        n, r, p = int(n_text), int(r_text), int(p_text)
        salt = base64.b64decode(salt_text, validate=True)
        expected = base64.b64decode(digest_text, validate=True)
    except ValueError:
        return False
    # Bounds, so that a corrupted row cannot make one check eat memory or minutes.
    if scheme != "scrypt" or not (1 < n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return False
    if not expected or len(expected) > 1024:
        return False
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


# -- the policy ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The bundled well-known passwords, lower-cased (blank lines and ``#`` comments skipped)."""
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def check_password_policy(password: str, login_id: str) -> None:
    """Raise ``PasswordPolicyError`` (Japanese message) unless ``password`` may be set for ``login_id``.

    Checked on the NFKC form (what is hashed): 12–128 characters; not the login ID, and not
    containing it (case-insensitive; for login IDs of 3+ characters); not a well-known password
    (case-insensitive); not a single character repeated.
    """
    candidate = _normalized(password)
    if not MIN_PASSWORD_CHARS <= len(candidate) <= MAX_PASSWORD_CHARS:
        raise PasswordPolicyError(
            message("password_reset_policy_length", min=MIN_PASSWORD_CHARS, max=MAX_PASSWORD_CHARS)
        )
    folded = candidate.casefold()
    login = _normalized(login_id).strip().casefold()
    if login and (folded == login or (len(login) >= MIN_CONTAINED_LOGIN_ID_CHARS and login in folded)):
        raise PasswordPolicyError(message("password_reset_policy_login_id"))
    if candidate.lower() in common_passwords():
        raise PasswordPolicyError(message("password_reset_policy_common"))
    if len(set(candidate)) == 1:
        raise PasswordPolicyError(message("password_reset_policy_repeated"))


# -- signing in ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """A hash nobody knows the password of, checked for unknown login IDs so they take as long."""
    return hash_password(secrets.token_urlsafe(32))


def authenticate(session: Session, login_id: str, password: str, *, channel: str = "web") -> Member | None:
    """The active member with this login ID and password, else None (unknown, withdrawn, no
    password set, or wrong: the caller cannot tell which, nor by the time it takes).

    On success a legacy or outdated hash is replaced by a fresh argon2id hash in the caller's
    transaction, audited as "password_rehashed" (without any hash).
    """
    login = _normalized(login_id).strip()
    member = None
    if login and len(login) <= MAX_LOGIN_ID_CHARS:
        member = session.scalars(select(Member).where(Member.login_id == login)).first()
    if member is None or member.status != ACTIVE or not member.password_hash:
        verify_password(password, _dummy_hash())
        return None
    stored = member.password_hash
    if not verify_password(password, stored):
        return None
    if needs_rehash(stored):
        member.password_hash = hash_password(password)
        audit.record(
            session, actor=f"member:{member.id}", channel=channel, action="password_rehashed", entity="member",
            entity_id=member.id, before={"scheme": _scheme(stored)}, after={"scheme": "argon2id"},
        )
        session.flush()
        log.info("password hash of member %d renewed (%s to argon2id)", member.id, _scheme(stored))
    return member


def _scheme(stored: str) -> str:
    return "scrypt" if stored.startswith("scrypt$") else "argon2id (outdated parameters)"
