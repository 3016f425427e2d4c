"""A stateful contract fake of AzureML v2 batch endpoints: ARM resources, the scoring URI, jobs.

ARM answers (batch endpoint, deployment, model version, job, job list) are validated against the
official 2023-10-01 mfe spec before they are sent (ARM common types are permissive, see specs.py).
The invocation body follows azure-ai-ml's BatchJobSchema (camelCase, or PascalCase as ADF's Web
activity sends it; keys are matched case-insensitively); there is no public spec for it.

Contract points kept: the output path must not exist ("already exists" → 400), a job name given
in the body (`name`) names the job and must be new in the workspace (409 otherwise), only top-level
files of an input folder are read, the default deployment serves when no `azureml-model-deployment`
header is sent, cancel answers 202 + Location polled until done. Nothing undocumented is promised:
the job does not carry the invocation's own properties back, and the jobs listing has no order. Jobs really run the deployment's
scoring script (deploy/azureml/batch_score.py) on the files from the datastore (Azurite) with the
deployment's registered model, and upload its output folder; `mode="simulate"` writes stand-in files.

Run history (workspace-scoped, as azure-ai-ml's `jobs.stream`/`jobs.download` read a batch job): a batch
job is a pipeline run whose one child run, `batchscoring`, runs the scoring script. The parent's details
carry the job's error; the child's details list the script's logs in `logFiles` as SAS URLs, where the
parallel-run driver keeps them (`logs/user/stdout/<node>/process000.stdout.txt` and
`logs/user/stderr/<node>/process000.stderr.txt`), and its own error. Answers are validated against the
run-history v1.0 spec; nothing the spec does not define is added.
"""

from __future__ import annotations

import json
import random
import re
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resources.storage import ObjectStore
from tests.support.fakes import specs
from tests.support.fakes.http import ARM, AZUREML, AZUREML_OR_ARM, FakeHttpServer, Reply, Request
from tests.support.fakes.jobs import FakeWorkspace, Mount, SimJob

A = r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)"
STATUS = {
    "NotStarted": "NotStarted",
    "Running": "Running",
    "Finished": "Completed",
    "Failed": "Failed",
    "Canceled": "Canceled",
}
# The fields azure-ai-ml's BatchJobSchema can put on the wire (azure/ai/ml/_schema/_deployment/batch/
# batch_job.py, `make`), lower-cased. No `tags`: a batch invocation cannot tag its job.
BATCH_JOB_KEYS = {
    "compute",
    "dataset",
    "errorthreshold",
    "inputdata",
    "minibatchsize",
    "name",
    "outputdata",
    "outputdataset",
    "outputfilename",
    "retrysettings",
    "properties",
}
# A job name, as ARM names a workspace's jobs (the 2023-10-01 spec's JobBase name pattern is not stated;
# this is the service's documented rule for names: letters, digits, '-' and '_', 255 at most).
JOB_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,254}$")
# Run history, workspace-scoped (Runs_GetDetails, Runs_GetChild: the routes azure-ai-ml's RunOperations call).
HISTORY = r"/history/v1\.0" + A
# Where the parallel-run driver of a batch deployment keeps the scoring script's output, per node and
# process (docs: "Troubleshooting batch endpoints", "Troubleshoot ParallelRunStep"); one node, one process.
NODE = "10.0.0.4"
STDOUT_LOG = f"logs/user/stdout/{NODE}/process000.stdout.txt"
STDERR_LOG = f"logs/user/stderr/{NODE}/process000.stderr.txt"
SCORING_STEP = (
    "batchscoring"  # the child run of a batch job (azure-ai-ml: `_get_batch_job_scoring_output_uri`)
)


def _lower(d: Any) -> Any:
    return {str(k).lower(): v for k, v in d.items()} if isinstance(d, dict) else d


@dataclass
class BatchJob:
    name: str
    deployment: str
    deployment_header: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    properties: dict[str, str]
    job: SimJob
    cancel_polls: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    child_run: str = field(default_factory=lambda: str(uuid.uuid4()))  # the batchscoring step's run id


