"""How Slack's requests arrive and are answered: within Slack's 3 seconds, once per event however
often Slack delivers it (retries, two server processes), only with a valid signature; over HTTP in
``jsug-bot serve`` and over Socket Mode in ``jsug-bot slack``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import build_assistant
from bot.channels.slack.app import SlackNotConfiguredError, create_slack_app
from bot.channels.slack.socket_mode import connect
from bot.faq.index import FaqIndex
from bot.storage.models import Message, SlackEvent
from tests.api_support import web_settings
from tests.conftest import TEST_SECRET
from tests.mail_support import free_port
from tests.slack_fake import FakeSlack
from tests.slack_support import SIGNING_SECRET, TEAM, SlackHarness, dm_event, signed_headers, slack_settings

MEMBER = "U0MEMBER2"
JSUG_BOT = str(Path(sys.executable).with_name("jsug-bot"))


def envelope(event: dict, event_id: str) -> str:
    return json.dumps({"token": "legacy", "team_id": TEAM, "api_app_id": "A0JSUG", "event": event,
                       "type": "event_callback", "event_id": event_id, "event_time": int(time.time())},
                      ensure_ascii=False)


def stored_messages(sessions: sessionmaker[Session], direction: str | None = None) -> int:
    query = select(func.count()).select_from(Message)
    if direction is not None:
        query = query.where(Message.direction == direction)
    with sessions() as session:
        return session.scalar(query) or 0


def test_an_event_slack_retries_is_answered_once(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    event = dm_event(MEMBER, "年会費はいくらですか")
    assert slack.event(event, event_id="Ev0RETRY01").status_code == 200
    slack.replies_to("D" + MEMBER)
    answered = stored_messages(slack.sessions)
    assert answered >= 2  # the question and what the assistant said
    for attempt in (1, 2, 3):
        assert slack.event(event, event_id="Ev0RETRY01", retry_num=attempt).status_code == 200
    slack.fake.assert_no_more("chat.postMessage", 1, wait=0.6)
    assert stored_messages(slack.sessions) == answered


def test_an_event_claimed_by_a_process_that_died_is_processed_when_slack_retries(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    with slack.sessions.begin() as session:  # claimed ten minutes ago, never finished
        session.add(SlackEvent(event_id="Ev0LOST001", claimed_at=datetime.now(timezone.utc) - timedelta(minutes=10)))
    assert slack.event(dm_event(MEMBER, "年会費はいくらですか"), event_id="Ev0LOST001", retry_num=1).status_code == 200
    slack.replies_to("D" + MEMBER)
    deadline = time.monotonic() + 5
    while True:
        with slack.sessions() as session:
            if session.get(SlackEvent, "Ev0LOST001").done_at is not None:
                break
        assert time.monotonic() < deadline, "the event was not marked processed"
        time.sleep(0.05)


@pytest.mark.parametrize("case", ["forged", "other secret", "missing", "stale"])
def test_a_request_without_a_valid_signature_gets_401_and_nothing_runs(slack: SlackHarness, case: str) -> None:
    slack.fake.add_user(MEMBER)
    body = envelope(dm_event(MEMBER, "年会費はいくらですか"), "Ev0FORGED1")
    headers = signed_headers(body, secret="another-secret" if case == "other secret" else SIGNING_SECRET,
                             timestamp=int(time.time()) - 6 * 60 if case == "stale" else None)
    if case == "forged":
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
    if case == "missing":
        del headers["X-Slack-Signature"]
    response = slack.client.post("/slack/events", content=body.encode(), headers=headers)
    assert response.status_code == 401
    time.sleep(0.3)
    assert slack.fake.calls == []
    assert stored_messages(slack.sessions) == 0
    with slack.sessions() as session:
        assert session.scalars(select(SlackEvent)).all() == []


def test_every_ack_comes_well_within_slacks_three_seconds(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    slack.fake.ratelimit_next("users.info", retry_after=1)  # slow work after the ack does not delay it
    timings = []
    for said in ("年会費はいくらですか", "パスワードを忘れました", "入会したい"):
        started = time.perf_counter()
        assert slack.dm(MEMBER, said).status_code == 200
        timings.append(time.perf_counter() - started)
    assert max(timings) < 1.0, timings
    slack.replies_to("D" + MEMBER, 3, timeout=15)


def test_serve_without_slack_settings_has_no_slack_route(make_web: Callable, caplog: pytest.LogCaptureFixture) -> None:
    web = make_web()
    response = web.client.post("/slack/events", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 404
    assert any("Slack is not configured" in r.getMessage() for r in caplog.records)


def test_the_slack_app_without_its_settings_says_which_one_is_missing(
        database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex, fake_slack: FakeSlack) -> None:
    assistant = build_assistant(web_settings(database_url), faq=jsug_index, deliver_mail=False)
    try:
        with pytest.raises(SlackNotConfiguredError, match="SLACK_BOT_TOKEN"):
            create_slack_app(web_settings(database_url), assistant)
        without_app_token = slack_settings(database_url, fake_slack, slack_app_token=None)
        with pytest.raises(SlackNotConfiguredError, match="SLACK_APP_TOKEN"):
            create_slack_app(without_app_token, assistant, socket_mode=True)
        without_secret = slack_settings(database_url, fake_slack, slack_signing_secret=None)
        with pytest.raises(SlackNotConfiguredError, match="SLACK_SIGNING_SECRET"):
            create_slack_app(without_secret, assistant)
    finally:
        assistant.close()


def test_socket_mode_connects_acknowledges_an_event_and_answers_it(
        database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex, fake_slack: FakeSlack) -> None:
    settings = slack_settings(database_url, fake_slack, slack_signing_secret=None)
    assistant = build_assistant(settings, faq=jsug_index, deliver_mail=False)
    slack = create_slack_app(settings, assistant, socket_mode=True)
    fake_slack.add_user(MEMBER)
    handler = connect(slack, settings)
    try:
        fake_slack.wait_for_socket_client()
        payload = json.loads(envelope(dm_event(MEMBER, "年会費はいくらですか"), "Ev0SOCKET1"))
        fake_slack.socket_send({"envelope_id": "env-1", "type": "events_api", "accepts_response_payload": False,
                                "retry_attempt": 0, "retry_reason": "", "payload": payload})
        fake_slack.wait_for_socket_ack("env-1")
        [answer] = fake_slack.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == "D" + MEMBER)
        assert answer.args["blocks"]
        assert [c.token for c in fake_slack.calls_to("apps.connections.open")] == ["xapp-test-token"]
    finally:
        handler.close()
        slack.close()
        assistant.close()


def test_jsug_bot_slack_without_tokens_exits_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JSUG_", "SLACK_"))}
    done = subprocess.run([JSUG_BOT, "slack"], env={**env, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite3'}"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "SLACK_BOT_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


# --- the same event delivered to two server processes ---------------------------------------------


@pytest.fixture
def two_servers(database_url: str, seeded_db: sessionmaker[Session], fake_slack: FakeSlack) -> Iterator[list[str]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JSUG_", "SLACK_")) and k.lower() not in ("http_proxy", "https_proxy")}
    env |= {"DATABASE_URL": database_url, "JSUG_SECRET_KEY": TEST_SECRET.get_secret_value(),
            "SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_BASE_URL": fake_slack.base_url, "JSUG_WEB__DELIVER_MAIL": "false"}
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen([JSUG_BOT, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for port in ports]
    try:
        deadline = time.monotonic() + 60
        for port, process in zip(ports, processes, strict=True):
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "a server did not come up"
                    time.sleep(0.2)
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(15)


def test_the_same_event_delivered_to_two_server_processes_is_answered_once(
        two_servers: list[str], fake_slack: FakeSlack, seeded_db: sessionmaker[Session]) -> None:
    fake_slack.add_user(MEMBER)
    body = envelope(dm_event(MEMBER, "年会費はいくらですか"), "Ev0TWICE01")
    statuses: list[int] = []
    start = threading.Barrier(len(two_servers))

    def deliver(base: str) -> None:
        start.wait()
        response = httpx.post(f"{base}/slack/events", content=body.encode(), headers=signed_headers(body), timeout=10)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=deliver, args=(base,)) for base in two_servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200, 200]
    fake_slack.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == "D" + MEMBER)
    fake_slack.assert_no_more("chat.postMessage", 1, wait=1.0)
    assert stored_messages(seeded_db, "in") == 1  # the member's message, taken in by one server only
