"""The realistic source of benchmarks/db_copy.py (issue 14), small: it holds what the issue names, it is
deterministic, and db.copy copies and verifies it, catching a real difference in it (real PostgreSQL).
"""

from __future__ import annotations

from benchmarks._realistic_source import GRANTS, generate, table_sizes
from bot.steps.db_copy import DbCopy
from tests.fixtures.postgres import HOST, PORT, USER
from tests.test_db_copy import fingerprint_db, inputs_for, make_ctx

# ACLs read straight from the catalog (not through the code under test).
ACLS = """
    SELECT n.nspname || '.' || c.relname, c.relacl::text[] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relacl IS NOT NULL AND n.nspname IN ('public', 'app')
    UNION ALL SELECT 'schema ' || nspname, nspacl::text[] FROM pg_namespace WHERE nspname = 'app' ORDER BY 1"""


def test_the_source_holds_what_issue_14_names_and_is_deterministic(pg):
    src, again = pg.create("rbt_real"), pg.create("rbt_real")
    seconds, data_bytes = generate(src, 5, HOST, PORT, USER)
    generate(again, 5, HOST, PORT, USER)
    assert fingerprint_db(pg, src)["rows"] == fingerprint_db(pg, again)["rows"]
    assert 4e6 < data_bytes < 8e6

    sizes = table_sizes(src, HOST, PORT, USER)
    # The issue's shares of the bytes, roughly (partitions' and TOAST's fixed pages weigh at this size).
    for table, share in {"pgbench_accounts": 0.35, "events": 0.30, "documents": 0.20, "pgbench_history": 0.10}.items():
        assert abs(sizes[table] / data_bytes - share) < 0.08, (table, sizes[table] / data_bytes)
    one = lambda sql: pg.sql(src, sql)[0][0]  # noqa: E731
    # pgbench's history has no primary key; pgbench's foreign keys are there.
    assert one("SELECT count(*) FROM pg_constraint WHERE conrelid = 'pgbench_history'::regclass AND contype = 'p'") == 0
    # (counted on the tables declared; partitions carry clones of the partitioned table's constraints)
    declared = ("SELECT count(*) FROM pg_constraint WHERE conparentid = 0 AND coninhcount = 0 AND conrelid <> 0 "
                "AND contype = '{}'")
    assert one(declared.format("f")) == 6
    assert one(declared.format("c")) == 4
    # Range partitions by month, each holding rows.
    assert one("SELECT count(*) FROM pg_inherits WHERE inhparent = 'app.events'::regclass") == 7
    assert one("SELECT count(DISTINCT tableoid) FROM app.events") == 6
    # TOAST: out-of-line, incompressible bytea; the text compressed.
    assert one("SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = 'app.documents'::regclass") > 0.5 * \
        sizes["documents"]
    assert one("SELECT bool_and(pg_column_size(body) < octet_length(body) / 4) FROM app.documents")
    assert one("SELECT bool_and(raw_sha256 = digest(raw, 'sha256') AND octet_length(raw) = 4096) FROM app.documents")
    # Identity and serial columns, citext, the trigger's rows, a populated materialized view with an index.
    assert pg.sql(src, "SELECT attrelid::regclass::text, attidentity FROM pg_attribute WHERE attidentity <> '' "
                       "ORDER BY 1") == [("app.customers", "d"), ("app.documents", "a")]
    assert one("SELECT format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'app.customers'::regclass "
               "AND attname = 'email'") == "citext"
    assert one("SELECT count(*) FROM app.customers WHERE email = 'customer7@example.com'") == 1
    assert one("SELECT count(*) FROM app.account_audit") > 400
    assert one("SELECT relispopulated FROM pg_class WHERE oid = 'app.branch_totals'::regclass")
    assert one("SELECT count(*) FROM pg_indexes WHERE tablename = 'branch_totals'") == 1
    assert one("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal") == 1
    # Sequences advanced, large objects, grants on the schema and tables to both roles.
    assert pg.sql(src, "SELECT last_value FROM app.invoice_no") == [(1041,)]
    assert one("SELECT count(*) FROM pg_largeobject_metadata") == 5
    acls = dict(pg.sql(src, ACLS))
    assert any(a.startswith("bench_reader=U/") for a in acls["schema app"])
    assert any(a.startswith("bench_writer=arw/") for a in acls["public.pgbench_accounts"])


def test_db_copy_copies_and_verifies_it_and_names_a_difference_in_it(pg, monkeypatch):
    src, tgt = pg.create("rbt_real"), pg.create("rbt_real")
    generate(src, 5, HOST, PORT, USER)
    source = fingerprint_db(pg, src)
    kind, ctx = DbCopy(), make_ctx()
    inputs = inputs_for(pg, monkeypatch, src, tgt, grants=GRANTS)
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == []
    result = kind.apply(ctx, inputs, plan)
    check = kind.verify(ctx, inputs, result)
    assert check.ok, check.summary
    assert "schema equal" in check.summary and "5 sequences" in check.summary

    # Right by measures the step does not use: rows, objects, sequences, large objects, ACLs.
    target = fingerprint_db(pg, tgt)
    assert {k: v for k, v in target["rows"].items() if "_runbook_bot" not in k} == source["rows"]
    assert target["large_objects"] == 5 and target["extensions"] == source["extensions"]
    assert pg.sql(tgt, ACLS) == pg.sql(src, ACLS)

    # A real difference: one byte of one TOASTed value, one row of the table without a key.
    pg.sql(tgt, "UPDATE app.documents SET raw = overlay(raw placing '\\x00' from 2000) WHERE id = 3")
    pg.sql(tgt, "DELETE FROM pgbench_history WHERE ctid = (SELECT min(ctid) FROM pgbench_history)")
    check = kind.verify(ctx, inputs, result)
    assert not check.ok
    named = {(m["kind"], m["name"], m["measure"]) for m in check.details["mismatches"]}
    assert ("table", "app.documents", "checksum") in named
    assert ("table", "public.pgbench_history", "rows") in named

    # The target works like the source: the trigger, the serial and the identity continue past the copied rows.
    audits = pg.sql(src, "SELECT max(id) FROM app.account_audit")[0][0]
    pg.sql(tgt, "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1000")
    assert pg.sql(tgt, "SELECT id, aid FROM app.account_audit WHERE id > %s", (audits,)) == [(audits + 1, 1000)]
    docs = pg.sql(src, "SELECT count(*) FROM app.documents")[0][0]
    assert pg.sql(tgt, "INSERT INTO app.documents (title, body, raw) VALUES ('t', 'b', '\\x01') RETURNING id") == [
        (docs + 1,)]
