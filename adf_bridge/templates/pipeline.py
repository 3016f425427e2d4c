"""One job's ADF pipeline: launch the Dagster job over GraphQL, wait for its run, fail with Dagster's
error when it does not succeed (the steps are listed in the package docstring)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from adf_bridge.templates.activities import depends, fail, web
from adf_bridge.templates.expressions import expression, graphql_body, json_quote, lit, tag, timespan_seconds
from adf_bridge.templates.jobs import JobInfo
from adf_bridge.templates.queries import ADD_PARTITION_QUERY, FAILURE_QUERY, LAUNCH_QUERY, STATUS_QUERY

LOCATION = "mnist"  # workspace.yaml / pyproject's code_location_name
REPOSITORY = "__repository__"  # Definitions' implicit repository
PIPELINE_PREFIX = "dagster_"
IDEMPOTENCY_TAG = "adf/pipeline_run_id"
DEFAULT_POLL_INTERVAL = 30
DEFAULT_TIMEOUT = "1.00:00:00"  # d.hh:mm:ss: give up waiting after a day (ADF's own default is 7 days)
MAX_RUNTIME_TAG = "dagster/max_runtime"
# The run's maximum runtime is the pipeline's `timeout` less this: the time for run monitoring to notice
# (it checks every 30 s in production), the run to cancel its remote job and end CANCELED, and the last
# poll to see it. So the Dagster run ends before the Until gives up, and ADF reports how it ended.
STOP_MARGIN_SECONDS = 300
MIN_RUNTIME_SECONDS = 60  # the gateway's lower bound for the tag


def pipeline_name(job: str) -> str:
    """The ADF pipeline's name for a Dagster job."""
    return PIPELINE_PREFIX + job


