"""The server secret (``JSUG_SECRET_KEY``) that keys CSRF tokens and, later, code and address hashes.

Production must set it (the same value in every process). The embedded demo keeps one in a file
beside its SQLite database, made on first run, so a newcomer needs no setting and a restart keeps it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.errors import ConfigurationError
from bot.settings import Settings

SECRET_FILE = "jsug-secret.key"
MIN_SECRET_CHARS = 32


def resolve_secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ConfigurationError(f"JSUG_SECRET_KEY must be at least {MIN_SECRET_CHARS} characters")
        return value.encode("utf-8")
    if not settings.is_embedded_database:
        raise ConfigurationError(
            "JSUG_SECRET_KEY is not set: production needs a random secret of 32+ characters, the same in every "
            "process (e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    database = make_url(settings.database_url).database
    if not database or database == ":memory:":
        return secrets.token_urlsafe(48).encode("ascii")
    return _embedded_secret(Path(database).resolve().parent / SECRET_FILE)


def _embedded_secret(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    value = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes().strip()
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value.encode("ascii")
