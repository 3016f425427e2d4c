"""What an authenticated caller of the gateway may ask Dagster's GraphQL API: the pure part, no I/O.

`authorize(identity, document, variables, operation_name, location=..., partitions=...)` parses the
GraphQL document with graphql-core and allows exactly what an ADF pipeline template needs
(adf_bridge/templates), nothing more:

- **`launchRun`** (a mutation) of a job the identity is allowlisted for, in the configured code
  location, with only the execution parameters that launch that job as it is: `selector`
  (`repositoryLocationName`, `repositoryName`, `jobName`/`pipelineName`), `runConfigData` with op config
  only (`ops`: no `resources`, `execution` or `loggers`, which would override deployment settings), `mode`
  ("default" only), and `executionMetadata.tags` (the caller's own tags, passed through unchanged, among
  them `adf/pipeline_run_id`, the idempotency key the instance's run coordinator acts on; plus
  `dagster/partition` to pick the partition). Refused because each does more than launch the job:
  `stepKeys` (step subset), `preset`, op/asset/check subsets in the selector, `rootRunId` /
  `parentRunId` (re-execution lineage), `executionMetadata.runId` (not in Dagster 1.13's schema), and
  `dagster/*` system tags other than the partition (they change retries, priority, step selection...).
- **`addDynamicPartition`** (a mutation) of a dynamic partitions definition that belongs to a job the
  identity may launch (`partitions`: job name -> its dynamic partitions definition), in this code
  location: a partitioned job's run needs its partition to exist. The key must be a valid inference
  batch id (`assets.batch_ids`, the rules the blob sensors and the asset apply: one folder name).
- **`runOrError`** (a query) reading a run's status: only the fields in `graphql_shapes.RUN_STATUS_FIELDS` and
  error messages; no config, tags, logs, assets or stack traces.
- **`logsForRun`** (a query) reading, of a run's events, only the *failure* events' words: a step
  failure's `stepKey`, `message` and `error { message causes { message } }`, a run failure's or
  cancellation's `message`; every other event only as `__typename`. This is how a pipeline reports
  Dagster's error when a run ends FAILURE or CANCELED. Unlike the rest, this selection is checked by
  type: fields of events are allowed only inside `... on ExecutionStepFailureEvent` /
  `RunFailureEvent` / `RunCanceledEvent`, so no fragment on another event type can read log messages.

Everything else is refused, with a reason: other mutations or queries, and any document whose shape is
not one of the allowed ones (`graphql_shapes`: one operation, one top-level field, its allowlisted
selections, no named fragments, directives, subscriptions or variable defaults).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    GraphQLError,
    NamedTypeNode,
    NameNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    VariableDefinitionNode,
    VariableNode,
    parse,
    print_ast,
)
from graphql.pyutils import Undefined
from graphql.utilities import value_from_ast_untyped

from adf_bridge.gateway.graphql_shapes import (
    ARGUMENTS,
    OPERATIONS,
    Refused,
    bad,
    check_selection,
    forbidden,
    single_operation,
    single_top_level_field,
)
from assets.batch_ids import batch_id_problem

# Top-level run config sections a caller may send: op config only (see `_authorize_launch`).
ALLOWED_RUN_CONFIG_KEYS: frozenset[str] = frozenset({"ops"})
# Dagster's own tags a caller may set; other `dagster/` (and `.dagster/`) tags change how the run executes.
# `dagster/max_runtime` (whole seconds, within MAX_RUNTIME_BOUNDS) is how long the run may last: the
# generated pipelines send their `timeout` so that ADF and Dagster stop together.
MAX_RUNTIME_TAG = "dagster/max_runtime"
ALLOWED_SYSTEM_TAGS: frozenset[str] = frozenset({"dagster/partition", MAX_RUNTIME_TAG})
MAX_RUNTIME_BOUNDS = (60, 7 * 86_400)  # a minute to ADF's longest Until timeout, 7 days
MAX_TAGS = 50
MAX_TAG_KEY, MAX_TAG_VALUE = 256, 4096
MAX_DOCUMENT_CHARS = 20_000
MAX_TOKENS = 2_000  # graphql-core stops parsing beyond this: no parser work for giant documents
# A run id is used in URLs and file names by Dagster; ADF's run ids are GUIDs.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
REPOSITORY_NAME = "__repository__"  # Dagster's name for a code location's single Definitions


@dataclass(frozen=True)
class Identity:
    """An authenticated caller: who it is (for logs) and which jobs it may launch.

    `object_id` / `app_id` are the Entra `oid` and `azp`/`appid` claims (None in static-token mode)."""

    name: str
    jobs: frozenset[str]
    object_id: str | None = None
    app_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """The verdict on one request. `status` is the HTTP status to answer when not allowed (400: not a
    well-formed request; 403: well-formed but not permitted)."""

    allowed: bool
    status: int
    reason: str
    operation: str | None = None
    job: str | None = None
    run_id: str | None = None
    # What to send upstream when allowed: the checked operation re-printed with its one argument as a
    # variable, and the resolved value of that variable (so what was checked is exactly what runs).
    forward: dict[str, Any] = field(default_factory=dict)
    document: DocumentNode | None = None


def authorize(
    identity: Identity,
    document: str | None,
    variables: Mapping[str, Any] | None,
    operation_name: str | None,
    *,
    location: str = "mnist",
    partitions: Mapping[str, str] | None = None,
) -> Decision:
    """Decide whether `identity` may send this GraphQL request (see the module docstring).

    `location` is the code location whose jobs may be launched; `partitions` maps each job with dynamic
    partitions to the name of its `DynamicPartitionsDefinition` (none: no partition may be added)."""
    operation: str | None = None
    try:
        if not isinstance(document, str) or not document.strip():
            raise bad("the request has no GraphQL query")
        if len(document) > MAX_DOCUMENT_CHARS:
            raise bad(f"the GraphQL query is longer than {MAX_DOCUMENT_CHARS} characters")
        if variables is None:
            variables = {}
        if not isinstance(variables, Mapping):
            raise bad("'variables' must be a JSON object")
        if operation_name is not None and not isinstance(operation_name, str):
            raise bad("'operationName' must be a string")
        try:
            doc = parse(document, no_location=True, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            raise bad(f"the GraphQL query does not parse: {error.message}") from None
        op = single_operation(doc, operation_name)
        field_node = single_top_level_field(op)
        operation = field_node.name.value
        kind, allowed_tree = OPERATIONS[operation]
        if op.operation != kind:
            raise forbidden(f"'{operation}' must be sent as a {kind.value}")
        check_selection(field_node.selection_set, allowed_tree, operation)
        args = {arg.name.value: arg.value for arg in field_node.arguments}
        if operation == "launchRun":
            decision = _authorize_launch(identity, args, dict(variables), location)
        elif operation == "addDynamicPartition":
            decision = _authorize_add_partition(identity, args, dict(variables), location, partitions or {})
        else:
            decision = _authorize_run_read(operation, args, dict(variables))
        if not decision.allowed:
            return decision
        return _with_forward(decision, doc, op, field_node)
    except Refused as refused:
        return Decision(False, refused.status, refused.reason, operation=operation)


def _with_forward(
    decision: Decision, doc: DocumentNode, op: OperationDefinitionNode, node: FieldNode
) -> Decision:
    """The decision plus the canonical request: `op` with each of its arguments passed as a variable."""
    assert decision.operation is not None
    types = ARGUMENTS[decision.operation]
    op.variable_definitions = tuple(
        VariableDefinitionNode(
            variable=VariableNode(name=NameNode(value=arg)),
            type=NonNullTypeNode(type=NamedTypeNode(name=NameNode(value=type_name))),
            directives=(),
        )
        for arg, type_name in types.items()
    )
    node.arguments = tuple(
        ArgumentNode(name=NameNode(value=arg), value=VariableNode(name=NameNode(value=arg))) for arg in types
    )
    forward = {"query": print_ast(doc), "variables": {arg: decision.forward[arg] for arg in types}}
    if op.name is not None:
        forward["operationName"] = op.name.value
    return Decision(
        True, 200, decision.reason, operation=decision.operation, job=decision.job, run_id=decision.run_id,
        forward=forward, document=doc,
    )  # fmt: skip


def _value(args: Mapping[str, Any], name: str, variables: dict[str, Any], operation: str) -> Any:
    """An argument's value as the server will see it: literal, variable, or literal holding variables."""
    extra = sorted(set(args) - {name})
    if extra:
        raise forbidden(f"{operation} takes only '{name}', found: {', '.join(extra)}")
    if name not in args:
        raise bad(f"{operation} needs the argument '{name}'")
    value = value_from_ast_untyped(args[name], variables)
    if value is Undefined:
        raise bad(f"{operation}: '{name}' refers to a variable that is not given")
    return value


