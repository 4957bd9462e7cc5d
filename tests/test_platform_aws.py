"""AWS adapters against moto in server mode: ECS env, Secrets Manager/SSM batches, S3 listings."""

from __future__ import annotations

import json

import pytest

from bot import secrets
from bot.platforms import errors
from bot.platforms.aws import ecs, s3
from bot.platforms.aws import secrets as aws_secrets
from bot.runbook.targets import AwsEcsTarget, AwsS3Target, DoSpacesTarget
from tests.fixtures.ecs_env import boto, make_ecs_service, put_parameter, put_secret


def test_parse_ref_suffixes():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"
    assert aws_secrets.parse_ref(arn).secret_id == arn
    ref = aws_secrets.parse_ref(arn + ":password:AWSPREVIOUS:")
    assert (ref.secret_id, ref.json_key, ref.version_stage, ref.version_id) == (arn, "password", "AWSPREVIOUS", "")
    assert not ref.batchable
    assert aws_secrets.parse_ref(arn + ":::").batchable
    assert aws_secrets.parse_ref("arn:aws:ssm:us-east-1:1:parameter/prod/workers").secret_id == "/prod/workers"
    assert aws_secrets.parse_ref("arn:aws:ssm:us-east-1:1:parameter/flat").secret_id == "flat"
    assert aws_secrets.parse_ref("/prod/x").service == "ssm"
    with pytest.raises(errors.InvalidRequest, match="unsupported service"):
        aws_secrets.parse_ref("arn:aws:kms:us-east-1:1:key/abc")


def test_read_env_resolves_environment_secrets_and_files(aws):
    db_arn = put_secret(aws.url, "prod/db", json.dumps({"password": "pw-from-json-1234", "user": "api"}))
    token_arn = put_secret(aws.url, "prod/token", "token-value-5678")
    param_arn = put_parameter(aws.url, "/prod/redis_url", "redis://cache-secret-9012")
    put_parameter(aws.url, "flat-param", "flat-value-3456")
    s3c = boto(aws.url, "s3")
    s3c.create_bucket(Bucket="envfiles")
    s3c.put_object(Bucket="envfiles", Key="api/prod.env", Body=b"# comment\nFROM_FILE=file-value\nWORKERS=2\n")
    target = make_ecs_service(
        aws.url, environment={"WORKERS": "4", "LOG_LEVEL": "info"},
        secrets={"DB_PASSWORD": f"{db_arn}:password::", "API_TOKEN": token_arn,
                 "REDIS_URL": param_arn, "FLAT": "flat-param"},
        command=["sh", "-c", "uvicorn app.main:app --workers ${WORKERS:-1}"],
        environment_files=["arn:aws:s3:::envfiles/api/prod.env"],
    )
    env = ecs.read_env(target)
    fp = secrets.fingerprint
    assert env.values["WORKERS"].fingerprint() == fp("4")  # environment wins over the file
    assert env.values["FROM_FILE"].fingerprint() == fp("file-value")
    assert env.values["DB_PASSWORD"].fingerprint() == fp("pw-from-json-1234")
    assert env.values["DB_PASSWORD"].secret and "secretsmanager" in env.values["DB_PASSWORD"].origin
    assert env.values["API_TOKEN"].fingerprint() == fp("token-value-5678")
    assert env.values["REDIS_URL"].fingerprint() == fp("redis://cache-secret-9012")
    assert env.values["FLAT"].fingerprint() == fp("flat-value-3456")
    assert env.commands == ["sh -c uvicorn app.main:app --workers ${WORKERS:-1}"]
    # every value read is registered at once, so redaction would catch a leak
    for value in ("pw-from-json-1234", "token-value-5678", "redis://cache-secret-9012", "file-value"):
        assert secrets.is_registered(value)
    assert "pw-from-json-1234" not in repr(env)


def test_unknown_service_is_not_found_not_empty(aws):
    make_ecs_service(aws.url)
    with pytest.raises(errors.NotFound, match="service prod/nope"):
        ecs.read_env(AwsEcsTarget(cluster="prod", service="nope", endpoint_url=aws.url))


def test_missing_secret_and_parameter_are_named(aws):
    gone = "arn:aws:secretsmanager:us-east-1:123456789012:secret:gone-AbCdEf"
    target = make_ecs_service(aws.url, secrets={"A": gone})
    with pytest.raises(errors.NotFound) as exc:
        ecs.read_env(target)
    assert gone in str(exc.value)
    with pytest.raises(errors.NotFound, match="/prod/absent"):
        aws_secrets.resolve(target, ["/prod/absent"])


def test_json_key_missing_does_not_quote_the_secret(aws):
    arn = put_secret(aws.url, "prod/json", json.dumps({"user": "leaky-value-1111"}))
    target = make_ecs_service(aws.url)
    with pytest.raises(errors.NotFound, match="no JSON key 'password'") as exc:
        aws_secrets.resolve(target, [f"{arn}:password::"])
    assert "leaky-value-1111" not in str(exc.value)


