"""Two `serve --http` replicas on one PostgreSQL store, driven through signed HTTP like a load balancer.

Each replica is a real subprocess with its own state folder (as two containers would have); they
share the PostgreSQL store, the fake Slack and the runbooks. Requests alternate between them.
What must hold (issue 15): racing clicks apply a step once whichever replica got them; a replica
killed with SIGKILL while applying leaves its step for the other to surface as interrupted; the
watch scheduler runs on one replica at a time and moves when its holder is killed, with no tick
lost or doubled; one Slack delivery handled once.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from bot.engine.liveness import STALE_AFTER_SECONDS
from bot.engine.store import open_store
from tests.fixtures.slack import BOT_TOKEN, SIGNING_SECRET, wait_for
from tests.slack_requests import click_payload, command_body, interactive_body, post
from tests.test_slack_http import _buttons, _step_message

ROOT = Path(__file__).resolve().parents[1]
EVENTS = "/slack/events"
RACERS = [f"U0R{i:02d}" for i in range(50)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Replica:
    """One `runbook-bot serve --http` process."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / f"{name}.log"
        state = cwd / f"state-{name}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--http", "--port", str(self.port)],
            env={**env, "RUNBOOK_BOT_STATE_DIR": str(state)}, cwd=cwd,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def health(self) -> dict | None:
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).json()
        except (requests.ConnectionError, requests.Timeout, ValueError):
            assert self.proc.poll() is None, f"{self.name} exited: {self.log.read_text()[-3000:]}"
            return None

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


RUNBOOKS = {
    "race": """
        name: race
        approvals: {{default: {{approvers: {racers}, min: 1}}}}
        steps:
          - id: once
            kind: test.touch
            with: {{path: "{tmp}/race.txt", line: "once"}}
    """,
    "hold": """
        name: hold
        approvals: {{default: {{approvers: ["U0BOB"]}}}}
        steps:
          - id: hold
            kind: test.block
            with: {{started: "{tmp}/started", release: "{tmp}/release", silent: true}}
    """,
    "watched": """
        name: watched
        approvals: {{default: {{approvers: ["U0BOB"]}}}}
        steps:
          - id: watch
            kind: watch.start
            with: {{every: 2s, for: 10m, log_file: "{tmp}/api.log", signals: [log_volume]}}
    """,
}


@pytest.fixture
def replicas(slack_api, pg_store_url, tmp_path):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    for name, text in RUNBOOKS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text.format(racers=json.dumps(RACERS), tmp=tmp_path)))
    (tmp_path / "api.log").write_text("")
    env = {**os.environ, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": slack_api.base_url, "RUNBOOK_BOT_DB": pg_store_url, "RUNBOOK_BOT_RUNBOOKS": str(folder),
           "RUNBOOK_BOT_PLUGINS": "tests.kinds", "RUNBOOK_BOT_LEASE_SECONDS": "3", "PYTHONPATH": str(ROOT)}
    env.pop("PORT", None)
    pair = [Replica("a", env, tmp_path), Replica("b", env, tmp_path)]
    try:
        for replica in pair:
            wait_for(replica.health, timeout=60, message=f"replica {replica.name} up")
        yield pair, open_store(pg_store_url), slack_api
    finally:
        for replica in pair:
            replica.stop()


def _start(replica: Replica, fake, runbook: str) -> tuple[str, dict]:
    """`/runbook run RUNBOOK` on `replica`; (run id, the first step's Approve button and message)."""
    r = post(replica.url + EVENTS, command_body(f"run {runbook}", user="U0ALICE", response_url=fake.response_url()))
    assert r.status_code == 200
    step_id = {"race": "once", "hold": "hold", "watched": "watch"}[runbook]
    msg = wait_for(lambda: (m := _step_message(fake, step_id)) and _buttons(m) and m, timeout=30,
                   message=f"{runbook}: approval buttons")
    approve = _buttons(msg)["step_approve"]
    return json.loads(approve["value"])["run"], {"button": approve, "ts": msg["ts"]}


def _click(replica: Replica, fake, asked: dict, user: str) -> int:
    body = interactive_body(click_payload(asked["button"], user=user, message_ts=asked["ts"],
                                          response_url=fake.response_url(user)))
    return post(replica.url + EVENTS, body).status_code


