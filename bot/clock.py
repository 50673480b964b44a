"""Moments in UTC, whichever database they came back from.

PostgreSQL returns aware datetimes, SQLite naive ones (it stores the wall-clock text without the
offset), and SQLite compares stored moments as text. So every moment is written in UTC and every
moment read back is made aware before it is compared.
"""

from __future__ import annotations

from datetime import datetime, timezone


def utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime; a naive one (as SQLite returns) is taken to be UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
