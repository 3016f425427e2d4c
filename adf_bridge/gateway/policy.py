"""What an authenticated caller of the gateway may ask Dagster's GraphQL API: the pure part, no I/O.

`authorize(identity, document, variables, operation_name, location=..., partitions=...)` parses the
GraphQL document with graphql-core and allows exactly what an ADF pipeline template needs
(adf_bridge/templates.py), nothing more:

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
  location: a partitioned job's run needs its partition to exist.
- **`runOrError`** (a query) reading a run's status: only the fields in `RUN_STATUS_FIELDS` and
  error messages; no config, tags, logs, assets or stack traces.
- **`logsForRun`** (a query) reading, of a run's events, only the *failure* events' words: a step
  failure's `stepKey`, `message` and `error { message causes { message } }`, a run failure's or
  cancellation's `message`; every other event only as `__typename`. This is how a pipeline reports
  Dagster's error when a run ends FAILURE or CANCELED. Unlike the rest, this selection is checked by
  type: fields of events are allowed only inside `... on ExecutionStepFailureEvent` /
  `RunFailureEvent` / `RunCanceledEvent`, so no fragment on another event type can read log messages.

Results may be narrowed with inline fragments (`... on LaunchRunSuccess`), and `__typename` is
allowed anywhere. Everything else is refused, with a reason: other mutations or queries, introspection,
several operations or several top-level fields, named fragments (they could carry fields out of sight
of a per-field check), directives, subscriptions, variable defaults (the value checked must be the value
used), and nested fields outside the allowlists.

Outside the events of `logsForRun`, the check is by field *path*, not by schema type: a field is allowed
when its path of field names (aliases ignored) is in the allowlist, whatever inline fragments sit
between. That is stricter than a type-aware check and needs no schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from graphql import (
    ArgumentNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    NamedTypeNode,
    NameNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableDefinitionNode,
    VariableNode,
    parse,
    print_ast,
)
from graphql.pyutils import Undefined
from graphql.utilities import value_from_ast_untyped

# The Dagster Run fields a caller may read: what a status poll needs, nothing that carries data.
RUN_STATUS_FIELDS: frozenset[str] = frozenset(
    {"__typename", "id", "runId", "status", "jobName", "creationTime", "startTime", "endTime", "updateTime"}
)
# An error's own words, without stack traces (server paths and values) or causes.
ERROR_FIELDS: frozenset[str] = frozenset({"__typename", "message"})

# Allowed selections: field name -> allowed sub-selection (None: a leaf, no sub-selection).
Tree = Mapping[str, "Tree | ByType | None"]
_RUN: Tree = dict.fromkeys(RUN_STATUS_FIELDS)
LAUNCH_RUN_RESULT: Tree = {
    **dict.fromkeys(ERROR_FIELDS),  # PipelineNotFoundError, RunConflict, InvalidSubsetError, PythonError...
    "run": _RUN,  # LaunchRunSuccess.run
    # RunConfigValidationInvalid.errors: what was wrong with the config, and why.
    "errors": {"__typename": None, "message": None, "reason": None},
}
RUN_OR_ERROR_RESULT: Tree = {**_RUN, **dict.fromkeys(ERROR_FIELDS)}  # Run | RunNotFoundError | PythonError
# AddDynamicPartitionSuccess | DuplicateDynamicPartitionError | UnauthorizedError | PythonError
ADD_PARTITION_RESULT: Tree = {
    **dict.fromkeys(ERROR_FIELDS),
    "partitionsDefName": None,
    "partitionKey": None,
}


@dataclass(frozen=True)
class ByType:
    """A selection checked by type: directly (or through fragments on other types) only `common`; inside
    `... on <T>` for a T of `types`, the tree `types[T]`. For lists of events, where a path-based check
    could not tell a failure's message from any other event's."""

    types: Mapping[str, Tree]
    common: Tree = field(default_factory=lambda: {"__typename": None})


_ERROR_MESSAGE: Tree = {"__typename": None, "message": None}
# The failure events of a run, and of them only what says what went wrong (no stack, no metadata).
FAILURE_EVENTS = ByType(
    {
        "ExecutionStepFailureEvent": {
            "__typename": None,
            "stepKey": None,
            "message": None,
            "error": {**_ERROR_MESSAGE, "causes": _ERROR_MESSAGE},
        },
        "RunFailureEvent": _ERROR_MESSAGE,
        "RunCanceledEvent": _ERROR_MESSAGE,
    }
)
LOGS_FOR_RUN_RESULT: Tree = {  # EventConnection | RunNotFoundError | PythonError
    **dict.fromkeys(ERROR_FIELDS),
    "events": FAILURE_EVENTS,
}

# Top-level fields and the operation type each belongs to.
OPERATIONS: dict[str, tuple[OperationType, Tree]] = {
    "launchRun": (OperationType.MUTATION, LAUNCH_RUN_RESULT),
    "addDynamicPartition": (OperationType.MUTATION, ADD_PARTITION_RESULT),
    "runOrError": (OperationType.QUERY, RUN_OR_ERROR_RESULT),
    "logsForRun": (OperationType.QUERY, LOGS_FOR_RUN_RESULT),
}
# Each operation's arguments (all required) and their GraphQL types, for the forwarded request.
ARGUMENTS: dict[str, dict[str, str]] = {
    "launchRun": {"executionParams": "ExecutionParams"},
    "addDynamicPartition": {
        "repositorySelector": "RepositorySelector",
        "partitionsDefName": "String",
        "partitionKey": "String",
    },
    "runOrError": {"runId": "ID"},
    "logsForRun": {"runId": "ID"},
}

# Top-level run config sections a caller may send: op config only (see `_authorize_launch`).
ALLOWED_RUN_CONFIG_KEYS: frozenset[str] = frozenset({"ops"})
# Dagster's own tags a caller may set; other `dagster/` (and `.dagster/`) tags change how the run executes.
ALLOWED_SYSTEM_TAGS: frozenset[str] = frozenset({"dagster/partition"})
MAX_TAGS = 50
MAX_TAG_KEY, MAX_TAG_VALUE = 256, 4096
MAX_DOCUMENT_CHARS = 20_000
MAX_TOKENS = 2_000  # graphql-core stops parsing beyond this: no parser work for giant documents
# A run id is used in URLs and file names by Dagster; ADF's run ids are GUIDs.
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
REPOSITORY_NAME = "__repository__"  # Dagster's name for a code location's single Definitions
MAX_PARTITION_KEY = 1024  # an inference batch name; Dagster checks the characters itself


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


class _Refused(Exception):
    def __init__(self, status: Literal[400, 403], reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _bad(reason: str) -> _Refused:
    return _Refused(400, reason)


def _forbidden(reason: str) -> _Refused:
    return _Refused(403, reason)


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
            raise _bad("the request has no GraphQL query")
        if len(document) > MAX_DOCUMENT_CHARS:
            raise _bad(f"the GraphQL query is longer than {MAX_DOCUMENT_CHARS} characters")
        if variables is None:
            variables = {}
        if not isinstance(variables, Mapping):
            raise _bad("'variables' must be a JSON object")
        if operation_name is not None and not isinstance(operation_name, str):
            raise _bad("'operationName' must be a string")
        try:
            doc = parse(document, no_location=True, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            raise _bad(f"the GraphQL query does not parse: {error.message}") from None
        op = _single_operation(doc, operation_name)
        field_node = _single_top_level_field(op)
        operation = field_node.name.value
        kind, allowed_tree = OPERATIONS[operation]
        if op.operation != kind:
            raise _forbidden(f"'{operation}' must be sent as a {kind.value}")
        _check_selection(field_node.selection_set, allowed_tree, operation)
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
    except _Refused as refused:
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


def _single_operation(doc: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    operations: list[OperationDefinitionNode] = []
    for definition in doc.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            raise _forbidden("named fragments are not allowed; use inline fragments ('... on Type { }')")
        if not isinstance(definition, OperationDefinitionNode):
            raise _bad(f"unexpected definition of kind {definition.kind!r}: only one operation is allowed")
        operations.append(definition)
    if len(operations) != 1:
        raise _forbidden(f"exactly one operation per request is allowed, found {len(operations)}")
    op = operations[0]
    name = op.name.value if op.name else None
    if operation_name is not None and operation_name != name:
        raise _bad(f"operationName {operation_name!r} does not name the operation in the query ({name!r})")
    if op.operation == OperationType.SUBSCRIPTION:
        raise _forbidden("subscriptions are not allowed")
    if op.directives:
        raise _forbidden("directives are not allowed")
    for definition in op.variable_definitions:
        if definition.default_value is not None:
            raise _forbidden(
                f"variable ${definition.variable.name.value} has a default value; send the value in 'variables'"
            )
        if definition.directives:
            raise _forbidden("directives are not allowed")
    return op


_SERVED = ", ".join(OPERATIONS)


def _single_top_level_field(op: OperationDefinitionNode) -> FieldNode:
    """The one data field of the operation (`__typename` may sit beside it)."""
    fields = _fields(op.selection_set, "the operation")
    data = [f for f in fields if f.name.value != "__typename"]
    for f in fields:
        if f.name.value == "__typename" and (f.arguments or f.selection_set):
            raise _bad("__typename takes no arguments or selections")
    if len(data) != 1:
        names = ", ".join(f.name.value for f in data) or "none"
        raise _forbidden(f"exactly one top-level field ({_SERVED}) is allowed, found: {names}")
    node = data[0]
    name = node.name.value
    if name not in OPERATIONS:
        what = "introspection" if name.startswith("__") else f"'{name}'"
        raise _forbidden(f"{what} is not allowed: this gateway serves only {_SERVED}")
    return node


def _fields(selection_set: SelectionSetNode | None, where: str) -> list[FieldNode]:
    """The fields of a selection set, flattening inline fragments (their type condition only narrows)."""
    if selection_set is None:
        return []
    found: list[FieldNode] = []
    for selection in selection_set.selections:
        if selection.directives:
            raise _forbidden("directives are not allowed")
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set, where))
        elif isinstance(selection, FragmentSpreadNode):
            raise _forbidden(f"fragment spreads are not allowed (in {where}); use inline fragments")
        else:  # pragma: no cover - graphql-core has no other selection kinds
            raise _bad(f"unexpected selection in {where}")
    return found


def _check_selection(selection_set: SelectionSetNode | None, allowed: Tree | ByType, path: str) -> None:
    if selection_set is None:
        raise _bad(f"'{path}' needs a selection of fields")
    if isinstance(allowed, ByType):
        _check_by_type(selection_set, allowed, path)
        return
    for node in _fields(selection_set, path):
        name = node.name.value
        here = f"{path}.{name}"
        if name not in allowed:
            permitted = ", ".join(sorted(allowed))
            raise _forbidden(f"field '{here}' is not allowed (allowed under '{path}': {permitted})")
        if node.arguments:
            raise _forbidden(f"field '{here}' takes no arguments here")
        below = allowed[name]
        if below is None:
            if node.selection_set is not None:
                raise _bad(f"field '{here}' is a leaf and takes no selection")
        else:
            _check_selection(node.selection_set, below, here)


def _check_by_type(selection_set: SelectionSetNode, allowed: ByType, path: str) -> None:
    """Fields outside a fragment on one of `allowed.types` must be in `allowed.common`.

    A fragment on another type (an interface such as `MessageEvent`, or no type condition) is checked
    the same way, so it can only reach the listed types through a fragment on them."""
    for selection in selection_set.selections:
        if selection.directives:
            raise _forbidden("directives are not allowed")
        if isinstance(selection, FieldNode):
            _check_selection(SelectionSetNode(selections=(selection,)), allowed.common, path)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else None
            if condition is not None and condition in allowed.types:
                _check_selection(selection.selection_set, allowed.types[condition], f"{path}<{condition}>")
            else:
                _check_by_type(selection.selection_set, allowed, path)
        elif isinstance(selection, FragmentSpreadNode):
            raise _forbidden(f"fragment spreads are not allowed (in {path}); use inline fragments")
        else:  # pragma: no cover - graphql-core has no other selection kinds
            raise _bad(f"unexpected selection in {path}")


def _value(args: Mapping[str, Any], name: str, variables: dict[str, Any], operation: str) -> Any:
    """An argument's value as the server will see it: literal, variable, or literal holding variables."""
    extra = sorted(set(args) - {name})
    if extra:
        raise _forbidden(f"{operation} takes only '{name}', found: {', '.join(extra)}")
    if name not in args:
        raise _bad(f"{operation} needs the argument '{name}'")
    value = value_from_ast_untyped(args[name], variables)
    if value is Undefined:
        raise _bad(f"{operation}: '{name}' refers to a variable that is not given")
    return value