def _authorize_run_read(operation: str, args: Mapping[str, Any], variables: dict[str, Any]) -> Decision:
    """`runOrError` / `logsForRun`: one run, by id (the selection is checked by the caller)."""
    run_id = _value(args, "runId", variables, operation)
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise bad(f"{operation}: 'runId' must be a run id (letters, digits, '-' or '_', at most 64)")
    reason = "run status" if operation == "runOrError" else "failure events of a run"
    return Decision(True, 200, reason, operation=operation, run_id=run_id, forward={"runId": run_id})


def _authorize_add_partition(
    identity: Identity,
    args: Mapping[str, Any],
    variables: dict[str, Any],
    location: str,
    partitions: Mapping[str, str],
) -> Decision:
    operation = "addDynamicPartition"
    names = ARGUMENTS[operation]
    extra = sorted(set(args) - set(names))
    if extra:
        raise forbidden(f"{operation} takes only {', '.join(names)}, found: {', '.join(extra)}")
    values = {
        name: _value({n: args[n] for n in args if n == name}, name, variables, operation) for name in names
    }
    selector = values["repositorySelector"]
    if not isinstance(selector, dict):
        raise bad(f"{operation}: 'repositorySelector' must be an object naming the code location")
    _only(selector, {"repositoryLocationName", "repositoryName"}, "repositorySelector")
    if selector.get("repositoryLocationName") != location:
        raise forbidden(f"repositorySelector.repositoryLocationName must be {location!r}")
    if selector.get("repositoryName") != REPOSITORY_NAME:
        raise forbidden(f"repositorySelector.repositoryName must be {REPOSITORY_NAME!r}")
    definition, key = values["partitionsDefName"], values["partitionKey"]
    if not isinstance(definition, str) or not definition:
        raise bad(f"{operation}: 'partitionsDefName' must name a dynamic partitions definition")
    if not isinstance(key, str):
        raise bad(
            f"{operation}: 'partitionKey' must be a string (an inference batch id), found {type(key).__name__}"
        )
    # The rules the sensors and the asset apply to a batch id: what ADF adds is what a folder could be.
    if problem := batch_id_problem(key):
        raise bad(f"{operation}: 'partitionKey': {problem}")
    # Only the partitions of a job the identity may launch: adding one is part of launching that job.
    jobs = sorted(job for job in identity.jobs if partitions.get(job) == definition)
    if not jobs:
        allowed = ", ".join(sorted({partitions[j] for j in identity.jobs if j in partitions})) or "none"
        return Decision(
            False, 403,
            f"partitions {definition!r} do not belong to a job this identity may launch (allowed: {allowed})",
            operation=operation,
        )  # fmt: skip
    forward = {
        "repositorySelector": {"repositoryLocationName": location, "repositoryName": REPOSITORY_NAME},
        "partitionsDefName": definition,
        "partitionKey": key,
    }
    return Decision(
        True, 200, f"partition of job {jobs[0]!r}", operation=operation, job=jobs[0], forward=forward
    )


