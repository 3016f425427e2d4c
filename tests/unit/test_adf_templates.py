"""The ADF pipeline templates: generated from the code location, checked in, and well-formed.

Fails with the fix spelled out when the checked-in files under adf/ no longer match what the code
location generates (`./run adf-templates`, then commit adf/).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest

from adf_bridge.jobs_manifest import JobsManifest
from adf_bridge.templates import cli
from adf_bridge.templates.arm import build_arm_template
from adf_bridge.templates.jobs import JobInfo, jobs_of_code_location
from adf_bridge.templates.output import OUTPUT_DIR, generate, stale_files
from adf_bridge.templates.pipeline import STOP_MARGIN_SECONDS, build_pipeline
from adf_bridge.templates.queries import LAUNCH_QUERY
from assets.model import TrainingConfig
from tests.support.adf_interpreter import (
    FUNCTIONS,
    LAZY,
    Interpreter,
    Scope,
    _Access,
    _Call,
    _Literal,
    _Parser,
    evaluate_value,
)
from tests.support.adf_spec import arm_template_problems, pipeline_problems

ACTIVITY_TYPES = {"WebActivity", "IfCondition", "Until", "Wait", "Fail", "SetVariable", "Filter"}
BUILTINS = {"pipeline", "activity", "variables", "item"}


def test_checked_in_templates_match_the_code_location() -> None:
    problems = stale_files(OUTPUT_DIR)
    assert not problems, (
        "The ADF templates under adf/ are stale: run `./run adf-templates` "
        "(python -m adf_bridge.templates) and commit adf/.\n" + "\n".join(problems)
    )


def test_one_template_per_job_with_the_jobs_config_defaults() -> None:
    jobs = {job.name: job for job in jobs_of_code_location()}
    assert sorted(jobs) == ["mnist_pipeline", "score_batch", "train_model"]
    train = json.loads((OUTPUT_DIR / "pipelines" / "train_model.json").read_text())
    defaults = train["properties"]["parameters"]["run_config"]["defaultValue"]
    assert defaults["ops"]["mnist_model"]["config"] == TrainingConfig().model_dump()
    score = json.loads((OUTPUT_DIR / "pipelines" / "score_batch.json").read_text())
    assert score["properties"]["parameters"]["partition_key"] == {"type": "string"}  # required
    assert "partition_key" not in train["properties"]["parameters"]
    assert [a["name"] for a in score["properties"]["activities"]][:3] == [
        "Add partition",
        "Check partition",
        "Launch",
    ]


def test_stale_templates_are_reported_with_a_diff(tmp_path: Path) -> None:
    jobs = jobs_of_code_location()
    generate(tmp_path, jobs)
    assert stale_files(tmp_path, jobs) == []
    changed = [
        replace(j, run_config={"ops": {"mnist_model": {"config": {"seed": 7}}}})
        if j.name == "train_model"
        else j
        for j in jobs
    ]
    problems = stale_files(tmp_path, changed)
    assert any("train_model.json: differs from the code location" in p and '"seed": 7' in p for p in problems)
    fewer = [j for j in jobs if j.name != "score_batch"]
    assert any("score_batch.json: no job generates it any more" in p for p in stale_files(tmp_path, fewer))
    assert cli.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "pipelines" / "train_model.json").write_text("{}")
    assert cli.main(["--check", "--out", str(tmp_path)]) == 1


def test_jobs_manifest_says_what_the_gateway_needs_about_each_job() -> None:
    manifest = JobsManifest.read(OUTPUT_DIR / "jobs.json")
    assert [job.name for job in manifest.jobs] == ["mnist_pipeline", "score_batch", "train_model"]
    assert manifest.dynamic_partitions() == {
        "score_batch": "inference_batches",
        "mnist_pipeline": "inference_batches",
    }
    jobs = {job.name: job for job in jobs_of_code_location()}
    for job in manifest.jobs:
        assert job.description == jobs[job.name].description
        assert job.partitioned == jobs[job.name].partitioned


def test_stale_or_missing_jobs_manifest_is_reported(tmp_path: Path) -> None:
    jobs = jobs_of_code_location()
    generate(tmp_path, jobs)
    other = [replace(j, dynamic_partitions="other_batches") if j.name == "score_batch" else j for j in jobs]
    problems = stale_files(tmp_path, other)
    assert any("jobs.json: differs from the code location" in p and '"other_batches"' in p for p in problems)
    (tmp_path / "jobs.json").unlink()
    assert any(p.endswith("jobs.json: missing") for p in stale_files(tmp_path, jobs))
    assert cli.main(["--check", "--out", str(tmp_path)]) == 1


def _pipelines() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((OUTPUT_DIR / "pipelines").glob("*.json"))]


def _walk_activities(
    activities: list[dict[str, Any]],
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    for activity in activities:
        yield activity, activities
        props = activity.get("typeProperties", {})
        for key in ("activities", "ifTrueActivities", "ifFalseActivities"):
            yield from _walk_activities(props.get(key, []))


def _expressions(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if value.get("type") == "Expression":
            yield value["value"]
        else:
            for child in value.values():
                yield from _expressions(child)
    elif isinstance(value, list):
        for child in value:
            yield from _expressions(child)
    elif isinstance(value, str) and value.startswith("@") and not value.startswith("@@"):
        yield value


def _functions(node: Any) -> Iterator[str]:
    if isinstance(node, _Call):
        yield node.name
        for arg in node.args:
            yield from _functions(arg)
    elif isinstance(node, _Access):
        yield from _functions(node.target)
        yield from _functions(node.key)
    else:
        assert isinstance(node, _Literal)


@pytest.mark.parametrize("pipeline", _pipelines(), ids=lambda p: p["name"])
def test_templates_are_adf_pipeline_resources_within_the_interpreters_subset(
    pipeline: dict[str, Any],
) -> None:
    assert set(pipeline) == {"name", "properties"}
    properties = pipeline["properties"]
    assert {"activities", "parameters", "variables", "annotations", "description"} <= set(properties)
    names = [a["name"] for a, _ in _walk_activities(properties["activities"])]
    assert len(names) == len(set(names)), "activity names are unique in a pipeline"
    for activity, siblings in _walk_activities(properties["activities"]):
        assert activity["type"] in ACTIVITY_TYPES
        sibling_names = {s["name"] for s in siblings}
        for dependency in activity.get("dependsOn", []):
            assert dependency["activity"] in sibling_names, (
                f"{activity['name']} depends on an activity in its scope"
            )
        if activity["type"] == "WebActivity":
            props = activity["typeProperties"]
            assert props["authentication"]["type"] == "MSI"
            assert props["method"] == "POST" and activity["policy"]["retry"] >= 1
    used: set[str] = set()
    for text in _expressions(properties["activities"]):
        assert text.startswith("@") and "@{" not in text
        used |= set(_functions(_Parser(text[1:]).parse()))
    assert used <= set(FUNCTIONS) | set(LAZY) | BUILTINS, used - (set(FUNCTIONS) | set(LAZY) | BUILTINS)


def test_arm_template_and_manifest_for_template_import() -> None:
    for pipeline in _pipelines():
        folder = OUTPUT_DIR / "templates" / pipeline["name"]
        arm = json.loads((folder / f"{pipeline['name']}.json").read_text())
        manifest = json.loads((folder / "manifest.json").read_text())
        [resource] = arm["resources"]
        assert resource["type"] == "Microsoft.DataFactory/factories/pipelines"
        assert resource["name"] == f"[concat(parameters('factoryName'), '/{pipeline['name']}')]"
        assert resource["properties"] == pipeline["properties"]  # nothing needed ARM escaping
        assert arm["parameters"] == {"factoryName": {"type": "string", "metadata": "Data Factory name"}}
        assert manifest["name"] == pipeline["name"] and manifest["description"]


@pytest.mark.parametrize("pipeline", _pipelines(), ids=lambda p: p["name"])
def test_templates_are_what_data_factorys_rest_spec_allows(pipeline: dict[str, Any]) -> None:
    # The pipeline file (the REST API's PipelineResource) and the ARM template's pipeline resource.
    assert pipeline_problems(pipeline) == []
    folder = OUTPUT_DIR / "templates" / pipeline["name"]
    arm = json.loads((folder / f"{pipeline['name']}.json").read_text())
    assert arm_template_problems(arm) == []


@pytest.mark.parametrize("partitioned", [False, True])
def test_the_generator_builds_only_what_the_spec_allows(partitioned: bool) -> None:
    job = JobInfo(
        "a_job",
        "what it does",
        {"ops": {"op": {"config": {"x": 1}}}},
        partitioned=partitioned,
        dynamic_partitions="batches" if partitioned else None,
    )
    pipeline = build_pipeline(job)
    assert pipeline_problems(pipeline) == []
    assert arm_template_problems(build_arm_template(pipeline)) == []


def test_launch_body_is_valid_json_whatever_the_names_contain() -> None:
    job = JobInfo("score_batch", "", {}, partitioned=True, dynamic_partitions="inference_batches")
    pipeline = build_pipeline(job)
    activities = {a["name"]: a for a in pipeline["properties"]["activities"]}
    tricky = 'b"at\\ch \u00e9'
    scope = Scope(
        pipeline={
            "parameters": {
                "run_config": {"ops": {}},
                "tags": [{"key": "team", "value": "x"}],
                "partition_key": tricky,
                "timeout": "1.02:03:04",
            },
            "RunId": "r-1",
            "Pipeline": 'my "pipe"',
            "DataFactory": "fac",
        },
        activities={},
        variables={},
    )
    body = evaluate_value(activities["Launch"]["typeProperties"]["body"], scope)
    metadata = body["variables"]["executionParams"]["executionMetadata"]
    assert {t["key"]: t["value"] for t in metadata["tags"]} == {
        "team": "x",
        "adf/pipeline_run_id": "r-1",
        "adf/pipeline_name": 'my "pipe"',
        "adf/factory": "fac",
        "dagster/partition": tricky,
        # The pipeline's timeout less the stop margin, in seconds: the run stops before the wait does.
        "dagster/max_runtime": str(86400 + 2 * 3600 + 3 * 60 + 4 - STOP_MARGIN_SECONDS),
    }
    assert body["variables"]["executionParams"]["selector"]["jobName"] == "score_batch"
    assert body["query"] == LAUNCH_QUERY
    partition = evaluate_value(activities["Add partition"]["typeProperties"]["body"], scope)
    assert partition["variables"]["partitionKey"] == tricky
    # The caller's tags cannot override the idempotency key: ADF's own come last.
    scope.pipeline["parameters"]["tags"] = [{"key": "adf/pipeline_run_id", "value": "forged"}]
    tags = evaluate_value(activities["Launch"]["typeProperties"]["body"], scope)["variables"][
        "executionParams"
    ]["executionMetadata"]["tags"]
    assert {t["key"]: t["value"] for t in tags}["adf/pipeline_run_id"] == "r-1"


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        ("1.00:00:00", 86400 - STOP_MARGIN_SECONDS),
        ("02:00:00", 7200 - STOP_MARGIN_SECONDS),
        ("0.00:03:00", 60),
    ],
)
def test_the_run_gets_the_pipelines_timeout_as_its_max_runtime(timeout: str, seconds: int) -> None:
    """ADF's `timeout` (d.hh:mm:ss or hh:mm:ss) becomes the run's dagster/max_runtime, less the stop
    margin and at least the gateway's minimum; the Until keeps the `timeout` itself."""
    pipeline = build_pipeline(JobInfo("train_model", "", {}, partitioned=False))
    activities = {a["name"]: a for a in pipeline["properties"]["activities"]}
    scope = Scope(
        pipeline={
            "parameters": {"run_config": {}, "tags": [], "timeout": timeout},
            "RunId": "r", "Pipeline": "p", "DataFactory": "f",
        },
        activities={},
        variables={},
    )  # fmt: skip
    tags = evaluate_value(activities["Launch"]["typeProperties"]["body"], scope)["variables"][
        "executionParams"
    ]["executionMetadata"]["tags"]
    assert {t["key"]: t["value"] for t in tags}["dagster/max_runtime"] == str(seconds)
    wait = activities["Wait for run"]["typeProperties"]["timeout"]
    assert evaluate_value(wait, scope) == timeout


