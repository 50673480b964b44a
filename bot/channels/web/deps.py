"""What a route needs from the app, as FastAPI dependencies (the assistant, the limits, the client)."""

from __future__ import annotations

from fastapi import Request

from bot.app import Assistant
from bot.channels.web.errors import error_response
from bot.channels.web.rate_limits import RateLimits
from bot.messages import message


class RateLimited(Exception):
    """Over a request limit; answered 429 with ``Retry-After``."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited for {retry_after} s")
        self.retry_after = retry_after


def assistant(request: Request) -> Assistant:
    found: Assistant = request.app.state.assistant
    return found


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def enforce_limits(request: Request, session_id: str | None, *, poll: bool = False) -> None:
    """Count this request against the client's and the session's limits; raise ``RateLimited`` when over."""
    limits: RateLimits = request.app.state.rate_limits
    refusal = limits.check(client_address(request), session_id, poll=poll)
    if refusal is not None:
        raise RateLimited(refusal.retry_after)


async def rate_limited_response(_request: Request, exc: Exception) -> object:
    assert isinstance(exc, RateLimited)
    return error_response(429, "rate_limited", message("web_rate_limited", seconds=exc.retry_after),
                          {"Retry-After": str(exc.retry_after)})
