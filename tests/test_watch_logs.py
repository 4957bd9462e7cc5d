"""Logs Insights counting of the caller's 504s.

moto runs Insights queries but ignores `filter` and `stats ... by bin()` (it returns raw rows), so
the counting is tested here with answers recorded from AWS, replayed through botocore's `Stubber`
on the same boto3 client the watch uses. One moto test pins down that limitation: if moto ever
starts evaluating `stats`, it fails and these stubs can give way to moto.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import ANY, Stubber

from bot.platforms import aws as aws_platform
from bot.platforms import errors
from bot.platforms.aws import logs
from bot.runbook.targets import AwsAlbTarget
from bot.watch.collect import collect_tick
from bot.watch.signals import Window, build_signals
from bot.watch.spec import WatchSpec
from bot.watch.summary import build_alert, build_summary

# Recorded from `filter @message like /\b504\b/ | stats count(*) as count by @log, bin(600s)`.
RECORDED = [
    [{"field": "@log", "value": "123456789012:/ecs/web"}, {"field": "bin(600s)", "value": "2026-05-20 10:10:00.000"},
     {"field": "count", "value": "1423"}],
    [{"field": "@log", "value": "123456789012:/ecs/web"}, {"field": "bin(600s)", "value": "2026-05-20 10:00:00.000"},
     {"field": "count", "value": "12"}],
    [{"field": "@log", "value": "123456789012:/ecs/worker"},
     {"field": "bin(600s)", "value": "2026-05-20 10:10:00.000"}, {"field": "count", "value": "7"}],
]


@pytest.fixture
def stubbed_logs():
    target = AwsAlbTarget(load_balancer="app/web/1", region="eu-west-3")
    client = aws_platform.client(target, "logs")  # the very client the watch will use
    stubber = Stubber(client)
    stubber.activate()
    yield target, client, stubber
    stubber.deactivate()
    aws_platform._reset_for_tests()


def test_parse_counts_by_log_and_bin():
    counts = logs.parse_counts(RECORDED)
    assert ("/ecs/web", 1779271800.0, 1423) in counts
    assert logs.parse_count_by_bin(RECORDED) == {1779271800.0: 1430, 1779271200.0: 12}


def test_rows_without_the_count_are_refused_not_read_as_zero():
    with pytest.raises(logs.QueryResultError, match="no 'count' field"):
        logs.parse_counts([[{"field": "@ptr", "value": "abc"}, {"field": "@message", "value": "GET / 504"}]])


def test_run_query_polls_until_complete(stubbed_logs):
    target, client, stubber = stubbed_logs
    query = logs.count_query(r"\b504\b", bin_seconds=600, by_log=True)
    assert query == r"filter @message like /\b504\b/ | stats count(*) as count by @log, bin(600s)"
    stubber.add_response("start_query", {"queryId": "q-1"},
                         {"logGroupNames": ["/ecs/web"], "startTime": 1000, "endTime": 1600, "queryString": query})
    stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-1"})
    stubber.add_response("get_query_results", {"status": "Complete", "results": RECORDED}, {"queryId": "q-1"})
    sleeps = []
    rows = logs.run_query(target, ["/ecs/web"], query, start=1000, end=1600, sleep=sleeps.append)
    assert rows == RECORDED and sleeps == [1.0]
    stubber.assert_no_pending_responses()


def test_run_query_gives_up_and_stops_the_query(stubbed_logs):
    target, client, stubber = stubbed_logs
    stubber.add_response("start_query", {"queryId": "q-2"}, None)
    for _ in range(3):
        stubber.add_response("get_query_results", {"status": "Running", "results": []}, {"queryId": "q-2"})
    stubber.add_response("stop_query", {"success": True}, {"queryId": "q-2"})
    ticks = iter([0.0, 1.0, 2.0, 3.5])
    with pytest.raises(errors.Unavailable, match="still Running after 3s"):
        logs.run_query(target, ["/ecs/web"], "q", start=0, end=1, timeout=3, sleep=lambda s: None,
                       monotonic=lambda: next(ticks))
    stubber.assert_no_pending_responses()


def test_a_failed_query_is_an_error(stubbed_logs):
    target, client, stubber = stubbed_logs
    stubber.add_response("start_query", {"queryId": "q-3"}, None)
    stubber.add_response("get_query_results", {"status": "Failed", "results": []}, {"queryId": "q-3"})
    with pytest.raises(errors.PlatformError, match="query failed"):
        logs.run_query(target, ["/ecs/web"], "q", start=0, end=1, sleep=lambda s: None)


def test_caller_log_signal_counts_the_callers_504s_and_alerts(stubbed_logs):
    """Through the watch: one query for two callers, split back per signal by @log."""
    target, client, stubber = stubbed_logs
    spec = WatchSpec.model_validate({
        "aws": "web-alb", "on_call": ["@oncall"],
        "signals": [
            {"name": "caller_log", "label": "web_504s", "caller_log": {"log_groups": ["/ecs/web"]}, "over": 100},
            {"name": "caller_log", "label": "worker_504s", "caller_log": {"log_groups": ["/ecs/worker"]}, "over": 100},
        ],
    })
    signals = build_signals(spec, {"web-alb": target})
    end = 1779272400.0
    stubber.add_response("start_query", {"queryId": "q-4"},
                         {"logGroupNames": ["/ecs/web", "/ecs/worker"], "startTime": int(end - 600),
                          "endTime": int(end), "queryString": ANY})
    stubber.add_response("get_query_results", {"status": "Complete", "results": RECORDED}, {"queryId": "q-4"})
    result = collect_tick(signals, Window(start=end - 600, end=end, every=600), watch_started=end - 600,
                          baselines={}, carry={})
    by = {r.label: r for r in result.readings}
    assert by["web_504s"].value == 1435 and by["web_504s"].state == "breach"
    assert by["worker_504s"].value == 7 and by["worker_504s"].state == "warn"
    assert result.calls == {"logs.insights_query": 1}
    summary = build_summary(run_id="r", tick_no=1, at=end, gap_seconds=None, final=False, readings=result.readings,
                            history={}, every=600, until=end + 86400)
    alert = build_alert(summary, signals, on_call=spec.on_call)
    assert alert["breached"] == ["web_504s"]
    assert any(line.startswith("The caller's logs: /ecs/web") for line in alert["evidence"])


def test_moto_ignores_stats_so_its_rows_cannot_be_counted(aws):
    client = boto3.client("logs", endpoint_url=aws.url, region_name="us-east-1")
    client.create_log_group(logGroupName="/ecs/web")
    client.create_log_stream(logGroupName="/ecs/web", logStreamName="s")
    import time

    now_ms = int(time.time() * 1000)
    client.put_log_events(logGroupName="/ecs/web", logStreamName="s",
                          logEvents=[{"timestamp": now_ms, "message": "GET /answer 504 upstream timeout"}])
    target = AwsAlbTarget(load_balancer="app/web/1", endpoint_url=aws.url)
    rows = logs.run_query(target, ["/ecs/web"], logs.count_query("504", bin_seconds=600),
                          start=now_ms / 1000 - 60, end=now_ms / 1000 + 60, sleep=lambda s: None)
    assert rows, "moto returned no rows"
    with pytest.raises(logs.QueryResultError):
        logs.parse_counts(rows)


def test_an_unreadable_source_warns_and_the_baseline_is_retried():
    """CloudWatch refuses: the signals say so (warn, with the error), never ok; no baseline is stored."""
    target = AwsAlbTarget(load_balancer="app/web/1", region="eu-west-3")
    client = aws_platform.client(target, "cloudwatch")
    spec = WatchSpec.model_validate({"alb": "web-alb", "log_group": "/ecs/web",
                                     "signals": ["log_volume", "edge_504_rate"]})
    signals = build_signals(spec, {"web-alb": target})
    end = 1779272400.0
    with Stubber(client) as stubber:
        stubber.add_client_error("get_metric_data", service_error_code="AccessDeniedException",
                                 service_message="not allowed: cloudwatch:GetMetricData", http_status_code=403)
        result = collect_tick(signals, Window(start=end - 600, end=end, every=600), watch_started=end,
                              baselines=None, carry={})
    aws_platform._reset_for_tests()
    assert [r.state for r in result.readings] == ["warn", "warn"]
    assert all("unauthorized" in r.detail and "GetMetricData" in r.detail for r in result.readings)
    assert result.baselines is None  # the next tick tries to capture the history again
