"""Plain HTTP calls for checks and probes: one GET with a timeout, an optional Host header, no retries.

    >>> from bot.platforms import http
    >>> reply = http.get("http://127.0.0.1:8080/healthz", host="api.example.com", timeout=5)
    >>> reply.status, reply.elapsed_ms, reply.body[:40]

Retries belong to the caller (the engine's step retries, the watch's schedule): a check that
retries itself hides exactly the flakiness an operator needs to see. Connection failures and
timeouts come back as a `Reply` with `status=None` and the error named, not as exceptions,
because for a health check "it did not answer" is an answer.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import requests
import urllib3

MAX_BODY = 64 * 1024


@dataclass
class Reply:
    url: str
    status: int | None
    elapsed_ms: float
    body: str = ""
    error: str | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None


def get(url: str, *, host: str | None = None, timeout: float = 10.0, headers: dict[str, str] | None = None,
        verify_tls: bool = True) -> Reply:
    """GET `url`, reading at most 64 KiB of the body."""
    send_headers = dict(headers or {})
    if host:
        send_headers["Host"] = host
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            # verify_tls=False is the runbook's explicit choice (an IP, an edge's own certificate):
            # urllib3's warning on every request would only bury the run's output.
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = requests.get(url, headers=send_headers, timeout=timeout, stream=True, allow_redirects=False,
                                    verify=verify_tls)
        with response:
            raw = response.raw.read(MAX_BODY, decode_content=True) or b""
            body = raw.decode(response.encoding or "utf-8", errors="replace")
            return Reply(url, response.status_code, (time.monotonic() - started) * 1000, body)
    except requests.Timeout:
        return Reply(url, None, (time.monotonic() - started) * 1000, error=f"no answer within {timeout:g}s")
    except requests.ConnectionError as exc:
        return Reply(url, None, (time.monotonic() - started) * 1000, error=f"connection failed: {_short(exc)}")
    except requests.RequestException as exc:
        return Reply(url, None, (time.monotonic() - started) * 1000, error=f"request failed: {_short(exc)}")


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 200 else text[:200] + "…"
