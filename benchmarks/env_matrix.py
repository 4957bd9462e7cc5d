"""Benchmark: the environment matrix over 2,000 variables and 500 secret references, in API calls.

    python benchmarks/env_matrix.py [--quick]

Builds, in a moto server on loopback, an ECS service whose task definition has plain variables,
an S3 environment file and 500 secret references (half Secrets Manager, half SSM SecureString), a
second ECS service, and a dotenv file: 2,000 variables across 3 sources. It then builds the matrix
the way `env.diff` does and counts every AWS API call with a botocore `before-call` hook.

The minimum possible is 2 calls per ECS service (describe_services, describe_task_definition),
one per environment file, ceil(secrets/20) `BatchGetSecretValue` and ceil(parameters/10)
`GetParameters`. The naive count (one GetSecretValue/GetParameter per reference) is printed for
scale. Last line: {"ratio": calls/minimum, "target": 1.2, "pass": ...}.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("RUNBOOK_BOT_FINGERPRINT_KEY", "bench-key")

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

from bot.platforms import aws  # noqa: E402
from bot.runbook.targets import AwsEcsTarget, FileTarget  # noqa: E402
from bot.steps import envmatrix  # noqa: E402


def setup(url: str, scale: int, workdir: Path) -> tuple[dict[str, object], dict[str, int]]:
    """Create the three sources; returns (targets, sizes). scale=1 is the full benchmark."""
    n_plain, n_file, n_sm, n_ssm, n_staging, n_dotenv = (400 // scale, 100 // scale, 250 // scale, 250 // scale,
                                                         500 // scale, 500 // scale)
    b = lambda service: boto3.client(service, region_name="us-east-1", endpoint_url=url)  # noqa: E731
    sm, ssm, s3, ecs = b("secretsmanager"), b("ssm"), b("s3"), b("ecs")
    refs = []
    for i in range(n_sm):
        refs.append({"name": f"SM_{i:04d}", "valueFrom": sm.create_secret(Name=f"bench/sm/{i}", SecretString=f"sm-{i}-value")["ARN"]})
    for i in range(n_ssm):
        ssm.put_parameter(Name=f"/bench/ssm/{i}", Value=f"ssm-{i}-value", Type="SecureString")
        refs.append({"name": f"SSM_{i:04d}", "valueFrom": f"/bench/ssm/{i}"})
    s3.create_bucket(Bucket="bench-envfiles")
    s3.put_object(Bucket="bench-envfiles", Key="old.env",
                  Body="\n".join(f"FILE_{i:04d}=file-{i}" for i in range(n_file)).encode())
    ecs.create_cluster(clusterName="bench")

    def service(name: str, environment: list[dict[str, str]], secrets: list[dict[str, str]], files: list[str]) -> AwsEcsTarget:
        container = {"name": name, "image": "x", "memory": 512, "essential": True, "environment": environment,
                     "secrets": secrets, "environmentFiles": [{"type": "s3", "value": f} for f in files],
                     "command": ["sh", "-c", "run --workers ${WORKERS:-1}"]}
        td = ecs.register_task_definition(family=name, containerDefinitions=[container])
        ecs.create_service(cluster="bench", serviceName=name, desiredCount=1,
                           taskDefinition=td["taskDefinition"]["taskDefinitionArn"])
        return AwsEcsTarget(cluster="bench", service=name, endpoint_url=url)

    old = service("old", [{"name": f"PLAIN_{i:04d}", "value": f"plain-{i}"} for i in range(n_plain)], refs,
                  ["arn:aws:s3:::bench-envfiles/old.env"])
    staging = service("staging", [{"name": f"PLAIN_{i:04d}", "value": f"plain-{i}"} for i in range(n_staging)], [], [])
    dotenv = workdir / "new.env"
    dotenv.write_text("\n".join(f"PLAIN_{i:04d}=plain-{i}" for i in range(n_dotenv)) + "\n")
    sizes = {"variables": n_plain + n_file + n_sm + n_ssm + n_staging + n_dotenv, "secret_references": n_sm + n_ssm,
             "secretsmanager": n_sm, "ssm": n_ssm, "ecs_services": 2, "env_files": 1}
    return {"old": old, "staging": staging, "new": FileTarget(path=str(dotenv))}, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the size")
    args = parser.parse_args()
    scale = 5 if args.quick else 1
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        with tempfile.TemporaryDirectory() as tmp:
            targets, sizes = setup(url, scale, Path(tmp))
            calls: Counter[str] = Counter()

            def count(model, **_):  # botocore event hook: one per API call (retries excluded)
                calls[model.name] += 1

            for service in ("ecs", "secretsmanager", "ssm", "s3"):
                aws.client(targets["old"], service).meta.events.register("before-call.*.*", count)
            started = time.perf_counter()
            envs = {name: envmatrix.read_source(t) for name, t in targets.items()}
            matrix = envmatrix.build(envs)
            wall = time.perf_counter() - started
    finally:
        server.stop()

    minimum = (2 * sizes["ecs_services"] + sizes["env_files"] + math.ceil(sizes["secretsmanager"] / 20)
               + math.ceil(sizes["ssm"] / 10))
    naive = 2 * sizes["ecs_services"] + sizes["env_files"] + sizes["secret_references"]
    total = sum(calls.values())
    resolved = sum(len(e.values) for e in envs.values())
    print(f"variables across 3 sources: {resolved} (expected {sizes['variables']}), "
          f"{sizes['secret_references']} secret references, {len(matrix.rows)} matrix rows")
    print(f"wall time: {wall:.2f} s")
    print(f"API calls: {total} {dict(sorted(calls.items()))}")
    print(f"minimum possible: {minimum}; one call per reference would be {naive}")
    ratio = total / minimum
    target = 1.2
    print(json.dumps({"benchmark": "env_matrix", "quick": args.quick, "variables": resolved,
                      "secret_references": sizes["secret_references"], "api_calls": total, "minimum_calls": minimum,
                      "naive_calls": naive, "wall_s": round(wall, 3), "ratio": round(ratio, 3), "target": target,
                      "pass": ratio <= target and resolved == sizes["variables"]}))


if __name__ == "__main__":
    main()
