"""Versioned store migrations and the refusal to keep the store where the platform loses it, on real
SQLite files and through the real CLI in a subprocess."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.engine.store import Store
from bot.engine.store_faults import StoreFault
from bot.engine.store_migrations import LATEST, MIGRATIONS, Migration, migrate, stored_version
from bot.engine.store_placement import _mount_point, check_durable, ephemeral_platform

ROOT = Path(__file__).resolve().parent.parent

# The DDL the first release wrote (sqlite-utils' own spelling), and a row it held.
FIRST_RELEASE = """
CREATE TABLE [meta] ([key] TEXT PRIMARY KEY, [value] TEXT);
CREATE TABLE [runs] ([id] TEXT PRIMARY KEY, [runbook] TEXT, [runbook_path] TEXT, [runbook_sha256] TEXT,
  [params] TEXT, [state] TEXT, [started_by] TEXT, [front_end] TEXT, [chat] TEXT, [error] TEXT, [dry_run] INTEGER,
  [created_at] FLOAT, [updated_at] FLOAT);
CREATE TABLE [steps] ([run_id] TEXT REFERENCES [runs]([id]), [key] TEXT, [step_id] TEXT, [idx] INTEGER,
  [kind] TEXT, [phase] TEXT, [state] TEXT, [attempt] INTEGER, [request_no] INTEGER, [plan] TEXT, [result] TEXT,
  [verification] TEXT, [error] TEXT, [requested_at] FLOAT, [started_at] FLOAT, [finished_at] FLOAT,
  [updated_at] FLOAT, [owner] TEXT, [heartbeat_at] FLOAT, PRIMARY KEY ([run_id], [key]));
CREATE TABLE [approvals] ([id] INTEGER PRIMARY KEY, [run_id] TEXT, [step_key] TEXT, [request_no] INTEGER,
  [approver] TEXT, [decision] TEXT, [reason] TEXT, [front_end] TEXT, [at] FLOAT);
CREATE TABLE [events] ([id] INTEGER PRIMARY KEY, [at] FLOAT, [run_id] TEXT, [step_key] TEXT, [actor] TEXT,
  [front_end] TEXT, [action] TEXT, [from_state] TEXT, [to_state] TEXT, [detail] TEXT);
CREATE TABLE [locks] ([key] TEXT PRIMARY KEY, [run_id] TEXT, [acquired_at] FLOAT);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO runs VALUES ('r-old', 'demo', 'demo.yaml', 'ab', '{}', 'running', 'alice', 'console', '{}', NULL, 0, 1, 1);
INSERT INTO steps (run_id, key, step_id, idx, kind, phase, state, attempt, request_no, updated_at)
  VALUES ('r-old', 'mark', 'mark', 0, 'test.mark', 'forward', 'awaiting_approval', 0, 1, 1);
