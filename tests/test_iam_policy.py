"""`runbook-bot iam-policy`: the generated policy is enough, and every action in it is needed.

Enforced for real: a moto server process of its own, started with `INITIAL_NO_AUTH_ACTION_COUNT=3`
(moto checks IAM policies on every request after the first three unauthenticated ones, which
create the admin user that sets the world up). A user holding only the generated policy runs a
runbook that walks ECS (a task definition with a Secrets Manager reference: env.set, env.diff,
service.scale) and S3 (storage.parity, on a policy narrowed to the buckets' ARNs) through plan,
apply, verify and rollback with the real engine; without one action, the matching call is refused
and the step says AccessDenied.

moto's limits, and what covers them instead (the document-level tests below): under enforcement
moto refuses every signed Route 53 GET (SignatureDoesNotMatch, moto 5.2), judges every request but
S3's against Resource "*" (so a hosted-zone ARN could not pass there anyway), and names CloudWatch's
actions `monitoring:*`, not `cloudwatch:*`. Route 53 and the watch's actions are therefore checked
on the document; `tests/test_traffic_shift.py` and `tests/test_dns_route53.py` run those calls.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests

from bot.platforms.aws.iam import Grant
from bot.platforms.aws.iam_policy import actions, document
from bot.runbook.load import load_text
from bot.steps import iam

ROOT = Path(__file__).resolve().parents[1]
ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

RUNBOOK = """
name: iam-check
description: every AWS kind this test enforces, on the IAM-enforcing moto server
approvals:
  default: {approvers: [alice], min: 1, allow_self: true}
targets:
  api: {platform: aws-ecs, region: us-east-1, cluster: prod, service: api}
  dotenv: {platform: file, path: "ENV_FILE"}
  models: {platform: aws-s3, region: us-east-1, bucket: models-src, prefix: m/}
  mirror: {platform: aws-s3, region: us-east-1, bucket: models-dst, prefix: m/}
steps:
  - id: bring-env
    kind: env.set
    with: {from: dotenv, to: api, all_missing: true}
  - id: env-matrix
    kind: env.diff
    with: {platforms: [dotenv, api]}
    on_failure: continue          # a dry run sees WORKERS missing (env.set has not applied) and plans on
  - id: parity
    kind: storage.parity
    with: {source: models, target: mirror}
  - id: standby
    kind: service.scale
    with: {target: api, count: 0, timeout: 30}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def enforcing_moto():
    """A moto server process enforcing IAM after three requests; yields (url, admin session kwargs)."""
    port = _free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        # The three unauthenticated requests: an admin who sets up the world with signed requests.
        bootstrap = boto3.client("iam", endpoint_url=url, region_name="us-east-1",
                                 aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
        bootstrap.create_user(UserName="admin")
        bootstrap.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=json.dumps(ADMIN_POLICY))
        key = bootstrap.create_access_key(UserName="admin")["AccessKey"]
        yield url, {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"],
                    "region_name": "us-east-1"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def world(enforcing_moto, tmp_path_factory):
    """The ECS service, the secret it references, two buckets; the runbook file."""
    url, admin = enforcing_moto
    client = lambda name: boto3.client(name, endpoint_url=url, **admin)  # noqa: E731
    secret_arn = client("secretsmanager").create_secret(Name="db-password", SecretString="s3cr3t-pw")["ARN"]
    ecs = client("ecs")
    ecs.create_cluster(clusterName="prod")
    ecs.register_task_definition(family="api", containerDefinitions=[{
        "name": "api", "image": "api:1", "memory": 256, "essential": True,
        "environment": [{"name": "LOG_LEVEL", "value": "info"}],
        "secrets": [{"name": "DB_PASSWORD", "valueFrom": secret_arn}]}])
    ecs.create_service(cluster="prod", serviceName="api", taskDefinition="api", desiredCount=2)
    s3 = client("s3")
    for bucket in ("models-src", "models-dst"):
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="m/projection.bin", Body=b"weights")
    folder = tmp_path_factory.mktemp("iam")
    (folder / "app.env").write_text("LOG_LEVEL=info\nDB_PASSWORD=s3cr3t-pw\nWORKERS=4\n")
    runbook = folder / "iam-check.yaml"
    runbook.write_text(RUNBOOK.replace("ENV_FILE", str(folder / "app.env")))
    return {"url": url, "client": client, "runbook": runbook, "folder": folder}


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bot", *argv], cwd=ROOT, env=full, input="", capture_output=True,
                          text=True, timeout=300)


