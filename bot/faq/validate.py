"""``jsug-bot faq validate``: the checks a corpus must pass before the assistant may use it."""

from __future__ import annotations

from pathlib import Path

from bot.faq.corpus import FAQ_FILE, UNANSWERED_FILE, Corpus, CorpusError, load_corpus
from bot.text.normalize import clean
from handlers.registry import ACTION_NAMES


def validate(source: Path, lexicon_dir: Path) -> Corpus:
    """Load ``source`` and check it; raise ``CorpusError`` on the first problem found."""
    corpus = load_corpus(source, lexicon_dir)
    path = source / FAQ_FILE if source.is_dir() else source
    phrasings: dict[str, str] = {}
    for entry in corpus.entries:
        where = f"'{entry.id}'"
        for key in entry.link_keys():
            if key not in corpus.links:
                raise CorpusError(path, f"link key '{key}' is not defined in links.yaml", where)
        if entry.action is not None and entry.action not in ACTION_NAMES:
            known = ", ".join(sorted(ACTION_NAMES))
            raise CorpusError(path, f"unknown action '{entry.action}' (known: {known})", where)
        for text in (entry.question, *entry.alternates):
            key = clean(text)
            owner = phrasings.setdefault(key, entry.id)
            if owner != entry.id:
                raise CorpusError(path, f"phrasing '{text}' is also used by entry '{owner}'", where)
    unanswered = (source if source.is_dir() else source.parent) / UNANSWERED_FILE
    for question in corpus.unanswered:
        answered_by = phrasings.get(clean(question))
        if answered_by is not None:
            raise CorpusError(unanswered, f"'{question}' is a phrasing of entry '{answered_by}'; an entry answers it")
    return corpus
