"""Shared fixtures: the settings, the analyser and the JSUG index, built once per test session."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.faq.corpus import load_corpus
from bot.faq.index import FaqIndex, build_index
from bot.settings import Settings
from bot.storage.db import make_engine, session_factory, upgrade
from bot.text.tokens import Analyzer

pytest_plugins = ["tests.mail_support", "tests.api_support", "tests.slack_support"]

DATA = Path(__file__).parent / "data"
#: The server secret of tests on PostgreSQL (production requires one; the embedded default makes its own).
TEST_SECRET = SecretStr("test-secret-" + "x" * 40)


#: Loggers of the test's own peers (the HTTP client standing in for a browser, the SMTP server standing
#: in for the member's mailbox): what they log is not the assistant's log.
PEER_LOGGERS = ("httpx", "httpcore", "mail.log", "asyncio", "urllib3")
SECRET_PATTERNS = (
    re.compile(r"確認コード[:：]\s*\d{6}"),
    re.compile(r"token=[A-Za-z0-9_-]{20,}"),
)


class _Keeper(logging.Handler):
    """Keeps every log record of the whole run, formatted as a log file would hold it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(PEER_LOGGERS):
            return
        try:
            self.lines.append(f"{record.name}: {self.format(record)}")
        except Exception:  # noqa: BLE001 - a record that cannot be formatted is kept as its template
            self.lines.append(f"{record.name}: {record.msg!r}")


def _demo_addresses() -> set[str]:
    from bot.storage.members import DEMO_CSV

    with DEMO_CSV.open(encoding="utf-8-sig", newline="") as handle:
        return {row["email"].lower() for row in csv.DictReader(handle)} | {"nobody@example.com"}


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_personal_data_or_secrets() -> Iterator[None]:
    """Across the whole suite, no log line of the assistant holds a member's address, a one-time
    code or a reset token (the issue's check: grep the captured logs of every test)."""
    keeper = _Keeper()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(keeper)
    root.setLevel(logging.INFO)  # what `jsug-bot serve` logs
    try:
        yield
    finally:
        root.removeHandler(keeper)
        root.setLevel(previous)
    addresses = _demo_addresses()
    leaks = [line for line in keeper.lines
             if any(address in line.lower() for address in addresses) or any(p.search(line) for p in SECRET_PATTERNS)]
    assert not leaks, f"{len(leaks)} log line(s) hold an address, a code or a token, e.g.:\n" + "\n".join(
        line[:300] for line in leaks[:10])


class Clock:
    """An engine's clock that the tests move forward."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="session")
def jsug_index(settings: Settings, analyzer: Analyzer) -> FaqIndex:
    return build_index(load_corpus(settings.faq_dir, settings.faq_dir), settings.matcher, analyzer)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: SQLite always, PostgreSQL when TEST_POSTGRES_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set (.ci/run sets it)")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test database, migrated to the newest schema."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
