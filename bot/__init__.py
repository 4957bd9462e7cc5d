"""runbook-bot: run platform-migration runbooks from Slack or a console, one approved step at a time."""

__version__ = "0.1.0"
