"""`app.maintenance`: turn maintenance mode on or off; rollback puts it back as it was.

    - id: maintenance-on
      kind: app.maintenance
      with: {target: old, enabled: true}                        # Heroku: the platform's maintenance mode

    - id: maintenance-flag
      kind: app.maintenance
      with: {target: new, enabled: true, mode: env}             # App Platform / Heroku: MAINTENANCE=1 in the env

    - id: maintenance-page
      kind: app.maintenance
      with: {target: old, mode: process, process_target: maint, process_count: 1}   # scale a page server

Modes (`auto` picks the first that fits the target's platform):
- `platform`: Heroku's own maintenance mode (`PATCH /apps/{app} {"maintenance": true}`).
- `env`: an environment flag the app reads (`MAINTENANCE=1`), through the platform's env mechanism
  (Heroku config vars, App Platform app spec). ECS would need a new task definition revision, which
  is a deploy, not a switch: use `process` there.
- `process`: scale a process or service that serves the maintenance page (`service.scale`'s adapters).

Seed 002 copied its database inside a maintenance window; this is that window's switch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from bot import secrets
from bot.platforms import registry
from bot.platforms.capabilities import ENV_SINK, MAINTENANCE, SCALER
from bot.runbook.model import Duration
from bot.steps.base import Change, Plan, PlanRefused, Result, StepKind, TargetRef, Verification, register
from bot.steps.service_scale import scaler_for

Mode = Literal["auto", "platform", "env", "process"]


@register
class AppMaintenance(StepKind):
    name = "app.maintenance"
    mutating = True
    idempotent = True

    class Inputs(BaseModel, extra="forbid"):
        target: Annotated[str, TargetRef(capability=(MAINTENANCE, SCALER))] = Field(description="The app")
        # Not `on`: YAML 1.1 reads an unquoted `on:` key as the boolean true.
        enabled: bool = Field(True, description="true: maintenance on; false: off")
        mode: Mode = "auto"
        env_var: str = Field("MAINTENANCE", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
        env_value: str = "1"
        process_target: Annotated[str | None, TargetRef(capability=SCALER)] = Field(
            None, description="mode process: the service serving the maintenance page (default: target)")
        process_type: str = Field("maintenance", description="mode process on Heroku: the formation to scale")
        process_count: int = Field(1, ge=1, description="mode process: instances while maintenance is on")
        timeout: Duration = Field(600, description="mode process: how long to wait for the page server")

    class Outputs(BaseModel):
        mode: str
        enabled: bool

    # -- the three switches -------------------------------------------------------------------------

    def _mode(self, ctx: Any, inputs: Any) -> str:
        target = ctx.target(inputs.target)
        platform = target.platform
        own = registry.adapter(target, MAINTENANCE).modes if registry.supports(platform, MAINTENANCE) else ()
        mode = inputs.mode
        if mode == "auto":
            mode = own[0] if own else "process"
        if mode == "platform" and "platform" not in own:
            raise PlanRefused(f"{platform} has no maintenance mode of its own: use `mode: env` (App Platform) or "
                              "`mode: process` with a service that serves the maintenance page")
        if mode == "env" and "env" not in own:
            how = registry.adapter(target, ENV_SINK).how if registry.supports(platform, ENV_SINK) else "a deploy"
            raise PlanRefused(f"setting {inputs.env_var} on {platform} means {how} (a deploy): use "
                              "`mode: process` with a `process_target` that serves the maintenance page")
        if mode == "process" and not own and not inputs.process_target:
            raise PlanRefused(f"{scaler_for(target).product} has no maintenance switch: give `process_target`, a service that serves "
                              "the maintenance page, to scale up")
        return mode

    def _read(self, ctx: Any, inputs: Any, mode: str) -> Any:
        """The current state: a bool (platform), a fingerprint or None (env), a count (process)."""
        if mode == "process":
            return self._scaler(ctx, inputs).count()
        return registry.adapter(ctx.target(inputs.target), MAINTENANCE).read(mode, inputs.env_var)

    def _write(self, ctx: Any, inputs: Any, mode: str, state: Any) -> None:
        if mode == "process":
            scaler = self._scaler(ctx, inputs)
            scaler.set(int(state))
            scaler.wait_healthy(ctx, int(state), inputs.timeout)
            return
        registry.adapter(ctx.target(inputs.target), MAINTENANCE).write(mode, inputs.env_var, bool(state),
                                                                        inputs.env_value)

    def _scaler(self, ctx: Any, inputs: Any) -> Any:
        return scaler_for(ctx.target(inputs.process_target or inputs.target), inputs.process_type)

    def _wanted(self, inputs: Any, mode: str) -> Any:
        if mode == "platform":
            return inputs.enabled
        if mode == "env":
            return secrets.fingerprint(inputs.env_value) if inputs.enabled else None
        return inputs.process_count if inputs.enabled else 0

    def _describe(self, inputs: Any, mode: str, state: Any) -> str:
        if mode == "platform":
            return "on" if state else "off"
        if mode == "env":
            if state is None:
                return f"{inputs.env_var} unset"
            return f"{inputs.env_var}={inputs.env_value}" if state == secrets.fingerprint(inputs.env_value) \
                else f"{inputs.env_var} set (fingerprint {state})"
        return f"{state} instance(s)"

    # -- the contract ---------------------------------------------------------------------------------

    def plan(self, ctx: Any, inputs: Any) -> Plan:
        mode = self._mode(ctx, inputs)
        now, wanted = self._read(ctx, inputs, mode), self._wanted(inputs, mode)
        if mode == "env" and now is not None and now != secrets.fingerprint(inputs.env_value):
            # Turning it on would overwrite, turning it off would lose, a value we could not restore.
            raise PlanRefused(f"{inputs.env_var} is already set to another value (fingerprint {now}); "
                              f"pick another `env_var` or set `env_value` to match it")
        what = "on" if inputs.enabled else "off"
        label = inputs.process_target or inputs.target
        return Plan(summary=f"Maintenance {what} for {label} ({mode}): {self._describe(inputs, mode, now)} -> "
                            f"{self._describe(inputs, mode, wanted)}",
                    changes=[Change(action="set", resource=f"{label} maintenance ({mode})",
                                    before=self._describe(inputs, mode, now),
                                    after=self._describe(inputs, mode, wanted))],
                    no_op=now == wanted, data={"mode": mode})

    def apply(self, ctx: Any, inputs: Any, plan: Plan) -> Result:
        mode = plan.data["mode"]
        before = self._read(ctx, inputs, mode)
        wanted = self._wanted(inputs, mode)
        if before != wanted:
            self._write(ctx, inputs, mode, inputs.enabled if mode != "process" else wanted)
        # For env mode `before` is a fingerprint or None: enough to restore, since the plan refuses
        # any value other than `env_value`. The value itself is never stored.
        return Result(summary=f"maintenance {'on' if inputs.enabled else 'off'} ({mode})",
                      outputs={"mode": mode, "enabled": inputs.enabled},
                      undo={"mode": mode, "before": before})

    def verify(self, ctx: Any, inputs: Any, result: Result) -> Verification:
        mode = result.undo["mode"]
        now, wanted = self._read(ctx, inputs, mode), self._wanted(inputs, mode)
        return Verification(ok=now == wanted, summary=f"maintenance is {self._describe(inputs, mode, now)}")

    def plan_rollback(self, ctx: Any, inputs: Any, result: Result) -> Plan:
        mode, before = result.undo["mode"], result.undo["before"]
        return Plan(summary=f"Maintenance back to {self._describe(inputs, mode, before)} ({mode}).")

    def rollback(self, ctx: Any, inputs: Any, result: Result) -> Result:
        mode, before = result.undo["mode"], result.undo["before"]
        if mode == "platform":
            state: Any = bool(before)
        elif mode == "env":
            state = before is not None
        else:
            state = int(before)
        if self._read(ctx, inputs, mode) != before:
            self._write(ctx, inputs, mode, state)
        return Result(summary=f"maintenance back to {self._describe(inputs, mode, before)}")

    def verify_rollback(self, ctx: Any, inputs: Any, result: Result, undo: Result) -> Verification:
        mode, before = result.undo["mode"], result.undo["before"]
        now = self._read(ctx, inputs, mode)
        return Verification(ok=now == before, summary=f"maintenance is {self._describe(inputs, mode, now)}")
