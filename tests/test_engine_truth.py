"""A run that never lies: every changed step is undone, and every state the engine reports is true.

Real kinds with real effects on files (tests/kinds.py), the real store, the real CLI in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bot.engine.runner import Runner
from bot.engine.states import IllegalMove
from bot.engine.store import Store, open_store

ROOT = Path(__file__).resolve().parents[1]
APPROVERS = 'approvals: {default: {approvers: ["alice", "bob"], min: 1}}'
ORIGINAL = b"LISTEN=old.example.com\nWEIGHT=100\n\x00binary tail\n"


@pytest.fixture(autouse=True)
def plugin_kinds(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401


@pytest.fixture
def store(store_where):
    return open_store(store_where)


def runbook(tmp_path: Path, steps: str, *, approvals: str = APPROVERS, name: str = "truth", head: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\n{head}{approvals}\nsteps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))
    return path


def files(tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        f = tmp_path / name
        f.write_bytes(ORIGINAL)
        out.append(f)
    return out


def run_cli(where: str | Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, on the store at `where` (a SQLite file or a PostgreSQL URL)."""
    full = {**os.environ, "RUNBOOK_BOT_DB": str(where), "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "bot", *args], env=full, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def approve_all(runner: Runner, run_id: str, user: str = "alice") -> None:
    """Approve whatever waits, as a person at the console would, until nothing waits."""
    for _ in range(50):
        waiting = [s for s in runner.view(run_id).steps if s.state == "awaiting_approval"]
        if not waiting:
            return
        assert runner.approve(run_id, waiting[0].key, user=user, front_end="console").ok


def test_applied_but_unverified_step_is_undone_byte_for_byte(tmp_path, store):
    a, b = files(tmp_path, "a.env", "b.env")
    path = runbook(tmp_path, f"""
        - id: first
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
        - id: switch
          kind: test.rewrite
          with: {{path: "{b}", content: "WEIGHT=0\\n", fail_verify: true}}
          on_failure: rollback
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    view = runner.view(run.id)
    assert view.state == "rolled_back"
    states = {s.key: s.state for s in view.steps}
    assert states == {"first": "rolled_back", "switch": "rolled_back",
                      "undo:switch": "succeeded", "undo:first": "succeeded"}
    assert a.read_bytes() == ORIGINAL and b.read_bytes() == ORIGINAL


def test_crash_mid_apply_is_undone_from_write_ahead_records(tmp_path, store):
    (a,) = files(tmp_path, "a.env")
    path = runbook(tmp_path, f"""
        - id: half
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new.example.com\\nWEIGHT=0\\n", crash_midway: true}}
          on_failure: rollback
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    view = runner.view(run.id)
    assert view.state == "rolled_back", view.error
    assert a.read_bytes() == ORIGINAL
    half = next(s for s in view.steps if s.key == "half")
    assert half.state == "rolled_back" and "crashed half-way" in half.error
    # The undo data was stored before the change, not only after apply returned.
    actions = [e["action"] for e in store.events(run.id) if e["step_key"] == "half"]
    assert actions.index("step.undo_recorded") < actions.index("step.failed")


def test_a_change_no_undo_can_reach_makes_the_rollback_incomplete(tmp_path, store):
    a, b = files(tmp_path, "a.env", "b.env")
    path = runbook(tmp_path, f"""
        - id: first
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
        - id: blind
          kind: test.rewrite
          with: {{path: "{b}", content: "WEIGHT=0\\n", crash_midway: true, write_ahead: false}}
          on_failure: rollback
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    view = runner.view(run.id)
    assert view.state == "rollback_incomplete"
    assert "blind is still changed" in view.error and "stopped before recording" in view.error
    assert a.read_bytes() == ORIGINAL  # what could be undone was undone
    assert b.read_bytes() != ORIGINAL  # and the report says so about what could not


def test_an_undo_that_fails_verification_says_what_is_still_changed(tmp_path, store):
    a, b = files(tmp_path, "a.env", "b.env")
    path = runbook(tmp_path, f"""
        - id: first
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
        - id: second
          kind: test.rewrite
          with: {{path: "{b}", content: "WEIGHT=0\\n", undo_breaks: true}}
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    assert runner.view(run.id).state == "succeeded"
    assert runner.rollback(run.id, user="dave", front_end="console").ok
    approve_all(runner, run.id, user="bob")
    view = runner.view(run.id)
    assert view.state == "rollback_incomplete"
    assert "second is still changed: its undo undo:second failed" in view.error
    assert "first is still changed: its undo undo:first skipped" in view.error
    assert a.read_bytes() != ORIGINAL  # the later undo was not run after the first failed
    # Fix the cause (here: the runbook's undo is repaired) and roll back again: the failed undo steps are retried.
    path.write_text(path.read_text().replace("undo_breaks: true", "undo_breaks: false"))
    assert runner.replan(run.id, user="dave", front_end="console").ok
    decision = runner.rollback(run.id, user="dave", front_end="console")
    assert decision.ok and "undo:second" in decision.message, decision.message
    approve_all(runner, run.id, user="bob")
    view = runner.view(run.id)
    assert view.state == "rolled_back", view.error
    assert a.read_bytes() == ORIGINAL and b.read_bytes() == ORIGINAL


def test_interrupted_step_resolved_as_rollback_is_undone_too(tmp_path, store):
    (a,) = files(tmp_path, "a.env")
    path = runbook(tmp_path, f"""
        - id: only
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    # The apply ran and recorded its undo, then its process died before verifying (the owner is gone).
    with store.transaction() as conn:
        conn.execute("UPDATE steps SET state = 'applying', owner = 'nohost:1:-:dead', apply_started = 1,"
                     " heartbeat_at = 0 WHERE run_id = ? AND key = 'only'", (run.id,))
    a.write_text("LISTEN=new\n")
    store.record_undo(run.id, "only", {"old_hex": ORIGINAL.hex()})
    assert runner.reap() == [(run.id, "only")]
    assert runner.resolve(run.id, "only", "rollback", user="alice", front_end="console").ok
    approve_all(runner, run.id, user="bob")
    assert runner.view(run.id).state == "rolled_back"
    assert a.read_bytes() == ORIGINAL


def test_continue_on_failure_never_exits_zero(tmp_path):
    path = runbook(tmp_path, """
        - id: env-matrix
          kind: test.fail
          with: {message: "DATABASE_URL is missing on the new side"}
          on_failure: continue
        - id: pooler
          kind: test.fail
          with: {message: "PgBouncer in transaction mode in front of the target"}
          on_failure: continue
    """, approvals="")
    proc = run_cli(tmp_path / "store.sqlite", "run", str(path), "--as", "dave")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "completed_with_failures" in proc.stdout
    assert "DATABASE_URL is missing" in proc.stdout and "PgBouncer in transaction mode" in proc.stdout


def test_a_refusing_plan_blocks_without_undoing_earlier_steps(tmp_path, store):
    (a,) = files(tmp_path, "a.env")
    gate = tmp_path / "ttl-has-passed"
    path = runbook(tmp_path, f"""
        - id: lower-ttl
          kind: test.rewrite
          with: {{path: "{a}", content: "TTL=60\\n"}}
        - id: switch
          kind: test.refuse
          with: {{until: "{gate}"}}
          on_failure: rollback
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    view = runner.view(run.id)
    assert view.state == "running"
    switch = next(s for s in view.steps if s.key == "switch")
    assert switch.state == "blocked" and f"not before {gate} exists" in switch.error
    assert not [s for s in view.steps if s.phase == "rollback"]  # the TTL change it waits on stays
    assert a.read_text() == "TTL=60\n"
    gate.write_text("now")
    assert runner.replan(run.id, user="dave", front_end="console").ok
    approve_all(runner, run.id)
    assert runner.view(run.id).state == "succeeded"


def test_non_approver_retry_is_refused_and_audited(tmp_path, store):
    (a,) = files(tmp_path, "a.env")
    path = runbook(tmp_path, f"""
        - id: only
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    with store.transaction() as conn:
        conn.execute("UPDATE steps SET state = 'interrupted' WHERE run_id = ? AND key = 'only'", (run.id,))
    for user in ("mallory", "dave"):  # a stranger, and the starter where self-approval is off
        decision = runner.resolve(run.id, "only", "retry", user=user, front_end="slack")
        assert not decision.ok and decision.code == "not_allowed", decision.message
    refused = [e for e in store.events(run.id) if e["action"] == "resolve.refused"]
    assert [e["actor"] for e in refused] == ["mallory", "dave"]
    assert store.get_step(run.id, "only")["state"] == "interrupted"
    assert a.read_bytes() == ORIGINAL
    assert not runner.abort(run.id, user="mallory", front_end="slack").ok
    assert runner.resolve(run.id, "only", "retry", user="bob", front_end="slack").ok
    assert a.read_text() == "LISTEN=new\n"


def test_lost_applying_to_verifying_cas_keeps_the_result_and_says_so(tmp_path, store, monkeypatch):
    (a,) = files(tmp_path, "a.env")
    path = runbook(tmp_path, f"""
        - id: only
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    import tests.kinds

    real_apply = tests.kinds.Rewrite.apply

    def apply_then_lose_the_step(self, ctx, inputs, plan):
        result = real_apply(self, ctx, inputs, plan)
        # Meanwhile another process's reaper took the step (it thought this owner dead).
        with store.transaction() as conn:
            conn.execute("UPDATE steps SET state = 'interrupted' WHERE run_id = ? AND key = 'only'", (run.id,))
        return result

    monkeypatch.setattr(tests.kinds.Rewrite, "apply", apply_then_lose_the_step)
    assert runner.approve(run.id, "only", user="alice", front_end="console").ok
    row = store.get_step(run.id, "only")
    assert row["state"] == "interrupted"
    assert row["undo"] == {"old_hex": ORIGINAL.hex()}  # the way back is kept
    orphaned = [e for e in store.events(run.id) if e["action"] == "step.result_orphaned"]
    assert len(orphaned) == 1 and orphaned[0]["detail"]["result"]["summary"] == "rewritten"


def test_the_store_refuses_moves_outside_the_transition_table(tmp_path, store):
    path = runbook(tmp_path, """
        - id: w
          kind: wait
          with: {seconds: 0}
    """, approvals="")
    run = Runner(store).start(path, {}, started_by="dave", front_end="console")
    with pytest.raises(IllegalMove):
        store.transition_step(run.id, "w", ["succeeded"], "applying", actor="x", front_end="x")
    with pytest.raises(IllegalMove):
        store.transition_run(run.id, ["rolled_back"], "running", actor="x", front_end="x")


def test_route53_switch_whose_verification_fails_is_rolled_back_exactly(tmp_path, store, aws, dns_server):
    """Seed 000: the authoritative check could not get an answer, so Route 53 stayed at the new
    weights while the run said `rolled_back`. Now the unverified switch is undone and proven."""
    import boto3

    from tests.fixtures.dns_server import route53_source

    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="truth")["HostedZone"]["Id"]
    for sid, weight, ip in (("old", 100, "192.0.2.1"), ("new", 0, "192.0.2.2")):
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE",
            "ResourceRecordSet": {"Name": "api.example.com", "Type": "A", "SetIdentifier": sid, "Weight": weight,
                                  "TTL": 60, "ResourceRecords": [{"Value": ip}]}}]})

    def snapshot() -> str:
        import json

        return json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True)

    before = snapshot()
    dns_server.use_source(route53_source(r53, zone_id))
    dns_server.authoritative = False  # the name server answers, but not authoritatively: verify cannot pass
    path = runbook(tmp_path, f"""
        - id: switch-dns
          kind: dns.switch
          with: {{zone: dns, record: api.example.com, weights: {{old: 0, new: 100}},
                  nameservers: ["{dns_server.address}"], verify_timeout: 1, poll_interval: 0.2}}
          on_failure: rollback
    """, head=f'targets:\n  dns: {{platform: aws-route53, zone: example.com, endpoint_url: "{aws.url}"}}\n')
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    assert runner.approve(run.id, "switch-dns", user="alice", front_end="console").ok
    view = runner.view(run.id)
    switch = next(s for s in view.steps if s.key == "switch-dns")
    assert switch.state == "failed" and "verification failed" in switch.error
    assert snapshot() != before  # Route 53 holds the new weights: that is why it must be undone
    assert view.state == "rolling_back" and [s.key for s in view.steps if s.phase == "rollback"] == ["undo:switch-dns"]
    dns_server.authoritative = True  # the name server is back; the undo can be proven
    assert runner.approve(run.id, "undo:switch-dns", user="bob", front_end="console").ok
    view = runner.view(run.id)
    assert view.state == "rolled_back", view.error
    assert snapshot() == before


