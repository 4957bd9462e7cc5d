"""App Home and the reminder schedule, through signed HTTP into the real bolt app (uvicorn), the real
engine, and the fake Slack Web API. The schedule runs under a controlled clock: `tick(now=...)`."""

from __future__ import annotations

import json

import pytest
import requests
from slack_sdk.models.views import View

from bot.chat.slack.app import build
from bot.chat.slack.server import EVENTS_PATH, HttpServer
from bot.chat.slack.settings import load
from tests.fixtures.slack import wait_for
from tests.slack_requests import click_payload, command_body, event_body, event_headers, interactive_body, post

NUDGED = """\
name: nudged
description: One mark whose approval is reminded, escalated and expires
approvals:
  default: {approvers: ["@platform-oncall"], min: 1, allow_self: false, remind_every: 10m,
            escalate_after: 30m, escalate_to: ["@platform-leads"], notify: %(notify)s, expires_after: 1h}
steps:
  - id: mark
    kind: test.mark
    with: {path: "%(path)s", text: nudged}
"""


@pytest.fixture
def served(slack_env, demo_runbooks):
    fake = slack_env
    fake.add_group("platform-oncall", ["U0ALICE", "U0BOB", "U0CAROL"])
    fake.add_group("platform-leads", ["U0LEAD"])
    folder = demo_runbooks.parent / "runbooks"
    for notify in ("dm", "mention"):
        (folder / f"nudged-{notify}.yaml").write_text(
            NUDGED.replace("name: nudged", f"name: nudged-{notify}") % {"path": demo_runbooks, "notify": notify},
            encoding="utf-8")
    bot = build(load(http=True))
    bot.home.min_interval = 0.0
    bot.start_background(watches=False)
    server = HttpServer(bot).start()
    yield bot, server, fake
    server.stop()
    bot.close()


def _open_home(server, user):
    body = event_body({"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"})
    r = requests.post(server.url + EVENTS_PATH, data=body.encode(), headers=event_headers(body), timeout=10)
    assert r.status_code == 200


def _homes(fake, user):
    out = []
    for call in fake.calls_to("views.publish"):
        if call.payload["user_id"] == user:
            view = call.payload["view"]
            out.append(json.loads(view) if isinstance(view, str) else view)
    return out


def _sections(view, header):
    """The text of the rows under `header` (up to the next divider)."""
    rows, inside = [], False
    for block in view["blocks"]:
        if block["type"] == "header":
            inside = block["text"]["text"] == header
            continue
        if block["type"] == "divider":
            inside = False
        if inside and block["type"] == "section":
            rows.append(block["text"]["text"])
    return rows


def _latest(fake, user, predicate, message):
    return wait_for(lambda: next((v for v in reversed(_homes(fake, user)) if predicate(v)), None), message=message)


