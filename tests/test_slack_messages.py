"""Every Slack template, rendered with realistic and extreme data, parsed by slack_sdk's models.

slack_sdk's block models check Slack's limits when they serialise (`to_dict` runs
`validate_json`), so parsing and re-serialising each block proves Slack would accept it; the limits
the models do not check (50 blocks, the aggregate size, button values) are asserted directly.
"""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot import secrets
from bot.chat.slack import messages
from bot.chat.slack.ids import Action
from bot.engine.channel import Progress, RunView, StepView

NOW = 1_790_000_000.0


def make_step(i: int = 0, **kw) -> StepView:
    base = dict(run_id="r-20261122-abcd", key=f"step-{i}", step_id=f"step-{i}", kind="env.diff", phase="forward",
                state="succeeded", index=i)
    base.update(kw)
    return StepView(**base)


def make_run(steps=None, **kw) -> RunView:
    base = dict(id="r-20261122-abcd", runbook="aws-ecs-to-do-app", state="running",
                params={"env": "production", "region": "us-east-1"}, started_by="U0ALICE", front_end="slack",
                created_at=NOW, updated_at=NOW + 95, steps=steps if steps is not None else [make_step(0)],
                chat={"channel": "C0OPS"})
    base.update(kw)
    return RunView(**base)


POLICY = {"approvers": ["@platform-oncall", "U0BOB", "ana@example.com"], "min": 2, "allow_self": False,
          "confirm_text": "production", "expires_after": 3600}

ENV_MATRIX = [["variable", "ECS (old)", "App Platform (new)", "status"]] + [
    [f"VAR_{i:03d}_" + "X" * 30, f"fp:{i:012x}", f"fp:{i:012x}" if i % 7 else "missing", "ok" if i % 7 else "MISSING"]
    for i in range(400)
]
UNICODE = "Überprüfung ✓ 数据库迁移 — ملاحظة 🚀 <!channel> & <@U0EVIL> `code` ```fence```"


def realistic_plan() -> dict:
    return {
        "summary": "3 variables differ between ECS and App Platform; WORKERS is missing on the new side",
        "changes": [
            {"action": "set", "resource": "api-production env WORKERS", "before": None, "after": "fp:9a8b7c6d5e4f",
             "detail": "copied from the ECS task definition"},
            {"action": "update", "resource": "api-production env LOG_LEVEL", "before": "info", "after": "warn"},
        ],
        "warnings": ["PgBouncer in transaction mode in front of the target: prepared statements will fail"],
        "blocking": [],
        "table": ENV_MATRIX[:12],
        "data": {},
        "no_op": False,
    }


def extreme_plan() -> dict:
    return {
        "summary": ("S" * 5000) + UNICODE,
        "changes": [{"action": "copy", "resource": f"table public.t{i:03d} " + UNICODE, "before": "0 rows",
                     "after": f"{i * 1000} rows", "detail": "x" * 300} for i in range(200)],
        "warnings": [UNICODE * 20 for _ in range(30)],
        "blocking": ["TTL of api.example.com is 86400 s; lower it a day before the switch " * 50],
        "table": ENV_MATRIX,
        "data": {},
        "no_op": False,
    }


