"""Run workload tasks on Azure Batch: one Batch job with one task per Dagster step.

Delivery follows the ADF reference (a pool whose start task installs the workload's Python
requirements, a job's task that runs a script), with what ADF lacks:

- ids derive from the step's idempotency key (Dagster run id + asset + partition + task), so a retried
  step finds its job and reattaches instead of launching a second one; cancelling the run terminates
  the job; completed jobs are deleted after a retention period;
- the task's outputs are staged by Batch and then published under the requested prefixes with the
  completion markers last, so nothing half-written is ever visible (`task_spec`, `outputs`);
- stdout/stderr are read while the task runs (ranged reads of `stdout.txt`/`stderr.txt`) and kept in
  Blob when it ends; Dagster Pipes messages (logs, metrics) travel over Blob (`pipes`);
- pools per mode: persistent, scale to zero, or ephemeral auto pools (`pools`).
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import PrivateAttr

from resources.azure.errors import AzureCallError, PermanentAzureError
from resources.compute.base import JobState, JobStatus, WorkloadRequest, last_lines
from resources.compute.outputs import publish_dir
from resources.storage import AzureBlobObjectStore, ObjectStore

from .client import BatchService
from .config import AzureBatchConfig
from .node_access import container_sas_url
from .pipes import blob_pipes_session, pipes_env, task_pipes_params
from .pools import ID_OK, OWNER, OWNER_KEY, OWNER_METADATA, Pools
from .task_spec import STAGING, TASK_ID, task_body, upload_workload

CANCEL_REASON = "CanceledFromDagster"
SUBMIT_FAILED_REASON = "SubmitFailed"
# A job of ours still noaction this long after its creation lost its submitter between creating it and
# setting it to end with its task (a submit takes seconds); the next submit sets it (`cleanup_jobs`).
ORPHAN_AFTER = timedelta(hours=1)
MAX_ATTEMPT_IDS = 49  # resubmissions of one step: <base>, <base>-r2, ... <base>-r49


def as_blob_store(store: ObjectStore) -> AzureBlobObjectStore:
    if not isinstance(store, AzureBlobObjectStore):
        raise PermanentAzureError(
            "Azure Batch compute needs the object store on Azure Blob (MNIST_STORAGE=azure_blob): "
            f"Batch nodes download inputs from and upload outputs to Blob, found {type(store).__name__}"
        )
    return store


class AzureBatchBackend(AzureBatchConfig):
    """Runs `python -m workload <task>` as an Azure Batch task; needs the object store to be Azure Blob.

    Settings and credentials: see `AzureBatchConfig`.
    """

    client_name: ClassVar[str] = "azure-batch"
    _service: BatchService | None = PrivateAttr(default=None)
    _pools: Pools | None = PrivateAttr(default=None)
    _log_offsets: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)
    _queue_checked: dict[str, float] = PrivateAttr(default_factory=dict)

    def service(self) -> BatchService:
        if self._service is None:
            self._service = BatchService(self)
        return self._service

    def pools(self) -> Pools:
        if self._pools is None:
            self._pools = Pools(self, self.service())
        return self._pools

    # ---- ids --------------------------------------------------------------------------------------
    @staticmethod
    def base_job_id(request: WorkloadRequest) -> str:
        job_id = f"mnist-{request.task}-{request.key_digest}"
        if not ID_OK.match(job_id):
            raise PermanentAzureError(
                f"task name {request.task!r} does not make a valid Batch job id ({job_id!r})"
            )
        return job_id

    def _attempt_ids(self, request: WorkloadRequest) -> Iterator[str]:
        # A job id cannot be reused until the old job is deleted, so a resubmission gets a suffix.
        base = self.base_job_id(request)
        yield base
        for attempt in range(2, MAX_ATTEMPT_IDS + 1):
            yield f"{base}-r{attempt}"

    def job_url(self, job_id: str) -> str | None:
        return f"{self.account_url.rstrip('/')}/jobs/{job_id}"

    # ---- the job protocol -----------------------------------------------------------------------
    def check_store(self, store: ObjectStore) -> None:
        as_blob_store(store)

    def release(self, log: Any) -> None:
        # Whatever happened (success, failure, cancellation), a scale-to-zero pool with nothing left to
        # do goes back to zero nodes; ephemeral pools go with their job.
        if self._pools is None:  # no pool was readied by this resource: nothing to release, no client
            return
        with contextlib.suppress(AzureCallError):
            self._pools.release(log)

    def _get_job(self, job_id: str) -> Any:
        return self.service().get("get_job", self.service().client.get_job, job_id)

    def _get_task(self, job_id: str) -> Any:
        return self.service().get("get_task", self.service().client.get_task, job_id, TASK_ID)

    def find_job(self, request: WorkloadRequest) -> str | None:
        """The newest job submitted for this idempotency key (`<base>`, `<base>-r2`, ...).

        A job whose submit was interrupted after its task was added (still noaction) is set to end with
        its task here, so the step that reattaches to it leaves nothing behind.
        """
        found: Any = None
        for job_id in self._attempt_ids(request):
            job = self._get_job(job_id)
            if job is None:
                break
            found = job
        if found is None:
            return None
        if (
            found.state == "active"
            and found.all_tasks_complete_mode != "terminatejob"
            and self._get_task(found.id) is not None
        ):
            self.end_with_task(found.id)
        return str(found.id)

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        blob = as_blob_store(store)
        self.cleanup_jobs()
        digest = upload_workload(self, blob)
        data_sas = container_sas_url(blob, blob.container, "rcwl", self.sas_hours)
        job_id = self._fresh_job_id(request)
        task = task_body(self, request, job_id, digest, data_sas, {**env, **pipes_env(self, blob)})
        # The order matters: a job set to terminatejob while it has no task counts as "all tasks complete"
        # and ends at once (taking an auto pool with it), so the task is added to a noaction job, which is
        # then set to end with its task.
        client = self.service().client
        try:
            self.create_job(job_id, request)
            # TaskExists: an earlier attempt of this very call created it and its response was lost.
            self.service().call(
                "create_task",
                client.create_task,
                job_id,
                models.BatchTaskCreateOptions(task),
                exists_ok=("TaskExists",),
            )
            self.end_with_task(job_id)
        except BaseException:
            # The step fails (or the run is being terminated) here and nobody will follow this job: end it
            # now, if it was created at all (a task that did land goes too, and an auto pool with it),
            # instead of leaving a noaction job active for ever. A retried step submits a new job. (A
            # killed process runs none of this: `find_job` and `cleanup_jobs` deal with what it left.)
            with contextlib.suppress(AzureCallError):
                self._terminate(job_id, SUBMIT_FAILED_REASON)
            raise
        return job_id

    def _fresh_job_id(self, request: WorkloadRequest) -> str:
        """The first attempt id whose job does not exist, or exists but has no task yet (an interrupted submit)."""
        for job_id in self._attempt_ids(request):
            job = self._get_job(job_id)
            if job is None or (job.state == "active" and self._get_task(job_id) is None):
                return job_id
        raise PermanentAzureError(
            f"{MAX_ATTEMPT_IDS} jobs already exist for {request.idempotency_key}; delete some of them"
        )

    def create_job(self, job_id: str, request: WorkloadRequest) -> None:
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        body: dict[str, Any] = {
            "id": job_id,
            "displayName": f"{request.task} {request.idempotency_key}"[:1024],
            "poolInfo": self.pools().info(),
            # Not terminatejob yet: with no task the job would complete at once (see `submit`).
            "onAllTasksComplete": "noaction",
            "metadata": [
                *OWNER_METADATA,
                {"name": "idempotency-key", "value": request.idempotency_key[:512]},
            ],
        }
        client = self.service().client
        self.service().call(
            "create_job", client.create_job, models.BatchJobCreateOptions(body), exists_ok=("JobExists",)
        )

    def end_with_task(self, job_id: str) -> None:
        """Set the job to complete when its task does, which lets an auto pool go and retention apply.

        A PATCH of `onAllTasksComplete` only (a PUT would reset the job's metadata and priority). Safe to
        repeat: the same value again changes nothing, and a job already completed (it ended with its task
        before a retried update arrived, or was terminated) has nothing left to set.
        """
        from azure.batch import models  # noqa: TID251 (lazy: only when Batch is used)

        self.service().call(
            "update_job",
            self.service().client.update_job,
            job_id,
            models.BatchJobUpdateOptions(all_tasks_complete_mode="terminatejob"),
            exists_ok=("JobCompleted",),
        )

    def status(self, job_id: str) -> JobStatus:
        task = self._get_task(job_id)
        if task is None:
            job = self._get_job(job_id)
            if job is not None and job.state == "active":
                # Submission was interrupted between creating the job and its task: not reattachable,
                # and the next submit creates the task in this job.
                return JobStatus(
                    JobState.FAILED, f"job {job_id} has no task (its submission was interrupted)"
                )
            if _cancelled(job):
                return JobStatus(JobState.CANCELED, "cancelled from Dagster")
            gone = "no longer exists" if job is None else "has no task"
            return JobStatus(JobState.FAILED, f"job {job_id} {gone} on {self.account_url}")
        if task.state in ("active", "preparing"):
            problem = self._queue_problem(job_id)
            if problem:
                # Nothing will ever run this task: end the job (an auto pool goes with it) and say why.
                self._terminate(job_id, "PoolCannotRunTask")
                return JobStatus(JobState.FAILED, problem)
            return JobStatus(JobState.QUEUED)
        if task.state == "running":
            return JobStatus(JobState.RUNNING)
        info = task.execution_info
        if info is not None and info.result == "success":
            return JobStatus(JobState.SUCCEEDED)
        if _cancelled(self._get_job(job_id)):
            return JobStatus(JobState.CANCELED, "cancelled from Dagster")
        parts: list[str] = []
        if info is not None and info.exit_code is not None:
            parts.append(f"exit code {info.exit_code}")
        failure = info.failure_info if info is not None else None
        category = str(getattr(failure.category, "value", failure.category)) if failure is not None else ""
        if failure is not None:
            parts.append(f"{category} error {failure.code}: {failure.message}")
        # Batch's own category: ServerError is the service's or the node's doing (a node lost or
        # preempted mid-task, a failed download by the node agent), UserError the task's. Only the
        # former may pass on a successor job (`<base>-r<n>`).
        server = category.lower() == "servererror"
        return JobStatus(JobState.FAILED, "; ".join(parts or ["task failed"]), retryable=server)

    def _queue_problem(self, job_id: str) -> str | None:
        """Why the queued task can never start, looked at once every `queue_check_seconds`."""
        now = time.monotonic()
        last = self._queue_checked.get(job_id)
        if last is None:
            self._queue_checked[job_id] = now
            return None
        if now - last < self.queue_check_seconds:
            return None
        self._queue_checked[job_id] = now
        return self.pools().queue_problem(job_id)

    def _terminate(self, job_id: str, reason: str) -> Any:
        # The SDK's options model is private in 15.x; the wire form is documented.
        return self.service().call(
            "terminate_job",
            self.service().client.begin_terminate_job,
            job_id,
            {"terminateReason": reason},
            polling_interval=self.lro_polling_seconds,
            exists_ok=("JobCompleted",),
            missing_ok=True,
        )

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        """The end of the task's stderr: from Blob (uploaded when the task ended), else from the node."""
        data: bytes | None = None
        with contextlib.suppress(Exception):
            data = store.get_bytes(f"{STAGING}/{job_id}/logs/stderr.txt")
        if data is None:
            with contextlib.suppress(Exception):
                data = b"".join(self.service().client.download_task_file(job_id, TASK_ID, "stderr.txt"))
        return last_lines(data) if data else ""

    def cancel(self, job_id: str) -> None:
        poller = self._terminate(job_id, CANCEL_REASON)
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
            chunks = self.service().get(
                "download_task_file",
                self.service().client.download_task_file,
                job_id,
                TASK_ID,
                f"{stream}.txt",
                ocp_range=f"bytes={start}-{size - 1}",
            )
            chunk = b"".join(chunks) if chunks is not None else b""
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[stream] = start + len(complete)
            lines += [
                f"{stream}: {ln}" for ln in complete.decode(errors="replace").splitlines() if ln.strip()
            ]
        return lines

    def _task_file_sizes(self, job_id: str) -> dict[str, int]:
        try:
            files = self.service().client.list_task_files(job_id, TASK_ID)
            return {
                f.name: int(f.properties.content_length)
                for f in files
                if f.name in ("stdout.txt", "stderr.txt") and f.properties is not None
            }
        except Exception:
            # The task has not started (no files yet), or its node is gone: nothing new to read now.
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
        with blob_pipes_session(
            context, self, as_blob_store(store), self._live_task_pipes_params(request)
        ) as s:
            yield s

    def _live_task_pipes_params(self, request: WorkloadRequest) -> dict[str, Any] | None:
        """The Pipes message params of this step's task if it is still live (the driver will reattach to it)."""
        job_id = self.find_job(request)
        if job_id is None or not self._reattachable(job_id):
            return None
        return task_pipes_params(self._get_task(job_id))

    # ---- retention ------------------------------------------------------------------------------
    def cleanup_jobs(self) -> list[str]:
        """Delete our completed jobs older than the retention, and end our orphans (two list calls; cheap
        enough per submit).

        An orphan is a job of ours still noaction an hour after its creation: its submitter died before
        setting it to end with its task. It is set to end with its task now (at once if it has none).
        """
        self._end_orphans()
        cutoff = datetime.now(UTC) - timedelta(hours=self.job_retention_hours)
        client = self.service().client
        query = f"state eq 'completed' and creationTime lt datetime'{cutoff.strftime('%Y-%m-%dT%H:%M:%SZ')}'"
        jobs = self.service().call("list_jobs", lambda: list(client.list_jobs(filter=query)))
        deleted: list[str] = []
        for job in jobs or []:
            if not _ours(job):
                continue
            end = job.execution_info.end_time if job.execution_info else None
            if end is not None and end > cutoff:
                continue
            self.service().call(
                "delete_job",
                client.begin_delete_job,
                job.id,
                polling_interval=self.lro_polling_seconds,
                missing_ok=True,
                exists_ok=("JobBeingDeleted",),
            )
            deleted.append(job.id)
        return deleted

    def _end_orphans(self) -> None:
        client = self.service().client
        cutoff = (datetime.now(UTC) - ORPHAN_AFTER).strftime("%Y-%m-%dT%H:%M:%SZ")
        query = f"state eq 'active' and creationTime lt datetime'{cutoff}'"
        jobs = self.service().call("list_jobs", lambda: list(client.list_jobs(filter=query)))
        for job in jobs or []:
            if _ours(job) and job.all_tasks_complete_mode != "terminatejob":
                self.end_with_task(job.id)


def _ours(job: Any) -> bool:
    return any(m.name == OWNER_KEY and m.value == OWNER for m in job.metadata or [])


def _cancelled(job: Any) -> bool:
    return (
        job is not None
        and bool(job.execution_info)
        and job.execution_info.termination_reason == CANCEL_REASON
    )
