"""The runbook JSON Schema, for editors (`# yaml-language-server: $schema=./runbook.schema.json`).

    runbook-bot schema > runbooks/runbook.schema.json

Built from the pydantic model, then refined with what only the registries know: each step kind's
`with:` inputs (an if/then per kind) and each platform's target fields (one branch per platform).
Wherever a number, boolean, list or mapping is expected, a string holding a Jinja2 template is
also accepted, since `"{{ params.count }}"` is a valid way to give a count.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from bot.runbook.model import Runbook
from bot.runbook.targets import TARGETS

TEMPLATE_STRING = {"type": "string", "pattern": r"\{\{|\{%", "description": "a Jinja2 template"}


def _allow_templates(node: Any) -> Any:
    """Wrap every non-string typed schema so a template string is accepted in its place."""
    if isinstance(node, list):
        return [_allow_templates(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: (_allow_templates(v) if k in ("properties", "items", "anyOf", "oneOf", "allOf",
                                              "additionalProperties", "$defs", "prefixItems") or
                isinstance(v, (dict, list)) and k not in ("enum", "required", "default", "examples")
                else v) for k, v in node.items()}
    if "properties" in node and isinstance(node["properties"], dict):
        node["properties"] = {k: _allow_templates(v) for k, v in node["properties"].items()}
    typ = node.get("type")
    constrained_string = typ == "string" and any(k in node for k in ("pattern", "format", "minLength", "maxLength"))
    if typ in ("integer", "number", "boolean", "array", "object") or "enum" in node or "const" in node \
            or constrained_string:
        return {"anyOf": [node, TEMPLATE_STRING]}
    return node


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local $refs so a sub-schema can be moved into the runbook schema on its own."""
    defs = schema.get("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                target = copy.deepcopy(defs[ref.split("/")[-1]])
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return walk({**target, **rest})
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(n) for n in node]
        return node

    return walk(schema)


DURATION = {"anyOf": [{"type": "number", "minimum": 0},
                     {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*[dhms]\s*)+$"}],
            "description": "seconds, or text like 30s, 10m, 1h30m, 2d"}


def _durations(node: Any) -> Any:
    """Durations are numbers in the model but people write `10m`: accept both."""
    if isinstance(node, list):
        return [_durations(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("x-duration"):
        return dict(DURATION)
    if node.get("x-percent"):
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%?\s*$"}],
                "description": "a percentage: 1% or 1"}
    return {k: _durations(v) for k, v in node.items()}


def build_schema() -> dict[str, Any]:
    from bot.steps.base import kinds

    schema = Runbook.model_json_schema(by_alias=True)
    defs = schema.setdefault("$defs", {})
    registry = kinds()

    step = defs["Step"]
    step["properties"]["kind"] = {"type": "string", "enum": sorted(registry), "description": "the step kind"}
    conditions = []
    for name, cls in sorted(registry.items()):
        inputs = _allow_templates(_inline_defs(cls.Inputs.model_json_schema(by_alias=True)))
        inputs.pop("title", None)
        doc = (cls.__doc__ or "").strip().splitlines()
        conditions.append({
            "if": {"properties": {"kind": {"const": name}}, "required": ["kind"]},
            "then": {"properties": {"with": {**inputs, "description": doc[0] if doc else name}}},
        })
    step["allOf"] = conditions
    if "RollbackSpec" in defs:
        defs["RollbackSpec"]["properties"]["kind"] = {"type": "string", "enum": sorted(registry)}

    branches = []
    for platform, model in sorted(TARGETS.items()):
        target_schema = _inline_defs(model.model_json_schema(by_alias=True))
        props = target_schema.get("properties", {})
        props["platform"] = {"const": platform}
        target_schema = _allow_templates(target_schema)
        if "anyOf" in target_schema:  # keep the object itself un-wrapped
            target_schema = target_schema["anyOf"][0]
        target_schema.setdefault("required", [])
        if "platform" not in target_schema["required"]:
            target_schema["required"].append("platform")
        target_schema["title"] = platform
        branches.append(target_schema)
    schema["properties"]["targets"] = {
        "type": "object",
        "description": "Named platform bindings that steps refer to",
        "additionalProperties": {"oneOf": branches},
    }
    # `env:` entries are a plain name (a secret) or {name, secret}: the model normalises the first form.
    schema["properties"]["env"]["items"] = {"anyOf": [{"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
                                                      {"$ref": "#/$defs/EnvVar"}]}
    schema = _durations(schema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "runbook-bot runbook"
    return schema


def schema_json() -> str:
    return json.dumps(build_schema(), indent=2, sort_keys=True) + "\n"


def target_table_markdown() -> str:
    """The README's table of target fields, from the target models (a test keeps the README current)."""
    rows = ["| platform | fields (required in bold) |", "|---|---|"]
    for name, model in TARGETS.items():
        fields = []
        for field_name, info in model.model_fields.items():
            if field_name == "platform":
                continue
            label = f"**`{field_name}`**" if info.is_required() else f"`{field_name}`"
            if info.description:
                label += f": {info.description}"
            fields.append(label.replace("|", "\\|"))
        rows.append(f"| `{name}` | " + "; ".join(fields) + " |")
    return "\n".join(rows) + "\n"

