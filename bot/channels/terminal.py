"""``jsug-bot chat``: the assistant in a terminal, for trying the FAQ as a member would."""

from __future__ import annotations

from typing import Callable, TextIO

from bot.faq.index import FaqIndex
from bot.faq.matcher import MatchResult, Outcome, match
from bot.messages import message

QUIT_WORDS = frozenset({"終了", "exit", "quit", "bye", "q"})


def render_answer(index: FaqIndex, faq_id: str) -> str:
    entry = index.corpus.get(faq_id)
    assert entry is not None, faq_id
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


def run_chat(index: FaqIndex, read: Callable[[str], str] = input, out: TextIO | None = None) -> None:
    """A read–answer loop; a number picks one of the last suggestions."""
    write = (lambda text: print(text, file=out)) if out else print
    write(message("chat_welcome"))
    suggestions: list[str] = []
    while True:
        try:
            text = read(message("chat_prompt")).strip()
        except (EOFError, KeyboardInterrupt):
            break
        if text.lower() in QUIT_WORDS:
            break
        if suggestions and text.isdigit():
            choice = int(text)
            if 1 <= choice <= len(suggestions):
                write(render_answer(index, suggestions[choice - 1]))
            else:
                write(message("unknown_choice", count=len(suggestions)))
            continue
        result = match(index, text)
        suggestions = result.suggestions
        write(render_result(index, result))
    write(message("chat_goodbye"))
