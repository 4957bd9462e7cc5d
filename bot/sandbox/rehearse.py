"""`runbook-bot rehearse RUNBOOK`: walk a real runbook through the rehearsal world, then report.

    code = rehearse(console, "runbooks/aws-ecs-to-do-app.yaml")

The runbook is the shipped one; only its parameters come from the world (`World.params`). Every
approval is given by named rehearsal operators (no terminal asks; `RUNBOOK_BOT_GROUPS` puts them in
the runbook's groups for this process only). Time is the world's accelerated clock: waits of a day
take a second, and the watch ticks every ten (rehearsal) minutes over the world's metric history.
When the watch alerts, the operator decides to roll back, as the on-call person would: the run is
aborted and rolled back through the engine, each undo approved. The report is built from the
store (steps, plans, results, approvals, the watch's samples), never from what the world knows.

A rehearsal changes nothing outside the world: every endpoint points at loopback, the store is a
file in the world's own folder, and the world's databases are dropped when it stops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bot import config

LEAD = "rehearsal-lead"
OPERATORS = ("rehearsal-operator", "rehearsal-second")
ACTIVE = ("running", "awaiting_approval", "rolling_back")


@dataclass
class Journal:
    """What happened that the store does not say by itself: the people's decisions in the rehearsal."""

    decisions: list[str] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alert_at: float | None = None
    rollback_requested: bool = False


class _Operator:
    """A channel standing for the rehearsal's people: it notes watch alerts and acts on failures."""

    def __init__(self, journal: Journal, clock: Any, world: Any) -> None:
        self.journal, self.clock, self.world = journal, clock, world

    def step_finished(self, run: Any, step: Any) -> None:
        if step.step_id == "model-synced" and step.state == "failed":
            _sync_model(self.world, self.journal)

    def post_alert(self, run: Any, alert: dict[str, Any]) -> None:
        self.journal.alerts.append(alert)
        if self.journal.alert_at is None:
            self.journal.alert_at = self.clock.now()

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def rehearse(console: Console, runbook: str | None = None) -> int:
    """Stand the world up, walk the runbook, print the report; 0 when the rehearsal did what it should."""
    from bot.chat.console import ConsoleChannel
    from bot.engine.channel import FanoutChannel
    from bot.engine.runner import Runner, StartRefused
    from bot.engine.store import Store
    from bot.sandbox.world import World
    from bot.watch import service

    path = runbook or str(config.runbooks_dir() / "aws-ecs-to-do-app.yaml")
    console.print("[bold]Rehearsal[/]: this changes nothing outside the rehearsal world. AWS is moto on "
                  "loopback, DigitalOcean a local stand-in, DNS a local server; the databases are made for "
                  "this rehearsal and dropped after it.", highlight=False)
    with World.up() as world:
        saved = {name: os.environ.get(name) for name in ("RUNBOOK_BOT_GROUPS", "RUNBOOK_BOT_DB", "RUNBOOK_BOT_STATE_DIR")}
        os.environ["RUNBOOK_BOT_STATE_DIR"] = str(world.folder)  # the store and the fingerprint key too
        os.environ["RUNBOOK_BOT_GROUPS"] = (f"platform-oncall={','.join(OPERATORS)};"
                                            f"api-owners={','.join(reversed(OPERATORS))}")
        os.environ["RUNBOOK_BOT_DB"] = str(world.folder / "rehearsal.sqlite")
        try:
            journal = Journal()
            store = Store(world.folder / "rehearsal.sqlite", clock=world.clock)
            channel = FanoutChannel(ConsoleChannel(console), _Operator(journal, world.clock, world))
            runner = Runner(store, channel, clock=world.clock)
            record_before = world.record_sets()
            state: dict[str, Any] = {"run": None}

            def on_advance(now: float) -> None:
                run_id = state["run"]
                if run_id is None:
                    return
                service.run_due_tick(store, run_id, channel, now=now)
                if journal.alert_at is not None and not journal.rollback_requested:
                    journal.rollback_requested = True
                    journal.decisions.append(f"{OPERATORS[0]} read the watch alert and decided to roll back")
                    runner.abort(run_id, user=OPERATORS[0], front_end="rehearsal", reason="watch alert")

            world.clock.on_advance.append(on_advance)
            try:
                run = runner.start(path, _params_for(path, world.params), started_by=LEAD, front_end="rehearsal")
            except StartRefused as exc:
                console.print(f"[red]cannot start the rehearsal:[/] {exc}")
                return 2
            state["run"] = run.id
            _drive(runner, run.id, journal)
            if journal.rollback_requested:
                decision = runner.rollback(run.id, user=OPERATORS[0], front_end="rehearsal")
                journal.decisions.append(f"rollback: {decision.message}")
                _drive(runner, run.id, journal)
            from bot.sandbox.report import build_report, print_report

            report = build_report(runner.view(run.id), store, world, journal, record_before)
            print_report(console, report)
            return 0 if report.ok else 1
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _params_for(path: str, offered: dict[str, str]) -> dict[str, str]:
    """The world's parameters that this runbook declares (the demo declares only `env`)."""
    from bot.runbook.load import load_runbook

    declared = load_runbook(path).model.params or {}
    return {name: value for name, value in offered.items() if name in declared}


def _drive(runner: Any, run_id: str, journal: Journal) -> None:
    """Approve every step that waits, as the rehearsal's operators, until the run stops moving."""
    stalled = 0
    while stalled < 3:
        view = runner.view(run_id)
        waiting = [s for s in view.steps if s.state == "awaiting_approval"]
        if view.state not in ACTIVE or not waiting:
            stalled += 1
            if view.state not in ACTIVE:
                return
            continue
        stalled = 0
        for step in waiting:
            policy = step.approval_policy or {}
            confirm = policy.get("confirm_text")
            for user in OPERATORS:
                journal.decisions.append(f"{user} approved {step.key}" + (f" (typed {confirm!r})" if confirm else ""))
                decision = runner.approve(run_id, step.key, user=user, front_end="rehearsal", confirm=confirm)
                if decision.code != "waiting_more":
                    break


def _sync_model(world: Any, journal: Journal) -> None:
    """What the operator does by hand when the parity step catches the missing model: copy it over."""
    from bot.sandbox.world import ENV, MODEL_KEY

    if True:
        body = world.client("s3").get_object(Bucket=f"applypass-models-{ENV}", Key=MODEL_KEY)["Body"].read()
        world.spaces().put_object(Bucket=f"applypass-models-{ENV}", Key=MODEL_KEY, Body=body)
        journal.decisions.append(f"{OPERATORS[0]} copied {MODEL_KEY} to Spaces by hand (the parity step had caught it)")


__all__ = ["rehearse", "Path"]
