"""db.copy against the real PostgreSQL on 127.0.0.1:5432: copy, verify, refuse, cancel, roll back.

Every database is created per test with a unique name and dropped after (tests/fixtures/postgres.py).
"Touches nothing" is proven by an independent fingerprint of each database (catalog listing plus an
ordered md5 of every table's rows, large objects, sequences), taken before and after.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pydantic
import pytest

from bot.platforms.postgres import tools
from bot.steps.base import PlanRefused, StepError
from bot.steps.context import Cancelled, StepContext
from bot.steps.db_copy import CopyInputs, DbCopy, DbPreflight
from tests.fixtures.postgres import build_rich_schema


def make_ctx(events: list | None = None, is_cancelled=lambda: False) -> StepContext:
    return StepContext(run_id="r1", step_id="copy-db", runbook_name="test", params={}, targets={}, outputs={},
                       is_cancelled=is_cancelled,
                       on_progress=(lambda **kw: events.append(kw)) if events is not None else (lambda **kw: None))


def inputs_for(pg, monkeypatch, src: str, tgt: str, **extra) -> CopyInputs:
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pg.url(tgt))
    return CopyInputs(source="env:SRC_URL", target={"env": "TGT_URL"}, **extra)


def fingerprint_db(pg, dbname: str) -> dict:
    """Independent of the code under test: every object, every row (ordered md5), LOs, sequences."""
    objects = pg.sql(dbname, """
        SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2""")
    rows = {}
    for schema, name, kind in objects:
        if kind == "r":
            rows[f"{schema}.{name}"] = pg.sql(
                dbname, f'SELECT count(*), md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) '
                        f'FROM "{schema}"."{name}" t')[0]
        if kind == "S":
            rows[f"{schema}.{name}"] = pg.sql(dbname, f'SELECT last_value, is_called FROM "{schema}"."{name}"')[0]
    return {
        "objects": objects,
        "rows": rows,
        "extensions": pg.sql(dbname, "SELECT extname, extversion FROM pg_extension ORDER BY 1"),
        "large_objects": pg.sql(dbname, "SELECT count(*) FROM pg_largeobject_metadata")[0][0],
        "functions": pg.sql(dbname, "SELECT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n "
                                    "ON n.oid = p.pronamespace WHERE n.nspname NOT IN ('pg_catalog', "
                                    "'information_schema') ORDER BY 1, 2"),
    }


def user_tables(pg, dbname: str) -> list[str]:
    return [r[0] for r in pg.sql(dbname, """
        SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1""")]


def strategies() -> list:
    params = ["relay", "parallel", "stream"]
    params.append(pytest.param("pgcopydb", marks=pytest.mark.skipif(
        tools.find_pgcopydb() is None, reason="pgcopydb not installed (optional strategy)")))
    return params


@pytest.mark.parametrize("strategy", strategies())
def test_copy_rich_schema_then_verify_passes(pg, monkeypatch, strategy):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    source_before = fingerprint_db(pg, src)
    events: list = []
    ctx = make_ctx(events)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, strategy=strategy)

    plan = kind.plan(ctx, inputs)
    assert plan.blocking == []
    assert plan.data["strategy"] == strategy
    assert plan.data["target_was_empty"] is True
    assert [row[0] for row in plan.table[1:]] == ["public.orders", "app.events", "public.nokey"]
    assert "citext" in plan.warnings[0] and "1 large objects" in plan.warnings[0]

    result = kind.apply(ctx, inputs, plan)
    assert result.outputs["strategy"] == strategy
    assert result.outputs["tables"] == 3
    assert result.outputs["rows"] == 3000 + 1500 + 6
    assert events and events[-1]["done"] == events[-1]["total"] and events[-1]["unit"] == "MiB"

    check = kind.verify(ctx, inputs, result)
    assert check.ok, check.summary
    assert "3 tables" in check.summary and "4506 rows" in check.summary

    # The copy is right by measures the step does not use.
    target_after = fingerprint_db(pg, tgt)
    assert target_after["rows"] == source_before["rows"]
    assert target_after["extensions"] == source_before["extensions"]
    assert target_after["large_objects"] == 1
    assert pg.sql(tgt, "SELECT convert_from(lo_get(doc), 'UTF8') FROM app.events WHERE id = 1") == [
        ("the signed contract, as a large object",)]
    # Sequences continue where the source left off: no duplicate key on the next insert.
    assert pg.sql(tgt, "SELECT nextval('app.invoice_no')") == [(1005,)]
    assert pg.sql(tgt, "INSERT INTO public.orders (customer, placed_at) VALUES ('new', now()) RETURNING id") == [(3001,)]
    citext_match = "SELECT count(*) FROM public.orders WHERE customer = 'CUSTOMER-1'"  # case-insensitive
    assert pg.sql(tgt, citext_match) == pg.sql(src, citext_match) != [(0,)]
    assert "public._runbook_bot_copy_incomplete" not in user_tables(pg, tgt)
    # The source was only read.
    assert fingerprint_db(pg, src) == source_before


def test_non_empty_target_is_refused_and_nothing_is_touched(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(tgt, "CREATE TABLE keep_me (x int); INSERT INTO keep_me VALUES (1), (2)")
    before = {src: fingerprint_db(pg, src), tgt: fingerprint_db(pg, tgt)}
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)

    plan = kind.plan(make_ctx(), inputs)
    assert len(plan.blocking) == 1
    assert "is not empty" in plan.blocking[0] and "keep_me" in plan.blocking[0]
    assert "overwrite: true" in plan.blocking[0]
    with pytest.raises(PlanRefused):
        kind.apply(make_ctx(), inputs, plan)
    assert {src: fingerprint_db(pg, src), tgt: fingerprint_db(pg, tgt)} == before


def test_overwrite_names_what_it_drops_then_copies_and_cannot_be_rolled_back(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(tgt, "CREATE SCHEMA legacy; CREATE TABLE legacy.old_orders (id int); CREATE TABLE public.stale (x int)")
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, overwrite=True)
    plan = kind.plan(make_ctx(), inputs)
    assert plan.blocking == []
    drops = [c.resource for c in plan.changes if c.action == "drop"]
    assert any("schema legacy" in d and "old_orders" in d for d in drops)
    assert any("schema public" in d and "stale" in d for d in drops)
    result = kind.apply(make_ctx(), inputs, plan)
    assert kind.verify(make_ctx(), inputs, result).ok
    assert "legacy.old_orders" not in user_tables(pg, tgt) and "public.stale" not in user_tables(pg, tgt)
    assert result.undo["target_was_empty"] is False
    assert kind.plan_rollback(make_ctx(), inputs, result).blocking
    with pytest.raises(StepError):
        kind.rollback(make_ctx(), inputs, result)


def test_rollback_of_a_copy_into_an_empty_target_empties_it(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    empty = fingerprint_db(pg, tgt)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)
    result = kind.apply(make_ctx(), inputs, kind.plan(make_ctx(), inputs))
    assert result.undo["target_was_empty"] is True
    undo_plan = kind.plan_rollback(make_ctx(), inputs, result)
    assert undo_plan.blocking == []
    assert {"schema app (6 objects; tables events)", "extensions citext, pgcrypto", "1 large objects"} <= {
        c.resource for c in undo_plan.changes}
    undo = kind.rollback(make_ctx(), inputs, result)
    assert "schema app" in undo.summary
    assert kind.verify_rollback(make_ctx(), inputs, result, undo).ok
    assert fingerprint_db(pg, tgt)["rows"] == empty["rows"] == {}
    assert fingerprint_db(pg, tgt)["extensions"] == empty["extensions"]


def _fake_tool(folder: Path, name: str, version: str, calls: Path) -> None:
    script = folder / name
    script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {calls}\n"
                      f"if [ \"$1\" = \"--version\" ]; then echo \"{name} (PostgreSQL) {version}\"; exit 0; fi\n"
                      f"exit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_pg_dump_older_than_the_source_is_refused_with_what_to_install(pg, monkeypatch, tmp_path):
    """Our version check, fed a fake pg_dump 13 against the 15 server through PG_BIN_DIR."""
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    _fake_tool(bin_dir, "pg_dump", "13.16", calls)
    _fake_tool(bin_dir, "pg_restore", "13.16", calls)
    monkeypatch.setenv("PG_BIN_DIR", str(bin_dir))
    before = {src: fingerprint_db(pg, src), tgt: fingerprint_db(pg, tgt)}
    server_major = int(pg.sql(src, "SHOW server_version_num")[0][0]) // 10000
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)

    plan = kind.plan(make_ctx(), inputs)
    assert len(plan.blocking) == 1, plan.blocking
    message = plan.blocking[0]
    assert f"pg_dump {server_major} or newer" in message and "13.16" in message
    assert f"apt-get install postgresql-client-{server_major}" in message and "PG_BIN_DIR" in message
    with pytest.raises(PlanRefused):
        kind.apply(make_ctx(), inputs, plan)
    assert {src: fingerprint_db(pg, src), tgt: fingerprint_db(pg, tgt)} == before
    assert all(line.endswith("--version") for line in calls.read_text().splitlines())  # never asked to dump


def test_cancel_stops_the_children_and_leaves_the_target_marked_incomplete(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(src, "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS a, md5((g+1)::text) AS b "
                "FROM generate_series(1, 100000) g")
    pg.sql(src, "ANALYZE")
    reported: list = []
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)
    plan = kind.plan(make_ctx(), inputs)
    # Abort as soon as the first progress report shows children at work.
    ctx = make_ctx(reported, is_cancelled=lambda: bool(reported))
    with pytest.raises(Cancelled):
        kind.apply(ctx, inputs, plan)
    assert reported and reported[0]["done"] < reported[0]["total"]

    # No child of ours is left, running or unreaped (a zombie keeps its name in /proc/<pid>/stat).
    children = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(p) == os.getpid()
                and _comm(p) in ("pg_dump", "pg_restore", "psql", "pgcopydb")]
    assert children == []
    assert pg.sql(tgt, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                       "AND application_name LIKE 'runbook-bot-copy-%%'") == [(0,)]
    assert "public._runbook_bot_copy_incomplete" in user_tables(pg, tgt)
    note = pg.sql(tgt, "SELECT note FROM public._runbook_bot_copy_incomplete")[0][0]
    assert "run r1 step copy-db" in note

    again = kind.plan(make_ctx(), inputs)
    assert any("a previous copy into the target did not finish" in b for b in again.blocking)
    # Recovery: overwrite drops the partial copy (the plan names the marker) and copies again.
    inputs = inputs_for(pg, monkeypatch, src, tgt, overwrite=True)
    plan = kind.plan(make_ctx(), inputs)
    assert any("incomplete-copy marker" in c.resource for c in plan.changes)
    result = kind.apply(make_ctx(), inputs, plan)
    assert kind.verify(make_ctx(), inputs, result).ok


def _ppid(proc: Path) -> int:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _comm(proc: Path) -> str:
    try:
        text = (proc / "stat").read_text()
    except OSError:
        return ""
    return text[text.index("(") + 1:text.rindex(")")]


def test_grants_run_after_the_copy(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt,
                        grants=["GRANT USAGE ON SCHEMA app TO pg_monitor",
                                "GRANT SELECT ON ALL TABLES IN SCHEMA app TO pg_monitor;"])
    plan = kind.plan(make_ctx(), inputs)
    assert [c.action for c in plan.changes] == ["copy", "grant"]
    kind.apply(make_ctx(), inputs, plan)
    assert pg.sql(tgt, "SELECT has_table_privilege('pg_monitor', 'app.events', 'SELECT'), "
                       "has_table_privilege('pg_monitor', 'public.orders', 'SELECT')") == [(True, False)]


def test_grants_to_a_missing_role_and_non_grant_statements_are_refused(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    inputs = inputs_for(pg, monkeypatch, src, tgt, grants=["GRANT SELECT ON ALL TABLES IN SCHEMA public TO nobody_here"])
    plan = DbCopy().plan(make_ctx(), inputs)
    assert any("role nobody_here does not exist on the target" in b for b in plan.blocking)
    with pytest.raises(pydantic.ValidationError, match="not a GRANT statement"):
        CopyInputs(source="env:A", target="env:B", grants=["DROP TABLE users"])
    with pytest.raises(pydantic.ValidationError, match="more than one statement"):
        CopyInputs(source="env:A", target="env:B", grants=["GRANT SELECT ON t TO a; DROP TABLE t"])


def test_tables_filter_copies_only_those_tables(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, tables=["orders", "public.nokey"])
    plan = kind.plan(make_ctx(), inputs)
    assert plan.blocking == [] and plan.data["tables"] == ["public.orders", "public.nokey"]
    result = kind.apply(make_ctx(), inputs, plan)
    assert user_tables(pg, tgt) == ["public.nokey", "public.orders"]
    assert kind.verify(make_ctx(), inputs, result).ok
    bad = inputs_for(pg, monkeypatch, src, tgt, tables=["public.nope"])
    assert any("not on the source: public.nope" in b for b in kind.plan(make_ctx(), bad).blocking)


def test_preflight_kind_is_read_only_and_fails_on_blocking(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    pg.sql(tgt, "CREATE TABLE t (x int)")
    kind = DbPreflight()
    assert kind.mutating is False
    inputs = inputs_for(pg, monkeypatch, src, tgt)
    plan = kind.plan(make_ctx(), inputs)
    assert plan.blocking
    with pytest.raises(StepError, match="not empty"):
        kind.apply(make_ctx(), inputs, plan)


def test_secrets_never_reach_the_plan_or_result(pg, monkeypatch):
    """The URL carries a password (trust auth ignores it): no plan or result field may show it."""
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    monkeypatch.setenv("SRC_URL", f"postgresql://postgres:SourcePassw0rd-xyz@127.0.0.1:5432/{src}")
    monkeypatch.setenv("TGT_URL", f"postgresql://postgres:TargetPassw0rd-xyz@127.0.0.1:5432/{tgt}")
    inputs = CopyInputs(source="env:SRC_URL", target="env:TGT_URL")
    kind = DbCopy()
    plan = kind.plan(make_ctx(), inputs)
    result = kind.apply(make_ctx(), inputs, plan)
    check = kind.verify(make_ctx(), inputs, result)
    dumped = plan.model_dump_json() + result.model_dump_json() + check.model_dump_json()
    assert "Passw0rd" not in dumped
    assert "postgresql://postgres:••••••@127.0.0.1:5432/" in plan.summary


def test_a_failing_restore_fails_the_step_leaves_the_marker_and_hides_row_data(pg, monkeypatch):
    """`tables: [app.events]` without the table its foreign key points at: the post-data restore
    fails for real (--exit-on-error), and the step says so without quoting rows."""
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, tables=["app.events"])
    plan = kind.plan(make_ctx(), inputs)
    assert plan.blocking == []
    with pytest.raises(StepError) as failure:
        kind.apply(make_ctx(), inputs, plan)
    message = str(failure.value)
    assert "marked incomplete" in message and "exited with status 1" in message
    assert 'relation "public.orders" does not exist' in message
    assert "public._runbook_bot_copy_incomplete" in user_tables(pg, tgt)


def test_error_lines_lose_their_row_data():
    from bot.platforms.postgres.copy import _without_row_data

    assert _without_row_data('CONTEXT:  COPY orders, line 5: "alice@example.com\t42"') == \
        'CONTEXT:  COPY orders, line 5: "…"'
    assert _without_row_data("DETAIL:  Key (email)=(alice@example.com) already exists.") == \
        "DETAIL:  Key (email)=(…) already exists."


def test_connection_limits_lower_the_jobs_or_refuse(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, jobs=4)
    pg.sql("postgres", f'ALTER DATABASE "{tgt}" CONNECTION LIMIT 5')
    plan = kind.plan(make_ctx(), inputs)
    assert plan.blocking == [] and plan.data["jobs"] == 2
    assert any("target has 5 free connections: jobs lowered from 4 to 2" in w for w in plan.warnings)
    pg.sql("postgres", f'ALTER DATABASE "{tgt}" CONNECTION LIMIT 1')
    plan = kind.plan(make_ctx(), inputs)
    assert any("target has 1 free connections" in b and "needs at least 2" in b for b in plan.blocking)


def test_a_failing_grant_applies_none_and_keeps_the_marker(pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, grants=["GRANT SELECT ON app.events TO pg_monitor",
                                                            "GRANT SELECT ON app.no_such_table TO pg_monitor"])
    plan = kind.plan(make_ctx(), inputs)
    with pytest.raises(StepError, match="no_such_table.*none of the grants was applied"):
        kind.apply(make_ctx(), inputs, plan)
    assert pg.sql(tgt, "SELECT has_table_privilege('pg_monitor', 'app.events', 'SELECT')") == [(False,)]
    assert "public._runbook_bot_copy_incomplete" in user_tables(pg, tgt)


KILLED_COPY = """
import os, sys
from bot.steps.db_copy import CopyInputs, DbCopy
from tests.test_db_copy import make_ctx
kind = DbCopy()
inputs = CopyInputs(source="env:SRC_URL", target="env:TGT_URL", strategy="relay", verify=False)
ctx = make_ctx()
kind.apply(ctx, inputs, kind.plan(ctx, inputs))
"""


def _children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_kill_9_of_the_bot_during_a_relay_copy_leaves_no_psql_running(pg, monkeypatch):
    import signal
    import subprocess
    import sys
    import time
    src, tgt = pg.create(), pg.create()
    pg.sql(src, "CREATE TABLE big (id int PRIMARY KEY, a text, b text, c text); INSERT INTO big SELECT g, "
                "md5(g::text), md5((g+1)::text), repeat(md5(g::text), 4) FROM generate_series(1, 600000) g")
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pg.url(tgt))
    proc = subprocess.Popen([sys.executable, "-c", KILLED_COPY], env={**os.environ})
    deadline, children = time.time() + 60, []
    while time.time() < deadline and proc.poll() is None:
        children = [c for c in _children_of(proc.pid) if "psql" in _cmdline(c)]
        if len(children) >= 2:
            break
        time.sleep(0.02)
    assert len(children) >= 2, "the relay's psql pair never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 1.0
    alive = children
    while alive and time.time() < deadline:
        alive = [c for c in alive if _cmdline(c)]          # a zombie's cmdline is empty
        time.sleep(0.05)
    assert alive == [], f"psql children outlived the bot: {alive}"
    # And nothing commits after the bot is gone (orphans would finish the COPY and COMMIT it).
    time.sleep(4)
    assert pg.sql(tgt, "SELECT count(*) FROM public.big") == [(0,)]


def test_kill_9_of_the_bot_during_an_index_build_stops_the_build_on_the_server(pg, monkeypatch):
    """The death signal ends the bot's pg_restore, but its backend would go on building the index (and
    commit it) until the statement ended: the session checks that its client is still there."""
    import signal
    import subprocess
    import sys
    import time
    src, tgt = pg.create(), pg.create()
    # An index that takes 3 s to build: 150 rows, 20 ms each. Small, so it is built in the final batch.
    pg.sql(src, "CREATE FUNCTION public.slow_key(int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.02); RETURN $1; END $$; "
                "CREATE TABLE slow (id int PRIMARY KEY); INSERT INTO slow SELECT generate_series(1, 150); "
                "CREATE INDEX slow_key_idx ON slow (public.slow_key(id))")
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pg.url(tgt))
    building = ("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND state = 'active' "
                "AND query LIKE 'CREATE INDEX slow_key_idx%%'")
    proc = subprocess.Popen([sys.executable, "-c", KILLED_COPY], env={**os.environ})
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and pg.sql(tgt, building, (tgt,)) == [(0,)]:
        time.sleep(0.05)
    assert pg.sql(tgt, building, (tgt,)) == [(1,)], "the index build never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = time.time()
    while time.time() < killed + 2.5 and pg.sql(tgt, building, (tgt,)) != [(0,)]:
        time.sleep(0.05)
    assert pg.sql(tgt, building, (tgt,)) == [(0,)], "the server went on building for a dead bot"
    time.sleep(max(0.0, killed + 3.5 - time.time()))      # past the moment the build would have ended
    assert pg.sql(tgt, "SELECT count(*) FROM pg_indexes WHERE indexname = 'slow_key_idx'") == [(0,)]


def test_a_scratch_dump_left_by_a_killed_copy_is_named_in_the_plan_and_removed(pg, monkeypatch, tmp_path):
    import subprocess
    import sys
    from bot.platforms.postgres import copy as pgcopy
    src, tgt = pg.create(), pg.create()
    pg.sql(src, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
    # A real abandoned folder: made by scratch_folder in a process that was then killed.
    child = subprocess.run([sys.executable, "-c", "import os, signal, sys; from bot.platforms.postgres import copy; "
                            f"print(copy.scratch_folder('dump', {str(tmp_path)!r}), flush=True); "
                            "os.kill(os.getpid(), signal.SIGKILL)"], capture_output=True, text=True)
    left = Path(child.stdout.strip())
    (left / "toc.dat").write_bytes(b"x" * 4096)
    live = pgcopy.scratch_folder("relay", str(tmp_path))           # this process's own: not touched
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, workdir=str(tmp_path))
    ctx = make_ctx()
    plan = kind.plan(ctx, inputs)
    assert any(str(left) in w and "interrupted copy" in w for w in plan.warnings)
    assert not any(live in w for w in plan.warnings)
    kind.apply(ctx, inputs, plan)
    assert not left.exists() and Path(live).exists()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _killed_with_a_grandchild(tmp_path: Path, *, watchdog_too: bool) -> tuple[str, int, int]:
    """A copy's Children in a process that then dies of SIGKILL, leaving a grandchild (a `sleep` forked
    by its child, as pg_restore -j forks workers): the scratch folder, the grandchild's PID and group."""
    import subprocess
    import sys
    script = ("import os, signal, subprocess; from bot.platforms.postgres import copy; "
              f"folder = copy.scratch_folder('relay', {str(tmp_path)!r}); "
              "kids = copy.Children(lambda n, l: None, folder); "
              "p = kids.start('x', ['sh', '-c', 'sleep 300 & echo $!; wait'], "
              "dict(os.environ, PGAPPNAME='runbook-bot-copy-test'), stdout=subprocess.PIPE); "
              "print(folder, p.stdout.readline().decode().strip(), p.pid, flush=True); "
              + ("os.kill(kids._watchdog.proc.pid, signal.SIGKILL); kids._watchdog.proc.wait(); " if watchdog_too else "")
              + "os.kill(os.getpid(), signal.SIGKILL)")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    folder, grandchild, group = child.stdout.split()
    return folder, int(grandchild), int(group)


