"""The composition root: ``build_assistant(settings)`` wires every part once; channels call the result.

The web app, the terminal, the Slack app and the tests start from an ``Assistant`` and import
nothing below it: the conversation engine, the matcher, the handlers, the mailer and the database
are its business. It owns the database engine and the mail worker, and ``close()`` releases them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Engine as Database
from sqlalchemy import text as sql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.attempt_limits import AttemptLimits
from bot.dialogue.engine import Engine, Form, Turn
from bot.dialogue.intents import IntentIndex, load_intents
from bot.dialogue.replies import Reply
from bot.errors import ServiceUnavailableError
from bot.faq.index import FaqIndex, open_index
from bot.identity import link_slack_user
from bot.mail import Mailer
from bot.mail_worker import MailWorker
from bot.password_service import PasswordResets
from bot.secret_key import resolve_secret_key
from bot.secretariat import Secretariat
from bot.settings import Settings
from bot.storage import conversations
from bot.storage import slack as slack_records
from bot.storage.db import ensure_migrated, guarded, make_engine, session_factory
from bot.storage.members import show_member
from bot.storage.requests import list_requests, show_request
from handlers.registry import build_handlers

log = logging.getLogger("bot.app")

INTENT_THRESHOLD = 0.6
WEB = "web"
MAX_SESSION_ID_CHARS = 100


@dataclass(frozen=True)
class WebSession:
    """A widget's conversation: the token the browser keeps, and the engine's user reference for it."""

    token: str
    user_ref: str
    is_new: bool


class Assistant:
    """What every channel calls. Build it with ``build_assistant``."""

    def __init__(self, settings: Settings, database: Database, faq: FaqIndex, engine: Engine,
                 mail_worker: MailWorker | None, secret_key: bytes) -> None:
        self.settings = settings
        self.database = database
        self.sessions: sessionmaker[Session] = engine.sessions
        self.faq = faq
        self.engine = engine
        self.mailer = engine.mailer
        self.mail_worker = mail_worker
        self.secret_key = secret_key
        self.passwords = PasswordResets(self.sessions, settings, lambda: self.engine.clock())
        self.secretariat = Secretariat(self.sessions, self.mailer, lambda: self.engine.clock(),
                                       lambda: self.engine.on_mail_queued())

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.engine.clock

    # -- conversations --------------------------------------------------------------------------

    def handle(self, channel: str, user_ref: str, text: str | None = None, action: str | None = None) -> list[Reply]:
        """One turn of the conversation engine (see ``Engine.handle``)."""
        return self.engine.handle(channel, user_ref, text=text, action=action)

    def turn(self, channel: str, user_ref: str, text: str | None = None, action: str | None = None) -> Turn:
        """``handle``, with the id of the turn's last stored message (for channels that poll)."""
        return self.engine.run(channel, user_ref, text=text, action=action)

    def submit_inquiry(self, channel: str, user_ref: str, name: str, email: str, question: str) -> Turn:
        """``file_inquiry``, with the id of the turn's last stored message."""
        form = Form("secretariat_request", {"form": {"name": name, "email": email, "question": question}}, question)
        return self.engine.submit(channel, user_ref, form)

    def file_inquiry(self, channel: str, user_ref: str, name: str, email: str, question: str) -> list[Reply]:
        """A question for the secretariat from a form (name, address, question), with the transcript."""
        return self.submit_inquiry(channel, user_ref, name, email, question).replies

    def assume_identity(self, channel: str, user_ref: str, email: str, operator: str) -> None:
        """An operator vouches for the member at the terminal (audited; see ``Engine.assume_identity``)."""
        self.engine.assume_identity(channel, user_ref, email, operator)

    def link_identity(self, channel: str, external_id: str, verified_email: str | None) -> bool:
        """Link a channel's user (a Slack user) to the accounts of a verified address; True if any."""
        if channel != "slack":
            raise ValueError(f"identities are linked by a verified address only on Slack, not {channel!r}")
        with self._transaction() as session:
            return bool(link_slack_user(session, external_id, verified_email, self.clock()))

    # -- the web channel's sessions -------------------------------------------------------------

    def web_session(self, token: str | None) -> WebSession:
        """The session a widget named, or a new one when the token is unknown, expired or absent."""
        if token and len(token) <= MAX_SESSION_ID_CHARS:
            user_ref = _web_user_ref(token)
            cutoff = self.clock() - timedelta(days=self.settings.web.session_days)
            with self._reading() as session:
                found = conversations.find_conversation(session, WEB, user_ref)
                if found is not None and not conversations.is_idle_since(found, cutoff):
                    return WebSession(token, user_ref, is_new=False)
        token = secrets.token_urlsafe(32)
        return WebSession(token, _web_user_ref(token), is_new=True)

    def web_messages(self, token: str, after: int) -> list[dict[str, Any]] | None:
        """The messages of a widget's conversation after message id ``after``; None if it is unknown."""
        if not token or len(token) > MAX_SESSION_ID_CHARS:
            return None
        with self._reading() as session:
            found = conversations.find_conversation(session, WEB, _web_user_ref(token))
            if found is None:
                return None
            return [conversations.wire_message(m) for m in conversations.messages_after(session, found.id, after)]

    def append_staff_message(self, conversation_id: int, said: str, actor: str) -> int:
        """Add a staff reply to a conversation (the member's widget shows it); returns its message id."""
        with self._transaction() as session:
            return conversations.append_staff_message(session, conversation_id, said, actor).id

    # -- Slack's deliveries ---------------------------------------------------------------------

    def claim_slack_event(self, event_id: str) -> bool:
        """True when this process is to process the Events API delivery ``event_id`` (see
        ``bot.storage.slack.claim_event``); False for a retry or another process's copy."""
        with self._transaction() as session:
            return slack_records.claim_event(session, event_id, self.clock())

    def finish_slack_event(self, event_id: str) -> None:
        with self._transaction() as session:
            slack_records.finish_event(session, event_id, self.clock())

    # -- the secretariat's services -------------------------------------------------------------

    def requests(self, status: str | None = "open") -> list[dict[str, Any]]:
        with self._reading() as session:
            return list_requests(session, status)

    def request(self, request_id: int) -> dict[str, Any] | None:
        with self._reading() as session:
            return show_request(session, request_id)

    def member_accounts(self, email: str) -> list[dict[str, Any]]:
        with self._reading() as session:
            return show_member(session, email)

    # -- running ----------------------------------------------------------------------------------

    def health(self) -> None:
        """Raise ``ServiceUnavailableError`` unless the database answers a trivial query."""
        try:
            with self.database.connect() as connection:
                connection.execute(sql("SELECT 1"))
        except SQLAlchemyError as exc:
            raise ServiceUnavailableError(f"the database does not answer ({type(exc).__name__})") from exc

    def close(self) -> None:
        if self.mail_worker is not None:
            self.mail_worker.stop()
        self.database.dispose()

    def _transaction(self) -> AbstractContextManager[Session]:
        return guarded(self.sessions.begin)

    def _reading(self) -> AbstractContextManager[Session]:
        return guarded(self.sessions)


