"""A whole cutover as a runbook through the engine, then rollback as one action.

Route 53 and ECS are moto server over HTTP; the authoritative DNS server is a real dnslib server
answering from moto's record sets. The run goes through the real Runner and store: approvals
(two of them, with the typed confirmation, for the switch), a wait of one old TTL (on a clock the
test controls), the switch verified at the authoritative server, the old side scaled to zero.
Then `rollback` undoes the succeeded steps newest first, each approved, and the zone and the
service are exactly what they were; the DNS undo reports the time from approval to verified.
"""

from __future__ import annotations

import json
import textwrap

import boto3

from bot.engine.runner import Runner
from bot.engine.store import Store
from tests.fixtures.dns_server import ManualClock, route53_source

NAME = "api.example.com"


def test_cutover_runbook_then_one_action_rollback(aws, dns_server, tmp_path):
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    ecs = boto3.client("ecs", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="rb")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": NAME, "Type": "A", "SetIdentifier": sid, "Weight": w,
                                                  "TTL": 3600, "ResourceRecords": [{"Value": ip}]}}
        for sid, w, ip in (("old", 100, "192.0.2.1"), ("new", 0, "198.51.100.7"))]})
    ecs.create_cluster(clusterName="legacy")
    ecs.register_task_definition(family="api", containerDefinitions=[{"name": "api", "image": "api:7", "memory": 256}])
    ecs.create_service(cluster="legacy", serviceName="api", taskDefinition="api", desiredCount=3)
    dns_server.use_source(route53_source(r53, zone_id))

    def zone_json():
        return json.dumps(r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"], sort_keys=True)

    def desired():
        return ecs.describe_services(cluster="legacy", services=["api"])["services"][0]["desiredCount"]

    zone_before = zone_json()
    path = tmp_path / "cutover.yaml"
    path.write_text(textwrap.dedent(f"""
        name: cutover
        params:
          env: {{type: choice, choices: [staging, production], default: production}}
        targets:
          dns: {{platform: aws-route53, zone: example.com, endpoint_url: "{aws.url}"}}
          old: {{platform: aws-ecs, cluster: legacy, service: api, endpoint_url: "{aws.url}"}}
        approvals:
          default: {{approvers: [alice, bob, carol], allow_self: false}}
        steps:
          - id: lower-ttl
            kind: dns.set_ttl
            with: {{zone: dns, record: {NAME}, ttl: 60, nameservers: ["{dns_server.address}"]}}
          - id: let-caches-expire
            kind: wait
            with: {{seconds: 3600}}
          - id: switch-dns
            kind: dns.switch
            with:
              zone: dns
              record: {NAME}
              weights: {{old: 0, new: 100}}
              nameservers: ["{dns_server.address}"]
              verify_timeout: 30
              samples: 5
            approval: {{min: 2, confirm_text: "{{{{ params.env }}}}"}}
          - id: watch-window
            kind: wait
            with: {{seconds: 86400}}
          - id: standby-old
            kind: service.scale
            with: {{target: old, count: 0, timeout: 10}}
    """))
    clock = ManualClock()
    store = Store(tmp_path / "store.sqlite")
    runner = Runner(store, clock=clock)
    run = runner.start(path, {}, started_by="alice", front_end="slack")

    assert runner.approve(run.id, "lower-ttl", user="bob", front_end="slack").ok
    first = runner.approve(run.id, "switch-dns", user="bob", front_end="slack", confirm="production")
    assert first.code == "waiting_more"
    assert runner.approve(run.id, "switch-dns", user="carol", front_end="slack", confirm="production").ok
    assert runner.approve(run.id, "standby-old", user="bob", front_end="slack").ok
    view = runner.view(run.id)
    assert view.state == "succeeded", [(s.key, s.state, s.error) for s in view.steps]
    assert desired() == 0 and zone_json() != zone_before

    decision = runner.rollback(run.id, user="alice", front_end="slack")
    assert decision.ok, decision.message
    undo = [s.key for s in runner.view(run.id).steps if s.phase == "rollback"]
    assert undo == ["undo:standby-old", "undo:switch-dns", "undo:lower-ttl"]
    plan = runner.view(run.id).steps[-3].plan
    assert plan["summary"]
    # One decision for the whole reverse plan, meeting the strictest policy among the undone steps:
    # the DNS undo's two approvers and its typed confirmation (the seed-000 incident needed four).
    gate = runner.view(run.id).steps[-3]
    assert gate.approval_policy["covers"] == undo and gate.approval_policy["min"] == 2
    assert [row[0] for row in plan["table"][1:]] == undo
    decision = runner.approve(run.id, undo[0], user="carol", front_end="slack", confirm="production")
    assert decision.code == "waiting_more", decision.message
    assert runner.approve(run.id, undo[0], user="bob", front_end="slack", confirm="production").ok
    view = runner.view(run.id)
    assert view.state == "rolled_back", [(s.key, s.state, s.error) for s in view.steps]
    assert zone_json() == zone_before
    assert desired() == 3
    dns_undo = next(s for s in view.steps if s.key == "undo:switch-dns")
    assert len(dns_undo.plan["summary"]) <= 160  # readable on a phone
    assert dns_undo.verification["details"]["approval_to_verified_seconds"] is not None
