"""A local fake of the Slack Web API and of a Socket Mode websocket endpoint, for tests.

Why a fake server rather than mocks: the assistant talks to Slack through slack_sdk and slack_bolt, and
how those libraries really send requests (verb, encoding, headers, retries, the Socket Mode handshake)
is part of what the tests must cover. A fake that answers on 127.0.0.1 lets the real client code run
unchanged, with ``WebClient(base_url=fake.base_url)`` and the ``socket_url`` that ``apps.connections.open``
hands out, while the test reads back every call that was made.

The Web API side is a ``ThreadingHTTPServer`` in a daemon thread; the Socket Mode side is a ``websockets``
asyncio server on its own event loop in its own thread. Both bind port 0 (an ephemeral port), so tests
running in parallel never collide.

What the fake does not do: it keeps no state between calls beyond ``users`` (a ``chat.update`` of a
``ts`` never posted still succeeds), and it checks no token except the ``xapp-`` prefix that
``apps.connections.open`` requires.

Beware when writing fixtures: slack_sdk reads ``HTTPS_PROXY``/``HTTP_PROXY`` itself and ignores
``NO_PROXY``, so with a proxy in the environment even calls to 127.0.0.1 go to the proxy; clear those
variables (``monkeypatch.delenv``) around tests that use this fake. Close a Socket Mode client before
``stop()``: otherwise it notices the closed connection and keeps trying to reconnect.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"
#: Arguments that Slack accepts as JSON text in a form body; decoded so tests compare Python objects
#: whichever encoding the client chose.
JSON_ARGUMENTS = ("blocks", "attachments", "view", "metadata")
#: How long start() and stop() wait for a server thread before giving up loudly.
THREAD_TIMEOUT = 10.0
#: The fake's own logger: the websockets server logs "server listening" and the like at INFO, and those
#: lines should say they come from the fake rather than look like the assistant's.
LOGGER = logging.getLogger("tests.slack_fake")
#: Seconds between the server's websocket pings. Slack pings too, but rarely; pinging often is what lets
#: slack_sdk's builtin client close quickly: its reader thread sits in a blocking recv() (3 s timeout on a
#: plain socket) that closing the socket from another thread does not wake, and SocketModeClient.close()
#: joins that thread. Each ping ends the recv(), so close() returns within one interval.
SOCKET_PING_INTERVAL = 0.1

Handler = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Call:
    """One request the fake received, as a test wants to read it back."""

    method: str  # e.g. "chat.postMessage", or "response_url:<name>" for posts to a response_url
    args: dict[str, Any]  # merged from query string, form body or JSON body; JSON_ARGUMENTS decoded
    token: str | None  # from "Authorization: Bearer ..." or a "token" argument
    at: float  # time.monotonic() when received
    response: dict[str, Any] = field(default_factory=dict)  # what the fake answered (e.g. the posted "ts")


@dataclass
class _Failure:
    """An injected answer, queued by fail_next() or ratelimit_next() and consumed by the next call."""

    status: int
    error: str
    retry_after: int | None = None


class FakeSlack:
    """The fake Slack: a Web API on ``base_url`` and a Socket Mode endpoint on ``socket_url``.

    Use as a context manager (``with FakeSlack() as slack: ...``) or call ``start()``/``stop()``.
    Every attribute a test reads (``calls``, ``socket_received``) is appended to under one lock, and
    the ``wait_*`` methods sleep on that lock's condition, so a test thread sees calls made by the
    client threads as soon as they arrive.
    """

    team_id = "T0JSUG"
    bot_user_id = "UBOT0001"
    bot_id = "BBOT0001"
    app_id = "A0JSUG"
    workspace_url = "https://jsug.slack.com/"

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.socket_received: list[dict[str, Any]] = []
        self.base_url = ""
        self.socket_url = ""
        self._http_root = ""
        # One condition guards calls, socket_received, the injected failures and the client count;
        # it is reentrant so a `where` predicate may call back into the fake.
        self._changed = threading.Condition(threading.RLock())
        self._failures: dict[str, deque[_Failure]] = {}
        self._ts_counter = itertools.count(1)
        self._view_counter = itertools.count(1)
        self._handlers: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.publish": self._views_open,
            "users.info": self._users_info,
            "conversations.open": self._conversations_open,
            "reactions.add": self._ok,
            "apps.connections.open": self._apps_connections_open,
        }
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._socket_thread: threading.Thread | None = None
        self._socket_stop: asyncio.Event | None = None
        self._socket_clients: set[ServerConnection] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        """Starts both servers and returns once both listen, so the URLs are usable right away."""
        if self._http is not None:
            raise RuntimeError("FakeSlack is already started")
        http = ThreadingHTTPServer((HOST, 0), _RequestHandler)
        http.daemon_threads = True
        http.fake = self  # type: ignore[attr-defined]  # how a request handler finds its fake
        self._http = http
        port = http.server_address[1]
        self.base_url = f"http://{HOST}:{port}/api/"
        self._http_root = f"http://{HOST}:{port}"
        self._http_thread = threading.Thread(
            target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-slack-http", daemon=True)
        self._http_thread.start()

        ready = threading.Event()
        startup_error: list[BaseException] = []
        self._socket_thread = threading.Thread(
            target=self._run_socket_loop, args=(ready, startup_error), name="fake-slack-socket", daemon=True)
        self._socket_thread.start()
        if not ready.wait(THREAD_TIMEOUT) or startup_error:
            self.stop()
            raise RuntimeError(f"the fake Socket Mode server did not start: {startup_error}")
        return self

    def stop(self) -> None:
        """Stops both servers and joins their threads, so no thread or socket outlives the test."""
        if self._loop is not None and self._socket_stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._socket_stop.set)
            except RuntimeError:  # the loop already closed after a failed start
                pass
        socket_thread, self._socket_thread = self._socket_thread, None
        if socket_thread is not None:
            socket_thread.join(THREAD_TIMEOUT)
        self._loop = None
        self._socket_stop = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()  # also joins the request threads still running
        if self._http_thread is not None:
            self._http_thread.join(THREAD_TIMEOUT)
        self._http = None
        self._http_thread = None
        if socket_thread is not None and socket_thread.is_alive():
            raise RuntimeError("the fake Socket Mode server thread did not stop")

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------------ test set-up

    def add_user(self, user_id: str, email: str | None = None, *, confirmed: bool = True, team_id: str | None = None,
                 real_name: str = "テスト ユーザー", is_bot: bool = False, deleted: bool = False) -> dict[str, Any]:
        """Registers a user that users.info returns, shaped like Slack's own user object.

        Realistic rather than minimal, so code that reads the object the way it reads Slack's
        (``profile.email``, ``is_email_confirmed``, ``deleted``) is exercised; ``profile.email`` is left
        out when ``email`` is None, as Slack does for bots and apps without the ``users:read.email`` scope.
        """
        team = team_id or self.team_id
        name = email.split("@", 1)[0] if email else user_id.lower()
        profile: dict[str, Any] = {
            "title": "",
            "phone": "",
            "skype": "",
            "real_name": real_name,
            "real_name_normalized": real_name,
            "display_name": real_name,
            "display_name_normalized": real_name,
            "fields": None,
            "status_text": "",
            "status_emoji": "",
            "status_expiration": 0,
            "avatar_hash": "g0000000000a",
            "first_name": real_name.split(" ")[0],
            "last_name": real_name.split(" ")[-1] if " " in real_name else "",
            "image_24": "https://secure.gravatar.com/avatar/0.jpg?s=24",
            "image_72": "https://secure.gravatar.com/avatar/0.jpg?s=72",
            "image_192": "https://secure.gravatar.com/avatar/0.jpg?s=192",
            "team": team,
        }
        if email is not None:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = "B" + user_id[1:]
            profile["always_active"] = False
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": team,
            "name": name,
            "deleted": deleted,
            "color": "9f69e7",
            "real_name": real_name,
            "tz": "Asia/Tokyo",
            "tz_label": "Japan Standard Time",
            "tz_offset": 32400,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": 1764500000,
            "is_email_confirmed": confirmed,
            "who_can_share_contact_card": "EVERYONE",
        }
        with self._changed:
            self.users[user_id] = user
        return user

    def fail_next(self, method: str, error: str = "internal_error", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 200 ``{"ok": false, "error": error}``,
        as Slack reports an API error (the SDK raises SlackApiError)."""
        self._inject(method, _Failure(200, error), times)

    def ratelimit_next(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` answer HTTP 429 with ``Retry-After``, as Slack rate limits.

        ``retry_after`` is a whole number of seconds because slack_sdk parses the header with ``int()``.
        """
        self._inject(method, _Failure(429, "ratelimited", retry_after), times)

    def response_url(self, name: str) -> str:
        """A response_url to hand out in a payload; posts to it are recorded as ``response_url:<name>``."""
        if self._http is None:
            raise RuntimeError("start the FakeSlack before asking for a response_url")
        return f"{self._http_root}/response/{name}"

    # ------------------------------------------------------------------ reading calls back

    def calls_to(self, method: str) -> list[Call]:
        """The calls of ``method`` so far, in order (a copy: later calls do not change it)."""
        with self._changed:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0,
                 where: Callable[[Call], bool] | None = None) -> list[Call]:
        """Waits until at least ``count`` calls of ``method`` (matching ``where``) arrived and returns them.

        Calls arrive from other threads (a Bolt listener, a background job), so a test must wait rather
        than look once; on timeout the error lists what did arrive, which is usually the whole diagnosis.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                matching = [c for c in self.calls if c.method == method and (where is None or where(c))]
                if len(matching) >= count:
                    return matching
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    condition = " matching `where`" if where is not None else ""
                    raise AssertionError(
                        f"expected {count} call(s) of {method}{condition} within {timeout}s, got {len(matching)};"
                        f" {self._summary()}")
                self._changed.wait(remaining)

    def assert_no_more(self, method: str, count: int, wait: float = 0.5) -> None:
        """Sleeps ``wait`` seconds, then asserts exactly ``count`` calls of ``method``: the way to show that
        something did *not* happen (a duplicate reply, a retry) is to give it time to happen."""
        time.sleep(wait)
        seen = self.calls_to(method)
        assert len(seen) == count, (
            f"expected exactly {count} call(s) of {method} after {wait}s, got {len(seen)}; {self._summary()}")

    # ------------------------------------------------------------------ Socket Mode

    def socket_send(self, envelope: dict[str, Any]) -> None:
        """Sends ``envelope`` as JSON to every connected Socket Mode client.

        Raises AssertionError when no client is connected: an envelope sent into the void would make
        the test fail later and far from its cause.
        """
        loop = self._loop
        if loop is None:
            raise RuntimeError("start the FakeSlack before sending on its socket")
        text = json.dumps(envelope, ensure_ascii=False)
        sent = asyncio.run_coroutine_threadsafe(self._broadcast(text), loop).result(THREAD_TIMEOUT)
        assert sent, f"no Socket Mode client is connected to send {envelope.get('type')!r} to"

    def wait_for_socket_client(self, timeout: float = 10.0) -> None:
        """Waits until a Socket Mode client has connected and been sent its ``hello``."""
        with self._changed:
            if not self._changed.wait_for(lambda: bool(self._socket_clients), timeout):
                raise AssertionError(f"no Socket Mode client connected within {timeout}s; {self._summary()}")

    def wait_for_socket_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """Waits for the client's acknowledgement of ``envelope_id`` and returns it (with any payload)."""

        def ack() -> dict[str, Any] | None:
            return next((m for m in self.socket_received if m.get("envelope_id") == envelope_id), None)

        with self._changed:
            found = self._changed.wait_for(ack, timeout)
            if found is None:
                raise AssertionError(
                    f"no ack of envelope {envelope_id!r} within {timeout}s; socket received: {self.socket_received!r}")
            return found

    # ------------------------------------------------------------------ the Web API

    def _handle(self, method: str, args: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Records one call and builds its answer: status, JSON body, extra headers. The call is
        recorded with its answer, so a test that sees the call can read what it returned."""
        received = time.monotonic()
        with self._changed:
            queued = self._failures.get(method)
            failure = queued.popleft() if queued else None
        status, body, headers = self._answer_for(method, args, token, failure)
        with self._changed:
            self.calls.append(Call(method=method, args=args, token=token, at=received, response=body))
            self._changed.notify_all()
        return status, body, headers

    def _answer_for(self, method: str, args: dict[str, Any], token: str | None,
                    failure: _Failure | None) -> tuple[int, dict[str, Any], dict[str, str]]:
        if failure is not None:
            headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            return failure.status, {"ok": False, "error": failure.error}, headers
        if method.startswith("response_url:"):
            return 200, {"ok": True}, {}
        handler = self._handlers.get(method)
        if handler is None:
            return 200, {"ok": False, "error": "unknown_method", "req_method": method}, {}
        return 200, handler({**args, "token": token}), {}

    def _ok(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "url": self.workspace_url, "team": "JSUG", "user": "jsug-assistant",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": self.bot_id,
                "is_enterprise_install": False}

    def _message(self, args: dict[str, Any], ts: str) -> dict[str, Any]:
        """The message object Slack echoes back for a message the bot posted."""
        message: dict[str, Any] = {"type": "message", "text": args.get("text", ""), "user": self.bot_user_id,
                                   "bot_id": self.bot_id, "app_id": self.app_id, "team": self.team_id, "ts": ts}
        for key in ("blocks", "attachments", "metadata", "thread_ts"):
            if args.get(key) is not None:
                message[key] = args[key]
        return message

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        ts = self._next_ts()
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message(args, ts)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = args.get("channel"), args.get("ts")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not ts:
            return {"ok": False, "error": "message_not_found"}
        message = self._message(args, ts)
        del message["ts"]  # Slack's chat.update echoes the message without its ts
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {"ok": True, "channel": channel, "ts": ts, "text": args.get("text", ""), "message": message}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        if not args.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        return {"ok": True, "message_ts": self._next_ts()}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel") or "C"
        ts = str(args.get("message_ts") or "123").replace(".", "")
        return {"ok": True, "channel": channel, "permalink": f"{self.workspace_url}archives/{channel}/p{ts}"}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        return {"ok": True, "view": {"id": f"V{next(self._view_counter):010d}", **view}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._changed:
            user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user}

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = args.get("users")
        if isinstance(users, list):
            users = ",".join(users)
        if users:
            return {"ok": True, "channel": {"id": "D" + str(users).split(",")[0].strip()}}
        if args.get("channel"):
            return {"ok": True, "channel": {"id": args["channel"]}}
        return {"ok": False, "error": "users_list_not_supplied"}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        token = args.get("token") or ""
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "invalid_auth"}
        return {"ok": True, "url": self.socket_url}

    # ------------------------------------------------------------------ Socket Mode internals

    def _run_socket_loop(self, ready: threading.Event, startup_error: list[BaseException]) -> None:
        """The Socket Mode thread: its own event loop, so the server runs whatever the test thread does."""
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve_socket(ready))
        except Exception as error:  # noqa: BLE001 - reported to start(), which raises it in the test's thread
            startup_error.append(error)
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            asyncio.set_event_loop(None)
            loop.close()

    async def _serve_socket(self, ready: threading.Event) -> None:
        self._socket_stop = asyncio.Event()
        # close_timeout: a client that never answers the closing handshake must not hold up stop().
        async with serve(self._socket_connection, HOST, 0, logger=LOGGER, close_timeout=1,
                         ping_interval=SOCKET_PING_INTERVAL) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.socket_url = f"ws://{HOST}:{port}/link"
            ready.set()
            await self._socket_stop.wait()
        # Leaving the block closed the server and every connection, and waited for their handlers.

    async def _socket_connection(self, connection: ServerConnection) -> None:
        """One client: greet it as Slack does, then record everything it sends until it goes away."""
        try:
            await connection.send(json.dumps({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"},
                                              "connection_info": {"app_id": self.app_id}}))
            with self._changed:
                self._socket_clients.add(connection)
                self._changed.notify_all()
            async for message in connection:
                text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
                try:
                    parsed = json.loads(text)
                except json.JSONDecodeError:
                    parsed = {"raw": text}
                with self._changed:
                    self.socket_received.append(parsed if isinstance(parsed, dict) else {"raw": parsed})
                    self._changed.notify_all()
        except ConnectionClosed:
            pass  # a client closing without the closing handshake (the builtin client does) is normal
        finally:
            with self._changed:
                self._socket_clients.discard(connection)
                self._changed.notify_all()

    async def _broadcast(self, text: str) -> int:
        """Sends ``text`` to every client; returns how many got it."""
        with self._changed:
            clients = list(self._socket_clients)
        sent = 0
        for connection in clients:
            try:
                await connection.send(text)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    # ------------------------------------------------------------------ helpers

    def _inject(self, method: str, failure: _Failure, times: int) -> None:
        with self._changed:
            self._failures.setdefault(method, deque()).extend(failure for _ in range(times))

    def _next_ts(self) -> str:
        """A unique, increasing message ts in Slack's "seconds.microseconds" form."""
        micros = next(self._ts_counter) * 100
        return f"{1764600000 + micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _summary(self, limit: int = 30) -> str:
        """The calls seen so far, one line each, for assertion messages."""
        with self._changed:
            calls = list(self.calls)
        if not calls:
            return "no calls at all"
        lines = [f"  {c.method} {_short(c.args)}" for c in calls[-limit:]]
        skipped = f" (first {len(calls) - limit} left out)" if len(calls) > limit else ""
        return f"{len(calls)} call(s) seen{skipped}:\n" + "\n".join(lines)


def _short(args: dict[str, Any], width: int = 200) -> str:
    text = json.dumps(args, ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 3] + "..."


def _decode_json_arguments(args: dict[str, Any]) -> dict[str, Any]:
    """Decodes the arguments Slack takes as JSON text, so tests see the same objects however they came."""
    for key in JSON_ARGUMENTS:
        value = args.get(key)
        if isinstance(value, str):
            try:
                args[key] = json.loads(value)
            except json.JSONDecodeError:
                pass  # left as sent: the test can see what was wrong with it
    return args


def _multipart_fields(content_type: str, body: bytes) -> Iterator[tuple[str, Any]]:
    """The fields of a multipart/form-data body (slack_sdk sends one when files are attached)."""
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            payload = b""
        if part.get_filename():
            yield str(name), payload
        else:
            yield str(name), payload.decode(part.get_content_charset() or "utf-8", "replace")


class _RequestHandler(BaseHTTPRequestHandler):
    """Turns one HTTP request into a FakeSlack call: ``/api/<method>`` and ``/response/<name>``."""

    # HTTP/1.0: one request per connection, so no handler thread lingers on a kept-alive socket.
    protocol_version = "HTTP/1.0"
    #: Seconds a silent client may hold a handler thread (and thereby stop()).
    timeout = 5
    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self._serve()

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the access log would only add noise to the test output and the suite's log checks."""

    def _serve(self) -> None:
        fake: FakeSlack = self.server.fake  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        args: dict[str, Any] = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            args.update(self._body_arguments())
        except (UnicodeDecodeError, ValueError):  # json.JSONDecodeError is a ValueError
            self._answer(400, {"ok": False, "error": "invalid_json"}, {})
            return
        _decode_json_arguments(args)
        authorization = self.headers.get("Authorization", "")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else None
        if token is None and isinstance(args.get("token"), str):
            token = args["token"]

        if url.path.startswith("/api/") and len(url.path) > len("/api/"):
            method = unquote(url.path[len("/api/"):])
        elif url.path.startswith("/response/") and len(url.path) > len("/response/"):
            method = "response_url:" + unquote(url.path[len("/response/"):])
        else:
            self._answer(404, {"ok": False, "error": "not_found"}, {})
            return
        status, body, headers = fake._handle(method, args, token)
        self._answer(status, body, headers)

    def _body_arguments(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        if not body:
            return {}
        content_type = self.headers.get("Content-Type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/json":
            parsed = json.loads(body.decode("utf-8"))
            return parsed if isinstance(parsed, dict) else {"_json": parsed}
        if kind == "multipart/form-data":
            return dict(_multipart_fields(content_type, body))
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))

    def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