def test_app_home_is_published_after_each_transition_with_the_right_rows(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    for user in ("U0ALICE", "U0BOB", "U0DAVE"):
        _open_home(server, user)
    empty = wait_for(lambda: _homes(fake, "U0BOB"), message="home on open")[0]
    View(**empty).validate_json()
    assert _sections(empty, "Waiting for your approval") == []

    post(url, command_body("run demo env=production", user="U0ALICE", response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    # Bob may approve: the step waiting for him comes first, with a link to the run's thread
    bob = _latest(fake, "U0BOB", lambda v: any(run_id in r and "|thread>" in r
                                               for r in _sections(v, "Waiting for your approval")),
                  "Bob's home lists the approval, linked to its thread")
    View(**bob).validate_json()
    waiting = _sections(bob, "Waiting for your approval")
    assert len(waiting) == 1 and "step *mark-a* awaiting_approval" in waiting[0]
    header = bot.poster.ref(run_id, "header")
    assert f"/archives/{header[0]}/p{header[1].replace('.', '')}|thread>" in waiting[0]
    # Alice started it and may not approve her own run: it is under Runs, not waiting for her
    alice = _latest(fake, "U0ALICE", lambda v: any(run_id in r for r in _sections(v, "Runs")), "Alice's home")
    assert _sections(alice, "Waiting for your approval") == []

    # Bob approves: mark-a applies, mark-b waits; his Home follows the run to the next step
    step = wait_for(lambda: next((m for m in list(fake.messages.values()) if m.get("thread_ts")
                                  and "step `mark-a`" in json.dumps(m["blocks"])
                                  and any(b["type"] == "actions" for b in m["blocks"])), None), message="buttons")
    approve = next(dict(e, block_id=b["block_id"]) for b in step["blocks"] if b["type"] == "actions"
                   for e in b["elements"] if e["action_id"] == "step_approve")
    post(url, interactive_body(click_payload(approve, user="U0BOB", message_ts=step["ts"])))
    bob = _latest(fake, "U0BOB", lambda v: any("mark-b" in r for r in _sections(v, "Waiting for your approval")),
                  "Bob's home after the approval")
    assert "mark-a" not in json.dumps(_sections(bob, "Waiting for your approval"))
    # Dave is neither the starter nor an approver: the run never shows on his Home
    assert all(run_id not in json.dumps(v) for v in _homes(fake, "U0DAVE"))
    # once the run ends (aborted) it leaves Bob's waiting list
    bot.runner.abort(run_id, user="U0ALICE", front_end="slack")
    _latest(fake, "U0BOB", lambda v: not _sections(v, "Waiting for your approval") and run_id not in json.dumps(v),
            "Bob's home after the abort")


def _thread_texts(fake):
    return [m.get("text") or "" for m in fake.messages.values() if m.get("thread_ts")]


def test_reminders_escalation_and_expiry_at_the_configured_times_under_a_controlled_clock(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    post(url, command_body("run nudged-dm", user="U0ALICE", response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    step = wait_for(lambda: (s := bot.store.get_step(run_id, "mark"))["state"] == "awaiting_approval" and s,
                    message="awaiting")
    t0 = step["requested_at"]
    bot.channel.drain()
    dms = lambda: sorted(c.payload["channel"] for c in fake.calls_to("chat.postMessage")  # noqa: E731
                         if c.payload["channel"].startswith("U"))

    assert bot.reminders.tick(now=t0 + 9 * 60) == []  # not due yet
    sent = bot.reminders.tick(now=t0 + 10 * 60)
    assert [(s["kind"], s["to"]) for s in sent] == [("reminder", ["@platform-oncall"])]
    assert dms() == ["U0ALICE", "U0BOB", "U0CAROL"]
    reminder = next(t for t in _thread_texts(fake) if "Reminder" in t and "waited 10m00s" in t)
    assert "sent by DM to 3 approver(s)" in reminder and "<@" not in reminder and "subteam" not in reminder
    assert bot.reminders.tick(now=t0 + 11 * 60) == []  # claimed once: no repeat within the interval

    sent = bot.reminders.tick(now=t0 + 30 * 60)  # escalation, and the third reminder (one, not two)
    assert [(s["kind"], s["to"]) for s in sent] == [("escalated", ["@platform-leads"]),
                                                    ("reminder", ["@platform-oncall", "@platform-leads"])]
    assert "U0LEAD" in dms()
    events = [e["action"] for e in bot.store.events(run_id)]
    assert events.count("approval.reminded") == 2 and events.count("approval.escalated") == 1

    sent = bot.reminders.tick(now=t0 + 61 * 60)
    assert [s["kind"] for s in sent] == ["expired"]
    bot.channel.drain()
    expired = next(m for m in fake.messages.values() if "Expired, nothing applied" in json.dumps(m.get("blocks")))
    assert bot.reminders.tick(now=t0 + 90 * 60) == []  # expired once; no more reminders
    # the approvers' Home no longer lists it as waiting for them: it says it expired
    bot.home.wall = lambda: t0 + 61 * 60
    rows = bot.home.rows("U0BOB")
    assert rows["waiting"] == [] and [r["expired"] for r in rows["runs"]] == [True]
    assert "approval expired, nothing applied" in json.dumps(bot.home.view("U0BOB"))
    bot.home.wall = lambda: t0
    assert [r["run"].id for r in bot.home.rows("U0BOB")["waiting"]] == [run_id]
    assert not (bot.runner.runbooks_dir.parent / "marks.txt").exists()

    # a late click on Approve is refused by the engine; the answer names the Slack way on, not the CLI
    class Late:
        def now(self):
            return t0 + 61 * 60

    real_clock, bot.runner.clock = bot.runner.clock, Late()
    step_msg = next(m for m in fake.messages.values() if m.get("thread_ts") and "step `mark`" in json.dumps(m["blocks"])
                    and any(b["type"] == "actions" for b in m["blocks"]))
    approve = next(dict(e, block_id=b["block_id"]) for b in step_msg["blocks"] if b["type"] == "actions"
                   for e in b["elements"] if e["action_id"] == "step_approve")
    post(url, interactive_body(click_payload(approve, user="U0BOB", response_url=fake.response_url("late"))))
    refusal = wait_for(lambda: [c.payload for c in fake.calls_to("response_url") if "expired" in json.dumps(c.payload)],
                       message="expired refusal")[0]
    bot.runner.clock = real_clock
    assert "runbook-bot" not in json.dumps(refusal)  # no CLI hint; the button below does it
    assert any(e.get("action_id") == "step_rerequest" for b in refusal["blocks"] if b["type"] == "actions"
               for e in b["elements"])

    # Re-request: someone outside the approvers is refused; an approver gets a fresh request
    button = next(dict(e, block_id=b["block_id"]) for b in expired["blocks"] if b["type"] == "actions"
                  for e in b["elements"])
    assert button["action_id"] == "step_rerequest"
    post(url, interactive_body(click_payload(button, user="U0DAVE", response_url=fake.response_url("d"))))
    wait_for(lambda: any("may not re-request" in json.dumps(c.payload) for c in fake.calls_to("response_url")),
             message="refusal")
    post(url, interactive_body(click_payload(button, user="U0BOB", response_url=fake.response_url("b"))))
    wait_for(lambda: (s := bot.store.get_step(run_id, "mark"))["request_no"] == 2
             and s["state"] == "awaiting_approval", message="asked again")


def test_mention_reminders_ping_in_the_thread_and_send_no_dm(served):
    bot, server, fake = served
    post(server.url + EVENTS_PATH, command_body("run nudged-mention", user="U0ALICE",
                                                response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    step = wait_for(lambda: (s := bot.store.get_step(run_id, "mark"))["state"] == "awaiting_approval" and s,
                    message="awaiting")
    bot.channel.drain()
    bot.reminders.tick(now=step["requested_at"] + 10 * 60)
    group = fake.usergroups["platform-oncall"]["id"]
    reminder = next(t for t in _thread_texts(fake) if "Reminder" in t)
    assert f"<!subteam^{group}|@platform-oncall>" in reminder
    assert not [c for c in fake.calls_to("chat.postMessage") if c.payload["channel"].startswith("U")]


def test_a_breach_alert_pages_on_call_until_acknowledged_and_the_ack_is_audited(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    post(url, command_body("run demo", user="U0ALICE", response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    wait_for(lambda: bot.poster.ref(run_id, "header"), message="thread")
    clock = [1_800_000_000.0]
    bot.reminders.clock = lambda: clock[0]
    alert = {"run_id": run_id, "tick_no": 4, "at": clock[0], "state": "breach", "on_call": ["@platform-oncall"],
             "breached": ["edge_504_rate"], "evidence": ["the edge"], "signals": [
                 {"name": "edge_504_rate", "label": "edge_504_rate", "value": 0.2, "unit": "%", "baseline": 0.0,
                  "threshold": "> 0.1", "state": "breach", "sparkline": "", "detail": None}]}
    bot.runner.channel.post_alert(bot.runner.view(run_id), alert)  # what a watch tick does on a breach
    assert bot.reminders.tick(now=clock[0] + 60) == []
    pages = bot.reminders.tick(now=clock[0] + 301)
    assert [(p["kind"], p["tick_no"]) for p in pages] == [("page", 4)]
    bot.channel.drain()
    page = next(m for m in fake.messages.values() if "not acknowledged yet" in json.dumps(m.get("blocks")))
    ack = next(dict(e, block_id=b["block_id"]) for b in page["blocks"] if b["type"] == "actions"
               for e in b["elements"] if e["action_id"] == "alert_ack")
    post(url, interactive_body(click_payload(ack, user="U0CAROL", response_url=fake.response_url("a"))))
    wait_for(lambda: [e for e in bot.store.events(run_id) if e["action"] == "watch.alert_acknowledged"],
             message="acknowledged")
    event = next(e for e in bot.store.events(run_id) if e["action"] == "watch.alert_acknowledged")
    assert event["detail"] == {"tick_no": 4, "by": "U0CAROL"}
    assert bot.reminders.tick(now=clock[0] + 2000) == []  # no more pages once acknowledged


def test_a_burst_of_transitions_is_one_publish_per_viewer_per_interval(served):
    """Coalescing under a controlled clock: 20 transitions within the interval publish once, the newest state."""
    bot, server, fake = served
    post(server.url + EVENTS_PATH, command_body("run demo", user="U0ALICE", response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    wait_for(lambda: bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval", message="awaiting")
    clock = [1000.0]
    bot.home.clock = lambda: clock[0]
    bot.home.min_interval = 60.0
    bot.home.opened("U0BOB")
    wait_for(lambda: len(_homes(fake, "U0BOB")) == 1, message="the first publish")
    view = bot.runner.view(run_id)
    for _ in range(20):
        bot.home.run_changed(view)
    wait_for(lambda: bot.home._changed == {} and "U0BOB" in bot.home._dirty, message="resolved, waiting")
    assert len(_homes(fake, "U0BOB")) == 1  # nothing more within the interval
    clock[0] += 61
    with bot.home._cond:
        bot.home._cond.notify_all()
    wait_for(lambda: len(_homes(fake, "U0BOB")) == 2, message="one publish for the burst")
    assert bot.home.idle() and len(_homes(fake, "U0BOB")) == 2


@pytest.mark.parametrize("action_id,value", [("step_rerequest", "not json"), ("step_rerequest", '{"run": 5}'),
                                             ("alert_ack", "[]"), ("alert_ack", '{"run": "r-x", "tick": "x"}')])
def test_damaged_rerequest_and_acknowledge_buttons_are_answered_and_record_nothing(served, action_id, value):
    bot, server, fake = served
    r = post(server.url + EVENTS_PATH, interactive_body(click_payload(
        {"action_id": action_id, "value": value}, user="U0BOB", response_url=fake.response_url("h"))))
    assert r.status_code == 200
    answer = wait_for(lambda: fake.calls_to("response_url"), message="a private answer")[0]
    assert "nothing was recorded" in json.dumps(answer.payload) or "cannot be acknowledged" in json.dumps(answer.payload)
    assert bot.store.events() == []


def _home_click(button, *, user):
    """A click on an App Home button: Slack sends no channel and no response_url for these."""
    payload = click_payload(button, user=user)
    payload.pop("channel")
    payload.pop("response_url")
    payload["container"] = {"type": "view", "view_id": "V0HOME"}
    payload["view"] = {"id": "V0HOME", "type": "home", "blocks": []}
    return payload


def _home_button(view, run_id, action_id):
    return next(dict(e, block_id=b["block_id"]) for b in view["blocks"] if b["type"] == "actions"
                and run_id in b["block_id"] for e in b["elements"] if e["action_id"] == action_id)


def test_an_approver_decides_from_the_app_home_and_the_engine_still_checks_who_clicked(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    _open_home(server, "U0BOB")
    post(url, command_body("run demo env=production", user="U0ALICE", response_url=fake.response_url()))
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    bob = _latest(fake, "U0BOB", lambda v: any(run_id in b.get("block_id", "") for b in v["blocks"]),
                  "Bob's home carries the step's buttons")
    View(**bob).validate_json()
    approve = _home_button(bob, run_id, "step_approve")
    assert json.loads(approve["value"])["digest"]  # bound to the plan Bob was shown, as in the thread
    _home_button(bob, run_id, "step_reject")

    # Dave is no approver: a replayed Home button is refused, he hears why in a DM, nothing moves
    post(url, interactive_body(_home_click(approve, user="U0DAVE")))
    wait_for(lambda: any(e["action"] == "approval.refused" and e["actor"] == "U0DAVE"
                         for e in bot.store.events(run_id)), message="Dave's refusal audited")
    wait_for(lambda: any(c.payload.get("channel") == "U0DAVE" for c in fake.calls_to("chat.postMessage")),
             message="Dave told privately")
    assert bot.store.get_step(run_id, "mark-a")["state"] == "awaiting_approval"
    assert bot.store.approvals(run_id, "mark-a") == []

    # Bob approves from his Home: the step applies, and his Home moves on to the next step
    post(url, interactive_body(_home_click(approve, user="U0BOB")))
    wait_for(lambda: bot.store.get_step(run_id, "mark-a")["state"] == "succeeded", message="mark-a applied")
    assert [a["approver"] for a in bot.store.approvals(run_id, "mark-a")] == ["U0BOB"]
    _latest(fake, "U0BOB", lambda v: any("mark-b" in r for r in _sections(v, "Waiting for your approval")),
            "Bob's home after approving from it")
    # the same click again (a double click, a replay) changes nothing
    post(url, interactive_body(_home_click(approve, user="U0BOB")))
    assert [a["approver"] for a in bot.store.approvals(run_id, "mark-a")] == ["U0BOB"]
    bot.runner.abort(run_id, user="U0ALICE", front_end="slack")
