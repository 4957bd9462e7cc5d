"""The Cloudflare adapters' real requests against Prism serving the vendored contract (`--errors`).

Prism validates every request (path, query, the contract's email + key authentication, bodies) and,
with `--errors`, its own static answers. It keeps no state, so these tests cover what a stateless
mock can prove: the zone lookup, record listing, load-balancer and pool reads, and the load
balancer PATCH body `traffic.shift` sends. Stateful flows run on the stand-in
(tests/fixtures/cloudflare_standin.py). DNS write bodies are not sent to Prism: the contract's
write schema is the response schema (its README, quirk 2), which no real client body satisfies.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests

from bot.platforms.cloudflare.lb import LoadBalancerWeights
from bot.platforms.cloudflare.target import CloudflareLbTarget, CloudflareTarget
from bot.platforms.cloudflare.zone import CloudflareZone
from tests.fixtures.digitalocean import PRISM, _free_port
from tests.fixtures.dns_server import step_context

CONTRACT = Path(__file__).resolve().parent / "contracts" / "cloudflare" / "cloudflare-dns-lb.openapi.yaml"
HEADERS = {"X-Auth-Email": "a@example.com", "X-Auth-Key": "k"}


@pytest.fixture(scope="module")
def cf_prism(tmp_path_factory):
    assert PRISM.exists(), f"Prism not installed at {PRISM}: run scripts/setup.sh --test"
    port = _free_port()
    log = tmp_path_factory.mktemp("cfprism") / "prism.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), "--errors", str(CONTRACT)],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Prism exited: {log.read_text()[-2000:]}")
            try:
                requests.get(f"{url}/zones", headers=HEADERS, timeout=2)
                break
            except requests.ConnectionError:
                if time.time() > deadline:
                    raise RuntimeError("Prism did not start in time") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def creds(monkeypatch):
    monkeypatch.setenv("CLOUDFLARE_EMAIL", HEADERS["X-Auth-Email"])
    monkeypatch.setenv("CLOUDFLARE_API_KEY", HEADERS["X-Auth-Key"])
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN", raising=False)
    monkeypatch.setenv("CLOUDFLARE_MAX_RETRIES", "0")


def test_zone_lookup_and_record_read_pass_the_contract(cf_prism, creds):
    zone = CloudflareZone(CloudflareTarget(zone="example.com", api_url=cf_prism))
    assert zone.ref == "023e105f4ecef8ad9ca31a8372d0c353"
    records = zone.read("example.com", "A")
    assert records and records[0]["content"] == "198.51.100.4" and records[0]["ttl"] == 3600


def test_load_balancer_reads_and_the_shift_patch_pass_the_contract(cf_prism, creds):
    target = CloudflareLbTarget(zone="023e105f4ecef8ad9ca31a8372d0c353", load_balancer="www.example.com",
                                account="023e105f4ecef8ad9ca31a8372d0c353", api_url=cf_prism)
    lb = LoadBalancerWeights(target)
    snap = lb.snapshot()
    assert snap["lb_id"] == "699d98642c564d2e855e9661899b7252"
    pools = list(snap["names"].values())
    assert pools
    wanted = lb.with_weights(snap, {pools[0]: 0.3})
    assert wanted["steering"]["steering_policy"] in ("random", "least_outstanding_requests")
    # Prism answers 422 to a body that breaks the contract: a pass here is the contract's word.
    calls = lb.write(step_context({}), snap, wanted)
    assert calls == 1
