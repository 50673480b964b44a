"""The secretariat's side in Slack: each new request posted to ``SLACK_SECRETARIAT_CHANNEL`` with
the member, the request, the end of the transcript and 担当する / 解決済み buttons; a reply in the
post's thread relayed to the member on their own channel and recorded in the request's history."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from slack_bolt import App

from bot.channels.slack.blocks import SlackMessage, button, confirm_dialog, context, escape, text_message
from bot.channels.slack.incoming import acknowledge, is_spoken, plain_text, text_field, user_id_of
from bot.channels.slack.places import Place
from bot.errors import ServiceUnavailableError
from bot.messages import message
from bot.secretariat import UnknownRequestError
from bot.storage.models import RequestStatus
from bot.storage.requests import transcript_lines, visible

if TYPE_CHECKING:
    from bot.channels.slack.app import SlackChannel

log = logging.getLogger("bot.slack")
TAKE = "secretariat:take"
RESOLVE = "secretariat:resolve"
TRANSCRIPT_SHOWN = 10
SECTION_LIMIT = 2900
MAX_REQUEST_ID = 2**63


class Poster:
    """Posts new requests to the secretariat channel from a background thread. Every process with
    Slack may run one: a request is claimed in the database before it is posted (``bot.secretariat``)."""

    def __init__(self, slack: SlackChannel) -> None:
        self.slack = slack
        self.interval = slack.settings.slack_post_interval_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="slack-secretariat-poster", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def run_once(self) -> int:
        """Post what is due; the number of requests posted."""
        secretariat, channel = self.slack.assistant.secretariat, self.slack.secretariat_channel or ""
        posted = 0
        for request_id in secretariat.to_announce():
            shown = secretariat.claim_announcement(request_id, channel)
            if shown is None:
                continue
            ts = self.slack.sender.post(Place(channel=channel), request_message(shown))
            secretariat.record_announcement(request_id, ts, None if ts else "chat.postMessage failed")
            posted += ts is not None
        return posted

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except ServiceUnavailableError:
                log.warning("the database does not answer; new requests are posted to Slack later")
            except Exception:  # noqa: BLE001 - the poster must outlive one bad request
                log.exception("posting requests to the secretariat channel failed")
            self._wake.wait(self.interval)
            self._wake.clear()


def register(app: App, slack: SlackChannel) -> None:
    def on_status(body: dict[str, Any]) -> None:
        pressed = (body.get("actions") or [{}])[0]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        user_id = (body.get("user") or {}).get("id")  # the shapes were checked (incoming.malformed)
        if channel != slack.secretariat_channel or not isinstance(user_id, str):
            return  # only the secretariat's channel moves requests
        value = str(pressed.get("value"))
        if not value.isascii() or not value.isdigit() or not 0 < int(value) < MAX_REQUEST_ID:
            return
        request_id = int(value)
        name = slack.staff_name(user_id)
        take = pressed.get("action_id") == TAKE
        status = RequestStatus.IN_PROGRESS if take else RequestStatus.DONE
        note = message("slack_taken_note" if take else "slack_resolved_note", name=name)
        try:
            shown = slack.assistant.secretariat.set_status(request_id, status, f"staff:slack:{user_id}", note)
        except (UnknownRequestError, ServiceUnavailableError) as exc:
            log.warning("a request's status was not changed from Slack: %s", type(exc).__name__)
            return
        ts = (body.get("message") or {}).get("ts") or (body.get("container") or {}).get("message_ts")
        slack.sender.replace(Place(channel=channel, message_ts=ts), request_message(shown))

    app.action(TAKE)(ack=acknowledge, lazy=[on_status])
    app.action(RESOLVE)(ack=acknowledge, lazy=[on_status])


def relay_thread_reply(slack: SlackChannel, event: dict[str, Any], bot_user_id: str | None) -> None:
    """A secretariat member's reply in a request's thread, sent on to the member and recorded."""
    thread, channel = text_field(event, "thread_ts"), text_field(event, "channel")
    if not is_spoken(event, bot_user_id) or not thread or thread == event.get("ts"):
        return
    secretariat = slack.assistant.secretariat
    in_thread = Place(channel=channel, thread_ts=str(thread))
    try:
        request_id = secretariat.announced_at(channel, str(thread))
        said = plain_text(event.get("text"))
        if request_id is None or not said:
            return
        reply = secretariat.reply(request_id, said, f"staff:slack:{event['user']}")
    except (UnknownRequestError, ValueError, ServiceUnavailableError) as exc:
        log.warning("a secretariat reply was not relayed: %s", type(exc).__name__)
        slack.sender.post(in_thread, text_message(message("slack_relay_failed")))
        return
    if reply.slack_user is not None:
        direct = slack.sender.direct(user_id_of(reply.slack_user))
        sent = direct is not None and slack.sender.post(
            direct, text_message(message("slack_staff_reply", id=reply.request_id, text=said))) is not None
        key = "slack_relayed_slack" if sent else "slack_relay_not_sent"
    elif reply.channel == "web":
        key = "slack_relayed_web_mail" if reply.mailed else "slack_relayed_web"
    else:
        key = "slack_relayed_other"
    slack.sender.post(in_thread, text_message(message(key)))


def request_message(shown: dict[str, Any]) -> SlackMessage:
    """A request as the secretariat channel shows it; every value a member typed is escaped."""
    header = message("slack_request_header", kind=shown["kind_label"], id=shown["id"])
    member = shown.get("member")
    who = (message("slack_request_member", name=escape(visible(member["name"])), login_id=escape(member["login_id"]),
                   company=escape(visible(member["company"]))) if member else message("slack_request_no_member"))
    status = message(f"status_{shown['status']}")
    where = message("slack_request_channel", channel=shown["channel"], created=shown["created_at"][:16].replace("T", " "),
                    status=status)
    details = "\n".join(f"*{escape(visible(key))}*: {escape(visible(value))}" for key, value in shown["details"].items())
    entries = shown["transcript"][-TRANSCRIPT_SHOWN:]
    quoted = "\n".join("> " + escape(line) for line in transcript_lines(entries))
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header[:150]}},
        _section(f"{who}\n{where}" + (f"\n{details}" if details else "")),
    ]
    if quoted:
        blocks.append(_section(message("slack_request_transcript", count=len(entries)) + "\n" + quoted))
    history = [message("slack_request_history", at=e["at"][:16].replace("T", " "), status=message(f"status_{e['status']}"),
                       note=e["note"]) for e in shown["history"][-5:]]
    blocks.append(context("\n".join(history + [message("slack_request_hint")])))
    if shown["status"] in (RequestStatus.OPEN.value, RequestStatus.IN_PROGRESS.value):
        resolve = button(message("slack_resolve_button"), RESOLVE, str(shown["id"]))
        resolve["confirm"] = confirm_dialog(message("slack_resolve_confirm"))
        actions = [resolve] if shown["status"] == RequestStatus.IN_PROGRESS.value else \
            [button(message("slack_take_button"), TAKE, str(shown["id"]), "primary"), resolve]
        blocks.append({"type": "actions", "block_id": f"request:{shown['id']}", "elements": actions})
    return SlackMessage(f"{header}: {status}", blocks)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:SECTION_LIMIT]}}
