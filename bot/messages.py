"""The member-facing Japanese texts, loaded from ``messages.yaml`` beside this module."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

MESSAGES_FILE = Path(__file__).with_name("messages.yaml")


@lru_cache(maxsize=1)
def _messages() -> dict[str, str]:
    return yaml.safe_load(MESSAGES_FILE.read_text(encoding="utf-8"))


def message(key: str, **values: object) -> str:
    """The text for ``key`` with its placeholders filled; a missing key is a programming error."""
    return _messages()[key].format(**values)
