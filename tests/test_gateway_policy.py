"""The gateway's authorization, as a pure function: what an authenticated identity may ask Dagster's GraphQL."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from graphql import parse, print_ast

from orchestration.gateway_policy import IDEMPOTENCY_TAG, Decision, Identity, authorize

ADF = Identity(name="adf", jobs=frozenset({"score_batch", "train_model"}), object_id="oid-1")

LAUNCH = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on PythonError { message }
  }
}
"""
STATUS = """
query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""


def params(job: str = "score_batch", **extra: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "selector": {"repositoryLocationName": "mnist", "repositoryName": "__repository__", "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": "adf/pipeline_run_id", "value": "r-1"}]},
    }
    value.update(extra)
    return value


def launch(variables: dict[str, Any] | None = None, identity: Identity = ADF) -> Decision:
    return authorize(
        identity, LAUNCH, {"executionParams": params()} if variables is None else variables, "LaunchRun"
    )


def denied(decision: Decision, status: int, *words: str) -> None:
    assert not decision.allowed, decision
    assert decision.status == status, decision
    for word in words:
        assert word in decision.reason, decision.reason


# ---- allowed ---------------------------------------------------------------------------------------


def test_the_reference_launch_is_allowed_and_forwarded_as_checked() -> None:
    decision = launch()
    assert decision.allowed and decision.operation == "launchRun" and decision.job == "score_batch"
    assert decision.forward["operationName"] == "LaunchRun"
    assert decision.forward["variables"] == {"executionParams": params()}
    # The forwarded document is the caller's selection with the one argument as a declared variable.
    assert "launchRun(executionParams: $executionParams)" in decision.forward["query"]
    assert "$executionParams: ExecutionParams!" in decision.forward["query"]


def test_inline_literals_and_variables_inside_literals_are_resolved() -> None:
    document = """mutation { launchRun(executionParams: {
        selector: {repositoryLocationName: "mnist", repositoryName: "__repository__", jobName: $job},
        runConfigData: $config, executionMetadata: {tags: [{key: "a", value: "b"}]}}) { __typename } }"""
    decision = authorize(ADF, document, {"job": "train_model", "config": {"ops": {}}}, None)
    assert decision.allowed and decision.job == "train_model"
    assert decision.forward["variables"]["executionParams"] == {
        "selector": {
            "repositoryLocationName": "mnist",
            "repositoryName": "__repository__",
            "jobName": "train_model",
        },
        "runConfigData": {"ops": {}},
        "executionMetadata": {"tags": [{"key": "a", "value": "b"}]},
    }
    assert "operationName" not in decision.forward


def test_a_job_smuggled_in_a_literal_is_checked_like_a_variable() -> None:
    document = """mutation { launchRun(executionParams: {selector: {repositoryLocationName: "mnist",
        repositoryName: "__repository__", jobName: "mnist_pipeline"}}) { __typename } }"""
    denied(authorize(ADF, document, None, None), 403, "mnist_pipeline", "not allowed")


def test_run_id_becomes_the_idempotency_tag() -> None:
    value = params()
    value["executionMetadata"]["runId"] = "6f1c0c8e-1b7a-4c53-9a4e-3f0b5d2f3a10"
    decision = launch({"executionParams": value})
    assert decision.allowed and decision.idempotency_key == "6f1c0c8e-1b7a-4c53-9a4e-3f0b5d2f3a10"
    sent = decision.forward["variables"]["executionParams"]["executionMetadata"]
    assert "runId" not in sent  # Dagster 1.13's schema has no such field
    assert sent["tags"][-1] == {"key": IDEMPOTENCY_TAG, "value": "6f1c0c8e-1b7a-4c53-9a4e-3f0b5d2f3a10"}


def test_partition_tag_mode_default_and_pipeline_name_are_fine() -> None:
    value = params(mode="default")
    value["executionMetadata"]["tags"].append({"key": "dagster/partition", "value": "batch-1"})
    value["selector"] = {
        "repositoryLocationName": "mnist",
        "repositoryName": "__repository__",
        "pipelineName": "score_batch",
    }
    assert launch({"executionParams": value}).allowed
    # Nulls are the same as absent fields.
    assert launch({"executionParams": params(stepKeys=None, preset=None)}).allowed


def test_status_query_is_allowed() -> None:
    decision = authorize(ADF, STATUS, {"runId": "0b6c2e9a-run"}, "RunStatus")
    assert decision.allowed and decision.run_id == "0b6c2e9a-run"
    assert decision.forward["variables"] == {"runId": "0b6c2e9a-run"}
    literal = authorize(ADF, 'query { runOrError(runId: "abc") { ... on Run { status } } }', None, None)
    assert literal.allowed and literal.forward["variables"] == {"runId": "abc"}
    assert authorize(ADF, 'query { __typename runOrError(runId: "abc") { __typename } }', None, None).allowed


def test_status_needs_no_launch_permission() -> None:
    nobody = Identity(name="reader", jobs=frozenset())
    assert authorize(nobody, STATUS, {"runId": "abc"}, None).allowed
    denied(launch(identity=nobody), 403, "not allowed for this identity", "allowed: none")


# ---- forbidden operations --------------------------------------------------------------------------

FORBIDDEN_DOCUMENTS = {
    "terminate": 'mutation { terminateRun(runId: "x") { __typename } }',
    "terminate_runs": 'mutation { terminateRuns(runIds: ["x"]) { __typename } }',
    "delete": 'mutation { deletePipelineRun(runId: "x") { __typename } }',
    "delete_run": 'mutation { deleteRun(runId: "x") { __typename } }',
    "wipe": "mutation { wipeAssets(assetPartitionRanges: []) { __typename } }",
    "reexecute": 'mutation { launchPipelineReexecution(reexecutionParams: {parentRunId: "x", strategy: ALL_STEPS}) { __typename } }',
    "launch_multiple": "mutation { launchMultipleRuns(executionParamsList: []) { __typename } }",
    "sensor": "mutation { startSensor(sensorSelector: {}) { __typename } }",
    "reload": 'mutation { reloadRepositoryLocation(repositoryLocationName: "mnist") { __typename } }',
    "runs": "query { runsOrError { __typename } }",
    "asset_nodes": "query { assetNodes { id } }",
    "logs": 'query { logsForRun(runId: "x") { __typename } }',
    "instance": "query { instance { info } }",
    "schema_introspection": "query { __schema { types { name } } }",
    "type_introspection": 'query { __type(name: "Run") { name } }',
    "subscription": 'subscription { pipelineRunLogs(runId: "x") { __typename } }',
    "launch_as_query": f"query {{ {LAUNCH.split('{', 1)[1]}",
    "status_as_mutation": 'mutation { runOrError(runId: "x") { __typename } }',
}


@pytest.mark.parametrize("name", FORBIDDEN_DOCUMENTS)
def test_other_operations_are_forbidden(name: str) -> None:
    denied(authorize(ADF, FORBIDDEN_DOCUMENTS[name], {}, None), 403)


def test_two_operations_or_two_fields_are_forbidden() -> None:
    two_ops = LAUNCH + STATUS
    denied(authorize(ADF, two_ops, {"runId": "x"}, "RunStatus"), 403, "exactly one operation")
    aliased = """mutation { a: launchRun(executionParams: $p) { __typename }
                            b: launchRun(executionParams: $p) { __typename } }"""
    denied(authorize(ADF, aliased, {"p": params()}, None), 403, "exactly one top-level field")
    mixed = (
        'mutation { launchRun(executionParams: $p) { __typename } terminateRun(runId: "x") { __typename } }'
    )
    denied(authorize(ADF, mixed, {"p": params()}, None), 403, "terminateRun")
    hidden = 'query { ... on Query { runOrError(runId: "x") { __typename } runsOrError { __typename } } }'
    denied(authorize(ADF, hidden, None, None), 403, "exactly one top-level field")


def test_fragments_cannot_smuggle_fields() -> None:
    spread = """query { runOrError(runId: "x") { ...F } } fragment F on Run { runConfigYaml }"""
    denied(authorize(ADF, spread, None, None), 403, "fragment")
    top = """mutation { ...M } fragment M on Mutation { deleteRun(runId: "x") { __typename } }"""
    denied(authorize(ADF, top, None, None), 403, "fragment")
    inline = 'query { runOrError(runId: "x") { ... on Run { status ... on Run { runConfigYaml } } } }'
    denied(authorize(ADF, inline, None, None), 403, "runConfigYaml")


@pytest.mark.parametrize(
    "selection",
    [
        "... on Run { runConfigYaml }",
        "... on Run { tags { key value } }",
        "... on Run { eventConnection { events { __typename } } }",
        "... on Run { assets { id } }",
        "... on Run { executionPlan { steps { key } } }",
        "... on PythonError { stack }",
        "... on PythonError { causes { message } }",
        "... on Run { status(x: 1) }",
        "... on Run { status { x } }",
        "... on Run { s: status @include(if: true) }",
    ],
)
def test_status_reads_only_status_fields(selection: str) -> None:
    document = f'query {{ runOrError(runId: "x") {{ __typename {selection} }} }}'
    decision = authorize(ADF, document, None, None)
    assert not decision.allowed and decision.status in (400, 403), decision


@pytest.mark.parametrize(
    "selection",
    [
        "... on LaunchRunSuccess { run { runConfigYaml } }",
        "... on LaunchRunSuccess { run { tags { key value } } }",
        "... on LaunchRunSuccess { run { stats { __typename } } }",
        "... on RunConfigValidationInvalid { errors { stack { entries { __typename } } } }",
        "... on RunConfigValidationInvalid { pipelineName }",
        "... on PythonError { stack }",
    ],
)
def test_launch_result_reads_only_status_fields(selection: str) -> None:
    document = f"mutation {{ launchRun(executionParams: $p) {{ __typename {selection} }} }}"
    denied(authorize(ADF, document, {"p": params()}, None), 403)


# ---- forbidden launch parameters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"stepKeys": ["mnist_model"]}, ["stepKeys"]),
        ({"preset": "x"}, ["preset"]),
        ({"mode": "other"}, ["mode"]),
        (
            {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "__repository__",
                    "jobName": "score_batch",
                    "assetSelection": [{"path": ["mnist_model"]}],
                }
            },
            ["assetSelection"],
        ),
        (
            {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "__repository__",
                    "jobName": "score_batch",
                    "solidSelection": ["x"],
                }
            },
            ["solidSelection"],
        ),
        (
            {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "__repository__",
                    "jobName": "score_batch",
                    "assetCheckSelection": [],
                }
            },
            ["assetCheckSelection"],
        ),
        (
            {
                "selector": {
                    "repositoryLocationName": "other",
                    "repositoryName": "__repository__",
                    "jobName": "score_batch",
                }
            },
            ["repositoryLocationName"],
        ),
        (
            {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "other",
                    "jobName": "score_batch",
                }
            },
            ["repositoryName"],
        ),
        (
            {
                "selector": {
                    "repositoryLocationName": "mnist",
                    "repositoryName": "__repository__",
                    "jobName": "mnist_pipeline",
                }
            },
            ["mnist_pipeline"],
        ),
        ({"runConfigData": {"resources": {"quality": {"config": {"min_accuracy": 0}}}}}, ["resources"]),
        ({"runConfigData": {"resources": {"storage": {"config": {"root": "/"}}}}}, ["resources"]),
        ({"runConfigData": {"execution": {"config": {}}}}, ["execution"]),
        ({"runConfigData": {"loggers": {"console": {}}}}, ["loggers"]),
        ({"executionMetadata": {"parentRunId": "x"}}, ["parentRunId"]),
        ({"executionMetadata": {"rootRunId": "x"}}, ["rootRunId"]),
        ({"executionMetadata": {"tags": [{"key": "dagster/max_retries", "value": "9"}]}}, ["system tag"]),
        ({"executionMetadata": {"tags": [{"key": "dagster/step_selection", "value": "x"}]}}, ["system tag"]),
        ({"executionMetadata": {"tags": [{"key": ".dagster/grpc_info", "value": "{}"}]}}, ["system tag"]),
        (
            {"executionMetadata": {"tags": [{"key": "dagster/is_resume_retry", "value": "true"}]}},
            ["system tag"],
        ),
        ({"executionMetadata": {"tags": [{"key": IDEMPOTENCY_TAG, "value": "x"}]}}, ["set by the gateway"]),
    ],
)
def test_launch_parameters_that_do_more_than_launch_are_forbidden(
    change: dict[str, Any], words: list[str]
) -> None:
    denied(launch({"executionParams": params(**change)}), 403, *words)


@pytest.mark.parametrize(
    ("variables", "words"),
    [
        ({}, ["variable that is not given"]),
        ({"executionParams": "score_batch"}, ["must be an object"]),
        ({"executionParams": params(selector="score_batch")}, ["selector"]),
        (
            {
                "executionParams": params(
                    selector={"repositoryLocationName": "mnist", "repositoryName": "__repository__"}
                )
            },
            ["jobName"],
        ),
        ({"executionParams": params(runConfigData=[1])}, ["runConfigData"]),
        ({"executionParams": params(runConfigData="resources: {}")}, ["JSON object"]),
        ({"executionParams": params(executionMetadata={"runId": "../../etc"})}, ["runId"]),
        ({"executionParams": params(executionMetadata={"runId": 7})}, ["runId"]),
        ({"executionParams": params(executionMetadata={"tags": {"a": "b"}})}, ["tags"]),
        ({"executionParams": params(executionMetadata={"tags": [{"key": "a", "value": 1}]})}, ["strings"]),
        (
            {"executionParams": params(executionMetadata={"tags": [{"key": "a", "value": "b", "x": 1}]})},
            ["exactly"],
        ),
        (
            {"executionParams": params(executionMetadata={"tags": [{"key": "a", "value": "b"}] * 51})},
            ["at most"],
        ),
    ],
)
def test_malformed_launch_parameters_are_bad_requests(variables: dict[str, Any], words: list[str]) -> None:
    denied(launch(variables), 400, *words)


def test_status_needs_a_plain_run_id() -> None:
    denied(authorize(ADF, STATUS, {"runId": "../x"}, None), 400, "runId")
    denied(authorize(ADF, STATUS, {}, None), 400, "not given")
    denied(
        authorize(ADF, 'query { runOrError(runId: "x", extra: 1) { __typename } }', None, None), 403, "extra"
    )


# ---- malformed documents ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "variables", "operation_name", "status", "word"),
    [
        ("", None, None, 400, "no GraphQL query"),
        (None, None, None, 400, "no GraphQL query"),
        ("mutation {", None, None, 400, "does not parse"),
        ("{ " * 3000 + "}" * 3000, None, None, 400, ""),
        ("type Query { a: Int }", None, None, 400, "only one operation"),
        (LAUNCH, ["x"], None, 400, "'variables'"),
        (LAUNCH, {"executionParams": params()}, "Other", 400, "operationName"),
        (LAUNCH, {"executionParams": params()}, 7, 400, "operationName"),
        (
            "mutation M($p: ExecutionParams = {}) { launchRun(executionParams: $p) { __typename } }",
            None,
            None,
            403,
            "default value",
        ),
        (
            "mutation M($p: ExecutionParams!) @x { launchRun(executionParams: $p) { __typename } }",
            {"p": {}},
            None,
            403,
            "directives",
        ),
        (
            "mutation { launchRun(executionParams: $p) @skip(if: false) { __typename } }",
            {"p": {}},
            None,
            403,
            "directives",
        ),
        ("mutation { launchRun(executionParams: $p) }", {"p": params()}, None, 400, "selection"),
        (
            "mutation { launchRun(executionParams: $p, extra: 1) { __typename } }",
            {"p": params()},
            None,
            403,
            "extra",
        ),
        ("mutation { launchRun { __typename } }", None, None, 400, "executionParams"),
        ("mutation { __typename }", None, None, 403, "found: none"),
    ],
)
def test_malformed_documents(
    document: Any, variables: Any, operation_name: Any, status: int, word: str
) -> None:
    denied(authorize(ADF, document, variables, operation_name), status, word)


def test_forwarded_document_is_the_checked_one_and_parses() -> None:
    """The canonical request keeps the caller's selection (aliases too) and nothing else."""
    document = """mutation Go($x: String, $executionParams: ExecutionParams!) { t: __typename
        r: launchRun(executionParams: $executionParams) { kind: __typename ... on LaunchRunSuccess { run { id: runId } } } }"""
    variables = {"executionParams": params(), "x": "unused"}
    original = copy.deepcopy(variables)
    decision = authorize(ADF, document, variables, "Go")
    assert decision.allowed
    assert variables == original  # the caller's variables are not modified
    forwarded = print_ast(parse(decision.forward["query"]))
    assert forwarded == print_ast(
        parse("""mutation Go($executionParams: ExecutionParams!) { t: __typename
        r: launchRun(executionParams: $executionParams) { kind: __typename ... on LaunchRunSuccess { run { id: runId } } } }""")
    )
    assert json.loads(json.dumps(decision.forward)) == decision.forward
