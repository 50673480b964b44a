"""Socket Mode: ``jsug-bot slack`` (the Procfile's ``slack`` process) opens a websocket to Slack,
so a workspace without a public URL for ``/slack/events`` can use the app. The same Bolt app and
listeners as HTTP mode; Slack's signature is not used (the app-level token authenticates)."""

from __future__ import annotations

import logging
import signal
import threading

from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk.socket_mode.builtin import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bot.app import build_assistant
from bot.channels.slack.app import SlackChannel, SlackNotConfiguredError, create_slack_app, require_slack_settings
from bot.channels.slack.incoming import malformed
from bot.settings import Settings

log = logging.getLogger("bot.slack")


class CheckedSocketModeHandler(SocketModeHandler):
    """Bolt's Socket Mode handler that acknowledges, and drops, an envelope of a shape Slack never
    sends, instead of letting Bolt's own middleware fail on it unacknowledged."""

    def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        problem = malformed(req.payload)
        if problem is not None:
            log.warning("a Socket Mode envelope was dropped: %s", problem)
            client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        super().handle(client, req)


def connect(slack: SlackChannel, settings: Settings) -> SocketModeHandler:
    """Open the Socket Mode connection (``apps.connections.open``, then the websocket); returns at once."""
    if settings.slack_app_token is None:
        raise SlackNotConfiguredError("SLACK_APP_TOKEN (an app-level token, xapp-…) is needed for Socket Mode")
    handler = CheckedSocketModeHandler(slack.app, settings.slack_app_token.get_secret_value())
    handler.connect()
    return handler


def run_socket_mode(settings: Settings) -> None:
    """Run until SIGTERM or Ctrl+C, then close the connection, the poster and the database."""
    require_slack_settings(settings, socket_mode=True)
    assistant = build_assistant(settings, model_in_background=True)
    try:
        slack = create_slack_app(settings, assistant, socket_mode=True)
        slack.start()
        handler = connect(slack, settings)
        log.info("Slack Socket Mode connected; secretariat channel: %s", settings.slack_secretariat_channel or "none")
        stopped = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass
        handler.close()
        slack.close()
    finally:
        assistant.close()
