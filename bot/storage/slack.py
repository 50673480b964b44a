"""What the Slack channel keeps in the database: the Events API deliveries it has processed, and
where each request to the secretariat was posted in the secretariat's channel.

Both live in the database, not in a process's memory, because Slack retries an event it thinks was
lost and may deliver one event to two processes: the unique row decides which one processes it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.clock import utc
from bot.storage.db import rowcount
from bot.storage.models import RequestStatus, SecretariatPost, SecretariatRequest, SlackEvent

EVENT_TAKEOVER = timedelta(minutes=2)
"""An event claimed this long ago and not finished was dropped by a process that died: a retry of
it (Slack retries after 1 and 5 minutes) is processed again rather than lost."""
EVENT_KEEP = timedelta(days=2)
POST_RETRY = timedelta(minutes=1)
POST_ATTEMPTS = 10
POST_WINDOW = timedelta(days=3)
"""Only requests this recent are posted: turning Slack on later does not flood the channel with old ones."""
OPEN_STATUSES = (RequestStatus.OPEN.value, RequestStatus.IN_PROGRESS.value)


def _insert_ignoring_duplicates(session: Session, row: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True when the row was inserted (the caller owns it).

    RETURNING says which: an ORM-executed INSERT reports no rowcount on psycopg."""
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    key = next(iter(row.__table__.primary_key.columns))
    statement: Insert = builder(row).values(**values).on_conflict_do_nothing().returning(key)
    return session.execute(statement).first() is not None


def claim_event(session: Session, event_id: str, now: datetime) -> bool:
    """True when this process is to process the event: first to claim it, or taking over a claim a
    dead process left unfinished; False for a duplicate (a retry, another process's delivery)."""
    now = utc(now)
    session.execute(delete(SlackEvent).where(SlackEvent.claimed_at < now - EVENT_KEEP))
    if _insert_ignoring_duplicates(session, SlackEvent, {"event_id": event_id, "claimed_at": now}):
        return True
    takeover = (update(SlackEvent)
                .where(SlackEvent.event_id == event_id, SlackEvent.done_at.is_(None),
                       SlackEvent.claimed_at < now - EVENT_TAKEOVER)
                .values(claimed_at=now))
    return rowcount(session.execute(takeover)) == 1


def finish_event(session: Session, event_id: str, now: datetime) -> None:
    session.execute(update(SlackEvent).where(SlackEvent.event_id == event_id).values(done_at=utc(now)))


def requests_to_post(session: Session, now: datetime, limit: int = 20) -> list[int]:
    """Open requests of the last days never posted, or whose posting failed a while ago, oldest first."""
    now = utc(now)
    unposted = (select(SecretariatRequest.id)
                .outerjoin(SecretariatPost, SecretariatPost.request_id == SecretariatRequest.id)
                .where(SecretariatRequest.created_at >= now - POST_WINDOW,
                       SecretariatRequest.status.in_(OPEN_STATUSES),
                       or_(SecretariatPost.request_id.is_(None),
                           (SecretariatPost.ts.is_(None) & (SecretariatPost.claimed_at < now - POST_RETRY)
                            & (SecretariatPost.attempts < POST_ATTEMPTS))))
                .order_by(SecretariatRequest.id).limit(limit))
    return list(session.scalars(unposted))


def claim_post(session: Session, request_id: int, channel: str, now: datetime) -> bool:
    """True when this process is to post the request (no one else posted it or is posting it now)."""
    now = utc(now)
    if _insert_ignoring_duplicates(session, SecretariatPost,
                                   {"request_id": request_id, "channel": channel, "claimed_at": now, "attempts": 0}):
        return True
    retry = (update(SecretariatPost)
             .where(SecretariatPost.request_id == request_id, SecretariatPost.ts.is_(None),
                    SecretariatPost.claimed_at < now - POST_RETRY)
             .values(claimed_at=now, channel=channel))
    return rowcount(session.execute(retry)) == 1


def record_post(session: Session, request_id: int, ts: str | None, error: str | None = None) -> None:
    """The outcome of posting: the message's ``ts``, or the error (tried again after ``POST_RETRY``)."""
    post = session.get(SecretariatPost, request_id)
    if post is None:
        return
    post.attempts = (post.attempts or 0) + 1
    post.ts = ts
    post.last_error = error[:200] if error else None


def post_of(session: Session, request_id: int) -> SecretariatPost | None:
    return session.get(SecretariatPost, request_id)


def request_posted_at(session: Session, channel: str, ts: str) -> SecretariatRequest | None:
    """The request whose secretariat message is ``ts`` in ``channel`` (a thread's parent)."""
    query = (select(SecretariatRequest).join(SecretariatPost, SecretariatPost.request_id == SecretariatRequest.id)
             .where(SecretariatPost.channel == channel, SecretariatPost.ts == ts))
    return session.scalars(query).first()
