"""Decisions bound to what the person saw, over signed HTTP into the real bolt app and engine.

- a re-plan between opening the confirm modal and submitting it: the submit is refused, with the new plan;
- someone who may not approve is told so before any modal opens (no views.open), and it is audited.
"""

from __future__ import annotations

import json

from bot.chat.slack.server import EVENTS_PATH
from tests.fixtures.slack import wait_for
from tests.slack_requests import click_payload, command_body, interactive_body, post, view_payload
from tests.test_slack_http import _step_message, served  # noqa: F401 -- the same served bot and step lookup


def _approve_button(fake, step_id):
    m = _step_message(fake, step_id)
    for b in (m or {}).get("blocks") or []:
        if b["type"] == "actions":
            for e in b["elements"]:
                if e["action_id"] == "step_approve":
                    return m, {**e, "block_id": b.get("block_id")}
    return None


def test_replan_between_modal_open_and_submit_refuses_the_submit(served):
    bot, server, fake = served
    url = server.url + EVENTS_PATH
    post(url, command_body("run demo env=production", user="U0ALICE", response_url=fake.response_url()))
    msg, approve_a = wait_for(lambda: _approve_button(fake, "mark-a"), message="mark-a buttons")
    run_id = json.loads(approve_a["value"])["run"]
    assert json.loads(approve_a["value"])["digest"] == bot.runner.view(run_id).steps[0].plan_digest
    post(url, interactive_body(click_payload(approve_a, user="U0BOB", message_ts=msg["ts"])))
    msg_b, approve_b = wait_for(lambda: _approve_button(fake, "mark-b"), message="mark-b buttons")

    # Not an approver: told privately, no modal opened, audited.
    post(url, interactive_body(click_payload(approve_b, user="U0DAVE", message_ts=msg_b["ts"],
                                             response_url=fake.response_url("dave"))))
    wait_for(lambda: any("not_allowed" in json.dumps(c.payload) for c in fake.calls_to("response_url")),
             message="the non-approver is told")
    assert fake.calls_to("views.open") == []

    post(url, interactive_body(click_payload(approve_b, user="U0CAROL", message_ts=msg_b["ts"])))
    view = wait_for(lambda: fake.calls_to("views.open"), message="modal opened")[0].payload["view"]
    assert json.loads(view["private_metadata"])["digest"] == json.loads(approve_b["value"])["digest"]

    assert bot.runner.replan(run_id, user="U0ALICE", front_end="slack").ok  # the plan is made again
    bot.runner.wait_idle()
    wait_for(lambda: bot.store.get_step(run_id, "mark-b")["state"] == "awaiting_approval", message="re-asked")
    r = post(url, interactive_body(view_payload(view, "production", user="U0CAROL")))
    assert r.status_code == 200
    refusal = wait_for(lambda: [e for e in bot.store.events(run_id)
                                if e["action"] == "approval.refused" and e["detail"].get("code") == "plan_changed"],
                       message="the stale submit is refused")
    assert "The plan now is:" in refusal[0]["detail"]["message"]
    assert bot.store.get_step(run_id, "mark-b")["state"] == "awaiting_approval"
    codes = {e["detail"]["code"] for e in bot.store.events(run_id) if e["action"] == "approval.refused"}
    assert "not_allowed" in codes
