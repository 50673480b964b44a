"""A new question while a flow waits: the member is offered to pause the flow and have the
question answered, and to come back to the flow afterwards; nothing asked is lost, and an answer
the flow waits for (an address, a choice, free text) is still taken as that answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.dialogue.replies import Reply
from bot.faq.index import FaqIndex
from bot.messages import message
from bot.settings import Settings
from tests.conftest import TEST_SECRET

USER = "digress-1"


@pytest.fixture
def assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[Assistant]:
    built = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                            deliver_mail=False)
    yield built
    built.close()


def say(assistant: Assistant, text: str | None = None, action: str | None = None) -> list[Reply]:
    return assistant.handle("web", USER, text=text, action=action)


def actions(replies: list[Reply]) -> list[str]:
    return [button.action for reply in replies for button in reply.buttons]


def test_a_new_question_while_the_address_is_awaited_is_offered_and_answered_and_the_flow_resumes(
        assistant: Assistant) -> None:
    assert say(assistant, action="start:newsletter_optout")[0].text == message("identity_intro")

    offer = say(assistant, "会社の名前が変わりました")
    assert message("identity_email_invalid") not in [r.text for r in offer]
    assert offer[0].text == message("digression_offer", flow=message("flow_label_newsletter_optout"))
    assert actions(offer) == ["digress:answer", "digress:resume"]

    answered = say(assistant, action="digress:answer")
    shown = [answered[0].faq_id] if answered[0].kind == "answer" else [i["faq_id"] for i in answered[0].items]
    assert "company-name-change" in shown  # answered, or offered as もしかして
    assert "digress:resume" in actions(answered)

    resumed = say(assistant, action="digress:resume")
    assert [r.text for r in resumed] == [message("flow_resumed", flow=message("flow_label_newsletter_optout")),
                                         message("identity_intro")]
    sent = say(assistant, "nobody-at-all@example.net")
    assert sent[0].text == message("identity_code_sent", minutes=10)


def test_choosing_to_go_on_keeps_the_flow_where_it_was(assistant: Assistant) -> None:
    say(assistant, action="start:password_reset")
    say(assistant, "年会費はいくらですか")
    resumed = say(assistant, action="digress:resume")
    assert resumed[-1].text == message("password_reset_ask_email")
    assert say(assistant, "nobody-at-all@example.net")[0].text == message("password_reset_requested", minutes=30)


@pytest.mark.parametrize("typed", ["tanaka@example", "tanaka at example.com", "たなか@example.com"])
def test_a_mistyped_address_is_still_taken_as_an_address(assistant: Assistant, typed: str) -> None:
    say(assistant, action="start:newsletter_optout")
    replies = say(assistant, typed)
    assert "digress:answer" not in actions(replies)


def test_free_text_the_flow_asked_for_is_taken_even_when_it_reads_like_a_faq_question(assistant: Assistant) -> None:
    say(assistant, action="start:secretariat_request")
    say(assistant, action="kind:inquiry")
    confirm = say(assistant, "パスワードを忘れた場合の再設定方法を教えてください")
    assert "confirm" in actions(confirm) and "digress:answer" not in actions(confirm)


def test_an_old_digression_button_is_stale_once_nothing_is_paused(assistant: Assistant) -> None:
    assert say(assistant, action="digress:answer")[0].text == message("stale_button")
    assert say(assistant, action="digress:resume")[0].text == message("stale_button")