def test_fifty_racing_clicks_across_two_replicas_apply_once(replicas, tmp_path):
    (a, b), store, fake = replicas
    run_id, asked = _start(a, fake, "race")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: _click((a, b)[i % 2], fake, asked, RACERS[i]), range(len(RACERS))))
    assert codes == [200] * len(RACERS)
    wait_for(lambda: store.get_step(run_id, "once")["state"] == "succeeded", timeout=30, message="applied")
    assert (tmp_path / "race.txt").read_text().splitlines() == ["once"]
    assert len([x for x in store.approvals(run_id, "once") if x["decision"] == "approve"]) == 1
    applying = [e for e in store.events(run_id) if e["step_key"] == "once" and e["to_state"] == "applying"]
    assert len(applying) == 1


def test_a_replica_killed_mid_apply_is_surfaced_as_interrupted_by_the_other(replicas, tmp_path):
    (a, b), store, fake = replicas
    run_id, asked = _start(b, fake, "hold")
    assert _click(a, fake, asked, "U0BOB") == 200  # replica a takes the click and applies
    wait_for((tmp_path / "started").exists, timeout=30, message="apply started on a")
    assert store.get_step(run_id, "hold")["owner"].split(":")[1] == str(a.proc.pid)
    a.kill()
    step = wait_for(lambda: (s := store.get_step(run_id, "hold")) and s["state"] == "interrupted" and s,
                    timeout=STALE_AFTER_SECONDS + 10, message="b marks a's step interrupted")
    event = next(e for e in store.events(run_id) if e["action"] == "step.interrupted")
    assert event["actor"] == "engine" and step["state"] == "interrupted"
    assert b.health()["store"]["ok"] is True  # and the survivor serves on
    (tmp_path / "release").write_text("go")
    assert store.get_step(run_id, "hold")["state"] == "interrupted"  # nothing re-applies it on its own


def _ticks_posted(fake, run_id: str) -> list[int]:
    text = [json.dumps(c.payload) for c in fake.calls_to("chat.postMessage")]
    return sorted(int(n) for t in text for n in re.findall(rf"run `{run_id}` \\u00b7 tick (\d+)", t))


def test_the_watch_runs_on_one_replica_and_moves_when_its_holder_is_killed(replicas, tmp_path):
    (a, b), store, fake = replicas
    run_id, asked = _start(a, fake, "watched")
    assert _click(b, fake, asked, "U0BOB") == 200
    wait_for(lambda: store.get_run(run_id)["state"] == "succeeded", timeout=30, message="watch started")
    wait_for(lambda: len(_ticks_posted(fake, run_id)) >= 2, timeout=30, message="two ticks posted")

    def holder() -> Replica | None:
        held = [r for r in (a, b) if (h := r.health()) and h["leases"].get("watch_scheduler", {}).get("held_here")]
        return held[0] if len(held) == 1 else None

    first = wait_for(holder, timeout=15, message="exactly one replica holds the watch lease")
    other = b if first is a else a
    before = len(_ticks_posted(fake, run_id))
    first.kill()
    wait_for(lambda: other.health()["leases"]["watch_scheduler"]["held_here"], timeout=15,
             message="the survivor takes the watch over")
    wait_for(lambda: len(_ticks_posted(fake, run_id)) >= before + 2, timeout=30, message="ticks go on")
    ticks = _ticks_posted(fake, run_id)
    assert ticks == list(range(1, len(ticks) + 1)), ticks  # none lost, none doubled


def _lists(fake) -> int:
    """Answers of `/runbook list` so far (they name the runbooks of this folder)."""
    return sum(1 for c in fake.calls_to("response_url") if "watched" in c.raw and "race" in c.raw)


def test_one_delivery_reaching_both_replicas_is_handled_once(replicas):
    """The same `/runbook list` (one trigger_id) reaches both replicas, as a retry would: one answer.
    (A `run` would not show it: the environment lock refuses a second start anyway.)"""
    (a, b), store, fake = replicas
    body = command_body("list", user="U0ALICE", response_url=fake.response_url())
    assert post(a.url + EVENTS, body).status_code == 200
    assert post(b.url + EVENTS, body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "timeout"}
                ).status_code == 200
    wait_for(lambda: _lists(fake) >= 1, timeout=30, message="the list answered")
    # A new delivery to the replica that got the repeat, answered after it: by then a repeat handled
    # there would have been answered too.
    assert post(b.url + EVENTS, command_body("list", user="U0BOB", response_url=fake.response_url())
                ).status_code == 200
    wait_for(lambda: _lists(fake) >= 2, timeout=30, message="the new delivery answered")
    time.sleep(1.0)  # settle: a late duplicate answer would land here
    assert _lists(fake) == 2
