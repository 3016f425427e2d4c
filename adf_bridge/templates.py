"""ADF pipeline templates that launch a Dagster job over GraphQL and wait for it, one per job.

Generated from the code location itself (job names, partitioning, run-config defaults), so the
templates cannot drift from the code: `python -m adf_bridge.templates` writes them,
`--check` fails when the checked-in files differ from what the code would generate.

Written under `adf/`:
- `pipelines/<job>.json`: the ADF pipeline resource (`{name, properties}`), what the ADF REST API,
  `Set-AzDataFactoryV2Pipeline` or a Git-integrated factory's `pipeline/` folder take;
- `templates/<pipeline>/<pipeline>.json` + `manifest.json`: the same pipeline as an ARM template with a
  `factoryName` parameter, the layout ADF Studio's "Import pipeline template" reads (zip the folder,
  or pass `--zip DIR`), and that an ARM deployment takes as is.

What each pipeline does (see README "Triggering from ADF"):
1. `Launch` (Web, managed identity for `audience`): `launchRun` with the job, `run_config`, the caller's
   `tags` and ADF's own (`adf/pipeline_run_id` = the ADF run id, `adf/pipeline_name`, `adf/factory`;
   `dagster/partition` for a partitioned job). The Dagster instance's run coordinator treats
   `adf/pipeline_run_id` as an idempotency key (instance_plugins/run_coordinator.py), so ADF retrying the
   activity answers with the run already launched instead of starting a second one.
2. `Check launch` (If): any `__typename` but `LaunchRunSuccess` (Dagster answers HTTP 200 for a failed
   launch) fails the pipeline at once with Dagster's message (`Launch failed`).
3. `Remember run id` (Set Variable), then `Wait for run` (Until: `Get status` = `runOrError`, and `Pause`
   for `poll_interval` seconds while the run is not finished; `timeout` bounds the whole wait).
4. `Check run` (If): a run that ended other than SUCCESS fetches its failure events (`Get failure`,
   `Failure events`) and fails the pipeline with the status and Dagster's error (`Run failed`).
"""

from __future__ import annotations

import argparse
import difflib
import json
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_DIR = PROJECT_ROOT / "adf"
LOCATION = "mnist"  # workspace.yaml / pyproject's code_location_name
REPOSITORY = "__repository__"  # Definitions' implicit repository
PIPELINE_PREFIX = "dagster_"
IDEMPOTENCY_TAG = "adf/pipeline_run_id"
DEFAULT_POLL_INTERVAL = 30
DEFAULT_TIMEOUT = "1.00:00:00"  # d.hh:mm:ss: give up waiting after a day (ADF's own default is 7 days)

LAUNCH_QUERY = """mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on Error { message }
  }
}"""
STATUS_QUERY = """query RunStatus($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId status startTime endTime }
    ... on Error { message }
  }
}"""
# Only failure events carry fields, the others come back as {"__typename": ...}: the answer stays far
# below ADF's 4 MB limit for a Web activity response even for runs with many log events.
FAILURE_QUERY = """query RunFailure($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events {
        __typename
        ... on ExecutionStepFailureEvent { stepKey message error { message causes { message } } }
        ... on RunFailureEvent { message }
        ... on RunCanceledEvent { message }
      }
    }
    ... on Error { message }
  }
}"""
ADD_PARTITION_QUERY = """mutation AddPartition($repositorySelector: RepositorySelector!, $partitionsDefName: String!, $partitionKey: String!) {
  addDynamicPartition(repositorySelector: $repositorySelector, partitionsDefName: $partitionsDefName, partitionKey: $partitionKey) {
    __typename
    ... on Error { message }
  }
}"""


@dataclass(frozen=True)
class JobInfo:
    """What a template needs to know about one Dagster job."""

    name: str
    description: str
    run_config: Mapping[str, Any]  # the job's op config with every default filled in
    partitioned: bool
    dynamic_partitions: str | None = None  # name of its DynamicPartitionsDefinition, if it has one


