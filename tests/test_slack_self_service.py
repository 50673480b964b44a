"""A member does the routine things on Slack: the JSUGNET account is found through the address Slack
has confirmed for the profile (no one-time code), every change is confirmed before it is written,
and an account matter raised in a channel goes on in a direct message."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.messages import message
from bot.storage.models import Member, Message, SecretariatRequest
from tests.mail_support import Inbox, SmtpServer, body
from tests.slack_fake import Call
from tests.slack_support import GENERAL, TEAM, SlackHarness, block_text, button_values

TANAKA, YAMADA = "U0TANAKA", "U0YAMADA"
DEMO_COMPANIES = ("株式会社サンプル製作所", "デモ商事株式会社", "テストソリューションズ株式会社")


def preferences(sessions: sessionmaker[Session], login_id: str) -> tuple[bool, bool]:
    with sessions() as session:
        member = session.scalars(select(Member).where(Member.login_id == login_id)).one()
        return member.preferences.newsletter, member.preferences.postal_dm


def start(slack: SlackHarness, user: str, said: str, handler: str) -> Call:
    """Ask for an action; where the assistant first shows the FAQ answer, press its action button."""
    reply = slack.converse(user, said)
    if f"start:{handler}" in button_values(reply):
        reply = slack.press(user, reply, f"start:{handler}")
    return reply


def confirm_button(call: Call) -> dict:
    return next(e for b in call.args["blocks"] if b["type"] == "actions" for e in b["elements"] if e["value"] == "confirm")


def test_a_verified_slack_member_stops_the_newsletter_after_confirming(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    choices = start(slack, TANAKA, "メルマガの配信を止めたい", "newsletter_optout")
    assert "stop:newsletter" in button_values(choices), block_text(choices)
    assert message("identity_code_sent", minutes=10)[:10] not in block_text(choices)  # no code on Slack

    confirm = slack.press(TANAKA, choices, "stop:newsletter")
    assert confirm_button(confirm)["confirm"]["title"]["text"] == message("slack_confirm_title")
    assert preferences(slack.sessions, "demo-tanaka") == (True, True)  # nothing before the confirmation

    done = slack.press(TANAKA, confirm, "confirm")
    assert "停止しました" in block_text(done)
    assert preferences(slack.sessions, "demo-tanaka") == (False, True)


def test_a_slack_profile_address_slack_has_not_confirmed_links_no_account(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com", confirmed=False)
    reply = start(slack, TANAKA, "メルマガの配信を止めたい", "newsletter_optout")
    assert block_text(reply).strip() == message("identity_slack_unlinked")
    assert not any(name in block_text(reply) for name in DEMO_COMPANIES)
    assert preferences(slack.sessions, "demo-tanaka") == (True, True)


def test_a_non_representative_may_deregister_but_not_withdraw_the_company(slack: SlackHarness) -> None:
    slack.fake.add_user(YAMADA, "yamada@example.com")
    accounts = start(slack, YAMADA, "退会したい", "withdrawal_request")
    assert {"account:demo-yamada", "account:demo-yamada-rep"} <= set(button_values(accounts)), block_text(accounts)
    kinds = slack.press(YAMADA, accounts, "account:demo-yamada")
    assert "kind:company_withdrawal" not in button_values(kinds)
    refused = slack.press(YAMADA, kinds, "kind:company_withdrawal", forged=True)
    assert "企業代表者の方から" in block_text(refused)

    reason = slack.press(YAMADA, kinds, "kind:user_deregistration")
    confirm = slack.press(YAMADA, reason, "skip")
    done = slack.press(YAMADA, confirm, "confirm")
    with slack.sessions() as session:
        [request] = session.scalars(select(SecretariatRequest)).all()
        assert (request.kind, request.channel, request.user_ref) == ("user_deregistration", "slack", f"{TEAM}:{YAMADA}")
        assert session.get(Member, request.member_id).login_id == "demo-yamada"
    assert f"受付番号: {request.id}" in block_text(done)


def test_a_password_reset_asked_on_slack_mails_the_link(
    make_slack: Callable[..., SlackHarness], smtp_server: SmtpServer, inbox: Inbox
) -> None:
    slack = make_slack(smtp_port=smtp_server.port)
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    ask = start(slack, TANAKA, "パスワードを忘れました", "password_reset")
    assert message("password_reset_ask_email") in block_text(ask)
    sent = slack.converse(TANAKA, "tanaka@example.com")
    assert "tanaka@example.com" not in block_text(sent)
    slack.assistant.mailer.deliver_pending()
    [mail] = inbox.to("tanaka@example.com")
    assert "/reset-password?token=" in body(mail)


def test_an_account_matter_raised_in_a_channel_goes_on_in_a_direct_message(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    slack.mention(TANAKA, "メルマガの配信を止めたい")
    public = slack.replies_to(GENERAL)
    offered = "\n".join(block_text(call) for call in public)
    if "start:newsletter_optout" in button_values(public[-1]):  # the FAQ answer with the offer, in public
        slack.click(public[-1], "start:newsletter_optout", TANAKA)
        public = slack.replies_to(GENERAL, len(public) + 1)
    direct = slack.replies_to("D" + TANAKA)
    assert block_text(public[-1]).strip() == message("slack_continued_in_dm")
    assert "stop:newsletter" in button_values(direct[-1])
    shown_in_channel = offered + "\n".join(block_text(call) for call in public)
    assert not any(word in shown_in_channel for word in (*DEMO_COMPANIES, "田中", "tanaka@", "ご本人確認ができました"))


@pytest.mark.parametrize("ask", ["事務局に問い合わせたい"])
def test_app_home_shows_the_members_open_requests(slack: SlackHarness, ask: str) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    reply = slack.converse(TANAKA, ask)
    if "kind:inquiry" in button_values(reply):
        reply = slack.press(TANAKA, reply, "kind:inquiry")
    confirm = slack.converse(TANAKA, "部会の開催日程を教えてください")
    slack.press(TANAKA, confirm, "confirm")
    with slack.sessions() as session:
        [request] = session.scalars(select(SecretariatRequest)).all()
    slack.event({"type": "app_home_opened", "user": TANAKA, "channel": "D" + TANAKA, "tab": "home",
                 "event_ts": "1.0"})
    [published] = slack.fake.wait_for("views.publish")
    assert published.args["user_id"] == TANAKA
    shown = "\n".join(b["text"]["text"] for b in published.args["view"]["blocks"] if b.get("text"))
    assert f"受付番号 {request.id}" in shown and message("status_open") in shown
    with slack.sessions() as session:
        assert session.scalars(select(Message)).first() is not None
