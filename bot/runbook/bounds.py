"""A Jinja2 sandbox with a render budget: templates from runbooks cannot exhaust the machine.

    >>> env = BoundedEnvironment()
    >>> render_bounded(env.from_string("{{ 2 ** 10 }}"), {})
    '1024'
    >>> render_bounded(env.from_string("{{ 'x' * 10 ** 9 }}"), {})
    Traceback (most recent call last):
    bot.runbook.bounds.TemplateTooCostly: 'x' * 1000000000 would build 1000000000 characters (limit 100000)

Jinja's own `SandboxedEnvironment` keeps templates away from Python internals, but not away from
the CPU or the memory: `'x' * 10**9`, `9 ** 9 ** 9` or two nested `range(100000)` loops are all
allowed. Three limits close that, each checked *before* the work is done where it can be:

- size: the operators that build big values (`**`, `*`, `+`, `%`, `//`, `~`) and the filters and
  methods that pad or repeat (`center`, `indent`, `wordwrap`, `join`, `replace`, `format`,
  `ljust`...) refuse results past `MAX_TEXT` characters or integers past `MAX_INT_BITS` bits;
  the output as a whole is cut off at `MAX_OUTPUT` characters while it streams;
- operations: every line of compiled template code executed counts against `MAX_STEPS`
  (a `sys.settrace` hook scoped to template frames), which bounds loops of any shape;
- time: the same hook stops the render after `MAX_SECONDS`.

The limits are small on purpose: a runbook input is a name, a URL, a count; nothing legitimate
comes near them. `lipsum` (which generates text on demand) is removed.
"""

from __future__ import annotations

import operator
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import SandboxedEnvironment

MAX_TEXT = 100_000          # characters (or items) in any one value a template builds
MAX_OUTPUT = 100_000        # characters one template may render
MAX_INT_BITS = 4096         # about 1233 decimal digits
MAX_STEPS = 200_000         # lines of compiled template code executed in one render
MAX_SECONDS = 2.0           # wall time of one render
TEMPLATE_FILE = "<template>"  # Jinja's code object name for templates compiled from strings


class TemplateTooCostly(Exception):
    """A template would take more time, memory or output than a runbook input may."""


def _size(value: Any) -> int | None:
    if isinstance(value, (str, bytes, list, tuple)):
        return len(value)
    return None


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateTooCostly(f"{what} is a number of more than {MAX_INT_BITS} bits")


