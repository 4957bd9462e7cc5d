"""Which IAM permissions a runbook needs: its steps' kinds and targets, and its watch signals.

    from bot.runbook.load import load_runbook
    from bot.steps import iam
    needs = iam.collect(load_runbook("runbooks/aws-ecs-to-do-app.yaml"))
    needs.document()            # {"Version": "2012-10-17", "Statement": [...]}: attach it to the bot's role
    needs.document(read_only=True)   # plans only: what `runbook-bot plan` needs
    needs.uses                  # [Use("switch-dns", "dns.switch", "dns", "Zone", "write"), ...]
    needs.notes                 # what the document cannot say (a zone given by name, Beanstalk's deploy rights)

Nothing is called: the grants come from what each AWS adapter declares next to its calls
(`iam_read`/`iam_write` or `iam_grants(target, access)`, see `bot/platforms/aws/iam.py`), chosen the way
a run chooses its adapters: a step's `TargetRef` fields name a capability, the registry names the
adapter. A mutating step gets its adapters' write actions (apply, rollback) as well as their reads
(plan, verify); a read-only step, or a read-only capability (EnvSource, Health), gets the reads only.
Templated values (`{{ params.env }}`) in resource names become `*`, so one document serves every run.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from bot.platforms import registry
from bot.platforms.capabilities import ENV_SOURCE, HEALTH, METRIC_SOURCE
from bot.runbook.targets import target_model
from bot.steps.base import TargetRef, kinds

if typing.TYPE_CHECKING:
    from bot.platforms.aws.iam import Grant

READ, WRITE = "read", "write"  # as bot.platforms.aws.iam says; imported there on first use (boto3)
READ_ONLY_CAPABILITIES = {ENV_SOURCE, HEALTH, METRIC_SOURCE}


@dataclass(frozen=True)
class Use:
    """One AWS use: a step (or the runbook's `watch`) reaching a target through a capability."""

    step: str
    kind: str
    target: str
    what: str
    access: str


@dataclass
class Needs:
    uses: list[Use] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    extra_notes: list[str] = field(default_factory=list)

    def add(self, use: Use, found: list[Grant]) -> None:
        if found:
            if use not in self.uses:  # an ALB feeding three signals is one use
                self.uses.append(use)
            self.grants.extend(found)

    @property
    def notes(self) -> list[str]:
        return self.notes_for()

    def notes_for(self, *, read_only: bool = False) -> list[str]:
        """What the document cannot say, each with the actions it is about (in first-use order)."""
        by_note: dict[str, list[str]] = {}
        for g in self.grants:
            if read_only and g.access != READ:
                continue
            if g.note and g.action not in by_note.setdefault(g.note, []):
                by_note[g.note].append(g.action)
        return [f"{', '.join(actions)}: {note}" for note, actions in by_note.items()] + self.extra_notes

    def document(self, *, read_only: bool = False) -> dict[str, Any]:
        """The policy; `read_only`: only what plans (and verifications) read, for a `plan`-only identity."""
        from bot.platforms.aws import iam_policy

        return iam_policy.document(g for g in self.grants if g.access == READ or not read_only)


def _target(raw: dict[str, Any]) -> Any:
    """The target model without validation: its fields may still hold templates."""
    model = target_model(str(raw.get("platform", "")))
    return model.model_construct(**raw) if model is not None else types.SimpleNamespace(**raw)


def _models(annotation: Any) -> list[type[BaseModel]]:
    """BaseModel classes inside an annotation (`Model | str`, `list[Model]`, `Annotated[...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def target_refs(model: type[BaseModel], raw: Any) -> list[tuple[TargetRef, str]]:
    """(TargetRef, target name) for every target a step's raw `with:` names through its Inputs fields."""
    if not isinstance(raw, dict):
        return []
    found: list[tuple[TargetRef, str]] = []
    for name, info in model.model_fields.items():
        value = raw.get(info.alias or name, raw.get(name))
        if value is None:
            continue
        refs = [m for m in info.metadata if isinstance(m, TargetRef)]
        if refs:
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str):
                    found.append((refs[0], item.split(".", 1)[0] if refs[0].allow_attribute else item))
            continue
        for sub in _models(info.annotation)[:1]:
            for item in value if isinstance(value, list) else [value]:
                found += target_refs(sub, item)
    return found


