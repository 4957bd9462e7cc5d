"""Settings from the environment, read in one place.

    >>> from bot import config
    >>> config.store_path().name
    'runbook-bot.sqlite'

Every setting has a default that works on a fresh machine with no credentials: the store lives in
`./state/`, runbooks in `./runbooks/`. Front ends and platform adapters read their own settings
through the functions here so that a missing or malformed value is reported once, clearly.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _shipped(folder: str) -> Path:
    """A shipped folder: the checkout's top-level one, else the installed package data (a wheel)."""
    checkout = PROJECT_ROOT / folder
    if checkout.is_dir():
        return checkout
    from importlib.resources import files

    # `bot.runbooks` and `bot.templates` are folders of data (no __init__), so ask for them under `bot`.
    return Path(str(files("bot") / folder))


def state_dir() -> Path:
    """Where the store and the fingerprint key live (`RUNBOOK_BOT_STATE_DIR`, default `./state`)."""
    return Path(os.environ.get("RUNBOOK_BOT_STATE_DIR", "state")).resolve()


def store_path() -> Path:
    """The one SQLite file (`RUNBOOK_BOT_DB`, default `<state dir>/runbook-bot.sqlite`)."""
    explicit = os.environ.get("RUNBOOK_BOT_DB")
    return Path(explicit).resolve() if explicit else state_dir() / "runbook-bot.sqlite"


def is_postgres_url(where: object) -> bool:
    """True for a `postgresql://` or `postgres://` URL (a PostgreSQL store), False for a file path.

        >>> is_postgres_url("postgres://u@db/x"), is_postgres_url("state/runbook-bot.sqlite")
        (True, False)
    """
    return str(where).startswith(("postgresql://", "postgres://"))


def store_location() -> str:
    """Where the store is: `RUNBOOK_BOT_DB` (a file or a `postgresql://` URL), else `DATABASE_URL` when it
    names PostgreSQL (Heroku's and App Platform's convention for an attached database), else the file
    `<state dir>/runbook-bot.sqlite`."""
    explicit = os.environ.get("RUNBOOK_BOT_DB")
    if explicit and is_postgres_url(explicit):
        return explicit
    platform = os.environ.get("DATABASE_URL", "")
    if not explicit and is_postgres_url(platform):
        return platform
    return str(store_path())


def lease_seconds() -> float:
    """How long a replica's lease on the watch scheduler lasts without renewal (`RUNBOOK_BOT_LEASE_SECONDS`,
    default 30): when its holder dies, another replica takes over within this, plus a third of it."""
    raw = os.environ.get("RUNBOOK_BOT_LEASE_SECONDS", "30")
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 1.0 <= value <= 3600.0:
        raise ValueError(f"RUNBOOK_BOT_LEASE_SECONDS={raw!r}: give seconds between 1 and 3600")
    return value


def runbooks_dir() -> Path:
    """Where runbooks are found by name (`RUNBOOK_BOT_RUNBOOKS`, default the shipped `runbooks/`)."""
    explicit = os.environ.get("RUNBOOK_BOT_RUNBOOKS")
    if explicit:
        return Path(explicit).resolve()
    local = Path("runbooks")
    return local.resolve() if local.is_dir() else _shipped("runbooks")


def templates_dir() -> Path:
    """The Jinja2 templates of messages (the checkout's `templates/`, or the wheel's package data)."""
    return _shipped("templates")


def get(name: str, default: str | None = None) -> str | None:
    """Read one setting; an empty string counts as unset."""
    value = os.environ.get(name)
    return value if value else default


def get_list(name: str) -> list[str]:
    """A comma-separated setting as a list (empty when unset)."""
    return [item.strip() for item in (get(name) or "").split(",") if item.strip()]


def get_map(name: str) -> dict[str, str]:
    """A `key=value,key=value` setting as a dict (empty when unset)."""
    pairs = (item.split("=", 1) for item in get_list(name) if "=" in item)
    return {key.strip().lower(): value.strip() for key, value in pairs}
