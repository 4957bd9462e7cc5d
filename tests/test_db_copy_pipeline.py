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


# Foreign keys into a big table (its key is built in its own batch) are built in the pipeline: a plain
# table's as the archive's item, a partitioned table's per leaf partition (one of them, on the source, under
# a name of its own: it was attached; a quote, a psql variable and a backslash in it), the parent's item then
# attaching them. A key into a small table waits.
LINKED = """
CREATE TABLE public.accounts (id bigint PRIMARY KEY, name text);
CREATE TABLE public.transfers (id bigint PRIMARY KEY,
    account bigint NOT NULL REFERENCES public.accounts(id) ON DELETE CASCADE, amount int);
CREATE TABLE public.ledger (id bigint NOT NULL, at date NOT NULL, account bigint, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE public.ledger_2024 (id bigint NOT NULL, at date NOT NULL, account bigint,
    CONSTRAINT "ledger 2024's :own \\key;" FOREIGN KEY (account) REFERENCES public.accounts(id)
    DEFERRABLE INITIALLY DEFERRED);
ALTER TABLE public.ledger ATTACH PARTITION public.ledger_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.ledger_2025 PARTITION OF public.ledger FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
    PARTITION BY RANGE (at);
CREATE TABLE public.ledger_2025_h1 PARTITION OF public.ledger_2025 FOR VALUES FROM ('2025-01-01') TO ('2025-07-01');
CREATE TABLE public.ledger_2025_h2 PARTITION OF public.ledger_2025 FOR VALUES FROM ('2025-07-01') TO ('2026-01-01');
ALTER TABLE public.ledger ADD CONSTRAINT ledger_account_fkey FOREIGN KEY (account) REFERENCES public.accounts(id)
    DEFERRABLE INITIALLY DEFERRED;
CREATE TABLE public.kinds (code text PRIMARY KEY);
CREATE TABLE public.notes (id bigint PRIMARY KEY, kind text REFERENCES public.kinds(code), body text);
CREATE INDEX notes_upper_body ON public.notes (upper(body));
INSERT INTO public.accounts SELECT g, 'account ' || g FROM generate_series(1, 30000) g;
INSERT INTO public.transfers SELECT g, 1 + g % 30000, g % 1000 FROM generate_series(1, 5000) g;
INSERT INTO public.ledger SELECT g, date '2024-03-01' + (g % 600), 1 + g % 30000 FROM generate_series(1, 6000) g;
INSERT INTO public.kinds VALUES ('memo'), ('todo');
INSERT INTO public.notes SELECT g, CASE WHEN g % 2 = 0 THEN 'memo' ELSE 'todo' END, 'note ' || (g % 50)
    FROM generate_series(1, 2000) g;
ANALYZE;
"""
# accounts (1.6 MB) gets its own batch; every other table is smaller than this
BIG = 1_000_000

_FOREIGN_KEYS = """SELECT conname, conrelid::regclass::text, conparentid <> 0, convalidated, pg_get_constraintdef(oid)
                   FROM pg_constraint WHERE contype = 'f' ORDER BY 1, 2"""
_INTERNAL_TRIGGERS = """SELECT tgrelid::regclass::text, tgfoid::regproc::text, tgparentid <> 0, count(*)
                        FROM pg_trigger WHERE tgisinternal GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""


def test_foreign_keys_into_a_big_table_are_built_in_the_pipeline_and_end_as_the_sources(pg, tmp_path):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, LINKED)
    request = _request(pg, src, tgt, early_index_bytes=BIG)
    outcome = pgcopy.run(request, progress=lambda f, m: None, check_cancelled=lambda: None)

    # transfers' key (the archive's item) and the three leaves of ledger's; notes' waits for kinds' key
    assert outcome.early_links == 4
    mismatches = schema_compare.compare(schema_compare.catalog(pg.endpoint(src)),
                                        schema_compare.catalog(pg.endpoint(tgt)), acls=False)
    assert mismatches == []
    # Names, parents, validation and the internal triggers: attached, not created a second time.
    assert pg.sql(tgt, _FOREIGN_KEYS) == pg.sql(src, _FOREIGN_KEYS)
    assert ("ledger 2024's :own \\key;", "ledger_2024", True, True,
            "FOREIGN KEY (account) REFERENCES accounts(id) DEFERRABLE INITIALLY DEFERRED") in pg.sql(tgt, _FOREIGN_KEYS)
    assert pg.sql(tgt, _INTERNAL_TRIGGERS) == pg.sql(src, _INTERNAL_TRIGGERS)
    # notes was analysed after its expression index existed, so that index has statistics too
    assert pg.sql(tgt, "SELECT count(*) FROM pg_stats WHERE tablename = 'notes_upper_body'") == [(1,)]

    import subprocess
    archive = tmp_path / "post.dump"
    dump, restore = tools.find_pair(15)
    subprocess.run([dump.path, "-Fc", "--section=post-data", "-h", "127.0.0.1", "-U", "postgres", "-f", str(archive),
                    src], check=True)
    split = post_data.split_post_data(restore, str(archive), pg.endpoint(src), {"public.accounts"}, str(tmp_path),
                                      copied={t.qualified for t in request.tables})
    rest = Path(split.rest).read_text()
    assert "transfers_account_fkey" not in rest
    assert "FK CONSTRAINT public ledger ledger_account_fkey" in rest      # it attaches the leaves' keys
    assert "FK CONSTRAINT public notes notes_kind_fkey" in rest
    assert {(link.name, link.needs) for link in split.early} == {
        ("foreign key of public.transfers", frozenset({"public.transfers", "public.accounts"})),
        ("foreign key of public.ledger_2024", frozenset({"public.ledger_2024", "public.accounts"})),
        ("foreign key of public.ledger_2025_h1", frozenset({"public.ledger_2025_h1", "public.accounts"})),
        ("foreign key of public.ledger_2025_h2", frozenset({"public.ledger_2025_h2", "public.accounts"}))}


@pytest.mark.parametrize("table, row", [("transfers", "(900001, 999999, 1)"),
                                        ("ledger_2025_h2", "(900001, '2025-09-01', 999999)")])
def test_an_early_foreign_key_the_rows_break_names_it_and_stops_everything(pg, table, row):
    src, tgt = pg.create(), pg.create()
    pg.sql(src, LINKED)
    # A row the source's key never checked (a load with the triggers off): the target's validation refuses.
    pg.sql(src, f"SET session_replication_role = replica; INSERT INTO public.{table} VALUES {row}")
    request = _request(pg, src, tgt, early_index_bytes=BIG)
    with pytest.raises(pgcopy.CopyFailed) as failure:
        pgcopy.run(request, progress=lambda f, m: None, check_cancelled=lambda: None)
    message = str(failure.value)
    assert f"foreign key of public.{table} (" in message
    assert "violates foreign key constraint" in message
    assert "999999" not in message                          # the row's values stay out of the message
    assert _our_children() == []
    assert _tag_backends(pg, tgt, request.tag) == 0
