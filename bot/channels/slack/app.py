"""The Slack app's factory and what its listeners share.

``create_slack_app(settings, assistant)`` builds the one Bolt app (HTTP mode mounts it at
``POST /slack/events``; ``jsug-bot slack`` runs it over Socket Mode). Every request is acknowledged
at once; the engine turn, the mail and the Web API calls run afterwards in Bolt's lazy listeners.
Events API deliveries are claimed in the database by their ``event_id`` before the ack, so a retry
or a copy delivered to a second process is acknowledged and not processed again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slack_bolt import App, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier

from bot.app import Assistant
from bot.channels.slack import home, members, secretariat
from bot.channels.slack.blocks import render, text_message
from bot.channels.slack.incoming import user_ref
from bot.channels.slack.places import Place, Sender, reason
from bot.errors import ConfigurationError, ServiceUnavailableError
from bot.messages import message
from bot.settings import Settings

log = logging.getLogger("bot.slack")
IDENTITY_REFRESH_SECONDS = 300
"""How long a Slack profile's verified address is trusted before ``users.info`` is asked again."""
RATE_LIMIT_RETRIES = 2
SLACK = "slack"


class SlackNotConfiguredError(ConfigurationError):
    """The Slack settings needed for this mode are missing."""


class SlackChannel:
    """The Bolt app, its Web API client, and the steps every listener takes."""

    def __init__(self, settings: Settings, assistant: Assistant, client: WebClient, app: App) -> None:
        self.settings = settings
        self.assistant = assistant
        self.client = client
        self.app = app
        self.sender = Sender(client)
        secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
        self.verifier = SignatureVerifier(secret) if secret else None
        """Checks HTTP requests' signatures (None in Socket Mode, where the app token authenticates)."""
        self.secretariat_channel = settings.slack_secretariat_channel or None
        self.poster = secretariat.Poster(self) if self.secretariat_channel else None
        self._checked: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- one member turn -------------------------------------------------------------------------

    def converse(self, team_id: str, user_id: str, place: Place, text: str | None = None,
                 action: str | None = None) -> None:
        """Run one engine turn for a Slack user and send its replies: to ``place``, or, when the turn
        concerns the member's own account and ``place`` is seen by others, to a direct message."""
        ref = self.identify(team_id, user_id)
        try:
            turn = self.assistant.turn(SLACK, ref, text=text, action=action)
        except ServiceUnavailableError:
            self.sender.post(place, text_message(message("database_unavailable")))
            return
        except ValueError as exc:  # an id the engine cannot store (EngineInputError)
            log.warning("Slack turn refused: %s", exc)
            return
        reply = render(turn.replies)
        if turn.private and not place.is_direct:
            direct = self.sender.direct(user_id)
            self.sender.post(place, text_message(message("slack_continued_in_dm")))
            if direct is None:
                return
            place = direct
        self.sender.post(place, reply)
        if turn.mails and self.poster is not None:
            self.poster.wake()  # the turn may have filed a request for the secretariat

    def identify(self, team_id: str, user_id: str) -> str:
        """The user's engine reference, with its link to JSUGNET accounts refreshed from the Slack
        profile's address when Slack has confirmed it (at most every few minutes a user)."""
        ref = user_ref(team_id, user_id)
        now = time.monotonic()
        with self._lock:
            if self._checked.get(ref, 0.0) > now:
                return ref
        try:
            user: dict[str, Any] | None = self.client.users_info(user=user_id).get("user") or {}
        except (SlackApiError, SlackClientError, OSError) as exc:
            log.warning("users.info failed (%s); the Slack user is treated as not verified", reason(exc))
            user = None
        try:
            self.assistant.link_identity(SLACK, ref, _confirmed_address(user, team_id) if user else None)
        except ServiceUnavailableError:
            return ref
        if user is not None:  # a failed look-up is asked again at the next message
            with self._lock:
                self._checked[ref] = now + IDENTITY_REFRESH_SECONDS
        return ref

    def staff_name(self, user_id: str) -> str:
        """A secretariat member's name for the request's history (their Slack id if unknown)."""
        try:
            user: dict[str, Any] = self.client.users_info(user=user_id).get("user") or {}
        except (SlackApiError, SlackClientError, OSError):
            return user_id
        profile = user.get("profile") or {}
        name = profile.get("real_name") or user.get("real_name") or user.get("name")
        return f"{name} ({user_id})"[:80] if isinstance(name, str) and name else user_id

    def finish_event(self, body: dict[str, Any]) -> None:
        """Mark an event processed (a retry arriving much later is then not taken over)."""
        event_id = body.get("event_id")
        if body.get("type") == "event_callback" and isinstance(event_id, str) and event_id:
            try:
                self.assistant.finish_slack_event(event_id[:100])
            except ServiceUnavailableError:
                log.warning("could not mark a Slack event processed (the database does not answer)")

    # -- running ----------------------------------------------------------------------------------

    def start(self) -> None:
        if self.poster is not None:
            self.poster.start()

    def close(self) -> None:
        if self.poster is not None:
            self.poster.stop()


