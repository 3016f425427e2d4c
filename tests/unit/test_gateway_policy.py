"""The gateway's authorization, as a pure function: what an authenticated identity may ask Dagster's GraphQL."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from graphql import parse, print_ast

from adf_bridge.gateway.app import json_nesting_exceeds
from adf_bridge.gateway.policy import Decision, Identity, authorize
from adf_bridge.templates.queries import ADD_PARTITION_QUERY, FAILURE_QUERY, LAUNCH_QUERY, STATUS_QUERY
from assets.batch_ids import batch_id_problem
from tests.support.gateway import LAUNCH, STATUS

ADF = Identity(name="adf", jobs=frozenset({"score_batch", "train_model"}), object_id="oid-1")
# As the gateway reads them from the code location (tests/integration/test_gateway.py checks that).
PARTITIONS = {"score_batch": "inference_batches", "mnist_pipeline": "inference_batches"}


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


def test_tags_pass_through_unchanged_including_the_idempotency_tag() -> None:
    """Idempotency is the run coordinator's (keyed by adf/pipeline_run_id): the gateway adds nothing."""
    value = params()
    value["executionMetadata"]["tags"] += [
        {"key": "adf/pipeline_name", "value": "dagster_score_batch"},
        {"key": "dagster/partition", "value": "batch-1"},
    ]
    decision = launch({"executionParams": value})
    assert decision.allowed
    assert decision.forward["variables"]["executionParams"]["executionMetadata"] == value["executionMetadata"]


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("60", True),
        ("86100", True),
        ("604800", True),
        ("59", False),
        ("604801", False),
        ("1e5", False),
        ("-600", False),
        ("", False),
    ],
)
def test_a_max_runtime_tag_passes_only_as_whole_seconds_within_bounds(value: str, allowed: bool) -> None:
    """The generated pipelines send their timeout as dagster/max_runtime; anything else (a typo, a
    run that could never end) is refused before it reaches Dagster."""
    tags = params()
    tags["executionMetadata"]["tags"].append({"key": "dagster/max_runtime", "value": value})
    decision = launch({"executionParams": tags})
    if allowed:
        assert decision.allowed, decision
    else:
        denied(decision, 400, "dagster/max_runtime", "whole seconds from 60 to 604800")


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
    "delete_partitions": 'mutation { deleteDynamicPartitions(repositorySelector: {repositoryLocationName: "mnist", repositoryName: "__repository__"}, partitionsDefName: "inference_batches", partitionKeys: ["b"]) { __typename } }',
    "partition_sets": 'query { partitionSetsOrError(repositorySelector: {repositoryLocationName: "mnist", repositoryName: "__repository__"}, pipelineName: "score_batch") { __typename } }',
    "captured_logs": 'query { capturedLogs(logKey: ["x"]) { stdout } }',
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
        ({"executionMetadata": {"runId": "6f1c0c8e-1b7a-4c53-9a4e-3f0b5d2f3a10"}}, ["runId"]),
        ({"executionMetadata": {"runId": "../../etc"}}, ["runId"]),
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


# ---- what the ADF templates send ----------------------------------------------------------------------


def test_every_request_of_the_adf_templates_is_allowed() -> None:
    """The queries come from adf_bridge/templates/queries.py, with the variables a pipeline sends."""
    tags = [{"key": "adf/pipeline_run_id", "value": "6f1c0c8e"}, {"key": "dagster/partition", "value": "b-1"}]
    requests = {
        "launch": (LAUNCH_QUERY, {"executionParams": params(executionMetadata={"tags": tags})}),
        "status": (STATUS_QUERY, {"runId": "0b6c2e9a"}),
        "failure": (FAILURE_QUERY, {"runId": "0b6c2e9a"}),
        "partition": (ADD_PARTITION_QUERY, partition_variables()),
    }
    for name, (document, variables) in requests.items():
        decision = authorize(ADF, document, variables, None, partitions=PARTITIONS)
        assert decision.allowed, (name, decision.reason)
        assert decision.forward["variables"] == variables, name
        assert print_ast(parse(decision.forward["query"])) == print_ast(parse(document)), name


# ---- addDynamicPartition: only the partitions of a job the identity may launch -----------------------


def partition_variables(**change: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "repositorySelector": {"repositoryLocationName": "mnist", "repositoryName": "__repository__"},
        "partitionsDefName": "inference_batches",
        "partitionKey": "batch-2026-11-22",
    }
    value.update(change)
    return value


def add_partition(
    variables: dict[str, Any], identity: Identity = ADF, partitions: dict[str, str] | None = PARTITIONS
) -> Decision:
    return authorize(identity, ADD_PARTITION_QUERY, variables, "AddPartition", partitions=partitions)


