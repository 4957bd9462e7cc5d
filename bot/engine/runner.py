"""The state machine of a run: plan, ask, apply, verify; roll back; resume after a crash.

    store = Store("state/runbook-bot.sqlite")
    runner = Runner(store, channel)                       # background=True for Slack
    run = runner.start("runbooks/demo.yaml", {"env": "staging"}, started_by="alice", front_end="console")
    decision = runner.approve(run.id, "switch-dns", user="bob", front_end="console", confirm="staging")
    decision.ok, decision.code, decision.message

Steps move `pending -> planned -> awaiting_approval -> applying -> verifying -> succeeded`
(or `failed`, `skipped`, `interrupted`, `rolled_back`); runs move `running -> succeeded | failed |
aborted | rolling_back -> rolled_back`. Every move is a compare-and-set in the store with an audit
event, so:
- two approvers (threads or processes) racing on one step apply it once: the approval that
  completes the quorum moves `awaiting_approval -> applying` inside the same transaction, and the
  others are told who already approved;
- a step found `applying` after its process died becomes `interrupted`, and waits for a person to
  choose verify, retry, skip or rollback: it is never re-applied on its own;
- a run whose runbook file changed since it started refuses to go on until someone re-plans it.

The engine drives a run as far as it can without people (`_drive`), then returns; approvals
arrive through `approve` from any front end. With `background=True` the applying happens on the
runner's own thread pool so a Slack listener returns at once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets as pysecrets
import socket
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot import config
from bot import secrets as secret_values
from bot.engine import states as st
from bot.engine.approval_policy import EffectivePolicy, effective_policy, spec_for
from bot.engine.channel import Progress, QuietChannel, RunView, StepView
from bot.engine.liveness import HEARTBEAT_SECONDS, STALE_AFTER_SECONDS, Heartbeats, owner_alive, process_token
from bot.engine.rollback_plan import UNDO_PREFIX, plan_undo, retry_keys, rollback_outcome, undo_source
from bot.engine.states import RunState, StepState
from bot.engine.step_rows import StepRows
from bot.engine.store import LockHeld, Store
from bot.engine.store_faults import StoreFault
from bot.platforms.errors import PlatformError
from bot.runbook.plancheck import rendered_input_problems
from bot.runbook.load import LoadedRunbook, RunbookInvalid, format_path, load_runbook, resolve_runbook
from bot.runbook.model import ApprovalPolicy, RollbackSpec, Step
from bot.runbook.render import (
    TemplateContext,
    TemplateNameError,
    TemplateSyntaxProblem,
    env_values,
    render_string,
    render_value,
)
from bot.runbook.targets import parse_target
from bot.steps.base import Plan, PlanRefused, Result, StepError, StepKind, Verification, kinds
from bot.steps.context import Cancelled, StepContext, StepRecord, SystemClock

log = logging.getLogger("runbook_bot.engine")

TERMINAL_STEP = tuple(st.STEP_DONE)
ACTIVE_RUN = tuple(st.RUN_ACTIVE)
FINAL_RUN = tuple(st.RUN_FINAL)
ENGINE = "engine"
__all__ = ["HEARTBEAT_SECONDS", "STALE_AFTER_SECONDS", "UNDO_PREFIX", "Runner", "Decision", "StartRefused"]


@dataclass
class Decision:
    """The answer to a person's action: `ok`, a stable `code` for front ends, and a sentence."""

    ok: bool
    code: str
    message: str
    run_id: str | None = None
    next_action: tuple[str, ...] | None = None  # what a person can do next, e.g. ("replan",); front ends
    # word it as their own command (`runbook-bot replan RUN`, `/runbook replan RUN`): the engine names no CLI


class StartRefused(Exception):
    """A run could not start (bad params, runbook invalid, environment locked); nothing was stored."""


class RunbookChanged(Exception):
    pass


class StaticDirectory:
    """Approver matching without a chat service: ids and emails compare as text; `@group` through a table.

    Groups come from `RUNBOOK_BOT_GROUPS="platform-oncall=alice,bob;dba=carol"` when not given.
    """

    def __init__(self, groups: dict[str, list[str]] | None = None) -> None:
        if groups is None:
            groups = {}
            for part in (config.get("RUNBOOK_BOT_GROUPS") or "").split(";"):
                if "=" in part:
                    name, members = part.split("=", 1)
                    groups[name.strip().lstrip("@")] = [m.strip() for m in members.split(",") if m.strip()]
        self.groups = groups

    def matches(self, user: str, spec: str) -> bool:
        if spec == "*":
            return True
        if spec.startswith("@"):
            return user in self.groups.get(spec[1:], [])
        return user.lower() == spec.lower()


def new_run_id() -> str:
    return "r-" + pysecrets.token_hex(4)


