"""The secretariat works in its Slack channel: each request arrives there with the member, the
request and the end of the transcript; 担当する / 解決済み record who pressed them; a reply in the
request's thread reaches the member where they asked (a Slack DM, or the widget and a mail)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import select

from bot.messages import message
from bot.storage.models import Message, RequestEvent, SecretariatRequest
from tests.api_support import ALLOWED
from tests.mail_support import Inbox, SmtpServer, body
from tests.slack_fake import Call
from tests.slack_support import SECRETARIAT, SlackHarness, block_text, button_values

TANAKA, STAFF = "U0TANAKA", "U0STAFF01"
QUESTION = "来年度の部会の開催日程はいつ決まりますか"


def slack_inquiry(slack: SlackHarness, user: str = TANAKA) -> SecretariatRequest:
    """A Slack member sends a question to the secretariat (the inquiry flow, confirmed)."""
    reply = slack.converse(user, "事務局に問い合わせたい")
    if "kind:inquiry" in button_values(reply):
        reply = slack.press(user, reply, "kind:inquiry")
    confirm = slack.converse(user, QUESTION)
    slack.press(user, confirm, "confirm")
    with slack.sessions() as session:
        return session.scalars(select(SecretariatRequest).order_by(SecretariatRequest.id.desc())).first()


def posted_request(slack: SlackHarness, request_id: int) -> Call:
    """The request's post in the secretariat channel, once the poster has also recorded where it is.
    The poster records the post's ts after Slack answered; a staff reply sent in between (a test
    replies within milliseconds, a person does not) would find no request behind the thread."""
    [post] = slack.fake.wait_for("chat.postMessage", where=lambda c: c.args.get("channel") == SECRETARIAT
                                 and f"#{request_id}" in c.args.get("text", ""))
    deadline = time.monotonic() + 10
    while slack.assistant.secretariat.announcement_of(request_id) is None:
        assert time.monotonic() < deadline, f"request {request_id}'s post was never recorded"
        time.sleep(0.02)
    return post


def staff_reply(slack: SlackHarness, post: Call, text: str, **extra: object) -> None:
    ts = f"{float(post.response['ts']) + 1:.6f}"
    event = {"type": "message", "channel": SECRETARIAT, "channel_type": "channel", "user": STAFF, "text": text,
             "ts": ts, "thread_ts": post.response["ts"], "event_ts": ts, **extra}
    assert slack.event(event).status_code == 200


def test_a_request_is_posted_to_the_secretariat_channel_with_member_transcript_and_buttons(
        slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    request = slack_inquiry(slack)
    post = posted_request(slack, request.id)
    shown = block_text(post)
    assert "お問い合わせ" in post.args["text"] and QUESTION in shown
    assert "[member] 事務局に問い合わせたい" in shown.replace("&gt; ", "")
    assert {e["action_id"] for b in post.args["blocks"] if b["type"] == "actions" for e in b["elements"]} == {
        "secretariat:take", "secretariat:resolve"}
    slack.fake.assert_no_more("chat.postMessage", len(slack.fake.calls_to("chat.postMessage")), wait=0.6)


def test_taking_and_resolving_a_request_records_who_pressed_and_updates_the_post(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    slack.fake.add_user(STAFF, "staff@jsug.example", real_name="事務局 鈴木")
    request = slack_inquiry(slack)
    post = posted_request(slack, request.id)

    assert slack.click(post, str(request.id), STAFF).status_code == 200  # 担当する (the first button)
    [taken] = slack.fake.wait_for("chat.update", where=lambda c: c.args.get("channel") == SECRETARIAT)
    assert "対応中" in taken.args["text"]
    taken.response["ts"] = post.response["ts"]
    resolve = next(e for b in taken.args["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert resolve["action_id"] == "secretariat:resolve" and resolve["confirm"]
    slack.click(taken, str(request.id), STAFF)
    slack.fake.wait_for("chat.update", 2, where=lambda c: c.args.get("channel") == SECRETARIAT)

    with slack.sessions() as session:
        stored = session.get(SecretariatRequest, request.id)
        events = session.scalars(select(RequestEvent).where(RequestEvent.request_id == request.id)
                                 .order_by(RequestEvent.id)).all()
        assert stored.status == "done"
        assert [(e.status, e.actor, e.note) for e in events[1:]] == [
            ("in_progress", f"staff:slack:{STAFF}", f"担当: 事務局 鈴木 ({STAFF})"),
            ("done", f"staff:slack:{STAFF}", f"解決済み: 事務局 鈴木 ({STAFF})")]


def test_status_buttons_pressed_outside_the_secretariat_channel_change_nothing(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    request = slack_inquiry(slack)
    post = posted_request(slack, request.id)
    slack.click(replace(post, args={**post.args, "channel": "C0ELSEWHERE"}), str(request.id), STAFF)
    time.sleep(0.5)
    assert [c for c in slack.fake.calls_to("chat.update") if c.args["channel"] in (SECRETARIAT, "C0ELSEWHERE")] == []
    with slack.sessions() as session:
        assert session.get(SecretariatRequest, request.id).status == "open"


def test_a_thread_reply_reaches_the_slack_member_by_direct_message_and_is_recorded(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    request = slack_inquiry(slack)
    post = posted_request(slack, request.id)
    before = len(slack.fake.calls_to("chat.postMessage"))

    staff_reply(slack, post, "3月の理事会で決まります。決まり次第ご案内します。")

    answer = slack.reply_containing("D" + TANAKA, "3月の理事会")
    assert f"受付番号 {request.id}" in answer.args["text"]
    [confirmation] = slack.fake.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == post.response["ts"])
    assert block_text(confirmation).strip() == message("slack_relayed_slack")
    with slack.sessions() as session:
        [staff] = session.scalars(select(Message).where(Message.author.is_not(None))).all()
        assert staff.text == "3月の理事会で決まります。決まり次第ご案内します。"
        assert staff.author == f"staff:slack:{STAFF}"
        notes = session.scalars(select(RequestEvent.note).where(RequestEvent.request_id == request.id)).all()
        assert "回答: 3月の理事会で決まります。決まり次第ご案内します。" in notes
    # the app's own confirmation in the thread is a bot message: not relayed again (no loop)
    staff_reply(slack, post, message("slack_relayed_slack"), bot_id=slack.fake.bot_id, user=slack.fake.bot_user_id)
    slack.fake.assert_no_more("chat.postMessage", before + 2, wait=0.6)


def test_a_thread_reply_reaches_a_web_member_in_the_widget_and_by_mail(
        make_slack: Callable[..., SlackHarness], smtp_server: SmtpServer, inbox: Inbox) -> None:
    slack = make_slack(smtp_port=smtp_server.port)
    filed = slack.client.post("/api/inquiry", headers={"Origin": ALLOWED}, json={
        "name": "見込 太郎", "email": "prospect@example.org", "question": QUESTION})
    assert filed.status_code == 200, filed.text
    session_id = filed.json()["session_id"]
    with slack.sessions() as session:
        request = session.scalars(select(SecretariatRequest)).one()
    post = posted_request(slack, request.id)

    staff_reply(slack, post, "4月に決まる予定です。")

    [confirmation] = slack.fake.wait_for("chat.postMessage", where=lambda c: c.args.get("thread_ts") == post.response["ts"])
    assert block_text(confirmation).strip() == message("slack_relayed_web_mail")
    later = slack.client.get(f"/api/chat/{session_id}/messages", params={"after": 0}).json()["messages"]
    assert [(m["from"], m["reply"]["text"]) for m in later][-1] == ("staff", "4月に決まる予定です。")
    slack.assistant.mailer.deliver_pending()
    [mail] = inbox.to("prospect@example.org", f"受付番号 {request.id}")
    assert "4月に決まる予定です。" in body(mail)


def test_a_message_in_the_secretariat_channel_outside_a_request_thread_is_ignored(slack: SlackHarness) -> None:
    slack.fake.add_user(TANAKA, "tanaka@example.com")
    request = slack_inquiry(slack)
    post = posted_request(slack, request.id)
    count = len(slack.fake.calls_to("chat.postMessage"))
    staff_reply(slack, post, "ただの雑談です", thread_ts="1111111111.000001")
    staff_reply(slack, post, "スレッドの外の発言です", thread_ts=None)
    slack.fake.assert_no_more("chat.postMessage", count, wait=0.6)
    with slack.sessions() as session:
        assert session.scalars(select(Message).where(Message.author.is_not(None))).all() == []
