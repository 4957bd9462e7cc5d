"""`env.set`: copy variables from the old platform to the new one; rollback undoes exactly that.

    - id: bring-workers
      kind: env.set
      with: {from: old, to: new, names: [WORKERS]}      # or all_missing: true (with optional ignore)

The plan shows names only (which are added, which would be overwritten), never values. A name
that already holds a different value on the destination is refused unless `overwrite: true`.
Values are read again at apply time from the source (they are never in the stored plan).

What `apply` records for rollback, and why (values never reach the store):
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

from bot.platforms.envvalue import SourceEnv
from bot.steps import envmatrix
from bot.steps.base import Change, Plan, Result, StepError, StepKind, TargetRef, Verification, register

WRITABLE = ("aws-ecs", "do-app", "heroku")


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

        from_: Annotated[str, TargetRef(platforms=("aws-ecs", "do-app", "heroku", "fly", "file"))] = Field(alias="from", description="Target to copy values from")
        to: Annotated[str, TargetRef(platforms=("aws-ecs", "do-app", "heroku"))] = Field(description="Target to set them on (aws-ecs, do-app or heroku)")
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
        if dst_target.platform not in WRITABLE:
            blocking.append(f"{inputs.to} is a {dst_target.platform} target; env.set writes to {', '.join(WRITABLE)}")
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
                if dst_target.platform == "aws-ecs":
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
                "platform": dst_target.platform}
        return dst_target, src, dst, data, blocking

    def plan(self, ctx: Any, inputs: Inputs) -> Plan:
        _, _, _, data, blocking = self._analyse(ctx, inputs)
        changes = [Change(action="set", resource=f"{inputs.to}: {n}", before="absent", after=f"as on {inputs.from_}",
                          detail="secret" if n in data["secret"] else None) for n in data["added"]]
        changes += [Change(action="overwrite", resource=f"{inputs.to}: {n}", before="differs",
                           after=f"as on {inputs.from_}") for n in data["changed"]]
        warnings = [f"{n}: already the same on {inputs.to}" for n in data["unchanged"]]
        if data["changed"] and data["platform"] in ("do-app", "heroku"):
            warnings.append("rollback cannot restore the previous values of "
                            f"{', '.join(data['changed'])} (values are never stored); it removes only added names")
        names = data["added"] + data["changed"]
        how = {"aws-ecs": "a new task definition revision and update_service", "do-app": "an app spec update",
               "heroku": "a config-var update"}.get(data["platform"], data["platform"])
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
        if target.platform == "aws-ecs":
            from bot.platforms.aws import ecs

            previous, new = ecs.set_env(target, values)
            undo.update(previous_task_definition=previous, task_definition=new)
            summary = f"registered {new.rsplit('/', 1)[-1]} with {', '.join(names)}; service updated"
        elif target.platform == "do-app":
            from bot.platforms.digitalocean import apps

            change = apps.add_envs(target, {n: (values[n], n in data["secret"]) for n in names})
            undo.update(app_id=change.app_id, location=change.location, created_env_list=change.created_env_list,
                        prior_spec_masked=apps.masked_spec(change.prior_spec))
            summary = f"app spec updated ({change.location} envs): {', '.join(names)}"
        else:
            from bot.platforms.heroku import config_vars

            config_vars.set_vars(target, values)
            summary = f"config vars set: {', '.join(names)}"
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

    def plan_rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Plan:
        undo = result.undo
        warnings = []
        if undo.get("platform") == "aws-ecs":
            summary = f"point {inputs.to} back at {undo.get('previous_task_definition')}"
        else:
            summary = f"remove {', '.join(undo.get('added', [])) or 'nothing'} from {inputs.to}"
            if undo.get("changed"):
                warnings.append(f"previous values of {', '.join(undo['changed'])} are not restorable "
                                "(never stored); they keep the copied value")
        return Plan(summary=summary, warnings=warnings, data={})

    def rollback(self, ctx: Any, inputs: Inputs, result: Result) -> Result:
        undo = result.undo
        target = ctx.target(inputs.to)
        platform = undo.get("platform")
        if platform == "aws-ecs" and undo.get("previous_task_definition"):
            from bot.platforms.aws import ecs

            ecs.use_task_definition(target, undo["previous_task_definition"])
            return Result(summary=f"service back on {undo['previous_task_definition'].rsplit('/', 1)[-1]}")
        if platform == "do-app" and undo.get("added"):
            from bot.platforms.digitalocean import apps

            apps.remove_envs(target, undo["location"], undo["added"], drop_empty_list=undo.get("created_env_list", False))
            return Result(summary=f"removed {', '.join(undo['added'])} from the app spec")
        if platform == "heroku" and undo.get("added"):
            from bot.platforms.heroku import config_vars

            config_vars.unset_vars(target, undo["added"])
            return Result(summary=f"unset {', '.join(undo['added'])}")
        return Result(summary="nothing to undo")

    def verify_rollback(self, ctx: Any, inputs: Inputs, result: Result, undo_result: Result) -> Verification:
        undo = result.undo
        target = ctx.target(inputs.to)
        platform = undo.get("platform")
        if platform == "aws-ecs" and undo.get("previous_task_definition"):
            from bot.platforms.aws import ecs

            current = ecs.service_task_definition(target)
            ok = current == undo["previous_task_definition"]
            return Verification(ok=ok, summary=f"service runs {current.rsplit('/', 1)[-1]}")
        if platform == "do-app" and "prior_spec_masked" in undo:
            from bot.platforms.digitalocean import apps

            current = apps.masked_spec(apps.AppsApi().find(target.app).get("spec") or {})
            ok = current == undo["prior_spec_masked"]
            summary = ("app spec equals the spec before env.set (compared by fingerprints)" if ok
                       else "app spec differs from the spec before env.set")
            return Verification(ok=ok, summary=summary)
        _, dst = _read(ctx, inputs.to)
        left = [n for n in undo.get("added", []) if n in dst.values]
        return Verification(ok=not left, summary=f"still set: {', '.join(left)}" if left else "added names are gone")
