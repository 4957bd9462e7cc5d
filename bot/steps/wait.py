"""`wait`: pause the run for a duration, or until a moment (e.g. the old TTL has expired).

    - id: let-caches-expire
      kind: wait
      with: {seconds: 300}            # or {duration: 5m}, or {until: "2026-11-22T18:00:00Z"}

Read-only (no approval needed). The wait is sliced so an abort is noticed within a fraction of
a second, and it reports progress, so a long wait shows as a moving bar rather than a silent run.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, model_validator

from bot.runbook.model import Duration
from bot.steps.base import Plan, Result, StepError, StepKind, register


@register
class Wait(StepKind):
    name = "wait"
    mutating = False
    idempotent = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid")

        seconds: Duration | None = None
        duration: Duration | None = None
        until: str | None = None

        @model_validator(mode="after")
        def _one_of(self):
            given = [n for n in ("seconds", "duration", "until") if getattr(self, n) is not None]
            if len(given) != 1:
                raise ValueError("give exactly one of seconds, duration or until")
            if self.until is not None:
                try:
                    _parse_until(self.until)
                except ValueError as exc:
                    raise ValueError(str(exc)) from None
            return self

    class Outputs(BaseModel):
        waited_seconds: float

    def _target_time(self, ctx, inputs) -> float:
        if inputs.until is not None:
            return _parse_until(inputs.until)
        return ctx.clock.now() + float(inputs.seconds if inputs.seconds is not None else inputs.duration)

    def plan(self, ctx, inputs) -> Plan:
        if inputs.until is not None:
            left = max(0.0, _parse_until(inputs.until) - ctx.clock.now())
            return Plan(summary=f"wait until {inputs.until} ({left:.0f}s from now)", data={"until": inputs.until})
        seconds = float(inputs.seconds if inputs.seconds is not None else inputs.duration)
        return Plan(summary=f"wait {_human(seconds)}", data={"seconds": seconds})

    def apply(self, ctx, inputs, plan) -> Result:
        started = ctx.clock.now()
        end = self._target_time(ctx, inputs)
        total = max(0.0, end - started)
        if ctx.deadline is not None and end > ctx.deadline:
            raise StepError(f"the wait ({_human(total)}) is longer than the step's timeout")
        while True:
            ctx.check_cancelled()
            now = ctx.clock.now()
            if now >= end:
                break
            if total >= 2:
                ctx.progress(now - started, total, f"{_human(end - now)} left", unit="s")
            ctx.clock.sleep(min(end - now, 0.2))
        waited = ctx.clock.now() - started
        return Result(summary=f"waited {_human(waited)}", outputs={"waited_seconds": round(waited, 3)})


def _parse_until(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"until: {text!r} is not an ISO 8601 time like 2026-11-22T18:00:00Z") from None
    if moment.tzinfo is None:
        raise ValueError(f"until: {text!r} needs a time zone (e.g. Z or +00:00)")
    return moment.timestamp()


def _human(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s" if seconds >= 1 or seconds == 0 else f"{seconds:.2f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
