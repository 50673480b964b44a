"""The Slack app driven as Slack drives it: signed event, command and interaction payloads posted
over HTTP to the real ASGI app (``jsug-bot serve``'s, with its lifespan), its Web API client pointed
at a local fake of Slack on 127.0.0.1 (``tests/slack_fake.py``).

Every signed request's response time is kept, and the run's ack times are reported at the end
(``tests/artifacts/slack_ack.json``): Slack gives an app 3 seconds.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.channels.web.app import create_app
from bot.faq.index import FaqIndex
from bot.settings import Settings
from tests.api_support import web_settings
from tests.slack_fake import Call, FakeSlack

SIGNING_SECRET = "test-signing-secret-0123456789"
SECRETARIAT = "C0SECRETARIAT"
GENERAL = "C0GENERAL"
TEAM = FakeSlack.team_id
ARTIFACTS = Path(__file__).parent / "artifacts"
ACK_SECONDS: list[float] = []
_ids = itertools.count(1)


def slack_settings(database_url: str, fake: FakeSlack, smtp_port: int | None = None, **overrides: Any) -> Settings:
    settings = web_settings(database_url, smtp_port)
    return settings.model_copy(update={
        "slack_bot_token": SecretStr("xoxb-test-token"), "slack_signing_secret": SecretStr(SIGNING_SECRET),
        "slack_app_token": SecretStr("xapp-test-token"), "slack_secretariat_channel": SECRETARIAT,
        "slack_api_base_url": fake.base_url, "slack_post_interval_seconds": 0.2, **overrides})


def signed_headers(body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET,
                   content_type: str = "application/json") -> dict[str, str]:
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": signature or "", "Content-Type": content_type}


def dm_event(user: str, text: str, **extra: Any) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    return {"type": "message", "channel": "D" + user, "user": user, "text": text, "ts": ts, "event_ts": ts,
            "channel_type": "im", "team": TEAM, **extra}


@dataclass
class SlackHarness:
    """One running app with Slack configured, the fake Slack it talks to, and the database."""

    client: Any
    assistant: Assistant
    fake: FakeSlack
    sessions: sessionmaker[Session]
    posted: list[str] = field(default_factory=list)

    def post(self, body: str, *, content_type: str = "application/json", timestamp: int | None = None,
             secret: str = SIGNING_SECRET, headers: dict[str, str] | None = None) -> httpx.Response:
        sent = {**signed_headers(body, timestamp=timestamp, secret=secret, content_type=content_type),
                **(headers or {})}
        started = time.perf_counter()
        response = self.client.post("/slack/events", content=body.encode("utf-8"), headers=sent)
        ACK_SECONDS.append(time.perf_counter() - started)
        return response

    def event(self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None) -> httpx.Response:
        envelope = {"token": "legacy", "team_id": TEAM, "api_app_id": "A0JSUG", "event": event,
                    "type": "event_callback", "event_id": event_id or f"Ev{next(_ids):08d}{time.time_ns()}",
                    "event_time": int(time.time()), "authorizations": [{"team_id": TEAM, "user_id": self.fake.bot_user_id,
                                                                        "is_bot": True}]}
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        return self.post(json.dumps(envelope, ensure_ascii=False), headers=headers)

    def dm(self, user: str, text: str, **extra: Any) -> httpx.Response:
        return self.event(dm_event(user, text, **extra))

    def mention(self, user: str, text: str, channel: str = GENERAL, thread_ts: str | None = None) -> tuple[httpx.Response, str]:
        ts = f"{time.time():.6f}"
        event = {"type": "app_mention", "channel": channel, "user": user, "ts": ts, "event_ts": ts, "team": TEAM,
                 "text": f"<@{self.fake.bot_user_id}> {text}", **({"thread_ts": thread_ts} if thread_ts else {})}
        return self.event(event), ts

    def command(self, user: str, text: str, channel: str = GENERAL) -> tuple[httpx.Response, str]:
        name = f"cmd{next(_ids)}"
        form = {"token": "legacy", "team_id": TEAM, "team_domain": "jsug", "channel_id": channel,
                "channel_name": "general", "user_id": user, "user_name": "member", "command": "/jsug", "text": text,
                "api_app_id": "A0JSUG", "response_url": self.fake.response_url(name), "trigger_id": "1.2.3"}
        return self.post(urlencode(form), content_type="application/x-www-form-urlencoded"), name

    def click(self, posted: Call, value: str, user: str, *, ephemeral_url: str | None = None,
              forged: bool = False) -> httpx.Response:
        """Press the button with ``value`` in a message the app posted (or sent to a response_url);
        ``forged``: a button the message does not have, as a hand-made payload would send."""
        blocks = posted.args.get("blocks") or []
        block, element = ({"block_id": "forged"}, {"action_id": "jsug:forged:0", "value": value,
                                                   "text": {"type": "plain_text", "text": value}}) if forged \
            else _find_button(blocks, value)
        message = {"type": "message", "ts": posted.response.get("ts", ""), "text": posted.args.get("text", ""),
                   "blocks": blocks, "user": self.fake.bot_user_id, "bot_id": self.fake.bot_id,
                   **({"thread_ts": posted.args["thread_ts"]} if posted.args.get("thread_ts") else {})}
        channel = posted.args.get("channel", GENERAL)
        payload: dict[str, Any] = {
            "type": "block_actions", "user": {"id": user, "username": "member", "team_id": TEAM},
            "api_app_id": "A0JSUG", "token": "legacy", "trigger_id": "1.2.3", "team": {"id": TEAM, "domain": "jsug"},
            "actions": [{"type": "button", "action_id": element["action_id"], "block_id": block["block_id"],
                         "text": element["text"], "value": element["value"], "action_ts": f"{time.time():.6f}"}],
        }
        if ephemeral_url:
            payload |= {"container": {"type": "message", "is_ephemeral": True, "channel_id": channel},
                        "channel": {"id": channel}, "response_url": ephemeral_url}
        else:
            payload |= {"container": {"type": "message", "message_ts": message["ts"], "channel_id": channel,
                                      "is_ephemeral": False},
                        "channel": {"id": channel}, "message": message, "response_url": self.fake.response_url("click")}
        return self.post(urlencode({"payload": json.dumps(payload, ensure_ascii=False)}),
                         content_type="application/x-www-form-urlencoded")

    def replies_to(self, channel: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        """The app's messages in ``channel``, waiting until there are ``count``."""
        return self.fake.wait_for("chat.postMessage", count, timeout, where=lambda c: c.args.get("channel") == channel)

    def reply_containing(self, channel: str, said: str, timeout: float = 10.0) -> Call:
        """The app's first message in ``channel`` whose fallback text contains ``said``."""
        return self.fake.wait_for("chat.postMessage", 1, timeout, where=lambda c: c.args.get("channel") == channel
                                  and said in c.args.get("text", ""))[0]

    def converse(self, user: str, text: str) -> Call:
        """Send a DM and return the app's next message in that DM."""
        before = len([c for c in self.fake.calls_to("chat.postMessage") if c.args.get("channel") == "D" + user])
        assert self.dm(user, text).status_code == 200
        return self.replies_to("D" + user, before + 1)[before]

    def press(self, user: str, posted: Call, value: str, forged: bool = False) -> Call:
        """Press a button in a DM message and return the app's next message there."""
        before = len([c for c in self.fake.calls_to("chat.postMessage") if c.args.get("channel") == "D" + user])
        assert self.click(posted, value, user, forged=forged).status_code == 200
        return self.replies_to("D" + user, before + 1)[before]


