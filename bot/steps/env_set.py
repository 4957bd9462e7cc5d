"""`env.set`: copy variables from the old platform to the new one; rollback undoes exactly that.

    - id: bring-workers
      kind: env.set
      with: {from: old, to: new, names: [WORKERS]}      # or all_missing: true (with optional ignore)

The plan shows names only (which are added, which would be overwritten), never values. A name
that already holds a different value on the destination is refused unless `overwrite: true`.
Values are read again at apply time from the source (they are never in the stored plan).

What `apply` records for rollback, and why (values never reach the store); each platform's `EnvSink`
adapter in `bot.platforms` (`EcsEnv`, `AppEnv`, `HerokuEnv`, ...) owns its part:
- `aws-ecs`: task-definition revisions are immutable and kept by ECS, so the previous revision's
  ARN is all rollback needs: it points the service back at it, exactly as it was.
- `do-app`: the prior spec holds plain GENERAL values, so it is not stored. Recorded instead: the
  names added and where (app-level or the component), and the prior spec *masked* (every value
  replaced by its keyed fingerprint). Rollback removes exactly the added envs from the current
  spec; `verify_rollback` checks that the masked current spec equals the masked prior one, which
  proves the restore exact without ever holding the old values. A value overwritten with
  `overwrite: true` cannot be put back this way; the plan and the rollback plan say so.
- `heroku`: same reasoning: rollback unsets the names `apply` added; overwritten values (only
  with `overwrite: true`) are reported as not restorable.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bot.platforms import registry
from bot.platforms.capabilities import ENV_SINK, ENV_SOURCE
from bot.platforms.envvalue import SourceEnv
from bot.steps import envmatrix
from bot.steps.base import Change, Plan, Result, StepError, StepKind, TargetRef, Verification, register


def _read(ctx: Any, name: str) -> tuple[Any, SourceEnv]:
    target = ctx.target(name)
    try:
        return target, envmatrix.read_source(target)
    except ValueError as exc:
        raise StepError(f"env.set: target {name!r}: {exc}") from None


def _selection(inputs: Any, src: SourceEnv, dst: SourceEnv) -> list[str]:
    if inputs.all_missing:
        return sorted(n for n in src.values if n not in dst.values
                      and not any(fnmatchcase(n, p) for p in inputs.ignore))
    return list(dict.fromkeys(inputs.names or []))


@register
class EnvSet(StepKind):
    name = "env.set"
    mutating = True

    class Inputs(BaseModel):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)

        from_: Annotated[str, TargetRef(capability=ENV_SOURCE)] = Field(alias="from", description="Target to copy values from")
        to: Annotated[str, TargetRef(capability=ENV_SINK)] = Field(description="Target to set them on (a platform with an EnvSink)")
        names: list[str] | None = Field(None, description="Variables to copy")
        all_missing: bool = Field(False, description="Copy every variable the destination lacks")
        ignore: list[str] = Field(default_factory=list, description="Globs left out of all_missing")
        overwrite: bool = Field(False, description="Allow replacing a different existing value")

        @model_validator(mode="after")
        def _one_selection(self) -> EnvSet.Inputs:
            if bool(self.names) == bool(self.all_missing):
                raise ValueError("give either `names` or `all_missing: true` (exactly one)")
            return self

    class Outputs(BaseModel):
        set: list[str]

    # -- plan / apply -------------------------------------------------------------------------

    def _analyse(self, ctx: Any, inputs: Inputs) -> tuple[Any, SourceEnv, SourceEnv, dict[str, Any], list[str]]:
        _, src = _read(ctx, inputs.from_)
        dst_target, dst = _read(ctx, inputs.to)
        blocking: list[str] = []
        sink = registry.adapter(dst_target, ENV_SINK) if registry.supports(dst_target.platform, ENV_SINK) else None
        if sink is None:
            blocking.append(f"{inputs.to} is a {dst_target.platform} target; env.set writes to "
                            f"{', '.join(registry.platforms_with(ENV_SINK))}")
        added, changed, unchanged, secret = [], [], [], []
        for name in _selection(inputs, src, dst):
            value = src.values.get(name)
            if value is None:
                blocking.append(f"{name}: not set on {inputs.from_}")
                continue
            if not value.known:
                blocking.append(f"{name}: its value cannot be read on {inputs.from_} ({value.origin}); set it by hand")
                continue
            if value.secret:
                secret.append(name)
                if sink is not None and sink.plain_only:
                    blocking.append(f"{name}: a secret would land in the task definition's plain environment; "
                                    "create a Secrets Manager secret and reference it instead")
            current = dst.values.get(name)
            if current is None:
                added.append(name)
            elif current.known and current.fingerprint() == value.fingerprint():
                unchanged.append(name)
            else:
                changed.append(name)
                if not inputs.overwrite:
                    blocking.append(f"{name}: already set on {inputs.to} with a different (or unreadable) value; "
                                    "set `overwrite: true` to replace it")
        data = {"added": added, "changed": changed, "unchanged": unchanged, "secret": secret,
                "platform": dst_target.platform, "how": sink.how if sink else dst_target.platform,
                "restores_overwritten": bool(sink and sink.restores_overwritten)}
        return dst_target, src, dst, data, blocking

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        _, _, _, data, blocking = self._analyse(ctx, inputs)
        changes = [Change(action="set", resource=f"{inputs.to}: {n}", before="absent", after=f"as on {inputs.from_}",
                          detail="secret" if n in data["secret"] else None) for n in data["added"]]
        changes += [Change(action="overwrite", resource=f"{inputs.to}: {n}", before="differs",
                           after=f"as on {inputs.from_}") for n in data["changed"]]
        warnings = [f"{n}: already the same on {inputs.to}" for n in data["unchanged"]]
        if data["changed"] and not data["restores_overwritten"]:
            warnings.append("rollback cannot restore the previous values of "
                            f"{', '.join(data['changed'])} (values are never stored); it removes only added names")
        names = data["added"] + data["changed"]
        how = data["how"]
        summary = (f"set {len(names)} variable(s) on {inputs.to} via {how}: {', '.join(names)}" if names
                   else f"nothing to set on {inputs.to}")
        return Plan(summary=summary, changes=changes, warnings=warnings, blocking=blocking, data=data,
                    no_op=not names)

    def apply(self, ctx: Any, inputs: Inputs, plan: Plan) -> Result:
        target, src, dst, data, blocking = self._analyse(ctx, inputs)
        if blocking:
            raise StepError("env.set: " + "; ".join(blocking))
        if (data["added"], data["changed"]) != (plan.data.get("added"), plan.data.get("changed")):
            raise StepError(f"env.set: {inputs.to} changed since the plan (to add now: {data['added']}, "
                            f"to overwrite: {data['changed']}); plan again")
        names = data["added"] + data["changed"]
        if not names:
            return Result(summary="nothing to set", outputs={"set": []}, undo={"platform": data["platform"]})
        values = {n: src.values[n].value or "" for n in names}
        undo: dict[str, Any] = {"platform": target.platform, "added": data["added"], "changed": data["changed"]}
        recorded, summary = registry.adapter(target, ENV_SINK).set(values, set(data["secret"]))
        undo.update(recorded)
        ctx.log(f"env.set: {summary}")
        return Result(summary=summary, outputs={"set": names}, undo=undo)

    def verify(self, ctx: Any, inputs: Inputs, result: Result) -> Verification:
        _, src = _read(ctx, inputs.from_)
        _, dst = _read(ctx, inputs.to)
        bad = []
        for name in result.outputs.get("set", []):
            got, want = dst.values.get(name), src.values.get(name)
            if got is None:
                bad.append(f"{name}: absent on {inputs.to}")
            elif got.known and want is not None and got.fingerprint() != want.fingerprint():
                bad.append(f"{name}: differs from {inputs.from_}")
        return Verification(ok=not bad, summary="; ".join(bad) or f"{inputs.to} has every variable set")

    # -- rollback -------------------------------------------------------------------------------

    def _sink(self, ctx: Any, inputs: Inputs, undo: dict[str, Any]) -> Any:
        target = ctx.target(inputs.to)
        if undo.get("platform", target.platform) != target.platform:
            raise StepError(f"env.set: {inputs.to} was {undo['platform']} when the step ran and is "
                            f"{target.platform} now; undo it by hand")
        return registry.adapter(target, ENV_SINK)

    def plan_rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Plan:
        undo = result.undo
        sink = self._sink(ctx, inputs, undo)
        warnings = []
        summary = sink.plan_undo(undo, inputs.to)
        if undo.get("changed") and not sink.restores_overwritten:
            warnings.append(f"previous values of {', '.join(undo['changed'])} are not restorable "
                            "(never stored); they keep the copied value")
        return Plan(summary=summary, warnings=warnings, data={})

    def rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Result:
        return Result(summary=self._sink(ctx, inputs, result.undo).undo(result.undo))

    def verify_rollback(self, ctx: Any, inputs: Inputs, result: Result, undo_result: Result) -> Verification:
        undo = result.undo
        checked = self._sink(ctx, inputs, undo).verify_undo(undo)
        if checked is not None:
            return Verification(ok=checked[0], summary=checked[1])
        _, dst = _read(ctx, inputs.to)
        left = [n for n in undo.get("added", []) if n in dst.values]
        return Verification(ok=not left, summary=f"still set: {', '.join(left)}" if left else "added names are gone")