def test_resume_and_rollback_act_on_the_targets_rendered_at_start(tmp_path, store, store_where, monkeypatch):
    """The README demo: started where DEMO_DIR was set, rolled back from a shell where it is not."""
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    for where in ("first", "second"):
        (tmp_path / where / "svc.env").write_bytes(ORIGINAL)
    monkeypatch.setenv("DEMO_DIR", str(tmp_path / "first"))
    path = runbook(tmp_path, """
        - id: only
          kind: test.rewrite
          with: {path: "{{ targets.svc.path }}", content: "LISTEN=new\\n"}
    """, head='env: [{name: DEMO_DIR, secret: false}]\n'
              'targets:\n  svc: {platform: file, path: "{{ env.DEMO_DIR }}/svc.env"}\n')
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    assert (tmp_path / "first" / "svc.env").read_text() == "LISTEN=new\n"
    monkeypatch.setenv("DEMO_DIR", str(tmp_path / "second"))  # another shell, another environment
    other = Runner(open_store(store_where))
    assert other.rollback(run.id, user="dave", front_end="console").ok
    approve_all(other, run.id, user="bob")
    assert other.view(run.id).state == "rolled_back"
    assert (tmp_path / "first" / "svc.env").read_bytes() == ORIGINAL
    assert (tmp_path / "second" / "svc.env").read_bytes() == ORIGINAL  # untouched
    monkeypatch.delenv("DEMO_DIR")
    assert Runner(open_store(store_where)).view(run.id).state == "rolled_back"


