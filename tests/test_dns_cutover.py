"""The whole cutover, forward and back: lower TTL, weighted switch, verify, warm standby, reverse rollback.

Route 53 and ECS are moto server over HTTP. The authoritative DNS server is a real dnslib server on
127.0.0.1 whose answers are read from moto's record sets on every query (picking a weighted set by
weight, as Route 53 does), so what `verify` sees follows what the switch did, and nothing else.
At the end the zone's record sets and the service's count are byte-for-byte what they were.
"""

from __future__ import annotations

import json

import boto3

from bot.runbook.targets import AwsEcsTarget, AwsRoute53Target
from bot.steps.base import get_kind
from bot.steps.context import StepRecord
from tests.fixtures.dns_server import ManualClock, route53_source, step_context

NAME = "api.example.com"


def test_cutover_forward_and_back(aws, dns_server):
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    ecs = boto3.client("ecs", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="cutover")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": NAME, "Type": "A", "SetIdentifier": sid, "Weight": w,
                                                  "TTL": 3600, "ResourceRecords": [{"Value": ip}]}}
        for sid, w, ip in (("heroku", 100, "192.0.2.1"), ("aws", 0, "198.51.100.7"))]})
    ecs.create_cluster(clusterName="legacy")
    ecs.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "api:7", "memory": 256}])
    ecs.create_service(cluster="legacy", serviceName="api", taskDefinition="api", desiredCount=4)
    dns_server.use_source(route53_source(r53, zone_id))

    def zone_json():
        return json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True)

    def service_counts():
        s = ecs.describe_services(cluster="legacy", services=["api"])["services"][0]
        return json.dumps({k: s[k] for k in ("desiredCount", "status", "taskDefinition")})

    zone_before, service_before = zone_json(), service_counts()
    clock = ManualClock()
    history: list[StepRecord] = []
    targets = {"dns": AwsRoute53Target(zone="example.com", endpoint_url=aws.url),
               "old": AwsEcsTarget(cluster="legacy", service="api", endpoint_url=aws.url)}
    ctx = step_context(targets, clock=clock, history=history)
    done = []  # (kind, inputs, result), in the order applied

    def run(step_id, kind_name, **with_):
        kind = get_kind(kind_name)
        inputs = kind.Inputs(**with_)
        plan = kind.plan(ctx, inputs)
        assert plan.blocking == [], plan.blocking
        result = kind.apply(ctx, inputs, plan)
        verification = kind.verify(ctx, inputs, result)
        assert verification is None or verification.ok, verification.summary
        history.append(StepRecord(step_id, kind_name, "succeeded", plan.model_dump(), result.model_dump(), clock.now()))
        done.append((kind, inputs, result))
        return plan, result, verification

    switch_with = dict(zone="dns", record=NAME, weights={"heroku": 0, "aws": 100},
                       nameservers=[dns_server.address], verify_timeout=30, samples=10)

    # 1. Lower the TTL, at least one old TTL (here 1 h) ahead of the switch.
    run("lower-ttl", "dns.set_ttl", zone="dns", record=NAME, ttl=60, nameservers=[dns_server.address])
    # Right after, the switch is refused: caches may hold the 1 h TTL.
    switch = get_kind("dns.switch")
    early = switch.plan(ctx, switch.Inputs(**switch_with))
    assert early.blocking and "lowered from 1h to 1m" in early.blocking[0]
    clock.sleep(3600)

    # 2. Switch, verified at the authoritative server (samples: the record is weighted).
    _plan, _result, verified = run("switch-dns", "dns.switch", **switch_with)
    assert verified.table[1][1] == "198.51.100.7"

    # 3. Warm standby of the old side.
    run("standby-old", "service.scale", target="old", count=0, timeout=10)
    assert ecs.describe_services(cluster="legacy", services=["api"])["services"][0]["desiredCount"] == 0
    assert zone_json() != zone_before and service_counts() != service_before

    # 4. Roll back everything, newest first.
    for kind, inputs, result in reversed(done):
        assert kind.plan_rollback(ctx, inputs, result).summary
        undo = kind.rollback(ctx, inputs, result)
        verification = kind.verify_rollback(ctx, inputs, result, undo)
        assert verification is None or verification.ok, verification.summary
        if kind.name == "dns.switch":
            assert verification.details["propagation_seconds"] is not None
            assert verification.table[1][1] == "192.0.2.1"

    assert zone_json() == zone_before
    assert service_counts() == service_before
