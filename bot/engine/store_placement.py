"""Refuse to keep the SQLite store where the platform will throw it away.

    >>> ephemeral_platform({"DYNO": "web.1"}, "/app/state/runbook-bot.sqlite")
    'Heroku (DYNO is set)'
    >>> ephemeral_platform({}, "/app/state/runbook-bot.sqlite") is None
    True

Heroku dynos, ECS tasks, Fly Machines and Kubernetes pods start from their image: a file written
on the container's own file system is gone at the next deploy or restart (Heroku restarts every
dyno daily). A store there would lose every run, approval and audit row mid-migration, silently.
So on such a platform the SQLite store starts only when its file is on a mounted volume (a mount
point other than `/`, e.g. an EFS or Fly volume), or when the operator says
`RUNBOOK_BOT_EPHEMERAL_OK=1` (a throwaway trial). Otherwise: one line saying so, and what to do.

App Platform publishes no marker variable we could check against its documentation here: an app
spec sets `RUNBOOK_BOT_FS=ephemeral`, which this check honours like a marker, and any other
platform can do the same.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from bot.engine.store_faults import StoreFault

# (environment variable, the platform it marks)
MARKERS = (
    ("DYNO", "Heroku"),
    ("ECS_CONTAINER_METADATA_URI_V4", "Amazon ECS"),
    ("ECS_CONTAINER_METADATA_URI", "Amazon ECS"),
    ("FLY_MACHINE_ID", "Fly.io"),
    ("KUBERNETES_SERVICE_HOST", "Kubernetes"),
)
DECLARED = "RUNBOOK_BOT_FS"
OVERRIDE = "RUNBOOK_BOT_EPHEMERAL_OK"


def _mount_point(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    while not os.path.ismount(folder):
        folder = os.path.dirname(folder)
    return folder


def ephemeral_platform(env: Mapping[str, str], path: str) -> str | None:
    """The platform that would lose a store file at `path`, or None when it would survive."""
    if env.get(DECLARED, "").lower() == "ephemeral":
        platform = f"this platform ({DECLARED}=ephemeral)"
    else:
        platform = next((f"{name} ({var} is set)" for var, name in MARKERS if env.get(var)), None)
    if platform is None or _mount_point(path) != "/":
        return None  # not a known ephemeral platform, or the file is on a mounted volume
    return platform


def check_durable(path: str, env: Mapping[str, str] | None = None) -> None:
    """Raise `StoreFault` (one line) when the store file at `path` would not survive a restart."""
    env = os.environ if env is None else env
    if env.get(OVERRIDE) == "1":
        return
    platform = ephemeral_platform(env, path)
    if platform:
        raise StoreFault(path, f"on {platform} this file is lost at the next deploy or restart; put it on a "
                               f"mounted volume (RUNBOOK_BOT_DB=/mnt/volume/runbook-bot.sqlite) or set "
                               f"{OVERRIDE}=1 for a throwaway trial")
