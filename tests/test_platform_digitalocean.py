"""App Platform adapter: every pydo call it makes, against Prism (the contract) and the stateful fake.

Prism serves DigitalOcean's OpenAPI description: a request that breaks it is refused (422), and
`Prefer: code=404|429` (sent through pydo's per-call `headers=` keyword, via `AppsApi(headers=)`)
makes it answer with that error, so the typed-error mapping is checked on the real client stack.
"""

from __future__ import annotations

import copy

import pytest

from bot import secrets
from bot.platforms import digitalocean as do
from bot.platforms import errors
from bot.platforms.digitalocean import apps
from bot.runbook.targets import DoAppTarget
from tests.fixtures.do_fake import replay_on_prism

PRISM_APP_ID = "4f6c71e2-1e90-4762-9fee-6cc4a0a9f2cf"  # the id in the contract's examples


@pytest.fixture
def prism_api(prism):
    do._reset_for_tests()
    client = do.client(endpoint=prism.url, token="prism-token", retry_total=0)

    def make(headers=None):
        return apps.AppsApi(client=client, headers=headers)

    return make


def test_list_get_and_find_against_contract(prism_api):
    api = prism_api()
    listed = list(api.list_apps())
    assert listed and all("spec" in a for a in listed)
    name = listed[0]["spec"]["name"]
    assert api.find(name)["id"] == listed[0]["id"]
    assert api.get(PRISM_APP_ID)["spec"]["name"]
    assert api.find(PRISM_APP_ID)["id"]  # a UUID goes straight to apps.get
    with pytest.raises(errors.NotFound, match="app no-such-app"):
        api.find("no-such-app")


def test_read_env_through_environment_settings(prism, monkeypatch):
    do._reset_for_tests()
    monkeypatch.setenv("DIGITALOCEAN_API_URL", prism.url)
    monkeypatch.setenv("DIGITALOCEAN_TOKEN", "prism-token")
    env = apps.read_env(DoAppTarget(app=PRISM_APP_ID))
    assert env.platform == "do-app" and env.commands == ["bin/sample-golang"]


@pytest.mark.parametrize("code,error", [("404", errors.NotFound), ("429", errors.Throttled)])
def test_forced_errors_are_typed_and_name_the_app(prism_api, code, error):
    api = prism_api({"Prefer": f"code={code}"})
    with pytest.raises(error) as exc:
        api.get(PRISM_APP_ID)
    assert exc.value.resource == f"app {PRISM_APP_ID}" and exc.value.call == "apps.get"
    with pytest.raises(error):
        api.update_spec(PRISM_APP_ID, {"name": "sample-golang"})
    with pytest.raises(error):
        list(api.list_apps())


def test_update_spec_valid_and_invalid(prism_api):
    api = prism_api()
    spec = api.get(PRISM_APP_ID)["spec"]
    spec["services"][0]["envs"] = [{"key": "WORKERS", "value": "4", "scope": "RUN_TIME", "type": "GENERAL"}]
    assert api.update_spec(PRISM_APP_ID, spec)["id"]
    bad = copy.deepcopy(spec)
    bad["services"][0]["envs"] = [{"key": "NOT A NAME", "scope": "SOMETIMES"}]
    with pytest.raises(errors.InvalidRequest):
        api.update_spec(PRISM_APP_ID, bad)


def test_missing_token_is_missing_credentials():
    do._reset_for_tests()
    with pytest.raises(errors.MissingCredentials, match="DIGITALOCEAN_TOKEN"):
        apps.AppsApi().client  # noqa: B018


SPEC = {
    "name": "api-production",
    "region": "nyc",
    "envs": [
        {"key": "DATABASE_URL", "value": "EV[1:enc]", "type": "SECRET", "scope": "RUN_TIME"},
        {"key": "LOG_LEVEL", "value": "info", "scope": "RUN_AND_BUILD_TIME"},
        {"key": "NPM_TOKEN", "value": "npm-build-secret", "scope": "BUILD_TIME"},
    ],
    "services": [{"name": "web", "run_command": "uvicorn app:app --workers ${WORKERS:-1}",
                  "envs": [{"key": "LOG_LEVEL", "value": "debug", "scope": "RUN_TIME"}]}],
    "workers": [{"name": "queue", "run_command": "celery worker"}],
}


def test_env_of_spec_scopes_secrets_and_components():
    env = apps.env_of_spec(copy.deepcopy(SPEC), "web")
    assert set(env.values) == {"DATABASE_URL", "LOG_LEVEL"}  # BUILD_TIME only is not in the process
    assert not env.values["DATABASE_URL"].known and env.values["DATABASE_URL"].secret
    assert env.values["LOG_LEVEL"].fingerprint() == secrets.fingerprint("debug")  # component overrides app
    assert env.commands == ["uvicorn app:app --workers ${WORKERS:-1}"]
    assert any("NPM_TOKEN" in n and "BUILD_TIME" in n for n in env.notes)
    merged = apps.env_of_spec(copy.deepcopy(SPEC))
    assert any("LOG_LEVEL differs between components" in n for n in merged.notes)
    with pytest.raises(errors.NotFound, match="component nope"):
        apps.env_of_spec(copy.deepcopy(SPEC), "nope")


def test_masked_spec_hides_values_and_detects_change():
    masked = apps.masked_spec(SPEC)
    text = repr(masked)
    assert "info" not in text and "npm-build-secret" not in text and "EV[1:enc]" not in text
    other = copy.deepcopy(SPEC)
    other["envs"][1]["value"] = "warning"
    assert apps.masked_spec(other) != masked
    assert apps.masked_spec(copy.deepcopy(SPEC)) == masked


def test_add_and_remove_envs_restore_exact_spec(do_fake, monkeypatch, prism):
    do._reset_for_tests()
    app_id = do_fake.add_app(SPEC)
    do_fake.use(monkeypatch)
    target = DoAppTarget(app="api-production", component="web")
    before = do_fake.spec(app_id)
    change = apps.add_envs(target, {"WORKERS": ("4", False), "API_KEY": ("sk-live-abcdef", True)})
    assert change.added == ["WORKERS", "API_KEY"] and change.location == "web"
    stored = {e["key"]: e for e in do_fake.spec(app_id)["services"][0]["envs"]}
    assert stored["WORKERS"] == {"key": "WORKERS", "value": "4", "scope": "RUN_TIME", "type": "GENERAL"}
    assert stored["API_KEY"]["value"].startswith("EV[")  # sent as SECRET, encrypted by the platform
    after = apps.remove_envs(target, change.location, change.added)
    assert do_fake.spec(app_id) == before == after
    # and every request the adapter sent is one the real API accepts
    for rec, status, body in replay_on_prism(do_fake.recorded, prism.url):
        assert status < 400, (rec.method, rec.path, status, body)


def test_add_envs_changes_component_override_and_refuses_build_time_twin(do_fake, monkeypatch):
    from bot.platforms import errors as errs

    do._reset_for_tests()
    app_id = do_fake.add_app(SPEC)
    do_fake.use(monkeypatch)
    target = DoAppTarget(app="api-production")
    change = apps.add_envs(target, {"LOG_LEVEL": ("warning", False)})
    assert change.changed == ["LOG_LEVEL"] and change.added == []
    spec = do_fake.spec(app_id)
    assert spec["envs"][1]["value"] == spec["services"][0]["envs"][0]["value"] == "warning"
    with pytest.raises(errs.InvalidRequest, match="NPM_TOKEN exists as a BUILD_TIME-only"):
        apps.add_envs(target, {"NPM_TOKEN": ("x", True)})
