"""Route 53 record sets: read exactly what is there, change it in one batch, wait for INSYNC.

    from bot.platforms.aws import route53
    zone = route53.find_zone(target)                        # {"Id": "/hostedzone/Z1", "Name": "example.com."}
    sets = route53.record_sets(target, "api.example.com", "A")   # weighted sets carry SetIdentifier/Weight
    change_id = route53.change(target, [route53.upsert(s) for s in new_sets], comment="runbook-bot")
    route53.wait_insync(target, change_id, timeout=300, sleep=ctx.sleep, now=ctx.clock.now)

Why record sets are kept as the raw dicts Route 53 returns: rollback must put back *exactly* what was
there (values, TTL, weights, set identifiers, health check ids), and a raw record set can be handed
back to `UPSERT` as it is. A model of our own would drop whatever field we did not think of.

INSYNC only means Route 53's own servers have the change; `bot.platforms.dns` checks what the
authoritative servers actually answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.platforms import aws, errors
from bot.platforms.aws.iam import READ, WRITE, Grant

SERVICE = "route53"

# IAM actions of the calls below. A zone given by id is read with GetHostedZone alone; a zone given
# by name is found with ListHostedZonesByName, which has no resource-level permission.
IAM_ZONE_READ = ("route53:GetHostedZone", "route53:ListResourceRecordSets")
IAM_FIND_BY_NAME = "route53:ListHostedZonesByName"
IAM_CHANGE_STATUS = "route53:GetChange"
IAM_WRITE = ("route53:ChangeResourceRecordSets",)


def literal_zone_id(target: Any) -> str | None:
    """The zone id when the runbook gives one literally (`Z123`, `/hostedzone/Z123`), else None."""
    ref = target.zone.strip()
    if "{{" in ref or "." in ref.rstrip("."):
        return None
    return ref.rsplit("/", 1)[-1]


def iam_grants(target: Any, access: str) -> list[Grant]:
    """Reads (and writes) narrowed to the hosted zone when its id is literal, else on "*"."""
    zid = literal_zone_id(target)
    if zid:
        zone, change, note = f"arn:aws:route53:::hostedzone/{zid}", "arn:aws:route53:::change/*", ""
        found = []
    else:
        zone = change = "*"
        note = f"zone {target.zone!r} is given by name: give its id to narrow Resource to the hosted zone"
        found = [Grant(IAM_FIND_BY_NAME, READ, "*", note=note)]
    found += [Grant(a, READ, zone, note=note) for a in IAM_ZONE_READ]
    found.append(Grant(IAM_CHANGE_STATUS, READ, change))
    if access == WRITE:
        found += [Grant(a, WRITE, zone, note=note) for a in IAM_WRITE]
    return found


def fqdn(name: str) -> str:
    """`Api.Example.com` -> `api.example.com.` (Route 53 answers names lower-case with a final dot)."""
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def _client(target: Any) -> Any:
    return aws.client(target, SERVICE)


def find_zone(target: Any) -> dict[str, Any]:
    """The hosted zone a `aws-route53` target names, by id (`Z123`, `/hostedzone/Z123`) or by name."""
    ref = target.zone.strip()
    r53 = _client(target)
    if "." not in ref.rstrip("."):  # an id: zone names always contain a dot
        zone_id = ref if ref.startswith("/hostedzone/") else f"/hostedzone/{ref}"
        with aws.translate("route53.get_hosted_zone", f"hosted zone {ref}"):
            zone = r53.get_hosted_zone(Id=zone_id)
        return {**zone["HostedZone"], "NameServers": zone.get("DelegationSet", {}).get("NameServers", [])}
    name = fqdn(ref)
    with aws.translate("route53.list_hosted_zones_by_name", f"hosted zone {name}"):
        found = r53.list_hosted_zones_by_name(DNSName=name, MaxItems="10")["HostedZones"]
    matches = [z for z in found if z["Name"].lower() == name]
    public = [z for z in matches if not z.get("Config", {}).get("PrivateZone")]
    if not matches:
        raise errors.NotFound(aws.PLATFORM, "route53.list_hosted_zones_by_name", f"hosted zone {name}",
                              "no hosted zone with that name in this account")
    if len(public) > 1 or (not public and len(matches) > 1):
        ids = ", ".join(z["Id"].split("/")[-1] for z in matches)
        raise errors.InvalidRequest(aws.PLATFORM, "route53.list_hosted_zones_by_name", f"hosted zone {name}",
                                    f"several zones share this name ({ids}); give the zone id instead")
    zone = (public or matches)[0]
    with aws.translate("route53.get_hosted_zone", f"hosted zone {name}"):
        full = r53.get_hosted_zone(Id=zone["Id"])
    return {**zone, "NameServers": full.get("DelegationSet", {}).get("NameServers", [])}


def zone_id(target: Any) -> str:
    return find_zone(target)["Id"]


def record_sets(target: Any, name: str, rtype: str, *, zone: str | None = None) -> list[dict[str, Any]]:
    """Every record set of exactly `name`/`rtype` (several when weighted), in Route 53's order."""
    r53 = _client(target)
    zid = zone or zone_id(target)
    name, rtype = fqdn(name), rtype.upper()
    kwargs: dict[str, Any] = {"HostedZoneId": zid, "StartRecordName": name, "StartRecordType": rtype}
    found: list[dict[str, Any]] = []
    while True:
        with aws.translate("route53.list_resource_record_sets", f"{name} {rtype}"):
            page = r53.list_resource_record_sets(**kwargs)
        for rs in page["ResourceRecordSets"]:
            # Listing starts at (name, type) and runs on through the zone: stop at the first other one.
            if _unescape(rs["Name"]).lower() != name or rs["Type"] != rtype:
                return found
            found.append(rs)
        if not page.get("IsTruncated"):
            return found
        kwargs["StartRecordName"] = page["NextRecordName"]
        kwargs["StartRecordType"] = page["NextRecordType"]
        if page.get("NextRecordIdentifier"):
            kwargs["StartRecordIdentifier"] = page["NextRecordIdentifier"]


