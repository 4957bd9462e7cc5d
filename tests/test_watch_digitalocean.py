"""DigitalOcean sources of the watch: load balancer response metrics and App Platform log archives.

The pydo calls go to Prism serving DigitalOcean's contract (the request must be one the real API
accepts, the answer has the contract's shape). Counting an archive needs real lines, so a local
HTTP server serves the logs endpoint's answer (historic URLs pointing at itself) and the archive.
"""

from __future__ import annotations

import pytest

from bot.platforms import digitalocean as do
from bot.platforms.digitalocean import app_logs, monitoring
from bot.runbook.targets import DoAppTarget
from bot.watch.collect import collect_tick
from bot.watch.signals import SignalConfigError, Window, build_signals
from bot.watch.spec import WatchSpec

APP_ID = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf"


@pytest.fixture
def prism_do(prism, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "prism-token-123")
    do._reset_for_tests()
    yield prism
    do._reset_for_tests()


def test_lb_frontend_responses_through_the_contract(prism_do):
    counts = monitoring.lb_frontend_responses("4de7ac8b-495b-4884-9a69-1050c6793cd6", start=1636051668,
                                              end=1636052268)
    # The contract's example: one unlabelled series at 1 response/s through the window.
    assert counts.total == 600.0


def test_do_load_balancer_signals_through_the_contract(prism_do):
    """The edge signals of a DigitalOcean load balancer, read through pydo against the contract."""
    spec = WatchSpec.model_validate({"do_lb": "4de7ac8b-495b-4884-9a69-1050c6793cd6",
                                     "signals": ["edge_5xx_rate", {"name": "throughput_floor", "floor": 1}]})
    signals = build_signals(spec, {})
    end = 1779272400.0
    result = collect_tick(signals, Window(start=end - 600, end=end, every=600), watch_started=end,
                          baselines=None, carry={})
    edge, throughput = result.readings
    # The contract's example: one unlabelled series at 1 response/s, held through the window.
    assert edge.value == 0.0 and edge.state == "ok" and "600 requests" in edge.detail.replace(",", "")
    assert throughput.value == 600 and throughput.state == "ok"
    assert result.calls == {}  # no AWS call at all


def test_clipped_integration():
    assert monitoring.integrate([[0, "2"], [500, "4"]], start=400, end=600) == 2 * 100 + 4 * 100


def test_historic_urls_through_the_contract(prism_do):
    # The request is one the contract accepts (Prism would answer 422). Its example answer names
    # the archives `historic_logs`, which the schema does not define: only `historic_urls` is read.
    assert app_logs.historic_urls(APP_ID, "api") == []


def test_historic_urls_from_the_standin_whose_answers_follow_the_schema(monkeypatch):
    from bot.sandbox.digitalocean import DigitalOceanStandIn

    standin = DigitalOceanStandIn(clock=lambda: 3 * 6 * 3600.0, history_start=0.0, log_lines=lambda *a: []).start()
    try:
        standin.use(monkeypatch)
        do._reset_for_tests()
        standin.add_app({"name": "api", "services": [{"name": "api"}]})
        urls = app_logs.historic_urls("api", "api")
        assert len(urls) == 3 and all(u.startswith(standin.url + "/archives/") for u in urls)
    finally:
        standin.stop()
        do._reset_for_tests()


def test_parse_matrix_integrates_rates_by_class():
    data = {"resultType": "matrix", "result": [
        {"metric": {"lb_id": "x", "code": "2xx"}, "values": [[1000, "10"], [1300, "10"]]},
        {"metric": {"lb_id": "x", "code": "504"}, "values": [[1000, "0"], [1300, "2"]]},
        {"metric": {"lb_id": "x", "code": "5xx"}, "values": [[1000, "1"]]},
    ]}
    counts = monitoring.parse_matrix(data, start=1000, end=1600)
    assert counts.total == pytest.approx(10 * 600 + 2 * 300 + 1 * 600)
    assert counts.get("504") == pytest.approx(600)
    assert counts.get("5xx") == pytest.approx(1200)  # the labelled 504s are part of the 5xx


def _archive(n: int, start: float) -> bytes:
    from datetime import datetime, timezone

    out = []
    for i in range(n):
        stamp = datetime.fromtimestamp(start + i * (1200 / n), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out.append(f"api {stamp} INFO answered request {i}")
    return ("\n".join(out) + "\n").encode()


def test_log_volume_from_app_archives(httpserver, monkeypatch):
    """The app's logs endpoint hands out archive URLs; the watch counts lines in its window."""
    start = 1779271200.0
    httpserver.expect_request(f"/v2/apps/{APP_ID}/components/api/logs").respond_with_json(
        {"historic_urls": [httpserver.url_for("/archive/1.log")], "live_url": "wss://example/live"})
    httpserver.expect_request("/archive/1.log").respond_with_data(_archive(3000, start))
    monkeypatch.setenv("DIGITALOCEAN_API_URL", httpserver.url_for("/").rstrip("/"))
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "fake-token-1234")
    do._reset_for_tests()
    spec = WatchSpec.model_validate({"app": "new", "signals": [{"name": "log_volume", "floor": 1000}]})
    signals = build_signals(spec, {"new": DoAppTarget(app=APP_ID, component="api")})
    # The archive spans 20 minutes; the window holds its first half.
    result = collect_tick(signals, Window(start=start, end=start + 600, every=600), watch_started=start,
                          baselines={}, carry={})
    reading = result.readings[0]
    assert reading.value == 1500
    assert reading.state == "ok"
    result = collect_tick(signals, Window(start=start + 1200, end=start + 1800, every=600), watch_started=start,
                          baselines={}, carry={})
    assert result.readings[0].value == 0 and result.readings[0].state == "breach"
    do._reset_for_tests()


def test_count_stream_is_a_window_filter():
    lines = [b"api 2026-05-20T10:00:00.5Z a", b"api 2026-05-20T10:09:59Z b", b"api 2026-05-20T10:10:00Z c",
             b"no stamp here", b""]
    from datetime import datetime, timezone

    t0 = datetime(2026, 5, 20, 10, 0, tzinfo=timezone.utc).timestamp()
    assert app_logs.count_stream(lines, start=t0, end=t0 + 600) == 2
    assert app_logs.count_stream(lines, start=t0, end=t0 + 600, count_unstamped=True) == 3


def test_app_platform_has_no_edge_metric():
    spec = WatchSpec.model_validate({"app": "new", "signals": ["edge_504_rate"]})
    with pytest.raises(SignalConfigError, match="App Platform exposes no edge status metric"):
        build_signals(spec, {"new": DoAppTarget(app="api-production")})
