"""Verification at the authoritative servers, against a real DNS server on 127.0.0.1 (dnslib).

The step's verify is driven through a real switch in moto (Route 53 over HTTP); the local server's
zone is set by the test, which plays the part of propagation: it keeps answering the old data and
flips to the new from another thread after a short delay.
"""

from __future__ import annotations

import boto3
import pytest

from bot.platforms import dns as dnscheck
from bot.runbook.targets import AwsRoute53Target
from bot.steps.base import get_kind
from tests.fixtures.dns_server import LocalDnsServer, RecordSet, step_context

NAME = "api.example.com"


def _server(dns_server: LocalDnsServer) -> dnscheck.Server:
    return dnscheck.parse_server(dns_server.address)


def test_query_reads_answer_ttl_and_authority(dns_server):
    dns_server.set(NAME, "A", ["192.0.2.10", "192.0.2.11"], ttl=42)
    answer = dnscheck.query(_server(dns_server), NAME + ".", "A")
    assert answer.values == ["192.0.2.10", "192.0.2.11"]
    assert answer.ttl == 42 and answer.authoritative and answer.error is None


def test_answer_without_aa_flag_never_counts(dns_server):
    dns_server.set(NAME, "A", ["192.0.2.20"])
    dns_server.authoritative = False  # a resolver's (cached) answer, not the zone's own server
    result = dnscheck.wait_until([_server(dns_server)], NAME, "A", [["192.0.2.20"]], timeout=0.6,
                                 now=_now, sleep=_sleep, interval=0.1)
    assert not result.ok
    assert "AA flag" in result.servers[0].last_error
    assert result.servers[0].last_values == ["192.0.2.20"]  # right data, wrong kind of server


def test_wait_until_follows_a_flip_from_another_thread(dns_server):
    dns_server.set(NAME, "A", ["192.0.2.1"])
    dns_server.set_later(0.6, NAME, "A", ["192.0.2.2"])
    result = dnscheck.wait_until([_server(dns_server)], NAME, "A", [["192.0.2.2"]], timeout=10,
                                 now=_now, sleep=_sleep, interval=0.1)
    assert result.ok
    report = result.servers[0]
    assert report.last_values == ["192.0.2.2"]
    assert report.queries > 1  # it asked while the old data was still served
    assert report.seconds is not None and report.seconds > 0


def test_weighted_sampling_rejects_a_half_moved_record(dns_server):
    # 50/50 between old and new: a single query may look converged by luck; 20 samples will not.
    dns_server.set_weighted(NAME, "A", [RecordSet(["192.0.2.1"], 60, 50), RecordSet(["192.0.2.2"], 60, 50)])
    result = dnscheck.wait_until([_server(dns_server)], NAME, "A", [["192.0.2.2"]], timeout=0.5,
                                 now=_now, sleep=_sleep, interval=0.1, samples=20)
    assert not result.ok
    dns_server.set_weighted(NAME, "A", [RecordSet(["192.0.2.1"], 60, 0), RecordSet(["192.0.2.2"], 60, 100)])
    result = dnscheck.wait_until([_server(dns_server)], NAME, "A", [["192.0.2.2"]], timeout=5,
                                 now=_now, sleep=_sleep, interval=0.1, samples=20)
    assert result.ok and result.servers[0].queries >= 20


def test_normalize_compares_names_canonically():
    assert dnscheck.normalize("CNAME", "App-XYZ.ondigitalocean.app") == dnscheck.normalize(
        "CNAME", "app-xyz.ondigitalocean.app.")
    assert dnscheck.parse_server("[::1]:5353") == dnscheck.Server("[::1]:5353", "::1", 5353)
    with pytest.raises(ValueError):
        dnscheck.parse_server("127.0.0.1:0")


# -- the step's verify ---------------------------------------------------------------------------------

@pytest.fixture
def switched(aws, dns_server):
    """A simple A record switched 192.0.2.1 -> 192.0.2.2 in moto; the local server still answers old."""
    r53 = boto3.client("route53", endpoint_url=aws.url, region_name="us-east-1")
    zone = r53.create_hosted_zone(Name="example.com", CallerReference="verify")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{"Action": "CREATE",
        "ResourceRecordSet": {"Name": NAME, "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]}}]})
    dns_server.set(NAME, "A", ["192.0.2.1"], ttl=60)
    ctx = step_context({"dns": AwsRoute53Target(zone="example.com", endpoint_url=aws.url)})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record=NAME, to="192.0.2.2", nameservers=[dns_server.address],
                         verify_timeout=1.5, poll_interval=0.1)
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == []
    result = kind.apply(ctx, inputs, plan)
    return kind, ctx, inputs, result


def test_verify_waits_for_the_old_answer_to_go(switched, dns_server):
    kind, ctx, inputs, result = switched
    inputs = inputs.model_copy(update={"verify_timeout": 10})
    dns_server.set_later(0.5, NAME, "A", ["192.0.2.2"], ttl=60)
    queries_before = dns_server.queries
    verification = kind.verify(ctx, inputs, result)
    assert verification.ok, verification.summary
    assert dns_server.queries - queries_before > 1  # it saw the old answer at least once
    assert verification.details["propagation_seconds"] >= 0.5
    assert verification.table[1][1] == "192.0.2.2"


def test_verify_fails_after_timeout_with_each_servers_last_answer(switched, dns_server):
    kind, ctx, inputs, result = switched
    second = LocalDnsServer()
    second.start()
    try:
        second.set(NAME, "A", ["192.0.2.2"])  # this one has the change; the first never gets it
        inputs = inputs.model_copy(update={"nameservers": [dns_server.address, second.address]})
        verification = kind.verify(ctx, inputs, result)
    finally:
        second.stop()
    assert not verification.ok
    assert f"{dns_server.address}: 192.0.2.1 (not converged)" in verification.summary
    assert f"{second.address}: 192.0.2.2" in verification.summary
    servers = {s["server"]: s for s in verification.details["convergence"]["servers"]}
    assert servers[dns_server.address]["last_values"] == ["192.0.2.1"] and not servers[dns_server.address]["converged"]
    assert servers[second.address]["converged"]
    assert verification.details["propagation_seconds"] is None


def _now() -> float:
    import time

    return time.monotonic()


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)
