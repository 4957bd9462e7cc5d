"""An interrupted step: verify, retry, skip or roll back, as the clicker chose."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.listeners.actions._payload import clicked


def resolve_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    c = clicked(body, action)
    context["work"].submit(context["service"].resolve, user=c["user"], channel=c["channel"], run_id=c["run_id"],
                           step_key=c["step_key"], action=c["choice"], response_url=c["response_url"])
