"""The synthetic caller against a real service that wedges, behind a real edge that answers 504.

The service on loopback answers 200 until it hangs (accepts the connection, never answers). In
front of it a small proxy forwards each GET with its Host header and, as a platform edge does,
answers 504 itself when the service has not answered within its timeout; the service never sees
that 504, so its own logs stay clean. The `probe` signal must catch it within one tick.
"""

from __future__ import annotations

from bot.engine.store import Store
from bot.platforms import probe
from bot.runbook.targets import HttpTarget
from bot.watch import service
from bot.watch.render import console_lines
from bot.watch.scheduler import WatchScheduler


def test_probe_catches_a_hang_behind_the_edge_within_one_tick(tmp_path, watch_clock, watch_channel, hanging_service,
                                                            edge_proxy):
    store = Store(tmp_path / "store.sqlite", clock=watch_clock)
    spec = {"every": "10m", "for": "24h", "on_call": ["@platform-oncall"],
            "probe": {"url": edge_proxy.url + "/healthz", "host": "api.example.com", "timeout": "5s"},
            "signals": [{"name": "probe", "attempts": 3, "failures": 3}]}
    start = watch_clock.now()
    service.start(store, "r1", spec, now=start)
    scheduler = WatchScheduler(store, watch_channel, clock=watch_clock, paused=True)
    scheduler.start()
    try:
        scheduler.run_pending()
        healthy = watch_channel.summaries[-1]["signals"][0]
        assert healthy["state"] == "ok" and healthy["value"] == 0
        assert hanging_service.hosts_seen[-1] == "api.example.com"  # the Host option reached the service

        hanging_service.hang()
        watch_clock.advance(600)
        scheduler.run_pending()  # the very next tick
        wedged = watch_channel.summaries[-1]["signals"][0]
        assert wedged["state"] == "breach"
        assert wedged["value"] == 3
        assert "HTTP 504" in wedged["detail"]
        assert edge_proxy.answered[-3:] == [504, 504, 504]
        assert len(watch_channel.alerts) == 1
        assert any("probe of " + edge_proxy.url in line for line in watch_channel.alerts[0]["evidence"])
        assert any("BREACH" in line and "probe" in line for line in console_lines(watch_channel.alerts[0]))
    finally:
        scheduler.shutdown()


def test_a_hang_without_an_edge_is_a_timeout_failure(hanging_service):
    ok = probe.get(hanging_service.url + "/", timeout=2)
    assert ok.ok and ok.status == 200
    hanging_service.hang()
    hung = probe.get(hanging_service.url + "/", timeout=0.3)
    assert not hung.ok and hung.status is None
    assert "timed out after 0.3s" in hung.error


def test_failures_in_a_row_span_ticks(tmp_path, watch_clock, watch_channel, hanging_service, edge_proxy):
    """One failed probe per tick warns; the third in a row (across ticks) breaches."""
    store = Store(tmp_path / "store.sqlite", clock=watch_clock)
    targets = {"api": HttpTarget(url=edge_proxy.url + "/", host="api.example.com")}
    spec = {"probe": "api", "signals": [{"name": "probe", "attempts": 1, "failures": 3}]}
    start = watch_clock.now()
    service.start(store, "r1", spec, targets=targets, now=start)
    hanging_service.hang()
    states = []
    for tick in range(3):
        watch_clock.set(start + tick * 600)
        summary = service.run_due_tick(store, "r1", watch_channel, now=watch_clock.now())
        states.append(summary["signals"][0]["state"])
    assert states == ["warn", "warn", "breach"]
