"""Seed 000's worst hour, replayed against moto server as CloudWatch metric data.

Before the cutover and for two hours after it the service logs ~3000 lines and serves ~5000
requests per ten minutes. Then it wedges: log volume falls off a cliff, the ALB answers 504 to
most requests, and the service's own 5xx stay at zero (its logs look clean). The watch must stay
quiet through the clean ticks and alert on the first tick after the cliff, naming the edge's 504s
and the caller's logs as the evidence.

moto emits no ALB or Logs metrics itself, so the test puts the datapoints (`put_metric_data`), as
CloudWatch would have them; a missing datapoint (no 504s in the clean hours) reads as zero.
"""

from __future__ import annotations

import pytest

from bot.engine.store import Store
from bot.platforms.aws import cloudwatch
from bot.runbook.targets import AwsAlbTarget
from bot.watch import service, tables
from bot.watch.render import console_lines
from bot.watch.scheduler import WatchScheduler

LB = "app/api-new/50dc6c495c0c9188"
EVERY = 600
CLIFF_AFTER = 2 * 3600  # the wedge starts two hours after the cutover


def _replay(target, start: float) -> None:
    """Three hours of steady history before `start`, two steady hours after it, then the wedge."""
    lines, requests, elb_504, target_5xx = [], [], [], []
    for index in range(-18, 36):
        bucket = start + index * EVERY
        wedged = bucket >= start + CLIFF_AFTER
        at = bucket + 60  # inside the bucket
        lines.append((at, 12 if wedged else 3000 + (index % 3) * 40))
        requests.append((at, 900 if wedged else 5000 + (index % 4) * 50))
        target_5xx.append((at, 0))  # the service itself never fails a request it answers
        if wedged:
            elb_504.append((at, 860 + (index % 2) * 10))  # the edge times the hung requests out
    cloudwatch.put_counts(target, cloudwatch.log_group_metric("/ecs/api"), lines)
    cloudwatch.put_counts(target, cloudwatch.alb_metric(LB, "RequestCount"), requests)
    cloudwatch.put_counts(target, cloudwatch.alb_metric(LB, "HTTPCode_ELB_504_Count"), elb_504)
    # CloudWatch counts a 504 in the ELB's 5XX total too.
    cloudwatch.put_counts(target, cloudwatch.alb_metric(LB, "HTTPCode_ELB_5XX_Count"), elb_504)
    cloudwatch.put_counts(target, cloudwatch.alb_metric(LB, "HTTPCode_Target_5XX_Count"), target_5xx)


@pytest.fixture
def incident(aws, tmp_path, watch_clock, watch_channel):
    target = AwsAlbTarget(load_balancer=LB, endpoint_url=aws.url)
    start = watch_clock.now()
    _replay(target, start)
    store = Store(tmp_path / "store.sqlite", clock=watch_clock)
    store.create_run(run_id="r-cutover", runbook="aws-ecs-to-do-app", runbook_path="x.yaml", runbook_sha256="ab",
                     params={"env": "production"}, started_by="alice", front_end="console", steps=[],
                     chat={"channel": "C1", "thread_ts": "1.0"})
    spec = {
        "every": "10m", "for": "24h", "on_call": ["@platform-oncall"],
        "alb": "new-alb", "log_group": "/ecs/api",
        "signals": ["log_volume", "edge_504_rate", "edge_5xx_rate", "throughput_floor",
                    {"name": "caller_log", "caller_log": {"log_groups": ["/ecs/web"]}}],
    }
    service.start(store, "r-cutover", spec, targets={"new-alb": target}, now=start)
    scheduler = WatchScheduler(store, watch_channel, clock=watch_clock, paused=True)
    assert scheduler.start()
    yield store, scheduler, start
    scheduler.shutdown()


def _logs_group(aws):
    import boto3

    boto3.client("logs", endpoint_url=aws.url, region_name="us-east-1").create_log_group(logGroupName="/ecs/web")


