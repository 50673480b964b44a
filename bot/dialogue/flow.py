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

    @property
    def actor(self) -> str:
        """Who acts, for the audit log: the verified member, else the channel's user reference."""
        return f"member:{self.member.id}" if self.member else f"{self.channel}:{self.user_ref}"


@dataclass
class Step:
    """A handler's answer to one turn: replies, and its state for the next turn (None: finished)."""

    replies: list[Reply]
    state: dict[str, Any] | None = None
    done: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class Handler(Protocol):
    name: str
    needs_identity: bool

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        """Begin the flow; ``slots`` may already hold what the member said (e.g. the question)."""

    def resume(self, ctx: FlowContext, state: dict[str, Any], text: str | None, action: str | None) -> Step:
        """Continue with the member's next message or button press."""
