"""Every command the README shows works: run for real, with the exit code the README promises.

The commands are read from README.md's `Using it` block (and its `make` block), so a command added
to the README without a way to run it here fails `test_every_readme_command_is_exercised`. Each
line is expanded (`[--x]` both ways, `a | b` and `x|y` one at a time) and run in a subprocess
against a world where it needs one: the demo's two HTTP services (`bot.sandbox.demo`), or the
rehearsal world (`bot.sandbox.world`) for the seed runbook's plans. A traceback, or an exit code
other than the promised one, fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# Run by other tests (they take a minute or need Slack): the README line -> the test that runs it.
ELSEWHERE = {
    "make run": "tests/test_rehearsal.py (make run = serve without Slack = the rehearsal)",
    "make test": "this suite",
    "runbook-bot serve": "tests/test_rehearsal.py",
    "runbook-bot serve --http --port N --host H": "tests/test_slack_serve.py",
    "runbook-bot rehearse": "tests/test_rehearsal.py (the same walk as serve)",
    "runbook-bot store migrate --to postgresql://USER:PASS@HOST/DB": "tests/test_store_copy.py",
}


def _blocks() -> list[str]:
    text = README.read_text()
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            command = line.split("#", 1)[0].strip()
            if command.startswith(("runbook-bot", "make ")):
                lines.append(command)
    return lines


def _expand(command: str) -> list[str]:
    """`a | b` -> each; `[x]` -> without and with; `x|y|z` (one word) -> each."""
    if " | " in command:
        parts = [p.strip() for p in command.split(" | ")]
        head = parts[0].split()[0]
        return [c for p in parts for c in _expand(p if p.startswith(head) else f"{head} {p}")]
    match = re.search(r"\[([^\]]+)\]", command)
    if match:
        return _expand((command[:match.start()] + command[match.end():]).replace("  ", " ").strip()) + \
            _expand(command[:match.start()] + match.group(1) + command[match.end():])
    words = command.split()
    for i, word in enumerate(words):
        if "|" in word and not word.startswith(">"):
            return [c for alt in word.split("|") for c in _expand(" ".join(words[:i] + [alt] + words[i + 1:]))]
    return [command]


def test_readme_lines_expand_as_read():
    assert _expand("runbook-bot abort RUN | rollback RUN") == ["runbook-bot abort RUN", "runbook-bot rollback RUN"]
    assert _expand("runbook-bot status [RUN]") == ["runbook-bot status", "runbook-bot status RUN"]
    assert _expand("runbook-bot watch RUN now|stop") == ["runbook-bot watch RUN now", "runbook-bot watch RUN stop"]


def _cli(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    argv = command.split()[1:]
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "bot", *argv], cwd=ROOT, env=full, input="", capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def demo_world(tmp_path_factory):
    from bot.sandbox.demo import Sandbox

    state = tmp_path_factory.mktemp("state")
    with Sandbox() as box:
        yield {**box.env, "RUNBOOK_BOT_STATE_DIR": str(state), "RUNBOOK_BOT_DB": str(state / "store.sqlite")}


def _last_run(env: dict[str, str]) -> str | None:
    runs = json.loads(_cli("runbook-bot status --json", env).stdout or "[]")
    return runs[0]["id"] if runs else None


# What each command must exit with in the demo world, after the substitutions; none may trace back.
PROMISED = [
    (r"^runbook-bot rehearse runbooks/demo.yaml$", {0}),
    (r"^runbook-bot run ", {3}),                      # the demo waits for people at its confirmation
    (r"^runbook-bot status", {0}),
    (r"^runbook-bot approve .*--confirm", {0}),
    (r"^runbook-bot approve ", {1}),                  # without the typed confirmation: refused, says what to type
    (r"^runbook-bot (abort|rollback|replan|resume) ", {0, 1}),  # 1: rolled back, or nothing to do
    (r"^runbook-bot resolve ", {1}),                  # no interrupted step: refused with the reason
    (r"^runbook-bot events ", {0}),
    (r"^runbook-bot watch ", {0, 1}),                 # the demo has no watch: said so, exit 1 or a 'none' status
    (r"^runbook-bot validate ", {0}),
    (r"^runbook-bot schema", {0}),
    (r"^runbook-bot iam-policy ", {0}),              # the demo uses no AWS: one line saying so
]


def _promised(command: str) -> set[int]:
    for pattern, codes in PROMISED:
        if re.search(pattern, command):
            return codes
    raise AssertionError(f"README command {command!r} has no promised exit code in this test")


def test_every_readme_command_is_exercised():
    for line in _blocks():
        for command in _expand(line):
            if command in ELSEWHERE or "aws-ecs-to-do-app" in command:
                continue
            _promised(command)


def test_every_readme_command_runs_with_its_promised_exit(demo_world):
    env = demo_world
    failures = []
    run = "NO-RUN-YET"
    for line in _blocks():
        for command in _expand(line):
            if command in ELSEWHERE or "aws-ecs-to-do-app" in command:
                continue
            concrete = (command.replace("RUNBOOK", "runbooks/demo.yaml").replace(" RUN", f" {run}")
                        .replace("STEP", "hold-before-cutover").replace("--reason ...", "--reason not-tonight")
                        .replace("--confirm production", "--confirm staging"))
            if concrete.startswith("runbook-bot resolve"):
                concrete = concrete.replace("hold-before-cutover", "old-healthy")
            if concrete.startswith("runbook-bot watch") and concrete.endswith("follow"):
                continue  # follows until the watch ends; `watch status` and `now` cover the command
            schema_out = " > " in concrete
            result = _cli(concrete.split(" > ")[0], env)
            if "Traceback" in result.stderr or result.returncode not in _promised(command):
                failures.append(f"{concrete}: exit {result.returncode}\n{result.stdout[-800:]}{result.stderr[-1500:]}")
            if concrete.startswith("runbook-bot run "):
                run = _last_run(env) or run  # the commands after it act on this run
            if schema_out:
                assert result.stdout == (ROOT / "runbooks" / "runbook.schema.json").read_text()
    assert not failures, "\n\n".join(failures)


def test_the_seed_runbook_plan_runs_against_the_rehearsal_world(tmp_path):
    from bot.sandbox.world import World

    lines = [c for line in _blocks() for c in _expand(line) if "aws-ecs-to-do-app" in c]
    assert lines, "the README no longer shows the seed runbook's plan"
    with World.up() as world:
        env = {**world.settings, "RUNBOOK_BOT_STATE_DIR": str(tmp_path), "RUNBOOK_BOT_DB": str(tmp_path / "s.sqlite"),
               "RUNBOOK_BOT_GROUPS": "platform-oncall=alice,bob;api-owners=bob,alice"}
        for command in lines:
            result = _cli(command + f" -p new_port={world.new_port} -p db_name={world.databases['new']}", env)
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
            # A plan changes nothing and reports what each step would do: the WORKERS gap is in it.
            assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-2000:]
            assert "WORKERS" in result.stdout
            # No third-party INFO lines by default (botocore's credentials line, azure-core's headers).
            assert "Found credentials" not in result.stderr and "Request URL" not in result.stderr
        verbose = _cli(lines[0].replace("runbook-bot ", "runbook-bot -v ", 1)
                       + f" -p new_port={world.new_port} -p db_name={world.databases['new']}", env)
        assert "Found credentials" in verbose.stderr          # -v shows them ...
        assert world.settings["OLD_DB_PASSWORD"] not in verbose.stderr + verbose.stdout  # ... secrets masked


def test_the_readme_target_table_is_generated_from_the_schema():
    from bot.runbook.schema import target_table_markdown

    text = README.read_text()
    shown = text.split("<!-- target-fields:start -->\n", 1)[1].split("<!-- target-fields:end -->", 1)[0]
    assert shown == target_table_markdown(), "README's target table is stale: regenerate it from " \
                                             "bot.runbook.schema.target_table_markdown()"
    assert "`nameservers`" in shown and "`endpoint_url`" in shown
