"""Validate bodies against the official Azure OpenAPI (Swagger 2.0) specs in shared/azure-specs.

Internal `#/definitions/...` references resolve inside the spec. External references (the ARM
common types, sibling files that are not copied here) are replaced by permissive `{}` schemas.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

# The project's checkouts sit beside the shared/ folder that holds the unmodified specs.
SPECS = Path(__file__).resolve().parents[2].parent / "shared" / "azure-specs"
RUN_HISTORY = "ml-run-history-v1.0.json"
MFE = "ml-mfe-2023-10-01.json"


class ContractError(ValueError):
    pass


def _permissive_external(node: Any) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#/"):
            return {}
        return {k: _permissive_external(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_permissive_external(v) for v in node]
    return node


def _flatten(definitions: dict[str, Any]) -> dict[str, Any]:
    """Swagger's allOf means inheritance: merge base properties into each definition.

    (A plain JSON-Schema validator would otherwise treat inherited fields as 'additional'.) A base
    outside this file, or a polymorphic base (discriminator), leaves extra fields allowed.
    """
    done: dict[str, Any] = {}

    def resolve(name: str) -> dict[str, Any]:
        if name in done:
            return done[name]
        node = dict(definitions[name])
        props: dict[str, Any] = {}
        required: list[str] = []
        open_ended = "discriminator" in node
        for base in node.pop("allOf", []):
            ref = base.get("$ref", "") if isinstance(base, dict) else ""
            if ref.startswith("#/definitions/"):
                parent = resolve(ref.rsplit("/", 1)[1])
                props.update(parent.get("properties", {}))
                required += parent.get("required", [])
                open_ended = open_ended or parent.get("additionalProperties") is not False
            else:
                open_ended = True
        props.update(node.get("properties", {}))
        if props:
            node["properties"] = props
        if required or node.get("required"):
            node["required"] = sorted(set(required) | set(node.get("required", [])))
        if open_ended:
            node.pop("additionalProperties", None)
        done[name] = node
        return node

    for name in definitions:
        resolve(name)
    return done


@functools.cache
def _definitions(spec: str) -> dict[str, Any]:
    data = json.loads((SPECS / spec).read_text())
    return _flatten(_permissive_external(data["definitions"]))


def available() -> bool:
    return (SPECS / RUN_HISTORY).is_file() and (SPECS / MFE).is_file()


def validate(spec: str, definition: str, value: Any) -> None:
    """Raise ContractError when `value` does not match `definition` of `spec`."""
    definitions = _definitions(spec)
    if definition not in definitions:
        raise KeyError(f"{definition} is not defined in {spec}")
    schema = {"$ref": f"#/definitions/{definition}", "definitions": definitions}
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(value), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.path) or "(root)"
        raise ContractError(f"{spec} {definition}: at {where}: {first.message}")
