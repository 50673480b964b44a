"""The Slack channel: the assistant as a Slack app (Bolt for Python), and the secretariat's side.

``create_slack_app(settings, assistant)`` builds one Bolt app; ``serve`` mounts it at
``POST /slack/events`` (HTTP mode) and ``jsug-bot slack`` runs it over Socket Mode. Like every
channel it calls the ``Assistant`` and nothing below it.
"""
