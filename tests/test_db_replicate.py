"""db.replicate.* on a private PostgreSQL cluster with wal_level = logical (tests/fixtures/pg_logical.py).

Writes keep flowing from a writer thread while replication streams; the writer behaves like an app
whose DATABASE_URL is switched: when the fenced source refuses it, it writes to the target. Every
row carries a writer-made id, so "none lost" is a count and a checksum over the ids on both sides.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psycopg
import pytest

from bot.platforms.postgres import replication
from bot.steps.base import StepError
from bot.steps.context import StepContext
from bot.steps.db_replicate import ReplicateCutover, ReplicateStart, ReplicateStatus, ReplicateStop

SCHEMA = """
CREATE TABLE public.accounts (id bigserial PRIMARY KEY, owner text NOT NULL, balance numeric NOT NULL DEFAULT 0);
CREATE TABLE public.ledger (id bigint PRIMARY KEY, account bigint REFERENCES public.accounts(id), note text);
CREATE TABLE public.audit (at timestamptz DEFAULT now(), what text);
INSERT INTO public.accounts (owner, balance) SELECT 'owner-' || g, g FROM generate_series(1, 500) g;
INSERT INTO public.ledger SELECT g, 1 + g % 500, 'seed' FROM generate_series(1, 2000) g;
INSERT INTO public.audit (what) SELECT 'a' || g FROM generate_series(1, 10) g;
"""


def ctx_for(step_id: str, events: list | None = None, run_id: str = "run-1") -> StepContext:
    return StepContext(run_id=run_id, step_id=step_id, runbook_name="t", params={}, targets={}, outputs={},
                       on_progress=(lambda **kw: events.append(kw)) if events is not None else (lambda **kw: None))


@pytest.fixture
def pair(pg_logical, monkeypatch):
    src, tgt = pg_logical.create("rbsrc"), pg_logical.create("rbtgt")
    pg_logical.sql(src, SCHEMA)
    monkeypatch.setenv("SRC_URL", pg_logical.url(src))
    monkeypatch.setenv("TGT_URL", pg_logical.url(tgt))
    return pg_logical, src, tgt


SIDES = {"source": "env:SRC_URL", "target": "env:TGT_URL"}


def start(ctx, **extra):
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, **extra)
    plan = kind.plan(ctx, inputs)
    assert not plan.blocking, plan.blocking
    return kind, inputs, kind.apply(ctx, inputs, plan)


class Writer(threading.Thread):
    """Inserts ledger rows with its own ids as fast as it can; moves to the target when the source refuses."""

    def __init__(self, cluster, src: str, tgt: str, first_id: int = 100_000) -> None:
        super().__init__(daemon=True)
        self.cluster, self.dbs, self.next_id = cluster, [src, tgt], first_id
        self.written: list[int] = []
        self.on_target: list[int] = []
        self.stop_flag = threading.Event()
        self.switch = threading.Event()      # the app's DATABASE_URL now points at the target
        self.refused = 0

    def run(self) -> None:
        conn = None
        while not self.stop_flag.is_set():
            db = self.dbs[1] if self.switch.is_set() else self.dbs[0]
            try:
                if conn is None or conn.info.dbname != db:
                    conn = psycopg.connect(host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=db,
                                           autocommit=True)
                conn.execute("INSERT INTO public.ledger VALUES (%s, 1, 'live')", (self.next_id,))
                self.written.append(self.next_id)
                if db == self.dbs[1]:
                    self.on_target.append(self.next_id)
                self.next_id += 1
            except psycopg.Error:
                self.refused += 1
                conn = None
                time.sleep(0.01)
        if conn is not None:
            conn.close()


def ledger_ids(cluster, db: str) -> tuple[int, str]:
    return tuple(cluster.sql(db, "SELECT count(*), md5(string_agg(id::text, ',' ORDER BY id)) "
                                 "FROM public.ledger WHERE note = 'live'")[0])


def expected(ids: list[int]) -> tuple[int, str]:
    import hashlib
    return len(ids), hashlib.md5(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()


def test_cutover_under_writes_loses_none_and_reverse_carries_writes_back(pair):
    cluster, src, tgt = pair
    ctx = ctx_for("replicate")
    _kind, _inputs, started = start(ctx, replica_identity_full=["public.audit"])
    writer = Writer(cluster, src, tgt)
    writer.start()
    try:
        time.sleep(1.0)
        events: list = []
        status = ReplicateStatus()
        s_in = status.Inputs(**SIDES, replication="replicate", every=0.3, **{"for": 1.2})
        result = status.apply(ctx_for("status", events), s_in, status.plan(ctx_for("status"), s_in))
        assert result.details["ticks"] and all("lag" in e["message"] for e in events)
        assert cluster.sql(src, "SELECT relreplident::text FROM pg_class WHERE relname = 'audit'") == [("f",)]

        cut = ReplicateCutover()
        c_in = cut.Inputs(**SIDES, replication="replicate")
        c_ctx = ctx_for("cutover")
        plan = cut.plan(c_ctx, c_in)
        assert not plan.blocking
        done = cut.apply(c_ctx, c_in, plan)
        writer.switch.set()                              # env.set: the app now writes to the target
        assert cut.verify(c_ctx, c_in, done).ok
        time.sleep(1.0)
    finally:
        writer.stop_flag.set()
        writer.join(10)
    before_switch = [i for i in writer.written if i not in set(writer.on_target)]
    assert len(before_switch) > 20 and len(writer.on_target) > 20
    # Every row written to the source before the fence is on the target; nothing more, nothing less.
    assert ledger_ids(cluster, tgt) == expected(writer.written)
    assert done.outputs["write_downtime_seconds"] < 30
    # Sequences went past the source's: the next serial id on the target does not collide.
    cluster.sql(tgt, "INSERT INTO public.accounts (owner) VALUES ('after cutover')")
    # The reverse replication carries the writes made on the target back to the old source.
    deadline = time.time() + 20
    while ledger_ids(cluster, src) != expected(writer.written) and time.time() < deadline:
        time.sleep(0.2)
    assert ledger_ids(cluster, src) == expected(writer.written)
    # One cluster holds both databases: the forward slot (in the source's database) is gone at cutover,
    # the reverse one (in the target's) streams.
    assert [s["database"] for s in replication.leftover_slots(cluster.endpoint(src))] == [tgt]

    # Rollback is the same switch the other way; then no slot anywhere.
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    assert ledger_ids(cluster, src) == expected(writer.written)
    cluster.sql(src, "INSERT INTO public.accounts (owner) VALUES ('back on the old side')")   # writable again
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok
    assert replication.leftover_slots(cluster.endpoint(src)) == []
    assert cluster.sql(src, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_subscription") == [(0,)]


def test_a_difference_at_the_fence_is_found_after_the_open_and_the_way_back_keeps_new_writes(pair):
    """The checksums run on snapshots held from the fence, after writes open: the app writes to the new
    side meanwhile (it switches on the "writes open" report), and still a difference made by the new
    side (an ALWAYS trigger rewriting replicated rows) fails the verification; the switch back loses
    none of the writes made on the new side."""
    cluster, src, tgt = pair
    ctx = ctx_for("replicate")
    start(ctx, replica_identity_full=["public.audit"])
    cluster.sql(tgt, "CREATE FUNCTION public.shout() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$ BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$")
    cluster.sql(tgt, "CREATE TRIGGER shout BEFORE INSERT ON public.ledger FOR EACH ROW EXECUTE FUNCTION public.shout();"
                     " ALTER TABLE public.ledger ENABLE ALWAYS TRIGGER shout")
    writer = Writer(cluster, src, tgt)
    writer.start()
    try:
        time.sleep(1.0)
        cut = ReplicateCutover()
        c_in = cut.Inputs(**SIDES, replication="replicate")

        def on_progress(**kw):
            if kw["message"].startswith("writes open"):
                writer.switch.set()  # the app moves at the open, while the checksums still run

        c_ctx = StepContext(run_id="run-1", step_id="cutover", runbook_name="t", params={}, targets={}, outputs={},
                            on_progress=on_progress)
        done = cut.apply(c_ctx, c_in, cut.plan(c_ctx, c_in))
        deadline = time.time() + 10
        while len(writer.on_target) < 20 and time.time() < deadline:
            time.sleep(0.05)
        checked = cut.verify(c_ctx, c_in, done)
    finally:
        writer.stop_flag.set()
        writer.join(10)
    assert not checked.ok and "public.ledger" in checked.summary, checked.summary
    assert "verify_after_open" in done.details["phases"] and "verify" not in done.details["phases"]
    assert done.outputs["write_downtime_seconds"] < done.details["opened_at"] - done.details["fenced_at"] + 0.01
    # What the engine does with a failed verification: the switch back, through the reverse replication.
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    ids = writer.on_target
    assert len(ids) >= 20
    assert cluster.sql(src, f"SELECT count(*) FROM public.ledger WHERE id IN ({','.join(map(str, ids))})") == \
        [(len(ids),)]
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


class SerialWriter(Writer):
    """Also inserts into a serial-keyed table once on the target: the app's first writes move sequences."""

    def run(self) -> None:
        def serial() -> None:
            while not self.stop_flag.is_set() and not self.switch.is_set():
                time.sleep(0.01)
            with psycopg.connect(host="127.0.0.1", port=self.cluster.port, user="postgres", dbname=self.dbs[1],
                                 autocommit=True) as conn:
                while not self.stop_flag.is_set():
                    conn.execute("INSERT INTO public.accounts (owner) VALUES ('after the open')")
                    time.sleep(0.01)
        threading.Thread(target=serial, daemon=True).start()
        super().run()


