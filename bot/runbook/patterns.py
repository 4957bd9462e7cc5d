"""Regular expressions from runbooks, run on untrusted text with a time limit.

    >>> from bot.runbook.patterns import check_pattern, search
    >>> check_pattern(r"ok|ready")
    'ok|ready'
    >>> bool(search(r"ok|ready", "status: ready"))
    True
    >>> search(r"(a|aa)+$", "a" * 40 + "!")
    Traceback (most recent call last):
    bot.runbook.patterns.PatternTimeout: /(a|aa)+$/ took longer than 1 s on 41 characters ...

A runbook's `body_matches` is matched against a response body the bot does not control. With the
standard `re` module a pattern such as `(a|aa)+$` backtracks exponentially and the step never
returns. The `regex` package takes a `timeout=`, and is otherwise compatible with `re` for the
patterns people write; a pattern that times out is an error that names the pattern, not a hang.
Patterns are also bounded in length, and the text searched is bounded (`MAX_TEXT`).
"""

from __future__ import annotations

import regex

MAX_PATTERN_CHARS = 1000
MAX_TEXT = 1024 * 1024        # characters of a body a pattern is run on
TIMEOUT_SECONDS = 1.0


class PatternTimeout(Exception):
    """A pattern ran past its time limit on the text it was given."""


def check_pattern(pattern: str) -> str:
    """The pattern if it compiles and is short enough; ValueError naming the problem otherwise."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"a regular expression may be at most {MAX_PATTERN_CHARS} characters "
                         f"(this one is {len(pattern)})")
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


def search(pattern: str, text: str, *, timeout: float = TIMEOUT_SECONDS) -> regex.Match[str] | None:
    """`regex.search` within `timeout` seconds on at most `MAX_TEXT` characters of `text`."""
    try:
        return regex.search(check_pattern(pattern), text[:MAX_TEXT], timeout=timeout)
    except TimeoutError:
        raise PatternTimeout(f"/{pattern}/ took longer than {timeout:g} s on {min(len(text), MAX_TEXT)} "
                             f"characters (a pattern that backtracks catastrophically?)") from None
