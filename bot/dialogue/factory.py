"""Build the conversation engine from settings: the one place that wires the parts together."""

from __future__ import annotations

from bot.dialogue.engine import Engine
from bot.dialogue.flow import Handler
from bot.dialogue.intents import IntentIndex, load_intents
from bot.faq.index import FaqIndex, open_index
from bot.mail import Mailer
from bot.settings import Settings
from bot.storage.db import ensure_migrated, make_engine, session_factory
from handlers.newsletter_optout import NewsletterOptoutHandler
from handlers.password_reset import PasswordResetHandler
from handlers.secretariat_request import SecretariatRequestHandler
from handlers.withdrawal_request import WithdrawalRequestHandler

INTENT_THRESHOLD = 0.6


def default_handlers() -> dict[str, Handler]:
    handlers: list[Handler] = [
        PasswordResetHandler(),
        NewsletterOptoutHandler(),
        WithdrawalRequestHandler(),
        SecretariatRequestHandler(),
    ]
    return {handler.name: handler for handler in handlers}


def build_engine(settings: Settings, faq: FaqIndex | None = None) -> Engine:
    """The engine on the configured database, corpus and intents; ``faq`` reuses a built index."""
    faq = faq or open_index(settings)
    handlers = default_handlers()
    intents = IntentIndex(
        load_intents(settings.intents_dir, frozenset(handlers)), faq.corpus.lexicon, faq.analyzer, INTENT_THRESHOLD
    )
    database = make_engine(settings.database_url)
    ensure_migrated(database)
    sessions = session_factory(database)
    return Engine(settings, sessions, faq, intents, Mailer(settings.mail, sessions), handlers)
