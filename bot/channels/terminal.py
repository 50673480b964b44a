"""The terminal channel: ``jsug-bot chat`` and ``jsug-bot ask``.

``chat`` talks to the conversation engine like any other channel; a number typed after a list of
suggestions or buttons picks that item. ``--script`` runs a conversation without a keyboard (one
member message a line, ``!VALUE`` presses the button whose action is VALUE) and can print each
turn as JSON, which is how the secretariat tries a flow after editing intents.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TextIO

from bot.app import Assistant
from bot.dialogue.replies import Reply, text
from bot.errors import AssistantError
from bot.faq.index import FaqIndex
from bot.faq.matcher import MatchResult, Outcome
from bot.messages import message

CHANNEL = "terminal"
QUIT_WORDS = frozenset({"終了", "exit", "quit", "bye", "q"})


# --- ask: the matcher alone, for the secretariat to see why an answer was given


def render_answer(index: FaqIndex, faq_id: str) -> str:
    entry = index.corpus.get(faq_id)
    if entry is None:
        raise KeyError(faq_id)
    text, links = index.corpus.render_answer(entry)
    lines = [message("answer_intro", question=entry.question), text]
    if links:
        lines.append(message("links_heading"))
        lines.extend(f"  {link.label}: {link.url}" for link in links)
    return "\n".join(lines)


def render_result(index: FaqIndex, result: MatchResult) -> str:
    """The reply to one question, as a member reads it."""
    lines = [message("truncated_question", limit=index.settings.max_query_chars)] if result.truncated else []
    if result.outcome is Outcome.ANSWER and result.faq_id:
        lines.append(render_answer(index, result.faq_id))
        if result.also:
            lines.append(message("also_intro"))
            lines += [f"  {entry.question}" for entry in map(index.corpus.get, result.also) if entry]
    elif result.outcome is Outcome.SUGGEST:
        lines.append(message("suggest_intro"))
        for number, faq_id in enumerate(result.suggestions, start=1):
            entry = index.corpus.get(faq_id)
            lines.append(message("suggest_item", number=number, question=entry.question if entry else faq_id))
        lines.append(message("suggest_none_fit"))
    elif not result.normalized.strip():
        lines.append(message("empty_question"))
    else:
        secretariat = index.corpus.links.get("secretariat")
        lines.append(message("fallback", secretariat_url=secretariat.url if secretariat else "JSUG事務局"))
    return "\n".join(lines)


# --- chat: the conversation engine


def render_replies(replies: list[Reply]) -> tuple[str, list[str]]:
    """Replies as terminal text, and the actions that the numbers shown stand for."""
    lines: list[str] = []
    choices: list[str] = []
    for reply in replies:
        if reply.kind == "answer":
            lines += [message("answer_intro", question=reply.question), reply.text]
            if reply.links:
                lines.append(message("links_heading"))
                lines += [f"  {link['label']}: {link['url']}" for link in reply.links]
        elif reply.kind == "suggestions":
            lines.append(reply.text + message("choose_by_number"))
            for item in reply.items:
                choices.append(f"faq:{item['faq_id']}")
                lines.append(message("suggest_item", number=len(choices), question=item["question"]))
        elif reply.kind == "buttons":
            lines.append(reply.text)
            for button in reply.buttons:
                choices.append(button.action)
                lines.append(f"{len(choices)}. {button.label}")
        else:
            lines.append(reply.text)
    return "\n".join(lines), choices


def turn(assistant: Assistant, user_ref: str, said: str | None = None, action: str | None = None) -> list[Reply]:
    """One turn; a failure the member should know of (the database is down) is shown as its message."""
    try:
        return assistant.handle(CHANNEL, user_ref, text=said, action=action)
    except AssistantError as exc:
        return [text(exc.member_message)]


def run_chat(assistant: Assistant, user_ref: str, read: Callable[[str], str] = input, out: TextIO | None = None) -> None:
    write = (lambda text: print(text, file=out)) if out else print
    write(message("chat_welcome"))
    choices: list[str] = []
    while True:
        try:
            said = read(message("chat_prompt")).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if said.lower() in QUIT_WORDS:
            break
        if choices and said.isdigit():
            number = int(said)
            if not 1 <= number <= len(choices):
                write(message("unknown_choice", count=len(choices)))
                continue
            replies = turn(assistant, user_ref, action=choices[number - 1])
        else:
            replies = turn(assistant, user_ref, said)
        rendered, choices = render_replies(replies)
        write(rendered)
    write(message("chat_goodbye"))


def run_script(assistant: Assistant, user_ref: str, lines: Iterable[str], as_json: bool, out: TextIO) -> None:
    """One member message a line; ``!VALUE`` presses the button whose action is VALUE."""
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith("!"):
            replies = turn(assistant, user_ref, action=line[1:].strip())
        else:
            replies = turn(assistant, user_ref, line)
        if as_json:
            print(json.dumps({"in": line, "replies": [r.as_dict() for r in replies]}, ensure_ascii=False), file=out)
        else:
            print(f"{message('chat_prompt')}{line}\n{render_replies(replies)[0]}", file=out)
