"""A synthetic caller: GET a URL, record status and latency; a hang is a failure, not a wait.

    from bot.platforms import probe
    result = probe.get("https://203.0.113.7/healthz", host="api.example.com", timeout=5)
    result.ok, result.status, result.latency, result.error

Why the bot calls the service itself: a wedged service logs nothing and reports no errors; the
edge answers its callers 504 after its own timeout. Calling from outside, as a caller does, sees
that 504 (or the hang itself, when there is no edge in between) within one probe.

`timeout` bounds the connect and each read; a server that accepts and never answers ends as
`error="timed out after 5.0s (no answer)"` with `status=None`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import requests

DEFAULT_TIMEOUT = 10.0

# One session per thread: `requests.get` builds a fresh Session (and re-reads proxy and netrc
# settings) on every call, which costs more than the probe itself on a busy host.
_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


@dataclass
class ProbeResult:
    url: str
    ok: bool
    status: int | None
    latency: float  # seconds until the answer (or until giving up)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.status is not None:
            reason = "" if self.ok else " (failure)"
            return f"HTTP {self.status} in {self.latency:.2f}s{reason}"
        return self.error or "no answer"


def get(url: str, *, host: str | None = None, timeout: float = DEFAULT_TIMEOUT, ok_status: tuple[int, int] = (200, 399),
        session: requests.Session | None = None) -> ProbeResult:
    """One GET; `ok` when the status is within `ok_status` (inclusive). Never raises for the
    outcomes a probe exists to record (refused, reset, timed out, 5xx): they are its result."""
    headers = {"User-Agent": "runbook-bot-probe/1"}
    if host:
        headers["Host"] = host
    sender = session or _session()
    began = time.monotonic()
    try:
        response = sender.get(url, headers=headers, timeout=(timeout, timeout), allow_redirects=False, stream=True)
    except requests.Timeout:
        return ProbeResult(url, False, None, time.monotonic() - began, f"timed out after {timeout:.1f}s (no answer)")
    except requests.ConnectionError as exc:
        return ProbeResult(url, False, None, time.monotonic() - began, f"connection failed: {_short(exc)}")
    try:
        status = response.status_code
    finally:
        response.close()
    latency = time.monotonic() - began
    ok = ok_status[0] <= status <= ok_status[1]
    return ProbeResult(url, ok, status, latency, None if ok else f"HTTP {status}")


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 160 else text[:157] + "..."
