"""env.set: plan by names, apply per platform, rollback restores exactly (ECS moto, DO fake, Heroku server)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from werkzeug import Response

from bot.platforms import digitalocean as do
from bot.platforms.aws import ecs
from bot.runbook.targets import DoAppTarget, FileTarget, HerokuTarget
from bot.steps.base import StepError, get_kind
from bot.steps.context import StepContext
from tests.fixtures.ecs_env import make_ecs_service


def ctx_for(**targets):
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets=targets, outputs={})


def env_file(tmp_path, text, name="old.env"):
    path = tmp_path / name
    path.write_text(text)
    return FileTarget(path=str(path))


KIND = get_kind("env.set")


def test_inputs_need_exactly_one_selection():
    with pytest.raises(ValidationError, match="exactly one"):
        KIND.Inputs.model_validate({"from": "old", "to": "new"})
    with pytest.raises(ValidationError, match="exactly one"):
        KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["A"], "all_missing": True})
    assert KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["A"]}).from_ == "old"


def test_ecs_new_revision_and_exact_rollback(aws, tmp_path):
    new = make_ecs_service(aws.url, environment={"LOG_LEVEL": "info"})
    ctx = ctx_for(old=env_file(tmp_path, "WORKERS=4\nLOG_LEVEL=info\nTOKEN_X=abc\n"), new=new)
    inputs = KIND.Inputs.model_validate({"from": "old", "to": "new", "all_missing": True, "ignore": ["TOKEN_*"]})
    original = ecs.service_task_definition(new)
    plan = KIND.plan(ctx, inputs)
    assert plan.blocking == [] and [c.resource for c in plan.changes] == ["new: WORKERS"]
    assert "4" not in json.dumps([c.model_dump() for c in plan.changes])
    result = KIND.apply(ctx, inputs, plan)
    assert result.undo["previous_task_definition"] == original
    assert ecs.service_task_definition(new) == result.undo["task_definition"] != original
    assert KIND.verify(ctx, inputs, result).ok
    KIND.rollback(ctx, inputs, result)
    assert ecs.service_task_definition(new) == original
    assert KIND.verify_rollback(ctx, inputs, result, None).ok


def test_secret_never_lands_in_ecs_plain_environment(aws, httpserver, monkeypatch):
    # Heroku config vars are all treated as secrets: copying one into an ECS `environment` is refused.
    httpserver.expect_request("/apps/old/config-vars").respond_with_json({"API_KEY": "sk-live-0000"})
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    new = make_ecs_service(aws.url)
    ctx = ctx_for(old=HerokuTarget(app="old"), new=new)
    plan = KIND.plan(ctx, KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["API_KEY"]}))
    assert any("secret would land" in b for b in plan.blocking)


def test_refuses_overwrite_and_unknown_names(aws, tmp_path):
    new = make_ecs_service(aws.url, environment={"WORKERS": "2"})
    ctx = ctx_for(old=env_file(tmp_path, "WORKERS=4\n"), new=new)
    plan = KIND.plan(ctx, KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS", "NOPE"]}))
    assert plan.blocking == ["WORKERS: already set on new with a different (or unreadable) value; set `overwrite: true` to replace it",
                             "NOPE: not set on old"]
    inputs = KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS"], "overwrite": True})
    plan = KIND.plan(ctx, inputs)
    assert plan.blocking == [] and plan.changes[0].action == "overwrite"
    result = KIND.apply(ctx, inputs, plan)
    assert result.undo["changed"] == ["WORKERS"]
    KIND.rollback(ctx, inputs, result)  # ECS keeps the old revision: even an overwrite is undone exactly
    assert KIND.verify_rollback(ctx, inputs, result, None).ok


def test_apply_refuses_when_destination_changed_since_plan(aws, tmp_path):
    new = make_ecs_service(aws.url)
    ctx = ctx_for(old=env_file(tmp_path, "WORKERS=4\n"), new=new)
    inputs = KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS"]})
    plan = KIND.plan(ctx, inputs)
    ecs.set_env(new, {"WORKERS": "4"})  # someone did it by hand meanwhile
    with pytest.raises(StepError, match="changed since the plan"):
        KIND.apply(ctx, inputs, plan)


def test_do_app_rollback_verified_by_masked_spec(do_fake, monkeypatch, tmp_path):
    do._reset_for_tests()
    spec = {"name": "api-production", "envs": [{"key": "LOG_LEVEL", "value": "info", "scope": "RUN_TIME"}],
            "services": [{"name": "web", "run_command": "run --workers ${WORKERS:-1}"}]}
    app_id = do_fake.add_app(spec)
    do_fake.use(monkeypatch)
    before = do_fake.spec(app_id)
    ctx = ctx_for(old=env_file(tmp_path, "WORKERS=4\nLOG_LEVEL=info\n"), new=DoAppTarget(app="api-production"))
    inputs = KIND.Inputs.model_validate({"from": "old", "to": "new", "all_missing": True})
    result = KIND.apply(ctx, inputs, KIND.plan(ctx, inputs))
    assert result.undo["location"] == "app" and result.undo["added"] == ["WORKERS"]
    assert "info" not in json.dumps(result.model_dump())  # the masked prior spec holds fingerprints only
    assert KIND.verify(ctx, inputs, result).ok
    KIND.rollback(ctx, inputs, result)
    assert do_fake.spec(app_id) == before
    assert KIND.verify_rollback(ctx, inputs, result, None).ok
    # a spec changed in any other way after the rollback is caught by the fingerprint comparison
    do_fake.apps[app_id]["spec"]["envs"][0]["value"] = "debug"
    assert not KIND.verify_rollback(ctx, inputs, result, None).ok


class HerokuState:
    def __init__(self, values):
        self.values = dict(values)

    def handler(self, request):
        if request.method == "PATCH":
            for k, v in json.loads(request.data).items():
                if v is None:
                    self.values.pop(k, None)
                else:
                    self.values[k] = v
        return Response(json.dumps(self.values), content_type="application/json")


def test_heroku_adds_and_rollback_unsets_only_added(httpserver, monkeypatch, tmp_path):
    state = HerokuState({"DATABASE_URL": "postgres://heroku-db", "WORKERS": "2"})
    httpserver.expect_request("/apps/api/config-vars").respond_with_handler(state.handler)
    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    ctx = ctx_for(old=env_file(tmp_path, "WORKERS=4\nREDIS_URL=redis://x\nSENTRY_DSN=https://dsn\n"),
                  new=HerokuTarget(app="api"))
    blocked = KIND.plan(ctx, KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS"]}))
    assert blocked.blocking and "overwrite: true" in blocked.blocking[0]
    inputs = KIND.Inputs.model_validate({"from": "old", "to": "new", "all_missing": True})
    plan = KIND.plan(ctx, inputs)
    assert plan.summary.startswith("set 2 variable(s) on new via a config-var update: REDIS_URL, SENTRY_DSN")
    result = KIND.apply(ctx, inputs, plan)
    assert state.values["REDIS_URL"] == "redis://x" and state.values["WORKERS"] == "2"
    KIND.rollback(ctx, inputs, result)
    assert state.values == {"DATABASE_URL": "postgres://heroku-db", "WORKERS": "2"}
    assert KIND.verify_rollback(ctx, inputs, result, None).ok


def test_file_destination_is_refused(tmp_path):
    ctx = ctx_for(old=env_file(tmp_path, "A=1\n"), new=env_file(tmp_path, "", name="new.env"))
    plan = KIND.plan(ctx, KIND.Inputs.model_validate({"from": "old", "to": "new", "names": ["A"]}))
    assert "env.set writes to aws-ecs, do-app, heroku" in plan.blocking[0]