class _CannedDagster(ThreadingHTTPServer):
    answers: dict[str, Any]  # first word of the GraphQL operation -> its `data`


class _CannedHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        server = cast(_CannedDagster, self.server)
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["query"]
        operation = query.split("(")[0].split()[-1]  # e.g. "LaunchRun"
        payload = json.dumps({"data": server.answers[operation]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_canceled_run_fails_the_pipeline_with_dagsters_cancel_message() -> None:
    server = _CannedDagster(("127.0.0.1", 0), _CannedHandler)
    server.answers = {
        "LaunchRun": {
            "launchRun": {"__typename": "LaunchRunSuccess", "run": {"runId": "r-7", "status": "QUEUED"}}
        },
        "RunStatus": {"runOrError": {"__typename": "Run", "runId": "r-7", "status": "CANCELED"}},
        "RunFailure": {
            "logsForRun": {
                "__typename": "EventConnection",
                "events": [
                    {"__typename": "RunStartEvent"},
                    {
                        "__typename": "RunCanceledEvent",
                        "message": 'Execution of run for "train_model" canceled.',
                    },
                ],
            }
        },
    }
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/graphql"
        pipeline = json.loads((OUTPUT_DIR / "pipelines" / "train_model.json").read_text())
        run = Interpreter(time_scale=0.001).run(pipeline, {"dagster_graphql_url": url, "audience": "a"})
    finally:
        server.shutdown()
        server.server_close()
    assert run.status == "Failed"
    assert run.error == {
        "message": 'Dagster run r-7 of job train_model ended CANCELED: Execution of run for "train_model" canceled.',
        "errorCode": "DagsterRunFailed",
    }
