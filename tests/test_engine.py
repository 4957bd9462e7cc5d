"""The engine against the real store: approvals, exactly-once apply, rollback, failure policies, locks."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest

from bot.engine.runner import Runner, StartRefused, StaticDirectory
from bot.engine.store import Store, open_store


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


class FakeClock:
    """A clock the test moves by hand (for approval expiry)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def write_runbook(tmp_path: Path, body: str, name: str = "rb") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def touch_runbook(tmp_path: Path, *, approvals: str = 'default: {approvers: ["alice", "bob", "carol"], min: 1}',
                  extra_steps: str = "", on_failure: str = "abort") -> Path:
    out = tmp_path / "out.txt"
    out.write_text("")
    return write_runbook(tmp_path, f"""
        name: touchy
        targets:
          svc: {{platform: file, path: "{tmp_path}/svc.env"}}
        approvals:
          {approvals}
        steps:
          - id: first
            kind: test.touch
            with: {{path: "{out}", line: "one"}}
          - id: second
            kind: test.touch
            with: {{path: "{out}", line: "two-{{{{ outputs.first.lines }}}}"}}
            on_failure: {on_failure}
        {extra_steps}
    """)


@pytest.fixture
def store(store_where):
    return open_store(store_where)


def lines(tmp_path: Path) -> list[str]:
    return (tmp_path / "out.txt").read_text().splitlines()


def test_a_run_plans_asks_applies_and_passes_outputs_on(tmp_path, store):
    runner = Runner(store)
    run = runner.start(touch_runbook(tmp_path), {}, started_by="dave", front_end="console")
    assert [s.state for s in run.steps] == ["awaiting_approval", "pending"]
    assert run.steps[0].plan["summary"].startswith("append 'one'")
    assert runner.approve(run.id, "first", user="alice", front_end="console").code == "approved"
    assert runner.view(run.id).steps[1].state == "awaiting_approval"
    assert runner.approve(run.id, "second", user="bob", front_end="console").ok
    view = runner.view(run.id)
    assert view.state == "succeeded"
    assert lines(tmp_path) == ["one", "two-1"]  # the second step read the first one's output
    actions = [e["action"] for e in store.events(run.id)]
    assert actions[0] == "run.started" and actions[-1] == "run.succeeded"
    assert "approval.granted" in actions and "step.approved" in actions


