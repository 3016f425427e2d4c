"""Data Factory's own contract for pipelines: the official REST spec (Microsoft.DataFactory 2018-06-01).

The spec is three vendored, sha256-checked Swagger 2.0 files (tests/support/fakes/specs/README.md):
`Pipeline.json` (the pipeline and every activity type), `datafactory.json` (the `PipelineResource`
envelope and shared types such as `Expression`) and `DataFlow.json` (referenced by two activities).

`problems(value, model)` lists every place where `value` departs from a model of the spec, as
`<JSON path>: <what was found>; <what the spec allows>`. The reading is Swagger's, made strict:

- models inherit through `allOf`; a polymorphic base (`discriminator`, e.g. `Activity` on `type`)
  stands for the subtype whose `x-ms-discriminator-value` (or, lacking one, definition name) is the
  value's `type`, and a type no subtype has is refused, with the ones that exist;
- a model accepts only the properties declared along its inheritance chain. The spec puts a catch-all
  `additionalProperties: {type: object}` on most models (so that SDKs keep fields they do not know);
  it is not a definition of anything, so it is ignored: an activity property or `typeProperties` entry
  the spec does not name is refused. A model with no declared properties and an `additionalProperties`
  schema is a map (`parameters`, `variables`), whose values are checked against that schema;
- `type: object` with nothing declared is the spec's way of writing "any JSON value": a literal or an
  Expression (`{"value": "@...", "type": "Expression"}`, checked against `Expression`). Where the spec
  refers to `Expression` itself (If Condition, Until, Filter), only an Expression object is accepted;
- enums are exact, except those marked `x-ms-enum.modelAsString`, which the service compares without
  case (ADF Studio writes parameter types as `string`, `int`, ...);
- `required`, JSON types (a boolean is not an integer), `minimum` and `maximum` are enforced; `format`,
  `readOnly` and the `x-ms-*` client hints do not constrain a request body.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakes.specs import load_spec

# The spec's own paths (as its `$ref`s name them) -> the vendored copy in tests/support/fakes/specs/.
FILES = {
    "datafactory.json": "datafactory-2018-06-01-datafactory.json",
    "entityTypes/Pipeline.json": "datafactory-2018-06-01-Pipeline.json",
    "entityTypes/DataFlow.json": "datafactory-2018-06-01-DataFlow.json",
}
ROOT = "datafactory.json"
PIPELINE_FILE = "entityTypes/Pipeline.json"
ARM_PIPELINE_TYPE = "Microsoft.DataFactory/factories/pipelines"

# A model: (spec file, definition name).
Ref = tuple[str, str]


class AdfSpecError(ValueError):
    """A pipeline that Data Factory's REST spec does not allow; the message lists every problem."""


@dataclass(frozen=True)
class Model:
    """A definition of the spec with its inheritance resolved.

    `properties` maps each declared property (own and inherited) to its schema and the file that schema
    lives in (a `$ref` is relative to it). `discriminator` is the property that selects the subtype, if
    the model or an ancestor is polymorphic; `value` is what that property holds for this very model.
    `map_values` is the value schema of a map (a model without declared properties).
    """

    ref: Ref
    properties: Mapping[str, tuple[Any, str]]
    required: frozenset[str]
    discriminator: str | None
    value: str
    map_values: tuple[Any, str] | None = None
    ancestors: frozenset[Ref] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return self.ref[1]


@functools.cache
def spec_file(path: str) -> dict[str, Any]:
    """One vendored spec file, by the path its `$ref`s use (checked against its sha256 on load)."""
    if path not in FILES:
        raise AdfSpecError(f"the spec refers to {path}, which is not vendored (only {sorted(FILES)})")
    return load_spec(FILES[path])


def api_version() -> str:
    """The API version the vendored spec describes (ARM's `apiVersion` for a pipeline resource)."""
    return str(spec_file(ROOT)["info"]["version"])


def _resolve(ref: str, current: str) -> Ref:
    target, _, pointer = ref.partition("#")
    path = posixpath.normpath(posixpath.join(posixpath.dirname(current), target)) if target else current
    prefix = "/definitions/"
    if not pointer.startswith(prefix):
        raise AdfSpecError(f"unsupported $ref {ref!r} in {current}")
    return path, pointer[len(prefix) :]


