"""`db.replicate.*`: a database cutover with seconds of write downtime, on PostgreSQL logical replication.

    - id: replicate
      kind: db.replicate.start             # publication + slot on the source, initial copy, subscription on the target
      with: {source: env:OLD_DATABASE_URL, target: env:NEW_DATABASE_URL,
             replica_identity_full: [public.audit_log],      # approve FULL identity for tables without a key
             initial_copy: snapshot}         # relay under the slot's snapshot (default) | subscription (copy_data)
    - id: caught-up
      kind: db.replicate.status            # lag in bytes and seconds, rows/s, every tick; alert when lag grows
      with: {source: env:OLD_DATABASE_URL, target: env:NEW_DATABASE_URL, replication: replicate,
             every: 10s, for: 30m, until_lag_below: 1048576, alert_after: 3}
    - id: cutover
      kind: db.replicate.cutover           # fence the source, lag to zero, sequences, verify, reverse, open
      with: {source: env:OLD_DATABASE_URL, target: env:NEW_DATABASE_URL, replication: replicate}
    - id: switch-url
      kind: env.set                        # the app's DATABASE_URL to the new database
    - id: done
      kind: db.replicate.stop              # drop every slot, subscription, publication the run made
      with: {source: env:OLD_DATABASE_URL, target: env:NEW_DATABASE_URL, replication: replicate}

Names: every object is `runbook_bot_<hash of run and start step>` (the reverse direction adds `_rev`),
so a later step, a rollback and the next run's preflight find them without a stored secret.

Initial copy: see bot/steps/db_replicate_copy.py for the two modes and why `snapshot` is the default.

Rollback: of `start` (before cutover, or after a start that failed half-way: apply records the name
write-ahead) drops the subscription, slot and publication and empties the
target again (it was empty); the source is left as it was (its fence was never set). Of `cutover`,
the same lag-gated switch the other way: fence the new side, wait until the reverse subscription
has every write, copy sequences back, drop the reverse objects, open the old side.
A slot left on the source by a killed bot is listed by the next `start`'s plan and dropped on approval.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot import secrets
from bot.platforms import registry
from bot.platforms.capabilities import ENV_SINK
from bot.platforms.errors import PlatformError
from bot.platforms.postgres import pooler, preflight, replication, schema_compare, tools, verify
from bot.platforms.postgres.connect import DatabaseError, Endpoint
from bot.platforms.postgres.preflight import human_bytes
from bot.runbook.model import Duration
from bot.steps import db_replicate_copy as initial
from bot.steps.base import Change, Plan, PlanRefused, Result, StepError, StepKind, TargetRef, Verification, register
from bot.steps.db_copy import _resolve as _sides  # the same source/target resolution and refusal
from bot.steps.db_copy import clean_scratch, drop_everything, fit_jobs, scratch_leftovers

Spec = str | dict[str, str]


class Sides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Spec = Field(description="URL, env:NAME, {env: NAME}, a target name (as db.copy)")
    target: Spec = Field(description="Same forms as source; the direct endpoint, never a pool")


class FollowInputs(Sides):
    replication: str = Field(description="The id of the db.replicate.start step this one follows")


def _names(ctx: Any, start_step: str) -> replication.Names:
    return replication.Names.for_run(ctx.run_id, start_step)


def _lag_line(lag: replication.Lag, rows_per_s: float | None = None) -> str:
    bytes_text = "unknown" if lag.bytes is None else human_bytes(max(0, lag.bytes))
    seconds = "unknown" if lag.seconds is None else f"{lag.seconds:.1f} s"
    rate = "" if rows_per_s is None else f", {rows_per_s:,.0f} rows/s"
    copy = "" if lag.initial_copy_done else f", initial copy {lag.synced}/{lag.tables} tables"
    return f"lag {bytes_text} / {seconds}{rate}{copy}" + ("" if lag.active else ", NOT streaming")


@register
class ReplicateStart(StepKind):
    name = "db.replicate.start"
    mutating = True

    class Inputs(Sides):
        replica_identity_full: list[str] = Field(
            default_factory=list, description="Tables without a key to give REPLICA IDENTITY FULL (approved here)")
        large_objects: bool = Field(False, description="true: go ahead although large objects do not replicate; "
                                                        "the cutover copies them inside its window")
        clean_leftovers: bool = Field(True, description="Drop slots/subscriptions a killed runbook-bot left")
        initial_copy: Literal["snapshot", "subscription"] = Field(
            "snapshot", description="snapshot: db.copy's relay (parallel COPY, indexes after) under the slot's "
                                    "exported snapshot; subscription: the subscription's copy_data into indexed tables")
        jobs: int | None = Field(None, ge=1, le=32, description="snapshot: tables copied at a time (default: CPUs, "
                                                                "at most 4)")

    class Outputs(BaseModel):
        name: str = ""
        slot_lsn: str = ""
        initial_copy: str = ""

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        src, tgt = _sides(ctx, inputs)
        names = _names(ctx, ctx.step_id)
        blocking: list[str] = []
        warnings: list[str] = []
        changes: list[Change] = []
        for side, ep in (("source", src), ("target", tgt)):
            report = pooler.detect(ep)
            if report.detected:
                blocking.append(f"{side} {ep.display()}: {report.describe()}; logical replication needs a "
                                f"direct connection: {report.direct_hint(ep)}")
        if blocking:
            return Plan(summary="replicate: refused, a pooler is in the way", blocking=blocking)
        facts = replication.source_facts(src)
        if replication.allows_no_replication_out(src, facts):
            blocking.append(f"the source {src.display()} is Heroku Postgres, which allows no replication out "
                            f"(no REPLICATION privilege, no slots: heroku/roadmap#38): use db.copy inside an "
                            f"app.maintenance window instead")
        if facts.wal_level != "logical":
            blocking.append(f"source wal_level is {facts.wal_level}, logical replication needs `logical`: "
                            f"ALTER SYSTEM SET wal_level = logical and restart the server (RDS: parameter "
                            f"group rds.logical_replication = 1, then reboot)")
        if not facts.can_replicate:
            blocking.append(f"source role {facts.user} has no REPLICATION privilege: ALTER ROLE "
                            f"{facts.user} REPLICATION (RDS: GRANT rds_replication TO {facts.user})")
        unapproved = [t for t in facts.no_identity if t not in inputs.replica_identity_full]
        if unapproved:
            blocking.append(f"tables without a primary key or replica identity cannot replicate UPDATE/DELETE: "
                            f"{', '.join(unapproved)}; add them to `replica_identity_full:` to approve "
                            f"ALTER TABLE ... REPLICA IDENTITY FULL on each (or add a primary key)")
        for table in inputs.replica_identity_full:
            changes.append(Change(action="alter", resource=f"source table {table}",
                                  after="REPLICA IDENTITY FULL"))
        if facts.large_objects and not inputs.large_objects:
            blocking.append(f"the source holds {facts.large_objects} large objects, which logical replication "
                            f"does not carry: move them to bytea columns, or set `large_objects: true` and the "
                            f"cutover copies them inside its window (their size adds to the write downtime)")
        if facts.sequences:
            warnings.append(f"{len(facts.sequences)} sequences are not carried by logical replication: the "
                            f"cutover copies their values past the source's")
        losses = schema_compare.acl_losses(schema_compare.catalog(src))
        if losses:
            warnings.append(f"the schema is copied without owners and ACLs (the source's roles rarely exist on the "
                            f"target): {len(losses)} ACLs are not carried, e.g. {'; '.join(losses[:3])}; grant "
                            f"them on the target before the cutover")
        warnings.append("DDL is not replicated: no schema changes on the source until the cutover "
                        "(a migration would stop replication with a missing-column error)")
        if facts.free_slots < 1:
            blocking.append("the source has no free replication slot: raise max_replication_slots or drop one")
        leftovers = [s for s in facts.leftover_slots if not s["slot"].startswith(names.base)]
        leftover_subs = [s for s in replication.leftover_subscriptions(tgt) if not s.startswith(names.base)]
        for slot in leftovers:
            line = (f"replication slot {slot['slot']} (database {slot['database']}, holding "
                    f"{human_bytes(slot['retained_bytes'])} of WAL, {'active' if slot['active'] else 'inactive'})"
                    f" left by an earlier runbook-bot")
            if inputs.clean_leftovers:
                changes.append(Change(action="drop", resource=f"source slot {slot['slot']}", detail=line))
            else:
                warnings.append(line + ": it fills the source's disk; drop it")
        for sub in leftover_subs:
            changes.append(Change(action="drop", resource=f"target subscription {sub}",
                                  detail="left by an earlier runbook-bot"))
        src_facts, tgt_facts = preflight.gather(src, tgt)
        if not tgt_facts.is_empty:
            blocking.append(f"the target {tgt.display()} is not empty; replication starts from an empty target "
                            f"(empty it, or drop and recreate the database)")
        blocking += _tool_problems(src_facts.major)
        jobs = inputs.jobs or min(4, os.cpu_count() or 2)
        stale: list[str] = []
        if inputs.initial_copy == "snapshot":
            # The relay's connections (as db.copy's), and what an interrupted copy left on this host.
            jobs, fit_warnings, fit_blocking = fit_jobs(jobs, [("source", src_facts, 3), ("target", tgt_facts, 1)])
            warnings += fit_warnings
            blocking += fit_blocking
            stale_lines, stale = scratch_leftovers(initial.workdir())
            warnings += stale_lines
        changes += _copy_changes(inputs.initial_copy, src, tgt, names.base, src_facts, jobs)
        return Plan(summary=f"replicate {src.display()} -> {tgt.display()} as {names.base} "
                            f"(initial copy: {inputs.initial_copy})", changes=changes,
                    warnings=warnings, blocking=blocking,
                    data={"name": names.base, "leftover_slots": [s["slot"] for s in leftovers],
                          "leftover_subscriptions": leftover_subs, "jobs": jobs, "stale_scratch": stale})

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        if plan.blocking:
            raise PlanRefused("the plan was refused: " + "; ".join(plan.blocking))
        src, tgt = _sides(ctx, inputs)
        name = plan.data["name"]
        try:
            if inputs.clean_leftovers:
                for sub in plan.data.get("leftover_subscriptions", []):
                    replication.stop(src, tgt, sub)
                for slot in plan.data.get("leftover_slots", []):
                    replication.drop_slot_by_name(src, slot)
            tgt_facts = preflight.facts(tgt)
            if not tgt_facts.is_empty:
                raise PlanRefused(f"the target {tgt.display()} is no longer empty since the plan; plan again")
            # Write-ahead: from here on the target was empty and everything made is named `name`, so a
            # failed or killed apply is undone by the rollback (drop by name, empty the target).
            ctx.record_undo(name=name)
            if inputs.replica_identity_full:
                replication.set_replica_identity_full(src, inputs.replica_identity_full)
            replication.ensure_marker(src)
            if inputs.initial_copy == "snapshot":
                clean_scratch(ctx, plan.data.get("stale_scratch", []), initial.workdir())
                lsn, details = initial.by_snapshot(ctx, src, tgt, name, jobs=int(plan.data.get("jobs") or 2),
                                                   target_major=tgt_facts.major)
            else:
                lsn, details = initial.by_subscription(ctx, src, tgt, name)
            lag = initial.wait_streaming(ctx, src, tgt, name, line=_lag_line)
        except (replication.ReplicationError, DatabaseError) as exc:
            raise StepError(f"replication did not start: {exc}; roll back to drop what was made") from None
        if inputs.initial_copy == "subscription":
            try:  # the schema came without data: fill the materialized views the source has populated
                refreshed = replication.refresh_matviews(src, tgt)
            except (replication.ReplicationError, DatabaseError) as exc:
                raise StepError(f"replication streams, but filling the target's materialized views failed: "
                                f"{exc}; roll back to drop what was made") from None
            if refreshed:
                ctx.log(f"refreshed {len(refreshed)} materialized views on the target: {', '.join(refreshed)}")
        # snapshot: the relay's post-data filled them (REFRESH after the data, which is the snapshot's)
        return Result(summary=f"streaming {src.display()} -> {tgt.display()} ({lag.tables} tables copied by "
                              f"{inputs.initial_copy}, slot at {lsn})",
                      outputs={"name": name, "slot_lsn": lsn, "initial_copy": inputs.initial_copy},
                      undo={"name": name}, details=details)

    def verify(self, ctx: Any, inputs: Inputs, result: Result) -> Verification:
        src, tgt = _sides(ctx, inputs)
        lag = replication.lag(src, tgt, result.undo["name"])
        ok = lag.active and lag.initial_copy_done
        return Verification(ok=ok, summary=_lag_line(lag), details=lag.to_dict())

    def plan_rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Plan:
        src, tgt = _sides(ctx, inputs)
        name = (result.undo or {}).get("name") or _names(ctx, ctx.step_id).base
        return Plan(summary=f"stop replication {name}: drop subscription, slot and publication; empty the target",
                    changes=[Change(action="drop", resource=f"source slot and publication {name}"),
                             Change(action="drop", resource=f"everything on target {tgt.display()}")],
                    data={"name": name})

    def rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Result:
        src, tgt = _sides(ctx, inputs)
        name = (result.undo or {}).get("name") or _names(ctx, ctx.step_id).base
        gone = replication.stop(src, tgt, name)
        replication.drop_marker(src)
        gone += drop_everything(tgt)
        return Result(summary="dropped " + ", ".join(gone), details={"dropped": gone})

    def verify_rollback(self, ctx: Any, inputs: Inputs, result: Result, undo: Result) -> Verification:
        src, tgt = _sides(ctx, inputs)
        name = (result.undo or {}).get("name") or _names(ctx, ctx.step_id).base
        slots = [s["slot"] for s in replication.leftover_slots(src) if s["slot"].startswith(name)]
        empty = preflight.facts(tgt).is_empty
        ok = not slots and empty
        return Verification(ok=ok, summary="no slot on the source, target empty" if ok else
                            f"left behind: slots {slots or 'none'}, target empty: {empty}")


def _tool_problems(major: int) -> list[str]:
    """pg_dump and psql copy the schema in both modes (and the data in snapshot mode)."""
    try:
        dump, _restore = tools.find_pair(major)
    except tools.ToolMissing as exc:
        return [str(exc)]
    if tools.find_psql(dump) is None:
        return [f"psql not found beside {dump.path} or on PATH: {tools.install_hint(major)}"]
    return []


def _copy_changes(mode: str, src: Endpoint, tgt: Endpoint, name: str, facts: preflight.DbFacts,
                  jobs: int) -> list[Change]:
    """What the plan says each initial-copy mode will make."""
    size = human_bytes(sum(t.size for t in facts.tables))
    slot = Change(action="create", resource=f"source {src.display()}", detail=f"publication and logical slot {name}"
                  + (" (its snapshot exported and held open during the copy)" if mode == "snapshot" else ""))
    if mode == "snapshot":
        return [slot,
                Change(action="copy", resource=f"{len(facts.tables)} tables, {size}", before=src.display(),
                       after=tgt.display(), detail=f"schema, data ({jobs} tables at a time, under the slot's "
                                                   f"snapshot), then indexes and constraints"),
                Change(action="create", resource=f"target {tgt.display()}",
                       detail=f"subscription {name} (copy_data = false: streams from the slot's LSN)")]
    return [Change(action="create", resource=f"target {tgt.display()}", detail="the source's schema (no data)"),
            slot,
            Change(action="create", resource=f"target {tgt.display()}",
                   detail=f"subscription {name} (copy_data: {len(facts.tables)} tables, {size}, then streaming)")]


@register
class ReplicateStatus(StepKind):
    """Read-only: tick every `every`, show lag and rows/s, alert when lag grows `alert_after` ticks in a row."""

    name = "db.replicate.status"
    mutating = False

    class Inputs(FollowInputs):
        every: Duration = Field(10, description="Seconds between ticks")
        for_: Duration = Field(60, alias="for", description="How long to watch at most")
        until_lag_below: int | None = Field(None, ge=0, description="Stop early once lag bytes are below this")
        alert_after: int = Field(3, ge=1, description="Alert when lag grows this many ticks in a row")

    class Outputs(BaseModel):
        lag_bytes: int | None = None
        lag_seconds: float | None = None
        alerts: int = 0

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        return Plan(summary=f"watch replication {_names(ctx, inputs.replication).base} every {inputs.every:g} s")

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        src, tgt = _sides(ctx, inputs)
        name = _names(ctx, inputs.replication).base
        began = ctx.clock.now()
        previous: replication.Lag | None = None
        previous_at = began
        growing = alerts = 0
        lines: list[str] = []
        while True:
            lag = replication.lag(src, tgt, name)
            now = ctx.clock.now()
            rate = None if previous is None else (lag.rows - previous.rows) / max(1e-6, now - previous_at)
            if previous is not None and lag.bytes is not None and previous.bytes is not None:
                growing = growing + 1 if lag.bytes > previous.bytes else 0
            line = _lag_line(lag, rate)
            if growing >= inputs.alert_after:
                alerts += 1
                line = f"ALERT: lag has grown {growing} ticks in a row; " + line
                growing = 0
            lines.append(line)
            ctx.progress(now - began, inputs.for_, message=line, unit="s")
            ctx.log(line)
            previous, previous_at = lag, now
            done = inputs.until_lag_below is not None and lag.bytes is not None and lag.bytes < inputs.until_lag_below
            if done or now - began + inputs.every > inputs.for_:
                break
            ctx.sleep(inputs.every)
        return Result(summary=lines[-1], outputs={"lag_bytes": lag.bytes, "lag_seconds": lag.seconds,
                                                  "alerts": alerts}, details={"ticks": lines})


class Switch(BaseModel):
    """The app's database variable, switched by the cutover itself at the open (and back on rollback)."""

    model_config = ConfigDict(extra="forbid")

    to: Annotated[str, TargetRef(capability=ENV_SINK)] = Field(description="The app (a target with an EnvSink)")
    variable: str = Field("DATABASE_URL", description="The variable holding the database URL")
    value: str = Field(description="`env:NAME`: the URL the app uses for the new database")
    back: str = Field(description="`env:NAME`: the URL of the old database, set again by the rollback")


