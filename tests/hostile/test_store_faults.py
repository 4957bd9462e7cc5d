"""Store faults made for real: an immutable file (`chattr +i`), a full disk (a 512 KiB tmpfs), the
file deleted under a running process, a damaged header. Each gives one line naming the file and
what to do (in the CLI: no traceback), leaves the store as it was (integrity check ok, the step
still waiting), and never reports a decision as taken when its write failed.

chattr and mount need root (this project's CI runs as root); without it those cases skip.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.engine.runner import Runner
from bot.engine.store import Store
from bot.engine.store_faults import StoreFault

ROOT = Path(__file__).resolve().parents[2]
import tests.kinds  # noqa: E402,F401  (registers test.touch, a mutating kind)

RUNBOOK = textwrap.dedent("""
    name: faults
    approvals:
      default: {approvers: ["bob"]}
    steps:
      - id: gate
        kind: test.touch
        with: {path: "OUT", line: "applied"}
""")


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")


def waiting_run(tmp_path: Path, db: Path) -> tuple[Runner, str]:
    path = tmp_path / "faults.yaml"
    path.write_text(RUNBOOK.replace("OUT", str(tmp_path / "out.txt")))
    runner = Runner(Store(db))
    run = runner.start(path, {}, started_by="alice", front_end="console")
    assert runner.view(run.id).steps[0].state == "awaiting_approval"
    return runner, run.id


def integrity_ok(db: Path) -> bool:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOK_BOT_PLUGINS": "tests.kinds", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", "--db", str(db), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=10, env=env)


def test_a_full_disk_refuses_the_approval_and_leaves_the_step_waiting(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        db = disk / "store.sqlite"
        runner, run_id = waiting_run(tmp_path, db)
        (disk / "filler").write_bytes(b"\0" * (disk.stat().st_size or 0))
        with open(disk / "filler", "ab") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError:
                pass  # the disk is full now
        with pytest.raises(StoreFault, match=rf"{db}: the disk is full; free some space"):
            for i in range(200):  # the WAL has a little room; a few events fill it
                runner.store.add_event(run_id, "note", actor="x", front_end="console", detail={"pad": "x" * 4096})
        with pytest.raises(StoreFault):
            runner.approve(run_id, "gate", user="bob", front_end="console")
        (disk / "filler").unlink()
        assert runner.store.get_step(run_id, "gate")["state"] == "awaiting_approval"
        assert runner.store.approvals(run_id, "gate") == []
        assert not (tmp_path / "out.txt").exists()  # nothing applied
        assert integrity_ok(db)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_an_immutable_store_gives_one_line_in_the_cli(tmp_path):
    db = tmp_path / "store.sqlite"
    runner, run_id = waiting_run(tmp_path, db)
    runner.store.close()
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i needs root and a file system that supports it")
    try:
        out = cli(db, "approve", run_id, "gate", "--as", "bob")
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"runbook-bot: {db}: the store is read-only" in out.stderr and "chattr -i" in out.stderr
        assert "Traceback" not in out.stderr + out.stdout
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True)
    assert Store(db).get_step(run_id, "gate")["state"] == "awaiting_approval"
    assert integrity_ok(db)


def test_a_store_deleted_under_a_running_process_is_detected_not_recreated(tmp_path):
    db = tmp_path / "store.sqlite"
    runner, run_id = waiting_run(tmp_path, db)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")
    with pytest.raises(StoreFault, match=rf"{db}: the store file was deleted while the bot was running"):
        runner.approve(run_id, "gate", user="bob", front_end="console")
    assert not db.exists()  # not silently recreated empty


def test_a_damaged_header_is_named_with_what_to_do(tmp_path):
    db = tmp_path / "store.sqlite"
    runner, run_id = waiting_run(tmp_path, db)
    runner.store.close()
    with open(db, "r+b") as f:
        f.write(b"this is not sqlite" * 6)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            os.unlink(f"{db}{suffix}")
    out = cli(db, "status")
    assert out.returncode == 1
    assert out.stderr.strip() == f"runbook-bot: {db}: this is not a SQLite store (its header is damaged or it is " \
                                 f"another file); restore it from a backup, or move it aside to start an empty store"
