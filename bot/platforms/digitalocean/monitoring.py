"""DigitalOcean load balancer frontend response metrics, summed over a window.

    from bot.platforms.digitalocean import monitoring
    counts = monitoring.lb_frontend_responses(lb_id, start=t0, end=t1)
    counts.total, counts.by_class["5xx"], counts.get("504")

The monitoring API answers a Prometheus-style matrix: one series per label set, each a list of
`[unix_time, "value"]` samples of a *rate* (responses per second). A count over the window is the
rate integrated over time (each sample held until the next one, the last until `end`).

The response-class label is not pinned down by the contract (it only promises "labels that vary
with the metric"), so the class is read from whichever label holds a value like `5xx` or `504`;
a series with no such label counts toward the total only.

App Platform exposes no edge status metric at all: for an app, the edge signals come from the
caller's side (`probe`, `caller_log`), see `bot.watch.signals`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from bot.platforms import digitalocean as do

_CLASS = re.compile(r"^([1-5])(xx|\d\d)$", re.IGNORECASE)


@dataclass
class ResponseCounts:
    total: float = 0.0
    by_class: dict[str, float] = field(default_factory=dict)  # "5xx" -> n, "504" -> n (when labelled so)

    def get(self, code: str) -> float:
        """Count for "504" or "5xx"; a "5xx" figure includes labelled individual codes."""
        code = code.lower()
        if code.endswith("xx"):
            return sum(v for k, v in self.by_class.items() if k[0] == code[0])
        return self.by_class.get(code, 0.0)

    def has(self, code: str) -> bool:
        return code.lower() in self.by_class


def lb_frontend_responses(lb_id: str, *, start: float, end: float, client: Any = None) -> ResponseCounts:
    """Responses served by the load balancer's frontend in [start, end), by status class."""
    client = client or do.client()
    answer = do.call("monitoring.get_lb_frontend_http_responses", f"load balancer {lb_id}",
                     client.monitoring.get_lb_frontend_http_responses, lb_id=lb_id, start=str(int(start)),
                     end=str(int(end)), expect="data")
    return parse_matrix(answer["data"], start=start, end=end)


def parse_matrix(data: dict[str, Any], *, start: float, end: float) -> ResponseCounts:
    counts = ResponseCounts()
    for series in data.get("result", []) or []:
        labels = series.get("metric", {}) or {}
        code = next((_normal(v) for v in labels.values() if isinstance(v, str) and _CLASS.match(v.strip())), None)
        amount = integrate(series.get("values", []) or [], start=start, end=end)
        counts.total += amount
        if code:
            counts.by_class[code] = counts.by_class.get(code, 0.0) + amount
    return counts


def integrate(values: list[list[Any]], *, start: float, end: float) -> float:
    """Sum of rate x seconds held within [start, end), for `[[t, "rate"], ...]` samples: each
    sample holds until the next one (the last until `end`)."""
    points = []
    for item in values:
        if len(item) < 2:
            continue
        try:
            points.append((float(item[0]), float(item[1])))
        except (TypeError, ValueError):
            continue  # a NaN-like sample marker ("NaN" parses; None does not) carries no count
    points.sort()
    total = 0.0
    for index, (stamp, rate) in enumerate(points):
        until = points[index + 1][0] if index + 1 < len(points) else end
        held = min(until, end) - max(stamp, start)
        if rate == rate and held > 0:  # skip NaN
            total += rate * held
    return total


def _normal(value: str) -> str:
    return value.strip().lower()