def test_rollback_is_one_decision_meeting_the_strictest_policy(tmp_path, store):
    a, b = files(tmp_path, "a.env", "b.env")
    steps = f"""
        - id: first
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
        - id: switch
          kind: test.rewrite
          with: {{path: "{b}", content: "WEIGHT=0\\n"}}
          approval: {{approvers: ["bob", "carol"], min: 2, confirm_text: production}}
    """
    path = runbook(tmp_path, steps)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    assert runner.approve(run.id, "first", user="alice", front_end="console").ok
    for user in ("bob", "carol"):
        runner.approve(run.id, "switch", user=user, front_end="console", confirm="production")
    assert runner.view(run.id).state == "succeeded"
    assert runner.rollback(run.id, user="dave", front_end="console").ok
    gate = next(s for s in runner.view(run.id).steps if s.key == "undo:switch")
    assert gate.state == "awaiting_approval"
    assert gate.approval_policy["covers"] == ["undo:switch", "undo:first"]
    assert gate.approval_policy["min"] == 2 and gate.approval_policy["confirm_text"] == "production"
    assert "undo:first" in json_text(gate.plan)  # the one card lists the whole reverse plan
    # mallory approves neither step; alice approves `first` only, so she alone cannot meet `switch`'s 2
    assert runner.approve(run.id, "undo:switch", user="mallory", front_end="console",
                          confirm="production").code == "not_allowed"
    assert runner.approve(run.id, "undo:switch", user="wrong", front_end="console").code == "not_allowed"
    assert runner.approve(run.id, "undo:switch", user="alice", front_end="console",
                          confirm="production").code == "waiting_more"
    assert runner.approve(run.id, "undo:switch", user="bob", front_end="console",
                          confirm="production").code == "waiting_more"  # 2 approvals, but only 1 of switch's
    assert b.read_text() == "WEIGHT=0\n"
    assert runner.approve(run.id, "undo:switch", user="carol", front_end="console", confirm="production").ok
    view = runner.view(run.id)
    assert view.state == "rolled_back"
    assert a.read_bytes() == ORIGINAL and b.read_bytes() == ORIGINAL


