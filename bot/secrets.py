"""Secret values: kept in memory, masked everywhere they could leak, compared by keyed fingerprint.

Every value that comes from the process environment through a runbook template, every token an
adapter reads, every database URL and every environment-variable value a step reads from a
platform is *registered* here. Everything that leaves the process (Slack payloads, console output,
log lines, rows written to the SQLite store) passes through :func:`redact`, which replaces any
registered value with a mask. Steps should not rely on this net (they never put values in their
output on purpose); it is the second line of defence, and the canary tests check both lines.

    >>> from bot import secrets
    >>> secrets.register("hunter2-very-secret")
    >>> secrets.redact("password=hunter2-very-secret")
    'password=••••••'
    >>> fp = secrets.fingerprint("4")      # keyed HMAC: equal values, equal fingerprints
    >>> len(fp)
    12
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MASK = "••••••"
# Values this short are too common to mask safely ("1", "true"): masking them would shred
# ordinary text. They are still never printed by steps, which show fingerprints only.
MIN_MASKABLE = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None
_key: bytes | None = None

# Credentials embedded in URLs (postgres://user:pass@host) are masked even when unregistered.
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@\s/]+)@")


_dirty = False


def register(*values: str | None) -> None:
    """Remember values that must never be shown; empty or very short values are ignored.

    Cheap to call once per value: the mask pattern is rebuilt lazily, at the next `redact`.
    """
    global _dirty
    with _lock:
        for value in values:
            if value is None:
                continue
            value = str(value)
            if len(value) >= MIN_MASKABLE and value not in _values:
                _values.add(value)
                _dirty = True


# A value at least this long is masked wherever it appears (inside a URL, a header, a longer token);
# a shorter one only where it stands whole, so a short value does not shred words that contain it
# ("spaces" inside "do-spaces", "prod" inside "production").
SUBSTRING_MIN = 16
_EDGE = r"[A-Za-z0-9_]"

# Names that say their value is secret, for sources that keep plain and secret values apart.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|PASS\b|TOKEN|API_?KEY|PRIVATE|CREDENTIAL|AUTH|SIGNING|"
                         r"(^|_)KEY($|_)|DSN|_URL$|_URI$|DATABASE_URL|SALT|COOKIE|SESSION)", re.IGNORECASE)


def _alternative(value: str) -> str:
    escaped = re.escape(value)
    if len(value) >= SUBSTRING_MIN:
        return escaped
    return f"(?<!{_EDGE}){escaped}(?!{_EDGE})"


def _current_pattern() -> re.Pattern[str] | None:
    global _pattern, _dirty
    if _dirty:
        with _lock:
            if _dirty:
                # Longest first, so a secret that contains another is masked whole.
                ordered = sorted(_values, key=len, reverse=True)
                _pattern = re.compile("|".join(_alternative(v) for v in ordered)) if ordered else None
                _dirty = False
    return _pattern


def is_secret_name(name: str) -> bool:
    """Does a variable's name say its value is secret (DB_PASSWORD, STRIPE_API_KEY, DATABASE_URL)?"""
    return bool(SECRET_NAME.search(name))


def register_plain(name: str, value: str | None) -> None:
    """A value a platform keeps as *plain* (ECS `environment`, an App Platform GENERAL variable):
    registered only when its name says it is secret. Values from secret sources (Secrets Manager,
    SSM SecureString, App Platform SECRET, platforms that keep no distinction) use `register`."""
    if is_secret_name(name):
        register(value)


def register_plain_many(items: Iterable[tuple[str, str | None]]) -> None:
    for name, value in items:
        register_plain(name, value)


def register_many(values: Iterable[str | None]) -> None:
    register(*values)


def is_registered(value: str) -> bool:
    return value in _values


def redact(text: str) -> str:
    """Mask every registered secret value and any password embedded in a URL."""
    if not text:
        return text
    pattern = _current_pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (dict keys are names, kept as they are)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


def _key_path() -> Path:
    from bot import config

    return config.state_dir() / "fingerprint.key"


def fingerprint_key() -> bytes:
    """The per-install HMAC key: `RUNBOOK_BOT_FINGERPRINT_KEY`, else a random key kept in a 0600 file
    beside (never inside) the store, so fingerprints stay comparable across restarts."""
    global _key
    if _key is not None:
        return _key
    with _lock:
        if _key is not None:
            return _key
        env_key = os.environ.get("RUNBOOK_BOT_FINGERPRINT_KEY")
        if env_key:
            _key = env_key.encode()
            return _key
        path = _key_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _key = path.read_bytes().strip()
        else:
            new_key = os.urandom(32).hex().encode()
            with os.fdopen(fd, "wb") as handle:
                handle.write(new_key)
            _key = new_key
        return _key


def fingerprint(value: str | None) -> str:
    """A short keyed fingerprint: shows equality without showing the value (None -> "")."""
    if value is None:
        return ""
    digest = hmac.new(fingerprint_key(), str(value).encode(), hashlib.sha256).hexdigest()
    return digest[:12]


def _reset_for_tests() -> None:
    global _pattern, _key, _dirty
    with _lock:
        _values.clear()
        _pattern = None
        _dirty = False
        _key = None