def _web_user_ref(token: str) -> str:
    """The engine's user reference for a widget token: its hash, so the database never holds tokens."""
    return "w:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def build_assistant(settings: Settings, *, faq: FaqIndex | None = None, deliver_mail: bool | None = None,
                    clock: Callable[[], datetime] | None = None, model_in_background: bool = False) -> Assistant:
    """Everything wired from ``settings``; ``faq`` reuses a built index (tests), ``deliver_mail``
    overrides whether a background worker delivers the outbox (default: on the embedded database);
    ``model_in_background``: a server starts answering before the semantic model has embedded the FAQ."""
    secret_key = resolve_secret_key(settings)
    settings = settings.model_copy(update={"secret_key": SecretStr(secret_key.decode("utf-8"))})
    faq = faq or open_index(settings, background=model_in_background)
    handlers = build_handlers()
    intents = IntentIndex(
        load_intents(settings.intents_dir, frozenset(handlers)), faq.corpus.lexicon, faq.analyzer, INTENT_THRESHOLD
    )
    database = make_engine(settings.database_url)
    try:
        ensure_migrated(database)
    except Exception:
        database.dispose()
        raise
    sessions = session_factory(database)
    mailer = Mailer.for_settings(settings, sessions)
    deliver = settings.delivers_mail_in_process if deliver_mail is None else deliver_mail
    worker = MailWorker(mailer, settings.web.mail_interval_seconds) if deliver else None
    engine = Engine(settings, sessions, faq, intents, mailer, handlers,
                    clock=clock or (lambda: datetime.now(timezone.utc)),
                    on_mail_queued=worker.wake if worker else lambda: None,
                    serialize_turns=database.dialect.name == "sqlite", attempt_limits=AttemptLimits(settings))
    if worker is not None:
        worker.start()
    return Assistant(settings, database, faq, engine, worker, secret_key)
