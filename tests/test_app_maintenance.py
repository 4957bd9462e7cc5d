"""`app.maintenance`: Heroku's mode and config var (stateful fake), a page server on ECS (moto), App Platform (Prism)."""

from __future__ import annotations

import boto3
import pytest

from bot import secrets
from bot.platforms import digitalocean as do
from bot.runbook.targets import AwsEcsTarget, DoAppTarget, HerokuTarget
from bot.steps.base import PlanRefused, get_kind
from tests.fixtures.dns_server import ManualClock, step_context
from tests.fixtures.heroku_fake import FakeHeroku


@pytest.fixture
def heroku_fake(monkeypatch):
    fake = FakeHeroku({"legacy": {"formation": {"web": 2, "maintenance": 0},
                                  "config": {"DATABASE_URL": "postgres://u:pw-very-secret@db/x"}}}, boot_polls=1)
    monkeypatch.setenv("HEROKU_API_URL", fake.url)
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-test-key")
    yield fake
    fake.stop()


def _run(kind, ctx, inputs):
    plan = kind.plan(ctx, inputs)
    result = kind.apply(ctx, inputs, plan)
    assert kind.verify(ctx, inputs, result).ok
    return plan, result


def test_heroku_maintenance_mode_on_and_rollback(heroku_fake):
    ctx = step_context({"old": HerokuTarget(app="legacy")})
    kind = get_kind("app.maintenance")
    inputs = kind.Inputs(target="old")
    plan, result = _run(kind, ctx, inputs)
    assert "off -> on" in plan.summary and plan.data["mode"] == "platform"
    assert heroku_fake.apps["legacy"]["maintenance"] is True
    # The change went out as the Platform API's App Update (the fake refuses any other body with a
    # 422), and reads back through the product's own adapter, not the fake's memory.
    from bot.platforms import heroku
    from bot.platforms.heroku import maintenance

    assert maintenance.is_on(heroku.Api(), "legacy") is True
    undo = kind.rollback(ctx, inputs, result)
    assert heroku_fake.apps["legacy"]["maintenance"] is False
    assert kind.verify_rollback(ctx, inputs, result, undo).ok


def test_heroku_already_in_maintenance_is_a_no_op_and_rollback_leaves_it_on(heroku_fake):
    heroku_fake.apps["legacy"]["maintenance"] = True
    ctx = step_context({"old": HerokuTarget(app="legacy")})
    kind = get_kind("app.maintenance")
    inputs = kind.Inputs(target="old")
    plan, result = _run(kind, ctx, inputs)
    assert plan.no_op
    kind.rollback(ctx, inputs, result)
    assert heroku_fake.apps["legacy"]["maintenance"] is True  # it was on before the step: stays on


def test_env_flag_on_heroku_sets_and_unsets_the_config_var(heroku_fake):
    ctx = step_context({"old": HerokuTarget(app="legacy")})
    kind = get_kind("app.maintenance")
    inputs = kind.Inputs(target="old", mode="env")
    plan, result = _run(kind, ctx, inputs)
    assert heroku_fake.apps["legacy"]["config"]["MAINTENANCE"] == "1"
    assert "MAINTENANCE unset -> MAINTENANCE=1" in plan.summary
    kind.rollback(ctx, inputs, result)
    assert "MAINTENANCE" not in heroku_fake.apps["legacy"]["config"]
    assert heroku_fake.apps["legacy"]["config"]["DATABASE_URL"].startswith("postgres://")
    # Reading config vars registers their values as secrets: none can leak through the result.
    assert "pw-very-secret" not in str(result.model_dump())
    assert secrets.is_registered("postgres://u:pw-very-secret@db/x")


def test_env_flag_holding_another_value_is_refused(heroku_fake):
    heroku_fake.apps["legacy"]["config"]["MAINTENANCE"] = "scheduled-2026"
    ctx = step_context({"old": HerokuTarget(app="legacy")})
    kind = get_kind("app.maintenance")
    with pytest.raises(PlanRefused, match="MAINTENANCE is already set to another value"):
        kind.plan(ctx, kind.Inputs(target="old", mode="env"))


