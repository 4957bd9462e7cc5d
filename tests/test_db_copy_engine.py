"""A db.copy that fails half-way inside a real run: the run's rollback includes it and empties the target."""

from __future__ import annotations

import textwrap
import uuid

from bot.engine.runner import Runner
from bot.engine.store import Store
from tests.fixtures.postgres import build_rich_schema


def test_a_failed_copy_is_rolled_back_by_the_run_and_the_target_is_empty_again(tmp_path, pg, monkeypatch):
    src, tgt = pg.create(), pg.create()
    build_rich_schema(pg, src)
    role = f"rbt_gone_{uuid.uuid4().hex[:6]}"
    pg.sql("postgres", f"CREATE ROLE {role}")
    monkeypatch.setenv("SRC_URL", pg.url(src))
    monkeypatch.setenv("TGT_URL", pg.url(tgt))
    path = tmp_path / "copy.yaml"
    path.write_text(textwrap.dedent(f"""
        name: copy-then-fail
        approvals:
          default: {{approvers: ["alice", "bob"], min: 1}}
        steps:
          - id: copy-db
            kind: db.copy
            with: {{source: "env:SRC_URL", target: "env:TGT_URL",
                    grants: ["GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"]}}
            on_failure: rollback
    """))
    runner = Runner(Store(tmp_path / "store.sqlite"))
    run = runner.start(path, {}, started_by="dave", front_end="console")
    pg.sql("postgres", f"DROP ROLE {role}")          # the grants fail after the data went over: a half-state
    runner.approve(run.id, "copy-db", user="alice", front_end="console")
    view = runner.view(run.id)
    assert view.state == "rolling_back", [(s.key, s.state, s.error) for s in view.steps]
    assert [s.key for s in view.steps if s.phase == "rollback"] == ["undo:copy-db"]
    assert pg.sql(tgt, "SELECT count(*) FROM pg_tables WHERE tablename = '_runbook_bot_copy_incomplete'") == [(1,)]
    assert runner.approve(run.id, "undo:copy-db", user="bob", front_end="console").ok
    view = runner.view(run.id)
    assert view.state == "rolled_back", [(s.key, s.state, s.error) for s in view.steps]
    assert pg.sql(tgt, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')") == [(0,)]
