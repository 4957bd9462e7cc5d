"""The watch scheduler under a controlled clock: restarts, coalesced gaps, one leader per store.

The signal here is `log_volume` over a local log file (new lines since the last tick), so the
tests exercise scheduling, the store and the posting without any cloud in the way.
"""

from __future__ import annotations

import time

import pytest

from bot.engine.store import open_store
from bot.watch import service, tables
from bot.watch.scheduler import WatchScheduler
from tests.fixtures.watch import RecordingChannel

EVERY = 600


@pytest.fixture
def setup(tmp_path, watch_clock, store_where):
    log = tmp_path / "api.log"
    log.write_text("")
    path = store_where
    store = open_store(path, clock=watch_clock)
    spec = {"every": "10m", "for": "1h", "on_call": ["@oncall"], "log_file": str(log),
            "signals": [{"name": "log_volume", "floor": 50}]}
    start = watch_clock.now()
    service.start(store, "r1", spec, now=start)
    return store, path, log, start


def _lines(log, n):
    with open(log, "a") as handle:
        handle.write("GET /answer 200\n" * n)


def _ticks(store):
    rows = tables.samples(store, "r1", "log_volume")
    return [r["tick_no"] for r in rows]


def test_restart_mid_watch_loses_and_doubles_no_tick(setup, watch_clock):
    store, path, log, start = setup
    channel = RecordingChannel()
    first = WatchScheduler(store, channel, clock=watch_clock, paused=True, owner="worker-1")
    assert first.start() is True
    assert first.job_ids() == ["watch:r1"]
    assert len(first.run_pending()) == 1  # the immediate first tick
    for n in (1, 2):
        _lines(log, 100)
        watch_clock.set(start + n * EVERY)
        assert len(first.run_pending()) == 1
    first.shutdown(release=False)  # a crash: the lease is left to expire

    # A new process on the same store file, five minutes later: the old lease still holds.
    watch_clock.set(start + 2 * EVERY + 10)
    second = WatchScheduler(open_store(path, clock=watch_clock), channel, clock=watch_clock, paused=True, owner="worker-2")
    assert second.start() is False
    assert second.job_ids() == []
    assert second.run_pending() == []

    _lines(log, 100)
    watch_clock.set(start + 3 * EVERY)  # the lease has expired; the slot is due
    assert second.sync() is True
    assert second.job_ids() == ["watch:r1"]  # rebuilt from the store
    assert len(second.run_pending()) == 1
    assert second.run_pending() == []  # the same slot is not taken twice
    assert _ticks(store) == [1, 2, 3, 4]
    assert [s["tick_no"] for s in channel.summaries] == [1, 2, 3, 4]
    assert all(s["gap_seconds"] is None for s in channel.summaries)
    assert channel.summaries[-1]["signals"][0]["value"] == 100
    second.shutdown()


def test_missed_ticks_coalesce_into_one_that_reports_the_gap(setup, watch_clock):
    store, path, log, start = setup
    channel = RecordingChannel()
    scheduler = WatchScheduler(store, channel, clock=watch_clock, paused=True)
    scheduler.start()
    scheduler.run_pending()
    _lines(log, 300)
    watch_clock.set(start + 3 * EVERY + 100)  # down through three slots
    posted = scheduler.run_pending()
    assert len(posted) == 1
    assert posted[0]["tick_no"] == 2
    assert posted[0]["gap_seconds"] == pytest.approx(3 * EVERY + 100)
    assert service.status(store, "r1")["next_due"] == start + 4 * EVERY  # back on the original grid
    _lines(log, 100)
    watch_clock.set(start + 4 * EVERY)
    posted = scheduler.run_pending()
    assert [p["tick_no"] for p in posted] == [3] and posted[0]["gap_seconds"] is None
    scheduler.shutdown()


