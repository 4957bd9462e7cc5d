"""`traffic.shift`: move traffic from one pool (origin, weighted record set) to another in stages.

    - id: shift
      kind: traffic.shift
      with:
        target: lb                 # cloudflare-lb (pool weights, or origin weights with `pool:`) or aws-route53
        from: heroku               # pool / origin / set identifier losing traffic
        to: ecs                    # ... gaining it
        stages: [10, 25, 50, 100]  # percent of the pair's traffic on `to` after each stage
        soak: 10m                  # the gate between stages: this long with no watch breach
        watch: {every: 1m, delay: 0, signals: [{name: probe, probe: {url: "https://api.example.com/health"}}]}

Each stage is one weight change (Cloudflare: one PATCH of the LB's steering, or of the pool's
origins; Route 53: one change batch), read back before the gate starts. The gate ticks the
watch's signals (the same `watch:` block as `watch.start`) every `watch.every` for `soak`; a
`breach` puts the weights back to the last good stage at once (the stage before, or the state
before the step) and the step's verification fails with the breach, which alerts and offers the
rollback. An approval between stages is a second `traffic.shift` step (the runbook's own approval
gate): each step records the exact state it found, so rolling back both, newest first, restores
the original.

Rollback restores exactly what `apply` read: the weights, the steering policy, the default pools
and the fallback pool (Cloudflare), or the record sets (Route 53).

`dns.switch` with `stages:` still works for Route 53 weighted records; new runbooks use this kind.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from bot.platforms import errors, registry
from bot.platforms.capabilities import TRAFFIC_SPLITTER
from bot.runbook.model import Duration
from bot.steps.base import Change, Plan, PlanRefused, Result, StepError, StepKind, TargetRef, Verification, register
from bot.watch.spec import WatchSpec


def splitter_for(ctx: Any, inputs: Any) -> Any:
    return registry.adapter(ctx.target(inputs.target), TRAFFIC_SPLITTER, pool=inputs.pool, record=inputs.record,
                            rtype=inputs.type)


def stage_weights(start: dict[str, float], from_: str, to: str, pct: float, cap: float | None) -> dict[str, float]:
    """The pair's weights with `pct` percent on `to` (the pair's total kept; 1.0 when it was 0)."""
    total = (start.get(from_, 0.0) + start.get(to, 0.0)) or 1.0
    if cap is not None:
        total = min(total, cap)
    return {to: round(total * pct / 100, 2), from_: round(total * (100 - pct) / 100, 2)}


def _fmt(weights: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in weights.items())


@register
class TrafficShift(StepKind):
    name = "traffic.shift"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        target: Annotated[str, TargetRef(capability=TRAFFIC_SPLITTER)] = Field(
            description="Load balancer (cloudflare-lb) or weighted-record zone (aws-route53)")
        from_: str = Field(alias="from", description="Pool, origin or set identifier losing traffic")
        to: str = Field(description="Pool, origin or set identifier gaining traffic")
        stages: list[int] = Field(default_factory=lambda: [10, 25, 50, 100],
                                  description="Percent on `to` after each stage (increasing, ending at 100)")
        soak: Duration = Field(600, description="Gate between stages: time with no watch breach")
        # The schema shows an object: inlining the whole WatchSpec (with template alternatives at every
        # level) multiplies the schema's size; the loader still validates it as a WatchSpec.
        watch: Annotated[WatchSpec | None, WithJsonSchema({"type": ["object", "null"], "description":
                         "Signals the gate ticks: the same block as watch.start's `with:`"})] = None
        pool: str | None = Field(None, description="Cloudflare: shift origins inside this pool, not pools")
        record: str | None = Field(None, description="Route 53: the weighted record's name")
        type: str = Field("A", description="Route 53: record type")

        @model_validator(mode="after")
        def _stages(self) -> Any:
            if not self.stages or any(not 0 < p <= 100 for p in self.stages) or self.stages != sorted(set(self.stages)):
                raise ValueError("`stages` are increasing percentages, e.g. [10, 25, 50, 100]")
            if self.from_ == self.to:
                raise ValueError("`from` and `to` must differ")
            return self

    class Outputs(BaseModel):
        last_stage: int
        breached: bool

    # -- plan -----------------------------------------------------------------------------------------

    def _stage_states(self, splitter: Any, before: dict[str, Any], inputs: Any) -> list[dict[str, float]]:
        start = splitter.weights(before)
        cap = getattr(splitter, "max_weight", None)  # Cloudflare weights are 0-1
        return [stage_weights(start, inputs.from_, inputs.to, pct, cap) for pct in inputs.stages]

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        splitter = splitter_for(ctx, inputs)
        before = splitter.snapshot()
        try:
            stages = self._stage_states(splitter, before, inputs)
            for weights in stages:
                splitter.with_weights(before, weights)  # names resolve, values are in range
        except errors.PlatformError as exc:
            raise PlanRefused(f"{splitter.label}: {exc.message}") from None
        except KeyError as exc:
            raise PlanRefused(f"{splitter.label} has no member {exc} (it has: "
                              f"{', '.join(splitter.members(before)) or 'none'})") from None
        if inputs.watch is not None:
            from bot.watch.signals import SignalConfigError, build_signals

            try:
                build_signals(inputs.watch, ctx.targets)
            except SignalConfigError as exc:
                raise PlanRefused(f"the gate's watch: {exc}") from None
        now = splitter.weights(before)
        gate = (f"a {inputs.soak:g}s soak on {len(inputs.watch.signals)} watch signal(s)" if inputs.watch
                else f"a {inputs.soak:g}s soak with no signals (set `watch:` to gate on signals)")
        table = [["stage", "weights"], ["now", _fmt(now)]] + [[f"{p}%", _fmt(w)] for p, w in zip(inputs.stages, stages)]
        warnings = [] if inputs.watch else ["no `watch:` signals: the gate only waits, it cannot see a breach"]
        return Plan(summary=f"Shift {splitter.label} from {inputs.from_} to {inputs.to} in {len(stages)} stage(s) "
                            f"({', '.join(f'{p}%' for p in inputs.stages)}), gated by {gate}; a breach puts the last "
                            "good stage back",
                    changes=[Change(action="shift", resource=splitter.label, before=_fmt(now), after=_fmt(stages[-1]))],
                    warnings=warnings, table=table,
                    data={"before": before, "stages": stages})

    # -- apply ----------------------------------------------------------------------------------------

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        splitter = splitter_for(ctx, inputs)
        before = plan.data["before"]
        current = splitter.snapshot()
        if not splitter.same(current, before):
            raise PlanRefused(f"{splitter.label} changed since the plan was made; plan the step again")
        signals = self._signals(ctx, inputs)
        last_good, stage_log = before, []
        for index, weights in enumerate(plan.data["stages"]):
            ctx.check_cancelled()
            pct = inputs.stages[index]
            wanted = splitter.with_weights(before, weights)
            try:
                calls = splitter.write(ctx, current, wanted)
                live = splitter.read_back(wanted)
            except errors.PlatformError as exc:
                self._put_back(ctx, splitter, before, f"stage {pct}% failed: {exc}")
                raise  # _put_back raised; never reached
            calls += 1
            if not splitter.same(live, wanted):
                raise StepError(f"{splitter.label}: stage {pct}% was written but reads back as "
                                f"{_fmt(splitter.weights(live))}")
            current = live
            entry = {"stage": pct, "weights": weights, "calls": calls, "at": ctx.clock.now()}
            stage_log.append(entry)
            ctx.progress(index + 1, len(plan.data["stages"]), f"stage {pct}% live: {_fmt(weights)}", unit="stages")
            if index == len(plan.data["stages"]) - 1:
                break
            breach = self._gate(ctx, inputs, signals, pct)
            if breach is None:
                last_good = wanted
                continue
            # Put the last good stage back at once, then say so: people decide about the rollback.
            detected = ctx.clock.now()
            restore_calls = splitter.write(ctx, current, last_good)
            restored = splitter.read_back(last_good)
            took = ctx.clock.now() - detected
            entry.update(breach=breach, restore_calls=restore_calls + 1, restored_seconds=round(took, 3),
                         detected_at=detected, restored_at=ctx.clock.now())
            back = _fmt(splitter.weights(restored))
            ctx.log(f"ALERT traffic.shift: breach at stage {pct}% ({breach}); {splitter.label} back to {back} "
                    f"in {took:.1f}s")
            return Result(summary=f"breach at stage {pct}%: {breach}; weights back to the last good stage ({back})",
                          outputs={"last_stage": stage_log[-2]["stage"] if len(stage_log) > 1 else 0, "breached": True},
                          undo={"before": before, "after": restored},
                          details={"stages": stage_log, "breach": breach, "breach_stage": pct,
                                   "restored_seconds": round(took, 3)})
        return Result(summary=f"{splitter.label}: {_fmt(plan.data['stages'][-1])} after {len(stage_log)} stage(s)",
                      outputs={"last_stage": inputs.stages[-1], "breached": False},
                      undo={"before": before, "after": current}, details={"stages": stage_log})

    def _put_back(self, ctx: Any, splitter: Any, before: dict[str, Any], why: str) -> None:
        """A failed stage leaves no result to roll back from, so undo it here before failing."""
        try:
            splitter.write(ctx, splitter.snapshot(), before)
            restored = splitter.same(splitter.read_back(before), before)
        except errors.PlatformError as again:
            raise StepError(f"{why}. Putting the state before the step back failed too ({again}): "
                            f"{splitter.label} may be at any stage; restore {_fmt(splitter.weights(before))} "
                            "by hand") from None
        state = "put back exactly as before the step" if restored else "written back, but reads differently"
        ctx.log(f"ALERT traffic.shift: {why}; {splitter.label} {state}")
        raise StepError(f"{why}. {splitter.label} was {state} ({_fmt(splitter.weights(before))}).")

    def _signals(self, ctx: Any, inputs: Any) -> list[Any]:
        if inputs.watch is None:
            return []
        from bot.watch.signals import build_signals

        return build_signals(inputs.watch, ctx.targets)

    def _gate(self, ctx: Any, inputs: Any, signals: list[Any], pct: int) -> str | None:
        """Soak: tick the signals every `watch.every` for `soak`; the first breach ends the gate."""
        if not signals:
            ctx.sleep(inputs.soak)
            return None
        from bot.watch.collect import collect_tick
        from bot.watch.signals import Window

        every = min(float(inputs.watch.every), float(inputs.soak)) or float(inputs.soak)
        started = ctx.clock.now()
        baselines, carry = None, {}
        while True:
            ctx.sleep(every)
            now = ctx.clock.now() - float(inputs.watch.delay)
            tick = collect_tick(signals, Window(start=now - every, end=now, every=every), watch_started=started,
                                baselines=baselines, carry=carry)
            baselines = tick.baselines
            breached = [r for r in tick.readings if r.state == "breach"]
            if breached:
                return "; ".join(f"{r.label}: {r.detail}" for r in breached)
            if ctx.clock.now() - started >= inputs.soak:
                ctx.log(f"stage {pct}% held {inputs.soak:g}s with no breach")
                return None

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification:
        splitter = splitter_for(ctx, inputs)
        live = splitter.read_back(result.undo["after"])
        held = splitter.same(live, result.undo["after"])
        if result.outputs.get("breached"):
            return Verification(ok=False, summary=f"breach at stage {result.details['breach_stage']}%: "
                                                  f"{result.details['breach']}; weights "
                                                  f"{'held' if held else 'NOT held'} at the last good stage "
                                                  f"({_fmt(splitter.weights(live))}); roll back to restore the "
                                                  "original", details={"weights": splitter.weights(live)})
        return Verification(ok=held, summary=f"{splitter.label} reads {_fmt(splitter.weights(live))}",
                            details={"weights": splitter.weights(live)})

    # -- rollback -------------------------------------------------------------------------------------

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        splitter = splitter_for(ctx, inputs)
        before = result.undo["before"]
        now = splitter.snapshot()
        warnings = [] if splitter.same(now, result.undo["after"]) else [
            f"{splitter.label} was changed after the shift; rollback still restores the state read before it"]
        return Plan(summary=f"Traffic back: {splitter.label} -> {_fmt(splitter.weights(before))} (exact weights, "
                            "steering policy, default and fallback pools as before), then read back.",
                    changes=[Change(action="shift", resource=splitter.label, before=_fmt(splitter.weights(now)),
                                    after=_fmt(splitter.weights(before)))], warnings=warnings)

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        splitter = splitter_for(ctx, inputs)
        started = ctx.clock.now()
        current = splitter.snapshot()
        calls = splitter.write(ctx, current, result.undo["before"])
        return Result(summary=f"{splitter.label} back to {_fmt(splitter.weights(result.undo['before']))}",
                      undo={"before": current},
                      details={"calls": calls + 1, "seconds": round(ctx.clock.now() - started, 3)})

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification:
        splitter = splitter_for(ctx, inputs)
        live = splitter.read_back(result.undo["before"])
        ok = splitter.same(live, result.undo["before"])
        return Verification(ok=ok, summary=(f"{splitter.label} restored exactly: {_fmt(splitter.weights(live))}" if ok
                                            else f"{splitter.label} reads {_fmt(splitter.weights(live))}, not the "
                                                 "state before the shift"))
