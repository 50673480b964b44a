"""The secretariat's side of requests, whatever tool it works in (Slack today, a console later):
taking a request on, resolving it, answering the member, and the bookkeeping of announcing new
requests in a team channel.

An answer is stored once, in the member's conversation and in the request's history, and reaches
the member where they asked: the conversation itself (the widget shows it), a mail for a web member,
and for a Slack member the caller's direct message (``StaffReply.slack_user``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.mail import Mailer
from bot.messages import message
from bot.storage import audit, conversations
from bot.storage import slack as slack_records
from bot.storage.db import guarded
from bot.storage.models import Conversation, Member, RequestEvent, RequestStatus, SecretariatRequest
from bot.storage.requests import show_request


class UnknownRequestError(LookupError):
    """No request with this id (or none posted at that message)."""


@dataclass(frozen=True)
class StaffReply:
    """Where a staff answer went: the stored message, whether a mail was queued, and the Slack user
    (``TEAM:USER``) to send it to when the member asked on Slack."""

    request_id: int
    message_id: int
    channel: str
    mailed: bool
    slack_user: str | None


class Secretariat:
    def __init__(self, sessions: sessionmaker[Session], mailer: Mailer, clock: Callable[[], datetime],
                 on_mail_queued: Callable[[], None]) -> None:
        self.sessions = sessions
        self.mailer = mailer
        self.clock = clock
        self.on_mail_queued = on_mail_queued

    def set_status(self, request_id: int, status: RequestStatus, actor: str, note: str) -> dict[str, Any]:
        """Move a request to ``status`` (recorded with who did it); returns the request as shown."""
        conversations.check_staff_actor(actor)
        with self._transaction() as session:
            request = self._locked(session, request_id)
            before = request.status
            request.status = status.value
            session.add(RequestEvent(request_id=request.id, status=status.value, note=note, actor=actor))
            audit.record(session, actor=actor, channel=request.channel, action="request_status_changed",
                         entity="secretariat_request", entity_id=request.id,
                         before={"status": before}, after={"status": status.value})
            session.flush()
            shown = show_request(session, request.id)
        assert shown is not None
        return shown

    def reply(self, request_id: int, said: str, actor: str) -> StaffReply:
        """Answer the member of a request: stored in the conversation and the history, mailed to a
        web member. Raises ``UnknownRequestError``, or ``ValueError`` for an empty or huge text."""
        conversations.check_staff_actor(actor)
        with self._transaction() as session:
            request = self._locked(session, request_id)
            if request.conversation_id is None:
                raise UnknownRequestError(f"request {request_id} has no conversation to answer in")
            stored = conversations.append_staff_message(session, request.conversation_id, said, actor)
            session.add(RequestEvent(request_id=request.id, status=request.status, note=f"回答: {stored.text}",
                                     actor=actor))
            mailed = request.channel == "web" and self._mail_member(session, request, stored.text)
            slack_user = request.user_ref if request.channel == "slack" else None
            result = StaffReply(request.id, stored.id, request.channel, mailed, slack_user)
        if mailed:
            self.on_mail_queued()
        return result

    def requests_of(self, channel: str, user_ref: str) -> list[dict[str, Any]]:
        """A member's requests still open or in progress, newest first (Slack's App Home)."""
        with self._reading() as session:
            query = (select(SecretariatRequest)
                     .where(SecretariatRequest.channel == channel, SecretariatRequest.user_ref == user_ref,
                            SecretariatRequest.status.in_(slack_records.OPEN_STATUSES))
                     .order_by(SecretariatRequest.id.desc()).limit(20))
            return [shown for request in session.scalars(query) if (shown := show_request(session, request.id))]

    # -- announcing new requests in a team channel (Slack) ----------------------------------------

    def to_announce(self) -> list[int]:
        with self._reading() as session:
            return slack_records.requests_to_post(session, self.clock())

    def claim_announcement(self, request_id: int, channel: str) -> dict[str, Any] | None:
        """The request to post, if this process is the one to post it now; None otherwise."""
        with self._transaction() as session:
            if not slack_records.claim_post(session, request_id, channel, self.clock()):
                return None
            return show_request(session, request_id)

    def record_announcement(self, request_id: int, ts: str | None, error: str | None = None) -> None:
        with self._transaction() as session:
            slack_records.record_post(session, request_id, ts, error)

    def announced_at(self, channel: str, ts: str) -> int | None:
        """The request whose announcement is the message ``ts`` in ``channel``."""
        with self._reading() as session:
            request = slack_records.request_posted_at(session, channel, ts)
            return request.id if request is not None else None

    def announcement_of(self, request_id: int) -> tuple[str, str] | None:
        """(channel, ts) of the request's announcement, once posted."""
        with self._reading() as session:
            post = slack_records.post_of(session, request_id)
            return (post.channel, post.ts) if post is not None and post.ts else None

    # -- helpers ----------------------------------------------------------------------------------

    def _mail_member(self, session: Session, request: SecretariatRequest, said: str) -> bool:
        address = _member_address(session, request)
        if address is None:
            return False
        self.mailer.queue(session, address, message("staff_reply_mail_subject", id=request.id),
                          message("staff_reply_mail_body", id=request.id, text=said))
        return True

    @staticmethod
    def _locked(session: Session, request_id: int) -> SecretariatRequest:
        query = select(SecretariatRequest).where(SecretariatRequest.id == request_id).with_for_update()
        request = session.scalars(query).one_or_none()
        if request is None:
            raise UnknownRequestError(f"no request {request_id}")
        return request

    def _transaction(self) -> AbstractContextManager[Session]:
        return guarded(self.sessions.begin)

    def _reading(self) -> AbstractContextManager[Session]:
        return guarded(self.sessions)


def _member_address(session: Session, request: SecretariatRequest) -> str | None:
    """Where a web member reads mail: the account's address, the inquiry form's, or the proven one."""
    if request.member_id is not None:
        member = session.get(Member, request.member_id)
        if member is not None:
            return member.email
    contact = request.details.get("contact_email")
    if isinstance(contact, str) and contact:
        return contact
    conversation = session.get(Conversation, request.conversation_id) if request.conversation_id else None
    return conversation.verified_email if conversation is not None else None
