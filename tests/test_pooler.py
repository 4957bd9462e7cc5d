"""PgBouncer detection with a real PgBouncer (transaction mode) in front of the real PostgreSQL."""

from __future__ import annotations

import re

import pytest

from bot import secrets
from bot.platforms.postgres import connect, pooler
from bot.steps.base import PlanRefused
from bot.steps.context import StepContext
from bot.steps.db_copy import CopyInputs, DbCopy
from tests.fixtures.postgres import build_rich_schema


def ctx() -> StepContext:
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets={}, outputs={})


def test_a_direct_connection_fires_no_signal(pg):
    db = pg.create()
    report = pooler.detect(pg.endpoint(db))
    assert report.detected is False
    assert report.signals == [] and report.direct is None


def test_pgbouncer_is_detected_by_three_signals_and_the_direct_endpoint_is_named(pg, pgbouncer):
    db = pg.create()
    report = pooler.detect(pgbouncer.endpoint(db))
    assert report.detected is True
    assert report.signals == ["backend_pid", "admin_console", "startup_options"]
    assert report.direct == "127.0.0.1:5432"
    assert report.pool_mode == "transaction"
    assert "PgBouncer" in (report.version or "")
    assert re.search(r"^PgBouncer [\d.]+ in transaction mode detected \(", report.describe())


def test_a_session_mode_pgbouncer_is_reported_as_session_mode(pg, pgbouncer_session, monkeypatch):
    src, tgt = pg.create(), pg.create()
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pgbouncer_session.url(tgt))
    plan = DbCopy().plan(ctx(), CopyInputs(source="env:SRC_URL", target="env:TGT_URL"))
    assert len(plan.blocking) == 1
    assert "in session mode detected" in plan.blocking[0]
    assert "transaction" not in plan.blocking[0]


def test_the_copy_plan_refuses_a_target_behind_pgbouncer_and_touches_nothing(pg, pgbouncer, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pgbouncer.url(tgt))
    inputs = CopyInputs(source="env:SRC_URL", target="env:TGT_URL")
    kind = DbCopy()
    plan = kind.plan(ctx(), inputs)
    assert len(plan.blocking) == 1
    message = plan.blocking[0]
    assert message.startswith(f"target postgresql://postgres@127.0.0.1:{pgbouncer.port}/{tgt}: PgBouncer ")
    assert "in transaction mode detected" in message
    assert "connect directly to 127.0.0.1:5432" in message
    with pytest.raises(PlanRefused):
        kind.apply(ctx(), inputs, plan)
    assert pg.sql(tgt, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = 'public'") == [(0,)]


def test_the_app_url_behind_a_transaction_pooler_gets_a_warning(pg, pgbouncer, monkeypatch):
    src, tgt = pg.create(), pg.create()
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pg.url(tgt))
    monkeypatch.setenv("APP_URL", pgbouncer.url(tgt))
    pooled = DbCopy().plan(ctx(), CopyInputs(source="env:SRC_URL", target="env:TGT_URL", app_url="env:APP_URL"))
    assert pooled.blocking == []
    warning = [w for w in pooled.warnings if "app's database URL" in w]
    assert len(warning) == 1
    assert "transaction mode" in warning[0] and "statement_cache_size=0" in warning[0]
    assert "prepare_threshold=None" in warning[0] and "127.0.0.1:5432" in warning[0]
    direct = DbCopy().plan(ctx(), CopyInputs(source="env:SRC_URL", target="env:TGT_URL", app_url="env:TGT_URL"))
    assert not [w for w in direct.warnings if "app's database URL" in w]


def test_endpoint_display_masks_the_password_and_repr_omits_it():
    ep = connect.parse_url("postgresql://app:Sup3r-secret@db.example.com:6543/orders?sslmode=require", label="x")
    assert ep.display() == "postgresql://app:••••••@db.example.com:6543/orders?sslmode=require"
    assert "Sup3r-secret" not in repr(ep)
    assert secrets.redact("oops Sup3r-secret") == "oops ••••••"
    assert ep.libpq_env()["PGPASSWORD"] == "Sup3r-secret" and ep.libpq_env()["PGSSLMODE"] == "require"
    assert (ep.host, ep.port, ep.dbname, ep.user) == ("db.example.com", 6543, "orders", "app")


def test_digitalocean_pooled_port_hint_names_the_direct_port():
    ep = connect.Endpoint(host="db-x.ondigitalocean.com", port=25061, dbname="pool", user="doadmin")
    report = pooler.PoolerReport(detected=False)
    pooler._hints(ep, report)
    assert report.direct == "db-x.ondigitalocean.com:25060" and report.hints
