"""The watch scheduler: APScheduler jobs rebuilt from the store, one scheduler per store.

    from bot.watch.scheduler import WatchScheduler
    scheduler = WatchScheduler(store, channel)          # channel: the front end's Channel
    scheduler.start()                                   # every `serve` worker may do this
    ...
    scheduler.shutdown()

Why it is shaped like this:

- **The store is the schedule.** Each watch row holds `started_at`, `every`, `until`, `next_due` and
  `tick_no`; APScheduler only decides *when to look*. Its jobs (`watch:<run id>`, an interval
  trigger aligned on `started_at`) are rebuilt from the active rows on start and on every sync, so
  a restart loses no watch, and a job that fires calls `service.run_due_tick`, which claims the
  tick with a compare-and-set on `tick_no`: a tick happens once even if two schedulers fire it.
- **One scheduler per store.** APScheduler starts once per process, and `serve --http` may run
  several worker processes (a known trap: flask-apscheduler #51). Schedulers compete for the
  store's `watch-scheduler` lease (`bot.engine.leases`); only the holder keeps watch jobs. It renews the lease
  every `lease_seconds / 3`; when it dies, another worker takes over within `lease_seconds`.
- **Missed ticks coalesce.** After downtime the store's `next_due` is in the past; the first tick
  taken covers all missed slots at once and reports the gap (`gap_seconds`), then the schedule
  continues on its original grid (APScheduler's `coalesce=True` does the same for its own misfires).
- **A controllable clock.** Every time decision uses `clock.now()`. Tests build the scheduler with
  `paused=True` (jobs exist and can be inspected, nothing fires by itself) and drive it with
  `sync()` and `run_pending()` under a fake clock.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
import weakref
from datetime import datetime, timezone
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.engine.leases import Lease
from bot.steps.context import SystemClock
from bot.watch import service, tables

log = logging.getLogger(__name__)

LEASE_KEY = "watch-scheduler"
SYNC_JOB = "watch-sync"

_local: weakref.WeakSet[WatchScheduler] = weakref.WeakSet()
_local_lock = threading.Lock()


def notify_changed(store: Any) -> None:
    """A watch was started or stopped: schedulers of this process on the same store re-sync now."""
    with _local_lock:
        mine = [s for s in _local if s.store.path == store.path and s.running]
    for scheduler in mine:
        scheduler.sync()


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


class WatchScheduler:
    def __init__(self, store: Any, channel: Any, *, clock: Any = None, owner: str | None = None,
                 lease_seconds: float = 30.0, run_view: Any = None, paused: bool = False) -> None:
        self.store = store
        self.channel = channel
        self.clock = clock or SystemClock()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease_seconds = lease_seconds
        self.lease = Lease(store, LEASE_KEY, owner=self.owner, seconds=lease_seconds, clock=self.clock.now)
        self.run_view = run_view
        self.paused = paused
        self.running = False
        self._lock = threading.RLock()
        self._aps = BackgroundScheduler(
            timezone=timezone.utc,
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        tables.ensure(store)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> bool:
        """Start APScheduler, take the lease if free and rebuild the watch jobs; True if it leads."""
        with self._lock:
            if self.running:
                return self.holds_lease()
            self._aps.start(paused=self.paused)
            self._aps.add_job(self._heartbeat, IntervalTrigger(seconds=max(1.0, self.lease_seconds / 3)), id=SYNC_JOB,
                              replace_existing=True)
            self.running = True
        with _local_lock:
            _local.add(self)
        return self.sync()

    def shutdown(self, *, release: bool = True) -> None:
        """Stop; `release=False` leaves the lease to expire (what a crash looks like, for tests)."""
        with _local_lock:
            _local.discard(self)
        with self._lock:
            if self.running:
                self._aps.shutdown(wait=False)
                self.running = False
        if release:
            self.lease.release()

    # -- the lease ------------------------------------------------------------------------------

    def acquire_lease(self) -> bool:
        """Take or renew the lease; False while another live scheduler holds it."""
        return self.lease.acquire()

    def holds_lease(self) -> bool:
        return self.lease.held()

    # -- jobs -----------------------------------------------------------------------------------

    def sync(self) -> bool:
        """Renew (or take) the lease and make the jobs match the active watches; True if leading."""
        with self._lock:
            if not self.running:
                return False
            leading = self.acquire_lease()
            wanted = {w["run_id"]: w for w in tables.active_watches(self.store)} if leading else {}
            for job in self._aps.get_jobs():
                if job.id.startswith("watch:") and job.id[len("watch:"):] not in wanted:
                    job.remove()
            now = self.clock.now()
            for run_id, watch in wanted.items():
                job_id = f"watch:{run_id}"
                if self._aps.get_job(job_id) is not None:
                    continue
                self._aps.add_job(
                    self._fire, IntervalTrigger(seconds=watch["every"], start_date=_dt(watch["started_at"])),
                    args=[run_id], id=job_id, replace_existing=True,
                    next_run_time=_dt(max(now, watch["next_due"])),
                )
        return leading

    def _heartbeat(self) -> None:
        """The periodic job: renew the lease, reconcile the jobs, and take anything due that a job
        missed (a final tick clamped to the window's end, a job that fired a hair early)."""
        if self.sync():
            self.run_pending()

    def job_ids(self) -> list[str]:
        return sorted(job.id for job in self._aps.get_jobs() if job.id.startswith("watch:"))

    def _fire(self, run_id: str) -> None:
        if not self.holds_lease():
            return
        service.run_due_tick(self.store, run_id, self.channel, now=self.clock.now(), run_view=self.run_view)

    def run_pending(self) -> list[dict[str, Any]]:
        """Take every due tick now (what the jobs do when they fire); returns the summaries posted.

        Renews the lease first (or takes it over from a scheduler whose lease ran out)."""
        if not self.running or not self.acquire_lease():
            return []
        summaries = []
        now = self.clock.now()
        for watch in tables.active_watches(self.store):
            if watch["next_due"] > now + service.DUE_SLACK:
                continue
            summary = service.run_due_tick(self.store, watch["run_id"], self.channel, now=now, run_view=self.run_view)
            if summary is not None:
                summaries.append(summary)
        return summaries