def _definition(ref: Ref) -> dict[str, Any]:
    definitions = spec_file(ref[0])["definitions"]
    if ref[1] not in definitions:
        raise AdfSpecError(f"{ref[1]} is not defined in {ref[0]}")
    return definitions[ref[1]]


@functools.cache
def model(ref: Ref) -> Model:
    """The definition `ref` with everything it inherits."""
    node = _definition(ref)
    properties: dict[str, tuple[Any, str]] = {}
    required: set[str] = set()
    discriminator: str | None = None
    ancestors: set[Ref] = set()
    for base in node.get("allOf", []):
        parent = model(_resolve(base["$ref"], ref[0]))
        properties.update(parent.properties)
        required |= parent.required
        discriminator = discriminator or parent.discriminator
        ancestors |= parent.ancestors | {parent.ref}
    properties.update({name: (schema, ref[0]) for name, schema in node.get("properties", {}).items()})
    required |= set(node.get("required", []))
    discriminator = node.get("discriminator", discriminator)
    extra = node.get("additionalProperties")
    map_values = (extra, ref[0]) if isinstance(extra, dict) and not properties else None
    return Model(
        ref=ref,
        properties=properties,
        required=frozenset(required),
        discriminator=discriminator,
        value=str(node.get("x-ms-discriminator-value", ref[1])),
        map_values=map_values,
        ancestors=frozenset(ancestors),
    )


@functools.cache
def subtypes(base: Ref) -> dict[str, Model]:
    """The concrete models a polymorphic `base` stands for, by their discriminator value (itself included)."""
    found = {model(base).value: model(base)}
    for path in FILES:
        for name in spec_file(path)["definitions"]:
            candidate = model((path, name))
            if base in candidate.ancestors:
                found[candidate.value] = candidate
    return found


def activity_types() -> list[str]:
    """Every activity `type` the spec defines."""
    return sorted(subtypes((PIPELINE_FILE, "Activity")))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)


