"""The one list of self-service actions: the engine, ``faq validate`` and the intents read it.

Adding an action is one module in ``handlers/`` and one line here.
"""

from __future__ import annotations

from bot.dialogue.flow import Handler
from handlers.newsletter_optout import NewsletterOptoutHandler
from handlers.password_reset import PasswordResetHandler
from handlers.secretariat_request import SecretariatRequestHandler
from handlers.withdrawal_request import WithdrawalRequestHandler

HANDLER_TYPES: tuple[type[Handler], ...] = (
    PasswordResetHandler,
    NewsletterOptoutHandler,
    WithdrawalRequestHandler,
    SecretariatRequestHandler,
)

ACTION_NAMES: frozenset[str] = frozenset(handler.name for handler in HANDLER_TYPES)


def build_handlers() -> dict[str, Handler]:
    """A fresh handler of each action, by action name."""
    handlers = [handler_type() for handler_type in HANDLER_TYPES]
    return {handler.name: handler for handler in handlers}
