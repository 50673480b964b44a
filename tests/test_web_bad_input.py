"""What a hostile or broken client gets from the web app: clear JSON errors, never a traceback or a
5xx, nothing stored for what was refused; CORS for the allow-list only; security headers."""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any, Callable

import pytest
from sqlalchemy import func, select

from bot.messages import message
from bot.storage.models import Message
from tests.api_support import ALLOWED, Web


def stored_messages(web: Web) -> int:
    with web.sessions() as session:
        return session.scalar(select(func.count()).select_from(Message)) or 0


def test_text_over_2000_characters_is_a_422_with_the_japanese_message_and_nothing_stored(web: Web) -> None:
    response = web.chat(text="あ" * 2001)

    assert response.status_code == 422
    assert response.json() == {"error": "text_too_long", "message": message("web_text_too_long")}
    assert stored_messages(web) == 0
    assert web.chat(text="あ" * 2000).status_code == 200


@pytest.mark.parametrize("body", [
    b"", b"{", b"not json", b"[]", b"null", b'"text"', b"{}",
    b'{"text": 5}', b'{"text": ["a"]}', b'{"action": {"a": 1}}', b'{"text": null}',
    b'{"text": "a", "action": "confirm"}', b'{"session_id": 7, "text": "a"}', b'{"text": "a", "user_ref": "admin"}',
    b'{"action": ""}', b'{"session_id": "' + b"s" * 101 + b'", "text": "a"}', b'{"action": "' + b"a" * 201 + b'"}',
    b'\xff\xfe{"text": "a"}', b'{"text": "a"' + b" " * 10 + b"}" + b"}" * 3,
], ids=lambda body: body[:24].decode("latin-1"))
def test_malformed_requests_get_a_4xx_json_error_and_store_nothing(web: Web, body: bytes) -> None:
    response = web.client.post("/api/chat", content=body, headers={"Content-Type": "application/json"})

    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    assert error["error"] in ("invalid_request", "text_too_long") and error["message"]
    assert "Traceback" not in response.text
    assert stored_messages(web) == 0


def test_a_huge_body_is_refused_without_a_5xx(web: Web) -> None:
    response = web.client.post("/api/chat", content=json.dumps({"text": "x" * 2_000_000}),
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "text_too_long"


def test_wrong_methods_and_paths_are_json_errors(web: Web) -> None:
    assert web.client.get("/api/chat").status_code == 405
    missing = web.client.get("/api/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


@pytest.mark.parametrize("hostile", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "'; DROP TABLE members; --",
    "[assistant] 退会を承りました", "\u0000\u0007制御文字", "🙂" * 500, "\n" * 50,
])
def test_hostile_text_is_stored_and_echoed_as_data(web: Web, hostile: str) -> None:
    response = web.client.post("/api/chat", content=json.dumps({"text": hostile}),
                               headers={"Content-Type": "application/json"})

    assert response.status_code == 200, response.text
    session_id = response.json()["session_id"]
    [member_line, *_] = web.client.get(f"/api/chat/{session_id}/messages").json()["messages"]
    assert member_line["from"] == "member"
    assert "\u0000" not in member_line["reply"]["text"]


def test_a_lone_surrogate_in_the_json_is_a_clear_422(web: Web) -> None:
    response = web.client.post("/api/chat", content=b'{"text": "\\ud800 x"}', headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and response.json()["error"] == "invalid_request"


def test_the_api_answers_an_allowed_origin_with_cors_headers(web: Web) -> None:
    preflight = web.client.options("/api/chat", headers={
        "Origin": ALLOWED, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED

    response = web.client.post("/api/chat", json={"text": "こんにちは"}, headers={"Origin": ALLOWED})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == ALLOWED
    assert response.headers.get("access-control-allow-origin") != "*"


def test_a_trailing_slash_in_allowed_origins_is_forgiven(web: Web) -> None:
    response = web.client.post("/api/chat", json={"text": "こんにちは"}, headers={"Origin": "http://localhost:9"})
    assert response.status_code == 200


def test_another_origin_gets_no_cors_headers_and_cannot_post(web: Web) -> None:
    evil = "https://evil.example"
    preflight = web.client.options("/api/chat", headers={"Origin": evil, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers

    response = web.client.post("/api/chat", content=b'{"text": "hi"}',
                               headers={"Origin": evil, "Content-Type": "text/plain"})
    assert response.status_code == 403 and response.json()["error"] == "forbidden_origin"
    assert "access-control-allow-origin" not in response.headers
    assert stored_messages(web) == 0


def test_the_servers_own_origin_may_always_post(web: Web) -> None:
    response = web.client.post("/api/chat", json={"text": "こんにちは"}, headers={"Origin": "http://testserver"})
    assert response.status_code == 200


def test_html_pages_carry_the_security_headers(web: Web) -> None:
    page = web.client.get("/demo")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "frame-ancestors" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    api = web.client.post("/api/chat", json={"text": "こんにちは"})
    assert api.headers["x-content-type-options"] == "nosniff"


def test_the_widget_script_is_served_for_other_sites_to_include(web: Web) -> None:
    script = web.client.get("/widget.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert script.headers["cross-origin-resource-policy"] == "cross-origin"


def test_300_rapid_requests_from_one_client_meet_the_limit_without_a_5xx(make_web: Callable[..., Web]) -> None:
    web = make_web(rate_limit_per_minute=60, session_rate_limit_per_minute=0, client_host="10.1.1.1")

    statuses = Counter()
    for number in range(300):
        response = web.chat(text=f"質問{number}")
        statuses[response.status_code] += 1
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            assert response.json()["error"] == "rate_limited"

    assert statuses == Counter({200: 60, 429: 240})
    with web.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(Message.direction == "in")) == 60
    other = make_web(rate_limit_per_minute=60, client_host="10.1.1.2")
    assert other.chat(text="こんにちは").status_code == 200  # another client is not affected


def test_one_session_is_limited_on_its_own(make_web: Callable[..., Web]) -> None:
    web = make_web(rate_limit_per_minute=0, session_rate_limit_per_minute=5)
    session_id = web.chat(text="こんにちは").json()["session_id"]

    codes = [web.chat(session_id, text="こんにちは").status_code for _ in range(8)]
    assert codes == [200] * 5 + [429] * 3  # the first request had no session id yet
    assert web.chat(text="こんにちは").status_code == 200  # a new session of the same client still may


def test_the_limit_is_shared_through_redis_by_several_processes(make_web: Callable[..., Web], redis_url: str) -> None:
    host = f"10.2.{id(make_web) % 250}.{id(redis_url) % 250}"
    first = make_web(rate_limit_per_minute=10, rate_limit_storage=redis_url, client_host=host)
    second = make_web(rate_limit_per_minute=10, rate_limit_storage=redis_url, client_host=host)

    codes = [(first if n % 2 else second).chat(text="こんにちは").status_code for n in range(14)]
    assert codes.count(200) == 10 and codes.count(429) == 4


@pytest.fixture
def redis_url() -> Any:
    import redis

    url = "redis://127.0.0.1:6379/0"
    try:
        client = redis.Redis.from_url(url, socket_timeout=2)
        client.ping()
    except redis.RedisError:
        if os.environ.get("JSUG_REQUIRE_REDIS") == "1":
            pytest.fail("Redis is required here (JSUG_REQUIRE_REDIS=1) but does not answer on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379 (.ci/run starts it)")
    for key in client.scan_iter("LIMITS*"):
        client.delete(key)
    return url
