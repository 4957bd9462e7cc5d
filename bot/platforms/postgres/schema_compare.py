"""Compare two databases' schemas object by object, naming each difference.

    src, tgt = catalog(source_ep), catalog(target_ep)
    for m in compare(src, tgt, acls=False):          # acls=False: the copy ran --no-owner --no-acl
        print(m.describe())                          # 'index public.orders_day_idx: missing (source ..., target absent)'
    acl_losses(src)                                  # ['table public.orders: owner app, ACL app=arwdDxt/app', ...]

What is compared, by definition text from PostgreSQL's own deparsers (so "the same" means the server
would recreate the same object): every index (`pg_get_indexdef`), constraint (`pg_get_constraintdef`,
CHECK, FOREIGN KEY, UNIQUE, EXCLUDE, PRIMARY KEY), user trigger (`pg_get_triggerdef`), view and
materialized view (`pg_get_viewdef`, plus whether the materialized view is populated), column
default (`pg_get_expr` of `pg_attrdef`: a default dropped with an extension shows here), function
(`pg_get_functiondef`) and, when the copy carries them, each relation's and schema's owner and ACL.
Objects an extension owns are left out: the extension's presence and version are compared elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.platforms.postgres.connect import Endpoint, connect
from bot.platforms.postgres.verify import Mismatch

_USER = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'"
_NOT_EXT = "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"
IGNORED_TABLES = ("_runbook_bot_copy_incomplete", "_runbook_bot_cutover")

QUERIES: dict[str, str] = {
    "index": f"""
        SELECT n.nspname || '.' || c.relname, pg_get_indexdef(c.oid) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index i ON i.indexrelid = c.oid
        JOIN pg_class t ON t.oid = i.indrelid
        WHERE c.relkind IN ('i', 'I') AND {_USER} AND {_NOT_EXT.format(oid='t.oid')}""",
    "constraint": f"""
        SELECT n.nspname || '.' || coalesce(t.relname, '') || '.' || co.conname, pg_get_constraintdef(co.oid)
        FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace LEFT JOIN pg_class t ON t.oid = co.conrelid
        WHERE {_USER} AND {_NOT_EXT.format(oid='co.oid')} AND {_NOT_EXT.format(oid='coalesce(t.oid, 0)')}""",
    "trigger": f"""
        SELECT n.nspname || '.' || c.relname || '.' || tg.tgname, pg_get_triggerdef(tg.oid) FROM pg_trigger tg
        JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT tg.tgisinternal AND {_USER}""",
    "view": f"""
        SELECT n.nspname || '.' || c.relname, pg_get_viewdef(c.oid) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'v' AND {_USER}
          AND {_NOT_EXT.format(oid='c.oid')}""",
    "materialized view": f"""
        SELECT n.nspname || '.' || c.relname,
               pg_get_viewdef(c.oid) || CASE WHEN c.relispopulated THEN '' ELSE ' [not populated]' END
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'm' AND {_USER}""",
    "column default": f"""
        SELECT n.nspname || '.' || c.relname || '.' || a.attname, pg_get_expr(ad.adbin, ad.adrelid)
        FROM pg_attrdef ad JOIN pg_class c ON c.oid = ad.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
        WHERE {_USER} AND {_NOT_EXT.format(oid='c.oid')}""",
    "function": f"""
        SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               md5(CASE WHEN p.prokind IN ('f', 'p') THEN pg_get_functiondef(p.oid) ELSE p.prokind::text END)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE {_USER} AND {_NOT_EXT.format(oid='p.oid')}""",
}

ACL_QUERIES: dict[str, str] = {
    "owner": f"""
        SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view ' WHEN 'm' THEN 'materialized view '
               ELSE 'table ' END || n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {_USER} AND {_NOT_EXT.format(oid='c.oid')}""",
    "acl": f"""
        SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'table ' END || n.nspname || '.' || c.relname,
               array_to_string(ARRAY(SELECT unnest(c.relacl)::text ORDER BY 1), ',')
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relacl IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND {_USER}
          AND {_NOT_EXT.format(oid='c.oid')}
        UNION ALL
        SELECT 'schema ' || n.nspname, array_to_string(ARRAY(SELECT unnest(n.nspacl)::text ORDER BY 1), ',')
        FROM pg_namespace n WHERE n.nspacl IS NOT NULL AND {_USER} AND n.nspname <> 'public'""",
}


@dataclass
class Catalog:
    objects: dict[str, dict[str, str]]        # kind -> name -> definition

    def to_dict(self) -> dict[str, Any]:
        return {"objects": self.objects}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalog:
        return cls(objects=data["objects"])


def catalog(ep: Endpoint, *, acls: bool = True) -> Catalog:
    """Read every compared object's definition (read-only)."""
    queries = {**QUERIES, **(ACL_QUERIES if acls else {})}
    with connect(ep, application_name="runbook-bot-verify") as conn:
        objects = {}
        for kind, query in queries.items():
            objects[kind] = {name: definition or "" for name, definition in conn.execute(query).fetchall()
                             if not any(t in name for t in IGNORED_TABLES)}
    return Catalog(objects)


def compare(src: Catalog, tgt: Catalog, *, acls: bool) -> list[Mismatch]:
    """Each object missing on the target, extra there, or defined differently."""
    bad: list[Mismatch] = []
    kinds = list(QUERIES) + (list(ACL_QUERIES) if acls else [])
    for kind in kinds:
        source, target = src.objects.get(kind, {}), tgt.objects.get(kind, {})
        for name in sorted(set(source) | set(target)):
            if name not in target:
                bad.append(Mismatch(kind, name, "missing", _short(source[name]), "absent"))
            elif name not in source:
                bad.append(Mismatch(kind, name, "extra", "absent", _short(target[name])))
            elif source[name] != target[name]:
                bad.append(Mismatch(kind, name, "definition", _short(source[name]), _short(target[name])))
    return bad


def acl_losses(src: Catalog) -> list[str]:
    """What `--no-owner --no-acl` drops: every non-default ACL and every owner other than the copying role."""
    return [f"{name}: {acl}" for name, acl in sorted(src.objects.get("acl", {}).items())]


def _grants(acl: str) -> set[tuple[str, str]]:
    """(grantee, privileges) of an ACL's items, leaving out the grantor (on the target, whoever ran the
    GRANTs) and an owner's own item (`app=arwdDxt/app`: the target's owner is the copying role)."""
    items = set()
    for item in filter(None, acl.split(",")):
        grant, _, grantor = item.partition("/")
        grantee, _, privileges = grant.rpartition("=")
        if grantee != grantor:
            items.add((grantee or "PUBLIC", privileges))
    return items


def acl_not_carried(src: Catalog, tgt: Catalog) -> list[str]:
    """Each source ACL item (grantee and privileges) the target's same object lacks, after `grants:`.

        acl_not_carried(catalog(src), catalog(tgt))   # ['table public.t: reporting=r', ...]
    """
    source, target = src.objects.get("acl", {}), tgt.objects.get("acl", {})
    missing = []
    for name, acl in sorted(source.items()):
        lacking = _grants(acl) - _grants(target.get(name, ""))
        missing += [f"{name}: {grantee}={privileges}" for grantee, privileges in sorted(lacking)]
    return missing


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
