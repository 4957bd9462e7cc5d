"""Shared test set-up: every test gets its own state folder and no real credentials.

Fixtures for the real parts live in `tests/fixtures/` (moto server, Prism, PostgreSQL, PgBouncer,
the fake Slack Web API, a DNS server) and are loaded here as plugins.
"""

from __future__ import annotations

import pytest

from bot import secrets

pytest_plugins = [
    "tests.fixtures.aws",
    "tests.fixtures.digitalocean",
    "tests.fixtures.watch",
    "tests.fixtures.postgres",
    "tests.fixtures.pg_logical",
    "tests.fixtures.do_fake",
    "tests.fixtures.dns_server",
    "tests.fixtures.slack",
    "tests.fixtures.store_backends",
]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test sees the developer's state, tokens or cloud credentials."""
    monkeypatch.setenv("RUNBOOK_BOT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("RUNBOOK_BOT_DB", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)  # it would select a PostgreSQL store
    monkeypatch.setenv("RUNBOOK_BOT_FINGERPRINT_KEY", "test-fingerprint-key")
    for name in ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DIGITALOCEAN_TOKEN",
                 "HEROKU_API_KEY", "FLY_API_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    secrets._reset_for_tests()
    yield
    secrets._reset_for_tests()