def _url(spec: str, field: str) -> str:
    """The URL an `env:NAME` spec names, registered as a secret (it may carry a password)."""
    name = spec[4:].strip() if spec.startswith("env:") else ""
    if not name:
        raise PlanRefused(f"switch.{field}: give `env:NAME` (the URL is read from the bot's environment, never "
                          f"stored), not {secrets.redact(spec)!r}")
    value = os.environ.get(name)
    if not value:
        raise PlanRefused(f"switch.{field}: the environment variable {name} is not set")
    secrets.register(value)
    return value


def _set_app_url(ctx: Any, switch: Switch, spec: str, field: str) -> dict[str, Any]:
    """Point the app's variable at the URL `spec` names; the sink's undo record (no values)."""
    url = _url(spec, field)
    recorded, said = registry.adapter(ctx.target(switch.to), ENV_SINK).set({switch.variable: url}, {switch.variable})
    ctx.log(f"db.replicate.cutover: {said}")
    return recorded


@register
class ReplicateCutover(StepKind):
    """Fence the source, wait for lag zero, copy sequences, verify, start reverse replication, open the target."""

    name = "db.replicate.cutover"
    mutating = True

    class Inputs(FollowInputs):
        timeout: Duration = Field(60, description="How long the fenced source may take to drain")
        verify: bool = Field(True, description="Row counts and checksums of every table as it was at the fence "
                                               "(snapshots held; measured after writes open, outside the window)")
        reverse: bool = Field(True, description="Replicate the new side back to the old one (for rollback)")
        switch: Switch | None = Field(None, description="Switch the app's DATABASE_URL at the open, inside the "
                                                         "window (the target refuses client writes until then)")

    class Outputs(BaseModel):
        write_downtime_seconds: float = 0.0
        last_source_write_to_open_seconds: float | None = None
        reverse: str = ""

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        src, tgt = _sides(ctx, inputs)
        names = _names(ctx, inputs.replication)
        lag = replication.lag(src, tgt, names.base)
        blocking = [] if lag.initial_copy_done else [f"the initial copy is not finished ({_lag_line(lag)})"]
        steps = [Change(action="fence", resource=f"source {src.display()}",
                        detail="default_transaction_read_only = on, sessions ended")]
        steps.append(Change(action="wait", resource="lag", before=_lag_line(lag), after="zero (marker applied)"))
        steps.append(Change(action="copy", resource="sequences", detail="target set to the source's values"))
        objects = replication.large_object_count(src)
        if objects:
            steps.append(Change(action="copy", resource=f"{objects} large objects",
                                detail="the ones the target lacks, OIDs kept, inside the window (not replicated)"))
        if inputs.verify:
            steps.append(Change(action="verify", resource="every table",
                                detail="row counts and checksums at the fence, measured after the open"))
        steps.append(Change(action="drop", resource=f"forward replication {names.base}"))
        if inputs.reverse:
            steps.append(Change(action="create", resource=f"reverse replication {names.reverse}",
                                detail=f"{tgt.display()} -> {src.display()}, before the target takes writes"))
        warnings = ["switch the app's DATABASE_URL right after (env.set); the source stays read-only"]
        if inputs.switch is not None:
            sw = inputs.switch
            _url(sw.value, "value"), _url(sw.back, "back")  # refused now, not mid-window, when unset
            steps.insert(0, Change(action="fence", resource=f"target {tgt.display()}",
                                   detail="client writes refused until the open (replication still applies)"))
            steps.append(Change(action="switch", resource=f"{sw.to}: {sw.variable}",
                                detail=f"to {sw.value} before the open; the rollback sets {sw.back}"))
            warnings = [f"{sw.to} restarts on the new {sw.variable} (a platform's config change); its restart "
                        "is part of the app's own downtime"]
        return Plan(summary=f"cut over {src.display()} -> {tgt.display()}", changes=steps, blocking=blocking,
                    warnings=warnings, data={"name": names.base, "reverse": names.reverse})

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        src, tgt = _sides(ctx, inputs)
        name, reverse = plan.data["name"], plan.data["reverse"]
        phases: dict[str, float] = {}

        def timed(phase: str, call: Any, *args: Any, **kwargs: Any) -> Any:
            began = time.monotonic()
            value = call(*args, **kwargs)
            phases[phase] = round(time.monotonic() - began, 3)
            return value

        held = ExitStack()
        sw, switched = inputs.switch, None
        lo_count = replication.large_object_count(src)
        fenced_at = time.time()
        try:  # from the fence on, any failure before the open unfences the source (below)
            ended = timed("fence", replication.fence, src)
            if sw is not None:  # the app will move to the target before the reverse replication exists
                replication.fence(tgt)
            last_write = replication.last_commit(src)
            drained = timed("drain", replication.wait_marker, src, tgt, timeout=inputs.timeout)
            timed("sequences", replication.copy_sequences, src, tgt)
            if lo_count:  # not replicated: copied while both sides are still, OIDs kept
                timed("large_objects", replication.copy_large_objects, src, tgt)
            # Sequences and large objects are not MVCC: no held snapshot keeps them as they are now, and the
            # app's first inserts after the open move the target's sequences. Read both sides here.
            still = timed("fence_meta", _meta_at_fence, src, tgt) if inputs.verify else None
            # Both sides are still now (source fenced, target caught up, nothing writes to it yet): hold a
            # snapshot of each, so the checksums can run after writes open, outside the window.
            snapshots = ((held.enter_context(verify.held_snapshot(src)), held.enter_context(verify.held_snapshot(tgt)))
                         if inputs.verify else None)
            if sw is not None:
                switched = timed("switch", _set_app_url, ctx, sw, sw.value, "value")
            timed("drop_forward", replication.stop, src, tgt, name)
            if inputs.reverse:
                timed("reverse", replication.start, tgt, src, reverse, copy_data=False)
            if sw is not None:
                replication.unfence(tgt)  # the open: the app, already pointed here, writes from now on
        except BaseException as exc:
            held.close()
            # Not open: the source takes writes again (the forward replication is kept if still there).
            replication.unfence(src)
            left = ""
            if switched is not None:
                try:
                    _set_app_url(ctx, sw, sw.back, "back")
                except Exception as back_exc:  # noqa: BLE001 - said in the message, with what to do
                    left = (f"; {sw.to}'s {sw.variable} still points at the target, which stays read-only so "
                            f"nothing splits (setting it back failed: {secrets.redact(str(back_exc))}): set it to "
                            f"{sw.back} by hand")
            if sw is not None and not left:
                replication.unfence(tgt)  # as it was: the forward replication goes on, a retry can cut over
            if isinstance(exc, (replication.ReplicationError, DatabaseError, PlatformError)):
                raise StepError(f"cutover stopped, the source is writable again: {exc}{left}") from None
            if left:
                raise StepError(f"cutover stopped, the source is writable again: {exc}{left}") from exc
            raise
        opened_at = time.time()
        downtime = opened_at - fenced_at
        since_last = opened_at - last_write if last_write else None
        checked = None
        if snapshots is not None:
            opened = (f"writes open on {tgt.display()} after {downtime:.2f} s; checking every table as it was "
                      "at the fence")
            ctx.log(opened)
            ctx.progress(0, None, message=opened)
            with held:
                checked = timed("verify_after_open", _verify_at_fence, src, tgt, snapshots, still)
        summary = (f"write downtime {downtime:.2f} s (fence to open; drained in {drained:.2f} s, {ended} sessions "
                   f"ended)" + (f"; {sw.to}'s {sw.variable} switched" if sw is not None else "")
                   + (f"; at the fence: {checked['summary']}" if checked else "")
                   + (f"; reverse replication {reverse} running" if inputs.reverse else ""))
        return Result(summary=summary,
                      outputs={"write_downtime_seconds": round(downtime, 3),
                               "last_source_write_to_open_seconds": round(since_last, 3) if since_last else None,
                               "reverse": reverse if inputs.reverse else ""},
                      undo={"reverse": reverse if inputs.reverse else "", "name": name, "switched": switched},
                      details={"fenced_at": fenced_at, "opened_at": opened_at, "last_source_write": last_write,
                               "phases": phases, "at_fence": checked})

    def verify(self, ctx: Any, inputs: Inputs, result: Result) -> Verification:
        src, tgt = _sides(ctx, inputs)
        fenced = replication.is_fenced(src)
        forward = [s["slot"] for s in replication.leftover_slots(src) if s["slot"] == result.undo["name"]]
        # The data comparison ran in apply, on snapshots taken at the fence (see _verify_at_fence); a
        # difference fails this verification, and the engine's undo switches back through the reverse
        # replication, which carries the writes made on the new side since.
        at_fence = (result.details or {}).get("at_fence")
        data_ok = at_fence is None or at_fence["ok"]
        ok = fenced and not forward and data_ok
        parts = ["source read-only" if fenced else "source NOT read-only",
                 "forward slot gone" if not forward else "forward slot still there"]
        if at_fence is not None:
            parts.append(f"at the fence: {at_fence['summary']}")
        return Verification(ok=ok, summary="; ".join(parts))

    def plan_rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Plan:
        reverse = result.undo.get("reverse")
        if not reverse:
            raise PlanRefused("the cutover ran without reverse replication: writes made on the new side "
                              "since then would be lost going back; use db.copy from the new side instead")
        return Plan(summary=f"switch back through {reverse}: fence the new side, lag to zero, sequences back, "
                            f"open the old side", data={"reverse": reverse})

    def rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Result:
        src, tgt = _sides(ctx, inputs)
        reverse = result.undo["reverse"]
        fenced_at = time.time()
        replication.fence(tgt)
        try:
            replication.wait_marker(tgt, src, timeout=inputs.timeout)
            replication.copy_sequences(tgt, src)
            replication.copy_large_objects(tgt, src)  # the ones made on the new side since the cutover
            replication.stop(tgt, src, reverse)
        except BaseException:
            replication.unfence(tgt)
            raise
        replication.unfence(src)
        said = "switch DATABASE_URL back"
        if result.undo.get("switched") is not None and inputs.switch is not None:
            _set_app_url(ctx, inputs.switch, inputs.switch.back, "back")
            said = f"{inputs.switch.to}'s {inputs.switch.variable} set back"
        downtime = time.time() - fenced_at
        return Result(summary=f"back on the old side; write downtime {downtime:.2f} s; {said}",
                      outputs={"write_downtime_seconds": round(downtime, 3)})

    def verify_rollback(self, ctx: Any, inputs: Inputs, result: Result, undo: Result) -> Verification:
        src, tgt = _sides(ctx, inputs)
        left = [s["slot"] for s in replication.leftover_slots(tgt) if s["slot"] == result.undo["reverse"]]
        ok = not replication.is_fenced(src) and not left
        return Verification(ok=ok, summary="old side writable, reverse slot gone" if ok else
                            f"reverse slot left: {bool(left)}; old side fenced: {replication.is_fenced(src)}")