def jobs_of_code_location() -> list[JobInfo]:
    """Job names, descriptions, run-config defaults and partitioning, read from the loaded Definitions."""
    import dagster as dg
    from dagster._config.post_process import resolve_defaults

    from orchestration.definitions import defs

    infos: list[JobInfo] = []
    for job in sorted(defs.get_repository_def().get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__"):  # Dagster's implicit asset job
            continue
        resolved = resolve_defaults(job.run_config_schema.config_type, {})
        if not resolved.success:
            raise ValueError(f"job {job.name!r}: its run config has required fields without defaults")
        # Sorted: Dagster's resolved config has no stable op order, the checked-in files must.
        ops = {
            op: _sorted(v)
            for op, v in sorted((resolved.value or {}).get("ops", {}).items())
            if v.get("config")
        }
        infos.append(
            JobInfo(
                name=job.name,
                description=job.description or "",
                run_config={"ops": ops} if ops else {},
                partitioned=job.partitions_def is not None,
                dynamic_partitions=(
                    job.partitions_def.name
                    if isinstance(job.partitions_def, dg.DynamicPartitionsDefinition)
                    else None
                ),
            )
        )
    return infos


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return value


# ---- ADF expression building ---------------------------------------------------------------------
def lit(text: str) -> str:
    """An ADF expression string literal (single quotes, doubled inside)."""
    return "'" + text.replace("'", "''") + "'"


def json_lit(value: Any) -> str:
    """An ADF string literal holding `value` as JSON text (for splicing into a JSON body)."""
    return lit(json.dumps(value, separators=(",", ":")))


def json_quote(expr: str) -> str:
    """ADF expression: the JSON string literal (quotes, escapes) of the string `expr` evaluates to.

    ADF has no JSON-escape function; `string(createArray(x))` serializes `["x"]` with proper escaping,
    and the brackets are cut off.
    """
    serialized = f"string(createArray({expr}))"
    return f"substring({serialized}, 1, sub(length({serialized}), 2))"


def expression(expr: str) -> dict[str, str]:
    return {"value": "@" + expr, "type": "Expression"}


def graphql_body(query: str, variables_json_parts: Sequence[str]) -> dict[str, str]:
    """A Web activity body: `{"query": ..., "variables": ...}` with the variables spliced in."""
    return expression(
        "json(concat("
        + ", ".join([lit('{"query":' + json.dumps(query) + ',"variables":'), *variables_json_parts, lit("}")])
        + "))"
    )


def _tag(key: str, value_expr: str) -> str:
    head = lit(json.dumps({"key": key}, separators=(",", ":"))[:-1] + ',"value":')
    return f"json(concat({head}, {json_quote(value_expr)}, '}}'))"


def _web(
    name: str, body: dict[str, str], depends_on: Sequence[tuple[str, Sequence[str]]], retry: int
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "WebActivity",
        "dependsOn": _depends(depends_on),
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
            "httpRequestTimeout": "00:01:00",
            "authentication": {"type": "MSI", "resource": expression("pipeline().parameters.audience")},
        },
    }


def _depends(pairs: Sequence[tuple[str, Sequence[str]]]) -> list[dict[str, Any]]:
    return [{"activity": a, "dependencyConditions": list(c)} for a, c in pairs]


def _fail(
    name: str, message_expr: str, code: str, depends_on: Sequence[tuple[str, Sequence[str]]] = ()
) -> dict[str, Any]:
    return {
        "name": name,
        "type": "Fail",
        "dependsOn": _depends(depends_on),
        "userProperties": [],
        "typeProperties": {"message": expression(message_expr), "errorCode": code},
    }


