"""Shared fixtures: the settings, the analyser and the JSUG index, built once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.faq.corpus import load_corpus
from bot.faq.index import FaqIndex, build_index
from bot.settings import Settings
from bot.text.tokens import Analyzer

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings()


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="session")
def jsug_index(settings: Settings, analyzer: Analyzer) -> FaqIndex:
    return build_index(load_corpus(settings.faq_dir, settings.faq_dir), settings.matcher, analyzer)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