def test_per_step_rollback_approval_stays_available(tmp_path, store):
    a, b = files(tmp_path, "a.env", "b.env")
    path = runbook(tmp_path, f"""
        - id: first
          kind: test.rewrite
          with: {{path: "{a}", content: "LISTEN=new\\n"}}
        - id: second
          kind: test.rewrite
          with: {{path: "{b}", content: "WEIGHT=0\\n"}}
    """, head="rollback_approval: per_step\n")
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    approve_all(runner, run.id)
    assert runner.rollback(run.id, user="dave", front_end="console").ok
    assert runner.approve(run.id, "undo:second", user="bob", front_end="console").ok
    assert b.read_bytes() == ORIGINAL and a.read_bytes() != ORIGINAL
    assert runner.view(run.id).state == "rolling_back"
    assert runner.approve(run.id, "undo:first", user="bob", front_end="console").ok
    assert runner.view(run.id).state == "rolled_back" and a.read_bytes() == ORIGINAL


def json_text(value) -> str:
    import json

    return json.dumps(value)


def test_a_secret_confirm_text_never_reaches_cli_output(tmp_path, store_where):
    word = "sekret-confirm-word-5150"
    path = runbook(tmp_path, f"""
        - id: only
          kind: test.rewrite
          with: {{path: "{tmp_path}/a.env", content: "x"}}
          approval: {{confirm_text: "{{{{ env.CONFIRM_WORD }}}}"}}
    """, head="env: [CONFIRM_WORD]\n")
    (tmp_path / "a.env").write_bytes(ORIGINAL)

    def cli(*args):
        return run_cli(store_where, *args, CONFIRM_WORD=word)

    started = cli("run", str(path), "--as", "dave")
    assert started.returncode == 3
    run_id = open_store(store_where).list_runs()[0]["id"]
    outputs = [started, cli("status", run_id, "--json"), cli("status", "--json"),
               cli("approve", run_id, "only", "--as", "alice", "--confirm", "wrong"), cli("approve", run_id, "only",
                                                                                         "--as", "alice")]
    for proc in outputs:
        assert word not in proc.stdout + proc.stderr, proc.args
    assert "the confirmation text" in outputs[3].stdout + outputs[4].stdout
    assert cli("approve", run_id, "only", "--as", "alice", "--confirm", word).returncode == 0
    assert (tmp_path / "a.env").read_text() == "x"


