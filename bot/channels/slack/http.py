"""HTTP mode: Slack's events, slash commands and interactivity at ``POST /slack/events``.

Bolt's Starlette adapter converts the request and the response; the dispatch runs in the thread
pool, because the Bolt app is synchronous (its middleware claims the event in the database before
the ack) and must not hold the event loop that also serves the widget.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from bot.channels.slack.app import SlackChannel

MAX_BODY_BYTES = 1_000_000

router = APIRouter()


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    slack: SlackChannel = request.app.state.slack
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return Response(status_code=413)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return Response(status_code=400)
    bolt_response = await run_in_threadpool(slack.app.dispatch, to_bolt_request(request, body))
    return to_starlette_response(bolt_response)
