"""Who the member is, before an action that reads or changes member data.

Web and terminal: a 6-digit one-time code mailed to the registered address (the mail is the
proof). Slack: the Slack user linked to the JSUGNET user whose e-mail matches the verified
e-mail of the Slack profile. When one address owns several accounts (a personal one and the
company representative account), the member chooses which one acts.

The proof lasts ``settings.identity_minutes`` from ``Conversation.verified_at``; the engine asks
again before a change after that. Code requests and wrong codes are limited per conversation,
per address and overall (``bot.attempt_limits``); a member who meets a limit is told how many
minutes to wait, in words that are the same for registered and unregistered addresses, and each
request, wrong code and lock-out is in the audit log.
"""

from __future__ import annotations

from typing import Any

from bot import identity
from bot.attempt_limits import AttemptLimits, Wait
from bot.dialogue.flow import FlowContext, Step
from bot.dialogue.replies import buttons, text
from bot.messages import message
from bot.storage import audit
from bot.storage.models import Member

ACCOUNT = "account:"
MAX_EMAIL_TRIES = 3
WAIT_MESSAGES = {"code-requests": "identity_code_requests_limited", "wrong-codes": "identity_wrong_codes_limited"}


class IdentityFlow:
    """A sub-flow the engine runs before a handler that needs a verified member."""

    def __init__(self, limits: AttemptLimits) -> None:
        self.limits = limits

    def start(self, ctx: FlowContext, data: dict[str, Any]) -> Step:
        if ctx.channel == "slack":
            return self._choose(ctx, data, identity.slack_members(ctx.session, ctx.user_ref))
        if _address_proven(ctx):
            return self._choose(ctx, data, identity.members_by_email(ctx.session, ctx.conversation.verified_email or ""))
        return Step([text(message("identity_intro"))], {**data, "step": "email", "tries": 0})

    def resume(self, ctx: FlowContext, data: dict[str, Any], said: str | None, action: str | None) -> Step:
        step = data.get("step")
        if step == "email":
            return self._on_email(ctx, data, (said or "").strip())
        if step == "code":
            return self._on_code(ctx, data, (said or "").strip())
        if step == "account" and action and action.startswith(ACCOUNT):
            return self._on_account(ctx, data, action[len(ACCOUNT):])
        return Step([text(message("stale_button"))], data)

    def _keys(self, ctx: FlowContext, email: str) -> tuple[str, str]:
        secret = identity.server_secret(ctx.settings)
        return identity.session_key(secret, ctx.channel, ctx.user_ref), identity.email_hash(email, secret)

    def _on_email(self, ctx: FlowContext, data: dict[str, Any], typed: str) -> Step:
        email = identity.parse_email(typed)
        if email is None:
            tries = data["tries"] + 1
            if tries >= MAX_EMAIL_TRIES:
                return Step([text(message("identity_email_failed"))], done=True)
            return Step([text(message("identity_email_invalid"))], {**data, "tries": tries})
        wait = self.limits.request_code(*self._keys(ctx, email))
        if wait is not None:
            return self._refused(ctx, email, wait)
        identity.issue_code(ctx.session, ctx.mailer, ctx.settings, ctx.channel, ctx.user_ref, email, ctx.now,
                            actor=ctx.actor)
        reply = text(message("identity_code_sent", minutes=ctx.settings.code_minutes))
        return Step([reply], {**data, "step": "code", "email": email.lower()})

    def _on_code(self, ctx: FlowContext, data: dict[str, Any], code: str) -> Step:
        email = str(data.get("email") or "")
        keys = self._keys(ctx, email)
        wait = self.limits.may_guess(*keys)
        if wait is not None:
            return self._refused(ctx, email, wait)
        check = identity.verify_code(ctx.session, ctx.settings, ctx.channel, ctx.user_ref, code, ctx.now)
        if check.ok and check.email:
            ctx.conversation.verified_email = check.email
            ctx.conversation.verified_at = ctx.now
            return self._choose(ctx, data, identity.members_by_email(ctx.session, check.email))
        if check.reason in ("wrong", "too_many"):  # a guess that was counted against the code
            self.limits.wrong_code(*keys)
            wrong = int(data.get("wrong", 0)) + 1
            members = identity.members_by_email(ctx.session, email)
            identity.record_attempt(ctx.session, actor=ctx.actor, channel=ctx.channel, action="one_time_code_wrong",
                                    members=members, address_key=keys[1], wrong=wrong)
            left = max(ctx.settings.code_attempts - wrong, 0) if check.reason == "wrong" else 0
            if left:
                return Step([text(message("identity_code_wrong", left=left))], {**data, "wrong": wrong})
            identity.record_attempt(ctx.session, actor=ctx.actor, channel=ctx.channel, action="identity_locked_out",
                                    members=members, address_key=keys[1], reason="code_attempts")
        return Step([text(message("identity_code_failed"))], done=True)

    def _refused(self, ctx: FlowContext, email: str, wait: Wait) -> Step:
        """Over a limit: say how long to wait (alike for every address) and tell the secretariat."""
        secret = identity.server_secret(ctx.settings)
        identity.record_attempt(
            ctx.session, actor=ctx.actor, channel=ctx.channel, action="identity_locked_out",
            members=identity.members_by_email(ctx.session, email), address_key=identity.email_hash(email, secret),
            reason=f"{wait.kind}_per_{wait.scope}", minutes=wait.minutes,
        )
        return Step([text(message(WAIT_MESSAGES[wait.kind], minutes=wait.minutes))], done=True)

    def _choose(self, ctx: FlowContext, data: dict[str, Any], members: list[Member]) -> Step:
        if not members:
            key = "identity_slack_unlinked" if ctx.channel == "slack" else "identity_code_failed"
            return Step([text(message(key))], done=True)
        if len(members) == 1:
            return self._verified(ctx, data, members[0])
        choices = [(f"{m.login_id}（{m.company.name}{'・企業代表者' if m.is_representative else ''}）",
                    f"{ACCOUNT}{m.login_id}") for m in members]
        return Step([buttons(message("identity_choose_account"), *choices)], {**data, "step": "account"})

    def _on_account(self, ctx: FlowContext, data: dict[str, Any], login_id: str) -> Step:
        if ctx.channel != "slack" and not _address_proven(ctx):
            return Step([text(message("identity_code_failed"))], done=True)  # chosen long after the code
        members = (identity.slack_members(ctx.session, ctx.user_ref) if ctx.channel == "slack"
                   else identity.members_by_email(ctx.session, ctx.conversation.verified_email or ""))
        chosen = next((m for m in members if m.login_id == login_id), None)
        if chosen is None:
            return Step([text(message("stale_button"))], data)
        return self._verified(ctx, data, chosen)

    def _verified(self, ctx: FlowContext, data: dict[str, Any], member: Member) -> Step:
        conversation = ctx.conversation
        conversation.member_id = member.id
        if ctx.channel == "slack" or conversation.verified_at is None:
            conversation.verified_at = ctx.now  # the Slack link was just read; an operator's word starts now
        ctx.member = member
        audit.record(ctx.session, actor=ctx.actor, channel=ctx.channel, action="identity_verified",
                     entity="conversation", entity_id=conversation.id, after={"member_id": member.id})
        return Step([text(message("identity_verified"))], done=True,
                    extras={"then": data["then"], "slots": data.get("slots", {})})


def _address_proven(ctx: FlowContext) -> bool:
    """Whether the conversation holds an address proven within ``identity_minutes``, or one an
    operator vouched for (``assume_identity`` sets the address and leaves ``verified_at`` unset:
    that proof starts when it is first used, in ``_verified``)."""
    conversation = ctx.conversation
    vouched = conversation.verified_at is None and conversation.member_id is None
    return bool(conversation.verified_email) and (
        vouched or identity.identity_fresh(conversation, ctx.now, ctx.settings))
