"""The store's SQL, written once in SQLite's dialect, run on PostgreSQL.

    >>> translate("SELECT * FROM runs WHERE id = ? AND runbook LIKE '100%'")
    "SELECT * FROM runs WHERE id = %s AND runbook LIKE '100%%'"
    >>> translate("INSERT OR IGNORE INTO locks(key, run_id) VALUES (?, ?)")
    'INSERT INTO locks(key, run_id) VALUES (%s, %s) ON CONFLICT DO NOTHING'
    >>> translate("INSERT OR REPLACE INTO leases(key, owner) VALUES (?, ?)", lambda table: ("key",))
    'INSERT INTO leases(key, owner) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET owner = EXCLUDED.owner'

Why a translation and not two copies of every statement: the engine, the watch, the Slack outbox
and the reminders each own a few statements, and two copies would drift. The differences that
matter are few and mechanical: `?` placeholders, `INSERT OR IGNORE / OR REPLACE` (upserts need
the table's primary key, looked up once from the catalog), and `rowid` (the steps table has an
identity column `seq` for the same insertion order). Anything else is written portably.

Rows come back as `Row`: indexable by position and by column name, like `sqlite3.Row`, so the
callers' `row["state"]`, `row[0]` and `dict(row)` work unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(IGNORE|REPLACE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_ROWID = re.compile(r"\browid\b", re.IGNORECASE)


def _placeholders(sql: str) -> str:
    """`?` -> `%s` and a literal `%` -> `%%`, outside quoted strings and identifiers only."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


def translate(sql: str, primary_key: Callable[[str], Sequence[str]] | None = None) -> str:
    """The PostgreSQL statement for one statement of the store's SQLite dialect."""
    text = _ROWID.sub("seq", _placeholders(sql))
    match = _INSERT_OR.match(text)
    if not match:
        return text
    how, table, columns = match.group(1).upper(), match.group(2), match.group(3)
    text = "INSERT INTO " + text[match.start(2):]
    if how == "IGNORE":
        return text + " ON CONFLICT DO NOTHING"
    if primary_key is None:
        raise ValueError(f"INSERT OR REPLACE INTO {table} needs the table's primary key")
    keys = list(primary_key(table))
    names = [c.strip() for c in columns.split(",")]
    updates = [c for c in names if c.strip('"') not in keys]
    conflict = ", ".join(f'"{k}"' if k == "user" else k for k in keys)
    if not updates:
        return text + f" ON CONFLICT ({conflict}) DO NOTHING"
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
    return text + f" ON CONFLICT ({conflict}) DO UPDATE SET {sets}"


class Row(tuple):
    """One result row: `row[0]`, `row["state"]`, `row.keys()`, `dict(row)` (like `sqlite3.Row`)."""

    _names: tuple[str, ...] = ()

    def __new__(cls, values: Sequence[Any], names: tuple[str, ...]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, item: Any) -> Any:  # type: ignore[override]
        if isinstance(item, str):
            try:
                return tuple.__getitem__(self, self._names.index(item))
            except ValueError:
                raise IndexError(f"no such column: {item}") from None
        return tuple.__getitem__(self, item)

    def keys(self) -> list[str]:
        return list(self._names)


class Result:
    """A finished statement: its rows fetched eagerly (the connection goes back to the pool at once)."""

    def __init__(self, rows: list[Row], rowcount: int) -> None:
        self._rows = rows
        self._next = 0
        self.rowcount = rowcount

    def fetchone(self) -> Row | None:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Row]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Row]:
        return iter(self.fetchall())


def run(cursor: Any, sql: str, params: Sequence[Any] | None, translated: Callable[[str], str]) -> Result:
    """Execute one store statement on a psycopg cursor and fetch what it returned.

    `translated` maps a statement to its PostgreSQL text (`translate` bound to a store's keys, cached:
    the store runs a few dozen distinct statements millions of times)."""
    cursor.execute(translated(sql), tuple(params) if params is not None else None)
    if cursor.description is None:
        return Result([], cursor.rowcount)
    names = tuple(col.name for col in cursor.description)
    return Result([Row(values, names) for values in cursor.fetchall()], cursor.rowcount)
