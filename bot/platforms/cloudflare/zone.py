"""The `Zone` capability of a Cloudflare zone (records as Cloudflare's dicts, one per value).

    zone = CloudflareZone(target)                    # or registry.adapter(target, "Zone")
    before = zone.read("api.example.com", "CNAME")   # [{"id":..., "content": "app.herokudns.com", "ttl": 1, "proxied": true}]
    zone.write(ctx, before, zone.retarget(before, "api.example.com", "CNAME", ["eb.example.net"], None), ...)

What is special about Cloudflare, and where it shows:
- A *proxied* record (orange cloud) is answered by Cloudflare's edge with Cloudflare's addresses:
  the origin switch is live as soon as the API has it and no resolver caches the old origin, so
  `edge_answered` is true, a TTL preflight does not apply, and verification reads the record back
  from the API (asking the name servers would only show edge addresses).
- `ttl: 1` means "automatic" (shown as `auto`); otherwise 60-86400 (30 on Enterprise).
- There is no weighted DNS: weights live on load-balancer pools (`bot.platforms.cloudflare.lb`).
- No batch endpoint in the contract this is built against: a write patches each record by id and,
  when one patch fails, puts back the ones already made, so nothing is left half-applied.
"""

from __future__ import annotations

import copy
from typing import Any

from bot.platforms import cloudflare as cf
from bot.platforms import errors
from bot.platforms.capabilities import Applied, UnweightedRecords, patch_each

KEPT = ("id", "type", "name", "content", "ttl", "proxied", "priority", "comment")
COMPARED = ("type", "name", "content", "ttl", "proxied", "priority")
AUTOMATIC = 1


def _record(raw: Any) -> dict[str, Any]:
    """The fields a switch or a rollback needs, from a record as the API returns it."""
    data = cf.plain(raw)
    record = {k: data[k] for k in KEPT if data.get(k) is not None}
    for k in ("ttl", "priority"):  # the SDK's models hold numbers as floats; the API means integers
        if isinstance(record.get(k), float) and record[k].is_integer():
            record[k] = int(record[k])
    return record


class CloudflareZone(UnweightedRecords):
    provider = "cloudflare"
    product = "Cloudflare"

    def __init__(self, target: Any, zone_id: str | None = None) -> None:
        self.target = target
        self._zone_id = zone_id
        self._zone: dict[str, Any] | None = None

    @property
    def zone(self) -> dict[str, Any]:
        if self._zone is None:
            if self._zone_id:
                with cf.translate("zones.get", f"zone {self._zone_id}"):
                    self._zone = cf.plain(cf.client(self.target).zones.get(zone_id=self._zone_id))
            else:
                self._zone = cf.find_zone(self.target)
        return self._zone

    @property
    def ref(self) -> str:
        if self._zone_id is None:
            self._zone_id = cf.zone_id(self.target)  # the target's id as it is, or one lookup by name
        return self._zone_id

    @property
    def zone_name(self) -> str:
        return str(self.zone["name"]).rstrip(".") + "."

    def nameservers(self) -> list[str]:
        return list(self.zone.get("name_servers") or [])

    def read(self, name: str, rtype: str) -> list[dict[str, Any]]:
        fq = name.strip().rstrip(".").lower()
        with cf.translate("dns.records.list", f"{fq} {rtype}"):
            # `name=` is the exact-match form in the contract (today's API also takes `name.exact=`).
            page = cf.client(self.target).dns.records.list(zone_id=self.ref, name=fq, type=rtype,  # type: ignore[arg-type]
                                                           per_page=100)
            records = [_record(r) for r in cf.all_items(page, 100)]
        return sorted(records, key=lambda r: r["id"])

    def ttl(self, sets: list[dict[str, Any]]) -> int | None:
        ttls = [int(s["ttl"]) for s in sets if s.get("ttl") is not None]
        return max(ttls) if ttls else None

    def edge_answered(self, sets: list[dict[str, Any]]) -> bool:
        return bool(sets) and all(s.get("proxied") for s in sets)

    @staticmethod
    def fmt_ttl(ttl: Any) -> str:
        return fmt_ttl(ttl)

    def same_records(self, a: list[dict[str, Any]], b: list[dict[str, Any]]) -> bool:
        def key(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
            return sorted(tuple(r.get(k) for k in ("id", *COMPARED)) for r in records)

        return key(a) == key(b)

    def values(self, rtype: str, record_set: dict[str, Any]) -> list[str]:
        return [str(record_set["content"])]

    def with_ttl(self, record_set: dict[str, Any], ttl: int) -> dict[str, Any]:
        if ttl != AUTOMATIC and not 30 <= ttl <= 86400:
            raise errors.InvalidRequest(cf.PLATFORM, "dns.records.edit", record_set.get("name", ""),
                                        f"Cloudflare TTLs are 1 (automatic) or 60-86400 seconds (30 on Enterprise), "
                                        f"not {ttl}")
        changed = copy.deepcopy(record_set)
        changed["ttl"] = ttl
        return changed

    def retarget(self, before: list[dict[str, Any]], record: str, rtype: str, values: list[str],
                 ttl: int | None) -> list[dict[str, Any]]:
        """Patch in place (ids kept, `proxied` kept): exactly one value per existing record."""
        if not before or len(before) != len(values):
            raise errors.InvalidRequest(
                cf.PLATFORM, "dns.records.edit", f"{record} {rtype}",
                f"{record} {rtype} has {len(before)} record(s) on Cloudflare and `to` has {len(values)} value(s): "
                "a switch patches records in place, so give exactly one value per existing record")
        wanted = []
        for have, value in zip(before, sorted(values)):
            changed = self.with_ttl(have, ttl) if ttl else copy.deepcopy(have)
            changed["content"] = value
            wanted.append(changed)
        return wanted

    def describe(self, sets: list[dict[str, Any]], rtype: str) -> list[str]:
        return [f"{s['content']} ttl {fmt_ttl(s.get('ttl'))}{' proxied' if s.get('proxied') else ''}" for s in sets]

    def how(self, count: int) -> str:
        return f"{count} Cloudflare record patch(es)"

    def _patch(self, record: dict[str, Any]) -> None:
        kwargs = {k: record[k] for k in ("content", "ttl", "proxied", "priority") if k in record}
        with cf.translate("dns.records.edit", f"{record['name']} {record['type']} ({record['id']})"):
            cf.client(self.target).dns.records.edit(record["id"], zone_id=self.ref, name=record["name"],
                                                    type=record["type"], **kwargs)

    def write(self, waiter: Any, current: list[dict[str, Any]], wanted: list[dict[str, Any]], *, timeout: float,
              comment: str) -> Applied:
        """PATCH each record that differs (matched by id); on a failure put back those already patched."""
        submitted = waiter.clock.now()
        done = patch_each(current, wanted, patch=lambda have, want: self._patch(want),
                          differs=lambda have, want: any(want.get(k) != have.get(k) for k in COMPARED),
                          on_missing=lambda ids: errors.Conflict(cf.PLATFORM, "dns.records.edit", self.target.zone,
                                                                 f"Cloudflare records {ids} no longer exist; "
                                                                 "nothing was changed"))
        waiter.log(f"Cloudflare: {done} record(s) patched ({comment})")
        return Applied(submitted, waiter.clock.now() - submitted, None)

    restore = write


def fmt_ttl(ttl: Any) -> str:
    from bot.platforms.dns import fmt_ttl as seconds

    return "auto" if ttl == AUTOMATIC else seconds(ttl)
