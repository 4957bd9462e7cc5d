"""`dns.switch`: point a record at the new platform, prove it at the authoritative servers, undo exactly.

Simple record (Route 53 UPSERT, or DigitalOcean patch of `data`/`ttl`):

    - id: switch-dns
      kind: dns.switch
      with: {zone: dns, record: api.example.com, type: CNAME, to: api-xyz.ondigitalocean.app}

Weighted records (Route 53): the final weight of each set identifier, moved in one change batch,

      with: {zone: dns, record: api.example.com, weights: {old: 0, new: 100}}

or gradually, with a hold and a check that must pass before each next stage (seed 004's shift):

      with: {zone: dns, record: api.example.com, weights: {old: 0, new: 100},
             stages: [10, 50, 100], hold: 10m, check: {url: "https://api.example.com/health"}}

The plan refuses (or with `allow_high_ttl: true` warns) when the current TTL is above `max_ttl`
or was lowered less than one old TTL ago (from this run's `dns.set_ttl` result, else the provider).
`apply` records the exact record sets it found; `rollback` puts them back in one change. `verify`
and `verify_rollback` ask every authoritative server directly until each answers the expected data
and report each server's answer and the propagation time (`propagation_seconds`, measured from the
moment the change was sent).
"""

from __future__ import annotations

import copy
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator, model_validator

from bot import secrets
from bot.platforms import dns as dnscheck
from bot.platforms import http
from bot.runbook.model import Duration
from bot.steps import dns_records as dr
from bot.steps.context import Cancelled
from bot.steps.base import Change, Plan, PlanRefused, Result, StepError, StepKind, TargetRef, Verification, register
from bot.steps.dns_set_ttl import ZONE_PLATFORMS


class StageCheck(BaseModel, extra="forbid"):
    """What must hold after each stage of a gradual shift before the next one starts."""

    url: str | None = Field(None, description="An HTTP(S) URL that must answer `expect_status`")
    expect_status: int = 200
    host: str | None = Field(None, description="Host header to send")
    attempts: int = Field(3, ge=1, description="Tries before the check counts as failed")
    interval: Duration = Field(5, description="Pause between tries")
    timeout: Duration = Field(10, description="Per-request timeout")
    dns: bool = Field(False, description="Require every authoritative server to answer the stage's record sets")

    @model_validator(mode="after")
    def _something(self) -> StageCheck:
        if not self.url and not self.dns:
            raise ValueError("a stage check needs `url` or `dns: true`")
        return self


