"""The engine across real processes on one store (a SQLite file, a PostgreSQL database): racing approvers, and kill -9 mid-step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.engine.runner import Runner
from bot.engine.store import open_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


def _env(db: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RUNBOOK_BOT_DB"] = str(db)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_approvals_racing_from_separate_processes_apply_once(tmp_path, store_where):
    out = tmp_path / "out.txt"
    out.write_text("")
    users = [f"user{i}" for i in range(8)]
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        name: race
        approvals: {{default: {{approvers: {users}}}}}
        steps:
          - id: first
            kind: test.touch
            with: {{path: "{out}", line: "once"}}
    """))
    db = store_where
    run = Runner(open_store(db)).start(path, {}, started_by="dave", front_end="console")
    procs = [subprocess.Popen([sys.executable, "-m", "bot", "approve", run.id, "first", "--as", user],
                              env=_env(db), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for user in users]
    outputs = [p.communicate(timeout=60)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert out.read_text().splitlines() == ["once"]
    assert codes.count(0) == 1, outputs
    assert sum("already approved by" in o for o in outputs) == len(users) - 1, outputs
    assert Runner(open_store(db)).view(run.id).state == "succeeded"


def test_kill_9_mid_step_leaves_it_interrupted_for_a_person(tmp_path, store_where):
    started, release = tmp_path / "started", tmp_path / "release"
    out = tmp_path / "out.txt"
    out.write_text("")
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        name: crashy
        approvals: {{default: {{approvers: ["*"], allow_self: true}}}}
        steps:
          - id: hold
            kind: test.block
            with: {{started: "{started}", release: "{release}"}}
          - id: after
            kind: test.touch
            with: {{path: "{out}", line: "after"}}
    """))
    db = store_where
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run", str(path), "--yes", "--as", "dave"],
                            env=_env(db), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(started.exists), "the blocking step never started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    store = open_store(db)
    run_id = store.list_runs()[0]["id"]
    assert store.get_step(run_id, "hold")["state"] == "applying"

    runner = Runner(store)
    assert runner.resume_all() == [run_id]
    assert store.get_step(run_id, "hold")["state"] == "interrupted"
    release.write_text("go")  # even if it could now finish, nothing re-applies it on its own
    runner.resume_all()
    assert store.get_step(run_id, "hold")["state"] == "interrupted"
    assert out.read_text() == ""
    events = [e for e in store.events(run_id) if e["action"] == "step.interrupted"]
    assert len(events) == 1 and events[0]["actor"] == "engine"

    assert runner.resolve(run_id, "hold", "skip", user="dave", front_end="console").ok
    assert runner.approve(run_id, "after", user="dave", front_end="console").ok
    assert out.read_text().splitlines() == ["after"]
    assert runner.view(run_id).state == "succeeded"


def test_a_live_process_step_is_not_marked_interrupted(tmp_path, store_where):
    started, release = tmp_path / "started", tmp_path / "release"
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        name: live
        approvals: {{default: {{approvers: ["*"], allow_self: true}}}}
        steps:
          - id: hold
            kind: test.block
            with: {{started: "{started}", release: "{release}"}}
    """))
    db = store_where
    proc = subprocess.Popen([sys.executable, "-m", "bot", "run", str(path), "--yes", "--as", "dave"],
                            env=_env(db), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        assert _wait_for(started.exists)
        store = open_store(db)
        run_id = store.list_runs()[0]["id"]
        Runner(store).resume_all()  # a second process starting up beside a live one
        assert store.get_step(run_id, "hold")["state"] == "applying"
        release.write_text("go")
        assert proc.wait(timeout=30) == 0
        assert store.get_step(run_id, "hold")["state"] == "succeeded"
    finally:
        if proc.poll() is None:
            proc.kill()
