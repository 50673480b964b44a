"""The password-reset services the web reset page calls (``Assistant.passwords``).

Each call is one transaction of its own; database failures surface as ``ServiceUnavailableError``,
so the page can say "try again later" instead of failing. Tokens and passwords are never logged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ServiceUnavailableError
from bot.settings import Settings
from handlers.password_reset import check_token, reset_password

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
        with _guarded(self.sessions) as session:
            return check_token(session, token, self.clock()).login_id

    def reset(self, token: str, new_password: str) -> None:
        """Set the new password (argon2id); the link is used up. Raises ``TokenError`` or
        ``PasswordPolicyError`` (nothing written, the link stays usable)."""
        with _guarded(self.sessions.begin) as session:
            reset_password(session, token, new_password, WEB, self.clock())


@contextmanager
def _guarded(opener: Callable[[], Any]) -> Iterator[Session]:
    try:
        with opener() as session:
            yield session
    except SQLAlchemyError as exc:
        raise ServiceUnavailableError(f"the database does not answer ({type(exc).__name__})") from exc
