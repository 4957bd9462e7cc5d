"""The reject modal's submission: a reason is required (inline error otherwise), then the engine decides."""

from __future__ import annotations

from typing import Any

from bot.chat.slack.ids import Block
from bot.chat.slack.listeners.views._meta import metadata

MAX_REASON = 500


def reject_reason_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    meta = metadata(view, "run", "step")
    if meta is None:
        ack(response_action="errors", errors={Block.REJECT_INPUT.value: (
            "This form cannot be read; close it and click Reject again. Nothing was recorded.")})
        return
    reason = ((((view.get("state") or {}).get("values") or {}).get(Block.REJECT_INPUT.value) or {})
              .get(Block.REJECT_ACTION.value, {}).get("value") or "").strip()
    if not reason:
        ack(response_action="errors", errors={Block.REJECT_INPUT.value: "Say why: it goes in the audit log and the thread."})
        return
    ack()
    context["work"].submit(context["service"].reject, user=body["user"]["id"], channel=meta.get("channel"),
                           run_id=meta["run"], step_key=meta["step"], reason=reason[:MAX_REASON])
