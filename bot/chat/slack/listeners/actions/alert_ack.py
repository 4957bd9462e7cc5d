"""Acknowledge a watch breach: on-call stops being paged; who and when goes in the audit log."""

from __future__ import annotations

import json
from typing import Any

from bot.chat.slack.listeners.actions._payload import clicked


def alert_ack_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    ack()
    c = clicked(body, action)
    try:  # our button's value, but carried by a request we did not build
        value = json.loads(action.get("value") or "{}")
    except (ValueError, TypeError):
        value = {}
    tick = value.get("tick") if isinstance(value, dict) else None
    context["work"].submit(context["service"].acknowledge_alert, user=c["user"], channel=c["channel"],
                           run_id=c["run_id"], tick_no=tick, response_url=c["response_url"])
