"""Socket Mode end to end: the fake's apps.connections.open hands out a local WebSocket server that
speaks Slack's envelope protocol; the bot's real SocketModeHandler connects, acks, reconnects."""

from __future__ import annotations

import json
import time

import pytest

from bot.chat.slack.app import build
from bot.chat.slack.settings import load
from bot.chat.slack.socket_mode import SocketModeRunner
from bot.engine.store import open_store
from tests.fixtures.slack import APP_TOKEN, wait_for
from tests.slack_requests import click_payload, command_payload


@pytest.fixture
def socket_bot(slack_env, slack_socket, demo_runbooks, monkeypatch):
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.delenv("SLACK_SIGNING_SECRET")  # Socket Mode needs none
    fake = slack_env
    fake.add_group("platform-oncall", ["U0BOB"])
    settings = load(http=False)
    assert settings.socket_mode
    bot = build(settings)
    bot.socket = SocketModeRunner(bot.app, settings.app_token, ping_interval=1.0, grace=2.0, check_every=0.2)
    bot.socket.start()
    slack_socket.wait_connected(1)
    yield bot, slack_socket, fake
    bot.close()


def _approve_button(fake):
    for m in list(fake.messages.values()):
        for b in m.get("blocks") or []:
            if b["type"] == "actions":
                for e in b["elements"]:
                    if e["action_id"] == "step_approve":
                        return m, {**e, "block_id": b["block_id"]}
    return None


def test_command_and_click_over_the_socket_then_reconnect_and_go_on(socket_bot):
    bot, server, fake = socket_bot
    assert bot.health()[0] is True and bot.health()[1]["socket_mode"]["connected"] is True

    envelope = server.deliver("slash_commands", command_payload("run demo env=staging", user="U0ALICE",
                                                                response_url=fake.response_url()))
    ack = server.wait_ack(envelope)
    assert ack["envelope_id"] == envelope and not ack.get("payload")  # an empty ack: the work happens later

    msg, button = wait_for(lambda: _approve_button(fake), message="approval buttons")
    run_id = json.loads(button["value"])["run"]
    assert fake.calls_to("apps.connections.open")[0].headers["Authorization"] == f"Bearer {APP_TOKEN}"

    # Slack restarts its end: the client must ask for a new URL and reconnect by itself
    opened_before = len(fake.calls_to("apps.connections.open"))
    server.drop()
    server.wait_connected(2)
    wait_for(lambda: bot.socket.is_connected(), message="reconnected")
    assert len(fake.calls_to("apps.connections.open")) > opened_before

    # ... and goes on: a click on the new connection approves and the step applies
    envelope = server.deliver("interactive", click_payload(button, user="U0BOB", message_ts=msg["ts"],
                                                           response_url=fake.response_url()))
    server.wait_ack(envelope)
    wait_for(lambda: bot.store.get_step(run_id, "mark-a")["state"] == "succeeded", message="applied after reconnect")
    assert bot.socket.health()["reconnects"] >= 1

    # a redelivery of the same click (Slack's retry_attempt) applies nothing twice
    envelope = server.deliver("interactive", click_payload(button, user="U0BOB", message_ts=msg["ts"],
                                                           response_url=fake.response_url()), retry_attempt=1)
    server.wait_ack(envelope)
    wait_for(lambda: any("already_decided" in c.raw for c in fake.calls_to("response_url")),
             message="redelivery refused")
    marks = bot.runner.runbooks_dir.parent / "marks.txt"
    assert marks.read_text().splitlines() == ["a-staging"]


def test_healthz_reports_a_dead_socket(socket_bot):
    bot, server, fake = socket_bot
    fake.socket_url = None  # Slack stops handing out URLs: reconnects fail
    server.drop()
    wait_for(lambda: not bot.socket.is_connected(), message="disconnected")
    ok, report = bot.health()
    assert ok is False and report["socket_mode"]["connected"] is False and report["store"]["ok"] is True


def test_two_replicas_in_socket_mode_handle_an_envelope_delivered_to_both_once(slack_env, slack_socket, demo_runbooks,
                                                                              monkeypatch, pg_store_url):
    """Slack allows several Socket Mode connections per app and may redeliver an envelope that was not
    acknowledged in time on another one: two bots on one PostgreSQL store, the same command on both."""
    monkeypatch.setenv("SLACK_APP_TOKEN", APP_TOKEN)
    monkeypatch.delenv("SLACK_SIGNING_SECRET")
    fake = slack_env
    settings = load(http=False)
    bots = []
    try:
        for n in (1, 2):
            bot = build(settings, store=open_store(pg_store_url))
            bot.socket = SocketModeRunner(bot.app, settings.app_token, ping_interval=1.0, grace=2.0, check_every=0.2)
            bot.socket.start()
            slack_socket.wait_connected(n)
            bots.append(bot)
        wait_for(lambda: len(slack_socket.connections) == 2, message="two connections")
        # `list`, not `run`: a second `run` would be refused by the environment lock anyway, dedupe or not
        lists = lambda: sum(1 for c in fake.calls_to("response_url") if "demo" in c.raw)  # noqa: E731
        payload = command_payload("list", user="U0ALICE", response_url=fake.response_url())
        first = slack_socket.deliver("slash_commands", payload, connection=0)
        again = slack_socket.deliver("slash_commands", payload, connection=1, retry_attempt=1)
        assert slack_socket.wait_ack(first) and slack_socket.wait_ack(again)  # both acknowledged
        wait_for(lambda: lists() >= 1, message="the list answered")
        fresh = command_payload("list", user="U0BOB", response_url=fake.response_url())  # a new delivery
        slack_socket.wait_ack(slack_socket.deliver("slash_commands", fresh, connection=1))
        wait_for(lambda: lists() >= 2, message="the new delivery answered")
        time.sleep(1.0)  # settle: a late duplicate answer would land here
        assert lists() == 2
    finally:
        for bot in bots:
            bot.close()
