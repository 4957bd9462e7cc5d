"""`/runbook watch` and the watch alert's Roll back button, end to end over signed HTTP, with a real
probe against a local HTTP server and the real watch service."""

from __future__ import annotations

import json
import time

import pytest

from bot.chat.slack.app import build
from bot.chat.slack.server import EVENTS_PATH, HttpServer
from bot.chat.slack.settings import load
from tests.fixtures.slack import wait_for
from tests.slack_requests import click_payload, command_body, interactive_body, post

WATCHED = """\
name: watched
targets:
  site: {platform: http, url: "%(url)s"}
steps:
  - id: mark
    kind: test.mark
    with: {path: "%(path)s", text: "cutover"}
    approval: false
watch:
  every: 10m
  for: 1h
  on_call: ["@platform-oncall"]
  signals:
    - {name: probe, probe: {url: "%(url)s/healthz"}, failures: 1}
"""


@pytest.fixture
def watched(slack_env, httpserver, tmp_path, monkeypatch):
    folder = tmp_path / "runbooks"
    folder.mkdir()
    (folder / "watched.yaml").write_text(WATCHED % {"url": httpserver.url_for("").rstrip("/"),
                                                    "path": tmp_path / "marks.txt"})
    monkeypatch.setenv("RUNBOOK_BOT_RUNBOOKS", str(folder))
    slack_env.add_group("platform-oncall", ["U0BOB"])
    bot = build(load(http=True))
    server = HttpServer(bot).start()
    yield bot, server, slack_env, httpserver
    server.stop()
    bot.close()


def _answers(fake):
    return [json.dumps(c.payload, ensure_ascii=False) for c in fake.calls_to("response_url")]


def test_watch_start_now_alert_rollback_chart_stop(watched):
    bot, server, fake, site = watched
    url = server.url + EVENTS_PATH

    def command(text):
        before = len(fake.calls_to("response_url"))
        post(url, command_body(text, user="U0ALICE", response_url=fake.response_url()))
        return wait_for(lambda: _answers(fake)[before:], message=f"answer to {text}")[0]

    command("run watched")
    run_id = wait_for(lambda: bot.store.list_runs(), message="run")[0]["id"]
    wait_for(lambda: bot.store.get_run(run_id)["state"] == "succeeded", message="run succeeded")

    site.expect_request("/healthz").respond_with_data("ok")
    assert "Watching run" in command(f"watch {run_id} start")
    assert "Posted a watch summary" in command(f"watch {run_id} now")
    bot.channel.drain()
    summary = wait_for(lambda: [m for m in fake.messages.values() if "Watch summary #1" in (m["text"] or "")],
                       message="summary in the thread")[0]
    assert summary["thread_ts"] and "🟢" in summary["text"]
    assert summary["blocks"][0]["text"]["text"].startswith("🟢 *First summary:")
    # the App Home lists the running watch with that line, from memory and, after a restart, from the store
    bot.home.start().opened("U0ALICE")
    home = wait_for(lambda: [c.payload["view"] for c in fake.calls_to("views.publish")
                             if "First summary" in json.dumps(c.payload["view"], ensure_ascii=False)], message="home")
    assert f"run `{run_id}` · #1: First summary" in json.dumps(home[-1], ensure_ascii=False)
    bot.home.summaries.clear()
    rebuilt = bot.home.rows("U0ALICE")["watches"]
    assert [w["line"] for w in rebuilt] == ["#1: First summary: 1 signal(s), 1 ok."]

    # the site starts failing: the next tick breaches and alerts the on-call with a Roll back button
    site.clear()
    site.expect_request("/healthz").respond_with_data("down", status=503)
    command(f"watch {run_id} now")
    bot.channel.drain()
    alert = wait_for(lambda: [m for m in fake.messages.values() if "Watch breach" in (m["text"] or "")],
                     message="alert")[0]
    group_id = fake.usergroups["platform-oncall"]["id"]
    assert f"<!subteam^{group_id}|@platform-oncall>" in alert["text"]  # a mention that notifies the group
    broadcast = [c for c in fake.calls_to("chat.postMessage") if "Watch breach" in c.payload.get("text", "")]
    assert broadcast[0].payload.get("reply_broadcast") is True
    buttons = {e["action_id"]: e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]}
    assert set(buttons) == {"alert_ack", "run_rollback"}
    button = buttons["run_rollback"]
    assert json.loads(button["value"]) == {"run": run_id}
    # the summary before it says in words what changed; the alert does not repeat its table, and
    # carries the chart itself
    second = next(m for m in fake.messages.values() if "Watch summary #2" in (m["text"] or ""))
    assert "Changed since summary #1:" in second["blocks"][0]["text"]["text"]
    assert "ok → breach" in second["blocks"][0]["text"]["text"]
    alert_text = json.dumps(alert["blocks"], ensure_ascii=False)
    assert "Crossed:" in alert_text and "full table is in summary #2" in alert_text and "chart attached" in alert_text
    assert sum(1 for b in alert["blocks"] if b["type"] == "section" and "🔴 *" in b["text"]["text"]) == 0
    # the breach is paged again until acknowledged: the on-demand tick told the pager too
    pages = bot.reminders.tick(now=time.time() + bot.reminders.alert_repeat + 1)
    assert [p["kind"] for p in pages] == ["page"]
    charts = [f for f in fake.files.values() if (f.get("name") or "").endswith(".png") and "alert" in f["name"]]
    assert charts and charts[0]["content"].startswith(b"\x89PNG")

    before = len(fake.calls_to("response_url"))
    post(url, interactive_body(click_payload({**button, "block_id": "alert"}, user="U0BOB",
                                             response_url=fake.response_url())))
    wait_for(lambda: bot.store.get_run(run_id)["state"] in ("rolling_back", "rolled_back"), message="rollback")
    assert "rolling back" in wait_for(lambda: _answers(fake)[before:], message="rollback answer")[0]
    assert any(e["action"].startswith("run.rolling_back") or e["to_state"] == "rolling_back"
               for e in bot.store.events(run_id))

    assert "Attached the watch chart" in command(f"watch {run_id} chart")
    upload = wait_for(lambda: fake.calls_to("upload"), message="chart upload")[-1]
    assert upload.raw.startswith("\ufffdPNG") or "PNG" in upload.raw[:8]

    assert "Stopped the watch" in command(f"watch {run_id} stop")
    # once the watch is over, its unacknowledged breach stops paging
    assert bot.reminders.tick(now=time.time() + 10 * bot.reminders.alert_repeat) == []
    assert "has no active watch" in command(f"watch {run_id} stop")
    assert "has no active watch" in command(f"watch {run_id} now")
