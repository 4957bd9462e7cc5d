"""Heroku config vars and Fly Machines secrets/env over a local HTTP server with their documented shapes."""

from __future__ import annotations

import json

import pytest
from werkzeug import Response

from bot import secrets
from bot.platforms import errors, fly
from bot.platforms.heroku import config_vars
from bot.runbook.targets import FlyTarget, HerokuTarget

HEROKU_ACCEPT = "application/vnd.heroku+json; version=3"


@pytest.fixture
def heroku_env(httpserver, monkeypatch):
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    return httpserver


def test_heroku_read_registers_every_value(heroku_env):
    heroku_env.expect_request("/apps/api/config-vars", method="GET", headers={
        "Accept": HEROKU_ACCEPT, "Authorization": "Bearer heroku-token-1234"}).respond_with_json(
        {"WORKERS": "4", "DATABASE_URL": "postgres://u:p4ssword@db/x"})
    env = config_vars.read_env(HerokuTarget(app="api"))
    assert env.values["WORKERS"].fingerprint() == secrets.fingerprint("4")
    assert env.values["DATABASE_URL"].secret
    assert secrets.is_registered("postgres://u:p4ssword@db/x")
    heroku_env.check_assertions()


def test_heroku_set_and_unset_send_patch_bodies(heroku_env):
    bodies = []

    def patch(request):
        bodies.append(json.loads(request.data))
        return Response(json.dumps({"WORKERS": "4"}), content_type="application/json")

    heroku_env.expect_request("/apps/api/config-vars", method="PATCH").respond_with_handler(patch)
    config_vars.set_vars(HerokuTarget(app="api"), {"WORKERS": "4"})
    config_vars.unset_vars(HerokuTarget(app="api"), ["WORKERS"])
    assert bodies == [{"WORKERS": "4"}, {"WORKERS": None}]


@pytest.mark.parametrize("status,error", [(404, errors.NotFound), (401, errors.Unauthorized), (422, errors.InvalidRequest)])
def test_heroku_errors_are_typed(heroku_env, status, error):
    heroku_env.expect_request("/apps/gone/config-vars").respond_with_json(
        {"id": "not_found", "message": "Couldn't find that app."}, status=status)
    with pytest.raises(error) as exc:
        config_vars.read_env(HerokuTarget(app="gone"))
    assert exc.value.resource == "app gone"


def test_heroku_needs_token(monkeypatch):
    with pytest.raises(errors.MissingCredentials, match="HEROKU_API_KEY"):
        config_vars.read_env(HerokuTarget(app="api"))


@pytest.fixture
def fly_env(httpserver, monkeypatch):
    monkeypatch.setenv("FLY_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("FLY_API_TOKEN", "fly-token-5678")
    return httpserver


MACHINE = {"id": "148ed193b95948", "state": "started",
           "config": {"env": {"WORKERS": "4", "PRIMARY_REGION": "ams"},
                      "init": {"cmd": ["sh", "-c", "gunicorn -w ${WORKERS:-1}"]}}}


def test_fly_secrets_by_presence_and_machine_env(fly_env):
    auth = {"Authorization": "Bearer fly-token-5678"}
    fly_env.expect_request("/v1/apps/api/secrets", headers=auth).respond_with_json(
        {"secrets": [{"name": "DATABASE_URL", "digest": "b5a1c0d0e8f1"}]})
    fly_env.expect_request("/v1/apps/api/machines", headers=auth).respond_with_json(
        [MACHINE, {**MACHINE, "id": "3d8d413b29d089", "config": {"env": {"WORKERS": "2"}}},
         {"id": "old", "state": "destroyed", "config": {"env": {"GONE": "1"}}}])
    env = fly.read_env(FlyTarget(app="api"))
    assert not env.values["DATABASE_URL"].known and env.values["DATABASE_URL"].secret
    assert env.values["WORKERS"].fingerprint() == secrets.fingerprint("4")
    assert "GONE" not in env.values
    assert any("WORKERS differs between machines" in n for n in env.notes)
    assert env.commands == ["sh -c gunicorn -w ${WORKERS:-1}"]


def test_fly_errors_are_typed(fly_env):
    fly_env.expect_request("/v1/apps/nope/secrets").respond_with_json({"error": "app not found"}, status=404)
    with pytest.raises(errors.NotFound, match="app nope"):
        fly.read_env(FlyTarget(app="nope"))


def test_fly_shape_is_checked(fly_env):
    fly_env.expect_request("/v1/apps/api/secrets").respond_with_json({"unexpected": []})
    with pytest.raises(errors.PlatformError, match="no 'secrets' list"):
        fly.read_env(FlyTarget(app="api"))


def test_fly_needs_token():
    with pytest.raises(errors.MissingCredentials, match="FLY_API_TOKEN"):
        fly.read_env(FlyTarget(app="api"))
