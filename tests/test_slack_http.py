"""`serve --http` end to end: signed requests over real HTTP to uvicorn + bolt, the real engine,
a real step kind, and the fake Slack Web API recording what people would see."""

from __future__ import annotations

import concurrent.futures
import json
import time

import pytest
import requests

from bot import secrets
from bot.chat.slack.app import build
from bot.chat.slack.server import EVENTS_PATH, HttpServer
from bot.chat.slack.settings import load
from tests.fixtures.slack import wait_for
from tests.slack_requests import (
    click_payload,
    submission_payload,
    command_body,
    interactive_body,
    post,
    view_payload,
)


@pytest.fixture
def served(slack_env, demo_runbooks):
    fake = slack_env
    fake.add_group("platform-oncall", ["U0ALICE", "U0BOB", "U0CAROL"])
    bot = build(load(http=True))
    server = HttpServer(bot).start()
    yield bot, server, fake
    server.stop()
    bot.close()


def _step_message(fake, step_id):
    """The step's own message (not the note asking its approvers, which names the step too)."""
    for m in list(fake.messages.values()):
        if m.get("thread_ts") and f"step `{step_id}`" in json.dumps(m.get("blocks")) \
                and "waits for approval" not in (m.get("text") or ""):
            return m
    return None


def _buttons(message):
    return {e["action_id"]: {**e, "block_id": b.get("block_id")}
            for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]}


def _responses(fake, user=None):
    return [c.payload for c in fake.calls_to("response_url")]


def test_command_starts_run_clicks_approve_and_the_step_applies_once(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    marks = bot.runner.runbooks_dir / ".." / "marks.txt"

    r = post(url, command_body("run demo env=production", user="U0ALICE", response_url=fake.response_url()))
    assert r.status_code == 200 and r.text == ""

    # the header opens the thread; the first step waits for approval with buttons
    msg = wait_for(lambda: (m := _step_message(fake, "mark-a")) and _buttons(m) and m, message="approval buttons")
    run_id = json.loads(_buttons(msg)["step_approve"]["value"])["run"]
    header = fake.messages[(msg["channel"], msg["thread_ts"])]
    assert "Run of demo" in json.dumps(header["blocks"])
    assert "`env` = production" in json.dumps(header["blocks"])

    approve = _buttons(msg)["step_approve"]
    # the person who started the run may not approve it; someone outside the group may not either
    for user, code in (("U0ALICE", "self_approval"), ("U0DAVE", "not_allowed")):
        r = post(url, interactive_body(click_payload(approve, user=user, message_ts=msg["ts"],
                                                     response_url=fake.response_url(user))))
        assert r.status_code == 200
        wait_for(lambda code=code: any(code in json.dumps(p) for p in _responses(fake)), message=f"{code} refusal")
    assert bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval"
    refused = [e for e in bot.store.events(run_id) if e["action"] == "approval.refused"]
    assert {e["detail"]["code"] for e in refused} == {"self_approval", "not_allowed"}

    # a double click (two requests) and a replay of the first: one apply, one "already decided",
    # and the replay answered 200 with nothing done (tests/hostile/test_hostile_slack.py counts that)
    bodies = [interactive_body(click_payload(approve, user="U0BOB", message_ts=msg["ts"],
                                             response_url=fake.response_url("bob"))) for _ in range(2)]
    bodies.append(bodies[0])
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda b: post(url, b), bodies))
    assert [a.status_code for a in answers] == [200, 200, 200]
    wait_for(lambda: bot.store.get_step(run_id, "mark-a")["state"] == "succeeded", message="mark-a applied")
    wait_for(lambda: any("already_decided" in json.dumps(p) for p in _responses(fake)), message="second click refused")

    # the step message: buttons replaced by who approved and when, then the result
    def decided():
        m = _step_message(fake, "mark-a")
        text = json.dumps(m["blocks"])
        return not _buttons(m) and "Approved by <@U0BOB>" in text and "<!date^" in text and "appended" in text
    wait_for(decided, message="step message shows the decision and result")

    # the second step asks for a typed confirmation in a modal
    msg_b = wait_for(lambda: (m := _step_message(fake, "mark-b")) and _buttons(m) and m, message="mark-b buttons")
    approve_b = _buttons(msg_b)["step_approve"]
    r = post(url, interactive_body(click_payload(approve_b, user="U0CAROL", message_ts=msg_b["ts"])))
    assert r.status_code == 200
    opened = wait_for(lambda: fake.calls_to("views.open"), message="modal opened")[0].payload
    assert opened["trigger_id"].endswith("U0CAROL")
    view = opened["view"]

    r = post(url, interactive_body(view_payload(view, "prod", user="U0CAROL")))
    assert r.status_code == 200
    assert r.json() == {"response_action": "errors",
                        "errors": {"confirm_input": "That is not it: type production exactly to approve."}}
    wait_for(lambda: any(e["detail"] and e["detail"].get("code") == "confirm_mismatch"
                         for e in bot.store.events(run_id)), message="audit of the mismatch")
    assert bot.store.get_step(run_id, "mark-b")["state"] == "awaiting_approval"

    r = post(url, interactive_body(view_payload(view, "production", user="U0CAROL")))
    assert r.status_code == 200 and r.text == ""
    wait_for(lambda: bot.store.get_run(run_id)["state"] == "succeeded", message="run succeeded")
    assert marks.resolve().read_text().splitlines() == ["a-production", "b-production"]

    # the header was edited in place to the final state, and the end was announced in the thread
    bot.channel.drain()
    wait_for(lambda: "succeeded" in (fake.messages[(msg["channel"], msg["thread_ts"])]["text"] or ""),
             message="header updated")
    assert fake.messages[(msg["channel"], msg["thread_ts"])]["edits"] >= 2
    wait_for(lambda: any("finished: succeeded" in (m["text"] or "")
                         for m in fake.thread(msg["channel"], msg["thread_ts"])), message="the end announced")
    # every message of the run lives in its thread
    posts = fake.calls_to("chat.postMessage")
    assert sum(1 for c in posts if not c.payload.get("thread_ts")) == 1


