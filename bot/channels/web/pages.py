"""The pages and files a browser loads: the widget script, the demo homepage, the health check."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from bot.app import Assistant
from bot.errors import ServiceUnavailableError

STATIC = Path(__file__).with_name("static")
TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))

router = APIRouter()


@router.get("/widget.js", include_in_schema=False)
def widget() -> FileResponse:
    """The one script the association's pages include; it finds the API from its own ``src``."""
    return FileResponse(STATIC / "widget.js", media_type="text/javascript; charset=utf-8", headers={
        "Cache-Control": "public, max-age=300",
        "Cross-Origin-Resource-Policy": "cross-origin",
    })


@router.get("/demo", include_in_schema=False)
def demo(request: Request) -> Response:
    """A stand-in for a page of the association's site, with the widget embedded as the site would."""
    return TEMPLATES.TemplateResponse(request, "demo.html", {})


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/demo")


@router.get("/healthz", tags=["operations"])
def healthz(request: Request) -> JSONResponse:
    """200 when the database answers, 503 with the reason when it does not."""
    assistant: Assistant = request.app.state.assistant
    try:
        assistant.health()
    except ServiceUnavailableError as exc:
        return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok"})
