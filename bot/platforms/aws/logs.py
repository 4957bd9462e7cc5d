"""CloudWatch Logs Insights: count matching lines in a caller's logs, by time bin.

    from bot.platforms.aws import logs
    rows = logs.run_query(target, ["/ecs/web"], logs.count_query("504", bin_seconds=600),
                          start=t0, end=t1)
    logs.parse_count_by_bin(rows)          # {bin_start_epoch: count, ...}

The caller's side is where a hang shows: the hung service logs nothing, the edge answers 504, and
the calling service logs that 504. One query covers every caller log group of a tick (Insights
takes up to 50 groups per query), so the cost is one `StartQuery` plus its polls per tick.

moto runs Insights queries but honours only `fields`, `sort`, `limit` and the time window: `filter`
and `stats ... by bin()` are ignored and raw rows come back. The parser is therefore tested with
recorded AWS answers through botocore's `Stubber` (tests/test_watch_logs.py), and it refuses rows
that lack the count field rather than guessing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from bot.platforms import aws, errors

COUNT_FIELD = "count"
# IAM actions of `run_query` (StopQuery only when a query outlives its timeout).
IAM_READ = ("logs:StartQuery", "logs:GetQueryResults", "logs:StopQuery")
DONE_STATES = {"Complete"}
FAILED_STATES = {"Failed", "Cancelled", "Timeout", "Unknown"}


class QueryResultError(errors.PlatformError):
    """The query answered, but not in the shape a `stats count(*) as count by bin(...)` query has."""

    kind = "unexpected query result"


def count_query(pattern: str, *, bin_seconds: int, count_field: str = COUNT_FIELD, by_log: bool = False) -> str:
    """An Insights query counting lines matching `pattern` (a regex) per bin of `bin_seconds`
    (and per log group with `by_log`, so one query serves several callers)."""
    escaped = pattern.replace("/", "\\/")
    group = "@log, " if by_log else ""
    return (f"filter @message like /{escaped}/"
            f" | stats count(*) as {count_field} by {group}bin({int(bin_seconds)}s)")


def run_query(target: Any, log_groups: list[str], query: str, *, start: float, end: float,
              timeout: float = 60.0, poll: float = 1.0, client: Any = None,
              sleep: Callable[[float], None] = time.sleep,
              monotonic: Callable[[], float] = time.monotonic) -> list[list[dict[str, str]]]:
    """Start an Insights query over `log_groups` and poll until it completes; returns its rows.

    Raises `Unavailable` when it has not completed within `timeout` seconds (the query is stopped),
    and `PlatformError` when Insights reports it failed.
    """
    client = client or aws.client(target, "logs")
    resource = ", ".join(log_groups) if len(log_groups) <= 3 else f"{log_groups[0]} and {len(log_groups) - 1} more log groups"
    with aws.translate("logs.start_query", resource):
        query_id = client.start_query(logGroupNames=list(log_groups), startTime=int(start), endTime=int(end),
                                      queryString=query)["queryId"]
    deadline = monotonic() + timeout
    while True:
        with aws.translate("logs.get_query_results", resource):
            answer = client.get_query_results(queryId=query_id)
        status = answer.get("status", "Unknown")
        if status in DONE_STATES:
            return answer.get("results", [])
        if status in FAILED_STATES:
            raise errors.PlatformError(aws.PLATFORM, "logs.get_query_results", resource, f"query {status.lower()}")
        if monotonic() >= deadline:
            with aws.translate("logs.stop_query", resource):
                client.stop_query(queryId=query_id)
            raise errors.Unavailable(aws.PLATFORM, "logs.get_query_results", resource,
                                     f"query still {status} after {timeout:.0f}s; stopped it")
        sleep(poll)


_BIN_FIELD = re.compile(r"^bin\(.*\)$")


def parse_counts(rows: list[list[dict[str, str]]], *, count_field: str = COUNT_FIELD,
                 resource: str = "") -> list[tuple[str | None, float, int]]:
    """`(log group or None, bin start epoch or 0, count)` per row of a
    `stats count(*) as <count_field> by [@log,] bin(...)` query.

    A row without the count field means the query was not a count (or the service ignored `stats`,
    as moto does); that is an error, not zero, because zero would read as "no 504s".
    """
    out: list[tuple[str | None, float, int]] = []
    for row in rows:
        fields = {cell["field"]: cell.get("value") for cell in row}
        if count_field not in fields:
            got = ", ".join(sorted(fields)) or "nothing"
            raise QueryResultError(aws.PLATFORM, "logs.get_query_results", resource,
                                   f"row has no {count_field!r} field (got {got}): the query must"
                                   f" `stats count(*) as {count_field}`")
        bin_key = next((k for k in fields if _BIN_FIELD.match(k)), None)
        stamp = _parse_stamp(fields[bin_key]) if bin_key else 0.0
        try:
            value = int(float(fields[count_field] or 0))
        except ValueError:
            raise QueryResultError(aws.PLATFORM, "logs.get_query_results", resource,
                                   f"{count_field!r} is not a number: {fields[count_field]!r}") from None
        log = fields.get("@log")
        # Insights prints @log as "<account id>:<log group name>".
        if log and ":" in log and log.split(":", 1)[0].isdigit():
            log = log.split(":", 1)[1]
        out.append((log, stamp, value))
    return out


def parse_count_by_bin(rows: list[list[dict[str, str]]], *, count_field: str = COUNT_FIELD,
                       resource: str = "") -> dict[float, int]:
    """`{bin start (epoch seconds): count}`, summed across log groups."""
    counts: dict[float, int] = {}
    for _log, stamp, value in parse_counts(rows, count_field=count_field, resource=resource):
        counts[stamp] = counts.get(stamp, 0) + value
    return counts


def _parse_stamp(value: str | None) -> float:
    """Insights prints bins as `2026-05-20 10:00:00.000` (UTC)."""
    if not value:
        return 0.0
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise QueryResultError(aws.PLATFORM, "logs.get_query_results", "", f"unreadable bin time {value!r}")