def _unescape(name: str) -> str:
    # Route 53 returns `*` as `\052` in wildcard names.
    return name.replace("\\052", "*")


def upsert(record_set: dict[str, Any]) -> dict[str, Any]:
    return {"Action": "UPSERT", "ResourceRecordSet": record_set}


def delete(record_set: dict[str, Any]) -> dict[str, Any]:
    return {"Action": "DELETE", "ResourceRecordSet": record_set}


def restore_changes(current: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The one batch that turns `current` into exactly `wanted`: delete what `wanted` lacks, upsert the rest.

    Sets are matched by SetIdentifier (None for a simple record). Deletes come first so that a
    weighted family can replace a simple record (or the reverse) inside the same atomic batch.
    """
    wanted_ids = {rs.get("SetIdentifier") for rs in wanted}
    changes = [delete(rs) for rs in current if rs.get("SetIdentifier") not in wanted_ids]
    current_by_id = {rs.get("SetIdentifier"): rs for rs in current}
    changes += [upsert(rs) for rs in wanted if current_by_id.get(rs.get("SetIdentifier")) != rs]
    return changes


def change(target: Any, changes: list[dict[str, Any]], *, zone: str | None = None,
           comment: str = "runbook-bot") -> str:
    """Apply `changes` as one atomic batch; returns the change id to wait on."""
    return submit(target, changes, zone=zone, comment=comment)["Id"]


def submit(target: Any, changes: list[dict[str, Any]], *, zone: str | None = None,
           comment: str = "runbook-bot") -> dict[str, Any]:
    """Like `change`, returning Route 53's whole `ChangeInfo` (`Id`, `Status`: PENDING or INSYNC)."""
    zid = zone or zone_id(target)
    names = sorted({c["ResourceRecordSet"]["Name"] for c in changes})
    with aws.translate("route53.change_resource_record_sets", ", ".join(names)):
        response = _client(target).change_resource_record_sets(
            HostedZoneId=zid, ChangeBatch={"Comment": comment, "Changes": changes})
    return response["ChangeInfo"]


def change_status(target: Any, change_id: str) -> str:
    with aws.translate("route53.get_change", change_id):
        return _client(target).get_change(Id=change_id)["ChangeInfo"]["Status"]


def wait_insync(target: Any, change_id: str, *, timeout: float, sleep: Callable[[float], None],
                now: Callable[[], float], interval: float = 2.0,
                progress: Callable[[str], None] | None = None) -> float:
    """Poll `get_change` until INSYNC; returns the seconds it took. Raises `Unavailable` on timeout.

    A polling loop rather than the `resource_record_sets_changed` waiter because the waiter sleeps
    30 s between polls and cannot be cancelled; `sleep` here is the step's cancellable sleep.
    """
    started = now()
    polls = 0
    while True:
        status = change_status(target, change_id)
        polls += 1
        if status == "INSYNC":
            return now() - started
        waited = now() - started
        if waited >= timeout:
            raise errors.Unavailable(aws.PLATFORM, "route53.get_change", change_id,
                                     f"still {status} after {waited:.0f}s (timeout {timeout:.0f}s)")
        if progress is not None:
            progress(f"Route 53 change {change_id.split('/')[-1]} is {status} ({waited:.0f}s)")
        sleep(min(interval * min(polls, 5), max(0.0, timeout - waited)))
