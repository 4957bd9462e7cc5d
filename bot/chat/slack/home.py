"""App Home: each viewer's runs, the approvals waiting for them first, and the watches running.

    home = HomePublisher(client, store, runner.view, directory=directory)
    home.start()
    home.opened("U1")              # app_home_opened: remember the viewer, publish for them now
    home.run_changed(run_view)     # every transition: re-publish for the viewers the run concerns
    home.close()

Why it is shaped like this: `views.publish` is one call per user, rate-limited by Slack, and the
engine moves several times a second. So a transition only *notes* the run and returns at once; one
publisher thread works out the viewers it concerns (the run's starter and whoever may approve one
of its steps, among the people who have opened the Home at least once; everyone else gets a fresh
Home when they open it), then renders and publishes each of them, at most once per `min_interval`
seconds per viewer (coalescing a burst into one publish of the newest state), giving way to acks
in flight (`AckGate`). A 429 is retried by the client's RateLimitErrorRetryHandler.

`HomeChannel` is the engine-facing side: a `Channel` that calls `run_changed` on transitions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.chat.slack import messages

log = logging.getLogger(__name__)

VIEWERS = "slack_home_viewers"
ACTIVE = ("running", "rolling_back")
MAX_ROWS = 20


class HomePublisher:
    def __init__(self, client: Any, store: Any, run_view: Callable[[str], Any], *, directory: Any = None,
                 gate: Any = None, min_interval: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 thread_link: Callable[[str], str | None] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.wall = wall  # the wall clock approval expiry is measured on (tests control it)
        self.store = store
        self.run_view = run_view
        self.directory = directory
        self.gate = gate
        self.min_interval = min_interval
        self.clock = clock
        self.thread_link = thread_link or (lambda run_id: None)
        self.summaries: dict[str, str] = {}  # run id -> the first line of its latest watch summary
        self._dirty: set[str] = set()
        self._changed: dict[str, Any] = {}  # run id -> its newest view, not yet resolved into viewers
        self._last: dict[str, float] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        store.ensure_table(VIEWERS, {"user": str, "opened_at": float}, pk="user")
        try:
            from bot.watch import tables

            tables.ensure(store)  # once, here: DDL while runs write would contend for the file
            self._watches = tables
        except ModuleNotFoundError:  # the watch package is optional in this build
            self._watches = None

    # -- what happens -----------------------------------------------------------------------------

    def opened(self, user: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(f'INSERT OR REPLACE INTO {VIEWERS}("user", opened_at) VALUES (?, ?)', (user, time.time()))
        self._mark({user}, now=True)

    def run_changed(self, run: Any) -> None:
        """A transition of `run`: note it and return at once (the engine's thread never waits on Slack;
        working out whom it concerns may look up a user group, so the publisher thread does that)."""
        with self._cond:
            self._changed[run.id] = run
            self._cond.notify_all()

    def _resolve(self, runs: list[Any]) -> None:
        """Mark the viewers that these changed runs concern (on the publisher thread)."""
        try:
            viewers = self.viewers()
        except Exception:  # a Home that lags must never stop the publisher
            log.exception("App Home: could not read the viewers")
            return
        concerned: set[str] = set()
        for run in runs:
            try:
                concerned |= {v for v in viewers if self._concerns(run, v)}
            except Exception:  # one run's lookup failing must not hide the others
                log.exception("App Home: could not work out whom run %s concerns", getattr(run, "id", "?"))
        self._mark(concerned)

    def thread_started(self, run_id: str) -> None:
        try:
            self.run_changed(self.run_view(run_id))
        except KeyError:
            pass

    def summary_posted(self, run: Any, line: str) -> None:
        self.summaries[run.id] = line
        self.run_changed(run)

    def viewers(self) -> list[str]:
        # "user" quoted (here and in `opened`): bare, it is current_user in PostgreSQL (the store may be either)
        return [r[0] for r in self.store.conn().execute(f'SELECT "user" FROM {VIEWERS}')]

    # -- what a viewer sees -----------------------------------------------------------------------

    def _may_approve(self, user: str, policy: dict[str, Any] | None) -> bool:
        if not policy:
            return False
        for spec in policy.get("approvers") or []:
            try:
                if self.directory is not None and self.directory.matches(user, spec):
                    return True
                if self.directory is None and (spec == "*" or spec == user):
                    return True
            except Exception:  # the directory being down must not stop the Home; the button still checks
                log.warning("App Home: approver lookup of %s failed", spec)
        return False

    def _concerns(self, run: Any, user: str) -> bool:
        if run.started_by == user:
            return True
        return any(s.needs_approval and self._may_approve(user, s.approval_policy) for s in run.steps)

    def rows(self, user: str) -> dict[str, Any]:
        """What `user`'s Home shows: waiting-for-you first, then their runs, then watches."""
        waiting, runs = [], []
        for row in self.store.list_runs(limit=200):
            recent = row["state"] in ACTIVE or (row["started_by"] == user and len(runs) < MAX_ROWS)
            if not recent or (row.get("chat") or {}).get("quiet"):
                continue  # old, or one of the launcher's dry runs
            try:
                run = self.run_view(row["id"])
            except KeyError:
                continue
            if not self._concerns(run, user):
                continue
            current = next((s for s in run.steps if s.state not in ("succeeded", "skipped", "rolled_back")), None)
            item = {"run": run, "step": current, "link": self.thread_link(run.id),
                    "mine": run.started_by == user}
            policy = (current.approval_policy or {}) if current is not None else {}
            expired = bool(current is not None and policy.get("expires_after") and current.requested_at
                           and self.wall() - current.requested_at > policy["expires_after"])
            item["expired"] = expired
            if current is not None and current.state == "awaiting_approval" and run.state in ACTIVE and not expired \
                    and self._may_approve(user, current.approval_policy) \
                    and not any(a["approver"] == user for a in current.approvals) \
                    and (run.started_by != user or (current.approval_policy or {}).get("allow_self")):
                waiting.append(item)
            elif len(runs) < MAX_ROWS:
                runs.append(item)
        watches = []
        try:
            for watch in (self._watches.active_watches(self.store) if self._watches else []):
                line = self.summaries.get(watch["run_id"])
                if line is None:  # after a restart: rebuilt from the stored samples
                    from bot.watch.service import last_headline

                    line = last_headline(self.store, watch["run_id"])
                watches.append({"run_id": watch["run_id"], "line": line,
                                "link": self.thread_link(watch["run_id"]), "tick_no": watch["tick_no"]})
        except Exception:  # the watch tables are optional; the Home still shows runs
            log.exception("App Home: could not read the watches")
        return {"waiting": waiting, "runs": runs, "watches": watches}

    def view(self, user: str) -> dict[str, Any]:
        return messages.render("app_home", {"user": user, **self.rows(user)}).view or {}

    def publish(self, user: str) -> None:
        self.client.views_publish(user_id=user, view=self.view(user))

    # -- the publisher thread ---------------------------------------------------------------------

    def _mark(self, users: set[str], now: bool = False) -> None:
        if not users:
            return
        with self._cond:
            self._dirty |= users
            if now:
                for u in users:
                    self._last.pop(u, None)
            self._cond.notify_all()

    def start(self) -> HomePublisher:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="slack-home", daemon=True)
            self._thread.start()
        return self

    def _next(self) -> str | None:
        """The next viewer due a publish, waiting as needed; None once closed."""
        with self._cond:
            while not self._stopped:
                if self._changed:
                    return ""  # runs changed: resolve them into viewers first
                now = self.clock()
                due = [u for u in self._dirty if now - self._last.get(u, -1e18) >= self.min_interval]
                if due:
                    user = min(due, key=lambda u: self._last.get(u, -1e18))
                    self._dirty.discard(user)
                    self._last[user] = now
                    return user
                if not self._dirty:
                    self._cond.wait()
                else:
                    soonest = min(self._last.get(u, now) + self.min_interval for u in self._dirty)
                    self._cond.wait(max(0.01, soonest - now))
        return None

    def _loop(self) -> None:
        while True:
            user = self._next()
            if user is None:
                return
            if user == "":
                with self._cond:
                    runs, self._changed = list(self._changed.values()), {}
                self._resolve(runs)
                continue
            if self.gate is not None:
                self.gate.wait_quiet()
            try:
                self.publish(user)
            except Exception:  # one viewer's failed publish must not stop the others'
                log.exception("App Home: publishing for %s failed", user)

    def idle(self) -> bool:
        with self._cond:
            return not self._dirty and not self._changed

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(5)


