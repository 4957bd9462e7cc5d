"""`dns.set_ttl` and `dns.switch` on Route 53 (moto server, real HTTP): plans, preflight, stages, rollback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from bot.runbook.targets import AwsRoute53Target
from bot.steps.base import PlanRefused, StepError, get_kind
from bot.steps.context import StepRecord
from tests.fixtures.dns_server import ManualClock, route53_source, step_context

NAME = "api.example.com"


@pytest.fixture
def zone(aws):
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="switch")["HostedZone"]["Id"]

    def create(rs):
        r53.change_resource_record_sets(HostedZoneId=zone_id,
                                        ChangeBatch={"Changes": [{"Action": "CREATE", "ResourceRecordSet": rs}]})

    def snapshot():
        return json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True)

    target = AwsRoute53Target(zone="example.com", endpoint_url=aws.url)
    return r53, zone_id, create, snapshot, target


def weighted(create, ttl=60):
    for sid, w, ip in (("old", 100, "192.0.2.1"), ("new", 0, "192.0.2.2")):
        create({"Name": NAME, "Type": "A", "SetIdentifier": sid, "Weight": w, "TTL": ttl,
                "ResourceRecords": [{"Value": ip}]})


def weights(r53, zone_id):
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=NAME)["ResourceRecordSets"]
    return {s["SetIdentifier"]: s["Weight"] for s in sets if s["Name"] == NAME + "." and "SetIdentifier" in s}


# -- dns.set_ttl -----------------------------------------------------------------------------------------

def test_set_ttl_plan_says_when_the_lower_ttl_is_in_effect(zone, dns_server):
    r53, zone_id, create, snapshot, target = zone
    weighted(create, ttl=86400)
    clock = ManualClock()
    ctx = step_context({"dns": target}, clock=clock)
    kind = get_kind("dns.set_ttl")
    inputs = kind.Inputs(zone="dns", record=NAME, ttl=60, nameservers=[dns_server.address], verify_timeout=10)
    plan = kind.plan(ctx, inputs)
    assert "1440m -> 1m" in plan.summary or "24h -> 1m" in plan.summary
    assert plan.data["effective_at"] == clock.now() + 86400
    assert "fully in effect at" in plan.summary
    before = snapshot()
    result = kind.apply(ctx, inputs, plan)
    assert result.details["old_ttl"] == 86400 and result.details["new_ttl"] == 60
    sets = r53.list_resource_record_sets(HostedZoneId=zone_id, StartRecordName=NAME)["ResourceRecordSets"]
    assert {s["TTL"] for s in sets if s["Name"] == NAME + "."} == {60}  # every weighted set, one change
    # A server still serving the old TTL fails verify, naming its answer; once it follows Route 53, it passes.
    dns_server.set(NAME, "A", ["192.0.2.1"], ttl=86400)
    stale = kind.verify(ctx, inputs, result)
    assert not stale.ok and stale.table[1][2] == "86400"
    dns_server.use_source(route53_source(r53, zone_id))
    assert kind.verify(ctx, inputs, result).ok
    undo = kind.rollback(ctx, inputs, result)
    assert snapshot() == before
    assert kind.verify_rollback(ctx, inputs, result, undo).ok


# -- the TTL preflight ---------------------------------------------------------------------------------

def _switch_inputs(**kw):
    kind = get_kind("dns.switch")
    return kind, kind.Inputs(zone="dns", record=NAME, weights={"old": 0, "new": 100}, **kw)


def test_switch_refuses_a_high_ttl_and_warns_when_allowed(zone):
    _r53, _zone_id, create, _snapshot, target = zone
    weighted(create, ttl=3600)
    ctx = step_context({"dns": target})
    kind, inputs = _switch_inputs()
    plan = kind.plan(ctx, inputs)
    assert len(plan.blocking) == 1 and "current TTL" in plan.blocking[0] and "above max_ttl" in plan.blocking[0]
    kind, inputs = _switch_inputs(allow_high_ttl=True)
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == [] and "above max_ttl" in plan.warnings[0]


def test_switch_refuses_until_one_old_ttl_has_passed_since_set_ttl(zone):
    _r53, _zone_id, create, _snapshot, target = zone
    weighted(create, ttl=3600)
    clock = ManualClock()
    history: list[StepRecord] = []
    set_ttl = get_kind("dns.set_ttl")
    ctx = step_context({"dns": target}, clock=clock, history=history)
    ttl_inputs = set_ttl.Inputs(zone="dns", record=NAME, ttl=60)
    result = set_ttl.apply(ctx, ttl_inputs, set_ttl.plan(ctx, ttl_inputs))
    history.append(StepRecord("lower-ttl", "dns.set_ttl", "succeeded", None, result.model_dump(), clock.now()))

    kind, inputs = _switch_inputs()
    clock.sleep(600)  # 10 minutes after lowering a 1 h TTL: caches may still hold the old answer
    plan = kind.plan(ctx, inputs)
    assert len(plan.blocking) == 1
    assert "lowered from 1h to 1m only 10m ago" in plan.blocking[0] and "lower-ttl" in plan.blocking[0]
    clock.sleep(3000)  # one old TTL has passed
    assert kind.plan(ctx, inputs).blocking == []


# -- weighted switch -----------------------------------------------------------------------------------

def test_weighted_switch_is_one_batch_and_rollback_restores_exactly(zone, dns_server):
    r53, zone_id, create, snapshot, target = zone
    weighted(create)
    dns_server.use_source(route53_source(r53, zone_id))
    ctx = step_context({"dns": target})
    kind, inputs = _switch_inputs(nameservers=[dns_server.address], verify_timeout=10, poll_interval=0.1)
    before = snapshot()
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == [] and "old=0, new=100" in plan.summary
    result = kind.apply(ctx, inputs, plan)
    assert weights(r53, zone_id) == {"old": 0, "new": 100}
    assert [s["Weight"] for s in result.undo["before"]] == [100, 0]
    assert kind.verify(ctx, inputs, result).ok

    rollback_plan = kind.plan_rollback(ctx, inputs, result)
    assert len(rollback_plan.summary) <= 160 and "\n" not in rollback_plan.summary  # readable on a phone
    assert "old=100, new=0" in rollback_plan.summary
    undo = kind.rollback(ctx, inputs, result)
    assert snapshot() == before
    verified = kind.verify_rollback(ctx, inputs, result, undo)
    assert verified.ok and verified.details["propagation_seconds"] is not None
    assert verified.table[1][1] == "192.0.2.1"


def test_weighted_switch_names_missing_set_identifiers(zone):
    _r53, _zone_id, create, _snapshot, target = zone
    weighted(create)
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record=NAME, weights={"old": 0, "green": 100})
    with pytest.raises(PlanRefused, match="no weighted set.*green.*it has: new, old"):
        kind.plan(step_context({"dns": target}), inputs)


def test_simple_record_upsert_and_rollback(zone, dns_server):
    r53, zone_id, create, snapshot, target = zone
    create({"Name": NAME, "Type": "CNAME", "TTL": 60, "ResourceRecords": [{"Value": "old-lb.example.net"}]})
    dns_server.use_source(route53_source(r53, zone_id))
    ctx = step_context({"dns": target})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record=NAME, type="CNAME", to="api-x.ondigitalocean.app",
                         nameservers=[dns_server.address], verify_timeout=5, poll_interval=0.1)
    before = snapshot()
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert kind.verify(ctx, inputs, result).ok
    kind.rollback(ctx, inputs, result)
    assert snapshot() == before


# -- gradual shift -----------------------------------------------------------------------------------

@pytest.fixture
def health():
    state = {"status": 200, "hits": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            state["hits"] += 1
            self.send_response(state["status"])
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}/health"
    yield state
    server.shutdown()
    server.server_close()


def test_gradual_shift_holds_and_checks_each_stage(zone, health):
    r53, zone_id, create, _snapshot, target = zone
    weighted(create)
    seen = []
    clock = ManualClock()
    ctx = step_context({"dns": target}, clock=clock,
                       progress=lambda **kw: seen.append(dict(weights(r53, zone_id))) if kw.get("unit") == "stages" else None)
    kind, inputs = _switch_inputs(stages=[10, 50, 100], hold="5m", check={"url": health["url"]})
    plan = kind.plan(ctx, inputs)
    assert [r[0] for r in plan.table[3:]] == ["stage 10%", "stage 50%", "stage 100%"]
    started = clock.now()
    result = kind.apply(ctx, inputs, plan)
    assert seen == [{"old": 90, "new": 10}, {"old": 50, "new": 50}, {"old": 0, "new": 100}]
    assert health["hits"] == 2  # checked after the 10% and 50% stages, before moving on
    assert clock.now() - started >= 600  # held 5 minutes twice
    assert [s["stage"] for s in result.details["stages"]] == ["10%", "50%", "100%"]


def test_failed_stage_check_puts_the_weights_back(zone, health):
    r53, zone_id, create, snapshot, target = zone
    weighted(create)
    health["status"] = 503
    before = snapshot()
    ctx = step_context({"dns": target}, clock=ManualClock())
    kind, inputs = _switch_inputs(stages=[10, 100], check={"url": health["url"], "attempts": 2})
    plan = kind.plan(ctx, inputs)
    with pytest.raises(StepError, match=r"stage 10% check failed: .* answered 503, expected 200"):
        kind.apply(ctx, inputs, plan)
    assert snapshot() == before


def test_to_must_be_record_data_not_a_target_name(zone):
    _r53, _zone_id, create, _snapshot, target = zone
    create({"Name": NAME, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]})
    kind = get_kind("dns.switch")
    with pytest.raises(PlanRefused, match="`to: new` is not valid A data"):
        kind.plan(step_context({"dns": target}), kind.Inputs(zone="dns", record=NAME, to="new"))


def test_inputs_are_checked():
    kind = get_kind("dns.switch")
    with pytest.raises(ValueError, match="either `to`"):
        kind.Inputs(zone="dns", record=NAME)
    with pytest.raises(ValueError, match="ending at 100"):
        kind.Inputs(zone="dns", record=NAME, weights={"old": 0, "new": 100}, stages=[50, 10])
    with pytest.raises(ValueError, match="`stages` needs `weights`"):
        kind.Inputs(zone="dns", record=NAME, to="192.0.2.1", stages=[100])


def test_dns_stage_check_samples_a_split_stage_but_not_a_full_cut(zone, dns_server):
    r53, zone_id, create, _snapshot, target = zone
    weighted(create)
    dns_server.use_source(route53_source(r53, zone_id))
    ctx = step_context({"dns": target})
    kind, inputs = _switch_inputs(stages=[50, 100], check={"dns": True}, samples=8, nameservers=[dns_server.address],
                                  verify_timeout=5, poll_interval=0.05)
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    # The 50% stage splits answers, so one round asked 8 times; a single answer could match by luck.
    assert dns_server.queries >= 8
    # Verify after the last stage: a lagging server may still hold the 50/50 stage, so it samples too.
    asked = dns_server.queries
    assert kind.verify(ctx, inputs, result).ok
    assert dns_server.queries - asked >= 8


def test_full_cut_is_verified_with_one_answer_per_server(zone, dns_server):
    r53, zone_id, create, _snapshot, target = zone
    weighted(create)
    dns_server.use_source(route53_source(r53, zone_id))
    ctx = step_context({"dns": target})
    kind, inputs = _switch_inputs(samples=8, nameservers=[dns_server.address], verify_timeout=5, poll_interval=0.05)
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    # Before (100/0) and after (0/100) both answer deterministically: one answer says which a server holds.
    asked = dns_server.queries
    assert kind.verify(ctx, inputs, result).ok
    assert dns_server.queries - asked == 1
