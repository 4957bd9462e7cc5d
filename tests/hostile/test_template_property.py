"""Property: any template expression built from Jinja's operators, filters and loops renders within
the budget or is refused with `TemplateNameError`; it never raises anything else, never returns
more than `MAX_OUTPUT` characters, and never hangs (each render runs in a thread with a 10 s guard).
"""

from __future__ import annotations

import concurrent.futures

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.runbook.bounds import MAX_OUTPUT
from bot.runbook.render import TemplateContext, TemplateNameError, TemplateSyntaxProblem, render_string

CTX = TemplateContext(params={"env": "staging", "n": 7, "secs": "30"}, targets={}, env={}, outputs={})
POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1)

atoms = st.one_of(
    st.integers(min_value=-10, max_value=10**6).map(str),
    st.sampled_from(["'x'", "'ab'", "[1, 2]", "params.env", "params.n", "range(100000)", "(2 ** 64)", "''"]),
)


def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(inner, st.sampled_from(["*", "**", "+", "~", "%", "//", "-"]), inner).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    filtered = st.tuples(inner, st.sampled_from([
        "center({})", "join({})", "replace('x', {})", "indent({})", "wordwrap({})", "list", "string",
        "format({})", "batch({})", "sum", "length", "truncate({})",
    ]), inner).map(lambda t: f"({t[0]}|{t[1].format(t[2])})")
    method = st.tuples(inner, st.sampled_from(["ljust", "rjust", "zfill", "center", "join", "format"]), inner).map(
        lambda t: f"({t[0]}|string).{t[1]}({t[2]})")
    return st.one_of(binary, filtered, method)


expressions = st.recursive(atoms, combine, max_leaves=6)
templates = st.one_of(
    expressions.map(lambda e: "{{ " + e + " }}"),
    st.tuples(expressions, expressions).map(
        lambda t: "{% for i in " + t[0] + " %}{% for j in " + t[0] + " %}{{ " + t[1] + " }}{% endfor %}{% endfor %}"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(templates)
def test_any_expression_renders_within_budget_or_is_refused(text):
    future = POOL.submit(_render, text)
    outcome = future.result(timeout=10)  # a hang guard, not a speed assertion
    assert outcome is None or len(outcome) <= MAX_OUTPUT


def _render(text: str) -> str | None:
    try:
        return render_string(text, CTX)
    except (TemplateNameError, TemplateSyntaxProblem):
        return None