class HomeChannel:
    """The engine's `Channel`, for the Home only: every transition marks the run's viewers.
    Progress is not a transition (the Home shows states, not percentages), so it is ignored."""

    def __init__(self, home: HomePublisher) -> None:
        self.home = home

    def run_updated(self, run: Any) -> None:
        self.home.run_changed(run)

    def _changed(self, run: Any, *args: Any) -> None:
        self.home.run_changed(run)

    request_approval = post_plan = approval_recorded = step_finished = run_finished = _changed

    def post_summary(self, run: Any, summary: dict[str, Any]) -> None:
        self.home.summary_posted(run, f"#{summary.get('tick_no')}: "
                                 + (summary.get("headline") or f"{summary.get('state')}"))

    def post_alert(self, run: Any, alert: dict[str, Any]) -> None:
        self.home.run_changed(run)

    def report_progress(self, *args: Any) -> None:
        pass

    def notify(self, *args: Any, **kwargs: Any) -> None:
        pass


class ThreadLinks:
    """A run's thread as a link: `https://TEAM.slack.com/archives/C1/p1700000001000100`.

    Built from the header's stored ref and the workspace URL (`auth.test`, asked once), instead of a
    `chat.getPermalink` call per run per publish."""

    def __init__(self, client: Any, poster: Any) -> None:
        self.client = client
        self.poster = poster
        self._base: str | None = None

    def __call__(self, run_id: str) -> str | None:
        from bot.chat.slack.channel import HEADER

        ref = self.poster.ref(run_id, HEADER)
        if ref is None:
            return None
        if self._base is None:
            try:
                self._base = str(self.client.auth_test().get("url") or "")
            except Exception:  # no link is better than no Home
                log.warning("App Home: auth.test failed; thread links left out")
                return None
        channel, ts = ref
        return f"{self._base.rstrip('/')}/archives/{channel}/p{ts.replace('.', '')}" if self._base else None
