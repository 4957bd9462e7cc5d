"""Secret values: masked in every string that leaves the process, never in the store, compared by HMAC."""

from __future__ import annotations

import logging
import sqlite3
import textwrap

import pytest

from bot import secrets
from bot.cli import _install_log_redaction
from bot.engine.runner import Runner, StartRefused
from bot.engine.store import Store

CANARY = "canary-5f1d2e9b-never-show-me"


def test_redact_masks_registered_values_and_url_passwords():
    secrets.register(CANARY, "abc")  # too short to mask safely: ignored
    assert secrets.redact(f"token={CANARY}!") == f"token={secrets.MASK}!"
    assert secrets.redact("postgres://app:hunter2@db:5432/x") == f"postgres://app:{secrets.MASK}@db:5432/x"
    assert secrets.redact("abc") == "abc"
    assert secrets.redact_obj({"a": [CANARY, {"b": CANARY}]}) == {"a": [secrets.MASK, {"b": secrets.MASK}]}


def test_fingerprints_show_equality_and_depend_on_the_install_key(monkeypatch):
    a, b = secrets.fingerprint("4"), secrets.fingerprint("4")
    assert a == b and a != secrets.fingerprint("5") and len(a) == 12
    monkeypatch.setenv("RUNBOOK_BOT_FINGERPRINT_KEY", "another-install")
    secrets._reset_for_tests()
    assert secrets.fingerprint("4") != a


def test_the_fingerprint_key_lives_beside_the_store_not_in_it(monkeypatch, tmp_path):
    monkeypatch.delenv("RUNBOOK_BOT_FINGERPRINT_KEY")
    secrets._reset_for_tests()
    first = secrets.fingerprint("x")
    key_file = tmp_path / "state" / "fingerprint.key"
    assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
    secrets._reset_for_tests()
    assert secrets.fingerprint("x") == first  # stable across restarts


def test_a_secret_from_the_environment_never_reaches_the_store_or_the_logs(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("API_TOKEN", CANARY)
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent("""
        name: leaky
        env: [API_TOKEN]
        steps:
          - id: check
            kind: http.check
            with: {url: "http://127.0.0.1:9/{{ env.API_TOKEN }}"}
    """))
    logging.basicConfig()
    _install_log_redaction()
    caplog.set_level(logging.DEBUG)
    store = Store(tmp_path / "store.sqlite")
    run = Runner(store).start(path, {}, started_by="dave", front_end="console")
    view = Runner(store).view(run.id)
    assert view.state == "failed"  # nothing listens on port 9; the error names the URL, masked
    assert secrets.MASK in view.steps[0].error
    conn = sqlite3.connect(tmp_path / "store.sqlite")
    for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        for row in conn.execute(f"SELECT * FROM {table}"):
            assert CANARY not in repr(row), f"secret found in table {table}"
    assert CANARY not in caplog.text


def test_plain_values_are_secret_only_by_name_and_masked_whole():
    from bot import secrets

    secrets.register_plain("REGION_NAME", "spaces")  # a plain value: not a secret
    secrets.register_plain("STRIPE_API_KEY", "sk-live-4242")  # a plain slot, but the name says secret
    secrets.register("prod")  # short registered values mask only where they stand whole
    text = "required key 'REGION_NAME' is missing on do-spaces; production uses sk-live-4242; env=prod"
    assert secrets.redact(text) == ("required key 'REGION_NAME' is missing on do-spaces; production uses "
                                    "••••••; env=••••••")
    long_secret = "A" * 8 + "long-secret-value"  # long values are masked even inside other tokens
    secrets.register(long_secret)
    assert secrets.redact(f"postgres://u:x{long_secret}y@h") == "postgres://u:••••••@h"
    assert secrets.redact(f"Bearer{long_secret}") == "Bearer••••••"

def test_a_secret_param_is_not_the_lock_key_and_equal_params_still_collide(tmp_path, monkeypatch):
    """A runbook without targets locks on its params; a secret among them must not land in the locks
    table, and a second run with the same params must still be refused."""
    monkeypatch.setenv("RUNBOOK_BOT_PLUGINS", "tests.kinds")
    import tests.kinds  # noqa: F401  (test.touch: a change that waits for its approval, holding the lock)

    secrets.register(CANARY)
    path = tmp_path / "rb.yaml"
    path.write_text(textwrap.dedent(f"""
        name: params-lock
        approvals: {{default: {{approvers: ["alice"]}}}}
        params: {{token: {{}}}}
        steps:
          - id: touch
            kind: test.touch
            with: {{path: "{tmp_path / 'out.txt'}", line: "x"}}
    """))
    store = Store(tmp_path / "store.sqlite")
    runner = Runner(store)
    runner.start(path, {"token": CANARY}, started_by="dave", front_end="console")
    (key,) = store.lock_holders()
    assert CANARY not in key and key.startswith("runbook:params-lock:sha256:")
    with pytest.raises(StartRefused) as refused:
        runner.start(path, {"token": CANARY}, started_by="erin", front_end="console")
    assert CANARY not in str(refused.value)
