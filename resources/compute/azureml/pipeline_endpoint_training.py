"""Training on AzureML through a v1 PipelineEndpoint, over its REST contract (no azureml-core needed).

What ADF's "Machine Learning Execute Pipeline" activity does, as a compute backend: submit to a
published pipeline endpoint (its default version, or a pinned one) with string pipeline parameters
and DataPath assignments for the inputs, follow the run, cancel it when the Dagster run is cancelled.
Outputs are output bindings of the step (OutputFileDatasetConfig): AzureML uploads them to
`<datastore>/_azureml_outputs/<step run id>/<output>/`, and the backend copies them into the
requested folder (DataPath parameters are inputs, which AzureML may mount read-only).

Calls (P = /pipelines/v1.0/<workspace>, on https://<region>.api.azureml.ms):
- endpoint: GET P/PipelineEndpoints/Name?Name=<name> (or P/PipelineEndpoints/Id/<id>)
- submit:   POST P/PipelineRuns/PipelineEndpointSubmit/Id/<id>[/<version>?pipelineVersion=<version>]
            body PipelineSubmissionInfo: ExperimentName, ParameterAssignments, DataPathAssignments,
            Properties carrying the Dagster idempotency key (the fields azureml-pipeline-core sends)
- status:   GET P/PipelineRuns/<id>        cancel: DELETE P/PipelineRuns/<id>/Execution
Finding a run by its key, its steps and their logs go through run history (see `run_history`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.errors import PermanentAzureError, system_failure
from resources.azure.retry import Backoff, submit_once
from resources.compute.base import JobState, JobStatus, WorkloadRequest
from resources.compute.outputs import completion_marker, copy_prefix, is_complete
from resources.storage import ObjectStore
from workload.pipes_bootstrap import encode_bootstrap

from .run_history import DIGEST_PROPERTY, KEY_PROPERTY, RunHistory, Step
from .workspace import AzureMLBackend

V1_SCOPE = "https://management.core.windows.net/.default"
# The pipelines service reports states by name, and sometimes by number.
_STATES = {
    "notstarted": JobState.QUEUED,
    "queued": JobState.QUEUED,
    "unknown": JobState.QUEUED,
    "preparing": JobState.QUEUED,
    "starting": JobState.QUEUED,
    "running": JobState.RUNNING,
    "finalizing": JobState.RUNNING,
    "cancelrequested": JobState.RUNNING,
    "finished": JobState.SUCCEEDED,
    "completed": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "canceled": JobState.CANCELED,
    "cancelled": JobState.CANCELED,
    "0": JobState.QUEUED,
    "1": JobState.RUNNING,
    "2": JobState.FAILED,
    "3": JobState.SUCCEEDED,
    "4": JobState.CANCELED,
}
PIPES_PARAMETER = "dagster_pipes"


@dataclass
class _RunInfo:
    experiment: str | None = None
    pipeline_id: str | None = None
    status_code: str = ""
    status_detail: str | None = None
    steps: dict[str, Step] = field(default_factory=dict)


class AzureMLPipelineBackend(AzureMLBackend):
    """Runs the training task as a run of an AzureML v1 PipelineEndpoint.

    The request's inputs become DataPath assignments on the configured datastore
    (`datapath_parameters` maps a request input to the pipeline's DataPath parameter), its params
    become string pipeline parameters. Its outputs are the step's output bindings
    (`output_bindings` maps a request output to the output's name): the step writes them, AzureML
    uploads them to `output_destination` and the backend copies them where the request wants them.
    The published pipeline's step runs the workload with `deploy/azureml/train_step.py` (see
    `deploy/azureml/publish_pipeline.py` and `deploy/azureml/pipeline_spec.py`).
    """

    region: str | None = None  # e.g. "westeurope": the service is https://<region>.api.azureml.ms
    service_url: str | None = None  # overrides the regional URL (sovereign clouds, test doubles)
    pipeline_endpoint: str | None = None  # endpoint name ...
    pipeline_endpoint_id: str | None = None  # ... or id
    pipeline_version: str | None = None  # None: the endpoint's default version
    experiment_name: str = "mnist-training"
    datapath_parameters: dict[str, str] = {"raw": "raw_data"}
    output_bindings: dict[str, str] = {"model": "model_output"}
    # Where the published step's outputs land in the datastore ({run-id}: the step run's id).
    output_destination: str = "_azureml_outputs/{run-id}/{output-name}"
    step_name: str = "train"  # the published pipeline's step that writes the outputs
    # Pass the Dagster Pipes bootstrap as a pipeline parameter, so logs and metrics come back live.
    # It makes every submission's parameters unique, so AzureML never reuses the step.
    pipes: bool = True

    client_name: ClassVar[str] = "azureml-pipeline"
    _runs: dict[str, _RunInfo] = PrivateAttr(default_factory=dict)
    _endpoint_cache: dict[str, Any] | None = PrivateAttr(default=None)

    # ---- addresses ------------------------------------------------------------------------------
    def _base(self) -> str:
        if self.service_url:
            return self.service_url.rstrip("/")
        if not self.region:
            raise PermanentAzureError(
                "AzureML v1 backend: set the workspace region (MNIST_AZUREML_REGION, e.g. westeurope) or "
                "the service URL (MNIST_AZUREML_SERVICE_URL)"
            )
        return f"https://{self.region}.api.azureml.ms"

    def _p(self, path: str) -> str:
        return f"{self._base()}/pipelines/v1.0{self.workspace_path}/{path}"

    def _h(self, path: str) -> str:
        return f"{self._base()}/history/v1.0{self.workspace_path}/{path}"

    def _api(self) -> Any:
        return self._rest(V1_SCOPE, "AzureML pipelines")

    def _history(self, job_id: str | None = None) -> RunHistory:
        """Run history of the experiment that holds `job_id` (else the one this backend submits to)."""
        experiment = (self._info(job_id).experiment if job_id else None) or self.experiment_name
        return RunHistory(self._api(), self._rest(None, "AzureML log files"), self._h, experiment)

    # ---- the endpoint -----------------------------------------------------------------------------
    def endpoint(self) -> dict[str, Any]:
        """The PipelineEndpoint entity (Id, Name, DefaultVersion, PipelineVersionList)."""
        if self._endpoint_cache is not None:
            return self._endpoint_cache
        fix = (
            "MNIST_AZUREML_PIPELINE_ENDPOINT / MNIST_AZUREML_PIPELINE_ENDPOINT_ID and the workspace settings"
        )
        if self.pipeline_endpoint_id:
            url = self._p(f"PipelineEndpoints/Id/{quote(self.pipeline_endpoint_id)}")
            what, params = f"pipeline endpoint id {self.pipeline_endpoint_id!r}", None
        elif self.pipeline_endpoint:
            url = self._p("PipelineEndpoints/Name")
            what, params = f"pipeline endpoint {self.pipeline_endpoint!r}", {"Name": self.pipeline_endpoint}
        else:
            raise PermanentAzureError(
                "AzureML v1 backend: name the pipeline endpoint (MNIST_AZUREML_PIPELINE_ENDPOINT) or its id "
                "(MNIST_AZUREML_PIPELINE_ENDPOINT_ID)"
            )
        entity = self._api().call("GET", url, params=params, what=what, fix=fix).json()
        if not isinstance(entity, dict) or not entity.get("Id"):
            raise PermanentAzureError(f"AzureML pipelines: {what} not found. Check {fix}")
        if str(entity.get("EntityStatus", "Active")).lower() not in ("active", "0"):
            raise PermanentAzureError(
                f"AzureML pipelines: {what} is {entity.get('EntityStatus')}, not Active: re-enable it or "
                "publish a new one (python -m deploy.azureml.publish_pipeline)"
            )
        versions = [str(v.get("Version")) for v in entity.get("PipelineVersionList") or []]
        if self.pipeline_version is not None and self.pipeline_version not in versions:
            raise PermanentAzureError(
                f"AzureML pipelines: {what} has no version {self.pipeline_version!r}; it has "
                f"{', '.join(versions) or 'none'} (default {entity.get('DefaultVersion')}). Check "
                "MNIST_AZUREML_PIPELINE_VERSION"
            )
        self._endpoint_cache = entity
        return entity

    # ---- the job protocol -------------------------------------------------------------------------
    def find_job(self, request: WorkloadRequest) -> str | None:
        """The pipeline run already submitted for this idempotency key (run history, by property)."""
        return self._history().find_run(request.key_digest, request.idempotency_key)

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        endpoint = self.endpoint()
        missing = [n for n in request.inputs if n not in self.datapath_parameters]
        missing += [n for n in request.outputs if n not in self.output_bindings]
        if missing:
            raise PermanentAzureError(
                f"AzureML v1 backend: no DataPath pipeline parameter or step output for {', '.join(missing)} "
                f"(task {request.task}); map inputs in datapath_parameters, outputs in output_bindings"
            )
        data_paths = {
            self.datapath_parameters[name]: {
                "DataStoreName": self.datastore,
                "RelativePath": prefix.strip("/"),
            }
            for name, prefix in request.inputs.items()
        }
        parameters = {k: _param_string(v) for k, v in request.params.items()}
        if self.pipes:
            # AzureML rewrites characters in step arguments (';' arrives as '\;'): URL-safe base64
            # has none it touches.
            parameters[PIPES_PARAMETER] = encode_bootstrap(env)
        marks = {
            KEY_PROPERTY: request.idempotency_key,
            DIGEST_PROPERTY: request.key_digest,
            "dagster.task": request.task,
        }
        body = {
            "ExperimentName": self.experiment_name,
            "Description": f"Dagster {request.task}: {request.idempotency_key}",
            "RunSource": "SDK",
            "RunType": "SDK",
            "ParameterAssignments": parameters,
            "DataPathAssignments": data_paths,
            "DataSetDefinitionValueAssignments": {},
            "Properties": marks,
        }
        url = self._p(f"PipelineRuns/PipelineEndpointSubmit/Id/{quote(str(endpoint['Id']))}")
        params: dict[str, str] = {}
        if self.pipeline_version is not None:
            url += f"/{quote(self.pipeline_version)}"
            params["pipelineVersion"] = self.pipeline_version
        what = f"submitting to pipeline endpoint {endpoint.get('Name')!r}"

        def send() -> str:
            run = (
                self._api()
                .call(
                    "POST",
                    url,
                    json_body=body,
                    params=params,
                    what=what,
                    retry=False,
                    fix="the pipeline's parameter names (ParameterAssignments / DataPathAssignments) and MNIST_AZUREML_DATASTORE",
                )
                .json()
            )
            info = self._info(str(run["Id"]))
            info.experiment = run.get("RunHistoryExperimentName") or self.experiment_name
            info.pipeline_id = run.get("PipelineId")
            return str(run["Id"])

        return submit_once(
            send, lambda: self.find_job(request), Backoff(self.poll_initial_seconds, attempts=5)
        )

    def _info(self, job_id: str) -> _RunInfo:
        return self._runs.setdefault(job_id, _RunInfo())

    def status(self, job_id: str) -> JobStatus:
        run = (
            self._api()
            .call("GET", self._p(f"PipelineRuns/{quote(job_id)}"), what=f"status of pipeline run {job_id}")
            .json()
        )
        info = self._info(job_id)
        info.experiment = run.get("RunHistoryExperimentName") or info.experiment
        info.pipeline_id = run.get("PipelineId") or info.pipeline_id
        status = run.get("Status") or {}
        code = str(status.get("StatusCode", "Unknown"))
        info.status_code, info.status_detail = code, status.get("StatusDetail")
        state = _STATES.get(code.lower(), JobState.QUEUED)
        if state is JobState.FAILED:
            # Retryable only when every failed step blames the service or the compute (SystemError).
            retryable = system_failure(self._history(job_id).step_error_codes(job_id))
            return JobStatus(state, self._failure_message(job_id, info), retryable=retryable)
        if state is JobState.CANCELED:
            return JobStatus(state, info.status_detail or "canceled")
        return JobStatus(state)

    def _failure_message(self, job_id: str, info: _RunInfo) -> str:
        """The run's error, and the failed step's, from run history (what the portal shows)."""
        parts = [info.status_detail] if info.status_detail else []
        parts += self._history(job_id).step_errors(job_id)
        parts.append(f"see {self.portal_url(job_id)}")
        return "; ".join(parts)

    def cancel(self, job_id: str) -> None:
        self._api().call(
            "DELETE",
            self._p(f"PipelineRuns/{quote(job_id)}/Execution"),
            what=f"cancelling pipeline run {job_id}",
        )

    def job_url(self, job_id: str) -> str | None:
        return self.portal_url(job_id)

    # ---- steps, logs, Pipes -----------------------------------------------------------------------
    def new_log_lines(self, job_id: str) -> list[str]:
        return self._history(job_id).new_lines(job_id, self._info(job_id).steps, self._log_pipes)

    # ---- results ------------------------------------------------------------------------------------
    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        """Copy each output AzureML uploaded for the step run into the requested folder, marker last.

        A step AzureML reused (allow_reuse) did no work in this run: its outputs are the reused
        step run's, which is where they are read from.
        """
        step_run, reused = self._producing_step(job_id)
        for name, target in request.outputs.items():
            source = self.output_path(step_run, self.output_bindings[name])
            if is_complete(store, source, request.task):
                copy_prefix(store, source, target)
                continue
            why = (
                f" AzureML reused step run {step_run} (allow_reuse) instead of running the step, and that "
                "run's outputs are gone: republish the pipeline with allow_reuse=False for the training step, "
                "or restore them."
                if reused
                else " The step did not write this output: check its logs."
            )
            raise PermanentAzureError(
                f"AzureML pipeline run {job_id} finished, but the step's output {self.output_bindings[name]!r} "
                f"({store.uri(source)}) has no {completion_marker(request.task)}.{why} ({self.portal_url(job_id)})"
            )

    def output_path(self, step_run_id: str, output: str) -> str:
        """The datastore folder AzureML uploads `output` of step run `step_run_id` to."""
        path = self.output_destination.replace("{run-id}", step_run_id).replace("{output-name}", output)
        return path.strip("/")

    def _producing_step(self, job_id: str) -> tuple[str, bool]:
        """(the step run whose outputs this run has, whether AzureML reused it from another run)."""
        for child in self._history(job_id).children(job_id):
            if (child.get("displayName") or child.get("name")) != self.step_name:
                continue
            reused = (child.get("properties") or {}).get("azureml.reusedrunid")
            return (str(reused), True) if reused else (str(child["runId"]), False)
        raise PermanentAzureError(
            f"AzureML pipeline run {job_id} finished without a step named {self.step_name!r}: is the endpoint's "
            f"pipeline the one deploy/azureml/publish_pipeline.py publishes? ({self.portal_url(job_id)})"
        )

    def result_metadata(self, job_id: str) -> Mapping[str, Any]:
        info = self._info(job_id)
        endpoint = self._endpoint_cache or {}
        version = self.pipeline_version or next(
            (
                str(v.get("Version"))
                for v in endpoint.get("PipelineVersionList") or []
                if info.pipeline_id and v.get("PipelineId") == info.pipeline_id
            ),
            None,
        )
        meta: dict[str, Any] = {
            "azureml_run_id": job_id,
            "azureml_run_url": dg.MetadataValue.url(self.portal_url(job_id)),
            "azureml_status": info.status_code,
        }
        if endpoint.get("Name"):
            meta["azureml_pipeline_endpoint"] = str(endpoint["Name"])
        if version:
            meta["azureml_pipeline_version"] = version
        reused = {s.name: s.reused_from for s in info.steps.values() if s.reused_from}
        if reused:
            meta["azureml_reused_steps"] = dg.MetadataValue.json(reused)
            meta["training"] = "reused by AzureML (allow_reuse): " + ", ".join(
                f"step {name} reused run {run}" for name, run in reused.items()
            )
        return meta


def _param_string(value: Any) -> str:
    """Pipeline parameters are strings on the wire (as ADF sends them)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
