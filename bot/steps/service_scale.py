"""`service.scale`: set how many instances a service runs (warm standby: scale to zero, never delete).

    - id: standby-old
      kind: service.scale
      with: {target: old, count: 0}            # any platform with a Scaler (bot.platforms.registry)

`apply` records the count it found; `rollback` puts it back and waits until the service is healthy
again (ECS `services_stable`, App Platform's deployment ACTIVE, Heroku dynos `up`). There is no
kind that deletes a service or an app: keeping the old side whole is what makes rollback one click.

`lint_scale_before_watch(runbook)` warns when a runbook scales something to zero before its watch
window has passed (the loader calls it in its lint pass).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from bot.platforms import registry
from bot.platforms.capabilities import SCALER
from bot.runbook.model import Duration, parse_duration
from bot.steps.base import Change, Plan, PlanRefused, Result, StepKind, TargetRef, Verification, register


def scaler_for(target: Any, process_type: str = "web") -> Any:
    """The target's `Scaler` adapter (the loader already refused targets without one)."""
    if not registry.supports(target.platform, SCALER):
        raise PlanRefused(f"service.scale cannot scale a {target.platform} target "
                          f"(use one of {', '.join(registry.platforms_with(SCALER))})")
    return registry.adapter(target, SCALER, process_type=process_type)


@register
class ServiceScale(StepKind):
    name = "service.scale"
    mutating = True
    idempotent = True

    class Inputs(BaseModel, extra="forbid"):
        target: Annotated[str, TargetRef(capability=SCALER)] = Field(description="The service to scale")
        count: int = Field(ge=0, description="Instances to run (0 = warm standby)")
        process_type: str = Field("web", description="Heroku: the formation (process type) to scale")
        wait: bool = Field(True, description="Wait until the service is stable at the new count")
        timeout: Duration = Field(600, description="How long to wait for the service to settle")

    class Outputs(BaseModel):
        old_count: int
        new_count: int

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        old = scaler.count()
        warnings = []
        if inputs.count < scaler.min_count:
            raise PlanRefused(f"{scaler.label}: {scaler.refuse_below}")
        if inputs.count == 0 and old > 0:
            warnings.append(f"{scaler.label} goes to zero as a warm standby (kept, not deleted); "
                            f"rollback brings back {old}")
        return Plan(summary=f"Scale {scaler.label} from {old} to {inputs.count}",
                    changes=[Change(action="scale", resource=scaler.label, before=str(old), after=str(inputs.count))],
                    warnings=warnings, no_op=old == inputs.count, data={"old_count": old})

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        old = scaler.count()  # what is there now is what rollback must restore
        if old != plan.data["old_count"]:
            ctx.log(f"{scaler.label} ran {old}, not {plan.data['old_count']} as planned; recording {old} for rollback")
        scaler.set(inputs.count)
        if inputs.wait:
            scaler.wait_healthy(ctx, inputs.count, inputs.timeout)
        return Result(summary=f"{scaler.label}: {old} -> {inputs.count}",
                      outputs={"old_count": old, "new_count": inputs.count},
                      undo={"old_count": old, "platform": scaler.target.platform, "process_type": inputs.process_type})

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        now = scaler.count()
        return Verification(ok=now == inputs.count, summary=f"{scaler.label} runs {now} (wanted {inputs.count})",
                            details={"count": now})

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        old = result.undo["old_count"]
        return Plan(summary=f"Scale {scaler.label} back to {old} and wait until healthy.",
                    changes=[Change(action="scale", resource=scaler.label, before=str(inputs.count), after=str(old))])

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        old = int(result.undo["old_count"])
        now = scaler.count()
        scaler.set(old)
        scaler.wait_healthy(ctx, old, inputs.timeout)  # a rollback always waits: "back" means serving
        return Result(summary=f"{scaler.label}: {now} -> {old} (restored)", undo={"old_count": now})

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification:
        scaler = scaler_for(ctx.target(inputs.target), inputs.process_type)
        now, old = scaler.count(), int(result.undo["old_count"])
        return Verification(ok=now == old, summary=f"{scaler.label} runs {now} (restored count {old})",
                            details={"count": now})


# -- lint ---------------------------------------------------------------------------------------------

WAIT_KINDS = ("wait", "wait.for", "watch.wait", "watch.until_done")


def _as_int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _seconds(value: Any) -> float | None:
    try:
        return parse_duration(value)
    except ValueError:
        return None


def lint_scale_before_watch(runbook_model: Any) -> list[str]:
    """Warn when a `service.scale` to 0 runs before a watch window has passed.

    The watch (`watch.start`) is how a cutover proves itself; the old side is the rollback. So
    scaling it to zero is fine only after a `watch.start` *and* a wait at least as long as that
    watch's window (`for:`), e.g. a `wait` step of 24h or a step waiting for the watch to end.
    """
    warnings: list[str] = []
    watch_for: float | None = None  # the window of the latest watch.start seen
    waited = 0.0  # time waited since that watch.start
    top_watch = getattr(runbook_model, "watch", None)
    for step in runbook_model.steps:
        raw = getattr(step, "with_", None) or {}
        if step.kind == "watch.start":
            # A watch with no (readable) `for:` is open-ended: only waiting for it to end passes it.
            watch_for = (_seconds(raw.get("for")) if raw.get("for") is not None else None) or float("inf")
            waited = 0.0
            continue
        if step.kind in WAIT_KINDS:
            if step.kind in ("watch.wait", "watch.until_done"):
                waited = float("inf")
            else:
                length = next((_seconds(raw[k]) for k in ("for", "duration", "seconds") if k in raw), None)
                waited += length or 0.0
            continue
        if step.kind != "service.scale" or _as_int(raw.get("count")) != 0:
            continue
        target = raw.get("target", "?")
        if watch_for is None:
            has_watch = top_watch or any(s.kind == "watch.start" for s in runbook_model.steps)
            if has_watch:
                warnings.append(f"step {step.id}: scales {target} to zero before the watch window has started; "
                                "move it after watch.start and a wait as long as the window")
            else:
                warnings.append(f"step {step.id}: scales {target} to zero but the runbook has no watch window; "
                                "keep the old side warm until a watch (watch.start) has passed")
        elif waited < watch_for:
            warnings.append(f"step {step.id}: scales {target} to zero {_fmt(waited)} into a {_fmt(watch_for)} watch "
                            "window; wait for the window to pass (a wait step or watch.wait) before the standby")
    return warnings


def _fmt(seconds: float) -> str:
    if seconds == float("inf"):
        return "open-ended"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    if seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


# The loader runs every registered lint rule on each runbook it loads (warnings, not errors).
from bot.runbook.load import lint_rule  # noqa: E402  (after the definition it registers)

lint_rule(lint_scale_before_watch)
