"""Nobody misses a waiting approval or a breach: reminders, escalation, expiry, and on-call paging.

    reminders = Reminders(service, directory=directory, clock=time.time)
    reminders.tick()           # what the background thread does every `interval` seconds
    reminders.tick(now=t)      # tests: the whole schedule under a controlled clock, no sleeping
    reminders.acknowledge(run_id, tick_no, user="U1")   # the alert's Acknowledge button

What the runbook says (`approvals.<policy>`, or a step's `approval:`):

    approvals:
      default: {approvers: ["@platform-oncall"], remind_every: 15m, escalate_after: 1h,
                escalate_to: ["@platform-leads"], notify: dm, expires_after: 2h}

- every `remind_every` while a step waits: a reminder in the run's thread and to the approvers, as
  `notify` says (`mention`: the thread reply mentions them; `dm`: each approver gets a direct
  message with the step and a link, and the thread reply names them without pinging twice);
- once, `escalate_after` after the request: the same to `escalate_to`, who are reminded from then on too;
- once the request is older than `expires_after`: "expired, nothing applied" in the thread, with a
  Re-request button (the step is planned afresh and asks again). The engine refuses a late click.

A watch breach alert pages its on-call again every `alert_repeat` seconds until someone presses
Acknowledge on it (audited as `watch.alert_acknowledged`).

Each nudge is claimed in the store before it is sent (`slack_nudges`, a compare-and-set on the
nudge number), so two bot processes or a restart never send one twice, and a bot that was down
sends one catch-up reminder, not one per missed interval. Every nudge writes an audit event.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from bot.chat.slack import messages
from bot.chat.slack.channel import HEADER

log = logging.getLogger(__name__)

NUDGES = "slack_nudges"
ALERTS = "slack_alert_pages"
FRONT_END = "slack"
ACTIVE = ("running", "rolling_back")


class Reminders:
    def __init__(self, service: Any, *, directory: Any = None, clock: Callable[[], float] = time.time,
                 interval: float = 15.0, alert_repeat: float = 300.0) -> None:
        self.service = service
        self.store = service.store
        self.runner = service.runner
        self.poster = service.poster
        self.channel = service.channel
        self.directory = directory
        self.clock = clock
        self.interval = interval
        self.alert_repeat = alert_repeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.store.ensure_table(NUDGES, {"run_id": str, "step_key": str, "request_no": int, "kind": str, "n": int,
                                         "at": float}, pk=("run_id", "step_key", "request_no", "kind"))
        self.store.ensure_table(ALERTS, {"run_id": str, "tick_no": int, "on_call": str, "channel": str,
                                         "posted_at": float, "last_page_at": float, "pages": int,
                                         "acked_by": str, "acked_at": float}, pk=("run_id", "tick_no"))

    # -- the schedule -------------------------------------------------------------------------------

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        """Send whatever is due at `now`; returns what was sent (kind, run, step, to)."""
        now = self.clock() if now is None else now
        sent: list[dict[str, Any]] = []
        for row in self.store.list_runs(states=ACTIVE, limit=1000):
            if (row.get("chat") or {}).get("quiet"):
                continue
            try:
                run = self.runner.view(row["id"])
            except KeyError:
                continue
            for step in run.steps:
                if step.state == "awaiting_approval" and step.needs_approval and step.requested_at:
                    sent.extend(self._approval(run, step, now))
        sent.extend(self._pages(now))
        return sent

    def _approval(self, run: Any, step: Any, now: float) -> list[dict[str, Any]]:
        policy = step.approval_policy or {}
        age = now - step.requested_at
        request_no = self._request_no(run.id, step.key)
        out: list[dict[str, Any]] = []
        expires = policy.get("expires_after")
        if expires and age > expires:
            if self._claim(run.id, step.key, request_no, "expired", 1, now):
                self._post(run, f"expired:{step.key}:{request_no}",
                           messages.render("approval_expired", {"run": run, "step": step}))
                self._audit(run.id, step.key, "approval.expired", {"request_no": request_no, "after": expires})
                out.append({"kind": "expired", "run": run.id, "step": step.key, "to": []})
            return out  # an expired request is neither reminded nor escalated
        approvers = [a for a in policy.get("approvers") or [] if a != "*"]
        escalate_after, escalate_to = policy.get("escalate_after"), policy.get("escalate_to") or []
        escalated = bool(escalate_after and escalate_to and age >= escalate_after)
        if escalated and self._claim(run.id, step.key, request_no, "escalated", 1, now):
            self._nudge(run, step, escalate_to, policy, kind="escalated", name=f"escalate:{step.key}:{request_no}",
                        age=age)
            out.append({"kind": "escalated", "run": run.id, "step": step.key, "to": list(escalate_to)})
        every = policy.get("remind_every")
        if every:
            n = int(age // every)
            if n >= 1 and self._claim(run.id, step.key, request_no, "remind", n, now):
                to = approvers + (list(escalate_to) if escalated else [])
                self._nudge(run, step, to, policy, kind="reminder", name=f"remind:{step.key}:{request_no}:{n}",
                            age=age)
                out.append({"kind": "reminder", "run": run.id, "step": step.key, "to": to, "n": n})
        return out

    def _request_no(self, run_id: str, key: str) -> int:
        row = self.store.get_step(run_id, key)
        return int(row["request_no"] or 0) if row else 0

    def _claim(self, run_id: str, key: str, request_no: int, kind: str, n: int, now: float) -> bool:
        """Take nudge number `n` of this kind, once: False when it (or a later one) was taken."""
        with self.store.transaction() as conn:
            row = conn.execute(f"SELECT n FROM {NUDGES} WHERE run_id = ? AND step_key = ? AND request_no = ?"
                               " AND kind = ?", (run_id, key, request_no, kind)).fetchone()
            if row is not None and row["n"] >= n:
                return False
            conn.execute(f"INSERT OR REPLACE INTO {NUDGES}(run_id, step_key, request_no, kind, n, at)"
                         " VALUES (?, ?, ?, ?, ?, ?)", (run_id, key, request_no, kind, n, now))
            return True

    # -- sending ------------------------------------------------------------------------------------

    def _nudge(self, run: Any, step: Any, specs: list[str], policy: dict[str, Any], *, kind: str, name: str,
               age: float) -> None:
        dm = policy.get("notify") == "dm"
        mentions = self.channel.mentions(specs)
        users = self.users(specs) if dm else []
        context = {"run": run, "step": step, "mentions": mentions, "kind": kind, "age": age, "dm": dm,
                   "dm_count": len(users),
                   "link": getattr(getattr(self.service, "home", None), "thread_link", lambda r: None)(run.id)}
        msg = messages.render("approval_reminder", context)
        self._post(run, name, msg)
        if dm:
            for user in users:
                try:
                    self.poster.send("chat.postMessage", channel=user, unfurl_links=False, **msg.payload())
                except Exception:  # one closed DM must not stop the others; the thread reply stands
                    log.warning("could not DM %s about %s of run %s", user, step.key, run.id)
        self._audit(run.id, step.key, f"approval.{'escalated' if kind == 'escalated' else 'reminded'}",
                    {"to": list(specs), "notify": "dm" if dm else "mention", "waited_seconds": int(age)})

    def users(self, specs: list[str]) -> list[str]:
        """Specs as user ids to DM: a group's members, an email's user, a user id as it is."""
        out: list[str] = []
        for spec in specs:
            try:
                if spec.startswith("@") and self.directory is not None:
                    out.extend(sorted(self.directory.group_members(spec[1:])))
                elif "@" in spec and self.directory is not None:
                    user = self.directory.user_for_email(spec)
                    if user:
                        out.append(user)
                elif spec != "*":
                    out.append(spec)
            except Exception:  # the directory is down: the thread reply still names them
                log.warning("could not resolve %s for a DM", spec)
        return list(dict.fromkeys(out))

    def _post(self, run: Any, name: str, msg: messages.Message) -> None:
        channel = self.channel.channel_for(run)
        if channel is None:
            return
        self.poster.post(run.id, name, channel=channel, thread=HEADER, unfurl_links=False, **msg.payload())

    def _audit(self, run_id: str, key: str | None, action: str, detail: dict[str, Any]) -> None:
        self.store.add_event(run_id, action, actor="slack-reminders", front_end=FRONT_END, step_key=key,
                             detail=detail)

    # -- watch breaches: page until acknowledged -----------------------------------------------------

    def post_alert(self, run: Any, alert: dict[str, Any]) -> None:
        """The Channel call: remember the alert, so on-call is paged again until acknowledged."""
        import json

        now = self.clock()
        with self.store.transaction() as conn:
            conn.execute(f"INSERT OR IGNORE INTO {ALERTS}(run_id, tick_no, on_call, channel, posted_at, last_page_at,"
                         " pages) VALUES (?, ?, ?, ?, ?, ?, 1)",
                         (run.id, int(alert.get("tick_no") or 0), json.dumps(list(alert.get("on_call") or [])),
                          self.channel.channel_for(run), now, now))

    def _pages(self, now: float) -> list[dict[str, Any]]:
        import json

        out = []
        rows = [dict(r) for r in self.store.conn().execute(
            f"SELECT * FROM {ALERTS} WHERE acked_at IS NULL AND last_page_at <= ?", (now - self.alert_repeat,))]
        for row in rows:
            if self._breach_over(row["run_id"]):
                continue  # the watch ended or every signal recovered: nobody needs waking any more
            with self.store.transaction() as conn:
                moved = conn.execute(f"UPDATE {ALERTS} SET last_page_at = ?, pages = pages + 1 WHERE run_id = ?"
                                     " AND tick_no = ? AND acked_at IS NULL AND last_page_at = ?",
                                     (now, row["run_id"], row["tick_no"], row["last_page_at"])).rowcount
            if not moved:
                continue
            try:
                run = self.runner.view(row["run_id"])
            except KeyError:
                continue
            on_call = json.loads(row["on_call"] or "[]")
            msg = messages.render("alert_page", {"run": run, "tick_no": row["tick_no"], "pages": row["pages"] + 1,
                                                 "mentions": self.channel.mentions(on_call),
                                                 "since": row["posted_at"]})
            self._post(run, f"page:{row['tick_no']}:{row['pages'] + 1}", msg)
            self._audit(run.id, None, "watch.alert_repaged", {"tick_no": row["tick_no"], "to": on_call,
                                                              "page": row["pages"] + 1})
            out.append({"kind": "page", "run": run.id, "tick_no": row["tick_no"], "to": on_call})
        return out

    def _breach_over(self, run_id: str) -> bool:
        try:
            from bot.watch import tables
        except ModuleNotFoundError:  # the watch package is optional in this build
            return False
        watch = tables.get_watch(self.store, run_id)
        if watch is None:
            return False  # an alert without a stored watch: page until acknowledged
        return watch["state"] != "active" or not watch.get("alerted")

    def acknowledge(self, run_id: str, tick_no: int, *, user: str) -> str | None:
        """Stop paging for this alert; None when it was acknowledged already (who did is returned otherwise)."""
        now = self.clock()
        with self.store.transaction() as conn:
            moved = conn.execute(f"UPDATE {ALERTS} SET acked_by = ?, acked_at = ? WHERE run_id = ? AND tick_no = ?"
                                 " AND acked_at IS NULL", (user, now, run_id, int(tick_no))).rowcount
            row = conn.execute(f"SELECT acked_by FROM {ALERTS} WHERE run_id = ? AND tick_no = ?",
                               (run_id, int(tick_no))).fetchone()
        if not moved:
            return row["acked_by"] if row else "nobody (no such alert)"
        self._audit(run_id, None, "watch.alert_acknowledged", {"tick_no": int(tick_no), "by": user})
        return None

    def __getattr__(self, name: str) -> Any:
        # The other Channel calls: nothing to schedule.
        if name in ("run_updated", "post_plan", "request_approval", "approval_recorded", "report_progress",
                    "step_finished", "run_finished", "notify", "post_summary"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)

    # -- the background thread ----------------------------------------------------------------------

    def start(self) -> Reminders:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="slack-reminders", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
            except Exception:  # the schedule must survive one bad run; the next tick tries again
                log.exception("reminder tick failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
