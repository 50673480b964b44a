"""What Slack sends, read as the engine needs it: a member's words as plain text, and which message
events are a member speaking (and which are edits, deletions, bots or the app itself)."""

from __future__ import annotations

import html
import re
from typing import Any

SPOKEN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
"""Message subtypes a person typed; edits (message_changed), deletions, joins, bot posts are not."""
_USER = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<![^>]*>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


def plain_text(slack_text: str | None) -> str:
    """A message's text without Slack's markup: mentions dropped, ``<url|label>`` as its label (a
    mailto link as the address the member typed), ``&amp;`` etc. as the characters."""
    said = _USER.sub(" ", slack_text or "")
    said = _CHANNEL.sub(lambda m: "#" + m.group(1), said)
    said = _SPECIAL.sub(" ", said)
    said = _LINK.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), said)
    return html.unescape(said).strip()


def is_spoken(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """A message a person wrote now: not an edit or deletion, not a bot's (the app's own included)."""
    if event.get("subtype") not in SPOKEN_SUBTYPES or event.get("bot_id") or event.get("bot_profile"):
        return False
    user = event.get("user")
    return isinstance(user, str) and bool(user) and user != bot_user_id


def has_files_only(event: dict[str, Any]) -> bool:
    return bool(event.get("files")) and not plain_text(event.get("text"))


def user_ref(team_id: str, user_id: str) -> str:
    """The engine's user reference for a Slack user: the workspace and the user id."""
    return f"{team_id}:{user_id}"


def user_id_of(ref: str) -> str:
    return ref.rpartition(":")[2]