def test_resolve_batches_calls(aws):
    target = make_ecs_service(aws.url)
    arns = [put_secret(aws.url, f"s{i}", f"secret-value-{i:04d}") for i in range(45)]
    names = [f"/p/{i}" for i in range(23)]
    for i, name in enumerate(names):
        put_parameter(aws.url, name, f"param-value-{i:04d}")
    calls: list[str] = []
    sm = s3.aws.client(target, "secretsmanager")
    ssm = s3.aws.client(target, "ssm")

    def count(model, **_):
        calls.append(model.name)

    sm.meta.events.register("before-call.*.*", count)
    ssm.meta.events.register("before-call.*.*", count)
    try:
        values = aws_secrets.resolve(target, arns + names + arns[:5])  # duplicates fetched once
    finally:
        sm.meta.events.unregister("before-call.*.*", count)
        ssm.meta.events.unregister("before-call.*.*", count)
    assert values[arns[44]] == "secret-value-0044" and values["/p/22"] == "param-value-0022"
    assert calls.count("BatchGetSecretValue") == 3  # ceil(45/20)
    assert calls.count("GetParameters") == 3  # ceil(23/10)
    assert "GetSecretValue" not in calls


def test_pinned_version_uses_get_secret_value(aws):
    arn = put_secret(aws.url, "rot", "old-value-7777")
    sm = boto(aws.url, "secretsmanager")
    sm.put_secret_value(SecretId=arn, SecretString="new-value-8888")
    target = make_ecs_service(aws.url)
    values = aws_secrets.resolve(target, [arn, f"{arn}::AWSPREVIOUS:"])
    assert values[arn] == "new-value-8888"
    assert values[f"{arn}::AWSPREVIOUS:"] == "old-value-7777"


def test_set_env_registers_revision_and_restores(aws):
    target = make_ecs_service(aws.url, environment={"LOG_LEVEL": "info"})
    before_def = ecs.describe_task_definition(target, ecs.service_task_definition(target))
    previous, new = ecs.set_env(target, {"WORKERS": "4"})
    assert previous != new and new.endswith(":2")
    assert ecs.service_task_definition(target) == new
    after_def = ecs.describe_task_definition(target, new)
    env = {e["name"]: e["value"] for e in after_def["containerDefinitions"][0]["environment"]}
    assert env == {"LOG_LEVEL": "info", "WORKERS": "4"}
    for field in ("cpu", "memory", "networkMode", "requiresCompatibilities", "tags"):
        assert after_def.get(field) == before_def.get(field), field
    ecs.use_task_definition(target, previous)
    assert ecs.service_task_definition(target) == previous


def test_set_env_needs_container_when_ambiguous(aws):
    sidecar = {"name": "sidecar", "image": "x", "essential": True, "memory": 64}
    target = make_ecs_service(aws.url, extra_containers=[sidecar])
    with pytest.raises(errors.InvalidRequest, match="set `container`"):
        ecs.set_env(target, {"A": "1"})
    chosen = target.model_copy(update={"container": "sidecar"})
    _, new = ecs.set_env(chosen, {"A": "1"})
    containers = {c["name"]: c for c in ecs.describe_task_definition(chosen, new)["containerDefinitions"]}
    assert containers["sidecar"]["environment"] == [{"name": "A", "value": "1"}]
    assert containers["api"].get("environment", []) == []


def _fill(url, bucket, keys):
    c = boto(url, "s3")
    c.create_bucket(Bucket=bucket)
    for key in keys:
        c.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return c


def test_iter_objects_pages_and_strips_prefix(aws):
    keys = [f"data/{i:04d}.bin" for i in range(25)] + ["other/x"]
    _fill(aws.url, "bucket-one", keys)
    target = AwsS3Target(bucket="bucket-one", prefix="data", endpoint_url=aws.url)
    listing = s3.iter_objects(target, page_size=10)
    assert iter(listing) is listing  # a generator, not a list
    got = list(listing)
    assert [o.key for o in got] == [f"{i:04d}.bin" for i in range(25)]
    assert got[0].size == len("data/0000.bin") and len(got[0].etag) == 32


def test_spaces_target_reaches_its_endpoint(aws):
    spaces_url = aws.url.replace("127.0.0.1", "localhost")  # a second endpoint of the same server
    _fill(spaces_url, "space", ["models/m.bin"])
    target = DoSpacesTarget(bucket="space", endpoint_url=spaces_url)
    assert s3.head(target, "models/m.bin").size == len("models/m.bin")
    with pytest.raises(errors.NotFound, match="models/missing.bin"):
        s3.head(target, "models/missing.bin")
    with pytest.raises(errors.NotFound, match="spaces://nobucket"):
        list(s3.iter_objects(DoSpacesTarget(bucket="nobucket", endpoint_url=spaces_url)))
