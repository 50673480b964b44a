"""The contract between the engine and the self-service handlers (``handlers/``).

A handler never sees a channel: it gets a ``FlowContext`` (a database session inside the turn's
transaction, the verified member if any, the mailer, the settings) and returns replies and its
next state. The engine stores the state with the conversation, asks for confirmation when the
handler says so, handles "cancel" at every step, and expires abandoned flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from bot.dialogue.replies import Reply

if TYPE_CHECKING:
    from bot.mail import Mailer
    from bot.settings import Settings
    from bot.storage.models import Conversation, Member


@dataclass
class FlowContext:
    session: Session
    settings: Settings
    mailer: Mailer
    conversation: Conversation
    channel: str
    user_ref: str
    now: datetime
    member: Member | None = None
    private: bool = False
    """Set by the engine when a flow ran in this turn (see ``Turn.private``); handlers ignore it."""

    @property
    def actor(self) -> str:
        """Who acts, for the audit log: the verified member (``member:ID``), else the channel's user.

        Where an operator vouched for the member (``chat --as``, ``Conversation.assumed_by``) the
        operator acts, and the entry says for whom: ``operator:NAME for member:ID``. The member did not
        prove who they are, so the change must never read as their own; ``members show`` lists these
        entries with the member's history.
        """
        operator = self.conversation.assumed_by
        if self.member is not None:
            return f"{operator} for member:{self.member.id}" if operator else f"member:{self.member.id}"
        return operator or f"{self.channel}:{self.user_ref}"


@dataclass
class Step:
    """A handler's answer to one turn: replies, and its state for the next turn (None: finished)."""

    replies: list[Reply]
    state: dict[str, Any] | None = None
    done: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    """``{"identify": True, "slots": {...}}`` asks the engine to verify the member, then start again."""


class Handler(Protocol):
    name: str
    needs_identity: bool

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        """Begin the flow; ``slots`` may already hold what the member said (e.g. the question)."""

    def resume(self, ctx: FlowContext, state: dict[str, Any], text: str | None, action: str | None) -> Step:
        """Continue with the member's next message or button press."""


CONFIRM = "confirm"
SKIP = "skip"
"""The action of a 「省略する」 button under an optional question."""
YES_WORDS = frozenset({"はい", "はい。", "yes", "y", "ok", "お願いします", "確定", "確認しました"})


def is_yes(said: str | None, action: str | None) -> bool:
    """A confirmation: the confirm button, or a plain yes typed by the member."""
    return action == CONFIRM or (said is not None and said.strip().lower() in YES_WORDS)


def clean_free_text(value: str, limit: int = 1000) -> str:
    """Free text from a member, kept as plain text: no control characters, bounded length."""
    kept = "".join(ch for ch in value if ch in "\n\t" or (ch.isprintable() and not 0xD800 <= ord(ch) <= 0xDFFF))
    return kept.strip()[:limit]
