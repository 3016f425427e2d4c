"""Training on AzureML v2: a command job on a compute cluster, over the REST contract (no azure-ai-ml needed).

For teams leaving ADF (the v1 PipelineEndpoint stays for those whose ADF still starts training): the
workload's `train` task runs as a v2 command job, its model folder is written straight into the
datastore, and once the job has succeeded the MLflow model in it is registered as a model version
that the batch endpoint can serve.

Calls (ARM = https://management.azure.com<workspace>, api-version 2023-10-01; H = run history,
https://<region>.api.azureml.ms/history/v1.0<workspace>):
- find:   GET ARM/jobs/<prefix>-<key digest>-<n>, n = 1, 2, ... until 404: the newest attempt
- submit: PUT ARM/jobs/<prefix>-<key digest>-<n+1>  CommandJob (command, environmentId, computeId,
          inputs and outputs as uri_folder on the datastore, environmentVariables = the Pipes bootstrap)
- status: GET ARM/jobs/<name>                      cancel: POST ARM/jobs/<name>/cancel
- logs:   GET H/runs/<name>/details?api-version=v1.0 (workspace-scoped Runs_GetDetails, as azure-ai-ml's
          `jobs.stream` reads a job) -> logFiles["user_logs/std_log.txt"] (a SAS URL, no token), read by offset
- model:  PUT ARM/models/<model>/versions/<model version>  {modelType: mlflow_model, modelUri, ...}: what
          azure-ai-ml's `models.create_or_update(Model(type=mlflow_model, path=...))` sends (the producing
          job is in the tag dagster.job; azure-ai-ml never writes jobName)

Each call is compared with azure-ai-ml's on the same fake (tests/contract/test_sdk_parity_azureml.py).

Exactly once by construction: the job's name derives from the idempotency key, and a PUT of an
existing job name creates nothing (the service updates its tags and answers 200), so a submission
whose answer was lost is simply sent again. Only a job that ended Failed or Canceled gets a successor
(n + 1); the driver decides that after `find_job`.

Pipes messages travel inside the job's std_log.txt (`LogLinePipesReader`, as on v1): the bootstrap is
in the job's environment variables, which the job definition keeps readable in the workspace, so it
carries no credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shlex
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.errors import PermanentAzureError, TransientAzureError, system_failure
from resources.azure.rest import ARM_SCOPE
from resources.compute.base import STDERR_TAIL_LINES, JobState, JobStatus, WorkloadRequest
from resources.compute.outputs import completion_marker, is_complete
from resources.storage import AzureBlobObjectStore, ObjectStore

from .batch_endpoint_scoring import _STATES as JOB_STATES
from .batch_endpoint_scoring import API_VERSION
from .run_history import DIGEST_PROPERTY, KEY_PROPERTY, Step, WorkspaceRuns
from .workspace import AzureMLBackend

PROJECT_ROOT = Path(__file__).resolve().parents[3]
WORKLOAD_PREFIX = "_compute/workload"  # workload code, one folder per content hash (as Azure Batch)
CODE_INPUT = "code"  # the job input that carries the workload package
USER_LOGS = "user_logs/std_log"  # the command's stdout+stderr in a v2 job's log files
MAX_ATTEMPTS = 50  # successors of failed or canceled jobs looked up by find_job
_NOT_STARTED = {"notstarted", "starting", "provisioning", "preparing", "queued", "unknown", ""}


@dataclass
class _JobInfo:
    status: str = ""
    reported: str = ""  # the last status logged
    studio_url: str | None = None
    step: Step = field(default_factory=lambda: Step("train"))
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))
    model: str | None = None  # "name:version" once registered


class AzureMLCommandJobBackend(AzureMLBackend):
    """Runs the training task as an AzureML v2 command job on a compute cluster.

    The request's inputs and outputs become uri_folder job inputs and outputs on the datastore (the
    outputs read-write mounted, so the completion marker the task writes last lands last); its params
    are the task's `--params`. `environment` is a registered environment `name:version` (or its ARM
    id) with workload/requirements.txt installed (see docs/compute-backends.md).
    """

    arm_url: str = "https://management.azure.com"
    region: str | None = None  # run history (job logs) is https://<region>.api.azureml.ms
    service_url: str | None = None  # overrides the regional URL (sovereign clouds, test doubles)
    compute_name: str
    environment: str = "mnist-workload:1"
    experiment_name: str = "mnist-training"
    job_prefix: str = "dagster"
    python: str = "python"
    # Register the model output as `model_name:<model folder name>` once the job has succeeded.
    model_name: str | None = "mnist"
    model_folder: str = "model"  # the MLflow model inside the task's output folder
    model_output: str = "model"  # which request output holds the model

    client_name: ClassVar[str] = "azureml-command-job"
    _jobs: dict[str, _JobInfo] = PrivateAttr(default_factory=dict)

    # ---- addresses --------------------------------------------------------------------------------
    def _arm(self, path: str) -> str:
        return f"{self.arm_url.rstrip('/')}{self.workspace_path}/{path}"

    def _api(self) -> Any:
        return self._rest(ARM_SCOPE, "AzureML")

    def _history(self) -> WorkspaceRuns:
        if self.service_url:
            base = self.service_url.rstrip("/")
        elif self.region:
            base = f"https://{self.region}.api.azureml.ms"
        else:
            raise PermanentAzureError(
                "AzureML v2 training: set the workspace region (MNIST_AZUREML_REGION) so that the job's logs "
                "can be read from run history"
            )
        return WorkspaceRuns(
            self._api(),  # an ARM token, as azure-ai-ml's run-history client sends (the service takes both)
            self._rest(None, "AzureML log files"),  # SAS URLs: no token goes with them
            lambda path: f"{base}/history/v1.0{self.workspace_path}/{path}",
        )

    def environment_id(self) -> str:
        if self.environment.startswith("/"):
            return self.environment
        name, _, version = self.environment.removeprefix("azureml:").partition(":")
        if not name or not version:
            raise PermanentAzureError(
                f"AzureML v2 training: environment {self.environment!r} is not 'name:version' or an ARM id; "
                "check MNIST_AZUREML_TRAINING_ENVIRONMENT"
            )
        return f"{self.workspace_path}/environments/{quote(name)}/versions/{quote(version)}"

    def job_name(self, request: WorkloadRequest, attempt: int) -> str:
        """The job of attempt `attempt` (from 1) of this idempotency key."""
        return f"{self.job_prefix}-{request.task}-{request.key_digest}-{attempt}"

    # ---- the job protocol -------------------------------------------------------------------------
    def check_store(self, store: ObjectStore) -> None:
        """The job mounts its inputs and outputs from the datastore on the project's Blob container, and its
        logs come from run history: refuse anything else before a job is submitted."""
        if not isinstance(store, AzureBlobObjectStore):
            raise PermanentAzureError(
                "AzureML v2 training needs MNIST_STORAGE=azure_blob: the job reads and writes the project's Blob "
                "container through the datastore registered on it (MNIST_AZUREML_DATASTORE)"
            )
        self._history()

    def _get_job(self, name: str) -> dict[str, Any] | None:
        try:
            return (
                self._api()
                .call(
                    "GET",
                    self._arm(f"jobs/{quote(name)}"),
                    params={"api-version": API_VERSION},
                    what=f"command job {name}",
                )
                .json()
            )
        except PermanentAzureError as err:
            if err.status == 404:
                return None
            raise

    def _latest(self, request: WorkloadRequest) -> tuple[int, dict[str, Any] | None]:
        """(attempt, job) of the newest job of this key; (0, None) when none was submitted."""
        latest: tuple[int, dict[str, Any] | None] = (0, None)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            job = self._get_job(self.job_name(request, attempt))
            if job is None:
                return latest
            props = (job.get("properties") or {}).get("properties") or {}
            if props.get(KEY_PROPERTY) != request.idempotency_key:
                raise PermanentAzureError(
                    f"AzureML: job {self.job_name(request, attempt)} was not submitted for this Dagster step "
                    f"({request.idempotency_key}): a job named like ours must not exist; rename or delete it"
                )
            latest = (attempt, job)
        raise PermanentAzureError(
            f"AzureML: {MAX_ATTEMPTS} failed jobs for one Dagster step ({request.idempotency_key}); "
            "fix the cause before retrying"
        )

    def find_job(self, request: WorkloadRequest) -> str | None:
        """The newest command job of this idempotency key, by name (whatever its state)."""
        attempt, job = self._latest(request)
        if job is None:
            return None
        self._remember(self.job_name(request, attempt), job)
        return self.job_name(request, attempt)

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        attempt, latest = self._latest(request)
        if latest is not None:
            state = self._state(str((latest.get("properties") or {}).get("status") or ""))
            if state not in (JobState.FAILED, JobState.CANCELED):
                # Only ended jobs get a successor: this one is still running or succeeded.
                return self.job_name(request, attempt)
        name = self.job_name(request, attempt + 1)
        code = self._upload_workload(store)
        body = {"properties": self._command_job(request, code, env)}
        # A PUT of an existing job name creates nothing, so the retry policy may resend this freely.
        job = (
            self._api()
            .call(
                "PUT",
                self._arm(f"jobs/{quote(name)}"),
                params={"api-version": API_VERSION},
                json_body=body,
                what=f"submitting command job {name}",
                fix="MNIST_AZUREML_COMPUTE_CLUSTER, MNIST_AZUREML_TRAINING_ENVIRONMENT and MNIST_AZUREML_DATASTORE",
            )
            .json()
        )
        self._remember(name, job or {})
        return name

    def _command_job(self, request: WorkloadRequest, code: str, env: Mapping[str, str]) -> dict[str, Any]:
        if CODE_INPUT in request.inputs:
            raise PermanentAzureError(f"AzureML v2 training: a request input may not be named {CODE_INPUT!r}")
        args = [f"{self.python} -m workload {shlex.quote(request.task)}"]
        args += [f"--input {name}=${{{{inputs.{name}}}}}" for name in request.inputs]
        args += [f"--output {name}=${{{{outputs.{name}}}}}" for name in request.outputs]
        args.append(f"--params {shlex.quote(json.dumps(dict(request.params), sort_keys=True))}")
        marks = {
            KEY_PROPERTY: request.idempotency_key,
            DIGEST_PROPERTY: request.key_digest,
            "dagster.task": request.task,
        }
        inputs: dict[str, Any] = {
            CODE_INPUT: {
                "jobInputType": "uri_folder",
                "uri": self.datastore_uri(code),
                "mode": "ReadOnlyMount",
            }
        }
        inputs |= {
            name: {"jobInputType": "uri_folder", "uri": self.datastore_uri(prefix), "mode": "ReadOnlyMount"}
            for name, prefix in request.inputs.items()
        }
        return {
            "jobType": "Command",
            "experimentName": self.experiment_name,
            "displayName": f"{request.task} {request.key_digest}",
            "description": f"Dagster {request.task}: {request.idempotency_key}",
            "computeId": f"{self.workspace_path}/computes/{quote(self.compute_name)}",
            "environmentId": self.environment_id(),
            # The package is mounted read-only; python -m finds it in the working directory.
            "command": f"cd ${{{{inputs.{CODE_INPUT}}}}} && " + " ".join(args),
            "inputs": inputs,
            "outputs": {
                name: {
                    "jobOutputType": "uri_folder",
                    "uri": self.datastore_uri(prefix),
                    "mode": "ReadWriteMount",
                }
                for name, prefix in request.outputs.items()
            },
            "environmentVariables": {str(k): str(v) for k, v in env.items()},
            "properties": marks,
            "tags": marks,
            "isArchived": False,  # as azure-ai-ml writes every job
        }

    def _upload_workload(self, store: ObjectStore) -> str:
        """The workload package in the datastore, uploaded once per content hash (READY last): its prefix."""
        root = PROJECT_ROOT / "workload"
        files = sorted(
            p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        base = f"{WORKLOAD_PREFIX}/{digest.hexdigest()[:16]}"
        if not store.exists(f"{base}/READY"):
            for path in files:
                store.put_file(f"{base}/workload/{path.relative_to(root).as_posix()}", path)
            store.put_bytes(f"{base}/READY", b"")
        return base

    def _info(self, job_id: str) -> _JobInfo:
        return self._jobs.setdefault(job_id, _JobInfo())

    def _remember(self, job_id: str, job: dict[str, Any]) -> _JobInfo:
        props = job.get("properties") or {}
        info = self._info(job_id)
        info.status = str(props.get("status") or info.status or "Unknown")
        studio = ((props.get("services") or {}).get("Studio") or {}).get("endpoint")
        info.studio_url = studio or info.studio_url
        return info

    @staticmethod
    def _state(status: str) -> JobState:
        return JOB_STATES.get(status.lower(), JobState.QUEUED)

    def status(self, job_id: str) -> JobStatus:
        job = self._get_job(job_id)
        if job is None:
            raise PermanentAzureError(f"AzureML: command job {job_id} no longer exists")
        info = self._remember(job_id, job)
        state = self._state(info.status)
        if state is JobState.FAILED:
            message, code = self._failure(job_id, info)
            # Retryable only when run history blames the service or the compute (SystemError).
            return JobStatus(state, message, retryable=system_failure([code]))
        if state is JobState.CANCELED:
            return JobStatus(state, f"command job {job_id} is {info.status}; see {self.job_url(job_id)}")
        return JobStatus(state)

    def _failure(self, job_id: str, info: _JobInfo) -> tuple[str, str | None]:
        """The job's error as run history reports it (what the studio shows), and where to look; and
        its error code (UserError, SystemError...)."""
        error: dict[str, Any] = {}
        with contextlib.suppress(TransientAzureError, PermanentAzureError):
            details = self._history().run_details(job_id)
            error = (details.get("error") or {}).get("error") or {}
        message = error.get("message")
        code = error.get("code")
        words = f"command job {job_id} is {info.status}: {message or 'no error reported'}; see {self.job_url(job_id)}"
        return words, str(code) if code else None

    def cancel(self, job_id: str) -> None:
        self._api().call(
            "POST",
            self._arm(f"jobs/{quote(job_id)}/cancel"),
            params={"api-version": API_VERSION},
            what=f"cancelling command job {job_id}",
        )

    def job_url(self, job_id: str) -> str | None:
        return self._info(job_id).studio_url or self.portal_url(job_id)

    # ---- logs, Pipes ---------------------------------------------------------------------------
    def new_log_lines(self, job_id: str) -> list[str]:
        """Status transitions and new lines of the job's std_log (Pipes messages go to Dagster)."""
        info = self._info(job_id)
        lines: list[str] = []
        if info.status and info.status != info.reported:
            info.reported = info.status
            lines.append(f"command job {job_id}: {info.status}")
        if info.step.logs_done or info.status.lower() in _NOT_STARTED:
            return lines
        try:
            read = self._read_logs(job_id, info)
        except TransientAzureError as err:
            # Logs are best effort: run history being unavailable must not fail (or orphan) the job.
            return [*lines, f"command job {job_id}: logs not readable now ({err.status or 'no answer'})"]
        info.tail.extend(read)
        if self._state(info.status).terminal:
            info.step.logs_done = True  # read once more after the end, then never again
        return lines + read

    def _read_logs(self, job_id: str, info: _JobInfo) -> list[str]:
        """New lines of the job's user logs (its run's logFiles); Pipes messages go to Dagster."""
        history = self._history()
        log_files = history.run_details(job_id).get("logFiles") or {}
        names = sorted(n for n in log_files if n.startswith(USER_LOGS))
        pipes = self._log_pipes
        return [
            f"{info.step.name}/{name}: {line}"
            for name, line in history.new_log_text(log_files, names, info.step)
            if pipes is None or not pipes.feed(line)
        ]

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        return "\n".join(self._info(job_id).tail)

    # ---- results ----------------------------------------------------------------------------------
    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        """The job wrote straight into the datastore: check each output is complete, register the model."""
        for prefix in request.outputs.values():
            if not is_complete(store, prefix, request.task):
                raise PermanentAzureError(
                    f"AzureML command job {job_id} completed, but {store.uri(prefix)} has no "
                    f"{completion_marker(request.task)}: the job did not write its outputs there "
                    f"({self.job_url(job_id)})"
                )
        if self.model_name and self.model_output in request.outputs:
            self._register_model(job_id, request)

    def _register_model(self, job_id: str, request: WorkloadRequest) -> None:
        """Register the MLflow model as `model_name:<output folder name>` (a PUT of the same version is a no-op)."""
        prefix = request.outputs[self.model_output].strip("/")
        version = prefix.rsplit("/", 1)[-1]
        assert self.model_name is not None
        body = {
            "properties": {
                "modelType": "mlflow_model",
                "modelUri": self.datastore_uri(f"{prefix}/{self.model_folder}").rstrip("/"),
                "description": f"MNIST model trained by Dagster ({request.idempotency_key})",
                "properties": {KEY_PROPERTY: request.idempotency_key, DIGEST_PROPERTY: request.key_digest},
                "tags": {"dagster.job": job_id},  # the job that trained it (azure-ai-ml writes no jobName)
                "isAnonymous": False,  # as azure-ai-ml writes a model version
                "isArchived": False,
            }
        }
        self._api().call(
            "PUT",
            self._arm(f"models/{quote(self.model_name)}/versions/{quote(version)}"),
            params={"api-version": API_VERSION},
            json_body=body,
            what=f"registering model {self.model_name}:{version}",
            fix="MNIST_AZUREML_MODEL_NAME",
        )
        self._info(job_id).model = f"{self.model_name}:{version}"

    def result_metadata(self, job_id: str) -> Mapping[str, Any]:
        info = self._info(job_id)
        meta: dict[str, Any] = {
            "azureml_job": job_id,
            "azureml_job_url": dg.MetadataValue.url(str(self.job_url(job_id))),
            "azureml_status": info.status,
            "azureml_compute": self.compute_name,
            "azureml_environment": self.environment,
        }
        if info.model:
            meta["azureml_model"] = info.model
        return meta