def _user_with(world, name: str, policy: dict) -> dict[str, str]:
    """An IAM user holding only `policy` (a managed policy, as an operator would attach it); its keys."""
    iam_client = world["client"]("iam")
    iam_client.create_user(UserName=name)
    arn = iam_client.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))["Policy"]["Arn"]
    iam_client.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam_client.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def _env(world, keys: dict[str, str], state: str) -> dict[str, str]:
    folder = world["folder"] / state
    folder.mkdir()
    return {**keys, "AWS_ENDPOINT_URL": world["url"], "AWS_DEFAULT_REGION": "us-east-1",
            "RUNBOOK_BOT_STATE_DIR": str(folder), "RUNBOOK_BOT_DB": str(folder / "store.sqlite")}


def _generated(world) -> dict:
    result = _cli("iam-policy", str(world["runbook"]), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _run_state(env: dict[str, str]) -> tuple[str, dict[str, str], dict[str, str]]:
    """The last run's id, each step's state and each step's error (from the store)."""
    run = json.loads(_cli("status", "--json", env=env).stdout)[0]
    return run["id"], {s["key"]: s["state"] for s in run["steps"]}, {s["key"]: s["error"] or "" for s in run["steps"]}


def _service(world) -> dict:
    return world["client"]("ecs").describe_services(cluster="prod", services=["api"])["services"][0]


def test_the_generated_policy_runs_every_step_and_its_rollback(world):
    policy = _generated(world)
    before = _service(world)
    env = _env(world, _user_with(world, "runner", policy), "full")
    ran = _cli("run", str(world["runbook"]), "--yes", "--as", "alice", env=env)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    run_id, steps, _errors = _run_state(env)
    assert set(steps.values()) == {"succeeded"}, steps
    assert _service(world)["desiredCount"] == 0 and _service(world)["taskDefinition"] != before["taskDefinition"]
    assert "s3cr3t-pw" not in ran.stdout + ran.stderr
    undone = _cli("rollback", run_id, "--yes", "--as", "alice", env=env)
    assert "Traceback" not in undone.stderr, undone.stderr[-3000:]
    status = json.loads(_cli("status", run_id, "--json", env=env).stdout)
    assert status["state"] == "rolled_back", undone.stdout[-3000:]
    # The rollback ran with the same keys: the old revision and the old size are back.
    after = _service(world)
    assert (after["desiredCount"], after["taskDefinition"]) == (before["desiredCount"], before["taskDefinition"])


# S3 answers only "Access Denied" (as AWS does): the step names the call that was refused instead.
@pytest.mark.parametrize("removed, step, named", [("ecs:UpdateService", "bring-env", "ecs:UpdateService"),
                                                  ("secretsmanager:BatchGetSecretValue", "bring-env",
                                                   "secretsmanager:BatchGetSecretValue"),
                                                  ("s3:ListBucket", "parity", "s3.list_objects_v2")])
def test_without_one_action_its_call_is_refused_and_the_step_says_so(world, removed, step, named):
    policy = _generated(world)
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a != removed]
    policy["Statement"] = [s for s in policy["Statement"] if s["Action"]]
    assert removed not in actions(policy)
    user = f"without-{removed.split(':')[1].lower()}"
    env = _env(world, _user_with(world, user, policy), user)
    ran = _cli("run", str(world["runbook"]), "--yes", "--as", "alice", env=env)
    assert ran.returncode == 1, ran.stdout[-3000:]
    run_id, steps, errors = _run_state(env)
    assert steps[step] == "failed", steps
    assert "AccessDenied" in errors[step] and named in errors[step], errors[step]
    assert "AccessDenied" in ran.stdout  # and the operator saw it
    # Put the world back for the next case: the refused run stopped part-way, undo what it did.
    _cli("rollback", run_id, "--yes", "--as", "alice", env=env)


def test_the_read_only_policy_plans_everything_and_changes_nothing(world):
    result = _cli("iam-policy", str(world["runbook"]), "--json", "--read-only")
    policy = json.loads(result.stdout)
    assert not any(s["Sid"].endswith("Write") for s in policy["Statement"])
    before = _service(world)
    env = _env(world, _user_with(world, "planner", policy), "planner")
    planned = _cli("plan", str(world["runbook"]), "--as", "alice", env=env)
    # Every plan read what it needed; the dry run's one failure is env.diff seeing WORKERS not yet set.
    assert "unauthorized" not in planned.stdout and "AccessDenied" not in planned.stdout, planned.stdout[-3000:]
    assert "WORKERS: missing on api" in planned.stdout
    for plan in ("bring-env · env.set · plan", "parity · storage.parity · plan", "standby · service.scale · plan"):
        assert plan in planned.stdout, planned.stdout[-3000:]
    ran = _cli("run", str(world["runbook"]), "--yes", "--as", "alice", env=env)
    assert ran.returncode == 1
    _run_id, steps, errors = _run_state(env)
    assert steps["bring-env"] == "failed" and "AccessDenied" in errors["bring-env"], errors
    assert "ecs:RegisterTaskDefinition" in errors["bring-env"]
    assert _service(world)["taskDefinition"] == before["taskDefinition"]


