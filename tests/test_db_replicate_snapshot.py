"""db.replicate.start's initial copy by db.copy's relay under the slot's exported snapshot.

On the private wal_level = logical cluster (tests/fixtures/pg_logical.py): the exported slot itself,
writes made on the source *during* the copy (they must arrive through the slot), a copy that fails
half-way (no slot, no subscription, rollback empties the target) and a bot killed mid-copy (the
slot is left and the next plan names it). The rest of db.replicate runs in tests/test_db_replicate.py,
in snapshot mode, which is the default.
"""

from __future__ import annotations

import textwrap
import threading
import time

import psycopg
import pytest

from bot.platforms.postgres import replication, verify
from bot.steps.base import Result, StepError
from bot.steps.context import Cancelled, StepContext
from bot.steps.db_replicate import ReplicateStart
from tests.test_db_replicate import SIDES, kill_bot_when, pair  # noqa: F401 - the fixture

# A table big enough that the copy lasts a moment while the writer writes.
BULK = "CREATE TABLE public.bulk (id bigint PRIMARY KEY, pad text); " \
       "INSERT INTO public.bulk SELECT g, repeat('x', 200) FROM generate_series(1, 60000) g; " \
       "CREATE INDEX bulk_pad_idx ON public.bulk (pad)"


def ctx_for(*, undo: dict | None = None, run_id: str = "run-1") -> StepContext:
    return StepContext(run_id=run_id, step_id="replicate", runbook_name="t", params={}, targets={}, outputs={},
                       on_undo=(lambda data: undo.update(data)) if undo is not None else None)


def slots(cluster, db: str) -> list[str]:
    return [s["slot"] for s in replication.leftover_slots(cluster.endpoint(db))]


def test_exported_slot_holds_the_data_as_of_its_lsn_and_is_dropped_when_the_block_fails(pg_logical):
    db = pg_logical.create("rbsnap")
    pg_logical.sql(db, "CREATE TABLE public.t (id int PRIMARY KEY); INSERT INTO public.t SELECT generate_series(1, 10)")
    ep = pg_logical.endpoint(db)
    replication.publish(ep, "runbook_bot_snaptest")
    with replication.exported_slot(ep, "runbook_bot_snaptest") as (lsn, snapshot):
        pg_logical.sql(db, "INSERT INTO public.t VALUES (11)")   # after the slot: streamed, not in the snapshot
        with psycopg.connect(ep.conninfo(), autocommit=False) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            assert conn.execute("SELECT count(*) FROM public.t").fetchone() == (10,)
        assert lsn.count("/") == 1
    assert slots(pg_logical, db) == ["runbook_bot_snaptest"]      # a block that ends well keeps the slot
    replication.drop_slot_by_name(ep, "runbook_bot_snaptest")

    with pytest.raises(RuntimeError, match="copy broke"):
        with replication.exported_slot(ep, "runbook_bot_snaptest"):
            raise RuntimeError("copy broke")
    assert slots(pg_logical, db) == []
    with pytest.raises(replication.ReplicationError, match="only a-z"):
        with replication.exported_slot(ep, "Bad-Name"):
            pass


class SourceWriter(threading.Thread):
    """Inserts ledger rows with its own ids into the source; notes which ones went in while the copy ran."""

    def __init__(self, cluster, db: str) -> None:
        super().__init__(daemon=True)
        self.cluster, self.db = cluster, db
        self.copying = threading.Event()          # set by the progress callback while the data phase runs
        self.stop_flag = threading.Event()
        self.during_copy: list[int] = []
        self.next_id = 100_000

    def run(self) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=self.db,
                             autocommit=True) as conn:
            while not self.stop_flag.is_set():
                conn.execute("INSERT INTO public.ledger VALUES (%s, 1, 'live')", (self.next_id,))
                conn.execute("UPDATE public.bulk SET pad = 'moved' WHERE id = %s", (self.next_id % 60000 + 1,))
                if self.copying.is_set():
                    self.during_copy.append(self.next_id)
                self.next_id += 1
                time.sleep(0.002)


