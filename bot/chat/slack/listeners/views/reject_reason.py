"""The reject modal's submission: a reason is required (inline error otherwise), then the engine decides."""

from __future__ import annotations

import json
from typing import Any

from bot.chat.slack.ids import Block

MAX_REASON = 500


def reject_reason_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    meta = json.loads(view.get("private_metadata") or "{}")
    reason = ((((view.get("state") or {}).get("values") or {}).get(Block.REJECT_INPUT.value) or {})
              .get(Block.REJECT_ACTION.value, {}).get("value") or "").strip()
    if not reason:
        ack(response_action="errors", errors={Block.REJECT_INPUT.value: "Say why: it goes in the audit log and the thread."})
        return
    ack()
    context["work"].submit(context["service"].reject, user=body["user"]["id"], channel=meta.get("channel"),
                           run_id=meta["run"], step_key=meta["step"], reason=reason[:MAX_REASON])
