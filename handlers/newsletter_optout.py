"""newsletter_optout: stop the e-mail newsletter and/or the postal DM, each on its own.

The FAQ distinguishes the two (メールマガジン and 郵送DM), so the member chooses; association
notices (JSUGや部会からのお知らせ) keep arriving either way, and the member is told so.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.dialogue.flow import CONFIRM, FlowContext, Step, is_yes
from bot.dialogue.replies import buttons, text
from bot.storage import audit
from bot.storage.models import Preferences

NAME = "newsletter_optout"
TARGETS = {"newsletter": "メールマガジン", "postal_dm": "郵送DM"}
STOP = "stop:"
MESSAGES = {
    "already_off": "メールマガジン・郵送DMとも、すでに停止されています。JSUGや部会からのお知らせは引き続きお届けします。",
    "choose": "停止するものをお選びください。",
    "both": "両方とも停止する",
    "confirm": "{items}を停止します。よろしいですか。",
    "yes": "はい、停止します",
    "no": "やめる",
    "ask_again": "ボタンでお選びいただくか、「メルマガ」「DM」「両方」のいずれかでお答えください。",
    "done": "{items}を停止しました。JSUGや部会からのお知らせ等は引き続きお届けします。",
    "mail_subject": "【JSUG】配信設定を変更しました",
    "mail_body": "{name} 様\n\nJSUGアシスタントで次の配信を停止しました: {items}\n"
    "JSUGや部会からのお知らせ等は引き続きお届けします。\n"
    "お心当たりのない場合は、JSUG事務局までご連絡ください。\n",
}


class NewsletterOptoutHandler:
    name = NAME
    needs_identity = True

    def start(self, ctx: FlowContext, slots: dict[str, Any]) -> Step:
        prefs = _preferences(ctx)
        active = [key for key in TARGETS if getattr(prefs, key)]
        if not active:
            return Step([text(MESSAGES["already_off"])], done=True)
        choices = [(f"{TARGETS[key]}を停止する", f"{STOP}{key}") for key in active]
        if len(active) > 1:
            choices.append((MESSAGES["both"], f"{STOP}both"))
        return Step([buttons(MESSAGES["choose"], *choices)], {"step": "choose", "active": active})

    def resume(self, ctx: FlowContext, state: dict[str, Any], said: str | None, action: str | None) -> Step:
        if state.get("step") == "choose":
            targets = _targets(said, action, state["active"])
            if not targets:
                return Step([text(MESSAGES["ask_again"])], state)
            items = _items(targets)
            confirm = buttons(MESSAGES["confirm"].format(items=items), (MESSAGES["yes"], CONFIRM),
                              (MESSAGES["no"], "cancel"))
            return Step([confirm], {"step": "confirm", "targets": targets})
        if state.get("step") == "confirm" and is_yes(said, action):
            return self._apply(ctx, state["targets"])
        return Step([text(MESSAGES["ask_again"])], state)

    def _apply(self, ctx: FlowContext, targets: list[str]) -> Step:
        assert ctx.member is not None
        prefs = _preferences(ctx, lock=True)
        before = audit.snapshot(prefs, *TARGETS)
        changed = [key for key in targets if getattr(prefs, key)]
        for key in changed:
            setattr(prefs, key, False)
        if changed:
            audit.record(ctx.session, actor=ctx.actor, channel=ctx.channel, action="preferences_changed",
                         entity="member", entity_id=ctx.member.id, before=before,
                         after=audit.snapshot(prefs, *TARGETS))
            ctx.mailer.queue(ctx.session, ctx.member.email, MESSAGES["mail_subject"],
                             MESSAGES["mail_body"].format(name=ctx.member.name, items=_items(changed)))
        return Step([text(MESSAGES["done"].format(items=_items(targets)))], done=True)


def _preferences(ctx: FlowContext, lock: bool = False) -> Preferences:
    """The member's preferences row, locked when about to change (two conversations at once).

    A member without one (imported before preferences existed, or added by hand) gets the defaults
    the association applies anyway; creating the row is a change like any other, so it is audited
    (``preferences_created``, with ``members show``'s history of the member)."""
    assert ctx.member is not None
    query = select(Preferences).where(Preferences.member_id == ctx.member.id)
    prefs = ctx.session.scalars(query.with_for_update() if lock else query).one_or_none()
    if prefs is None:
        prefs = Preferences(member_id=ctx.member.id, newsletter=True, postal_dm=True,
                            interest_committees=[], regional_forums=[])
        ctx.session.add(prefs)
        ctx.session.flush()
        audit.record(ctx.session, actor=ctx.actor, channel=ctx.channel, action="preferences_created",
                     entity="preferences", entity_id=ctx.member.id, before=None,
                     after=audit.snapshot(prefs, "newsletter", "postal_dm", "interest_committees",
                                          "regional_forums"))
    return prefs


def _targets(said: str | None, action: str | None, active: list[str]) -> list[str]:
    if action and action.startswith(STOP):
        choice = action[len(STOP):]
        picked = active if choice == "both" else [choice]
    else:
        words = (said or "").lower()
        picked = [key for key, keys in (("newsletter", ("メルマガ", "メール", "newsletter")),
                                        ("postal_dm", ("dm", "郵送", "はがき", "郵便"))) if any(k in words for k in keys)]
        if "両方" in words or "どちらも" in words or "全部" in words:
            picked = list(active)
    return [key for key in picked if key in active]


def _items(targets: list[str]) -> str:
    return "・".join(TARGETS[key] for key in targets)
