"""boto3 clients on the rehearsal world's moto servers, and the wait for one to come up.

    >>> from bot.platforms.sandbox import aws
    >>> route53 = aws.client("route53", endpoint_url="http://127.0.0.1:5000", secret_key="x")
    >>> route53.meta.region_name
    'us-east-1'

The seeding of the world (secrets, the model object, record sets, metric history) goes through these
clients, the same real boto3 the product's adapters use, against moto's real HTTP.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import boto3
import requests

REGION = "us-east-1"
ACCESS_KEY = "rehearsal"


def client(service: str, *, endpoint_url: str, secret_key: str, **kwargs: Any) -> Any:
    """A boto3 client for `service` on a moto server at `endpoint_url`."""
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=secret_key, **kwargs)


def wait_until_serving(url: str, proc: subprocess.Popen, *, timeout: float = 30.0, what: str = "moto server") -> None:
    """Return once `url` answers HTTP; raise naming `what` if `proc` exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            requests.get(f"{url}/moto-api/", timeout=1)
            return
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not start") from None
            time.sleep(0.1)