def test_a_refusing_plan_fails_the_dry_run_and_ci(tmp_path):
    path = runbook(tmp_path, f"""
        - id: switch
          kind: test.refuse
          with: {{until: "{tmp_path}/never"}}
    """)
    proc = run_cli(tmp_path / "store.sqlite", "plan", str(path), "--as", "dave")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the plan refused" in proc.stdout


def test_what_an_interrupted_step_offers_follows_its_kinds_idempotence(tmp_path, store):
    (a,) = files(tmp_path, "a.env")
    path = runbook(tmp_path, f"""
        - id: rewrite
          kind: test.rewrite
          with: {{path: "{a}", content: "x"}}
        - id: pause
          kind: wait
          with: {{seconds: 0}}
    """)
    runner = Runner(store)
    run = runner.start(path, {}, started_by="dave", front_end="console")
    with store.transaction() as conn:
        conn.execute("UPDATE steps SET state = 'applying', owner = 'nohost:1:-:dead', heartbeat_at = 0"
                     " WHERE run_id = ?", (run.id,))
    assert sorted(runner.reap()) == [(run.id, "pause"), (run.id, "rewrite")]
    offers = {s.key: s.offers for s in runner.view(run.id).steps}
    assert offers["pause"][0] == "retry"  # wait is idempotent: re-running it is safe
    assert offers["rewrite"][0] == "verify"  # not idempotent: check before re-applying
    retried = runner.resolve(run.id, "rewrite", "retry", user="bob", front_end="console")
    assert retried.ok and "not idempotent" in retried.message
