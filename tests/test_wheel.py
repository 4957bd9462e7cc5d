"""A non-editable install works: the wheel carries the templates and the shipped runbooks.

The wheel is built from this checkout and installed (without dependencies, which the test's own
environment already has) into a folder that is not the checkout; commands then run from a working
directory with no `runbooks/` or `templates/` beside it, so only the package data can answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = next(out.glob("runbook_bot-*.whl"))
    target = tmp_path_factory.mktemp("site")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    return wheel, target, tmp_path_factory.mktemp("elsewhere")


def _run(installed, *code_or_args: str, module: bool = True) -> subprocess.CompletedProcess:
    _, target, cwd = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RUNBOOK_BOT_RUNBOOKS")}
    env.update({"PYTHONPATH": str(target), "RUNBOOK_BOT_STATE_DIR": str(cwd / "state")})
    argv = [sys.executable, "-m", "bot", *code_or_args] if module else [sys.executable, "-c", *code_or_args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_carries_templates_and_runbooks(installed):
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (ROOT / "templates").rglob("*.j2"):
        assert f"bot/templates/{path.relative_to(ROOT / 'templates')}" in names
    for path in (ROOT / "runbooks").glob("*.yaml"):
        assert f"bot/runbooks/{path.name}" in names


def test_an_installed_bot_finds_the_demo_and_renders_slack_messages(installed):
    _, target, _ = installed
    where = _run(installed, "import bot; print(bot.__file__)", module=False)
    assert where.stdout.strip().startswith(str(target)), where.stdout + where.stderr  # not the checkout
    plan = _run(installed, "validate", str(target / "bot" / "runbooks" / "demo.yaml"))
    assert plan.returncode == 0, plan.stdout + plan.stderr
    listed = _run(installed, "list")
    assert listed.returncode == 0 and "demo" in listed.stdout and "aws-ecs-to-do-app" in listed.stdout, \
        listed.stdout + listed.stderr
    rendered = _run(installed, "from bot.chat.slack import messages; "
                    "print(messages.template_names()); "
                    "print(messages.render('usage_error', {'problem': 'no such command', 'usage': '/runbook help', 'suggestions': []}).text)", module=False)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert "approval_request" in rendered.stdout and "no such command" in rendered.stdout
