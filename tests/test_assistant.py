"""The composition root: what ``build_assistant`` wires, the secret it needs, and the services the
channels call (identity links for Slack, staff messages, the secretariat's reads)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.errors import ConfigurationError
from bot.faq.index import FaqIndex
from bot.secret_key import SECRET_FILE, resolve_secret_key
from bot.settings import Settings
from bot.storage.db import DatabaseError, make_engine, upgrade
from bot.storage.members import seed_demo
from bot.storage.models import AuditLog, ChannelIdentity, Conversation
from handlers.registry import ACTION_NAMES
from tests.conftest import TEST_SECRET

TANAKA = "tanaka@example.com"


@pytest.fixture
def assistant(database_url: str, sessions: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[Assistant]:
    with sessions.begin() as session:
        seed_demo(session)
    built = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                            deliver_mail=False)
    yield built
    built.close()


def test_the_engine_gets_every_action_of_the_one_registry(assistant: Assistant) -> None:
    assert set(assistant.engine.handlers) == ACTION_NAMES
    assert {"password_reset", "newsletter_optout", "withdrawal_request", "secretariat_request"} == ACTION_NAMES


def test_a_slack_user_with_a_verified_registered_address_is_linked(assistant: Assistant) -> None:
    assert assistant.link_identity("slack", "T01:U01", TANAKA) is True
    assert assistant.link_identity("slack", "T01:U02", "nobody@example.com") is False
    assert assistant.link_identity("slack", "T01:U03", None) is False
    with assistant.sessions() as session:
        links = session.scalars(select(ChannelIdentity)).all()
        assert [(link.channel, link.external_id) for link in links] == [("slack", "T01:U01")]
        assert session.scalars(select(AuditLog.action).where(AuditLog.action == "slack_linked")).all()


def test_identities_are_linked_by_address_only_on_slack(assistant: Assistant) -> None:
    with pytest.raises(ValueError, match="only on Slack"):
        assistant.link_identity("web", "anyone", TANAKA)


def test_a_staff_message_needs_a_conversation_a_text_and_a_staff_actor(assistant: Assistant) -> None:
    assistant.handle("web", "w:visitor", text="こんにちは")
    with assistant.sessions() as session:
        conversation_id = session.scalars(select(Conversation.id)).one()
    assert assistant.append_staff_message(conversation_id, "事務局です。", "staff:suzuki") > 0
    with pytest.raises(ValueError):
        assistant.append_staff_message(conversation_id, "   ", "staff:suzuki")
    with pytest.raises(ValueError):
        assistant.append_staff_message(conversation_id, "事務局です。", "member:1")
    with pytest.raises(LookupError):
        assistant.append_staff_message(999_999, "事務局です。", "staff:suzuki")


def test_the_embedded_default_makes_its_secret_once_beside_the_database(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'jsug.sqlite3'}")
    first = resolve_secret_key(settings)

    assert len(first) >= 32 and (tmp_path / SECRET_FILE).stat().st_mode & 0o077 == 0
    assert resolve_secret_key(settings) == first


def test_a_production_database_needs_a_long_enough_secret_key() -> None:
    production = "postgresql+psycopg://user:pw@db.example/jsug"
    with pytest.raises(ConfigurationError, match="JSUG_SECRET_KEY"):
        resolve_secret_key(Settings(database_url=production))
    with pytest.raises(ConfigurationError, match="at least 32"):
        resolve_secret_key(Settings(database_url=production, secret_key=SecretStr("short")))
    assert resolve_secret_key(Settings(database_url=production, secret_key=TEST_SECRET))


def test_building_on_an_unmigrated_database_says_what_to_run(tmp_path: Path, jsug_index: FaqIndex) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    with pytest.raises(DatabaseError, match="jsug-bot db upgrade"):
        build_assistant(Settings(database_url=url), faq=jsug_index)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    build_assistant(Settings(database_url=url), faq=jsug_index, deliver_mail=False).close()