def contexts() -> dict[str, list[dict]]:
    """Template name -> contexts to render (realistic first, then extreme)."""
    awaiting = make_step(2, key="switch-dns", step_id="switch-dns", kind="dns.switch", state="awaiting_approval",
                         plan=realistic_plan(), needs_approval=True, approval_policy=POLICY, requested_at=NOW,
                         approvals=[{"approver": "U0BOB", "decision": "approve", "reason": None, "at": NOW + 10}])
    awaiting_extreme = make_step(3, key="copy-db" + "ü" * 200, step_id="copy-db" + "ü" * 200, kind="db.copy",
                                 state="awaiting_approval", plan=extreme_plan(), needs_approval=True,
                                 approval_policy={**POLICY, "approvers": [f"U{i:08d}" for i in range(300)],
                                                  "confirm_text": UNICODE},
                                 requested_at=NOW,
                                 approvals=[{"approver": f"U{i:08d}", "decision": "approve", "reason": UNICODE * 5,
                                             "at": NOW} for i in range(60)])
    finished = make_step(4, state="failed", plan=realistic_plan(),
                         result={"summary": "copied 200 tables", "outputs": {}, "undo": {}, "details": {},
                                 "table": [["table", "rows"]] + [[f"t{i}", str(i)] for i in range(200)]},
                         verification={"ok": False, "summary": "row counts differ on 2 tables", "details": {},
                                       "table": [["t", "src", "dst"], ["t1", "10", "9"]]},
                         error=("Traceback line\n" * 400) + UNICODE, started_at=NOW, finished_at=NOW + 4000)
    interrupted = make_step(5, state="interrupted", plan=realistic_plan(), started_at=NOW)
    many_steps = [make_step(i, state=["succeeded", "pending", "failed", "awaiting_approval"][i % 4],
                            step_id=f"step-{i}-" + "é" * 50) for i in range(200)]
    long_params = {f"PARAM_{i}" + UNICODE: UNICODE * 10 for i in range(100)}
    signals = [{"name": "edge_504_rate", "label": "Edge 504 rate", "value": 0.031, "unit": "%", "baseline": 0.002,
                "threshold": 0.01, "state": "breach", "sparkline": "▁▁▂▁▃▇█", "detail": "504s from the CDN edge"},
               {"name": "log_volume", "label": "Log volume", "value": 1200, "unit": "lines/min", "baseline": 1500,
                "threshold": 300, "state": "ok", "sparkline": "▅▅▆▅▅▅▅", "detail": None},
               {"name": "probe", "label": "Probe /healthz", "value": "200 OK", "unit": None, "baseline": None,
                "threshold": None, "state": "ok", "sparkline": "", "detail": None}]
    extreme_signals = [{**signals[i % 3], "name": f"sig{i}", "label": UNICODE * 3, "detail": UNICODE * 20}
                       for i in range(200)]
    summary = {"run_id": "r1", "tick_no": 7, "at": NOW, "gap_seconds": None, "final": False, "state": "warn",
               "signals": signals, "headline": "Changed since summary #6: Edge 504 rate ok → breach."}
    alert = {**summary, "state": "breach", "on_call": ["@platform-oncall", "U0BOB"],
             "evidence": ["12 of 400 requests answered 504 at the edge in 10 minutes", "api p99 4.2 s"],
             "breached": ["edge_504_rate"]}
    run = make_run([awaiting, finished])
    return {
        "run_header": [{"run": run}, {"run": make_run(many_steps, params=long_params, error=UNICODE * 300,
                                                      runbook="r" * 300, dry_run=True)}],
        "step": [{"run": run, "step": awaiting, "progress": None},
                 {"run": run, "step": awaiting_extreme, "progress": None},
                 {"run": run, "step": finished, "progress": None},
                 {"run": run, "step": interrupted, "progress": None},
                 {"run": run, "step": make_step(6, state="applying", plan=realistic_plan()),
                  "progress": Progress(done=41, total=200, message="copying public.orders " + UNICODE,
                                       unit="tables", rate=2.5, eta_seconds=64)}],
        "notify": [{"run": run, "text": "resume refused: step copy-db was applying", "level": "warning"},
                   {"run": run, "text": UNICODE * 400, "level": "error"}],
        "run_finished": [{"run": make_run([finished], state="failed", error="step copy-db failed")},
                         {"run": make_run(many_steps, state="succeeded", error=UNICODE * 500)}],
        "help": [{}],
        "runbook_list": [{"runbooks": [{"name": "aws-ecs-to-do-app", "description": "Move the api service",
                                        "params": ["env"], "error": None}], "directory": "runbooks"},
                         {"runbooks": [{"name": f"rb-{i}" + UNICODE, "description": UNICODE * 10,
                                        "params": [UNICODE] * 30, "error": UNICODE} for i in range(200)],
                          "directory": "/x"},
                         {"runbooks": [], "directory": "/empty"}],
        "run_status": [{"runs": [run]}, {"runs": [make_run(many_steps, error=UNICODE * 100)] * 80}, {"runs": []}],
        "usage_error": [{"problem": "unknown runbook 'aws-ecs-to-do'", "usage": "/runbook run NAME k=v ...",
                         "suggestions": ["aws-ecs-to-do-app"]},
                        {"problem": UNICODE * 300, "usage": UNICODE, "suggestions": [UNICODE] * 50}],
        "refusal": [{"message": "You are not among the approvers of this step", "code": "not_allowed",
                     "run_id": "r1", "step_key": "switch-dns"},
                    {"message": UNICODE * 300, "code": "x", "run_id": "r1", "step_key": None}],
        "watch_summary": [{"summary": summary},
                          {"summary": {**summary, "final": True, "gap_seconds": 5400, "signals": extreme_signals,
                                       "chart_png": b"\x89PNG"}}],
        "watch_alert": [{"alert": alert},
                        {"alert": {**alert, "signals": extreme_signals, "breached": [f"sig{i}" for i in range(200)],
                                   "on_call": [f"U{i:08d}" for i in range(100)], "evidence": [UNICODE * 30] * 100}}],
        "approval_request": [{"run": run, "step": awaiting, "mentions": ["<!subteam^S1|@platform-oncall>", "<@U0BOB>"]},
                             {"run": run, "step": awaiting_extreme, "mentions": [f"<@U{i:08d}>" for i in range(300)]}],
        "say": [{"text": "Started demo as run r-1: follow it in its thread."}, {"text": UNICODE * 500}],
        **new_template_contexts(run, awaiting, awaiting_extreme, many_steps, summary, UNICODE),
        "confirm_modal": [{"run": run, "step": awaiting, "confirm_text": "production",
                           "metadata": json.dumps({"run": run.id, "step": awaiting.key, "channel": "C0OPS"})},
                          {"run": run, "step": awaiting_extreme, "confirm_text": UNICODE * 50,
                           "metadata": json.dumps({"run": "r" * 100, "step": "s" * 255, "channel": "C0OPS"})}],
    }


