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

from dataclasses import dataclass, field
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
    rate: float | None = None  # units per second, when known
    eta_seconds: float | None = None


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
