"""Named leases (`bot.engine.leases`) on both backends, and the Slack outbox drained by one holder.

The clock is a plain counter the test moves: expiry is a comparison with it, nothing sleeps.
"""

from __future__ import annotations

import threading

from bot.chat.slack.web import OutboxWorker, Poster, make_client
from bot.engine.leases import Lease
from bot.engine.store import open_store
from tests.fixtures.slack import BOT_TOKEN, wait_for


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_holder_renewals_expiry_takeover_and_release(store_where):
    clock = Clock()
    store = open_store(store_where)
    a = Lease(store, "watch-scheduler", owner="a", seconds=30, clock=clock)
    b = Lease(open_store(store_where), "watch-scheduler", owner="b", seconds=30, clock=clock)
    assert a.acquire() and a.held() and not b.acquire() and not b.held()
    clock.t += 20
    assert a.acquire()  # a renewal: the expiry moves, the time it was first taken stays
    assert a.holder() == {"owner": "a", "expires_at": 1050.0, "acquired_at": 1000.0}
    clock.t += 29
    assert not b.acquire()
    clock.t += 2  # a stopped renewing (it died, or hangs): the lease ran out
    assert not a.held() and b.acquire() and b.held()
    assert not a.acquire()  # the old holder, back, does not take it from the new one
    a.release()  # releasing what is not yours changes nothing
    assert b.held()
    b.release()
    assert b.holder() is None and a.acquire()


def test_leases_with_different_names_do_not_exclude_each_other(store_where):
    clock = Clock()
    store = open_store(store_where)
    assert Lease(store, "watch-scheduler", owner="a", seconds=30, clock=clock).acquire()
    assert Lease(store, "slack-outbox", owner="b", seconds=30, clock=clock).acquire()


def test_racing_acquirers_leave_exactly_one_holder(store_where):
    clock, barrier, won, errors = Clock(), threading.Barrier(8, timeout=60), [], []

    def race(name):
        try:
            lease = Lease(open_store(store_where), "slack-outbox", owner=name, seconds=30, clock=clock)
            barrier.wait()
            if lease.acquire():
                won.append(name)
        except Exception as exc:  # noqa: BLE001 - reported below, and the others are not left waiting
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=race, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] == []
    assert len(won) == 1


def test_two_replicas_outbox_workers_send_each_queued_post_once(slack_api, store_where):
    """Both replicas run an outbox worker; only the lease holder drains, so nothing is posted twice."""
    posters = [Poster(make_client(BOT_TOKEN, base_url=slack_api.base_url, max_retries=0), open_store(store_where))
               for _ in range(2)]
    slack_api.fail("chat.postMessage", "internal_error", times=20)  # ok: false, not retried by the client
    for i in range(20):  # Slack is down: every post goes to the outbox
        posters[i % 2].post(f"r-{i}", "header", channel="C0OPS", text=f"queued {i}")
    assert len(posters[0].pending()) == 20
    slack_api.reset()
    workers = [OutboxWorker(p, interval=0.05, lease=Lease(p.store, "slack-outbox", owner=f"replica-{n}", seconds=30))
               for n, p in enumerate(posters)]
    for worker in workers:
        worker.start()
    try:
        wait_for(lambda: not posters[0].pending(), timeout=30, message="the outbox drained")
    finally:
        for worker in workers:
            worker.stop()
    texts = [c.payload.get("text") for c in slack_api.calls_to("chat.postMessage")]
    assert sorted(texts) == sorted(f"queued {i}" for i in range(20))  # each once