class Runner:
    def __init__(self, store: Store, channel: Any = None, *, directory: Any = None, clock: Any = None,
                 background: bool = False, max_workers: int = 8, progress_interval: float = 1.0,
                 runbooks_dir: str | Path | None = None) -> None:
        self.store = store
        self.channel = channel or QuietChannel()
        self.directory = directory or StaticDirectory()
        self.clock = clock or SystemClock()
        self.background = background
        self.executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="runbook-step") \
            if background else None
        self.progress_interval = progress_interval
        self.runbooks_dir = Path(runbooks_dir) if runbooks_dir else config.runbooks_dir()
        self.owner = process_token()
        self._beats = Heartbeats(store, self.owner)
        self._cancel: dict[str, threading.Event] = {}
        self._drive_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._runbooks: dict[tuple[str, str], LoadedRunbook] = {}
        self._digests: dict[str, tuple[tuple[int, ...], str]] = {}  # path -> (stat stamp, sha256)
        self._rows = StepRows(store)  # flat cost per transition: only changed rows are read again
        self._views: dict[tuple[str, str], tuple[Any, list[StepView]]] = {}  # (change mark, views in order)

    # ------------------------------------------------------------------------------------------
    # Public API: what front ends call.
    # ------------------------------------------------------------------------------------------

    def start(self, runbook: str | Path, params: dict[str, Any], *, started_by: str, front_end: str,
              chat: dict[str, Any] | None = None, dry_run: bool = False) -> RunView:
        """Validate, store and start driving a run. Raises `StartRefused` (nothing stored) on any problem."""
        try:
            path = resolve_runbook(runbook, self.runbooks_dir)
        except LookupError as exc:
            raise StartRefused(str(exc)) from None
        try:
            loaded = load_runbook(path)
        except RunbookInvalid as exc:
            raise StartRefused(f"the runbook has errors:\n{exc}") from None
        model = loaded.model
        typed = self._coerce_params(loaded, params)
        targets = self._targets(loaded, typed)
        if problems := rendered_input_problems(loaded, typed):  # before any approval is asked
            raise StartRefused("inputs are not valid once rendered:\n" + "\n".join(problems))
        lock_keys = [] if dry_run else self._lock_keys(loaded, typed, targets)
        steps = [{"key": s.id, "step_id": s.id, "idx": i, "kind": s.kind, "phase": "forward"}
                 for i, s in enumerate(model.steps)]
        run_id = new_run_id()
        try:
            self.store.create_run(run_id=run_id, runbook=model.name, runbook_path=str(Path(path).resolve()),
                                  runbook_sha256=loaded.sha256, params=typed, started_by=started_by,
                                  front_end=front_end, steps=steps, lock_keys=lock_keys, chat=chat,
                                  dry_run=dry_run, targets=self._rendered_targets(loaded, typed))
        except LockHeld as exc:
            raise StartRefused(str(exc)) from None
        self._runbooks[(str(Path(path).resolve()), loaded.sha256)] = loaded
        self._tell(run_id, ("run_updated", None),
                   *[("notify", None, f"lint: {warning}", "warning") for warning in loaded.warnings])
        self._kick(run_id)
        return self.view(run_id)

    def approve(self, run_id: str, step_key: str, *, user: str, front_end: str,
                confirm: str | None = None, plan_digest: str | None = None) -> Decision:
        """`plan_digest` is `StepView.plan_digest` of the plan the person saw; when given and the step
        has been re-planned since, the approval is refused and the new plan is shown."""
        return self._decide(run_id, step_key, user=user, front_end=front_end, approve=True, confirm=confirm,
                            plan_digest=plan_digest)

    def may_approve(self, run_id: str, step_key: str, *, user: str, front_end: str,
                    plan_digest: str | None = None) -> Decision:
        """Every check of `approve` except the typed confirmation, recording nothing but a refusal:
        front ends ask this before opening a confirm modal, so a non-approver hears it first."""
        return self._decide(run_id, step_key, user=user, front_end=front_end, approve=True,
                            plan_digest=plan_digest, precheck=True)

    def reject(self, run_id: str, step_key: str, *, user: str, front_end: str, reason: str = "") -> Decision:
        return self._decide(run_id, step_key, user=user, front_end=front_end, approve=False, reason=reason)

    def abort(self, run_id: str, *, user: str, front_end: str, reason: str = "") -> Decision:
        run = self.store.find_run(run_id)
        if run is None:
            return Decision(False, "no_run", f"no run {run_id}")
        refused = self._authorise(run, self._runbook_quiet(run), user, front_end, "abort")
        if refused is not None:
            return refused
        moved = self.store.transition_run(run["id"], ACTIVE_RUN, "aborted", actor=user, front_end=front_end,
                                          error=f"aborted by {user}" + (f": {reason}" if reason else ""),
                                          release_locks=True)
        if not moved:
            return Decision(False, "not_active", f"run {run['id']} is {run['state']}; nothing to abort",
                            run["id"])
        self._cancel_event(run["id"]).set()
        self._tell(run["id"], ("run_finished", None))
        return Decision(True, "aborted", f"run {run['id']} aborted; a step that was applying is being stopped",
                        run["id"])

    def rollback(self, run_id: str, *, user: str, front_end: str) -> Decision:
        """Undo every step that may have changed something, newest first, each through
        plan/approve/apply/verify. From `rollback_incomplete`, tries the failed undo steps again."""
        run = self.store.find_run(run_id)
        if run is None:
            return Decision(False, "no_run", f"no run {run_id}")
        run_id = run["id"]
        if run["dry_run"]:
            return Decision(False, "dry_run", "a dry run changed nothing; there is nothing to roll back", run_id)
        if run["state"] in ("rolling_back", "rolled_back"):
            return Decision(False, "already", f"run {run_id} is already {run['state']}", run_id)
        try:
            loaded = self._runbook_for(run)
        except RunbookChanged as exc:
            return Decision(False, "runbook_changed", str(exc), run_id, next_action=("replan",))
        refused = self._authorise(run, loaded, user, front_end, "rollback")
        if refused is not None:
            return refused
        steps = self.store.get_steps(run_id)
        busy = [s["key"] for s in steps if s["state"] in ("applying", "verifying")]
        if busy:
            return Decision(False, "busy", f"step {busy[0]} is still applying; abort the run first, or wait", run_id)
        stuck = [s["key"] for s in steps if s["state"] == "interrupted"]
        if stuck:
            return Decision(False, "interrupted", f"step {stuck[0]} was interrupted: decide it first "
                            "(resolving it as rollback rolls back the run)", run_id,
                            next_action=("resolve", stuck[0], "rollback"))
        return self._begin_rollback(run, loaded, steps, actor=user, front_end=front_end,
                                    reason=f"rollback requested by {user}")

    def resolve(self, run_id: str, step_key: str, action: str, *, user: str, front_end: str) -> Decision:
        """A person's decision on an interrupted step: verify, retry, skip or rollback."""
        run = self.store.find_run(run_id)
        if run is None:
            return Decision(False, "no_run", f"no run {run_id}")
        run_id = run["id"]
        step = self.store.get_step(run_id, step_key)
        if step is None:
            return Decision(False, "no_step", f"run {run_id} has no step {step_key}", run_id)
        if step["state"] != "interrupted":
            return Decision(False, "not_interrupted", f"step {step_key} is {step['state']}, not interrupted", run_id)
        try:
            loaded = self._runbook_for(run)
        except RunbookChanged as exc:
            return Decision(False, "runbook_changed", str(exc), run_id, next_action=("replan",))
        refused = self._authorise(run, loaded, user, front_end, f"resolve.{action}", step=step)
        if refused is not None:
            return refused
        if action == "retry":
            if not self.store.transition_step(run_id, step_key, ["interrupted"], "applying", actor=user,
                                              front_end=front_end, action="step.retry_after_interrupt",
                                              owner=self.owner, heartbeat_at=self.clock.now(),
                                              started_at=self.clock.now()):
                return Decision(False, "raced", "someone else decided first", run_id)
            self._submit(self._execute_then_drive, run_id, step_key)
            kind = kinds().get(step["kind"])
            caveat = "" if kind is not None and kind.idempotent else \
                " (its kind is not idempotent: if the first apply got through, this applies it twice)"
            return Decision(True, "retrying", f"re-applying {step_key} as {user} decided{caveat}", run_id)
        if action == "skip":
            if not self.store.transition_step(run_id, step_key, ["interrupted"], "skipped", actor=user,
                                              front_end=front_end, action="step.skipped_after_interrupt",
                                              finished_at=self.clock.now()):
                return Decision(False, "raced", "someone else decided first", run_id)
            self._kick(run_id)
            return Decision(True, "skipped", f"{step_key} skipped; the run goes on", run_id)
        if action == "verify":
            if not self.store.transition_step(run_id, step_key, ["interrupted"], "verifying", actor=user,
                                              front_end=front_end, action="step.verify_after_interrupt",
                                              owner=self.owner, heartbeat_at=self.clock.now()):
                return Decision(False, "raced", "someone else decided first", run_id)
            self._submit(self._verify_then_drive, run_id, step_key, user)
            return Decision(True, "verifying", f"verifying {step_key}", run_id)
        if action == "rollback":
            if not self.store.transition_step(run_id, step_key, ["interrupted"], "failed", actor=user,
                                              front_end=front_end, error=f"interrupted; {user} chose rollback",
                                              finished_at=self.clock.now()):
                return Decision(False, "raced", "someone else decided first", run_id)
            return self._begin_rollback(self.store.get_run(run_id), loaded, self.store.get_steps(run_id),
                                        actor=user, front_end=front_end,
                                        reason=f"{step_key} was interrupted; {user} chose rollback "
                                               "(it is undone too, from what it recorded before it stopped)")
        return Decision(False, "bad_action", "choose one of verify, retry, skip, rollback", run_id)

    def replan(self, run_id: str, *, user: str, front_end: str) -> Decision:
        """Accept the runbook as it now is on disk: re-plan every step that has not started."""
        run = self.store.find_run(run_id)
        if run is None:
            return Decision(False, "no_run", f"no run {run_id}")
        run_id = run["id"]
        try:
            loaded = load_runbook(run["runbook_path"])
        except RunbookInvalid as exc:
            return Decision(False, "runbook_invalid", f"the runbook now has errors:\n{exc}", run_id)
        if loaded.model.name != run["runbook"]:
            return Decision(False, "runbook_renamed", f"{run['runbook_path']} is now runbook "
                            f"{loaded.model.name!r}, not {run['runbook']!r}", run_id)
        steps = {s["key"]: s for s in self.store.get_steps(run_id)}
        forward = {s.id for s in loaded.model.steps}
        started = [k for k, s in steps.items() if s["phase"] == "forward"
                   and s["state"] not in st.STEP_NOT_STARTED]
        missing = [k for k in started if k not in forward]
        if missing:
            return Decision(False, "replan_conflict", f"steps already started are gone from the runbook: "
                            f"{', '.join(missing)}", run_id)
        with self.store.transaction() as conn:
            for key, step in steps.items():
                if step["phase"] == "forward" and step["state"] in ("planned", "awaiting_approval", "blocked"):
                    # Back to pending, keeping request_no: approvals of the old request never count again.
                    self.store.transition_step_in(conn, run_id, key, [step["state"]], "pending", actor=user,
                                                  front_end=front_end, action="step.replanned",
                                                  require_run_state=None)
            order = [s.id for s in loaded.model.steps]
            for key, step in steps.items():
                if step["phase"] == "forward" and key not in forward:
                    conn.execute("DELETE FROM steps WHERE run_id = ? AND key = ? AND state = 'pending'", (run_id, key))
            for i, spec in enumerate(loaded.model.steps):
                if spec.id in steps:
                    conn.execute("UPDATE steps SET idx = ?, kind = ? WHERE run_id = ? AND key = ? AND state = 'pending'",
                                 (i, spec.kind, run_id, spec.id))
                else:
                    self.store.insert_steps_in(conn, run_id, [{"key": spec.id, "step_id": spec.id, "idx": i,
                                                               "kind": spec.kind, "phase": "forward"}])
            conn.execute("UPDATE runs SET runbook_sha256 = ?, updated_at = ? WHERE id = ?",
                         (loaded.sha256, self.clock.now(), run_id))
            self.store.event_in(conn, run_id=run_id, action="run.replanned", actor=user, front_end=front_end,
                                detail={"old_sha256": run["runbook_sha256"], "new_sha256": loaded.sha256,
                                        "steps": order})
        self._runbooks[(run["runbook_path"], loaded.sha256)] = loaded
        self._kick(run_id)
        return Decision(True, "replanned", f"run {run_id} re-planned against the runbook as it is now", run_id)

    def reap(self) -> list[tuple[str, str]]:
        """Mark `interrupted` every applying/verifying step whose owner is gone; returns (run, step) pairs.

        Never takes a step from a provably alive owner (same host, same PID *and* start time):
        a live process whose step is slow is left alone however old its heartbeat. An owner on
        another host is judged by its heartbeat alone (STALE_AFTER_SECONDS without a beat).
        `serve` calls this periodically; `resume_all` once at start-up."""
        reaped = []
        now = self.clock.now()
        for row in self.store.busy_steps():
            alive = owner_alive(row.get("owner"))
            beat = row.get("heartbeat_at") or row.get("started_at") or 0
            if alive is True or (alive is None and now - beat < STALE_AFTER_SECONDS):
                continue
            kind = kinds().get(row["kind"])
            idempotent = bool(kind and kind.idempotent)
            offers = interrupted_offers(kind)
            if self.store.transition_step(
                row["run_id"], row["key"], [row["state"]], "interrupted", actor=ENGINE, front_end=ENGINE,
                action="step.interrupted",
                detail={"owner": row.get("owner"), "was": row["state"], "idempotent": idempotent,
                        "offers": offers, "why": "its process is gone" if alive is False
                        else f"no heartbeat for {_ago(now - beat)}"},
            ):
                reaped.append((row["run_id"], row["key"]))
                # Front ends show the decision controls (Slack: Verify/Retry/Skip/Rollback buttons).
                self._tell(row["run_id"], ("step_finished", row["key"]), ("run_updated", None))
        return reaped

    def resume_all(self) -> list[str]:
        """On start-up: reap steps whose process died, then drive every active run."""
        self.reap()
        resumed = []
        for run in self.store.list_runs(states=ACTIVE_RUN, limit=10_000):
            try:
                self._runbook_for(run)
            except RunbookChanged as exc:
                self._tell(run["id"], ("notify", None, str(exc), "error"))
                continue
            resumed.append(run["id"])
            self._kick(run["id"])
        return resumed

    def start_reaper(self, every: float = HEARTBEAT_SECONDS) -> threading.Event:
        """Reap on a daemon thread every `every` seconds (for `serve`); set the returned event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                try:
                    self.reap()
                except Exception:  # a busy store must not end the reaper; it tries again next period
                    log.error("reaper failed:\n%s", secret_values.redact(traceback.format_exc()))

        threading.Thread(target=loop, name="runbook-reaper", daemon=True).start()
        return stop

    def view(self, run_id: str) -> RunView:
        run = self.store.find_run(run_id)
        if run is None:
            raise KeyError(run_id)
        loaded = self._runbook_quiet(run)
        rows, mark = self._rows.get_marked(run["id"])
        key = (run["id"], run["runbook_sha256"])
        old_mark, steps = self._views.get(key, (None, []))
        changed = self._rows.keys_between(run["id"], old_mark, mark)
        if changed is None or len(steps) != len(rows):
            steps = [self._build_step_view(loaded, run, row, rows) for row in rows]
        elif changed:
            rebuild = {self._position(run["id"], k) for k in set(changed)}
            if any(rows[i]["phase"] == "rollback" for i in rebuild):  # undo rows share one approval
                for i in range(len(rows) - 1, -1, -1):  # they sort last (idx >= 1000)
                    if rows[i]["phase"] != "rollback":
                        break
                    rebuild.add(i)
            steps = list(steps)  # views already handed to a channel stay as they were
            for i in rebuild:
                steps[i] = self._build_step_view(loaded, run, rows[i], rows)
        self._views[key] = (mark, steps)
        return RunView(id=run["id"], runbook=run["runbook"], state=run["state"], params=run["params"],
                       started_by=run["started_by"], front_end=run["front_end"], created_at=run["created_at"],
                       updated_at=run["updated_at"], steps=steps, chat=run["chat"], error=run["error"],
                       dry_run=run["dry_run"])

    def _position(self, run_id: str, key: str) -> int:
        return self._rows._entries[run_id].position[key]

    def _build_step_view(self, loaded: LoadedRunbook | None, run: dict[str, Any], row: dict[str, Any],
                   rows: list[dict[str, Any]]) -> StepView:
        policy, needs = None, False
        if loaded is not None:
            eff = self._effective(loaded, run, row, rows)
            if eff is not None:
                needs = True
                policy = self._policy_dict(eff.policy, loaded, run)
                policy["covers"] = eff.covers
        approvals = self.store.approvals(run["id"], row["key"], row["request_no"]) if row["request_no"] else []
        return StepView(
            run_id=run["id"], key=row["key"], step_id=row["step_id"], kind=row["kind"], phase=row["phase"],
            state=row["state"], index=row["idx"], plan=row["plan"], result=row["result"],
            verification=row["verification"], error=row["error"],
            approvals=[{"approver": a["approver"], "decision": a["decision"], "at": a["at"],
                        "reason": a["reason"], "front_end": a["front_end"]} for a in approvals],
            needs_approval=needs, approval_policy=policy, requested_at=row["requested_at"],
            started_at=row["started_at"], finished_at=row["finished_at"], plan_digest=plan_digest_of(row),
            offers=interrupted_offers(kinds().get(row["kind"])) if row["state"] == "interrupted" else [],
            progress=row.get("progress"),
        )

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Tests and the console: wait until no background work is queued or running."""
        if self.executor is None:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.executor._work_queue.qsize() == 0 and all(not l.locked() for l in list(self._drive_locks.values())):
                time.sleep(0.05)
                if self.executor._work_queue.qsize() == 0 and all(
                        not l.locked() for l in list(self._drive_locks.values())):
                    return
            time.sleep(0.02)

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=False)

    # ------------------------------------------------------------------------------------------
    # Loading, params, targets, rendering.
    # ------------------------------------------------------------------------------------------

    def _coerce_params(self, loaded: LoadedRunbook, params: dict[str, Any]) -> dict[str, Any]:
        spec = loaded.model.params
        unknown = sorted(set(params) - set(spec))
        problems = [f"unknown parameter {name!r} (this runbook takes: {', '.join(spec) or 'none'})"
                    for name in unknown]
        typed: dict[str, Any] = {}
        for name, param in spec.items():
            if name in params:
                try:
                    typed[name] = param.coerce(params[name])
                except ValueError as exc:
                    problems.append(f"parameter {name}: {exc}")
            elif param.default is not None:
                typed[name] = param.coerce(param.default)
            elif param.is_required:
                problems.append(f"parameter {name} is required ({param.type}"
                                + (f": {', '.join(param.choices or [])}" if param.choices else "") + ")")
        if problems:
            raise StartRefused("; ".join(problems))
        return typed

    def _targets(self, loaded: LoadedRunbook, params: dict[str, Any]) -> dict[str, Any]:
        ctx = TemplateContext(params=params, targets={}, env=env_values(loaded.model.env), outputs={})
        out = {}
        for name, raw in loaded.model.targets.items():
            try:
                out[name] = parse_target(render_value(raw, ctx))
            except (TemplateNameError, TemplateSyntaxProblem) as exc:
                raise StartRefused(f"targets.{name}: {exc}") from None
            except ValidationError as exc:
                first = exc.errors()[0]
                raise StartRefused(f"targets.{name}.{format_path(first['loc'])}: {first['msg']}") from None
        return out

    def _rendered_targets(self, loaded: LoadedRunbook, params: dict[str, Any]) -> dict[str, Any]:
        """Targets rendered once at start, as stored with the run (the store masks secret values)."""
        ctx = TemplateContext(params=params, targets={}, env=env_values(loaded.model.env), outputs={})
        return {name: render_value(raw, ctx) for name, raw in loaded.model.targets.items()}

    def _run_targets(self, loaded: LoadedRunbook, run: dict[str, Any], *, parsed: bool = True) -> dict[str, Any]:
        """The resources the run acts on, as rendered when it started, so a resume or a rollback in
        another process (another environment) acts on the same ones. A target holding a secret was
        stored masked: only that one is rendered again from the environment, at use."""
        stored = run.get("targets")
        if stored is None:  # a run from before targets were stored
            return self._targets(loaded, run["params"]) if parsed else self._rendered_targets(loaded, run["params"])
        out: dict[str, Any] = {}
        for name, raw in loaded.model.targets.items():
            value = stored.get(name)
            if value is None or secret_values.MASK in json.dumps(value):
                ctx = TemplateContext(params=run["params"], targets={}, env=env_values(loaded.model.env), outputs={})
                try:
                    value = render_value(raw, ctx)
                except (TemplateNameError, TemplateSyntaxProblem) as exc:
                    raise StepError(f"targets.{name}: {exc}") from None
            if parsed:
                try:
                    value = parse_target(value)
                except ValidationError as exc:
                    first = exc.errors()[0]
                    raise StepError(f"targets.{name}.{format_path(first['loc'])}: {first['msg']}") from None
            out[name] = value
        return out

    @staticmethod
    def _lock_keys(loaded: LoadedRunbook, params: dict[str, Any], targets: dict[str, Any]) -> list[str]:
        """One lock per environment the run points at; a runbook with no targets locks on its params."""
        if targets:
            return sorted({t.lock_key() for t in targets.values()})
        shown = json.dumps(params, sort_keys=True)
        if secret_values.redact(shown) != shown:
            # A secret among the params must not sit in the locks table (or a "held by" message); a
            # plain digest keeps the key equal for equal params on every replica (unlike a fingerprint,
            # whose key is per state folder).
            shown = "sha256:" + hashlib.sha256(shown.encode()).hexdigest()
        return [f"runbook:{loaded.model.name}:{shown}"]

    def _runbook_for(self, run: dict[str, Any]) -> LoadedRunbook:
        """The run's runbook as it was when the run started; RunbookChanged when the file differs."""
        key = (run["runbook_path"], run["runbook_sha256"])
        cached = self._runbooks.get(key)
        path = Path(run["runbook_path"])
        try:
            digest = self._file_digest(path)
        except FileNotFoundError:
            raise RunbookChanged(f"run {run['id']}: its runbook {path} is gone; refusing to go on") from None
        if digest != run["runbook_sha256"]:
            raise RunbookChanged(
                f"run {run['id']}: {path} changed on disk since the run started (sha256 {run['runbook_sha256'][:12]} "
                f"-> {digest[:12]}); refusing to go on. Re-plan it explicitly or abort it."
            )
        if cached is None:
            try:
                cached = load_runbook(path)
            except RunbookInvalid as exc:
                raise RunbookChanged(f"run {run['id']}: its runbook no longer loads:\n{exc}") from None
            self._runbooks[key] = cached
        return cached

    def _file_digest(self, path: Path) -> str:
        """SHA-256 of the file, re-read only when its identity or change time moved.

        Every move of a run checks its runbook on disk; hashing the whole file each time made the cost
        per step grow with the runbook. Any write to the file moves `st_ctime_ns`, which no tool can set
        back (unlike the modification time), so an unchanged stat means unchanged content.
        """
        st = path.stat()
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        known = self._digests.get(str(path))
        if known is not None and known[0] == stamp:
            return known[1]
        # as the loader hashes it: the text (universal newlines), UTF-8 encoded
        digest = hashlib.sha256(path.read_text(encoding="utf-8").encode()).hexdigest()
        self._digests[str(path)] = (stamp, digest)
        return digest

    def _runbook_quiet(self, run: dict[str, Any]) -> LoadedRunbook | None:
        try:
            return self._runbook_for(run)
        except RunbookChanged:
            return None

    def _effective(self, loaded: LoadedRunbook, run: dict[str, Any], row: dict[str, Any],
                   rows: list[dict[str, Any]] | None = None) -> EffectivePolicy | None:
        """The approval this row needs (None: none), a whole rollback's one approval included."""
        round_started = None
        if row["phase"] == "rollback" and loaded.model.rollback_approval == "once":
            rows = rows if rows is not None else self._rows.get(run["id"])
            round_started = self.store.last_event_at(run["id"], "run.rolling_back")
        return effective_policy(loaded.model, row, rows or [], kinds(), round_started)

    def _spec_for(self, loaded: LoadedRunbook, row: dict[str, Any]) -> Step | RollbackSpec | None:
        """The runbook entry a step row runs: a step, a step's explicit rollback, or a kind's own undo."""
        return spec_for(loaded.model, row)

    def _template_ctx(self, loaded: LoadedRunbook, run: dict[str, Any],
                      steps: list[dict[str, Any]] | None = None) -> TemplateContext:
        params = run["params"]
        base = TemplateContext(params=params, targets={}, env=env_values(loaded.model.env), outputs={})
        targets = self._run_targets(loaded, run, parsed=False)
        if steps is None:
            outputs = self._rows.outputs(run["id"])
        else:
            outputs = {row["step_id"]: row["result"].get("outputs", {}) for row in steps
                       if row["phase"] == "forward" and row["state"] in ("succeeded", "rolled_back") and row["result"]}
        return TemplateContext(params=params, targets=targets, env=base.env, outputs=outputs)

    def _policy_dict(self, policy: ApprovalPolicy, loaded: LoadedRunbook, run: dict[str, Any]) -> dict[str, Any]:
        data = policy.model_dump()
        if policy.confirm_text:
            try:
                data["confirm_text"] = render_string(policy.confirm_text, self._template_ctx(loaded, run))
            except (TemplateNameError, TemplateSyntaxProblem, StepError):
                data["confirm_text"] = policy.confirm_text
        return data

    def _inputs(self, kind: StepKind, raw: dict[str, Any], tctx: TemplateContext) -> Any:
        try:
            rendered = render_value(raw, tctx)
        except (TemplateNameError, TemplateSyntaxProblem) as exc:
            raise StepError(f"with: {exc}") from None
        try:
            return kind.Inputs.model_validate(rendered)
        except ValidationError as exc:
            problems = "; ".join(f"with.{format_path(e['loc'])}: {e['msg']}" for e in exc.errors())
            raise StepError(f"inputs are not valid once rendered: {problems}") from None

    # ------------------------------------------------------------------------------------------
    # Driving.
    # ------------------------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self.executor is None:
            fn(*args)
        else:
            self.executor.submit(self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # a background task must leave a trace, never die silently
            log.error("engine task %s failed:\n%s", fn.__name__, secret_values.redact(traceback.format_exc()))

    def _kick(self, run_id: str) -> None:
        self._submit(self._drive, run_id)

    def _drive_lock(self, run_id: str) -> threading.Lock:
        with self._guard:
            return self._drive_locks.setdefault(run_id, threading.Lock())

    def _drive(self, run_id: str) -> None:
        """Move the run forward until it needs a person or ends. One driver per run per process."""
        lock = self._drive_lock(run_id)
        if not lock.acquire(blocking=False):
            return  # another thread is driving it and will see whatever changed
        try:
            while self._drive_once(run_id):
                pass
        finally:
            lock.release()

    def _drive_once(self, run_id: str) -> bool:
        """One move; True when there may be more to do right away."""
        run = self.store.get_run(run_id)
        if run is None or run["state"] not in ACTIVE_RUN:
            return False
        try:
            loaded = self._runbook_for(run)
        except RunbookChanged as exc:
            self._tell(run_id, ("notify", None, str(exc), "error"))
            self.store.add_event(run_id, "run.resume_refused", actor=ENGINE, front_end=ENGINE,
                                 detail={"reason": str(exc)})
            return False
        steps = self._rows.get(run_id)
        current = next((s for s in steps if s["state"] not in TERMINAL_STEP), None)
        if current is None:
            self._finish(run, loaded, steps)
            return False
        state = current["state"]
        if state == "pending":
            return self._plan_step(run, loaded, current)
        if state == "planned":
            return self._after_plan(run, loaded, current)
        return False  # awaiting_approval, applying, verifying, interrupted: someone else moves it

    def _finish(self, run: dict[str, Any], loaded: LoadedRunbook | None,
                steps: list[dict[str, Any]] | None = None) -> None:
        """End a run that has nothing left to do, in the state that is true of it."""
        steps = steps if steps is not None else self.store.get_steps(run["id"])
        error, detail = None, None
        if run["state"] == RunState.RUNNING:
            failed = [s for s in steps if s["state"] == "failed"]
            to = RunState.COMPLETED_WITH_FAILURES if failed else RunState.SUCCEEDED
            if failed:
                detail = {"failed": [s["key"] for s in failed]}
                error = f"{len(failed)} step(s) failed: " + "; ".join(f"{s['key']}: {s['error']}" for s in failed)
        elif run["state"] == RunState.ROLLING_BACK:
            steps = self.store.get_steps(run["id"])  # once per run: every column fresh (apply_started)
            to, error = rollback_outcome(steps, loaded.model if loaded else None, kinds())
        else:
            return
        if self.store.transition_run(run["id"], [run["state"]], to, actor=ENGINE, front_end=ENGINE,
                                     error=error, detail=detail, release_locks=True):
            if to == RunState.ROLLBACK_INCOMPLETE:
                self._tell(run["id"], ("notify", None, error, "error"))
            self._tell(run["id"], ("run_finished", None))

    def _kind_and_inputs(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any]):
        spec = self._spec_for(loaded, row)
        if spec is None:
            raise StepError(f"step {row['step_id']} is not in the runbook")
        kind = kinds()[spec.kind]()
        tctx = self._template_ctx(loaded, run)
        inputs = self._inputs(kind, spec.with_, tctx)
        return spec, kind, inputs

    def _original(self, run_id: str, row: dict[str, Any]) -> dict[str, Any] | None:
        if row["key"].startswith(UNDO_PREFIX):
            return self.store.get_step(run_id, row["step_id"])
        return None

    def _plan_step(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any]) -> bool:
        run_id, key = run["id"], row["key"]
        try:
            plan = self._plan_of(run, loaded, row)
            if row["phase"] == "rollback":
                plan = self._whole_rollback_plan(run, loaded, row, plan)
        except PlanRefused as exc:
            return self._block(run_id, key, ["pending"], self._describe(exc))
        except Exception as exc:  # noqa: BLE001 -- recorded as the step's failure with its type
            return self._fail(run, loaded, row, self._describe(exc), from_states=["pending"])
        if not self.store.transition_step(run_id, key, ["pending"], "planned", actor=ENGINE, front_end=ENGINE,
                                          plan=plan.model_dump()):
            return True  # someone else planned it; look again
        self._tell(run_id, ("run_updated", None), ("post_plan", key))
        if plan.blocking:
            if self._is_check(loaded, row):
                # A read-only check (env.diff, storage.parity) that found problems has failed: its findings
                # are the result, and its `on_failure` decides what happens next. Only a step that would
                # change something is *blocked* by a refusing plan, waiting for a re-plan.
                return self._fail(run, loaded, self.store.get_step(run_id, key),
                                  "the check found problems: " + "; ".join(plan.blocking), from_states=["planned"])
            return self._block(run_id, key, ["planned"], "; ".join(plan.blocking))
        return True

    def _is_check(self, loaded: LoadedRunbook, row: dict[str, Any]) -> bool:
        spec = self._spec_for(loaded, row)
        kind = kinds().get(spec.kind) if spec is not None else None
        return kind is not None and not kind.mutating and row["phase"] != "rollback"

    def _plan_of(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any]) -> Plan:
        spec, kind, inputs = self._kind_and_inputs(run, loaded, row)
        ctx = self._ctx(run, loaded, row)
        original = self._original(run["id"], row)
        if original is not None and not isinstance(spec, RollbackSpec):
            return kind.plan_rollback(ctx, inputs, undo_source(original))
        return kind.plan(ctx, inputs)

    def _whole_rollback_plan(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any],
                             plan: Plan) -> Plan:
        """The first undo step of a rollback approved as one decision shows the whole reverse plan."""
        eff = self._effective(loaded, run, row)
        if eff is None or len(eff.covers) < 2:
            return plan
        rows = {r["key"]: r for r in self._rows.get(run["id"])}
        lines = [["step", "plan"], [row["key"], plan.summary]]
        for key in eff.covers[1:]:
            try:
                lines.append([key, self._plan_of(run, loaded, rows[key]).summary])
            except Exception as exc:  # noqa: BLE001 -- shown; that step plans again (and may fail) when reached
                lines.append([key, f"could not plan yet: {self._describe(exc)}"])
        return plan.model_copy(update={
            "summary": f"Roll back {len(eff.covers)} steps with one approval, in this order: "
                       + "; ".join(f"{k}: {s}" for k, s in lines[1:]),
            "table": lines})

    def _block(self, run_id: str, key: str, from_states: list[str], reason: str) -> bool:
        """A refusing plan blocks its step: not a failure (nothing is undone), the run waits for a re-plan.
        A dry run waits for nobody: there the refusal is the step's failure (and the exit code's)."""
        run = self.store.get_run(run_id)
        if run is not None and run["dry_run"]:
            return self._fail(run, self._runbook_quiet(run), self.store.get_step(run_id, key),
                              f"the plan refused: {reason}", from_states=from_states)
        if self.store.transition_step(run_id, key, from_states, "blocked", actor=ENGINE, front_end=ENGINE,
                                      error=f"the plan refused: {reason}",
                                      detail={"next": "re-plan the run once the reason is gone"}):
            self._tell(run_id, ("step_finished", key), ("run_updated", None))
        return False

    def _after_plan(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any]) -> bool:
        run_id, key = run["id"], row["key"]
        if run["dry_run"]:
            self.store.transition_step(run_id, key, ["planned"], "skipped", actor=ENGINE, front_end=ENGINE,
                                       action="step.dry_run", finished_at=self.clock.now())
            return True
        eff = self._effective(loaded, run, row)
        policy = eff.policy if eff is not None else None
        if policy is None:
            if self.store.transition_step(run_id, key, ["planned"], "applying", actor=ENGINE, front_end=ENGINE,
                                          action="step.applying", owner=self.owner,
                                          heartbeat_at=self.clock.now(), started_at=self.clock.now(),
                                          detail={"approval": "not required"}):
                self._execute(run_id, key)
            return True
        if self.store.transition_step(run_id, key, ["planned"], "awaiting_approval", actor=ENGINE,
                                      front_end=ENGINE, requested_at=self.clock.now(),
                                      request_no=(row["request_no"] or 0) + 1,
                                      detail={"approvers": policy.approvers, "min": policy.min,
                                              "covers": eff.covers}):
            self._tell(run_id, ("run_updated", None), ("request_approval", key))
        return False

    def _ctx(self, run: dict[str, Any], loaded: LoadedRunbook, row: dict[str, Any],
             timeout: float | None = None) -> StepContext:
        run_id, key = run["id"], row["key"]
        tctx = self._template_ctx(loaded, run)
        targets = self._run_targets(loaded, run)
        cancel = self._cancel_event(run_id)
        last_check = [0.0]
        last_progress = [0.0]

        def is_cancelled() -> bool:
            if cancel.is_set():
                return True
            now = time.monotonic()
            if now - last_check[0] > 1.0:  # another process may have aborted the run
                last_check[0] = now
                current = self.store.get_run(run_id)
                if current is None or current["state"] not in ACTIVE_RUN:
                    cancel.set()
                    return True
            return False

        phase_state: dict[str, Any] = {"name": None, "since": time.monotonic(), "from": 0.0, "done": []}

        def on_progress(done: float, total: float | None, message: str, unit: str, phase: str = "") -> None:
            now = time.monotonic()
            final = total is not None and done >= total
            if phase_state["name"] != phase:  # a new phase: reported at once, rate measured afresh
                if phase_state["name"] is not None:
                    phase_state["done"].append({"name": phase_state["name"],
                                                "seconds": round(now - phase_state["since"], 1)})
                phase_state.update(name=phase, since=now, **{"from": done})
            elif now - last_progress[0] < self.progress_interval and not final:
                return
            last_progress[0] = now
            in_phase = now - phase_state["since"]
            moved = done - phase_state["from"]
            rate = moved / in_phase if in_phase > 0.5 and moved > 0 else None
            eta = (total - done) / rate if rate and total is not None and total > done else None
            progress = Progress(done=done, total=total, message=secret_values.redact(message), unit=unit,
                                rate=rate, eta_seconds=eta, phase=phase, phase_seconds=round(in_phase, 1),
                                phases=list(phase_state["done"]))
            try:  # the record every front end and `status` read; a busy store must not stop the step
                self.store.set_progress(run_id, key, {**asdict(progress), "at": self.clock.now()})
            except StoreFault as exc:
                log.warning("progress of %s not recorded: %s", key, exc)
            self._tell(run_id, ("report_progress", key, progress))

        def on_log(message: str) -> None:
            self.store.add_event(run_id, "step.log", actor=ENGINE, front_end=ENGINE, step_key=key,
                                 detail={"message": message})

        def history() -> list[StepRecord]:
            return [StepRecord(step_id=s["step_id"], kind=s["kind"], state=s["state"], plan=s["plan"],
                               result=s["result"], finished_at=s["finished_at"])
                    for s in self._rows.get(run_id) if s["key"] != key]

        deadline = self.clock.now() + timeout if timeout else None
        return StepContext(run_id=run_id, step_id=row["step_id"], runbook_name=loaded.model.name,
                           params=run["params"], targets=targets, outputs=dict(tctx.outputs), clock=self.clock,
                           deadline=deadline, is_cancelled=is_cancelled, on_progress=on_progress, on_log=on_log,
                           history_fn=history, store=self.store, started_at=row.get("started_at"),
                           on_undo=lambda data: self.store.record_undo(run_id, key, data))

    def _execute_then_drive(self, run_id: str, key: str) -> None:
        self._execute(run_id, key)
        self._drive(run_id)

    def _execute(self, run_id: str, key: str) -> None:
        """Apply then verify a step this process has just moved to `applying` (the CAS winner only).

        The engine's heartbeat thread beats for the whole call, whatever the step's code is doing."""
        with self._beats.beating(run_id, key):
            self._execute_beating(run_id, key)

    def _execute_beating(self, run_id: str, key: str) -> None:
        run = self.store.get_run(run_id)
        row = self.store.get_step(run_id, key)
        try:
            loaded = self._runbook_for(run)
        except RunbookChanged as exc:
            self._fail(run, None, row, str(exc), from_states=["applying"])
            return
        self._tell(run_id, ("run_updated", None))
        try:
            spec, kind, inputs = self._kind_and_inputs(run, loaded, row)
            ctx = self._ctx(run, loaded, row, timeout=spec.timeout)
        except StepError as exc:
            self._fail(run, loaded, row, str(exc), from_states=["applying"])
            return
        retries = spec.retries if isinstance(spec, Step) else None
        attempts = retries.attempts if retries else 1
        plan = Plan.model_validate(row["plan"] or {"summary": ""})
        original = self._original(run_id, row)
        undo_of = None
        if original is not None and not isinstance(spec, RollbackSpec):
            undo_of = undo_source(original)

        result: Result | None = None
        self.store.mark_apply_started(run_id, key)
        for attempt in range(1, attempts + 1):
            try:
                ctx.check_cancelled()
                result = kind.rollback(ctx, inputs, undo_of) if undo_of is not None else kind.apply(ctx, inputs, plan)
                if not isinstance(result, Result):
                    raise TypeError(f"{kind.name}.apply returned {type(result).__name__}, not Result")
                if undo_of is None and kind.Outputs is not None:
                    kind.Outputs.model_validate(result.outputs)
                break
            except PlanRefused as exc:
                if not (self.store.get_step(run_id, key) or {}).get("undo"):  # refused before changing anything
                    self._block(run_id, key, ["applying"], self._describe(exc))
                    return
                self._fail(run, loaded, self.store.get_step(run_id, key), self._describe(exc),
                           from_states=["applying"], require_run_state=None, detail={"attempts": attempt})
                return
            except Exception as exc:  # noqa: BLE001 -- classified below; never swallowed
                retryable = not isinstance(exc, Cancelled) and (
                    (not kind.mutating and not isinstance(exc, (TypeError, ValidationError)))
                    or (isinstance(exc, PlatformError) and exc.retryable))
                if attempt < attempts and retryable:
                    delay = retries.delay(attempt) if retries else 0
                    self.store.add_event(run_id, "step.retry", actor=ENGINE, front_end=ENGINE, step_key=key,
                                         detail={"attempt": attempt, "error": self._describe(exc),
                                                 "next_in_seconds": delay})
                    try:
                        ctx.sleep(delay)
                    except Cancelled as cancelled:
                        self._fail(run, loaded, self.store.get_step(run_id, key), str(cancelled),
                                   from_states=["applying"], require_run_state=None)
                        return
                    continue
                # Recorded even when the run was aborted meanwhile: the step must not stay `applying`.
                self._fail(run, loaded, self.store.get_step(run_id, key), self._describe(exc),
                           from_states=["applying"], require_run_state=None, detail={"attempts": attempt})
                return
        assert result is not None
        if result.undo:
            self.store.record_undo(run_id, key, result.undo)  # the way back, whatever happens next
        if not self.store.transition_step(run_id, key, ["applying"], "verifying", actor=ENGINE, front_end=ENGINE,
                                          result=result.model_dump(), attempt=attempt,
                                          require_run_state=None):
            self._orphaned(run_id, key, result)
            return
        self._verify(run, loaded, key, kind, inputs, result, undo_of, ctx, attempts)

    def _orphaned(self, run_id: str, key: str, result: Result) -> None:
        """The apply finished but the step was no longer ours to move (another process marked it
        interrupted, or a person decided it meanwhile). Keep what it did and say so loudly."""
        now = self.store.get_step(run_id, key) or {}
        message = (f"{key} finished applying ({result.summary}) after it had been moved to {now.get('state')!r} "
                   "by someone else; its result and undo data are kept in the audit log and the step's row")
        self.store.add_event(run_id, "step.result_orphaned", actor=ENGINE, front_end=ENGINE, step_key=key,
                             detail={"result": result.model_dump(), "state_now": now.get("state")})
        log.error(message)
        self._tell(run_id, ("notify", None, message, "error"))

    def _verify(self, run: dict[str, Any], loaded: LoadedRunbook, key: str, kind: StepKind, inputs: Any,
                result: Result, undo_of: Result | None, ctx: StepContext, attempts: int) -> None:
        run_id = run["id"]
        spec = self._spec_for(loaded, self.store.get_step(run_id, key))
        retries = spec.retries if isinstance(spec, Step) else None
        verification: Verification | None = None
        for attempt in range(1, attempts + 1):
            try:
                ctx.check_cancelled()
                verification = (kind.verify_rollback(ctx, inputs, undo_of, result) if undo_of is not None
                                else kind.verify(ctx, inputs, result))
            except Exception as exc:  # noqa: BLE001 -- recorded as the verification's failure
                verification = Verification(ok=False, summary=self._describe(exc))
                if isinstance(exc, Cancelled):
                    break
            if verification is None or verification.ok:
                break
            if attempt < attempts:
                try:
                    ctx.sleep(retries.delay(attempt) if retries else 0)
                except Cancelled:
                    break
        if verification is not None and not verification.ok:
            self._fail(run, loaded, self.store.get_step(run_id, key), f"verification failed: {verification.summary}",
                       from_states=["verifying"], verification=verification.model_dump(), require_run_state=None)
            return
        if self.store.transition_step(run_id, key, ["verifying"], "succeeded", actor=ENGINE, front_end=ENGINE,
                                      verification=verification.model_dump() if verification else None,
                                      finished_at=self.clock.now(), require_run_state=None):
            row = self.store.get_step(run_id, key)
            if undo_of is not None or key.startswith(UNDO_PREFIX):
                self.store.transition_step(run_id, row["step_id"], ["succeeded", "failed"], "rolled_back",
                                           actor=ENGINE, front_end=ENGINE, require_run_state=None)
            self._tell(run_id, ("step_finished", key), ("run_updated", None))

    def _verify_then_drive(self, run_id: str, key: str, user: str) -> None:
        run = self.store.get_run(run_id)
        loaded = self._runbook_for(run)
        row = self.store.get_step(run_id, key)
        try:
            spec, kind, inputs = self._kind_and_inputs(run, loaded, row)
        except StepError as exc:
            self._fail(run, loaded, row, str(exc), from_states=["verifying"])
            return
        result = Result.model_validate(row["result"] or {"summary": f"marked as applied by {user}"})
        self._verify(run, loaded, key, kind, inputs, result, None, self._ctx(run, loaded, row), 1)
        self._drive(run_id)

    # ------------------------------------------------------------------------------------------
    # Approvals.
    # ------------------------------------------------------------------------------------------

    def _decide(self, run_id: str, key: str, *, user: str, front_end: str, approve: bool,
                confirm: str | None = None, reason: str = "", plan_digest: str | None = None,
                precheck: bool = False) -> Decision:
        run = self.store.find_run(run_id)
        if run is None:
            return Decision(False, "no_run", f"no run {run_id}")
        run_id = run["id"]
        row = self.store.get_step(run_id, key)
        if row is None:
            return Decision(False, "no_step", f"run {run_id} has no step {key}", run_id)
        try:
            loaded = self._runbook_for(run)
        except RunbookChanged as exc:
            self.store.add_event(run_id, "approval.refused", actor=user, front_end=front_end, step_key=key,
                                 detail={"code": "runbook_changed"})
            return Decision(False, "runbook_changed", str(exc), run_id, next_action=("replan",))
        eff = self._effective(loaded, run, row)
        if eff is None:
            return Decision(False, "no_approval_needed", f"{key} needs no approval", run_id)
        policy = eff.policy

        def refuse(code: str, message: str) -> Decision:
            self.store.add_event(run_id, "approval.refused", actor=user, front_end=front_end, step_key=key,
                                 detail={"code": code, "message": message})
            return Decision(False, code, message, run_id)

        if row["state"] != "awaiting_approval":
            return self._already(run_id, row, user, front_end)
        if plan_digest is not None and plan_digest != plan_digest_of(row):
            summary = (row["plan"] or {}).get("summary", "")
            return refuse("plan_changed", f"{key} was re-planned after you saw it; nothing was approved. "
                          f"The plan now is: {summary}")
        if approve:
            if not eff.allows(user, self._matches):
                return refuse("not_allowed", f"{user} is not an approver of {key} "
                              f"(approvers: {', '.join(policy.approvers)})")
            if user == run["started_by"] and not policy.allow_self:
                return refuse("self_approval", f"{user} started this run and the runbook does not allow "
                              "self-approval; another approver must approve")
            if policy.expires_after and row["requested_at"] and \
                    self.clock.now() - row["requested_at"] > policy.expires_after:
                decision = refuse("expired", f"the approval request for {key} expired "
                                  f"{_ago(self.clock.now() - row['requested_at'] - policy.expires_after)} ago; "
                                  "re-plan the run to get a fresh plan")
                decision.next_action = ("replan",)
                return decision
            if precheck:
                return Decision(True, "may_approve", f"{user} may approve {key}", run_id)
            if policy.confirm_text:
                expected = self._policy_dict(policy, loaded, run)["confirm_text"]
                # A confirm text rendered from a secret is never echoed back.
                shown = repr(expected) if secret_values.redact(expected) == expected else "the confirmation text"
                if confirm is None:
                    return Decision(False, "confirm_required", f"type {shown} to approve {key}", run_id)
                if confirm.strip() != expected:
                    return refuse("confirm_mismatch", f"that is not it: type {shown} exactly to approve")
        else:
            if not any(self._matches(user, a) for a in policy.approvers) and user != run["started_by"]:
                return refuse("not_allowed", f"{user} may not reject {key}: only its approvers or the "
                              "person who started the run may")

        won = False
        still = 0
        with self.store.transaction() as conn:
            current = conn.execute("SELECT state, request_no FROM steps WHERE run_id = ? AND key = ?",
                                   (run_id, key)).fetchone()
            if current["state"] != "awaiting_approval":
                decided = None
            else:
                request_no = current["request_no"]
                inserted = self.store.insert_approval(conn, run_id=run_id, key=key, request_no=request_no,
                                                      approver=user, decision="approve" if approve else "reject",
                                                      reason=reason or None, front_end=front_end)
                if not inserted:
                    decided = "duplicate"
                else:
                    decided = "recorded"
                    self.store.event_in(conn, run_id=run_id, step_key=key, actor=user, front_end=front_end,
                                        action="approval.granted" if approve else "approval.rejected",
                                        detail={"request_no": request_no, "reason": reason or None})
                    if approve:
                        names = [r[0] for r in conn.execute(
                            "SELECT approver FROM approvals WHERE run_id = ? AND step_key = ? AND request_no = ?"
                            " AND decision = 'approve'", (run_id, key, request_no))]
                        count = len(names)
                        if eff.satisfied(names, self._matches):
                            won = self.store.transition_step_in(
                                conn, run_id, key, ["awaiting_approval"], "applying", actor=user,
                                front_end=front_end, action="step.approved", owner=self.owner,
                                heartbeat_at=self.clock.now(), started_at=self.clock.now(),
                                detail={"approvals": count, "min": policy.min})
                        else:
                            still = eff.missing(names, self._matches)
                    else:
                        self.store.transition_step_in(
                            conn, run_id, key, ["awaiting_approval"], "failed", actor=user, front_end=front_end,
                            action="step.rejected", error=f"rejected by {user}" + (f": {reason}" if reason else ""),
                            finished_at=self.clock.now())
        if decided is None:
            return self._already(run_id, self.store.get_step(run_id, key), user, front_end)
        if decided == "duplicate":
            return Decision(False, "already_decided", f"you already decided on {key}", run_id)
        self._tell(run_id, ("approval_recorded", key,
                            {"user": user, "decision": "approve" if approve else "reject", "reason": reason}))
        if not approve:
            self._after_failure(self.store.get_run(run_id), loaded, self.store.get_step(run_id, key))
            return Decision(True, "rejected", f"{key} rejected by {user}", run_id)
        if won:
            self._submit(self._execute_then_drive, run_id, key)
            return Decision(True, "approved", f"{key} approved by {user}; applying", run_id)
        return Decision(True, "waiting_more", f"approval recorded; {still} more needed", run_id)

    def _authorise(self, run: dict[str, Any], loaded: LoadedRunbook | None, user: str, front_end: str,
                   action: str, *, step: dict[str, Any] | None = None) -> Decision | None:
        """None when `user` may take `action`; else a refusal, audited.

        Deciding an interrupted step (retry re-applies it) takes an approver of that step, and
        the starter only where the step allows self-approval. Abort and rollback take an approver
        of any of the run's steps, or the person who started the run (each undo step is still
        approved as usual)."""
        if loaded is None:
            return None  # the runbook cannot be read; the action itself refuses with the reason
        registry = kinds()
        if step is not None:
            spec = self._spec_for(loaded, step)
            specs = [spec] if spec is not None else []
        else:
            specs = list(loaded.model.steps)
        policies = [p for p in (loaded.model.policy_for(s, mutating=bool(registry.get(s.kind) and
                                                                           registry[s.kind].mutating))
                                for s in specs) if p is not None]
        if not policies:
            return None
        allowed = any(self._matches(user, a) for p in policies for a in p.approvers)
        if user == run["started_by"]:
            allowed = True if step is None else allowed and all(p.allow_self for p in policies)
        if allowed:
            return None
        approvers = sorted({a for p in policies for a in p.approvers})
        message = (f"{user} may not {action.replace('resolve.', '')} "
                   f"{step['key'] if step else 'run ' + run['id']}: "
                   f"only its approvers ({', '.join(approvers) or 'none listed'})"
                   + ("" if step is not None else " or the person who started the run") + " may")
        self.store.add_event(run["id"], f"{action.split('.')[0]}.refused", actor=user, front_end=front_end,
                             step_key=step["key"] if step else None,
                             detail={"code": "not_allowed", "action": action, "message": message})
        return Decision(False, "not_allowed", message, run["id"])

    def _already(self, run_id: str, row: dict[str, Any], user: str, front_end: str) -> Decision:
        approvals = self.store.approvals(run_id, row["key"], row["request_no"]) if row["request_no"] else []
        approvers = [a for a in approvals if a["decision"] == "approve"]
        rejecters = [a for a in approvals if a["decision"] == "reject"]
        self.store.add_event(run_id, "approval.refused", actor=user, front_end=front_end, step_key=row["key"],
                             detail={"code": "already_decided", "state": row["state"]})
        if rejecters:
            who = rejecters[0]
            return Decision(False, "already_decided", f"already rejected by {who['approver']} at "
                            f"{_clock(who['at'])}", run_id)
        if approvers and row["state"] not in ("pending", "planned"):
            names = ", ".join(f"{a['approver']} at {_clock(a['at'])}" for a in approvers)
            return Decision(False, "already_decided", f"already approved by {names}; the step is {row['state']}",
                            run_id)
        return Decision(False, "not_awaiting", f"{row['key']} is {row['state']}, not waiting for approval", run_id)

    def _matches(self, user: str, spec: str) -> bool:
        try:
            return bool(self.directory.matches(user, spec))
        except PlatformError as exc:
            log.warning("approver lookup of %s failed: %s", spec, exc)
            return False

    # ------------------------------------------------------------------------------------------
    # Failure and rollback.
    # ------------------------------------------------------------------------------------------

    def _fail(self, run: dict[str, Any], loaded: LoadedRunbook | None, row: dict[str, Any], message: str, *,
              from_states: list[str], require_run_state: Any = ACTIVE_RUN, **fields: Any) -> bool:
        moved = self.store.transition_step(run["id"], row["key"], from_states, "failed", actor=ENGINE,
                                           front_end=ENGINE, error=message, finished_at=self.clock.now(),
                                           require_run_state=require_run_state, **fields)
        if not moved:
            return True
        self._tell(run["id"], ("step_finished", row["key"]))
        self._after_failure(self.store.get_run(run["id"]), loaded, self.store.get_step(run["id"], row["key"]))
        return True

    def _after_failure(self, run: dict[str, Any], loaded: LoadedRunbook | None, row: dict[str, Any]) -> None:
        if run["state"] not in ACTIVE_RUN:
            return
        if run["state"] == "rolling_back":
            # Later undo steps may depend on this one (reverse order): stop, and say exactly what holds.
            with self.store.transaction() as conn:
                for later in self.store.get_steps(run["id"]):
                    if later["phase"] == "rollback" and later["state"] in ("pending", "planned", "awaiting_approval"):
                        self.store.transition_step_in(conn, run["id"], later["key"], [later["state"]], "skipped",
                                                      actor=ENGINE, front_end=ENGINE,
                                                      detail={"reason": f"{row['key']} failed first"})
            self._finish(self.store.get_run(run["id"]), loaded)
            return
        on_failure = "abort"
        if loaded is not None:
            spec = self._spec_for(loaded, row)
            if isinstance(spec, Step):
                on_failure = spec.on_failure
        if on_failure == "continue":
            self._kick(run["id"])
            return
        if on_failure == "rollback" and loaded is not None:
            decision = self._begin_rollback(run, loaded, self.store.get_steps(run["id"]), actor=ENGINE,
                                            front_end=ENGINE, reason=f"{row['key']} failed and its runbook says "
                                                                     "on_failure: rollback")
            if decision.ok:
                return
        if self.store.transition_run(run["id"], ["running"], "failed", actor=ENGINE, front_end=ENGINE,
                                     error=f"{row['key']} failed: {row['error']}", release_locks=True):
            self._tell(run["id"], ("run_finished", None))

    def _begin_rollback(self, run: dict[str, Any], loaded: LoadedRunbook, steps: list[dict[str, Any]], *,
                        actor: str, front_end: str, reason: str) -> Decision:
        run_id = run["id"]
        undo, stuck = plan_undo(steps, loaded.model, kinds())
        again = retry_keys(steps) if run["state"] == RunState.ROLLBACK_INCOMPLETE else []
        try:
            lock_keys = self._lock_keys(loaded, run["params"], self._run_targets(loaded, run))
        except StepError as exc:
            return Decision(False, "targets", f"cannot roll back: {exc}", run_id)
        try:
            with self.store.transaction() as conn:
                if not self.store.transition_run_in(conn, run_id, sorted(st.RUN_ROLLBACK_FROM),
                                                    "rolling_back", actor=actor, front_end=front_end,
                                                    detail={"reason": reason, "undo": [u["key"] for u in undo],
                                                            "again": again,
                                                            "cannot_undo": [f"{k}: {why}" for k, why in stuck]}):
                    return Decision(False, "not_possible", f"run {run_id} cannot roll back from its state", run_id)
                self.store.acquire_locks_in(conn, run_id, lock_keys)
                for key in again:
                    self.store.transition_step_in(conn, run_id, key, ["failed", "skipped"], "pending", actor=actor,
                                                  front_end=front_end, error=None)
                for row in steps:
                    if row["phase"] == "forward" and row["state"] in ("pending", "planned", "awaiting_approval",
                                                                      "blocked"):
                        self.store.transition_step_in(conn, run_id, row["key"], [row["state"]], "skipped",
                                                      actor=actor, front_end=front_end, action="step.skipped",
                                                      detail={"reason": "the run is rolling back"},
                                                      require_run_state=None)
                self.store.insert_steps_in(conn, run_id, undo)
        except LockHeld as exc:
            return Decision(False, "locked", f"cannot roll back now: {exc}", run_id)
        self._cancel.pop(run_id, None)
        self._tell(run_id, ("notify", None, f"rolling back: {reason}", "warning"), ("run_updated", None))
        self._kick(run_id)
        keys = [u["key"] for u in undo] + again
        warning = "".join(f"; {k} CANNOT be undone ({why})" for k, why in stuck)
        if not keys:
            return Decision(True, "rolling_back", "nothing to undo" + warning, run_id)
        return Decision(True, "rolling_back", f"rolling back {len(keys)} step(s): {', '.join(keys)}; "
                        f"each asks for approval as usual{warning}", run_id)

    # ------------------------------------------------------------------------------------------
    # Small helpers.
    # ------------------------------------------------------------------------------------------

    def _cancel_event(self, run_id: str) -> threading.Event:
        with self._guard:
            return self._cancel.setdefault(run_id, threading.Event())

    def _step_view(self, view: RunView, key: str) -> StepView:
        entry = self._rows._entries.get(view.id)
        at = entry.position.get(key) if entry else None
        if at is not None and at < len(view.steps) and view.steps[at].key == key:
            return view.steps[at]
        return next(s for s in view.steps if s.key == key)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        if isinstance(exc, (StepError, PlatformError, Cancelled, StartRefused)):
            return secret_values.redact(str(exc))
        if isinstance(exc, ValidationError):
            return "invalid data: " + "; ".join(f"{format_path(e['loc'])}: {e['msg']}" for e in exc.errors())
        log.error("step raised %s:\n%s", type(exc).__name__, secret_values.redact(traceback.format_exc()))
        return secret_values.redact(f"unexpected {type(exc).__name__}: {exc}")

    def _tell(self, run_id: str, *calls: tuple[Any, ...]) -> None:
        """Tell the channel several things about a run, building its view once (and not at all for a
        channel that listens to nothing). Each call is `(method, step_key_or_None, *extra_args)`."""
        if isinstance(self.channel, QuietChannel):
            return
        view = self.view(run_id)
        for method, key, *extra in calls:
            args = [view] + ([self._step_view(view, key)] if key is not None else []) + list(extra)
            self._safe_channel(method, *args)

    def _safe_channel(self, method: str, *args: Any) -> None:
        """Tell people; a front end's failure is logged and never breaks the state machine."""
        try:
            getattr(self.channel, method)(*args)
        except Exception:  # the run's state is already stored; a lost message is logged loudly
            log.error("channel.%s failed:\n%s", method, secret_values.redact(traceback.format_exc()))


def interrupted_offers(kind: type[StepKind] | None) -> list[str]:
    """What an interrupted step offers, the advised choice first: re-running an idempotent kind is
    safe, so retry leads; any other kind is verified first (a retry may apply it twice)."""
    if kind is not None and kind.idempotent:
        return ["retry", "verify", "skip", "rollback"]
    return ["verify", "skip", "rollback", "retry"]


def plan_digest_of(row: dict[str, Any]) -> str | None:
    """A short digest of the plan a step's approval request shows, and of which request it is:
    an approval made on one plan never counts for the next (a re-plan bumps `request_no`)."""
    if row.get("plan") is None:
        return None
    import hashlib

    blob = json.dumps({"plan": row["plan"], "request": row.get("request_no")}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clock(ts: float | None) -> str:
    if not ts:
        return "?"
    return time.strftime("%H:%M:%S UTC", time.gmtime(ts))


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"