def _meta_at_fence(src: Endpoint, tgt: Endpoint) -> tuple[verify.Measures, verify.Measures]:
    """Sequences (the target's just set past the source's) and large objects of both sides, while still."""
    source = verify.measure_meta(src)
    return source, verify.measure_meta(tgt, sequences=list(source.sequences))


def _verify_at_fence(src: Endpoint, tgt: Endpoint, snapshots: tuple[str, str],
                     still: tuple[verify.Measures, verify.Measures] | None = None) -> dict[str, Any]:
    """Row counts and checksums of every table on both sides as they were at the fence (the held
    snapshots), measured while the new side already takes writes; sequences and large objects as read
    at the fence (`still`). Never raises: a comparison that cannot run is a failed one, reported, since
    writes are open by now."""
    try:
        names = [t for t in verify.measure_meta(src).all_tables if not t.endswith(f".{replication.MARKER}")]
        source, target = verify.measure_both(src, tgt, names, snapshots=snapshots)
        if still is not None:
            for now, then in ((source, still[0]), (target, still[1])):
                now.sequences, now.large_objects = then.sequences, then.large_objects
        report = verify.compare(source, target, expect_no_extra_tables=False)
        # The schema too: DDL does not replicate, and a materialized view the subscription never filled
        # passes a data-only check.
        schema = schema_compare.compare(schema_compare.catalog(src, acls=False),
                                        schema_compare.catalog(tgt, acls=False), acls=False)
        report.mismatches += schema
        report.ok = report.ok and not schema
        return {"ok": report.ok, "summary": report.summary() + ("; schema equal" if not schema else "")}
    except (DatabaseError, OSError) as exc:
        return {"ok": False, "summary": f"the comparison could not run ({str(exc).splitlines()[0]})"}