def test_sequences_moved_by_the_app_after_the_open_are_judged_as_they_were_at_the_fence(pair):
    """Sequences are not MVCC: the held snapshots do not keep them. The app writing serial rows on the new
    side from the open must not fail the comparison (found by benchmarks/db_cutover.py)."""
    cluster, src, tgt = pair
    ctx = ctx_for("replicate")
    start(ctx, replica_identity_full=["public.audit"])
    writer = SerialWriter(cluster, src, tgt)
    writer.start()
    try:
        time.sleep(0.5)
        cut = ReplicateCutover()
        c_in = cut.Inputs(**SIDES, replication="replicate")

        def on_progress(**kw):
            if kw["message"].startswith("writes open"):
                writer.switch.set()
                time.sleep(0.5)   # the app's inserts land before the checksums read the sequences

        c_ctx = StepContext(run_id="run-1", step_id="cutover", runbook_name="t", params={}, targets={}, outputs={},
                            on_progress=on_progress)
        done = cut.apply(c_ctx, c_in, cut.plan(c_ctx, c_in))
        checked = cut.verify(c_ctx, c_in, done)
    finally:
        writer.stop_flag.set()
        writer.join(10)
    assert cluster.sql(tgt, "SELECT count(*) > 0 FROM public.accounts WHERE owner = 'after the open'") == [(True,)]
    assert checked.ok, checked.summary
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


