"""The launcher's runbook select: re-render the form with the picked runbook's params."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def runbook_picked(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    selected = (action.get("selected_option") or {}).get("value")
    context["work"].submit(LaunchFlow(context["service"], client).picked, body["view"], selected)
