"""CloudWatch metrics for the post-cutover watch: many metrics, one `GetMetricData` call.

    from bot.platforms.aws import cloudwatch
    refs = [cloudwatch.alb_metric("app/api/123", "HTTPCode_ELB_504_Count"),
            cloudwatch.alb_metric("app/api/123", "RequestCount"),
            cloudwatch.log_group_metric("/ecs/api")]
    series, calls = cloudwatch.get_metric_data(target, refs, start=t0, end=t1, period=600)
    series[refs[0]]        # [(bucket_start, value), ...] for every bucket in [start, end): gaps are 0.0

Why one call: a tick of the watch reads every CloudWatch signal of every service in a single
`GetMetricData` request (up to 500 queries each), so the cost of a tick is one request per region,
not one per metric, and it does not grow with the traffic behind the metrics. Ratios (504s over
requests) are computed in Python by the caller: metric math would work on AWS, but moto does not
evaluate it, and a ratio computed here is the same code in tests and in production.

Why a missing datapoint is 0: CloudWatch only stores a datapoint when something was counted. An ALB
with no 504s publishes no `HTTPCode_ELB_504_Count`; a log group that received nothing publishes no
`IncomingLogEvents`. For the counters read here "no datapoint" therefore means "zero events", and
the throughput floor must see that zero (a silent wedge is precisely the absence of datapoints).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from bot.platforms import aws

MAX_QUERIES_PER_CALL = 500  # the GetMetricData limit

ALB_NAMESPACE = "AWS/ApplicationELB"
LOGS_NAMESPACE = "AWS/Logs"
# IAM: the watch only reads (GetMetricData has no resource-level permissions). `put_counts` is for
# tests and benchmarks replaying incidents, never called by a step.
IAM_READ = ("cloudwatch:GetMetricData",)
ALB_METRICS = ("HTTPCode_ELB_504_Count", "HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "RequestCount")


@dataclass(frozen=True)
class MetricRef:
    """One metric to read (namespace, name, dimensions) with its statistic; hashable, so shared
    metrics (RequestCount feeds three signals) are queried once."""

    namespace: str
    metric: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str = "Sum"

    def describe(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.dimensions)
        return f"{self.namespace} {self.metric} ({dims})"


def alb_dimension(load_balancer: str) -> str:
    """The `LoadBalancer` dimension value (`app/<name>/<id>`) from that value or a full ARN."""
    marker = ":loadbalancer/"
    if marker in load_balancer:
        return load_balancer.split(marker, 1)[1]
    return load_balancer


def alb_metric(load_balancer: str, metric: str) -> MetricRef:
    if metric not in ALB_METRICS:
        raise ValueError(f"unsupported ALB metric {metric!r}; one of {', '.join(ALB_METRICS)}")
    return MetricRef(ALB_NAMESPACE, metric, (("LoadBalancer", alb_dimension(load_balancer)),))


def log_group_metric(log_group: str) -> MetricRef:
    return MetricRef(LOGS_NAMESPACE, "IncomingLogEvents", (("LogGroupName", log_group),))


def build_queries(refs: list[MetricRef], period: int) -> tuple[list[dict[str, Any]], dict[str, MetricRef]]:
    """`MetricDataQueries` for `refs` (ids m0, m1, ...) and the id -> ref map to read answers back."""
    queries: list[dict[str, Any]] = []
    by_id: dict[str, MetricRef] = {}
    for index, ref in enumerate(refs):
        query_id = f"m{index}"
        by_id[query_id] = ref
        queries.append({
            "Id": query_id,
            "MetricStat": {
                "Metric": {
                    "Namespace": ref.namespace,
                    "MetricName": ref.metric,
                    "Dimensions": [{"Name": k, "Value": v} for k, v in ref.dimensions],
                },
                "Period": period,
                "Stat": ref.stat,
            },
            "ReturnData": True,
        })
    return queries, by_id


def buckets(start: float, end: float, period: int) -> list[float]:
    """Bucket start times in [start, end): the answer has one value per bucket."""
    out = []
    t = start
    while t < end - 1e-6:
        out.append(t)
        t += period
    return out


def get_metric_data(target: Any, refs: list[MetricRef], *, start: float, end: float, period: int,
                    client: Any = None) -> tuple[dict[MetricRef, list[tuple[float, float]]], int]:
    """Read `refs` summed per `period` over [start, end); returns (series per ref, API calls made).

    Follows `NextToken` until the answer is complete (a long window at a short period can page).
    Every bucket appears in the result; a bucket with no datapoint is 0.0 (see the module doc).
    """
    unique = list(dict.fromkeys(refs))
    client = client or aws.client(target, "cloudwatch")
    raw: dict[MetricRef, dict[float, float]] = {ref: {} for ref in unique}
    calls = 0
    start_dt = datetime.fromtimestamp(start, tz=timezone.utc)
    end_dt = datetime.fromtimestamp(end, tz=timezone.utc)
    for offset in range(0, len(unique), MAX_QUERIES_PER_CALL):
        chunk = unique[offset:offset + MAX_QUERIES_PER_CALL]
        queries, by_id = build_queries(chunk, period)
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start_dt, "EndTime": end_dt,
                                      "ScanBy": "TimestampAscending"}
            if token:
                kwargs["NextToken"] = token
            with aws.translate("cloudwatch.get_metric_data", f"{len(queries)} metrics"):
                answer = client.get_metric_data(**kwargs)
            calls += 1
            for result in answer.get("MetricDataResults", []):
                ref = by_id.get(result["Id"])
                if ref is None:
                    continue
                for stamp, value in zip(result.get("Timestamps", []), result.get("Values", [])):
                    key = stamp.timestamp()
                    raw[ref][key] = raw[ref].get(key, 0.0) + float(value)
            token = answer.get("NextToken")
            if not token:
                break
    grid = buckets(start, end, period)
    series: dict[MetricRef, list[tuple[float, float]]] = {}
    for ref, points in raw.items():
        filled = {t: 0.0 for t in grid}
        for stamp, value in points.items():
            # Snap a datapoint to the bucket that contains it (CloudWatch and moto may label a
            # bucket by its start on a different alignment than ours).
            slot = _slot(grid, stamp, period)
            if slot is not None:
                filled[slot] += value
        series[ref] = sorted(filled.items())
    return series, calls


def _slot(grid: list[float], stamp: float, period: int) -> float | None:
    if not grid:
        return None
    index = int((stamp - grid[0] + 1e-6) // period)
    if 0 <= index < len(grid):
        return grid[index]
    return None


def put_counts(target: Any, ref: MetricRef, points: list[tuple[float, float]], client: Any = None) -> None:
    """Write datapoints for a ref (tests and benchmarks replay incidents with it)."""
    client = client or aws.client(target, "cloudwatch")
    data = [{
        "MetricName": ref.metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in ref.dimensions],
        "Timestamp": datetime.fromtimestamp(t, tz=timezone.utc),
        "Value": float(v),
        "Unit": "Count",
    } for t, v in points]
    for offset in range(0, len(data), 1000):
        with aws.translate("cloudwatch.put_metric_data", ref.describe()):
            client.put_metric_data(Namespace=ref.namespace, MetricData=data[offset:offset + 1000])
