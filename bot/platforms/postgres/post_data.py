"""Split a post-data archive into per-table batches, so a table's indexes build while others still copy.

    split = split_post_data(restore_tool, "/tmp/x/post-data.dump", source_ep, big_tables, folder)
    split.per_table["public.accounts"]   # a `pg_restore -L` list: accounts' primary key and indexes
    split.rest                           # everything else: foreign keys, triggers, partitioned parents'
                                         # indexes and their ATTACH items, materialized view data, ...
    split.early                          # foreign keys that may be built before the rest (see below)

pgcopydb's schedule with the stock tools: `pg_restore -L <list>` restores only the listed items, in the
list's order. A table's own primary key, unique/exclusion constraints and plain indexes depend on
nothing but the table, so they may run as soon as its data is in. Whatever links two objects (a foreign
key needs the referenced table's key, an INDEX ATTACH needs both indexes, a trigger may call anything)
waits for the final `pg_restore -j N` of the rest, when every per-table item exists.

Foreign keys whose referenced key is built in a per-table batch need not wait for the end either
(`copied` given): each becomes an `EarlyLink`, ready once its referencing table's rows are in and the
referenced table's batch is done. A plain table's foreign key is its archive item (taken out of `rest`); a
partitioned table's is one statement per leaf partition, the source's own name and definition of that
leaf's constraint, each ready as its partition lands, while the parent's item stays in `rest`: when it
runs, PostgreSQL attaches the leaves' identical constraints instead of creating and validating new ones
(the catalog ends as the source's, internal triggers included). Validating a foreign key is a scan of the
referencing table; at the end, the ones touching one big table queue behind each other on its lock, on
one core (1 s of 3 for the realistic source's partitioned events alone).

Items are matched by the OIDs the archive's table of contents carries (`3350; 2606 16404 CONSTRAINT ...`
is pg_constraint's row 16404 on the source), never by parsing names, so a name with spaces or quotes
cannot put an item in the wrong batch.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

import psycopg

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


# Tables with an expression index: ANALYZE gathers that index's statistics only once it exists.
_EXPRESSION_INDEXED = """
SELECT DISTINCT n.nspname || '.' || t.relname
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE i.indexprs IS NOT NULL
"""

# Validated foreign keys (top-level ones: a partition's share has a parent), with what they link.
_FOREIGN_KEYS = """
SELECT c.oid, t.relkind, n.nspname || '.' || t.relname, rn.nspname || '.' || r.relname, c.conindid
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class r ON r.oid = c.confrelid JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE c.contype = 'f' AND c.conparentid = 0 AND c.convalidated
"""

# A partitioned table's foreign key as the source's leaf partitions carry it, each as a statement
# (run with an empty search_path, so pg_get_constraintdef qualifies the referenced table).
_LEAF_KEYS = """
WITH RECURSIVE chain(oid) AS (
    SELECT oid FROM pg_constraint WHERE conparentid = %s
    UNION ALL SELECT c.oid FROM pg_constraint c JOIN chain ON c.conparentid = chain.oid)
SELECT n.nspname || '.' || t.relname,
       format('ALTER TABLE ONLY %%I.%%I ADD CONSTRAINT %%I %%s', n.nspname, t.relname, c.conname,
              pg_get_constraintdef(c.oid))
FROM chain JOIN pg_constraint c ON c.oid = chain.oid
JOIN pg_class t ON t.oid = c.conrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE t.relkind = 'r'
ORDER BY 1
"""


@dataclass(frozen=True)
class EarlyLink:
    """A foreign key to build in the pipeline, once every table of `needs` is settled (rows in, own keys
    built): either the archive's item (`line`, written to the list file `item`) or a statement (`sql`)."""
    name: str
    needs: frozenset[str]
    item: str = ""
    line: str = ""
    sql: str = ""


@dataclass
class PostDataSplit:
    per_table: dict[str, str] = field(default_factory=dict)   # schema.table -> list file path
    rest: str = ""                                            # list file of every other item
    items: dict[str, int] = field(default_factory=dict)       # schema.table -> items in its batch
    rest_items: int = 0
    early: list[EarlyLink] = field(default_factory=list)
    rest_lines: list[str] = field(default_factory=list)
    expression_indexed: set[str] = field(default_factory=set)

    def write_rest(self, with_links: list[EarlyLink]) -> None:
        """Rewrite `rest` with the items of early links that did not run (they are restored there)."""
        lines = self.rest_lines + [link.line for link in with_links if link.line]
        _write(self.rest, lines)
        self.rest_items = len(lines)


