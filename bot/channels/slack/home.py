"""App Home: the member's open requests with their status, and a short help text."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt import App
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.channels.slack.blocks import escape
from bot.channels.slack.incoming import acknowledge
from bot.channels.slack.places import reason
from bot.errors import ServiceUnavailableError
from bot.messages import message

if TYPE_CHECKING:
    from bot.channels.slack.app import SlackChannel

log = logging.getLogger("bot.slack")


def register(app: App, slack: SlackChannel) -> None:
    def on_home_opened(body: dict[str, Any]) -> None:
        try:
            event = body.get("event") or {}
            user_id, team_id = event.get("user"), body.get("team_id")
            if event.get("tab", "home") != "home" or not isinstance(user_id, str) or not isinstance(team_id, str):
                return
            ref = slack.identify(team_id, user_id)
            try:
                requests = slack.assistant.secretariat.requests_of("slack", ref)
            except ServiceUnavailableError:
                requests = None
            try:
                slack.client.views_publish(user_id=user_id, view=home_view(requests))
            except (SlackApiError, SlackClientError, OSError) as exc:
                log.warning("views.publish failed (%s)", reason(exc))
        finally:
            slack.finish_event(body)

    app.event("app_home_opened")(ack=acknowledge, lazy=[on_home_opened])


def home_view(requests: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The Home tab; ``requests`` None when the database did not answer."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message("slack_home_title")}},
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(message("slack_home_help"))}},
        {"type": "divider"},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{message('slack_home_requests')}*"}},
    ]
    if requests is None:
        lines = [message("database_unavailable")]
    elif not requests:
        lines = [message("slack_home_no_requests")]
    else:
        lines = [message("slack_home_request", id=r["id"], kind=r["kind_label"], status=message(f"status_{r['status']}"),
                         created=r["created_at"][:10]) for r in requests]
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": escape("\n".join(lines))[:2900]}})
    return {"type": "home", "blocks": blocks}
