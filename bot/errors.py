"""The assistant's own failures, raised below the channels and turned into responses in one place
per channel (the web app's exception handlers, the terminal's loop).

``member_message`` is the Japanese text a member may read; ``str(error)`` is for operators' logs.
"""

from __future__ import annotations

from bot.messages import message


class AssistantError(Exception):
    """Base of the errors a channel maps to a response."""

    member_key = "internal_error"

    @property
    def member_message(self) -> str:
        return message(self.member_key)


class ServiceUnavailableError(AssistantError):
    """The database does not answer; nothing of the turn was stored. Try again later."""

    member_key = "database_unavailable"


class ConfigurationError(AssistantError):
    """The settings cannot work (e.g. no ``JSUG_SECRET_KEY`` on a production database)."""
