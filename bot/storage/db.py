"""Connecting to the database named by ``DATABASE_URL`` and running its migrations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.errors import ServiceUnavailableError

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(RuntimeError):
    """The database cannot be used: a bad URL, an unreachable server, a schema not migrated."""


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError("DATABASE_URL is not a database URL (expected e.g. postgresql+psycopg://user:pw@host/db)") from None
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


def _sqlite_pragmas(connection, _record) -> None:  # type: ignore[no-untyped-def]
    """Foreign keys on, and WAL so that readers and one writer do not block each other.

    ``synchronous=NORMAL`` is WAL's recommended setting: a commit survives the process crashing
    (the demo server being stopped) without an fsync per commit; only an operating-system crash may
    lose the last commits. Production runs on PostgreSQL.
    """
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (``Session.execute`` is typed as returning a plain ``Result``)."""
    return cast(CursorResult[Any], result).rowcount


@contextmanager
def guarded(opener: Callable[[], AbstractContextManager[Session]]) -> Iterator[Session]:
    """A session (``sessions`` or ``sessions.begin``) whose database failures surface as
    ``ServiceUnavailableError``, the one error every channel maps to "try again later"."""
    try:
        with opener() as session:
            yield session
    except SQLAlchemyError as exc:
        raise ServiceUnavailableError(f"the database does not answer ({type(exc).__name__})") from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed together, or rolled back together on any error."""
    with sessions.begin() as session:
        yield session


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def ensure_migrated(engine: Engine) -> None:
    """Refuse to run on a database whose schema is missing or older than this code."""
    head = ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current != head:
        raise DatabaseError(
            f"the database {engine.url.render_as_string(hide_password=True)} is not migrated "
            f"(at {current or 'nothing'}, code needs {head}): run `jsug-bot db upgrade`"
        )