def new_template_contexts(run, awaiting, awaiting_extreme, many_steps, summary, unicode) -> dict[str, list[dict]]:
    """The launcher, reject modal, App Home and reminder templates (bot.chat.slack.launcher/home/reminders)."""
    from pathlib import Path

    from bot.chat.slack import launcher
    from bot.runbook.model import Param, Runbook

    root = Path(__file__).resolve().parent.parent
    shipped = launcher.catalogue(root / "runbooks")
    wide = Runbook.model_validate({
        "name": "wide", "description": unicode * 20,
        "params": {f"p{i}": {"type": ["string", "int", "bool", "choice"][i % 4], "description": unicode * 30,
                             **({"choices": [f"c{j}" + unicode for j in range(100)]} if i % 4 == 3 else {})}
                   for i in range(40)},
        "steps": [{"id": "a", "kind": "wait", "with": {"seconds": 1}}]})
    many = {f"rb{i}": launcher.Choice(f"rb{i}" + "x" * 200, Path("/x"), wide) for i in range(100)}
    many["broken"] = launcher.Choice("broken", Path("/x"), None, unicode * 100)
    assert isinstance(wide.params["p0"], Param)
    item = {"run": run, "step": awaiting, "link": "https://fake.slack.com/archives/C0OPS/p1700000001000100",
            "mine": True, "expired": False}
    far = {"run": run, "step": awaiting_extreme, "link": None, "mine": False, "expired": True}
    return {
        "launcher_form": [launcher.form_context(shipped, selected=None, channel="C0OPS"),
                          launcher.form_context(shipped, selected="aws-ecs-to-do-app", channel=None),
                          launcher.form_context(many, selected="rb1", channel=None),
                          launcher.form_context(many, selected="broken", channel="C0OPS")],
        "launcher_plan": [launcher.plan_context(phase="planning", runbook="demo", params={"env": "staging"},
                                                channel="C0OPS"),
                          launcher.plan_context(phase="ready", runbook="r" * 300, params={"p": unicode * 10},
                                                channel=None, steps=run.steps + [awaiting_extreme] + many_steps,
                                                preview="r-1"),
                          launcher.plan_context(phase="started", runbook="demo", params={}, channel="C0OPS",
                                                run_id="r-1"),
                          launcher.plan_context(phase="refused", runbook="demo", params={}, channel="C0OPS",
                                                error=unicode * 100)],
        "reject_modal": [{"run": run, "step": awaiting, "metadata": json.dumps({"run": run.id, "step": awaiting.key})},
                         {"run": run, "step": awaiting_extreme, "metadata": json.dumps({"run": "r" * 100})}],
        "app_home": [{"user": "U0BOB", "waiting": [item], "runs": [item],
                      "watches": [{"run_id": "r1", "line": "No change since summary #3: all 4 signals ok.",
                                   "link": item["link"], "tick_no": 4}]},
                     {"user": "U0BOB", "waiting": [far] * 100, "runs": [far] * 100,
                      "watches": [{"run_id": "r" * 100, "line": unicode * 100, "link": None, "tick_no": 1}] * 100},
                     {"user": "U0BOB", "waiting": [], "runs": [], "watches": []}],
        "approval_reminder": [{"run": run, "step": awaiting, "mentions": ["<!subteam^S1|@platform-oncall>"],
                               "kind": "reminder", "age": 600, "dm": False, "link": item["link"]},
                              {"run": run, "step": awaiting_extreme, "mentions": [f"<@U{i:08d}>" for i in range(300)],
                               "kind": "escalated", "age": 99999, "dm": True, "dm_count": 300, "link": None}],
        "approval_expired": [{"run": run, "step": awaiting}, {"run": run, "step": awaiting_extreme}],
        "alert_page": [{"run": run, "tick_no": 4, "pages": 2, "mentions": ["<!subteam^S1|@platform-oncall>"],
                        "since": 1_790_000_000.0},
                       {"run": run, "tick_no": 10**9, "pages": 999, "mentions": [f"<@U{i:08d}>" for i in range(300)],
                        "since": 1_790_000_000.0}],
    }


