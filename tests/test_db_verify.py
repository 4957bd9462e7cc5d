"""Verification of a copy: it passes on a faithful copy and fails, naming the object and the measure,
on each planted divergence. One source is copied once for the module; each test plants its
divergence in a fresh clone of that copy (CREATE DATABASE ... TEMPLATE), so they cannot interfere.
"""

from __future__ import annotations

import os

import psycopg
import pytest

from bot.platforms.postgres import verify
from bot.steps.base import Result
from bot.steps.context import StepContext
from bot.steps.db_copy import CopyInputs, DbCopy
from tests.fixtures.postgres import Postgres, admin_conn, build_rich_schema


def ctx() -> StepContext:
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets={}, outputs={})


@pytest.fixture(scope="module")
def copied():
    """(server, source db, copied db, the apply Result) built once for the module."""
    server = Postgres()
    src, tgt = server.create(), server.create()
    try:
        build_rich_schema(server, src)
        os.environ["VERIFY_SRC_URL"], os.environ["VERIFY_TGT_URL"] = server.url(src), server.url(tgt)
        inputs = CopyInputs(source="env:VERIFY_SRC_URL", target="env:VERIFY_TGT_URL")
        kind = DbCopy()
        result = kind.apply(ctx(), inputs, kind.plan(ctx(), inputs))
        yield server, src, tgt, result
    finally:
        os.environ.pop("VERIFY_SRC_URL", None)
        os.environ.pop("VERIFY_TGT_URL", None)
        for name in server.created:
            server.drop(name)


@pytest.fixture
def clone(copied, monkeypatch, _pg_dropper):
    """A fresh copy of the copied target, and how to verify it (with or without stored source measures)."""
    server, src, tgt, result = copied
    name = server.create(prefix="rbt_clone", template=tgt)
    monkeypatch.setenv("VERIFY_SRC_URL", server.url(src))
    monkeypatch.setenv("VERIFY_CLONE_URL", server.url(name))
    inputs = CopyInputs(source="env:VERIFY_SRC_URL", target="env:VERIFY_CLONE_URL")

    class Clone:
        db = name

        def sql(self, statement: str) -> None:
            server.sql(name, statement)

        def verify(self, stored: bool = True):
            res = result if stored else Result(summary=result.summary, undo=result.undo)
            return DbCopy().verify(ctx(), inputs, res)

    yield Clone()
    server.created.remove(name)
    _pg_dropper(server, name)


@pytest.mark.parametrize("stored", [True, False], ids=["snapshot-measures", "live-source"])
def test_a_faithful_copy_verifies(clone, stored):
    check = clone.verify(stored)
    assert check.ok, check.summary
    assert check.details["tables"] == 3 and check.details["rows"] == 4506


@pytest.mark.parametrize("stored", [True, False], ids=["snapshot-measures", "live-source"])
def test_a_changed_row_fails_on_the_checksum(clone, stored):
    clone.sql("UPDATE public.orders SET payload = jsonb_set(payload, '{nested,list,0}', '0') WHERE id = 42")
    check = clone.verify(stored)
    assert not check.ok
    assert check.details["mismatches"] == [
        {"kind": "table", "name": "public.orders", "measure": "checksum",
         "source": check.details["mismatches"][0]["source"], "target": check.details["mismatches"][0]["target"]}]
    assert "public.orders: checksum differs" in check.summary
    assert check.table[0] == ["kind", "name", "measure", "source", "target"]


def test_a_tiny_numeric_change_fails(clone):
    clone.sql("UPDATE public.orders SET total = total + 0.000001 WHERE id = 7")
    check = clone.verify()
    assert [(m["name"], m["measure"]) for m in check.details["mismatches"]] == [("public.orders", "checksum")]


def test_a_missing_row_fails_on_the_count(clone):
    clone.sql("DELETE FROM app.events WHERE id = 7")
    check = clone.verify()
    assert not check.ok
    assert [(m["name"], m["measure"], m["source"], m["target"]) for m in check.details["mismatches"]] == [
        ("app.events", "rows", "1500", "1499")]


def test_a_sequence_left_at_one_fails(clone):
    clone.sql("SELECT setval('app.invoice_no', 1, false)")
    check = clone.verify()
    assert not check.ok
    assert [(m["kind"], m["name"], m["measure"], m["source"], m["target"]) for m in check.details["mismatches"]] == [
        ("sequence", "app.invoice_no", "last_value", "1004", "1 (not called)")]


def test_a_missing_extension_fails(clone):
    clone.sql("DROP EXTENSION pgcrypto")
    check = clone.verify()
    assert not check.ok
    assert [(m["kind"], m["name"], m["measure"]) for m in check.details["mismatches"]] == [
        ("extension", "pgcrypto", "missing")]


def test_a_missing_large_object_fails(clone):
    clone.sql("SELECT lo_unlink(doc) FROM app.events WHERE doc IS NOT NULL")
    check = clone.verify()
    assert [(m["kind"], m["source"], m["target"]) for m in check.details["mismatches"]] == [("large_objects", "1", "0")]


