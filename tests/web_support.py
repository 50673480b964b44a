"""Live servers and a browser for the widget tests.

* ``site``: the real app (``build_assistant`` + ``create_app``) served by uvicorn in a thread on a
  free port of 127.0.0.1, on a migrated and seeded SQLite database, delivering mail to aiosmtpd;
  and a second, tiny static server on another port whose page embeds the widget from the API's
  origin, as the association's site will (with a strict CSP of its own).
* ``browser``: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright; nothing is downloaded.
* ``open_chat``: a fresh browser context and page on the demo page, with a small driver (``Chat``)
  for the widget; every console error of the page fails the test unless the test allows it.

A test module uses these with ``pytest_plugins = ["tests.web_support"]``.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import uvicorn
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.channels.web.app import create_app
from bot.faq.index import FaqIndex
from bot.settings import MailSettings, Settings, WebSettings
from bot.storage.db import make_engine, session_factory, upgrade
from bot.storage.members import seed_demo
from bot.storage.models import Conversation
from tests.mail_support import Inbox, SmtpServer, start_smtp

try:
    from playwright.sync_api import expect
except ImportError:  # browser_missing() says so, and the browser tests skip
    expect = None

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Locator, Page

HOST = "127.0.0.1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
SESSION_KEY = "jsug-chat-session"
# Every visible text of the widget against the first opaque background behind it: the WCAG 2 contrast
# ratio, at least 4.5 (3 for large text). Returns the texts below it.
LOW_CONTRAST = """(() => {
  const root = document.querySelector('#jsug-chat').shadowRoot;
  const rgb = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = (c) => [c.r, c.g, c.b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const behind = (el) => { for (let n = el; n; n = n.parentElement || n.getRootNode().host || null) {
    const c = rgb(getComputedStyle(n).backgroundColor); if (c && c.a > 0.5) return c; } return { r: 255, g: 255, b: 255 }; };
  const low = [];
  for (const el of root.querySelectorAll('*')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest('.sr-only')) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(behind(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const needed = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
    if (ratio < needed) low.push(`${el.textContent.trim().slice(0, 30)}: ${ratio.toFixed(2)}`);
  }
  return low;
})()"""


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the Python package playwright is not installed (pip install playwright; no browser download)"
    return None


# --- the servers --------------------------------------------------------------------------------


def bound_socket() -> socket.socket:
    """A listening-ready socket on a free port, bound now so nobody else takes the port meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    return sock


class ThreadedUvicorn:
    """An ASGI app served by uvicorn in a daemon thread; ``stop`` asks it to exit and waits."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        self.sock = sock
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="uvicorn")

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


SITE_CSS = """
body { font: 18px/2.2 Georgia, serif; color: #444; margin: 0; }
header { background: #234; padding: 1rem; }
header a { color: #fff; margin-right: 1rem; }
main { padding: 1rem 2rem 6rem; }
button { font-size: 30px; background: hotpink; border-radius: 0; }
"""


WIDGET = Path(__file__).resolve().parent.parent / "bot" / "channels" / "web" / "static" / "widget.js"


def demo_page(api: str, script: str | None = None) -> str:
    """A page of "the association's site" on its own origin, embedding the widget from the API
    (or with ``script``, another script tag)."""
    script = script or f'<script src="{api}/widget.js" defer></script>'
    return f"""<!doctype html>
<html lang="ja">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>JSUG 会員のみなさまへ(テスト用ページ)</title>
<link rel="stylesheet" href="/site.css">
</head>
<body>
<header><a href="#main">本文へ</a><a href="/events">イベント</a><a href="/members">会員向け情報</a></header>
<main id="main">
<h1>会員のみなさまへ</h1>
<p>JSUGは、SAPを利用する企業のユーザー会です。ご不明な点は右下のチャットでお尋ねください。</p>
<button type="button">ページのボタン</button>
</main>
{script}
</body>
</html>
"""


class StaticSite:
    """The other origin: serves the demo page and its stylesheet, under a strict CSP. ``/self-hosted``
    serves its own copy of the widget, pointed at the API with ``data-api-base``."""

    def __init__(self, api: str) -> None:
        self_hosted = demo_page(api, f'<script src="/widget.js" data-api-base="{api}/" defer></script>')
        pages = {
            "/": ("text/html; charset=utf-8", demo_page(api)),
            "/self-hosted": ("text/html; charset=utf-8", self_hosted),
            "/site.css": ("text/css", SITE_CSS),
            "/widget.js": ("text/javascript; charset=utf-8", WIDGET.read_text(encoding="utf-8")),
        }
        csp = (f"default-src 'self'; script-src 'self' {api}; connect-src {api}; style-src 'self'; img-src 'self'; "
               "object-src 'none'; base-uri 'none'")

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                found = pages.get(self.path.split("?")[0])
                if found is None:  # e.g. /favicon.ico: nothing, and no 404 in the console
                    self.send_response(204)
                    self.end_headers()
                    return
                content_type, text = found
                data = text.encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Content-Security-Policy", csp)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self.httpd = ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.origin = f"http://{HOST}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="demo-site")

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@dataclass
class Site:
    """The running app and the demo site; ``demo_url`` embeds the widget from ``api``."""

    api: str
    demo_url: str
    assistant: Assistant
    sessions: sessionmaker[Session]
    smtp: SmtpServer

    @property
    def inbox(self) -> Inbox:
        return self.smtp.inbox

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request to the API as a server-side client would send it (no Origin header)."""
        request = urllib.request.Request(self.api + path, data=json.dumps(body).encode("utf-8"), method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def conversation_id(self, session_id: str) -> int:
        """The database id of a widget's conversation (the engine keys it by the token's hash)."""
        user_ref = "w:" + hashlib.sha256(session_id.encode("utf-8")).hexdigest()
        with self.sessions() as session:
            found = session.scalars(select(Conversation).where(Conversation.user_ref == user_ref)).one()
            assert found.channel == "web"
            return found.id

    def wait_for_mail(self, address: str, subject: str, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        """The mails to ``address`` whose subject contains ``subject``, once there are ``count`` of them
        (the mail worker delivers in the background)."""
        deadline = time.monotonic() + timeout
        while True:
            mails = self.inbox.to(address, subject)
            if len(mails) >= count:
                return mails
            if time.monotonic() > deadline:
                raise AssertionError(f"no mail {subject!r} to {address} within {timeout} s "
                                     f"(inbox: {[(m['To'], m['Subject']) for m in self.inbox.messages]})")
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site(jsug_index: FaqIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    database_url = f"sqlite:///{tmp_path_factory.mktemp('widget') / 'widget.sqlite3'}"
    database = make_engine(database_url)
    upgrade(database)
    sessions = session_factory(database)
    with sessions.begin() as session:
        seed_demo(session)

    smtp = start_smtp()
    sock = bound_socket()
    api = f"http://{HOST}:{sock.getsockname()[1]}"
    static = StaticSite(api)
    settings = Settings(
        database_url=database_url,
        public_url=api,
        allowed_origins=static.origin,
        mail=MailSettings(smtp_host=HOST, smtp_port=smtp.port),
        web=WebSettings(rate_limit_per_minute=0, mail_interval_seconds=0.2),
    )
    assistant = build_assistant(settings, faq=jsug_index, deliver_mail=True)
    server = ThreadedUvicorn(create_app(settings, assistant=assistant), sock)
    try:
        server.start()
        static.start()
        yield Site(api=api, demo_url=static.origin + "/", assistant=assistant, sessions=sessions, smtp=smtp)
    finally:
        server.stop()
        static.stop()
        assistant.close()
        smtp.stop()
        database.dispose()


# --- the browser ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Chat:
    """A page with the widget, and what a test does with it (all inside the widget's shadow root,
    which Playwright's locators pierce)."""

    page: Page
    site: Site
    console_errors: list[str] = field(default_factory=list)
    allowed_errors: list[re.Pattern[str]] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def launcher(self) -> Locator:
        return self.page.locator("#jsug-chat .launcher")

    @property
    def panel(self) -> Locator:
        return self.page.get_by_role("dialog", name="JSUGアシスタント")

    @property
    def textbox(self) -> Locator:
        return self.panel.get_by_role("textbox", name="メッセージ")

    @property
    def replies(self) -> Locator:
        """Everything not said by the member: the welcome, the assistant's replies, staff messages."""
        return self.page.locator("#jsug-chat .msg:not(.member)")

    @property
    def mine(self) -> Locator:
        """The member's messages (their text, without the hidden "あなた: " for screen readers)."""
        return self.page.locator("#jsug-chat .msg.member .text")

    @property
    def live(self) -> Locator:
        return self.page.locator("#jsug-chat [aria-live=polite]")

    @property
    def typing(self) -> Locator:
        return self.page.locator("#jsug-chat .typing")

    @property
    def notice(self) -> Locator:
        return self.page.locator("#jsug-chat .notice")

    def goto(self, url: str | None = None) -> Chat:
        self.page.goto(url or self.site.demo_url)
        expect(self.launcher).to_be_visible()
        return self

    def open(self) -> Chat:
        self.launcher.click()
        expect(self.panel).to_be_visible()
        expect(self.textbox).to_be_focused()
        return self

    def send(self, text: str) -> None:
        self.textbox.fill(text)
        self.textbox.press("Enter")

    def ask(self, text: str) -> Locator:
        """Send ``text`` and wait for the replies; returns the first of them."""
        before = self.replies.count()
        self.send(text)
        return self.wait_for_reply(before)

    def wait_for_reply(self, before: int) -> Locator:
        """The first reply after the first ``before`` ones, once the exchange is over."""
        first = self.replies.nth(before)
        expect(first).to_be_visible()
        expect(self.typing).to_be_hidden()
        return first

    def press(self, label: str) -> Locator:
        """Click the newest enabled button called ``label`` in the conversation; returns the first reply."""
        before = self.replies.count()
        self.page.locator("#jsug-chat .msg button:enabled", has_text=label).last.click()
        return self.wait_for_reply(before)

    def session_id(self) -> str | None:
        return self.page.evaluate(f"localStorage.getItem({SESSION_KEY!r})")

    def shadow(self, script: str) -> Any:
        """Evaluate ``script`` with ``root`` bound to the widget's shadow root."""
        return self.page.evaluate(f"(() => {{ const root = document.querySelector('#jsug-chat').shadowRoot; "
                                  f"return {script}; }})()")

    def low_contrast(self) -> list[str]:
        """The widget's visible texts below WCAG AA contrast (empty when all pass)."""
        return self.page.evaluate(LOW_CONTRAST)

    def allow_console(self, pattern: str) -> None:
        self.allowed_errors.append(re.compile(pattern))

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.console_errors if not any(p.search(e) for p in self.allowed_errors)]

    def screenshot(self, name: str, **options: Any) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), **options)
        return path


@pytest.fixture
def open_chat(browser: Browser, site: Site) -> Iterator[Callable[..., Chat]]:
    """``open_chat(**context_options)``: a new browser context (fresh storage) on the demo page."""
    contexts: list[BrowserContext] = []
    chats: list[Chat] = []

    def opening(url: str | None = None, **options: Any) -> Chat:
        options = {"viewport": DESKTOP, "locale": "ja-JP", "timezone_id": "Asia/Tokyo", **options}
        context = browser.new_context(**options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        chat = Chat(page, site)
        page.on("console", lambda m: chat.console_errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: chat.console_errors.append(f"uncaught: {exc}"))

        def on_dialog(dialog: Any) -> None:
            chat.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        chats.append(chat)
        return chat.goto(url)

    yield opening
    for context in contexts:
        context.close()
    problems = [error for chat in chats for error in chat.unexpected_errors()]
    if problems:
        pytest.fail(f"console errors on the page: {problems}")
