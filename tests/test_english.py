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
    ("How do we cancel our company's JSUG membership?", "withdrawal"),
    ("Is the annual fee subject to consumption tax?", "consumption-tax"),
    ("Please send the annual fee invoice to our accounting department", "billing-address"),
    ("What is JSUG's invoice registration number?", "consumption-tax"),
    ("Our company changed its name after a merger", "company-name-change"),
])
def test_an_english_question_ranks_the_faq_it_asks_about_first(jsug_index: FaqIndex, question: str, faq_id: str) -> None:
    assert match(jsug_index, question).ranked[0] == faq_id


def test_an_everyday_invoice_is_read_as_a_bill_and_invoice_alone_as_the_qualified_invoice(jsug_index: FaqIndex) -> None:
    """「invoice番号」 and "invoice registration number" ask for the インボイス number; "the annual fee
    invoice" is the bill, whose address the billing entry answers."""
    bill = jsug_index.normalizer.normalize("Can the annual fee invoice be sent to accounting?")
    qualified = jsug_index.normalizer.normalize("invoice番号を教えて")

    assert "請求書" in bill.text and "適格請求書" not in bill.text
    assert "適格請求書" in qualified.text


def test_an_english_question_gets_the_japanese_answer_and_a_note_in_english(demo_assistant: Assistant) -> None:
    replies = demo_assistant.handle("web", "en-1", text="I forgot my JSUGNET password. How can I reset it?")
    kinds = [reply.kind for reply in replies]
    assert kinds[0] in ("answer", "suggestions")
    assert replies[-1].text == message("english_note")


def test_a_japanese_question_gets_no_english_note(demo_assistant: Assistant) -> None:
    replies = demo_assistant.handle("web", "ja-1", text="JSUGNETのパスワードを忘れました")
    assert message("english_note") not in [reply.text for reply in replies]
