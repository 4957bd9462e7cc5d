"""Property: no YAML document, however odd, makes loading raise anything but a clean RunbookInvalid."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.runbook.load import RunbookInvalid, load_text

KEYS = ["name", "description", "params", "targets", "approvals", "steps", "rollback", "watch", "env", "id",
        "kind", "with", "approval", "timeout", "retries", "on_failure", "platform", "url", "seconds", "min",
        "approvers", "type", "choices", "default", "http.check", "wait", "{{ params.x }}", "", "ü", "0"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True),
                    st.sampled_from(KEYS), st.text(max_size=20))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), children,
                                               max_size=6)),
    max_leaves=40,
)


def _assert_clean(text: str) -> None:
    try:
        load_text(text, "gen.yaml")
    except RunbookInvalid as exc:
        assert exc.errors, "RunbookInvalid without errors"
        for error in exc.errors:
            assert str(error).startswith("gen.yaml:")
            assert error.line >= 1 and error.col >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_generated_structures_never_crash_the_loader(doc):
    _assert_clean(yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_never_crashes_the_loader(text):
    _assert_clean(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(["id", "kind", "with", "approval", "retries", "timeout", "on_failure",
                                        "rollback"]), scalars | st.dictionaries(st.sampled_from(KEYS), scalars),
                       max_size=6))
def test_generated_steps_inside_a_valid_runbook_never_crash(step):
    doc = {"name": "gen", "approvals": {"default": {"approvers": ["*"]}}, "steps": [step]}
    _assert_clean(yaml.safe_dump(doc, allow_unicode=True))
