"""The watch alert's Roll back button."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.listeners.actions._payload import clicked


def rollback_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    c = clicked(body, action)
    context["work"].submit(context["service"].rollback, user=c["user"], channel=c["channel"], run_id=c["run_id"],
                           response_url=c["response_url"])
