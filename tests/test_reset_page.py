"""The web password-reset page, through the real app (its lifespan, middleware and routes), on the
test database of each kind: the link of a real reset mail, the form, the policy, the CSRF token,
used / expired / forged links, hostile input, and what must never be cached, logged or echoed."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.channels.web import reset
from bot.channels.web.app import create_app
from bot.errors import ServiceUnavailableError
from bot.faq.index import FaqIndex
from bot.mail import SECRET_PLACEHOLDER
from bot.messages import message
from bot.passwords import authenticate
from bot.settings import Settings
from bot.storage.models import AuditLog, Company, Member, OutboxMail
from handlers.password_reset import request_reset
from tests.mail_support import add_member

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SECRET = SecretStr("x" * 40)
SATO = "sato@example.co.jp"
YAMADA = "yamada@example.com"
GOOD = "Ume-no-hana-2026"
LINK = re.compile(r"/reset-password\?token=([A-Za-z0-9_-]+)")
HIDDEN = re.compile(r'<input type="hidden" name="(\w+)" value="([^"]*)">')
PAGE = "/reset-password"


class Clock:
    """The assistant's clock, moved by the tests."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def checked(response: httpx.Response, *, unavailable: bool = False) -> httpx.Response:
    """Every response of the page: HTML, never cached, the strict CSP, no referrer; never a 5xx but
    the 503 of a database failure when the test causes one (``unavailable``)."""
    assert response.status_code < 500 or (unavailable and response.status_code == 503), response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "same-origin"
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "set-cookie" not in response.headers  # no session, no login
    return response


def form_fields(response: httpx.Response) -> dict[str, str]:
    return dict(HIDDEN.findall(response.text))


@dataclass
class ResetPage:
    client: TestClient
    assistant: Assistant
    sessions: sessionmaker[Session]
    clock: Clock
    sato: int
    yamada: int
    unavailable: bool = False  # the test makes the database fail

    def mail_token(self, email: str = SATO) -> str:
        """Request a reset as the chat does, and read the link out of the queued mail."""
        with self.sessions.begin() as session:
            request_reset(session, self.assistant.mailer, self.assistant.settings, email, "web", "web:visitor",
                          self.clock())
        with self.sessions() as session:
            row = session.execute(
                select(OutboxMail.body, OutboxMail.secret).where(OutboxMail.recipient == email)
                .order_by(OutboxMail.id.desc())
            ).first()
        assert row is not None and row.secret is not None and "token=" not in row.body
        body = row.body.replace(SECRET_PLACEHOLDER, row.secret)  # the mail as it is sent
        found = LINK.search(body)
        assert found, body
        assert body.count(found.group(0)) == 1 and found.group(0) in body
        return found.group(1)

    def open(self, token: str | None) -> httpx.Response:
        params = {} if token is None else {"token": token}
        return checked(self.client.get(PAGE, params=params), unavailable=self.unavailable)

    def submit(self, token: str, password: str, confirmation: str | None = None, *, csrf: str | None = None,
               **extra: Any) -> httpx.Response:
        """Post the form as a browser would, with the CSRF token the page gave (unless ``csrf``)."""
        if csrf is None:
            shown = self.open(token)
            csrf = form_fields(shown).get("csrf", "")
        fields = {"token": token, "csrf": csrf, "password": password,
                  "password_confirm": password if confirmation is None else confirmation, **extra}
        return self.post(fields)

    def post(self, fields: dict[str, str], **options: Any) -> httpx.Response:
        return checked(self.client.post(PAGE, data=fields, **options), unavailable=self.unavailable)

    def csrf(self, token: str) -> str:
        return reset.csrf_token(self.assistant.secret_key, token, self.clock())

    def password_hash(self, member_id: int) -> str | None:
        with self.sessions() as session:
            member = session.get(Member, member_id)
            assert member is not None
            return member.password_hash


