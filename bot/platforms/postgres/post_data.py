"""Split a post-data archive into per-table batches, so a table's indexes build while others still copy.

    split = split_post_data(restore_tool, "/tmp/x/post-data.dump", source_ep, big_tables, folder)
    split.per_table["public.accounts"]   # a `pg_restore -L` list: accounts' primary key and indexes
    split.rest                           # everything else: foreign keys, triggers, partitioned parents'
                                         # indexes and their ATTACH items, materialized view data, ...

pgcopydb's schedule with the stock tools: `pg_restore -L <list>` restores only the listed items, in the
list's order. A table's own primary key, unique/exclusion constraints and plain indexes depend on
nothing but the table, so they may run as soon as its data is in. Whatever links two objects (a foreign
key needs the referenced table's key, an INDEX ATTACH needs both indexes, a trigger may call anything)
waits for the final `pg_restore -j N` of the rest, when every per-table item exists.

Items are matched by the OIDs the archive's table of contents carries (`3350; 2606 16404 CONSTRAINT ...`
is pg_constraint's row 16404 on the source), never by parsing names, so a name with spaces or quotes
cannot put an item in the wrong batch.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

from bot.platforms.postgres.connect import Endpoint, connect
from bot.platforms.postgres.tools import Tool

_TOC = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
PG_CLASS, PG_CONSTRAINT = 1259, 2606

# Indexes and key constraints of plain tables (relkind 'r'), by object OID -> schema.table.
_OWN_ITEMS = """
SELECT i.indexrelid, n.nspname || '.' || t.relname
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.relkind = 'r'
UNION ALL
SELECT c.oid, n.nspname || '.' || t.relname
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.relkind = 'r' AND c.contype IN ('p', 'u', 'x', 'c')
"""


@dataclass
class PostDataSplit:
    per_table: dict[str, str] = field(default_factory=dict)   # schema.table -> list file path
    rest: str = ""                                            # list file of every other item
    items: dict[str, int] = field(default_factory=dict)       # schema.table -> items in its batch
    rest_items: int = 0


def _is_own_item(catalog: int, desc: str) -> bool:
    """A table's own item: INDEX (not INDEX ATTACH) in pg_class, CONSTRAINT (not FK CONSTRAINT)."""
    if catalog == PG_CLASS:
        return desc.startswith("INDEX ") and not desc.startswith("INDEX ATTACH ")
    return catalog == PG_CONSTRAINT and desc.startswith("CONSTRAINT ")


def split_post_data(restore: Tool, archive: str, source: Endpoint, tables: set[str], folder: str,
                    *, application_name: str = "runbook-bot-copy") -> PostDataSplit:
    """Write one list file per table of `tables` that has items of its own, and one for the rest."""
    listing = subprocess.run([restore.path, "-l", archive], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("PG")}).stdout
    with connect(source, application_name=application_name) as conn:
        owner = {int(oid): table for oid, table in conn.execute(_OWN_ITEMS).fetchall() if table in tables}
    batches: dict[str, list[str]] = {}
    rest: list[str] = []
    for line in listing.splitlines():
        m = _TOC.match(line)
        if not m:
            continue                                  # comments and blank lines of the listing
        catalog, oid, desc = int(m.group(2)), int(m.group(3)), m.group(4)
        table = owner.get(oid) if _is_own_item(catalog, desc) else None
        (batches.setdefault(table, []) if table else rest).append(line)
    split = PostDataSplit(rest_items=len(rest))
    for number, (table, lines) in enumerate(sorted(batches.items())):
        path = os.path.join(folder, f"post-{number}.list")
        _write(path, lines)
        split.per_table[table] = path
        split.items[table] = len(lines)
    split.rest = os.path.join(folder, "post-rest.list")
    _write(split.rest, rest)
    return split


def _write(path: str, lines: list[str]) -> None:
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