def test_every_template_has_test_data():
    assert set(messages.template_names()) == set(contexts())


def _check_blocks(blocks: list[dict], *, view: bool = False) -> None:
    # Messages: 50 blocks and the undocumented aggregate limit (msg_blocks_too_long). Modals and the
    # Home tab: 100 blocks, and no aggregate limit is documented (slack_sdk's View checks the rest).
    assert len(blocks) <= (100 if view else messages.MAX_BLOCKS)
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.to_dict()  # validates Slack's per-element limits, raises SlackObjectFormationError
        if block["type"] == "section" and "text" in block:
            assert len(block["text"]["text"]) <= messages.MAX_SECTION
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["value"]) <= messages.MAX_BUTTON_VALUE
                json.loads(element["value"])
    if not view:
        assert sum(len(json.dumps(b, ensure_ascii=False)) for b in blocks) <= messages.MAX_TOTAL + 1000


@pytest.mark.parametrize("name,index", [(n, i) for n, cs in contexts().items() for i in range(len(cs))])
def test_template_renders_valid_block_kit(name, index):
    msg = messages.render(name, contexts()[name][index])
    if msg.view is not None:
        view = View(**msg.view)
        view.to_dict()  # validates title, private_metadata (3000) and blocks
        _check_blocks(msg.view["blocks"], view=True)
        return
    assert msg.text.strip(), "every message has a plain-text fallback"
    assert len(msg.text) <= messages.MAX_TEXT
    _check_blocks(msg.blocks)


def test_extreme_step_is_cut_with_the_full_output_kept():
    ctx = contexts()["step"][1]
    msg = messages.render("step", ctx)
    assert msg.overflow is not None
    # the overflow holds what the message could not: the last row of the 400-row env matrix
    assert "VAR_399_" in msg.overflow
    assert "VAR_399_" not in json.dumps(msg.blocks)
    assert any("full output attached" in json.dumps(b) for b in msg.blocks)
    # the approval buttons survive the cut: the message stays approvable
    actions = [b for b in msg.blocks if b["type"] == "actions"]
    assert [e["action_id"] for e in actions[0]["elements"]] == [Action.APPROVE.value, Action.REJECT.value]


def test_realistic_step_is_not_cut_and_shows_the_plan_and_buttons():
    msg = messages.render("step", contexts()["step"][0])
    assert msg.overflow is None
    dumped = json.dumps(msg.blocks, ensure_ascii=False)
    assert "WORKERS" in dumped and "PgBouncer" in dumped
    assert "(1 of 2)" in dumped  # M-of-N progress
    approve = [b for b in msg.blocks if b["type"] == "actions"][0]["elements"][0]
    # the button carries the digest of the plan shown, so a decision on a re-planned step is refused
    assert json.loads(approve["value"]) == {"run": "r-20261122-abcd", "step": "switch-dns", "confirm": True,
                                            "digest": None}


