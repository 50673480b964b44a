"""secretariat_request: what only the secretariat can do, and any question the FAQ cannot answer.

Company-name and representative changes are tied to a verified member; a general inquiry is not
(prospective members ask too). Each becomes a request with the transcript, visible to the
secretariat, with the member's channel kept so the answer reaches the member there.
"""

from __future__ import annotations

import secrets
from typing import Any

from bot.dialogue.flow import CONFIRM, FlowContext, Step, clean_free_text, is_yes
from bot.dialogue.replies import buttons, text
from bot.identity import parse_email
from bot.storage.requests import KIND_LABELS, open_request, secretariat_mail_body

NAME = "secretariat_request"
KIND = "kind:"
NEEDS_MEMBER = frozenset({"company_name_change", "representative_change"})
PROMPTS = {
    "company_name_change": "新しい会社名(転職・転籍の場合は新しい所属先の会社名)と、変更の時期を入力してください。",
    "representative_change": "後任の企業代表者のお名前・部署・メールアドレスを入力してください。",
    "inquiry": "お問い合わせの内容を入力してください。",
}
MESSAGES = {
    "choose": "事務局へのご用件をお選びください。",
    "inquiry_button": "その他のお問い合わせ",
    "too_short": "もう少し詳しくご入力ください。",
    "form_incomplete": "お名前、メールアドレス、お問い合わせ内容をすべてご入力ください。",
    "confirm": "次の内容を事務局にお送りします。よろしいですか。\n{summary}",
    "yes": "はい、送ります",
    "no": "やめる",
    "ask_again": "ボタンでお選びいただくか、内容を入力してください。",
    "done": "事務局にお送りしました(受付番号: {id})。事務局からの回答は、このチャットでお知らせします。",
    "secretariat_subject": "[JSUGアシスタント] {kind} #{id}",
}


class SecretariatRequestHandler:
    name = NAME
    free_text_steps = frozenset({"details"})
    """Steps that take the member's own words: never read as a new question (see the engine)."""
    needs_identity = False

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        state = {"nonce": secrets.token_hex(8)}
        if isinstance(slots.get("form"), dict):
            return self._from_form(ctx, state, slots["form"])
        kind = slots.get("kind") or ("inquiry" if slots.get("question") else None)
        if kind is None:
            choices = [(KIND_LABELS[k], f"{KIND}{k}") for k in sorted(NEEDS_MEMBER)]
            choices.append((MESSAGES["inquiry_button"], f"{KIND}inquiry"))
            return Step([buttons(MESSAGES["choose"], *choices)], {**state, "step": "choose"})
        return self._begin(ctx, {**state, "kind": kind}, clean_free_text(slots.get("question") or ""))

    def resume(self, ctx: FlowContext, state: dict[str, Any], said: str | None, action: str | None) -> Step:
        step = state.get("step")
        if step == "choose" and action and action.startswith(KIND) and action[len(KIND):] in PROMPTS:
            return self._begin(ctx, {**state, "kind": action[len(KIND):]}, "")
        if step == "details" and said is not None:
            return self._confirm(state, clean_free_text(said))
        if step == "confirm" and is_yes(said, action):
            return self._submit(ctx, state)
        return Step([text(MESSAGES["ask_again"])], state)

    def _from_form(self, ctx: FlowContext, state: dict[str, Any], form: dict[str, Any]) -> Step:
        """A channel's inquiry form (name, address, question): the member's submit is the confirmation."""
        name = clean_free_text(str(form.get("name") or ""), limit=100)
        email = parse_email(str(form.get("email") or ""))
        question = clean_free_text(str(form.get("question") or ""))
        if not name or email is None or len(question) < 2:
            return Step([text(MESSAGES["form_incomplete"])], done=True)
        details = {"details": question, "contact_name": name, "contact_email": email}
        return self._submit(ctx, {**state, "kind": "inquiry", **details})

    def _begin(self, ctx: FlowContext, state: dict[str, Any], question: str) -> Step:
        if state["kind"] in NEEDS_MEMBER and ctx.member is None:
            return Step([], state, extras={"identify": True, "slots": {"kind": state["kind"]}})
        if question:
            return self._confirm(state, question)
        return Step([text(PROMPTS[state["kind"]])], {**state, "step": "details"})

    def _confirm(self, state: dict[str, Any], details: str) -> Step:
        if len(details) < 2:
            return Step([text(MESSAGES["too_short"])], {**state, "step": "details"})
        summary = f"【{KIND_LABELS[state['kind']]}】{details}"
        confirm = buttons(MESSAGES["confirm"].format(summary=summary), (MESSAGES["yes"], CONFIRM),
                          (MESSAGES["no"], "cancel"))
        return Step([confirm], {**state, "step": "confirm", "details": details})

    def _submit(self, ctx: FlowContext, state: dict[str, Any]) -> Step:
        details: dict[str, Any] = {k: state[k] for k in ("details", "contact_name", "contact_email") if k in state}
        request, created = open_request(
            ctx.session, kind=state["kind"], idempotency_key=f"{ctx.conversation.id}:{state['nonce']}",
            conversation=ctx.conversation, member=ctx.member, details=details, actor=ctx.actor,
        )
        if created:
            ctx.mailer.queue(ctx.session, ctx.settings.mail.secretariat_address,
                             MESSAGES["secretariat_subject"].format(kind=KIND_LABELS[state["kind"]], id=request.id),
                             secretariat_mail_body(request, ctx.member))
        return Step([text(MESSAGES["done"].format(id=request.id))], done=True)
