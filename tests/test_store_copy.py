"""`runbook-bot store migrate --to`: a SQLite store with runs in flight carried into PostgreSQL.

The CLI runs in a subprocess on a real file and the machine's PostgreSQL; the copied store is then
used by a real Runner: the run waiting for approval is approved there and finishes.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from bot.engine.runner import Runner
from bot.engine.store import Store, open_store
from bot.watch import service

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Kp4-copy-target-password"


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


def _runbook(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""
        name: {name}
        approvals: {{default: {{approvers: ["alice", "bob"], min: 2}}}}
        params: {{line: {{default: "x"}}}}
        steps:
          - id: first
            kind: test.touch
            with: {{path: "{tmp_path / name}.txt", line: "{{{{ params.line }}}}"}}
          - id: second
            kind: test.touch
            with: {{path: "{tmp_path / name}.txt", line: "second"}}
    """))
    return path


@pytest.fixture
def busy_file(tmp_path):
    """A SQLite store with one finished run, one half-approved run and a watch (a module-owned table)."""
    db = tmp_path / "store.sqlite"
    store = Store(db)
    runner = Runner(store)
    done = runner.start(_runbook(tmp_path, "done"), {}, started_by="dave", front_end="console")
    for key in ("first", "second"):
        for user in ("alice", "bob"):
            runner.approve(done.id, key, user=user, front_end="console")
    waiting = runner.start(_runbook(tmp_path, "waiting"), {"line": "carried"}, started_by="dave",
                           front_end="console")
    runner.approve(waiting.id, "first", user="alice", front_end="slack")  # one of two
    log = tmp_path / "api.log"
    log.write_text("")
    service.start(store, waiting.id, {"log_file": str(log), "signals": ["log_volume"]})
    store.close()
    return db, done.id, waiting.id


def _cli(db: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", "--db", str(db), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                                             " AND tablename != 'meta'")]
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


def test_a_store_in_flight_is_copied_verified_and_goes_on_in_postgresql(busy_file, pg_store_url, tmp_path):
    db, done_id, waiting_id = busy_file
    before = Store(db)
    expected = {"runs": 2, "events": len(before.events()), "approvals": 5}
    events_before = before.events(waiting_id)
    before.close()
    url = pg_store_url.replace("postgres@", f"postgres:{PASSWORD}@")

    proc = _cli(db, "store", "migrate", "--to", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified:" in proc.stdout and "RUNBOOK_BOT_FINGERPRINT_KEY" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
    counts = _counts(pg_store_url)
    assert {k: counts[k] for k in expected} == expected and counts["watches"] == 1

    store = open_store(pg_store_url)
    assert store.get_run(done_id)["state"] == "succeeded"
    assert [(e["action"], e["step_key"]) for e in store.events(waiting_id)] == \
        [(e["action"], e["step_key"]) for e in events_before]
    runner = Runner(store)
    assert runner.approve(waiting_id, "first", user="bob", front_end="console").ok  # the second of two
    for user in ("alice", "bob"):
        runner.approve(waiting_id, "second", user=user, front_end="console")
    assert runner.view(waiting_id).state == "succeeded"
    assert (tmp_path / "waiting.txt").read_text().splitlines() == ["carried", "second"]
    assert len(store.events()) > expected["events"]  # new audit rows took ids past the copied ones


def test_a_target_that_holds_runs_is_refused_untouched(busy_file, pg_store_url):
    db, _, _ = busy_file
    assert _cli(db, "store", "migrate", "--to", pg_store_url).returncode == 0
    before = _counts(pg_store_url)
    again = _cli(db, "store", "migrate", "--to", pg_store_url)
    assert again.returncode == 1
    assert "the target store is not empty" in again.stderr and "nothing was changed" in again.stderr
    assert _counts(pg_store_url) == before


def test_a_row_postgresql_refuses_rolls_the_whole_copy_back_and_is_named(busy_file, pg_store_url):
    db, _, waiting_id = busy_file
    conn = sqlite3.connect(db)  # SQLite keeps text in an integer column; PostgreSQL will not
    conn.execute("UPDATE steps SET attempt = 'three' WHERE run_id = ? AND key = 'second'", (waiting_id,))
    conn.commit()
    conn.close()
    proc = _cli(db, "store", "migrate", "--to", pg_store_url)
    assert proc.returncode == 1
    assert "COPY steps" in proc.stderr and "attempt" in proc.stderr and "rolled back whole" in proc.stderr
    assert all(n == 0 for n in _counts(pg_store_url).values())


def test_a_postgresql_source_or_a_missing_file_is_a_usage_error(tmp_path, pg_store_url):
    proc = _cli(tmp_path / "nothing.sqlite", "store", "migrate", "--to", pg_store_url)
    assert proc.returncode == 1 and "no store file there" in proc.stderr
    assert _cli(tmp_path / "x.sqlite", "store", "migrate", "--to", "/tmp/elsewhere").returncode == 2
    proc = _cli(pg_store_url, "store", "migrate", "--to", pg_store_url)  # type: ignore[arg-type]
    assert proc.returncode == 2 and "PostgreSQL already" in proc.stderr
