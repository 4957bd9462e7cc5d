"""Crash recovery that cannot lose or repeat an apply: heartbeats from the engine, owner tokens, the reaper.

Real processes: `runbook-bot serve --http` (against the fake Slack Web API) reaps a `runbook-bot run`
killed with SIGKILL; PID reuse is a live unrelated process holding the dead owner's PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.engine.liveness import STALE_AFTER_SECONDS, HEARTBEAT_SECONDS, owner_alive, parse_token, process_token
from bot.engine.runner import Runner
from bot.engine.store import Store, open_store
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, wait_for

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _blocking_runbook(tmp_path: Path, *, silent: bool) -> tuple[Path, Path, Path]:
    started, release = tmp_path / "started", tmp_path / "release"
    path = tmp_path / "runbooks" / "hold.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(f"""
        name: hold
        approvals: {{default: {{approvers: ["*"], allow_self: true}}}}
        steps:
          - id: hold
            kind: test.block
            with: {{started: "{started}", release: "{release}", silent: {str(silent).lower()}}}
    """))
    return path, started, release


def test_a_silent_apply_keeps_beating_and_a_second_process_leaves_it_alone(tmp_path, store_where):
    path, started, release = _blocking_runbook(tmp_path, silent=True)
    db = store_where
    env = {**os.environ, "RUNBOOK_BOT_DB": db, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run", str(path), "--yes", "--as", "dave"], env=env,
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert wait_for(started.exists, timeout=30, message="apply started")
        store = open_store(db)
        run_id = store.list_runs()[0]["id"]
        first = store.get_step(run_id, "hold")["heartbeat_at"]
        assert wait_for(lambda: store.get_step(run_id, "hold")["heartbeat_at"] > first,
                        timeout=HEARTBEAT_SECONDS * 5, message="a beat while apply never calls the engine")
        other = Runner(store)
        assert other.reap() == []  # its owner is provably alive
        assert other.resolve(run_id, "hold", "retry", user="dave", front_end="console").code == "not_interrupted"
        release.write_text("go")
        assert proc.wait(timeout=30) == 0
        assert store.get_step(run_id, "hold")["state"] == "succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()


def test_serve_reaps_a_killed_apply_within_the_heartbeat_window(slack_api, tmp_path):
    path, started, release = _blocking_runbook(tmp_path, silent=True)
    state = tmp_path / "state"
    env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_STATE_DIR": str(state),
           "RUNBOOK_BOT_RUNBOOKS": str(tmp_path / "runbooks"), "PYTHONPATH": str(ROOT)}
    port = _free_port()
    serve = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--http", "--port", str(port)], env=env,
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    run = subprocess.Popen([sys.executable, "-m", "bot", "run", str(path), "--yes", "--as", "dave"], env=env,
                           cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert wait_for(started.exists, timeout=30, message="apply started")
        store = Store(state / "runbook-bot.sqlite")
        run_id = store.list_runs()[0]["id"]
        time.sleep(HEARTBEAT_SECONDS * 2)  # serve is up and reaping; a live owner is left alone
        assert store.get_step(run_id, "hold")["state"] == "applying"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        assert wait_for(lambda: store.get_step(run_id, "hold")["state"] == "interrupted",
                        timeout=STALE_AFTER_SECONDS, message="serve's reaper marks the dead apply interrupted")
        event = next(e for e in store.events(run_id) if e["action"] == "step.interrupted")
        assert event["detail"]["why"] == "its process is gone" and serve.poll() is None
    finally:
        for proc in (run, serve):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_a_reused_pid_does_not_pass_for_the_dead_owner(tmp_path):
    store = Store(tmp_path / "store.sqlite")
    path, _, _ = _blocking_runbook(tmp_path, silent=True)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host, _, _ = parse_token(process_token())
        live_token = f"{host}:{stranger.pid}:{_start(stranger.pid)}:feedface"
        reused_token = f"{host}:{stranger.pid}:1:deadbeef"  # same PID, started at another time: not the owner
        assert owner_alive(live_token) is True and owner_alive(reused_token) is False
        for token, expect in ((live_token, []), (reused_token, [(run.id, "hold")])):
            with store.transaction() as conn:
                conn.execute("UPDATE steps SET state = 'applying', owner = ?, heartbeat_at = 0"
                             " WHERE run_id = ? AND key = 'hold'", (token, run.id))
            assert runner.reap() == expect, token
    finally:
        stranger.kill()
        stranger.wait()


def test_a_replica_on_another_host_is_judged_by_its_heartbeat_alone(tmp_path, store_where):
    """Replicas on different hosts share the store: no PID can be checked there, so a step whose owner
    beats stays its owner's, and one whose beats stopped STALE_AFTER_SECONDS ago is interrupted."""
    store = open_store(store_where)
    path, _, _ = _blocking_runbook(tmp_path, silent=True)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    elsewhere = "replica-b.internal:4242:777:cafe0001"  # what another host's engine writes as the owner
    assert owner_alive(elsewhere) is None  # cannot tell from here
    now = time.time()
    for beat, expect in ((now - 1, []), (now - STALE_AFTER_SECONDS + 5, []),
                         (now - STALE_AFTER_SECONDS - 5, [(run.id, "hold")])):
        with store.transaction() as conn:
            conn.execute("UPDATE steps SET state = 'applying', owner = ?, heartbeat_at = ? WHERE run_id = ? AND"
                         " key = 'hold'", (elsewhere, beat, run.id))
        assert runner.reap() == expect, beat
    event = next(e for e in store.events(run.id) if e["action"] == "step.interrupted")
    assert event["detail"]["why"].startswith("no heartbeat for") and event["detail"]["owner"] == elsewhere


def _start(pid: int) -> str:
    from bot.engine.liveness import _start_time

    started = _start_time(pid)
    assert started is not None
    return started
