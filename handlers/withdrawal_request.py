"""withdrawal_request: JSUGNET deregistration, or the company's withdrawal (its representative only).

Nothing is deleted here: per the association's rules a withdrawal is a notice to the secretariat,
so the handler records a request, confirms it to the member and notifies the secretariat.
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.dialogue.flow import CONFIRM, SKIP, FlowContext, Step, clean_free_text, is_yes
from bot.dialogue.replies import buttons, text
from bot.storage.requests import KIND_LABELS, open_request, secretariat_mail_body

NAME = "withdrawal_request"
KIND = "kind:"
DEREGISTER, WITHDRAW = "user_deregistration", "company_withdrawal"
MESSAGES = {
    "choose": "どちらのお手続きですか。",
    "deregister": "JSUGNET利用登録の解除(ご自身の登録)",
    "withdraw": "企業としての退会",
    "not_representative": "企業としての退会は、企業代表者の方からお申し込みいただく必要があります。"
    "ご自身のJSUGNET利用登録の解除でしたら、こちらから承ります。",
    "reason": "差し支えなければ、理由をお聞かせください。省略する場合は「省略する」を押してください。",
    "skip": "省略する",
    "confirm": "{kind}を事務局に申し込みます。よろしいですか。",
    "yes": "はい、申し込みます",
    "no": "やめる",
    "ask_again": "ボタンでお選びください。",
    "done": "{kind}のお申し込みを受け付けました(受付番号: {id})。事務局での手続きが完了しましたら、"
    "ご連絡いたします。手続き完了までは、ご登録はそのまま残ります。",
    "member_subject": "【JSUG】{kind}のお申し込みを受け付けました(受付番号: {id})",
    "member_body": "{name} 様\n\n{kind}のお申し込みを受け付けました(受付番号: {id})。\n"
    "事務局での手続きが完了しましたら、あらためてご連絡いたします。\n",
    "secretariat_subject": "[JSUGアシスタント] {kind} #{id}",
}


class WithdrawalRequestHandler:
    name = NAME
    free_text_steps = frozenset({"reason"})
    """Steps that take the member's own words: never read as a new question (see the engine)."""
    needs_identity = True

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        nonce = secrets.token_hex(8)
        choices = [(MESSAGES["deregister"], f"{KIND}{DEREGISTER}")]
        if ctx.member is not None and ctx.member.is_representative:
            choices.append((MESSAGES["withdraw"], f"{KIND}{WITHDRAW}"))
        return Step([buttons(MESSAGES["choose"], *choices)], {"step": "choose", "nonce": nonce})

    def resume(self, ctx: FlowContext, state: dict[str, Any], said: str | None, action: str | None) -> Step:
        step = state.get("step")
        if step == "choose":
            kind = action[len(KIND):] if action and action.startswith(KIND) else None
            if kind == WITHDRAW and not (ctx.member and ctx.member.is_representative):
                return Step([text(MESSAGES["not_representative"])], state)
            if kind not in (DEREGISTER, WITHDRAW):
                return Step([text(MESSAGES["ask_again"])], state)
            ask = buttons(MESSAGES["reason"], (MESSAGES["skip"], SKIP))
            return Step([ask], {**state, "step": "reason", "kind": kind})
        if step == "reason" and (said is not None or action == SKIP):
            reason = clean_free_text(said or "")
            reason = "" if reason in ("なし", "特になし", "無し") else reason
            kind_label = KIND_LABELS[state["kind"]]
            confirm = buttons(MESSAGES["confirm"].format(kind=kind_label), (MESSAGES["yes"], CONFIRM),
                              (MESSAGES["no"], "cancel"))
            return Step([confirm], {**state, "step": "confirm", "reason": reason})
        if step == "confirm" and is_yes(said, action):
            return self._submit(ctx, state)
        return Step([text(MESSAGES["ask_again"])], state)

    def _submit(self, ctx: FlowContext, state: dict[str, Any]) -> Step:
        member = ctx.member
        assert member is not None
        kind_label = KIND_LABELS[state["kind"]]
        request, created = open_request(
            ctx.session, kind=state["kind"], idempotency_key=f"{ctx.conversation.id}:{state['nonce']}",
            conversation=ctx.conversation, member=member, details={"reason": state.get("reason", "")},
            actor=ctx.actor,
        )
        if created:
            ctx.mailer.queue(ctx.session, ctx.settings.mail.secretariat_address,
                             MESSAGES["secretariat_subject"].format(kind=kind_label, id=request.id),
                             secretariat_mail_body(request, member))
            ctx.mailer.queue(ctx.session, member.email,
                             MESSAGES["member_subject"].format(kind=kind_label, id=request.id),
                             MESSAGES["member_body"].format(name=member.name, kind=kind_label, id=request.id))
        return Step([text(MESSAGES["done"].format(kind=kind_label, id=request.id))], done=True)
