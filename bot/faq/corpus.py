"""The FAQ corpus: entries, their links and the dictionaries, loaded and checked.

Two formats load into the same ``Corpus``: the project's own folder (``faq.yaml``,
``links.yaml``, ``synonyms.yaml``, ``fillers.yaml``, edited by the secretariat) and a JSON Lines
file of plain entries, so the engine runs on any FAQ set. Every problem is reported as a
``CorpusError`` naming the file, the entry and what is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bot.text.normalize import Lexicon, QuestionType, clean

FAQ_FILE = "faq.yaml"
LINKS_FILE = "links.yaml"
SYNONYMS_FILE = "synonyms.yaml"
FILLERS_FILE = "fillers.yaml"
OFF_TOPIC_FILE = "out_of_scope.yaml"
ENGLISH_FILE = "english.yaml"
POLARITY_FILE = "polarity.yaml"
QUESTION_TYPES_FILE = "question_types.yaml"
UNANSWERED_FILE = "unanswered.yaml"
POLARITIES = ("start", "stop")
CONTRAST_KEY = "contrast"

LINK_MARKUP = re.compile(r"\[([^\[\]]+)\]\(([^()\s]+)\)")
_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]*$", re.IGNORECASE)


class CorpusError(ValueError):
    """A corpus file that cannot be used, with where and why."""

    def __init__(self, path: Path | str, problem: str, entry: str | None = None) -> None:
        self.path = str(path)
        self.entry = entry
        self.problem = problem
        where = f"{self.path}: entry {entry}" if entry else self.path
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Link:
    """A link of links.yaml; ``text`` is the link word it stands behind in one answer (こちら)."""

    key: str
    label: str
    url: str
    text: str = ""


@dataclass(frozen=True)
class FaqEntry:
    """One question and answer. ``answer`` may hold link markup ``[label](link-key)``."""

    id: str
    question: str
    answer: str
    category: str = ""
    alternates: tuple[str, ...] = ()
    action: str | None = None
    polarity: str | None = None
    """"start" (joining, registering, receiving) or "stop" (withdrawing, deregistering, stopping):
    a question of the opposite polarity (``polarity.yaml``) is never answered with this entry."""

    def link_keys(self) -> list[str]:
        return [key for _, key in LINK_MARKUP.findall(self.answer)]


@dataclass(frozen=True)
class Corpus:
    entries: tuple[FaqEntry, ...]
    links: dict[str, Link] = field(default_factory=dict)
    lexicon: Lexicon = field(default_factory=Lexicon)
    source: str = ""
    unanswered: tuple[str, ...] = ()
    """Questions members ask that no entry answers (``unanswered.yaml``): one closer to the message
    than any phrasing of the best entry sends the message to the secretariat instead."""

    def get(self, faq_id: str) -> FaqEntry | None:
        return next((e for e in self.entries if e.id == faq_id), None)

    def render_answer(self, entry: FaqEntry) -> tuple[str, list[Link]]:
        """The answer as a member reads it, and the links its link words stand for."""
        links: list[Link] = []

        def replace(match: re.Match[str]) -> str:
            link = self.links.get(match.group(2))
            if link is None:
                return match.group(0)
            links.append(Link(link.key, link.label, link.url, match.group(1)))
            return match.group(1)

        return LINK_MARKUP.sub(replace, entry.answer), links


def read_text(path: Path) -> str:
    """A UTF-8 file (with or without BOM), or a ``CorpusError`` that says why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise CorpusError(path, "file not found") from None
    except IsADirectoryError:
        raise CorpusError(path, "is a folder, not a file") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise CorpusError(path, f"cannot be read ({exc.strerror})") from None


def read_yaml(path: Path) -> Any:
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = f"bad YAML{where}: {getattr(exc, 'problem', None) or exc}"
        context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and start and (mark is None or start.line != mark.line):
            problem += f" ({context} that starts at line {start.line + 1})"
        raise CorpusError(path, problem) from None


def _text(raw: dict[str, Any], key: str, path: Path, entry: str, required: bool = True) -> str:
    value = raw.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise CorpusError(path, f"missing field '{key}'", entry)
        return ""
    if not isinstance(value, str):
        raise CorpusError(path, f"field '{key}' must be text, not {type(value).__name__}", entry)
    return value.strip()


def _alternates(raw: dict[str, Any], path: Path, entry: str) -> tuple[str, ...]:
    value = raw.get("alternates") or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CorpusError(path, "field 'alternates' must be a list of texts", entry)
    return tuple(v.strip() for v in value if v.strip())


