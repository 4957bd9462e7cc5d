"""env.diff: the matrix states, explanations, command defaults, and the step's plan/apply contract."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bot import secrets
from bot.platforms.envvalue import EnvValue, SourceEnv
from bot.runbook.targets import FileTarget, HttpTarget
from bot.steps import envmatrix
from bot.steps.base import StepError, get_kind
from bot.steps.context import StepContext


def source(values: dict[str, str | None], commands=(), secret=()) -> SourceEnv:
    env = SourceEnv(platform="file", resource="test", commands=list(commands))
    env.values = {k: EnvValue(k, v, secret=k in secret) for k, v in values.items()}
    return env


def states(m):
    return {r.name: (r.state, r.level) for r in m.rows}


def test_matrix_states():
    old = source({"SAME": "1", "DIFF": "a", "GONE": "x", "DB": "postgres://old", "SEC": "s3cret", "KEEP": "k"})
    new = source({"SAME": "1", "DIFF": "b", "DB": "postgres://new", "SEC": None, "NEWONLY": "n", "KEEP": "k"})
    m = envmatrix.build({"old": old, "new": new}, expect_differ=["DB", "KEEP"])
    s = states(m)
    assert s["SAME"] == ("same", envmatrix.OK)
    assert s["DIFF"] == ("differs", envmatrix.BLOCKING)
    assert s["GONE"] == ("missing", envmatrix.BLOCKING)
    assert s["DB"] == ("differs (expected)", envmatrix.OK)
    assert s["SEC"] == ("secret-unknown", envmatrix.WARNING)
    assert s["NEWONLY"] == ("extra", envmatrix.WARNING)
    assert s["KEEP"][1] == envmatrix.BLOCKING  # expected to differ but the same: the stale DATABASE_URL case
    assert [r.name for r in m.problems()] == ["DIFF", "GONE", "KEEP"]
    assert "compared by presence only" in next(r.note for r in m.rows if r.name == "SEC")


def test_table_problems_first_and_fingerprints_only():
    old = source({"A": "alpha-value", "B": "bravo-value", "Z": "zulu-value"})
    new = source({"A": "alpha-value", "B": "other-value"})
    table = envmatrix.build({"old": old, "new": new}).table()
    assert table[0] == ["variable", "state", "old", "new", "note"]
    assert [row[0] for row in table[1:]] == ["B", "Z", "A"]
    assert table[3][2] == table[3][3] == secrets.fingerprint("alpha-value")
    assert table[2][3] == envmatrix.MISSING_CELL
    assert "alpha-value" not in json.dumps(table)


def test_ignore_and_allow_missing():
    old = source({"PORT": "80", "AWS_REGION": "us-east-1", "OPTIONAL": "1", "X": "1"})
    new = source({"X": "1"})
    m = envmatrix.build({"old": old, "new": new}, ignore=["PORT", "AWS_*"], allow_missing=["OPT*"])
    assert m.ignored == ["AWS_REGION", "PORT"]
    assert states(m)["OPTIONAL"] == ("missing", envmatrix.WARNING)
    assert m.blocking() == []


def test_command_default_is_flagged_when_absent_on_new():
    old = source({"WORKERS": "4"}, commands=["uvicorn app --workers ${WORKERS:-1} --timeout ${TIMEOUT-30}"])
    new = source({}, commands=["uvicorn app --workers ${WORKERS:-1}"])
    m = envmatrix.build({"old": old, "new": new})
    assert m.blocking() == ["WORKERS: missing on new; the command's `${WORKERS:-1}` would quietly use '1'"]
    assert any("TIMEOUT is set nowhere" in n for n in m.notes)
    present = envmatrix.build({"old": old, "new": source({"WORKERS": "4"})})
    assert present.blocking() == [] and "command uses `${WORKERS:-1}`" in present.rows[0].note


def test_command_defaults_parser():
    assert envmatrix.command_defaults(["a ${A:-1} ${B-x} ${C:=y} ${D} $E"]) == {
        "A": "${A:-1}", "B": "${B-x}", "C": "${C:=y}"}


def test_three_sources_missing_on_any_new_side():
    m = envmatrix.build({"old": source({"A": "1"}), "mid": source({"A": "1"}), "new": source({})})
    assert m.blocking() == ["A: missing on new"]


def _ctx(tmp_path, **files):
    targets = {}
    for name, (filename, text) in files.items():
        path = tmp_path / filename
        path.write_text(text)
        targets[name] = FileTarget(path=str(path))
    return StepContext(run_id="r", step_id="s", runbook_name="t", params={}, targets=targets, outputs={})


def test_step_plan_blocks_and_apply_fails(tmp_path):
    ctx = _ctx(tmp_path, old=("old.env", "WORKERS=4\nexport LOG_LEVEL='info'\n"),
               new=("new.yaml", "env: {LOG_LEVEL: info}\ncommand: uvicorn --workers ${WORKERS:-1}\n"))
    kind = get_kind("env.diff")
    inputs = kind.Inputs(platforms=["old", "new"])
    plan = kind.plan(ctx, inputs)
    assert plan.blocking == ["WORKERS: missing on new; the command's `${WORKERS:-1}` would quietly use '1'"]
    assert plan.table[1][0] == "WORKERS" and plan.data["problems"] == ["WORKERS"]
    with pytest.raises(StepError, match="WORKERS"):
        kind.apply(ctx, inputs, plan)


def test_step_apply_returns_matrix_when_clean(tmp_path):
    ctx = _ctx(tmp_path, old=("old.json", json.dumps({"WORKERS": 4, "DEBUG": False, "DB": "a"})),
               new=("new.env", "WORKERS=4\nDEBUG=false\nDB=b\n"))
    kind = get_kind("env.diff")
    inputs = kind.Inputs(platforms=["old", "new"], expect_differ=["DB"])
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert result.outputs == {"variables": 3, "missing": [], "differs": ["DB"], "problems": []}
    assert result.details["columns"] == ["variable", "state", "old", "new", "note"]
    assert {r["variable"]: r["state"] for r in result.details["rows"]} == {
        "WORKERS": "same", "DEBUG": "same", "DB": "differs (expected)"}
    assert result.table[0] == result.details["columns"]
    text = envmatrix.to_csv(result.details["columns"], result.details["rows"])
    assert text.splitlines()[0] == "variable,state,old,new,note"
    assert f"WORKERS,same,{secrets.fingerprint('4')},{secrets.fingerprint('4')}," in text


def test_step_inputs_and_targets_are_checked(tmp_path):
    kind = get_kind("env.diff")
    with pytest.raises(ValidationError):
        kind.Inputs(platforms=["old"])
    with pytest.raises(ValidationError):
        kind.Inputs(platforms=["old", "new"], ignored=["x"])
    ctx = StepContext(run_id="r", step_id="s", runbook_name="t", params={}, outputs={},
                      targets={"old": HttpTarget(url="http://x"), "new": HttpTarget(url="http://y")})
    with pytest.raises(StepError, match="target 'old'.*no environment"):
        kind.plan(ctx, kind.Inputs(platforms=["old", "new"]))


def test_missing_file_is_not_found(tmp_path):
    from bot.platforms import errors

    ctx = StepContext(run_id="r", step_id="s", runbook_name="t", params={}, outputs={},
                      targets={"old": FileTarget(path=str(tmp_path / "nope.env")),
                               "new": FileTarget(path=str(tmp_path / "nope2.env"))})
    kind = get_kind("env.diff")
    with pytest.raises(errors.NotFound, match="nope.env"):
        kind.plan(ctx, kind.Inputs(platforms=["old", "new"]))


def test_envfile_formats_refuse_bad_input_without_quoting_it(tmp_path):
    from bot.platforms import envfile, errors

    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"OK": "1", "BAD": {"inner": "hidden-value-1234"}}))
    with pytest.raises(errors.InvalidRequest, match="'BAD' is not a scalar") as exc:
        envfile.read_env(FileTarget(path=str(nested)))
    assert "hidden-value-1234" not in str(exc.value)
    broken = tmp_path / "broken.yaml"
    broken.write_text("A: [unclosed hidden-value-5678\n")
    with pytest.raises(errors.InvalidRequest, match="not valid yaml") as exc:
        envfile.read_env(FileTarget(path=str(broken)))
    assert "hidden-value-5678" not in str(exc.value)
    assert envfile.parse_ecs_env_file("# c\nA=1=2\n\nB= spaced \n") == {"A": "1=2", "B": " spaced "}


def test_heroku_to_fly_matrix_compares_fly_secrets_by_presence(httpserver, monkeypatch):
    from bot.runbook.targets import FlyTarget, HerokuTarget

    monkeypatch.setenv("HEROKU_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("HEROKU_API_KEY", "heroku-token-1234")
    monkeypatch.setenv("FLY_API_URL", httpserver.url_for(""))
    monkeypatch.setenv("FLY_API_TOKEN", "fly-token-5678")
    httpserver.expect_request("/apps/api/config-vars").respond_with_json(
        {"DATABASE_URL": "postgres://heroku", "WORKERS": "4", "SENTRY_DSN": "https://dsn"})
    httpserver.expect_request("/v1/apps/api/secrets").respond_with_json(
        {"secrets": [{"name": "DATABASE_URL", "digest": "abc"}, {"name": "SENTRY_DSN", "digest": "def"}]})
    httpserver.expect_request("/v1/apps/api/machines").respond_with_json(
        [{"id": "m1", "state": "started", "config": {"env": {"WORKERS": "2"}}}])
    ctx = StepContext(run_id="r", step_id="s", runbook_name="t", params={}, outputs={},
                      targets={"old": HerokuTarget(app="api"), "new": FlyTarget(app="api")})
    kind = get_kind("env.diff")
    plan = kind.plan(ctx, kind.Inputs(platforms=["old", "new"]))
    assert plan.blocking == ["WORKERS: differs between old, new"]
    rows = {row[0]: row for row in plan.table[1:]}
    assert rows["DATABASE_URL"][1] == rows["SENTRY_DSN"][1] == "secret-unknown"
    assert rows["SENTRY_DSN"][3] == envmatrix.HIDDEN_CELL
