"""The DigitalOcean stand-in (`bot/sandbox/digitalocean.py`) is kept honest against the contract.

Two checks, both against the vendored contract (`tests/contracts/digitalocean/openapi.yaml`):

- every request the product sends to the stand-in (through the real pydo client, exactly as the
  rehearsal sends them) is replayed against Prism, which rejects anything the published API would;
- every answer the stand-in gives has only fields the contract's 200-response schema defines, at
  the top level and one level down (the app, the database, each pool), so the stand-in cannot
  grow a field the real API never returns and let the product depend on it.
"""

from __future__ import annotations

import re

import requests

from bot.platforms.digitalocean import app_logs, apps, databases
from bot.runbook.targets import DoAppTarget
from bot.sandbox.digitalocean import DigitalOceanStandIn
from tests.fixtures.do_contract import properties as _properties
from tests.fixtures.do_contract import resolve as _resolve
from tests.fixtures.do_contract import spec as _spec
from tests.fixtures.do_fake import replay_on_prism


def _operation_schema(method: str, path: str) -> dict:
    for template, item in _spec()["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in item:
            response = _resolve(item[method.lower()]["responses"]["200"])
            return _resolve(response["content"]["application/json"]["schema"])
    raise AssertionError(f"{method} {path} is not an operation of the contract")


def _unknown_fields(body: dict, schema: dict) -> list[str]:
    props = _properties(schema)
    unknown = [key for key in body if key not in props]
    for key, value in body.items():
        if key not in props:
            continue
        sub = _resolve(props[key])
        if isinstance(value, dict):
            unknown += [f"{key}.{k}" for k in value if k not in _properties(sub)]
        elif isinstance(value, list) and value and isinstance(value[0], dict) and "items" in sub:
            unknown += [f"{key}[].{k}" for k in value[0] if k not in _properties(sub["items"])]
    return unknown


def _exercise(standin: DigitalOceanStandIn, monkeypatch) -> None:
    standin.use(monkeypatch)
    standin.add_app({"name": "api-staging", "services": [{"name": "api-staging", "envs": [
        {"key": "LOG_LEVEL", "value": "info", "scope": "RUN_TIME", "type": "GENERAL"},
        {"key": "OPENAI_API_KEY", "value": "sk-x", "scope": "RUN_TIME", "type": "SECRET"}]}]})
    standin.add_database("api-staging-pg", direct=("127.0.0.1", 5432), user="doadmin", password="pw-x",
                         database="api", pool=("127.0.0.1", 6432))
    target = DoAppTarget(app="api-staging")
    apps.read_env(target)
    apps.add_envs(target, {"WORKERS": ("4", False)})
    databases.direct_connection("api-staging-pg")
    databases.pool_connection("api-staging-pg", "api-pool")
    app_logs.historic_urls("api-staging", "api-staging")


def test_every_request_the_standin_answers_is_one_the_contract_accepts(prism, monkeypatch):
    standin = DigitalOceanStandIn(clock=lambda: 7200.0, history_start=0.0, log_lines=lambda *a: []).start()
    try:
        _exercise(standin, monkeypatch)
        kinds = {(r.method, re.sub(r"[0-9a-f-]{36}", "{id}", r.path)) for r in standin.recorded}
        assert len(kinds) >= 6, kinds  # apps list/get/put, databases list/get, pools, logs
        rejected = [(rec.method, rec.path, status, body) for rec, status, body in
                    replay_on_prism(standin.recorded, prism.url) if status >= 400]
        assert not rejected, rejected
    finally:
        standin.stop()


def test_every_answer_of_the_standin_has_only_fields_the_contract_defines(monkeypatch):
    standin = DigitalOceanStandIn(clock=lambda: 7200.0, history_start=0.0, log_lines=lambda *a: []).start()
    try:
        _exercise(standin, monkeypatch)
        seen = set()
        for rec in standin.recorded:
            if (rec.method, rec.path) in seen:
                continue
            seen.add((rec.method, rec.path))
            answer = requests.request(rec.method, standin.url + rec.path, params=rec.query, json=rec.body,
                                      headers={"Authorization": f"Bearer {standin.settings()['DIGITALOCEAN_TOKEN']}"},
                                      timeout=10).json()
            unknown = _unknown_fields(answer, _operation_schema(rec.method, rec.path))
            assert not unknown, f"{rec.method} {rec.path}: fields the contract does not define: {unknown}"
    finally:
        standin.stop()


def test_the_field_check_catches_an_invented_field():
    schema = _operation_schema("GET", "/v2/databases/0d5d3b4a-0000-0000-0000-000000000000")
    assert _unknown_fields({"database": {"id": "x", "name": "y"}}, schema) == []
    assert _unknown_fields({"database": {"id": "x", "pooled_url": "z"}}, schema) == ["database.pooled_url"]
