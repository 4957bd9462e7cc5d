"""Slack templates render with StrictUndefined, as the runbooks' templates do.

A misspelt name in a template must fail the render (and so the message tests), never blank a field
on an approval card. The shipped templates are rendered by the message tests with real views.
"""

from __future__ import annotations

import jinja2
import pytest

from bot.chat.slack import messages


def test_a_misspelt_name_fails_the_render_instead_of_blanking_the_field():
    env = messages.environment()
    good = env.from_string('{"text": "{{ run.runbook }}"}').render(run={"runbook": "aws-ecs-to-do-app"})
    assert "aws-ecs-to-do-app" in good
    with pytest.raises(jinja2.UndefinedError):
        env.from_string('{"text": "{{ run.runbok }}"}').render(run={"runbook": "aws-ecs-to-do-app"})


def test_a_shipped_template_refuses_a_view_missing_what_it_names(tmp_path):
    with pytest.raises(jinja2.UndefinedError):
        messages.render("usage_error", {})
