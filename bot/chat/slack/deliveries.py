"""Each Slack delivery handled once, however many replicas or sockets it reaches.

    deliveries = Deliveries(store)
    deliveries.claim({"type": "event_callback", "event_id": "Ev1", ...})   # True: first sight, handle it
    deliveries.claim({"type": "event_callback", "event_id": "Ev1", ...})   # False: ack and drop

Why: with two replicas in Socket Mode, Slack may deliver an envelope again (to another connection)
when the first was not acknowledged in time; over HTTP it retries events (`X-Slack-Retry-Num`)
the same way. Approvals are idempotent in the engine already (one decision per approver and
request), but `/runbook run` twice would start a second run's plan and post twice. So the first
replica to claim a delivery's id in the store handles it; the others acknowledge it and stop.

The id: an event's `event_id`; a slash command's or an interaction's `trigger_id` (unique per
invocation, the same on a redelivery). A delivery with neither (rare payload kinds) is handled as
it comes. Claims older than `KEEP_SECONDS` are swept every `SWEEP_EVERY` claims (Slack redelivers
within minutes, not hours).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TABLE = "slack_deliveries"
KEEP_SECONDS = 3600.0
SWEEP_EVERY = 200  # claims between two sweeps of expired ones


def delivery_key(body: dict[str, Any]) -> str | None:
    """The id a redelivery of `body` would carry again, or None."""
    if body.get("event_id"):
        return f"event:{body['event_id']}"
    if body.get("trigger_id"):
        return f"trigger:{body['trigger_id']}"
    return None


class Deliveries:
    """Claims of Slack delivery ids in the store (see the module docstring)."""

    def __init__(self, store: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.now = clock
        self._since_sweep = 0
        store.ensure_table(TABLE, {"key": str, "at": float}, pk="key")

    def claim(self, body: dict[str, Any]) -> bool:
        """True when this is the first sight of the delivery (or it has no id); False for a repeat."""
        key = delivery_key(body)
        if key is None:
            return True
        now = self.now()
        # One statement, atomic by itself (the primary key decides), so it runs outside the store's
        # write lock: this is on the path to Slack's 3-second ack and must not queue behind the
        # engine's transactions. Old claims are swept now and then, not on every request.
        claimed = self.store.conn().execute(f"INSERT OR IGNORE INTO {TABLE}(key, at) VALUES (?, ?)",
                                            (key, now)).rowcount == 1
        self._since_sweep += 1
        if self._since_sweep >= SWEEP_EVERY:
            self._since_sweep = 0
            self.store.conn().execute(f"DELETE FROM {TABLE} WHERE at < ?", (now - KEEP_SECONDS,))
        return claimed