def _is_model(schema: Mapping[str, Any]) -> bool:
    return "properties" in schema or "allOf" in schema or "discriminator" in schema


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def schema(self, value: Any, schema: Mapping[str, Any], current: str, path: str) -> None:
        if "$ref" in schema:
            ref = _resolve(schema["$ref"], current)
            definition = _definition(ref)
            if _is_model(definition) or isinstance(definition.get("additionalProperties"), dict):
                self.model(value, model(ref), path)
            else:  # a named plain schema, e.g. the WebActivityMethod enum
                self.schema(value, definition, ref[0], path)
            return
        if _is_model(schema):  # an inline model, e.g. Pipeline.folder
            inline = Model(
                ref=(current, "(inline)"),
                properties={k: (v, current) for k, v in schema.get("properties", {}).items()},
                required=frozenset(schema.get("required", [])),
                discriminator=None,
                value="",
            )
            self.model(value, inline, path)
            return
        kind = schema.get("type")
        if kind == "object" or kind is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                self.map(value, (extra, current), path)
            else:
                self.anything(value, path)
        elif kind == "array":
            if not isinstance(value, list):
                self.add(path, f"found {_type_name(value)}; the spec wants an array")
                return
            for i, item in enumerate(value):
                self.schema(item, schema.get("items", {}), current, f"{path}[{i}]")
        else:
            self.scalar(value, schema, kind, path)

    def scalar(self, value: Any, schema: Mapping[str, Any], kind: str, path: str) -> None:
        expected: dict[str, tuple[type, ...]] = {
            "string": (str,),
            "integer": (int,),
            "number": (int, float),
            "boolean": (bool,),
        }
        if kind not in expected:
            raise AdfSpecError(f"unsupported schema type {kind!r} at {path}")
        if not isinstance(value, expected[kind]) or (kind != "boolean" and isinstance(value, bool)):
            self.add(path, f"found {_type_name(value)} {value!r}; the spec wants {kind}")
            return
        if "enum" in schema:
            allowed = [str(v) for v in schema["enum"]]
            open_case = bool(schema.get("x-ms-enum", {}).get("modelAsString"))
            matches = (
                str(value).lower() in {a.lower() for a in allowed} if open_case else str(value) in allowed
            )
            if not matches:
                self.add(path, f"found {value!r}; the spec allows {allowed}")
        if "minimum" in schema and value < schema["minimum"]:
            self.add(path, f"found {value!r}; the spec's minimum is {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            self.add(path, f"found {value!r}; the spec's maximum is {schema['maximum']}")

    def anything(self, value: Any, path: str) -> None:
        """`type: object` with nothing declared: any JSON value; an Expression object must be well formed."""
        if isinstance(value, dict) and value.get("type") == "Expression":
            self.model(value, model((ROOT, "Expression")), path)

    def map(self, value: Any, values: tuple[Any, str], path: str) -> None:
        if not isinstance(value, dict):
            self.add(path, f"found {_type_name(value)}; the spec wants an object (a map)")
            return
        schema, current = values
        for key, item in value.items():
            self.schema(item, schema, current, f"{path}.{key}")

    def model(self, value: Any, target: Model, path: str) -> None:
        if target.map_values is not None:
            self.map(value, target.map_values, path)
            return
        if not isinstance(value, dict):
            self.add(path, f"found {_type_name(value)} {value!r}; the spec wants an object of {target.name}")
            return
        if target.discriminator is not None:
            if isinstance(value.get("name"), str):  # an activity: say which one
                path = f"{path}({value['name']!r})"
            kinds = subtypes(target.ref)
            kind = value.get(target.discriminator)
            if kind not in kinds:
                self.add(
                    f"{path}.{target.discriminator}",
                    f"{target.name} type {kind!r} is not defined by the spec; defined: {sorted(kinds)}",
                )
                return
            target = kinds[kind]
        for name in sorted(set(value) - set(target.properties)):
            self.add(
                f"{path}.{name}",
                f"property {name!r} is not defined by {target.name} ({target.ref[0]}); "
                f"defined: {sorted(target.properties)}",
            )
        for name in sorted(target.required - set(value)):
            self.add(f"{path}.{name}", f"required by {target.name}, missing")
        for name, item in value.items():
            if name in target.properties:
                schema, current = target.properties[name]
                self.schema(item, schema, current, f"{path}.{name}")


def problems(value: Any, model_name: str, spec: str = PIPELINE_FILE) -> list[str]:
    """Every place where `value` departs from the definition `model_name` of the spec file `spec`."""
    checker = _Checker()
    checker.model(value, model((spec, model_name)), "$")
    return checker.problems


def pipeline_problems(resource: Mapping[str, Any]) -> list[str]:
    """A pipeline resource as the REST API and `adf/pipelines/*.json` have it: `{name, properties}`."""
    return problems(resource, "PipelineResource", ROOT)


def arm_template_problems(template: Mapping[str, Any]) -> list[str]:
    """The Data Factory resources of an ARM template: pipelines, at the spec's API version.

    The rest of a resource (`name`, `dependsOn`...) is ARM's template language, not Data Factory's.
    """
    found: list[str] = []
    resources: Iterable[Any] = template.get("resources", [])
    for i, resource in enumerate(resources):
        path = f"$.resources[{i}]"
        if resource.get("type") != ARM_PIPELINE_TYPE:
            found.append(f"{path}.type: found {resource.get('type')!r}; only {ARM_PIPELINE_TYPE} is modelled")
            continue
        if resource.get("apiVersion") != api_version():
            found.append(
                f"{path}.apiVersion: found {resource.get('apiVersion')!r}; the spec is {api_version()!r}"
            )
        checker = _Checker()
        checker.model(resource.get("properties"), model((PIPELINE_FILE, "Pipeline")), f"{path}.properties")
        found += checker.problems
    return found


def check_pipeline(resource: Mapping[str, Any]) -> None:
    """Raise AdfSpecError, listing every problem, when `resource` is not a pipeline the spec allows."""
    found = pipeline_problems(resource)
    if found:
        name = resource.get("name", "(unnamed)")
        raise AdfSpecError(
            f"pipeline {name!r} is not what Data Factory's REST spec (Microsoft.DataFactory "
            f"{api_version()}) allows:\n" + "\n".join(f"  {p}" for p in found)
        )