def _in_group(pid: int, group: int) -> bool:
    """Alive and still the process we started (a reused PID would be in another group)."""
    try:
        return _alive(pid) and os.getpgid(pid) == group
    except ProcessLookupError:
        return False


def test_the_watchdog_kills_a_grandchild_the_moment_the_bot_dies(tmp_path):
    """The death signal reaches the bot's own children only; pg_restore -j's workers are grandchildren."""
    import time
    _folder, grandchild, group = _killed_with_a_grandchild(tmp_path, watchdog_too=False)
    deadline = time.time() + 5.0
    while _in_group(grandchild, group) and time.time() < deadline:
        time.sleep(0.05)
    assert not _in_group(grandchild, group)


def test_a_process_that_outlived_a_killed_copy_is_named_in_the_plan_and_stopped(pg, monkeypatch, tmp_path):
    """Should a grandchild outlive a kill -9 all the same (its watchdog killed first, here), its process
    group is on record in the scratch folder; the next copy names it and stops it."""
    import signal
    import subprocess
    import time
    src, tgt = pg.create(), pg.create()
    pg.sql(src, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)")
    folder, survivor, _group = _killed_with_a_grandchild(tmp_path, watchdog_too=True)
    # A process in a recorded group but without the copy's tag (a reused PID): never named, never killed.
    stranger = subprocess.Popen(["sleep", "300"], start_new_session=True,
                                env={k: v for k, v in os.environ.items() if k != "PGAPPNAME"})
    with open(Path(folder) / "process-groups", "a") as out:
        out.write(f"{stranger.pid}\n")
    try:
        assert _alive(survivor)
        kind = DbCopy()
        inputs = inputs_for(pg, monkeypatch, src, tgt, workdir=str(tmp_path))
        ctx = make_ctx()
        plan = kind.plan(ctx, inputs)
        warning = next(w for w in plan.warnings if folder in w)
        assert f"1 of its processes still running (pid {survivor}: sleep 300)" in warning
        kind.apply(ctx, inputs, plan)
        deadline = time.monotonic() + 5
        while _alive(survivor) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(survivor)
        assert stranger.poll() is None
        assert not Path(folder).exists()
    finally:
        stranger.kill()
        stranger.wait()
        if _alive(survivor):
            os.kill(survivor, signal.SIGKILL)


