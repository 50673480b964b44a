"""The membership database: models, the engine, migrations (Alembic)."""
