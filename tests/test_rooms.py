"""The rooms rule, checked on the source: SDK and API client imports live only where they belong.

- cloud, database, DNS and HTTP clients: only under `bot/platforms/` (the store, the engine's own
  persistence, may use its database drivers);
- Slack's SDKs: only under `bot/chat/`.

A new module that imports boto3 from a step, or slack_sdk from the engine, fails here with the file,
line and the room it belongs in.
"""

from __future__ import annotations

import ast
from pathlib import Path

BOT = Path(__file__).resolve().parent.parent / "bot"

PLATFORM_SDKS = {"boto3", "botocore", "psycopg", "psycopg_pool", "pydo", "azure", "requests", "httpx", "urllib3",
                 "cloudflare", "dns"}  # dnslib is not here: the sandbox *serves* DNS with it, it calls nothing
SLACK_SDKS = {"slack_sdk", "slack_bolt"}
STORE_DRIVERS = {"psycopg", "psycopg_pool"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in `path`, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _violations(root: Path = BOT) -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).as_posix()
        in_platforms = rel.startswith("bot/platforms/")
        in_chat = rel.startswith("bot/chat/")
        in_store = rel.startswith("bot/engine/store")
        for line, module in _imports(path):
            if module in SLACK_SDKS and not in_chat:
                out.append(f"{rel}:{line} imports {module}: Slack code belongs in bot/chat/")
            elif module in PLATFORM_SDKS and not in_platforms and not (in_store and module in STORE_DRIVERS):
                out.append(f"{rel}:{line} imports {module}: SDK and API calls belong in bot/platforms/")
    return out


def test_sdk_imports_stay_in_their_rooms():
    assert _violations() == []


def test_the_check_sees_a_violation(tmp_path):
    """The scan is not vacuous: a step module importing boto3 is reported with its line."""
    fake_bot = tmp_path / "bot"
    (fake_bot / "steps").mkdir(parents=True)
    (fake_bot / "steps" / "bad.py").write_text("import json\n\ndef f():\n    import boto3\n")
    (fake_bot / "engine").mkdir()
    (fake_bot / "engine" / "runner.py").write_text("from slack_sdk import WebClient\n")
    assert _violations(fake_bot) == [
        "bot/engine/runner.py:1 imports slack_sdk: Slack code belongs in bot/chat/",
        "bot/steps/bad.py:4 imports boto3: SDK and API calls belong in bot/platforms/",
    ]
