"""Garbage at every Slack entry point (events, ``/jsug``, buttons, App Home, Socket Mode): what an
admin and a member meet when Slack, a bot or a forger sends something odd. Each gets a clear Japanese
reply or is quietly ignored: never a 5xx, never a crash in a background listener, never two answers,
never a turn stored without its reply, never a member's data for a user Slack does not vouch for."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Final
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import build_assistant
from bot.channels.slack.app import create_slack_app
from bot.channels.slack.blocks import escape
from bot.channels.slack.http import MAX_BODY_BYTES
from bot.channels.slack.socket_mode import connect
from bot.faq.index import FaqIndex
from bot.messages import message
from bot.storage.members import DEMO_CSV
from bot.storage.models import Member, Message, SecretariatRequest, SlackEvent
from tests.slack_fake import Call, FakeSlack
from tests.slack_support import (
    GENERAL,
    SECRETARIAT,
    SIGNING_SECRET,
    TEAM,
    SlackHarness,
    block_text,
    button_values,
    dm_event,
    slack_settings,
)

MEMBER: Final = "U0MEMBER1"
DM: Final = "D" + MEMBER
FAQ_QUESTION: Final = "JSUGNETのパスワードを忘れました"
OPT_OUT: Final = "メルマガを止めたい"
#: Seconds a background listener is given to do what it must not (post a reply, store a turn).
QUIET: Final = 0.4
#: A key to leave out of a payload (``None`` would send a JSON null).
DROP: Final = object()
#: The Web API methods and response URLs through which a member would see something.
SHOWING: Final = ("chat.postMessage", "chat.update", "chat.postEphemeral", "views.publish", "views.open")
JAPANESE: Final = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


# --- helpers ---------------------------------------------------------------------------------------


def _demo_strings() -> set[str]:
    """What of the demo members must never reach a user Slack does not vouch for."""
    with DEMO_CSV.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    keys = ("company", "name", "email", "login_id", "billing_contact_name", "billing_contact_email")
    return {row[key] for row in rows for key in keys if row.get(key)}


DEMO_STRINGS: Final = _demo_strings()
DEMO_ADDRESSES: Final = {s.lower() for s in DEMO_STRINGS if "@" in s}


def changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` applied; a change to ``DROP`` removes the key."""
    return {key: value for key, value in {**base, **changes}.items() if value is not DROP}


def envelope(event: Any, /, **changes: Any) -> dict[str, Any]:
    """An Events API delivery of ``event``, as Slack wraps it."""
    base = {"token": "legacy", "team_id": TEAM, "api_app_id": "A0JSUG", "event": event, "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": FakeSlack.bot_user_id, "is_bot": True}]}
    return changed(base, changes)


def send_event(slack: SlackHarness, event: Any, /, **changes: Any) -> httpx.Response:
    return slack.post(json.dumps(envelope(event, **changes), ensure_ascii=False))


def mention_event(text: str, /, **changes: Any) -> dict[str, Any]:
    ts = f"{time.time():.6f}"
    base = {"type": "app_mention", "channel": GENERAL, "user": MEMBER, "ts": ts, "event_ts": ts, "team": TEAM,
            "text": f"<@{FakeSlack.bot_user_id}> {text}"}
    return changed(base, changes)


def command_form(fake: FakeSlack, **changes: Any) -> str:
    base = {"token": "legacy", "team_id": TEAM, "team_domain": "jsug", "channel_id": GENERAL, "channel_name": "general",
            "user_id": MEMBER, "user_name": "member", "command": "/jsug", "text": FAQ_QUESTION, "api_app_id": "A0JSUG",
            "response_url": fake.response_url("command"), "trigger_id": "1.2.3"}
    return urlencode(changed(base, changes))


def button_payload(fake: FakeSlack, action: Any = None, /, **changes: Any) -> dict[str, Any]:
    """A block_actions payload for a button in an ephemeral answer (its response_url is ``click``)."""
    pressed = {"type": "button", "action_id": "jsug:r0:0", "block_id": "r0", "value": "faq:join",
               "text": {"type": "plain_text", "text": "JSUGに入会する方法を教えてください。"}, "action_ts": f"{time.time():.6f}"}
    base = {"type": "block_actions", "user": {"id": MEMBER, "username": "member", "team_id": TEAM},
            "api_app_id": "A0JSUG", "token": "legacy", "trigger_id": "1.2.3", "team": {"id": TEAM, "domain": "jsug"},
            "container": {"type": "message", "is_ephemeral": True, "channel_id": GENERAL},
            "channel": {"id": GENERAL}, "response_url": fake.response_url("click"),
            "actions": [changed(pressed, action or {})]}
    return changed(base, changes)


