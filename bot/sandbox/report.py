"""The rehearsal report: what each step planned and took, what was caught, fixed and decided.

Built from the store's view of the run (plans, results, errors, approvals, the watch's samples) and
the world's record sets before and after; `ok` says whether the rehearsal showed what it must:

    report = build_report(view, store, world, journal, record_before)
    print_report(console, report)      # the table, the findings, "changed nothing outside the world"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table


@dataclass
class Report:
    rows: list[list[str]]
    findings: list[tuple[str, bool, str]]  # (what must show, shown?, evidence)
    decisions: list[str]
    window: str
    ok: bool = False
    notes: list[str] = field(default_factory=list)


def _human(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _planned(step: Any) -> float | None:
    data = (step.plan or {}).get("data") or {}
    return data.get("seconds") if isinstance(data.get("seconds"), (int, float)) else None


def _text(step: Any) -> str:
    parts = [step.error or "", (step.result or {}).get("summary", ""), (step.plan or {}).get("summary", ""),
             json.dumps((step.plan or {}).get("data") or {}, default=str), json.dumps(step.result or {}, default=str)]
    return " ".join(p for p in parts if p)


def build_report(view: Any, store: Any, world: Any, journal: Any, record_before: list[dict[str, Any]]) -> Report:
    steps = {s.key: s for s in view.steps}
    rows = []
    for s in view.steps:
        took = (s.finished_at - s.started_at) if s.finished_at and s.started_at else None
        outcome = escape((s.error or (s.result or {}).get("summary") or (s.plan or {}).get("summary") or "")[:90])
        rows.append([s.key, s.state, _human(_planned(s)), _human(took), outcome])

    if view.runbook != "aws-ecs-to-do-app":  # the checklist below is seed 000's; others just report
        return Report(rows=rows, findings=[], decisions=list(journal.decisions), ok=view.state == "succeeded",
                      window=f"run {view.state}")

    def has(key: str) -> Any:
        return steps.get(key)

    findings: list[tuple[str, bool, str]] = []
    first, again, carried = has("env-matrix"), has("env-matrix-again"), has("bring-env-over")
    workers_caught = bool(first and first.state == "failed" and "WORKERS" in _text(first))
    workers_fixed = bool(carried and carried.state in ("succeeded", "rolled_back") and "WORKERS" in _text(carried)
                         and again and again.state in ("succeeded", "rolled_back"))
    findings.append(("WORKERS caught by the env matrix", workers_caught, (first.error or "")[:120] if first else "no step"))
    findings.append(("WORKERS carried over (env.set), the matrix then clean", workers_fixed,
                     ((carried.result or {}).get("summary", "") if carried else "")[:120]))
    model, model_again = has("model-synced"), has("model-synced-again")
    findings.append(("model object caught missing in Spaces", bool(model and model.state == "failed"
                                                                   and "latest.bin" in _text(model)),
                     (model.error or "")[:120] if model else "no step"))
    findings.append(("model object present after the operator's copy",
                     bool(model_again and model_again.state in ("succeeded", "rolled_back")),
                     ((model_again.result or {}).get("summary", "") if model_again else "")[:120]))
    copy = has("copy-db")
    copy_text = _text(copy) if copy else ""
    plan_pooler = ((copy.plan or {}).get("data") or {}).get("pooler", {}) if copy else {}
    app_pooled = bool(plan_pooler.get("app", {}).get("detected"))
    copy_direct = bool(plan_pooler) and not any(plan_pooler.get(side, {}).get("detected") for side in ("source", "target"))
    findings.append(("pooler caught on the app's path (refused for the copy), direct endpoint used",
                     app_pooled and copy_direct and copy.state in ("succeeded", "rolled_back"),
                     _pooler_evidence(copy, world)))
    findings.append(("rows and checksums verified", bool(copy and copy.verification and copy.verification.get("ok", True)
                                                        and copy.state in ("succeeded", "rolled_back")),
                     ((copy.verification or {}).get("summary", "") if copy else "")[:120]))
    ttl, switch = has("lower-ttl"), has("switch-dns")
    order_ok = bool(ttl and switch and ttl.finished_at and switch.started_at and ttl.finished_at <= switch.started_at)
    findings.append(("TTL lowered (3600 -> 60), then the switch", order_ok,
                     f"{(ttl.result or {}).get('summary', '') if ttl else ''} / "
                     f"{(switch.result or {}).get('summary', '') if switch else ''}"[:160]))
    watch = has("watch")
    wedge = world.timeline.wedge_at
    within = journal.alert_at is not None and 0 <= journal.alert_at - wedge <= 600 + 60
    findings.append(("wedge alert within one watch tick", within,
                     f"wedge at +{_human(wedge - world.timeline.start)}, alert at "
                     f"+{_human((journal.alert_at or wedge) - world.timeline.start)}" if journal.alert_at else
                     "no alert"))
    after = world.record_sets()
    findings.append(("rollback restored the record set exactly", after == record_before and view.state == "rolled_back",
                     f"before {_sets(record_before)}; after {_sets(after)}"))
    switch_undo = has("undo:switch-dns")
    undo_time = ((switch_undo.verification or {}).get("details") or {}).get("approval_to_verified_seconds") \
        if switch_undo else None
    start = switch.started_at if switch else None
    end = (switch_undo.finished_at if switch_undo else None) or (watch.finished_at if watch else None)
    window = (f"cutover window (switch started to rollback verified): {_human(end - start)} on the rehearsal clock; "
              f"the DNS undo took {_human(undo_time)} from approval to verified"
              if start and end else "no cutover window (the switch did not run)")
    ok = all(found for _, found, _ in findings)
    return Report(rows=rows, findings=findings, decisions=list(journal.decisions), window=window, ok=ok,
                  notes=[])


def _pooler_evidence(copy: Any, world: Any) -> str:
    if copy is None:
        return "no copy-db step"
    if world.pgbouncer is None:
        return ("no PgBouncer in this world (apt-get install pgbouncer, with the local PostgreSQL): "
                "no pooler to catch")
    data = (copy.plan or {}).get("data") or {}
    warnings = [w for w in (copy.plan or {}).get("warnings") or [] if "PgBouncer" in w]
    return f"copied {data.get('source', '?')} -> {data.get('target', '?')}; " + "; ".join(warnings)[:160]


def _sets(sets: list[dict[str, Any]]) -> str:
    return ", ".join(f"{s['Name']} {s['Type']} ttl {s.get('TTL')} "
                     f"{'/'.join(r['Value'] for r in s.get('ResourceRecords', []))}" for s in sets)


def print_report(console: Console, report: Report) -> None:
    table = Table(title="Rehearsal report", show_lines=False)
    for column in ("step", "state", "planned", "took", "what happened"):
        table.add_column(column, overflow="fold")
    for row in report.rows:
        table.add_row(*row)
    console.print(table)
    console.print("[bold]Caught, fixed, verified[/]")
    for what, found, evidence in report.findings:
        mark = "[green]yes[/]" if found else "[red]NO[/]"
        console.print(f"  {mark}  {escape(what)}: {escape(evidence)}")
    console.print("[bold]What a person decided[/]")
    for decision in report.decisions:
        console.print(f"  - {escape(decision)}")
    console.print(escape(report.window))
    console.print("This rehearsal changed nothing outside the rehearsal world.")
