"""The outbox keeps each thread's order and does not hold other threads up; backoff fits a person
waiting; once Slack answers again the run header says how long its messages were delayed.

Real parts: the Poster and SlackChannel over the fake Slack Web API (real HTTP), a real store.
"""

from __future__ import annotations

import json

import pytest

from bot.chat.slack.channel import SlackChannel
from bot.chat.slack.web import MAX_BACKOFF, Poster, make_client
from bot.engine.store import Store, open_store
from tests.fixtures.slack import BOT_TOKEN, wait_for
from tests.test_slack_messages import make_run, make_step


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def parts(slack_api, store_where):
    clock = Clock()
    poster = Poster(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=0),
                    open_store(store_where), clock=clock)
    channel = SlackChannel(poster, default_channel="C0OPS")
    yield poster, channel, clock
    channel.close()


def test_a_failed_reply_is_not_overtaken_in_its_thread_and_other_threads_go_on(slack_api, parts):
    poster, channel, clock = parts
    run_a = make_run([make_step(0, state="pending")], id="r-a")
    run_b = make_run([make_step(0, state="pending")], id="r-b")
    for run in (run_a, run_b):
        channel.run_updated(run)
    channel.drain()
    slack_api.fail("chat.postMessage", "internal_error", status=500, times=3)  # the client retries twice
    channel.notify(run_a, "first of a")          # fails after retries: queued
    channel.notify(run_a, "second of a")         # must wait behind it
    channel.drain()                              # (B after: the fake's failures are not per thread)
    channel.notify(run_b, "only of b")           # another thread: not held up
    channel.drain()
    posted = [m.get("text") or "" for m in slack_api.messages.values()]
    assert any("only of b" in t for t in posted)
    assert not any("second of a" in t for t in posted)

    clock.t += 5
    assert poster.flush() == 2
    thread_a = [m["text"] for m in slack_api.messages.values() if "of a" in (m.get("text") or "")]
    assert [("first" in t) for t in thread_a] == [True, False]  # first, then second
    assert poster.pending() == []


def test_backoff_is_capped_for_a_person_waiting(slack_api, parts):
    poster, channel, clock = parts
    run = make_run([make_step(0, state="pending")], id="r-c")
    slack_api.fail("chat.postMessage", "internal_error", status=500, times=3 * 6)  # 3 calls per try
    channel.run_updated(run)
    channel.drain()
    for _ in range(5):
        clock.t += MAX_BACKOFF
        poster.flush()
        (row,) = poster.pending()
        assert row["next_at"] - clock.t <= MAX_BACKOFF
    clock.t += MAX_BACKOFF
    assert poster.flush() == 1
    channel.drain()
    header = next(m for m in slack_api.messages.values() if not m.get("thread_ts"))
    assert "delayed by up to" in json.dumps(header["blocks"])  # said once Slack answered again


def test_one_runs_rate_limit_back_off_holds_up_no_other_run(slack_api, tmp_path):
    """Slack answers 429 with Retry-After to run A's post; the client waits it out on A's sender lane,
    and run B's post goes through in the meantime (a single sender thread held B behind A's wait)."""
    poster = Poster(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=2),
                    Store(tmp_path / "store.sqlite"))
    channel = SlackChannel(poster, default_channel="C0OPS")
    try:
        run_a = make_run([make_step(0, state="pending")], id="r-la")
        run_b = make_run([make_step(0, state="pending")], id="r-lb")
        for run in (run_a, run_b):
            channel.run_updated(run)
        channel.drain()

        def texts() -> list[str]:
            return [m.get("text") or "" for m in slack_api.messages.values()]

        slack_api.fail("chat.postMessage", "ratelimited", retry_after=5)
        channel.notify(run_a, "first of a")
        wait_for(lambda: any("first of a" in c.raw for c in slack_api.calls_to("chat.postMessage")),
                 message="run A's post answered with 429")
        channel.notify(run_b, "only of b")
        wait_for(lambda: any("only of b" in t for t in texts()), message="run B's post")
        assert not any("first of a" in t for t in texts()), "B waited behind A's Retry-After"
        channel.drain(timeout=30)
        assert any("first of a" in t for t in texts())  # A's post lands once its wait is over
        assert poster.pending() == []
    finally:
        channel.close()
