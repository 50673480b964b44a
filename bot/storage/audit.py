"""The audit log: every change with who, through which channel, what before and after."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.storage.models import AuditLog


def snapshot(obj: object, *fields: str) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in fields}


def record(
    session: Session,
    *,
    actor: str,
    channel: str,
    action: str,
    entity: str,
    entity_id: int | None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    """Add an audit entry in the caller's transaction, so the change and its record land together."""
    entry = AuditLog(
        actor=actor, channel=channel, action=action, entity=entity, entity_id=entity_id, before=before, after=after
    )
    session.add(entry)
    return entry