class FakeAzureMLBatch(FakeWorkspace):
    def __init__(
        self,
        store: ObjectStore | None,
        *,
        subscription: str = "sub-1",
        resource_group: str = "rg-1",
        workspace: str = "ws-1",
        datastore: str = "mnist_blob",
        endpoint_name: str = "mnist-batch",
        mode: str = "process",
        queue_s: float = 0.3,
        run_s: float = 0.5,
        scale: float = 1.0,
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
        self.endpoint_name = endpoint_name
        self.models: dict[tuple[str, str], str] = {}  # (name, version) -> modelUri
        self.deployments: dict[str, tuple[str, str]] = {}  # deployment -> (model name, version)
        self.default_deployment: str | None = None
        self.jobs: dict[str, BatchJob] = {}
        self.fail_next: str | None = None
        # Command jobs (azureml_v2_training): the error code of the next failure, and each failed job's.
        self.fail_next_code = "UserError"
        self.error_codes: dict[str, str] = {}
        self.honours_job_name = True  # False: a service that names jobs itself (what the backend must notice)
        self._epoch = datetime.now(UTC).timestamp()  # wall time of the clock's 0, for run-history times
        self._routes()

    # ---- the AzureML side (what deploy/azureml/deploy_batch.py does) -----------------------------------
    def deploy(self, model_prefix: str, deployment: str = "blue", default: bool = True) -> str:
        """Register the model folder as mnist:<n> and deploy it; returns the version."""
        version = str(len(self.models) + 1)
        self.models[("mnist", version)] = (
            f"azureml://datastores/{self.datastore}/paths/{model_prefix.strip('/')}"
        )
        self.deployments[deployment] = ("mnist", version)
        if default or self.default_deployment is None:
            self.default_deployment = deployment
        return version

    @property
    def invocations(self) -> int:
        return len(self.jobs)

    @property
    def scoring_uri(self) -> str:
        return f"{self.url}/endpoints/{self.endpoint_name}/jobs"

    def _arm_id(self, path: str) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}/{path}"

    # ---- routes ------------------------------------------------------------------------------------------
    def _routes(self) -> None:
        # ARM routes (and ARM's async-operation URL) take an ARM token; the scoring URI an AzureML one.
        r = self.route
        r("GET", A + r"/batchEndpoints/(?P<ep>[^/]+)", "endpoint", self._endpoint, audience=ARM)
        r(
            "GET",
            A + r"/batchEndpoints/(?P<ep>[^/]+)/deployments",
            "deployments",
            self._deployments,
            audience=ARM,
        )
        r(
            "GET",
            A + r"/batchEndpoints/(?P<ep>[^/]+)/deployments/(?P<dep>[^/]+)",
            "deployment",
            self._deployment,
            audience=ARM,
        )
        r("GET", A + r"/models/(?P<name>[^/]+)/versions/(?P<ver>[^/]+)", "model", self._model, audience=ARM)
        r("GET", A + r"/jobs", "jobs_list", self._jobs_list, audience=ARM)
        r("GET", A + r"/jobs/(?P<job>[^/]+)", "job", self._job, audience=ARM)
        r("POST", A + r"/jobs/(?P<job>[^/]+)/cancel", "cancel", self._cancel, audience=ARM)
        r("GET", r"/operations/cancel/(?P<job>[^/]+)", "cancel_status", self._cancel_status, audience=ARM)
        r("POST", r"/endpoints/(?P<ep>[^/]+)/jobs", "invoke", self._invoke, audience=AZUREML)
        # Run history takes an AzureML token (azure-ai-ml) or an ARM one (azureml-core); log files are SAS URLs.
        r(
            "GET",
            HISTORY + r"/runs/(?P<run>[^/]+)/details",
            "run_details",
            self._run_details,
            audience=AZUREML_OR_ARM,
        )
        r(
            "GET",
            HISTORY + r"/runs/(?P<run>[^/]+)/children",
            "run_children",
            self._run_children,
            audience=AZUREML_OR_ARM,
        )
        r("GET", r"/batchlogs/(?P<run>[^/]+)/(?P<file>.+)", "batch_log", self._batch_log, audience=None)

    def _arm_check(self, req: Request) -> Reply | None:
        g = req.match.groupdict()
        if "sub" in g and (g["sub"], g["rg"], g["ws"]) != (
            self.subscription,
            self.resource_group,
            self.workspace,
        ):
            return _error(404, "ResourceNotFound", f"workspace {g['ws']} not found")
        if "sub" in g and not req.query.get("api-version"):
            return _error(400, "MissingApiVersionParameter", "The api-version query parameter is required")
        if "ep" in g and g["ep"] != self.endpoint_name:
            return _error(404, "ResourceNotFound", f"batch endpoint {g['ep']} not found")
        return None

    def _endpoint_resource(self) -> dict[str, Any]:
        res = {
            "id": self._arm_id(f"batchEndpoints/{self.endpoint_name}"),
            "name": self.endpoint_name,
            "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints",
            "location": "westeurope",
            "properties": {
                "authMode": "AADToken",
                "scoringUri": self.scoring_uri,
                "defaults": {"deploymentName": self.default_deployment},
                "provisioningState": "Succeeded",
            },
        }
        specs.validate(specs.MFE, "BatchEndpointTrackedResource", res)
        return res

    def _deployment_resource(self, name: str) -> dict[str, Any]:
        model, version = self.deployments[name]
        res = {
            "id": self._arm_id(f"batchEndpoints/{self.endpoint_name}/deployments/{name}"),
            "name": name,
            "type": "Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments",
            "location": "westeurope",
            "properties": {
                "model": {
                    "referenceType": "Id",
                    "assetId": f"azureml:{self._arm_id(f'models/{model}/versions/{version}')}",
                },
                "codeConfiguration": {
                    "codeId": "azureml:mnist-code:1",
                    "scoringScript": "deploy/azureml/batch_score.py",
                },
                "outputAction": "SummaryOnly",
                "miniBatchSize": 1000,
                # As deploy_batch.py deploys it: a failed run() fails the job (the fake's jobs fail so).
                "errorThreshold": 0,
                "provisioningState": "Succeeded",
            },
        }
        specs.validate(specs.MFE, "BatchDeploymentTrackedResource", res)
        return res

    def _endpoint(self, req: Request) -> Reply:
        return self._arm_check(req) or Reply(200, self._endpoint_resource())

    def _deployments(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        page = {"value": [self._deployment_resource(n) for n in self.deployments]}
        specs.validate(specs.MFE, "BatchDeploymentTrackedResourceArmPaginatedResult", page)
        return Reply(200, page)

    def _deployment(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        if req.match["dep"] not in self.deployments:
            return _error(404, "ResourceNotFound", f"deployment {req.match['dep']} not found")
        return Reply(200, self._deployment_resource(req.match["dep"]))

    def _model(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        key = (req.match["name"], req.match["ver"])
        if key not in self.models:
            return _error(404, "ResourceNotFound", f"model {key[0]}:{key[1]} not found")
        res = {
            "id": self._arm_id(f"models/{key[0]}/versions/{key[1]}"),
            "name": key[1],
            "type": "Microsoft.MachineLearningServices/workspaces/models/versions",
            "properties": {"modelType": "mlflow_model", "modelUri": self.models[key], "flavors": {}},
        }
        specs.validate(specs.MFE, "ModelVersionResource", res)
        return Reply(200, res)

    # ---- invocation ----------------------------------------------------------------------------------------
    def _invoke(self, req: Request) -> Reply:
        if req.match["ep"] != self.endpoint_name:
            return _error(404, "EndpointNotFound", f"batch endpoint {req.match['ep']} not found")
        body = _lower(req.body)
        if not isinstance(body, dict) or set(body) != {"properties"}:
            return _error(400, "BadRequest", 'body must be {"properties": {...}}')
        props = _lower(body["properties"])
        unknown = set(props) - BATCH_JOB_KEYS
        if unknown:
            return _error(400, "BadRequest", f"unknown batch job field(s) {sorted(unknown)}")
        header = req.headers.get("azureml-model-deployment")
        deployment = header or self.default_deployment
        if deployment not in self.deployments:
            return _error(
                400, "BadRequest", f"deployment {deployment} does not exist on endpoint {self.endpoint_name}"
            )
        inputs = {k: _lower(v) for k, v in (_lower(props.get("inputdata")) or {}).items()}
        outputs = {k: _lower(v) for k, v in (_lower(props.get("outputdata")) or {}).items()}
        if len(inputs) != 1:
            return _error(400, "BadRequest", "a model deployment takes exactly one input")
        mounts: list[Mount] = []
        for name, value in inputs.items():
            if value.get("jobinputtype") not in ("UriFolder", "UriFile"):
                return _error(400, "BadRequest", f"input {name}: jobInputType must be UriFolder or UriFile")
            prefix = self._datastore_path(value.get("uri"))
            if prefix is None:
                return _error(
                    400,
                    "BadRequest",
                    f"input {name}: {value.get('uri')} is not a path on a registered datastore",
                )
            mounts.append(Mount(prefix, Path(), output=False))
        for name, value in outputs.items():
            if value.get("joboutputtype") not in ("UriFolder", "UriFile"):
                return _error(400, "BadRequest", f"output {name}: jobOutputType must be UriFolder or UriFile")
            prefix = self._datastore_path(value.get("uri"))
            if prefix is None:
                return _error(400, "BadRequest", f"output {name}: outputs go to a registered Blob datastore")
            if self.store is not None and any(self.store.list(prefix.rstrip("/") + "/")):
                return _error(400, "UserError", f"Output path {value.get('uri')} already exists")
            mounts.append(Mount(prefix, Path(), output=True))
        job_props = {str(k): str(v) for k, v in (props.get("properties") or {}).items()}
        name = str((props.get("name") if self.honours_job_name else None) or f"batchjob-{uuid.uuid4()}")
        if not JOB_NAME.match(name):
            return _error(400, "UserError", f"job name {name!r} is not a valid job name")
        if name in self.jobs:
            return _error(409, "UserError", f"a job named {name} already exists in the workspace")
        sim = self._sim_job(name, deployment, mounts)
        job = BatchJob(name, deployment, header, inputs, outputs, job_props, sim)
        self.jobs[name] = job
        self.runner.add(sim)
        return Reply(200, self._job_resource(job))

    def _datastore_path(self, uri: Any) -> str | None:
        head = f"azureml://datastores/{self.datastore}/paths/"
        return str(uri)[len(head) :] if isinstance(uri, str) and uri.startswith(head) else None

    def _sim_job(self, name: str, deployment: str, mounts: list[Mount]) -> SimJob:
        job = SimJob(id=name, created=self.clock.now(), queue_s=self.queue_s, run_s=self.run_s, mounts=mounts)
        fail, self.fail_next = self.fail_next, None
        if self.mode == "simulate" or fail:
            job.fail_message = fail
            job.simulated_log = [f"{name}: simulated scoring"]  # the script's stdout
            job.simulated_outputs = {
                "predictions.csv": b"source_file,index,predicted_label,probability\nimages.idx3-ubyte.gz,0,7,0.99000\n",
                "summary.json": json.dumps(
                    {
                        "images": 1,
                        "images_per_second": 100.0,
                        "mean_probability": 0.99,
                        "low_confidence": 0,
                        "label_counts": {str(d): int(d == 7) for d in range(10)},
                        "files": {"images.idx3-ubyte.gz": 1},
                    }
                ).encode(),
            }
            return job
        # Run the deployment's scoring script as the batch driver would, on the top-level input files.
        base = self.runner._root / name
        model_prefix = self._datastore_path(self.models[self.deployments[deployment]])
        assert model_prefix is not None
        model = Mount(model_prefix, base / "model", output=False)
        data = next(m for m in mounts if not m.output)
        data.local = base / "input"
        out = next(m for m in mounts if m.output)
        out.local = base / "output"
        job.mounts = [model, data, out]
        # The driver keeps the script's stdout and stderr apart (STDOUT_LOG, STDERR_LOG): the job's log is
        # its stdout, its stderr goes to stderr.txt next to it.
        job.command = [
            sys.executable,
            "-c",
            "import os, sys, pathlib, runpy; "
            f"os.dup2(os.open({str(base / 'stderr.txt')!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2); "
            "d = pathlib.Path(sys.argv[1]); "
            "files = sorted(str(p) for p in d.iterdir() if p.is_file() and p.name != '_SUCCESS'); "
            "sys.argv = ['batch_score.py', '--model-dir', sys.argv[2], '--output-dir', sys.argv[3], *files]; "
            "runpy.run_path('deploy/azureml/batch_score.py', run_name='__main__')",
            str(data.local),
            str(model.local),
            str(out.local),
        ]
        return job

    # ---- jobs ------------------------------------------------------------------------------------------------
    def _job_resource(self, job: BatchJob) -> dict[str, Any]:
        wsid = f"/subscriptions/{self.subscription}/resourcegroups/{self.resource_group}/workspaces/{self.workspace}"
        res = {
            "id": self._arm_id(f"jobs/{job.name}"),
            "name": job.name,
            "type": "Microsoft.MachineLearningServices/workspaces/jobs",
            "properties": {
                "jobType": "Pipeline",
                "status": STATUS[job.job.state],
                "experimentName": job.properties.get("experimentName", self.endpoint_name),
                "displayName": job.name,
                # What the service adds; never the invocation's own properties, which neither the spec
                # nor the batch endpoint documentation promises to keep on the job.
                "properties": {},
                "services": {"Studio": {"endpoint": f"https://ml.azure.com/runs/{job.name}?wsid={wsid}"}},
                "outputs": {
                    k: {"jobOutputType": "uri_folder", "uri": v.get("uri")} for k, v in job.outputs.items()
                },
            },
        }
        specs.validate(specs.MFE, "JobBaseResource", res)
        return res

    def _job(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        job = self.jobs.get(req.match["job"])
        if job is None:
            return _error(404, "UserError", f"job {req.match['job']} not found")
        return Reply(200, self._job_resource(job))

    def _jobs_list(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        # The spec promises no order for the listing: the fake gives none.
        jobs = random.sample(list(self.jobs.values()), len(self.jobs))
        if req.query.get("listViewType", "ActiveOnly") == "ActiveOnly":
            jobs = [j for j in jobs if not j.extra.get("archived")]
        if tag := req.query.get("tag"):
            jobs = [j for j in jobs if tag in j.extra.get("tags", {})]
        page = {"value": [self._job_resource(j) for j in jobs]}
        specs.validate(specs.MFE, "JobBaseResourceArmPaginatedResult", page)
        return Reply(200, page)

    def _cancel(self, req: Request) -> Reply:
        if (bad := self._arm_check(req)) is not None:
            return bad
        job = self.jobs.get(req.match["job"])
        if job is None:
            return _error(404, "UserError", f"job {req.match['job']} not found")
        self.runner.cancel(job.name)
        return Reply(202, None, {"Location": f"{self.url}/operations/cancel/{job.name}", "Retry-After": "0"})

    def _cancel_status(self, req: Request) -> Reply:
        job = self.jobs[req.match["job"]]
        return Reply(200 if job.job.terminal else 202, None)

    # ---- run history: a batch job is a pipeline run with one child, the batchscoring step --------------------
    def _history_check(self, req: Request) -> Reply | None:
        if (req.match["sub"], req.match["rg"], req.match["ws"]) != (
            self.subscription,
            self.resource_group,
            self.workspace,
        ):
            return _error(404, "ResourceNotFound", f"workspace {req.match['ws']} not found")
        return None

    def _batch_run(self, run_id: str) -> tuple[BatchJob, bool] | None:
        """(job, whether `run_id` is its batchscoring step) for a run of a batch job."""
        for job in list(self.jobs.values()):
            if run_id in (job.name, job.child_run):
                return job, run_id == job.child_run
        return None

    def _step_logs(self, job: BatchJob) -> dict[str, Any]:
        """The scoring script's log files that exist, by the name the driver gives them."""
        sim = job.job
        files: dict[str, Any] = {}
        if sim.log is not None and sim.log.exists():
            files[STDOUT_LOG] = sim.log
        if sim.workdir is not None and (sim.workdir / "stderr.txt").exists():
            files[STDERR_LOG] = sim.workdir / "stderr.txt"
        return files

    def _run_times(self, sim: SimJob) -> dict[str, str]:
        def at(t: float | None) -> str | None:
            return (
                None
                if t is None
                else datetime.fromtimestamp(self._epoch + t / self.clock.scale, UTC).isoformat()
            )

        times = {"startTimeUtc": at(sim.started), "endTimeUtc": at(sim.ended)}
        return {k: v for k, v in times.items() if v}

    def _run_details(self, req: Request) -> Reply:
        if (bad := self._history_check(req)) is not None:
            return bad
        found = self._batch_run(req.match["run"])
        if found is None:
            return _error(404, "RunNotFound", f"run {req.match['run']} not found")
        job, step = found
        sim = job.job
        details: dict[str, Any] = {
            "runId": job.child_run if step else job.name,
            "status": STATUS[sim.state],
            "properties": {},
            "tags": {},
            **self._run_times(sim),
        }
        if step:
            details["parentRunId"] = job.name
            details["logFiles"] = {
                name: f"{self.url}/batchlogs/{job.child_run}/{name}?sv=2021&sig=not-a-secret"
                for name in self._step_logs(job)
            }
        if sim.state == "Failed":
            # The step reports the script's failure; the job (the pipeline run) that a step failed. Neither
            # repeats the script's output: that is in the step's logs.
            message = (
                f"The scoring script failed: {sim.error.split(':', 1)[0] if sim.error else 'error'}. "
                f"See {STDERR_LOG} and logs/user/error.txt"
                if step
                else f"Pipeline has failed child jobs. Failed nodes: /{SCORING_STEP}. "
                "For more details and logs, please go to the job detail page and check the child jobs."
            )
            details["error"] = {"error": {"code": "UserError", "message": message}}
        specs.validate(specs.RUN_HISTORY, "RunDetails", details)
        return Reply(200, details)

    def _run_children(self, req: Request) -> Reply:
        if (bad := self._history_check(req)) is not None:
            return bad
        found = self._batch_run(req.match["run"])
        if found is None:
            return _error(404, "RunNotFound", f"run {req.match['run']} not found")
        job, step = found
        children: list[dict[str, Any]] = []
        if not step and job.job.state != "NotStarted":  # the step exists once the job runs
            children.append(
                {
                    "runId": job.child_run,
                    "parentRunId": job.name,
                    "rootRunId": job.name,
                    "displayName": SCORING_STEP,
                    "name": SCORING_STEP,
                    "status": STATUS[job.job.state],
                    "properties": {},
                    "tags": {},
                    **self._run_times(job.job),
                }
            )
        page = {"value": children}
        specs.validate(specs.RUN_HISTORY, "PaginatedRunList", page)
        return Reply(200, page)

    def _batch_log(self, req: Request) -> Reply:
        if "sig" not in req.query:
            return _error(403, "AuthenticationFailed", "missing SAS signature")
        found = self._batch_run(req.match["run"])
        path = self._step_logs(found[0]).get(req.match["file"]) if found and found[1] else None
        if path is None:
            return _error(404, "BlobNotFound", "log not found")
        return Reply(200, raw=path.read_bytes())


def _error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})
