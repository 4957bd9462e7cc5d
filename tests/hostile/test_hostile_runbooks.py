"""The hostile runbook corpus: every file in tests/hostile/runbooks is refused, quickly and clearly.

Each file's first line says what must happen:

    # expect: TEXT                                    -> `validate FILE` exits 1 and prints TEXT
    # run: exit N, params: k=v, expect: TEXT          -> `run FILE` exits N and prints TEXT

Every case runs the real CLI in a subprocess with a 10 s hang guard (a case that hangs fails with
TimeoutExpired; this is not a speed assertion), prints no traceback, and applies nothing: no run
is stored for a refused start, and no step after a failed one ran. Two cases are made at test
time because they are large on purpose (a file over 1 MiB, a value over 64 KiB).
"""

from __future__ import annotations

import http.server
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

CORPUS = Path(__file__).parent / "runbooks"
ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 10


def cli(*args: str, state: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOK_BOT_STATE_DIR": str(state), **(extra_env or {})}
    env.pop("RUNBOOK_BOT_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=HANG_GUARD)


def header(path: Path) -> dict[str, str]:
    first = path.read_text().splitlines()[0].removeprefix("#").strip()
    if first.startswith("expect:"):
        return {"mode": "validate", "expect": first.removeprefix("expect:").strip()}
    fields = dict(re.match(r"(\w+):\s*(.*)", part.strip()).groups() for part in first.split(", "))
    return {"mode": "run", **fields}


def stored_steps(state: Path) -> list[tuple[str, str]]:
    db = state / "runbook-bot.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT step_id, state FROM steps").fetchall()
        except sqlite3.OperationalError:
            return []


@pytest.fixture(scope="module")
def backtracking_body():
    """A local server whose body makes `(a|aa)+$` backtrack exponentially."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = b"a" * 40 + b"!"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.yaml")), ids=lambda p: p.stem)
def test_hostile_runbook_is_refused_clearly(path, tmp_path, backtracking_body):
    case = header(path)
    state = tmp_path / "state"
    if case["mode"] == "validate":
        out = cli("validate", str(path), state=state)
        assert out.returncode == 1, out.stdout + out.stderr
        # one line naming the file and line, and the limit or the problem
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: ", out.stdout), out.stdout
    else:
        params = [a for kv in case.get("params", "").split() for a in ("-p", kv)]
        out = cli("run", str(path), *params, "--as", "alice", state=state,
                  extra_env={"HOSTILE_URL": backtracking_body})
        assert out.returncode == int(case["run"].removeprefix("exit ")), out.stdout + out.stderr
        steps = stored_steps(state)
        assert all(state_ in ("pending", "failed", "planned") for _, state_ in steps), steps  # nothing applied
    text = out.stdout + out.stderr
    assert case["expect"] in " ".join(text.split()), text
    assert "Traceback" not in text


def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: big\nsteps:\n  - {id: s, kind: wait, with: {seconds: 1}}\n" + "# pad\n" * 200_000)
    out = cli("validate", str(big), state=tmp_path / "state")
    assert out.returncode == 1
    assert f"{big}:1:1: the file is" in out.stdout and "at most 1048576 bytes (1 MiB)" in out.stdout
    assert "Traceback" not in out.stderr


def test_a_value_over_the_size_limit_is_refused_at_its_line(tmp_path):
    big = tmp_path / "value.yaml"
    big.write_text("name: value\nsteps:\n  - id: s\n    kind: wait\n    description: " + "x" * 100_000
                   + "\n    with: {seconds: 1}\n")
    out = cli("validate", str(big), state=tmp_path / "state")
    assert out.returncode == 1
    assert f"{big}:5:18: steps[0].description: this value is 100000 characters; the limit for one value " \
           f"is 65536" in out.stdout
