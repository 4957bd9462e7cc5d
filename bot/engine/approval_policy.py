"""Who must approve a step row, including a rollback approved as one decision.

    eff = effective_policy(model, row, rows, registry, round_started)
    eff is None                      # runs without approval (read-only, or covered by the rollback's one approval)
    eff.allows(user, matches)        # an approver of at least one covered step may take part
    eff.satisfied(names, matches)    # the approvals meet every folded policy (each its own min)
    eff.policy                       # the strictest: max min, every confirm text, shortest expiry, no self-approval
                                     #   unless every policy allows it
    eff.covers                       # the undo steps this one approval approves (one card lists them all)

With `rollback_approval: once` (the default), the first undo step of a rollback round carries the
approval for the whole reverse plan; the undo steps after it run once an earlier undo step of the
same round was approved. `per_step` keeps one approval per undo step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.runbook.model import ApprovalPolicy, RollbackSpec, Runbook, Step
from bot.steps.base import StepKind

UNDO_PREFIX = "undo:"


@dataclass
class EffectivePolicy:
    policy: ApprovalPolicy
    groups: list[list[str]] = field(default_factory=list)  # approvers of each folded policy
    mins: list[int] = field(default_factory=list)  # and how many of each it needs
    covers: list[str] = field(default_factory=list)

    def allows(self, user: str, matches: Callable[[str, str], bool]) -> bool:
        """An approver of at least one of the steps this approval covers."""
        return any(matches(user, a) for group in (self.groups or [self.policy.approvers]) for a in group)

    def satisfied(self, approvers: list[str], matches: Callable[[str, str], bool]) -> bool:
        """The approvals so far meet every folded policy: each has its `min` from its own approvers."""
        if len(approvers) < self.policy.min:
            return False
        for group, need in zip(self.groups or [self.policy.approvers], self.mins or [self.policy.min]):
            if sum(1 for user in approvers if any(matches(user, a) for a in group)) < need:
                return False
        return True

    def missing(self, approvers: list[str], matches: Callable[[str, str], bool]) -> int:
        """How many more approvals are needed at least."""
        short = [need - sum(1 for u in approvers if any(matches(u, a) for a in group))
                 for group, need in zip(self.groups or [self.policy.approvers], self.mins or [self.policy.min])]
        return max([self.policy.min - len(approvers), *short, 1])


_INDEX: dict[int, tuple[Runbook, dict[str, Step]]] = {}


def step_of(model: Runbook, step_id: str) -> Step:
    """`model.step(step_id)` by a dict built once per loaded runbook (the model's own is a scan)."""
    cached = _INDEX.get(id(model))
    if cached is None or cached[0] is not model:
        cached = (model, {s.id: s for s in (*model.rollback, *model.steps)})
        _INDEX[id(model)] = cached
    try:
        return cached[1][step_id]
    except KeyError:
        raise KeyError(step_id) from None


def spec_for(model: Runbook, row: dict[str, Any]) -> Step | RollbackSpec | None:
    try:
        step = step_of(model, row["step_id"])
    except KeyError:
        return None
    if row["key"].startswith(UNDO_PREFIX):
        return step.rollback if step.rollback is not None else step
    return step


def _own(model: Runbook, row: dict[str, Any], registry: dict[str, type[StepKind]]) -> ApprovalPolicy | None:
    spec = spec_for(model, row)
    if spec is None:
        return None
    kind = registry.get(spec.kind)
    return model.policy_for(spec, mutating=bool(kind and kind.mutating))


def strictest(policies: list[ApprovalPolicy]) -> ApprovalPolicy:
    """One policy at least as strict as each: max min, all confirm texts, shortest expiry."""
    texts = list(dict.fromkeys(p.confirm_text for p in policies if p.confirm_text))
    expiries = [p.expires_after for p in policies if p.expires_after]
    approvers = sorted({a for p in policies for a in p.approvers})
    return ApprovalPolicy.model_construct(approvers=approvers, min=max(p.min for p in policies),
                                          allow_self=all(p.allow_self for p in policies),
                                          confirm_text=" ".join(texts) or None,
                                          expires_after=min(expiries) if expiries else None)


def effective_policy(model: Runbook, row: dict[str, Any], rows: list[dict[str, Any]],
                     registry: dict[str, type[StepKind]], round_started: float | None) -> EffectivePolicy | None:
    own = _own(model, row, registry)
    if row["phase"] != "rollback" or model.rollback_approval == "per_step":
        return EffectivePolicy(own, [own.approvers], [own.min]) if own is not None else None
    this_round = [r for r in rows if r["phase"] == "rollback" and r["idx"] <= row["idx"]
                  and (r["state"] in ("pending", "planned", "awaiting_approval")
                       or (r["started_at"] or 0) >= (round_started or 0))]
    earlier = [r for r in this_round if r["idx"] < row["idx"]]
    if any(r["state"] in ("applying", "verifying", "succeeded") for r in earlier):
        return None  # approved with the whole reverse plan
    later = [r for r in rows if r["phase"] == "rollback" and r["idx"] >= row["idx"]
             and (r["key"] == row["key"] or r["state"] in ("pending", "planned", "awaiting_approval"))]
    policies = [(r["key"], p) for r in later if (p := _own(model, r, registry)) is not None]
    if not policies:
        return None
    return EffectivePolicy(strictest([p for _, p in policies]), [p.approvers for _, p in policies],
                           [p.min for _, p in policies], [r["key"] for r in later])
