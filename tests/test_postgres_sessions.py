"""The session settings every bot connection pins, on a real PostgreSQL (15 here)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bot.platforms.postgres import connect

# A bot connection running a long statement (a checksum of a big table, say), then killed with SIGKILL.
KILLED_QUERY = """
import os
from bot.platforms.postgres import connect
ep = connect.parse_url(os.environ["DB_URL"], label="test")
with connect.connect(ep, application_name="runbook-bot-verify-killed") as conn:
    conn.execute("SELECT pg_sleep(30)")
"""
RUNNING = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'runbook-bot-verify-killed'"


def test_every_connection_pins_the_text_forms_and_the_client_check(pg):
    db = pg.create()
    with connect.connect(pg.endpoint(db)) as conn:
        shown = {name: conn.execute(f"SHOW {name}").fetchone()[0]
                 for name in ("TimeZone", "DateStyle", "client_connection_check_interval")}
    assert shown == {"TimeZone": "UTC", "DateStyle": "ISO, YMD", "client_connection_check_interval": "1s"}


def test_a_statement_of_a_killed_bot_stops_on_the_server(pg):
    """Without the client check the server would sleep (or checksum) its 30 s for a bot that is gone."""
    db = pg.create()
    proc = subprocess.Popen([sys.executable, "-c", KILLED_QUERY], env={**os.environ, "DB_URL": pg.url(db)})
    deadline = time.time() + 30
    while time.time() < deadline and pg.sql(db, RUNNING) == [(0,)]:
        time.sleep(0.05)
    assert pg.sql(db, RUNNING) == [(1,)], "the statement never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 3
    while time.time() < deadline and pg.sql(db, RUNNING) != [(0,)]:
        time.sleep(0.05)
    assert pg.sql(db, RUNNING) == [(0,)]
