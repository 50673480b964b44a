"""Shared fixtures: the settings, the analyser and the JSUG index, built once per test session."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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

pytest_plugins = ["tests.mail_support", "tests.api_support"]

DATA = Path(__file__).parent / "data"
#: The server secret of tests on PostgreSQL (production requires one; the embedded default makes its own).
TEST_SECRET = SecretStr("test-secret-" + "x" * 40)


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