def _capability(ref: TargetRef, platform: str) -> str | None:
    names = (ref.capability,) if isinstance(ref.capability, str) else ref.capability
    return next((c for c in names if c and registry.supports(platform, c)), None)


def _strings(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, dict):
        return [s for v in raw.values() for s in _strings(v)]
    if isinstance(raw, list):
        return [s for v in raw for s in _strings(v)]
    return []


def _watch(needs: Needs, step: str, kind: str, raw: Any, targets: dict[str, Any]) -> None:
    """A watch block's signals: ALB and log-group metrics, caller logs (Insights), health verdicts."""
    from bot.platforms.aws import cloudwatch, logs
    from bot.platforms.aws.iam import adapter_grants, grants

    if isinstance(raw, list):
        for item in raw:
            _watch(needs, step, kind, item, targets)
        return
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        if key in ("alb", "log_group") and isinstance(value, str):
            needs.add(Use(step, kind, value, f"watch {key} (CloudWatch metrics)", READ), grants(cloudwatch.IAM_READ))
        elif key == "caller_log" and isinstance(value, dict):
            groups = ", ".join(value.get("log_groups") or [])
            needs.add(Use(step, kind, groups, "watch caller_log (Logs Insights)", READ), grants(logs.IAM_READ))
        elif key == "edge" and isinstance(value, str) and value in targets:
            target = targets[value]
            if registry.supports(target.platform, HEALTH):  # grants only where the adapter declares them
                found = adapter_grants(registry.adapter_class(target.platform, HEALTH), target, READ)
                needs.add(Use(step, kind, value, f"watch edge ({HEALTH})", READ), found)
        else:
            _watch(needs, step, kind, value, targets)


def _step(needs: Needs, step_id: str, kind_name: str, raw: dict[str, Any], targets: dict[str, Any]) -> None:
    """One step's (or one step's own `rollback:`) uses: its target fields, database endpoints, watch."""
    from bot.platforms.aws.iam import adapter_grants
    from bot.platforms.postgres.endpoints import iam_grants as endpoint_grants

    kind = kinds()[kind_name]
    for ref, name in target_refs(kind.Inputs, raw):
        target = targets.get(name)
        capability = _capability(ref, target.platform) if target is not None else None
        if capability is None:
            continue
        access = WRITE if kind.mutating and capability not in READ_ONLY_CAPABILITIES else READ
        # Adapters of other clouds declare no grants: their uses do not show.
        found = adapter_grants(registry.adapter_class(target.platform, capability), target, access)
        needs.add(Use(step_id, kind_name, name, capability, access), found)
    if kind_name.startswith("db."):
        # Database endpoints name targets by plain strings (`source: old`, `{target: old}`).
        for name in dict.fromkeys(s for s in _strings(raw) if s in targets):
            needs.add(Use(step_id, kind_name, name, "database endpoint", READ), endpoint_grants(targets[name]))
    if kind_name == "watch.start":
        _watch(needs, step_id, kind_name, raw, targets)
    elif isinstance(raw.get("watch"), dict):  # a traffic.shift gate
        _watch(needs, step_id, kind_name, raw["watch"], targets)


def collect(loaded: Any) -> Needs:
    """What a loaded runbook (`bot.runbook.load.LoadedRunbook`) needs of AWS."""
    model = loaded.model
    targets = {name: _target(raw) for name, raw in model.targets.items()}
    needs = Needs()
    for step in (*model.steps, *model.rollback):
        _step(needs, step.id, step.kind, step.with_, targets)
        if step.rollback is not None:
            _step(needs, f"{step.id} (rollback)", step.rollback.kind, step.rollback.with_, targets)
    if model.watch:
        _watch(needs, "watch", "watch", model.watch, targets)
    for name in dict.fromkeys(u.target for u in needs.uses):
        role = getattr(targets.get(name), "role_arn", None)
        if role:
            note = (f"target {name} assumes {role}: attach the document to that role, and allow the bot's own "
                    f"identity sts:AssumeRole on it")
            needs.extra_notes.append(note)
    return needs
