"""The validator of Data Factory's REST spec (tests/support/adf_spec.py): how it reads the vendored spec
(inheritance, polymorphic activities, maps, expressions, enums) and what it refuses, with the path."""

from __future__ import annotations

import copy
import posixpath
from typing import Any

import pytest

from tests.support import adf_spec
from tests.support.adf_spec import (
    FILES,
    AdfSpecError,
    activity_types,
    arm_template_problems,
    check_pipeline,
    pipeline_problems,
    spec_file,
)


def expr(text: str) -> dict[str, str]:
    return {"value": text, "type": "Expression"}


def web(**changes: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {
        "name": "Call",
        "type": "WebActivity",
        "dependsOn": [],
        "userProperties": [],
        "policy": {"timeout": "0.00:10:00", "retry": 2, "retryIntervalInSeconds": 30, "secureInput": False},
        "typeProperties": {
            "method": "POST",
            "url": expr("@pipeline().parameters.url"),
            "headers": {"Content-Type": "application/json"},
            "body": expr("@json('{}')"),
            "authentication": {"type": "MSI", "resource": "api://dagster"},
        },
    }
    activity.update(changes)
    return activity


def resource(*activities: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"name": "p", "properties": {"activities": list(activities), **properties}}


def paths(found: list[str]) -> list[str]:
    return [p.split(": ", 1)[0] for p in found]


def test_every_reference_reachable_from_a_pipeline_resolves_in_the_vendored_files() -> None:
    # Walk PipelineResource and every definition of Pipeline.json (all activity types and what they use).
    todo = [("datafactory.json", "PipelineResource")]
    todo += [
        ("entityTypes/Pipeline.json", name) for name in spec_file("entityTypes/Pipeline.json")["definitions"]
    ]
    seen: set[tuple[str, str]] = set()

    def refs(node: Any, current: str) -> list[tuple[str, str]]:
        if isinstance(node, dict):
            found = []
            if isinstance(node.get("$ref"), str):
                target, _, pointer = node["$ref"].partition("#")
                path = (
                    posixpath.normpath(posixpath.join(posixpath.dirname(current), target))
                    if target
                    else current
                )
                found.append((path, pointer.rsplit("/", 1)[1]))
            return found + [r for v in node.values() for r in refs(v, current)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v, current)]
        return []

    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        assert ref[0] in FILES, f"{ref} is outside the vendored files"
        definition = spec_file(ref[0])["definitions"][ref[1]]
        todo += refs(definition, ref[0])
    assert {path for path, _ in seen} == set(FILES)
    assert adf_spec.api_version() == "2018-06-01"


def test_the_activity_types_are_the_specs_subtypes_of_activity() -> None:
    types = activity_types()
    assert {"WebActivity", "IfCondition", "Until", "Wait", "Fail", "SetVariable", "Filter"} <= set(types)
    # x-ms-discriminator-value, not the definition name: ForEachActivity is "ForEach".
    assert "ForEach" in types and "ForEachActivity" not in types and "Copy" in types


def test_a_well_formed_pipeline_has_no_problems() -> None:
    ok = resource(
        web(),
        {
            "name": "Loop",
            "type": "Until",
            "dependsOn": [{"activity": "Call", "dependencyConditions": ["Succeeded", "Failed"]}],
            "typeProperties": {
                "expression": expr("@equals(1, 1)"),
                "timeout": expr("@pipeline().parameters.timeout"),
                "activities": [{"name": "W", "type": "Wait", "typeProperties": {"waitTimeInSeconds": 1}}],
            },
        },
        parameters={
            "url": {"type": "string"},  # modelAsString enums compare without case
            "timeout": {"type": "String", "defaultValue": "0.01:00:00"},
            "config": {"type": "object", "defaultValue": {"ops": {}}},
        },
        variables={"run_id": {"type": "String"}},
        annotations=["dagster"],
        description="d",
        folder={"name": "dagster"},
    )
    assert pipeline_problems(ok) == []
    check_pipeline(ok)


def test_an_undefined_activity_type_is_refused_with_the_types_that_exist() -> None:
    [problem] = pipeline_problems(resource(web(type="Webactivity")))
    assert problem.startswith(
        "$.properties.activities[0]('Call').type: Activity type 'Webactivity' is not defined"
    )
    assert "'WebActivity'" in problem and "'Filter'" in problem
    [missing] = pipeline_problems(resource({"name": "X", "typeProperties": {}}))
    assert "Activity type None is not defined" in missing


def test_properties_outside_the_activitys_model_chain_are_refused_even_where_the_spec_has_a_catch_all() -> (
    None
):
    # Activity and ActivityPolicy declare `additionalProperties: {type: object}`; it defines nothing.
    activity = web(retries=3)
    activity["policy"]["retryInterval"] = 30
    activity["typeProperties"]["httpTimeout"] = "00:01:00"
    found = pipeline_problems(resource(activity))
    assert paths(found) == [
        "$.properties.activities[0]('Call').retries",
        "$.properties.activities[0]('Call').policy.retryInterval",
        "$.properties.activities[0]('Call').typeProperties.httpTimeout",
    ]
    assert "not defined by WebActivity (entityTypes/Pipeline.json)" in found[0]
    assert "'linkedServiceName'" in found[0]  # inherited from ExecutionActivity
    assert "'retryIntervalInSeconds'" in found[1]
    # A control activity has no `policy` (ControlActivity declares none).
    found = pipeline_problems(
        resource(
            {
                "name": "S",
                "type": "SetVariable",
                "policy": {"secureInput": False},
                "typeProperties": {"variableName": "v", "value": "x"},
            }
        )
    )
    assert paths(found) == ["$.properties.activities[0]('S').policy"]


