"""Scoring on an AzureML v2 batch endpoint, over its REST contract (no azure-ai-ml needed).

What ADF's Web activity + Until/Wait loop did, as a compute backend: invoke the batch endpoint with
the batch's folder in the datastore as a UriFolder input and a fresh output folder, follow the job,
cancel it when the Dagster run is cancelled, copy the result into the predictions folder.

Calls (ARM = https://management.azure.com<workspace>, api-version 2023-10-01):
- GET ARM/batchEndpoints/<ep>                   scoringUri, default deployment
- GET ARM/batchEndpoints/<ep>/deployments/<d>   which model it serves (properties.model.assetId)
- GET ARM/models/<name>/versions/<v>            where that model lives (properties.modelUri)
- POST <scoringUri> (token audience https://ml.azure.com)  {"properties": {"name", "inputData",
  "outputData", "properties"}}, the body azure-ai-ml's `batch_endpoints.invoke(job_name=...)` sends;
  the `azureml-model-deployment` header is set per request, so a deployment named for one call never
  leaks into the next (azure-ai-ml keeps it in a module-level dict)
- GET ARM/jobs/<name>    status, and finding an earlier invocation      POST ARM/jobs/<name>/cancel
- run history (H = https://<region>.api.azureml.ms/history/v1.0<workspace>, ?api-version=v1.0, an ARM
  token: the calls azure-ai-ml's `jobs.stream` / `jobs.download` make for a batch job):
  GET H/runs/<job>/children (the job's one step, `batchscoring`), GET H/runs/<run>/details (status,
  error, logFiles: SAS URLs, never logged); the step's `logs/user/stdout/...` and `logs/user/stderr/...`
  files are read by offset while the job runs

Logs and failures: a model deployment has no Pipes channel back, so the job's own logs are the way
back. Each poll logs status transitions and the scoring script's new output lines; when the job fails,
the step fails with the job's and the step's errors as run history reports them, and the end of the
script's stderr, whose last line carries the workload's failure record (workload.failure), so the
failure reads as on every other backend. Without a region (or service URL) only status transitions
and the job's state are known.

Idempotency: the invocation names its job after the Dagster idempotency key (`job_name`), and its
output folder after the job, so a submission whose answer was lost is found with Jobs_Get and its
output without reading anything back from the job. It does not rest on the job keeping the
invocation's properties or on the jobs listing's order, which nothing documents; a batch
invocation cannot tag its job (BatchJobSchema has no tags), and the 2023-10-01 listing filters by
tag key only.

Which model scores: the deployment serves one registered model (the mnist_model_serving asset, or
deploy/azureml/deploy_batch.py by hand, registers the promoted model folder and deploys it). Before invoking, the backend checks that the
deployment's model is the promoted model the asset asked for (same datastore folder) and fails with
what to run otherwise: scoring with a model other than the promoted one would be silent drift.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.errors import PermanentAzureError, TransientAzureError
from resources.azure.rest import ARM_SCOPE, AZUREML_SCOPE
from resources.azure.retry import Backoff, submit_once
from resources.compute.base import STDERR_TAIL_LINES, JobState, JobStatus, WorkloadRequest
from resources.compute.outputs import completion_marker, copy_prefix, is_complete
from resources.storage import ObjectStore

from .run_history import Step, WorkspaceRuns, run_error
from .workspace import AzureMLBackend, LogLinePipesReader

API_VERSION = "2023-10-01"
OUTPUTS_PREFIX = "_batch_outputs"
KEY_PROPERTY = "dagster.idempotency_key"  # for people reading the job in the studio; never read back
# The scoring script's output in a batch job's step: the parallel-run driver's per-process files, or the
# common runtime's std_log (what `az ml job stream` reads for other jobs).
USER_LOG = re.compile(r"^(logs/user/(stdout|stderr)/.+\.txt|user_logs/std_log[^/]*\.txt)$")
STDERR_LOG = re.compile(r"^(logs/user/stderr/.+|user_logs/std_log[^/]*\.txt)$")
_NOT_STARTED = {"notstarted", "starting", "provisioning", "preparing", "queued", "unknown", ""}
_STATES = {
    "notstarted": JobState.QUEUED,
    "starting": JobState.QUEUED,
    "provisioning": JobState.QUEUED,
    "preparing": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "unknown": JobState.QUEUED,
    "running": JobState.RUNNING,
    "finalizing": JobState.RUNNING,
    "cancelrequested": JobState.RUNNING,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "canceled": JobState.CANCELED,
    "notresponding": JobState.FAILED,
    "paused": JobState.FAILED,
}


@dataclass
class _JobInfo:
    status: str = ""
    deployment: str | None = None
    model: str | None = None
    studio_url: str | None = None
    reported: str = ""  # the last status logged
    steps: dict[str, Step] = field(default_factory=dict)  # the job's step runs (batchscoring), by run id
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))  # the script's stderr
    logs_done: bool = False


class AzureMLBatchEndpointBackend(AzureMLBackend):
    """Runs the scoring task as a job of an AzureML v2 batch endpoint (a model deployment).

    `input_name` / `model_input`: which request input is the batch folder (sent as UriFolder) and
    which is the model folder (checked against the deployment's model, not sent).
    """

    arm_url: str = "https://management.azure.com"
    endpoint_name: str = "mnist-batch"
    deployment_name: str | None = None  # None: the endpoint's default deployment
    experiment_name: str = "mnist-scoring"
    input_name: str = "batch"
    model_input: str = "model"
    output_name: str = "score"  # model deployments have one output, named "score"
    check_model: bool = True
    # Run history (the job's logs and errors) is https://<region>.api.azureml.ms; unset: not read.
    region: str | None = None
    service_url: str | None = None  # overrides the regional URL (sovereign clouds, test doubles)

    client_name: ClassVar[str] = "azureml-batch-endpoint"
    _jobs: dict[str, _JobInfo] = PrivateAttr(default_factory=dict)
    _log_pipes: LogLinePipesReader | None = PrivateAttr(default=None)

    def _arm(self, path: str) -> str:
        return f"{self.arm_url.rstrip('/')}{self.workspace_path}/{path}"

    def _api(self) -> Any:
        return self._rest(ARM_SCOPE, "AzureML")

    def _history(self) -> WorkspaceRuns | None:
        if self.service_url:
            base = self.service_url.rstrip("/")
        elif self.region:
            base = f"https://{self.region}.api.azureml.ms"
        else:
            return None
        return WorkspaceRuns(
            self._api(),  # an ARM token, as azure-ai-ml's run-history client sends (the service takes both)
            self._rest(None, "AzureML log files"),  # SAS URLs: no token goes with them
            lambda path: f"{base}/history/v1.0{self.workspace_path}/{path}",
        )

    def _get(self, path: str, what: str, fix: str = "") -> Any:
        return (
            self._api()
            .call("GET", self._arm(path), params={"api-version": API_VERSION}, what=what, fix=fix)
            .json()
        )

    # ---- endpoint, deployment, model ----------------------------------------------------------------
    def _endpoint(self) -> dict[str, Any]:
        endpoint = self._get(
            f"batchEndpoints/{quote(self.endpoint_name)}",
            f"batch endpoint {self.endpoint_name!r}",
            "MNIST_AZUREML_BATCH_ENDPOINT and the workspace settings",
        )
        props = endpoint.get("properties") or {}
        if not props.get("scoringUri"):
            raise PermanentAzureError(
                f"AzureML: batch endpoint {self.endpoint_name!r} has no scoring URI (provisioning state "
                f"{props.get('provisioningState')}): wait until it is provisioned"
            )
        return props

    def _deployment(self, endpoint: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        name = self.deployment_name or ((endpoint.get("defaults") or {}).get("deploymentName"))
        if not name:
            raise PermanentAzureError(
                f"AzureML: batch endpoint {self.endpoint_name!r} has no default deployment: set "
                "MNIST_AZUREML_BATCH_DEPLOYMENT or deploy one (python -m deploy.azureml.deploy_batch)"
            )
        deployment = self._get(
            f"batchEndpoints/{quote(self.endpoint_name)}/deployments/{quote(name)}",
            f"deployment {name!r} of batch endpoint {self.endpoint_name!r}",
            "MNIST_AZUREML_BATCH_DEPLOYMENT",
        )
        return name, deployment.get("properties") or {}

    def _check_model(self, deployment_name: str, deployment: dict[str, Any], model_prefix: str) -> str:
        """The deployment must serve the promoted model; returns 'name:version'."""
        asset_id = str((deployment.get("model") or {}).get("assetId") or "")
        marker = "/models/"
        if marker not in asset_id or "/versions/" not in asset_id:
            raise PermanentAzureError(
                f"AzureML: deployment {deployment_name!r} does not name a registered model ({asset_id or 'none'}); "
                "deploy one with python -m deploy.azureml.deploy_batch"
            )
        name, _, version = asset_id.split(marker, 1)[1].partition("/versions/")
        model = self._get(
            f"models/{quote(name)}/versions/{quote(version)}",
            f"model {name}:{version} of deployment {deployment_name!r}",
        )
        served = str((model.get("properties") or {}).get("modelUri") or "").rstrip("/")
        wanted = self.datastore_uri(model_prefix).rstrip("/")
        if _datastore_path(served) != _datastore_path(wanted):
            raise PermanentAzureError(
                f"AzureML: deployment {deployment_name!r} of batch endpoint {self.endpoint_name!r} serves model "
                f"{name}:{version} from {served or 'an unknown location'}, but the promoted model is {wanted}. "
                "Roll the promoted model out first: materialize mnist_model_serving (model_rollout_sensor does "
                f"it after each promotion), or python -m deploy.azureml.deploy_batch --model-path {model_prefix}"
            )
        return f"{name}:{version}"

    # ---- the job protocol -------------------------------------------------------------------------------
    def find_job(self, request: WorkloadRequest) -> str | None:
        """The batch job already invoked for this idempotency key: the job named after the key."""
        name = job_name(request)
        try:
            self._get(f"jobs/{quote(name)}", f"looking up batch job {name}")
        except PermanentAzureError as err:
            if err.status == 404:
                return None
            raise
        return name

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        if self.input_name not in request.inputs:
            raise PermanentAzureError(
                f"AzureML batch backend: the request has no {self.input_name!r} input (task {request.task})"
            )
        if len(request.outputs) != 1:
            raise PermanentAzureError(
                "AzureML batch backend: a scoring request has exactly one output folder"
            )
        endpoint = self._endpoint()
        deployment_name, deployment = self._deployment(endpoint)
        model = None
        if self.check_model and self.model_input in request.inputs:
            model = self._check_model(deployment_name, deployment, request.inputs[self.model_input])
        # A batch endpoint refuses an output path that exists: each job has its own. A second POST for
        # the same key only follows a lookup that found no job, so the path is still free.
        name = job_name(request)
        output_prefix = output_folder(name)
        body = {
            "properties": {
                "name": name,
                "inputData": {
                    self.input_name: {
                        "jobInputType": "UriFolder",
                        "uri": self.datastore_uri(request.inputs[self.input_name]),
                    }
                },
                "outputData": {
                    self.output_name: {"jobOutputType": "UriFolder", "uri": self.datastore_uri(output_prefix)}
                },
                "properties": {"experimentName": self.experiment_name, KEY_PROPERTY: request.idempotency_key},
            }
        }
        headers = {"x-ms-client-request-id": str(uuid.uuid4())}
        if self.deployment_name:
            headers["azureml-model-deployment"] = self.deployment_name
        scoring = self._rest(AZUREML_SCOPE, "AzureML batch endpoint")

        def send() -> str:
            job = scoring.call(
                "POST",
                str(endpoint["scoringUri"]),
                json_body=body,
                headers=headers,
                retry=False,
                what=f"invoking batch endpoint {self.endpoint_name!r}",
                fix="the endpoint's deployment and the datastore (MNIST_AZUREML_DATASTORE)",
            ).json()
            answered = str(job.get("name") or str(job.get("id", "")).rsplit("/", 1)[-1])
            if answered != name:
                # Without its name the job could not be found again after a lost answer, and its
                # output folder would not follow from it: cancel it rather than run it unobserved.
                with contextlib.suppress(PermanentAzureError, TransientAzureError):
                    self.cancel(answered)
                raise PermanentAzureError(
                    f"AzureML batch endpoint {self.endpoint_name!r} named the job {answered!r}, not {name!r}: "
                    "it ignored the job name the invocation gave, so the job was cancelled"
                )
            info = self._info(name)
            info.deployment, info.model = deployment_name, model
            return name

        return submit_once(
            send, lambda: self.find_job(request), Backoff(self.poll_initial_seconds, attempts=5)
        )

    def _info(self, job_id: str) -> _JobInfo:
        return self._jobs.setdefault(job_id, _JobInfo())

    def status(self, job_id: str) -> JobStatus:
        job = self._get(f"jobs/{quote(job_id)}", f"status of batch job {job_id}")
        props = job.get("properties") or {}
        info = self._info(job_id)
        info.status = str(props.get("status") or "Unknown")
        studio = ((props.get("services") or {}).get("Studio") or {}).get("endpoint")
        info.studio_url = studio or info.studio_url
        state = _STATES.get(info.status.lower(), JobState.QUEUED)
        if state is JobState.FAILED:
            return JobStatus(state, self._failure_message(job_id, info))
        if state is JobState.CANCELED:
            return JobStatus(state, f"batch job {job_id} is {info.status}; see {self.job_url(job_id)}")
        return JobStatus(state)

    def _failure_message(self, job_id: str, info: _JobInfo) -> str:
        """The job's error and its failed step's, as run history reports them (what the studio shows)."""
        errors: list[str] = []
        history = self._history()
        if history is not None:
            with contextlib.suppress(TransientAzureError, PermanentAzureError):
                errors.append(run_error(history.run_details(job_id)) or "no error reported")
                for child in history.run_children(job_id):
                    if str(child.get("status", "")).lower() == "failed":
                        name = child.get("displayName") or child.get("name") or child.get("runId")
                        error = run_error(history.run_details(str(child["runId"])))
                        errors.append(f"step {name}: {error or 'failed'}")
        else:
            errors.append("set MNIST_AZUREML_REGION to read the job's error and logs from run history")
        return f"batch job {job_id} is {info.status}: {'; '.join(errors)}; see {self.job_url(job_id)}"

    def cancel(self, job_id: str) -> None:
        self._api().call(
            "POST",
            self._arm(f"jobs/{quote(job_id)}/cancel"),
            params={"api-version": API_VERSION},
            what=f"cancelling batch job {job_id}",
        )

    def job_url(self, job_id: str) -> str | None:
        return self._info(job_id).studio_url or self.portal_url(job_id)

    def new_log_lines(self, job_id: str) -> list[str]:
        """Status transitions and the scoring script's new output lines, read from the job's step in run
        history (a model deployment's job carries no Pipes channel back); its stderr lines are kept for
        `stderr_tail`."""
        info = self._info(job_id)
        lines: list[str] = []
        if info.status and info.status != info.reported:
            info.reported = info.status
            lines.append(f"batch job {job_id}: {info.status}")
        history = self._history()
        if history is None or info.logs_done or info.status.lower() in _NOT_STARTED:
            return lines
        terminal = _STATES.get(info.status.lower(), JobState.QUEUED).terminal
        try:
            for child in history.run_children(job_id):
                run_id = str(child["runId"])
                step = info.steps.setdefault(
                    run_id, Step(str(child.get("displayName") or child.get("name") or run_id))
                )
                if str(child.get("status", "")).lower() in _NOT_STARTED:
                    continue
                log_files = history.run_details(run_id).get("logFiles") or {}
                names = sorted(n for n in log_files if USER_LOG.match(n))
                for name, line in history.new_log_text(log_files, names, step):
                    lines.append(f"{step.name}/{name}: {line}")
                    if STDERR_LOG.match(name):
                        info.tail.append(line)
        except (TransientAzureError, PermanentAzureError) as err:
            # Logs are best effort: run history being unavailable must not fail (or orphan) the job.
            return [*lines, f"batch job {job_id}: logs not readable now ({err.status or 'no answer'})"]
        if terminal:
            info.logs_done = True  # read once more after the end, then never again
        return lines

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        """The end of the scoring script's stderr (its last line: the workload's failure record, if any)."""
        return "\n".join(self._info(job_id).tail)

    @contextlib.contextmanager
    def pipes_session(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> Iterator[dg.PipesSession]:
        # Batch model deployments take data inputs only: there is no way to hand the job a Pipes
        # bootstrap, so the session carries nothing; the job's logs come from run history instead.
        reader = LogLinePipesReader()
        with dg.open_pipes_session(
            context=context, context_injector=dg.PipesEnvContextInjector(), message_reader=reader
        ) as session:
            yield session

    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        """Copy the job's output folder into the predictions folder, the marker file last."""
        source = output_folder(job_id) + "/"
        if not is_complete(store, source, request.task):
            raise PermanentAzureError(
                f"AzureML batch job {job_id} completed, but {store.uri(source)} has no "
                f"{completion_marker(request.task)}: "
                "the deployment did not write the scoring task's outputs (check its scoring script; "
                f"{self.job_url(job_id)})"
            )
        [target] = request.outputs.values()
        copy_prefix(store, source, target)

    def result_metadata(self, job_id: str) -> Mapping[str, Any]:
        info = self._info(job_id)
        meta: dict[str, Any] = {
            "azureml_job": job_id,
            "azureml_job_url": dg.MetadataValue.url(str(self.job_url(job_id))),
            "azureml_status": info.status,
            "azureml_batch_endpoint": self.endpoint_name,
        }
        if info.deployment:
            meta["azureml_deployment"] = info.deployment
        if info.model:
            meta["azureml_model"] = info.model
        meta["azureml_output"] = self.datastore_uri(output_folder(job_id))
        return meta


def job_name(request: WorkloadRequest) -> str:
    """The batch job's name for this idempotency key (letters, digits and '-', as job names allow)."""
    return "dagster-" + hashlib.sha256(request.idempotency_key.encode()).hexdigest()[:32]


def output_folder(job: str) -> str:
    """The datastore folder the job `job` writes its output to."""
    return f"{OUTPUTS_PREFIX}/{job}"


_DATASTORE_PATH = re.compile(r"datastores/([^/]+)/paths/(.+?)/*$")


def _datastore_path(uri: str) -> tuple[str, str] | None:
    """(datastore, path) of an azureml:// URI, short or long (workspace-qualified) form."""
    m = _DATASTORE_PATH.search(uri)
    return (m.group(1), m.group(2)) if m else None