def test_fifty_concurrent_approvals_apply_the_step_once(tmp_path, store, store_where):
    approvers = [f"user{i}" for i in range(50)]
    path = touch_runbook(tmp_path, approvals=f"default: {{approvers: {approvers}, min: 1}}")
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    barrier = threading.Barrier(50)
    decisions = []

    def click(user):
        # each thread uses its own Runner on the same file, as separate front-end workers would
        own = Runner(open_store(store_where))
        barrier.wait()
        decisions.append(own.approve(run.id, "first", user=user, front_end="slack"))

    threads = [threading.Thread(target=click, args=(u,)) for u in approvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lines(tmp_path) == ["one"]
    winners = [d for d in decisions if d.code == "approved"]
    assert len(winners) == 1
    losers = [d for d in decisions if not d.ok]
    assert len(losers) == 49
    assert all(d.code == "already_decided" and "already approved by" in d.message for d in losers)
    applied = [e for e in store.events(run.id) if e["action"] == "step.approved"]
    assert len(applied) == 1


def test_m_of_n_self_approval_and_double_click(tmp_path, store):
    path = touch_runbook(tmp_path, approvals='default: {approvers: ["alice", "bob", "carol"], min: 2}')
    runner = Runner(store)
    run = runner.start(path, {}, started_by="alice", front_end="console")
    refused = runner.approve(run.id, "first", user="alice", front_end="console")
    assert (refused.ok, refused.code) == (False, "self_approval")
    assert runner.approve(run.id, "first", user="mallory", front_end="console").code == "not_allowed"
    first = runner.approve(run.id, "first", user="bob", front_end="console")
    assert (first.ok, first.code) == (True, "waiting_more")
    assert runner.approve(run.id, "first", user="bob", front_end="console").code == "already_decided"
    assert lines(tmp_path) == []
    assert runner.approve(run.id, "first", user="carol", front_end="console").code == "approved"
    assert lines(tmp_path) == ["one"]
    refusals = [e["detail"]["code"] for e in store.events(run.id) if e["action"] == "approval.refused"]
    assert refusals == ["self_approval", "not_allowed"]


def test_group_approvers_confirm_text_and_expiry(tmp_path, store):
    clock = FakeClock()
    path = write_runbook(tmp_path, f"""
        name: confirm
        params:
          env: {{type: choice, choices: [staging, production], default: production}}
        approvals:
          default: {{approvers: ["@oncall"], expires_after: 30m}}
        steps:
          - id: only
            kind: test.touch
            with: {{path: "{tmp_path}/out.txt", line: x}}
            approval: {{confirm_text: "{{{{ params.env }}}}"}}
    """)
    (tmp_path / "out.txt").write_text("")
    runner = Runner(store, directory=StaticDirectory({"oncall": ["bob"]}), clock=clock)
    run = runner.start(path, {}, started_by="alice", front_end="console")
    assert run.steps[0].approval_policy["confirm_text"] == "production"
    assert runner.approve(run.id, "only", user="bob", front_end="console").code == "confirm_required"
    assert runner.approve(run.id, "only", user="bob", front_end="console", confirm="staging").code == \
        "confirm_mismatch"
    clock.t += 31 * 60
    expired = runner.approve(run.id, "only", user="bob", front_end="console", confirm="production")
    assert expired.code == "expired" and "re-plan" in expired.message and expired.next_action == ("replan",)
    assert runner.replan(run.id, user="bob", front_end="console").ok
    assert runner.approve(run.id, "only", user="bob", front_end="console", confirm="production").ok
    assert lines(tmp_path) == ["x"]


def test_rejection_fails_the_step_with_its_reason(tmp_path, store):
    runner = Runner(store)
    run = runner.start(touch_runbook(tmp_path), {}, started_by="dave", front_end="console")
    decision = runner.reject(run.id, "first", user="carol", front_end="console", reason="not during the sale")
    assert decision.ok
    view = runner.view(run.id)
    assert view.state == "failed"
    assert view.steps[0].state == "failed" and "not during the sale" in view.steps[0].error
    late = runner.approve(run.id, "first", user="alice", front_end="console")
    assert late.code == "already_decided" and "rejected by carol" in late.message


def test_on_failure_rollback_undoes_succeeded_steps_in_reverse(tmp_path, store):
    path = touch_runbook(tmp_path, on_failure="rollback", extra_steps=f"""
          - id: breaks
            kind: test.fail
            with: {{message: "the new side is not healthy"}}
            on_failure: rollback
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    runner.approve(run.id, "first", user="alice", front_end="console")
    runner.approve(run.id, "second", user="alice", front_end="console")
    view = runner.view(run.id)
    assert view.state == "rolling_back"
    assert [s.key for s in view.steps if s.phase == "rollback"] == ["undo:second", "undo:first"]
    # One decision for the whole reverse plan (rollback_approval: once, the default).
    assert view.steps[-2].approval_policy["covers"] == ["undo:second", "undo:first"]
    assert runner.approve(run.id, "undo:second", user="bob", front_end="console").ok
    view = runner.view(run.id)
    assert view.state == "rolled_back"
    assert lines(tmp_path) == []
    states = {s.key: s.state for s in view.steps}
    assert states["first"] == states["second"] == "rolled_back"
    assert states["breaks"] == "failed"


def test_operator_rollback_after_success_and_environment_lock(tmp_path, store):
    path = touch_runbook(tmp_path)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    with pytest.raises(StartRefused, match=run.id):
        runner.start(path, {}, started_by="erin", front_end="console")
    runner.approve(run.id, "first", user="alice", front_end="console")
    runner.approve(run.id, "second", user="alice", front_end="console")
    assert runner.view(run.id).state == "succeeded"
    other = runner.start(path, {}, started_by="erin", front_end="console")  # the lock was released
    refused = runner.rollback(run.id, user="dave", front_end="console")
    assert refused.code == "locked" and other.id in refused.message
    runner.abort(other.id, user="erin", front_end="console")
    assert runner.rollback(run.id, user="dave", front_end="console").ok
    runner.approve(run.id, "undo:second", user="bob", front_end="console")
    assert runner.view(run.id).state == "rolled_back"
    assert lines(tmp_path) == []


def test_continue_on_failure_and_retries_with_backoff(tmp_path, store):
    clock = FakeClock()
    path = write_runbook(tmp_path, f"""
        name: flaky
        steps:
          - id: flaky
            kind: test.fail
            with: {{counter: "{tmp_path}/count", succeed_after: 2}}
            retries: {{attempts: 3, backoff: 5s}}
          - id: optional
            kind: test.fail
            with: {{message: "nice to have"}}
            on_failure: continue
          - id: tail
            kind: wait
            with: {{seconds: 0}}
    """)
    runner = Runner(store, clock=clock)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    view = runner.view(run.id)
    assert view.state == "completed_with_failures"  # never "succeeded" with a failed step in it
    assert "optional: nice to have" in view.error
    states = {s.key: s.state for s in view.steps}
    assert states == {"flaky": "succeeded", "optional": "failed", "tail": "succeeded"}
    retries = [e["detail"] for e in store.events(run.id) if e["action"] == "step.retry"]
    assert [r["attempt"] for r in retries] == [1, 2]
    assert [r["next_in_seconds"] for r in retries] == [5.0, 10.0]


def test_blocking_plan_and_template_failures_stop_the_run_cleanly(tmp_path, store, monkeypatch):
    monkeypatch.delenv("NEEDED_URL", raising=False)
    path = write_runbook(tmp_path, """
        name: needs-env
        env: [NEEDED_URL]
        steps:
          - id: check
            kind: http.check
            with: {url: "{{ env.NEEDED_URL }}"}
    """)
    runner = Runner(store)
    # Refused when the run starts (inputs are rendered with the real values first), nothing stored.
    with pytest.raises(StartRefused, match=r"rb.yaml:\d+:\d+: steps\[0\].with.url: env.NEEDED_URL is not defined"):
        runner.start(path, {}, started_by="dave", front_end="console")
    assert store.list_runs() == []


def test_changed_runbook_refuses_to_resume_until_replanned(tmp_path, store, store_where):
    path = touch_runbook(tmp_path)
    run = Runner(store).start(path, {}, started_by="dave", front_end="console")
    path.write_text(path.read_text().replace('line: "one"', 'line: "uno"'))
    fresh = Runner(open_store(store_where))
    assert fresh.resume_all() == []
    decision = fresh.approve(run.id, "first", user="alice", front_end="console")
    assert decision.code == "runbook_changed" and "changed on disk" in decision.message
    assert lines(tmp_path) == []
    assert fresh.replan(run.id, user="alice", front_end="console").ok
    assert fresh.approve(run.id, "first", user="alice", front_end="console").ok
    assert lines(tmp_path) == ["uno"]


def test_params_are_typed_and_checked_before_anything_is_stored(tmp_path, store):
    path = write_runbook(tmp_path, """
        name: typed
        params:
          count: {type: int}
          env: {type: choice, choices: [staging, production]}
          dry: {type: bool, default: false}
        steps:
          - id: w
            kind: wait
            with: {seconds: "{{ params.count }}"}
    """)
    runner = Runner(store)
    with pytest.raises(StartRefused) as exc:
        runner.start(path, {"count": "many", "env": "prod", "colour": "red"}, started_by="a", front_end="console")
    message = str(exc.value)
    assert "unknown parameter 'colour'" in message
    assert "count: expected an integer" in message
    assert "expected one of staging, production" in message
    assert store.list_runs() == []
    run = runner.start(path, {"count": "0", "env": "staging"}, started_by="a", front_end="console")
    assert runner.view(run.id).params == {"count": 0, "env": "staging", "dry": False}


def test_dry_run_plans_every_step_and_changes_nothing(tmp_path, store):
    runner = Runner(store)
    path = write_runbook(tmp_path, f"""
        name: dry
        approvals: {{default: {{approvers: ["*"]}}}}
        steps:
          - id: first
            kind: test.touch
            with: {{path: "{tmp_path}/out.txt", line: "one"}}
          - id: second
            kind: wait
            with: {{seconds: 1}}
    """)
    run = runner.start(path, {}, started_by="dave", front_end="console", dry_run=True)
    view = runner.view(run.id)
    assert view.state == "succeeded" and view.dry_run
    assert [s.state for s in view.steps] == ["skipped", "skipped"]
    assert all(s.plan for s in view.steps)
    assert not (tmp_path / "out.txt").exists()


def test_abort_stops_a_blocking_step(tmp_path, store):
    started, release = tmp_path / "started", tmp_path / "release"
    path = write_runbook(tmp_path, f"""
        name: blocker
        approvals: {{default: {{approvers: ["*"], allow_self: true}}}}
        steps:
          - id: hold
            kind: test.block
            with: {{started: "{started}", release: "{release}"}}
    """)
    runner = Runner(store, background=True)
    run = runner.start(path, {}, started_by="dave", front_end="slack")
    runner.wait_idle()
    assert runner.approve(run.id, "hold", user="dave", front_end="slack").ok
    for _ in range(200):
        if started.exists():
            break
        threading.Event().wait(0.02)
    assert runner.abort(run.id, user="dave", front_end="slack").ok
    runner.wait_idle()
    for _ in range(200):
        if runner.view(run.id).steps[0].state == "failed":
            break
        threading.Event().wait(0.02)
    view = runner.view(run.id)
    assert view.state == "aborted"
    assert view.steps[0].state == "failed" and "aborted" in view.steps[0].error
    assert store.lock_holders() == {}
    runner.shutdown()


def test_the_same_runner_sees_a_same_size_edit_of_its_runbook(tmp_path, store):
    """The runner keeps each runbook's digest between moves (hashing per move made cost grow with the
    runbook); an edit that keeps the size, made while the runner holds the digest, is still refused."""
    path = touch_runbook(tmp_path)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    assert runner.view(run.id).steps[0].state == "awaiting_approval"
    before = path.stat().st_size
    path.write_text(path.read_text().replace('line: "one"', 'line: "uno"'))
    assert path.stat().st_size == before
    decision = runner.approve(run.id, "first", user="alice", front_end="console")
    assert decision.code == "runbook_changed" and "changed on disk" in decision.message
    assert lines(tmp_path) == []
