"""The FAQ engine: corpus, index and matcher."""