@register
class DnsSwitch(StepKind):
    name = "dns.switch"
    mutating = True

    class Inputs(BaseModel, extra="forbid"):
        zone: Annotated[str, TargetRef(platforms=ZONE_PLATFORMS)] = Field(
            description="Target holding the record (aws-route53 or do-domain)")
        record: str = Field(description="Fully qualified record name, e.g. api.example.com")
        type: str = Field("A", description="Record type (A, AAAA, CNAME, ...)")
        to: list[str] | None = Field(None, description="Simple records: the new data (one value or a list)")
        ttl: int | None = Field(None, ge=1, description="Simple records: the TTL to set with the switch (default: keep)")
        weights: dict[str, int] | None = Field(None, description="Weighted (Route 53): final weight per set identifier")
        stages: list[int] | None = Field(None, description="Gradual shift: percent of traffic per stage, ending at 100")
        hold: Duration = Field(0, description="Time to hold each stage before its check")
        check: StageCheck | None = None
        max_ttl: int = Field(300, ge=1, description="Refuse above this TTL (seconds)")
        allow_high_ttl: bool = Field(False, description="Warn instead of refusing on the TTL preflight")
        nameservers: list[str] = Field(default_factory=list,
                                       description="ip:port of the servers to verify against (default: the zone's NS set)")
        verify_timeout: Duration = Field(600, description="How long verify waits for every server to converge")
        samples: int = Field(5, ge=1, le=50, description="Queries per server per round (weighted records)")
        change_timeout: Duration = Field(300, description="How long to wait for Route 53 to report INSYNC")
        poll_interval: Duration = Field(2, description="Seconds between verification rounds")

        @field_validator("to", mode="before")
        @classmethod
        def _one_or_many(cls, value: Any) -> Any:
            return [value] if isinstance(value, str) else value

        @model_validator(mode="after")
        def _one_form(self) -> Any:
            if (self.to is None) == (self.weights is None):
                raise ValueError("give either `to` (simple records) or `weights` (Route 53 weighted records)")
            if self.to is not None and not self.to:
                raise ValueError("`to` needs at least one value")
            if self.weights is not None:
                bad = {k: w for k, w in self.weights.items() if not 0 <= w <= 255}
                if bad:
                    raise ValueError(f"weights must be 0-255: {bad}")
                if self.ttl is not None:
                    raise ValueError("`ttl` goes with `to`; set weighted TTLs with dns.set_ttl")
            if self.stages is not None:
                if self.weights is None:
                    raise ValueError("`stages` needs `weights` (a gradual shift moves weights)")
                if any(not 0 < p <= 100 for p in self.stages) or self.stages != sorted(set(self.stages)) \
                        or self.stages[-1] != 100:
                    raise ValueError("`stages` are increasing percentages ending at 100, e.g. [10, 50, 100]")
            return self

    class Outputs(BaseModel):
        record: str
        type: str
        change_id: str | None = None

    # -- plan -------------------------------------------------------------------------------------

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        zone = dr.zone_for(ctx.target(inputs.zone))
        rtype = inputs.type.upper()
        before = zone.read(inputs.record, rtype)
        blocking: list[str] = []
        warnings: list[str] = []
        stage_sets: list[list[dict[str, Any]]] = []
        if inputs.weights is not None:
            if not zone.weighted_supported:
                raise PlanRefused(
                    f"DigitalOcean DNS has no weighted records, so `weights`/`stages` (a gradual shift) cannot be "
                    f"done on {zone.zone_name}: switch with `to:` in one step, or move the zone to Route 53 first")
            stage_sets = _weighted_stages(inputs, before, rtype)
        else:
            for value in inputs.to:
                why = dnscheck.invalid_value(rtype, value)
                if why:
                    raise PlanRefused(f"`to: {value}` is not valid {rtype} data ({why}): `to` takes the record's new "
                                      f"data, e.g. an IP address for A, a host name for CNAME")
            stage_sets = [_simple_target(zone, inputs, before, rtype)]
        after = stage_sets[-1]

        problems = dr.ttl_problems(ctx, zone, inputs.record, rtype, before, inputs.max_ttl)
        (warnings if inputs.allow_high_ttl else blocking).extend(problems)
        if inputs.to is not None and inputs.ttl and inputs.ttl > inputs.max_ttl:
            warnings.append(f"the new TTL {dr.fmt_ttl(inputs.ttl)} is above max_ttl: a rollback would be slow to be seen")
        if not before:
            warnings.append(f"{inputs.record} {rtype} does not exist yet: the switch creates it, rollback deletes it")

        old_lines, new_lines = zone.describe(before, rtype), zone.describe(after, rtype)
        table = [["", "record sets"], ["now", "; ".join(old_lines) or "(none)"], ["after", "; ".join(new_lines)]]
        if len(stage_sets) > 1:
            for pct, sets in zip(inputs.stages, stage_sets):
                table.append([f"stage {pct}%", "; ".join(zone.describe(sets, rtype))])
        staged = f" in {len(stage_sets)} stages, holding {dr.fmt_ttl(inputs.hold)} each" if len(stage_sets) > 1 else ""
        return Plan(
            summary=f"Switch {inputs.record} {rtype} to {_short(zone, after, rtype)}{staged}; verify at the "
                    f"authoritative servers (up to {dr.fmt_ttl(inputs.verify_timeout)})",
            changes=[Change(action="switch", resource=f"{inputs.record} {rtype}", before="; ".join(old_lines) or None,
                            after="; ".join(new_lines))],
            warnings=warnings,
            blocking=blocking,
            table=table,
            no_op=before == after,
            data={"before": before, "stages": stage_sets, "provider": zone.provider},
        )

    # -- apply / verify ----------------------------------------------------------------------------

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        zone = dr.zone_for(ctx.target(inputs.zone))
        rtype = inputs.type.upper()
        before = plan.data["before"]
        current = zone.read(inputs.record, rtype)
        if current != before:
            raise PlanRefused(f"{inputs.record} {rtype} changed since the plan was made; plan the step again")
        comment = f"runbook-bot {ctx.run_id}/{ctx.step_id}"
        stages: list[list[dict[str, Any]]] = plan.data["stages"]
        # Write-ahead: the way back is stored before the first write, so a crash mid-shift is undone too.
        ctx.record_undo(provider=zone.provider, zone_id=zone.ref, before=before, after=stages[-1], stages=stages[:-1])
        applied = None
        stage_log: list[dict[str, Any]] = []
        for index, wanted in enumerate(stages):
            ctx.check_cancelled()
            applied = zone.write(ctx, current, wanted, timeout=inputs.change_timeout, comment=comment)
            current = wanted
            label = f"{inputs.stages[index]}%" if inputs.stages else "switch"
            stage_log.append({"stage": label, "change_id": applied.change_id,
                              "insync_seconds": round(applied.insync_seconds, 3)})
            if len(stages) > 1:
                ctx.progress(index + 1, len(stages), f"stage {label} live", unit="stages")
            if index < len(stages) - 1:
                try:
                    self._hold_and_check(ctx, inputs, zone, rtype, wanted, before, label)
                except Cancelled:
                    # An abort leaves things as they are (the context's contract), so say exactly
                    # where the shift stopped and what the record was before, for the person who decides.
                    ctx.log(f"aborted during stage {label}: {inputs.record} {rtype} is {_short(zone, wanted, rtype)}; "
                            f"before the step it was {_short(zone, before, rtype)}")
                    raise
        assert applied is not None
        return Result(
            summary=f"{inputs.record} {rtype} now {_short(zone, current, rtype)} (was {_short(zone, before, rtype)})",
            outputs={"record": inputs.record, "type": rtype, "change_id": applied.change_id},
            undo={"provider": zone.provider, "zone_id": zone.ref, "before": before, "after": current,
                  "stages": stages[:-1]},
            details={"submitted_at": applied.submitted_at, "insync_seconds": round(applied.insync_seconds, 3),
                     "stages": stage_log},
        )

    def _hold_and_check(self, ctx: Any, inputs: Any, zone: Any, rtype: str, wanted: list[dict[str, Any]],
                        before: list[dict[str, Any]], label: str) -> None:
        if inputs.hold:
            ctx.log(f"holding stage {label} for {dr.fmt_ttl(inputs.hold)}")
            ctx.sleep(inputs.hold)
        failure = self._stage_check(ctx, inputs, zone, rtype, wanted) if inputs.check else None
        if failure is None:
            return
        # Stop the shift and put the weights back as they were: a failed stage must not leave
        # traffic half-moved with no result for the engine to roll back from.
        current = zone.read(inputs.record, rtype)
        zone.write(ctx, current, before, timeout=inputs.change_timeout,
                   comment=f"runbook-bot {ctx.run_id}/{ctx.step_id}: stage check failed, restoring")
        raise StepError(f"stage {label} check failed: {failure}. The weights were put back as they were before the step.")

    def _stage_check(self, ctx: Any, inputs: Any, zone: Any, rtype: str, wanted: list[dict[str, Any]]) -> str | None:
        check = inputs.check
        if check.dns:
            result = self._wait(ctx, inputs, zone, rtype, wanted, timeout=inputs.verify_timeout,
                                states=[wanted])
            if not result.ok:
                return "authoritative servers did not converge: " + _answers(result)
        if check.url:
            where = secrets.redact(check.url)
            last = ""
            for attempt in range(check.attempts):
                reply = http.get(check.url, host=check.host, timeout=check.timeout)
                if reply.status == check.expect_status:
                    return None
                last = (f"{where} answered {reply.status}, expected {check.expect_status}" if reply.answered
                        else f"{where}: {reply.error}")
                if attempt < check.attempts - 1:
                    ctx.sleep(check.interval)
            return last
        return None

    def _wait(self, ctx: Any, inputs: Any, zone: Any, rtype: str, sets: list[dict[str, Any]], *,
              timeout: float, states: list[list[dict[str, Any]]] | None = None) -> dnscheck.Convergence:
        """Ask the authoritative servers until they answer `sets`.

        `states` are every state a lagging server could still hold (before, stages, after). When
        each of them has at most one live set, every server answers deterministically and one
        answer tells which state it holds; sampling (`samples` per round) is only needed when some
        state splits traffic, since only then can a single answer match by luck.
        """
        servers = dr.servers_for(zone, inputs.nameservers)
        known = states if states is not None else [sets]
        split = any(zone.is_weighted(s) and sum(1 for rs in s if int(rs.get("Weight", 0)) > 0) > 1 for s in known)
        return dnscheck.wait_until(
            servers, dr.route53.fqdn(inputs.record), rtype, dr.accepted_answers(zone, rtype, sets),
            timeout=timeout, now=ctx.clock.now, sleep=ctx.sleep, interval=inputs.poll_interval,
            samples=inputs.samples if split else 1,
            progress=lambda done, total, msg: ctx.progress(done, total, msg, unit="servers"))

    def _verification(self, ctx: Any, inputs: Any, sets: list[dict[str, Any]], since: float | None,
                      what: str, zone_id: str | None = None,
                      states: list[list[dict[str, Any]]] | None = None) -> Verification:
        zone = dr.zone_for(ctx.target(inputs.zone), zone_id)
        rtype = inputs.type.upper()
        result = self._wait(ctx, inputs, zone, rtype, sets, timeout=inputs.verify_timeout, states=states)
        finished = ctx.clock.now()
        propagation = round(finished - since, 3) if since is not None and result.ok else None
        expected = _short(zone, sets, rtype)
        # From the approval that started this step (the engine's `started_at`) to verified at every
        # authoritative server: the number an incident review asks for after a rollback.
        approved_at = getattr(ctx, "started_at", None)
        from_approval = round(finished - approved_at, 3) if approved_at is not None and result.ok else None
        details = {"expected": dr.accepted_answers(zone, rtype, sets), "propagation_seconds": propagation,
                   "approval_to_verified_seconds": from_approval, "convergence": result.to_dict()}
        if result.ok:
            took = f" {propagation:.1f}s after the change was sent" if propagation is not None else ""
            if from_approval is not None:
                took += f", {from_approval:.1f}s after approval"
            summary = (f"{what}: all {len(result.servers)} authoritative servers answer {expected} for "
                       f"{inputs.record} {rtype}{took}")
        else:
            summary = (f"{what}: after {dr.fmt_ttl(round(result.seconds))} not every authoritative server answers "
                       f"{expected} for {inputs.record} {rtype}; last answers: {_answers(result)}")
        return Verification(ok=result.ok, summary=summary, details=details, table=result.table())

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification:
        return self._verification(ctx, inputs, result.undo["after"], result.details.get("submitted_at"), "switched",
                                  result.undo.get("zone_id"), _states(result))

    # -- rollback ------------------------------------------------------------------------------------

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        zone = dr.zone_for(ctx.target(inputs.zone), result.undo.get("zone_id"))
        rtype = inputs.type.upper()
        before, after = result.undo["before"], result.undo["after"]
        current = zone.read(inputs.record, rtype)
        warnings = []
        if current != after:
            warnings.append(f"{inputs.record} {rtype} was changed by someone else after the switch; "
                            "rollback still restores the record sets recorded before the switch")
        how = "one Route 53 change" if zone.provider == "route53" else f"{len(before)} DigitalOcean patch(es)"
        # Short enough to read on a phone: one line saying what comes back and how it is proven.
        return Plan(summary=f"DNS back: {inputs.record} {rtype} -> {_short(zone, before, rtype)} ({how}), "
                            f"then check the authoritative servers.",
                    changes=[Change(action="switch", resource=f"{inputs.record} {rtype}",
                                    before=_short(zone, current, rtype), after=_short(zone, before, rtype))],
                    warnings=warnings, data={})

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        zone = dr.zone_for(ctx.target(inputs.zone), result.undo.get("zone_id"))
        rtype = inputs.type.upper()
        before = result.undo["before"]
        current = zone.read(inputs.record, rtype)
        applied = zone.restore(ctx, current, before, timeout=inputs.change_timeout,
                               comment=f"runbook-bot {ctx.run_id}/{ctx.step_id}: rollback")
        return Result(summary=f"{inputs.record} {rtype} back to {_short(zone, before, rtype)}",
                      undo={"before": current},
                      details={"submitted_at": applied.submitted_at, "change_id": applied.change_id,
                               "insync_seconds": round(applied.insync_seconds, 3)})

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification:
        return self._verification(ctx, inputs, result.undo["before"], undo.details.get("submitted_at"), "rolled back",
                                  result.undo.get("zone_id"), _states(result) + [undo.undo.get("before") or []])


