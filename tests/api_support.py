"""The web app through its real ASGI stack (Starlette's TestClient runs the lifespan), on the test
database of each kind, and small real servers for the fault tests (a TCP proxy that can be cut, an
SMTP port that accepts and never answers)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.channels.web.app import create_app
from bot.faq.index import FaqIndex
from bot.settings import MailSettings, Settings, WebSettings
from bot.storage.members import seed_demo
from tests.conftest import TEST_SECRET
from tests.mail_support import SMTP_HOST

ALLOWED = "https://www.jsug.org"


def web_settings(database_url: str, smtp_port: int | None = None, **web: Any) -> Settings:
    mail = MailSettings(smtp_host=SMTP_HOST, smtp_port=smtp_port, timeout_seconds=5) if smtp_port else MailSettings()
    return Settings(database_url=database_url, secret_key=TEST_SECRET, allowed_origins=f"{ALLOWED}, http://localhost:9/",
                    mail=mail, web=WebSettings(**{"rate_limit_per_minute": 0, "session_rate_limit_per_minute": 0,
                                                  **web}))


@dataclass
class Web:
    """A running app: its client, the assistant behind it, and the database."""

    client: TestClient
    assistant: Assistant
    sessions: sessionmaker[Session]

    def chat(self, session_id: str | None = None, **body: Any) -> Any:
        return self.client.post("/api/chat", json={"session_id": session_id, **body})


@pytest.fixture
def seeded_db(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    with sessions.begin() as session:
        seed_demo(session)
    return sessions


@pytest.fixture
def demo_assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[Assistant]:
    """An assistant on the seeded test database, without SMTP or a delivery worker (engine-level tests)."""
    built = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                            deliver_mail=False)
    yield built
    built.close()


@pytest.fixture
def make_web(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[Callable[..., Web]]:
    """Start apps on the seeded test database: ``make_web(smtp_port=..., deliver_mail=..., **web settings)``."""
    opened: list[tuple[TestClient, Assistant]] = []

    def make(smtp_port: int | None = None, deliver_mail: bool = False, client_host: str = "testclient",
             url: str | None = None, **web: Any) -> Web:
        settings = web_settings(url or database_url, smtp_port, **web)
        assistant = build_assistant(settings, faq=jsug_index, deliver_mail=deliver_mail)
        client = TestClient(create_app(settings, assistant=assistant), raise_server_exceptions=False,
                            client=(client_host, 50000))
        client.__enter__()
        opened.append((client, assistant))
        return Web(client, assistant, seeded_db)

    yield make
    for client, assistant in opened:
        client.__exit__(None, None, None)
        assistant.close()


@pytest.fixture
def web(make_web: Callable[..., Web]) -> Web:
    return make_web()


class TcpProxy:
    """Forwards 127.0.0.1:port to a target until ``cut()``: then it refuses and drops every connection,
    as a database server that went away does."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.alive:
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.alive = False
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the other thread (Linux)
        except OSError:
            pass
        self.listener.close()
        with self.lock:
            for end in self.open:
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                end.close()


@contextmanager
def silent_smtp() -> Iterator[int]:
    """A port that accepts SMTP connections and never says a word: a hung mail server."""
    listener = socket.create_server((SMTP_HOST, 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        listener.close()
