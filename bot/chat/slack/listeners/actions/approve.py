"""Approve: straight to the engine, or first a modal when the step has a confirm text.

The modal opens here, right after the ack, because a click's trigger id expires in 3 seconds;
the engine is the only place that decides (its compare-and-set makes a double click harmless).
"""

from __future__ import annotations

import json
from typing import Any

from bot.chat.slack import messages
from bot.chat.slack.listeners.actions._payload import clicked


def approve_clicked(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any, context: Any) -> None:
    ack()
    c = clicked(body, action)
    service = context["service"]
    if c["confirm"]:
        run, step, confirm_text = service.confirm_text(c["run_id"], c["step_key"])
        if step is not None and confirm_text and step.state == "awaiting_approval":
            if not service.may_open_confirm(user=c["user"], channel=c["channel"], run_id=run.id, step_key=step.key,
                                            response_url=c["response_url"], plan_digest=c["digest"]):
                return  # told privately why (not an approver, own run, re-planned), before any modal
            metadata = json.dumps({"run": run.id, "step": step.key, "channel": c["channel"],
                                   "digest": c["digest"] or step.plan_digest})
            view = messages.render("confirm_modal", {"run": run, "step": step, "confirm_text": confirm_text,
                                                     "metadata": metadata}).view
            client.views_open(trigger_id=body["trigger_id"], view=view)
            return
        # not awaiting any more (decided, expired): let the engine say why, privately
    context["work"].submit(service.approve, user=c["user"], channel=c["channel"], run_id=c["run_id"],
                           step_key=c["step_key"], response_url=c["response_url"], plan_digest=c["digest"])