def require_slack_settings(settings: Settings, *, socket_mode: bool) -> None:
    """Fail with the name of the missing setting: HTTP mode needs the signing secret, Socket Mode the app token."""
    if settings.slack_bot_token is None:
        raise SlackNotConfiguredError("SLACK_BOT_TOKEN is not set (the bot token, xoxb-…, from the app's OAuth page)")
    if socket_mode and settings.slack_app_token is None:
        raise SlackNotConfiguredError("SLACK_APP_TOKEN (an app-level token, xapp-…) is needed for Socket Mode")
    if not socket_mode and settings.slack_signing_secret is None:
        raise SlackNotConfiguredError("SLACK_SIGNING_SECRET is needed to receive Slack's requests over HTTP")


def create_slack_app(settings: Settings, assistant: Assistant, *, socket_mode: bool = False) -> SlackChannel:
    """The Bolt app with every listener (see ``require_slack_settings`` for what each mode needs)."""
    require_slack_settings(settings, socket_mode=socket_mode)
    assert settings.slack_bot_token is not None
    token = settings.slack_bot_token.get_secret_value()
    client = WebClient(token=token, base_url=settings.slack_api_base_url, timeout=10,
                       logger=logging.getLogger("bot.slack.api"),
                       retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=1),
                                       RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)])
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    app = App(client=client, signing_secret=secret, token_verification_enabled=False,
              request_verification_enabled=not socket_mode, process_before_response=False,
              logger=logging.getLogger("bot.slack.bolt"), url_verification_enabled=True)
    channel = SlackChannel(settings, assistant, client, app)
    app.middleware(_once_per_event(assistant))
    members.register(app, channel)
    secretariat.register(app, channel)
    home.register(app, channel)
    return channel


def _once_per_event(assistant: Assistant) -> Any:
    """A Bolt middleware: an Events API delivery already claimed (a retry, another process's copy)
    is acknowledged and goes no further."""

    def once(body: dict[str, Any], next: Any) -> BoltResponse | None:  # noqa: A002 - Bolt's argument name
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if isinstance(event_id, str) and event_id:
            try:
                claimed = assistant.claim_slack_event(event_id[:100])
            except ServiceUnavailableError:
                log.error("the database does not answer; Slack will deliver the event again")
                return BoltResponse(status=503, body="")
            if not claimed:
                return BoltResponse(status=200, body="")
        return next()

    return once


def _confirmed_address(user: dict[str, Any], team_id: str) -> str | None:
    """The profile's address, only if Slack confirmed it and the user belongs to this workspace."""
    if user.get("deleted") or user.get("is_bot") or user.get("is_email_confirmed") is not True:
        return None
    if user.get("team_id") not in (None, team_id):
        return None  # a Slack Connect user of another organisation
    email = (user.get("profile") or {}).get("email")
    return email if isinstance(email, str) and email else None
