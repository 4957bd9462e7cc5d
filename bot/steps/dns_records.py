"""What `dns.set_ttl` and `dns.switch` share: one view of a record over Route 53 or DigitalOcean.

    zone = dns_records.zone_for(ctx.target(inputs.zone))
    before = zone.read("api.example.com", "A")        # a Snapshot: the exact record sets, as stored
    zone.ttl(before), zone.describe(before)            # 300, ["old=192.0.2.1 w100 ttl300", ...]
    zone.write(ctx, current, before, timeout=300, comment="...")   # one Route 53 batch (or DO patches)

A snapshot is the provider's own representation (Route 53's record-set dicts, DigitalOcean's record
dicts), stored in the step's result as it is, so a rollback puts back exactly what was read.
No registered kind lives here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bot import config
from bot.platforms import dns as dnscheck
from bot.platforms import errors
from bot.platforms.aws import route53
from bot.platforms.digitalocean import domains
from bot.steps.base import StepError


@dataclass
class Applied:
    """What a change did: when it was sent, how long until the provider had it."""

    submitted_at: float
    insync_seconds: float
    change_id: str | None = None


def values_of(rtype: str, record_set: dict[str, Any]) -> list[str]:
    """The data of one record set (Route 53) or one record (DigitalOcean)."""
    if "ResourceRecords" in record_set:
        return [r["Value"] for r in record_set["ResourceRecords"]]
    if "AliasTarget" in record_set:
        return [f"ALIAS {record_set['AliasTarget']['DNSName']}"]
    return [str(record_set["data"])]


def fmt_ttl(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    seconds = int(seconds)
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


class Route53Zone:
    provider = "route53"
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

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]:
        out = []
        for s in sets:
            label = f"{s['SetIdentifier']}: " if "SetIdentifier" in s else ""
            weight = f" weight {s['Weight']}" if "Weight" in s else ""
            out.append(f"{label}{', '.join(values_of(rtype, s))}{weight} ttl {fmt_ttl(s.get('TTL'))}")
        return out

    def submit(self, ctx: Any, changes: list[dict[str, Any]], *, timeout: float, comment: str) -> Applied:
        submitted = ctx.clock.now()
        info = route53.submit(self.target, changes, zone=self.zone_id, comment=comment)
        change_id = info["Id"]
        ctx.log(f"Route 53 change {change_id} submitted ({len(changes)} record set changes)")
        if info.get("Status") == "INSYNC":  # already live: no poll needed
            return Applied(submitted, ctx.clock.now() - submitted, change_id)
        waited = route53.wait_insync(self.target, change_id, timeout=timeout, sleep=ctx.sleep, now=ctx.clock.now,
                                     progress=lambda m: ctx.progress(0, None, m))
        return Applied(submitted, waited, change_id)

    def write(self, ctx: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied:
        """Make the record exactly `wanted` in one atomic batch."""
        changes = route53.restore_changes(current, wanted)
        if not changes:
            now = ctx.clock.now()
            return Applied(now, 0.0, None)
        return self.submit(ctx, changes, timeout=timeout, comment=comment)

    restore = write


class DigitalOceanZone:
    provider = "digitalocean"
    weighted_supported = False

    def __init__(self, target: Any, zone_id: str | None = None) -> None:
        self.target = target

    ref = None

    @property
    def zone_name(self) -> str:
        return domains.fqdn(self.target.domain) + "."

    def nameservers(self) -> list[str]:
        return domains.nameservers(self.target.domain)

    def read(self, name: str, rtype: str) -> list[dict[str, Any]]:
        return sorted(domains.list_records(self.target.domain, name, rtype), key=lambda r: r["id"])

    def ttl(self, sets: list[dict[str, Any]]) -> int | None:
        ttls = [int(s["ttl"]) for s in sets if s.get("ttl") is not None]
        return max(ttls) if ttls else None

    def is_weighted(self, sets: list[dict[str, Any]]) -> bool:
        return False

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]:
        return [f"#{s['id']}: {s['data']} ttl {fmt_ttl(s.get('ttl'))}" for s in sets]

    def write(self, ctx: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied:
        """Patch each record (matched by id) to the wanted data/ttl; undo the patches already made if one fails.

        DigitalOcean has no batch: "nothing half-applied" is kept by putting back, in reverse, the
        records already patched before the failure is raised.
        """
        submitted = ctx.clock.now()
        by_id = {r["id"]: r for r in current}
        missing = [w["id"] for w in wanted if w["id"] not in by_id]
        if missing:
            raise StepError(f"DigitalOcean records {missing} no longer exist in {self.target.domain}; "
                            "nothing was changed")
        done: list[dict[str, Any]] = []
        try:
            for want in wanted:
                have = by_id[want["id"]]
                data = want["data"] if want["data"] != have["data"] else None
                ttl = want["ttl"] if want.get("ttl") != have.get("ttl") else None
                if data is None and ttl is None:
                    continue
                domains.patch_record(self.target.domain, have, data=data, ttl=ttl)
                done.append(have)
        except errors.PlatformError:
            for have in reversed(done):
                domains.patch_record(self.target.domain, have, data=have["data"], ttl=have.get("ttl"))
            raise
        # DigitalOcean applies a patch at once; there is no change id to wait on.
        return Applied(submitted, ctx.clock.now() - submitted, None)

    restore = write


def zone_for(target: Any, zone_id: str | None = None) -> Route53Zone | DigitalOceanZone:
    """The record view for a target; `zone_id` (stored by `apply`) skips the zone lookup."""
    platform = getattr(target, "platform", None)
    if platform == "aws-route53":
        return Route53Zone(target, zone_id)
    if platform == "do-domain":
        return DigitalOceanZone(target)
    raise StepError(f"target platform {platform!r} does not hold DNS records: use an aws-route53 or do-domain target")


def servers_for(zone: Route53Zone | DigitalOceanZone, override: list[str]) -> list[dnscheck.Server]:
    # No provider call at all when the step, the target (private zones) or the setting (a
    # rehearsal world's local server) names the servers to ask, in that order.
    override = override or list(getattr(zone.target, "nameservers", None) or []) \
        or config.get_list("RUNBOOK_BOT_NAMESERVERS")
    if override:
        return dnscheck.authoritative_servers("", override=override)
    return dnscheck.authoritative_servers(zone.zone_name, ns_names=zone.nameservers())


def accepted_answers(zone: Route53Zone | DigitalOceanZone, rtype: str, sets: list[dict[str, Any]]) -> list[list[str]]:
    """The answers an authoritative server may give for these record sets.

    A simple record (or DigitalOcean's records, all answered together) is one answer; a weighted
    family answers one set per query, any set with weight above zero (all of them when all are 0).
    """
    if not sets:
        return [[]]
    if zone.is_weighted(sets):
        live = [s for s in sets if int(s.get("Weight", 0)) > 0] or sets
        return [values_of(rtype, s) for s in live]
    return [[v for s in sets for v in values_of(rtype, s)]]


def find_set_ttl(ctx: Any, record: str, rtype: str) -> Any:
    """The latest succeeded `dns.set_ttl` of this run for the same record and type, or None."""
    name = route53.fqdn(record)
    found = None
    for past in ctx.history(kind="dns.set_ttl"):
        details = ((past.result or {}).get("details") or {})
        if past.state != "succeeded" or past.finished_at is None:
            continue
        if route53.fqdn(str(details.get("record", ""))) != name or str(details.get("type", "")).upper() != rtype:
            continue
        if found is None or past.finished_at > found.finished_at:
            found = past
    return found


def ttl_problems(ctx: Any, zone: Any, record: str, rtype: str, sets: list[dict[str, Any]], max_ttl: int) -> list[str]:
    """Why a switch now would leave caches holding the old answer for longer than `max_ttl`."""
    now = ctx.clock.now()
    problems: list[str] = []
    current = zone.ttl(sets)
    lowered = find_set_ttl(ctx, record, rtype)
    if lowered is not None:
        details = lowered.result["details"]
        old_ttl, new_ttl = int(details.get("old_ttl") or 0), int(details.get("new_ttl") or 0)
        effective = lowered.finished_at + old_ttl
        if new_ttl < old_ttl and now < effective:
            problems.append(
                f"the TTL was lowered from {fmt_ttl(old_ttl)} to {fmt_ttl(new_ttl)} only "
                f"{fmt_ttl(round(now - lowered.finished_at))} ago (step {lowered.step_id}); resolvers may keep the "
                f"old answer until {fmt_time(effective)} (one old TTL after the change)")
    if current is not None and current > max_ttl:
        problems.append(
            f"the current TTL of {record} {rtype} is {fmt_ttl(current)}, above max_ttl {fmt_ttl(max_ttl)}: lower it "
            f"with dns.set_ttl at least {fmt_ttl(current)} before the switch, so a rollback is seen quickly")
    return problems
