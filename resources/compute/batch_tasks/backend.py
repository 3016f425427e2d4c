"""Run workload tasks on Azure Batch: one Batch job with one task per Dagster step.

Delivery follows the ADF reference (a pool whose start task installs the workload's Python
requirements, a job's task that runs a script), with what ADF lacks:

- the workload package is uploaded once per content hash to Blob and delivered as resource files; the
  step's inputs are resource files (`storageContainerUrl` + `blobPrefix`), its outputs are uploaded by
  Batch `outputFiles` to a per-job staging prefix and then published under the requested prefixes with
  the completion markers (`metrics.json`, `summary.json`) last, so nothing half-written is ever visible;
- ids derive from the step's idempotency key (Dagster run id + asset + partition + task), so a retried
  step finds its job and reattaches instead of launching a second one; cancelling the run terminates
  the job; completed jobs are deleted after a retention period;
- stdout/stderr are read while the task runs (ranged reads of `stdout.txt`/`stderr.txt`) and also
  uploaded to Blob when the task ends, so they survive an ephemeral pool; Dagster Pipes messages
  (logs, metrics) travel over Blob (dagster-azure's injector and reader);
- pools: `persistent` (always on), `scale_to_zero` (resized to 0 nodes when no job of ours is active,
  or an autoscale formula), `ephemeral` (a Batch auto pool that lives and dies with the job, so even a
  crashed orchestrator leaves nothing billing once the task ends).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shlex
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.compute.base import ComputeBackend, JobState, JobStatus, WorkloadRequest, last_lines
from resources.compute.outputs import publish_dir
from resources.storage import AzureBlobObjectStore, ObjectStore

from .calls import AzureBatchError, BatchCalls

PROJECT_ROOT = Path(__file__).resolve().parents[3]
PoolMode = Literal["persistent", "scale_to_zero", "ephemeral"]
POOL_MODES: tuple[str, ...] = ("persistent", "scale_to_zero", "ephemeral")

TASK_ID = "workload"  # one task per job; the job id carries the step's identity
CANCEL_REASON = "CanceledFromDagster"
STAGING = "_compute/batch"  # per-job staging of outputs and logs, in the data container
WORKLOAD_PREFIX = "_compute/workload"  # workload code, one folder per content hash
# Batch ids: letters, digits, hyphens and underscores, at most 64 characters.
_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OWNER_KEY = "created-by"
OWNER = "mnist-orchestration"

# Installs the workload's requirements on every node as it joins the pool (the ADF reference does the
# same with its start task). `{requirements}` is replaced by the quoted lines of workload/requirements.txt,
# so no SAS URL is baked into a long-lived pool.
DEFAULT_START_COMMAND = (
    "set -eu; command -v pip3 >/dev/null || (apt-get update -qq && "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip); "
    "printf '%s\\n' {requirements} > requirements.txt; "
    "python3 -m pip install --quiet --break-system-packages -r requirements.txt"
)


class AzureBatchBackend(ComputeBackend):
    """Runs `python -m workload <task>` as an Azure Batch task; needs the object store to be Azure Blob.

    Credentials: `account_key` (shared key, from `AZURE_BATCH_ACCOUNT_KEY` via `dg.EnvVar`) with
    `account_name`, else `DefaultAzureCredential` (Entra ID). Nodes reach Blob with SAS URLs made from
    the storage credential (an account key, a SAS token, or a user delegation key for Entra ID).
    """

    account_url: str
    account_name: str | None = None
    account_key: str | None = Field(default=None, repr=False)  # secret: from AZURE_BATCH_ACCOUNT_KEY
    pool_id: str = "mnist-workload"
    vm_size: str = "standard_d2s_v3"
    image_publisher: str = "canonical"
    image_offer: str = "ubuntu-24_04-lts"
    image_sku: str = "server"
    node_agent_sku_id: str = "batch.node.ubuntu 24.04"
    node_count: int = 1
    autoscale_formula: str | None = None
    autoscale_interval_minutes: int = 5
    pool_mode: PoolMode = "scale_to_zero"
    job_retention_hours: float = 24.0
    task_max_wall_clock_hours: float = 24.0
    start_command: str = DEFAULT_START_COMMAND
    python: str = "python3"
    package_dir: str | None = None  # the workload package to deliver (default: this project's workload/)
    pipes_container: str = "dagster-pipes"
    pipes_interval_seconds: float = 1.0
    sas_hours: float = 48.0
    pool_delete_wait_seconds: float = 900.0
    request_timeout_seconds: float = 30.0
    call_attempts: int = 6
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0
    lro_polling_seconds: int = 5
    # Status polling: the interval grows with the task's age (`poll_fraction` of it), so a task is noticed
    # within max(poll_initial_seconds, poll_fraction x duration) of ending, with few requests on long tasks.
    poll_initial_seconds: float = 2.0
    poll_max_seconds: float = 60.0
    poll_growth: float = 1.0
    poll_fraction: float = 0.05
    # While a task waits in the queue, look at its pool this often: a start task that failed on every node or a
    # resize error would otherwise leave it queued (and an ephemeral pool billing) until maxWallClockTime.
    queue_check_seconds: float = 60.0

    client_name: ClassVar[str] = "azure-batch"
    _calls: Any = PrivateAttr(default=None)
    _log_offsets: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)
    _submitted_at: dict[str, float] = PrivateAttr(default_factory=dict)
    _ready_pools: set[str] = PrivateAttr(default_factory=set)
    _queue_checked: dict[str, float] = PrivateAttr(default_factory=dict)

    # ---- clients --------------------------------------------------------------------------------
    def calls(self) -> BatchCalls:
        if self._calls is None:
            from azure.batch import BatchClient  # noqa: TID251 (lazy: only when Batch is used)

            credential: Any
            if self.account_key:
                from azure.core.credentials import AzureNamedKeyCredential

                credential = AzureNamedKeyCredential(self._account_name(), self.account_key)
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            client = BatchClient(
                self.account_url,
                credential,
                # One retry discipline (BatchCalls) instead of two stacked ones.
                retry_total=0,
                connection_timeout=self.request_timeout_seconds,
                read_timeout=self.request_timeout_seconds,
            )
            self._calls = BatchCalls(
                client,
                attempts=self.call_attempts,
                backoff_seconds=self.backoff_seconds,
                backoff_max_seconds=self.backoff_max_seconds,
            )
        return self._calls

    def _account_name(self) -> str:
        if self.account_name:
            return self.account_name
        from urllib.parse import urlparse

        host = urlparse(self.account_url).hostname or ""
        if host.replace(".", "").isdigit() or host == "localhost":
            raise AzureBatchError(
                "AZURE_BATCH_ACCOUNT_NAME is needed with a shared key when the account URL does not name it"
            )
        return host.split(".")[0]

    @property
    def client(self) -> Any:
        return self.calls().client

    def blob_store(self, store: ObjectStore) -> AzureBlobObjectStore:
        if not isinstance(store, AzureBlobObjectStore):
            raise AzureBatchError(
                "Azure Batch compute needs the object store on Azure Blob (MNIST_STORAGE=azure_blob): "
                f"Batch nodes download inputs from and upload outputs to Blob, found {type(store).__name__}"
            )
        return store

    # ---- ids --------------------------------------------------------------------------------------
    @staticmethod
    def base_job_id(request: WorkloadRequest) -> str:
        job_id = f"mnist-{request.task}-{request.key_digest}"
        if not _ID_OK.match(job_id):
            raise AzureBatchError(
                f"task name {request.task!r} does not make a valid Batch job id ({job_id!r})"
            )
        return job_id

    @staticmethod
    def _attempt_id(base: str, attempt: int) -> str:
        # A job id cannot be reused until the old job is deleted, so a resubmission gets a suffix.
        return base if attempt == 1 else f"{base}-r{attempt}"

    def job_url(self, job_id: str) -> str | None:
        return f"{self.account_url.rstrip('/')}/jobs/{job_id}"

    # ---- the job protocol -----------------------------------------------------------------------
    def check_store(self, store: ObjectStore) -> None:
        self.blob_store(store)

    def release(self, log: Any) -> None:
        # Whatever happened (success, failure, cancellation), a scale-to-zero pool with nothing left to
        # do goes back to zero nodes; ephemeral pools go with their job.
        with contextlib.suppress(AzureBatchError):
            self.release_pool(log)

    def find_job(self, request: WorkloadRequest) -> str | None:
        """The newest job submitted for this idempotency key (`<base>`, `<base>-r2`, ...)."""
        base = self.base_job_id(request)
        found: str | None = None
        for attempt in range(1, 50):
            job_id = self._attempt_id(base, attempt)
            job = self.calls().call("get_job", self.client.get_job, job_id, missing_ok=True)
            if job is None:
                break
            found = job_id
        return found

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        blob = self.blob_store(store)
        self.cleanup_jobs()
        code_hash = self.upload_workload(blob)
        data_sas = self._container_sas_url(blob, blob.container, "rcwl")
        job_id = self._fresh_job_id(request)
        self.create_job(job_id, request)
        task = self._task_body(request, job_id, code_hash, data_sas, env, blob)
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        # TaskExists: an earlier attempt of this very call created it and its response was lost.
        self.calls().call(
            "create_task",
            self.client.create_task,
            job_id,
            models.BatchTaskCreateOptions(task),
            exists_ok=("TaskExists",),
        )
        self._submitted_at[job_id] = time.monotonic()
        return job_id

    def _fresh_job_id(self, request: WorkloadRequest) -> str:
        """The first attempt id whose job does not exist, or exists but has no task yet (an interrupted submit)."""
        base = self.base_job_id(request)
        for attempt in range(1, 50):
            job_id = self._attempt_id(base, attempt)
            job = self.calls().call("get_job", self.client.get_job, job_id, missing_ok=True)
            if job is None:
                return job_id
            if job.state == "active" and self._get_task(job_id) is None:
                return job_id
        raise AzureBatchError(f"49 jobs already exist for {request.idempotency_key}; delete some of them")

    def create_job(self, job_id: str, request: WorkloadRequest) -> None:
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        body: dict[str, Any] = {
            "id": job_id,
            "displayName": f"{request.task} {request.idempotency_key}"[:1024],
            "poolInfo": self._pool_info(),
            # The job completes with its task, which is what lets an auto pool go and retention apply.
            "onAllTasksComplete": "terminatejob",
            "metadata": [
                {"name": OWNER_KEY, "value": OWNER},
                {"name": "idempotency-key", "value": request.idempotency_key[:512]},
            ],
        }
        self.calls().call(
            "create_job", self.client.create_job, models.BatchJobCreateOptions(body), exists_ok=("JobExists",)
        )

    def status(self, job_id: str) -> JobStatus:
        job_missing = False
        task = self._get_task(job_id)
        if task is None:
            job = self.calls().call("get_job", self.client.get_job, job_id, missing_ok=True)
            job_missing = job is None
            if job is not None and job.state == "active":
                # Submission was interrupted between creating the job and its task: not reattachable,
                # and the next submit creates the task in this job.
                return JobStatus(
                    JobState.FAILED, f"job {job_id} has no task (its submission was interrupted)"
                )
            if (
                job is not None
                and (job.execution_info and job.execution_info.termination_reason) == CANCEL_REASON
            ):
                return JobStatus(JobState.CANCELED, "cancelled from Dagster")
            return JobStatus(
                JobState.FAILED,
                f"job {job_id} {'no longer exists' if job_missing else 'has no task'} on {self.account_url}",
            )
        state = task.state
        if state in ("active", "preparing"):
            problem = self._queue_problem(job_id)
            if problem:
                # Nothing will ever run this task: end the job (an auto pool goes with it) and say why.
                self._terminate(job_id, "PoolCannotRunTask")
                return JobStatus(JobState.FAILED, problem)
            return JobStatus(JobState.QUEUED)
        if state == "running":
            return JobStatus(JobState.RUNNING)
        info = task.execution_info
        if info is not None and info.result == "success":
            return JobStatus(JobState.SUCCEEDED)
        job = self.calls().call("get_job", self.client.get_job, job_id, missing_ok=True)
        if job is not None and job.execution_info and job.execution_info.termination_reason == CANCEL_REASON:
            return JobStatus(JobState.CANCELED, "cancelled from Dagster")
        return JobStatus(JobState.FAILED, self._failure_message(job_id, task))

    def _queue_problem(self, job_id: str) -> str | None:
        """Why the queued task can never start (resize error, start task failed on every node), if so."""
        now = time.monotonic()
        last = self._queue_checked.get(job_id)
        if last is None:
            self._queue_checked[job_id] = now
            return None
        if now - last < self.queue_check_seconds:
            return None
        self._queue_checked[job_id] = now
        job = self.calls().call("get_job", self.client.get_job, job_id, missing_ok=True)
        pool_id = job.execution_info.pool_id if job is not None and job.execution_info else None
        if not pool_id:
            return None
        pool = self.calls().call("get_pool", self.client.get_pool, pool_id, missing_ok=True)
        if pool is None or pool.state == "deleting":
            return f"pool {pool_id} of job {job_id} is gone or being deleted"
        if pool.resize_errors:
            errors = "; ".join(f"{e.code}: {e.message}" for e in pool.resize_errors)
            return f"pool {pool_id} cannot get nodes ({errors}); check the VM size, quota and image settings"
        if (
            self.pool_mode == "scale_to_zero"
            and not pool.enable_auto_scale
            and pool.allocation_state == "steady"
            and (pool.target_dedicated_nodes or 0) == 0
        ):
            # Another step scaled the pool down between our submit and the start of our task.
            self._resize(pool_id, self.node_count)
            return None
        nodes = self.calls().call("list_nodes", lambda: list(self.client.list_nodes(pool_id))) or []
        if nodes and all(n.state == "starttaskfailed" for n in nodes):
            info = nodes[0].start_task_info
            exit_code = info.exit_code if info is not None else None
            return (
                f"the start task failed on every node of pool {pool_id} (exit code {exit_code}): the workload's "
                "requirements could not be installed; see the node's startup/stderr.txt, check "
                "workload/requirements.txt and the image (MNIST_AZBATCH_IMAGE)"
            )
        return None

    def _terminate(self, job_id: str, reason: str) -> None:
        poller = self.calls().call(
            "terminate_job",
            self.client.begin_terminate_job,
            job_id,
            {"terminateReason": reason},
            polling_interval=self.lro_polling_seconds,
            exists_ok=("JobCompleted",),
            missing_ok=True,
        )
        del poller

    def _get_task(self, job_id: str) -> Any:
        return self.calls().call("get_task", self.client.get_task, job_id, TASK_ID, missing_ok=True)

    def _failure_message(self, job_id: str, task: Any) -> str:
        info = task.execution_info
        parts: list[str] = []
        if info is not None and info.exit_code is not None:
            parts.append(f"exit code {info.exit_code}")
        failure = info.failure_info if info is not None else None
        if failure is not None:
            parts.append(f"{failure.category} error {failure.code}: {failure.message}")
        return "; ".join(parts or ["task failed"])

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        """The end of the task's stderr: from Blob (uploaded when the task ended), else from the node."""
        data: bytes | None = None
        with contextlib.suppress(Exception):
            data = store.get_bytes(f"{STAGING}/{job_id}/logs/stderr.txt")
        if data is None:
            with contextlib.suppress(Exception):
                data = b"".join(self.client.download_task_file(job_id, TASK_ID, "stderr.txt"))
        return last_lines(data) if data else ""

    def cancel(self, job_id: str) -> None:
        poller = self.calls().call(
            "terminate_job",
            self.client.begin_terminate_job,
            job_id,
            # The SDK's options model is private in 15.x; the wire form is documented.
            {"terminateReason": CANCEL_REASON},
            polling_interval=self.lro_polling_seconds,
            exists_ok=("JobCompleted",),
            missing_ok=True,
        )
        if poller is not None:
            # Wait a little for the task to be killed; the job is terminating either way.
            with contextlib.suppress(Exception):
                poller.result(timeout=max(10, 3 * self.lro_polling_seconds))

    def new_log_lines(self, job_id: str) -> list[str]:
        """New complete lines of stdout.txt and stderr.txt on the node, read by byte range."""
        offsets = self._log_offsets.setdefault(job_id, {})
        sizes = self._task_file_sizes(job_id)
        lines: list[str] = []
        for stream in ("stdout", "stderr"):
            size = sizes.get(f"{stream}.txt", 0)
            start = offsets.get(stream, 0)
            if size <= start:
                continue
            chunks = self.calls().call(
                "download_task_file",
                self.client.download_task_file,
                job_id,
                TASK_ID,
                f"{stream}.txt",
                ocp_range=f"bytes={start}-{size - 1}",
                missing_ok=True,
            )
            chunk = b"".join(chunks) if chunks is not None else b""
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[stream] = start + len(complete)
            lines += [
                f"{stream}: {ln}" for ln in complete.decode(errors="replace").splitlines() if ln.strip()
            ]
        return lines

    def _task_file_sizes(self, job_id: str) -> dict[str, int]:
        from azure.core.exceptions import HttpResponseError

        try:
            files = self.client.list_task_files(job_id, TASK_ID)
            return {
                f.name: int(f.properties.content_length)
                for f in files
                if f.name in ("stdout.txt", "stderr.txt") and f.properties is not None
            }
        except HttpResponseError:
            # The task has not started (no files yet), or its node is gone: nothing new to read now.
            return {}
        except Exception:
            return {}

    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        """Publish the staged outputs under the requested prefixes, completion markers last."""
        with tempfile.TemporaryDirectory(prefix="batch-outputs-") as tmp:
            for name, prefix in request.outputs.items():
                local = Path(tmp) / name
                local.mkdir()
                store.download_prefix(f"{STAGING}/{job_id}/outputs/{name}/", local)
                publish_dir(store, local, prefix)

    @contextlib.contextmanager
    def pipes_session(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> Iterator[dg.PipesSession]:
        from dagster_azure.pipes import (
            PipesAzureBlobStorageContextInjector,
            PipesAzureBlobStorageMessageReader,
        )
        from dagster_pipes import PipesParams

        class _Reader(PipesAzureBlobStorageMessageReader):
            """Reads where a task already launched writes (after a reattach), else at a fresh prefix."""

            def __init__(self, existing: dict[str, Any] | None, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                self.existing = existing

            @contextlib.contextmanager
            def get_params(self) -> Iterator[PipesParams]:
                if self.existing is not None:
                    yield self.existing
                    return
                with super().get_params() as params:
                    yield params

        service = self._blob_service(self.blob_store(store))
        with contextlib.suppress(Exception):
            service.create_container(self.pipes_container)
        with dg.open_pipes_session(
            context=context,
            context_injector=PipesAzureBlobStorageContextInjector(
                container=self.pipes_container, client=service
            ),
            message_reader=_Reader(
                self._live_task_pipes_params(request),
                interval=self.pipes_interval_seconds,
                container=self.pipes_container,
                client=service,
            ),
        ) as session:
            yield session

    def _live_task_pipes_params(self, request: WorkloadRequest) -> dict[str, Any] | None:
        """The Pipes message params of this step's task if it is still live (the driver will reattach to it):
        its messages keep arriving where that task writes them, so reattaching loses none of them."""
        from dagster_pipes import DAGSTER_PIPES_MESSAGES_ENV_VAR, decode_param

        job_id = self.find_job(request)
        if job_id is None or not self._reattachable(job_id):
            return None
        task = self._get_task(job_id)
        for setting in (task.environment_settings if task is not None else None) or []:
            if setting.name == DAGSTER_PIPES_MESSAGES_ENV_VAR and setting.value:
                return dict(decode_param(setting.value))
        return None

    # ---- delivery -------------------------------------------------------------------------------
    def _package_dir(self) -> Path:
        return Path(self.package_dir) if self.package_dir else PROJECT_ROOT / "workload"

    def _module(self) -> str:
        return self._package_dir().name

    def _package_files(self) -> list[Path]:
        root = self._package_dir()
        return sorted(
            p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )

    def code_hash(self) -> str:
        root = self._package_dir()
        digest = hashlib.sha256()
        for path in self._package_files():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()[:16]

    def upload_workload(self, store: ObjectStore) -> str:
        """Upload the workload package once per content hash; READY is written last."""
        code_hash = self.code_hash()
        base = f"{WORKLOAD_PREFIX}/{code_hash}"
        if store.exists(f"{base}/READY"):
            return code_hash
        root = self._package_dir()
        for path in self._package_files():
            store.put_file(f"{base}/{self._module()}/{path.relative_to(root).as_posix()}", path)
        store.put_bytes(f"{base}/READY", b"")
        return code_hash

    def _requirements(self) -> list[str]:
        path = self._package_dir() / "requirements.txt"
        if not path.exists():
            path = PROJECT_ROOT / "workload" / "requirements.txt"
        return [
            ln.strip()
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.strip().startswith("#")
        ]

    def _task_body(
        self,
        request: WorkloadRequest,
        job_id: str,
        code_hash: str,
        data_sas: str,
        env: Mapping[str, str],
        blob: AzureBlobObjectStore,
    ) -> dict[str, Any]:
        resource_files: list[dict[str, Any]] = [
            {
                "storageContainerUrl": data_sas,
                "blobPrefix": f"{WORKLOAD_PREFIX}/{code_hash}/",
                "filePath": "code",
            }
        ]
        args: list[str] = [self.python, "-m", self._module(), request.task]
        for name, prefix in request.inputs.items():
            folder = prefix.rstrip("/") + "/"
            resource_files.append(
                {"storageContainerUrl": data_sas, "blobPrefix": folder, "filePath": f"in/{name}"}
            )
            # Batch keeps the blob path under filePath: in/<name>/<prefix>/...
            args += ["--input", f"{name}=in/{name}/{folder.rstrip('/')}"]
        output_files: list[dict[str, Any]] = []
        for name in request.outputs:
            args += ["--output", f"{name}=out/{name}"]
            output_files.append(
                {
                    "filePattern": f"out/{name}/**/*",
                    "destination": {
                        "container": {"containerUrl": data_sas, "path": f"{STAGING}/{job_id}/outputs/{name}"}
                    },
                    "uploadOptions": {"uploadCondition": "tasksuccess"},
                }
            )
        for stream in ("stdout", "stderr"):
            # Kept after the task (and after an ephemeral pool is gone): the logs, whatever the outcome.
            output_files.append(
                {
                    "filePattern": f"../{stream}.txt",
                    "destination": {
                        "container": {
                            "containerUrl": data_sas,
                            "path": f"{STAGING}/{job_id}/logs/{stream}.txt",
                        }
                    },
                    "uploadOptions": {"uploadCondition": "taskcompletion"},
                }
            )
        args += ["--params", json.dumps(dict(request.params), sort_keys=True)]
        outputs = " ".join(shlex.quote(f"out/{name}") for name in request.outputs)
        script = (
            'cd "$AZ_BATCH_TASK_WORKING_DIR" && '
            + (f"mkdir -p {outputs} && " if outputs else "")
            + f'export PYTHONPATH="$PWD/code/{WORKLOAD_PREFIX}/{code_hash}" PYTHONUNBUFFERED=1 && '
            + "exec "
            + shlex.join(args)
        )
        pipes_url = f"{self._blob_service(blob).url.rstrip('/')}/"
        pipes_sas = self._container_sas_url(blob, self.pipes_container, "rcwd").partition("?")[2]
        environment = [
            *({"name": k, "value": v} for k, v in env.items()),
            # How the workload reaches the Pipes blobs (see workload/report.py); the SAS is container-scoped.
            {
                "name": "WORKLOAD_PIPES_BLOB_URL",
                "value": f"{pipes_url}?{pipes_sas}" if pipes_sas else pipes_url,
            },
            {"name": "WORKLOAD_PIPES_INTERVAL", "value": str(self.pipes_interval_seconds)},
        ]
        return {
            "id": TASK_ID,
            "displayName": f"{request.task} {request.idempotency_key}"[:1024],
            "commandLine": f"/bin/bash -c {shlex.quote(script)}",
            "resourceFiles": resource_files,
            "outputFiles": output_files,
            "environmentSettings": environment,
            "constraints": {
                "maxWallClockTime": _duration(timedelta(hours=self.task_max_wall_clock_hours)),
                # Dagster owns retries (they reattach or resubmit); Batch must not rerun the task behind its back.
                "maxTaskRetryCount": 0,
            },
            "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "nonadmin"}},
        }

    # ---- storage credentials for the nodes -------------------------------------------------------
    def _blob_service(self, store: AzureBlobObjectStore) -> Any:
        return store.service_client()

    def _container_sas_url(self, store: AzureBlobObjectStore, container: str, permission: str) -> str:
        """`<container url>?<sas>` that a Batch node can use without any other credential."""
        from azure.storage.blob import generate_container_sas

        service = self._blob_service(store)
        url = f"{service.url.rstrip('/')}/{container}"
        if store.sas_token and not store.connection_string and not store.account_key:
            return f"{url}?{store.sas_token.lstrip('?')}"
        now = datetime.now(UTC)
        expiry = now + timedelta(hours=self.sas_hours)
        credential = service.credential
        key = getattr(credential, "account_key", None)
        if key:
            sas = generate_container_sas(
                service.account_name, container, account_key=key, permission=permission, expiry=expiry
            )
        else:
            delegation = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
            sas = generate_container_sas(
                service.account_name,
                container,
                user_delegation_key=delegation,
                permission=permission,
                expiry=expiry,
            )
        return f"{url}?{sas}"

    # ---- pools ------------------------------------------------------------------------------------
    def pool_spec(self) -> dict[str, Any]:
        """The pool the workload needs (VM size, image, start task installing its requirements)."""
        requirements = " ".join(shlex.quote(r) for r in self._requirements())
        spec: dict[str, Any] = {
            "vmSize": self.vm_size,
            "virtualMachineConfiguration": {
                "imageReference": {
                    "publisher": self.image_publisher,
                    "offer": self.image_offer,
                    "sku": self.image_sku,
                    "version": "latest",
                },
                "nodeAgentSKUId": self.node_agent_sku_id,
            },
            "startTask": {
                "commandLine": "/bin/bash -c "
                + shlex.quote(self.start_command.replace("{requirements}", requirements)),
                "waitForSuccess": True,
                "maxTaskRetryCount": 2,
                "userIdentity": {"autoUser": {"scope": "pool", "elevationLevel": "admin"}},
            },
            "taskSlotsPerNode": 1,
        }
        if self.autoscale_formula:
            spec["enableAutoScale"] = True
            spec["autoScaleFormula"] = self.autoscale_formula
            spec["autoScaleEvaluationInterval"] = _duration(
                timedelta(minutes=self.autoscale_interval_minutes)
            )
        else:
            spec["targetDedicatedNodes"] = self.node_count
        return spec

    def pool_name(self) -> str:
        """The named pool of the persistent and scale-to-zero modes: the prefix plus a hash of its spec,
        so a pool with a different VM size, image or requirements is never reused by mistake."""
        digest = hashlib.sha256(json.dumps(self.pool_spec(), sort_keys=True).encode()).hexdigest()[:10]
        name = f"{self.pool_id}-{digest}"
        if not _ID_OK.match(name):
            raise AzureBatchError(
                f"AZURE_BATCH_POOL_ID {self.pool_id!r} makes an invalid pool id {name!r}: use at most 53 "
                "letters, digits, hyphens or underscores"
            )
        return name

    def _pool_info(self) -> dict[str, Any]:
        if self.pool_mode == "ephemeral":
            return {
                "autoPoolSpecification": {
                    "autoPoolIdPrefix": self.pool_id[:20],
                    # The pool is created with the job and deleted by Batch when the job completes (or is
                    # terminated): nothing keeps billing after a failed or cancelled run.
                    "poolLifetimeOption": "job",
                    "keepAlive": False,
                    "pool": {**self.pool_spec(), "metadata": [{"name": OWNER_KEY, "value": OWNER}]},
                }
            }
        return {"poolId": self.ensure_pool()}

    def ensure_pool(self) -> str:
        """Make sure the named pool exists and, when it scales to zero between runs, has nodes coming."""
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        pool_id = self.pool_name()
        deadline = time.monotonic() + self.pool_delete_wait_seconds
        delay = self.backoff_seconds
        while True:
            pool = self.calls().call("get_pool", self.client.get_pool, pool_id, missing_ok=True)
            if pool is not None and pool.state != "deleting":
                break
            if pool is None:
                body = {"id": pool_id, **self.pool_spec(), "metadata": [{"name": OWNER_KEY, "value": OWNER}]}
                try:
                    self.calls().call(
                        "create_pool",
                        self.client.create_pool,
                        models.BatchPoolCreateOptions(body),
                        exists_ok=("PoolExists",),
                    )
                    self._ready_pools.add(pool_id)
                    return pool_id
                except AzureBatchError as exc:
                    if "PoolBeingDeleted" not in str(exc):
                        raise
            # The pool is being deleted (by a cleanup, another run or an operator): its id is blocked
            # until the deletion finishes. Wait for it with backoff rather than failing the run.
            if time.monotonic() > deadline:
                raise AzureBatchError(
                    f"pool {pool_id} was still being deleted after {self.pool_delete_wait_seconds:.0f} s; "
                    "wait for the deletion to finish or set another AZURE_BATCH_POOL_ID"
                )
            time.sleep(delay)
            delay = min(self.backoff_max_seconds, delay * 2)
        if (
            self.pool_mode == "scale_to_zero"
            and not pool.enable_auto_scale
            and (pool.target_dedicated_nodes or 0) < self.node_count
        ):
            self._resize(pool_id, self.node_count)
        self._ready_pools.add(pool_id)
        return pool_id

    def _resize(self, pool_id: str, nodes: int) -> None:
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        # PoolNotSteady: a resize is under way; stop it first so the new target wins.
        for _ in range(10):
            try:
                poller = self.calls().call(
                    "resize_pool",
                    self.client.begin_resize_pool,
                    pool_id,
                    models.BatchPoolResizeOptions(
                        target_dedicated_nodes=nodes,
                        node_deallocation_option="taskcompletion" if nodes == 0 else None,
                    ),
                    polling_interval=self.lro_polling_seconds,
                )
                del poller  # the resize carries on server-side; nothing to wait for
                return
            except AzureBatchError as exc:
                if "PoolNotSteady" not in str(exc):
                    raise
                stop = self.calls().call(
                    "stop_pool_resize",
                    self.client.begin_stop_pool_resize,
                    pool_id,
                    polling_interval=self.lro_polling_seconds,
                )
                if stop is not None:
                    with contextlib.suppress(Exception):
                        stop.result(timeout=30)

    def release_pool(self, log: Any = None) -> None:
        """Scale-to-zero mode: resize the pool to 0 nodes when no active job of ours uses it."""
        if self.pool_mode != "scale_to_zero" or self.autoscale_formula:
            return
        for pool_id in sorted(self._ready_pools):
            active = self.calls().call(
                "list_jobs", lambda: list(self.client.list_jobs(filter="state eq 'active'"))
            )
            busy = [j.id for j in active or [] if j.pool_info is not None and j.pool_info.pool_id == pool_id]
            if busy:
                continue
            pool = self.calls().call("get_pool", self.client.get_pool, pool_id, missing_ok=True)
            if pool is not None and pool.state == "active" and (pool.target_dedicated_nodes or 0) > 0:
                self._resize(pool_id, 0)
                if log is not None:
                    log.info(
                        f"Pool {pool_id} scaled to 0 nodes (no active jobs): it costs nothing while idle"
                    )

    def delete_pool(self, pool_id: str) -> None:
        poller = self.calls().call(
            "delete_pool",
            self.client.begin_delete_pool,
            pool_id,
            polling_interval=self.lro_polling_seconds,
            missing_ok=True,
        )
        del poller

    def cleanup_jobs(self) -> list[str]:
        """Delete our completed jobs older than the retention (one list call; cheap enough per submit)."""
        cutoff = datetime.now(UTC) - timedelta(hours=self.job_retention_hours)
        deleted: list[str] = []
        jobs = self.calls().call(
            "list_jobs",
            lambda: list(
                self.client.list_jobs(
                    filter=f"state eq 'completed' and creationTime lt datetime'{_iso(cutoff)}'"
                )
            ),
        )
        for job in jobs or []:
            if not any(m.name == OWNER_KEY and m.value == OWNER for m in job.metadata or []):
                continue
            end = job.execution_info.end_time if job.execution_info else None
            if end is not None and end > cutoff:
                continue
            self.calls().call(
                "delete_job",
                self.client.begin_delete_job,
                job.id,
                polling_interval=self.lro_polling_seconds,
                missing_ok=True,
                exists_ok=("JobBeingDeleted",),
            )
            deleted.append(job.id)
        return deleted


def _duration(delta: timedelta) -> str:
    """ISO 8601 duration as Batch expects it (e.g. PT24H)."""
    seconds = int(delta.total_seconds())
    return f"PT{seconds}S" if seconds % 60 else f"PT{seconds // 60}M"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
