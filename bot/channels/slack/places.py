"""Where a Slack reply goes, and sending it there: a direct message, a channel thread, or the
ephemeral answer of a slash command. A failed send is logged with its context and otherwise
dropped: the turn is already stored, and the member sees it again in App Home or on asking again."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.webhook import WebhookClient

from bot.channels.slack.blocks import SlackMessage

log = logging.getLogger("bot.slack")
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Place:
    channel: str | None = None
    thread_ts: str | None = None
    response_url: str | None = None
    message_ts: str | None = None
    """The message a button was pressed in (to update it), when there is one."""

    @property
    def is_direct(self) -> bool:
        """A direct message with the app: the one place where a flow can go on with typed answers."""
        return self.response_url is None and self.thread_ts is None and (self.channel or "").startswith("D")

    @property
    def kind(self) -> str:
        return "ephemeral" if self.response_url else "thread" if self.thread_ts else "direct" if self.is_direct \
            else "channel"


class Sender:
    """Sends messages with the app's Web API client; every failure becomes one log line."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def post(self, place: Place, message: SlackMessage) -> str | None:
        """Post ``message`` at ``place``; the new message's ts, or None when Slack refused."""
        if place.response_url:
            return self._respond(place.response_url, message, replace_original=False)
        try:
            response = self.client.chat_postMessage(channel=place.channel or "", thread_ts=place.thread_ts,
                                                    text=message.text, blocks=message.blocks,
                                                    unfurl_links=False, unfurl_media=False)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("chat.postMessage failed (%s) for a %s reply; the conversation is stored",
                        reason(exc), place.kind)
            return None
        ts = response.get("ts")
        return ts if isinstance(ts, str) else None

    def replace(self, place: Place, message: SlackMessage) -> None:
        """Update the message a button was pressed in (its buttons then cannot be pressed twice)."""
        if place.response_url:
            self._respond(place.response_url, message, replace_original=True)
            return
        if not place.channel or not place.message_ts:
            return
        try:
            self.client.chat_update(channel=place.channel, ts=place.message_ts, text=message.text,
                                    blocks=message.blocks)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("chat.update failed (%s) for a %s message", reason(exc), place.kind)

    def direct(self, user_id: str) -> Place | None:
        """The app's direct message with a user, opened if need be."""
        try:
            response = self.client.conversations_open(users=user_id)
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("conversations.open failed (%s); the reply is stored, not sent", reason(exc))
            return None
        channel = (response.get("channel") or {}).get("id")
        return Place(channel=channel) if isinstance(channel, str) and channel else None

    def _respond(self, url: str, message: SlackMessage, replace_original: bool) -> str | None:
        try:
            result = WebhookClient(url, timeout=TIMEOUT_SECONDS).send(
                text=message.text, blocks=message.blocks, response_type="ephemeral",
                replace_original=replace_original)
        except (SlackClientError, OSError, ValueError) as exc:
            log.warning("response_url failed (%s); the conversation is stored", reason(exc))
            return None
        if result.status_code != 200:
            log.warning("response_url answered HTTP %s; the conversation is stored", result.status_code)
        return None


def reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__