# -- the document, without a server ---------------------------------------------------------------

def _needs(path: str) -> iam.Needs:
    from bot.runbook.load import load_runbook

    return iam.collect(load_runbook(ROOT / "runbooks" / path))


def test_the_shipped_runbooks_need_exactly_these_actions():
    ecs_env_read = {"ecs:DescribeServices", "ecs:DescribeTaskDefinition", "secretsmanager:BatchGetSecretValue",
                    "secretsmanager:GetSecretValue", "ssm:GetParameters", "s3:GetObject"}
    route53_by_name = {"route53:ListHostedZonesByName", "route53:GetHostedZone", "route53:ListResourceRecordSets",
                       "route53:GetChange", "route53:ChangeResourceRecordSets"}
    expected = {
        "aws-ecs-to-do-app.yaml": ecs_env_read | route53_by_name | {
            "ecs:UpdateService", "s3:ListBucket", "rds:DescribeDBInstances", "rds:DescribeDBClusters",
            "cloudwatch:GetMetricData", "logs:StartQuery", "logs:GetQueryResults", "logs:StopQuery"},
        "heroku-to-aws-ecs.yaml": ecs_env_read | route53_by_name | {"rds:DescribeDBInstances",
                                                                     "rds:DescribeDBClusters"},
        "heroku-to-beanstalk-cloudflare.yaml": {
            "elasticbeanstalk:DescribeConfigurationSettings", "elasticbeanstalk:UpdateEnvironment",
            "elasticbeanstalk:DescribeEnvironments", "cloudwatch:GetMetricData"},
        "heroku-to-ecs-cloudflare-lb.yaml": ecs_env_read | {"cloudwatch:GetMetricData"},
        "demo.yaml": set(),
    }
    shipped = {p.name for p in (ROOT / "runbooks").glob("*.yaml")}
    assert shipped == set(expected), "a runbook was added or removed: say what it needs here"
    for name, wanted in expected.items():
        assert actions(_needs(name).document()) == wanted, name


def test_reads_for_read_only_steps_writes_only_for_steps_that_change_things():
    needs = _needs("aws-ecs-to-do-app.yaml")
    by_step = {(u.step, u.target): u.access for u in needs.uses}
    assert by_step[("env-matrix", "old")] == "read"          # env.diff plans and verifies only
    assert by_step[("bring-env-over", "old")] == "read"      # env.set reads its source, writes do-app
    assert by_step[("switch-dns", "dns")] == "write"
    assert by_step[("standby-old", "old")] == "write"
    statements = {s["Sid"]: s for s in needs.document()["Statement"]}
    assert statements["EcsWrite"]["Action"] == ["ecs:UpdateService"]  # scaling: no new revision, no PassRole
    assert "route53:ChangeResourceRecordSets" in statements["Route53Write"]["Action"]
    assert not any("route53:ChangeResourceRecordSets" in s["Action"] for sid, s in statements.items()
                   if sid.endswith("Read"))
    assert statements["S3Read2"] == {"Sid": "S3Read2", "Effect": "Allow", "Action": ["s3:ListBucket"],
                                     "Resource": "arn:aws:s3:::applypass-models-*"}  # the template became *


def _rb(targets: str, steps: str) -> iam.Needs:
    text = (f"name: t\napprovals:\n  default: {{approvers: [a], min: 1}}\ntargets:\n{targets}steps:\n{steps}")
    return iam.collect(load_text(text, "t.yaml"))


def test_a_literal_zone_id_narrows_route53_to_the_hosted_zone():
    needs = _rb("  dns: {platform: aws-route53, zone: Z0123456789ABC}\n",
                "  - id: ttl\n    kind: dns.set_ttl\n    with: {zone: dns, record: api.example.com, ttl: 60}\n")
    statements = {s["Sid"]: s for s in needs.document()["Statement"]}
    zone = "arn:aws:route53:::hostedzone/Z0123456789ABC"
    assert statements["Route53Write"] == {"Sid": "Route53Write", "Effect": "Allow",
                                          "Action": ["route53:ChangeResourceRecordSets"], "Resource": zone}
    reads = [s for sid, s in statements.items() if sid.startswith("Route53Read")]
    assert {(a, s["Resource"]) for s in reads for a in s["Action"]} == {
        ("route53:GetHostedZone", zone), ("route53:ListResourceRecordSets", zone),
        ("route53:GetChange", "arn:aws:route53:::change/*")}  # no ListHostedZonesByName: the id is known
    assert not needs.notes


