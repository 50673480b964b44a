"""A member asks on Slack: a direct message, a mention in a channel, ``/jsug``; the answer comes as
Block Kit with its links, suggestions and feedback buttons, and a pressed button cannot be pressed twice."""

from __future__ import annotations

import json

from sqlalchemy import select

from bot.storage.models import Conversation, Feedback, Message
from tests.slack_support import GENERAL, TEAM, SlackHarness, block_text, button_values

MEMBER = "U0MEMBER1"


def test_slack_checks_the_request_url_with_url_verification(slack: SlackHarness) -> None:
    body = json.dumps({"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                       "type": "url_verification"})
    response = slack.post(body)
    assert response.status_code == 200
    assert response.json()["challenge"] == "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"


def test_a_direct_message_question_is_answered_with_blocks_links_and_feedback(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER, "nobody-at-all@example.net")
    response = slack.dm(MEMBER, "JSUGNETのパスワードを忘れました")
    assert response.status_code == 200
    reply = slack.replies_to("D" + MEMBER)[0]
    assert reply.args["text"]  # the plain-text fallback for notifications and screen readers
    assert "パスワード" in block_text(reply)
    values = button_values(reply)
    assert any(v.startswith("feedback:") and v.endswith(":up") for v in values)
    assert "start:password_reset" in values
    with slack.sessions() as session:
        conversation = session.scalars(select(Conversation).where(Conversation.channel == "slack")).one()
        assert conversation.user_ref == f"{TEAM}:{MEMBER}"
        said = session.scalars(select(Message).where(Message.conversation_id == conversation.id)).all()
        assert [m.direction for m in said][:2] == ["in", "out"]


def test_a_mention_in_a_channel_is_answered_in_its_thread(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    response, ts = slack.mention(MEMBER, "年会費はいくらですか")
    assert response.status_code == 200
    reply = slack.replies_to(GENERAL)[0]
    assert reply.args["thread_ts"] == ts
    assert block_text(reply)


def test_the_slash_command_answers_only_the_member_who_asked(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    response, name = slack.command(MEMBER, "パスワードを忘れました")
    assert response.status_code == 200
    answer = slack.fake.wait_for(f"response_url:{name}")[0]
    assert answer.args["response_type"] == "ephemeral"
    assert "パスワード" in block_text(answer)
    assert not slack.fake.calls_to("chat.postMessage")


def test_feedback_is_stored_and_the_pressed_buttons_are_replaced(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    answer = slack.converse(MEMBER, "JSUGNETのパスワードを忘れました")
    up = next(v for v in button_values(answer) if v.startswith("feedback:") and v.endswith(":up"))
    thanks = slack.press(MEMBER, answer, up)
    assert "ありがとう" in block_text(thanks)
    update = slack.fake.wait_for("chat.update")[0]
    assert update.args["ts"] == answer.response["ts"]
    assert up not in button_values(update)
    assert "start:password_reset" in button_values(update)  # the other row stays usable
    with slack.sessions() as session:
        assert session.scalars(select(Feedback)).one().helpful is True


def test_a_suggestion_click_shows_that_answer_and_the_suggestions_cannot_be_pressed_again(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    suggestions = slack.converse(MEMBER, "変更したい")
    picks = [v for v in button_values(suggestions) if v.startswith("faq:")]
    assert len(picks) >= 2, block_text(suggestions)
    answer = slack.press(MEMBER, suggestions, picks[1])
    assert any(v.startswith(f"feedback:{picks[1][4:]}:") for v in button_values(answer))
    [update] = slack.fake.wait_for("chat.update")
    assert not any(v.startswith("faq:") for v in button_values(update))
    assert "✓" in block_text(update)


def test_a_message_of_two_questions_is_answered_with_a_button_for_the_other(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    reply = slack.converse(MEMBER, "パスワードを忘れてしまったのと、メルマガも止めたいです")
    values = button_values(reply)
    assert any(v.startswith("feedback:password-reset:") for v in values)
    assert "もう一つのご質問については" in block_text(reply) and "faq:newsletter-dm-stop" in values
    answer = slack.press(MEMBER, reply, "faq:newsletter-dm-stop")
    assert any(v.startswith("feedback:newsletter-dm-stop:") for v in button_values(answer))


def test_a_button_in_the_slash_commands_private_answer_replaces_that_answer(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    _, name = slack.command(MEMBER, "変更したい")
    suggestions = slack.fake.wait_for(f"response_url:{name}")[0]
    pick = next(v for v in button_values(suggestions) if v.startswith("faq:"))
    slack.click(suggestions, pick, MEMBER, ephemeral_url=slack.fake.response_url(name))
    replaced, answer = slack.fake.wait_for(f"response_url:{name}", 3)[1:]
    assert replaced.args["replace_original"] is True and pick not in button_values(replaced)
    assert answer.args["response_type"] == "ephemeral" and answer.args["replace_original"] is False
    assert any(v.startswith(f"feedback:{pick[4:]}:") for v in button_values(answer))


def test_an_empty_slash_command_explains_how_to_ask(slack: SlackHarness) -> None:
    slack.fake.add_user(MEMBER)
    _, name = slack.command(MEMBER, "   ")
    [help_text] = slack.fake.wait_for(f"response_url:{name}")
    assert "/jsug" in help_text.args["text"]
