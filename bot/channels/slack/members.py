"""The listeners members meet: a direct message, a mention in a channel, ``/jsug``, and buttons.

Each acknowledges at once and does its work in a lazy listener (after Slack has its answer).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.channels.slack.blocks import ACTION_PREFIX, SlackMessage, after_click, text_message
from bot.channels.slack.incoming import acknowledge, has_files_only, is_spoken, plain_text, text_field
from bot.channels.slack.places import Place
from bot.channels.slack.secretariat import relay_thread_reply
from bot.messages import message

if TYPE_CHECKING:
    from bot.channels.slack.app import SlackChannel

COMMAND = "/jsug"


def register(app: App, slack: SlackChannel) -> None:
    def on_message(body: dict[str, Any], context: dict[str, Any]) -> None:
        try:
            event = body.get("event") or {}
            if event.get("channel") == slack.secretariat_channel:
                relay_thread_reply(slack, event, context.get("bot_user_id"))
            elif event.get("channel_type") == "im":
                _direct_message(slack, body, event, context.get("bot_user_id"))
        finally:
            slack.finish_event(body)

    def on_mention(body: dict[str, Any], context: dict[str, Any]) -> None:
        try:
            event = body.get("event") or {}
            channel = text_field(event, "channel")
            if not channel or channel.startswith("D") or channel == slack.secretariat_channel:
                return  # a direct message arrives as a message event; the secretariat talks in threads
            thread = text_field(event, "thread_ts") or text_field(event, "ts")
            if not is_spoken(event, context.get("bot_user_id")) or not thread:
                return
            slack.converse(text_field(body, "team_id"), event["user"], Place(channel=channel, thread_ts=thread),
                           text=plain_text(event.get("text")))
        finally:
            slack.finish_event(body)

    def on_command(body: dict[str, Any]) -> None:
        place = Place(response_url=text_field(body, "response_url"), channel=text_field(body, "channel_id") or None)
        said = plain_text(body.get("text"))
        user_id, team_id = text_field(body, "user_id"), text_field(body, "team_id")
        if not user_id or not team_id or not place.response_url:
            return
        if not said:
            slack.sender.post(place, text_message(message("slack_command_help")))
            return
        slack.converse(team_id, user_id, place, text=said)

    def on_button(body: dict[str, Any]) -> None:
        pressed = _first_action(body)
        user: dict[str, Any] = body["user"] if isinstance(body.get("user"), dict) else {}
        team: dict[str, Any] = body["team"] if isinstance(body.get("team"), dict) else {}
        team_id = text_field(team, "id") or text_field(user, "team_id")
        value, user_id = text_field(pressed, "value"), text_field(user, "id")
        if not value or not user_id or not team_id:
            return
        place = _button_place(body)
        label = text_field(pressed["text"], "text") if isinstance(pressed.get("text"), dict) else ""
        original = body.get("message") or {}
        if place.response_url or original.get("blocks"):
            blocks = after_click(original.get("blocks") or [], str(pressed.get("block_id")), label)
            chosen = text_message(message("slack_chosen", label=label))
            slack.sender.replace(place, SlackMessage(original.get("text") or chosen.text, blocks or chosen.blocks))
        slack.converse(team_id, user_id, place, action=value)

    app.event("message")(ack=acknowledge, lazy=[on_message])
    app.event("app_mention")(ack=acknowledge, lazy=[on_mention])
    app.command(COMMAND)(ack=acknowledge, lazy=[on_command])
    app.action({"type": "block_actions", "action_id": re.compile("^" + re.escape(ACTION_PREFIX))})(
        ack=acknowledge, lazy=[on_button])


def _direct_message(slack: SlackChannel, body: dict[str, Any], event: dict[str, Any], bot_user_id: str | None) -> None:
    channel = text_field(event, "channel")
    if not is_spoken(event, bot_user_id) or not channel.startswith("D"):
        return
    place = Place(channel=channel)
    if has_files_only(event):
        slack.sender.post(place, text_message(message("slack_file_not_read")))
        return
    slack.converse(text_field(body, "team_id"), event["user"], place, text=plain_text(event.get("text")))


def _first_action(body: dict[str, Any]) -> dict[str, Any]:
    actions = body.get("actions")
    first = actions[0] if isinstance(actions, list) and actions else None
    return first if isinstance(first, dict) else {}


def _button_place(body: dict[str, Any]) -> Place:
    """Where a pressed button's message is: the replies go to the same place."""
    container = body.get("container") or {}
    original = body.get("message") or {}
    channel = container.get("channel_id") or (body.get("channel") or {}).get("id")
    if container.get("is_ephemeral") or not original:
        return Place(response_url=body.get("response_url"), channel=channel)
    thread = original.get("thread_ts")
    if str(channel or "").startswith("D") and not thread:
        return Place(channel=channel, message_ts=original.get("ts"))
    return Place(channel=channel, thread_ts=thread or original.get("ts"), message_ts=original.get("ts"))
