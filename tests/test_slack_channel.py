"""The Slack channel against the fake Web API: threads, limits, rate limits, the outbox, secrets."""

from __future__ import annotations

import json

import pytest
from slack_sdk.errors import SlackApiError

from bot import secrets
from bot.chat.slack.app import build
from bot.chat.slack.channel import SlackChannel
from bot.chat.slack.directory import DirectoryUnavailable, SlackDirectory
from bot.chat.slack.settings import load
from bot.chat.slack.web import Poster, make_client
from bot.engine.channel import Progress
from bot.engine.store import open_store
from tests.fixtures.slack import BOT_TOKEN, wait_for
from tests.test_slack_messages import ENV_MATRIX, POLICY, make_run, make_step, realistic_plan

CANARIES = ("canary-db-pass-9f8e7d6c", "xoxp-canary-token-1234567890", "AKIAcanaryKEYVALUE42")


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(store_where):
    return open_store(store_where)


@pytest.fixture
def poster(slack_api, store):
    return Poster(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=2), store)


@pytest.fixture
def channel(poster):
    ch = SlackChannel(poster)
    yield ch
    ch.close()


def test_a_run_is_one_thread_header_edited_in_place(slack_api, channel):
    run = make_run([make_step(0, state="pending"), make_step(1, state="pending")])
    channel.run_updated(run)
    step = make_step(0, state="awaiting_approval", plan=realistic_plan(), needs_approval=True,
                     approval_policy=POLICY, requested_at=run.created_at)
    channel.post_plan(run, step)
    channel.request_approval(run, step)
    run.state = "succeeded"
    channel.run_finished(run)
    channel.drain()
    thread = list(slack_api.messages.values())
    parents = [m for m in thread if not m["thread_ts"]]
    assert len(parents) == 1
    replies = [m for m in thread if m["thread_ts"] == parents[0]["ts"]]
    # the step (edited, not re-posted), the note asking its approvers, and the "finished" notice
    assert len(replies) == 3
    ask = next(m for m in replies if "waits for approval" in m["text"])
    assert "<@U0BOB>" in ask["text"] and "waits for 2 approval(s)" in json.dumps(ask["blocks"])
    assert "succeeded" in parents[0]["text"] and parents[0]["edits"] >= 1
    step_msg = next(m for m in replies if "step-0" in m["text"])
    assert "Approval needed" in json.dumps(step_msg["blocks"])  # its newest content


def test_secrets_never_reach_slack_even_when_a_view_carries_them(slack_api, channel):
    """The last line of defence: views are redacted by the store normally; here they are not."""
    secrets.register(*CANARIES)
    plan = realistic_plan()
    plan["summary"] = f"connect with postgres://app:{CANARIES[0]}@db:5432/app"
    plan["changes"][0]["after"] = CANARIES[1]
    plan["table"] = [["name", "value"], ["AWS_ACCESS_KEY_ID", CANARIES[2]]] + ENV_MATRIX[1:300]  # forces a file
    plan["warnings"] = [f"token {CANARIES[1]} is a user token"]
    plan["data"] = {"password": CANARIES[0]}
    run = make_run(params={"db": CANARIES[0]}, error=f"failed: {CANARIES[2]}")
    step = make_step(0, state="failed", plan=plan, error=f"boom {CANARIES[0]}", needs_approval=True,
                     approval_policy={**POLICY, "confirm_text": CANARIES[1]},
                     result={"summary": CANARIES[2], "table": [["k"], [CANARIES[0]]]})
    channel.run_updated(run)
    channel.post_plan(run, step)
    channel.step_finished(run, step)
    channel.notify(run, f"note {CANARIES[1]}")
    channel.post_summary(run, {"run_id": run.id, "tick_no": 1, "at": 0, "gap_seconds": None, "final": False,
                               "state": "ok", "signals": [{"name": "probe", "label": CANARIES[0], "value": CANARIES[1],
                                                           "unit": None, "baseline": None, "threshold": None,
                                                           "state": "ok", "sparkline": "", "detail": CANARIES[2]}]})
    channel.run_finished(run)
    channel.drain()
    wait_for(lambda: slack_api.calls_to("files.completeUploadExternal"), message="full output attached")
    everything = slack_api.all_text()
    for canary in CANARIES:
        assert canary not in everything
    # and the places where they were are there, masked (the test would pass vacuously otherwise)
    assert json.dumps(secrets.MASK)[1:-1] in everything or secrets.MASK in everything
    upload = slack_api.calls_to("upload")[0].raw
    assert "AWS_ACCESS_KEY_ID" in upload and secrets.MASK in upload


