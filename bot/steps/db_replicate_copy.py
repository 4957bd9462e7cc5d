"""The initial copy of `db.replicate.start`, in one of two modes (`initial_copy:`).

    lsn, details = by_snapshot(ctx, src, tgt, name, jobs=2, target_major=15)   # relay under the slot's snapshot
    lsn, details = by_subscription(ctx, src, tgt, name)       # schema, then the subscription's copy_data
    lag = wait_streaming(ctx, src, tgt, name, line=str)       # every table ready, the walsender streaming

`snapshot` (the default): the publication, then a slot made on a replication connection that
exports its snapshot; db.copy's `relay` copies the schema, the data (N tables at a time, `COPY
... FREEZE`) and then builds indexes and constraints, all under that snapshot, i.e. the source
exactly as of the slot's LSN; the slot's connection is closed and the subscription is made with
`copy_data = false`, so it streams every commit after that LSN, the writes made during the copy
included. `subscription`: the schema with indexes (`pg_dump --schema-only | psql`), then
`copy_data = true`: the table-sync workers copy one table per worker into indexed tables, on the
servers alone (nothing passes through the bot's host).

Why snapshot is the default: the data is loaded before the indexes exist and in parallel, which is
what makes a large copy fast (pgcopydb's design), and it needs nothing subscription mode does not
(pg_dump and psql are needed for the schema either way). Its costs, said in docs/database.md: the
data passes through the bot's host, and the bot must live through the copy (a killed bot leaves
the slot, listed and dropped by the next plan; the copy starts again).
"""

from __future__ import annotations

import tempfile
import time
from typing import Any

from bot import config
from bot.platforms.postgres import copy as pgcopy
from bot.platforms.postgres import preflight, replication, tools
from bot.platforms.postgres.connect import Endpoint
from bot.steps.base import StepError

MODES = ("snapshot", "subscription")
# A subscription that has not streamed for this long is not starting (e.g. the target server cannot
# reach the source at the address the bot uses): say so instead of waiting for the step's timeout.
NOT_STREAMING_LIMIT = 60.0


def workdir() -> str:
    """Where the relay keeps its scratch folder (a few kB of post-data archive): as db.copy's default."""
    return config.get("RUNBOOK_BOT_WORKDIR") or tempfile.gettempdir()


def by_snapshot(ctx: Any, src: Endpoint, tgt: Endpoint, name: str, *, jobs: int,
                target_major: int) -> tuple[str, dict[str, Any]]:
    """Publication, exported slot, relay copy under its snapshot, then the subscription (no copy_data)."""
    facts = preflight.facts(src)  # after the marker table was made: it is copied like any table
    try:
        dump, restore = tools.find_pair(facts.major)
    except tools.ToolMissing as exc:
        raise StepError(f"initial_copy snapshot: {exc}") from None
    total_mb = max(0.1, round(sum(t.size for t in facts.tables) / 1048576, 1))

    def report(fraction: float, message: str) -> None:
        ctx.progress(round(fraction * total_mb, 1), total_mb, message, unit="MiB", phase=pgcopy.phase_of(message))

    # The publication first: pgoutput reads it through the slot's historic snapshot, so one made
    # after the slot would not be seen by the subscription.
    replication.publish(src, name)
    with replication.exported_slot(src, name) as (lsn, snapshot):
        ctx.log(f"db.replicate.start: slot {name} at {lsn}, copying under its snapshot {snapshot}")
        request = pgcopy.CopyRequest(
            source=src, target=tgt, strategy="relay", jobs=jobs, tables=facts.tables,
            workdir=workdir(), dump=dump, restore=restore,
            psql=tools.find_psql(dump), same_major=facts.major == target_major, snapshot=snapshot,
            source_major=facts.major, target_major=target_major, replication_objects=False)
        try:
            outcome = pgcopy.run(request, progress=report, check_cancelled=ctx.check_cancelled)
        except pgcopy.CopyFailed as exc:
            # The slot is dropped on the way out of the `with`; no subscription exists yet.
            raise StepError(f"the initial copy failed, so replication was not started (slot {name} dropped "
                            f"from the source, no subscription made): {exc}. The target holds a partial "
                            f"copy: roll back to empty it, fix the cause, then run again") from None
    # The snapshot's connection is closed now: the subscription takes the slot over.
    replication.subscribe(src, tgt, name, copy_data=False)
    phases = {k: round(v, 2) for k, v in outcome.seconds.items()}
    return lsn, {"tables": len(facts.tables), "bytes": sum(t.size for t in facts.tables), "jobs": jobs,
                 "phases": phases}


def by_subscription(ctx: Any, src: Endpoint, tgt: Endpoint, name: str) -> tuple[str, dict[str, Any]]:
    """The schema with its indexes, then the subscription's own copy (`copy_data = true`)."""
    ctx.progress(0, None, "schema: pg_dump --schema-only | psql", phase="schema")
    began = time.monotonic()
    replication.copy_schema(src, tgt)
    schema_s = round(time.monotonic() - began, 2)
    return replication.start(src, tgt, name, copy_data=True), {"phases": {"schema": schema_s}}


def wait_streaming(ctx: Any, src: Endpoint, tgt: Endpoint, name: str, *, line: Any,
                   limit: float = NOT_STREAMING_LIMIT) -> replication.Lag:
    """Until every table is ready and a walsender streams the slot; StepError after `limit` s not streaming."""
    idle_since = time.monotonic()
    while True:
        lag = replication.lag(src, tgt, name)
        ctx.progress(lag.synced, lag.tables or None, message=line(lag), unit="tables", phase="data")
        if lag.active:
            idle_since = time.monotonic()
            if lag.initial_copy_done:
                return lag
        elif time.monotonic() - idle_since > limit:
            errors = replication.subscription_errors(tgt, name)
            failing = (f"its workers failed {errors['apply']} times applying and {errors['sync']} times syncing "
                       f"(the target's server log says why: a key conflict, a missing publication)"
                       if any(errors.values()) else
                       f"the target server must reach the source at {src.display()}")
            raise StepError(f"the subscription {name} on {tgt.display()} has not streamed for {limit:.0f} s: "
                            f"{failing}; roll back to drop what was made")
        ctx.sleep(0.2)
