"""DigitalOcean domain records: the contract through Prism, switch-then-verify through a stateful fake.

Prism keeps no state, so the switch -> verify -> rollback flow runs against a tiny stateful fake of
the two endpoints it uses; every request the fake received is then replayed against Prism, which
validates it against the published contract: the fake cannot drift into accepting what the real
API would refuse.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from bot.platforms import digitalocean as do
from bot.platforms import errors
from bot.platforms.digitalocean import domains
from bot.runbook.targets import DoDomainTarget
from bot.steps.base import PlanRefused, get_kind
from tests.fixtures.dns_server import step_context


class FakeDomains:
    """GET .../records?name=&type= and PATCH .../records/{id}, remembering the records."""

    def __init__(self) -> None:
        self.records = {
            "example.com": [
                {"id": 11, "type": "A", "name": "api", "data": "192.0.2.1", "ttl": 60, "priority": None,
                 "port": None, "weight": None, "flags": None, "tag": None},
                {"id": 12, "type": "NS", "name": "@", "data": "ns1.digitalocean.com", "ttl": 1800, "priority": None,
                 "port": None, "weight": None, "flags": None, "tag": None},
            ]
        }
        self.requests: list[tuple[str, str, dict | None]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status, body):
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):  # noqa: N802
                fake.requests.append(("GET", self.path, None))
                url = urlparse(self.path)
                match = re.fullmatch(r"/v2/domains/([^/]+)/records", url.path)
                if not match or match[1] not in fake.records:
                    return self._send(404, {"id": "not_found", "message": "The resource you requested could not be found."})
                query = parse_qs(url.query)
                name, rtype = query.get("name", [None])[0], query.get("type", [None])[0]
                domain = match[1]
                found = [r for r in fake.records[domain]
                         if (name is None or _fqdn(r["name"], domain) == name) and (rtype is None or r["type"] == rtype)]
                self._send(200, {"domain_records": found, "links": {}, "meta": {"total": len(found)}})

            def do_PATCH(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(("PATCH", self.path, body))
                match = re.fullmatch(r"/v2/domains/([^/]+)/records/(\d+)", self.path)
                record = next((r for r in fake.records.get(match[1], []) if r["id"] == int(match[2])), None) if match else None
                if record is None:
                    return self._send(404, {"id": "not_found", "message": "The resource you requested could not be found."})
                record.update({k: v for k, v in body.items() if k in ("data", "ttl")})
                self._send(200, {"domain_record": record})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _fqdn(name: str, domain: str) -> str:
    return domain if name == "@" else f"{name}.{domain}"


@pytest.fixture
def fake_do(monkeypatch):
    fake = FakeDomains()
    monkeypatch.setenv("DIGITALOCEAN_API_URL", fake.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "fake-do-token-123")
    yield fake
    fake.stop()
    do._reset_for_tests()


@pytest.fixture
def prism_do(prism, monkeypatch):
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "prism-token-123")
    yield prism
    do._reset_for_tests()


# -- contract (Prism) ------------------------------------------------------------------------------------

def test_list_and_patch_are_valid_against_the_contract(prism_do):
    records = domains.list_records("example.com", "api.example.com", "A")
    assert isinstance(records, list)
    # Prism's example record is an NS; a patch with only data/ttl must still be a valid request.
    record = {"id": 3352896, "type": "A", "name": "api", "data": "192.0.2.1", "ttl": 60}
    patched = domains.patch_record("example.com", record, data="192.0.2.2", ttl=30)
    assert "id" in patched


def test_a_404_body_is_not_found_not_an_empty_list(prism_do):
    client = do.client()
    with pytest.raises(errors.NotFound, match="api.example.com A in example.com"):
        # Prefer makes Prism answer with the contract's 404 body, which pydo returns instead of raising.
        domains.list_records("example.com", "api.example.com", "A",
                             client=_preferring(client, "code=404"))


def _preferring(client, prefer):
    class Ops:
        def list_records(self, *args, **kwargs):
            return client.domains.list_records(*args, headers={"Prefer": prefer}, **kwargs)

    class Wrapped:
        domains = Ops()

    return Wrapped()


# -- switch -> verify -> rollback with the stateful fake ------------------------------------------------------

def test_switch_verify_rollback(fake_do, dns_server, prism_do_later):
    dns_server.set("api.example.com", "A", ["192.0.2.1"], ttl=60)
    ctx = step_context({"dns": DoDomainTarget(domain="example.com")})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record="api.example.com", to="192.0.2.2", ttl=30,
                         nameservers=[dns_server.address], verify_timeout=10, poll_interval=0.1)
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == [] and "192.0.2.2" in plan.summary
    result = kind.apply(ctx, inputs, plan)
    record = fake_do.records["example.com"][0]
    assert (record["data"], record["ttl"]) == ("192.0.2.2", 30)
    # The fake is the API; the local server is the zone's nameserver catching up a little later.
    dns_server.set_later(0.3, "api.example.com", "A", ["192.0.2.2"], ttl=30)
    verification = kind.verify(ctx, inputs, result)
    assert verification.ok, verification.summary

    assert "1 DigitalOcean patch" in kind.plan_rollback(ctx, inputs, result).summary
    undo = kind.rollback(ctx, inputs, result)
    assert (record["data"], record["ttl"]) == ("192.0.2.1", 60)
    dns_server.set("api.example.com", "A", ["192.0.2.1"], ttl=60)
    assert kind.verify_rollback(ctx, inputs, result, undo).ok

    # Every request the fake accepted is one the real contract accepts.
    prism_do_later(fake_do.requests)


@pytest.fixture
def prism_do_later(prism):
    def replay(recorded):
        assert any(method == "PATCH" for method, _, _ in recorded)
        for method, path, body in recorded:
            response = requests.request(method, prism.url + path, json=body, timeout=10,
                                        headers={"Authorization": "Bearer x"})
            assert response.status_code < 300, (method, path, body, response.text[:500])

    return replay


def test_gradual_shift_is_refused_on_digitalocean(fake_do):
    ctx = step_context({"dns": DoDomainTarget(domain="example.com")})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record="api.example.com", weights={"old": 0, "new": 100}, stages=[10, 100])
    with pytest.raises(PlanRefused, match="DigitalOcean DNS has no weighted records"):
        kind.plan(ctx, inputs)


def test_value_count_must_match_the_records(fake_do):
    ctx = step_context({"dns": DoDomainTarget(domain="example.com")})
    kind = get_kind("dns.switch")
    inputs = kind.Inputs(zone="dns", record="api.example.com", to=["192.0.2.2", "192.0.2.3"])
    with pytest.raises(PlanRefused, match="has 1 record.*`to` has 2"):
        kind.plan(ctx, inputs)


def test_patch_without_type_would_be_refused_by_the_contract(prism):
    # Proves the replay above can fail: the contract requires `type` in a record patch.
    response = requests.patch(f"{prism.url}/v2/domains/example.com/records/1", json={"data": "192.0.2.9"},
                              headers={"Authorization": "Bearer x"}, timeout=10)
    assert response.status_code == 422
