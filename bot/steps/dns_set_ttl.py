"""`dns.set_ttl`: lower a record's TTL ahead of a cutover (and raise it again after).

    - id: lower-ttl
      kind: dns.set_ttl
      with: {zone: dns, record: api.example.com, type: A, ttl: 60}

Why a step of its own: caches keep the *old* TTL. A TTL lowered from 1 day to 60 s only takes
full effect one day later, so the plan says when ("fully in effect at ...") and `dns.switch`
refuses to run before that moment, reading this step's stored result (`old_ttl`, finish time).
Every record set of the name and type gets the new TTL (all weighted sets together) in one change;
rollback puts back the exact record sets read before.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from bot.platforms import dns as dnscheck
from bot.platforms import errors
from bot.platforms.capabilities import ZONE
from bot.runbook.model import Duration
from bot.steps import dns_records as dr
from bot.steps.base import Change, Plan, PlanRefused, Result, StepKind, TargetRef, Verification, register



@register
class DnsSetTtl(StepKind):
    name = "dns.set_ttl"
    mutating = True
    idempotent = True

    class Inputs(BaseModel, extra="forbid"):
        zone: Annotated[str, TargetRef(capability=ZONE)] = Field(
            description="Target holding the record (a platform with a Zone: aws-route53, do-domain, cloudflare)")
        record: str = Field(description="Fully qualified record name, e.g. api.example.com")
        type: str = Field("A", description="Record type")
        ttl: int = Field(ge=1, le=604800, description="The new TTL in seconds (Cloudflare: 1 means automatic)")
        change_timeout: Duration = Field(300, description="How long to wait for Route 53 to report INSYNC")
        nameservers: list[str] = Field(default_factory=list,
                                       description="ip:port of the servers to verify against (default: the zone's NS set)")
        verify_timeout: Duration = Field(300, description="How long verify waits for the servers to serve the new TTL")

    class Outputs(BaseModel):
        old_ttl: int
        new_ttl: int
        effective_at: float

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        zone = dr.zone_for(ctx.target(inputs.zone))
        rtype = inputs.type.upper()
        sets = zone.read(inputs.record, rtype)
        if not sets:
            raise PlanRefused(f"{inputs.record} {rtype} does not exist in zone {zone.zone_name}: nothing to set a TTL on")
        if zone.is_alias(sets):
            raise PlanRefused(f"{inputs.record} {rtype} is a Route 53 alias record: its TTL is the alias target's "
                              "and cannot be set")
        try:  # the provider's own TTL rules (Cloudflare: 1 = automatic, else 60-86400)
            for s in sets:
                zone.with_ttl(s, inputs.ttl)
        except errors.InvalidRequest as exc:
            raise PlanRefused(exc.message) from None
        old = zone.ttl(sets)
        now = ctx.clock.now()
        warnings = []
        if zone.edge_answered(sets):
            warnings.append(f"{inputs.record} {rtype} is proxied: {zone.provider}'s edge answers it with its own "
                            "short TTL, so this TTL applies only once the record is unproxied; verify reads the "
                            "record back from the API")
        # Lowering: caches that fetched just before the change keep the old TTL. Raising: new
        # fetches get the longer TTL at once; the short one already cached expires by itself.
        effective = now + (old or 0) if old is not None and inputs.ttl < old else now
        when = (f"fully in effect at {dr.fmt_time(effective)} (now + the old TTL of {dr.fmt_ttl(old)})"
                if effective > now else "in effect as soon as the change is live")
        changes = [Change(action="set", resource=f"{inputs.record} {rtype} {line.split(':')[0]}"
                          if zone.is_weighted(sets) else f"{inputs.record} {rtype}",
                          before=zone.fmt_ttl(zone.ttl([s])), after=dr.fmt_ttl(inputs.ttl))
                   for s, line in zip(sets, zone.describe(sets, rtype))]
        return Plan(
            summary=f"TTL of {inputs.record} {rtype}: {zone.fmt_ttl(old)} -> {zone.fmt_ttl(inputs.ttl)}, {when}",
            changes=changes, warnings=warnings,
            no_op=all(zone.ttl([s]) == inputs.ttl for s in sets),
            data={"before": sets, "old_ttl": old, "effective_at": effective},
            table=[["record set", "ttl now", "ttl after"]] + [[line, zone.fmt_ttl(zone.ttl([s])), zone.fmt_ttl(inputs.ttl)]
                                                             for s, line in zip(sets, zone.describe(sets, rtype))],
        )

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        zone = dr.zone_for(ctx.target(inputs.zone))
        rtype = inputs.type.upper()
        current = zone.read(inputs.record, rtype)
        if current != plan.data["before"]:
            raise PlanRefused(f"{inputs.record} {rtype} changed since the plan was made; plan the step again")
        wanted = [zone.with_ttl(s, inputs.ttl) for s in current]
        applied = zone.write(ctx, current, wanted, timeout=inputs.change_timeout,
                             comment=f"runbook-bot {ctx.run_id}/{ctx.step_id}: TTL {inputs.ttl}")
        old = plan.data["old_ttl"]
        effective = applied.submitted_at + old if old is not None and inputs.ttl < old else applied.submitted_at
        details = {"record": inputs.record, "type": rtype, "old_ttl": old, "new_ttl": inputs.ttl,
                   "changed_at": applied.submitted_at, "effective_at": effective,
                   "insync_seconds": round(applied.insync_seconds, 3), "change_id": applied.change_id}
        return Result(
            summary=f"TTL of {inputs.record} {rtype} is now {dr.fmt_ttl(inputs.ttl)} (was {dr.fmt_ttl(old)}); "
                    f"fully in effect at {dr.fmt_time(effective)}",
            outputs={"old_ttl": old or 0, "new_ttl": inputs.ttl, "effective_at": effective},
            undo={"before": current, "after": wanted, "zone_id": zone.ref},
            details=details,
        )

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification:
        """Every authoritative server answers the same data with the new TTL."""
        return self._check(ctx, inputs, result.undo["after"], inputs.ttl, result.undo.get("zone_id"))

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification:
        return self._check(ctx, inputs, result.undo["before"], result.details.get("old_ttl"), result.undo.get("zone_id"))

    def _check(self, ctx: Any, inputs: Any, sets: list[dict[str, Any]], ttl: int | None,
               zone_id: str | None) -> Verification:
        zone = dr.zone_for(ctx.target(inputs.zone), zone_id)
        rtype = inputs.type.upper()
        if zone.edge_answered(sets):
            ok, current, took = dr.read_back(ctx, zone, inputs.record, rtype, sets, timeout=inputs.verify_timeout)
            return Verification(ok=ok, summary=(f"the {zone.provider} API reads back {inputs.record} {rtype} with TTL "
                                                f"{dr.fmt_ttl(zone.ttl(current))} (proxied: answered at the edge)"),
                                details={"read_back": current, "seconds": round(took, 3)})
        result = dnscheck.wait_until(
            dr.servers_for(zone, inputs.nameservers), dr.fqdn(inputs.record), rtype,
            dr.accepted_answers(zone, rtype, sets), timeout=inputs.verify_timeout, now=ctx.clock.now,
            sleep=ctx.sleep, interval=2.0, expect_ttl=ttl,
            progress=lambda done, total, msg: ctx.progress(done, total, msg, unit="servers"))
        where = f"{len(result.servers)} authoritative server(s)"
        summary = (f"{where} answer {inputs.record} {rtype} with TTL {dr.fmt_ttl(ttl)}" if result.ok else
                   f"not every one of {where} answers TTL {dr.fmt_ttl(ttl)} for {inputs.record} {rtype} after "
                   f"{dr.fmt_ttl(round(result.seconds))}")
        return Verification(ok=result.ok, summary=summary, details={"convergence": result.to_dict()},
                            table=result.table())

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        old = result.details.get("old_ttl")
        return Plan(summary=f"Put the TTL of {inputs.record} {inputs.type.upper()} back to {dr.fmt_ttl(old)} "
                            f"(exact record sets as before, one change).",
                    data={})

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        zone = dr.zone_for(ctx.target(inputs.zone), result.undo.get("zone_id"))
        rtype = inputs.type.upper()
        current = zone.read(inputs.record, rtype)
        applied = zone.restore(ctx, current, result.undo["before"], timeout=inputs.change_timeout,
                               comment=f"runbook-bot {ctx.run_id}/{ctx.step_id}: rollback TTL")
        return Result(summary=f"TTL of {inputs.record} {rtype} back to {dr.fmt_ttl(result.details.get('old_ttl'))}",
                      details={"insync_seconds": round(applied.insync_seconds, 3), "change_id": applied.change_id})

