"""Members working in Japan write English too: the glossary (``faq_data/english.yaml``) reads it
as the FAQ's words, and an English question gets the Japanese answer with a short English note."""

from __future__ import annotations

import pytest

from bot.app import Assistant
from bot.faq.index import FaqIndex
from bot.faq.matcher import match
from bot.messages import message


@pytest.mark.parametrize(("question", "faq_id"), [
    ("How do I unsubscribe from the newsletter?", "newsletter-dm-stop"),
    ("I forgot my JSUGNET password", "password-reset"),
    ("We want to cancel our membership", "withdrawal"),
])
def test_an_english_question_ranks_the_faq_it_asks_about_first(jsug_index: FaqIndex, question: str, faq_id: str) -> None:
    assert match(jsug_index, question).ranked[0] == faq_id


def test_an_english_question_gets_the_japanese_answer_and_a_note_in_english(demo_assistant: Assistant) -> None:
    replies = demo_assistant.handle("web", "en-1", text="I forgot my JSUGNET password. How can I reset it?")
    kinds = [reply.kind for reply in replies]
    assert kinds[0] in ("answer", "suggestions")
    assert replies[-1].text == message("english_note")


def test_a_japanese_question_gets_no_english_note(demo_assistant: Assistant) -> None:
    replies = demo_assistant.handle("web", "ja-1", text="JSUGNETのパスワードを忘れました")
    assert message("english_note") not in [reply.text for reply in replies]
