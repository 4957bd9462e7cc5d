"""How much does `dns.switch`'s rollback cost over the bare API call? (DNS-only rollback, end to end.)

    python benchmarks/dns_rollback.py [--quick]

The rollback of a cutover is measured from approval to verified at the authoritative servers:
`rollback` (read the current record sets, one change batch back to the recorded ones, wait for
INSYNC) plus `verify_rollback` (ask the authoritative server until it answers the old data; the
record is weighted, so several samples). Baseline, in the same run against the same servers: the
bare `change_resource_record_sets` with the reverse batch plus one authoritative query.

Route 53 is moto server (real HTTP). The authoritative server is a dnslib server on 127.0.0.1 that
reads the record sets from moto on every query, so every DNS answer costs the same in both arms.
The last line is one JSON object: ours/baseline as "ratio", the "target", and "pass".
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RUNBOOK_BOT_FINGERPRINT_KEY", "bench")

import boto3  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from bot.runbook.targets import AwsRoute53Target  # noqa: E402
from bot.steps.base import get_kind  # noqa: E402
from tests.fixtures.dns_server import LocalDnsServer, route53_source, step_context  # noqa: E402

NAME = "api.example.com"
TARGET_RATIO = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few rounds, well under 30 s")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (8 if args.quick else 40)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto server's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    dns_server = LocalDnsServer()
    dns_server.start()
    try:
        r53 = boto3.client("route53", endpoint_url=url, region_name="us-east-1")
        zone_id = r53.create_hosted_zone(Name="example.com", CallerReference="bench")["HostedZone"]["Id"]
        r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
            {"Action": "CREATE", "ResourceRecordSet": {"Name": NAME, "Type": "A", "SetIdentifier": sid, "Weight": w,
                                                      "TTL": 60, "ResourceRecords": [{"Value": ip}]}}
            for sid, w, ip in (("old", 100, "192.0.2.1"), ("new", 0, "192.0.2.2"))]})
        dns_server.use_source(route53_source(r53, zone_id))
        ctx = step_context({"dns": AwsRoute53Target(zone="example.com", endpoint_url=url)})
        kind = get_kind("dns.switch")
        inputs = kind.Inputs(zone="dns", record=NAME, weights={"old": 0, "new": 100},
                             nameservers=[dns_server.address], verify_timeout=30, poll_interval=0.05)

        ours, base, propagation = [], [], []
        for i in range(rounds + 1):  # round 0 warms both paths up and is not counted
            result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
            started = time.perf_counter()
            undo = kind.rollback(ctx, inputs, result)
            verification = kind.verify_rollback(ctx, inputs, result, undo)
            elapsed = time.perf_counter() - started
            assert verification.ok, verification.summary
            # Baseline: the same flip back done by hand, then one look at the authoritative server.
            forward = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
            batch = [{"Action": "UPSERT", "ResourceRecordSet": rs} for rs in forward.undo["before"]]
            started_base = time.perf_counter()
            r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": batch})
            response = dns.query.udp(dns.message.make_query(NAME, "A"), "127.0.0.1", port=dns_server.port, timeout=2)
            elapsed_base = time.perf_counter() - started_base
            assert response.answer, "the baseline query got no answer"
            if i:
                ours.append(elapsed)
                base.append(elapsed_base)
                propagation.append(verification.details["propagation_seconds"])
    finally:
        dns_server.stop()
        server.stop()

    ours_ms, base_ms = statistics.median(ours) * 1000, statistics.median(base) * 1000
    ratio = ours_ms / base_ms
    print(f"rounds: {rounds}; rollback+verify median {ours_ms:.1f} ms; bare change+query median {base_ms:.1f} ms")
    print(f"propagation_seconds reported by verify_rollback (median): {statistics.median(propagation):.3f}")
    print(json.dumps({"benchmark": "dns_rollback", "rounds": rounds, "ours_ms": round(ours_ms, 2),
                      "baseline_ms": round(base_ms, 2), "ratio": round(ratio, 2), "target": TARGET_RATIO,
                      "pass": ratio <= TARGET_RATIO}))


if __name__ == "__main__":
    main()