def test_required_properties_types_bounds_and_enums() -> None:
    activity = web()
    del activity["typeProperties"]["url"]
    activity["typeProperties"]["method"] = "PATCH"
    activity["policy"]["retryIntervalInSeconds"] = 10
    activity["policy"]["secureInput"] = 1
    activity["dependsOn"] = [{"activity": "A", "dependencyConditions": ["Succeded"]}]
    found = pipeline_problems(resource(activity, parameters={"n": {"type": "integer"}}))
    assert sorted(paths(found)) == sorted(
        [
            "$.properties.activities[0]('Call').dependsOn[0].dependencyConditions[0]",
            "$.properties.activities[0]('Call').policy.retryIntervalInSeconds",
            "$.properties.activities[0]('Call').policy.secureInput",
            "$.properties.activities[0]('Call').typeProperties.url",
            "$.properties.activities[0]('Call').typeProperties.method",
            "$.properties.parameters.n.type",
        ]
    )
    text = "\n".join(found)
    assert "required by WebActivityTypeProperties, missing" in text
    assert "found 'PATCH'; the spec allows ['GET', 'POST', 'PUT', 'DELETE']" in text
    assert "minimum is 30" in text and "found integer 1; the spec wants boolean" in text
    # A boolean is not an integer.
    activity = web()
    activity["policy"]["retryIntervalInSeconds"] = True
    assert paths(pipeline_problems(resource(activity))) == [
        "$.properties.activities[0]('Call').policy.retryIntervalInSeconds"
    ]


def test_expressions_where_the_spec_refers_to_expression_and_where_it_says_object() -> None:
    def until(expression: Any, timeout: Any) -> dict[str, Any]:
        return resource(
            {
                "name": "U",
                "type": "Until",
                "typeProperties": {"expression": expression, "timeout": timeout, "activities": []},
            }
        )

    # `timeout` is `type: object`: a literal, an @-string or an Expression object all do.
    for timeout in ("0.00:10:00", "@pipeline().parameters.t", expr("@pipeline().parameters.t")):
        assert pipeline_problems(until(expr("@equals(1, 1)"), timeout)) == []
    # `expression` refers to Expression: only an Expression object does.
    [problem] = pipeline_problems(until("@equals(1, 1)", "0.00:10:00"))
    assert "found string '@equals(1, 1)'; the spec wants an object of Expression" in problem
    # An Expression object must be one, wherever it is.
    found = pipeline_problems(until({"type": "Expression", "value": 1, "x": 2}, {"type": "Expression"}))
    assert paths(found) == [
        "$.properties.activities[0]('U').typeProperties.expression.x",
        "$.properties.activities[0]('U').typeProperties.expression.value",
        "$.properties.activities[0]('U').typeProperties.timeout.value",
    ]
    [wrong_case] = pipeline_problems(until({"type": "expression", "value": "@true"}, "0.00:10:00"))
    assert "the spec allows ['Expression']" in wrong_case  # not modelAsString: exact


def test_maps_check_their_values_and_the_resource_envelope_is_checked_too() -> None:
    found = pipeline_problems(
        {
            "name": "p",
            "etag": "x",
            "properties": {
                "activities": [],
                "parameters": {"a": {"type": "String", "default": "x"}, "b": "String"},
                "variables": {"v": {"type": "Object"}},
                "concurrency": 0,
            },
            "kind": "pipeline",
        }
    )
    assert paths(found) == [
        "$.kind",
        "$.properties.parameters.a.default",
        "$.properties.parameters.b",
        "$.properties.variables.v.type",
        "$.properties.concurrency",
    ]
    assert paths(pipeline_problems({"name": "p"})) == ["$.properties"]


def test_check_pipeline_lists_every_problem() -> None:
    bad = resource(web(type="Http"), web(name="Other", extra=1))
    with pytest.raises(AdfSpecError) as refused:
        check_pipeline(bad)
    lines = str(refused.value).splitlines()
    assert (
        lines[0]
        == "pipeline 'p' is not what Data Factory's REST spec (Microsoft.DataFactory 2018-06-01) allows:"
    )
    assert len(lines) == 3


def test_arm_template_resources_are_pipelines_at_the_specs_api_version() -> None:
    properties = resource(web())["properties"]
    good = {
        "type": "Microsoft.DataFactory/factories/pipelines",
        "apiVersion": "2018-06-01",
        "name": "[concat(parameters('factoryName'), '/p')]",
        "properties": properties,
        "dependsOn": [],
    }
    assert arm_template_problems({"resources": [good]}) == []
    old = dict(good, apiVersion="2017-09-01-preview")
    broken = copy.deepcopy(good)
    broken["properties"]["activities"][0]["typeProperties"]["verb"] = "POST"
    other = dict(good, type="Microsoft.DataFactory/factories/linkedservices")
    assert paths(arm_template_problems({"resources": [old, broken, other]})) == [
        "$.resources[0].apiVersion",
        "$.resources[1].properties.activities[0]('Call').typeProperties.verb",
        "$.resources[2].type",
    ]