def payload_form(payload: Any) -> str:
    return urlencode({"payload": json.dumps(payload, ensure_ascii=False)})


def post_form(slack: SlackHarness, form: str) -> httpx.Response:
    return slack.post(form, content_type="application/x-www-form-urlencoded")


def sign(body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 signature of raw bytes (``signed_headers`` signs text only)."""
    stamp = str(timestamp if timestamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def post_bytes(slack: SlackHarness, body: bytes, headers: dict[str, str],
               content_type: str = "application/json") -> httpx.Response:
    return slack.client.post("/slack/events", content=body, headers={"Content-Type": content_type, **headers})


def shown(fake: FakeSlack) -> list[Call]:
    """Every call through which someone would see something: posts, updates, views, response URLs."""
    return [c for c in fake.calls if c.method in SHOWING or c.method.startswith("response_url:")]


def stored(slack: SlackHarness) -> list[Message]:
    with slack.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


def count(slack: SlackHarness, table: type[Any]) -> int:
    with slack.sessions() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def settled(slack: SlackHarness) -> list[Call]:
    """What was shown once the background listener is done: after ``QUIET``, and where a turn was
    stored, once its reply went out (the reply is sent just after the turn's commit)."""
    time.sleep(QUIET)
    deadline = time.monotonic() + 3
    while stored(slack) and not shown(slack.fake) and time.monotonic() < deadline:
        time.sleep(0.05)
    return shown(slack.fake)


def said_to(calls: list[Call]) -> str:
    """Everything the calls showed: fallback texts and block texts."""
    return "\n".join(f"{c.args.get('text') or ''}\n{block_text(c)}" for c in calls)


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {check}")
        time.sleep(0.02)


def start(slack: SlackHarness, user: str, said: str, handler: str) -> Call:
    """Ask for an action in a DM; where the assistant first shows the FAQ answer, press its button."""
    reply = slack.converse(user, said)
    if f"start:{handler}" in button_values(reply):
        reply = slack.press(user, reply, f"start:{handler}")
    return reply


def crashes(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What crashed so far: Bolt logs a listener's exception at ERROR ("Failed to run an internal
    function"), the web app an unexpected one ("unexpected error in a web request")."""
    return [f"{r.name}: {r.getMessage()[:200]}" for phase in ("call", "teardown") for r in caplog.get_records(phase)
            if r.levelno >= logging.ERROR and r.name.startswith(("bot", "slack_bolt"))]


def assert_handled(caplog: pytest.LogCaptureFixture, response: httpx.Response | None = None) -> None:
    """The request got no 5xx and nothing crashed, in the request or in a background listener. The
    log is cleared afterwards, so that a crash is reported once, by the test, not again at teardown."""
    crashed = crashes(caplog)
    caplog.clear()
    status = response.status_code if response is not None else None
    assert not crashed and (status is None or status < 500), f"HTTP {status}; crashed:\n" + "\n".join(crashed)


@pytest.fixture(autouse=True)
def nothing_crashed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A safety net for every test: no listener crashed after the test's own checks either."""
    yield
    crashed = crashes(caplog)
    assert not crashed, "a Slack entry point crashed:\n" + "\n".join(crashed)


# --- the admin connects Slack: only Slack's signed requests get in ---------------------------------


def _forged(body: bytes) -> dict[str, str]:
    return {**sign(body), "X-Slack-Signature": "v0=" + "0" * 64}


FAULTS: Final[dict[str, Callable[[bytes], dict[str, str]]]] = {
    "forged": _forged,
    "missing": lambda body: {"X-Slack-Request-Timestamp": sign(body)["X-Slack-Request-Timestamp"]},
    "made with another app's secret": lambda body: sign(body, secret="another-apps-signing-secret"),
    "six minutes old": lambda body: sign(body, timestamp=int(time.time()) - 6 * 60),
    "ten minutes ahead": lambda body: sign(body, timestamp=int(time.time()) + 10 * 60),
}


@pytest.mark.parametrize("fault", FAULTS, ids=str)
def test_an_event_a_command_and_a_click_without_a_valid_signature_get_401_and_nothing_runs(
        slack: SlackHarness, fault: str) -> None:
    slack.fake.add_user(MEMBER, "yamada@example.com")
    bodies = [(json.dumps(envelope(dm_event(MEMBER, FAQ_QUESTION)), ensure_ascii=False), "application/json"),
              (command_form(slack.fake), "application/x-www-form-urlencoded"),
              (payload_form(button_payload(slack.fake)), "application/x-www-form-urlencoded")]

    statuses = [post_bytes(slack, body.encode(), FAULTS[fault](body.encode()), kind).status_code for body, kind in bodies]

    assert statuses == [401, 401, 401]
    time.sleep(QUIET)
    assert slack.fake.calls == []  # not even auth.test or users.info
    assert stored(slack) == [] and count(slack, SlackEvent) == 0


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b'{"type": "event_callback", "event": null}',
                                  b"payload=%7B", b'{"event": {"user": 5}}'], ids=lambda b: b.decode())
def test_a_garbage_body_without_a_valid_signature_is_refused_before_it_is_read(
        slack: SlackHarness, body: bytes, caplog: pytest.LogCaptureFixture) -> None:
    response = post_bytes(slack, body, _forged(body))

    assert_handled(caplog, response)
    assert response.status_code in (400, 401), response.text
    assert slack.fake.calls == []


def test_a_signed_body_that_is_not_utf8_is_a_400(slack: SlackHarness) -> None:
    body = b'{"type": "event_callback", "event": {"text": "\xff\xfe\x81"}}'

    assert post_bytes(slack, body, sign(body)).status_code == 400
    assert slack.fake.calls == [] and count(slack, SlackEvent) == 0


def test_a_signed_body_over_one_megabyte_is_a_413_and_one_of_exactly_a_megabyte_is_answered(
        slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)

    def padded_to(size: int) -> bytes:
        body = json.dumps(envelope(dm_event(MEMBER, FAQ_QUESTION), padding=""), ensure_ascii=False).encode()
        return body.replace(b'"padding": ""', b'"padding": "' + b"x" * (size - len(body)) + b'"')

    too_big = padded_to(MAX_BODY_BYTES + 1)
    assert len(too_big) == MAX_BODY_BYTES + 1
    assert post_bytes(slack, too_big, sign(too_big)).status_code == 413
    time.sleep(QUIET)
    assert slack.fake.calls == [] and stored(slack) == []

    just_fits = padded_to(MAX_BODY_BYTES)
    assert len(just_fits) == MAX_BODY_BYTES
    assert post_bytes(slack, just_fits, sign(just_fits)).status_code == 200
    [answer] = slack.replies_to(DM)
    assert "パスワード" in block_text(answer)


# --- a member writes something odd -----------------------------------------------------------------


@pytest.mark.parametrize("said", [":smile:", "😀", ":+1::skin-tone-2: 🙇‍♂️🙇‍♂️"])
def test_a_message_of_only_emoji_gets_one_japanese_reply(slack: SlackHarness, said: str) -> None:
    slack.fake.add_user(MEMBER)

    assert slack.dm(MEMBER, said).status_code == 200

    [reply] = slack.replies_to(DM)
    assert JAPANESE.search(block_text(reply)) and reply.args["text"]
    assert message("internal_error") not in said_to([reply])
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)


