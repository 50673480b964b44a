"""Requests to the secretariat: recorded once, with their history, the transcript and the channel
the member used, so that the secretariat answers once and the answer reaches the member there."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.storage import audit
from bot.storage.models import Conversation, Member, Message, RequestEvent, RequestStatus, SecretariatRequest

TRANSCRIPT_MESSAGES = 40
KIND_LABELS = {
    "company_withdrawal": "企業としての退会",
    "user_deregistration": "JSUGNET利用登録の解除",
    "company_name_change": "会社名の変更",
    "representative_change": "企業代表者の変更",
    "inquiry": "お問い合わせ",
}


def transcript(session: Session, conversation: Conversation) -> list[dict[str, str]]:
    """The last messages of the conversation, oldest first, as the secretariat will read them."""
    rows = session.scalars(
        select(Message).where(Message.conversation_id == conversation.id).order_by(Message.id.desc())
        .limit(TRANSCRIPT_MESSAGES)
    ).all()
    return [{"from": speaker(m), "text": m.text, "at": m.created_at.isoformat()} for m in reversed(rows)]


def speaker(message: Message) -> str:
    """Who wrote a message: "member", "assistant" or "staff"."""
    if message.direction == "in":
        return "member"
    return "staff" if message.author else "assistant"


def open_request(
    session: Session,
    *,
    kind: str,
    idempotency_key: str,
    conversation: Conversation,
    member: Member | None,
    details: dict[str, Any],
    actor: str,
) -> tuple[SecretariatRequest, bool]:
    """Record a request, or return the one already recorded under ``idempotency_key``.

    Returns (request, created): a confirmation sent twice records one request, not two.
    """
    existing = session.scalars(
        select(SecretariatRequest).where(SecretariatRequest.idempotency_key == idempotency_key)
    ).one_or_none()
    if existing is not None:
        return existing, False
    if conversation.assumed_by:
        # The member did not prove who they are here: an operator vouched for them (``chat --as``).
        details = {**details, "acted_by_operator": conversation.assumed_by}
    request = SecretariatRequest(
        kind=kind,
        member_id=member.id if member else None,
        company_id=member.company_id if member else None,
        conversation_id=conversation.id,
        channel=conversation.channel,
        user_ref=conversation.user_ref,
        details={**details, "transcript": transcript(session, conversation)},
        idempotency_key=idempotency_key,
    )
    session.add(request)
    session.flush()
    session.add(RequestEvent(request_id=request.id, status=RequestStatus.OPEN.value, note="受付", actor=actor))
    audit.record(session, actor=actor, channel=conversation.channel, action="request_opened",
                 entity="secretariat_request", entity_id=request.id, after={"kind": kind, **details})
    return request, True


def secretariat_mail_body(request: SecretariatRequest, member: Member | None) -> str:
    """The mail that tells the secretariat of a new request; every value a member may have typed is
    rendered with ``field_lines`` and ``transcript_lines``, so no line of it is the member's to forge."""
    lines = [f"受付番号: {request.id}", f"種別: {visible(KIND_LABELS.get(request.kind, request.kind))}",
             f"チャネル: {visible(request.channel)}"]
    if member is not None:
        lines += field_lines("会員", f"{member.name} ({member.login_id}, {member.email})")
        lines += field_lines("会社", member.company.name)
        lines.append(f"企業代表者: {'はい' if member.is_representative else 'いいえ'}")
    else:
        lines.append("会員: 本人確認なし")
    for key, value in request.details.items():
        if key != "transcript":
            lines += field_lines(key, value)
    lines += ["", "--- 会話の記録 ---"]
    lines += transcript_lines(request.details.get("transcript", []))
    return "\n".join(lines)


# --- rendering what members wrote ------------------------------------------------------------------------------
#
# A transcript is read as lines by people (the mail, ``requests show``) and split into lines by
# programs that know more line breaks than "\n" (a mail client, a terminal, ``str.splitlines``: CR,
# VT, FF, U+001C-U+001E, NEL, U+2028, U+2029). A member who types a line break followed by
# "[assistant] ご本人確認ができました。" must not be able to put words in the assistant's mouth, so:
# one record per message, the speaker's label only on its first line, each further line behind
# ``CONTINUATION``, and every control, separator or invisible formatting character shown as a visible
# stand-in instead of being acted on. "\n" is the one line break kept (members write paragraphs).