def test_a_missing_table_and_an_extra_table_fail(clone):
    clone.sql("DROP TABLE public.nokey; CREATE TABLE public.surprise (x int)")
    check = clone.verify()
    assert {(m["name"], m["measure"]) for m in check.details["mismatches"]} == {
        ("public.nokey", "missing"), ("public.surprise", "extra")}


def test_the_incomplete_marker_fails_verification(clone):
    clone.sql("CREATE TABLE public._runbook_bot_copy_incomplete (note text)")
    check = clone.verify()
    assert [m["kind"] for m in check.details["mismatches"]] == ["copy"]


@pytest.mark.parametrize("method", verify.METHODS)
def test_session_settings_are_pinned_so_server_defaults_do_not_matter(clone, copied, method):
    """Different TimeZone/DateStyle/extra_float_digits/bytea_output on the target database still verify,
    because both sides pin them; without pinning the same table checksums differently."""
    server = copied[0]
    with admin_conn() as conn:
        for setting, value in (("TimeZone", "Asia/Kolkata"), ("DateStyle", "SQL, DMY"),
                               ("extra_float_digits", "0"), ("bytea_output", "escape"),
                               ("IntervalStyle", "sql_standard")):
            conn.execute(f'ALTER DATABASE "{clone.db}" SET {setting} = \'{value}\'')
    assert clone.verify().ok
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname=clone.db) as raw:
        unpinned = raw.execute(verify.checksum_sql("public.orders", verify.row_hash(raw, "public.orders", method))
                               ).fetchone()
    pinned = verify.measure_tables(server.endpoint(clone.db), ["public.orders"], method=method)["public.orders"]
    assert unpinned[0] == pinned[0] and unpinned[1] != pinned[1]


def test_a_case_change_in_a_citext_column_fails(clone):
    """citext's own equality (and hash) ignores case; the checksum must not."""
    clone.sql("UPDATE public.orders SET customer = upper(customer::text) WHERE id = 5")
    check = clone.verify()
    assert [(m["name"], m["measure"]) for m in check.details["mismatches"]] == [("public.orders", "checksum")]


@pytest.mark.parametrize("method", verify.METHODS)
def test_both_methods_agree_on_equal_and_differ_on_changed(copied, method):
    server, src, tgt, _ = copied
    a, b = verify.measure_both(server.endpoint(src), server.endpoint(tgt), jobs=2, method=method)
    assert verify.compare(a, b).ok
    changed = server.create(prefix="rbt_clone", template=tgt)
    server.sql(changed, "UPDATE app.events SET at = at + interval '1 microsecond' WHERE id = 3")
    a, b = verify.measure_both(server.endpoint(src), server.endpoint(changed), jobs=2, method=method)
    assert [(m.name, m.measure) for m in verify.compare(a, b).mismatches] == [("app.events", "checksum")]


# (column type, value before, value after): values that compare equal or hash alike by their type's own
# rules but are not the same data, a NULL that moves between columns, two columns that swap values.
LOOK_ALIKES = [
    ("numeric", "1.0", "1.00"), ("citext", "'a'", "'A'"), ("float8", "'0'", "'-0'"),
    ("interval", "'1 day'", "'24 hours'"), ("jsonb", """'{"n": 1.0}'""", """'{"n": 1.00}'"""),
    ("timestamptz", "'2024-11-03 01:30-04'", "'2024-11-03 01:30-05'"), ("text", "''", "NULL"),
    ("bytea", "'\\x00'", "'\\x0000'"), ("bpchar", "'a'", "'b'"), ("date", "'2024-01-01'", "'2024-01-02'"),
    ("bool", "true", "false"), ("int8", "NULL", "0"),
]


@pytest.mark.parametrize("method", verify.METHODS)
def test_every_method_tells_apart_values_that_only_compare_equal(method, _pg_dropper):
    """Each table holds one row (x, y); changing it to a look-alike, moving a NULL from x to y or
    swapping x and y must change the table's checksum and nothing else."""
    server = Postgres()
    db = server.create()
    try:
        tables = []
        statements = ["CREATE EXTENSION citext", "SET TimeZone = 'America/New_York'"]
        for i, (type_name, before, after) in enumerate(LOOK_ALIKES):
            statements += [f"CREATE TABLE public.a{i} (x {type_name}, y {type_name})",
                           f"INSERT INTO public.a{i} VALUES ({before}, {before})"]
            tables.append((f"public.a{i}", f"UPDATE public.a{i} SET x = {after}"))
        statements += ["CREATE TABLE public.moved (x int, y int)", "INSERT INTO public.moved VALUES (NULL, 5)",
                       "CREATE TABLE public.swapped (x text, y text)", "INSERT INTO public.swapped VALUES ('p', 'q')"]
        tables += [("public.moved", "UPDATE public.moved SET x = 5, y = NULL"),
                   ("public.swapped", "UPDATE public.swapped SET x = y, y = x")]
        server.sql(db, "; ".join(statements))
        names = [name for name, _ in tables]
        before = verify.measure_tables(server.endpoint(db), names, method=method)
        server.sql(db, "; ".join(change for _, change in tables))
        after = verify.measure_tables(server.endpoint(db), names, method=method)
        assert all(before[name][0] == after[name][0] == 1 for name in names)
        assert [name for name in names if before[name][1] == after[name][1]] == []
    finally:
        _pg_dropper(server, db)
