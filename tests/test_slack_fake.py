"""The fake Slack answers as Slack does, so tests built on it cannot pass against a fake that rotted.

Each test drives the fake with the real clients (slack_sdk's WebClient, slack_bolt in Socket Mode) or
with plain urllib where the SDK never sends a request that way (a GET with a query string).
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from slack_bolt import App, Say
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.webhook import WebhookClient

from tests.slack_fake import FakeSlack

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    # slack_sdk takes a proxy from these variables and ignores NO_PROXY: 127.0.0.1 would go to the proxy.
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token="xoxb-test", base_url=fake.base_url)


def test_a_posted_message_is_recorded_with_its_blocks_and_answered_with_increasing_ts(
        fake: FakeSlack, client: WebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "こんにちは"}}]
    first = client.chat_postMessage(channel="C1", text="こんにちは", blocks=blocks, thread_ts="1764600000.000001")
    second = client.chat_postMessage(channel="C1", text="again")

    assert first["channel"] == "C1"
    assert first["message"]["blocks"] == blocks and first["message"]["thread_ts"] == "1764600000.000001"
    assert first["message"]["user"] == fake.bot_user_id and first["message"]["bot_id"] == fake.bot_id
    assert float(second["ts"]) > float(first["ts"])
    call = fake.calls_to("chat.postMessage")[0]
    assert call.args["blocks"] == blocks and call.token == "xoxb-test"
    with pytest.raises(SlackApiError) as missing:
        client.chat_postMessage(channel="", text="nowhere")
    assert missing.value.response["error"] == "channel_not_found"


def test_query_string_and_form_arguments_are_merged_and_json_text_is_decoded(fake: FakeSlack) -> None:
    fake.add_user("U1", "member@example.com")
    with urllib.request.urlopen(fake.base_url + "users.info?user=U1&token=xoxb-query", timeout=5) as answer:
        assert json.load(answer)["user"]["profile"]["email"] == "member@example.com"
    form = "channel=C1&blocks=" + quote(json.dumps([{"type": "divider"}]))
    request = urllib.request.Request(fake.base_url + "chat.postMessage?text=hi", data=form.encode(),
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        assert json.load(answer)["ok"] is True

    by_get, by_form = fake.calls
    assert by_get.method == "users.info" and by_get.token == "xoxb-query"
    assert by_form.args == {"text": "hi", "channel": "C1", "blocks": [{"type": "divider"}]}


def test_users_info_answers_the_added_user_or_user_not_found(fake: FakeSlack, client: WebClient) -> None:
    fake.add_user("U1", "member@example.com", confirmed=False)
    fake.add_user("U2")

    user = client.users_info(user="U1")["user"]
    assert user["profile"]["email"] == "member@example.com" and user["is_email_confirmed"] is False
    assert user["team_id"] == fake.team_id and user["tz"] == "Asia/Tokyo"
    assert "email" not in client.users_info(user="U2")["user"]["profile"]
    with pytest.raises(SlackApiError) as unknown:
        client.users_info(user="U404")
    assert unknown.value.response["error"] == "user_not_found"


def test_the_other_methods_answer_as_slack_does(fake: FakeSlack, client: WebClient) -> None:
    assert client.auth_test()["user_id"] == fake.bot_user_id
    assert client.conversations_open(users=["U1", "U2"])["channel"]["id"] == "DU1"
    view = client.views_open(trigger_id="t", view={"type": "modal", "title": {"type": "plain_text", "text": "x"}})
    assert view["view"]["id"].startswith("V") and view["view"]["type"] == "modal"
    assert client.views_publish(user_id="U1", view={"type": "home", "blocks": []})["view"]["type"] == "home"
    assert client.chat_update(channel="C1", ts="1.2", text="edited")["text"] == "edited"
    assert client.chat_postEphemeral(channel="C1", user="U1", text="psst")["message_ts"]
    assert client.reactions_add(channel="C1", timestamp="1.2", name="eyes")["ok"]
    assert client.chat_getPermalink(channel="C1", message_ts="1.2")["permalink"].startswith("https://jsug.slack.com/")
    with pytest.raises(SlackApiError) as unknown:
        client.api_call("no.such.method")
    assert unknown.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as bot_token:
        client.apps_connections_open(app_token="xoxb-test")
    assert bot_token.value.response["error"] == "invalid_auth"
    assert client.apps_connections_open(app_token="xapp-test")["url"] == fake.socket_url


def test_an_injected_failure_is_answered_once_and_still_recorded(fake: FakeSlack, client: WebClient) -> None:
    fake.fail_next("chat.postMessage", "not_in_channel")

    with pytest.raises(SlackApiError) as failed:
        client.chat_postMessage(channel="C1", text="first")
    assert failed.value.response.status_code == 200 and failed.value.response["error"] == "not_in_channel"
    assert client.chat_postMessage(channel="C1", text="second")["ok"]
    assert [c.args["text"] for c in fake.calls_to("chat.postMessage")] == ["first", "second"]


def test_a_rate_limited_call_is_retried_after_retry_after_by_the_sdk(fake: FakeSlack) -> None:
    client = WebClient(token="xoxb-test", base_url=fake.base_url, retry_handlers=[RateLimitErrorRetryHandler()])
    fake.ratelimit_next("chat.postMessage", retry_after=1)

    assert client.chat_postMessage(channel="C1", text="later")["ok"]
    limited, retried = fake.calls_to("chat.postMessage")
    assert retried.at - limited.at >= 1.0


def test_a_rate_limited_call_without_a_retry_handler_raises_ratelimited(fake: FakeSlack, client: WebClient) -> None:
    fake.ratelimit_next("users.info", retry_after=7)

    with pytest.raises(SlackApiError) as limited:
        client.users_info(user="U1")
    assert limited.value.response.status_code == 429 and limited.value.response["error"] == "ratelimited"
    assert limited.value.response.headers["Retry-After"] == "7"


def test_a_post_to_a_response_url_is_recorded_under_its_name(fake: FakeSlack) -> None:
    answer = WebhookClient(fake.response_url("ask-1")).send(text="回答", replace_original=False)

    assert answer.status_code == 200 and json.loads(answer.body) == {"ok": True}
    (call,) = fake.wait_for("response_url:ask-1")
    assert call.args == {"text": "回答", "replace_original": False}


def test_wait_for_times_out_naming_the_calls_it_saw(fake: FakeSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="only this")

    with pytest.raises(AssertionError, match="chat.postMessage.*only this"):
        fake.wait_for("chat.postMessage", count=2, timeout=0.2)
    fake.assert_no_more("chat.postMessage", 1, wait=0.05)


def test_a_bolt_app_in_socket_mode_acks_an_event_and_replies_through_the_web_api(fake: FakeSlack) -> None:
    app = App(token="xoxb-test", signing_secret="s", client=WebClient(token="xoxb-test", base_url=fake.base_url),
              token_verification_enabled=False)

    @app.event("app_mention")
    def reply(event: dict[str, Any], say: Say) -> None:
        say("hi")

    handler = SocketModeHandler(app, "xapp-test")
    try:
        handler.connect()
        fake.wait_for_socket_client()
        fake.socket_send({"envelope_id": "e1", "type": "events_api", "accepts_response_payload": False,
                          "retry_attempt": 0, "retry_reason": "",
                          "payload": {"token": "verification", "team_id": fake.team_id, "api_app_id": "A0JSUG",
                                      "type": "event_callback", "event_id": "Ev1", "event_time": 1764600000,
                                      "event": {"type": "app_mention", "user": "U1", "text": "<@UBOT0001> こんにちは",
                                                "channel": "C1", "ts": "1764600000.000001"}}})

        assert fake.wait_for_socket_ack("e1") == {"envelope_id": "e1"}
        (posted,) = fake.wait_for("chat.postMessage")
        assert posted.args["channel"] == "C1" and posted.args["text"] == "hi"
        assert fake.socket_received[0] == {"envelope_id": "e1"}
    finally:
        handler.close()


def test_stop_leaves_no_server_thread_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = set(threading.enumerate())
    with FakeSlack() as slack:
        WebClient(base_url=slack.base_url).auth_test()

    assert not [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
