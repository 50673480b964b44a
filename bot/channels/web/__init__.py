"""The web channel: the chat API, the homepage widget, the demo page and the password-reset page."""
