"""Socket Mode: ``jsug-bot slack`` (the Procfile's ``slack`` process) opens a websocket to Slack,
so a workspace without a public URL for ``/slack/events`` can use the app. The same Bolt app and
listeners as HTTP mode; Slack's signature is not used (the app-level token authenticates)."""

from __future__ import annotations

import logging
import signal
import threading

from slack_bolt.adapter.socket_mode import SocketModeHandler

from bot.app import build_assistant
from bot.channels.slack.app import SlackChannel, SlackNotConfiguredError, create_slack_app, require_slack_settings
from bot.settings import Settings

log = logging.getLogger("bot.slack")


def connect(slack: SlackChannel, settings: Settings) -> SocketModeHandler:
    """Open the Socket Mode connection (``apps.connections.open``, then the websocket); returns at once."""
    if settings.slack_app_token is None:
        raise SlackNotConfiguredError("SLACK_APP_TOKEN (an app-level token, xapp-…) is needed for Socket Mode")
    handler = SocketModeHandler(slack.app, settings.slack_app_token.get_secret_value())
    handler.connect()
    return handler


def run_socket_mode(settings: Settings) -> None:
    """Run until SIGTERM or Ctrl+C, then close the connection, the poster and the database."""
    require_slack_settings(settings, socket_mode=True)
    assistant = build_assistant(settings)
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
