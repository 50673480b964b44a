"""``/api``: the chat API the widget (and any other web client) talks to.

Routes are plain ``def``: the assistant is synchronous SQLAlchemy, and Starlette runs such routes
in its thread pool. A session id is a random token the server issues; the engine only ever sees
its hash as the user reference, so a client cannot choose or guess another member's conversation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from bot.app import Assistant, WebSession
from bot.channels.web import deps
from bot.channels.web.errors import error_response
from bot.channels.web.schemas import ChatRequest, ChatResponse, ErrorResponse, InquiryRequest, MessagesResponse
from bot.dialogue.engine import Turn
from bot.messages import message

CHANNEL = "web"
ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (403, 422, 429, 503)}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorResponse}}

router = APIRouter(prefix="/api", tags=["chat"])
Helper = Annotated[Assistant, Depends(deps.assistant)]


def _reply(session: WebSession, turn: Turn) -> JSONResponse:
    return JSONResponse({"session_id": session.token, "replies": [reply.as_dict() for reply in turn.replies],
                         "last_message_id": turn.last_message_id})


@router.post("/chat", response_model=ChatResponse, responses=ERRORS)
def chat(body: ChatRequest, request: Request, assistant: Helper) -> JSONResponse:
    """One member message or button press; the replies come back at once."""
    deps.enforce_limits(request, body.session_id)
    session = assistant.web_session(body.session_id)
    return _reply(session, assistant.turn(CHANNEL, session.user_ref, text=body.text, action=body.action))


@router.post("/inquiry", response_model=ChatResponse, responses=ERRORS)
def inquiry(body: InquiryRequest, request: Request, assistant: Helper) -> JSONResponse:
    """The widget's form for the secretariat: name, address and question, filed with the transcript."""
    deps.enforce_limits(request, body.session_id)
    session = assistant.web_session(body.session_id)
    turn = assistant.submit_inquiry(CHANNEL, session.user_ref, body.name, body.email, body.question)
    return _reply(session, turn)


@router.get("/chat/{session_id}/messages", response_model=MessagesResponse, responses={**NOT_FOUND, **ERRORS})
def messages(
    request: Request,
    assistant: Helper,
    session_id: Annotated[str, Path(max_length=100)],
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> JSONResponse:
    """The conversation's messages after message ``after`` (0: all of them, e.g. after a reload),
    including what the secretariat wrote later. The widget polls this while it is open."""
    deps.enforce_limits(request, session_id, poll=True)
    found = assistant.web_messages(session_id, after)
    if found is None:
        return error_response(404, "unknown_session", message("web_unknown_session"))
    return JSONResponse({"session_id": session_id, "messages": found})