def test_rollback_of_an_interrupted_copy_empties_the_target_and_verifies(pg, monkeypatch):
    from bot.steps.base import Result
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(src, "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 100000) g")
    reported: list = []
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt)
    plan = kind.plan(make_ctx(), inputs)
    with pytest.raises(Cancelled):
        kind.apply(make_ctx(reported, is_cancelled=lambda: bool(reported)), inputs, plan)
    assert user_tables(pg, tgt)                                       # partial data and the marker
    failed = Result(summary="")                                      # what the engine has for a failed step
    undo_plan = kind.plan_rollback(make_ctx(), inputs, failed)
    assert not undo_plan.blocking and not undo_plan.no_op
    assert any("incomplete-copy marker" in c.resource for c in undo_plan.changes)
    undo = kind.rollback(make_ctx(), inputs, failed)
    assert kind.verify_rollback(make_ctx(), inputs, failed, undo).ok
    assert user_tables(pg, tgt) == []
    # Another run's rollback leaves a target it never wrote to alone.
    other = StepContext(run_id="r2", step_id="copy-db", runbook_name="test", params={}, targets={}, outputs={})
    pg.sql(tgt, "CREATE TABLE public.keep (x int)")
    assert kind.plan_rollback(other, inputs, failed).no_op
    kind.rollback(other, inputs, failed)
    assert user_tables(pg, tgt) == ["public.keep"]


