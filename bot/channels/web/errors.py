"""Every failure of a web request mapped to a response, in one place: JSON for the API, with a code
and a Japanese message the widget shows; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bot.dialogue.engine import EngineInputError
from bot.errors import ServiceUnavailableError
from bot.messages import message

log = logging.getLogger("bot.web")


def error_response(status: int, code: str, text: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "message": text}, status_code=status, headers=headers)


def _too_long(errors: list[Any]) -> bool:
    return any(error.get("type") == "string_too_long" and tuple(error.get("loc", ()))[-1:] in (("text",), ("question",))
               for error in errors)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if _too_long(errors):
        return error_response(422, "text_too_long", message("web_text_too_long"))
    where = sorted({".".join(str(part) for part in error.get("loc", ())) for error in errors})
    response = error_response(422, "invalid_request", message("web_invalid_request"))
    response.headers["X-Invalid-Fields"] = ",".join(where)[:200]
    return response


async def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("request failed: %s", exc)
    return error_response(503, "unavailable", message("database_unavailable"), {"Retry-After": "30"})


async def _engine_input(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("refused input: %s", exc)
    return error_response(400, "invalid_request", message("web_invalid_request"))


async def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    text = message("web_not_found") if exc.status_code == 404 else message("web_invalid_request")
    return error_response(exc.status_code, code, text, dict(exc.headers or {}))


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error in a web request: %s", type(exc).__name__, exc_info=exc)
    return error_response(500, "internal_error", message("internal_error"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(ServiceUnavailableError, _unavailable)
    app.add_exception_handler(EngineInputError, _engine_input)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