def test_decided_step_shows_who_and_when_instead_of_buttons():
    step = make_step(1, state="applying", needs_approval=True, approval_policy=POLICY, plan=realistic_plan(),
                     approvals=[{"approver": "U0BOB", "decision": "approve", "reason": None, "at": NOW},
                                {"approver": "U0CAROL", "decision": "approve", "reason": None, "at": NOW + 5}])
    msg = messages.render("step", {"run": make_run(), "step": step, "progress": None})
    assert not [b for b in msg.blocks if b["type"] == "actions"]
    dumped = json.dumps(msg.blocks)
    assert "<@U0BOB>" in dumped and "<@U0CAROL>" in dumped and f"<!date^{int(NOW)}^" in dumped


def test_data_cannot_inject_mentions():
    msg = messages.render("notify", {"run": make_run(), "text": "ping <!channel> and <@U0EVIL>", "level": "info"})
    dumped = json.dumps(msg.blocks)
    assert "<!channel>" not in dumped and "<@U0EVIL>" not in dumped
    assert "&lt;!channel&gt;" in dumped


def test_registered_secrets_are_masked_in_rendered_messages():
    secrets.register("canary-s3cr3t-value-123")
    plan = realistic_plan()
    plan["summary"] = "DATABASE_URL=canary-s3cr3t-value-123"
    step = make_step(1, plan=plan, error="failed with canary-s3cr3t-value-123")
    msg = messages.render("step", {"run": make_run(), "step": step, "progress": None})
    assert "canary-s3cr3t-value-123" not in json.dumps(msg.blocks) + msg.text
    assert secrets.MASK in json.dumps(msg.blocks, ensure_ascii=False)


def test_table_chunks_fit_sections_and_keep_every_row():
    chunks = messages.table_chunks(ENV_MATRIX)
    assert all(len(c) <= 2900 for c in chunks)
    assert sum(c.count("\n") + 1 for c in chunks) == len(ENV_MATRIX) + 1  # rows + the rule line


def test_cli_hints_become_slack_actions():
    """Engine sentences name CLI commands; in Slack they become the slash command or the button."""
    assert messages.slack_hints("re-plan the run (`runbook-bot replan r-1`) to get a fresh plan") == \
        "re-plan the run (`/runbook replan r-1`) to get a fresh plan"
    assert "runbook-bot" not in messages.slack_hints("decide it first (`runbook-bot resolve r-1 copy-db rollback`)")
    failed = messages.render("run_finished", contexts()["run_finished"][0])
    assert "runbook-bot" not in json.dumps(failed.blocks) and "/runbook rollback" not in json.dumps(failed.blocks)
    buttons = [b["accessory"] for b in failed.blocks if b.get("accessory", {}).get("type") == "button"]
    assert [b["action_id"] for b in buttons] == [Action.ROLLBACK.value]
    refusal = messages.render("refusal", {"message": "expired 5m ago; re-plan the run (`runbook-bot replan r-1`)",
                                          "code": "expired", "run_id": "r-1", "step_key": "switch-dns"})
    assert "`/runbook replan r-1`" in json.dumps(refusal.blocks)
    assert [e["action_id"] for b in refusal.blocks if b["type"] == "actions" for e in b["elements"]] == \
        [Action.REREQUEST.value]


@pytest.mark.parametrize("name", ["step", "notify", "say", "run_finished", "refusal"])
def test_no_cli_hint_reaches_slack(name):
    hint = "decide it first (`runbook-bot resolve r-1 copy-db rollback`) or `runbook-bot replan r-1`"
    run = make_run(state="failed", error=hint)
    ctx = {"step": {"run": run, "step": make_step(1, state="failed", error=hint), "progress": None},
           "notify": {"run": run, "text": hint, "level": "error"}, "say": {"text": hint},
           "run_finished": {"run": run},
           "refusal": {"message": hint, "code": "interrupted", "run_id": "r-1", "step_key": None}}[name]
    msg = messages.render(name, ctx)
    shown = json.dumps({"text": msg.text, "blocks": msg.blocks}, ensure_ascii=False)
    assert "runbook-bot" not in shown
    assert "`/runbook replan r-1`" in shown and "*Rollback* button on step copy-db" in shown
