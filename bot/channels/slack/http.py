"""HTTP mode: Slack's events, slash commands and interactivity at ``POST /slack/events``.

Bolt's Starlette adapter converts the request and the response; the dispatch runs in the thread
pool, because the Bolt app is synchronous (its middleware claims the event in the database before
the ack) and must not hold the event loop that also serves the widget. The signature is checked
(slack_sdk's verifier, as Bolt checks it again) before the body is parsed, and a payload of a shape
Slack never sends is refused with 400 before Bolt's own middleware could trip over it.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from starlette.concurrency import run_in_threadpool

from bot.channels.slack.app import SlackChannel
from bot.channels.slack.incoming import malformed

MAX_BODY_BYTES = 1_000_000

router = APIRouter()


@router.post("/slack/events", include_in_schema=False)
async def slack_events(request: Request) -> Response:
    slack: SlackChannel = request.app.state.slack
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return Response(status_code=413)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Response(status_code=400)
    if slack.verifier is None or not slack.verifier.is_valid(text, request.headers.get("X-Slack-Request-Timestamp", ""),
                                   request.headers.get("X-Slack-Signature", "")):
        return Response(status_code=401)
    if malformed(_parsed(text, request.headers.get("Content-Type", ""))) is not None:
        return Response(status_code=400)
    bolt_response = await run_in_threadpool(slack.app.dispatch, to_bolt_request(request, body))
    return to_starlette_response(bolt_response)


def _parsed(text: str, content_type: str) -> object:
    """The payload as Bolt will read it: JSON, or a form (``payload=`` JSON for interactions)."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = {key: values[-1] for key, values in parse_qs(text, keep_blank_values=True).items()}
            return json.loads(form["payload"]) if "payload" in form else form
        return json.loads(text)
    except (ValueError, KeyError):
        return None