@pytest.mark.parametrize("said", ["   ", "\n\t\n", "\u0000\u0007", "&nbsp;\u3000", "<@U0SOMEONE>"],
                         ids=["spaces", "newlines and tabs", "control characters", "no-break and ideographic spaces",
                              "only a mention of someone"])
def test_a_message_with_nothing_to_read_gets_the_empty_question_reply(slack: SlackHarness, said: str) -> None:
    slack.fake.add_user(MEMBER)

    assert slack.dm(MEMBER, said).status_code == 200

    [reply] = slack.replies_to(DM)
    assert block_text(reply) == message("empty_question")
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)


FILE: Final = {"id": "F0FILE001", "name": "申込書.pdf", "title": "申込書.pdf", "mimetype": "application/pdf",
               "filetype": "pdf", "size": 12345, "url_private": "https://files.slack.com/files-pri/T0JSUG-F0FILE001/a.pdf"}


@pytest.mark.parametrize("text", ["", "   ", DROP, f"<@{FakeSlack.bot_user_id}>"], ids=["empty", "blank", "no text",
                                                                                       "only a mention"])
def test_a_file_shared_without_text_gets_the_file_not_read_message(slack: SlackHarness, text: Any) -> None:
    slack.fake.add_user(MEMBER)
    event = changed(dm_event(MEMBER, ""), {"subtype": "file_share", "files": [FILE], "upload": False, "text": text})

    assert send_event(slack, event).status_code == 200

    [reply] = slack.replies_to(DM)
    assert block_text(reply) == message("slack_file_not_read")
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)


def test_a_file_shared_with_a_question_is_answered_as_that_question(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    event = dm_event(MEMBER, FAQ_QUESTION, subtype="file_share", files=[FILE], upload=False)

    assert send_event(slack, event).status_code == 200

    [answer] = slack.replies_to(DM)
    assert "パスワード" in block_text(answer)
    assert message("slack_file_not_read") not in block_text(answer)
    assert [m.text for m in stored(slack) if m.direction == "in"] == [FAQ_QUESTION]
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)