def test_process_mode_scales_the_maintenance_formation(heroku_fake):
    ctx = step_context({"old": HerokuTarget(app="legacy")}, clock=ManualClock())
    kind = get_kind("app.maintenance")
    inputs = kind.Inputs(target="old", mode="process", process_count=1, timeout=30)
    _plan, result = _run(kind, ctx, inputs)
    assert heroku_fake.apps["legacy"]["formation"]["maintenance"] == 1
    kind.rollback(ctx, inputs, result)
    assert heroku_fake.apps["legacy"]["formation"]["maintenance"] == 0


def test_ecs_needs_a_page_server_and_scales_it(aws):
    client = boto3.client("ecs", endpoint_url=aws.url, region_name="us-east-1")
    client.create_cluster(clusterName="prod")
    client.register_task_definition(family="page", containerDefinitions=[{"name": "p", "image": "p:1", "memory": 64}])
    client.create_service(cluster="prod", serviceName="maint-page", taskDefinition="page", desiredCount=0)
    targets = {"old": AwsEcsTarget(cluster="prod", service="api", endpoint_url=aws.url),
               "page": AwsEcsTarget(cluster="prod", service="maint-page", endpoint_url=aws.url)}
    ctx = step_context(targets)
    kind = get_kind("app.maintenance")
    with pytest.raises(PlanRefused, match="ECS has no maintenance switch: give `process_target`"):
        kind.plan(ctx, kind.Inputs(target="old"))
    with pytest.raises(PlanRefused, match="new task definition"):
        kind.plan(ctx, kind.Inputs(target="old", mode="env"))
    inputs = kind.Inputs(target="old", process_target="page", timeout=10)
    _plan, result = _run(kind, ctx, inputs)
    count = lambda: client.describe_services(cluster="prod", services=["maint-page"])["services"][0]["desiredCount"]  # noqa: E731
    assert count() == 1
    kind.rollback(ctx, inputs, result)
    assert count() == 0


def test_app_platform_env_flag_through_the_contract(prism, monkeypatch):
    # Prism is stateless: this proves the spec update is a valid request; the state logic is the
    # same code path as the Heroku env tests above.
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "prism-token-123")
    try:
        ctx = step_context({"new": DoAppTarget(app="c2a93513-8d9b-4223-9d61-5e7272c81cf5")})
        kind = get_kind("app.maintenance")
        inputs = kind.Inputs(target="new")
        plan = kind.plan(ctx, inputs)
        assert plan.data["mode"] == "env" and "MAINTENANCE unset -> MAINTENANCE=1" in plan.summary
        result = kind.apply(ctx, inputs, plan)
        assert result.undo == {"mode": "env", "before": None}
    finally:
        do._reset_for_tests()


def test_heroku_maintenance_off_and_its_rollback_turns_it_back_on(heroku_fake):
    heroku_fake.apps["legacy"]["maintenance"] = True
    ctx = step_context({"old": HerokuTarget(app="legacy")})
    kind = get_kind("app.maintenance")
    inputs = kind.Inputs(target="old", enabled=False)
    plan, result = _run(kind, ctx, inputs)
    assert "on -> off" in plan.summary
    assert heroku_fake.apps["legacy"]["maintenance"] is False
    kind.rollback(ctx, inputs, result)
    assert heroku_fake.apps["legacy"]["maintenance"] is True


def test_the_heroku_fake_refuses_a_body_the_platform_api_would(heroku_fake):
    """The fake is only worth testing against because it refuses what Heroku refuses."""
    from bot.platforms import errors, heroku

    api = heroku.Api()
    for path, body in (("/apps/legacy", {"maintenance": "on"}), ("/apps/legacy", {"maintenence": True}),
                       ("/apps/legacy/config-vars", {"WORKERS": 4})):
        with pytest.raises(errors.PlatformError):
            api.patch(path, body, resource=path)
    assert heroku_fake.apps["legacy"]["maintenance"] is False
