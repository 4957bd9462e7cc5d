"""S3 and S3-compatible stores (DigitalOcean Spaces): streaming listings, head, small reads.

    from bot.platforms.aws import s3
    for obj in s3.iter_objects(target):          # target: AwsS3Target or DoSpacesTarget
        obj.key, obj.size, obj.etag              # key relative to the target's prefix
    s3.head(target, "models/projection.bin")     # ObjectInfo, or raises NotFound (never a silent 0)

`iter_objects` is a generator over `list_objects_v2` pages: one page (at most 1,000 keys) is in
memory at a time, so comparing two buckets of a million keys each costs a few pages, not a
million objects. S3 (and Spaces) list keys in ascending UTF-8 byte order, which is the order of
Python's `str` comparison, so two listings can be merge-joined as they stream (`storage.parity`).

Spaces: the endpoint is the target's `endpoint_url`, else `https://<region>.digitaloceanspaces.com`;
keys come from `SPACES_ACCESS_KEY_ID`/`SPACES_SECRET_ACCESS_KEY` when set, else the standard AWS
chain (which is how tests point it at moto).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NamedTuple

import boto3
import botocore.session

from bot import config, secrets
from bot.platforms import aws, errors
from bot.platforms.aws.iam import Grant, literal_or_wildcard

# IAM actions: list_objects_v2 is s3:ListBucket on the bucket, head_object and get_object are
# s3:GetObject on the object. ECS environment files may be in any bucket (the task definition says).
IAM_LIST = ("s3:ListBucket",)
IAM_ENV_FILE_READ = ("s3:GetObject",)


class ObjectInfo(NamedTuple):
    """One listed object. A tuple (not a dict) because a listing can be long."""

    key: str
    size: int
    etag: str  # without quotes; "<md5>" for single-part uploads, "<md5>-<parts>" for multipart


_spaces_clients: dict[tuple[str, str, str], Any] = {}


def spaces_endpoint(target: Any) -> str:
    """The target's `endpoint_url`, else `SPACES_ENDPOINT_URL` (a rehearsal world), else the region's host."""
    return (target.endpoint_url or config.get("SPACES_ENDPOINT_URL")
            or f"https://{target.region}.digitaloceanspaces.com")
_lock = threading.Lock()


def client_for(target: Any) -> Any:
    """The S3 client for an `aws-s3` or `do-spaces` target."""
    if getattr(target, "platform", "") == "do-spaces":
        endpoint = spaces_endpoint(target)
        key_id = config.get("SPACES_ACCESS_KEY_ID")
        secret = config.get("SPACES_SECRET_ACCESS_KEY")
        if key_id and secret:
            secrets.register(secret)
            cache_key = (endpoint, key_id, target.region)
            with _lock:
                if cache_key not in _spaces_clients:
                    session = boto3.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                            region_name=target.region)
                    _spaces_clients[cache_key] = session.client("s3", endpoint_url=endpoint,
                                                                config=aws._CLIENT_CONFIG)
                return _spaces_clients[cache_key]
        return aws.client(target, "s3", endpoint_url=endpoint)
    return aws.client(target, "s3")


_listing_clients: dict[tuple[Any, ...], Any] = {}


def _keep_text(value: str) -> str:
    return value


def listing_client(target: Any) -> Any:
    """A client for `list_objects_v2` only, whose parser leaves timestamps as text.

    Why: botocore parses every `LastModified` with dateutil, which was about half of the client's
    time per page; a parity check never reads it. The parser default is set on a botocore session
    of its own (the AWS CLI's documented hook), so no other client of the process is affected.
    Credentials are those the target's ordinary client uses (frozen for the listing).
    """
    if getattr(target, "platform", "") == "do-spaces":
        endpoint = spaces_endpoint(target)
        key_id, secret = config.get("SPACES_ACCESS_KEY_ID"), config.get("SPACES_SECRET_ACCESS_KEY")
        token = None
        if not (key_id and secret):
            key_id, secret, token = _frozen(target)
    else:
        endpoint = aws._endpoint(target)
        key_id, secret, token = _frozen(target)
    secrets.register(secret, token)
    region = getattr(target, "region", None) or "us-east-1"
    cache_key = (endpoint, key_id, secret, token, region)
    with _lock:
        cached = _listing_clients.get(cache_key)
        if cached is not None:
            return cached
    core = botocore.session.Session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_keep_text)
    session = boto3.Session(botocore_session=core, aws_access_key_id=key_id, aws_secret_access_key=secret,
                            aws_session_token=token, region_name=region)
    made = session.client("s3", endpoint_url=endpoint, config=aws._CLIENT_CONFIG)
    with _lock:
        return _listing_clients.setdefault(cache_key, made)


def _frozen(target: Any) -> tuple[str, str, str | None]:
    credentials = aws.session_for(target).get_credentials()
    if credentials is None:
        raise errors.MissingCredentials(aws.PLATFORM, "s3.list_objects_v2", describe(target),
                                        "no AWS credentials: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE")
    frozen = credentials.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def describe(target: Any) -> str:
    prefix = f"/{target.prefix}" if target.prefix else ""
    where = "spaces" if getattr(target, "platform", "") == "do-spaces" else "s3"
    return f"{where}://{target.bucket}{prefix}"


def _full_key(target: Any, key: str) -> str:
    prefix = target.prefix or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix + key


def _strip(etag: str | None) -> str:
    return (etag or "").strip('"')


def iter_objects(target: Any, *, page_size: int = 1000) -> Iterator[ObjectInfo]:
    """Yield every object under the target's prefix, in key order, one page in memory at a time."""
    s3 = listing_client(target)
    prefix = target.prefix or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=target.bucket, Prefix=prefix,
                               PaginationConfig={"PageSize": page_size})
    cut = len(prefix)
    with aws.translate("s3.list_objects_v2", describe(target)):
        for page in pages:
            for item in page.get("Contents", ()):
                yield ObjectInfo(item["Key"][cut:], int(item["Size"]), _strip(item.get("ETag")))