# -- helpers ----------------------------------------------------------------------------------------

def _states(result: Result) -> list[list[dict[str, Any]]]:
    """Every record state this switch put in place or found (a lagging server may hold any of them)."""
    return [result.undo["before"], *result.undo.get("stages", []), result.undo["after"]]


def _short(zone: Any, sets: list[dict[str, Any]], rtype: str) -> str:
    if not sets:
        return "(no record)"
    if zone.is_weighted(sets):
        return ", ".join(f"{s['SetIdentifier']}={s.get('Weight', 0)}" for s in sets)
    return ", ".join(v for s in sets for v in dr.values_of(rtype, s))


def _answers(result: dnscheck.Convergence) -> str:
    return "; ".join(f"{s.server}: {', '.join(s.last_values) or s.last_error or '(empty)'}"
                     + ("" if s.converged else " (not converged)") for s in result.servers)


def _simple_target(zone: Any, inputs: Any, before: list[dict[str, Any]], rtype: str) -> list[dict[str, Any]]:
    if zone.provider == "route53":
        if zone.is_weighted(before):
            ids = ", ".join(str(s.get("SetIdentifier")) for s in before)
            raise PlanRefused(f"{inputs.record} {rtype} is weighted ({ids}): switch it with `weights:` instead of `to:`")
        base = before[0] if before else {"Name": dr.route53.fqdn(inputs.record), "Type": rtype}
        ttl = inputs.ttl or (base.get("TTL") if "TTL" in base else None) or 300
        record = {k: v for k, v in copy.deepcopy(base).items() if k not in ("AliasTarget", "ResourceRecords", "TTL")}
        record["TTL"] = int(ttl)
        record["ResourceRecords"] = [{"Value": v} for v in inputs.to]
        return [record]
    # DigitalOcean: one record per value; patching keeps ids, so the number of records must match.
    if len(before) != len(inputs.to):
        raise PlanRefused(
            f"{inputs.record} {rtype} has {len(before)} record(s) on DigitalOcean and `to` has {len(inputs.to)} "
            "value(s): a switch patches records in place, so give exactly one value per existing record")
    wanted = []
    for record, value in zip(before, sorted(inputs.to)):
        changed = copy.deepcopy(record)
        changed["data"] = value
        if inputs.ttl:
            changed["ttl"] = inputs.ttl
        wanted.append(changed)
    return wanted