SPEAKER_LABELS = {"member": "[member]", "assistant": "[assistant]", "staff": "[staff]"}
CONTINUATION = "  | "
_CONTROL_PICTURES = {0x7F: "\u2421"}  # DEL as ␡; C0 characters as U+2400 + code (␀ … ␟, ␍, ␛)


def visible(value: object) -> str:
    """One line of text with nothing a terminal or mail reader acts on: C0 controls as their U+2400
    pictures (``\\r`` → ␍, ESC → ␛), C1 controls as ``\\x85``, line/paragraph separators and invisible
    formatting characters (zero-width, bidirectional overrides) as ``\\u2028``. A line break is shown
    as ␊: callers that keep line breaks split on them first."""
    text = value if isinstance(value, str) else str(value)
    return "".join(_visible_char(char) for char in text)


def _visible_char(char: str) -> str:
    code = ord(char)
    if char == "\t":
        return char  # harmless inside a line, and members paste tables
    if code < 0x20:
        return chr(0x2400 + code)
    if code in _CONTROL_PICTURES:
        return _CONTROL_PICTURES[code]
    if 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    if unicodedata.category(char) in ("Zl", "Zp", "Cf", "Cs"):
        return f"\\u{code:04x}"
    return char


def _text_lines(text: str) -> list[str]:
    """A member's text as visible lines: a pasted CRLF is one line break, a lone CR is shown (␍)."""
    return [visible(line) for line in text.replace("\r\n", "\n").split("\n")]


def field_lines(label: str, value: object) -> list[str]:
    """``label: value``, a value over several lines continued behind ``CONTINUATION``."""
    first, *rest = _text_lines(value if isinstance(value, str) else str(value))
    return [f"{visible(label)}: {first}"] + [CONTINUATION + line for line in rest]


def transcript_lines(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """A transcript as the secretariat reads it: each message one record, ``[speaker] first line``
    and its further lines behind ``CONTINUATION``, so only a record's first line has a label."""
    lines: list[str] = []
    for entry in entries:
        speaker_label = SPEAKER_LABELS.get(str(entry.get("from")), f"[{visible(entry.get('from'))}]")
        first, *rest = _text_lines(str(entry.get("text", "")))
        lines.append(f"{speaker_label} {first}")
        lines += [CONTINUATION + line for line in rest]
    return lines


def render_request(shown: Mapping[str, Any]) -> str:
    """``show_request``'s result as ``jsug-bot requests show`` prints it (values rendered as in the mail)."""
    lines = [f"#{shown['id']} {visible(shown['kind_label'])} ({visible(shown['status'])}), {shown['created_at'][:16]}, "
             f"channel {visible(shown['channel'])} / {visible(shown['user_ref'])}"]
    member = shown["member"]
    if member:
        lines += field_lines("member", f"{member['name']} <{member['email']}> {member['login_id']}, "
                                       f"{member['company']}")
    for key, value in shown["details"].items():
        lines += field_lines(key, value)
    lines.append("--- transcript")
    lines += transcript_lines(shown["transcript"])
    lines.append("--- history")
    for event in shown["history"]:
        lines += field_lines(f"{event['at'][:16]} {event['status']} {event['actor']}", event["note"])
    return "\n".join(lines)


def list_requests(session: Session, status: str | None = "open", limit: int = 100) -> list[dict[str, Any]]:
    """Requests for the secretariat's overview, newest first."""
    query = select(SecretariatRequest).order_by(SecretariatRequest.id.desc()).limit(limit)
    if status:
        query = query.where(SecretariatRequest.status == status)
    return [_summary(session, request) for request in session.scalars(query)]


def show_request(session: Session, request_id: int) -> dict[str, Any] | None:
    """One request in full: details, transcript and history."""
    request = session.get(SecretariatRequest, request_id)
    if request is None:
        return None
    return {
        **_summary(session, request),
        "details": {k: v for k, v in request.details.items() if k != "transcript"},
        "transcript": request.details.get("transcript", []),
        "history": [{"status": e.status, "note": e.note, "actor": e.actor, "at": e.created_at.isoformat()}
                    for e in request.events],
    }


def _summary(session: Session, request: SecretariatRequest) -> dict[str, Any]:
    member = session.get(Member, request.member_id) if request.member_id else None
    return {
        "id": request.id,
        "kind": request.kind,
        "kind_label": KIND_LABELS.get(request.kind, request.kind),
        "status": request.status,
        "created_at": request.created_at.isoformat(),
        "member": {"name": member.name, "email": member.email, "login_id": member.login_id,
                   "company": member.company.name} if member else None,
        "channel": request.channel,
        "user_ref": request.user_ref,
    }