@pytest.mark.parametrize("mode", ["snapshot", "subscription"])
def test_writes_during_the_initial_copy_arrive_on_the_target(pair, mode):  # noqa: F811
    cluster, src, tgt = pair
    cluster.sql(src, BULK)
    writer = SourceWriter(cluster, src)
    events: list = []

    def on_progress(**kw):
        events.append(kw)
        if kw.get("phase") == "data":
            writer.copying.set()

    ctx = StepContext(run_id="run-1", step_id="replicate", runbook_name="t", params={}, targets={}, outputs={},
                      on_progress=on_progress)
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"], initial_copy=mode, jobs=2)
    plan = kind.plan(ctx, inputs)
    assert not plan.blocking, plan.blocking
    assert f"initial copy: {mode}" in plan.summary
    writer.start()
    try:
        result = kind.apply(ctx, inputs, plan)
        writer.copying.clear()
        assert kind.verify(ctx, inputs, result).ok
        time.sleep(0.3)
    finally:
        writer.stop_flag.set()
        writer.join(10)
    assert len(writer.during_copy) > 5, "the writer wrote nothing while the copy ran"
    # Lag zero (the marker row went through the slot after every write), then every table compared.
    replication.wait_marker(cluster.endpoint(src), cluster.endpoint(tgt), timeout=30)
    names = [t for t in verify.measure_meta(cluster.endpoint(src)).all_tables if not t.endswith(replication.MARKER)]
    source, target = verify.measure_both(cluster.endpoint(src), cluster.endpoint(tgt), names)
    report = verify.compare(source, target, expect_no_extra_tables=False)
    tables_off = [m for m in report.mismatches if m.kind == "table"]   # sequences: carried by the cutover
    assert not tables_off, report.summary()
    ids = ",".join(map(str, writer.during_copy))
    assert cluster.sql(tgt, f"SELECT count(*) FROM public.ledger WHERE id IN ({ids})") == [(len(writer.during_copy),)]
    assert result.outputs["initial_copy"] == mode
    if mode == "snapshot":
        assert {"schema", "data", "indexes"} <= set(result.details["phases"])
        assert {"schema", "data", "indexes", "analyse"} <= {e.get("phase") for e in events}
        assert all(e["unit"] == "MiB" for e in events if e.get("phase") == "indexes")
    # Indexes and constraints built on the target; the source's publication is not copied there.
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_indexes WHERE indexname = 'bulk_pad_idx'") == [(1,)]
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_constraint WHERE conname = 'ledger_account_fkey'") == [(1,)]
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_publication") == [(0,)]
    undo = kind.rollback(ctx, inputs, result)
    assert kind.verify_rollback(ctx, inputs, result, undo).ok


REFUSING_TABLE = """
CREATE FUNCTION public.allowed() RETURNS boolean LANGUAGE sql
    AS $$ SELECT coalesce(current_setting('app.allow', true), '') = 'yes' $$;
CREATE TABLE public.zz_guarded (id int PRIMARY KEY, v text, CHECK (public.allowed()));
"""


