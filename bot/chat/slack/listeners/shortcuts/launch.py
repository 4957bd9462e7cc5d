"""The global shortcut "Run a runbook": the launcher modal, opened at once (the trigger id lives 3 s).

A global shortcut has no channel, so the form asks where the run's thread goes."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def launch_shortcut(ack: Any, body: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    LaunchFlow(context["service"], client).open(body["trigger_id"], channel=None)
