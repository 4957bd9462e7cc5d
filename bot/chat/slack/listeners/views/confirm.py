"""The confirm modal's submission: a wrong text is an inline error; the right one goes to the engine.

The ack *is* the answer here (Slack shows `response_action: errors` under the input), so the
comparison happens before it: one SQLite read of the step's rendered confirm text. The engine
compares again when it records the approval; this check only saves a round trip and keeps the
modal open for a second try.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bot import secrets
from bot.chat.slack.ids import Block

log = logging.getLogger(__name__)


def confirm_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
    try:  # our own metadata, but carried by a request we did not build
        meta = json.loads(view.get("private_metadata") or "{}")
    except (ValueError, TypeError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("run"), str) or not isinstance(meta.get("step"), str):
        log.warning("a confirm modal arrived with unreadable private_metadata")
        ack(response_action="errors", errors={Block.CONFIRM_INPUT.value: (
            "This confirmation cannot be read; close it and click Approve again.")})
        return
    typed = (((view.get("state") or {}).get("values") or {}).get(Block.CONFIRM_INPUT.value) or {}) \
        .get(Block.CONFIRM_ACTION.value, {}).get("value") or ""
    user = body["user"]["id"]
    service = context["service"]
    _run, step, expected = service.confirm_text(meta["run"], meta["step"])
    if step is None:
        ack(response_action="errors", errors={Block.CONFIRM_INPUT.value: (
            f"Run {meta['run'][:40]} has no step {meta['step'][:40]} (any more); nothing was recorded.")})
        return
    if expected is not None and typed.strip() != expected:
        shown = expected if secrets.redact(expected) == expected else "the confirmation text"  # never echo a secret
        ack(response_action="errors",
            errors={Block.CONFIRM_INPUT.value: f"That is not it: type {shown} exactly to approve."})
        context["work"].submit(service.record_refusal, user=user, run_id=meta["run"], step_key=meta["step"],
                               code="confirm_mismatch", message="typed a wrong confirmation in the modal")
        return
    ack()
    context["work"].submit(service.approve, user=user, channel=meta.get("channel"), run_id=meta["run"],
                           step_key=meta["step"], confirm=typed.strip(), plan_digest=meta.get("digest"))
