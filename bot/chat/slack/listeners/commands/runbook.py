"""`/runbook ...`: ack with nothing, answer from the work pool; `/runbook run` alone opens the launcher
(here, right after the ack: the trigger id lives 3 seconds)."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def runbook_command(ack: Any, command: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    if (command.get("text") or "").strip().lower() == "run":
        LaunchFlow(context["service"], client).open(command["trigger_id"], channel=command["channel_id"])
        return
    context["work"].submit(context["service"].command, user=command["user_id"], channel=command["channel_id"],
                           text=command.get("text", ""), response_url=command.get("response_url"))
