"""Jinja2 templates in runbook inputs, rendered in a sandbox where an unknown name is an error.

    >>> ctx = TemplateContext(params={"env": "staging"}, targets={}, env={}, outputs={})
    >>> render_value("api-{{ params.env }}", ctx)
    'api-staging'
    >>> render_value("{{ params.nope }}", ctx)
    Traceback (most recent call last):
    bot.runbook.render.TemplateNameError: params.nope is not defined (params has: env)

Four names exist in a template: `params` (typed values), `targets` (each target's rendered fields),
`env` (only the variables the runbook lists under `env:`; their values are registered as secrets,
so they are masked wherever they would surface) and `outputs` (earlier steps' outputs; a step id
with dashes is reachable as `outputs["copy-db"]` or `outputs.copy_db`). The environment is a
`SandboxedEnvironment` with a render budget (`bot.runbook.bounds`): templates cannot reach Python
internals, nor build huge values, loop without end or render past the output limit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
from bot import secrets
from bot.runbook.bounds import BoundedEnvironment, TemplateTooCostly, render_bounded


class TemplateNameError(Exception):
    """A template named something that does not exist."""


class TemplateSyntaxProblem(Exception):
    pass


class Namespace(Mapping[str, Any]):
    """A read-only mapping whose missing names raise a clear error instead of rendering empty."""

    def __init__(self, label: str, values: Mapping[str, Any]) -> None:
        self._label = label
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        alt = name.replace("_", "-") if isinstance(name, str) else name
        if alt in self._values:
            return self._values[alt]
        known = ", ".join(sorted(map(str, self._values))) or "nothing"
        raise TemplateNameError(f"{self._label}.{name} is not defined ({self._label} has: {known})")

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __repr__(self) -> str:
        return f"<{self._label}>"


def _wrap(label: str, value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, Namespace):
        return Namespace(label, {k: _wrap(f"{label}.{k}", v) for k, v in value.items()})
    return value


@dataclass
class TemplateContext:
    params: Mapping[str, Any]
    targets: Mapping[str, Mapping[str, Any]]
    env: Mapping[str, str]
    outputs: Mapping[str, Mapping[str, Any]]

    def namespace(self) -> dict[str, Any]:
        return {
            "params": _wrap("params", self.params),
            "targets": _wrap("targets", self.targets),
            "env": _wrap("env", self.env),
            "outputs": _wrap("outputs", self.outputs),
        }


def env_values(allowed: list[Any]) -> dict[str, str]:
    """The allowed environment variables that are set; secret ones are registered for masking.

    `allowed` holds `EnvVar` entries (name, secret) or plain names (treated as secrets).
    """
    values: dict[str, str] = {}
    for entry in allowed:
        name = entry if isinstance(entry, str) else entry.name
        secret = True if isinstance(entry, str) else entry.secret
        if name in os.environ:
            values[name] = os.environ[name]
            if secret:
                secrets.register(values[name])
    return values


_environment = BoundedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def compile_template(text: str) -> jinja2.Template:
    try:
        return _environment.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateSyntaxProblem(f"template syntax: {exc.message} (template line {exc.lineno})") from None


def render_string(text: str, ctx: TemplateContext) -> str:
    template = compile_template(text)
    try:
        return render_bounded(template, ctx.namespace())
    except TemplateNameError:
        raise
    except TemplateTooCostly as exc:
        raise TemplateNameError(f"template too costly: {exc}") from None
    except jinja2.UndefinedError as exc:
        raise TemplateNameError(str(exc)) from None
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateNameError(f"not allowed in a template: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, AttributeError, LookupError, AssertionError,
            jinja2.TemplateError) as exc:
        # a filter given the wrong type (`0|wordwrap`), an index out of range, a bad argument; Jinja's own
        # filters check some arguments with `assert` (`truncate(0)`), found by the property test
        raise TemplateNameError(f"template error: {type(exc).__name__}: {exc}") from None


def render_value(value: Any, ctx: TemplateContext) -> Any:
    """Render every template string inside `value` (dicts and lists recursively)."""
    if is_template(value):
        return render_string(value, ctx)
    if isinstance(value, dict):
        return {k: render_value(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx) for v in value]
    return value


def template_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths (within `value`) of every string that is a template."""
    if is_template(value):
        return [prefix]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in template_paths(v, (*prefix, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in template_paths(v, (*prefix, i))]
    return []
