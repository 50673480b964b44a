"""The Block Kit renderer and the reading of Slack's markup: what a member sees, and what the
engine is given, whatever the FAQ or the member wrote."""

from __future__ import annotations

import json

import pytest

from bot.channels.slack.blocks import after_click, render
from bot.channels.slack.incoming import is_spoken, plain_text
from bot.dialogue.replies import Reply, buttons, text


def test_text_that_could_mention_everyone_or_forge_a_link_is_shown_literally() -> None:
    message = render([text("<!channel> <https://evil.example|JSUG> & <@U123>")])
    shown = message.blocks[0]["text"]["text"]
    assert shown == "&lt;!channel&gt; &lt;https://evil.example|JSUG&gt; &amp; &lt;@U123&gt;"


def test_an_answer_links_only_web_and_mail_addresses_from_the_faq() -> None:
    answer = Reply("answer", text="本文", faq_id="fee", question="年会費は?", links=[
        {"label": "会費", "text": "会費", "url": "https://www.jsug.org/fee"},
        {"label": "x", "text": "x", "url": "javascript:alert(1)"}])
    message = render([answer])
    shown = json.dumps(message.blocks, ensure_ascii=False)
    assert "<https://www.jsug.org/fee|会費>" in shown and "javascript:" not in shown
    assert message.text.startswith("【年会費は?】")  # the fallback names the question


def test_a_long_reply_is_split_into_sections_slack_accepts() -> None:
    message = render([text(("長い説明です。" * 60 + "\n") * 10)])
    assert len(message.blocks) >= 2
    assert all(len(block["text"]["text"]) <= 3000 for block in message.blocks)
    assert len(message.text) <= 3000


def test_the_confirm_button_opens_a_confirmation_dialog_and_long_labels_are_cut() -> None:
    message = render([buttons("よろしいですか。", ("はい", "confirm"), ("あ" * 100, "cancel"))])
    confirm, other = message.blocks[-1]["elements"]
    assert confirm["confirm"]["confirm"]["text"] and confirm["style"] == "primary"
    assert "confirm" not in other and len(other["text"]["text"]) <= 75


def test_a_pressed_row_is_replaced_and_the_other_rows_stay() -> None:
    blocks = render([buttons("一", ("A", "a")), buttons("二", ("B", "b"))]).blocks
    after = after_click(blocks, "r0", "A")
    assert [b["type"] for b in after] == ["section", "context", "section", "actions"]
    assert "「A」" in after[1]["elements"][0]["text"]


@pytest.mark.parametrize(("slack_text", "plain"), [
    ("<@U0BOT> 年会費は?", "年会費は?"),
    ("<mailto:taro@example.com|taro@example.com>", "taro@example.com"),
    ("<https://www.jsug.org/x|ページ> を見ました", "ページ を見ました"),
    ("<#C123|general> で &lt;質問&gt; &amp; 相談", "#general で <質問> & 相談"),
    ("<!here> 教えてください", "教えてください"),
])
def test_slack_markup_reaches_the_engine_as_the_text_the_member_typed(slack_text: str, plain: str) -> None:
    assert plain_text(slack_text) == plain


@pytest.mark.parametrize("event", [
    {"subtype": "message_changed", "user": "U1"},
    {"subtype": "message_deleted"},
    {"subtype": "bot_message", "bot_id": "B1"},
    {"user": "U1", "bot_id": "B1"},
    {"user": "UBOT"},
    {"subtype": "channel_join", "user": "U1"},
    {"text": "no user"},
])
def test_edits_deletions_bots_and_the_app_itself_are_not_a_member_speaking(event: dict) -> None:
    assert not is_spoken(event, "UBOT")