def test_notes_follow_the_document_they_explain():
    needs = _needs("heroku-to-beanstalk-cloudflare.yaml")
    assert any(n.startswith("elasticbeanstalk:UpdateEnvironment") and "CloudFormation" in n for n in needs.notes)
    assert needs.notes_for(read_only=True) == []  # a plan-only identity deploys nothing
    assert actions(needs.document(read_only=True)) == {"elasticbeanstalk:DescribeConfigurationSettings",
                                                       "cloudwatch:GetMetricData"}


def test_a_zone_by_name_is_star_with_a_note():
    needs = _rb("  dns: {platform: aws-route53, zone: example.com.}\n",
                "  - id: ttl\n    kind: dns.set_ttl\n    with: {zone: dns, record: api.example.com, ttl: 60}\n")
    assert {s["Resource"] for s in needs.document()["Statement"]} == {"*"}
    assert any("route53:ChangeResourceRecordSets" in n and "give its id" in n for n in needs.notes)


def test_env_set_on_ecs_writes_a_revision_and_passes_the_roles_to_ecs_tasks_only():
    needs = _rb("  src: {platform: file, path: a.env}\n  api: {platform: aws-ecs, cluster: c, service: s}\n",
                "  - id: e\n    kind: env.set\n    with: {from: src, to: api, all_missing: true}\n")
    statements = needs.document()["Statement"]
    pass_role = [s for s in statements if "iam:PassRole" in s["Action"]]
    assert pass_role == [{"Sid": "IamWrite", "Effect": "Allow", "Action": ["iam:PassRole"], "Resource": "*",
                          "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}}]
    assert {"ecs:RegisterTaskDefinition", "ecs:UpdateService", "ecs:TagResource"} <= actions(needs.document())


def test_watch_signals_count_and_a_role_to_assume_is_noted():
    needs = _rb("  api: {platform: aws-ecs, cluster: c, service: s, role_arn: 'arn:aws:iam::1:role/bot'}\n"
                "  alb: {platform: aws-alb, load_balancer: app/x/1}\n",
                "  - id: w\n    kind: watch.start\n    with:\n      signals:\n"
                "        - {name: edge_504_rate, alb: alb, over: 1}\n"
                "        - {name: caller_log, caller_log: {log_groups: [/ecs/caller], aws: api}}\n"
                "  - id: s\n    kind: service.scale\n    with: {target: api, count: 0}\n")
    assert actions(needs.document()) == {"cloudwatch:GetMetricData", "logs:StartQuery", "logs:GetQueryResults",
                                         "logs:StopQuery", "ecs:DescribeServices", "ecs:UpdateService"}
    assert any("arn:aws:iam::1:role/bot" in n and "sts:AssumeRole" in n for n in needs.notes)


def test_a_steps_own_rollback_counts_with_its_kinds_access():
    needs = _rb("  api: {platform: aws-ecs, cluster: c, service: s}\n  web: {platform: http, url: 'http://x'}\n",
                "  - id: probe\n    kind: http.check\n    with: {url: 'http://x/healthz'}\n"
                "    rollback: {kind: service.scale, with: {target: api, count: 2}}\n")
    assert needs.uses == [iam.Use("probe (rollback)", "service.scale", "api", "Scaler", "write")]
    assert actions(needs.document()) == {"ecs:DescribeServices", "ecs:UpdateService"}


def test_a_star_grant_subsumes_a_narrower_one_and_sids_stay_unique():
    doc = document([Grant("s3:GetObject", "read", "arn:aws:s3:::b/*"), Grant("s3:GetObject", "read", "*"),
                    Grant("s3:ListBucket", "read", "arn:aws:s3:::b"), Grant("s3:ListBucket", "write", "arn:aws:s3:::b")])
    assert doc["Statement"] == [
        {"Sid": "S3Read", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
        {"Sid": "S3Write", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": "arn:aws:s3:::b"}]


def test_cli_no_aws_is_one_line_and_a_broken_runbook_names_file_and_line(tmp_path):
    demo = _cli("iam-policy", "runbooks/demo.yaml")
    assert demo.returncode == 0 and len(demo.stdout.strip().splitlines()) == 1
    assert "no IAM permissions needed" in demo.stdout and "no statements" in demo.stdout
    assert json.loads(_cli("iam-policy", "demo", "--json").stdout) == {"Version": "2012-10-17", "Statement": []}
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - id: a\n    kind: dns.swich\n")
    broken = _cli("iam-policy", str(bad))
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert f"{bad}:4:" in broken.stderr and "dns.swich" in broken.stderr