def test_a_cut_message_attaches_the_full_output_once(slack_api, channel):
    run = make_run()
    plan = {**realistic_plan(), "table": ENV_MATRIX}
    step = make_step(0, state="planned", plan=plan)
    channel.post_plan(run, step)
    channel.post_plan(run, step)  # the same content again: no second upload
    channel.drain()
    uploads = wait_for(lambda: slack_api.calls_to("upload"), message="upload")
    assert len(uploads) == 1 and "VAR_399_" in uploads[0].raw
    complete = slack_api.calls_to("files.completeUploadExternal")[0].payload
    header_ts = next(m["ts"] for m in slack_api.messages.values() if not m["thread_ts"])
    assert complete.get("thread_ts") == header_ts  # in the run's thread
    msg = next(m for m in slack_api.messages.values() if m["thread_ts"])
    assert len(msg["blocks"]) <= 50 and "full output attached" in json.dumps(msg["blocks"])


def test_rate_limited_posts_are_retried_after_retry_after(slack_api, channel):
    slack_api.fail("chat.postMessage", "ratelimited", retry_after=1)
    channel.run_updated(make_run())
    channel.drain()
    attempts = slack_api.calls_to("chat.postMessage")
    assert len(attempts) == 2 and attempts[1].at - attempts[0].at >= 0.9
    assert len(slack_api.messages) == 1


def test_posts_failing_after_retries_wait_in_the_outbox_and_go_out_in_order(slack_api, channel, poster):
    slack_api.fail("chat.postMessage", "internal_error", status=500, times=3)  # more than the retries
    run = make_run([make_step(0, state="pending")])
    channel.run_updated(run)
    channel.post_plan(run, make_step(0, state="planned", plan=realistic_plan()))
    channel.post_plan(run, make_step(0, state="awaiting_approval", plan=realistic_plan(), needs_approval=True,
                                     approval_policy=POLICY))
    channel.drain()
    assert slack_api.messages == {}
    pending = poster.pending()
    # one entry per message; the step's newest content superseded the older one
    assert [(p["name"], p["method"]) for p in pending] == [("header", "message"), ("step:step-0", "message")]
    assert "Approval needed" in pending[1]["payload"]

    assert poster.flush(force=True) == 2
    parents = [m for m in slack_api.messages.values() if not m["thread_ts"]]
    replies = [m for m in slack_api.messages.values() if m["thread_ts"]]
    assert len(parents) == 1 and len(replies) == 1 and replies[0]["thread_ts"] == parents[0]["ts"]
    assert "Approval needed" in json.dumps(replies[0]["blocks"])
    assert poster.pending() == []

    # later edits of a flushed message are chat.update, not new posts
    channel.step_finished(run, make_step(0, state="succeeded", plan=realistic_plan()))
    channel.drain()
    assert len(slack_api.calls_to("chat.update")) == 1


def test_progress_edits_at_most_once_a_second(slack_api, poster):
    clock = FakeClock()
    ch = SlackChannel(poster, clock=clock)
    run, step = make_run(), make_step(0, state="applying")
    ch.run_updated(run)
    ch.post_plan(run, step)
    ch.drain()
    before = len(slack_api.calls_to("chat.update")) + len(slack_api.calls_to("chat.postMessage"))
    for i in range(10):
        ch.report_progress(run, step, Progress(done=i, total=10, message="copying", unit="tables"))
        clock.t += 0.05
    ch.drain()
    after_burst = len(slack_api.calls_to("chat.update")) + len(slack_api.calls_to("chat.postMessage"))
    assert after_burst - before == 1
    clock.t += 1.0
    ch.report_progress(run, step, Progress(done=10, total=10, message="copying", unit="tables"))
    ch.drain()
    last = slack_api.calls_to("chat.update")[-1].payload
    assert "10 / 10 tables" in json.dumps(last["blocks"], ensure_ascii=False)
    ch.close()