@pytest.fixture
def page(database_url: str, sessions: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[ResetPage]:
    with sessions.begin() as session:
        acme = Company(name="アクメ株式会社")
        session.add(acme)
        sato = add_member(session, acme, "sato", SATO)
        yamada = add_member(session, acme, "yamada", YAMADA)
        add_member(session, acme, "old", "old@example.com", status="withdrawn")
        session.flush()
        ids = sato.id, yamada.id
    settings = Settings(database_url=database_url, secret_key=SECRET, public_url="https://jsug.example.org")
    clock = Clock(NOW)
    assistant = build_assistant(settings, faq=jsug_index, deliver_mail=False, clock=clock)
    try:
        with TestClient(create_app(settings, assistant=assistant)) as client:
            yield ResetPage(client, assistant, sessions, clock, *ids)
    finally:
        assistant.close()


# -- the form ------------------------------------------------------------------------------------


def test_the_link_opens_the_form_with_the_rules(page: ResetPage) -> None:
    token = page.mail_token()

    shown = page.open(token)

    assert shown.status_code == 200
    html = shown.text
    assert '<html lang="ja">' in html and 'name="viewport"' in html
    assert "ログインID「<strong>sato</strong>」" in html
    for rule in ("12文字以上", "ログインIDを含まない", "よく使われるパスワード"):
        assert rule in html
    assert '<label for="password">' in html and '<label for="password_confirm">' in html
    assert html.count('autocomplete="new-password"') == 2
    assert '<form method="post" action="/reset-password">' in html  # the token goes in the body, not the URL
    fields = form_fields(shown)
    assert fields["token"] == token and fields["csrf"]
    assert token not in fields["csrf"]
    assert '<link rel="stylesheet" href="/static/reset.css">' in html
    assert "<script" not in html and "style=" not in html and "<style" not in html  # the CSP allows neither
    assert shown.headers["x-frame-options"] == "DENY"
    css = page.client.get("/static/reset.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_a_valid_password_is_set_as_argon2id_and_signs_in(page: ResetPage) -> None:
    token = page.mail_token()
    shown = page.open(token)

    done = page.submit(token, GOOD, csrf=form_fields(shown)["csrf"])

    assert done.status_code == 200
    assert message("password_reset_done") in done.text
    assert 'name="password"' not in done.text and GOOD not in done.text and token not in done.text
    stored = page.password_hash(page.sato)
    assert stored and stored.startswith("$argon2id$")
    with page.sessions.begin() as session:
        member = authenticate(session, "sato", GOOD)
        assert member is not None and member.id == page.sato
        assert authenticate(session, "sato", GOOD + "!") is None
    with page.sessions() as session:
        actions = [entry.action for entry in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert actions == ["password_reset_requested", "password_changed"]  # an argon2id hash needs no rehash


def test_a_used_link_says_so_and_offers_a_new_mail(page: ResetPage) -> None:
    token = page.mail_token()
    csrf = form_fields(page.open(token))["csrf"]
    assert page.submit(token, GOOD, csrf=csrf).status_code == 200

    for again in (page.open(token), page.submit(token, "Another-one-2027", csrf=csrf)):
        assert again.status_code == 410
        assert message("password_reset_link_used") in again.text
        assert "このリンクはすでに使用されています。" in again.text
        assert "「パスワードを忘れた」とお送りください" in again.text and 'href="/demo"' in again.text
        assert 'name="password"' not in again.text
    with page.sessions.begin() as session:
        assert authenticate(session, "sato", GOOD) is not None  # the second use changed nothing
        assert authenticate(session, "sato", "Another-one-2027") is None


def test_an_expired_link_says_so(page: ResetPage) -> None:
    token = page.mail_token()
    csrf = form_fields(page.open(token))["csrf"]
    page.clock.now = NOW + timedelta(minutes=page.assistant.settings.reset_token_minutes)

    for late in (page.open(token), page.submit(token, GOOD, csrf=csrf)):
        assert late.status_code == 410
        assert "このリンクは有効期限が切れています。" in late.text
        assert "「パスワードを忘れた」とお送りください" in late.text
    assert page.password_hash(page.sato) is None


@pytest.mark.parametrize("forged", [None, "", "   ", "x" * 5000, "' OR '1'='1", '"><script>alert(1)</script>',
                                    "../../etc/passwd"])
def test_a_forged_link_is_unknown_and_never_echoed(page: ResetPage, forged: str | None) -> None:
    page.mail_token()
    for token in ([forged] if forged is not None else [None, secrets.token_urlsafe(32)]):
        shown = page.open(token)
        assert shown.status_code == 404
        assert "このリンクは無効です。" in shown.text and "「パスワードを忘れた」とお送りください" in shown.text
        assert 'name="password"' not in shown.text
        if token and token.strip():
            assert token not in shown.text
            posted = page.submit(token, GOOD, csrf=page.csrf(token))  # even with a CSRF token made for it
            assert posted.status_code == 404 and "このリンクは無効です。" in posted.text
    assert page.password_hash(page.sato) is None


def test_a_truncated_link_is_unknown(page: ResetPage) -> None:
    token = page.mail_token()
    assert page.open(token[:-1]).status_code == 404
    assert page.open(token).status_code == 200


# -- refusals: the form again, the link still usable ---------------------------------------------


@pytest.mark.parametrize(
    ("password", "confirmation", "says"),
    [
        (GOOD, GOOD + "x", message("password_reset_mismatch")),
        (GOOD, "", message("password_reset_mismatch")),
        ("short-pw-1", None, "12文字以上128文字以内"),
        ("sato-spring-2026", None, "ログインIDを含む"),
        ("My-SATO-pass-2026", None, "ログインIDを含む"),
        ("qwertyuiop12", None, "よく使われるパスワード"),
        ("Password1234", None, "よく使われるパスワード"),
        ("zzzzzzzzzzzzzz", None, "同じ文字"),
    ],
)
def test_a_refused_password_shows_the_form_with_the_reason(
    page: ResetPage, password: str, confirmation: str | None, says: str
) -> None:
    token = page.mail_token()

    refused = page.submit(token, password, confirmation)

    assert refused.status_code == 422
    assert says in refused.text and 'role="alert"' in refused.text
    assert 'name="password"' in refused.text and form_fields(refused)["token"] == token
    assert f'value="{password}"' not in refused.text  # the typed password is never filled back in
    assert page.password_hash(page.sato) is None
    retried = page.submit(token, GOOD, csrf=form_fields(refused)["csrf"])  # the new form's token works
    assert retried.status_code == 200 and message("password_reset_done") in retried.text
    assert (page.password_hash(page.sato) or "").startswith("$argon2id$")


def test_the_policy_uses_the_login_id_of_the_links_account(page: ResetPage) -> None:
    sato, yamada = page.mail_token(SATO), page.mail_token(YAMADA)
    assert "ログインIDを含む" in page.submit(yamada, "yamada-spring-2026").text
    assert page.submit(sato, "yamada-spring-2026").status_code == 200


# -- CSRF ----------------------------------------------------------------------------------------


def test_a_post_without_a_good_csrf_token_is_refused_with_400(page: ResetPage) -> None:
    token, other = page.mail_token(SATO), page.mail_token(YAMADA)
    good = page.csrf(token)
    expires, _, mac = good.partition(".")
    bad = [
        "",
        "garbage",
        page.csrf(other),  # made for another link
        f"{expires}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",  # tampered
        f"{int(expires) + 3600}.{mac}",  # a later expiry under the same MAC
        reset.csrf_token(page.assistant.secret_key, token, NOW - timedelta(hours=2)),  # expired
        reset.csrf_token(b"y" * 40, token, NOW),  # another server's secret
        "１２３４５.ａｂｃ",
        good + "." + good,
        "9" * 5000,
    ]
    for csrf in bad:
        refused = page.submit(token, GOOD, csrf=csrf)
        assert refused.status_code == 400, csrf
        assert message("password_reset_bad_form") in refused.text
    no_field = page.post({"token": token, "password": GOOD, "password_confirm": GOOD})
    assert no_field.status_code == 400
    assert page.password_hash(page.sato) is None
    assert page.submit(token, GOOD, csrf=good).status_code == 200  # the link was never used up


def test_a_post_from_another_origin_is_refused(page: ResetPage) -> None:
    token = page.mail_token()
    response = page.client.post(PAGE, data={"token": token, "csrf": page.csrf(token), "password": GOOD,
                                            "password_confirm": GOOD}, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert page.password_hash(page.sato) is None


# -- hostile input -------------------------------------------------------------------------------


def test_html_in_the_password_is_never_echoed_and_is_a_password_like_any(page: ResetPage) -> None:
    token = page.mail_token()
    hostile = '"><script>alert("pw")</script><img src=x onerror=alert(1)>'

    mismatch = page.submit(token, hostile, hostile + "x")
    assert mismatch.status_code == 422
    assert "<script>alert" not in mismatch.text and "onerror" not in mismatch.text and "alert(" not in mismatch.text

    done = page.submit(token, hostile)
    assert done.status_code == 200 and "alert(" not in done.text
    with page.sessions.begin() as session:
        assert authenticate(session, "sato", hostile) is not None


def test_a_10_kb_password_is_refused_by_length(page: ResetPage) -> None:
    token = page.mail_token()
    huge = "ab1-" * 2560
    refused = page.submit(token, huge)
    assert refused.status_code == 422 and "128文字以内" in refused.text
    assert huge[:200] not in refused.text
    assert page.password_hash(page.sato) is None


def test_a_body_over_the_limit_is_refused(page: ResetPage) -> None:
    token = page.mail_token()
    response = page.post({"token": token, "csrf": page.csrf(token), "password": "a" * 70_000,
                          "password_confirm": "a"})
    assert response.status_code == 413
    assert page.password_hash(page.sato) is None


@pytest.mark.parametrize("missing", ["password", "password_confirm", "both"])
def test_missing_password_fields_show_the_form(page: ResetPage, missing: str) -> None:
    token = page.mail_token()
    fields = {"token": token, "csrf": page.csrf(token), "password": GOOD, "password_confirm": GOOD}
    for name in (["password", "password_confirm"] if missing == "both" else [missing]):
        del fields[name]
    refused = page.post(fields)
    assert refused.status_code == 422 and 'name="password"' in refused.text
    expected = "12文字以上" if missing == "both" else message("password_reset_mismatch")
    assert expected in refused.text
    assert page.password_hash(page.sato) is None


def test_malformed_posts_are_4xx_pages(page: ResetPage) -> None:
    token = page.mail_token()
    csrf = page.csrf(token)
    cases: list[dict[str, Any]] = [
        {"content": b""},
        {"content": b"token=%ff%fe&csrf=x", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"content": b"\xff\xfe\x00", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
        {"json": {"token": token, "csrf": csrf, "password": GOOD, "password_confirm": GOOD}},
        {"files": {"password": ("p.txt", GOOD.encode())}, "data": {"token": token, "csrf": csrf}},
        {"content": "&".join(f"f{n}=x" for n in range(500)).encode(),
         "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    ]
    for options in cases:
        response = checked(page.client.post(PAGE, **options))
        assert 400 <= response.status_code < 500, options
    # The page's form with the fields twice: the first ones count, as a browser sends only one.
    doubled = page.client.post(PAGE, content=(
        f"token={token}&csrf={csrf}&password={GOOD}&password={GOOD}x&password_confirm={GOOD}").encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert checked(doubled).status_code == 200
    assert page.password_hash(page.sato) is not None


# -- nothing kept where it should not be ---------------------------------------------------------


def test_neither_the_token_nor_a_password_reaches_the_logs(page: ResetPage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = page.mail_token()
    page.open(token)
    page.submit(token, "sato-spring-2026")
    page.submit(token, GOOD, GOOD + "-typo")
    page.submit(token, GOOD, csrf="forged")
    page.submit(token, GOOD)
    page.open(token)
    page.submit(token, "Another-one-2027", csrf=page.csrf(token))
    page.open(token + "x")

    # Everything the server side logged; httpx's records are the test client's own (the browser's).
    server = [record for record in caplog.records if not record.name.startswith("httpx")]
    logged = "\n".join(f"{record.getMessage()} {record.args!r} {record.exc_text or ''}" for record in server)
    assert any(record.name == "bot.web.reset" for record in server)  # the page does log what happened
    for secret in (token, GOOD, "sato-spring-2026", "Another-one-2027"):
        assert secret not in logged


def test_a_database_failure_is_a_503_page_and_the_link_survives(page: ResetPage,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    token = page.mail_token()
    csrf = page.csrf(token)

    def down(*_args: object) -> None:
        raise ServiceUnavailableError("the database does not answer (OperationalError)")

    page.unavailable = True
    for method in ("check", "reset"):
        with monkeypatch.context() as patched:
            patched.setattr(page.assistant.passwords, method, down)
            responses = [page.submit(token, GOOD, csrf=csrf)] + ([page.open(token)] if method == "check" else [])
        for response in responses:
            assert response.status_code == 503 and response.headers["retry-after"] == "30"
            assert message("database_unavailable") in response.text and "OperationalError" not in response.text
    page.unavailable = False
    assert page.submit(token, GOOD, csrf=csrf).status_code == 200