def test_a_cancel_while_the_checksums_finish_stops_them_and_the_step(pg, monkeypatch):
    """The checksums may outlast the copy (the other strategies measure the target after the restore): a
    cancel then must end the step, cancel the queries in flight and leave the target marked incomplete."""
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    pg.sql(src, "CREATE TABLE public.bulk AS SELECT g AS id, md5(g::text) AS a FROM generate_series(1, 200000) g")
    kind = DbCopy()
    inputs = inputs_for(pg, monkeypatch, src, tgt, strategy="stream")
    reported: list = []
    ctx = make_ctx(reported, is_cancelled=lambda: any(e.get("phase") == "verify" for e in reported))
    plan = kind.plan(make_ctx(), inputs)
    with pytest.raises(Cancelled):
        kind.apply(ctx, inputs, plan)
    for db in (src, tgt):
        assert pg.sql(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                          "AND application_name LIKE 'runbook-bot-copy-%%'") == [(0,)]
    assert "public._runbook_bot_copy_incomplete" in user_tables(pg, tgt)


@pytest.mark.parametrize("strategy", strategies())
def test_toasted_values_are_written_with_lz4_unless_the_target_chose_its_compression(pg, monkeypatch, strategy):
    """auto: lz4 where the target's default_toast_compression is the built-in pglz nobody set; a database
    whose owner set it keeps its choice; `toast_compression: target` always keeps the target's own."""
    src, fresh, chosen, kept = pg.create(), pg.create(), pg.create(), pg.create()
    pg.sql(src, "CREATE TABLE public.docs (id int PRIMARY KEY, body text NOT NULL); "
                "INSERT INTO public.docs SELECT i, repeat('compressible ' || i, 800) FROM generate_series(1, 20) i")
    pg.sql("postgres", f'ALTER DATABASE "{chosen}" SET default_toast_compression = pglz')
    compression = "SELECT pg_column_compression(body), count(*) FROM public.docs GROUP BY 1"
    assert pg.sql(src, compression) == [("pglz", 20)]
    kind = DbCopy()
    for target, extra, expected in ((fresh, {}, "lz4"), (chosen, {}, "pglz"),
                                    (kept, {"toast_compression": "target"}, "pglz")):
        inputs = inputs_for(pg, monkeypatch, src, target, strategy=strategy, **extra)
        plan = kind.plan(make_ctx(), inputs)
        assert plan.blocking == []
        assert plan.data["toast_compression"] == ("lz4" if expected == "lz4" else None)
        assert any("compressed with lz4" in w for w in plan.warnings) is (expected == "lz4")
        result = kind.apply(make_ctx(), inputs, plan)
        assert pg.sql(target, compression) == [(expected, 20)], target
        assert kind.verify(make_ctx(), inputs, result).ok


