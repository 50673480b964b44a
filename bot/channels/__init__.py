"""The channels members reach the assistant through."""