def _weighted_stages(inputs: Any, before: list[dict[str, Any]], rtype: str) -> list[list[dict[str, Any]]]:
    by_id = {s.get("SetIdentifier"): s for s in before if "Weight" in s}
    unknown = sorted(set(inputs.weights) - set(by_id))
    if unknown:
        have = ", ".join(sorted(map(str, by_id))) or "none"
        raise PlanRefused(f"{inputs.record} {rtype} has no weighted set(s) {', '.join(unknown)} (it has: {have}); "
                          "create the new set with weight 0 before the switch")

    def with_weights(weights: dict[str, int]) -> list[dict[str, Any]]:
        out = []
        for s in before:
            changed = copy.deepcopy(s)
            if s.get("SetIdentifier") in weights:
                changed["Weight"] = int(weights[s["SetIdentifier"]])
            out.append(changed)
        return out

    if not inputs.stages:
        return [with_weights(inputs.weights)]
    gaining = [k for k, w in inputs.weights.items() if w > int(by_id[k]["Weight"])]
    losing = [k for k, w in inputs.weights.items() if w < int(by_id[k]["Weight"])]
    if len(gaining) != 1 or len(losing) != 1 or inputs.weights[losing[0]] != 0:
        raise PlanRefused("a gradual shift moves traffic from one set to one other: `weights` must raise exactly one "
                          "set and take exactly one other to 0, e.g. {old: 0, new: 100}")
    to_id, from_id = gaining[0], losing[0]
    total = inputs.weights[to_id]
    return [with_weights({to_id: round(total * pct / 100), from_id: round(total * (100 - pct) / 100)})
            for pct in inputs.stages]
