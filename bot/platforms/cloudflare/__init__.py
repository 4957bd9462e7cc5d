"""Cloudflare through its official Python SDK (`cloudflare`): one client per endpoint, errors mapped.

    from bot.platforms import cloudflare
    cf = cloudflare.client(target)                       # reads the credentials from the environment
    with cloudflare.translate("dns.records.list", "zone example.com"):
        page = cf.dns.records.list(zone_id=zone_id, name={"exact": "api.example.com"}, type="A")

Credentials: `CLOUDFLARE_API_TOKEN` (a scoped token: Zone.DNS edit, Load Balancers edit, Analytics
read), or `CLOUDFLARE_EMAIL` plus `CLOUDFLARE_API_KEY` (the global key). `CLOUDFLARE_API_URL` or a
target's `api_url` overrides the endpoint (tests point it at a local stand-in). Retries are the
SDK's own (`max_retries`, exponential backoff on 429/5xx/connection errors, honouring Retry-After);
`CLOUDFLARE_MAX_RETRIES` changes their number.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bot import config, secrets
from bot.platforms import errors

PLATFORM = "cloudflare"
DEFAULT_URL = "https://api.cloudflare.com/client/v4"
_clients: dict[tuple[str, str, str], Any] = {}
_zone_ids: dict[tuple[str, str], str] = {}


def _credentials() -> dict[str, str]:
    token = config.get("CLOUDFLARE_API_TOKEN")
    email, key = config.get("CLOUDFLARE_EMAIL"), config.get("CLOUDFLARE_API_KEY")
    found: dict[str, str] = {}
    if token:
        found["api_token"] = token
    if email and key:
        found.update(api_email=email, api_key=key)
    if not found:
        raise errors.MissingCredentials(PLATFORM, "credentials", "",
                                        "set CLOUDFLARE_API_TOKEN, or CLOUDFLARE_EMAIL and CLOUDFLARE_API_KEY")
    for value in found.values():
        secrets.register(value)  # never echoed in a log line or a Slack message
    return found


def client(target: Any = None) -> Any:
    """The SDK client for the target's endpoint (cached: one connection pool per endpoint)."""
    import cloudflare

    base_url = (getattr(target, "api_url", None) or config.get("CLOUDFLARE_API_URL") or DEFAULT_URL).rstrip("/")
    creds = _credentials()
    key = (base_url, creds.get("api_token", ""), creds.get("api_email", "") + creds.get("api_key", ""))
    if key not in _clients:
        _clients[key] = cloudflare.Cloudflare(base_url=base_url, timeout=30.0,
                                              max_retries=int(config.get("CLOUDFLARE_MAX_RETRIES", "3") or 3),
                                              **creds)
    return _clients[key]


@contextmanager
def translate(call: str, resource: str) -> Iterator[None]:
    """Map the SDK's exceptions onto `bot.platforms.errors` (after the SDK's retries are spent)."""
    import cloudflare

    try:
        yield
    except cloudflare.APIStatusError as exc:
        raise errors.from_http_status(exc.status_code, PLATFORM, call, resource, _message(exc)) from None
    except cloudflare.APIConnectionError as exc:
        raise errors.Unavailable(PLATFORM, call, resource, f"cannot reach the API: {exc}") from None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        found = body.get("errors") or []
        text = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in found)
        if text:
            return secrets.redact(text)[:300]
    return secrets.redact(str(getattr(exc, "message", "") or exc))[:300]


def plain(model: Any) -> dict[str, Any]:
    """An SDK response model as a plain dict (unknown fields kept, unset ones dropped)."""
    if model is None:
        return {}
    if isinstance(model, dict):
        return model
    return model.model_dump(mode="json", exclude_unset=True)


def all_items(page: Any, per_page: int) -> list[dict[str, Any]]:
    """Every item of a paged list, asking for the next page only when this one was full (the SDK's
    own iteration always asks for one more, empty, page: a wasted call per read)."""
    items = [plain(i) for i in (page.result or [])]
    while len(page.result or []) >= per_page and page.has_next_page():
        page = page.get_next_page()
        items.extend(plain(i) for i in (page.result or []))
    return items


def zone_id(target: Any) -> str:
    """The zone's id: the target's `zone` when it is an id, else looked up by name."""
    name = target.zone.strip().rstrip(".").lower()
    if len(name) == 32 and all(c in "0123456789abcdef" for c in name):
        return name
    key = (str(getattr(target, "api_url", None) or config.get("CLOUDFLARE_API_URL") or DEFAULT_URL), name)
    if key not in _zone_ids:  # a zone's id never changes: a watch ticking for a day looks it up once
        _zone_ids[key] = find_zone(target)["id"]
    return _zone_ids[key]


def find_zone(target: Any) -> dict[str, Any]:
    name = target.zone.strip().rstrip(".").lower()
    cf = client(target)
    with translate("zones.list", f"zone {name}"):
        zones = all_items(cf.zones.list(name=name, per_page=50), 50)
    found = [z for z in zones if str(z.get("name", "")).lower() == name]
    if not found:
        raise errors.NotFound(PLATFORM, "zones.list", f"zone {name}", "no zone of that name is visible to the credentials")
    return found[0]
