"""`/runbook ...`: ack with nothing, answer from the work pool."""

from __future__ import annotations

from typing import Any


def runbook_command(ack: Any, command: dict[str, Any], context: Any) -> None:
    ack()
    context["work"].submit(context["service"].command, user=command["user_id"], channel=command["channel_id"],
                           text=command.get("text", ""), response_url=command.get("response_url"))