def parse_entry(raw: Any, path: Path, where: str) -> FaqEntry:
    """One entry from a YAML mapping or a JSON object; ``where`` says which one for errors."""
    if not isinstance(raw, dict):
        raise CorpusError(path, f"must be a mapping with id, question and answer, not {type(raw).__name__}", where)
    faq_id = raw.get("id")
    if isinstance(faq_id, int):
        faq_id = str(faq_id)
    if not isinstance(faq_id, str) or not faq_id.strip():
        raise CorpusError(path, "missing field 'id'", where)
    faq_id = faq_id.strip()
    label = f"'{faq_id}' ({where})"
    if not _ID.match(faq_id):
        raise CorpusError(path, "id may hold only letters, digits, '-', '_' and '.'", label)
    action = raw.get("action")
    if action is not None and not isinstance(action, str):
        raise CorpusError(path, "field 'action' must be text", label)
    polarity = raw.get("polarity")
    if polarity not in (None, *POLARITIES):
        raise CorpusError(path, "field 'polarity' must be 'start' or 'stop'", label)
    return FaqEntry(
        id=faq_id,
        question=_text(raw, "question", path, label),
        answer=_text(raw, "answer", path, label),
        category=_text(raw, "category", path, label, required=False),
        alternates=_alternates(raw, path, label),
        action=action or None,
        polarity=polarity,
    )


def _check_unique(entries: list[FaqEntry], path: Path, positions: list[str]) -> None:
    seen: dict[str, str] = {}
    for entry, where in zip(entries, positions, strict=True):
        if entry.id in seen:
            problem = f"duplicate id, already used by the entry at {seen[entry.id]}"
            raise CorpusError(path, problem, f"'{entry.id}' ({where})")
        seen[entry.id] = where
    if not entries:
        raise CorpusError(path, "holds no entries")


def load_links(path: Path) -> dict[str, Link]:
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise CorpusError(path, "must map link keys to {label, url}")
    links: dict[str, Link] = {}
    for key, value in raw.items():
        if not isinstance(value, dict) or not isinstance(value.get("url"), str):
            raise CorpusError(path, "needs a 'url'", f"'{key}'")
        url = value["url"].strip()
        if not url.startswith(("https://", "http://", "mailto:")):
            raise CorpusError(path, f"url '{url}' must start with https://, http:// or mailto:", f"'{key}'")
        links[str(key)] = Link(str(key), str(value.get("label") or key), url)
    return links


def load_lexicon(faq_dir: Path) -> Lexicon:
    synonyms_path, fillers_path = faq_dir / SYNONYMS_FILE, faq_dir / FILLERS_FILE
    groups = read_yaml(synonyms_path) if synonyms_path.exists() else {}
    fillers = read_yaml(fillers_path) if fillers_path.exists() else []
    groups = groups or {}
    fillers = fillers or []
    if not isinstance(groups, dict):
        raise CorpusError(synonyms_path, "must map each canonical term to a list of variants")
    for canonical, variants in groups.items():
        if not isinstance(variants, list) or not all(isinstance(v, (str, int)) for v in variants):
            raise CorpusError(synonyms_path, "variants must be a list of texts", f"'{canonical}'")
    if not isinstance(fillers, list) or not all(isinstance(f, str) for f in fillers):
        raise CorpusError(fillers_path, "must be a list of phrases")
    off_topic_path = faq_dir / OFF_TOPIC_FILE
    off_topic = (read_yaml(off_topic_path) if off_topic_path.exists() else []) or []
    if not isinstance(off_topic, list) or not all(isinstance(t, (str, int)) for t in off_topic):
        raise CorpusError(off_topic_path, "must be a list of words")
    groups = {str(k): [str(v) for v in vs] for k, vs in groups.items()}
    english_groups, english_fillers = _load_english(faq_dir / ENGLISH_FILE)
    for canonical, variants in english_groups.items():
        groups[canonical] = groups.get(canonical, []) + variants
    polarity = _load_polarity(faq_dir / POLARITY_FILE)
    contrasts = polarity.pop(CONTRAST_KEY, [])
    lexicon = Lexicon.from_groups(groups, [*fillers, *english_fillers], [str(t) for t in off_topic],
                                  polarity, contrasts)
    return replace(lexicon, question_types=_load_question_types(faq_dir / QUESTION_TYPES_FILE))


