"""What Slack sends, read as the engine needs it: a member's words as plain text, and which message
events are a member speaking (and which are edits, deletions, bots or the app itself)."""

from __future__ import annotations

import html
import re
from typing import Any

from slack_bolt import Ack

SPOKEN_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
"""Message subtypes a person typed; edits (message_changed), deletions, joins, bot posts are not."""
_USER = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<![^>]*>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")


def acknowledge(ack: Ack) -> None:
    """Every listener's ack: Slack hears back at once, the work runs in the lazy listeners."""
    ack()


def plain_text(slack_text: object) -> str:
    """A message's text without Slack's markup: mentions dropped, ``<url|label>`` as its label (a
    mailto link as the address the member typed), ``&amp;`` etc. as the characters; anything that
    is not text reads as empty."""
    said = _USER.sub(" ", slack_text if isinstance(slack_text, str) else "")
    said = _CHANNEL.sub(lambda m: "#" + m.group(1), said)
    said = _SPECIAL.sub(" ", said)
    said = _LINK.sub(lambda m: m.group(2) or m.group(1).removeprefix("mailto:"), said)
    return html.unescape(said).strip()


def is_spoken(event: dict[str, Any], bot_user_id: str | None) -> bool:
    """A message a person wrote now: not an edit or deletion, not a bot's (the app's own included)."""
    subtype = event.get("subtype")
    if not (subtype is None or isinstance(subtype, str)) or subtype not in SPOKEN_SUBTYPES:
        return False
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    user = event.get("user")
    return isinstance(user, str) and bool(user) and user != bot_user_id


def text_field(data: dict[str, Any], key: str) -> str:
    """A field that should be text, as text ("" when absent or of another type)."""
    value = data.get(key)
    return value if isinstance(value, str) else ""


_EVENT_TEXT_FIELDS = ("type", "subtype", "user", "channel", "channel_type", "text", "ts", "thread_ts", "event_ts", "tab",
                      "team")


def malformed(body: object) -> str | None:
    """Why a parsed Slack payload is not one Slack sends (Bolt's own middleware would crash on it);
    None when its shape is sound. Checked before Bolt sees it, in HTTP and in Socket Mode alike."""
    if not isinstance(body, dict):
        return "the payload is not an object"
    for key in ("type", "team_id", "event_id", "api_app_id", "user_id", "channel_id"):
        if key in body and not isinstance(body[key], str):
            return f"{key!r} is not text"
    if body.get("type") == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict):
            return "an event_callback without an event object"
        wrong = [key for key in _EVENT_TEXT_FIELDS if event.get(key) is not None and not isinstance(event[key], str)]
        return f"event field {wrong[0]!r} is not text" if wrong else None
    if body.get("type") in ("block_actions", "view_submission", "shortcut", "message_action"):
        return _interaction_problem(body)
    return None


def _interaction_problem(body: dict[str, Any]) -> str | None:
    if not isinstance(body.get("user"), dict) or not isinstance(body["user"].get("id"), str):
        return "an interaction without a user"
    for key in ("team", "channel", "container", "message"):
        if body.get(key) is not None and not isinstance(body[key], dict):
            return f"{key!r} is not an object"
    if body.get("type") != "block_actions":
        return None
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
        return "block_actions without actions"
    if not all(isinstance(a.get("action_id"), str) and isinstance(a.get("block_id", ""), str) for a in actions):
        return "an action without an action_id"
    return None


def has_files_only(event: dict[str, Any]) -> bool:
    return bool(event.get("files")) and not plain_text(event.get("text"))


def user_ref(team_id: str, user_id: str) -> str:
    """The engine's user reference for a Slack user: the workspace and the user id."""
    return f"{team_id}:{user_id}"


def user_id_of(ref: str) -> str:
    return ref.rpartition(":")[2]
