"""Block Kit from the engine's replies: the one Slack renderer, as the terminal and the widget have theirs.

A button's ``value`` is the engine's action string unchanged (``faq:…``, ``start:…``, ``confirm``);
every message carries a plain ``text`` fallback for notifications and screen readers. Whatever a
member or the FAQ wrote is escaped (``&``, ``<``, ``>``), so no text can mention ``@channel`` or
forge a link; links are made only from the FAQ's own ``links``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.dialogue.replies import Reply
from bot.messages import message

ACTION_PREFIX = "jsug:"
CONFIRM_ACTION = "confirm"
SECTION_LIMIT = 2900
BUTTON_LABEL_LIMIT = 75
FALLBACK_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
BUTTONS_PER_BLOCK = 25
SAFE_URL = re.compile(r"^(https?://|mailto:)[^\s<>|]+$")

Block = dict[str, Any]


@dataclass(frozen=True)
class SlackMessage:
    text: str
    blocks: list[Block]


def escape(value: str) -> str:
    """Text as Slack's mrkdwn shows it literally (the three characters Slack asks apps to escape)."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(replies: list[Reply]) -> SlackMessage:
    """One Slack message for one turn's replies."""
    blocks: list[Block] = []
    for index, reply in enumerate(replies):
        blocks += _reply_blocks(reply, f"r{index}")
    fallback = "\n".join(_fallback(reply) for reply in replies if reply.text)
    return SlackMessage(_clip(escape(fallback), FALLBACK_LIMIT) or " ", blocks[:BLOCKS_PER_MESSAGE])


def text_message(said: str) -> SlackMessage:
    return SlackMessage(_clip(escape(said), FALLBACK_LIMIT), _sections(said))


def after_click(blocks: list[Block], block_id: str, label: str) -> list[Block]:
    """The message's blocks with the clicked button's row replaced by what was chosen, so that the
    same choice cannot be pressed twice (the other rows stay usable)."""
    chosen = context(message("slack_chosen", label=label))
    return [dict(chosen, block_id=block_id) if block.get("block_id") == block_id and block.get("type") == "actions"
            else block for block in blocks]


def context(said: str) -> Block:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(escape(said), SECTION_LIMIT)}]}


def button(label: str, action_id: str, value: str, style: str | None = None) -> Block:
    element: Block = {"type": "button", "action_id": action_id, "value": value,
                      "text": {"type": "plain_text", "text": _clip(label, BUTTON_LABEL_LIMIT), "emoji": True}}
    if style:
        element["style"] = style
    return element


def confirm_dialog(text: str) -> Block:
    return {"title": {"type": "plain_text", "text": message("slack_confirm_title")},
            "text": {"type": "plain_text", "text": _clip(text, 300)},
            "confirm": {"type": "plain_text", "text": message("slack_confirm_yes")},
            "deny": {"type": "plain_text", "text": message("slack_confirm_no")}}


def _fallback(reply: Reply) -> str:
    """A reply as plain text for notifications and screen readers (no markup is parsed there)."""
    if reply.kind == "answer":
        return f"【{reply.question}】\n{reply.text}"
    return reply.text


def _reply_blocks(reply: Reply, block_id: str) -> list[Block]:
    if reply.kind == "answer":
        return _answer(reply, block_id)
    blocks = _sections(reply.text)
    if reply.kind == "suggestions":
        choices = [(item["question"], f"faq:{item['faq_id']}") for item in reply.items]
        blocks.append(_actions(block_id, choices))
    elif reply.kind == "buttons":
        blocks.append(_actions(block_id, [(b.label, b.action) for b in reply.buttons]))
    return blocks


def _answer(reply: Reply, block_id: str) -> list[Block]:
    blocks = _sections(f"【{reply.question}】\n{reply.text}", bold_first_line=True)
    links = [f"• <{link['url']}|{escape(link.get('label') or link.get('text') or link['url'])}>"
             for link in reply.links if SAFE_URL.match(link.get("url", ""))]
    if links:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": _clip(f"*{message('slack_links_heading')}*\n"
                                                                 + "\n".join(links), SECTION_LIMIT)}})
    feedback = [(message("slack_feedback_up"), f"feedback:{reply.faq_id}:up"),
                (message("slack_feedback_down"), f"feedback:{reply.faq_id}:down")]
    blocks.append(_actions(block_id, feedback))
    return blocks


def _actions(block_id: str, choices: list[tuple[str, str]]) -> Block:
    elements = []
    for index, (label, value) in enumerate(choices[:BUTTONS_PER_BLOCK]):
        element = button(label, f"{ACTION_PREFIX}{block_id}:{index}", value,
                         "primary" if value == CONFIRM_ACTION else None)
        if value == CONFIRM_ACTION:
            element["confirm"] = confirm_dialog(message("slack_confirm_text"))
        elements.append(element)
    return {"type": "actions", "block_id": block_id, "elements": elements}


def _sections(said: str, bold_first_line: bool = False) -> list[Block]:
    """Text as sections of at most Slack's 3,000 characters, cut at line breaks where possible."""
    shown = escape(said)
    if bold_first_line and shown:
        first, _, rest = shown.partition("\n")
        shown = f"*{first}*" + (f"\n{rest}" if rest else "")
    chunks: list[str] = []
    while shown:
        cut = len(shown) if len(shown) <= SECTION_LIMIT else (shown.rfind("\n", 0, SECTION_LIMIT) + 1 or SECTION_LIMIT)
        chunks.append(shown[:cut])
        shown = shown[cut:]
    return [{"type": "section", "text": {"type": "mrkdwn", "text": chunk}} for chunk in chunks if chunk.strip()]


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