def test_clean_ticks_are_quiet_and_the_first_tick_after_the_cliff_alerts(aws, incident, watch_clock, watch_channel):
    _logs_group(aws)
    store, scheduler, start = incident
    ticks_before_cliff = CLIFF_AFTER // EVERY + 1  # the immediate tick, then one per 10 minutes

    for tick in range(ticks_before_cliff):
        watch_clock.set(start + tick * EVERY)
        posted = scheduler.run_pending()
        assert len(posted) == 1, f"tick {tick + 1} was not taken exactly once"
    assert [s["state"] for s in watch_channel.summaries] == ["ok"] * ticks_before_cliff, [
        [(x["label"], x["state"], x["detail"]) for x in s["signals"] if x["state"] != "ok"]
        for s in watch_channel.summaries]
    assert watch_channel.alerts == []
    # Every tick, the first one with its 24 h of history included, cost one GetMetricData call.
    assert all(s["calls"].get("cloudwatch.get_metric_data") == 1 for s in watch_channel.summaries)
    clean = {s["label"]: s for s in watch_channel.summaries[-1]["signals"]}
    assert clean["log_volume"]["baseline"] == pytest.approx(3040, rel=0.02)
    assert clean["throughput_floor"]["value"] >= 5000

    watch_clock.set(start + CLIFF_AFTER + EVERY)  # the interval [cliff, cliff + 10m) has ended
    scheduler.run_pending()

    cliff = watch_channel.summaries[-1]
    by = {s["label"]: s for s in cliff["signals"]}
    assert cliff["state"] == "breach"
    assert by["log_volume"]["state"] == "breach" and by["log_volume"]["value"] == 12
    assert by["edge_504_rate"]["state"] == "breach" and by["edge_504_rate"]["value"] > 90
    assert "the service's own 5xx: 0" in by["edge_504_rate"]["detail"]
    assert by["throughput_floor"]["state"] == "breach"
    assert by["caller_log"]["state"] == "ok"  # moto ignores `stats`: counting is tested in test_watch_logs

    assert len(watch_channel.alerts) == 1
    alert = watch_channel.alerts[0]
    assert alert["tick_no"] == ticks_before_cliff + 1
    assert alert["on_call"] == ["@platform-oncall"]
    assert {"log_volume", "edge_504_rate", "edge_5xx_rate", "throughput_floor"} <= set(alert["breached"])
    assert "HTTPCode_ELB_504_Count" in alert["evidence"][0]  # the edge first: where the errors are made
    evidence = " | ".join(alert["evidence"])
    assert "HTTPCode_ELB_504_Count" in evidence and LB in evidence
    assert "caller's logs: /ecs/web" in evidence
    assert "own logs and traces will look clean" in evidence
    assert alert["run_id"] == "r-cutover"
    assert watch_channel.views[-1].chat == {"channel": "C1", "thread_ts": "1.0"}  # posted in the run's thread

    # The wedge goes on: still in breach, but the same breach is not re-alerted every ten minutes.
    watch_clock.advance(EVERY)
    scheduler.run_pending()
    assert watch_channel.summaries[-1]["state"] == "breach"
    assert len(watch_channel.alerts) == 1

    # Total silence: no datapoint at all in the interval is zero lines and zero requests, a breach,
    # never "no data" (the bot was also away for a while: the gap is reported).
    watch_clock.set(start + 7 * 3600)
    scheduler.run_pending()
    silent = watch_channel.summaries[-1]
    quiet = {s["label"]: s for s in silent["signals"]}
    assert quiet["log_volume"]["value"] == 0 and quiet["log_volume"]["state"] == "breach"
    assert quiet["throughput_floor"]["value"] == 0 and quiet["throughput_floor"]["state"] == "breach"
    assert silent["gap_seconds"] and silent["gap_seconds"] > 3600

    # The console prints the same summary: a line per signal with a sparkline showing the cliff.
    lines = console_lines(alert)
    assert any("BREACH" in line and "log_volume" in line for line in lines)
    assert any("@platform-oncall" in line for line in lines)
    spark = by["log_volume"]["sparkline"]
    assert spark[-1] == "▁" and "█" in spark


def test_samples_and_chart_cover_the_watch(aws, incident, watch_clock, watch_channel):
    _logs_group(aws)
    store, scheduler, start = incident
    for tick in range(3):
        watch_clock.set(start + tick * EVERY)
        scheduler.run_pending()
    rows = tables.samples(store, "r-cutover", "log_volume")
    assert [r["tick_no"] for r in rows] == [1, 2, 3]
    png = service.chart_png(store, "r-cutover")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
    status = service.status(store, "r-cutover")
    assert status["state"] == "active" and status["tick_no"] == 3
    assert status["next_due"] == start + 3 * EVERY
