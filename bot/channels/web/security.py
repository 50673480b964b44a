"""Headers every response carries, and the refusal of browser requests from origins not allowed.

A pure ASGI middleware (no per-request task switching), so it costs microseconds on the chat API.
CORS itself is Starlette's ``CORSMiddleware`` with the allow-list (see ``app.py``); this refuses a
state-changing request whose ``Origin`` is neither allowed nor the server's own, so another site
cannot drive a member's conversation even with a request that needs no preflight.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.messages import message

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
COMMON = [
    (b"x-content-type-options", b"nosniff"),
    # Not "no-referrer": with it browsers send "Origin: null" on same-origin form posts.
    (b"referrer-policy", b"same-origin"),
]
HTML_ONLY = [
    (b"content-security-policy", CSP.encode("ascii")),
    (b"x-frame-options", b"DENY"),
]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and not self._origin_ok(scope):
            refusal = JSONResponse({"error": "forbidden_origin", "message": message("web_forbidden_origin")},
                                   status_code=403)
            await refusal(scope, receive, self._with_headers(send))
            return
        await self.app(scope, receive, self._with_headers(send))

    def _origin_ok(self, scope: Scope) -> bool:
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None or origin in self.allowed:
            return True
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        return origin == own

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def sending(event: Message) -> None:
            if event["type"] == "http.response.start":
                headers = list(event.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [pair for pair in COMMON if pair[0] not in names]
                content_type = dict(headers).get(b"content-type", b"")
                if content_type.startswith(b"text/html"):
                    headers += [pair for pair in HTML_ONLY if pair[0] not in names]
                event = {**event, "headers": headers}
            await send(event)

        return sending
