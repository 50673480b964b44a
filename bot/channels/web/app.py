"""The app factory: ``create_app(settings)`` builds the one ASGI application of ``jsug-bot serve``.

Nothing is read from the environment here: the settings come in, the assistant is built in the
lifespan (or handed in by a test that already has one) and closed at shutdown.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware

from bot.app import Assistant, build_assistant
from bot.channels.slack import http as slack_http
from bot.channels.slack.app import create_slack_app
from bot.channels.web import api, pages, reset
from bot.channels.web.deps import RateLimited, rate_limited_response
from bot.channels.web.errors import install_error_handlers
from bot.channels.web.rate_limits import RateLimits
from bot.channels.web.security import SecurityMiddleware
from bot.settings import Settings

log = logging.getLogger("bot.web")


def create_app(settings: Settings, *, assistant: Assistant | None = None) -> FastAPI:
    """The web application; with ``assistant`` given, the app uses it and leaves closing it to the caller."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.assistant = assistant or build_assistant(settings, model_in_background=True)
        app.state.rate_limits = RateLimits(settings.web)
        app.state.slack = None
        try:
            if settings.slack_http_enabled:
                app.state.slack = create_slack_app(settings, app.state.assistant)
                app.state.slack.start()
            yield
        finally:
            if app.state.slack is not None:
                app.state.slack.close()
            if assistant is None:
                app.state.assistant.close()

    app = FastAPI(
        title="JSUG member assistant",
        summary="The chat API of the JSUG FAQ and self-service assistant.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_exception_handler(RateLimited, rate_limited_response)  # type: ignore[arg-type]
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(reset.router)
    if settings.slack_http_enabled:
        app.include_router(slack_http.router)
    else:
        log.info("Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): no /slack/events route")
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        expose_headers=["Retry-After"],
        max_age=600,
    )
    app.add_middleware(SecurityMiddleware, allowed_origins=settings.origins)
    return app
