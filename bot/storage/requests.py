"""Requests to the secretariat: recorded once, with their history, the transcript and the channel
the member used, so that the secretariat answers once and the answer reaches the member there."""

from __future__ import annotations

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
    lines = [f"受付番号: {request.id}", f"種別: {KIND_LABELS.get(request.kind, request.kind)}",
             f"チャネル: {request.channel}"]
    if member is not None:
        lines += [f"会員: {member.name} ({member.login_id}, {member.email})", f"会社: {member.company.name}",
                  f"企業代表者: {'はい' if member.is_representative else 'いいえ'}"]
    else:
        lines.append("会員: 本人確認なし")
    for key, value in request.details.items():
        if key != "transcript":
            lines.append(f"{key}: {value}")
    lines += ["", "--- 会話の記録 ---"]
    lines += [f"[{m['from']}] {m['text']}" for m in request.details.get("transcript", [])]
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
