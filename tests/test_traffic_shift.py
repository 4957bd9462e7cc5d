"""`traffic.shift`: staged weight moves on a Cloudflare load balancer (contract-checked stand-in) and
Route 53 weighted records (moto server), gated by real watch signals (an HTTP probe of a local
origin whose health depends on the live weights), with breach, restore and exact rollback."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from bot.platforms.cloudflare.target import CloudflareLbTarget
from bot.runbook.targets import AwsRoute53Target
from bot.steps.base import PlanRefused, get_kind
from tests.fixtures.cloudflare_standin import cloudflare_api  # noqa: F401 (fixture)
from tests.fixtures.dns_server import step_context


class WeightedOrigin:
    """An origin that fails (503) once `unhealthy_at(state)` says so: the new side cannot take the load."""

    def __init__(self, unhealthy_at) -> None:
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status = 503 if unhealthy_at() else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.origin = origin

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _watch(url):
    return {"every": 0.1, "delay": 0, "for": 60,
            "signals": [{"name": "probe", "probe": {"url": url, "timeout": 2}, "failures": 1, "attempts": 1}]}


@pytest.fixture
def lb(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    heroku = cloudflare_api.add_pool("heroku", [("heroku-1", "api-1234.herokudns.com", 1)])
    ecs = cloudflare_api.add_pool("ecs", [("alb", "api-alb-1.eu-west-1.elb.amazonaws.com", 1)])
    lid = cloudflare_api.add_load_balancer(zid, "api.example.com", [heroku], heroku, steering_policy="off")
    state = lambda: cloudflare_api.load_balancers[zid][lid]  # noqa: E731
    target = CloudflareLbTarget(zone="example.com", load_balancer="api.example.com", account="a" * 32,
                                api_url=cloudflare_api.url)
    return cloudflare_api, state, target, heroku, ecs


def _ecs_share(state, ecs):
    lb = state()
    if lb["steering_policy"] not in ("random", "least_outstanding_requests"):
        return 0.0
    w = lb["random_steering"].get("pool_weights", {})
    total = sum(w.get(p, 1) for p in lb["default_pools"]) or 1
    return w.get(ecs, 0) / total


def test_a_breach_at_stage_three_restores_the_last_good_stage_then_rollback_restores_everything(lb):
    api, state, target, heroku, ecs = lb
    original = copy.deepcopy(state())
    origin = WeightedOrigin(lambda: _ecs_share(state, ecs) >= 0.5)  # ECS cannot take half the traffic
    try:
        ctx = step_context({"lb": target})
        kind = get_kind("traffic.shift")
        inputs = kind.Inputs.model_validate({"target": "lb", "from": "heroku", "to": "ecs", "stages": [10, 25, 50, 100],
                                             "soak": 0.3, "watch": _watch(origin.url)})
        plan = kind.plan(ctx, inputs)
        assert [row[0] for row in plan.table] == ["stage", "now", "10%", "25%", "50%", "100%"]
        assert plan.table[1][1] == "heroku=1"
        result = kind.apply(ctx, inputs, plan)
        assert result.outputs == {"last_stage": 25, "breached": True}
        assert result.details["breach_stage"] == 50 and "probe" in result.details["breach"]
        # Back at stage two (25 %), not at the original and not at 50 %.
        assert state()["random_steering"]["pool_weights"] == {heroku: 0.75, ecs: 0.25}
        assert state()["steering_policy"] == "random" and state()["default_pools"] == [heroku, ecs]
        check = kind.verify(ctx, inputs, result)
        assert not check.ok and "breach at stage 50%" in check.summary and "held" in check.summary

        undo = kind.rollback(ctx, inputs, result)
        lb_now = state()
        for key in ("steering_policy", "default_pools", "fallback_pool", "random_steering"):
            assert lb_now[key] == original[key], key
        assert kind.verify_rollback(ctx, inputs, result, undo).ok
        # One PATCH per stage written (3), one to restore stage two, one for the rollback.
        assert len([c for c in api.calls if c[0] == "PATCH"]) == 5
    finally:
        origin.stop()


def test_a_clean_shift_reaches_100_and_each_stage_is_one_patch_and_one_read_back(lb):
    api, state, target, heroku, ecs = lb
    origin = WeightedOrigin(lambda: False)
    try:
        ctx = step_context({"lb": target})
        kind = get_kind("traffic.shift")
        inputs = kind.Inputs.model_validate({"target": "lb", "from": "heroku", "to": "ecs", "stages": [10, 100],
                                             "soak": 0.2, "watch": _watch(origin.url)})
        result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
        assert result.outputs == {"last_stage": 100, "breached": False}
        assert state()["random_steering"]["pool_weights"] == {heroku: 0.0, ecs: 1.0}
        assert [s["calls"] for s in result.details["stages"]] == [2, 2]
        assert kind.verify(ctx, inputs, result).ok
    finally:
        origin.stop()


def test_unknown_pool_and_changed_lb_are_refused(lb):
    api, state, target, heroku, ecs = lb
    ctx = step_context({"lb": target})
    kind = get_kind("traffic.shift")
    with pytest.raises(PlanRefused, match="no pool named 'fargate'"):
        kind.plan(ctx, kind.Inputs.model_validate({"target": "lb", "from": "heroku", "to": "fargate", "soak": 0}))
    inputs = kind.Inputs.model_validate({"target": "lb", "from": "heroku", "to": "ecs", "soak": 0})
    plan = kind.plan(ctx, inputs)
    state()["fallback_pool"] = ecs  # someone changes the LB between plan and apply
    with pytest.raises(PlanRefused, match="changed since the plan"):
        kind.apply(ctx, inputs, plan)


def test_origin_weights_inside_one_pool(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    pool = cloudflare_api.add_pool("api", [("heroku", "api-1234.herokudns.com", 1), ("ecs", "alb.example.net", 0)])
    cloudflare_api.add_load_balancer(zid, "api.example.com", [pool], pool)
    target = CloudflareLbTarget(zone="example.com", load_balancer="api.example.com", account="b" * 32,
                                api_url=cloudflare_api.url)
    ctx = step_context({"lb": target})
    kind = get_kind("traffic.shift")
    inputs = kind.Inputs.model_validate({"target": "lb", "pool": "api", "from": "heroku", "to": "ecs",
                                         "stages": [25, 100], "soak": 0})
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert {o["name"]: o["weight"] for o in cloudflare_api.pools[pool]["origins"]} == {"heroku": 0.0, "ecs": 1.0}
    kind.rollback(ctx, inputs, result)
    assert {o["name"]: o["weight"] for o in cloudflare_api.pools[pool]["origins"]} == {"heroku": 1, "ecs": 0}


def test_the_same_kind_drives_route53_weighted_records(aws):
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="shift")["HostedZone"]["Id"]
    for sid, w, ip in (("heroku", 100, "192.0.2.1"), ("ecs", 0, "192.0.2.2")):
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": "api.example.com", "Type": "A", "SetIdentifier": sid, "Weight": w, "TTL": 60,
            "ResourceRecords": [{"Value": ip}]}}]})

    def weights():
        sets = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
        return {s["SetIdentifier"]: s["Weight"] for s in sets if "SetIdentifier" in s}

    before = json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True)
    ctx = step_context({"dns": AwsRoute53Target(zone="example.com", endpoint_url=aws.url)})
    kind = get_kind("traffic.shift")
    inputs = kind.Inputs.model_validate({"target": "dns", "record": "api.example.com", "from": "heroku", "to": "ecs",
                                         "stages": [10, 50, 100], "soak": 0})
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert weights() == {"heroku": 0, "ecs": 100}
    assert [s["weights"] for s in result.details["stages"]][0] == {"ecs": 0.1, "heroku": 0.9}
    kind.rollback(ctx, inputs, result)
    assert json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True) == before


def test_an_api_failure_mid_shift_puts_the_original_back_and_fails_the_step(lb):
    from bot.steps.base import StepError

    api, state, target, heroku, ecs = lb
    original = copy.deepcopy(state())
    patches = {"n": 0}
    route = api.route

    def failing(op, query, body):
        if op.method == "PATCH":
            patches["n"] += 1
            if patches["n"] == 3:  # stage three's PATCH
                return 503, {"success": False, "errors": [{"code": 1, "message": "overloaded"}], "messages": [],
                             "result": None}
        return route(op, query, body)

    api.route = failing
    ctx = step_context({"lb": target})
    kind = get_kind("traffic.shift")
    inputs = kind.Inputs.model_validate({"target": "lb", "from": "heroku", "to": "ecs", "soak": 0})
    with pytest.raises(StepError, match="stage 50% failed: .*overloaded.*put back exactly as before"):
        kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    for key in ("steering_policy", "default_pools", "fallback_pool", "random_steering"):
        assert state()[key] == original[key], key