INSERT INTO events (at, run_id, actor, front_end, action, to_state) VALUES (1, 'r-old', 'alice', 'console', 'run.started', 'running');
"""


def _first_release_file(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(FIRST_RELEASE)
    conn.close()
    return path


def _columns(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


def test_a_first_release_file_upgrades_and_keeps_its_rows_and_the_engine_moves_them(tmp_path):
    path = _first_release_file(tmp_path / "old.sqlite")
    store = Store(path)
    assert store.schema_version == LATEST
    assert {"undo", "apply_started"} <= _columns(path, "steps") and "targets" in _columns(path, "runs")
    assert store.get_step("r-old", "mark")["state"] == "awaiting_approval"
    assert [e["action"] for e in store.events("r-old")] == ["run.started"]
    # the upgraded row takes part in the state machine like a new one
    assert store.transition_run("r-old", ["running"], "aborted", actor="alice", front_end="console")
    assert store.record_undo("r-old", "mark", {"path": "x"}) == {"path": "x"}


def test_a_new_file_and_a_current_file_end_at_the_latest_version(tmp_path):
    path = tmp_path / "new.sqlite"
    assert Store(path).schema_version == LATEST
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path)) == (LATEST, LATEST)  # nothing left to do
    conn.close()


def test_a_store_newer_than_the_bot_is_refused_untouched(tmp_path):
    path = tmp_path / "future.sqlite"
    Store(path).close()  # closed now: a connection collected later would checkpoint into the file mid-test
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LATEST + 3),))
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreFault, match=rf"store schema {LATEST + 3} is newer than this bot \({LATEST}\): upgrade"):
        Store(path)
    assert path.read_bytes() == before


def test_a_failing_migration_rolls_back_whole_and_the_file_keeps_its_version(tmp_path):
    path = _first_release_file(tmp_path / "old.sqlite")

    def half_then_fail(conn):
        conn.execute("ALTER TABLE runs ADD COLUMN half_done TEXT")
        conn.execute("UPDATE runs SET state = 'corrupted'")
        raise ValueError("disk said no")

    broken = (*MIGRATIONS, Migration(LATEST + 1, "a change that fails halfway", half_then_fail))
    conn = sqlite3.connect(path, isolation_level=None)
    with pytest.raises(StoreFault, match=rf"migration {LATEST + 1} \(a change that fails halfway\) failed: disk said "
                                         rf"no; the store stays at version {LATEST}"):
        migrate(conn, str(path), broken)
    assert stored_version(conn) == LATEST                    # the good migrations before it stayed
    assert "half_done" not in _columns(path, "runs")         # nothing of the failed one
    assert conn.execute("SELECT state FROM runs").fetchone()[0] == "running"
    conn.close()


def _open(path: str, ready) -> None:
    ready.wait()
    Store(path)


def test_processes_starting_at_once_on_an_old_file_migrate_it_once(tmp_path):
    path = _first_release_file(tmp_path / "old.sqlite")
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    procs = [ctx.Process(target=_open, args=(str(path), ready)) for _ in range(4)]
    for p in procs:
        p.start()
    ready.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]  # a second ALTER of the same column would have failed one
    assert Store(path).schema_version == LATEST


@pytest.mark.parametrize("env", [{"DYNO": "web.1"}, {"ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4/x"},
                                 {"FLY_MACHINE_ID": "e2865"}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"},
                                 {"RUNBOOK_BOT_FS": "ephemeral"}])
def test_the_cli_refuses_a_store_the_platform_would_lose_in_one_line(tmp_path, env):
    """Through the real CLI: exit 1, one line naming the file and the way out, no traceback, no file."""
    state = tmp_path / "state"
    run_env = {k: v for k, v in os.environ.items() if k not in ("DYNO", "KUBERNETES_SERVICE_HOST")}
    run_env.update(env, RUNBOOK_BOT_STATE_DIR=str(state), PYTHONPATH=str(ROOT))
    if _mount_point(str(state / "runbook-bot.sqlite")) != "/":
        pytest.skip("tmp is on its own mount here: the store would be on a volume, which is allowed")
    result = subprocess.run([sys.executable, "-m", "bot", "status"], cwd=ROOT, env=run_env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"runbook-bot: {state / 'runbook-bot.sqlite'}: on ")
    assert "lost at the next deploy or restart" in lines[0] and "RUNBOOK_BOT_EPHEMERAL_OK=1" in lines[0]
    assert not (state / "runbook-bot.sqlite").exists()

    run_env["RUNBOOK_BOT_EPHEMERAL_OK"] = "1"  # the operator's informed choice
    ok = subprocess.run([sys.executable, "-m", "bot", "status"], cwd=ROOT, env=run_env, capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr


def test_a_file_on_a_mounted_volume_is_allowed_and_no_marker_means_no_refusal():
    # /dev/shm and /proc are mount points on every Linux machine: a path under one is "on a volume"
    assert ephemeral_platform({"DYNO": "web.1"}, "/dev/shm/runbook-bot.sqlite") is None
    assert ephemeral_platform({}, "/app/state/runbook-bot.sqlite") is None
    check_durable("/app/state/runbook-bot.sqlite", {})  # no marker: nothing raised
    with pytest.raises(StoreFault, match="Heroku"):
        check_durable("/app/state/runbook-bot.sqlite", {"DYNO": "web.1"})


def test_eight_threads_opening_a_new_store_file_together_all_get_it(tmp_path):
    """Switching a new file to WAL is answered "database is locked" at once (no busy wait) when another
    connection switches it at that moment; it used to fail one opener in about eight (seen in CI)."""
    import threading

    from bot.engine.store import open_store

    for attempt in range(40):
        path = tmp_path / f"store-{attempt}.sqlite"
        barrier, errors = threading.Barrier(8, timeout=60), []

        def opener():
            barrier.wait()
            try:
                open_store(str(path)).close()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [], f"attempt {attempt}: {errors[0]}"
