"""`make run` without Slack: the rehearsal walks seed 000's migration on the embedded world.

One real process (`runbook-bot serve` with no Slack settings), the shipped runbook unchanged, the
world made of moto server, the DigitalOcean stand-in, the local PostgreSQL and PgBouncer, and a
dnslib server. The report must show every trap caught and the rollback exact; a line reading
`NO` (a trap the rehearsal did not show) fails the test, and so does any change outside the world.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
MUST_SHOW = [
    "WORKERS caught by the env matrix",
    "WORKERS carried over (env.set), the matrix then clean",
    "model object caught missing in Spaces",
    "model object present after the operator's copy",
    "pooler caught on the app's path (refused for the copy), direct endpoint used",
    "rows and checksums verified",
    "TTL lowered (3600 -> 60), then the switch",
    "wedge alert within one watch tick",
    "rollback restored the record set exactly",
]


def _databases() -> set[str]:
    """The rehearsal world's databases on the machine's server (others' tests may create their own meanwhile)."""
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres") as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'rb\\_rehearsal\\_%'")}


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    state = tmp_path_factory.mktemp("state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "AWS_", "DIGITALOCEAN_"))}
    env.update({"RUNBOOK_BOT_STATE_DIR": str(state), "PYTHONPATH": str(ROOT), "COLUMNS": "240"})
    before = _databases()
    result = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env, input="",
                            capture_output=True, text=True, timeout=600)
    return result, before, state


def test_serve_without_slack_rehearses_and_every_trap_shows(rehearsal):
    result, _, _ = rehearsal
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    for finding in MUST_SHOW:
        assert f"yes  {finding}" in out, f"{finding!r} not shown:\n{out[-4000:]}"
    assert " NO  " not in out
    assert "decided to roll back" in out and "cutover window" in out
    assert "undo:watch: applying" in out  # step keys printed literally (rich would make `:watch:` an emoji)


def test_the_rehearsal_says_it_changes_nothing_outside_and_does_not(rehearsal):
    result, before, state = rehearsal
    out = result.stdout
    assert out.index("changes nothing outside the rehearsal world") < out.index("env-matrix")
    assert out.rstrip().endswith("This rehearsal changed nothing outside the rehearsal world.")
    assert _databases() == before                     # its databases were dropped
    assert not any(state.iterdir())                   # the operator's store was not touched
    assert "Found credentials" not in result.stderr   # no third-party INFO lines by default
    assert "werkzeug" not in result.stderr + out
