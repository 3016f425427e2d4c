"""The shapes of the ADF activities a pipeline is made of: a Web call to Dagster's GraphQL, a Fail."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adf_bridge.templates.expressions import expression

# (activity name, dependency conditions such as "Succeeded" or "Completed")
DependsOn = Sequence[tuple[str, Sequence[str]]]


def depends(pairs: DependsOn) -> list[dict[str, Any]]:
    """An activity's `dependsOn` list."""
    return [{"activity": a, "dependencyConditions": list(c)} for a, c in pairs]


def web(name: str, body: dict[str, str], depends_on: DependsOn, retry: int) -> dict[str, Any]:
    """A Web activity POSTing `body` to the pipeline's `dagster_graphql_url` with a managed-identity token
    for its `audience`, retried `retry` times 30 s apart. It waits ADF's default of one minute for the
    response: `httpRequestTimeout` is newer than the Data Factory spec the templates are checked against."""
    return {
        "name": name,
        "type": "WebActivity",
        "dependsOn": depends(depends_on),
        "policy": {
            "timeout": "0.00:10:00",
            "retry": retry,
            "retryIntervalInSeconds": 30,
            "secureOutput": False,
            "secureInput": False,
        },
        "userProperties": [],
        "typeProperties": {
            "method": "POST",
            "url": expression("pipeline().parameters.dagster_graphql_url"),
            "headers": {"Content-Type": "application/json"},
            "body": body,
            "authentication": {"type": "MSI", "resource": expression("pipeline().parameters.audience")},
        },
    }


def fail(name: str, message_expr: str, code: str, depends_on: DependsOn = ()) -> dict[str, Any]:
    """A Fail activity: ends the pipeline Failed with the message `message_expr` evaluates to."""
    return {
        "name": name,
        "type": "Fail",
        "dependsOn": depends(depends_on),
        "userProperties": [],
        "typeProperties": {"message": expression(message_expr), "errorCode": code},
    }
