"""Step kinds `watch.start` and `watch.stop`: the post-cutover watch, from a runbook.

    - id: watch
      kind: watch.start
      with:
        every: 10m
        for: 24h
        on_call: ["@platform-oncall"]
        alb: new-alb                      # targets by name: an aws-alb target
        log_group: /ecs/api
        signals: [log_volume, edge_504_rate, throughput_floor,
                  {name: probe, probe: {url: "https://203.0.113.7/", host: api.example.com}}]

`watch.start` is mutating (it schedules work that posts to the channel for a day), so it goes
through approval like any change; its rollback stops the watch. The plan checks every signal's
sources against the runbook's targets, so a wrong name is refused before anything is scheduled.
`watch.stop` stops the run's watch (read-only for every platform, so it needs no approval).
The spec itself is documented in `bot.watch.spec`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from bot.steps.base import Plan, PlanRefused, Result, StepError, StepKind, Verification, register
from bot.watch import service
from bot.watch.signals import SignalConfigError, build_signals
from bot.watch.spec import WatchSpec, format_duration


def _store(ctx):
    if ctx.store is None:
        raise StepError("watch steps need the engine's store (ctx.store is not set)")
    return ctx.store


@register
class WatchStart(StepKind):
    name = "watch.start"
    mutating = True
    idempotent = True  # starting the same spec twice is a no-op (service.start)

    Inputs = WatchSpec

    class Outputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        run_id: str
        every_seconds: float
        until: float

    def plan(self, ctx, inputs: WatchSpec) -> Plan:
        try:
            signals = build_signals(inputs, ctx.targets)
        except (SignalConfigError, KeyError) as exc:
            raise PlanRefused(str(exc)) from exc
        table = [["signal", "source", "threshold"]]
        for signal in signals:
            spec = signal.spec
            if signal.name in ("edge_504_rate", "edge_5xx_rate", "caller_log"):
                threshold = f"over {spec.over if spec.over is not None else (1 if signal.name != 'caller_log' else 10):g}"
                threshold += "%" if signal.name != "caller_log" else ""
            elif signal.name == "probe":
                threshold = f"{spec.failures} failed in a row"
            else:
                parts = [f"under {spec.under if spec.under is not None else 50:g}% of baseline"]
                if spec.floor is not None:
                    parts.append(f"under {spec.floor:g}")
                threshold = " or ".join(parts)
            table.append([signal.key, signal.source_text(), threshold])
        warnings = []
        if not inputs.on_call:
            warnings.append("no on_call: alerts will mention nobody")
        return Plan(
            summary=f"watch {len(signals)} signals every {format_duration(inputs.every)} for"
                    f" {format_duration(inputs.for_)}; the first tick is due at once and runs as soon as a"
                    f" watch scheduler is running (the bot's Slack service, or a console following the watch)",
            table=table, warnings=warnings, data={"signals": [s.key for s in signals]},
        )

    def apply(self, ctx, inputs: WatchSpec, plan: Plan) -> Result:
        watch = service.start(_store(ctx), ctx.run_id, inputs, targets=ctx.targets, now=ctx.clock.now(),
                              started_by=ctx.step_id)
        return Result(summary=f"watch scheduled until {format_duration(inputs.for_)} from now",
                      outputs={"run_id": ctx.run_id, "every_seconds": inputs.every, "until": watch["until"]},
                      undo={"run_id": ctx.run_id})

    def verify(self, ctx, inputs, result: Result) -> Verification:
        status = service.status(_store(ctx), ctx.run_id)
        return Verification(ok=status["state"] in ("active", "finished"),
                            summary=f"watch is {status['state']}, next tick due {_when(status.get('next_due'), ctx.clock.now())}")

    def plan_rollback(self, ctx, inputs, result: Result) -> Plan:
        return Plan(summary="stop the watch", data={"run_id": result.undo.get("run_id", ctx.run_id)})

    def rollback(self, ctx, inputs, result: Result) -> Result:
        run_id = result.undo.get("run_id", ctx.run_id)
        stopped = service.stop(_store(ctx), run_id, by=f"rollback of {ctx.step_id}", now=ctx.clock.now())
        return Result(summary="watch stopped" if stopped else "the watch was no longer running")

    def verify_rollback(self, ctx, inputs, result, undo) -> Verification:
        status = service.status(_store(ctx), result.undo.get("run_id", ctx.run_id))
        return Verification(ok=status["state"] != "active", summary=f"watch is {status['state']}")


@register
class WatchStop(StepKind):
    name = "watch.stop"
    mutating = False  # changes nothing on any platform: it only stops the bot's own posting

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")
        run: str | None = None  # default: this run

    def plan(self, ctx, inputs) -> Plan:
        run_id = inputs.run or ctx.run_id
        status = service.status(_store(ctx), run_id)
        return Plan(summary=f"stop the watch of run {run_id} (now {status['state']})",
                    no_op=status["state"] != "active", data={"run_id": run_id})

    def apply(self, ctx, inputs, plan: Plan) -> Result:
        run_id = plan.data["run_id"]
        stopped = service.stop(_store(ctx), run_id, by=ctx.step_id, now=ctx.clock.now())
        return Result(summary="watch stopped" if stopped else "no active watch to stop")


def _when(epoch: float | None, now: float) -> str:
    """A due time people read: `now`, `in 4m (12:04:05 UTC)`; never a raw epoch number."""
    import time

    if epoch is None:
        return "never (the watch is not scheduled)"
    if epoch <= now + 1:
        return "now"
    left = int(epoch - now)
    span = f"{left}s" if left < 120 else f"{left // 60}m"
    return f"in {span} ({time.strftime('%H:%M:%S UTC', time.gmtime(epoch))})"
