"""How the engine talks to people: the `Channel` protocol that every front end implements.

The engine never imports a front end. It calls these methods with plain view objects and the
front end turns them into Slack messages (`bot.chat.slack`) or console output (`bot.chat.console`).
A method must not block on people: asking for an approval *posts the question*; the answer comes
back later through `Runner.approve` from whichever front end the approver uses.

    class Quiet:                       # the smallest channel: tests and benchmarks
        def __getattr__(self, name):
            return lambda *args, **kwargs: None
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass
class StepView:
    run_id: str
    key: str  # unique within the run: the step id, or "rollback:<step id>"
    step_id: str
    kind: str
    phase: str  # "forward" | "rollback"
    state: str
    index: int
    plan: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    error: str | None = None
    approvals: list[dict[str, Any]] = field(default_factory=list)
    needs_approval: bool = False
    approval_policy: dict[str, Any] | None = None
    requested_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    plan_digest: str | None = None  # what an approval of this step must carry (see Runner.approve)
    offers: list[str] = field(default_factory=list)  # an interrupted step's choices, the advised one first
    progress: dict[str, Any] | None = None  # the last progress record (see Progress), kept by the store


@dataclass
class RunView:
    id: str
    runbook: str
    state: str
    params: dict[str, Any]
    started_by: str
    front_end: str
    created_at: float
    updated_at: float
    steps: list[StepView]
    chat: dict[str, Any] = field(default_factory=dict)  # front-end owned refs (Slack channel/thread)
    error: str | None = None
    dry_run: bool = False


@dataclass
class Progress:
    done: float
    total: float | None
    message: str
    unit: str
    rate: float | None = None  # units per second within the current phase, when known
    eta_seconds: float | None = None  # None when it cannot be honest (no total, or the phase does not move it)
    phase: str = ""  # e.g. db.copy: schema, data, indexes, analyse, verify
    phase_seconds: float = 0.0  # how long the current phase has run
    phases: list[dict[str, Any]] = field(default_factory=list)  # [{"name", "seconds"}] of the phases so far


def _seconds(value: float) -> str:
    """`15 s`, `1 min 35 s`, `2 h 5 min`: whole units, the larger one from one and a half of it."""
    whole = max(0, round(value))
    for size, unit, rest in ((3600, "h", "min"), (60, "min", "s")):
        if whole >= size * 1.5:
            return f"{whole // size} {unit} {whole % size // (size // 60)} {rest}"
    return f"{whole} s"


def progress_line(record: dict[str, Any] | Progress) -> str:
    """One line for a progress record (a `Progress` or the dict the store keeps), for any front end.

        >>> progress_line({"phase": "data", "done": 412, "total": 1024, "unit": "MiB", "rate": 40.0,
        ...                "eta_seconds": 15.3, "phase_seconds": 10.2, "message": "data: 3/9 tables"})
        'data · 412/1024 MiB (40%) · 40.0 MiB/s · ETA 15 s · data: 3/9 tables'
        >>> progress_line({"phase": "indexes", "done": 1024, "total": 1024, "unit": "MiB", "rate": None,
        ...                "eta_seconds": None, "phase_seconds": 95, "message": "indexes, constraints"})
        'indexes · 1 min 35 s so far, no honest ETA · indexes, constraints'
    """
    r = asdict(record) if isinstance(record, Progress) else record
    parts = [r["phase"]] if r.get("phase") else []
    total, done, unit = r.get("total"), r.get("done") or 0, r.get("unit") or ""
    moving = r.get("rate") is not None
    if moving or not r.get("phase"):
        amount = f"{done:g}" + (f"/{total:g}" if total else "") + (f" {unit}" if unit else "")
        if total:
            amount += f" ({100 * done / total:.0f}%)"
        parts.append(amount)
    if moving:
        parts.append(f"{r['rate']:.1f} {unit}/s")
        if r.get("eta_seconds") is not None:
            parts.append(f"ETA {_seconds(r['eta_seconds'])}")
    elif r.get("phase"):
        parts.append(f"{_seconds(r.get('phase_seconds') or 0)} so far, no honest ETA")
    if r.get("message"):
        parts.append(r["message"])
    return " · ".join(parts)


class Channel(Protocol):
    def run_updated(self, run: RunView) -> None:
        """The run or one of its steps changed state (a header with the live step list)."""

    def post_plan(self, run: RunView, step: StepView) -> None:
        """A step has a plan; show it (with its warnings and blocking reasons)."""

    def request_approval(self, run: RunView, step: StepView) -> None:
        """A step waits for approval under `step.approval_policy`; ask the allowed approvers."""

    def approval_recorded(self, run: RunView, step: StepView, decision: dict[str, Any]) -> None:
        """Someone approved or rejected (the step may still need more approvals)."""

    def report_progress(self, run: RunView, step: StepView, progress: Progress) -> None:
        """A long step moved on; already throttled to at most once a second by the engine."""

    def step_finished(self, run: RunView, step: StepView) -> None:
        """A step reached succeeded, failed, skipped or interrupted; show its result."""

    def run_finished(self, run: RunView) -> None:
        """The run reached a final state."""

    def notify(self, run: RunView, text: str, level: str = "info") -> None:
        """A free-form message in the run's place (thread), e.g. a refused resume."""

    def post_summary(self, run: RunView, summary: dict[str, Any]) -> None:
        """A watch summary (issue: post-cutover watch)."""

    def post_alert(self, run: RunView, alert: dict[str, Any]) -> None:
        """A watch breach: mention the on-call, offer Rollback."""


class QuietChannel:
    """A channel that drops everything: for tests, benchmarks and dry background work."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class FanoutChannel:
    """Send every call to several channels (e.g. Slack plus a log channel); one failing does not stop the rest."""

    def __init__(self, *channels: Any) -> None:
        self.channels = channels

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            errors = []
            for channel in self.channels:
                try:
                    getattr(channel, name)(*args, **kwargs)
                except Exception as exc:  # one front end's outage must not stop the others
                    errors.append(exc)
            if errors:
                raise errors[0]

        return call
