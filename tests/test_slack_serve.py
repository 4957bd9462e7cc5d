"""`runbook-bot serve --http` as the Procfile runs it: a subprocess, signed requests, /healthz, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import requests

from bot.config import PROJECT_ROOT
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, wait_for
from tests.slack_requests import command_body, post


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_http_answers_health_and_commands_then_stops_cleanly(slack_api, tmp_path):
    port = _free_port()
    (tmp_path / "runbooks").mkdir()
    env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_STATE_DIR": str(tmp_path / "state"),
           "RUNBOOK_BOT_RUNBOOKS": str(tmp_path / "runbooks"), "PYTHONPATH": str(PROJECT_ROOT)}
    env.pop("PORT", None)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--http", "--port", str(port)], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                return None
        health = wait_for(healthy, timeout=30, message="serve --http up")
        assert health.status_code == 200
        report = health.json()
        assert report["store"]["ok"] is True and report["mode"] == "http" and report["outbox_pending"] == 0

        r = post(f"http://127.0.0.1:{port}/slack/events", command_body("list", user="U0ALICE",
                                                                        response_url=slack_api.response_url()))
        assert r.status_code == 200
        answer = wait_for(lambda: slack_api.calls_to("response_url"), message="list answered")[0].payload
        assert "No runbooks found" in answer["blocks"][0]["text"]["text"]
        assert (tmp_path / "state" / "runbook-bot.sqlite").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    output = proc.stdout.read()
    # no $PORT: loopback only; no step was applying, so no warning that one is
    assert f"on http://127.0.0.1:{port}" in output, output
    assert "still applying" not in output, output
    time.sleep(0.1)


def test_serve_socket_mode_reports_the_connection_and_serves_no_unsigned_route(slack_api, slack_socket, tmp_path):
    port = _free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": "xapp-1-A111-2222-fake-app-token",
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": str(PROJECT_ROOT), "PORT": str(port)}
    env.pop("SLACK_SIGNING_SECRET", None)
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def healthy():
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except requests.ConnectionError:
                assert proc.poll() is None, proc.stdout.read()
                return None
        health = wait_for(healthy, timeout=30, message="serve (Socket Mode) up")
        report = health.json()
        assert health.status_code == 200 and report["mode"] == "socket"
        assert report["socket_mode"]["connected"] is True
        slack_socket.wait_connected(1)
        # no signing secret in Socket Mode, so no HTTP route that would run listeners unsigned
        r = requests.post(f"http://127.0.0.1:{port}/slack/events", data=command_body("run x", user="U1"), timeout=5)
        assert r.status_code in (404, 405)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(40)
    assert code == 0


def test_a_bad_lease_setting_stops_serve_with_one_line(slack_api, tmp_path):
    env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_STATE_DIR": str(tmp_path / "state"),
           "RUNBOOK_BOT_LEASE_SECONDS": "soon", "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run([sys.executable, "-m", "bot", "serve", "--http", "--port", str(_free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "runbook-bot: RUNBOOK_BOT_LEASE_SECONDS='soon': give seconds between 1 and 3600"
