"""The conversation engine: one entry point for every channel, state kept in the database."""
