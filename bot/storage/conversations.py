"""Reading a conversation back and adding to it from outside a turn.

The widget shows what was said after a reload and what the secretariat wrote later; the console and
Slack add a staff reply with ``append_staff_message``. The conversation row is locked as a turn
locks it, so a staff message never lands between a turn's question and its replies (a widget that
asks for "everything after my last reply" would otherwise skip it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.dialogue.replies import text
from bot.storage import audit
from bot.storage.models import Conversation, Message
from bot.storage.requests import speaker

MAX_STAFF_MESSAGE_CHARS = 4000
MAX_MESSAGES_READ = 200
MAX_STAFF_ACTOR_CHARS = 100


class UnknownConversationError(LookupError):
    """No conversation with this id (or on this channel for this user)."""


def find_conversation(session: Session, channel: str, user_ref: str) -> Conversation | None:
    query = select(Conversation).where(Conversation.channel == channel, Conversation.user_ref == user_ref)
    return session.scalars(query).one_or_none()


def is_idle_since(conversation: Conversation, moment: datetime) -> bool:
    """True when nothing happened in the conversation after ``moment`` (it has expired)."""
    return utc(conversation.state_updated_at) < utc(moment)


def wire_message(message: Message) -> dict[str, Any]:
    """A stored message as a channel shows it: ``{"id", "from", "reply"}``; the member's button
    presses are not shown (their effect is in the replies that follow)."""
    if message.direction == "in":
        reply: dict[str, Any] = text(message.text).as_dict()
    else:
        reply = dict(message.payload) if message.payload else text(message.text).as_dict()
    return {"id": message.id, "from": speaker(message), "reply": reply}


def messages_after(session: Session, conversation_id: int, after: int, limit: int = MAX_MESSAGES_READ) -> list[Message]:
    """The conversation's messages with an id above ``after``, oldest first, without button presses."""
    query = (
        select(Message)
        .where(Message.conversation_id == conversation_id, Message.id > after)
        .order_by(Message.id)
        .limit(limit)
    )
    return [m for m in session.scalars(query) if not (m.direction == "in" and m.payload and "action" in m.payload)]


def last_message_id(session: Session, conversation_id: int) -> int:
    query = select(Message.id).where(Message.conversation_id == conversation_id).order_by(Message.id.desc()).limit(1)
    return session.scalar(query) or 0


def check_staff_actor(actor: str) -> None:
    """A staff member's name as the audit log and the request history keep it: ``staff:NAME``."""
    if not actor.startswith("staff:") or len(actor) > MAX_STAFF_ACTOR_CHARS:
        raise ValueError(f"actor must be 'staff:NAME', at most {MAX_STAFF_ACTOR_CHARS} characters")


def append_staff_message(session: Session, conversation_id: int, said: str, actor: str) -> Message:
    """Add a staff member's message to a conversation, in the caller's transaction (audited).

    ``actor`` names the staff member (e.g. ``staff:suzuki``); the text is stored as plain text and
    every channel renders it as text. Raises ``UnknownConversationError`` or ``ValueError``.
    """
    said = said.strip()
    if not said or len(said) > MAX_STAFF_MESSAGE_CHARS:
        raise ValueError(f"a staff message must be 1 to {MAX_STAFF_MESSAGE_CHARS} characters")
    check_staff_actor(actor)
    query = select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    conversation = session.scalars(query).one_or_none()
    if conversation is None:
        raise UnknownConversationError(f"no conversation {conversation_id}")
    message = Message(conversation_id=conversation.id, direction="out", text=said,
                      payload=text(said).as_dict(), author=actor)
    session.add(message)
    session.flush()
    audit.record(session, actor=actor, channel=conversation.channel, action="staff_message_added",
                 entity="conversation", entity_id=conversation.id, after={"message_id": message.id})
    return message
