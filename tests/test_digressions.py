"""A new question while a flow waits: the member is offered to pause the flow and have the
question answered, and to come back to the flow afterwards; nothing asked is lost, and an answer
the flow waits for (an address, a choice, free text) is still taken as that answer."""

from __future__ import annotations

import pytest

from bot.app import Assistant
from bot.dialogue.replies import Reply
from bot.messages import message

USER = "digress-1"


def say(assistant: Assistant, text: str | None = None, action: str | None = None) -> list[Reply]:
    return assistant.handle("web", USER, text=text, action=action)


def actions(replies: list[Reply]) -> list[str]:
    return [button.action for reply in replies for button in reply.buttons]


def test_a_new_question_while_the_address_is_awaited_is_offered_and_answered_and_the_flow_resumes(
        demo_assistant: Assistant) -> None:
    assert say(demo_assistant, action="start:newsletter_optout")[0].text == message("identity_intro")

    offer = say(demo_assistant, "会社の名前が変わりました")
    assert message("identity_email_invalid") not in [r.text for r in offer]
    assert offer[0].text == message("digression_offer", flow=message("flow_label_newsletter_optout"))
    assert actions(offer) == ["digress:answer", "digress:resume"]

    answered = say(demo_assistant, action="digress:answer")
    shown = [answered[0].faq_id] if answered[0].kind == "answer" else [i["faq_id"] for i in answered[0].items]
    assert "company-name-change" in shown  # answered, or offered as もしかして
    assert "digress:resume" in actions(answered)

    resumed = say(demo_assistant, action="digress:resume")
    assert [r.text for r in resumed] == [message("flow_resumed", flow=message("flow_label_newsletter_optout")),
                                         message("identity_intro")]
    sent = say(demo_assistant, "nobody-at-all@example.net")
    assert sent[0].text == message("identity_code_sent", minutes=10)


def test_choosing_to_go_on_keeps_the_flow_where_it_was(demo_assistant: Assistant) -> None:
    say(demo_assistant, action="start:password_reset")
    say(demo_assistant, "年会費はいくらですか")
    resumed = say(demo_assistant, action="digress:resume")
    assert resumed[-1].text == message("password_reset_ask_email")
    assert say(demo_assistant, "nobody-at-all@example.net")[0].text == message("password_reset_requested", minutes=30)


def test_a_question_the_faq_does_not_answer_is_offered_too_not_taken_for_a_mistyped_address(
        demo_assistant: Assistant) -> None:
    say(demo_assistant, action="start:newsletter_optout")

    offer = say(demo_assistant, "総会の議事録はどこで見られますか")

    assert message("identity_email_invalid") not in [r.text for r in offer]
    assert actions(offer) == ["digress:answer", "digress:resume"]
    answered = say(demo_assistant, action="digress:answer")
    assert answered[0].kind != "answer" and "digress:resume" in actions(answered)
    assert say(demo_assistant, action="digress:resume")[-1].text == message("identity_intro")


def test_a_question_at_the_code_step_is_offered_and_not_counted_as_a_wrong_code(demo_assistant: Assistant) -> None:
    say(demo_assistant, action="start:newsletter_optout")
    assert say(demo_assistant, "nobody-at-all@example.net")[0].text == message("identity_code_sent", minutes=10)

    offer = say(demo_assistant, "コードが届かないのですがどうすればいいですか")

    assert not any(r.text.startswith(message("identity_code_wrong", left=0)[:10]) for r in offer)
    assert actions(offer) == ["digress:answer", "digress:resume"]


@pytest.mark.parametrize("typed", ["tanaka@example", "tanaka at example.com", "たなか@example.com", "たなか たろう"])
def test_a_mistyped_address_is_still_taken_as_an_address(demo_assistant: Assistant, typed: str) -> None:
    say(demo_assistant, action="start:newsletter_optout")
    replies = say(demo_assistant, typed)
    assert "digress:answer" not in actions(replies)


def test_free_text_the_flow_asked_for_is_taken_even_when_it_reads_like_a_faq_question(demo_assistant: Assistant) -> None:
    say(demo_assistant, action="start:secretariat_request")
    say(demo_assistant, action="kind:inquiry")
    confirm = say(demo_assistant, "パスワードを忘れた場合の再設定方法を教えてください")
    assert "confirm" in actions(confirm) and "digress:answer" not in actions(confirm)


def test_an_old_digression_button_is_stale_once_nothing_is_paused(demo_assistant: Assistant) -> None:
    assert say(demo_assistant, action="digress:answer")[0].text == message("stale_button")
    assert say(demo_assistant, action="digress:resume")[0].text == message("stale_button")
