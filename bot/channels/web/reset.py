"""The password-reset page: the link of the reset mail opens a form; the form sets the new password.

``GET /reset-password?token=…`` checks the link and shows the rules and the form; the reset token
travels on in a hidden field (the POST's body, not its URL), next to a CSRF token: an HMAC of
the server secret over the reset token's hash and an expiry, so nothing is kept between the two
requests. ``POST /reset-password`` checks the CSRF token, the link, that both passwords match,
and the policy, then sets the password; the member then logs in to JSUGNET as usual (no login
here). A used, expired or unknown link gets one sentence and the way to a new mail: the chat.

No response may be cached (``Cache-Control: no-store``); the app's middleware adds the strict CSP
and ``Referrer-Policy: same-origin`` (the link's token never leaves the site), so the page has no inline script or style. Neither the reset
token nor a password is ever logged or shown.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from bot.app import Assistant
from bot.channels.web.pages import TEMPLATES
from bot.errors import ServiceUnavailableError
from bot.messages import message
from bot.password_service import PasswordPolicyError, TokenError
from bot.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS

log = logging.getLogger("bot.web.reset")

router = APIRouter()

PATH = "/reset-password"
TEMPLATE = "reset_password.html"
CSRF_SECONDS = 60 * 60
MAX_CSRF_CHARS = 100
MAX_BODY_BYTES = 64 * 1024
FORM_TYPE = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
LINK_STATUS = {"used": 410, "expired": 410, "unknown": 404}


class BadForm(Exception):
    """A POST that is not the page's form (no or a wrong CSRF token, wrong encoding, too large)."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status


# -- the CSRF token ------------------------------------------------------------------------------


def _csrf_mac(secret_key: bytes, reset_token: str, expires: int) -> str:
    bound = f"reset-password:{hashlib.sha256(reset_token.encode('utf-8')).hexdigest()}:{expires}"
    return hmac.new(secret_key, bound.encode("ascii"), hashlib.sha256).hexdigest()


def csrf_token(secret_key: bytes, reset_token: str, now: datetime) -> str:
    """``expiry.mac``: valid for ``CSRF_SECONDS``, for forms of this reset token only."""
    expires = int(now.timestamp()) + CSRF_SECONDS
    return f"{expires}.{_csrf_mac(secret_key, reset_token, expires)}"


def csrf_ok(secret_key: bytes, reset_token: str, token: str, now: datetime) -> bool:
    if not token or len(token) > MAX_CSRF_CHARS:
        return False
    expires_text, _, mac = token.partition(".")
    if not expires_text.isascii() or not expires_text.isdigit():
        return False
    expires = int(expires_text)
    if expires <= now.timestamp():
        return False
    return hmac.compare_digest(_csrf_mac(secret_key, reset_token, expires).encode("ascii"), mac.encode("utf-8"))


# -- the routes ----------------------------------------------------------------------------------


@router.get(PATH, include_in_schema=False)
async def reset_form(request: Request) -> Response:
    assistant: Assistant = request.app.state.assistant
    token = request.query_params.get("token", "")
    login_id = await _login_id(request, assistant, token)
    if isinstance(login_id, Response):
        return login_id
    return _form(request, assistant, token, login_id)


@router.post(PATH, include_in_schema=False)
async def reset_submit(request: Request) -> Response:
    assistant: Assistant = request.app.state.assistant
    try:
        fields = await _form_fields(request)
        token = fields.get("token", "")
        if not csrf_ok(assistant.secret_key, token, fields.get("csrf", ""), assistant.clock()):
            raise BadForm(400, "missing or wrong CSRF token")
    except BadForm as bad:
        log.warning("password reset form refused: %s", bad)
        return _page(request, {"state": "bad_form", "text": message("password_reset_bad_form")}, bad.status)
    password, confirmation = fields.get("password", ""), fields.get("password_confirm", "")
    login_id = await _login_id(request, assistant, token)
    if isinstance(login_id, Response):
        return login_id
    if password != confirmation:
        return _form(request, assistant, token, login_id, message("password_reset_mismatch"))
    try:
        await run_in_threadpool(assistant.passwords.reset, token, password)
    except PasswordPolicyError as refused:
        return _form(request, assistant, token, login_id, str(refused))
    except TokenError as refused:  # used by a concurrent request a moment ago
        return _link_refused(request, refused.reason)
    except ServiceUnavailableError as exc:
        return _unavailable(request, exc)
    log.info("password reset page: a new password was set")
    return _page(request, {"state": "done", "text": message("password_reset_done")}, 200)


async def _login_id(request: Request, assistant: Assistant, token: str) -> str | Response:
    """The login ID of the link's account, or the page that says why the link cannot be used."""
    try:
        return await run_in_threadpool(assistant.passwords.check, token)
    except TokenError as refused:
        return _link_refused(request, refused.reason)
    except ServiceUnavailableError as exc:
        return _unavailable(request, exc)


async def _form_fields(request: Request) -> dict[str, str]:
    """The urlencoded body's fields (first value of each), read up to ``MAX_BODY_BYTES``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM_TYPE:
        raise BadForm(400, f"unexpected content type {content_type[:60]!r}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadForm(413, "form too large")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20,
                          errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(400, f"unreadable form ({type(exc).__name__})") from None
    return {name: values[0] for name, values in parsed.items() if values}


# -- the pages -----------------------------------------------------------------------------------


def _form(request: Request, assistant: Assistant, token: str, login_id: str, error: str | None = None) -> Response:
    context = {
        "state": "form",
        "login_id": login_id,
        "error": error,
        "token": token,
        "csrf": csrf_token(assistant.secret_key, token, assistant.clock()),
        "min_chars": MIN_PASSWORD_CHARS,
        "max_chars": MAX_PASSWORD_CHARS,
    }
    return _page(request, context, 422 if error else 200)


def _link_refused(request: Request, reason: str) -> Response:
    reason = reason if reason in LINK_STATUS else "unknown"
    log.info("password reset page: link refused (%s)", reason)
    context = {"state": "link", "text": message(f"password_reset_link_{reason}"),
               "new_link": message("password_reset_new_link")}
    return _page(request, context, LINK_STATUS[reason])


def _unavailable(request: Request, exc: ServiceUnavailableError) -> Response:
    log.error("password reset page: %s", exc)
    response = _page(request, {"state": "unavailable", "text": exc.member_message}, 503)
    response.headers["Retry-After"] = "30"
    return response


def _page(request: Request, context: Mapping[str, Any], status: int) -> Response:
    return TEMPLATES.TemplateResponse(request, TEMPLATE, dict(context), status_code=status, headers=NO_STORE)