@register
class ReplicateStop(StepKind):
    """Drop every object the replication made, in both directions; verify no slot is left on either side."""

    name = "db.replicate.stop"
    mutating = True
    idempotent = True

    class Inputs(FollowInputs):
        pass

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        names = _names(ctx, inputs.replication)
        return Plan(summary=f"drop replication {names.base} and {names.reverse} (slots, subscriptions, publications)")

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        src, tgt = _sides(ctx, inputs)
        names = _names(ctx, inputs.replication)
        with ThreadPoolExecutor(max_workers=2) as pool:
            forward = pool.submit(replication.stop, src, tgt, names.base)
            back = pool.submit(replication.stop, tgt, src, names.reverse)
            gone = forward.result() + back.result()
        for ep in (src, tgt):
            replication.drop_marker(ep)
        return Result(summary="dropped " + (", ".join(gone) or "nothing (already clean)"), details={"dropped": gone})

    def verify(self, ctx: Any, inputs: Inputs, result: Result) -> Verification:
        src, tgt = _sides(ctx, inputs)
        names = _names(ctx, inputs.replication)
        left = [s["slot"] for ep in (src, tgt) for s in replication.leftover_slots(ep)
                if s["slot"] in (names.base, names.reverse)]
        return Verification(ok=not left, summary="no replication slot left" if not left else f"slots left: {left}")
