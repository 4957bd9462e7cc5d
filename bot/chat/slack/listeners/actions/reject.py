"""Reject: first a modal asking why (opened here, the trigger id lives 3 s); the engine checks who may
reject when the reason is submitted, records the reason in the audit, and the step's message shows it."""

from __future__ import annotations

import json
from typing import Any

from bot.chat.slack import messages
from bot.chat.slack.listeners.actions._payload import clicked


def reject_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    c = clicked(body, action)
    readable = isinstance(c["run_id"], str) and isinstance(c["step_key"], str)  # a damaged value names nothing
    run, step, _confirm = context["service"].confirm_text(c["run_id"], c["step_key"]) if readable else (None, None, None)
    if step is None or step.state != "awaiting_approval" or not context["service"].may_decide(run, step, c["user"]):
        # decided or gone meanwhile, or not theirs to reject: the engine says why (privately) and audits it
        context["work"].submit(context["service"].reject, user=c["user"], channel=c["channel"], run_id=c["run_id"],
                               step_key=c["step_key"], response_url=c["response_url"], reason="")
        return
    metadata = json.dumps({"run": run.id, "step": step.key, "channel": c["channel"]})
    view = messages.render("reject_modal", {"run": run, "step": step, "metadata": metadata}).view
    client.views_open(trigger_id=body["trigger_id"], view=view)