class FollowingWriter(Writer):
    """A writer that follows the app's DATABASE_URL on the (fake) Heroku: a dyno restarted on the new value."""

    def __init__(self, cluster, src, tgt, heroku, tgt_url):
        super().__init__(cluster, src, tgt)
        self.heroku, self.tgt_url = heroku, tgt_url

    def run(self):
        def follow():
            while not self.stop_flag.is_set():
                (self.switch.set if self.heroku.values.get("DATABASE_URL") == self.tgt_url else self.switch.clear)()
                time.sleep(0.01)
        threading.Thread(target=follow, daemon=True).start()
        super().run()


@pytest.fixture
def heroku_app(httpserver, monkeypatch, pair):
    from tests.test_env_set import HerokuState

    cluster, src, _tgt = pair
    state = HerokuState({"DATABASE_URL": cluster.url(src)})
    httpserver.expect_request("/apps/api/config-vars").respond_with_handler(state.handler)
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    return state


SWITCH = {"to": "app", "value": "env:TGT_URL", "back": "env:SRC_URL"}


def _switch_ctx(logs: list) -> StepContext:
    from bot.runbook.targets import HerokuTarget

    return StepContext(run_id="run-1", step_id="cutover", runbook_name="t", params={},
                       targets={"app": HerokuTarget(app="api")}, outputs={}, on_log=logs.append)


