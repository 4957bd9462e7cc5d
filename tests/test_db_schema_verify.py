"""db.copy's verification covers the schema: each dropped or altered object is named (real PostgreSQL)."""

from __future__ import annotations

from bot.steps.db_copy import CopyInputs, DbCopy
from tests.fixtures.postgres import build_rich_schema
from tests.test_db_copy import inputs_for, make_ctx

EXTRA = """
CREATE INDEX orders_day_idx ON public.orders (day);
ALTER TABLE public.orders ADD CONSTRAINT total_positive CHECK (total > 0);
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.kind := lower(NEW.kind); RETURN NEW; END $$;
CREATE TRIGGER events_touch BEFORE INSERT ON app.events FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE MATERIALIZED VIEW app.kinds AS SELECT kind, count(*) AS n FROM app.events GROUP BY kind;
ALTER TABLE public.orders ALTER COLUMN day SET DEFAULT current_date;
DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rbt_reader') THEN CREATE ROLE rbt_reader; END IF; END $$;
GRANT SELECT ON public.orders TO rbt_reader;
GRANT USAGE ON SCHEMA app TO rbt_reader;
"""


def copied(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(src, EXTRA)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)
    ctx = make_ctx()
    plan = kind.plan(ctx, inputs)
    result = kind.apply(ctx, inputs, plan)
    return kind, inputs, ctx, plan, result, src, tgt


def test_plan_warns_acls_dropped_and_clean_copy_verifies_schema_equal(pg, monkeypatch):
    kind, inputs, ctx, plan, result, src, tgt = copied(pg, monkeypatch)
    acl_warning = next(w for w in plan.warnings if "no `grants:` given" in w)
    assert "table public.orders" in acl_warning and "rbt_reader=r/" in acl_warning and "schema app" in acl_warning
    check = kind.verify(ctx, inputs, result)
    assert check.ok, check.summary
    assert "schema equal" in check.summary
    # The target was analysed inside the copy: statistics exist for every copied table.
    unanalysed = pg.sql(tgt, "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
                             "WHERE last_analyze IS NULL AND relname NOT LIKE '\\_runbook%'")
    assert unanalysed == [] and "analyse" in result.details["phases"]
    assert "not carried" in check.summary and any("public.orders" in x for x in check.details["acls_not_carried"])


def test_each_schema_difference_is_named(pg, monkeypatch):
    kind, inputs, ctx, plan, result, src, tgt = copied(pg, monkeypatch)
    pg.sql(tgt, """
        DROP INDEX public.orders_day_idx;
        ALTER TABLE public.orders DROP CONSTRAINT total_positive;
        ALTER TABLE app.events DROP CONSTRAINT events_order_id_fkey;
        DROP TRIGGER events_touch ON app.events;
        REFRESH MATERIALIZED VIEW app.kinds WITH NO DATA;
        ALTER TABLE public.orders ALTER COLUMN day DROP DEFAULT;
        CREATE OR REPLACE VIEW app.order_totals AS SELECT customer, sum(total) + 0 AS total FROM public.orders GROUP BY customer;
        CREATE OR REPLACE FUNCTION app.digest_of(t text) RETURNS text LANGUAGE sql AS $$ SELECT 'changed' $$;
    """)
    check = kind.verify(ctx, inputs, result)
    assert not check.ok
    named = {(m["kind"], m["name"], m["measure"]) for m in check.details["mismatches"]}
    assert ("index", "public.orders_day_idx", "missing") in named
    assert ("constraint", "public.orders.total_positive", "missing") in named
    assert ("constraint", "app.events.events_order_id_fkey", "missing") in named
    assert ("trigger", "app.events.events_touch", "missing") in named
    assert ("materialized view", "app.kinds", "definition") in named
    assert ("column default", "public.orders.day", "missing") in named
    assert ("view", "app.order_totals", "definition") in named
    assert ("function", "app.digest_of(t text)", "definition") in named
    assert "not populated" in str(check.details["mismatches"])


def test_with_grants_verification_names_each_acl_item_the_target_lacks(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(src, EXTRA)
    kind, ctx = DbCopy(), make_ctx()
    # The operator carries the table's grant but forgets the schema's USAGE.
    inputs = inputs_for(pg, monkeypatch, src, tgt, grants=["GRANT SELECT ON public.orders TO rbt_reader"])
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    check = kind.verify(ctx, inputs, result)
    assert "grants: 1 ACL items of the source not on the target, e.g. schema app: rbt_reader=U" in check.summary
    assert "public.orders" not in check.summary.split("grants:")[1]
    assert check.details["acls_not_carried"] == ["schema app: rbt_reader=U"]
    # Both carried: nothing is named.
    pg.sql(tgt, "GRANT USAGE ON SCHEMA app TO rbt_reader")
    again = kind.verify(ctx, inputs, result)
    assert "grants: every ACL item of the source is on the target" in again.summary
    assert again.details["acls_not_carried"] == []
