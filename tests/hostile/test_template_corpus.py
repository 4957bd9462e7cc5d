"""Every Slack template against a corpus of sparse runs: every run state, every step state, every
step kind, with the optional fields empty (no mentions, no plan, no params, no error, no policy).

A message must never show an empty field: a text starting with ": " (what `approvers: ["*"]` gave
the approval notification: nobody to mention), empty code or bold marks, or "None"/"undefined".
"""

from __future__ import annotations

import json
import re

import pytest

from bot.chat.slack import messages
from bot.engine.channel import RunView, StepView
from bot.steps.base import kinds

RUN_STATES = ("running", "succeeded", "failed", "aborted", "rolling_back", "rolled_back")
STEP_STATES = ("pending", "planned", "awaiting_approval", "applying", "verifying", "succeeded", "failed",
               "skipped", "interrupted", "rolled_back")
EMPTY = re.compile(r"^\s*[:;,.]|``(?!`)|\*\*|\bNone\b|\bundefined\b|\(\s*\)")


def sparse_step(kind: str, state: str) -> StepView:
    return StepView(run_id="r-1", key="s", step_id="s", kind=kind, phase="forward", state=state, index=0,
                    needs_approval=state == "awaiting_approval")


def sparse_run(state: str, steps: list[StepView]) -> RunView:
    return RunView(id="r-1", runbook="rb", state=state, params={}, started_by="U0ALICE", front_end="slack",
                   created_at=1.0, updated_at=2.0, steps=steps, chat={})


def corpus():
    for kind in sorted(kinds()):
        for step_state in STEP_STATES:
            step = sparse_step(kind, step_state)
            for run_state in RUN_STATES:
                run = sparse_run(run_state, [step])
                yield f"{kind}-{step_state}-{run_state}", {
                    "run_header": {"run": run}, "step": {"run": run, "step": step, "progress": None},
                    "run_finished": {"run": run}, "run_status": {"runs": [run]},
                    "approval_request": {"run": run, "step": step, "mentions": []},
                }


def texts(message: messages.Message) -> list[str]:
    found = [message.text or ""]
    for block in message.blocks or []:
        text = block.get("text")
        if isinstance(text, dict):
            found.append(text.get("text", ""))
        for element in block.get("elements", []) + block.get("fields", []):
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                found.append(element["text"])
    return found


CASES = list(corpus())


@pytest.mark.parametrize("template", ["run_header", "step", "run_finished", "run_status", "approval_request"])
def test_no_template_shows_an_empty_field_for_any_run(template):
    bad = []
    for name, contexts in CASES:
        for text in texts(messages.render(template, contexts[template])):
            if EMPTY.search(text):
                bad.append(f"{name}: {text[:120]!r}")
    assert not bad, f"{len(bad)} messages with an empty field, e.g.\n" + "\n".join(bad[:5])


def test_the_approval_notification_for_anyone_does_not_start_with_a_colon():
    run = sparse_run("running", [sparse_step("wait", "awaiting_approval")])
    message = messages.render("approval_request", {"run": run, "step": run.steps[0], "mentions": []})
    assert message.text.startswith("Approvers: s of rb waits for approval"), message.text
    assert json.dumps(message.blocks).count("Approvers:") == 1
