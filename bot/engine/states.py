"""The states of runs and steps, and the one table of moves between them.

    >>> from bot.engine.states import RUN_FINAL, RunState, StepState, step_move_allowed
    >>> step_move_allowed(StepState.APPLYING, StepState.VERIFYING)
    True
    >>> step_move_allowed(StepState.SUCCEEDED, StepState.APPLYING)
    False
    >>> RunState.ROLLBACK_INCOMPLETE in RUN_FINAL
    True

The store's compare-and-set refuses any move not listed here (a programming error, raised as
`IllegalMove`), so this file is the whole state machine: what a reader sees here is what the
store lets happen. Front ends read `RUN_FINAL`, `RUN_EXIT` and the sets below instead of keeping
their own lists. docs/state-machine.md draws the same table.
"""

from __future__ import annotations

from enum import StrEnum


class StepState(StrEnum):
    PENDING = "pending"
    PLANNED = "planned"
    BLOCKED = "blocked"  # the plan refused (PlanRefused / blocking); waits for a re-plan, undoes nothing
    AWAITING_APPROVAL = "awaiting_approval"
    APPLYING = "applying"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # its process died while applying; a person decides
    ROLLED_BACK = "rolled_back"


class RunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # every step succeeded or was skipped
    COMPLETED_WITH_FAILURES = "completed_with_failures"  # reached the end, some step failed (on_failure: continue)
    FAILED = "failed"
    ABORTED = "aborted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"  # every undo applied and verified; nothing the run changed is left changed
    ROLLBACK_INCOMPLETE = "rollback_incomplete"  # something the run changed is still changed (named in error)


S, R = StepState, RunState

# (from, to) -> the audit event the move writes unless the caller names a more precise one.
STEP_MOVES: dict[tuple[StepState, StepState], str] = {
    (S.PENDING, S.PLANNED): "step.planned",
    (S.PENDING, S.FAILED): "step.failed",
    (S.PENDING, S.BLOCKED): "step.blocked",
    (S.PENDING, S.SKIPPED): "step.skipped",
    (S.PLANNED, S.AWAITING_APPROVAL): "step.awaiting_approval",
    (S.PLANNED, S.APPLYING): "step.applying",
    (S.PLANNED, S.BLOCKED): "step.blocked",
    (S.PLANNED, S.SKIPPED): "step.skipped",
    (S.PLANNED, S.FAILED): "step.failed",
    (S.PLANNED, S.PENDING): "step.replanned",
    (S.BLOCKED, S.PENDING): "step.replanned",
    (S.BLOCKED, S.SKIPPED): "step.skipped",
    (S.AWAITING_APPROVAL, S.APPLYING): "step.approved",
    (S.AWAITING_APPROVAL, S.FAILED): "step.rejected",
    (S.AWAITING_APPROVAL, S.SKIPPED): "step.skipped",
    (S.AWAITING_APPROVAL, S.PENDING): "step.replanned",
    (S.APPLYING, S.VERIFYING): "step.verifying",
    (S.APPLYING, S.FAILED): "step.failed",
    (S.APPLYING, S.INTERRUPTED): "step.interrupted",
    (S.APPLYING, S.BLOCKED): "step.blocked",  # apply's own re-check refused before changing anything
    (S.VERIFYING, S.SUCCEEDED): "step.succeeded",
    (S.VERIFYING, S.FAILED): "step.failed",
    (S.VERIFYING, S.INTERRUPTED): "step.interrupted",
    (S.INTERRUPTED, S.APPLYING): "step.retry_after_interrupt",
    (S.INTERRUPTED, S.VERIFYING): "step.verify_after_interrupt",
    (S.INTERRUPTED, S.SKIPPED): "step.skipped_after_interrupt",
    (S.INTERRUPTED, S.FAILED): "step.failed",
    (S.SUCCEEDED, S.ROLLED_BACK): "step.rolled_back",
    (S.FAILED, S.ROLLED_BACK): "step.rolled_back",  # an applied-but-unverified or partial change, undone
    (S.FAILED, S.PENDING): "step.retry_rollback",  # an undo step that failed, tried again
    (S.SKIPPED, S.PENDING): "step.retry_rollback",
}

RUN_MOVES: dict[tuple[RunState, RunState], str] = {
    (R.RUNNING, R.SUCCEEDED): "run.succeeded",
    (R.RUNNING, R.COMPLETED_WITH_FAILURES): "run.completed_with_failures",
    (R.RUNNING, R.FAILED): "run.failed",
    (R.RUNNING, R.ABORTED): "run.aborted",
    (R.RUNNING, R.ROLLING_BACK): "run.rolling_back",
    (R.SUCCEEDED, R.ROLLING_BACK): "run.rolling_back",
    (R.COMPLETED_WITH_FAILURES, R.ROLLING_BACK): "run.rolling_back",
    (R.FAILED, R.ROLLING_BACK): "run.rolling_back",
    (R.ABORTED, R.ROLLING_BACK): "run.rolling_back",
    (R.ROLLBACK_INCOMPLETE, R.ROLLING_BACK): "run.rolling_back",
    (R.ROLLING_BACK, R.ROLLED_BACK): "run.rolled_back",
    (R.ROLLING_BACK, R.ROLLBACK_INCOMPLETE): "run.rollback_incomplete",
    (R.ROLLING_BACK, R.ABORTED): "run.aborted",
}

STEP_DONE = frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED, S.ROLLED_BACK})  # the driver moves past these
STEP_BUSY = frozenset({S.APPLYING, S.VERIFYING})
STEP_NOT_STARTED = frozenset({S.PENDING, S.PLANNED, S.AWAITING_APPROVAL, S.BLOCKED})
RUN_ACTIVE = frozenset({R.RUNNING, R.ROLLING_BACK})
RUN_FINAL = frozenset(set(R) - RUN_ACTIVE)
RUN_ROLLBACK_FROM = frozenset(f for (f, t) in RUN_MOVES if t == R.ROLLING_BACK)

# The CLI's exit code for a run that has stopped moving: only a clean success is 0.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WAITING = 0, 1, 2, 3
RUN_EXIT = {R.SUCCEEDED: EXIT_OK, R.ROLLED_BACK: EXIT_FAILED, R.COMPLETED_WITH_FAILURES: EXIT_FAILED,
            R.FAILED: EXIT_FAILED, R.ABORTED: EXIT_FAILED, R.ROLLBACK_INCOMPLETE: EXIT_FAILED}


class IllegalMove(ValueError):
    """The engine asked for a move the table does not allow: a bug, never a race."""


def step_move_allowed(src: str, dst: str) -> bool:
    return (StepState(src), StepState(dst)) in STEP_MOVES


def run_move_allowed(src: str, dst: str) -> bool:
    return (RunState(src), RunState(dst)) in RUN_MOVES


def check_step_moves(from_states: object, to_state: str) -> None:
    """Raise IllegalMove when no listed source state may move to `to_state`."""
    bad = [f for f in from_states if not step_move_allowed(f, to_state)]  # type: ignore[attr-defined]
    if bad:
        raise IllegalMove(f"step move {bad[0]} -> {to_state} is not in the transition table")


def check_run_moves(from_states: object, to_state: str) -> None:
    bad = [f for f in from_states if not run_move_allowed(f, to_state)]  # type: ignore[attr-defined]
    if bad:
        raise IllegalMove(f"run move {bad[0]} -> {to_state} is not in the transition table")
