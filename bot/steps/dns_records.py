"""What `dns.set_ttl` and `dns.switch` share: one view of a record over any platform with a `Zone`.

    zone = dns_records.zone_for(ctx.target(inputs.zone))
    before = zone.read("api.example.com", "A")        # a Snapshot: the exact record sets, as stored
    zone.ttl(before), zone.describe(before)            # 300, ["old=192.0.2.1 w100 ttl300", ...]
    zone.write(ctx, current, before, timeout=300, comment="...")   # one Route 53 batch (or DO patches)

A snapshot is the provider's own representation (Route 53's record-set dicts, DigitalOcean's or
Cloudflare's record dicts), stored in the step's result as it is, so a rollback puts back exactly
what was read. Only the zone adapter (`bot.platforms.capabilities.Zone`) looks inside a record.
No registered kind lives here.
"""

from __future__ import annotations

import time
from typing import Any

from bot import config
from bot.platforms import dns as dnscheck
from bot.platforms import registry
from bot.platforms.capabilities import ZONE
from bot.steps.base import StepError


fmt_ttl = dnscheck.fmt_ttl


def fmt_time(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def fqdn(name: str) -> str:
    """`Api.Example.com` -> `api.example.com.` (how authoritative servers answer names)."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def zone_for(target: Any, zone_id: str | None = None) -> Any:
    """The target's `Zone` adapter; `zone_id` (stored by `apply`) skips the zone lookup."""
    platform = getattr(target, "platform", None)
    if not registry.supports(platform, ZONE):
        raise StepError(f"target platform {platform!r} does not hold DNS records: use one of "
                        f"{', '.join(registry.platforms_with(ZONE))}")
    return registry.adapter(target, ZONE, zone_id=zone_id)


def read_back(ctx: Any, zone: Any, record: str, rtype: str, sets: list[dict[str, Any]], *, timeout: float,
              interval: float = 2.0) -> tuple[bool, list[dict[str, Any]], float]:
    """For records answered at a provider's edge (Cloudflare proxied): read the record back from the
    API until it equals `sets`; the edge's answers are the provider's addresses, not the record's."""
    started = ctx.clock.now()
    while True:
        current = zone.read(record, rtype)
        if zone.same_records(current, sets):
            return True, current, ctx.clock.now() - started
        if ctx.clock.now() - started >= timeout:
            return False, current, ctx.clock.now() - started
        ctx.sleep(interval)


def servers_for(zone: Any, override: list[str]) -> list[dnscheck.Server]:
    # No provider call at all when the step, the target (private zones) or the setting (a
    # rehearsal world's local server) names the servers to ask, in that order.
    override = override or list(getattr(getattr(zone, "target", None), "nameservers", None) or []) \
        or config.get_list("RUNBOOK_BOT_NAMESERVERS")
    if override:
        return dnscheck.authoritative_servers("", override=override)
    return dnscheck.authoritative_servers(zone.zone_name, ns_names=zone.nameservers())


def accepted_answers(zone: Any, rtype: str, sets: list[dict[str, Any]]) -> list[list[str]]:
    """The answers an authoritative server may give for these record sets.

    A simple record (or DigitalOcean's records, all answered together) is one answer; a weighted
    family answers one set per query, any set with weight above zero (all of them when all are 0).
    """
    if not sets:
        return [[]]
    if zone.is_weighted(sets):
        live = [s for s in sets if zone.weight(s) > 0] or sets
        return [zone.values(rtype, s) for s in live]
    return [[v for s in sets for v in zone.values(rtype, s)]]


def find_set_ttl(ctx: Any, record: str, rtype: str) -> Any:
    """The latest succeeded `dns.set_ttl` of this run for the same record and type, or None."""
    name = fqdn(record)
    found = None
    for past in ctx.history(kind="dns.set_ttl"):
        details = ((past.result or {}).get("details") or {})
        if past.state != "succeeded" or past.finished_at is None:
            continue
        if fqdn(str(details.get("record", ""))) != name or str(details.get("type", "")).upper() != rtype:
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
