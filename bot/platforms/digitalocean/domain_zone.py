"""The `Zone` capability of a DigitalOcean domain (records as DigitalOcean's dicts, one per value).

DigitalOcean DNS has no batch and no weighted routing: a write patches each record by id, and
"nothing half-applied" is kept by putting back, in reverse, the records already patched when one
patch fails.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.platforms import errors
from bot.platforms.capabilities import AnsweredByNameServers, Applied, UnweightedRecords, patch_each
from bot.platforms.digitalocean import PLATFORM, domains


class DigitalOceanZone(AnsweredByNameServers, UnweightedRecords):
    provider = "digitalocean"
    product = "DigitalOcean"
    ref = None

    def __init__(self, target: Any, zone_id: str | None = None) -> None:
        self.target = target

    @property
    def zone_name(self) -> str:
        return domains.fqdn(self.target.domain) + "."

    def nameservers(self) -> list[str]:
        return domains.nameservers(self.target.domain)

    def read(self, name: str, rtype: str) -> list[dict[str, Any]]:
        return sorted(domains.list_records(self.target.domain, name, rtype), key=lambda r: r["id"])

    def ttl(self, sets: list[dict[str, Any]]) -> int | None:
        ttls = [int(s["ttl"]) for s in sets if s.get("ttl") is not None]
        return max(ttls) if ttls else None

    def values(self, rtype: str, record_set: dict[str, Any]) -> list[str]:
        return [str(record_set["data"])]

    def with_ttl(self, record_set: dict[str, Any], ttl: int) -> dict[str, Any]:
        changed = copy.deepcopy(record_set)
        changed["ttl"] = ttl
        return changed

    def retarget(self, before: list[dict[str, Any]], record: str, rtype: str, values: list[str],
                 ttl: int | None) -> list[dict[str, Any]]:
        """Patching keeps ids, so there must be exactly one value per existing record."""
        if len(before) != len(values):
            raise errors.InvalidRequest(
                PLATFORM, "domains.patch_record", f"{record} {rtype}",
                f"{record} {rtype} has {len(before)} record(s) on DigitalOcean and `to` has {len(values)} "
                "value(s): a switch patches records in place, so give exactly one value per existing record")
        wanted = []
        for have, value in zip(before, sorted(values)):
            changed = copy.deepcopy(have)
            changed["data"] = value
            if ttl:
                changed["ttl"] = ttl
            wanted.append(changed)
        return wanted

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]:
        from bot.platforms.dns import fmt_ttl

        return [f"#{s['id']}: {s['data']} ttl {fmt_ttl(s.get('ttl'))}" for s in sets]

    def how(self, count: int) -> str:
        return f"{count} DigitalOcean patch(es)"

    def write(self, waiter: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied:
        """Patch each record (matched by id) to the wanted data/ttl; undo the patches already made if one fails."""
        submitted = waiter.clock.now()
        domain = self.target.domain

        def patch(have: dict[str, Any] | None, want: dict[str, Any]) -> None:
            if have is None:  # putting back a record exactly as it was
                domains.patch_record(domain, want, data=want["data"], ttl=want.get("ttl"))
                return
            domains.patch_record(domain, have, data=want["data"] if want["data"] != have["data"] else None,
                                 ttl=want["ttl"] if want.get("ttl") != have.get("ttl") else None)

        patch_each(current, wanted, patch=patch,
                   differs=lambda have, want: (want["data"], want.get("ttl")) != (have["data"], have.get("ttl")),
                   on_missing=lambda ids: errors.Conflict(PLATFORM, "domains.patch_record", domain,
                                                          f"DigitalOcean records {ids} no longer exist in {domain}; "
                                                          "nothing was changed"))
        # DigitalOcean applies a patch at once; there is no change id to wait on.
        return Applied(submitted, waiter.clock.now() - submitted, None)

    restore = write