LONG: Final = FAQ_QUESTION + "。" + "とても長い説明です。" * 4000  # 40,000 characters and more


@pytest.mark.parametrize("entry", ["direct message", "mention", "/jsug"])
def test_a_40000_character_message_is_answered_with_the_too_long_note_and_stored_cut_to_4000(
        slack: SlackHarness, entry: str) -> None:
    slack.fake.add_user(MEMBER)
    assert len(LONG) >= 40_000
    if entry == "direct message":
        assert slack.dm(MEMBER, LONG).status_code == 200
        [answer] = slack.replies_to(DM)
    elif entry == "mention":
        response, _ = slack.mention(MEMBER, LONG)
        assert response.status_code == 200
        [answer] = slack.replies_to(GENERAL)
    else:
        response, name = slack.command(MEMBER, LONG)
        assert response.status_code == 200
        [answer] = slack.fake.wait_for(f"response_url:{name}")

    assert message("message_too_long", limit=4000) in block_text(answer)
    said = [m.text for m in stored(slack) if m.direction == "in"]
    assert len(said) == 1 and len(said[0]) <= 4000 and said[0].startswith(FAQ_QUESTION)
    time.sleep(QUIET)
    assert len(shown(slack.fake)) == 1


@pytest.mark.parametrize("hostile", ["<script>alert(1)</script>", "'; DROP TABLE members; --",
                                     "<!channel> <@U0ADMIN> <https://evil.example|JSUG公式> &amp;"])
def test_html_script_and_sql_come_back_escaped_in_blocks_and_leave_the_database_intact(
        slack: SlackHarness, hostile: str) -> None:
    slack.fake.add_user(MEMBER)
    members = count(slack, Member)

    offer = slack.converse(MEMBER, escape(hostile))  # Slack escapes &, < and > in what a member types
    assert "start:secretariat_request" in button_values(offer), block_text(offer)
    confirm = slack.press(MEMBER, offer, "start:secretariat_request")
    assert escape(hostile) in block_text(confirm)
    done = slack.press(MEMBER, confirm, "confirm")
    assert "受付番号" in block_text(done)
    [post] = slack.replies_to(SECRETARIAT)

    for call in (offer, confirm, done, post):
        for raw in ("<script", "<!channel>", "<@U0ADMIN>", "<https://evil"):
            assert raw not in block_text(call)
    assert escape(hostile) in block_text(post)
    assert count(slack, Member) == members
    assert stored(slack)[0].text == hostile  # kept as the member's words, as data
    with slack.sessions() as session:
        assert hostile in session.scalars(select(SecretariatRequest)).one().details.values()


# --- what is not a member speaking to the app is ignored -------------------------------------------


def _edit() -> dict[str, Any]:
    return {"type": "message", "subtype": "message_changed", "hidden": True, "channel": DM, "channel_type": "im",
            "ts": "1764600001.000200", "event_ts": "1764600001.000200",
            "message": {"type": "message", "user": MEMBER, "text": FAQ_QUESTION, "ts": "1764600001.000100",
                        "edited": {"user": MEMBER, "ts": "1764600001.000200"}},
            "previous_message": {"type": "message", "user": MEMBER, "text": "パスワード", "ts": "1764600001.000100"}}


def _deletion() -> dict[str, Any]:
    return {"type": "message", "subtype": "message_deleted", "hidden": True, "channel": DM, "channel_type": "im",
            "ts": "1764600001.000300", "deleted_ts": "1764600001.000100", "event_ts": "1764600001.000300",
            "previous_message": {"type": "message", "user": MEMBER, "text": FAQ_QUESTION, "ts": "1764600001.000100"}}


NOT_SPOKEN: Final[dict[str, Callable[[], dict[str, Any]]]] = {
    "an edit": _edit,
    "a deletion": _deletion,
    "a channel join": lambda: dm_event(MEMBER, f"<@{MEMBER}> さんがチャンネルに参加しました", subtype="channel_join",
                                       channel=GENERAL, channel_type="channel"),
    "a join in the DM": lambda: dm_event(MEMBER, f"<@{MEMBER}> has joined", subtype="channel_join"),
    "a bot_message": lambda: changed(dm_event(MEMBER, FAQ_QUESTION, subtype="bot_message", bot_id="B0OTHER",
                                              username="other-bot"), {"user": DROP}),
    "another app's message with a user": lambda: dm_event("U0OTHERBOT", FAQ_QUESTION, bot_id="B0OTHER",
                                                          app_id="A0OTHER"),
    "the app's own message": lambda: dm_event(FakeSlack.bot_user_id, FAQ_QUESTION),
    "the app's own bot_id": lambda: dm_event("U0SOMEONE", FAQ_QUESTION, bot_id=FakeSlack.bot_id),
    "the app's own mention": lambda: mention_event(FAQ_QUESTION, user=FakeSlack.bot_user_id),
    "a bot's mention": lambda: mention_event(FAQ_QUESTION, bot_id="B0OTHER"),
}