def test_the_cutover_switches_the_apps_url_inside_the_window_and_the_rollback_back(pair, heroku_app):
    cluster, src, tgt = pair
    start(ctx_for("replicate"), replica_identity_full=["public.audit"])
    writer = FollowingWriter(cluster, src, tgt, heroku_app, cluster.url(tgt))
    writer.start()
    logs: list = []
    c_ctx = _switch_ctx(logs)
    cut = ReplicateCutover()
    c_in = cut.Inputs(**SIDES, replication="replicate", switch=SWITCH)
    try:
        time.sleep(1.0)
        plan = cut.plan(c_ctx, c_in)
        assert [c.action for c in plan.changes][:2] == ["fence", "fence"] and plan.changes[-1].action == "switch"
        done = cut.apply(c_ctx, c_in, plan)
        assert heroku_app.values["DATABASE_URL"] == cluster.url(tgt)
        deadline = time.time() + 10
        while len(writer.on_target) < 20 and time.time() < deadline:
            time.sleep(0.05)
        assert cut.verify(c_ctx, c_in, done).ok
    finally:
        writer.stop_flag.set()
        writer.join(10)
    switch_log = next(i for i, line in enumerate(logs) if "DATABASE_URL" in line)
    opened_log = next(i for i, line in enumerate(logs) if line.startswith("writes open"))
    assert switch_log < opened_log  # switched inside the window, before the verification ran
    assert ledger_ids(cluster, tgt) == expected(writer.written)  # none lost across the switch
    assert "switch" in done.details["phases"] and not replication.is_fenced(cluster.endpoint(tgt))
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    assert heroku_app.values["DATABASE_URL"] == cluster.url(src) and "set back" in undo.summary
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    ctx = ctx_for("replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


def test_a_switch_the_platform_refuses_leaves_both_databases_as_they_were(pair, httpserver, monkeypatch):
    from werkzeug import Response

    cluster, src, tgt = pair
    httpserver.expect_request("/apps/api/config-vars", method="GET").respond_with_json(
        {"DATABASE_URL": cluster.url(src)})
    httpserver.expect_request("/apps/api/config-vars", method="PATCH").respond_with_response(
        Response('{"id": "forbidden", "message": "You do not have access to the app api."}', status=403,
                 content_type="application/json"))
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    ctx = ctx_for("replicate")
    _kind, _inputs, started = start(ctx, replica_identity_full=["public.audit"])
    cut = ReplicateCutover()
    c_in = cut.Inputs(**SIDES, replication="replicate", switch=SWITCH)
    c_ctx = _switch_ctx([])
    with pytest.raises(StepError, match="cutover stopped, the source is writable again"):
        cut.apply(c_ctx, c_in, cut.plan(c_ctx, c_in))
    assert not replication.is_fenced(cluster.endpoint(src)) and not replication.is_fenced(cluster.endpoint(tgt))
    # the forward replication goes on: a retry can cut over
    cluster.sql(src, "INSERT INTO public.ledger VALUES (777777, 1, 'after the refused switch')")
    deadline = time.time() + 20
    while cluster.sql(tgt, "SELECT count(*) FROM public.ledger WHERE id = 777777") != [(1,)] and time.time() < deadline:
        time.sleep(0.2)
    assert cluster.sql(tgt, "SELECT count(*) FROM public.ledger WHERE id = 777777") == [(1,)]
    assert [s["slot"] for s in replication.leftover_slots(cluster.endpoint(src))] == [started.undo["name"]]
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


def test_the_watch_alerts_on_a_slot_nobody_reads(pair, tmp_path):
    """`replication_lag` in a watch: the slot streams (ok), then its subscriber stops reading (disabled):
    the slot goes inactive and keeps WAL, and after `failures` ticks the watch breaches naming it."""
    from bot.engine.store import Store
    from bot.watch import service
    from tests.fixtures.watch import RecordingChannel

    cluster, src, tgt = pair
    _kind, _inputs, started = start(ctx_for("replicate"), replica_identity_full=["public.audit"])
    store, channel = Store(tmp_path / "store.sqlite"), RecordingChannel()
    service.start(store, "run-1", {"every": "1m", "for": "1h", "delay": "0s",
                                   "signals": [{"name": "replication_lag", "database": "env:SRC_URL", "failures": 2}]})

    def tick() -> dict:
        reading = service.tick_now(store, "run-1", channel)["signals"][0]
        return reading

    first = tick()
    assert first["state"] in ("ok", "warn") and started.undo["name"] in first["detail"], first
    cluster.sql(tgt, f"ALTER SUBSCRIPTION {started.undo['name']} DISABLE")
    deadline = time.time() + 20
    while time.time() < deadline and any(s["active"] for s in replication.leftover_slots(cluster.endpoint(src))):
        time.sleep(0.2)
    cluster.sql(src, "INSERT INTO public.ledger SELECT g, 1, 'unread' FROM generate_series(900000, 905000) g")
    assert tick()["state"] == "warn"  # inactive once: not yet an alert
    breached = tick()
    assert breached["state"] == "breach", breached
    assert started.undo["name"] in breached["detail"] and "inactive" in breached["detail"]
    assert "fills that disk" in breached["detail"]
    cluster.sql(tgt, f"ALTER SUBSCRIPTION {started.undo['name']} ENABLE")
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    ctx = ctx_for("replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok
    assert "no runbook-bot replication slot" in tick()["detail"]


def test_rollback_before_cutover_drops_slot_and_leaves_source_as_it_was(pair):
    cluster, src, tgt = pair
    before = cluster.sql(src, "SELECT count(*), sum(balance) FROM public.accounts")
    ctx = ctx_for("replicate")
    kind, inputs, result = start(ctx, replica_identity_full=["public.audit"])
    assert kind.verify(ctx, inputs, result).ok
    assert [s["slot"] for s in replication.leftover_slots(cluster.endpoint(src))] == [result.undo["name"]]
    undo = kind.rollback(ctx, inputs, result)
    assert kind.verify_rollback(ctx, inputs, result, undo).ok
    assert replication.leftover_slots(cluster.endpoint(src)) == []
    assert cluster.sql(src, "SELECT count(*) FROM pg_publication") == [(0,)]
    assert cluster.sql(src, "SELECT count(*), sum(balance) FROM public.accounts") == before
    assert cluster.sql(tgt, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]


def test_large_objects_are_copied_inside_the_window_and_carried_back_by_the_rollback(pair):
    """Logical replication does not carry large objects: with `large_objects: true` approved, the cutover
    copies the ones the target lacks while both sides are still (OIDs kept, a 2.5 MiB one in chunks), the
    comparison at the fence passes, and the switch back carries the ones made on the new side."""
    cluster, src, tgt = pair
    cluster.sql(src, "SELECT lo_from_bytea(424242, 'small one')")
    cluster.sql(src, "SELECT lo_from_bytea(424243, decode(repeat(md5('x'), 81920), 'hex'))")   # 2.5 MiB
    ctx = ctx_for("replicate")
    start(ctx, replica_identity_full=["public.audit"], large_objects=True)
    cluster.sql(src, "SELECT lo_from_bytea(424244, 'made while streaming')")
    cut = ReplicateCutover()
    c_in = cut.Inputs(**SIDES, replication="replicate")
    c_ctx = ctx_for("cutover")
    plan = cut.plan(c_ctx, c_in)
    assert any(c.resource == "3 large objects" for c in plan.changes)
    done = cut.apply(c_ctx, c_in, plan)
    assert "large_objects" in done.details["phases"]
    check = cut.verify(c_ctx, c_in, done)
    assert check.ok, check.summary
    digest = "SELECT oid::bigint, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1"
    assert cluster.sql(tgt, digest) == cluster.sql(src, digest) and len(cluster.sql(tgt, digest)) == 3
    cluster.sql(tgt, "SELECT lo_from_bytea(424245, 'made on the new side')")
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    assert cluster.sql(src, "SELECT convert_from(lo_get(424245), 'UTF8')") == [("made on the new side",)]
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


@pytest.mark.parametrize("mode", ["snapshot", "subscription"])
def test_materialized_views_are_filled_and_a_schema_difference_fails_the_cutover(pair, mode):
    """Logical replication carries no materialized view: start fills the ones the source has populated
    (subscription: a REFRESH after the schema-only copy; snapshot: the relay's post-data). The cutover's
    comparison covers the schema: an index the target lacks (DDL does not replicate) fails it, named."""
    cluster, src, tgt = pair
    cluster.sql(src, "CREATE MATERIALIZED VIEW public.rich AS SELECT owner, balance FROM public.accounts "
                     "WHERE balance > 400; CREATE INDEX ledger_note ON public.ledger (note)")
    ctx = ctx_for("replicate")
    start(ctx, replica_identity_full=["public.audit"], initial_copy=mode)
    assert cluster.sql(tgt, "SELECT relispopulated, (SELECT count(*) FROM public.rich) FROM pg_class "
                            "WHERE relname = 'rich'") == [(True, 100)]
    cluster.sql(tgt, "DROP INDEX public.ledger_note")
    cut = ReplicateCutover()
    c_in = cut.Inputs(**SIDES, replication="replicate")
    c_ctx = ctx_for("cutover")
    done = cut.apply(c_ctx, c_in, cut.plan(c_ctx, c_in))
    check = cut.verify(c_ctx, c_in, done)
    assert not check.ok and "index public.ledger_note: missing" in check.summary, check.summary
    undo = cut.rollback(c_ctx, c_in, done)
    assert cut.verify_rollback(c_ctx, c_in, done, undo).ok
    stop = ReplicateStop()
    st_in = stop.Inputs(**SIDES, replication="replicate")
    assert stop.verify(ctx, st_in, stop.apply(ctx, st_in, stop.plan(ctx, st_in))).ok


def test_preflight_names_tables_without_key_large_objects_and_wal_level(pair, pg, monkeypatch):
    cluster, src, tgt = pair
    cluster.sql(src, "SELECT lo_from_bytea(0, 'x')")
    kind = ReplicateStart()
    plan = kind.plan(ctx_for("replicate"), kind.Inputs(**SIDES))
    text = " ".join(plan.blocking)
    assert "public.audit" in text and "REPLICA IDENTITY FULL" in text
    assert "1 large objects" in text
    assert any("sequences" in w for w in plan.warnings)
    cluster.sql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rb_reader') "
                            "THEN CREATE ROLE rb_reader; END IF; END $$")
    cluster.sql(src, "GRANT SELECT ON public.ledger TO rb_reader")
    plan = kind.plan(ctx_for("replicate"), kind.Inputs(**SIDES))
    acl = next(w for w in plan.warnings if "ACLs are not carried" in w)
    assert "table public.ledger" in acl and "rb_reader=r/" in acl
    # The machine's own server runs wal_level = replica: refused with the fix.
    plain_src, plain_tgt = pg.create(), pg.create()
    monkeypatch.setenv("SRC_URL", pg.url(plain_src))
    monkeypatch.setenv("TGT_URL", pg.url(plain_tgt))
    plan = kind.plan(ctx_for("replicate"), kind.Inputs(**SIDES))
    assert any("wal_level is replica" in b and "ALTER SYSTEM SET wal_level = logical" in b for b in plan.blocking)


def test_preflight_refuses_heroku_and_role_without_replication(pair, monkeypatch):
    cluster, src, tgt = pair
    cluster.sql(src, "DROP TABLE public.audit")
    cluster.sql("postgres", "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plain_app') "
                            "THEN CREATE ROLE plain_app LOGIN; END IF; END $$")
    monkeypatch.setenv("SRC_URL", f"postgresql://plain_app@127.0.0.1:{cluster.port}/{src}")
    plan = ReplicateStart().plan(ctx_for("replicate"), ReplicateStart.Inputs(**SIDES))
    assert any("no REPLICATION privilege" in b and "ALTER ROLE plain_app REPLICATION" in b for b in plan.blocking)
    monkeypatch.setenv("SRC_URL", f"postgresql://postgres@127.0.0.1:{cluster.port}/{src}?application_name=x")
    src_ep = {"url": f"postgresql://postgres@127.0.0.1:{cluster.port}/{src}"}
    inputs = ReplicateStart.Inputs(source=src_ep, target="env:TGT_URL")
    plan = ReplicateStart().plan(ctx_for("replicate"), inputs)
    assert not plan.blocking
    # A Heroku Postgres source (recognised by Heroku's `heroku_ext` schema) is refused with the db.copy fallback.
    cluster.sql(src, "CREATE SCHEMA heroku_ext")
    plan = ReplicateStart().plan(ctx_for("replicate"), inputs)
    assert any("Heroku Postgres" in b and "db.copy" in b for b in plan.blocking)


def test_pooler_in_front_is_refused(pair, pgbouncer, pg, monkeypatch):
    plain = pg.create()
    monkeypatch.setenv("TGT_URL", pgbouncer.url(plain))
    plan = ReplicateStart().plan(ctx_for("replicate"), ReplicateStart.Inputs(**SIDES))
    assert plan.blocking and "in transaction mode detected" in plan.blocking[0]


KILLED_BOT = textwrap.dedent("""
    import sys, time
    from bot.steps.context import StepContext
    from bot.steps.db_replicate import ReplicateStart
    ctx = StepContext(run_id="killed-run", step_id="replicate", runbook_name="t", params={}, targets={}, outputs={})
    kind = ReplicateStart()
    inputs = kind.Inputs(source="env:SRC_URL", target="env:TGT_URL", replica_identity_full=["public.audit"])
    kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    print("streaming", flush=True)
    while True:
        time.sleep(1)
""")


def kill_bot_when(script: str, says: str) -> None:
    """Run a bot `script` in its own process and SIGKILL it as soon as it prints `says`."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        assert proc.stdout.readline().strip() == says
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def test_killed_bot_leaves_slot_next_start_reports_and_cleans(pair):
    cluster, src, tgt = pair
    kill_bot_when(KILLED_BOT, "streaming")
    left = replication.leftover_slots(cluster.endpoint(src))
    assert len(left) == 1
    # The next run (a different run id) reports the slot and the subscription and, on approval, drops them.
    cluster.sql(tgt, "SELECT 1")
    kind = ReplicateStart()
    inputs = kind.Inputs(**SIDES, replica_identity_full=["public.audit"])
    ctx = ctx_for("replicate", run_id="next-run")
    plan = kind.plan(ctx, inputs)
    drops = [c for c in plan.changes if c.action == "drop"]
    assert {c.resource for c in drops} == {f"source slot {left[0]['slot']}", f"target subscription {left[0]['slot']}"}
    assert "left by an earlier runbook-bot" in drops[0].detail
    # The target is not empty (the killed run's schema), so this plan is refused until emptied; clean only.
    assert any("not empty" in b for b in plan.blocking)
    for sub in plan.data["leftover_subscriptions"]:
        replication.stop(cluster.endpoint(src), cluster.endpoint(tgt), sub)
    assert replication.leftover_slots(cluster.endpoint(src)) == []
