"""The `Zone` capability of a Route 53 hosted zone (record sets as Route 53's own dicts).

    zone = Route53Zone(target)                       # or registry.adapter(target, "Zone")
    before = zone.read("api.example.com", "A")       # [{"Name":..., "Type": "A", "TTL": 300, ...}]
    zone.write(ctx, before, zone.with_weight(...), timeout=300, comment="...")   # one atomic batch

Weighted record sets (`SetIdentifier` + `Weight`) are what `dns.switch` with `weights:` and
`traffic.shift` move; a change batch is atomic, so "nothing half-applied" is Route 53's guarantee.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.platforms.aws import route53
from bot.platforms.capabilities import AnsweredByNameServers, Applied


def _ttl_text(seconds: Any) -> str:
    from bot.platforms.dns import fmt_ttl

    return fmt_ttl(seconds)


class Route53Zone(AnsweredByNameServers):
    provider = "route53"
    product = "Route 53"
    iam_grants = staticmethod(route53.iam_grants)
    weighted_supported = True

    def __init__(self, target: Any, zone_id: str | None = None) -> None:
        self.target = target
        self._zone: dict[str, Any] | None = None
        self._zone_id = zone_id  # known from an earlier result: saves the lookup on the rollback path

    @property
    def zone(self) -> dict[str, Any]:
        if self._zone is None:
            self._zone = route53.find_zone(self.target)
        return self._zone

    @property
    def zone_id(self) -> str:
        return self._zone_id or self.zone["Id"]

    @property
    def ref(self) -> str | None:
        return self.zone_id

    @property
    def zone_name(self) -> str:
        return self.zone["Name"]

    def nameservers(self) -> list[str]:
        return list(self.zone.get("NameServers") or [])

    def read(self, name: str, rtype: str) -> list[dict[str, Any]]:
        return route53.record_sets(self.target, name, rtype, zone=self.zone_id)

    def ttl(self, sets: list[dict[str, Any]]) -> int | None:
        ttls = [int(s["TTL"]) for s in sets if "TTL" in s]
        return max(ttls) if ttls else None

    def is_weighted(self, sets: list[dict[str, Any]]) -> bool:
        return any("Weight" in s for s in sets)

    def set_id(self, record_set: dict[str, Any]) -> str | None:
        return record_set.get("SetIdentifier")

    def weight(self, record_set: dict[str, Any]) -> int:
        return int(record_set.get("Weight", 0))

    def with_weight(self, record_set: dict[str, Any], weight: int) -> dict[str, Any]:
        changed = copy.deepcopy(record_set)
        changed["Weight"] = int(weight)
        return changed

    def values(self, rtype: str, record_set: dict[str, Any]) -> list[str]:
        if "AliasTarget" in record_set:
            return [f"ALIAS {record_set['AliasTarget']['DNSName']}"]
        return [r["Value"] for r in record_set.get("ResourceRecords", [])]

    def is_alias(self, sets: list[dict[str, Any]]) -> bool:
        return any("AliasTarget" in s for s in sets)

    def with_ttl(self, record_set: dict[str, Any], ttl: int) -> dict[str, Any]:
        changed = copy.deepcopy(record_set)
        changed["TTL"] = ttl
        return changed

    def retarget(self, before: list[dict[str, Any]], record: str, rtype: str, values: list[str],
                 ttl: int | None) -> list[dict[str, Any]]:
        """The one simple record set `values` make (an UPSERT keeps the rest of the record)."""
        base = before[0] if before else {"Name": route53.fqdn(record), "Type": rtype}
        keep = ttl or (base.get("TTL") if "TTL" in base else None) or 300
        wanted = {k: v for k, v in copy.deepcopy(base).items() if k not in ("AliasTarget", "ResourceRecords", "TTL")}
        wanted["TTL"] = int(keep)
        wanted["ResourceRecords"] = [{"Value": v} for v in values]
        return [wanted]

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]:
        out = []
        for s in sets:
            label = f"{s['SetIdentifier']}: " if "SetIdentifier" in s else ""
            weight = f" weight {s['Weight']}" if "Weight" in s else ""
            out.append(f"{label}{', '.join(self.values(rtype, s))}{weight} ttl {_ttl_text(s.get('TTL'))}")
        return out

    def how(self, count: int) -> str:
        return "one Route 53 change"

    def submit(self, waiter: Any, changes: list[dict[str, Any]], *, timeout: float, comment: str) -> Applied:
        submitted = waiter.clock.now()
        info = route53.submit(self.target, changes, zone=self.zone_id, comment=comment)
        change_id = info["Id"]
        waiter.log(f"Route 53 change {change_id} submitted ({len(changes)} record set changes)")
        if info.get("Status") == "INSYNC":  # already live: no poll needed
            return Applied(submitted, waiter.clock.now() - submitted, change_id)
        waited = route53.wait_insync(self.target, change_id, timeout=timeout, sleep=waiter.sleep,
                                     now=waiter.clock.now, progress=lambda m: waiter.progress(0, None, m))
        return Applied(submitted, waited, change_id)

    def write(self, waiter: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied:
        """Make the record exactly `wanted` in one atomic batch."""
        changes = route53.restore_changes(current, wanted)
        if not changes:
            now = waiter.clock.now()
            return Applied(now, 0.0, None)
        return self.submit(waiter, changes, timeout=timeout, comment=comment)

    restore = write


class Route53Weights:
    """The `TrafficSplitter` capability of a Route 53 weighted record family (one set per member).

    Weights are Route 53's 0-255 integers; `traffic.shift` gives fractions, scaled here by 255's
    nearest sensible total (100) so a 10 % stage reads as weights 90/10.
    """

    scale = 100
    iam_grants = staticmethod(route53.iam_grants)

    def __init__(self, target: Any, record: str | None = None, rtype: str = "A", **_: Any) -> None:
        if not record:
            raise ValueError("a Route 53 traffic shift needs `record:` (the weighted record's name)")
        self.zone = Route53Zone(target)
        self.record, self.rtype = record, rtype.upper()
        self.label = f"Route 53 weighted {record} {self.rtype}"

    def snapshot(self) -> dict[str, Any]:
        return {"sets": self.zone.read(self.record, self.rtype)}

    def members(self, snapshot: dict[str, Any]) -> list[str]:
        return [s["SetIdentifier"] for s in snapshot["sets"] if "Weight" in s]

    def weights(self, snapshot: dict[str, Any]) -> dict[str, float]:
        return {s["SetIdentifier"]: int(s["Weight"]) / self.scale for s in snapshot["sets"] if "Weight" in s}

    def with_weights(self, snapshot: dict[str, Any], weights: Any) -> dict[str, Any]:
        unknown = sorted(set(weights) - set(self.members(snapshot)))
        if unknown:
            raise KeyError(", ".join(unknown))
        sets = [self.zone.with_weight(s, round(float(weights[s["SetIdentifier"]]) * self.scale))
                if s.get("SetIdentifier") in weights else copy.deepcopy(s) for s in snapshot["sets"]]
        return {"sets": sets}

    def same(self, a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a["sets"] == b["sets"]

    def write(self, waiter: Any, current: dict[str, Any], wanted: dict[str, Any]) -> int:
        self.zone.write(waiter, current["sets"], wanted["sets"], timeout=300, comment="runbook-bot traffic.shift")
        return 1

    def read_back(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        return self.snapshot()