def test_directory_resolves_groups_emails_and_ids_with_a_short_cache(slack_api):
    slack_api.add_group("platform-oncall", ["U0BOB"])
    slack_api.emails["ana@example.com"] = "U0ANA"
    clock = FakeClock()
    d = SlackDirectory(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=1), ttl=60, clock=clock)
    assert d.matches("U0BOB", "@platform-oncall") and not d.matches("U0EVE", "@platform-oncall")
    assert d.matches("U0ANA", "ana@example.com") and not d.matches("U0BOB", "ana@example.com")
    assert not d.matches("U0BOB", "nobody@example.com")
    assert d.matches("U0BOB", "U0BOB") and not d.matches("U0BOB", "U0ANA") and d.matches("U0ZED", "*")
    assert not d.matches("U0BOB", "@no-such-group")
    assert not d.matches("U0BOB", "bob")  # a user name is not a spec: it matches nobody
    assert len(slack_api.calls_to("usergroups.users.list")) == 1  # cached
    slack_api.usergroups["platform-oncall"]["users"].append("U0EVE")
    assert not d.matches("U0EVE", "@platform-oncall")  # still cached ...
    clock.t += 61
    assert d.matches("U0EVE", "@platform-oncall")  # ... until the TTL passes


def test_directory_failure_is_undecided_not_a_refusal(slack_api):
    slack_api.fail("usergroups.list", "ratelimited", retry_after=0, times=5)
    d = SlackDirectory(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=1))
    with pytest.raises(DirectoryUnavailable, match="ratelimited"):
        d.matches("U0BOB", "@platform-oncall")


def test_directory_outage_tells_the_clicker_to_retry_and_records_nothing(slack_env, demo_runbooks):
    fake = slack_env
    bot = build(load(http=True))
    try:
        fake.fail("usergroups.list", "internal_error", status=500, times=20)
        run = bot.runner.start("demo", {}, started_by="U0ALICE", front_end="slack", chat={"channel": "C0OPS"})
        wait_for(lambda: bot.store.get_step(run.id, "mark-a")["state"] == "awaiting_approval", message="awaiting")
        bot.channel.drain()
        bot.service.approve(user="U0BOB", channel="C0OPS", run_id=run.id, step_key="mark-a")
        assert bot.store.approvals(run.id, "mark-a") == []
        answer = fake.calls_to("chat.postEphemeral")[-1].payload
        assert "try again" in answer["text"] and answer["user"] == "U0BOB"
        assert any(e["detail"] and e["detail"].get("code") == "directory_unavailable"
                   for e in bot.store.events(run.id))
    finally:
        bot.close()


def test_an_ephemeral_answer_that_slack_refuses_is_logged_not_raised(slack_api, poster, store):
    from bot.chat.slack import messages
    from bot.chat.slack.service import SlackService

    slack_api.fail("chat.postEphemeral", "channel_not_found")
    service = SlackService(runner=None, store=store, poster=poster)
    service.ephemeral(user="U1", channel="C404", response_url=None, msg=messages.render("help", {}))
    with pytest.raises(SlackApiError):  # whereas a bare call does raise
        slack_api.fail("chat.postEphemeral", "channel_not_found")
        poster.send("chat.postEphemeral", channel="C404", user="U1", text="x")


def test_an_older_view_arriving_late_never_overwrites_a_newer_one(slack_api, channel):
    """An engine thread that built its view before a later transition may tell the channel after it."""
    old = make_run([make_step(0, state="awaiting_approval", needs_approval=True, approval_policy=POLICY,
                              requested_at=1.0)], updated_at=2000.0)
    new = make_run([make_step(0, state="interrupted")], updated_at=2001.0)
    channel.step_finished(new, new.steps[0])
    channel.request_approval(old, old.steps[0])  # late: built at 2000, told after the 2001 view
    channel.drain()
    step = next(m for m in slack_api.messages.values() if m["thread_ts"])
    assert "interrupted" in step["text"]
    assert not any(e["action_id"] == "step_approve" for b in step["blocks"] if b["type"] == "actions"
                   for e in b["elements"])
