"""AWS through boto3: one session per target, adaptive retries, timeouts, typed errors.

    from bot.platforms import aws
    ecs = aws.client(target, "ecs")                    # target: an Aws*Target model
    with aws.translate("ecs.describe_services", f"service {target.service}"):
        ecs.describe_services(cluster=target.cluster, services=[target.service])

Credentials come from the standard chain (environment, profile, instance role); a target may name
a role to assume. `endpoint_url` on the target, or `AWS_ENDPOINT_URL` in the environment, points
every client at another endpoint (moto server in tests). botocore's `adaptive` retry mode handles
throttling with a client-side rate limiter; what is still failing after it is mapped to
`bot.platforms.errors` by `translate`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from bot import config
from bot.platforms import errors

PLATFORM = "aws"

_CLIENT_CONFIG = botocore.config.Config(
    retries={"mode": "adaptive", "max_attempts": 8},
    connect_timeout=5,
    read_timeout=30,
    tcp_keepalive=True,
)

_sessions: dict[tuple[Any, ...], boto3.Session] = {}
_clients: dict[tuple[Any, ...], Any] = {}
_lock = threading.Lock()

NOT_FOUND_CODES = {
    "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "NotFound", "404", "ParameterNotFound",
    "ClusterNotFoundException", "ServiceNotFoundException", "NoSuchHostedZone", "DBInstanceNotFound",
    "DBClusterNotFoundFault", "DBInstanceNotFoundFault", "NoSuchChange", "LoadBalancerNotFound",
}
UNAUTHORIZED_CODES = {
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidClientTokenId",
    "ExpiredToken", "ExpiredTokenException", "AuthFailure", "SignatureDoesNotMatch", "403",
    "InvalidAccessKeyId",
}
THROTTLED_CODES = {
    "Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
    "PriorRequestNotComplete", "SlowDown", "ProvisionedThroughputExceededException",
}
INVALID_CODES = {"ValidationException", "InvalidParameterException", "InvalidParameterValue",
                 "InvalidInput", "InvalidChangeBatch", "ClientException", "InvalidRequest"}


def _endpoint(target: Any) -> str | None:
    return getattr(target, "endpoint_url", None) or config.get("AWS_ENDPOINT_URL")


def session_for(target: Any) -> boto3.Session:
    """A boto3 session for the target's region, profile and (optionally) assumed role; cached."""
    region = getattr(target, "region", None) or config.get("AWS_DEFAULT_REGION", "us-east-1")
    profile = getattr(target, "profile", None)
    role = getattr(target, "role_arn", None)
    key = (region, profile, role, _endpoint(target))
    with _lock:
        cached = _sessions.get(key)
        if cached is not None:
            return cached
    base = boto3.Session(region_name=region, profile_name=profile)
    if role:
        sts = base.client("sts", config=_CLIENT_CONFIG, endpoint_url=_endpoint(target))
        with translate("sts.assume_role", role):
            creds = sts.assume_role(RoleArn=role, RoleSessionName="runbook-bot")["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
    else:
        session = base
    with _lock:
        _sessions[key] = session
    return session


def client(target: Any, service: str, *, endpoint_url: str | None = None) -> Any:
    """A botocore client for `service`, configured once per (session, service, endpoint)."""
    session = session_for(target)
    endpoint = endpoint_url or _endpoint(target)
    key = (id(session), service, endpoint)
    with _lock:
        cached = _clients.get(key)
    if cached is not None:
        return cached
    made = session.client(service, config=_CLIENT_CONFIG, endpoint_url=endpoint)
    with _lock:
        _clients.setdefault(key, made)
        return _clients[key]


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def translate(call: str, resource: str = "") -> Iterator[None]:
    """Map botocore failures raised inside the block to typed platform errors."""
    try:
        yield
    except botocore.exceptions.ClientError as exc:
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in NOT_FOUND_CODES or code.endswith("NotFound") or code.endswith("NotFoundException"):
            raise errors.NotFound(PLATFORM, call, resource, message) from exc
        if code in UNAUTHORIZED_CODES:
            # The code (AccessDenied, ExpiredToken, ...) says which fix applies: a policy or the keys.
            raise errors.Unauthorized(PLATFORM, call, resource, f"{code}: {message}") from exc
        if code in THROTTLED_CODES:
            raise errors.Throttled(PLATFORM, call, resource, message) from exc
        if code in INVALID_CODES:
            raise errors.InvalidRequest(PLATFORM, call, resource, f"{code}: {message}") from exc
        raise errors.from_http_status(status or 500, PLATFORM, call, resource, f"{code}: {message}") from exc
    except botocore.exceptions.NoCredentialsError as exc:
        raise errors.MissingCredentials(
            PLATFORM, call, resource, "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"
        ) from exc
    except botocore.exceptions.WaiterError as exc:
        raise errors.Unavailable(PLATFORM, call, resource, f"waiter gave up: {exc}") from exc
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectionClosedError) as exc:
        raise errors.Unavailable(PLATFORM, call, resource, str(exc)) from exc


def _reset_for_tests() -> None:
    with _lock:
        _sessions.clear()
        _clients.clear()
