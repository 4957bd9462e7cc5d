"""What only the PostgreSQL store has: a server to lose, a password in its URL, replicas that start
together. The interface itself runs on both backends in the engine's own tests (`store_where`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from bot.engine import store_pg_schema
from bot.engine.store import open_store
from bot.engine.store_faults import StoreFault
from bot.engine.store_migrations import LATEST
from bot.engine.store_pg_schema import MIGRATIONS, PgMigration
from bot.engine.runner import Runner
from tests.fixtures.postgres import admin_conn

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Zq9-store-password-never-shown"


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _with_password(url: str) -> str:
    return url.replace("postgres@", f"postgres:{PASSWORD}@")  # trust auth: any password is accepted


def _raw(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)


def test_an_unreachable_store_is_one_line_naming_the_server_never_the_password():
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{_closed_port()}/runbook_bot"
    with pytest.raises(StoreFault) as caught:
        open_store(url)
    message = str(caught.value)
    assert message.startswith(f"postgresql://postgres@127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}/runbook_bot: "
                              "cannot connect to the PostgreSQL store")
    assert "RUNBOOK_BOT_DB" in message and "\n" not in message and PASSWORD not in message

    cli = subprocess.run([sys.executable, "-m", "bot", "status"], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "RUNBOOK_BOT_DB": url, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert cli.returncode != 0
    assert "cannot connect to the PostgreSQL store" in cli.stderr and "Traceback" not in cli.stderr
    assert PASSWORD not in cli.stdout + cli.stderr


def test_the_password_reaches_no_path_no_row_and_no_cli_output(pg_store_url, tmp_path):
    url = _with_password(pg_store_url)
    store = open_store(url)
    assert store.path == pg_store_url and PASSWORD not in store.path
    path = tmp_path / "rb.yaml"
    path.write_text(f"""
name: leak
approvals: {{default: {{approvers: ["alice"]}}}}
params: {{note: {{default: "x"}}}}
steps:
  - id: only
    kind: test.touch
    with: {{path: "{tmp_path / 'out.txt'}", line: "{{{{ params.note }}}}"}}
""")
    run = Runner(store).start(path, {"note": f"the store is {url}"}, started_by="dave", front_end="console")
    cli = subprocess.run([sys.executable, "-m", "bot", "status", run.id, "--json"], cwd=ROOT, capture_output=True,
                         text=True, env={**os.environ, "RUNBOOK_BOT_DB": url, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert run.id in cli.stdout and PASSWORD not in cli.stdout + cli.stderr
    with _raw(pg_store_url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        dumped = "".join(str(row) for table in tables for row in conn.execute(f"SELECT * FROM {table}"))
    assert "the store is" in dumped and PASSWORD not in dumped


def test_a_store_newer_than_the_bot_is_refused_and_left_untouched(pg_store_url):
    open_store(pg_store_url).close()
    with _raw(pg_store_url) as conn:
        conn.execute("UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(LATEST + 3),))
        before = conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace").fetchone()
    with pytest.raises(StoreFault, match=rf"store schema {LATEST + 3} is newer than this bot \({LATEST}\): upgrade"):
        open_store(pg_store_url)
    with _raw(pg_store_url) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == str(LATEST + 3)
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"
                            ).fetchone() == before


def test_a_failing_migration_rolls_back_whole_and_names_itself(pg_store_url):
    open_store(pg_store_url).close()

    def half_then_fail(conn):
        conn.execute("CREATE TABLE half_made (x int)")
        conn.execute("ALTER TABLE runs ADD COLUMN half_column text")
        conn.execute("SELECT no_such_function()")

    broken = (*MIGRATIONS, PgMigration(LATEST + 1, "a change that fails half-way", half_then_fail))
    with _raw(pg_store_url) as conn:
        with pytest.raises(StoreFault, match=rf"schema migration {LATEST + 1} \(a change that fails half-way\) failed"
                                             rf".*stays at version {LATEST}") as caught:
            store_pg_schema.migrate(conn, "the store", broken)
        assert "\n" not in str(caught.value)  # one line, as every store message
        assert conn.execute("SELECT to_regclass('half_made')").fetchone()[0] is None
        columns = [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns"
                                              " WHERE table_name = 'runs'")]
        assert "half_column" not in columns
        assert store_pg_schema.stored_version(conn) == LATEST


def test_replicas_starting_together_on_an_empty_database_migrate_it_once(pg_store_url):
    barrier, versions, errors = threading.Barrier(6), [], []

    def start():
        barrier.wait()
        try:
            store = open_store(pg_store_url)
            versions.append(store.schema_version)
            store.close()
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and versions == [LATEST] * 6
    with _raw(pg_store_url) as conn:
        assert conn.execute("SELECT count(*) FROM meta WHERE key = 'schema_version'").fetchone()[0] == 1


def _terminate(pid: int) -> None:
    with admin_conn() as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def _started_run(store, tmp_path):
    path = tmp_path / "rb.yaml"
    path.write_text(f"""
name: lost
approvals: {{default: {{approvers: ["alice"]}}}}
steps:
  - id: only
    kind: test.touch
    with: {{path: "{tmp_path / 'out.txt'}", line: "x"}}
""")
    return Runner(store).start(path, {}, started_by="dave", front_end="console")


@pytest.mark.parametrize("lost, says", [
    ("mid-body", "unreachable .*nothing was recorded"),
    ("at commit", "while committing .*may or may not be recorded"),  # an unknown outcome, not a failure
])
def test_a_connection_lost_in_a_transaction_records_nothing_and_says_what_is_known(pg_store_url, tmp_path, lost,
                                                                                  says):
    store = open_store(pg_store_url)
    run = _started_run(store, tmp_path)
    with pytest.raises(StoreFault, match=says):
        with store.transaction() as conn:
            conn.execute("UPDATE runs SET error = ? WHERE id = ?", ("half", run.id))
            _terminate(conn.raw.info.backend_pid)
            if lost == "mid-body":
                conn.execute("UPDATE runs SET state = ? WHERE id = ?", ("failed", run.id))
    row = store.get_run(run.id)  # and the store goes on working
    assert row["state"] == run.state and row["error"] is None


def test_a_server_restart_costs_no_request_an_error(pg_store_url, tmp_path):
    store = open_store(pg_store_url)
    run = _started_run(store, tmp_path)
    dbname = pg_store_url.rsplit("/", 1)[1]
    with admin_conn() as admin:  # every pooled connection dies, as in a fail-over
        killed = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
                               " AND application_name = 'runbook-bot'", (dbname,)).fetchone()[0]
    assert killed >= 1
    assert store.get_run(run.id)["id"] == run.id
    assert Runner(store).approve(run.id, "only", user="alice", front_end="console").ok


def test_a_configured_postgresql_store_needs_a_shared_fingerprint_key(pg_store_url, monkeypatch):
    from bot.engine.store import Store

    monkeypatch.setenv("DATABASE_URL", _with_password(pg_store_url))  # the platforms' convention
    monkeypatch.delenv("RUNBOOK_BOT_FINGERPRINT_KEY")
    with pytest.raises(StoreFault, match="needs RUNBOOK_BOT_FINGERPRINT_KEY set, to the same random value on every"
                                         " replica") as caught:
        Store.configured()
    assert PASSWORD not in str(caught.value) and str(caught.value).startswith(pg_store_url)
    monkeypatch.setenv("RUNBOOK_BOT_FINGERPRINT_KEY", "shared-by-every-replica")
    store = Store.configured()
    assert store.path == pg_store_url
    store.close()