def _authorize_launch(
    identity: Identity, args: Mapping[str, Any], variables: dict[str, Any], location: str
) -> Decision:
    params = _value(args, "executionParams", variables, "launchRun")
    if not isinstance(params, dict):
        raise bad("launchRun: 'executionParams' must be an object")
    _only(params, {"selector", "runConfigData", "mode", "executionMetadata"}, "executionParams")
    if params.get("mode") not in (None, "default"):
        raise forbidden("executionParams.mode: only 'default' is allowed")

    selector = params.get("selector")
    if not isinstance(selector, dict):
        raise bad("executionParams.selector must be an object naming the job")
    _only(selector, {"repositoryLocationName", "repositoryName", "jobName", "pipelineName"}, "selector")
    job = selector.get("jobName", selector.get("pipelineName"))
    if (
        "jobName" in selector
        and "pipelineName" in selector
        and selector["jobName"] != selector["pipelineName"]
    ):
        raise bad("selector: jobName and pipelineName differ")
    if not isinstance(job, str) or not job:
        raise bad("selector.jobName must name the job to launch")
    if selector.get("repositoryLocationName") != location:
        raise forbidden(f"selector.repositoryLocationName must be {location!r}")
    if selector.get("repositoryName", REPOSITORY_NAME) != REPOSITORY_NAME:
        raise forbidden(f"selector.repositoryName must be {REPOSITORY_NAME!r}")
    if job not in identity.jobs:
        allowed = ", ".join(sorted(identity.jobs)) or "none"
        return Decision(
            False, 403, f"job {job!r} is not allowed for this identity (allowed: {allowed})",
            operation="launchRun", job=job,
        )  # fmt: skip

    config = params.get("runConfigData")
    if config is not None:
        if not isinstance(config, dict):
            raise bad("executionParams.runConfigData must be a JSON object")
        # Run config can also override resource config (storage root, compute work dir, the MNIST source
        # URL, the accuracy a model needs to be promoted), the executor and loggers: deployment settings,
        # not launch parameters. Only op config (e.g. training hyperparameters) is the caller's.
        _only(config, set(ALLOWED_RUN_CONFIG_KEYS), "runConfigData")

    forwarded = {k: v for k, v in params.items() if v is not None}
    metadata = params.get("executionMetadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise bad("executionParams.executionMetadata must be an object")
        # No runId: Dagster 1.13's schema has none. Idempotency is the run coordinator's, keyed by the
        # `adf/pipeline_run_id` tag, which passes through here like any other tag of the caller's.
        _only(metadata, {"tags"}, "executionMetadata")
        tags = metadata.get("tags") or []
        _check_tags(tags)
        forwarded["executionMetadata"] = {"tags": tags}
    return Decision(
        True, 200, "launch of an allowed job", operation="launchRun", job=job,
        forward={"executionParams": forwarded},
    )  # fmt: skip


def _check_tags(tags: Any) -> None:
    if tags is None:
        return
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise bad(f"executionMetadata.tags must be a list of at most {MAX_TAGS} {{key, value}} objects")
    for tag in tags:
        if not isinstance(tag, dict) or set(tag) != {"key", "value"}:
            raise bad("each tag must be an object with exactly 'key' and 'value'")
        key, value = tag["key"], tag["value"]
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise bad("tag keys and values must be strings (keys not empty)")
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise bad(f"tag too long (key at most {MAX_TAG_KEY}, value at most {MAX_TAG_VALUE} characters)")
        system = key.lstrip(".").startswith("dagster/") or key.startswith(".")
        if system and key not in ALLOWED_SYSTEM_TAGS:
            raise forbidden(
                f"tag {key!r} is a Dagster system tag; of those only {', '.join(sorted(ALLOWED_SYSTEM_TAGS))} "
                "may be set"
            )
        low, high = MAX_RUNTIME_BOUNDS
        if key == MAX_RUNTIME_TAG and not (value.isdigit() and low <= int(value) <= high):
            raise bad(
                f"tag {MAX_RUNTIME_TAG} must be whole seconds from {low} to {high}, found {value[:20]!r}"
            )


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(k for k in obj if k not in allowed)
    # A null field is the same as an absent one for Dagster's input objects.
    extra = [k for k in extra if obj[k] is not None]
    if extra:
        raise forbidden(f"{where}: {', '.join(extra)} not allowed (allowed: {', '.join(sorted(allowed))})")
