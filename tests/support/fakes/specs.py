"""Validate bodies against the official Azure OpenAPI (Swagger 2.0) specs in tests/support/fakes/specs/.

Internal `#/definitions/...` references resolve inside the spec. External references (the ARM
common types, sibling files that are not copied here) are replaced by permissive `{}` schemas.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema

# Unmodified official specs, gzipped, with their sha256 (see specs/README.md for their provenance).
SPECS = Path(__file__).resolve().parent / "specs"
SHA256 = {
    "batch-BatchService-2025-06-01.21.0.json": "2712562376f1394d1c4d32cbc7dd80519205733d02cbc62e34b128b92f5043cf",
    "ml-mfe-2023-10-01.json": "05f2672f07a83696bf0471958cb2c319c8fafe45b11d1651b9ef70d273f6afcf",
    "ml-run-history-v1.0.json": "6baec19e62224f12cdb8c1bd87f68c2e6dc5413f60edd3b6fa5b4f47c25b045d",
    "datafactory-2018-06-01-datafactory.json": "744a706581356a1154248591741d76f15ff1168e5e984cae7ff366bc3310b520",
    "datafactory-2018-06-01-Pipeline.json": "76641147d205583c9d1666c9ff4f839eeca6c2228cb37bb54e416d6931862b58",
    "datafactory-2018-06-01-DataFlow.json": "35371c0b797ec701ee56d7608570892afbedb3e995372e7d8c633640b2717f26",
}
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
def load_spec(spec: str) -> dict[str, Any]:
    """The official spec `spec` (a file name of SHA256), checked to be the unmodified copy."""
    raw = gzip.decompress((SPECS / f"{spec}.gz").read_bytes())
    digest = hashlib.sha256(raw).hexdigest()
    if digest != SHA256[spec]:
        raise ContractError(f"{spec}: sha256 {digest} is not the official copy's {SHA256[spec]}")
    return json.loads(raw)


@functools.cache
def _definitions(spec: str) -> dict[str, Any]:
    data = load_spec(spec)
    return _flatten(_permissive_external(data["definitions"]))


def available() -> bool:
    return all((SPECS / f"{name}.gz").is_file() for name in (RUN_HISTORY, MFE))


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
