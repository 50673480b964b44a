"""Members working in Japan write English too: the glossary (``faq_data/english.yaml``) reads it
as the FAQ's words, and an English question gets the Japanese answer with a short English note."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.app import Assistant, build_assistant
from bot.faq.index import FaqIndex
from bot.faq.matcher import match
from bot.messages import message
from bot.settings import Settings
from tests.conftest import TEST_SECRET


@pytest.fixture
def assistant(database_url: str, seeded_db: sessionmaker[Session], jsug_index: FaqIndex) -> Iterator[Assistant]:
    built = build_assistant(Settings(database_url=database_url, secret_key=TEST_SECRET), faq=jsug_index,
                            deliver_mail=False)
    yield built
    built.close()


@pytest.mark.parametrize(("question", "faq_id"), [
    ("How do I unsubscribe from the newsletter?", "newsletter-dm-stop"),
    ("I forgot my JSUGNET password", "password-reset"),
    ("We want to cancel our membership", "withdrawal"),
])
def test_an_english_question_ranks_the_faq_it_asks_about_first(jsug_index: FaqIndex, question: str, faq_id: str) -> None:
    assert match(jsug_index, question).ranked[0] == faq_id


def test_an_english_question_gets_the_japanese_answer_and_a_note_in_english(assistant: Assistant) -> None:
    replies = assistant.handle("web", "en-1", text="I forgot my JSUGNET password. How can I reset it?")
    kinds = [reply.kind for reply in replies]
    assert kinds[0] in ("answer", "suggestions")
    assert replies[-1].text == message("english_note")


def test_a_japanese_question_gets_no_english_note(assistant: Assistant) -> None:
    replies = assistant.handle("web", "ja-1", text="JSUGNETのパスワードを忘れました")
    assert message("english_note") not in [reply.text for reply in replies]