def head(target: Any, key: str) -> ObjectInfo:
    """Head one object (key relative to the prefix). Raises NotFound when it is absent."""
    s3 = client_for(target)
    full = _full_key(target, key)
    with aws.translate("s3.head_object", f"{describe(target)}: {key}"):
        response = s3.head_object(Bucket=target.bucket, Key=full)
    return ObjectInfo(key, int(response.get("ContentLength", 0)), _strip(response.get("ETag")))


def parse_arn(arn: str) -> tuple[str, str]:
    """`arn:aws:s3:::bucket/path/file.env` -> ("bucket", "path/file.env")."""
    prefix = "arn:aws:s3:::"
    if not arn.startswith(prefix) or "/" not in arn[len(prefix):]:
        raise errors.InvalidRequest(aws.PLATFORM, "parse s3 arn", arn, "expected arn:aws:s3:::<bucket>/<key>")
    bucket, _, key = arn[len(prefix):].partition("/")
    return bucket, key


def read_text(target: Any, bucket: str, key: str, *, limit: int = 1_000_000) -> str:
    """Read a small object as UTF-8 (environment files); the target supplies region and endpoint."""
    s3 = client_for(target)
    with aws.translate("s3.get_object", f"s3://{bucket}/{key}"):
        body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        data = body.read(limit + 1)
    if len(data) > limit:
        raise errors.InvalidRequest(aws.PLATFORM, "s3.get_object", f"s3://{bucket}/{key}",
                                    f"larger than {limit} bytes; not an environment file")
    return data.decode("utf-8")


class S3Store:
    """The `ObjectStore` capability of an S3 bucket or a DigitalOcean Space (both speak the S3 API)."""

    def __init__(self, target: Any) -> None:
        self.target = target

    @staticmethod
    def iam_grants(target: Any, access: str) -> list[Grant]:
        """ListBucket on the bucket, GetObject under the prefix; none for Spaces (its keys are not IAM)."""
        if getattr(target, "platform", "") != "aws-s3":
            return []
        bucket = literal_or_wildcard(target.bucket)
        prefix = literal_or_wildcard(target.prefix or "")
        return [Grant(IAM_LIST[0], resource=f"arn:aws:s3:::{bucket}"),
                Grant("s3:GetObject", resource=f"arn:aws:s3:::{bucket}/{prefix}*")]

    def describe(self) -> str:
        return describe(self.target)

    def iter_objects(self, *, page_size: int = 1000) -> Iterator[ObjectInfo]:
        return iter_objects(self.target, page_size=page_size)

    def head(self, key: str) -> ObjectInfo:
        return head(self.target, key)
