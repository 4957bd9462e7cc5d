"""What a step sees while it runs: the run's inputs, its targets, a clock, progress and cancellation.

The engine builds one `StepContext` per call. Steps use it like this:

    def apply(self, ctx, inputs, plan):
        target = ctx.target(inputs.target)          # a validated target model (bot.runbook.targets)
        for i, table in enumerate(tables):
            ctx.check_cancelled()                   # raises Cancelled after an abort or a timeout
            copy(table)
            ctx.progress(i + 1, len(tables), f"copied {table}", unit="tables")
        ...

`ctx.record_undo(before=...)` stores undo data write-ahead (see `StepContext.record_undo`).
`ctx.history(kind="dns.set_ttl")` gives earlier steps of the same run (their stored plan, result
and finish time), for preflights that depend on what the run already did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Cancelled(Exception):
    """The run was aborted, or the step ran past its timeout; stop and leave things as they are."""


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time; tests pass a controllable clock instead."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


@dataclass
class StepRecord:
    """An earlier step of this run, as the store holds it."""

    step_id: str
    kind: str
    state: str
    plan: dict[str, Any] | None
    result: dict[str, Any] | None
    finished_at: float | None


@dataclass
class StepContext:
    run_id: str
    step_id: str
    runbook_name: str
    params: dict[str, Any]
    targets: dict[str, Any]  # name -> validated target model
    outputs: dict[str, dict[str, Any]]
    clock: Clock = field(default_factory=SystemClock)
    deadline: float | None = None
    is_cancelled: Callable[[], bool] = lambda: False
    on_progress: Callable[..., None] = lambda *a, **k: None
    on_log: Callable[[str], None] = lambda message: None
    history_fn: Callable[[], list[StepRecord]] = lambda: []
    store: Any = None  # the engine's Store, for kinds that keep their own rows (watches)
    started_at: float | None = None  # when the step started applying (its approval), for measurements
    on_undo: Callable[[dict[str, Any]], Any] | None = None

    def record_undo(self, **data: Any) -> None:
        """Write-ahead undo: store what undoing this step needs *before* (or as) `apply` changes it.

            ctx.record_undo(before=current, zone_id=zone.ref)   # persisted at once
            zone.write(...)                                      # a crash here can still be undone

        Later calls merge over earlier ones; what `apply` finally returns in `Result.undo` merges
        over all of them. `rollback` receives the merged data even when `apply` never returned."""
        if self.on_undo is not None:  # None: a kind called directly (unit tests), no store to write to
            self.on_undo(data)

    def target(self, name: str) -> Any:
        """The validated binding of a target by name; a missing one is a runbook bug caught at load."""
        try:
            return self.targets[name]
        except KeyError:
            raise KeyError(f"unknown target {name!r}; known: {', '.join(sorted(self.targets)) or 'none'}") from None

    def progress(self, done: float, total: float | None = None, message: str = "", unit: str = "",
                 phase: str = "") -> None:
        """Report progress; the engine throttles what reaches people to one update a second.

        `phase` names a stage of a long step (db.copy: "data", "indexes", "analyse", "verify"): the
        rate and the ETA are measured within the phase, so a phase whose `done` does not move (indexes
        being built) shows no ETA rather than a frozen one. A new phase is always reported at once.
        """
        self.on_progress(done=done, total=total, message=message, unit=unit, phase=phase)

    def log(self, message: str) -> None:
        """A line for the run's audit log (redacted before it is stored)."""
        self.on_log(message)

    def remaining(self) -> float | None:
        """Seconds left before the step's timeout, or None when it has none."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - self.clock.now())

    def check_cancelled(self) -> None:
        if self.is_cancelled():
            raise Cancelled("the run was aborted")
        if self.deadline is not None and self.clock.now() > self.deadline:
            raise Cancelled("the step ran past its timeout")

    def sleep(self, seconds: float) -> None:
        """Sleep in small slices so that an abort or a timeout is noticed promptly."""
        end = self.clock.now() + seconds
        while True:
            self.check_cancelled()
            left = end - self.clock.now()
            if left <= 0:
                return
            self.clock.sleep(min(left, 0.2))

    def history(self, kind: str | None = None) -> list[StepRecord]:
        records = self.history_fn()
        return [r for r in records if kind is None or r.kind == kind]
