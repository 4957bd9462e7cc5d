"""Cloudflare DNS through the official SDK against the contract-checked stand-in, with a real DNS server.

Every request the SDK sends and every answer the stand-in gives is validated against the vendored
contract (tests/contracts/cloudflare/); the fixture fails a test that caused any violation.
Unproxied records are verified at a real authoritative DNS server (dnslib) fed from the stand-in's
state; proxied ones by reading the record back from the API.
"""

from __future__ import annotations

import textwrap

import pytest

from bot.platforms import errors, registry
from bot.platforms.cloudflare.target import CloudflareTarget
from bot.runbook.load import RunbookInvalid, load_text
from bot.steps.base import PlanRefused, get_kind
from tests.fixtures.cloudflare_standin import EDGE_ADDRESSES, cloudflare_api  # noqa: F401 (fixture)
from tests.fixtures.dns_server import ManualClock, step_context


def _records(api, zid):
    return {r["id"]: (r["content"], r["ttl"], r["proxied"]) for r in api.records[zid].values()}


def _run(kind, ctx, inputs):
    plan = kind.plan(ctx, inputs)
    assert not plan.blocking, plan.blocking
    result = kind.apply(ctx, inputs, plan)
    return plan, result


def test_proxied_switch_is_immediate_skips_the_ttl_preflight_and_verifies_by_read_back(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    rid = cloudflare_api.add_record(zid, "api.example.com", "CNAME", "api-1234.herokudns.com", proxied=True)
    before = _records(cloudflare_api, zid)
    ctx = step_context({"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="edge", record="api.example.com", type="CNAME", to="api.eu-west-1.elasticbeanstalk.com",
                         max_ttl=1)  # a TTL preflight would block on any TTL: proxied records have none to wait out
    plan, result = _run(kind, ctx, inputs)
    assert any("proxied" in w and "immediate" in w and "TTL preflight does not apply" in w for w in plan.warnings)
    assert cloudflare_api.records[zid][rid]["content"] == "api.eu-west-1.elasticbeanstalk.com"
    assert cloudflare_api.records[zid][rid]["proxied"] is True  # the switch keeps the orange cloud
    check = kind.verify(ctx, inputs, result)
    assert check.ok and "reads back" in check.summary and check.details["edge"] is True

    undo = kind.rollback(ctx, inputs, result)
    assert _records(cloudflare_api, zid) == before
    assert kind.verify_rollback(ctx, inputs, result, undo).ok
    patches = [c for c in cloudflare_api.calls if c[0] == "PATCH"]
    assert len(patches) == 2 and patches[0][2]["type"] == "CNAME"


def test_unproxied_switch_is_verified_at_the_authoritative_server(cloudflare_api, dns_server):
    zid = cloudflare_api.add_zone("example.com")
    cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.10", ttl=60)
    dns_server.use_source(cloudflare_api.unproxied_source)
    ctx = step_context({"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="edge", record="api.example.com", type="A", to="198.51.100.7",
                         nameservers=[dns_server.address], verify_timeout=5, poll_interval=0.1)
    plan, result = _run(kind, ctx, inputs)
    assert not any("proxied" in w for w in plan.warnings)
    check = kind.verify(ctx, inputs, result)
    assert check.ok, check.summary
    assert "authoritative servers answer 198.51.100.7" in check.summary
    assert dns_server.queries > 0

    undo = kind.rollback(ctx, inputs, result)
    assert kind.verify_rollback(ctx, inputs, result, undo).ok
    assert [r["content"] for r in cloudflare_api.records[zid].values()] == ["192.0.2.10"]


def test_unproxied_switch_with_a_high_ttl_is_refused_by_the_preflight(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.10", ttl=3600)
    ctx = step_context({"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)})
    kind = get_kind("dns.switch")
    plan = kind.plan(ctx, kind.Inputs(zone="edge", record="api.example.com", to="198.51.100.7", max_ttl=300))
    assert plan.blocking and "1h, above max_ttl 5m" in plan.blocking[0]


def test_set_ttl_knows_automatic_and_refuses_what_cloudflare_would(cloudflare_api, dns_server):
    zid = cloudflare_api.add_zone("example.com")
    rid = cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.10", ttl=1)
    dns_server.use_source(cloudflare_api.unproxied_source)
    ctx = step_context({"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)},
                       clock=ManualClock())
    kind = get_kind("dns.set_ttl")
    with pytest.raises(PlanRefused, match="1 \\(automatic\\) or 60-86400"):
        kind.plan(ctx, kind.Inputs(zone="edge", record="api.example.com", ttl=10))
    inputs = kind.Inputs(zone="edge", record="api.example.com", ttl=60, nameservers=[dns_server.address],
                         verify_timeout=2)
    plan = kind.plan(ctx, inputs)
    assert plan.table[1][1] == "auto"
    result = kind.apply(ctx, inputs, plan)
    assert cloudflare_api.records[zid][rid]["ttl"] == 60
    assert kind.verify(ctx, inputs, result).ok
    kind.rollback(ctx, inputs, result)
    assert cloudflare_api.records[zid][rid]["ttl"] == 1


def test_a_failed_patch_puts_back_the_records_already_patched(cloudflare_api):
    zid = cloudflare_api.add_zone("example.com")
    cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.10", ttl=60)
    cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.11", ttl=60)
    before = _records(cloudflare_api, zid)
    ctx = step_context({"edge": CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="edge", record="api.example.com", to=["198.51.100.7", "198.51.100.8"])
    plan = kind.plan(ctx, inputs)
    first_patch = len([c for c in cloudflare_api.calls if c[0] == "PATCH"])
    assert first_patch == 0
    # The second PATCH fails (after the SDK's retries, set to 0 here): the first is put back.
    cloudflare_api.fail("PATCH", r"/dns_records/", status=500, times=0)
    failing = {"n": 0}
    original = cloudflare_api.route

    def route(op, query, body):
        if op.method == "PATCH":
            failing["n"] += 1
            if failing["n"] == 2:
                return 500, {"success": False, "errors": [{"code": 1, "message": "boom"}], "messages": [], "result": None}
        return original(op, query, body)

    cloudflare_api.route = route
    with pytest.raises(errors.Unavailable, match="boom"):
        kind.apply(ctx, inputs, plan)
    assert _records(cloudflare_api, zid) == before
    assert failing["n"] == 3  # patch, failed patch, put-back


def test_token_auth_and_missing_credentials(cloudflare_api, monkeypatch):
    zid = cloudflare_api.add_zone("example.com")
    cloudflare_api.add_record(zid, "api.example.com", "A", "192.0.2.10", ttl=60)
    target = CloudflareTarget(zone="example.com", api_url=cloudflare_api.url)
    monkeypatch.delenv("CLOUDFLARE_EMAIL")
    monkeypatch.delenv("CLOUDFLARE_API_KEY")
    monkeypatch.setenv("CLOUDFLARE_API_TOKEN", "cf-test-token-abcdef")
    assert registry.adapter(target, "Zone").read("api.example.com", "A")[0]["content"] == "192.0.2.10"
    monkeypatch.delenv("CLOUDFLARE_API_TOKEN")
    with pytest.raises(errors.MissingCredentials, match="CLOUDFLARE_API_TOKEN"):
        registry.adapter(target, "Zone").read("api.example.com", "A")


def test_a_step_refuses_at_load_time_a_target_without_the_capability():
    text = textwrap.dedent("""
        name: wrong-targets
        targets:
          old: {platform: heroku, app: api}
          edge: {platform: cloudflare, zone: example.com}
        steps:
          - id: switch
            kind: dns.switch
            with: {zone: old, record: api.example.com, to: 192.0.2.1}
          - id: scale
            kind: service.scale
            with: {target: edge, count: 0}
    """).lstrip()
    with pytest.raises(RunbookInvalid) as exc:
        load_text(text, "rb.yaml")
    errs = [str(e) for e in exc.value.errors]
    assert any(e.startswith("rb.yaml:8:") and "target 'old' is heroku" in e and "cloudflare" in e
               and "platforms with Zone" in e for e in errs), errs
    assert any(e.startswith("rb.yaml:11:") and "target 'edge' is cloudflare" in e and "platforms with Scaler" in e
               for e in errs), errs


def test_the_registry_is_the_only_place_naming_platforms_for_the_step_kinds():
    import pathlib
    import re

    steps = pathlib.Path(__file__).resolve().parent.parent / "bot" / "steps"
    names = [p for p in registry.PLATFORMS]
    offenders = []
    for path in steps.glob("*.py"):
        text = path.read_text()
        for name in names:
            if re.search(rf"[\"']{re.escape(name)}[\"']", text):
                offenders.append(f"{path.name}: {name}")
    assert not offenders, offenders
    assert EDGE_ADDRESSES  # the stand-in's edge is what a proxied name answers
