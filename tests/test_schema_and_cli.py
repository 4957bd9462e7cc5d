"""The shipped JSON Schema is current, examples point editors at it, and the CLI's exit codes hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RUNBOOKS = sorted((ROOT / "runbooks").glob("*.yaml"))


def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    full_env.pop("RUNBOOK_BOT_PLUGINS", None)
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=full_env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_the_shipped_schema_is_not_stale():
    # A separate process: the schema must come from the shipped kinds only, never a test's plugins.
    generated = cli("schema")
    assert generated.returncode == 0, generated.stderr
    shipped = (ROOT / "runbooks" / "runbook.schema.json").read_text()
    assert generated.stdout == shipped, "runbooks/runbook.schema.json is stale: run `runbook-bot schema > " \
                                        "runbooks/runbook.schema.json`"


def test_every_example_names_the_schema_and_validates_against_it():
    schema = json.loads((ROOT / "runbooks" / "runbook.schema.json").read_text())
    assert RUNBOOKS
    for path in RUNBOOKS:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=./runbook.schema.json", path
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


BAD_RUNBOOKS = [
    ({"name": "x", "steps": [{"id": "a", "kind": "wait", "with": {"secnds": 3}}]}, "secnds"),
    ({"name": "x", "steps": [{"id": "a", "kind": "wiat", "with": {"seconds": 3}}]}, "wiat"),
    ({"name": "x", "targets": {"t": {"platform": "aws-ecs", "cluster": "c"}},
      "steps": [{"id": "a", "kind": "wait", "with": {"seconds": 3}}]}, "service"),
    ({"name": "x", "stepz": [], "steps": [{"id": "a", "kind": "wait", "with": {"seconds": 3}}]}, "stepz"),
]


@pytest.mark.parametrize(("doc", "named"), BAD_RUNBOOKS, ids=[n for _, n in BAD_RUNBOOKS])
def test_the_schema_rejects_what_the_loader_rejects(doc, named):
    from bot.runbook.load import RunbookInvalid, load_text

    schema = json.loads((ROOT / "runbooks" / "runbook.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
    with pytest.raises(RunbookInvalid) as caught:
        load_text(yaml.safe_dump(doc, sort_keys=False), "bad.yaml")
    assert named in str(caught.value) and "bad.yaml:" in str(caught.value)


def test_the_schema_and_the_loader_accept_the_same_good_runbook():
    from bot.runbook.load import load_text

    doc = {"name": "x", "steps": [{"id": "a", "kind": "wait", "with": {"seconds": 3}}]}
    jsonschema.validate(doc, json.loads((ROOT / "runbooks" / "runbook.schema.json").read_text()))
    assert load_text(yaml.safe_dump(doc), "good.yaml").model.steps[0].id == "a"


def test_validate_exit_codes(tmp_path):
    ok = cli("validate", "runbooks/")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - id: a\n    kind: wiat\n")
    result = cli("validate", str(bad))
    assert result.returncode == 1
    assert f"{bad}:4:11: steps[0].kind: unknown step kind 'wiat'; did you mean wait?" in result.stdout


def test_run_plan_status_and_usage_errors(tmp_path):
    env = {"RUNBOOK_BOT_STATE_DIR": str(tmp_path / "state"), "SANDBOX_OLD_URL": "http://127.0.0.1:9",
           "SANDBOX_NEW_URL": "http://127.0.0.1:9"}
    assert cli("run", "demo", "-p", "env=prod", env=env).returncode == 2
    assert cli("run", "demox", env=env).returncode == 2
    assert "did you mean demo" in cli("run", "demox", env=env).stdout
    assert cli("run", "demo", "-p", "novalue", env=env).returncode == 2
    plan = cli("plan", "demo", env=env)
    assert plan.returncode == 0, plan.stdout
    assert "nothing was changed" in plan.stdout
    status = cli("status", "--json", env=env)
    runs = json.loads(status.stdout)
    assert runs[0]["dry_run"] is True and runs[0]["state"] == "succeeded"
    # the real run fails at the first health check (nothing listens on port 9): exit 1
    failed = cli("run", "demo", "--yes", env=env)
    assert failed.returncode == 1, failed.stdout
    assert "connection failed" in failed.stdout
