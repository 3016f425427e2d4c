"""The shapes of GraphQL request the gateway lets through, and the checks of a parsed document against them.

Only one operation with one top-level field (`OPERATIONS`), and under it only the selections of its
allowlisted tree. Results may be narrowed with inline fragments (`... on LaunchRunSuccess`), and
`__typename` is allowed anywhere. Refused, with a reason: several operations or several top-level fields,
introspection, named fragments (they could carry fields out of sight of a per-field check), directives,
subscriptions, variable defaults (the value checked must be the value used), and nested fields outside the
allowlists.

Outside the events of `logsForRun`, the check is by field *path*, not by schema type: a field is allowed
when its path of field names (aliases ignored) is in the allowlist, whatever inline fragments sit
between. That is stricter than a type-aware check and needs no schema. The events are checked by type
(`ByType`): fields of events only inside `... on ExecutionStepFailureEvent` / `RunFailureEvent` /
`RunCanceledEvent`, so no fragment on another event type can read log messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

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


class Refused(Exception):
    """A request the gateway does not forward: 400 (not a well-formed request) or 403 (not permitted)."""

    def __init__(self, status: Literal[400, 403], reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def bad(reason: str) -> Refused:
    """400: the request is not well-formed."""
    return Refused(400, reason)


def forbidden(reason: str) -> Refused:
    """403: well-formed, but not something this gateway lets through."""
    return Refused(403, reason)


def single_operation(doc: DocumentNode, operation_name: str | None) -> OperationDefinitionNode:
    """The document's one operation (a query or a mutation, named `operation_name` if that is given)."""
    operations: list[OperationDefinitionNode] = []
    for definition in doc.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            raise forbidden("named fragments are not allowed; use inline fragments ('... on Type { }')")
        if not isinstance(definition, OperationDefinitionNode):
            raise bad(f"unexpected definition of kind {definition.kind!r}: only one operation is allowed")
        operations.append(definition)
    if len(operations) != 1:
        raise forbidden(f"exactly one operation per request is allowed, found {len(operations)}")
    op = operations[0]
    name = op.name.value if op.name else None
    if operation_name is not None and operation_name != name:
        raise bad(f"operationName {operation_name!r} does not name the operation in the query ({name!r})")
    if op.operation == OperationType.SUBSCRIPTION:
        raise forbidden("subscriptions are not allowed")
    if op.directives:
        raise forbidden("directives are not allowed")
    for definition in op.variable_definitions:
        if definition.default_value is not None:
            raise forbidden(
                f"variable ${definition.variable.name.value} has a default value; send the value in 'variables'"
            )
        if definition.directives:
            raise forbidden("directives are not allowed")
    return op


_SERVED = ", ".join(OPERATIONS)


def single_top_level_field(op: OperationDefinitionNode) -> FieldNode:
    """The one data field of the operation (`__typename` may sit beside it)."""
    fields = _fields(op.selection_set, "the operation")
    data = [f for f in fields if f.name.value != "__typename"]
    for f in fields:
        if f.name.value == "__typename" and (f.arguments or f.selection_set):
            raise bad("__typename takes no arguments or selections")
    if len(data) != 1:
        names = ", ".join(f.name.value for f in data) or "none"
        raise forbidden(f"exactly one top-level field ({_SERVED}) is allowed, found: {names}")
    node = data[0]
    name = node.name.value
    if name not in OPERATIONS:
        what = "introspection" if name.startswith("__") else f"'{name}'"
        raise forbidden(f"{what} is not allowed: this gateway serves only {_SERVED}")
    return node


def _fields(selection_set: SelectionSetNode | None, where: str) -> list[FieldNode]:
    """The fields of a selection set, flattening inline fragments (their type condition only narrows)."""
    if selection_set is None:
        return []
    found: list[FieldNode] = []
    for selection in selection_set.selections:
        if selection.directives:
            raise forbidden("directives are not allowed")
        if isinstance(selection, FieldNode):
            found.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            found.extend(_fields(selection.selection_set, where))
        elif isinstance(selection, FragmentSpreadNode):
            raise forbidden(f"fragment spreads are not allowed (in {where}); use inline fragments")
        else:  # pragma: no cover - graphql-core has no other selection kinds
            raise bad(f"unexpected selection in {where}")
    return found


def check_selection(selection_set: SelectionSetNode | None, allowed: Tree | ByType, path: str) -> None:
    """Every field selected under `path` is in the `allowed` tree (with no arguments), recursively."""
    if selection_set is None:
        raise bad(f"'{path}' needs a selection of fields")
    if isinstance(allowed, ByType):
        _check_by_type(selection_set, allowed, path)
        return
    for node in _fields(selection_set, path):
        name = node.name.value
        here = f"{path}.{name}"
        if name not in allowed:
            permitted = ", ".join(sorted(allowed))
            raise forbidden(f"field '{here}' is not allowed (allowed under '{path}': {permitted})")
        if node.arguments:
            raise forbidden(f"field '{here}' takes no arguments here")
        below = allowed[name]
        if below is None:
            if node.selection_set is not None:
                raise bad(f"field '{here}' is a leaf and takes no selection")
        else:
            check_selection(node.selection_set, below, here)


def _check_by_type(selection_set: SelectionSetNode, allowed: ByType, path: str) -> None:
    """Fields outside a fragment on one of `allowed.types` must be in `allowed.common`.

    A fragment on another type (an interface such as `MessageEvent`, or no type condition) is checked
    the same way, so it can only reach the listed types through a fragment on them."""
    for selection in selection_set.selections:
        if selection.directives:
            raise forbidden("directives are not allowed")
        if isinstance(selection, FieldNode):
            check_selection(SelectionSetNode(selections=(selection,)), allowed.common, path)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else None
            if condition is not None and condition in allowed.types:
                check_selection(selection.selection_set, allowed.types[condition], f"{path}<{condition}>")
            else:
                _check_by_type(selection.selection_set, allowed, path)
        elif isinstance(selection, FragmentSpreadNode):
            raise forbidden(f"fragment spreads are not allowed (in {path}); use inline fragments")
        else:  # pragma: no cover - graphql-core has no other selection kinds
            raise bad(f"unexpected selection in {path}")