def test_final_tick_carries_the_chart_and_ends_the_watch(setup, watch_clock):
    store, path, log, start = setup
    channel = RecordingChannel()
    scheduler = WatchScheduler(store, channel, clock=watch_clock, paused=True)
    scheduler.start()
    scheduler.run_pending()
    _lines(log, 20)  # under the floor of 50: a breach
    watch_clock.set(start + 2 * 3600)  # past the end of the hour-long watch
    posted = scheduler.run_pending()
    assert len(posted) == 1 and posted[0]["final"] is True
    assert posted[0]["chart_png"].startswith(b"\x89PNG")
    assert posted[0]["state"] == "breach" and len(channel.alerts) == 1
    assert service.status(store, "r1")["state"] == "finished"
    scheduler.sync()
    assert scheduler.job_ids() == []
    watch_clock.advance(EVERY)
    assert scheduler.run_pending() == []
    scheduler.shutdown()


def test_one_leader_per_store_and_ticks_claimed_once(setup, watch_clock):
    store, path, log, start = setup
    a_channel, b_channel = RecordingChannel(), RecordingChannel()
    a = WatchScheduler(store, a_channel, clock=watch_clock, paused=True, owner="a")
    b = WatchScheduler(open_store(path, clock=watch_clock), b_channel, clock=watch_clock, paused=True, owner="b")
    assert a.start() is True and b.start() is False
    assert b.job_ids() == []
    a.run_pending()
    assert b.run_pending() == []
    # Even a tick fired by a non-leader (a stale job) cannot double: the claim is a compare-and-set.
    assert service.run_due_tick(store, "r1", b_channel, now=watch_clock.now()) is None
    assert len(a_channel.summaries) == 1 and b_channel.summaries == []
    a.shutdown()  # a clean shutdown releases the lease: b takes over at its next sync
    assert b.sync() is True and b.job_ids() == ["watch:r1"]
    b.shutdown()


def test_stop_removes_the_job_and_tick_now_is_extra(setup, watch_clock):
    store, path, log, start = setup
    channel = RecordingChannel()
    scheduler = WatchScheduler(store, channel, clock=watch_clock, paused=True)
    scheduler.start()
    scheduler.run_pending()
    watch_clock.advance(60)
    _lines(log, 80)
    extra = service.tick_now(store, "r1", channel, now=watch_clock.now())
    assert extra["tick_no"] == 2
    assert service.status(store, "r1")["next_due"] == start + EVERY  # the schedule did not move
    assert service.stop(store, "r1", by="U1") is True
    assert scheduler.job_ids() == []  # notified in-process
    watch_clock.set(start + EVERY)
    assert scheduler.run_pending() == []
    with pytest.raises(service.WatchError):
        service.tick_now(store, "r1", channel)
    scheduler.shutdown()


def test_background_scheduler_takes_the_first_tick_by_itself(tmp_path, store_where):
    """Not paused, on the system clock: APScheduler's thread fires the immediate first tick."""
    log = tmp_path / "api.log"
    log.write_text("")
    store = open_store(store_where)
    channel = RecordingChannel()
    scheduler = WatchScheduler(store, channel)
    scheduler.start()
    try:
        service.start(store, "r2", {"log_file": str(log), "signals": ["log_volume"]})
        deadline = time.monotonic() + 10
        while not channel.summaries and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [s["tick_no"] for s in channel.summaries] == [1]
        assert scheduler.job_ids() == ["watch:r2"]
    finally:
        scheduler.shutdown()


def test_same_spec_twice_is_a_noop_and_another_spec_is_refused(setup, watch_clock):
    store, path, log, start = setup
    spec = {"every": "10m", "for": "1h", "on_call": ["@oncall"], "log_file": str(log),
            "signals": [{"name": "log_volume", "floor": 50}]}
    assert service.start(store, "r1", spec, now=start + 5)["started_at"] == start
    with pytest.raises(service.WatchError, match="stop it first"):
        service.start(store, "r1", {**spec, "every": "5m"}, now=start + 5)


def test_racing_claims_take_a_due_tick_once(setup, watch_clock):
    """Eight threads, each with its own connection, race for the same due slot: one wins."""
    import threading

    store, path, log, start = setup
    results, barrier = [], threading.Barrier(8)

    def claim():
        mine = open_store(path, clock=watch_clock)
        barrier.wait()
        results.append(service._claim(mine, "r1", start, False))

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [r for r in results if r is not None]
    assert len(won) == 1 and won[0]["tick_no"] == 1
