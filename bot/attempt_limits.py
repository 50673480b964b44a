"""Limits on proving who one is: one-time code requests and wrong codes, per hour, counted by ``limits``.

Each is counted three ways: per conversation (channel and user reference), per address asked for,
and overall. The address is counted whether or not it is registered, so a refusal tells nobody
whether an account exists. A conversation's own limits are lower than its address's
(``code_requests_per_session`` < ``codes_per_hour``, ``wrong_codes_per_session`` <
``wrong_codes_per_address``): one attacker's conversation that uses up its own allowance is
refused long before the member's own conversation would be, so it cannot lock the member out.
Only several conversations together can make the member wait, and then the member is told how
long, and every attempt is in the audit log for the secretariat (``bot.identity.record_attempt``).

The counts live where the web's request limits do (``web.rate_limit_storage``: memory, or Redis
so that every process shares them). They are keyed by HMACs with the server secret, never by a
raw address or user reference. A count store that is down lets attempts through (logged): the
per-code attempt limit and the hourly limit of mailed codes in the database still hold.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerHour
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from bot.settings import Settings

log = logging.getLogger("bot.attempt_limits")

SESSION, ADDRESS, OVERALL = "session", "address", "overall"
CODE_REQUESTS, WRONG_CODES = "code-requests", "wrong-codes"
OVERALL_KEY = "all"


@dataclass(frozen=True)
class Wait:
    """A limit was reached: which one (``scope``: session, address, overall) and for how many minutes."""

    kind: str
    scope: str
    minutes: int


class AttemptLimits:
    """The hourly counts of code requests and wrong codes (see the module docstring)."""

    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.storage = storage if storage is not None else storage_from_string(settings.web.rate_limit_storage)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items: dict[str, dict[str, RateLimitItem]] = {
            CODE_REQUESTS: {
                SESSION: RateLimitItemPerHour(settings.code_requests_per_session, namespace="identity"),
                ADDRESS: RateLimitItemPerHour(settings.codes_per_hour, namespace="identity"),
                OVERALL: RateLimitItemPerHour(settings.code_requests_overall, namespace="identity"),
            },
            WRONG_CODES: {
                SESSION: RateLimitItemPerHour(settings.wrong_codes_per_session, namespace="identity"),
                ADDRESS: RateLimitItemPerHour(settings.wrong_codes_per_address, namespace="identity"),
                OVERALL: RateLimitItemPerHour(settings.wrong_codes_overall, namespace="identity"),
            },
        }

    def request_code(self, session_key: str, address_key: str) -> Wait | None:
        """Count one code request; a ``Wait`` (and nothing counted) when a limit is already reached."""
        wait = self._first_wait(CODE_REQUESTS, session_key, address_key)
        if wait is None:
            wait = self._hit(CODE_REQUESTS, session_key, address_key)
        return wait

    def may_guess(self, session_key: str, address_key: str) -> Wait | None:
        """Whether a code may be tried now (nothing counted: only wrong codes count, ``wrong_code``)."""
        return self._first_wait(WRONG_CODES, session_key, address_key)

    def wrong_code(self, session_key: str, address_key: str) -> None:
        """Count one wrong code, towards the conversation's, the address's and the overall limit."""
        self._hit(WRONG_CODES, session_key, address_key)

    def _keys(self, session_key: str, address_key: str) -> list[tuple[str, str]]:
        return [(SESSION, session_key), (ADDRESS, address_key), (OVERALL, OVERALL_KEY)]

    def _first_wait(self, kind: str, session_key: str, address_key: str) -> Wait | None:
        for scope, key in self._keys(session_key, address_key):
            item = self.items[kind][scope]
            try:
                if not self.limiter.test(item, kind, scope, key):
                    return self._wait(kind, scope, key)
            except Exception as exc:  # noqa: BLE001 - a count store that is down must not take the chat down
                log.warning("attempt-limit storage failed (%s); attempt let through", type(exc).__name__)
                return None
        return None

    def _hit(self, kind: str, session_key: str, address_key: str) -> Wait | None:
        """Count in every scope; a ``Wait`` when a concurrent attempt took the last one in between."""
        refused: Wait | None = None
        for scope, key in self._keys(session_key, address_key):
            try:
                if not self.limiter.hit(self.items[kind][scope], kind, scope, key) and refused is None:
                    refused = self._wait(kind, scope, key)
            except Exception as exc:  # noqa: BLE001 - as in _first_wait
                log.warning("attempt-limit storage failed (%s); attempt let through", type(exc).__name__)
                return None
        return refused

    def _wait(self, kind: str, scope: str, key: str) -> Wait:
        reset_at = self.limiter.get_window_stats(self.items[kind][scope], kind, scope, key).reset_time
        return Wait(kind, scope, max(1, math.ceil((reset_at - time.time()) / 60)))