def _authorize_run_read(operation: str, args: Mapping[str, Any], variables: dict[str, Any]) -> Decision:
    """`runOrError` / `logsForRun`: one run, by id (the selection is checked by the caller)."""
    run_id = _value(args, "runId", variables, operation)
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise _bad(f"{operation}: 'runId' must be a run id (letters, digits, '-' or '_', at most 64)")
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
        raise _forbidden(f"{operation} takes only {', '.join(names)}, found: {', '.join(extra)}")
    values = {
        name: _value({n: args[n] for n in args if n == name}, name, variables, operation) for name in names
    }
    selector = values["repositorySelector"]
    if not isinstance(selector, dict):
        raise _bad(f"{operation}: 'repositorySelector' must be an object naming the code location")
    _only(selector, {"repositoryLocationName", "repositoryName"}, "repositorySelector")
    if selector.get("repositoryLocationName") != location:
        raise _forbidden(f"repositorySelector.repositoryLocationName must be {location!r}")
    if selector.get("repositoryName") != REPOSITORY_NAME:
        raise _forbidden(f"repositorySelector.repositoryName must be {REPOSITORY_NAME!r}")
    definition, key = values["partitionsDefName"], values["partitionKey"]
    if not isinstance(definition, str) or not definition:
        raise _bad(f"{operation}: 'partitionsDefName' must name a dynamic partitions definition")
    if not isinstance(key, str) or not key.strip() or len(key) > MAX_PARTITION_KEY:
        raise _bad(
            f"{operation}: 'partitionKey' must be a non-empty string of at most {MAX_PARTITION_KEY} characters"
        )
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
        raise _bad("launchRun: 'executionParams' must be an object")
    _only(params, {"selector", "runConfigData", "mode", "executionMetadata"}, "executionParams")
    if params.get("mode") not in (None, "default"):
        raise _forbidden("executionParams.mode: only 'default' is allowed")

    selector = params.get("selector")
    if not isinstance(selector, dict):
        raise _bad("executionParams.selector must be an object naming the job")
    _only(selector, {"repositoryLocationName", "repositoryName", "jobName", "pipelineName"}, "selector")
    job = selector.get("jobName", selector.get("pipelineName"))
    if (
        "jobName" in selector
        and "pipelineName" in selector
        and selector["jobName"] != selector["pipelineName"]
    ):
        raise _bad("selector: jobName and pipelineName differ")
    if not isinstance(job, str) or not job:
        raise _bad("selector.jobName must name the job to launch")
    if selector.get("repositoryLocationName") != location:
        raise _forbidden(f"selector.repositoryLocationName must be {location!r}")
    if selector.get("repositoryName", REPOSITORY_NAME) != REPOSITORY_NAME:
        raise _forbidden(f"selector.repositoryName must be {REPOSITORY_NAME!r}")
    if job not in identity.jobs:
        allowed = ", ".join(sorted(identity.jobs)) or "none"
        return Decision(
            False, 403, f"job {job!r} is not allowed for this identity (allowed: {allowed})",
            operation="launchRun", job=job,
        )  # fmt: skip

    config = params.get("runConfigData")
    if config is not None:
        if not isinstance(config, dict):
            raise _bad("executionParams.runConfigData must be a JSON object")
        # Run config can also override resource config (storage root, compute work dir, the MNIST source
        # URL, the accuracy a model needs to be promoted), the executor and loggers: deployment settings,
        # not launch parameters. Only op config (e.g. training hyperparameters) is the caller's.
        _only(config, set(ALLOWED_RUN_CONFIG_KEYS), "runConfigData")

    forwarded = {k: v for k, v in params.items() if v is not None}
    metadata = params.get("executionMetadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _bad("executionParams.executionMetadata must be an object")
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
        raise _bad(f"executionMetadata.tags must be a list of at most {MAX_TAGS} {{key, value}} objects")
    for tag in tags:
        if not isinstance(tag, dict) or set(tag) != {"key", "value"}:
            raise _bad("each tag must be an object with exactly 'key' and 'value'")
        key, value = tag["key"], tag["value"]
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise _bad("tag keys and values must be strings (keys not empty)")
        if len(key) > MAX_TAG_KEY or len(value) > MAX_TAG_VALUE:
            raise _bad(f"tag too long (key at most {MAX_TAG_KEY}, value at most {MAX_TAG_VALUE} characters)")
        system = key.lstrip(".").startswith("dagster/") or key.startswith(".")
        if system and key not in ALLOWED_SYSTEM_TAGS:
            raise _forbidden(
                f"tag {key!r} is a Dagster system tag; of those only {', '.join(sorted(ALLOWED_SYSTEM_TAGS))} "
                "may be set"
            )


def _only(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(k for k in obj if k not in allowed)
    # A null field is the same as an absent one for Dagster's input objects.
    extra = [k for k in extra if obj[k] is not None]
    if extra:
        raise _forbidden(f"{where}: {', '.join(extra)} not allowed (allowed: {', '.join(sorted(allowed))})")