def test_adding_a_partition_of_an_allowed_job_is_allowed() -> None:
    decision = add_partition(partition_variables())
    assert decision.allowed and decision.operation == "addDynamicPartition" and decision.job == "score_batch"
    literal = """mutation { addDynamicPartition(repositorySelector: {repositoryLocationName: "mnist",
        repositoryName: "__repository__"}, partitionsDefName: "inference_batches", partitionKey: $k) {
        __typename ... on AddDynamicPartitionSuccess { partitionsDefName partitionKey } ... on Error { message } } }"""
    decision = authorize(ADF, literal, {"k": "b"}, None, partitions=PARTITIONS)
    assert decision.allowed and decision.forward["variables"] == partition_variables(partitionKey="b")
    assert "$partitionKey: String!" in decision.forward["query"]


@pytest.mark.parametrize(
    ("variables", "identity", "partitions", "status", "words"),
    [
        (partition_variables(partitionsDefName="other_batches"), ADF, PARTITIONS, 403, ["'other_batches'", "allowed: inference_batches"]),
        (partition_variables(), Identity(name="trainer", jobs=frozenset({"train_model"})), PARTITIONS, 403, ["allowed: none"]),
        (partition_variables(), ADF, None, 403, ["allowed: none"]),
        (partition_variables(repositorySelector={"repositoryLocationName": "other", "repositoryName": "__repository__"}), ADF, PARTITIONS, 403, ["repositoryLocationName"]),
        (partition_variables(repositorySelector={"repositoryLocationName": "mnist", "repositoryName": "x"}), ADF, PARTITIONS, 403, ["repositoryName"]),
        (partition_variables(repositorySelector={"repositoryLocationName": "mnist"}), ADF, PARTITIONS, 403, ["repositoryName"]),
        (partition_variables(repositorySelector={"repositoryLocationName": "mnist", "repositoryName": "__repository__", "x": 1}), ADF, PARTITIONS, 403, ["x not allowed"]),
        (partition_variables(repositorySelector="mnist"), ADF, PARTITIONS, 400, ["repositorySelector"]),
        (partition_variables(partitionKey=""), ADF, PARTITIONS, 400, ["partitionKey"]),
        (partition_variables(partitionKey=7), ADF, PARTITIONS, 400, ["partitionKey"]),
        (partition_variables(partitionKey="k" * 1025), ADF, PARTITIONS, 400, ["partitionKey"]),
        (partition_variables(partitionsDefName=""), ADF, PARTITIONS, 400, ["partitionsDefName"]),
        ({"repositorySelector": partition_variables()["repositorySelector"], "partitionsDefName": "inference_batches"}, ADF, PARTITIONS, 400, ["not given"]),
    ],
)  # fmt: skip
def test_adding_other_partitions_is_refused(
    variables: dict[str, Any],
    identity: Identity,
    partitions: dict[str, str] | None,
    status: int,
    words: list[str],
) -> None:
    denied(add_partition(variables, identity, partitions), status, *words)


@pytest.mark.parametrize(
    "key",
    ["../../models/mnist", "a/b", "a\\b", "..", "x..y", "batch\u0007", "tab\there", "b" * 201, "   "],
)
def test_a_partition_key_must_be_an_inference_batch_id_in_the_sensors_words(key: str) -> None:
    problem = batch_id_problem(key)
    assert problem is not None
    denied(add_partition(partition_variables(partitionKey=key)), 400, f"'partitionKey': {problem}")


@pytest.mark.parametrize("key", ["2026-12-07-batch-1", "batch ü 1", "b" * 200, "a.b", "_x"])
def test_a_valid_batch_id_is_a_valid_partition_key(key: str) -> None:
    assert batch_id_problem(key) is None
    assert add_partition(partition_variables(partitionKey=key)).allowed


