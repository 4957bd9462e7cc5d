"""What went wrong with the store file, in one line that names the file and what to do.

    >>> explain("state/runbook-bot.sqlite", sqlite3.OperationalError("database or disk is full"))
    StoreFault('state/runbook-bot.sqlite: the disk is full; free some space and try again (nothing was recorded)')

SQLite's own messages ("attempt to write a readonly database", "file is not a database") say
what failed but not which file or what a person should do; and a traceback in Slack or a terminal
is not an answer. Every store error passes through `explain` in the store's connection and
transaction layer (`bot.engine.store`), after the failed transaction was rolled back, so the
message can truthfully say nothing was recorded.

The file's identity (device and inode) is remembered when the store opens: a file deleted or
replaced under a running process is reported, not silently recreated empty (SQLite would keep
writing to the unlinked inode, and every later run would vanish with it).
"""

from __future__ import annotations

import os
import sqlite3


class StoreFault(Exception):
    """The store cannot be read or written; `str()` is the one line to show."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


_NOTHING = " (nothing was recorded)"

# (text in SQLite's message, what to tell a person)
_KNOWN = (
    ("disk is full", "the disk is full; free some space and try again" + _NOTHING),
    ("readonly", "the store is read-only (file permissions, `chattr +i` or a read-only mount); make the file "
                 "and its folder writable (`chmod u+w`, `chattr -i`) and try again" + _NOTHING),
    ("not a database", "this is not a SQLite store (its header is damaged or it is another file); restore it "
                       "from a backup, or move it aside to start an empty store"),
    ("malformed", "the store is damaged; restore it from a backup, or run `sqlite3 FILE .recover` into a new "
                  "file"),
    ("unable to open", "the store cannot be opened; check that its folder exists and is writable"),
    ("disk i/o error", "the disk reported an I/O error; check the disk and the file, then try again" + _NOTHING),
    ("locked", "another process has held the store's write lock for more than 30 s; find it "
               "(`fuser FILE`) and try again" + _NOTHING),
)


def explain(path: str, exc: BaseException) -> StoreFault:
    """The `StoreFault` for a sqlite3 error (or an OSError while checking the file)."""
    if isinstance(exc, StoreFault):
        return exc
    text = str(exc).lower()
    for needle, problem in _KNOWN:
        if needle in text:
            return StoreFault(path, problem)
    if isinstance(exc, PermissionError):
        return StoreFault(path, "permission denied; make the file and its folder writable and try again")
    return StoreFault(path, f"the store failed: {exc}; nothing was recorded")


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the store file, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def check_identity(path: str, expected: tuple[int, int] | None) -> None:
    """Raise `StoreFault` if the file at `path` is gone or is no longer the file the store opened."""
    if expected is None:
        return
    now = file_identity(path)
    if now is None:
        raise StoreFault(path, "the store file was deleted while the bot was running; restore it (or restart "
                               "the bot to start a new, empty store)" + _NOTHING)
    if now != expected:
        raise StoreFault(path, "the store file was replaced while the bot was running; restart the bot to open "
                               "the new file" + _NOTHING)


def check_writable(path: str) -> None:
    """Refuse a read-only or immutable file before SQLite maps its WAL index (which can crash)."""
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise explain(path, sqlite3.OperationalError("attempt to write a readonly database"))
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        raise StoreFault(path, "the store's folder is not writable (SQLite needs it for its journal); make it "
                               "writable and try again")