def _load_question_types(path: Path) -> tuple[QuestionType, ...]:
    """``question_types.yaml``: questions that ask for a date or an amount, and what answers them."""
    if not path.exists():
        return ()
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise CorpusError(path, "must map each question type to 'asks' and 'answered_by'")
    types = []
    for name, spec in raw.items():
        asks = spec.get("asks") if isinstance(spec, dict) else None
        patterns = spec.get("answered_by") if isinstance(spec, dict) else None
        if not (isinstance(asks, list) and asks and isinstance(patterns, list) and patterns):
            raise CorpusError(path, "needs non-empty lists 'asks' and 'answered_by'", f"'{name}'")
        try:
            compiled = tuple(re.compile(str(p)) for p in patterns)
        except re.error as exc:
            raise CorpusError(path, f"bad pattern in 'answered_by': {exc}", f"'{name}'") from None
        types.append(QuestionType(str(name), tuple(clean(str(a)) for a in asks), compiled))
    return tuple(types)


def _load_polarity(path: Path) -> dict[str, list[str]]:
    """``polarity.yaml``: the words that make a question one of starting or of stopping something."""
    if not path.exists():
        return {}
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict) or set(raw) - {*POLARITIES, CONTRAST_KEY} or not all(
            isinstance(v, list) and all(isinstance(w, str) for w in v) for v in raw.values()):
        raise CorpusError(path, f"must map 'start', 'stop' and '{CONTRAST_KEY}' to lists of words")
    return {str(k): [str(w) for w in v] for k, v in raw.items()}


def _load_english(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """``english.yaml``: the bilingual glossary (English phrases → the FAQ's word), English fillers
    and stop-words (both removed before matching)."""
    if not path.exists():
        return {}, []
    raw = read_yaml(path) or {}
    glossary, fillers = ((raw.get("glossary") or {}, [*(raw.get("fillers") or []), *(raw.get("stopwords") or [])])
                         if isinstance(raw, dict) else (None, None))
    if not isinstance(glossary, dict) or not all(isinstance(v, list) for v in glossary.values()):
        raise CorpusError(path, "'glossary' must map each Japanese term to a list of English phrases")
    if not isinstance(fillers, list) or not all(isinstance(f, str) for f in fillers):
        raise CorpusError(path, "'fillers' and 'stopwords' must be lists of phrases")
    return {str(k): [str(v) for v in vs] for k, vs in glossary.items()}, [str(f) for f in fillers]


def load_faq_yaml(path: Path) -> list[FaqEntry]:
    raw = read_yaml(path)
    items = raw.get("entries") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise CorpusError(path, "must hold a list 'entries'")
    positions = [f"#{n}" for n in range(1, len(items) + 1)]
    entries = [parse_entry(item, path, where) for item, where in zip(items, positions, strict=True)]
    _check_unique(entries, path, positions)
    return entries


def load_jsonl(path: Path) -> list[FaqEntry]:
    entries: list[FaqEntry] = []
    positions: list[str] = []
    lines = read_text(path).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, f"bad JSON: {exc.msg}", f"on line {number}") from None
        positions.append(f"line {number}")
        entries.append(parse_entry(raw, path, positions[-1]))
    _check_unique(entries, path, positions)
    return entries


def load_corpus(source: Path, lexicon_dir: Path) -> Corpus:
    """Load a corpus folder, a ``faq.yaml`` file or a ``.jsonl`` file.

    A JSON Lines corpus has no links of its own; it borrows the dictionaries of ``lexicon_dir``.
    """
    if source.is_dir():
        links_path = source / LINKS_FILE
        links = load_links(links_path) if links_path.exists() else {}
        return Corpus(tuple(load_faq_yaml(source / FAQ_FILE)), links, load_lexicon(source), str(source),
                      load_unanswered(source / UNANSWERED_FILE))
    lexicon = load_lexicon(lexicon_dir) if lexicon_dir.is_dir() else Lexicon()
    if source.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return Corpus(tuple(load_jsonl(source)), {}, lexicon, str(source))
    links_path = source.parent / LINKS_FILE
    links = load_links(links_path) if links_path.exists() else {}
    return Corpus(tuple(load_faq_yaml(source)), links, lexicon, str(source),
                  load_unanswered(source.parent / UNANSWERED_FILE))


def load_unanswered(path: Path) -> tuple[str, ...]:
    """``unanswered.yaml``: a list of questions; a missing file is an empty list."""
    if not path.exists():
        return ()
    raw = read_yaml(path) or []
    if not isinstance(raw, list) or not all(isinstance(q, str) and q.strip() for q in raw):
        raise CorpusError(path, "must be a list of questions (texts, none empty)")
    return tuple(dict.fromkeys(q.strip() for q in raw))
