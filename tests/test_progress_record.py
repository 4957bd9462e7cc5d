"""Progress is a record the store keeps: phases, a rate and an ETA measured within each phase, shown
by `status` in another process and printed as plain lines when the output is not a terminal.

The step is `test.phased` (tests/kinds.py): 60 MiB of `data`, then `indexes` that move no MiB until
released: the ETA must not sit frozen there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from bot.engine.store import open_store
from tests.fixtures.slack import wait_for

ROOT = Path(__file__).resolve().parents[1]


def _cli(db: str, *args: str, **kwargs):
    env = {**os.environ, "RUNBOOK_BOT_DB": db, "RUNBOOK_BOT_PLUGINS": "tests.kinds", "PYTHONPATH": str(ROOT),
           "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "bot", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_phases_reach_the_store_status_and_a_log_that_is_not_a_terminal(tmp_path, store_where):
    started, release = tmp_path / "started", tmp_path / "release"
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        name: phased
        approvals: {{default: {{approvers: ["*"], allow_self: true}}}}
        steps:
          - id: copy
            kind: test.phased
            with: {{started: "{started}", release: "{release}"}}
    """))
    run = _cli(store_where, "run", str(path), "--yes", "--as", "dave")  # stdout is a pipe: no terminal
    try:
        wait_for(started.exists, timeout=60, message="the indexes phase")
        store = open_store(store_where)
        run_id = store.list_runs()[0]["id"]

        def indexes_recorded():
            record = store.get_step(run_id, "copy")["progress"]
            return record if record and record["phase"] == "indexes" and record["phase_seconds"] >= 1 else None

        record = wait_for(indexes_recorded, timeout=30, message="the indexes phase in the store")
        assert record["eta_seconds"] is None and record["rate"] is None  # no MiB move: no ETA, not a frozen one
        assert [p["name"] for p in record["phases"]] == ["data"] and record["phases"][0]["seconds"] > 0
        status = _cli(store_where, "status", run_id)
        out, _ = status.communicate(timeout=60)
        assert "indexes" in out and "no honest ETA" in out, out
        shown = _cli(store_where, "status", run_id, "--json")
        view = json.loads(shown.communicate(timeout=60)[0])
        assert view["steps"][0]["progress"]["phase"] == "indexes"
    finally:
        release.write_text("go")
    out, _ = run.communicate(timeout=60)
    assert run.returncode == 0, out
    lines = [line for line in out.splitlines() if line.strip().startswith("copy: ")]
    assert any("copy: data done in" in line and "MiB/s" in line for line in lines), out  # measured within the phase
    assert any("copy: indexes" in line and "no honest ETA" in line for line in lines), out