def pipeline_name(job: str) -> str:
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
        _tag(IDEMPOTENCY_TAG, "pipeline().RunId"),
        _tag("adf/pipeline_name", "pipeline().Pipeline"),
        _tag("adf/factory", "pipeline().DataFactory"),
    ]
    if job.partitioned:
        tags.append(_tag("dagster/partition", "pipeline().parameters.partition_key"))
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
            _web("Add partition", partition_body, [], retry=3),
            {
                "name": "Check partition",
                "type": "IfCondition",
                "dependsOn": _depends([("Add partition", ["Succeeded"])]),
                "userProperties": [],
                "typeProperties": {
                    "expression": expression(
                        f"not(or(equals({added}?.__typename, 'AddDynamicPartitionSuccess'), "
                        f"equals({added}?.__typename, 'DuplicateDynamicPartitionError')))"
                    ),
                    "ifTrueActivities": [
                        _fail(
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
        _web("Launch", launch_body, launch_after, retry=3),
        {
            "name": "Check launch",
            "type": "IfCondition",
            "dependsOn": _depends([("Launch", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(f"not(equals({launch}?.__typename, 'LaunchRunSuccess'))"),
                "ifTrueActivities": [_fail("Launch failed", launch_failed_message, "DagsterLaunchFailed")],
            },
        },
        {
            "name": "Remember run id",
            "type": "SetVariable",
            "dependsOn": _depends([("Check launch", ["Succeeded"])]),
            "policy": {"secureOutput": False, "secureInput": False},
            "userProperties": [],
            "typeProperties": {"variableName": "run_id", "value": expression(f"{launch}.run.runId")},
        },
        {
            "name": "Wait for run",
            "type": "Until",
            "dependsOn": _depends([("Remember run id", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(finished),
                "timeout": expression("pipeline().parameters.timeout"),
                "activities": [
                    _web("Get status", status_body, [], retry=5),
                    {
                        "name": "Pause",
                        "type": "Wait",
                        "dependsOn": _depends([("Get status", ["Completed"])]),
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
            "dependsOn": _depends([("Wait for run", ["Succeeded"])]),
            "userProperties": [],
            "typeProperties": {
                "expression": expression(f"equals({status}?.status, 'SUCCESS')"),
                "ifFalseActivities": [
                    _web("Get failure", failure_body, [], retry=2),
                    {
                        "name": "Failure events",
                        "type": "Filter",
                        "dependsOn": _depends([("Get failure", ["Succeeded"])]),
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
                    _fail(
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


def _arm_escape(value: Any) -> Any:
    """ARM evaluates strings in [brackets] as its own expressions; `[[` makes them literal."""
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        return "[" + value
    if isinstance(value, dict):
        return {k: _arm_escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arm_escape(v) for v in value]
    return value


def build_arm_template(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """The pipeline as an ARM template for a factory (what ADF's template import and ARM deploy take)."""
    return {
        "$schema": "https://schema.management.azure.com/schemas/2015-01-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"factoryName": {"type": "string", "metadata": "Data Factory name"}},
        "variables": {"factoryId": "[concat('Microsoft.DataFactory/factories/', parameters('factoryName'))]"},
        "resources": [
            {
                "name": f"[concat(parameters('factoryName'), '/{pipeline['name']}')]",
                "type": "Microsoft.DataFactory/factories/pipelines",
                "apiVersion": "2018-06-01",
                "properties": _arm_escape(pipeline["properties"]),
                "dependsOn": [],
            }
        ],
    }


def build_manifest(job: JobInfo, pipeline: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": pipeline["name"],
        "description": pipeline["properties"]["description"],
        "icons": ["WebActivity", "IfCondition", "Until", "Fail"],
        "requires": {},
        "contributorType": "Community",
        "author": "mnist-orchestration",
        "annotations": ["Dagster", "GraphQL"],
        "services": ["Dagster"],
        "categories": ["Orchestration"],
    }


def render(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def generate(out: Path, jobs: Sequence[JobInfo] | None = None) -> list[Path]:
    """Write every file under `out` (replacing what was there); returns the paths written."""
    jobs = jobs_of_code_location() if jobs is None else jobs
    for sub in ("pipelines", "templates"):
        shutil.rmtree(out / sub, ignore_errors=True)
    written: list[Path] = []
    for job in jobs:
        pipeline = build_pipeline(job)
        name = pipeline["name"]
        files = {
            out / "pipelines" / f"{job.name}.json": pipeline,
            out / "templates" / name / f"{name}.json": build_arm_template(pipeline),
            out / "templates" / name / "manifest.json": build_manifest(job, pipeline),
        }
        for path, content in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render(content))
            written.append(path)
    return written


def stale_files(checked_in: Path, jobs: Sequence[JobInfo] | None = None) -> list[str]:
    """Differences between `checked_in` and freshly generated files, as readable lines (none: up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh, jobs)
        problems: list[str] = []
        wanted = {p.relative_to(fresh) for p in fresh.rglob("*.json")}
        present = {
            p.relative_to(checked_in)
            for sub in ("pipelines", "templates")
            for p in (checked_in / sub).rglob("*.json")
        }
        for rel in sorted(present - wanted):
            problems.append(f"{checked_in / rel}: no job generates it any more (delete it)")
        for rel in sorted(wanted):
            target = checked_in / rel
            if rel not in present:
                problems.append(f"{target}: missing")
                continue
            new, old = (fresh / rel).read_text(), target.read_text()
            if new != old:
                diff = difflib.unified_diff(
                    old.splitlines(),
                    new.splitlines(),
                    f"{target} (checked in)",
                    "(generated)",
                    lineterm="",
                    n=1,
                )
                problems.append(f"{target}: differs from the code location\n" + "\n".join(list(diff)[:40]))
        return problems


def write_zips(templates: Path, dest: Path) -> list[Path]:
    """One zip per template folder, as ADF Studio's "Import pipeline template" expects."""
    dest.mkdir(parents=True, exist_ok=True)
    return [
        Path(shutil.make_archive(str(dest / folder.name), "zip", folder))
        for folder in sorted(p for p in templates.iterdir() if p.is_dir())
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m adf_bridge.templates", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="fail if the checked-in templates are stale")
    parser.add_argument(
        "--out", type=Path, default=OUTPUT_DIR, help="where the templates live (default adf/)"
    )
    parser.add_argument(
        "--zip", type=Path, metavar="DIR", help="also write one importable zip per template to DIR"
    )
    args = parser.parse_args(argv)
    if args.check:
        problems = stale_files(args.out)
        if problems:
            print("ADF templates are stale; run `./run adf-templates` and commit adf/:", file=sys.stderr)
            print("\n".join(problems), file=sys.stderr)
            return 1
        print(f"ADF templates in {args.out} match the code location.")
        return 0
    for path in generate(args.out):
        print(path.relative_to(args.out.parent) if args.out.parent in path.parents else path)
    if args.zip:
        for path in write_zips(args.out / "templates", args.zip):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
