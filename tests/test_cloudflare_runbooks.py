"""The seed 002 and seed 004 runbooks: they validate, and their Cloudflare steps plan against the
contract-checked stand-in (the targets as the runbook writes them, pointed at the stand-in)."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.runbook.load import load_runbook
from bot.runbook.targets import parse_target
from bot.steps.base import get_kind
from tests.fixtures.cloudflare_standin import cloudflare_api  # noqa: F401 (fixture)
from tests.fixtures.dns_server import step_context

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"


def _staging(name: str, api_url: str) -> tuple[dict, dict]:
    raw = yaml.safe_load((RUNBOOKS / name).read_text().replace("{{ params.env }}", "staging"))
    targets = {}
    for key, spec in raw["targets"].items():
        if spec["platform"].startswith("cloudflare"):
            spec = {**spec, "api_url": api_url}
        targets[key] = parse_target(spec)
    return raw, targets


def _plan(raw, targets, step_id):
    step = next(s for s in raw["steps"] if s["id"] == step_id)
    kind = get_kind(step["kind"])
    return kind.plan(step_context(targets), kind.Inputs.model_validate(step["with"]))


def test_seed_002_validates_and_its_proxied_dns_switch_plans_as_immediate(cloudflare_api):
    loaded = load_runbook(str(RUNBOOKS / "heroku-to-beanstalk-cloudflare.yaml"))
    assert [s.kind for s in loaded.model.steps][:6] == ["env.set", "env.diff", "app.maintenance", "db.copy",
                                                         "http.check", "dns.switch"]
    zid = cloudflare_api.add_zone("pinecast.com")
    cloudflare_api.add_record(zid, "pinecast.com", "CNAME", "pinecast-production.herokudns.com", proxied=True)
    raw, targets = _staging("heroku-to-beanstalk-cloudflare.yaml", cloudflare_api.url)
    plan = _plan(raw, targets, "switch-dns")
    assert not plan.blocking
    assert any("immediate" in w for w in plan.warnings)
    assert "awseb-pinecast.us-east-1.elb.amazonaws.com" in plan.summary


def test_seed_004_validates_and_both_shift_steps_plan_against_the_load_balancer(cloudflare_api):
    load_runbook(str(RUNBOOKS / "heroku-to-ecs-cloudflare-lb.yaml"))
    zid = cloudflare_api.add_zone("bond.example")
    heroku = cloudflare_api.add_pool("heroku", [("heroku", "bond-staging.herokudns.com", 1)])
    cloudflare_api.add_pool("ecs", [("alb", "bond-staging.eu-west-1.elb.amazonaws.com", 1)])
    cloudflare_api.add_load_balancer(zid, "api.bond.example", [heroku], heroku, steering_policy="off")
    raw, targets = _staging("heroku-to-ecs-cloudflare-lb.yaml", cloudflare_api.url)
    first = _plan(raw, targets, "shift-first-half")
    assert [r[0] for r in first.table] == ["stage", "now", "10%", "25%"]
    assert first.table[-1][1] == "ecs=0.25, heroku=0.75"
    second = _plan(raw, targets, "shift-second-half")
    assert [r[0] for r in second.table] == ["stage", "now", "50%", "100%"]
    assert "3 watch signal(s)" in second.summary


def test_the_shipped_schema_stays_small():
    # Inlining a nested model with template alternatives at every level once made it 600 MB.
    assert (RUNBOOKS / "runbook.schema.json").stat().st_size < 5_000_000