def test_a_toast_compression_the_target_cannot_give_is_refused_by_name(pg):
    """A server built without lz4 offers only pglz: asking for lz4 is refused naming the field; auto
    quietly keeps the target's own; before 14 there is no such setting."""
    from dataclasses import replace

    from bot.platforms.postgres import preflight
    from bot.steps.db_copy import toast_compression

    facts = preflight.facts(pg.endpoint(pg.create()))
    assert facts.toast_compression[:2] == ["pglz", "default"] and "lz4" in facts.toast_compression[2]
    no_lz4 = replace(facts, toast_compression=["pglz", "default", ["pglz"]])
    value, line = toast_compression("lz4", no_lz4)
    assert value is False and "toast_compression: the target does not offer lz4" in line
    assert toast_compression("auto", no_lz4) == (None, "")
    old = replace(facts, toast_compression=None, server_version="13.9")
    value, line = toast_compression("lz4", old)
    assert value is False and "needs PostgreSQL 14+" in line and "13.9" in line
    assert toast_compression("auto", old) == (None, "")
    assert toast_compression("pglz", facts) == ("pglz", "")
    with pytest.raises(pydantic.ValidationError, match="toast_compression"):
        CopyInputs(source="env:SRC_URL", target="env:TGT_URL", toast_compression="zstd; DROP TABLE x")
