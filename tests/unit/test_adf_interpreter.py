"""The ADF interpreter itself (tests/support/adf_interpreter.py): expressions, control flow, Web activity
semantics, retries and the pipeline outcome rule. Pure and fast; HTTP goes to a loopback server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest

from tests.support.adf_interpreter import (
    AdfExpressionError,
    Interpreter,
    Scope,
    evaluate_template,
    evaluate_value,
)
from tests.support.adf_spec import AdfSpecError


def scope(**params: Any) -> Scope:
    return Scope(
        pipeline={"parameters": params, "RunId": "r-1", "Pipeline": "p", "DataFactory": "f"},
        activities={"A": {"output": {"data": {"x": [1, 2], "t": None, "s": 'a"b'}}, "error": None}},
        variables={"v": "val"},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("@pipeline().RunId", "r-1"),
        ("@pipeline().parameters.n", 3),
        ("@activity('A').output.data.x[1]", 2),
        ("@activity('A').output?.data?.missing?.deeper", None),
        ("@variables('v')", "val"),
        ("@activity('A').OUTPUT.Data.X[0]", 1),  # property names are case-insensitive
        ("@concat('a', 'it''s', string(1), string(true))", "ait's1True"),
        ('@string(json(\'{"k":[1,"x"]}\'))', '{"k":[1,"x"]}'),
        ("@equals(1, 1)", True),
        ("@equals('1', 1)", False),
        ("@and(true, or(false, not(false)))", True),
        ("@if(less(1, 2), 'yes', 'no')", "yes"),
        ("@greater('b', 'a')", True),
        ("@coalesce(null, activity('A').output.data.t, 'fallback')", "fallback"),
        ("@contains(createArray('a', 'b'), 'b')", True),
        ("@union(createArray(1, 2), createArray(2, 3))", [1, 2, 3]),
        ("@first(activity('A').output.data.x)", 1),
        ("@last(activity('A').output.data.x)", 2),
        ("@last(json('[]'))", None),
        ("@length('abc')", 3),
        ("@empty(json('[]'))", True),
        ("@substring('abcdef', 1, sub(length('abcdef'), 2))", "bcde"),
        ("@int('42')", 42),
        # JSON-quoting a string the way the templates do (quotes and backslashes escaped):
        (
            "@substring(string(createArray(activity('A').output.data.s)), 1, "
            "sub(length(string(createArray(activity('A').output.data.s))), 2))",
            '"a\\"b"',
        ),
        ("run @{pipeline().RunId} of @{pipeline().parameters.n}", "run r-1 of 3"),
        ("@@not an expression", "@not an expression"),
        ("plain", "plain"),
    ],
)
def test_expressions(text: str, expected: Any) -> None:
    assert evaluate_template(text, scope(n=3)) == expected


def test_expression_objects_and_nested_values() -> None:
    value = {"a": {"value": "@pipeline().RunId", "type": "Expression"}, "b": ["@variables('v')", 1]}
    assert evaluate_value(value, scope()) == {"a": "r-1", "b": ["val", 1]}


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("@guid()", r"guid\(\) is not supported"),
        ("@activity('Nope').output", "has not run"),
        ("@variables('nope')", "no such pipeline variable"),
        ("@activity('A').output.data.missing", "does not exist"),
        ("@activity('A').output.data.t.deeper", "of null"),
        ("@not('yes')", "expects booleans"),
        ("@json('{bad')", "not valid JSON"),
        ("@concat('a',", "ends too early"),
        ("@item()", r"item\(\) outside of an iteration"),
    ],
)
def test_expression_errors_are_clear(text: str, complaint: str) -> None:
    with pytest.raises(AdfExpressionError, match=complaint):
        evaluate_template(text, scope())


def expr(text: str) -> dict[str, str]:
    """An Expression object: what the spec requires where it refers to `Expression`."""
    return {"value": text, "type": "Expression"}


def wait(name: str, seconds: int = 1, after: str | None = None, on: str = "Succeeded") -> dict[str, Any]:
    return {
        "name": name,
        "type": "Wait",
        "dependsOn": [{"activity": after, "dependencyConditions": [on]}] if after else [],
        "typeProperties": {"waitTimeInSeconds": seconds},
    }


def fail(name: str, message: str = "boom", after: str | None = None, on: str = "Succeeded") -> dict[str, Any]:
    return {
        "name": name,
        "type": "Fail",
        "dependsOn": [{"activity": after, "dependencyConditions": [on]}] if after else [],
        "typeProperties": {"message": {"value": message, "type": "Expression"}, "errorCode": "E1"},
    }


def pipeline(*activities: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"name": "p", "properties": {"activities": list(activities), **properties}}


def quick() -> Interpreter:
    return Interpreter(time_scale=0.001)


def test_fail_activity_fails_the_pipeline_with_its_message() -> None:
    run = quick().run(
        pipeline(wait("W"), fail("F", "@concat('bad: ', pipeline().RunId)", after="W")), run_id="x"
    )
    assert run.status == "Failed"
    assert run.error == {"message": "bad: x", "errorCode": "E1"}


def test_dependency_conditions_and_the_outcome_rule() -> None:
    # F fails, but a Failed-path handler succeeds and is the leaf: ADF's try/catch -> pipeline succeeds.
    handled = quick().run(pipeline(fail("F"), wait("Handler", after="F", on="Failed")))
    assert handled.status == "Succeeded"
    # The success path is skipped; the skipped leaf stands for F, which failed -> pipeline fails.
    unhandled = quick().run(pipeline(fail("F"), wait("Next", after="F")))
    assert unhandled.status == "Failed" and unhandled.runs_of("Next")[0].status == "Skipped"
    completed = quick().run(
        pipeline(fail("F"), wait("Always", after="F", on="Completed"), wait("Never", after="F"))
    )
    assert [r.status for r in completed.activity_runs] == ["Failed", "Succeeded", "Skipped"]


def test_if_condition_until_set_variable_and_filter() -> None:
    p = pipeline(
        {
            "name": "Loop",
            "type": "Until",
            "typeProperties": {
                "expression": {"value": "@equals(variables('n'), 'xxx')", "type": "Expression"},
                "timeout": "0.00:01:00",
                "activities": [
                    {
                        "name": "Grow",
                        "type": "SetVariable",
                        "typeProperties": {"variableName": "n", "value": "@concat(variables('n'), 'x')"},
                    }
                ],
            },
        },
        {
            "name": "Keep",
            "type": "Filter",
            "dependsOn": [{"activity": "Loop", "dependencyConditions": ["Succeeded"]}],
            "typeProperties": {
                "items": expr('@json(\'[{"k":1},{"k":2},{"k":3}]\')'),
                "condition": expr("@greater(item().k, 1)"),
            },
        },
        {
            "name": "Branch",
            "type": "IfCondition",
            "dependsOn": [{"activity": "Keep", "dependencyConditions": ["Succeeded"]}],
            "typeProperties": {
                "expression": expr("@equals(activity('Keep').output.FilteredItemsCount, 2)"),
                "ifTrueActivities": [fail("Inner", "@string(activity('Keep').output.value)")],
            },
        },
        variables={"n": {"type": "String", "defaultValue": ""}},
    )
    run = quick().run(p)
    assert run.variables["n"] == "xxx" and len(run.runs_of("Grow")) == 3
    assert run.status == "Failed"
    assert run.error == {"message": '[{"k":2},{"k":3}]', "errorCode": "E1"}


def test_until_goes_on_after_a_failed_inner_activity() -> None:
    # Iterations 1 and 2 fail (Fail activity while n is short), iteration 3 succeeds and ends the loop.
    p = pipeline(
        {
            "name": "Loop",
            "type": "Until",
            "typeProperties": {
                "expression": expr("@equals(variables('n'), 'xxx')"),
                "activities": [
                    {
                        "name": "Grow",
                        "type": "SetVariable",
                        "typeProperties": {"variableName": "n", "value": "@concat(variables('n'), 'x')"},
                    },
                    {
                        "name": "Check",
                        "type": "IfCondition",
                        "dependsOn": [{"activity": "Grow", "dependencyConditions": ["Succeeded"]}],
                        "typeProperties": {
                            "expression": expr("@less(length(variables('n')), 3)"),
                            "ifTrueActivities": [fail("Transient")],
                        },
                    },
                ],
            },
        },
        variables={"n": {"type": "String", "defaultValue": ""}},
    )
    run = quick().run(p)
    assert run.status == "Succeeded", run.error
    assert [r.status for r in run.runs_of("Check")] == ["Failed", "Failed", "Succeeded"]


def test_until_times_out() -> None:
    p = pipeline(
        {
            "name": "Forever",
            "type": "Until",
            "typeProperties": {
                "expression": expr("@equals(1, 2)"),
                "timeout": "0.00:00:01",
                "activities": [wait("W")],
            },
        }
    )
    run = Interpreter(time_scale=0.01).run(p)
    assert run.status == "Failed" and run.error is not None and run.error["errorCode"] == "ActivityTimeout"


def test_parameters_are_checked() -> None:
    p = pipeline(parameters={"n": {"type": "int"}, "s": {"type": "string", "defaultValue": "d"}})
    with pytest.raises(ValueError, match="'n' is required"):
        quick().run(p)
    with pytest.raises(ValueError, match="expected int"):
        quick().run(p, {"n": "3"})
    with pytest.raises(ValueError, match="unknown pipeline parameters"):
        quick().run(p, {"n": 3, "typo": 1})


class _Server(ThreadingHTTPServer):
    answers: list[tuple[int, bytes]]
    seen: list[dict[str, Any]]


class _Handler(BaseHTTPRequestHandler):
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._server().seen.append({"auth": self.headers.get("Authorization"), "body": json.loads(body)})
        code, payload = self._server().answers.pop(0) if self._server().answers else (200, b'{"ok": true}')
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.answers, server.seen = [], []
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def web_pipeline(url: str, retry: int = 0) -> dict[str, Any]:
    return pipeline(
        {
            "name": "Call",
            "type": "WebActivity",
            "policy": {"retry": retry, "retryIntervalInSeconds": 30},
            "typeProperties": {
                "method": "POST",
                "url": url,
                "body": {
                    "value": "@json(concat('{\"run\":\"', pipeline().RunId, '\"}'))",
                    "type": "Expression",
                },
                "authentication": {"type": "MSI", "resource": "@pipeline().parameters.audience"},
            },
        },
        {
            "name": "Use",
            "type": "SetVariable",
            "dependsOn": [{"activity": "Call", "dependencyConditions": ["Succeeded"]}],
            "typeProperties": {"variableName": "got", "value": "@string(activity('Call').output.ok)"},
        },
        parameters={"audience": {"type": "string"}},
        variables={"got": {"type": "String"}},
    )


def test_web_activity_posts_json_with_a_managed_identity_token(http: _Server) -> None:
    audiences: list[str] = []

    def token(resource: str) -> str:
        audiences.append(resource)
        return "tok-123"

    url = f"http://127.0.0.1:{http.server_address[1]}/graphql"
    run = Interpreter(token_provider=token).run(
        web_pipeline(url), {"audience": "api://dagster"}, run_id="r-9"
    )
    assert run.status == "Succeeded" and run.variables["got"] == "True"
    assert audiences == ["api://dagster"]
    assert http.seen == [{"auth": "Bearer tok-123", "body": {"run": "r-9"}}]


def test_web_activity_fails_on_non_2xx_and_is_retried(http: _Server) -> None:
    url = f"http://127.0.0.1:{http.server_address[1]}/graphql"
    http.answers = [(502, b"bad gateway"), (500, b'{"err": 1}')]
    run = quick().run(web_pipeline(url, retry=2), {"audience": "a"})
    assert run.status == "Succeeded"
    assert run.runs_of("Call")[0].attempts == 3 and len(http.seen) == 3

    http.answers = [(404, b"nope")]
    failed = quick().run(web_pipeline(url), {"audience": "a"})
    assert failed.status == "Failed" and failed.error is not None
    assert "Response status code: '404'" in failed.error["message"]


def test_an_activity_type_the_spec_does_not_define_is_refused_before_anything_runs() -> None:
    interpreter = quick()
    odd = {"name": "Call", "type": "HttpCall", "typeProperties": {"url": "http://127.0.0.1:9/"}}
    with pytest.raises(AdfSpecError) as refused:
        interpreter.run(pipeline(wait("First"), odd))
    message = str(refused.value)
    assert "$.properties.activities[1]('Call').type: Activity type 'HttpCall' is not defined" in message
    assert "'WebActivity'" in message and "'Until'" in message  # what the spec does define
    assert interpreter.requests == []


def test_a_property_the_spec_does_not_define_is_refused_with_its_path() -> None:
    web = json.loads(json.dumps(web_pipeline("http://127.0.0.1:9/graphql")))
    call = web["properties"]["activities"][0]
    call["policy"]["retries"] = 3  # a typo of `retry`: the call would never be retried
    call["typeProperties"]["timeout"] = "00:05:00"
    inner = pipeline(
        {
            "name": "Loop",
            "type": "Until",
            "typeProperties": {"expression": "@equals(1, 1)", "activities": [wait("W")], "body": 1},
        }
    )
    with pytest.raises(AdfSpecError) as refused:
        quick().run(web, {"audience": "a"})
    problems = str(refused.value).splitlines()[1:]
    assert [p.split(":")[0].strip() for p in problems] == [
        "$.properties.activities[0]('Call').policy.retries",
        "$.properties.activities[0]('Call').typeProperties.timeout",
    ]
    assert "not defined by ActivityPolicy" in problems[0] and "'retry'" in problems[0]
    assert "not defined by WebActivityTypeProperties" in problems[1] and "'url'" in problems[1]
    with pytest.raises(AdfSpecError) as refused:
        quick().run(inner)
    assert [p.split(":")[0].strip() for p in str(refused.value).splitlines()[1:]] == [
        "$.properties.activities[0]('Loop').typeProperties.body",
        "$.properties.activities[0]('Loop').typeProperties.expression",  # a string, not an Expression
    ]


def test_an_activity_type_the_spec_defines_but_the_interpreter_does_not_model_fails_the_activity() -> None:
    each = {
        "name": "Each",
        "type": "ForEach",
        "typeProperties": {"items": expr("@createArray(1)"), "activities": [wait("W")]},
    }
    run = quick().run(pipeline(each))
    assert run.status == "Failed" and run.error is not None
    assert run.error["errorCode"] == "Unsupported" and "'ForEach'" in run.error["message"]
