"""YAML with line numbers: parse a document and remember where every value stands.

    >>> doc = parse_yaml("name: x\\nsteps:\\n  - id: a\\n", "rb.yaml")
    >>> doc.data["steps"][0]["id"]
    'a'
    >>> doc.mark(("steps", 0, "id"))
    (3, 9)

PyYAML's composer keeps a start mark on every node; we build plain Python values from the node
tree and keep a map from each value's path to its (line, column), 1-based, plus the mark of each
mapping *key* (for "unknown key" errors). Duplicate keys, which PyYAML silently lets the last one
win, are reported as errors: in a runbook a repeated key is almost always a pasted block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import yaml

Path_ = tuple[Any, ...]

# Aliases can make a small file expand enormously ("billion laughs"); no runbook needs this many.
MAX_NODES = 100_000
# No single value in a runbook (a URL, a name, a template) comes near this; a 10 MB string would
# otherwise validate and then be rendered, posted and stored on every step.
MAX_VALUE_CHARS = 64 * 1024


class _TooLarge(Exception):
    pass


@dataclass
class YamlIssue:
    line: int
    col: int
    path: Path_
    message: str


@dataclass
class YamlDoc:
    data: Any
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    issues: list[YamlIssue] = field(default_factory=list)

    def mark(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """The closest known position of `path` (walking up to its parent when unknown)."""
        table = self.key_marks if key else self.marks
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if not key and probe in self.key_marks:
                return self.key_marks[probe]
            probe = probe[:-1]
        return self.marks.get((), (1, 1))


class _Builder:
    def __init__(self) -> None:
        self.constructor = yaml.SafeLoader("")
        self.doc = YamlDoc(data=None)
        self.count = 0

    def _issue(self, node: yaml.Node, path: Path_, message: str) -> None:
        self.doc.issues.append(YamlIssue(node.start_mark.line + 1, node.start_mark.column + 1, path, message))

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooLarge()
        self.doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            # Flatten YAML merge keys (<<) the way PyYAML would before walking the pairs.
            self.constructor.flatten_mapping(node)
            result: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    self.doc.issues.append(YamlIssue(key_node.start_mark.line + 1, key_node.start_mark.column + 1,
                                                     path, "mapping keys must be plain scalars"))
                    continue
                if isinstance(key, bool) and isinstance(key_node, yaml.ScalarNode) and not key_node.style:
                    self.doc.issues.append(YamlIssue(
                        key_node.start_mark.line + 1, key_node.start_mark.column + 1, path,
                        f"the key {key_node.value!r} is read by YAML as the boolean {str(key).lower()}; "
                        f"quote it (\"{key_node.value}\") if you mean the word"))
                    continue
                child = (*path, key)
                if key in result:
                    self.doc.issues.append(YamlIssue(
                        key_node.start_mark.line + 1, key_node.start_mark.column + 1, child,
                        f"duplicate key {key!r} (first at line {self.doc.key_marks[child][0]})",
                    ))
                    continue
                self.doc.key_marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                result[key] = self.build(value_node, child)
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.ScalarNode) and len(node.value) > MAX_VALUE_CHARS:
            self._issue(node, path, f"this value is {len(node.value)} characters; the limit for one value "
                                    f"is {MAX_VALUE_CHARS}")
            return ""
        value = self.constructor.construct_object(node, deep=True)
        if isinstance(value, float) and not math.isfinite(value):
            self._issue(node, path, f"{node.value!r} is not a finite number (nan and inf are not allowed)")
            return 0.0
        # Dates and times become strings: runbooks pass them on to templates and APIs as text.
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = str(value)
        return value


def parse_yaml(text: str, source: str = "<string>") -> YamlDoc:
    """Parse one YAML document; syntax problems come back as issues, never as exceptions."""
    try:
        # libyaml's parser when PyYAML was built with it (marks are the same), else the Python one.
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or str(exc)
        if exc.context:
            problem = f"{problem} ({exc.context})"
        return YamlDoc(data=None, issues=[YamlIssue(line, col, (), f"YAML syntax: {problem}")])
    except yaml.YAMLError as exc:  # e.g. a reader error on a control character
        mark = getattr(exc, "problem_mark", None)
        line, col = ((mark.line + 1, mark.column + 1) if mark else (1, 1))
        return YamlDoc(data=None, issues=[YamlIssue(line, col, (), f"YAML: {exc}")])
    if node is None:
        return YamlDoc(data=None, issues=[YamlIssue(1, 1, (), "the file is empty")])
    builder = _Builder()
    try:
        builder.doc.data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        builder.doc.issues.append(YamlIssue(line, col, (), f"YAML: {exc.problem}"))
    except _TooLarge:
        builder.doc.issues.append(YamlIssue(1, 1, (), f"YAML: more than {MAX_NODES} values (aliases expanding?)"))
    except RecursionError:
        builder.doc.issues.append(YamlIssue(1, 1, (), "YAML: the document nests too deeply (or aliases itself)"))
    return builder.doc
