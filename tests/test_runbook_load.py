"""The runbook language: every error at once, each at its file:line:col and field."""

from __future__ import annotations

import textwrap

import pytest

from bot.runbook.load import RunbookInvalid, load_runbook, load_text
from bot.runbook.model import parse_duration


def errors_of(text: str) -> list[str]:
    with pytest.raises(RunbookInvalid) as exc:
        load_text(textwrap.dedent(text).lstrip("\n"), "rb.yaml")
    return [str(e) for e in exc.value.errors]


def test_the_shipped_demo_loads():
    loaded = load_runbook("runbooks/demo.yaml")
    assert loaded.model.name == "demo"
    assert [s.kind for s in loaded.model.steps] == ["http.check", "http.check", "wait", "http.check"]
    assert len(loaded.sha256) == 64


def test_every_error_is_reported_with_its_line_column_and_field():
    errs = errors_of("""
        name: Bad Name
        descripton: typo
        params:
          env: {type: choice, default: staging}
        steps:
          - id: one
            kind: http.check
            with: {url: "http://x", expect_staus: 200}
          - id: two
            kind: htp.check
          - id: one
            kind: wait
            with: {seconds: 1}
    """)
    assert "rb.yaml:1:7: name: String should match pattern '^[a-z0-9][a-z0-9_-]{0,63}$'" in errs
    assert "rb.yaml:2:1: descripton: unknown field" in errs
    assert any(e.startswith("rb.yaml:4:8: params.env: a choice parameter needs `choices`") for e in errs)
    assert "rb.yaml:8:29: steps[0].with.expect_staus: unknown field" in errs
    assert any(e.startswith("rb.yaml:10:11: steps[1].kind: unknown step kind 'htp.check'; did you mean http.check")
               for e in errs)
    assert "rb.yaml:11:9: steps[2].id: duplicate step id 'one' (first at line 6)" in errs
    assert errs == sorted(errs, key=lambda e: (int(e.split(":")[1]), int(e.split(":")[2])))


def test_templates_naming_undefined_things_are_load_errors():
    errs = errors_of("""
        name: tpl
        env: [ALLOWED]
        params:
          env: {type: string, default: staging}
        targets:
          old: {platform: http, url: "http://{{ params.region }}"}
        steps:
          - id: a
            kind: http.check
            with: {url: "http://{{ env.SECRET_KEY }}/"}
          - id: b
            kind: http.check
            with: {url: "http://x/{{ outputs.c.status }}"}
          - id: c
            kind: http.check
            with: {url: "http://x/{{ outputs.a.nope }}/{{ params.env | upper }}"}
          - id: d
            kind: http.check
            with: {url: "http://x/{{ targets.old.url }}{{ targets.new.url }}"}
          - id: e
            kind: http.check
            with: {url: "http://x/{{ params.env "}
    """)
    assert any(e.startswith("rb.yaml:6:30: targets.old.url: params.region is not defined") for e in errs)
    assert any(e.startswith("rb.yaml:10:17: steps[0].with.url: env.SECRET_KEY is not defined") for e in errs)
    assert any(e.startswith("rb.yaml:13:17: steps[1].with.url: outputs.c is not defined") for e in errs)
    assert any(e.startswith("rb.yaml:16:17: steps[2].with.url: outputs.a.nope is not defined "
                            "(outputs.a has: elapsed_ms, status)") for e in errs)
    assert any(e.startswith("rb.yaml:19:17: steps[3].with.url: targets.new is not defined") for e in errs)
    assert any(e.startswith("rb.yaml:22:17: steps[4].with.url: template syntax:") for e in errs)


def test_targets_and_approvals_are_checked():
    errs = errors_of("""
        name: refs
        targets:
          old: {platform: aws-ecs, cluster: prod}
          new: {platform: do-aap, app: api}
        approvals:
          default: {approvers: [alice], min: 2}
        steps:
          - id: a
            kind: wait
            with: {seconds: 1}
            approval: nightly
    """)
    assert "rb.yaml:3:8: targets.old.service: required field is missing" in errs
    assert any(e.startswith("rb.yaml:4:19: targets.new.platform: unknown platform 'do-aap'") for e in errs)
    assert "rb.yaml:6:12: approvals.default: min is 2 but only 1 approver(s) are listed" in errs
    assert any(e.startswith("rb.yaml:11:15: steps[0].approval: no approval policy named 'nightly'") for e in errs)


def test_target_references_are_checked_for_kinds_that_take_them():
    errs = errors_of("""
        name: scale
        targets:
          old: {platform: aws-ecs, cluster: prod, service: api}
        approvals: {default: {approvers: [alice]}}
        steps:
          - id: a
            kind: service.scale
            with: {target: olde, count: 0}
    """)
    assert any("steps[0].with.target: unknown target 'olde'; did you mean old?" in e for e in errs)


def test_a_step_that_changes_something_needs_approvers_or_an_explicit_opt_out(monkeypatch):
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401

    errs = errors_of("""
        name: unapproved
        steps:
          - id: a
            kind: test.touch
            with: {path: /tmp/x, line: y}
    """)
    assert any("steps[0].kind: this step changes something and no approvers apply" in e for e in errs)
    load_text("name: ok\nsteps:\n  - {id: a, kind: test.touch, with: {path: /tmp/x, line: y}, approval: false}\n")


@pytest.mark.parametrize("text, expected", [
    ("name: x\nsteps: [\n", "rb.yaml:3:1: YAML syntax"),
    ("name: x\nname: y\nsteps: []\n", "rb.yaml:2:1: name: duplicate key 'name' (first at line 1)"),
    ("- just\n- a list\n", "rb.yaml:1:1: a runbook is a mapping"),
    ("", "rb.yaml:1:1: the file is empty"),
    ("name: x\nsteps: []\n", "rb.yaml:2:8: steps: a runbook needs at least one step"),
    ("name: x\n", "rb.yaml:1:1: required field is missing: steps"),
])
def test_malformed_documents_get_a_clean_error(text, expected):
    errs = errors_of(text)
    assert any(e.startswith(expected) for e in errs), errs


def test_template_values_are_type_checked_once_rendered_not_at_load():
    loaded = load_text(textwrap.dedent("""
        name: later
        params:
          seconds: {type: int, default: 5}
        steps:
          - id: a
            kind: wait
            with: {seconds: "{{ params.seconds }}"}
            retries: 3
            timeout: 1h30m
    """), "rb.yaml")
    step = loaded.model.steps[0]
    assert step.retries.attempts == 3 and step.timeout == 5400


def test_durations():
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration(45) == 45
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_a_yaml_boolean_word_used_as_a_key_is_named():
    errs = errors_of("name: x\nsteps:\n  - {id: a, kind: wait, with: {seconds: 1, on: 1}}\n")
    assert any("the key 'on' is read by YAML as the boolean true; quote it" in e for e in errs)
