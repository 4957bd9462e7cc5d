"""Find `pg_dump`/`pg_restore` (and `pgcopydb`) new enough for the source server.

    dump, restore = find_pair(min_major=15)          # raises ToolMissing saying what to install
    dump.path, dump.major                            # '/usr/lib/postgresql/15/bin/pg_dump', 15

Where we look: `PG_BIN_DIR` when it is set, *and only there*: an operator who configured a folder
meant it, so a too-old tool there is reported instead of silently replaced by another one. Otherwise
`/usr/lib/postgresql/<N>/bin` (Debian/Ubuntu keep every installed major there, newest first), then
`PATH`. `pg_dump` must be at least the source server's major version (an older one refuses newer
servers: InvenTree#10936); `pg_restore` must be the same major as the `pg_dump` that wrote the archive.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bot import config

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class ToolMissing(Exception):
    """No usable tool; the message says exactly what to install or configure."""


@dataclass(frozen=True)
class Tool:
    name: str
    path: str
    version: str
    major: int


def install_hint(major: int) -> str:
    return (f"install the PostgreSQL {major} client tools: on Debian/Ubuntu `apt-get install postgresql-client-{major}` "
            f"(from apt.postgresql.org (PGDG) when your release does not ship {major}; bookworm ships only 15), "
            f"on macOS `brew install postgresql@{major}`; or set PG_BIN_DIR to a folder holding pg_dump and "
            f"pg_restore {major} or newer")


def tool_version(path: str) -> tuple[str, int] | None:
    """(full version, major) from `<tool> --version`, or None when it does not run or say."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return None
    match = _VERSION.search(out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return (f"{match.group(1)}.{match.group(2)}" if match.group(2) else match.group(1)), major


def candidate_dirs() -> list[Path]:
    explicit = config.get("PG_BIN_DIR")
    if explicit:
        return [Path(explicit)]
    dirs: list[Path] = []
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        dirs.extend(p / "bin" for p in majors)
    dirs.extend(Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p)
    return dirs


def find_tool(name: str, min_major: int) -> Tool:
    """The newest `name` of at least `min_major` in the candidate folders."""
    seen: list[Tool] = []
    for folder in candidate_dirs():
        path = folder / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        version = tool_version(str(path))
        if version is None:
            continue
        seen.append(Tool(name, str(path), version[0], version[1]))
    good = [t for t in seen if t.major >= min_major]
    if good:
        return max(good, key=lambda t: t.major)
    where = f"PG_BIN_DIR={config.get('PG_BIN_DIR')}" if config.get("PG_BIN_DIR") else "PATH and /usr/lib/postgresql"
    if seen:
        found = ", ".join(f"{t.path} ({t.version})" for t in seen)
        raise ToolMissing(f"{name} {min_major} or newer is needed for a PostgreSQL {min_major} source; "
                          f"found only {found} in {where}: {install_hint(min_major)}")
    raise ToolMissing(f"{name} not found in {where}: {install_hint(min_major)}")


def find_pair(min_major: int) -> tuple[Tool, Tool]:
    """pg_dump and pg_restore of the same major, at least `min_major`."""
    dump = find_tool("pg_dump", min_major)
    restore_path = Path(dump.path).with_name("pg_restore")
    version = tool_version(str(restore_path)) if restore_path.is_file() else None
    if version is not None and version[1] == dump.major:
        return dump, Tool("pg_restore", str(restore_path), version[0], version[1])
    restore = find_tool("pg_restore", dump.major)
    if restore.major != dump.major:
        raise ToolMissing(f"pg_restore {dump.major} is needed to read archives from {dump.path} ({dump.version}); "
                          f"found {restore.path} ({restore.version}): {install_hint(dump.major)}")
    return dump, restore


def find_pgcopydb() -> Tool | None:
    """pgcopydb when installed (PATH or PG_BIN_DIR), else None; its own version, not PostgreSQL's."""
    folder = config.get("PG_BIN_DIR")
    path = shutil.which("pgcopydb", path=folder) if folder else None
    path = path or shutil.which("pgcopydb")
    if not path:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20, check=False)
    except OSError:
        return None
    match = re.search(r"pgcopydb version (\S+)", out.stdout + out.stderr)
    return Tool("pgcopydb", path, match.group(1) if match else "unknown", 0)


def find_psql(near: Tool) -> Tool | None:
    """psql beside the chosen pg_dump (any version streams COPY fine), else on PATH; None when absent."""
    beside = Path(near.path).with_name("psql")
    path = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("psql")
    if not path:
        return None
    version = tool_version(path)
    return Tool("psql", path, version[0], version[1]) if version else None
