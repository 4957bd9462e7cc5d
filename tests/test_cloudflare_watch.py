"""Cloudflare as a watch source: the GraphQL query and its parsing, against recorded-shape answers.

The GraphQL analytics API is not in the vendored REST contract: the answers served here have the
shape Cloudflare's `httpRequestsAdaptiveGroups` returns (viewer.zones[].httpRequestsAdaptiveGroups[]
{count, dimensions{edgeResponseStatus, originResponseStatus}}), recorded by hand, not by Cloudflare.
The zone lookup and pool health go through the contract-checked stand-in.
"""

from __future__ import annotations

import json

import pytest

from bot.platforms import errors, registry
from bot.platforms.cloudflare import analytics
from bot.platforms.cloudflare.target import CloudflareLbTarget, CloudflareTarget
from bot.watch.collect import collect_tick
from bot.watch.signals import SignalConfigError, Window, build_signals
from bot.watch.spec import WatchSpec
from tests.fixtures.cloudflare_standin import cloudflare_api  # noqa: F401 (fixture)


def recorded(groups):
    return {"data": {"viewer": {"zones": [{"httpRequestsAdaptiveGroups": [
        {"count": c, "dimensions": {"edgeResponseStatus": e, "originResponseStatus": o}} for c, e, o in groups]}]}},
        "errors": None}


def test_one_graphql_query_per_tick_feeds_every_cloudflare_signal(cloudflare_api):
    cloudflare_api.add_zone("example.com")
    cloudflare_api.graphql.append(recorded([(900, 200, 200), (60, 504, 0), (40, 502, 502)]))
    targets = {"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)}
    spec = WatchSpec.model_validate({"edge": "edge", "every": 60, "delay": 0, "signals": [
        {"name": "edge_504_rate", "over": 5}, {"name": "edge_5xx_rate", "over": 20},
        {"name": "throughput_floor", "floor": 500}]})
    signals = build_signals(spec, targets)
    tick = collect_tick(signals, Window(start=1_800_000_000, end=1_800_000_060, every=60), watch_started=1_800_000_000,
                        baselines=None, carry={})
    by_name = {r.name: r for r in tick.readings}
    assert by_name["edge_504_rate"].value == pytest.approx(6.0) and by_name["edge_504_rate"].state == "breach"
    assert by_name["edge_5xx_rate"].value == pytest.approx(10.0) and by_name["edge_5xx_rate"].state == "ok"
    assert by_name["throughput_floor"].value == 900 and by_name["throughput_floor"].state == "ok"
    posts = [c for c in cloudflare_api.calls if c[1] == "/graphql"]
    assert len(posts) == 1
    body = posts[0][2]
    assert "httpRequestsAdaptiveGroups" in body["query"]
    assert body["variables"]["start"] == "2027-01-15T08:00:00Z" and body["variables"]["end"] == "2027-01-15T08:01:00Z"
    assert len(body["variables"]["zoneTag"]) == 32


def test_graphql_errors_and_unknown_zones_are_typed_errors():
    with pytest.raises(errors.InvalidRequest, match="unknown field"):
        analytics.parse({"data": None, "errors": [{"message": "unknown field \"foo\""}]})
    with pytest.raises(errors.NotFound):
        analytics.parse({"data": {"viewer": {"zones": []}}, "errors": None})
    assert analytics.parse(recorded([]))["requests"] == 0


def test_a_failed_query_makes_the_signals_warn_not_ok(cloudflare_api):
    cloudflare_api.add_zone("example.com")
    cloudflare_api.graphql.append({"data": None, "errors": [{"message": "rate limited"}]})
    targets = {"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)}
    spec = WatchSpec.model_validate({"edge": "edge", "every": 60, "delay": 0,
                                     "signals": [{"name": "edge_504_rate"}]})
    tick = collect_tick(build_signals(spec, targets), Window(start=1_800_000_120, end=1_800_000_180, every=60),
                        watch_started=0, baselines=None, carry={})
    assert tick.readings[0].state == "warn" and "rate limited" in tick.readings[0].detail


def test_an_edge_source_without_metrics_is_refused_by_name():
    targets = {"old": registry.target_models()["cloudflare-lb"](zone="example.com", load_balancer="x",
                                                                 account="c" * 32)}
    from bot.runbook.targets import HerokuTarget

    targets["app"] = HerokuTarget(app="api")
    spec = WatchSpec.model_validate({"edge": "app", "signals": [{"name": "edge_504_rate"}]})
    with pytest.raises(SignalConfigError, match="heroku target, which has no edge metrics"):
        build_signals(spec, targets)


def test_pool_health_reads_every_default_pool(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    heroku = cloudflare_api.add_pool("heroku", [("h", "api.herokudns.com", 1)])
    ecs = cloudflare_api.add_pool("ecs", [("a", "alb.example.net", 1)], healthy=False)
    cloudflare_api.add_load_balancer(zid, "api.example.com", [heroku, ecs], heroku)
    target = CloudflareLbTarget(zone="example.com", load_balancer="api.example.com", account="d" * 32,
                                api_url=cloudflare_api.url)
    ok, text = registry.adapter(target, "Health").health()
    assert not ok and text == "unhealthy pools: ecs"
    cloudflare_api.pool_health[ecs] = True
    assert registry.adapter(target, "Health").health() == (True, "2 pool(s) healthy")
    assert json.dumps(cloudflare_api.violations) == "[]"


def test_pool_health_as_a_watch_signal_breaches_on_an_unhealthy_pool(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    heroku = cloudflare_api.add_pool("heroku", [("h", "api.herokudns.com", 1)])
    ecs = cloudflare_api.add_pool("ecs", [("a", "alb.example.net", 1)])
    cloudflare_api.add_load_balancer(zid, "api.example.com", [heroku, ecs], heroku)
    targets = {"lb": CloudflareLbTarget(zone="example.com", load_balancer="api.example.com", account="e" * 32,
                                        api_url=cloudflare_api.url)}
    spec = WatchSpec.model_validate({"every": 60, "delay": 0, "signals": [{"name": "pool_health", "edge": "lb"}]})
    signals = build_signals(spec, targets)
    window = Window(start=1_800_000_000, end=1_800_000_060, every=60)
    assert collect_tick(signals, window, watch_started=0, baselines=None, carry={}).readings[0].state == "ok"
    cloudflare_api.pool_health[ecs] = False
    reading = collect_tick(signals, window, watch_started=0, baselines=None, carry={}).readings[0]
    assert reading.state == "breach" and reading.detail == "unhealthy: ecs"