def _check_len(n: int, what: str) -> None:
    if n > MAX_TEXT:
        raise TemplateTooCostly(f"{what} would build {n} characters (limit {MAX_TEXT})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _pow(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        bits = abs(left).bit_length() * right
        if bits > MAX_INT_BITS:
            raise TemplateTooCostly(f"{left} ** {right} is a number of more than {MAX_INT_BITS} bits")
    return left**right


def _mul(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        n = _size(seq)
        if n is not None and _is_int(count):
            _check_len(n * max(count, 0), f"{_show(seq)} * {count}")
    if _is_int(left) and _is_int(right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateTooCostly(f"a product of more than {MAX_INT_BITS} bits")
    return left * right


def _add(left: Any, right: Any) -> Any:
    a, b = _size(left), _size(right)
    if a is not None and b is not None:
        _check_len(a + b, "this concatenation")
    return left + right


_FORMAT_WIDTH = re.compile(r"%[-+ #0]*(\*|\d{5,})|%[-+ #0]*\d*\.(\*|\d{5,})")
# str.format: a width or precision of 5+ digits, or a nested field ({0:{1}}) that could supply one.
_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*(\d{5,}|\{)")


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        if _FORMAT_WIDTH.search(left):
            raise TemplateTooCostly("a %-format with a width of 10000 or more (or `*`) is not allowed")
        result = left % right
        _check_len(len(result), "this %-format")
        return result
    return left % right


def _concat(values: Any) -> str:
    text = "".join(map(str, values))
    _check_len(len(text), "this ~ concatenation")
    return text


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 20 else text[:17] + "..."


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "**": _pow, "*": _mul, "+": _add, "%": _mod, "//": operator.floordiv, "/": operator.truediv,
    "-": operator.sub,
}


def _bounded_args(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse integer arguments big enough to pad or repeat past the limit (`center(10**9)`)."""
    for value in (*args, *kwargs.values()):
        if _is_int(value) and abs(value) > MAX_TEXT:
            raise TemplateTooCostly(f"{name}({value}) asks for more than {MAX_TEXT}")


def _estimate(name: str, subject: Any, args: tuple[Any, ...]) -> None:
    """Result size of `join`/`replace` computed from their inputs, before they run."""
    if name == "join" and isinstance(subject, str) and args:
        items = list(args[0]) if not isinstance(args[0], (str, bytes)) else list(args[0])
        _check_len(len(subject) * max(len(items) - 1, 0) + sum(len(str(i)) for i in items), "this join")
    elif name == "replace" and isinstance(subject, str) and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        hits = subject.count(old) if old else len(subject) + 1
        _check_len(len(subject) + hits * max(len(new) - len(old), 0), "this replace")


def _bounded_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        values = [a for a in args if not isinstance(a, (jinja2.runtime.Context, jinja2.Environment, nodes.EvalContext))]
        if values:
            subject, rest = values[0], tuple(values[1:])
            _bounded_args(name, rest, kwargs)
            if name == "join":
                sep = rest[0] if rest else kwargs.get("d", "")
                _estimate("join", str(sep), (subject,))
            elif name == "replace":
                _estimate("replace", str(subject), rest)
            elif name == "format" and isinstance(subject, str) and _FORMAT_WIDTH.search(subject):
                raise TemplateTooCostly("a %-format with a width of 10000 or more (or `*`) is not allowed")
        result = fn(*args, **kwargs)
        n = _size(result)
        if n is not None:
            _check_len(n, f"the filter {name}")
        return result

    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(call, attr, getattr(fn, attr))
    return call


class BoundedEnvironment(SandboxedEnvironment):
    """`SandboxedEnvironment` whose operators, filters and calls refuse oversized results."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals.pop("lipsum", None)
        self.filters = {name: _bounded_filter(name, fn) for name, fn in self.filters.items()}
        self.binop_table = {**self.binop_table, **_BINOPS}

    @staticmethod
    def bounded_concat(values: Any) -> str:
        return _concat(values)

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        for value in (left, right):
            _check_int(value, f"an operand of {op}")
        result = _BINOPS[op](left, right)
        _check_int(result, f"the result of {op}")
        return result

    def wrap_str_format(self, value: Any) -> Any:
        subject = getattr(value, "__self__", None)
        if isinstance(subject, str) and _BRACE_WIDTH.search(subject):
            raise TemplateTooCostly("a format with a width of 10000 or more (or a nested width) is not allowed")
        return super().wrap_str_format(value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (Jinja's signature)
        name = getattr(__obj, "__name__", "call")
        _bounded_args(name, args, kwargs)
        _estimate(name, getattr(__obj, "__self__", None), args)
        result = super().call(__context, __obj, *args, **kwargs)
        n = _size(result)
        if n is not None:
            _check_len(n, f"{name}()")
        return result


class _BoundedCodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to the environment's bounded concatenation (Jinja has no hook for `~`)."""

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


BoundedEnvironment.code_generator_class = _BoundedCodeGenerator


class _Budget:
    """A trace function that counts template lines and watches the clock."""

    def __init__(self) -> None:
        self.steps = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename != TEMPLATE_FILE:
            return None
        return self._line

    def _line(self, frame: Any, event: str, arg: Any) -> Any:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise TemplateTooCostly(f"the template ran more than {MAX_STEPS} operations (a loop too large?)")
        if self.steps % 1000 == 0 and time.monotonic() > self.deadline:
            raise TemplateTooCostly(f"the template took longer than {MAX_SECONDS:g} s to render")
        return self._line


def render_bounded(template: jinja2.Template, namespace: dict[str, Any]) -> str:
    """Render within the budget; `TemplateTooCostly` when any limit is passed."""
    budget = _Budget()
    previous = sys.gettrace()
    sys.settrace(budget)
    try:
        parts: list[str] = []
        total = 0
        for chunk in template.generate(namespace):
            total += len(chunk)
            if total > MAX_OUTPUT:
                raise TemplateTooCostly(f"the template renders more than {MAX_OUTPUT} characters")
            parts.append(chunk)
        return "".join(parts)
    except RecursionError:
        raise TemplateTooCostly("the template recurses too deeply") from None
    except MemoryError:
        raise TemplateTooCostly("the template ran out of memory") from None
    finally:
        sys.settrace(previous)