@pytest.mark.parametrize("kind", NOT_SPOKEN, ids=str)
def test_edits_deletions_joins_bots_and_the_apps_own_messages_are_ignored(slack: SlackHarness, kind: str) -> None:
    slack.fake.add_user(MEMBER)

    assert send_event(slack, NOT_SPOKEN[kind]()).status_code == 200

    slack.fake.assert_no_more("chat.postMessage", 0, wait=QUIET)
    assert [c.method for c in slack.fake.calls if c.method != "auth.test"] == []  # no users.info look-up either
    assert stored(slack) == []


@pytest.mark.parametrize("channel, channel_type", [(GENERAL, "channel"), ("G0PRIVATE", "group"),
                                                   ("G0MPIM", "mpim"), (SECRETARIAT, "channel")])
def test_a_channel_message_that_does_not_mention_the_app_is_ignored(slack: SlackHarness, channel: str,
                                                                   channel_type: str) -> None:
    slack.fake.add_user(MEMBER)

    assert send_event(slack, dm_event(MEMBER, FAQ_QUESTION, channel=channel, channel_type=channel_type)).status_code == 200

    slack.fake.assert_no_more("chat.postMessage", 0, wait=QUIET)
    assert stored(slack) == []


def test_a_reply_in_a_secretariat_thread_that_belongs_to_no_request_is_ignored(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    event = dm_event(MEMBER, "ご回答します", channel=SECRETARIAT, channel_type="channel", thread_ts="1764600000.000100")

    assert send_event(slack, event).status_code == 200

    slack.fake.assert_no_more("chat.postMessage", 0, wait=QUIET)
    assert stored(slack) == []


# --- a Slack user who cannot be tied to a member ---------------------------------------------------


def _rate_limited(fake: FakeSlack) -> None:
    fake.ratelimit_next("users.info", retry_after=1)  # then user_not_found: no such user in the fake


def _failing(fake: FakeSlack) -> None:
    fake.add_user(MEMBER, "yamada@example.com")  # Slack would vouch for a demo member, were it asked
    fake.fail_next("users.info", "internal_error", times=10)


#: How each user meets the app; a demo member's address wherever Slack shows one.
UNVOUCHED: Final[dict[str, Callable[[FakeSlack], object]]] = {
    "unknown to Slack": lambda fake: None,
    "address not confirmed": lambda fake: fake.add_user(MEMBER, "yamada@example.com", confirmed=False),
    "deleted": lambda fake: fake.add_user(MEMBER, "yamada@example.com", deleted=True),
    "a bot": lambda fake: fake.add_user(MEMBER, "yamada@example.com", is_bot=True),
    "of another workspace": lambda fake: fake.add_user(MEMBER, "yamada@example.com", team_id="T0OTHER"),
    "users.info fails": _failing,
    "users.info rate-limited": _rate_limited,
}


@pytest.mark.parametrize("user", UNVOUCHED, ids=str)
def test_a_user_slack_does_not_vouch_for_gets_faq_answers_but_no_member_data(slack: SlackHarness, user: str) -> None:
    UNVOUCHED[user](slack.fake)

    answer = slack.converse(MEMBER, FAQ_QUESTION)
    assert "パスワード" in block_text(answer)
    refused = start(slack, MEMBER, OPT_OUT, "newsletter_optout")
    assert block_text(refused).strip() == message("identity_slack_unlinked")

    every = shown(slack.fake)
    leaked = sorted(s for s in DEMO_STRINGS if s in said_to(every))
    assert not leaked, f"member data shown to a user Slack does not vouch for: {leaked}"
    if user == "users.info rate-limited":
        looked_up = slack.fake.calls_to("users.info")
        assert looked_up[1].at - looked_up[0].at >= 0.9  # the SDK waited for Retry-After, then asked again
    with slack.sessions() as session:
        member = session.scalars(select(Member).where(Member.login_id == "demo-yamada")).one()
        assert member.preferences.newsletter is True


# --- malformed payloads with a valid signature -----------------------------------------------------


@pytest.mark.parametrize("body, content_type", [
    ("{", "application/json"), ("[1, 2]", "application/json"), ("null", "application/json"),
    ('"event_callback"', "application/json"), ("", "application/json"), ("{}", "application/json"),
    ("payload=%7B", "application/x-www-form-urlencoded"), ("payload=%5B%5D", "application/x-www-form-urlencoded"),
    ("a=b&c", "application/x-www-form-urlencoded"),
], ids=lambda v: v if "/" not in v else v.split("/")[1][:4])
def test_a_signed_body_that_is_not_a_json_object_gets_a_4xx_and_no_reply(
        slack: SlackHarness, body: str, content_type: str, caplog: pytest.LogCaptureFixture) -> None:
    response = slack.post(body, content_type=content_type)

    time.sleep(QUIET)
    assert_handled(caplog, response)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert shown(slack.fake) == [] and stored(slack) == []


@pytest.mark.parametrize("event", [DROP, None, "message", ["message"], {}, {"type": ["message"]}, {"type": "message"}],
                         ids=["no event", "null", "a string", "a list", "empty", "type a list", "a bare message"])
def test_an_event_callback_without_a_usable_event_gets_200_or_4xx_and_no_reply(
        slack: SlackHarness, event: Any, caplog: pytest.LogCaptureFixture) -> None:
    response = send_event(slack, None, event=event)

    time.sleep(QUIET)
    assert_handled(caplog, response)
    assert shown(slack.fake) == [] and stored(slack) == []


@pytest.mark.parametrize("changes", [
    {"user": DROP}, {"user": 5}, {"user": {"id": MEMBER}}, {"user": ""},
    {"channel": DROP}, {"channel": None}, {"channel": 5}, {"channel": {"id": DM}},
    {"text": DROP}, {"text": None}, {"text": 5}, {"text": {"type": "mrkdwn"}}, {"text": ["a"]},
    {"subtype": ["file_share"]}, {"subtype": {"a": 1}}, {"subtype": 5},
    {"channel_type": 5}, {"channel_type": DROP}, {"ts": {"a": 1}}, {"thread_ts": ["1.2"]},
    {"files": "F0FILE001", "text": ""}, {"files": [None], "text": ""},
], ids=lambda c: ",".join(f"{k}={'absent' if v is DROP else json.dumps(v, ensure_ascii=False)}" for k, v in c.items()))
def test_a_direct_message_with_missing_or_mistyped_fields_is_answered_in_the_dm_or_ignored(
        slack: SlackHarness, changes: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)

    response = send_event(slack, changed(dm_event(MEMBER, FAQ_QUESTION), changes))

    replies = settled(slack)
    assert_handled(caplog, response)
    assert len(replies) <= 1, said_to(replies)
    for reply in replies:
        assert (reply.method, reply.args.get("channel"), reply.args.get("thread_ts")) == ("chat.postMessage", DM, None)
        assert JAPANESE.search(block_text(reply))
    if not replies:
        assert stored(slack) == [], "a turn was stored that no one was answered for"


@pytest.mark.parametrize("changes", [
    {"text": f"<@{FakeSlack.bot_user_id}>"}, {"text": DROP}, {"text": 5}, {"text": {"a": 1}},
    {"user": DROP}, {"user": 5}, {"channel": DROP}, {"channel": {"id": GENERAL}},
    {"thread_ts": {"ts": "1.2"}}, {"thread_ts": 5}, {"channel": DM},
], ids=lambda c: ",".join(f"{k}={'absent' if v is DROP else json.dumps(v, ensure_ascii=False)}" for k, v in c.items()))
def test_a_mention_with_missing_or_mistyped_fields_is_answered_in_its_thread_or_ignored(
        slack: SlackHarness, changes: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)
    event = mention_event(FAQ_QUESTION, **changes)

    response = send_event(slack, event)

    replies = settled(slack)
    assert_handled(caplog, response)
    assert len(replies) <= 1, said_to(replies)
    for reply in replies:
        assert (reply.args.get("channel"), reply.args.get("thread_ts")) == (GENERAL, event["ts"])
        assert JAPANESE.search(block_text(reply))
    if not replies:
        assert stored(slack) == [], "a turn was stored that no one was answered for"


@pytest.mark.parametrize("event", [
    {"type": "app_home_opened", "user": MEMBER, "tab": "messages"}, {"type": "app_home_opened", "tab": "home"},
    {"type": "app_home_opened", "user": 5, "tab": "home"}, {"type": "app_home_opened", "user": None, "tab": "home"},
    {"type": "app_home_opened", "user": MEMBER, "tab": ["home"]}, {"type": "app_home_opened", "user": MEMBER, "tab": 5},
], ids=["messages tab", "no user", "user a number", "user null", "tab a list", "tab a number"])
def test_an_app_home_event_with_missing_or_mistyped_fields_publishes_nothing(
        slack: SlackHarness, event: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)

    response = send_event(slack, {"channel": "D0HOME", "event_ts": f"{time.time():.6f}", **event},
                          team_id=TEAM)

    time.sleep(QUIET)
    assert_handled(caplog, response)
    assert shown(slack.fake) == []


@pytest.mark.parametrize("changes, action", [
    ({"actions": DROP}, None), ({"actions": None}, None), ({"actions": []}, None), ({"actions": "jsug:r0:0"}, None),
    ({"actions": [5]}, None), ({"actions": [{}]}, None), ({}, {"action_id": 5}),
    ({}, {"value": 5}), ({}, {"value": None}), ({}, {"value": {"a": 1}}), ({}, {"value": ""}),
    ({"user": DROP}, None), ({"user": MEMBER}, None), ({"user": {"id": 5}}, None),
    ({"team": DROP, "user": {"id": MEMBER}}, None),
], ids=lambda v: "-" if v is None else ",".join(
    f"{k}={'absent' if x is DROP else json.dumps(x, ensure_ascii=False)}" for k, x in v.items()) or "base")
def test_a_button_payload_with_missing_or_mistyped_actions_or_user_changes_nothing(
        slack: SlackHarness, changes: dict[str, Any], action: dict[str, Any] | None, caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)

    response = post_form(slack, payload_form(button_payload(slack.fake, action, **changes)))

    time.sleep(QUIET)
    assert_handled(caplog, response)
    assert shown(slack.fake) == [] and stored(slack) == []


@pytest.mark.parametrize("label", ["ラベル", 5, None, ["a"]], ids=["a string", "a number", "null", "a list"])
def test_a_button_whose_label_is_not_an_object_is_still_answered_once(
        slack: SlackHarness, label: Any, caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)

    def answers() -> list[Call]:
        return [c for c in slack.fake.calls_to("response_url:click") if not c.args.get("replace_original")]

    response = post_form(slack, payload_form(button_payload(slack.fake, {"text": label})))

    wait_until(lambda: bool(answers() or crashes(caplog)))
    time.sleep(QUIET)
    assert_handled(caplog, response)
    [answer] = answers()
    assert "入会" in block_text(answer)


@pytest.mark.parametrize("value", ["abc", "", "999999", "9" * 40, None])
def test_a_secretariat_button_whose_value_is_no_request_changes_nothing(
        slack: SlackHarness, value: Any, caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user("U0STAFF1")
    payload = button_payload(slack.fake, {"action_id": "secretariat:take", "block_id": "request:1", "value": value},
                             user={"id": "U0STAFF1", "team_id": TEAM}, channel={"id": SECRETARIAT},
                             container={"type": "message", "channel_id": SECRETARIAT, "message_ts": "1764600000.000100",
                                        "is_ephemeral": False},
                             message={"type": "message", "ts": "1764600000.000100", "text": "お問い合わせ #1",
                                      "user": FakeSlack.bot_user_id, "bot_id": FakeSlack.bot_id})

    response = post_form(slack, payload_form(payload))

    time.sleep(QUIET)
    assert_handled(caplog, response)
    assert shown(slack.fake) == [] and count(slack, SecretariatRequest) == 0


@pytest.mark.parametrize("changes", [
    {"user_id": DROP}, {"user_id": ""}, {"response_url": DROP}, {"response_url": ""}, {"team_id": DROP},
    {"user_id": DROP, "response_url": DROP, "team_id": DROP, "channel_id": DROP},
], ids=lambda c: ",".join(f"{k}={'absent' if v is DROP else repr(v)}" for k, v in c.items()))
def test_a_slash_command_without_user_or_response_url_is_acknowledged_and_ignored(
        slack: SlackHarness, changes: dict[str, Any]) -> None:
    slack.fake.add_user(MEMBER)

    assert post_form(slack, command_form(slack.fake, **changes)).status_code == 200

    time.sleep(QUIET)
    assert shown(slack.fake) == [] and stored(slack) == []
    assert not slack.fake.calls_to("users.info")


def test_a_slash_command_without_text_gets_the_usage_help(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)

    assert post_form(slack, command_form(slack.fake, text=DROP)).status_code == 200

    [help_text] = slack.fake.wait_for("response_url:command")
    assert block_text(help_text) == message("slack_command_help")
    time.sleep(QUIET)
    assert len(shown(slack.fake)) == 1 and stored(slack) == []


@pytest.mark.parametrize("url", ["not a url", "ftp://files.example/x", "http://"])
def test_a_slash_command_with_an_unusable_response_url_is_stored_and_logged_not_crashed(
        slack: SlackHarness, url: str, caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER)

    assert post_form(slack, command_form(slack.fake, response_url=url)).status_code == 200

    wait_until(lambda: bool(crashes(caplog)) or any("response_url" in r.getMessage() for r in caplog.records
                                                    if r.name == "bot.slack"))
    assert_handled(caplog)
    assert [m.direction for m in stored(slack)][:2] == ["in", "out"]


# --- Slack's Web API fails while the app answers ---------------------------------------------------


def test_a_failed_chat_post_message_is_acknowledged_logged_without_the_address_and_the_turn_stays_stored(
        slack: SlackHarness, caplog: pytest.LogCaptureFixture) -> None:
    slack.fake.add_user(MEMBER, "yamada@example.com")  # a demo member's address, to show it is not logged
    slack.fake.fail_next("chat.postMessage", "channel_not_found")

    assert slack.dm(MEMBER, FAQ_QUESTION).status_code == 200

    [failed] = slack.fake.wait_for("chat.postMessage")
    assert failed.response == {"ok": False, "error": "channel_not_found"}

    def warned() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno == logging.WARNING and "chat.postMessage" in r.getMessage()]

    wait_until(lambda: bool(warned()))
    assert "channel_not_found" in warned()[0].getMessage()
    logged = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records).lower()
    assert not [a for a in DEMO_ADDRESSES if a in logged]
    assert [m.direction for m in stored(slack)][:2] == ["in", "out"]
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)  # an API error is not retried


