"""The `file` platform reads the exports people have, so an env matrix can be taken before deploying.

Each test writes the file exactly as the tool prints it (doctl, aws, heroku, fly) and reads it
through the `file` target: the seed's WORKERS must be found where it is set, missing where it is
not, secrets known by presence only, and the start command carried so `${WORKERS:-1}` is seen.
"""

from __future__ import annotations

import json

import pytest

from bot.platforms import envfile, errors
from bot.runbook.targets import FileTarget

COMMAND = "uvicorn app.main:app --host 0.0.0.0 --port 8080 --workers ${WORKERS:-1}"


def _read(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return envfile.read_env(FileTarget(path=str(path)))


def test_dotenv(tmp_path):
    env = _read(tmp_path, ".env", 'export WORKERS=4\nLOG_LEVEL="info"  # comment\n')
    assert env.values["WORKERS"].value == "4" and env.values["LOG_LEVEL"].value == "info"


def test_app_platform_spec_from_doctl_yaml(tmp_path):
    env = _read(tmp_path, "spec.yaml", f"""
name: api-production
envs:
  - {{key: LOG_LEVEL, value: info, scope: RUN_TIME}}
services:
  - name: api
    run_command: {COMMAND}
    envs:
      - {{key: DATABASE_URL, value: "EV[1:abc:def]", type: SECRET, scope: RUN_TIME}}
      - {{key: ASSETS_URL, value: /static, scope: BUILD_TIME}}
""")
    assert set(env.values) == {"LOG_LEVEL", "DATABASE_URL"}   # BUILD_TIME never reaches the process
    assert "WORKERS" not in env.values                          # the seed's missing variable
    assert env.values["DATABASE_URL"].value is None             # a SECRET: presence only
    assert env.commands == [COMMAND]


def test_app_platform_spec_inside_doctl_apps_get_json(tmp_path):
    env = _read(tmp_path, "app.json", json.dumps({"id": "x", "spec": {"name": "api", "services": [
        {"name": "api", "envs": [{"key": "WORKERS", "value": "4", "scope": "RUN_TIME"}]}]}}))
    assert env.values["WORKERS"].value == "4"


def test_ecs_task_definition_from_describe_task_definition(tmp_path):
    env = _read(tmp_path, "taskdef.json", json.dumps({"taskDefinition": {"family": "api", "containerDefinitions": [{
        "name": "api", "command": ["sh", "-c", COMMAND],
        "environment": [{"name": "WORKERS", "value": "4"}],
        "secrets": [{"name": "OPENAI_API_KEY", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:k"}]}]}}))
    assert env.values["WORKERS"].value == "4"
    assert env.values["OPENAI_API_KEY"].value is None and env.values["OPENAI_API_KEY"].secret
    assert env.commands == [f"sh -c {COMMAND}"]


def test_heroku_config_json(tmp_path):
    env = _read(tmp_path, "heroku.json", json.dumps({"WORKERS": "4", "WEB_CONCURRENCY": 2}))
    assert env.values["WORKERS"].value == "4" and env.values["WEB_CONCURRENCY"].value == "2"


def test_fly_toml_env_table_and_processes(tmp_path):
    env = _read(tmp_path, "fly.toml", f"""
app = "api"
primary_region = "iad"
[build]
  image = "registry.fly.io/api:7"
[env]
  LOG_LEVEL = "info"
[processes]
  app = "{COMMAND}"
""")
    assert set(env.values) == {"LOG_LEVEL"} and env.commands == [COMMAND]
    bare = _read(tmp_path, "other.toml", 'app = "api"\n')
    assert bare.values == {}


def test_a_nested_value_is_refused_with_its_name(tmp_path):
    with pytest.raises(errors.InvalidRequest, match="'WORKERS'"):
        _read(tmp_path, "bad.json", json.dumps({"WORKERS": {"n": 4}}))
