"""The web app when its surroundings fail: the database goes away, the mail server hangs; and the
mail worker that keeps SMTP off the request path. Also ``jsug-bot serve`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bot.mail import Mailer
from bot.mail_worker import MailWorker
from bot.messages import message
from bot.settings import MailSettings
from bot.storage.db import make_engine, upgrade
from bot.storage.models import Message, OutboxMail, utcnow
from tests.api_support import TcpProxy, Web, silent_smtp
from tests.mail_support import SMTP_HOST, free_port, start_smtp

JSUG_BOT = str(Path(sys.executable).with_name("jsug-bot"))
REGISTERED, UNREGISTERED = "tanaka@example.com", "nobody@example.com"


def test_healthz_says_ok_when_the_database_answers(web: Web) -> None:
    response = web.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_when_the_database_goes_away_health_and_chat_are_503_json(
    database_url: str, make_web: Callable[..., Web]
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("an embedded SQLite file does not go away; the PostgreSQL run covers it")
    url = make_url(database_url)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    web = make_web(url=url.set(port=proxy.port).render_as_string(hide_password=False))
    session_id = web.chat(text="こんにちは").json()["session_id"]

    proxy.cut()

    health = web.client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    for body in ({"session_id": session_id, "text": "パスワードを忘れました"}, {"session_id": None, "action": "confirm"}):
        response = web.client.post("/api/chat", json=body)
        assert response.status_code == 503
        assert response.json() == {"error": "unavailable", "message": message("database_unavailable")}
    assert web.client.get(f"/api/chat/{session_id}/messages").status_code == 503
    with web.sessions() as session:  # through the direct connection: nothing half-written
        assert session.scalar(select(func.count()).select_from(Message)) == 2


def _reset_turn(web: Web, address: str) -> tuple[float, list[dict[str, object]]]:
    session_id = web.chat(action="start:password_reset").json()["session_id"]
    started = time.perf_counter()
    response = web.chat(session_id, text=address)
    return time.perf_counter() - started, response.json()["replies"]


def test_a_hung_mail_server_slows_no_chat_turn_and_the_mail_goes_out_later(
    make_web: Callable[..., Web], seeded_db
) -> None:
    with silent_smtp() as port:
        web = make_web(smtp_port=port, deliver_mail=True, mail_interval_seconds=0.2)
        registered = [_reset_turn(web, REGISTERED) for _ in range(3)]
        unregistered = [_reset_turn(web, UNREGISTERED) for _ in range(3)]

        assert max(elapsed for elapsed, _ in registered + unregistered) < 1.0  # SMTP timeout is 5 s
        assert {str(replies) for _, replies in registered + unregistered} == {str(registered[0][1])}
        with seeded_db() as session:
            waiting = session.scalars(select(OutboxMail).where(OutboxMail.recipient == REGISTERED)).all()
        assert waiting and {mail.status for mail in waiting} <= {"pending", "sending"}
        web.assistant.close()  # the worker stuck on the hung server is left behind; its claim expires

    server = start_smtp()
    try:
        with seeded_db.begin() as session:  # what a stale claim release does after the timeout
            for mail in session.scalars(select(OutboxMail).where(OutboxMail.status == "sending")):
                mail.status = "pending"
        later = utcnow() + timedelta(minutes=5)  # past a timed-out attempt's backoff, well within the link's life
        Mailer(MailSettings(smtp_host=SMTP_HOST, smtp_port=server.port), seeded_db,
               clock=lambda: later).deliver_pending()
        assert len(server.inbox.to(REGISTERED)) == 3
    finally:
        server.stop()


def test_the_mail_worker_delivers_as_soon_as_a_turn_wakes_it(make_web: Callable[..., Web]) -> None:
    server = start_smtp()
    try:
        web = make_web(smtp_port=server.port, deliver_mail=True, mail_interval_seconds=60)
        _reset_turn(web, REGISTERED)
        deadline = time.monotonic() + 5
        while not server.inbox.to(REGISTERED) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(server.inbox.to(REGISTERED)) == 1  # woken by the turn, not by the 60 s interval
    finally:
        server.stop()


def test_the_mail_worker_survives_a_failing_run_and_retries_on_its_interval(seeded_db) -> None:
    port = free_port()
    mailer = Mailer(MailSettings(smtp_host=SMTP_HOST, smtp_port=port, timeout_seconds=1, retry_first_seconds=0.1),
                    seeded_db)  # backoff from 0.1 s, not 1 min: the retry comes within the test's 5 s
    with seeded_db.begin() as session:
        mailer.queue(session, REGISTERED, "件名", "本文")
    worker = MailWorker(mailer, interval=0.1)
    worker.start()
    try:
        time.sleep(0.5)  # runs against a closed port: the mail stays pending
        server = start_smtp(port=port)
        try:
            deadline = time.monotonic() + 5
            while not server.inbox.to(REGISTERED) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(server.inbox.to(REGISTERED)) == 1
        finally:
            server.stop()
    finally:
        worker.stop()


# --- jsug-bot serve, a real process -------------------------------------------------------------


def _cli_env(database: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("JSUG_")}
    return {**env, "DATABASE_URL": database, **extra}


def test_serve_starts_the_server_and_prints_the_demo_page(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    process = subprocess.Popen([JSUG_BOT, "serve", "--port", str(port)],
                               env=_cli_env(database), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        printed = [process.stdout.readline() for _ in range(2)]
        assert any(f"http://127.0.0.1:{port}/demo" in line for line in printed), printed
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the server did not come up"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        page = httpx.get(f"http://127.0.0.1:{port}/demo", timeout=5)
        assert '<script src="/widget.js" defer></script>' in page.text
        assert (tmp_path / "jsug-secret.key").exists()  # the embedded default made its own secret
    finally:
        process.terminate()
        process.wait(10)


def test_serve_with_two_workers_answers_keep_alive_requests_without_a_delayed_ack_stall(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    engine = make_engine(database)
    upgrade(engine)
    engine.dispose()
    port = free_port()
    process = subprocess.Popen([JSUG_BOT, "serve", "--port", str(port), "--workers", "2"], env=_cli_env(database),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 40
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and process.poll() is None, "the server did not come up"
                    time.sleep(0.2)
            timings = []
            for _ in range(15):
                started = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                timings.append(time.perf_counter() - started)
        assert sorted(timings)[len(timings) // 2] < 0.02  # Nagle + delayed ACK would be ~40 ms each
    finally:
        process.terminate()
        process.wait(15)


def test_serve_refuses_an_unmigrated_database_with_a_clear_message(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    done = subprocess.run([JSUG_BOT, "serve", "--port", str(free_port())],
                          env=_cli_env(database), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "jsug-bot db upgrade" in done.stderr and "Traceback" not in done.stderr


def test_serve_on_a_production_database_needs_the_secret_key() -> None:
    database = "postgresql+psycopg://someone:hunter2@127.0.0.1:1/none"
    done = subprocess.run([JSUG_BOT, "serve", "--port", str(free_port())],
                          env=_cli_env(database), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "JSUG_SECRET_KEY" in done.stderr and "hunter2" not in done.stderr + done.stdout