def _find_button(blocks: list[dict[str, Any]], value: str) -> tuple[dict[str, Any], dict[str, Any]]:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("value") == value:
                return block, element
    raise AssertionError(f"no button {value!r} in {json.dumps(blocks, ensure_ascii=False)[:1500]}")


def button_values(call: Call) -> list[str]:
    return [e["value"] for b in call.args.get("blocks") or [] if b.get("type") == "actions" for e in b["elements"]]


def block_text(call: Call) -> str:
    """Every text of a posted message's blocks, joined (what a member reads)."""
    parts: list[str] = []
    for block in call.args.get("blocks") or []:
        if block.get("text"):
            parts.append(block["text"]["text"])
        for element in block.get("elements", []):
            if isinstance(element.get("text"), dict):
                parts.append(element["text"]["text"])
            elif isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


@pytest.fixture
def fake_slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(proxy, raising=False)  # slack_sdk ignores NO_PROXY
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def make_slack(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex,
               fake_slack: FakeSlack) -> Iterator[Callable[..., SlackHarness]]:
    """Start the app with Slack configured: ``make_slack(smtp_port=..., **settings overrides)``."""
    opened: list[tuple[TestClient, Assistant]] = []

    def make(smtp_port: int | None = None, deliver_mail: bool = False, **overrides: Any) -> SlackHarness:
        settings = slack_settings(database_url, fake_slack, smtp_port, **overrides)
        assistant = build_assistant(settings, faq=jsug_index, deliver_mail=deliver_mail)
        client = TestClient(create_app(settings, assistant=assistant), raise_server_exceptions=False)
        client.__enter__()
        opened.append((client, assistant))
        return SlackHarness(client, assistant, fake_slack, seeded_db)

    yield make
    for client, assistant in opened:
        client.__exit__(None, None, None)
        assistant.close()


@pytest.fixture
def slack(make_slack: Callable[..., SlackHarness]) -> SlackHarness:
    return make_slack()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The run's Slack ack times (the issue's figure: p99 of the time to answer Slack's request)."""
    if len(ACK_SECONDS) < 2:
        return
    ordered = sorted(ACK_SECONDS)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    figures = {"requests": len(ordered), "p50_ms": round(statistics.median(ordered) * 1000, 2),
               "p99_ms": round(p99 * 1000, 2), "max_ms": round(ordered[-1] * 1000, 2)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "slack_ack.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    terminalreporter.write_line(f"Slack acks: {figures}")