@pytest.mark.parametrize(
    ("body", "exceeds"),
    [
        (b'{"a": [[1]]}', 0),
        (b'{"a": "[[[[[[[[[["}', 0),  # brackets in a string nest nothing
        (b'{"a": "\\"[[[[[[", "b": [[[]]]}', 0),  # nor after an escaped quote
        (b"[" * 5 + b"]" * 5, 0),
        (b"[" * 6 + b"]" * 6, 6),
        (b'{"a": {"b": {"c": {"d": {"e": {}}}}}}', 6),
        (b"[" * 40_000, 6),  # stops counting at the limit, whatever follows
    ],
)
def test_json_nesting_is_measured_without_decoding(body: bytes, exceeds: int) -> None:
    assert json_nesting_exceeds(body, 5) == exceeds


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ('mutation { addDynamicPartition(repositorySelector: $s, partitionsDefName: "inference_batches") { __typename } }', ["partitionKey"]),
        ('mutation { addDynamicPartition(repositorySelector: $s, partitionsDefName: "inference_batches", partitionKey: "k", extra: 1) { __typename } }', ["extra"]),
        ('query { addDynamicPartition(repositorySelector: $s, partitionsDefName: "inference_batches", partitionKey: "k") { __typename } }', ["mutation"]),
        ('mutation { addDynamicPartition(repositorySelector: $s, partitionsDefName: "inference_batches", partitionKey: "k") { ... on PythonError { stack } } }', ["stack"]),
        ('mutation { addDynamicPartition(repositorySelector: $s, partitionsDefName: "inference_batches", partitionKey: "k") { ... on UnauthorizedError { message } ... on PythonError { causes { message } } } }', ["causes"]),
    ],
)  # fmt: skip
def test_malformed_or_prying_partition_requests_are_refused(document: str, words: list[str]) -> None:
    decision = authorize(
        ADF, document, {"s": partition_variables()["repositorySelector"]}, None, partitions=PARTITIONS
    )
    assert not decision.allowed and decision.status in (400, 403), decision
    for word in words:
        assert word in decision.reason, decision.reason


# ---- logsForRun: failure events' words only ------------------------------------------------------


def test_failure_events_of_a_run_are_readable() -> None:
    decision = authorize(ADF, FAILURE_QUERY, {"runId": "r-1"}, "RunFailure")
    assert decision.allowed and decision.operation == "logsForRun" and decision.run_id == "r-1"
    narrow = 'query { logsForRun(runId: "r-1") { ... on EventConnection { events { __typename ... on RunFailureEvent { message } } } } }'
    assert authorize(ADF, narrow, None, None).allowed
    # A fragment on an interface may wrap one on a failure type: it still reaches failure events only.
    nested = 'query { logsForRun(runId: "r-1") { ... on EventConnection { events { ... on MessageEvent { ... on RunCanceledEvent { message } } } } } }'
    assert authorize(ADF, nested, None, None).allowed
    # No launch permission is needed to read a run (as for its status).
    assert authorize(Identity(name="reader", jobs=frozenset()), FAILURE_QUERY, {"runId": "r-1"}, None).allowed


@pytest.mark.parametrize(
    "events",
    [
        "message",  # every event's message (log lines carry data)
        "... on MessageEvent { message }",  # the same through an interface
        "... on LogMessageEvent { message }",
        "... on EngineEvent { message }",
        "... on MessageEvent { ... on LogMessageEvent { message } }",
        "... { message }",
        "... on ExecutionStepFailureEvent { error { stack } }",
        "... on ExecutionStepFailureEvent { error { cause { message } } }",
        "... on ExecutionStepFailureEvent { error { causes { stack } } }",
        "... on ExecutionStepFailureEvent { failureMetadata { label } }",
        "... on ExecutionStepFailureEvent { metadataEntries { label } }",
        "... on ExecutionStepFailureEvent { runId timestamp level }",
        "... on RunFailureEvent { error { stack } }",
        "... on MaterializationEvent { assetKey { path } }",
        "... on ExecutionStepOutputEvent { outputName }",
        "...F",
        "... on RunFailureEvent @include(if: true) { message }",
        "... on RunFailureEvent { message(x: 1) }",
    ],
)
def test_other_events_and_fields_of_the_log_are_forbidden(events: str) -> None:
    document = f'query {{ logsForRun(runId: "r-1") {{ ... on EventConnection {{ events {{ __typename {events} }} }} }} }}'
    decision = authorize(ADF, document, None, None)
    assert not decision.allowed and decision.status in (400, 403), decision


@pytest.mark.parametrize(
    ("document", "variables", "status", "word"),
    [
        ('query { logsForRun(runId: "r-1") { ... on EventConnection { cursor } } }', None, 403, "cursor"),
        ('query { logsForRun(runId: "r-1") { ... on EventConnection { hasMore } } }', None, 403, "hasMore"),
        ('query { logsForRun(runId: "r-1", afterCursor: "5") { __typename } }', None, 403, "afterCursor"),
        ('query { logsForRun(runId: "r-1", limit: 10) { __typename } }', None, 403, "limit"),
        ("query L($r: ID!) { logsForRun(runId: $r) { __typename } }", {"r": "../x"}, 400, "runId"),
        ('mutation { logsForRun(runId: "r-1") { __typename } }', None, 403, "query"),
        ('query { logsForRun(runId: "r-1") { ... on PythonError { stack } } }', None, 403, "stack"),
    ],
)
def test_log_reads_are_limited_to_one_run_and_no_paging(
    document: str, variables: dict[str, Any] | None, status: int, word: str
) -> None:
    denied(authorize(ADF, document, variables, None), status, word)
