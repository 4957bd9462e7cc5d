"""Cloudflare edge analytics for the watch: one GraphQL query per tick, shared by every signal.

    sample = EdgeAnalytics(target).sample(start, end)
    sample == {"requests": 1200.0, "edge_504": 3.0, "edge_5xx": 5.0, "origin_5xx": 2.0}

The query reads `httpRequestsAdaptiveGroups` (the zone's sampled request log, grouped by edge and
origin status) for [start, end). Signals on the same zone and window (edge_504_rate,
edge_5xx_rate, throughput_floor) share one answer: the result is kept per (endpoint, zone,
window), so a tick costs one query however many Cloudflare signals it has.

The GraphQL API is not in the vendored REST contract; the query and its parsing are tested
against recorded-shape responses (tests/test_cloudflare_watch.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from bot.platforms import cloudflare as cf
from bot.platforms import errors

QUERY = """
query EdgeStatus($zoneTag: string, $start: Time, $end: Time) {
  viewer {
    zones(filter: {zoneTag: $zoneTag}) {
      httpRequestsAdaptiveGroups(limit: 1000, filter: {datetime_geq: $start, datetime_lt: $end}) {
        count
        dimensions { edgeResponseStatus originResponseStatus }
      }
    }
  }
}
""".strip()

_cache: dict[tuple[str, str, float, float], dict[str, float]] = {}
_lock = threading.Lock()
queries = 0  # how many GraphQL queries this process sent (the watch_tick benchmark reads it)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse(answer: Any) -> dict[str, float]:
    """Sum the groups of a GraphQL answer; a GraphQL error or a missing zone is a PlatformError."""
    if not isinstance(answer, dict):
        raise errors.Unavailable(cf.PLATFORM, "graphql", "httpRequestsAdaptiveGroups", "the answer is not JSON")
    if answer.get("errors"):
        text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in answer["errors"])
        raise errors.InvalidRequest(cf.PLATFORM, "graphql", "httpRequestsAdaptiveGroups", text[:300])
    zones = (((answer.get("data") or {}).get("viewer") or {}).get("zones")) or []
    if not zones:
        raise errors.NotFound(cf.PLATFORM, "graphql", "httpRequestsAdaptiveGroups", "no such zone for these credentials")
    out = {"requests": 0.0, "edge_504": 0.0, "edge_5xx": 0.0, "origin_5xx": 0.0}
    for group in zones[0].get("httpRequestsAdaptiveGroups") or []:
        count = float(group.get("count") or 0)
        dims = group.get("dimensions") or {}
        edge, origin = int(dims.get("edgeResponseStatus") or 0), int(dims.get("originResponseStatus") or 0)
        out["requests"] += count
        if edge == 504:
            out["edge_504"] += count
        if 500 <= edge <= 599:
            out["edge_5xx"] += count
        if 500 <= origin <= 599:
            out["origin_5xx"] += count
    return out


class EdgeAnalytics:
    """The `MetricSource` capability of a Cloudflare zone."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def sample(self, start: float, end: float) -> dict[str, float]:
        global queries
        client = cf.client(self.target)
        key = (str(client.base_url), self.target.zone, round(start, 3), round(end, 3))
        # Held across the query: signals of one tick run in parallel threads, and the second must
        # wait for the first's answer rather than send a second query.
        with _lock:
            if key in _cache:
                return dict(_cache[key])
            zone_id = cf.zone_id(self.target)
            with cf.translate("graphql", f"zone {self.target.zone}"):
                answer = client.post("/graphql", cast_to=object,
                                     body={"query": QUERY, "variables": {"zoneTag": zone_id, "start": _iso(start),
                                                                          "end": _iso(end)}})
            result = parse(answer)
            queries += 1
            if len(_cache) > 256:
                _cache.clear()
            _cache[key] = result
        return dict(result)
