"""Request limits per client address and per chat session, counted by the ``limits`` library.

Polling for later messages has a limit of its own (``POLLS_PER_CHAT`` times the chat limit), so an
open widget that polls does not eat into what its member may send. The counts live in memory by default (one process) or in Redis when ``JSUG_WEB__RATE_LIMIT_STORAGE``
names one, so that every worker process shares them. A refused request is refused before it
reaches the assistant: nothing of it is stored.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from bot.settings import WebSettings

POLLS_PER_CHAT = 3
log = logging.getLogger("bot.web")


@dataclass(frozen=True)
class Refusal:
    """Over a limit: how many whole seconds until a request would be accepted again."""

    retry_after: int


class RateLimits:
    def __init__(self, settings: WebSettings) -> None:
        self.storage = storage_from_string(settings.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(self.storage)
        per_minute = settings.rate_limit_per_minute
        self.per_client: RateLimitItem | None = RateLimitItemPerMinute(per_minute) if per_minute else None
        self.polls: RateLimitItem | None = RateLimitItemPerMinute(per_minute * POLLS_PER_CHAT) if per_minute else None
        self.per_session: RateLimitItem | None = (
            RateLimitItemPerMinute(settings.session_rate_limit_per_minute)
            if settings.session_rate_limit_per_minute else None
        )

    def check(self, client: str, session_id: str | None, *, poll: bool = False) -> Refusal | None:
        """Count one request of ``client`` (and of ``session_id``); a ``Refusal`` when over a limit."""
        if poll:
            return self._first_refusal([(self.polls, "poll", client)])
        checks: list[tuple[RateLimitItem | None, str, str]] = [(self.per_client, "client", client)]
        if session_id:
            checks.append((self.per_session, "session", session_id))
        return self._first_refusal(checks)

    def _first_refusal(self, checks: list[tuple[RateLimitItem | None, str, str]]) -> Refusal | None:
        for item, scope, key in checks:
            if item is None:
                continue
            try:
                if self.limiter.hit(item, scope, key):
                    continue
                reset_at = self.limiter.get_window_stats(item, scope, key).reset_time
            except Exception as exc:  # noqa: BLE001 - a limit store that is down must not take the chat down
                log.warning("rate-limit storage failed (%s); request let through", type(exc).__name__)
                continue
            return Refusal(max(1, math.ceil(reset_at - time.time())))
        return None
