"""Seed 000, end to end: WORKERS=4 did not make the jump from ECS to App Platform.

The old side is an ECS service in moto (server mode) whose task definition sets WORKERS=4 and
whose command runs `uvicorn ... --workers ${WORKERS:-1}`; the new side is an App Platform app in
the stateful fake whose spec lacks WORKERS. env.diff must fail naming WORKERS (and the default that
would take over), env.set must fix it, the diff must then pass, and rolling env.set back must
leave the spec exactly as it was. Every request sent to the fake is then replayed against Prism,
which proves the fake was driven only with requests the real API accepts.
"""

from __future__ import annotations

import json

import pytest

from bot.platforms import digitalocean as do
from bot.runbook.targets import DoAppTarget
from bot.steps.base import StepError, get_kind
from bot.steps.context import StepContext
from tests.fixtures.do_fake import replay_on_prism
from tests.fixtures.ecs_env import make_ecs_service, put_secret

COMMAND = ["sh", "-c", "uvicorn app.main:app --host 0.0.0.0 --port 8080 --workers ${WORKERS:-1}"]
NEW_SPEC = {
    "name": "api-production",
    "region": "nyc",
    "services": [{
        "name": "api",
        "run_command": "uvicorn app.main:app --host 0.0.0.0 --port 8080 --workers ${WORKERS:-1}",
        "instance_count": 2,
        "http_port": 8080,
        "envs": [
            {"key": "DATABASE_URL", "value": "postgresql://doadmin:do-db-password@db:25060/app",
             "scope": "RUN_TIME", "type": "SECRET"},
            {"key": "LOG_LEVEL", "value": "info", "scope": "RUN_TIME", "type": "GENERAL"},
        ],
    }],
}


@pytest.fixture
def seed(aws, do_fake, monkeypatch):
    do._reset_for_tests()
    db = put_secret(aws.url, "prod/api/database-url", "postgresql://api:rds-db-password@rds:5432/app")
    old = make_ecs_service(aws.url, environment={"WORKERS": "4", "LOG_LEVEL": "info"},
                           secrets={"DATABASE_URL": db}, command=COMMAND)
    app_id = do_fake.add_app(NEW_SPEC)
    do_fake.use(monkeypatch)
    ctx = StepContext(run_id="r", step_id="s", runbook_name="aws-ecs-to-do-app", params={}, outputs={},
                      targets={"old": old, "new": DoAppTarget(app="api-production", component="api")})
    return ctx, app_id


def test_seed000_workers_found_fixed_and_rolled_back(seed, do_fake, prism):
    ctx, app_id = seed
    diff, setter = get_kind("env.diff"), get_kind("env.set")
    diff_in = diff.Inputs(platforms=["old", "new"], expect_differ=["DATABASE_URL"])

    plan = diff.plan(ctx, diff_in)
    assert plan.blocking == ["WORKERS: missing on new; the command's `${WORKERS:-1}` would quietly use '1'"]
    assert plan.table[1][:2] == ["WORKERS", "missing"]
    rows = {row[0]: row for row in plan.table[1:]}
    assert rows["DATABASE_URL"][1] == "secret-unknown"  # SECRET on App Platform: compared by presence
    with pytest.raises(StepError, match="WORKERS"):
        diff.apply(ctx, diff_in, plan)

    before = do_fake.spec(app_id)
    set_in = setter.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS"]})
    set_plan = setter.plan(ctx, set_in)
    assert [c.resource for c in set_plan.changes] == ["new: WORKERS"] and set_plan.blocking == []
    result = setter.apply(ctx, set_in, set_plan)
    assert setter.verify(ctx, set_in, result).ok
    envs = {e["key"]: e for e in do_fake.spec(app_id)["services"][0]["envs"]}
    assert envs["WORKERS"]["value"] == "4" and envs["WORKERS"]["scope"] == "RUN_TIME"

    passed = diff.apply(ctx, diff_in, diff.plan(ctx, diff_in))
    assert passed.outputs["problems"] == [] and "WORKERS" not in passed.outputs["missing"]

    setter.rollback(ctx, set_in, result)
    assert do_fake.spec(app_id) == before  # exactly the old spec, SECRET ciphertext included
    assert setter.verify_rollback(ctx, set_in, result, None).ok
    assert diff.plan(ctx, diff_in).blocking[0].startswith("WORKERS: missing on new")

    stored = json.dumps([plan.model_dump(), set_plan.model_dump(), result.model_dump(), passed.model_dump()])
    for value in ("rds-db-password", "do-db-password"):
        assert value not in stored

    methods = {(r.method, r.path.count("/")) for r in do_fake.recorded}
    assert methods == {("GET", 2), ("PUT", 3)}  # list (find by name) and spec updates
    for rec, status, body in replay_on_prism(do_fake.recorded, prism.url):
        assert status < 400, (rec.method, rec.path, status, body)


def test_prism_rejects_an_invalid_spec_update(prism, do_fake):
    """The replay is a real check: a request that breaks the contract is refused."""
    from tests.fixtures.do_fake import Recorded

    bad = Recorded("PUT", "/v2/apps/4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf", {},
                   {"spec": {"name": "api-production", "services": [{"name": "api", "envs": [{"key": "BAD KEY"}]}]}})
    [(_, status, _)] = replay_on_prism([bad], prism.url)
    assert status == 422