def build_pipeline(job: JobInfo) -> dict[str, Any]:
    """The ADF pipeline resource (`{name, properties}`) that launches `job` and waits for it."""
    launch = "activity('Launch').output?.data?.launchRun"
    status = "activity('Get status').output?.data?.runOrError"
    # Done when the run has ended, or Dagster says there is no such run (RunNotFoundError, PythonError).
    # A poll that failed altogether (no answer after its retries) is not an answer: ADF's Until goes on
    # after a failed inner activity, and the next poll comes after the pause.
    finished = (
        f"or(contains(createArray('RunNotFoundError', 'PythonError'), {status}?.__typename), "
        + f"or(equals({status}?.status, 'SUCCESS'), or(equals({status}?.status, 'FAILURE'), equals({status}?.status, 'CANCELED'))))"
    )
    tags = [
        tag(IDEMPOTENCY_TAG, "pipeline().RunId"),
        tag("adf/pipeline_name", "pipeline().Pipeline"),
        tag("adf/factory", "pipeline().DataFactory"),
    ]
    # The run stops itself when the pipeline's `timeout` (less the margin) is reached: Dagster's run
    # monitoring enforces dagster/max_runtime by terminating the run, which cancels its remote job.
    runtime = (
        f"string(max({MIN_RUNTIME_SECONDS}, "
        f"sub({timespan_seconds('pipeline().parameters.timeout')}, {STOP_MARGIN_SECONDS})))"
    )
    tags.append(tag(MAX_RUNTIME_TAG, runtime))
    if job.partitioned:
        tags.append(tag("dagster/partition", "pipeline().parameters.partition_key"))
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job.name}
    launch_body = graphql_body(
        LAUNCH_QUERY,
        [
            lit(
                '{"executionParams":{"selector":'
                + json.dumps(selector, separators=(",", ":"))
                + ',"runConfigData":'
            ),
            "string(pipeline().parameters.run_config)",
            lit(',"executionMetadata":{"tags":'),
            # The caller's tags first: on a duplicate key the last wins, so ADF's own tags cannot be overridden.
            f"string(union(pipeline().parameters.tags, createArray({', '.join(tags)})))",
            lit("}}}"),
        ],
    )
    run_id_json = json_quote("variables('run_id')")
    status_body = graphql_body(STATUS_QUERY, [lit('{"runId":'), run_id_json, lit("}")])
    failure_body = graphql_body(FAILURE_QUERY, [lit('{"runId":'), run_id_json, lit("}")])
    failure_events = "activity('Failure events').output.value"  # as ADF documents it (output shows "Value")
    run_failed_message = (
        f"concat('Dagster run ', variables('run_id'), ' of job {job.name} ended ', "
        f"coalesce({status}?.status, {status}?.__typename, 'unknown'), ': ', "
        f"coalesce(first({failure_events})?.error?.message, first({failure_events})?.message, "
        f"{status}?.message, 'no failure event was recorded'), "
        # A step error's own message is only its headline; the innermost cause says what went wrong.
        f"coalesce(last(coalesce(first({failure_events})?.error?.causes, json('[]')))?.message, ''))"
    )
    launch_failed_message = (
        f"concat('Dagster did not launch job {job.name}: ', coalesce({launch}?.__typename, 'no launchRun in the answer'), "
        f"': ', string(coalesce({launch}?.message, {launch}?.errors, activity('Launch').output?.errors, 'no message')))"
    )
    activities: list[dict[str, Any]] = []
    launch_after: list[tuple[str, Sequence[str]]] = []
    if job.dynamic_partitions:
        # A run of a dynamic partition that was never added fails when it writes its output; the
        # sensors add partitions themselves, an ADF caller gets it added here (adding twice is fine).
        added = "activity('Add partition').output?.data?.addDynamicPartition"
        partition_body = graphql_body(
            ADD_PARTITION_QUERY,
            [
                lit(
                    '{"repositorySelector":'
                    + json.dumps(
                        {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY},
                        separators=(",", ":"),
                    )
                    + ',"partitionsDefName":'
                    + json.dumps(job.dynamic_partitions)
                    + ',"partitionKey":'
                ),
                json_quote("pipeline().parameters.partition_key"),
                lit("}"),
            ],
        )
        activities += [
            web("Add partition", partition_body, [], retry=3),
            {
                "name": "Check partition",
                "type": "IfCondition",
                "dependsOn": depends([("Add partition", ["Succeeded"])]),
                "userProperties": [],
                "typeProperties": {
                    "expression": expression(
                        f"not(or(equals({added}?.__typename, 'AddDynamicPartitionSuccess'), "
                        f"equals({added}?.__typename, 'DuplicateDynamicPartitionError')))"
                    ),
                    "ifTrueActivities": [
                        fail(
                            "Partition refused",
                            f"concat('Dagster did not add partition ', pipeline().parameters.partition_key, "
                            f"' of {job.dynamic_partitions}: ', coalesce({added}?.__typename, 'no answer'), ': ', "
                            f"string(coalesce({added}?.message, activity('Add partition').output?.errors, 'no message')))",
                            "DagsterPartitionRefused",
                        )
                    ],
                },
            },
        ]
        launch_after = [("Check partition", ["Succeeded"])]
    activities += [
        web("Launch", launch_body, launch_after, retry=3),
        {
            "name": "Check launch",
            "type": "IfCondition",
            "dependsOn": depends([("Launch", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(f"not(equals({launch}?.__typename, 'LaunchRunSuccess'))"),
                "ifTrueActivities": [fail("Launch failed", launch_failed_message, "DagsterLaunchFailed")],
            },
        },
        {
            "name": "Remember run id",
            "type": "SetVariable",
            "dependsOn": depends([("Check launch", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {"variableName": "run_id", "value": expression(f"{launch}.run.runId")},
        },
        {
            "name": "Wait for run",
            "type": "Until",
            "dependsOn": depends([("Remember run id", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(finished),
                "timeout": expression("pipeline().parameters.timeout"),
                "activities": [
                    web("Get status", status_body, [], retry=5),
                    {
                        "name": "Pause",
                        "type": "Wait",
                        "dependsOn": depends([("Get status", ["Completed"])]),
                        "userProperties": [],
                        "typeProperties": {
                            # No pause after the last poll: the pipeline ends as soon as the run does.
                            "waitTimeInSeconds": expression(
                                f"if({finished}, 1, pipeline().parameters.poll_interval)"
                            )
                        },
                    },
                ],
            },
        },
        {
            "name": "Check run",
            "type": "IfCondition",
            "dependsOn": depends([("Wait for run", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(f"equals({status}?.status, 'SUCCESS')"),
                "ifFalseActivities": [
                    web("Get failure", failure_body, [], retry=2),
                    {
                        "name": "Failure events",
                        "type": "Filter",
                        "dependsOn": depends([("Get failure", ["Succeeded"])]),
                        "userProperties": [],
                        "typeProperties": {
                            "items": expression(
                                "coalesce(activity('Get failure').output?.data?.logsForRun?.events, json('[]'))"
                            ),
                            "condition": expression(
                                "contains(createArray('ExecutionStepFailureEvent', 'RunFailureEvent', "
                                "'RunCanceledEvent'), item().__typename)"
                            ),
                        },
                    },
                    fail(
                        "Run failed",
                        run_failed_message,
                        "DagsterRunFailed",
                        [("Failure events", ["Succeeded"])],
                    ),
                ],
            },
        },
    ]
    parameters: dict[str, Any] = {
        "dagster_graphql_url": {"type": "string"},
        "audience": {"type": "string"},
        "run_config": {"type": "object", "defaultValue": dict(job.run_config)},
        "tags": {"type": "array", "defaultValue": []},
        "poll_interval": {"type": "int", "defaultValue": DEFAULT_POLL_INTERVAL},
        "timeout": {"type": "string", "defaultValue": DEFAULT_TIMEOUT},
    }
    if job.partitioned:
        parameters["partition_key"] = {"type": "string"}
    description = (
        f"Launch the Dagster job '{job.name}' (code location '{LOCATION}') over GraphQL and wait for it. "
        f"{job.description} Generated by `python -m adf_bridge.templates`: do not edit."
    )
    return {
        "name": pipeline_name(job.name),
        "properties": {
            "description": description,
            "activities": activities,
            "parameters": parameters,
            "variables": {"run_id": {"type": "String"}},
            "annotations": ["dagster", f"dagster-job:{job.name}"],
        },
    }
