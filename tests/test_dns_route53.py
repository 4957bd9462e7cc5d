"""Route 53 adapter: zones by id or name, weighted record sets, one batch, INSYNC waits.

Through moto server (real HTTP) except the PENDING path: moto's `get_change` always answers INSYNC
(it is a stub in moto/route53/responses.py), so the wait loop's PENDING -> INSYNC and timeout
behaviour is tested with botocore's Stubber on a real route53 client.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from bot.platforms import aws, errors
from bot.platforms.aws import route53
from bot.runbook.targets import AwsRoute53Target
from tests.fixtures.dns_server import ManualClock


@pytest.fixture
def zone(aws):
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="r53")["HostedZone"]["Id"]
    changes = [
        {"Action": "CREATE", "ResourceRecordSet": {"Name": "api.example.com", "Type": "A", "SetIdentifier": sid,
                                                  "Weight": w, "TTL": 300, "ResourceRecords": [{"Value": ip}]}}
        for sid, w, ip in (("old", 100, "192.0.2.1"), ("new", 0, "192.0.2.2"))
    ] + [{"Action": "CREATE", "ResourceRecordSet": {"Name": "www.example.com", "Type": "A", "TTL": 60,
                                                   "ResourceRecords": [{"Value": "192.0.2.9"}]}}]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": changes})
    return r53, zone_id, AwsRoute53Target(zone="example.com", endpoint_url=aws.url)


def test_find_zone_by_name_and_by_id(zone):
    _r53, zone_id, target = zone
    by_name = route53.find_zone(target)
    assert by_name["Id"] == zone_id and by_name["Name"] == "example.com."
    assert by_name["NameServers"]  # the delegation set: what verify asks when no override is given
    by_id = route53.find_zone(target.model_copy(update={"zone": zone_id.split("/")[-1]}))
    assert by_id["Id"] == zone_id


def test_missing_zone_is_not_found_with_the_name(zone):
    _r53, _zone_id, target = zone
    with pytest.raises(errors.NotFound, match="example.org"):
        route53.find_zone(target.model_copy(update={"zone": "example.org"}))


def test_record_sets_lists_only_the_name_and_type_with_weights(zone):
    _r53, _zone_id, target = zone
    sets = route53.record_sets(target, "API.example.com", "A")
    assert [(s["SetIdentifier"], s["Weight"]) for s in sets] == [("old", 100), ("new", 0)]
    assert route53.record_sets(target, "nope.example.com", "A") == []


def test_restore_changes_is_one_exact_batch(zone):
    r53, zone_id, target = zone
    before = r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    sets = route53.record_sets(target, "api.example.com", "A")
    flipped = [{**sets[0], "Weight": 0}, {**sets[1], "Weight": 100}]
    route53.change(target, route53.restore_changes(sets, flipped))
    assert r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] != before
    current = route53.record_sets(target, "api.example.com", "A")
    batch = route53.restore_changes(current, sets)
    assert [c["Action"] for c in batch] == ["UPSERT", "UPSERT"]
    route53.change(target, batch)
    assert r53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"] == before


def test_restore_changes_deletes_sets_that_were_not_there():
    simple = {"Name": "a.example.com.", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}
    weighted = [{**simple, "SetIdentifier": "x", "Weight": 1}]
    batch = route53.restore_changes(weighted, [simple])
    assert [c["Action"] for c in batch] == ["DELETE", "UPSERT"]  # deletes first: the batch is atomic
    assert route53.restore_changes([simple], [simple]) == []


def _stubbed(monkeypatch):
    client = boto3.client("route53", region_name="us-east-1")
    stubber = Stubber(client)
    monkeypatch.setattr(aws, "client", lambda target, service, **kw: client)
    return client, stubber


def test_wait_insync_polls_through_pending(monkeypatch):
    # moto never answers PENDING, so the real client is stubbed to say PENDING twice, then INSYNC.
    _client, stubber = _stubbed(monkeypatch)
    for status in ("PENDING", "PENDING", "INSYNC"):
        stubber.add_response("get_change", {"ChangeInfo": {"Id": "/change/C1", "Status": status,
                                                           "SubmittedAt": "2026-01-01T00:00:00Z"}},
                             {"Id": "/change/C1"})
    clock = ManualClock()
    messages = []
    with stubber:
        waited = route53.wait_insync(AwsRoute53Target(zone="Z1"), "/change/C1", timeout=60, sleep=clock.sleep,
                                     now=clock.now, interval=2, progress=messages.append)
    stubber.assert_no_pending_responses()
    assert waited == pytest.approx(2 + 4)  # backs off: 2 s, then 4 s
    assert messages and "PENDING" in messages[0]


def test_wait_insync_times_out_with_the_status(monkeypatch):
    # Same reason as above: only a stub can keep a change PENDING.
    _client, stubber = _stubbed(monkeypatch)
    for _ in range(20):
        stubber.add_response("get_change", {"ChangeInfo": {"Id": "/change/C2", "Status": "PENDING",
                                                           "SubmittedAt": "2026-01-01T00:00:00Z"}})
    clock = ManualClock()
    with stubber, pytest.raises(errors.Unavailable, match="still PENDING"):
        route53.wait_insync(AwsRoute53Target(zone="Z1"), "/change/C2", timeout=10, sleep=clock.sleep,
                            now=clock.now, interval=2)
