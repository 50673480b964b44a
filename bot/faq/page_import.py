"""``jsug-bot faq import PAGE.txt``: refresh the corpus from the association's FAQ page.

The page is plain text with one block per FAQ: a line ``Qアイコン.png``, a line ``Aアイコン.png``,
the question, then the answer's paragraphs. Entries that already exist (found by their question)
keep their id, category, alternates, action and link markup, so the team's work survives a
refresh; new questions become new entries for the team to complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml
from rapidfuzz import fuzz

from bot.faq.corpus import LINK_MARKUP, CorpusError, FaqEntry, Link
from bot.text.normalize import clean, fold_chars

Q_MARK = "Qアイコン.png"
A_MARK = "Aアイコン.png"
PAGE_END = "bottom of page"
AMBIGUOUS_LINK_WORDS = ("こちら",)
SAME_QUESTION = 90.0
YAML_HEADER = """\
# The JSUG FAQ, as the assistant answers it. See README.md ("The FAQ corpus") for the fields.
# question and answer come from the FAQ page (jsug-bot faq import); alternates, category and
# action are the team's. A link is written [link words](key), the key being one of links.yaml.
"""


@dataclass(frozen=True)
class PageBlock:
    question: str
    answer: str


@dataclass
class ImportReport:
    entries: list[FaqEntry]
    kept: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unlinked: list[str] = field(default_factory=list)


def parse_page(text: str, path: Path) -> list[PageBlock]:
    lines = [line.strip() for line in text.replace(PAGE_END, "\n").splitlines()]
    blocks: list[PageBlock] = []
    current: list[str] | None = None
    for line in lines:
        if line == Q_MARK:
            if current is not None:
                blocks.append(_block(current, path, len(blocks) + 1))
            current = []
        elif current is not None and line and line != A_MARK:
            current.append(line)
    if current is not None:
        blocks.append(_block(current, path, len(blocks) + 1))
    if not blocks:
        raise CorpusError(path, f"no FAQ blocks found (each starts with a line '{Q_MARK}')")
    return blocks


def _block(lines: list[str], path: Path, number: int) -> PageBlock:
    if len(lines) < 2:
        raise CorpusError(path, "has a question without an answer", f"#{number}")
    return PageBlock(lines[0], "\n".join(lines[1:]))


def _key(question: str) -> str:
    return fold_chars(clean(question))


def _relink(answer: str, old_answer: str | None, links: dict[str, Link]) -> tuple[str, list[str]]:
    """Put link markup back on the page's plain link words.

    An existing entry keeps the links of its previous answer, in order. A new entry gets a link
    for each word that is the label of exactly one link in links.yaml. Ambiguous link words
    (こちら) that stay plain are returned, for the team to link by hand.
    """
    if old_answer is not None:
        pairs = LINK_MARKUP.findall(old_answer)
    else:
        by_label: dict[str, list[str]] = {}
        for link in links.values():
            by_label.setdefault(link.label, []).append(link.key)
        pairs = [(label, keys[0]) for label, keys in by_label.items() if len(keys) == 1]
    result, position = answer, 0
    for label, key in pairs:
        found = _find_plain(result, label, position if old_answer is not None else 0)
        if found >= 0:
            markup = f"[{label}]({key})"
            result = result[:found] + markup + result[found + len(label) :]
            position = found + len(markup)
    return result, [word for word in AMBIGUOUS_LINK_WORDS if _find_plain(result, word, 0) >= 0]


def _find_plain(text: str, word: str, start: int) -> int:
    """Where ``word`` first occurs from ``start`` on outside any link markup, or -1."""
    spans = [(m.start(), m.end()) for m in LINK_MARKUP.finditer(text)]
    for match in re.finditer(re.escape(word), text[start:]):
        at = start + match.start()
        if not any(begin <= at < end for begin, end in spans):
            return at
    return -1


def merge(blocks: list[PageBlock], existing: list[FaqEntry], links: dict[str, Link]) -> ImportReport:
    report = ImportReport(entries=[])
    unused = {entry.id: entry for entry in existing}
    taken = {entry.id for entry in existing}
    for block in blocks:
        old = _find_existing(block.question, list(unused.values()))
        answer, unlinked = _relink(block.answer, old.answer if old else None, links)
        if old is not None:
            del unused[old.id]
            report.kept.append(old.id)
            entry = replace(old, question=block.question, answer=answer)
        else:
            faq_id = _new_id(taken)
            taken.add(faq_id)
            report.added.append(faq_id)
            entry = FaqEntry(id=faq_id, question=block.question, answer=answer)
        report.unlinked.extend(f"{entry.id}: {word}" for word in unlinked)
        report.entries.append(entry)
    report.removed = list(unused)
    return report


def _find_existing(question: str, candidates: list[FaqEntry]) -> FaqEntry | None:
    key = _key(question)
    best, best_score = None, 0.0
    for entry in candidates:
        score = fuzz.ratio(key, _key(entry.question))
        if score > best_score:
            best, best_score = entry, score
    return best if best_score >= SAME_QUESTION else None


def _new_id(taken: set[str]) -> str:
    number = 1
    while f"faq-{number}" in taken:
        number += 1
    return f"faq-{number}"


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line answers as literal blocks, the way a person edits them."""


def _text_representer(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_BlockDumper.add_representer(str, _text_representer)


def dump_yaml(entries: list[FaqEntry]) -> str:
    items = []
    for entry in entries:
        item: dict[str, object] = {"id": entry.id}
        if entry.category:
            item["category"] = entry.category
        item["question"] = entry.question
        item["answer"] = entry.answer
        item["alternates"] = list(entry.alternates)
        if entry.action:
            item["action"] = entry.action
        items.append(item)
    body = yaml.dump({"entries": items}, Dumper=_BlockDumper, allow_unicode=True, sort_keys=False, width=4096)
    return YAML_HEADER + body
