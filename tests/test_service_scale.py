"""`service.scale` on ECS (moto server), App Platform (Prism contract) and Heroku (stateful fake); the lint rule."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
import pytest

from bot.platforms import digitalocean as do
from bot.platforms import errors
from bot.platforms.digitalocean import app_scaling
from bot.runbook.targets import AwsEcsTarget, DoAppTarget, HerokuTarget
from bot.steps.base import PlanRefused, get_kind
from bot.steps.service_scale import lint_scale_before_watch
from tests.fixtures.dns_server import ManualClock, step_context
from tests.fixtures.heroku_fake import FakeHeroku


@pytest.fixture
def ecs(aws):
    client = boto3.client("ecs", endpoint_url=aws.url, region_name="us-east-1")
    client.create_cluster(clusterName="production")
    client.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "api:1", "memory": 256}])
    client.create_service(cluster="production", serviceName="api", taskDefinition="api", desiredCount=3)
    return client, AwsEcsTarget(cluster="production", service="api", endpoint_url=aws.url)


def _desired(client):
    return client.describe_services(cluster="production", services=["api"])["services"][0]["desiredCount"]


def test_ecs_scale_to_zero_and_back(ecs):
    client, target = ecs
    ctx = step_context({"old": target})
    kind = get_kind("service.scale")
    inputs = kind.Inputs(target="old", count=0, timeout=10)
    plan = kind.plan(ctx, inputs)
    assert plan.changes[0].before == "3" and plan.changes[0].after == "0"
    assert "warm standby" in plan.warnings[0] and "rollback brings back 3" in plan.warnings[0]
    result = kind.apply(ctx, inputs, plan)
    assert _desired(client) == 0 and result.undo["old_count"] == 3
    assert kind.verify(ctx, inputs, result).ok
    assert "back to 3" in kind.plan_rollback(ctx, inputs, result).summary
    undo = kind.rollback(ctx, inputs, result)
    assert _desired(client) == 3
    assert kind.verify_rollback(ctx, inputs, result, undo).ok
    # Warm standby means the service is still there, never deleted.
    assert client.describe_services(cluster="production", services=["api"])["services"][0]["status"] == "ACTIVE"


def test_ecs_missing_service_names_it(ecs):
    _client, target = ecs
    ctx = step_context({"old": target.model_copy(update={"service": "nope"})})
    kind = get_kind("service.scale")
    with pytest.raises(errors.NotFound, match="production/nope"):
        kind.plan(ctx, kind.Inputs(target="old", count=0))


def test_scaling_a_non_service_target_is_refused():
    ctx = step_context({"x": SimpleNamespace(platform="aws-s3")})
    kind = get_kind("service.scale")
    with pytest.raises(PlanRefused, match="cannot scale a aws-s3 target"):
        kind.plan(ctx, kind.Inputs(target="x", count=0))


def test_scaling_to_zero_keeps_the_service_its_revision_and_its_settings(ecs):
    """Warm standby: after scaling to zero the service is the same service, one API call from serving."""
    client, target = ecs

    def service():
        found = client.describe_services(cluster="production", services=["api"])["services"][0]
        return {k: found[k] for k in ("serviceArn", "status", "taskDefinition", "launchType", "desiredCount")}

    before = service()
    ctx = step_context({"old": target})
    kind = get_kind("service.scale")
    inputs = kind.Inputs(target="old", count=0, timeout=10)
    kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    after = service()
    assert after == {**before, "desiredCount": 0}
    assert client.list_services(cluster="production")["serviceArns"] == [before["serviceArn"]]


# -- Heroku formation --------------------------------------------------------------------------------------

@pytest.fixture
def heroku_fake(monkeypatch):
    fake = FakeHeroku({"legacy": {"formation": {"web": 2, "worker": 1}}}, boot_polls=2)
    monkeypatch.setenv("HEROKU_API_URL", fake.url)
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-test-key")
    yield fake
    fake.stop()


def test_heroku_formation_scale_and_rollback_waits_for_dynos(heroku_fake):
    ctx = step_context({"old": HerokuTarget(app="legacy")}, clock=ManualClock())
    kind = get_kind("service.scale")
    inputs = kind.Inputs(target="old", count=0, timeout=60)
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert heroku_fake.apps["legacy"]["formation"]["web"] == 0 and heroku_fake.apps["legacy"]["up"]["web"] == 0
    kind.rollback(ctx, inputs, result)
    assert heroku_fake.apps["legacy"]["formation"] == {"web": 2, "worker": 1}
    dyno_polls = [c for c in heroku_fake.calls if c[1] == "/apps/legacy/dynos"]
    assert len(dyno_polls) >= 6  # it polled until the dynos were up, both ways
    assert heroku_fake.apps["legacy"]["up"]["web"] == 2


def test_heroku_rollback_times_out_when_dynos_never_come_up(heroku_fake):
    ctx = step_context({"old": HerokuTarget(app="legacy")}, clock=ManualClock())
    kind = get_kind("service.scale")
    inputs = kind.Inputs(target="old", count=0, timeout=30)
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    heroku_fake.boot_polls = 10_000  # the dynos of the rollback never boot
    with pytest.raises(errors.Unavailable, match="0 web dynos up after 30s, expected 2"):
        kind.rollback(ctx, inputs, result)


# -- App Platform (contract through Prism) ---------------------------------------------------------------

@pytest.fixture
def prism_do(prism, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "prism-token-123")
    yield prism
    do._reset_for_tests()


def test_app_platform_instance_count_via_spec(prism_do):
    app = app_scaling.get_app("c2a93513-8d9b-4223-9d61-5e7272c81cf5")
    _group, comp = app_scaling.component(app, "web")
    assert app_scaling.instance_count(app, "web") == comp["instance_count"]
    # Prism validates the update body (the whole spec, one number changed) against the contract.
    updated = app_scaling.set_instance_count(app, "web", 3)
    assert updated["spec"]["name"] == app["spec"]["name"]
    # The deployment poll is a valid call too (Prism's example phase may be anything: only the
    # timeout may stop it, never a refused request).
    clock = ManualClock()
    try:
        app_scaling.wait_deployed(app["id"], deployment_id="3aa4d20e-5527-4c00-b496-601fbd22520a", timeout=0,
                                  now=clock.now, sleep=clock.sleep)
    except errors.Unavailable as exc:
        assert "not active after" in str(exc) or "the deployment ended" in str(exc)


def test_app_platform_refuses_zero_as_the_contract_does(prism, prism_do):
    import requests

    # The contract says instance_count >= 1: Prism refuses a spec with 0 ...
    response = requests.put(f"{prism.url}/v2/apps/x", headers={"Authorization": "Bearer x"},
                            json={"spec": {"name": "api", "services": [{"name": "web", "instance_count": 0}]}}, timeout=10)
    assert response.status_code == 422
    # ... so the step refuses it in the plan, with a message saying what to do instead.
    ctx = step_context({"new": DoAppTarget(app="c2a93513-8d9b-4223-9d61-5e7272c81cf5", component="web")})
    kind = get_kind("service.scale")
    with pytest.raises(PlanRefused, match="cannot scale a component below 1 instance"):
        kind.plan(ctx, kind.Inputs(target="new", count=0))
    # Prism cannot deploy, so no wait here; the waiting is tested against a deployment that moves below.
    inputs = kind.Inputs(target="new", count=1, wait=False)
    plan = kind.plan(ctx, inputs)
    assert plan.changes[0].after == "1"
    result = kind.apply(ctx, inputs, plan)  # the spec update is valid against the contract
    assert result.undo["old_count"] == 1


@pytest.fixture
def deploying(monkeypatch):
    """A deployment that goes PENDING_BUILD -> BUILDING -> `final`, one phase per GET (real HTTP, via pydo)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"phases": ["PENDING_BUILD", "BUILDING", "ACTIVE"], "gets": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            phase = state["phases"][min(state["gets"], len(state["phases"]) - 1)]
            state["gets"] += 1
            body = json.dumps({"deployment": {"id": self.path.rsplit("/", 1)[-1], "phase": phase}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DIGITALOCEAN_API_URL", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "fake-token-123")
    yield state
    server.shutdown()
    server.server_close()
    do._reset_for_tests()


def test_app_platform_waits_for_the_deployment_the_update_started(deploying):
    clock = ManualClock()
    phase = app_scaling.wait_deployed("app-1", deployment_id="dep-1", timeout=60, now=clock.now, sleep=clock.sleep)
    assert phase == "ACTIVE" and deploying["gets"] == 3
    assert app_scaling.new_deployment_id({"pending_deployment": {"id": "d1"}}) == "d1"
    assert app_scaling.new_deployment_id({"pending_deployment": None}) is None


def test_app_platform_failed_deployment_is_reported(deploying):
    deploying["phases"] = ["BUILDING", "ERROR"]
    clock = ManualClock()
    with pytest.raises(errors.Unavailable, match="the deployment ended ERROR"):
        app_scaling.wait_deployed("app-1", deployment_id="dep-1", timeout=60, now=clock.now, sleep=clock.sleep)


def test_autoscaled_component_is_refused():
    app = {"id": "a", "spec": {"name": "api", "services": [{"name": "web", "autoscaling": {"max_instance_count": 4}}]}}
    with pytest.raises(errors.InvalidRequest, match="autoscales"):
        app_scaling.instance_count(app, "web")
    with pytest.raises(errors.NotFound, match="no service or worker named 'api'"):
        app_scaling.component(app, "api")


# -- lint ---------------------------------------------------------------------------------------------------

def _runbook(*steps, watch=None):
    return SimpleNamespace(steps=[SimpleNamespace(id=i, kind=k, with_=w) for i, k, w in steps], watch=watch)


def test_lint_warns_when_standby_comes_before_the_watch_has_passed():
    scale = ("standby-old", "service.scale", {"target": "old", "count": 0})
    watch = ("watch", "watch.start", {"for": "24h", "every": "10m"})
    assert "before the watch window has started" in lint_scale_before_watch(_runbook(scale, watch))[0]
    assert "no watch window" in lint_scale_before_watch(_runbook(scale))[0]
    warned = lint_scale_before_watch(_runbook(watch, ("wait-a-bit", "wait", {"duration": "1h"}), scale))
    assert len(warned) == 1 and "1h into a 24h watch window" in warned[0]
    assert lint_scale_before_watch(_runbook(watch, ("wait-day", "wait", {"duration": "24h"}), scale)) == []
    assert lint_scale_before_watch(_runbook(watch, ("wait-watch", "watch.wait", {}), scale)) == []
    # Scaling to a non-zero count is not a standby.
    assert lint_scale_before_watch(_runbook(("up", "service.scale", {"target": "new", "count": "2"}))) == []
