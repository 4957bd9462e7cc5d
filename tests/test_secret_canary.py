"""Canary: planted secret values appear in no Plan/Result/Verification JSON, log line or exception message.

These check the first line of defence (steps never put values in their output); `bot.secrets.redact`
in the store and the front ends is the second, and is deliberately *not* applied here.
botocore's own DEBUG logging prints raw response bodies, so the root logger is captured at INFO
and everything under `bot` at DEBUG.
"""

from __future__ import annotations

import json
import logging

import pytest

from bot import secrets
from bot.platforms import digitalocean as do
from bot.platforms import errors
from bot.platforms.aws import secrets as aws_secrets
from bot.runbook.targets import DoAppTarget, FileTarget
from bot.steps.base import StepError, get_kind
from bot.steps.context import StepContext
from tests.fixtures.ecs_env import make_ecs_service, put_parameter, put_secret

CANARIES = {
    "ecs_env": "CANARY-ecs-environment-7f3a",
    "sm": "CANARY-secretsmanager-91b2",
    "ssm": "CANARY-ssm-parameter-55c1",
    "json": "CANARY-json-field-0d9e",
    "do_general": "CANARY-do-general-aa11",
    "file": "CANARY-dotenv-file-be77",
    "changed": "CANARY-differs-old-4c4c",
}


def test_no_value_escapes(aws, do_fake, monkeypatch, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="bot")
    do._reset_for_tests()
    sm = put_secret(aws.url, "canary/sm", CANARIES["sm"])
    js = put_secret(aws.url, "canary/json", json.dumps({"password": CANARIES["json"]}))
    ssm = put_parameter(aws.url, "/canary/ssm", CANARIES["ssm"])
    old = make_ecs_service(aws.url, environment={"PLAIN": CANARIES["ecs_env"], "SHARED": CANARIES["changed"]},
                           secrets={"SM": sm, "JS": f"{js}:password::", "SSM": ssm},
                           command=["run", "--token", "${TOKEN:-none}"])
    do_fake.add_app({"name": "canary-app", "envs": [
        {"key": "GENERAL", "value": CANARIES["do_general"], "type": "GENERAL"},
        {"key": "SHARED", "value": "CANARY-differs-new-9e9e", "type": "GENERAL"}],
        "services": [{"name": "web", "run_command": "run"}]})
    do_fake.use(monkeypatch)
    env_path = tmp_path / "extra.env"
    env_path.write_text(f"FROM_FILE={CANARIES['file']}\nSM={CANARIES['sm']}\n")
    logs: list[str] = []
    ctx = StepContext(run_id="r", step_id="s", runbook_name="t", params={}, outputs={}, on_log=logs.append,
                      targets={"old": old, "new": DoAppTarget(app="canary-app"), "file": FileTarget(path=str(env_path))})
    outputs: list[str] = []
    messages: list[str] = []

    diff = get_kind("env.diff")
    for platforms in (["old", "new"], ["old", "file", "new"]):
        inputs = diff.Inputs(platforms=platforms)
        plan = diff.plan(ctx, inputs)
        outputs.append(plan.model_dump_json())
        with pytest.raises(StepError) as exc:
            diff.apply(ctx, inputs, plan)
        messages.append(str(exc.value))

    setter = get_kind("env.set")
    refused = setter.Inputs.model_validate({"from": "old", "to": "new", "names": ["SHARED", "SM"]})
    outputs.append(setter.plan(ctx, refused).model_dump_json())
    with pytest.raises(StepError) as exc:
        setter.apply(ctx, refused, setter.plan(ctx, refused))
    messages.append(str(exc.value))

    inputs = setter.Inputs.model_validate({"from": "old", "to": "new", "all_missing": True})
    plan = setter.plan(ctx, inputs)
    result = setter.apply(ctx, inputs, plan)
    outputs += [plan.model_dump_json(), result.model_dump_json(), setter.verify(ctx, inputs, result).model_dump_json(),
                setter.plan_rollback(ctx, inputs, result).model_dump_json()]
    undo = setter.rollback(ctx, inputs, result)
    outputs += [undo.model_dump_json(), setter.verify_rollback(ctx, inputs, result, undo).model_dump_json()]

    with pytest.raises(errors.NotFound) as exc:
        aws_secrets.resolve(old, [f"{js}:user::"])
    messages.append(str(exc.value))

    haystacks = {"outputs": "\n".join(outputs), "logs": caplog.text + "\n".join(logs),
                 "messages": "\n".join(messages)}
    assert "SM" in haystacks["outputs"] and "GENERAL" in haystacks["outputs"]  # the names do show
    assert "the command's `${TOKEN:-none}`" not in haystacks["messages"]  # TOKEN is set nowhere: a note only
    for where, text in haystacks.items():
        for label, value in CANARIES.items():
            assert value not in text, f"{label} canary leaked into {where}"
    # Every value from a secret source (or a source that keeps no plain/secret distinction) is
    # registered for redaction; plain values (ECS `environment`, App Platform GENERAL) whose names
    # do not say "secret" are not, so masking keeps the meaning of ordinary text. They still never
    # leaked above: steps show fingerprints, never values.
    plain = {"do_general", "changed"}  # read only as plain values (GENERAL, ECS `environment` SHARED)
    for label, value in CANARIES.items():
        assert secrets.is_registered(value) is (label not in plain), label
