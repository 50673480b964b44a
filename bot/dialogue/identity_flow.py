"""Who the member is, before an action that reads or changes member data.

Web and terminal: a 6-digit one-time code mailed to the registered address (the mail is the
proof). Slack: the Slack user linked to the JSUGNET user whose e-mail matches the verified
e-mail of the Slack profile. When one address owns several accounts (a personal one and the
company representative account), the member chooses which one acts.
"""

from __future__ import annotations

from typing import Any

from bot import identity
from bot.dialogue.flow import FlowContext, Step
from bot.dialogue.replies import buttons, text
from bot.messages import message
from bot.storage import audit
from bot.storage.models import Member

ACCOUNT = "account:"
MAX_EMAIL_TRIES = 3


class IdentityFlow:
    """A sub-flow the engine runs before a handler that needs a verified member."""

    def start(self, ctx: FlowContext, data: dict[str, Any]) -> Step:
        if ctx.channel == "slack":
            return self._choose(ctx, data, identity.slack_members(ctx.session, ctx.user_ref))
        if ctx.conversation.verified_email:
            return self._choose(ctx, data, identity.members_by_email(ctx.session, ctx.conversation.verified_email))
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

    def _on_email(self, ctx: FlowContext, data: dict[str, Any], typed: str) -> Step:
        email = identity.parse_email(typed)
        if email is None:
            tries = data["tries"] + 1
            if tries >= MAX_EMAIL_TRIES:
                return Step([text(message("identity_email_failed"))], done=True)
            return Step([text(message("identity_email_invalid"))], {**data, "tries": tries})
        identity.issue_code(ctx.session, ctx.mailer, ctx.settings, ctx.channel, ctx.user_ref, email, ctx.now)
        reply = text(message("identity_code_sent", minutes=ctx.settings.code_minutes))
        return Step([reply], {**data, "step": "code", "email": email.lower()})

    def _on_code(self, ctx: FlowContext, data: dict[str, Any], code: str) -> Step:
        check = identity.verify_code(ctx.session, ctx.settings, ctx.channel, ctx.user_ref, code, ctx.now)
        if check.ok and check.email:
            ctx.conversation.verified_email = check.email
            return self._choose(ctx, data, identity.members_by_email(ctx.session, check.email))
        if check.reason == "wrong":
            wrong = int(data.get("wrong", 0)) + 1
            left = max(ctx.settings.code_attempts - wrong, 0)
            if left:
                return Step([text(message("identity_code_wrong", left=left))], {**data, "wrong": wrong})
        return Step([text(message("identity_code_failed"))], done=True)

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
        members = (identity.slack_members(ctx.session, ctx.user_ref) if ctx.channel == "slack"
                   else identity.members_by_email(ctx.session, ctx.conversation.verified_email or ""))
        chosen = next((m for m in members if m.login_id == login_id), None)
        if chosen is None:
            return Step([text(message("stale_button"))], data)
        return self._verified(ctx, data, chosen)

    def _verified(self, ctx: FlowContext, data: dict[str, Any], member: Member) -> Step:
        ctx.conversation.member_id = member.id
        ctx.member = member
        audit.record(ctx.session, actor=ctx.actor, channel=ctx.channel, action="identity_verified",
                     entity="conversation", entity_id=ctx.conversation.id, after={"member_id": member.id})
        return Step([text(message("identity_verified"))], done=True,
                    extras={"then": data["then"], "slots": data.get("slots", {})})

