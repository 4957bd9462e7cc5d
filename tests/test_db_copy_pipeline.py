"""The relay strategy's per-table pipeline on a real PostgreSQL: a table's own keys and indexes are built
as soon as its rows are in, the linking items (foreign keys, partition ATTACHes, triggers, materialized
view data) afterwards; what it produces is the same database, and a failure or a cancel in the middle
stops everything it started.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.platforms.postgres import copy as pgcopy
from bot.platforms.postgres import post_data, preflight, schema_compare, tools, verify

SCHEMA = """
CREATE TABLE public.customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, score int CHECK (score >= 0));
CREATE TABLE public.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer bigint NOT NULL REFERENCES public.customers(id), note text, total numeric(12,2));
CREATE INDEX orders_lower_note ON public.orders (lower(note));
CREATE TABLE public.events (id bigint NOT NULL, at date NOT NULL, body jsonb, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE INDEX events_body ON public.events USING gin (body);
CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := NEW.note; RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON public.orders FOR EACH ROW EXECUTE FUNCTION public.touch();
CREATE MATERIALIZED VIEW public.spend AS SELECT customer, sum(total) AS total FROM public.orders GROUP BY customer;
CREATE UNIQUE INDEX spend_customer ON public.spend (customer);
INSERT INTO public.customers SELECT g, 'c' || g || '@example.com', g % 100 FROM generate_series(1, 3000) g;
INSERT INTO public.orders (customer, note, total) SELECT 1 + g % 3000, 'Note ' || g, g / 7.0
    FROM generate_series(1, 20000) g;
INSERT INTO public.events SELECT g, date '2024-06-01' + (g % 400), jsonb_build_object('n', g)
    FROM generate_series(1, 8000) g;
REFRESH MATERIALIZED VIEW public.spend;
ANALYZE;
"""


def _request(pg, src: str, tgt: str, **extra) -> pgcopy.CopyRequest:
    dump, restore = tools.find_pair(15)
    facts = preflight.facts(pg.endpoint(src))
    args = dict(source=pg.endpoint(src), target=pg.endpoint(tgt), strategy="relay", jobs=2, tables=facts.tables,
                workdir="/tmp", dump=dump, restore=restore, psql=tools.find_psql(dump), early_index_bytes=0)
    args.update(extra)
    return pgcopy.CopyRequest(**args)


def _tag_backends(pg, dbname: str, tag: str) -> int:
    return pg.sql(dbname, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (tag,))[0][0]


def _our_children() -> list[str]:
    names = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid():
                names.append((proc / "comm").read_text().strip())
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
    return [n for n in names if n in ("pg_dump", "pg_restore", "psql")]


def test_split_gives_each_table_its_own_keys_and_leaves_links_for_the_end(pg, tmp_path):
    src = pg.create()
    pg.sql(src, SCHEMA)
    archive = tmp_path / "post.dump"
    dump, restore = tools.find_pair(15)
    import subprocess
    subprocess.run([dump.path, "-Fc", "--section=post-data", "-h", "127.0.0.1", "-U", "postgres", "-f", str(archive),
                    src], check=True)
    tables = {"public.customers", "public.orders", "public.events_2024", "public.events_2025"}
    split = post_data.split_post_data(restore, str(archive), pg.endpoint(src), tables, str(tmp_path))

    def items(path: str) -> str:
        return Path(path).read_text()

    assert set(split.per_table) == tables
    assert "customers_pkey" in items(split.per_table["public.customers"])
    assert "customers_email_key" in items(split.per_table["public.customers"])
    assert "orders_lower_note" in items(split.per_table["public.orders"])
    assert "events_2024_pkey" in items(split.per_table["public.events_2024"])
    rest = items(split.rest)
    # What links objects waits: the foreign key, the partitioned parent's key and index with their
    # ATTACHes, the trigger, the materialized view's data and index.
    for needle in ("FK CONSTRAINT public orders orders_customer_fkey", "CONSTRAINT public events events_pkey",
                   "INDEX ATTACH", "TRIGGER public orders orders_touch", "MATERIALIZED VIEW DATA public spend",
                   "INDEX public spend_customer", "INDEX public events_body"):
        assert needle in rest, needle
    assert "orders_customer_fkey" not in items(split.per_table["public.orders"])


def test_pipelined_relay_gives_the_same_database_analysed(pg):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, SCHEMA)
    loaded: list[str] = []
    request = _request(pg, src, tgt, on_table_loaded=loaded.append)
    outcome = pgcopy.run(request, progress=lambda f, m: None, check_cancelled=lambda: None)

    assert outcome.analysed
    assert sorted(loaded) == sorted(t.qualified for t in request.tables)
    mismatches = schema_compare.compare(schema_compare.catalog(pg.endpoint(src)),
                                        schema_compare.catalog(pg.endpoint(tgt)), acls=False)
    assert mismatches == []
    src_m, tgt_m = verify.measure_both(pg.endpoint(src), pg.endpoint(tgt))
    assert src_m.tables == tgt_m.tables  # (sequences are the step's to set, after the copy)
    # Every table and the materialized view has statistics: the first queries do not plan blind.
    unanalysed = pg.sql(tgt, "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL "
                             "AND relname NOT IN ('events') ORDER BY 1")
    assert unanalysed == []
    assert pg.sql(tgt, "SELECT count(*) > 0 FROM pg_stats WHERE tablename = 'spend'") == [(True,)]


def test_a_failing_index_build_in_the_pipeline_names_the_table_and_stops_everything(pg):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, SCHEMA)
    # An expression index whose function refuses to run outside the source database: the target's
    # CREATE INDEX fails in the table's own post-data batch while other tables may still copy.
    pg.sql(src, f"""CREATE FUNCTION public.only_here(bigint) RETURNS bigint IMMUTABLE LANGUAGE plpgsql AS $$
                    BEGIN IF current_database() <> '{src}' THEN RAISE EXCEPTION 'only_here: wrong database';
                    END IF; RETURN $1; END $$;
                    CREATE INDEX customers_only_here ON public.customers (public.only_here(id));""")
    request = _request(pg, src, tgt)
    with pytest.raises(pgcopy.CopyFailed) as failure:
        pgcopy.run(request, progress=lambda f, m: None, check_cancelled=lambda: None)
    message = str(failure.value)
    assert "post-data public.customers" in message
    assert "only_here: wrong database" in message
    assert _our_children() == []
    assert _tag_backends(pg, tgt, request.tag) == 0


def test_a_cancel_while_tables_build_stops_children_analyses_and_backends(pg):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, SCHEMA)
    loaded: list[str] = []

    class Stop(Exception):
        pass

    def check_cancelled() -> None:
        if loaded:
            raise Stop()

    request = _request(pg, src, tgt, on_table_loaded=loaded.append)
    with pytest.raises(Stop):
        pgcopy.run(request, progress=lambda f, m: None, check_cancelled=check_cancelled)
    assert loaded  # it stopped inside the pipeline, after a table was in
    assert _our_children() == []
    assert _tag_backends(pg, tgt, request.tag) == 0
    assert not [p for p in Path("/tmp").glob("runbook-bot-relay-*") if (p / "owner.pid").exists()
                and (p / "owner.pid").read_text() == str(os.getpid())]


def test_changed_since_finds_a_write_that_keeps_the_row_count(pg):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, SCHEMA)
    request = _request(pg, src, tgt)
    pgcopy.run(request, progress=lambda f, m: None, check_cancelled=lambda: None)
    import psycopg
    with psycopg.connect(pg.url(tgt), autocommit=True) as conn:
        stamped = {name: verify.stamped_checksum(conn, name, "typed")
                   for name in ("public.customers", "public.orders")}
    assert verify.changed_since(pg.endpoint(tgt), stamped) == []
    # A row rewritten to the same value: the count is the same, its new version's transaction tells.
    pg.sql(tgt, "UPDATE public.customers SET score = score WHERE id = 7")
    assert verify.changed_since(pg.endpoint(tgt), stamped) == ["public.customers"]