@pytest.mark.parametrize("case", ["unsigned", "bad_signature", "stale", "wrong_secret"])
def test_unsigned_badly_signed_and_stale_requests_get_401_and_change_nothing(served, case):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    body = command_body("run demo env=staging", user="U0ALICE", response_url=fake.response_url())
    if case == "unsigned":
        r = requests.post(url, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    elif case == "bad_signature":
        r = post(url, body, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    elif case == "stale":
        r = post(url, body, timestamp=int(time.time()) - 6 * 60)  # correctly signed, 6 minutes old
    else:
        r = post(url, body, secret="f" * 32)
    assert r.status_code == 401
    time.sleep(0.3)  # give a wrongly accepted request time to do harm
    assert bot.store.list_runs() == []
    assert fake.calls_to("chat.postMessage") == [] and fake.calls_to("response_url") == []


def test_a_signed_request_five_minutes_old_is_still_accepted(served):
    """The other side of the stale check: Slack allows 5 minutes of clock skew."""
    bot, server, fake = served
    r = post(server.url + EVENTS_PATH, command_body("help", user="U0ALICE", response_url=fake.response_url()),
             timestamp=int(time.time()) - 4 * 60)
    assert r.status_code == 200
    wait_for(lambda: fake.calls_to("response_url"), message="help answered")


def test_unknown_runbook_gets_closest_matches(served):
    bot, server, fake = served
    post(server.url + EVENTS_PATH, command_body("run dmeo env=staging", user="U0ALICE",
                                                response_url=fake.response_url()))
    answer = wait_for(lambda: fake.calls_to("response_url"), message="answer")[0].payload
    text = json.dumps(answer, ensure_ascii=False)
    assert "no runbook named 'dmeo'" in text and "Did you mean `demo`" in text
    assert answer["response_type"] == "ephemeral"
    assert "/runbook run NAME k=v ..." in text
    assert bot.store.list_runs() == []


@pytest.mark.parametrize("text,problem", [
    ("run demo env", "'env' is not a parameter: write name=value"),
    ("run demo env=staging env=production", "parameter 'env' is given twice"),
    ("run demo env=qa", "expected one of staging, production"),
    ("run demo colour=blue", "unknown parameter 'colour'"),
    ("plan", "`plan` needs a runbook name"),  # `run` alone opens the launcher (test_slack_launcher.py)
    ("abort", "`abort` takes one run id"),
    ("status r-nope", "no run 'r-nope'"),
    ("watch r-1 dance", "`watch` takes a run id and one of start, stop, now, chart"),
    ("lsit", "unknown command 'lsit'"),
    ('run demo "env=staging', "cannot read the arguments"),
])
def test_bad_arguments_get_an_ephemeral_problem_and_the_usage(served, text, problem):
    bot, server, fake = served
    post(server.url + EVENTS_PATH, command_body(text, user="U0ALICE", response_url=fake.response_url()))
    answer = wait_for(lambda: fake.calls_to("response_url"), message="answer")[0].payload
    dumped = json.dumps(answer, ensure_ascii=False)
    assert problem in dumped.replace('\\"', '"')
    assert "Usage:" in dumped and answer["response_type"] == "ephemeral"
    assert bot.store.list_runs() == []


def test_list_help_status_and_healthz(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    post(url, command_body("list", user="U0ALICE", response_url=fake.response_url()))
    listing = wait_for(lambda: fake.calls_to("response_url"), message="list")[0].payload
    assert "*demo*" in json.dumps(listing) and "env=staging" in json.dumps(listing)

    health = requests.get(server.url + "/healthz", timeout=5)
    assert health.status_code == 200
    assert health.json()["store"]["ok"] is True and health.json()["mode"] == "http"


CANARY_RUNBOOK = """\
name: canary
env: [CANARY_DB_URL]
approvals:
  default: {approvers: ["*"], min: 1, allow_self: true}
steps:
  - id: mark
    kind: test.mark
    with: {path: "%(path)s", text: "x", note: "db={{ env.CANARY_DB_URL }}"}
"""


def test_canary_secrets_from_the_environment_never_reach_slack(served, monkeypatch, tmp_path):
    bot, server, fake = served
    canary = "canary-pa55-7f3e9d21"
    monkeypatch.setenv("CANARY_DB_URL", f"postgres://app:{canary}@db.internal:5432/app?sslkey={canary}x")
    (bot.runner.runbooks_dir / "canary.yaml").write_text(CANARY_RUNBOOK % {"path": tmp_path / "c.txt"})
    url = server.url + EVENTS_PATH
    post(url, command_body("run canary", user="U0ALICE", response_url=fake.response_url()))
    msg = wait_for(lambda: (m := _step_message(fake, "mark")) and _buttons(m) and m, message="buttons")
    run_id = json.loads(_buttons(msg)["step_approve"]["value"])["run"]
    post(url, interactive_body(click_payload(_buttons(msg)["step_approve"], user="U0BOB", message_ts=msg["ts"])))
    wait_for(lambda: bot.store.get_run(run_id)["state"] == "succeeded", message="done")
    bot.channel.drain()
    post(url, command_body(f"status {run_id}", user="U0ALICE", response_url=fake.response_url()))
    wait_for(lambda: len(fake.calls_to("response_url")) >= 2, message="status answer")
    everything = fake.all_text()
    assert canary not in everything
    shown = json.dumps(_step_message(fake, "mark")["blocks"], ensure_ascii=False)
    assert "db=" + secrets.MASK in shown  # the note was shown, masked


def test_status_abort_and_rollback_commands(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH

    def say(text, expect, user="U0ALICE"):
        """Send a command and return its answer: the first answer after it that contains `expect`."""
        before = len(fake.calls_to("response_url"))
        post(url, command_body(text, user=user, response_url=fake.response_url()))

        def answer():
            found = [json.dumps(c.payload, ensure_ascii=False) for c in fake.calls_to("response_url")[before:]]
            return next((a for a in found if expect in a), None)
        return wait_for(answer, message=f"{expect!r} in the answer to {text!r}")

    say("run demo", "Started demo")
    run_id = bot.store.list_runs()[0]["id"]
    wait_for(lambda: bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval", message="awaiting")

    assert "mark-a · awaiting_approval" in say("status", run_id)
    say(f"status {run_id[:6]}", run_id)  # a unique prefix is enough

    # a second run on the same environment is refused while the first holds it
    assert run_id in say("run demo", "did not start")

    say(f"abort {run_id}", "aborted")
    assert bot.store.get_run(run_id)["state"] == "aborted"
    assert "nothing to abort" in say(f"abort {run_id}", "not_active")

    say(f"rollback {run_id}", "nothing to undo")  # nothing was applied
    assert bot.store.get_run(run_id)["state"] == "rolled_back"
    say(f"rollback {run_id}", "already rolled_back")


def test_an_ack_does_not_wait_for_busy_workers(served):
    """Fill every work thread with work that cannot finish; a click is still acknowledged, and its
    work runs once a thread is free."""
    bot, server, fake = served
    import threading

    release = threading.Event()
    for _ in range(bot.work._max_workers * 2):
        bot.work.submit(release.wait, 30)
    r = post(server.url + EVENTS_PATH, command_body("help", user="U0ALICE", response_url=fake.response_url()))
    assert r.status_code == 200
    assert fake.calls_to("response_url") == []  # the work has not run: the ack did not wait for it
    release.set()
    wait_for(lambda: fake.calls_to("response_url"), message="help answered once a worker was free")


def test_an_interrupted_step_offers_verify_retry_skip_rollback(served):
    import socket

    bot, server, fake = served
    run = bot.runner.start("demo", {}, started_by="U0ALICE", front_end="slack", chat={"channel": "C0OPS"})
    wait_for(lambda: bot.store.get_step(run.id, "mark-a")["state"] == "awaiting_approval", message="awaiting")
    # the engine has told the channel (a view built before the crash below must not land after it)
    wait_for(lambda: (m := _step_message(fake, "mark-a")) and _buttons(m), message="approval buttons")
    # the process that was applying mark-a died (its pid does not exist)
    assert bot.store.transition_step(run.id, "mark-a", ["awaiting_approval"], "applying", actor="U0BOB",
                                     front_end="slack", owner=f"{socket.gethostname()}:999999999",
                                     started_at=time.time() - 120)
    bot.runner.resume_all()  # marks it interrupted and tells the channel, which offers the decisions
    view = bot.runner.view(run.id)
    step = next(s for s in view.steps if s.key == "mark-a")
    assert step.state == "interrupted"
    bot.channel.drain()
    msg = _step_message(fake, "mark-a")
    buttons = _buttons(msg)
    assert set(buttons) == {"step_resolve_verify", "step_resolve_retry", "step_resolve_skip",
                            "step_resolve_rollback"}
    post(server.url + EVENTS_PATH, interactive_body(click_payload(buttons["step_resolve_skip"], user="U0BOB",
                                                                  message_ts=msg["ts"])))
    wait_for(lambda: bot.store.get_step(run.id, "mark-a")["state"] == "skipped", message="skipped")
    wait_for(lambda: bot.store.get_step(run.id, "mark-b")["state"] == "awaiting_approval", message="run goes on")


def test_reject_stops_the_run_and_shows_who_rejected(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    post(url, command_body("run demo", user="U0ALICE", response_url=fake.response_url()))
    try:
        msg = wait_for(lambda: (m := _step_message(fake, "mark-a")) and _buttons(m) and m, message="buttons")
    except AssertionError:
        print(json.dumps(list(fake.messages.values()), indent=1, ensure_ascii=False)[:6000])
        print([(r["id"], r["state"]) for r in bot.store.list_runs()], fake.methods())
        raise
    run_id = json.loads(_buttons(msg)["step_reject"]["value"])["run"]
    # someone who may not reject is told so at once, with no modal to fill in for nothing
    post(url, interactive_body(click_payload(_buttons(msg)["step_reject"], user="U0DAVE", message_ts=msg["ts"],
                                             response_url=fake.response_url("dave"))))
    wait_for(lambda: any("may not reject" in json.dumps(p) for p in _responses(fake)), message="refusal")
    assert fake.calls_to("views.open") == []
    # Reject asks why first: a modal, opened with the click's trigger id
    post(url, interactive_body(click_payload(_buttons(msg)["step_reject"], user="U0CAROL", message_ts=msg["ts"])))
    modal = wait_for(lambda: fake.calls_to("views.open"), message="reject modal")[0].payload["view"]
    modal = json.loads(modal) if isinstance(modal, str) else modal
    assert modal["callback_id"] == "reject_reason"
    assert bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval"  # nothing decided by the click
    # an empty reason is refused inline and decides nothing
    empty = post(url, interactive_body(submission_payload(modal, {"reject_reason": {"reason": {
        "type": "plain_text_input", "value": "  "}}}, user="U0CAROL")))
    assert empty.json()["response_action"] == "errors" and "reject_reason" in empty.json()["errors"]
    assert bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval"
    r = post(url, interactive_body(submission_payload(modal, {"reject_reason": {"reason": {
        "type": "plain_text_input", "value": "the target app is mid-deploy"}}}, user="U0CAROL")))
    assert r.status_code == 200 and r.text == ""
    wait_for(lambda: bot.store.get_run(run_id)["state"] == "failed", message="run failed")
    bot.channel.drain()
    shown = json.dumps(_step_message(fake, "mark-a")["blocks"], ensure_ascii=False)
    assert "Rejected by <@U0CAROL>" in shown and "the target app is mid-deploy" in shown
    assert not _buttons(_step_message(fake, "mark-a"))
    audit = [e for e in bot.store.events(run_id) if e["action"] == "approval.rejected"]
    assert audit and audit[0]["detail"]["reason"] == "the target app is mid-deploy"
    assert not (bot.runner.runbooks_dir.parent / "marks.txt").exists()


def test_plan_is_a_dry_run_in_a_thread_with_no_buttons(served):
    bot, server, fake = served
    post(server.url + EVENTS_PATH, command_body("plan demo env=production", user="U0ALICE",
                                                response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    wait_for(lambda: bot.store.get_run(run_id)["state"] == "succeeded", message="plan done")
    bot.channel.drain()
    wait_for(lambda: any("dry run" in json.dumps(m["blocks"]) for m in fake.messages.values() if m["thread_ts"]),
             message="finished note")
    header = next(m for m in fake.messages.values() if not m["thread_ts"])
    assert "Plan of demo" in json.dumps(header["blocks"])
    assert all(not _buttons(m) for m in fake.messages.values())
    assert "append 'b-production'" in json.dumps([m["blocks"] for m in fake.messages.values()])
    assert not (bot.runner.runbooks_dir.parent / "marks.txt").exists()