def test_a_copy_failing_half_way_leaves_no_slot_nor_subscription_and_rollback_empties_target(pair):  # noqa: F811
    """A table the target cannot accept: its CHECK calls a function that reads a setting the source's
    session has and the target's COPY does not; the other tables are (partly) copied by then."""
    cluster, src, tgt = pair
    cluster.sql(src, BULK)
    cluster.sql(src, REFUSING_TABLE)
    cluster.sql(src, "SET app.allow = 'yes'; "
                     "INSERT INTO public.zz_guarded SELECT g, 'v' FROM generate_series(1, 100) g")
    recorded: dict = {}
    ctx = ctx_for(undo=recorded)
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"])
    plan = kind.plan(ctx, inputs)
    assert not plan.blocking, plan.blocking
    with pytest.raises(StepError) as failed:
        kind.apply(ctx, inputs, plan)
    text = str(failed.value)
    assert "zz_guarded" in text and "roll back to empty it" in text and "dropped from the source" in text, text
    assert slots(cluster, src) == []
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_subscription") == [(0,)]
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0] > 0  # partial copy
    # What the engine hands the rollback of a failed step: the write-ahead record, no Result of apply.
    assert recorded == {"name": plan.data["name"]}
    partial = Result(summary="failed", undo=recorded)
    undo = kind.rollback(ctx, inputs, partial)
    assert kind.verify_rollback(ctx, inputs, partial, undo).ok
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]
    assert cluster.sql(src, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert cluster.sql(src, "SELECT count(*) FROM public.zz_guarded") == [(100,)]   # the source untouched


def test_a_cancel_during_the_copy_drops_the_slot(pair):  # noqa: F811
    cluster, src, tgt = pair
    cluster.sql(src, BULK)
    cancel = threading.Event()
    # The operator aborts once the data phase has begun.
    ctx = StepContext(run_id="run-1", step_id="replicate", runbook_name="t", params={}, targets={}, outputs={},
                      on_progress=lambda **kw: cancel.set() if kw.get("phase") == "data" else None,
                      is_cancelled=cancel.is_set)
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"])
    with pytest.raises(Cancelled, match="aborted"):
        kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert slots(cluster, src) == []
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_subscription") == [(0,)]


KILLED_MID_COPY = textwrap.dedent("""
    import sys, time
    from bot.steps.context import Cancelled, StepContext
    from bot.steps.db_replicate import ReplicateStart

    def on_progress(**kw):
        if kw.get("phase") == "data":
            print("copying", flush=True)
            time.sleep(60)                 # the copy is mid-way; the test kills the bot here

    ctx = StepContext(run_id="killed-run", step_id="replicate", runbook_name="t", params={}, targets={},
                      outputs={}, on_progress=on_progress)
    kind = ReplicateStart()
    inputs = kind.Inputs(source="env:SRC_URL", target="env:TGT_URL", replica_identity_full=["public.audit"])
    kind.apply(ctx, inputs, kind.plan(ctx, inputs))
""")


def test_a_bot_killed_during_the_snapshot_copy_leaves_the_slot_that_the_next_plan_names(pair):  # noqa: F811
    cluster, src, tgt = pair
    cluster.sql(src, BULK)
    kill_bot_when(KILLED_MID_COPY, "copying")
    left = replication.leftover_slots(cluster.endpoint(src))
    assert len(left) == 1 and left[0]["database"] == src
    deadline = time.time() + 10
    while replication.leftover_slots(cluster.endpoint(src))[0]["active"] and time.time() < deadline:
        time.sleep(0.1)                     # the killed bot's replication connection goes away
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"])
    plan = kind.plan(ctx_for(run_id="next-run"), inputs)
    drops = [c for c in plan.changes if c.action == "drop"]
    assert [c.resource for c in drops] == [f"source slot {left[0]['slot']}"]
    assert "inactive" in drops[0].detail and "left by an earlier runbook-bot" in drops[0].detail
    assert any("not empty" in b for b in plan.blocking)    # the partial copy: roll the killed run back first
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_subscription") == [(0,)]
    replication.drop_slot_by_name(cluster.endpoint(src), left[0]["slot"])


def test_a_subscription_that_does_not_stream_is_named_with_its_failing_workers(pair):  # noqa: F811
    """wait_streaming gives up after `limit` s without a walsender, and says whether the workers fail
    (a key conflict here: the row is already on the target) or never connected."""
    from bot.steps import db_replicate_copy as initial
    from bot.steps.db_replicate import _lag_line

    cluster, src, tgt = pair
    ctx = ctx_for()
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"])
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    name = result.undo["name"]
    cluster.sql(tgt, "INSERT INTO public.ledger VALUES (555555, 1, 'made on the target')")
    cluster.sql(src, "INSERT INTO public.ledger VALUES (555555, 1, 'conflicts when applied')")
    deadline = time.time() + 20
    while not replication.subscription_errors(cluster.endpoint(tgt), name).get("apply") and time.time() < deadline:
        time.sleep(0.1)
    with pytest.raises(StepError, match=r"workers failed [1-9]\d* times applying"):
        initial.wait_streaming(ctx, cluster.endpoint(src), cluster.endpoint(tgt), name, line=_lag_line, limit=3)
    cluster.sql(tgt, "DELETE FROM public.ledger WHERE id = 555555")
    undo = kind.rollback(ctx, inputs, result)
    assert kind.verify_rollback(ctx, inputs, result, undo).ok


def test_the_plan_fits_jobs_to_free_connections_and_clears_what_an_interrupted_copy_left(pair, monkeypatch,  # noqa: F811
                                                                                         tmp_path):
    """As db.copy's plan: the relay's jobs fit the target's free connections, and a scratch folder an
    interrupted copy left in the work folder is named, then removed by apply."""
    import subprocess
    import sys
    from pathlib import Path
    cluster, src, tgt = pair
    monkeypatch.setenv("RUNBOOK_BOT_WORKDIR", str(tmp_path))
    child = subprocess.run([sys.executable, "-c", "import os, signal; from bot.platforms.postgres import copy; "
                            f"print(copy.scratch_folder('relay', {str(tmp_path)!r}), flush=True); "
                            "os.kill(os.getpid(), signal.SIGKILL)"], capture_output=True, text=True)
    left = Path(child.stdout.strip())
    cluster.sql("postgres", f'ALTER DATABASE "{tgt}" CONNECTION LIMIT 5')
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"], jobs=4)
    ctx = ctx_for()
    plan = kind.plan(ctx, inputs)
    assert plan.data["jobs"] == 2
    assert any("target has 5 free connections: jobs lowered from 4 to 2" in w for w in plan.warnings)
    assert any(str(left) in w and "interrupted copy" in w for w in plan.warnings)
    cluster.sql("postgres", f'ALTER DATABASE "{tgt}" CONNECTION LIMIT -1')
    result = kind.apply(ctx, inputs, plan)
    assert not left.exists()
    kind.rollback(ctx, inputs, result)
