"""DigitalOcean domain records: find them by fully qualified name and type, patch `data`/`ttl`.

    from bot.platforms.digitalocean import domains
    records = domains.list_records("example.com", "api.example.com", "A")   # [{"id": 1, "data": ..., "ttl": ...}]
    domains.patch_record("example.com", records[0], data="203.0.113.20", ttl=60)

DigitalOcean DNS has no weighted routing: a switch is a patch of `data` (and `ttl`), a rollback is a
patch back to the saved values. Every call goes through `do.call(..., expect=...)`, so a 404 that
pydo returns as a body is a `NotFound`, never an empty list.
"""

from __future__ import annotations

from typing import Any

from bot.platforms import digitalocean as do

PAGE_SIZE = 200


def fqdn(name: str) -> str:
    """`Api.Example.com.` -> `api.example.com` (the form the `name=` filter wants)."""
    return name.strip().rstrip(".").lower()


def list_records(domain: str, name: str, rtype: str, *, client: Any = None) -> list[dict[str, Any]]:
    """Every record of `name` (fully qualified) and `rtype` in `domain`, across pages."""
    client = client or do.client()
    domain, name, rtype = fqdn(domain), fqdn(name), rtype.upper()
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        # `do.call` takes `name` itself, so the filter goes in through a closure.
        response = do.call("domains.list_records", f"{name} {rtype} in {domain}",
                           lambda p=page: client.domains.list_records(domain, name=name, type=rtype,
                                                                      per_page=PAGE_SIZE, page=p),
                           expect="domain_records")
        records = response["domain_records"]
        found.extend(r for r in records if r.get("type", "").upper() == rtype)
        if len(records) < PAGE_SIZE or not (response.get("links") or {}).get("pages", {}).get("next"):
            return found
        page += 1


def patch_record(domain: str, record: dict[str, Any], *, data: str | None = None, ttl: int | None = None,
                 client: Any = None) -> dict[str, Any]:
    """Patch one record's `data` and/or `ttl`; returns the record as DigitalOcean now holds it."""
    client = client or do.client()
    body: dict[str, Any] = {"type": record["type"]}  # the contract requires `type` on every patch
    if data is not None:
        body["data"] = data
    if ttl is not None:
        body["ttl"] = int(ttl)
    resource = f"record {record['id']} ({record.get('name', '?')} {record['type']}) in {fqdn(domain)}"
    response = do.call("domains.patch_record", resource, client.domains.patch_record,
                       fqdn(domain), record["id"], body, expect="domain_record")
    return response["domain_record"]


def nameservers(domain: str, *, client: Any = None) -> list[str]:
    """The zone's NS records as DigitalOcean holds them (ns1.digitalocean.com, ...)."""
    records = list_records(domain, domain, "NS", client=client)
    return sorted(str(r["data"]).rstrip(".") for r in records)
