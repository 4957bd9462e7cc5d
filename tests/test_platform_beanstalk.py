"""Elastic Beanstalk: environment properties (env.set with rollback), service.scale, health.

moto server emulates Beanstalk environments (the lookup test runs there); it does not emulate
DescribeConfigurationSettings, UpdateEnvironment or DescribeEnvironmentHealth (a stated gap), so
those run against `tests/fixtures/beanstalk_standin.py`: the real boto3 client and the botocore
`environment_updated` waiter over the Query protocol.
"""

from __future__ import annotations

import boto3
import pytest

from bot.platforms import errors, registry
from bot.platforms.aws import beanstalk as eb
from bot.runbook.targets import FileTarget
from bot.steps.base import PlanRefused, get_kind
from tests.fixtures.beanstalk_standin import beanstalk  # noqa: F401 (fixture)
from tests.fixtures.dns_server import step_context


def _target(url):
    return eb.BeanstalkTarget(application="pinecast", environment="pinecast-prod", endpoint_url=url)


def test_the_environment_is_found_on_moto_and_a_missing_one_is_not_found(aws):
    client = boto3.client("elasticbeanstalk", endpoint_url=aws.url, region_name="us-east-1")
    client.create_application(ApplicationName="pinecast")
    client.create_environment(ApplicationName="pinecast", EnvironmentName="pinecast-prod",
                              SolutionStackName="64bit Amazon Linux 2 v3.3.0 running Python 3.8")
    assert eb.describe(_target(aws.url))["EnvironmentName"] == "pinecast-prod"
    with pytest.raises(errors.NotFound, match="pinecast/nope"):
        eb.describe(eb.BeanstalkTarget(application="pinecast", environment="nope", endpoint_url=aws.url))


def test_env_set_from_a_file_copies_properties_and_rollback_removes_exactly_those(beanstalk, tmp_path):
    beanstalk.options[("aws:elasticbeanstalk:application:environment", "KEEP")] = "kept-value"
    env_file = tmp_path / "heroku.env"
    env_file.write_text("SECRET_KEY=s3cr3t-value-123\nWORKERS=4\nKEEP=kept-value\n")
    ctx = step_context({"old": FileTarget(path=str(env_file)), "new": _target(beanstalk.url)})
    kind = get_kind("env.set")
    inputs = kind.Inputs.model_validate({"from": "old", "to": "new", "all_missing": True})
    plan = kind.plan(ctx, inputs)
    assert "UpdateEnvironment" in plan.summary and "s3cr3t" not in plan.model_dump_json()
    result = kind.apply(ctx, inputs, plan)
    assert beanstalk.env_vars() == {"KEEP": "kept-value", "SECRET_KEY": "s3cr3t-value-123", "WORKERS": "4"}
    polls = [a for a, _ in beanstalk.actions if a == "DescribeEnvironments"]
    assert len(polls) >= 2  # the waiter saw Updating, then Ready
    assert kind.verify(ctx, inputs, result).ok
    assert "s3cr3t" not in result.model_dump_json()

    undo = kind.rollback(ctx, inputs, result)
    assert beanstalk.env_vars() == {"KEEP": "kept-value"}
    assert kind.verify_rollback(ctx, inputs, result, undo).ok


def test_a_refused_update_is_a_typed_error_and_changes_nothing(beanstalk, tmp_path):
    env_file = tmp_path / "heroku.env"
    env_file.write_text("WORKERS=4\n")
    beanstalk.fail_update = True
    ctx = step_context({"old": FileTarget(path=str(env_file)), "new": _target(beanstalk.url)})
    kind = get_kind("env.set")
    inputs = kind.Inputs.model_validate({"from": "old", "to": "new", "names": ["WORKERS"]})
    with pytest.raises(errors.PlatformError, match="ConfigurationValidationException"):
        kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert beanstalk.env_vars() == {}


def test_service_scale_moves_the_asg_options_and_refuses_zero(beanstalk):
    ctx = step_context({"new": _target(beanstalk.url)})
    kind = get_kind("service.scale")
    with pytest.raises(PlanRefused, match="at least one instance"):
        kind.plan(ctx, kind.Inputs(target="new", count=0))
    inputs = kind.Inputs(target="new", count=6, timeout=30)
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert beanstalk.options[("aws:autoscaling:asg", "MinSize")] == "6"
    assert beanstalk.options[("aws:autoscaling:asg", "MaxSize")] == "6"  # raised to fit
    kind.rollback(ctx, inputs, result)
    assert beanstalk.options[("aws:autoscaling:asg", "MinSize")] == "2"


def test_health_is_enhanced_health(beanstalk):
    health = registry.adapter(_target(beanstalk.url), "Health")
    assert health.health() == (True, "Green/Ok")
    beanstalk.health = ("Red", "Severe", ["100.0 % of the requests are failing with HTTP 5xx."])
    ok, why = health.health()
    assert not ok and why.startswith("Red/Severe: 100.0 %")