def test_a_rate_limited_chat_post_message_is_retried_after_retry_after_and_answered_once(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    slack.fake.ratelimit_next("chat.postMessage", retry_after=1)

    assert slack.dm(MEMBER, FAQ_QUESTION).status_code == 200

    limited, answered = slack.fake.wait_for("chat.postMessage", 2, timeout=5)
    assert limited.response["ok"] is False and answered.response["ok"] is True
    assert answered.at - limited.at >= 0.9
    assert answered.args["blocks"] == limited.args["blocks"]
    slack.fake.assert_no_more("chat.postMessage", 2, wait=QUIET)
    assert [m.direction for m in stored(slack)].count("in") == 1


# --- Slack delivers one event twice ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["concurrently", "as a retry after the answer"])
def test_the_same_direct_message_delivered_twice_is_answered_once(slack: SlackHarness, how: str) -> None:
    slack.fake.add_user(MEMBER)
    body = json.dumps(envelope(dm_event(MEMBER, FAQ_QUESTION), event_id="Ev0TWICE0001"), ensure_ascii=False)
    statuses: list[int] = []

    if how == "concurrently":
        barrier = threading.Barrier(2)

        def deliver() -> None:
            barrier.wait()
            statuses.append(slack.post(body).status_code)

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    else:
        statuses.append(slack.post(body).status_code)
        slack.replies_to(DM)
        statuses.append(slack.post(body, headers={"X-Slack-Retry-Num": "1",
                                                  "X-Slack-Retry-Reason": "http_timeout"}).status_code)

    assert statuses == [200, 200]
    slack.replies_to(DM)
    slack.fake.assert_no_more("chat.postMessage", 1, wait=QUIET)
    assert [m.direction for m in stored(slack)].count("in") == 1


# --- Socket Mode: the same listeners, no signature -------------------------------------------------


def test_garbage_over_socket_mode_crashes_no_listener_and_the_connection_keeps_answering(
        database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex, fake_slack: FakeSlack,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = slack_settings(database_url, fake_slack, slack_signing_secret=None)
    assistant = build_assistant(settings, faq=jsug_index, deliver_mail=False)
    channel = create_slack_app(settings, assistant, socket_mode=True)
    fake_slack.add_user(MEMBER)
    handler = connect(channel, settings)
    garbage: list[dict[str, Any]] = [
        envelope(None), envelope("message"),
        envelope({"type": "message", "channel_type": "im", "channel": DM, "user": 5, "text": FAQ_QUESTION}),
        envelope(dm_event(MEMBER, FAQ_QUESTION) | {"text": {"a": 1}}),
    ]
    try:
        fake_slack.wait_for_socket_client()
        for index, payload in enumerate(garbage):
            fake_slack.socket_send({"envelope_id": f"env-bad-{index}", "type": "events_api", "payload": payload,
                                    "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""})
        fake_slack.socket_send({"envelope_id": "env-bad-click", "type": "interactive", "accepts_response_payload": True,
                                "payload": button_payload(fake_slack, None, actions=None)})
        fake_slack.socket_send({"envelope_id": "env-good", "type": "events_api",
                                "payload": envelope(dm_event(MEMBER, FAQ_QUESTION)), "accepts_response_payload": False,
                                "retry_attempt": 0, "retry_reason": ""})
        fake_slack.wait_for_socket_ack("env-good")
        [answer] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == DM)
        assert "パスワード" in block_text(answer)
        fake_slack.assert_no_more("chat.postMessage", 1, wait=QUIET)
        assert_handled(caplog)
    finally:
        handler.close()
        channel.close()
        assistant.close()
