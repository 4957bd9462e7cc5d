"""`/runbook ...`: ack with nothing, answer from the work pool; `/runbook run` alone opens the launcher
(here, right after the ack: the trigger id lives 3 seconds), as does `/runbook run NAME` when NAME
has a parameter with no default (its form opens with the runbook picked)."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.launcher import LaunchFlow


def runbook_command(ack: Any, command: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    words = (command.get("text") or "").split()
    if words and words[0].lower() == "run" and len(words) <= 2:
        flow = LaunchFlow(context["service"], client)
        if len(words) == 1:
            flow.open(command["trigger_id"], channel=command["channel_id"])
            return
        if flow.needs_form(words[1]):  # `run NAME` leaving out a required param: fill in the form instead
            flow.open(command["trigger_id"], channel=command["channel_id"], selected=words[1])
            return
    context["work"].submit(context["service"].command, user=command["user_id"], channel=command["channel_id"],
                           text=command.get("text", ""), response_url=command.get("response_url"))