def _is_own_item(catalog: int, desc: str) -> bool:
    """A table's own item: INDEX (not INDEX ATTACH) in pg_class, CONSTRAINT (not FK CONSTRAINT)."""
    if catalog == PG_CLASS:
        return desc.startswith("INDEX ") and not desc.startswith("INDEX ATTACH ")
    return catalog == PG_CONSTRAINT and desc.startswith("CONSTRAINT ")


def split_post_data(restore: Tool, archive: str, source: Endpoint, tables: set[str], folder: str,
                    *, application_name: str = "runbook-bot-copy", copied: set[str] | None = None) -> PostDataSplit:
    """Write one list file per table of `tables` that has items of its own, and one for the rest; with
    `copied` (every table the copy loads), the foreign keys that can be built early too."""
    listing = subprocess.run([restore.path, "-l", archive], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("PG")}).stdout
    with connect(source, application_name=application_name) as conn:
        owner = {int(oid): table for oid, table in conn.execute(_OWN_ITEMS).fetchall() if table in tables}
        expression_indexed = {name for name, in conn.execute(_EXPRESSION_INDEXED).fetchall()}
        plain, partitioned = _early_keys(conn, owner, copied) if copied is not None else ({}, [])
    batches: dict[str, list[str]] = {}
    rest: list[str] = []
    split = PostDataSplit(early=partitioned, expression_indexed=expression_indexed)
    for line in listing.splitlines():
        m = _TOC.match(line)
        if not m:
            continue                                  # comments and blank lines of the listing
        catalog, oid, desc = int(m.group(2)), int(m.group(3)), m.group(4)
        if catalog == PG_CONSTRAINT and desc.startswith("FK CONSTRAINT ") and oid in plain:
            name, needs = plain[oid]
            path = os.path.join(folder, f"link-{len(split.early)}.list")
            _write(path, [line])
            split.early.append(EarlyLink(name, needs, item=path, line=line))
            continue
        table = owner.get(oid) if _is_own_item(catalog, desc) else None
        (batches.setdefault(table, []) if table else rest).append(line)
    split.rest_lines, split.rest_items = rest, len(rest)
    for number, (table, lines) in enumerate(sorted(batches.items())):
        path = os.path.join(folder, f"post-{number}.list")
        _write(path, lines)
        split.per_table[table] = path
        split.items[table] = len(lines)
    split.rest = os.path.join(folder, "post-rest.list")
    _write(split.rest, rest)
    return split


def _early_keys(conn: psycopg.Connection, owner: dict[int, str], copied: set[str]
                ) -> tuple[dict[int, tuple[str, frozenset[str]]], list[EarlyLink]]:
    """Foreign keys whose referenced key is built in its table's own batch (`owner`) and whose
    referencing rows are all copied: plain tables' by constraint OID, partitioned tables' per leaf."""
    if conn.info.server_version < 120000:
        return {}, []       # before 12 no conparentid, and a partitioned table cannot be referenced
    conn.execute("SELECT set_config('search_path', '', false)")
    plain: dict[int, tuple[str, frozenset[str]]] = {}
    leaves: list[EarlyLink] = []
    for oid, relkind, referencing, referenced, key_index in conn.execute(_FOREIGN_KEYS).fetchall():
        if owner.get(key_index) != referenced:
            continue                      # the key is built at the end (a small or partitioned table)
        if relkind == "r" and referencing in copied:
            plain[oid] = (f"foreign key of {referencing}", frozenset({referencing, referenced}))
        elif relkind == "p":
            rows = conn.execute(_LEAF_KEYS, (oid,)).fetchall()
            if rows and all(leaf in copied for leaf, _ in rows):
                leaves += [EarlyLink(f"foreign key of {leaf}", frozenset({leaf, referenced}), sql=statement)
                           for leaf, statement in rows]
    return plain, leaves


def _write(path: str, lines: list[str]) -> None:
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
