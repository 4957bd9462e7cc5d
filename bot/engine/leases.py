"""Named leases in the store: one holder at a time across every process on the same store.

    lease = Lease(store, "slack-outbox", owner=process_token(), seconds=15)
    if lease.acquire():          # take it when free or expired, renew it when ours; False otherwise
        drain()
    lease.holder()               # {"owner": ..., "expires_at": ..., "acquired_at": ...} or None
    lease.release()              # at a clean shutdown, so another replica takes over at once

Who uses one: the watch scheduler (exactly one replica keeps the watch jobs) and the Slack outbox
worker (exactly one replica re-sends queued posts, so none goes out twice). A holder renews well
inside `seconds` (a third of it); when it dies, the lease runs out and the next replica to ask
takes it, so the takeover happens within `seconds` plus one renewal interval.

Why a row and not a PostgreSQL session advisory lock: the same code works on both backends, the
holder and its expiry are visible (`/healthz`, `runbook-bot status`), and a holder that hangs
without dying (a wedged thread, a paused VM) loses the lease when it stops renewing, which a
session lock held by a live connection would never do.

Clocks: expiry is compared with each process's own clock (`store.now`). Replicas on different
hosts need synchronised clocks (NTP, as every cloud host has); a skew shortens or lengthens the
takeover by the skew, and the watch's tick claims in the store still keep a tick from doubling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TABLE = "leases"


class Lease:
    """One named lease held by `owner` for `seconds` at a time (see the module docstring)."""

    def __init__(self, store: Any, key: str, *, owner: str, seconds: float,
                 clock: Callable[[], float] | None = None) -> None:
        self.store = store
        self.key = key
        self.owner = owner
        self.seconds = seconds
        self.now = clock or store.now

    def acquire(self) -> bool:
        """Take the lease (free or expired) or renew it (ours); False while another live holder has it."""
        now = self.now()
        with self.store.transaction() as conn:  # the store's write lock makes read-then-write one step
            row = conn.execute(f"SELECT owner, expires_at, acquired_at FROM {TABLE} WHERE key = ?",
                               (self.key,)).fetchone()
            if row is not None and row["owner"] != self.owner and row["expires_at"] > now:
                return False
            acquired = row["acquired_at"] if row is not None and row["owner"] == self.owner else now
            conn.execute(f"INSERT OR REPLACE INTO {TABLE}(key, owner, expires_at, acquired_at) VALUES (?, ?, ?, ?)",
                         (self.key, self.owner, now + self.seconds, acquired))
            return True

    def held(self) -> bool:
        """True while this owner holds an unexpired lease (a read; renews nothing)."""
        row = self.holder()
        return row is not None and row["owner"] == self.owner and row["expires_at"] > self.now()

    def holder(self) -> dict[str, Any] | None:
        row = self.store.conn().execute(f"SELECT owner, expires_at, acquired_at FROM {TABLE} WHERE key = ?",
                                        (self.key,)).fetchone()
        return dict(row) if row is not None else None

    def release(self) -> None:
        """Give the lease up now (only if it is ours), so another process need not wait for expiry."""
        with self.store.transaction() as conn:
            conn.execute(f"DELETE FROM {TABLE} WHERE key = ? AND owner = ?", (self.key, self.owner))
