"""Resolve ECS `secrets[].valueFrom` references: Secrets Manager and SSM Parameter Store, in batches.

    from bot.platforms.aws import secrets as aws_secrets
    values = aws_secrets.resolve(target, ["arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf:password::",
                                         "arn:aws:ssm:us-east-1:1:parameter/prod/workers", "plain-name"])
    values["plain-name"]            # the decrypted string (already registered with bot.secrets)

A reference is one of (as ECS accepts them):
- a Secrets Manager ARN, optionally followed by `:json-key:version-stage:version-id` (each part may
  be empty): the JSON key picks one field of a JSON secret string;
- an SSM parameter ARN (`arn:aws:ssm:<region>:<account>:parameter/name`) or a parameter name.

Why batches: a task definition of a big service easily references hundreds of secrets, and one
`GetSecretValue` per reference is both slow and the fastest way into throttling. Secrets Manager's
`BatchGetSecretValue` takes up to 20 ids and SSM's `GetParameters` up to 10 names, so resolving N
references costs ceil(secrets/20) + ceil(parameters/10) calls (the benchmark checks it). References
that pin a version stage or id cannot be batched (the batch call always reads AWSCURRENT), so they
get one `GetSecretValue` each. Identical references are fetched once.

Limitation: references are resolved in the target's region and account (a secret or parameter
ARN of another region is reported as not found rather than fetched cross-region).

Every value is registered with `bot.secrets` as soon as it is read. A reference that cannot be
resolved raises `NotFound` naming the reference (an ARN or a name, never a value): ECS itself would
refuse to start the task, so the env matrix must not quietly show the variable as absent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot import secrets
from bot.platforms import aws, errors

SECRETS_BATCH = 20  # BatchGetSecretValue: SecretIdList holds at most 20 ids
PARAMETERS_BATCH = 10  # GetParameters: at most 10 names

# IAM actions of `resolve` (BatchGetSecretValue also needs GetSecretValue on each secret it returns;
# a secret or parameter encrypted with a customer managed KMS key also needs kms:Decrypt on that key).
IAM_READ = ("secretsmanager:BatchGetSecretValue", "secretsmanager:GetSecretValue", "ssm:GetParameters")


@dataclass(frozen=True)
class SecretRef:
    """A parsed `valueFrom`."""

    raw: str
    service: str  # "secretsmanager" | "ssm"
    secret_id: str  # Secrets Manager ARN without the suffix, or the SSM parameter name
    json_key: str = ""
    version_stage: str = ""
    version_id: str = ""

    @property
    def batchable(self) -> bool:
        return self.service == "ssm" or not (self.version_stage or self.version_id)


def parse_ref(value_from: str) -> SecretRef:
    """Split a `valueFrom` into the store, the id and the optional json-key/stage/version suffix.

    >>> parse_ref("arn:aws:secretsmanager:us-east-1:1:secret:db-AbCdEf:password:AWSPREVIOUS:").json_key
    'password'
    >>> parse_ref("arn:aws:ssm:us-east-1:1:parameter/prod/workers").secret_id
    '/prod/workers'
    """
    if value_from.startswith("arn:"):
        parts = value_from.split(":")
        if len(parts) < 6:
            raise errors.InvalidRequest(aws.PLATFORM, "parse valueFrom", value_from, "not a valid ARN")
        service = parts[2]
        if service == "secretsmanager":
            if len(parts) < 7 or parts[5] != "secret":
                raise errors.InvalidRequest(aws.PLATFORM, "parse valueFrom", value_from,
                                            "expected arn:aws:secretsmanager:<region>:<account>:secret:<name>")
            suffix = parts[7:10] + [""] * (3 - len(parts[7:10]))
            if len(parts) > 10:
                raise errors.InvalidRequest(aws.PLATFORM, "parse valueFrom", value_from,
                                            "too many ':' parts after the secret name")
            return SecretRef(value_from, "secretsmanager", ":".join(parts[:7]), *suffix)
        if service == "ssm":
            resource = ":".join(parts[5:])
            if not resource.startswith("parameter/"):
                raise errors.InvalidRequest(aws.PLATFORM, "parse valueFrom", value_from,
                                            "expected arn:aws:ssm:<region>:<account>:parameter/<name>")
            name = resource[len("parameter/"):]
            # Hierarchical names begin with "/", which the ARN drops; flat names contain no "/".
            return SecretRef(value_from, "ssm", "/" + name if "/" in name else name)
        raise errors.InvalidRequest(aws.PLATFORM, "parse valueFrom", value_from,
                                    f"unsupported service {service!r} (secretsmanager or ssm)")
    return SecretRef(value_from, "ssm", value_from)


def resolve(target: Any, value_froms: list[str]) -> dict[str, str]:
    """Resolve every reference; returns {valueFrom: value}. Raises NotFound for any unresolvable one."""
    refs = {raw: parse_ref(raw) for raw in dict.fromkeys(value_froms)}
    sm_ids = list(dict.fromkeys(r.secret_id for r in refs.values() if r.service == "secretsmanager" and r.batchable))
    ssm_names = list(dict.fromkeys(r.secret_id for r in refs.values() if r.service == "ssm"))
    secret_strings = _batch_secrets(target, sm_ids) if sm_ids else {}
    parameters = _batch_parameters(target, ssm_names) if ssm_names else {}
    pinned: dict[tuple[str, str, str], str] = {}
    out: dict[str, str] = {}
    for raw, ref in refs.items():
        if ref.service == "ssm":
            out[raw] = parameters[ref.secret_id]
            continue
        if ref.batchable:
            text = secret_strings[ref.secret_id]
        else:
            key = (ref.secret_id, ref.version_stage, ref.version_id)
            if key not in pinned:
                pinned[key] = _get_pinned(target, ref)
            text = pinned[key]
        out[raw] = _json_field(ref, text) if ref.json_key else text
    secrets.register_many(out.values())
    return out


def _batch_secrets(target: Any, ids: list[str]) -> dict[str, str]:
    sm = aws.client(target, "secretsmanager")
    found: dict[str, str] = {}
    missing: list[str] = []
    for start in range(0, len(ids), SECRETS_BATCH):
        chunk = ids[start:start + SECRETS_BATCH]
        with aws.translate("secretsmanager.batch_get_secret_value", f"{len(chunk)} secrets"):
            response = sm.batch_get_secret_value(SecretIdList=chunk)
        by_key: dict[str, str] = {}
        texts = [_secret_text(item) for item in response.get("SecretValues", [])]
        secrets.register_many(texts)  # one call per batch: registering recompiles the mask pattern
        for item, text in zip(response.get("SecretValues", []), texts, strict=True):
            for k in (item.get("ARN"), item.get("Name")):
                if k:
                    by_key[k] = text
        for secret_id in chunk:
            text = by_key.get(secret_id)
            if text is None:
                # ECS also accepts a partial ARN (without the random 6-character suffix).
                text = next((v for k, v in by_key.items() if k.startswith(secret_id + "-")), None)
            if text is None:
                missing.append(secret_id)
            else:
                found[secret_id] = text
    if missing:
        raise errors.NotFound(aws.PLATFORM, "secretsmanager.batch_get_secret_value", ", ".join(missing),
                              f"{len(missing)} secret(s) referenced by the task definition do not exist "
                              "or cannot be read")
    return found


def _get_pinned(target: Any, ref: SecretRef) -> str:
    sm = aws.client(target, "secretsmanager")
    kwargs: dict[str, str] = {"SecretId": ref.secret_id}
    if ref.version_stage:
        kwargs["VersionStage"] = ref.version_stage
    if ref.version_id:
        kwargs["VersionId"] = ref.version_id
    with aws.translate("secretsmanager.get_secret_value", ref.raw):
        item = sm.get_secret_value(**kwargs)
    text = _secret_text(item)
    secrets.register(text)
    return text


def _secret_text(item: dict[str, Any]) -> str:
    if "SecretString" in item:
        return str(item["SecretString"])
    raise errors.InvalidRequest(aws.PLATFORM, "secretsmanager.get_secret_value", str(item.get("ARN", "")),
                                "the secret holds binary data; ECS can inject only SecretString values")


def _json_field(ref: SecretRef, text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        # The message must not quote the text: it is a secret.
        raise errors.InvalidRequest(aws.PLATFORM, "secretsmanager json-key", ref.raw,
                                    f"json-key {ref.json_key!r} given but the secret is not JSON") from None
    if not isinstance(data, dict) or ref.json_key not in data:
        raise errors.NotFound(aws.PLATFORM, "secretsmanager json-key", ref.raw,
                              f"the secret has no JSON key {ref.json_key!r}")
    value = data[ref.json_key]
    return value if isinstance(value, str) else json.dumps(value)


def _batch_parameters(target: Any, names: list[str]) -> dict[str, str]:
    ssm = aws.client(target, "ssm")
    found: dict[str, str] = {}
    invalid: list[str] = []
    for start in range(0, len(names), PARAMETERS_BATCH):
        chunk = names[start:start + PARAMETERS_BATCH]
        with aws.translate("ssm.get_parameters", f"{len(chunk)} parameters"):
            response = ssm.get_parameters(Names=chunk, WithDecryption=True)
        secrets.register_many(str(item.get("Value", "")) for item in response.get("Parameters", []))
        for item in response.get("Parameters", []):
            value = str(item.get("Value", ""))
            found[item["Name"]] = value
            if item.get("ARN"):
                found.setdefault(item["ARN"], value)
        invalid.extend(response.get("InvalidParameters", []))
    invalid.extend(n for n in names if n not in found and n not in invalid)
    if invalid:
        raise errors.NotFound(aws.PLATFORM, "ssm.get_parameters", ", ".join(invalid),
                              f"{len(invalid)} parameter(s) referenced by the task definition do not exist")
    return found
