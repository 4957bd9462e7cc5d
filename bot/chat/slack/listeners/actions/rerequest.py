"""Re-request an expired approval: the step is planned afresh and asks its approvers again."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.listeners.actions._payload import clicked


def rerequest_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    c = clicked(body, action)
    context["work"].submit(context["service"].rerequest, user=c["user"], channel=c["channel"], run_id=c["run_id"],
                           step_key=c["step_key"], response_url=c["response_url"])
