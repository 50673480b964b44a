"""The password-reset services the web reset page calls (``Assistant.passwords``).

Each call is one transaction of its own; database failures surface as ``ServiceUnavailableError``,
so the page can say "try again later" instead of failing. Tokens and passwords are never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.passwords import PasswordPolicyError
from bot.settings import Settings
from bot.storage.db import guarded
from handlers.password_reset import TokenError, check_token, reset_password

__all__ = ["PasswordPolicyError", "PasswordResets", "TokenError"]

WEB = "web"


class PasswordResets:
    """Checking a reset link and setting the new password with it."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, clock: Callable[[], datetime]) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock

    def check(self, token: str) -> str:
        """The login ID of the account the link belongs to, for the page; ``TokenError`` when the
        link is unknown (or forged), expired or used."""
        with guarded(self.sessions) as session:
            return check_token(session, token, self.clock()).login_id

    def reset(self, token: str, new_password: str) -> None:
        """Set the new password (argon2id); the link is used up. Raises ``TokenError`` or
        ``PasswordPolicyError`` (nothing written, the link stays usable)."""
        with guarded(self.sessions.begin) as session:
            reset_password(session, token, new_password, WEB, self.clock())
