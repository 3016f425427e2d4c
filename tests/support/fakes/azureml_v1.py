"""A stateful contract fake of the AzureML v1 pipelines service and the run-history calls it needs.

Follows the SDK's `azureml/pipeline/core/_restclients/aeva` models (no public spec exists for
/pipelines/v1.0): PipelineSubmissionInfo bodies are checked key by key and type by type, parameter
and DataPath names against the published pipeline. Run-history answers (Run, RunDetails,
PaginatedRunList) are validated against the official run-history v1.0 spec before they are sent.

Runs really run: a submitted pipeline run queues, then its `train` step executes the published
step (`deploy/azureml/train_step.py` with the pipeline's arguments) with its DataPaths "mounted" from
the datastore (Azurite) read-only (a step that writes into an input fails, as on a read-only mount),
and uploads its output (OutputFileDatasetConfig `model_output`) to
`_azureml_outputs/<step run id>/model_output/` when it succeeds. Parameter values reach the step's
arguments rewritten as AzureML rewrites them (`azureml_argument`). `mode="simulate"` replaces
the step by a timed stand-in that writes a few files (protocol tests, benchmarks).
`allow_reuse`: a run whose parameters and DataPaths equal an earlier finished run's is not executed;
its step is marked reused (properties azureml.reusedrunid / reusednodeid / reusedpipeline), as AzureML does.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from deploy.azureml import pipeline_spec
from resources.storage import ObjectStore
from tests.support.fakes import specs
from tests.support.fakes.http import ARM, FakeHttpServer, Reply, Request
from tests.support.fakes.http import AZUREML_OR_ARM as HISTORY
from tests.support.fakes.jobs import Clock, FakeWorkspace, Mount, SimJob

WS = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
P = r"/pipelines/v1\.0" + WS
H = r"/history/v1\.0" + WS
# PipelineSubmissionInfo._attribute_map: wire key -> expected JSON type.
SUBMISSION_KEYS: dict[str, type | tuple[type, ...]] = {
    "ExperimentName": str,
    "Description": str,
    "RunSource": str,
    "RunType": str,
    "ParameterAssignments": dict,
    "DataPathAssignments": dict,
    "DataSetDefinitionValueAssignments": dict,
    "ScheduleId": str,
    "ContinueRunOnStepFailure": bool,
    "EnableNotification": bool,
    "tags": dict,
    "Properties": dict,
}
EXPERIMENT_NAME = re.compile(r"^[a-zA-Z0-9][\w-]{0,254}$")
TRAINED_MODEL = {"model/MLmodel": b"flavors: {}\n", "model/model.pkl": b"fake"}


def _now_iso(clock: Clock, at: float | None) -> str | None:
    if at is None:
        return None
    return (dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=at)).isoformat()


@dataclass
class PipelineRun:
    id: str
    pipeline_id: str
    experiment: str
    submission: dict[str, Any]
    parameters: dict[str, str]
    data_paths: dict[str, dict[str, str]]
    job: SimJob
    step_id: str
    created: float
    argv: list[str] = field(default_factory=list)  # the step's arguments, as AzureML passes them
    reused_from: tuple[str, str] | None = None  # (pipeline run id, step run id)
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)


class FakeAzureMLPipelines(FakeWorkspace):
    """One workspace with one PipelineEndpoint; `versions` maps version -> published pipeline id."""

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        subscription: str = "sub-1",
        resource_group: str = "rg-1",
        workspace: str = "ws-1",
        datastore: str = "mnist_blob",
        endpoint_name: str = "mnist-training",
        mode: str = "process",
        queue_s: float = 0.3,
        run_s: float = 0.5,
        scale: float = 1.0,
        allow_reuse: bool = True,
        server: FakeHttpServer | None = None,
    ) -> None:
        super().__init__(
            store,
            subscription=subscription,
            resource_group=resource_group,
            workspace=workspace,
            datastore=datastore,
            mode=mode,
            queue_s=queue_s,
            run_s=run_s,
            scale=scale,
            server=server,
        )
        self.endpoint_id = str(uuid.uuid4())
        self.endpoint_name = endpoint_name
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, str] = {}
        self.default_version = "0"
        self.runs: dict[str, PipelineRun] = {}
        self.experiments: set[str] = set()  # created by the first run submitted to them
        self.fail_next: str | None = None  # the next run's step fails with this message
        self.publish(allow_reuse=allow_reuse)
        self._routes()

    # ---- the AzureML side ---------------------------------------------------------------------------
    def publish(self, allow_reuse: bool = True, make_default: bool = True) -> str:
        """Publish the training pipeline (as deploy/azureml/publish_pipeline.py does) as a new version."""
        pipeline_id = str(uuid.uuid4())
        self.pipelines[pipeline_id] = {
            "parameters": dict(pipeline_spec.PARAMETERS),
            "datapaths": {
                name: {"DataStoreName": self.datastore, "RelativePath": ""}
                for name in pipeline_spec.DATAPATH_PARAMETERS
            },
            # OutputFileDatasetConfig outputs (upload mode): uploaded to the datastore when the step ends.
            "outputs": list(pipeline_spec.OUTPUTS),
            "arguments": pipeline_spec.step_arguments(),
            "allow_reuse": allow_reuse,
        }
        version = str(len(self.versions))
        self.versions[version] = pipeline_id
        if make_default:
            self.default_version = version
        return version

    @property
    def submissions(self) -> int:
        """Pipeline runs created (what 'exactly one remote submission' counts)."""
        return len(self.runs)

    # ---- routes ---------------------------------------------------------------------------------------
    def _routes(self) -> None:
        r = self.route
        # Pipelines: azureml-core's ARM token. Run history: ARM (azureml-core) or AzureML (azure-ai-ml).
        # Log files are SAS URLs and discovery is anonymous: no token.
        r("GET", P + r"/PipelineEndpoints/Name", "endpoint_by_name", self._endpoint_by_name, audience=ARM)
        r(
            "GET",
            P + r"/PipelineEndpoints/Id/(?P<id>[^/]+)",
            "endpoint_by_id",
            self._endpoint_by_id,
            audience=ARM,
        )
        r(
            "POST",
            P + r"/PipelineRuns/PipelineEndpointSubmit/Id/(?P<id>[^/]+)(?:/(?P<version>[^/]+))?",
            "submit",
            self._submit_endpoint,
            audience=ARM,
        )
        r(
            "POST",
            P + r"/PipelineRuns/PipelineSubmit/(?P<pid>[^/]+)",
            "submit_pipeline",
            self._submit_pipeline,
            audience=ARM,
        )
        r("GET", P + r"/PipelineRuns/(?P<run>[^/]+)", "run_status", self._run_status, audience=ARM)
        r("DELETE", P + r"/PipelineRuns/(?P<run>[^/]+)/Execution", "cancel", self._cancel, audience=ARM)
        r(
            "POST",
            H + r"/experiments/(?P<exp>[^/]+)/runs:query",
            "runs_query",
            self._runs_query,
            audience=HISTORY,
        )
        for prefix in (H, H + r"/experiments/(?P<exp>[^/]+)"):
            r("GET", prefix + r"/runs/(?P<run>[^/]+)/children", "children", self._children, audience=HISTORY)
            r("GET", prefix + r"/runs/(?P<run>[^/]+)/details", "details", self._details, audience=HISTORY)
            r("GET", prefix + r"/runs/(?P<run>[^/]+)", "run", self._run, audience=HISTORY)
        r("GET", r"/logs/(?P<run>[^/]+)/(?P<name>.+)", "log_file", self._log_file, audience=None)
        r("GET", r"/discovery", "discovery", self._discovery, audience=None)
        r("GET", P + r"/DataTypes", "data_types", self._data_types, audience=ARM)
        r(
            "GET",
            P + r"/Pipelines/(?P<pid>[^/]+)",
            "published_pipeline",
            self._published_pipeline,
            audience=ARM,
        )

    def _check_workspace(self, req: Request) -> Reply | None:
        g = req.match.groupdict()
        if (g.get("sub"), g.get("rg"), g.get("ws")) != (
            self.subscription,
            self.resource_group,
            self.workspace,
        ):
            return _error(
                404, "WorkspaceNotFound", f"workspace {g.get('ws')} not found in resource group {g.get('rg')}"
            )
        return None

    def _endpoint_entity(self) -> dict[str, Any]:
        return {
            "Id": self.endpoint_id,
            "Name": self.endpoint_name,
            "Description": "MNIST training",
            "DefaultVersion": self.default_version,
            "PipelineVersionList": [{"Version": v, "PipelineId": p} for v, p in self.versions.items()],
            "Url": f"{self.url}/pipelines/v1.0/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}/PipelineRuns/PipelineEndpointSubmit/Id/{self.endpoint_id}",
            "EntityStatus": "Active",
            "Etag": "1",
            "Properties": {},
            "tags": {},
        }

    def _endpoint_by_name(self, req: Request) -> Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        if req.query.get("Name") != self.endpoint_name:
            return _error(
                404, "EntityNotFound", f"PipelineEndpoint with name {req.query.get('Name')} not found"
            )
        return Reply(200, self._endpoint_entity())

    def _endpoint_by_id(self, req: Request) -> Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        if req.match["id"] != self.endpoint_id:
            return _error(404, "EntityNotFound", f"PipelineEndpoint {req.match['id']} not found")
        return Reply(200, self._endpoint_entity())

    def _submit_endpoint(self, req: Request) -> Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        if req.match["id"] != self.endpoint_id:
            return _error(404, "EntityNotFound", f"PipelineEndpoint {req.match['id']} not found")
        version = req.match["version"] or req.query.get("pipelineVersion") or self.default_version
        if req.match["version"] and req.query.get("pipelineVersion") not in (None, req.match["version"]):
            return _error(400, "BadRequest", "pipelineVersion in path and query differ")
        if version not in self.versions:
            return _error(404, "EntityNotFound", f"pipeline endpoint has no version {version}")
        return self._create_run(req, self.versions[version])

    def _submit_pipeline(self, req: Request) -> Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        if req.match["pid"] not in self.pipelines:
            return _error(404, "EntityNotFound", f"published pipeline {req.match['pid']} not found")
        return self._create_run(req, req.match["pid"])

    def _create_run(self, req: Request, pipeline_id: str) -> Reply:
        body = req.body
        if not isinstance(body, dict):
            return _error(400, "BadRequest", "body must be a PipelineSubmissionInfo JSON object")
        for key, value in body.items():
            if key not in SUBMISSION_KEYS:
                return _error(400, "BadRequest", f"unknown field {key!r} in PipelineSubmissionInfo")
            if value is not None and not isinstance(value, SUBMISSION_KEYS[key]):
                return _error(400, "BadRequest", f"{key} must be {SUBMISSION_KEYS[key]}")
        experiment = body.get("ExperimentName") or ""
        if not EXPERIMENT_NAME.match(experiment):
            return _error(400, "BadRequest", f"ExperimentName {experiment!r} is not a valid experiment name")
        pipeline = self.pipelines[pipeline_id]
        parameters = dict(pipeline["parameters"])
        for name, value in (body.get("ParameterAssignments") or {}).items():
            if name not in parameters:
                return _error(400, "BadRequest", f"Parameter {name} is not defined in the pipeline")
            if not isinstance(value, str):
                return _error(
                    400, "BadRequest", f"Parameter {name}: values are strings, found {type(value).__name__}"
                )
            parameters[name] = value
        data_paths = {k: dict(v) for k, v in pipeline["datapaths"].items()}
        for name, value in (body.get("DataPathAssignments") or {}).items():
            if name not in data_paths:
                return _error(400, "BadRequest", f"DataPath parameter {name} is not defined in the pipeline")
            if not isinstance(value, dict) or set(value) - {"DataStoreName", "RelativePath"}:
                return _error(400, "BadRequest", f"DataPathAssignments[{name}] must be a LegacyDataPath")
            if value.get("DataStoreName") != self.datastore:
                return _error(
                    400, "UserError", f"Datastore {value.get('DataStoreName')} not found in the workspace"
                )
            data_paths[name] = {
                "DataStoreName": value["DataStoreName"],
                "RelativePath": str(value.get("RelativePath") or ""),
            }
        for name, value in data_paths.items():
            if not value["RelativePath"]:
                return _error(400, "BadRequest", f"DataPath parameter {name} has no value")
        for key in ("Properties", "tags"):
            for k, v in (body.get(key) or {}).items():
                if not isinstance(v, str):
                    return _error(400, "BadRequest", f"{key}[{k}] must be a string")

        run_id = str(uuid.uuid4())
        step_id = str(uuid.uuid4())
        reused = self._reusable(pipeline_id, parameters, data_paths) if pipeline["allow_reuse"] else None
        job, argv = self._job(run_id, step_id, pipeline_id, parameters, data_paths, reused is not None)
        run = PipelineRun(
            run_id,
            pipeline_id,
            experiment,
            body,
            parameters,
            data_paths,
            job,
            step_id,
            self.clock.now(),
            argv=argv,
            reused_from=reused,
            tags=dict(body.get("tags") or {}),
            properties=dict(body.get("Properties") or {}),
        )
        self.runs[run_id] = run
        self.experiments.add(experiment)
        self.runner.add(job)
        return Reply(200, self._run_entity(run))

    def _reusable(
        self, pipeline_id: str, parameters: dict[str, str], data_paths: dict[str, Any]
    ) -> tuple[str, str] | None:
        for run in self.runs.values():
            if (
                run.pipeline_id == pipeline_id
                and run.job.state == "Finished"
                and run.parameters == parameters
                and run.data_paths == data_paths
            ):
                return run.reused_from or (run.id, run.step_id)
        return None

    def _job(
        self,
        run_id: str,
        step_id: str,
        pipeline_id: str,
        parameters: dict[str, str],
        data_paths: dict[str, Any],
        reused: bool,
    ) -> tuple[SimJob, list[str]]:
        """The step's job and the arguments AzureML starts it with (the published arguments with the
        pipeline parameters, rewritten as AzureML rewrites them, and the local paths filled in).

        DataPath parameters are inputs, mounted read-only (a write to them fails the step); outputs
        are local folders uploaded to their destination in the datastore when the step succeeds.
        """
        base = self.runner._root / run_id
        mounts = {
            name: Mount(dp["RelativePath"], base / "mnt" / name, output=False)
            for name, dp in data_paths.items()
        }
        for name in self.pipelines[pipeline_id]["outputs"]:
            mounts[name] = Mount(
                pipeline_spec.output_path(step_id, name), base / "outputs" / name, output=True
            )
        values = {name: azureml_argument(value) for name, value in parameters.items()}
        values.update({name: str(mount.local) for name, mount in mounts.items()})
        args = [a.format(**values) for a in self.pipelines[pipeline_id]["arguments"]]
        job = SimJob(id=run_id, created=self.clock.now(), queue_s=self.queue_s, run_s=self.run_s)
        if reused:
            job.run_s = min(self.run_s, 0.2)
            job.simulated_log = ["step reused: no execution"]
            job.executes = False
            return job, args
        fail, self.fail_next = self.fail_next, None
        job.mounts = list(mounts.values())
        if self.mode == "simulate" or fail:
            job.fail_message = fail
            job.simulated_log = ["Starting the training step (simulated)", "metrics: held_out_accuracy=0.99"]
            job.simulated_outputs = {
                **TRAINED_MODEL,
                "metrics.json": json.dumps(_FAKE_METRICS).encode(),
            }
            return job, args
        job.command = [sys.executable, pipeline_spec.STEP_SCRIPT, *args]
        return job, args

    # ---- runs -------------------------------------------------------------------------------------------
    def _get(self, req: Request) -> PipelineRun | Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        run_id = req.match["run"]
        for run in self.runs.values():
            if run_id in (run.id, run.step_id):
                return run
        return _error(404, "RunNotFound", f"run {run_id} not found")

    def _run_entity(self, run: PipelineRun) -> dict[str, Any]:
        job = run.job
        return {
            "Id": run.id,
            "Description": run.submission.get("Description"),
            "Status": {
                "StatusCode": job.state,
                "StatusDetail": job.error,
                "CreationTime": _now_iso(self.clock, run.created),
                "EndTime": _now_iso(self.clock, job.ended),
            },
            "PipelineId": run.pipeline_id,
            "RunHistoryExperimentName": run.experiment,
            "RunSource": run.submission.get("RunSource"),
            "RunType": run.submission.get("RunType"),
            "ParameterAssignments": run.parameters,
            "TotalRunSteps": 1,
            "tags": run.tags,
            "Properties": run.properties,
            "EntityStatus": "Active",
            "IsSubmitted": True,
        }

    def _run_status(self, req: Request) -> Reply:
        run = self._get(req)
        return run if isinstance(run, Reply) else Reply(200, self._run_entity(run))

    def _cancel(self, req: Request) -> Reply:
        run = self._get(req)
        if isinstance(run, Reply):
            return run
        self.runner.cancel(run.id)
        return Reply(200, None)

    def _step_status(self, run: PipelineRun) -> str:
        return {"Finished": "Completed"}.get(run.job.state, run.job.state)

    def _history_run(self, run: PipelineRun, step: bool) -> dict[str, Any]:
        job = run.job
        record: dict[str, Any] = {
            "runId": run.step_id if step else run.id,
            "rootRunId": run.id,
            "status": self._step_status(run)
            if step
            else ("Completed" if job.state == "Finished" else job.state),
            "createdUtc": _now_iso(self.clock, run.created),
            "startTimeUtc": _now_iso(self.clock, job.started),
            "endTimeUtc": _now_iso(self.clock, job.ended),
            "runNumber": list(self.runs).index(run.id) + 1,
            "experimentId": run.experiment,
            "name": pipeline_spec.STEP_NAME if step else None,
            "displayName": pipeline_spec.STEP_NAME if step else run.submission.get("Description"),
            "runType": "azureml.StepRun" if step else "azureml.PipelineRun",
        }
        if step:
            record["parentRunId"] = run.id
            record["tags"] = {"azureml.nodeid": "train01", "azureml.pipeline": run.id}
            record["properties"] = {"azureml.runsource": "azureml.StepRun"}
            if run.reused_from:
                record["properties"].update(
                    {
                        "azureml.reusedrunid": run.reused_from[1],
                        "azureml.reusednodeid": "train01",
                        "azureml.reusedpipeline": run.reused_from[0],
                    }
                )
        else:
            record["tags"] = dict(run.tags)
            record["properties"] = {
                **run.properties,
                "azureml.runsource": "azureml.PipelineRun",
                "azureml.pipelineid": run.pipeline_id,
            }
        if job.error and job.state == "Failed":
            record["error"] = {"error": {"code": "UserError", "message": job.error}}
        record = {k: v for k, v in record.items() if v is not None}
        specs.validate(specs.RUN_HISTORY, "Run", record)
        return record

    def _runs_query(self, req: Request) -> Reply:
        if (bad := self._check_workspace(req)) is not None:
            return bad
        specs.validate(specs.RUN_HISTORY, "QueryParams", req.body)
        runs = [r for r in self.runs.values() if r.experiment == req.match["exp"]]
        if req.match["exp"] not in self.experiments:
            return _error(404, "ExperimentNotFound", f"experiment {req.match['exp']} not found")
        conditions = _parse_filter(str(req.body.get("filter") or ""))
        if conditions is None:
            return _error(400, "BadRequest", f"unsupported filter {req.body.get('filter')!r}")
        records = [self._history_run(r, step=False) for r in reversed(runs)]
        records = [
            rec
            for rec in records
            if all((rec.get(kind) or {}).get(key) == value for kind, key, value in conditions)
        ]
        top = int(req.body.get("top") or 100)
        page = {"value": records[:top]}
        specs.validate(specs.RUN_HISTORY, "PaginatedRunList", page)
        return Reply(200, page)

    def _run(self, req: Request) -> Reply:
        run = self._get(req)
        if isinstance(run, Reply):
            return run
        return Reply(200, self._history_run(run, step=req.match["run"] == run.step_id))

    def _children(self, req: Request) -> Reply:
        run = self._get(req)
        if isinstance(run, Reply):
            return run
        if req.match["run"] == run.step_id or run.job.state == "NotStarted":
            children: list[dict[str, Any]] = []
        else:
            children = [self._history_run(run, step=True)]
        page = {"value": children}
        specs.validate(specs.RUN_HISTORY, "PaginatedRunList", page)
        return Reply(200, page)

    def _details(self, req: Request) -> Reply:
        run = self._get(req)
        if isinstance(run, Reply):
            return run
        step = req.match["run"] == run.step_id
        record = self._history_run(run, step)
        details: dict[str, Any] = {
            k: record[k]
            for k in ("runId", "status", "parentRunId", "tags", "properties", "startTimeUtc", "endTimeUtc")
            if record.get(k) is not None
        }
        # Always there, empty before the step writes a log (azureml-core's Run.get_details indexes it).
        details["logFiles"] = {}
        if step and run.job.log is not None and run.job.log.exists() and not run.reused_from:
            details["logFiles"] = {
                "azureml-logs/70_driver_log.txt": f"{self.url}/logs/{run.step_id}/70_driver_log.txt?sv=2021&sig=not-a-secret"
            }
        if "error" in record:
            details["error"] = record["error"]
        specs.validate(specs.RUN_HISTORY, "RunDetails", details)
        return Reply(200, details)

    def _published_pipeline(self, req: Request) -> Reply:
        """A PipelineEntity (the published pipeline behind an endpoint version)."""
        if (bad := self._check_workspace(req)) is not None:
            return bad
        pid = req.match["pid"]
        if pid not in self.pipelines:
            return _error(404, "EntityNotFound", f"published pipeline {pid} not found")
        version = next(v for v, p in self.versions.items() if p == pid)
        return Reply(
            200,
            {
                "Id": pid,
                "Name": f"{self.endpoint_name}-pipeline",
                "Description": "MNIST training",
                "Version": version,
                "GraphId": str(uuid.uuid5(uuid.NAMESPACE_URL, pid)),
                "TotalRunSteps": 1,
                "ParameterAssignments": self.pipelines[pid]["parameters"],
                "Url": f"{self.url}/pipelines/v1.0/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}/PipelineRuns/PipelineSubmit/{pid}",
                "EntityStatus": "Active",
                "ContinueRunOnStepFailure": False,
                "Properties": {},
            },
        )

    def _data_types(self, req: Request) -> Reply:
        """The built-in data types every workspace has (the SDK checks them before anything else)."""
        files = [
            "AnyFile",
            "AzureBlobReference",
            "AzureDataLakeReference",
            "AzureFilesReference",
            "AzureSqlDatabaseReference",
            "AzurePostgresDatabaseReference",
            "AzureDataLakeGen2Reference",
            "AzureMLDataset",
            "AzureMySqlDatabaseReference",
            "DBFSReference",
        ]
        types = [
            {"Id": t, "Name": t, "Description": t, "IsDirectory": False, "EntityStatus": "Active"}
            for t in files
        ]
        types.append(
            {
                "Id": "AnyDirectory",
                "Name": "AnyDirectory",
                "Description": "AnyDirectory",
                "IsDirectory": True,
                "EntityStatus": "Active",
            }
        )
        return self._check_workspace(req) or Reply(200, types)

    def _discovery(self, req: Request) -> Reply:
        """The workspace discovery document azureml-core reads to find each service."""
        keys = (
            "api",
            "catalog",
            "experimentation",
            "gallery",
            "history",
            "hyperdrive",
            "labeling",
            "modelmanagement",
            "pipelines",
            "studiocoreservices",
            "studio",
            "execution",
        )
        return Reply(200, {k: self.url for k in keys})

    def _log_file(self, req: Request) -> Reply:
        if "sig" not in req.query:
            return _error(403, "AuthenticationFailed", "missing SAS signature")
        for run in self.runs.values():
            if run.step_id == req.match["run"] and run.job.log is not None and run.job.log.exists():
                return Reply(200, raw=run.job.log.read_bytes())
        return _error(404, "BlobNotFound", "log not found")


_FAKE_METRICS = {
    "held_out_accuracy": 0.99,
    "log_loss": 0.05,
    "train_seconds": 1.0,
    "n_train": 600,
    "n_held_out": 200,
    "confusion_matrix": [[20 if i == j else 0 for j in range(10)] for i in range(10)],
}


def azureml_argument(value: str) -> str:
    """A pipeline parameter's value as the step receives it in its arguments.

    AzureML rewrites step arguments: a semicolon arrives backslash-escaped (Azure/MachineLearningNotebooks
    issue 1536, "PythonScriptStep arguments wrongly encodes strings with semicolons": `a;b` arrives as
    `a\\;b`). That is the rewriting documented; a value that must arrive intact carries no such character.
    """
    return value.replace(";", "\\;")


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"Error": {"Code": code, "Message": message}})


# azureml-core's OData helpers (azureml/_restclient/_odata: PROP_EQ_FORMAT_STR, value_to_odata_string)
# write "(Properties/<key> eq \"<value>\")", joined by " and " inside one more pair of parentheses.
# That is the only form the fake accepts: a single-quoted literal is refused, since the SDK never
# sends one and no Microsoft document says the service takes it.
_CONDITION = re.compile(r'^\((Properties|Tags)/([\w.\-]+) eq "([^"]*)"\)$')
_TOP_LEVEL = "(ParentRunId eq null)"  # azureml-core adds it unless children are asked for


def _parse_filter(text: str) -> list[tuple[str, str, str]] | None:
    """The OData subset azureml-core sends for property/tag equality: '(Properties/k eq "v")', or
    '((Properties/k eq "v") and (Tags/t eq "w"))' for several conditions."""
    text = text.strip()
    if not text:
        return []
    parts = [text]
    if text.startswith("((") and text.endswith("))"):
        parts = text[1:-1].split(") and (")
        parts = [p if p.startswith("(") else f"({p}" for p in parts]
        parts = [p if p.endswith(")") else f"{p})" for p in parts]
    out = []
    for part in parts:
        if part == _TOP_LEVEL:
            continue  # the fake's query answers top-level (pipeline) runs only
        m = _CONDITION.match(part)
        if not m:
            return None
        out.append((m.group(1).lower(), m.group(2), m.group(3)))
    return out
