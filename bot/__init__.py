"""JSUG member assistant: FAQ matching and self-service for members of JSUG."""
