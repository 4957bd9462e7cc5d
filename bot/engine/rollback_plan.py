"""Which steps a rollback must undo, with what, and whether the rollback left the world as it was.

    undo, stuck = plan_undo(steps, loaded.model, kinds())
    # undo: rows to insert (key "undo:<step id>", reverse order); stuck: steps that may have
    # changed something that no undo can reach (named in the run's `rollback_incomplete` error)
    state, message = rollback_outcome(steps, loaded.model, kinds())

A step "may have changed something" when it succeeded, or when it failed or was interrupted after
its `apply` started (applied but verification failed, crashed half-way, a person chose rollback
on an interrupted step). Its undo data is what `apply` returned *merged over* what it recorded
write-ahead (`ctx.record_undo`), so a step that died half-way is still undone from its records.
"""

from __future__ import annotations

from typing import Any

from bot.engine.states import RunState, StepState
from bot.runbook.model import Runbook
from bot.steps.base import Result, StepKind

UNDO_PREFIX = "undo:"
ROLLBACK_IDX = 1000


def may_have_changed(row: dict[str, Any], kind: type[StepKind] | None) -> bool:
    if kind is not None and not kind.mutating:
        return False
    if row["state"] == StepState.SUCCEEDED:
        return True
    if row["state"] in (StepState.FAILED, StepState.INTERRUPTED):
        return bool(row.get("apply_started") or row.get("result") or row.get("undo"))
    return False


def _undoes_without_records(row: dict[str, Any], kind: type[StepKind] | None) -> bool:
    """A kind that finds its own half-state (db.copy's incomplete-copy marker) can undo a failed or
    interrupted apply that recorded nothing: its `rollback` receives an empty `Result`."""
    return (kind is not None and kind.undoes_failure
            and row["state"] in (StepState.FAILED, StepState.INTERRUPTED))


def undo_data(row: dict[str, Any]) -> dict[str, Any]:
    """What undoing a step needs: the write-ahead records, overridden by what `apply` returned."""
    return {**(row.get("undo") or {}), **((row.get("result") or {}).get("undo") or {})}


def undo_source(row: dict[str, Any]) -> Result:
    """The `Result` a kind's `plan_rollback`/`rollback` receive for a forward step row."""
    result = dict(row.get("result") or {"summary": row.get("error") or "partly applied before it stopped"})
    result["undo"] = undo_data(row)
    return Result.model_validate(result)


def _why_stuck(row: dict[str, Any], model: Runbook, registry: dict[str, type[StepKind]]) -> str | None:
    """None when an undo can reach this step's change; else why not."""
    try:
        spec = model.step(row["step_id"])
    except KeyError:
        return "it is no longer in the runbook"
    if spec.rollback is not None:
        return None
    kind = registry.get(spec.kind)
    if kind is None or not kind().can_rollback():
        return f"its kind {spec.kind} cannot undo what it does"
    if not undo_data(row) and not _undoes_without_records(row, kind):
        return "it stopped before recording what undoing it needs"
    return None


def plan_undo(steps: list[dict[str, Any]], model: Runbook,
              registry: dict[str, type[StepKind]]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Undo rows to add (newest change first, then the runbook's own `rollback:` steps), and the
    steps that may have changed something no undo can reach."""
    existing = {s["key"] for s in steps}
    undo: list[dict[str, Any]] = []
    stuck: list[tuple[str, str]] = []
    forward = sorted((s for s in steps if s["phase"] == "forward"), key=lambda s: s["idx"], reverse=True)
    for row in forward:
        kind = registry.get(row["kind"])
        if not may_have_changed(row, kind):
            continue
        why = _why_stuck(row, model, registry)
        if why is not None:
            stuck.append((row["key"], why))
            continue
        key = UNDO_PREFIX + row["step_id"]
        if key not in existing:
            spec = model.step(row["step_id"])
            undo.append({"key": key, "step_id": row["step_id"], "kind": (spec.rollback or spec).kind,
                         "phase": "rollback"})
    for spec in model.rollback:
        if spec.id not in existing:
            undo.append({"key": spec.id, "step_id": spec.id, "kind": spec.kind, "phase": "rollback"})
    base = max([s["idx"] for s in steps] + [ROLLBACK_IDX - 1]) + 1
    for i, item in enumerate(undo):
        item["idx"] = base + i
    return undo, stuck


def retry_keys(steps: list[dict[str, Any]]) -> list[str]:
    """Undo steps of an earlier, incomplete rollback that should be tried again."""
    return [s["key"] for s in steps if s["phase"] == "rollback" and s["state"] in (StepState.FAILED,
                                                                                   StepState.SKIPPED)]


def rollback_outcome(steps: list[dict[str, Any]], model: Runbook | None,
                     registry: dict[str, type[StepKind]]) -> tuple[RunState, str | None]:
    """`rolled_back` only when every undo applied and verified and nothing changed is left;
    otherwise `rollback_incomplete` with a message naming what is still changed and what to do."""
    by_key = {s["key"]: s for s in steps}
    problems: list[str] = []
    for row in steps:
        if row["phase"] != "forward":
            continue
        if not may_have_changed(row, registry.get(row["kind"])) or row["state"] == StepState.ROLLED_BACK:
            continue
        undo_row = by_key.get(UNDO_PREFIX + row["step_id"])
        if undo_row is None:
            why = _why_stuck(row, model, registry) if model is not None else "the runbook could not be read"
            problems.append(f"{row['key']} is still changed: {why or 'it was not undone'}")
        else:
            problems.append(f"{row['key']} is still changed: its undo {undo_row['key']} {undo_row['state']}"
                            + (f" ({undo_row['error']})" if undo_row.get("error") else ""))
    for row in steps:
        if row["phase"] == "rollback" and not row["key"].startswith(UNDO_PREFIX) \
                and row["state"] != StepState.SUCCEEDED:
            problems.append(f"rollback step {row['key']} {row['state']}"
                            + (f" ({row['error']})" if row.get("error") else ""))
    if not problems:
        return RunState.ROLLED_BACK, None
    return RunState.ROLLBACK_INCOMPLETE, (
        "ROLLBACK INCOMPLETE: " + "; ".join(problems)
        + ". Check and restore these by hand, or fix the cause and roll back again (the failed undo steps"
          " are tried again).")
