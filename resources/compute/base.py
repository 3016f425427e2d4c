"""The compute concern: run a workload task (train, score) somewhere, exactly once per Dagster step.

Every backend (a local subprocess, AzureML pipeline endpoints and batch endpoints, Azure Batch tasks)
implements the same small job protocol: find a job by idempotency key, submit, get status, cancel,
read new log lines, collect outputs. The object store travels with every call that needs it.
`ComputeBackend.run` drives that protocol the same way for all of them:

- reattach instead of resubmitting: the launch is recorded in the Dagster event log
  (`record_external_launch`), and the backend can also find a job by its idempotency key, so a
  retried step or a re-executed run from failure finds the job it already submitted;
- poll on one schedule (`PollSchedule`: fast at first, then a small fraction of the job's age);
- stream the job's log lines into the Dagster run while it runs;
- cancel the remote job when the Dagster run is cancelled;
- on failure, fail the step with the workload's own explanation when it gave one (`workload.failure`:
  what was wrong, in which file, expected and found), else the job's end state, with the end of the
  job's stderr (`stderr_tail`) below (`WorkloadFailed`, a `dg.Failure`);
- say whether a retry may help: only a job the infrastructure lost (`JobStatus.retryable`: a node
  preempted or lost, a service-side error) lets the step's RetryPolicy retry; a job that failed on
  its own (bad input, a workload error) and a permanent Azure error (a 4xx) fail the step once
  (`allow_retries=False`). A transient Azure error that outlasted azure-core's retries, or a lost
  connection, propagates as it is, so the RetryPolicy retries the step, which reattaches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster._core.pipes.reattach import (
    find_latest_launch_handle,
    record_external_launch,
    record_external_reattach,
)

from resources.azure.errors import PermanentAzureError
from resources.storage import ObjectStore
from workload.failure import FAILURE_PREFIX, PIPES_KEY
from workload.failure import FIELDS as FAILURE_FIELDS

ParamValue = str | int | float | bool
STDERR_TAIL_LINES = 15  # how much of a failed job's stderr its failure message carries

# Dagster's own Pipes session calls a preview API internally; the warning is not actionable for us.
warnings.filterwarnings("ignore", message=".*expected_writer_count.*", category=dg.PreviewWarning)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED)


@dataclass(frozen=True)
class JobStatus:
    """A job's state, the service's message, and for a failed job whether the infrastructure lost it
    (`retryable`: preempted or lost node, a service-side error), so that running it again may work."""

    state: JobState
    message: str | None = None
    retryable: bool = False


@dataclass(frozen=True)
class WorkloadRequest:
    """One task of the workload, with where its inputs are and where its outputs must land.

    `inputs` and `outputs` map a name to a storage prefix (a 'folder' in the object store).
    """

    task: str
    idempotency_key: str
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    # Inputs whose folder never changes once written (versioned models, raw data): backends may cache them.
    immutable_inputs: frozenset[str] = frozenset()

    @property
    def key_digest(self) -> str:
        return hashlib.sha256(self.idempotency_key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class WorkloadResult:
    job_id: str
    reattached: bool
    seconds: float
    job_url: str | None = None
    # What the backend knows about the remote job (run id, portal link, reused steps...), for asset metadata.
    metadata: Mapping[str, Any] = field(default_factory=dict)


class WorkloadFailed(dg.Failure):
    """A workload job that did not succeed, as the step's own failure (what the UI shows first).

    `allow_retries` is true only for a job the infrastructure lost (`JobStatus.retryable`): the
    step's RetryPolicy then retries it, and the retry submits exactly one successor job.

    When the workload explained the failure (`workload.failure`: what was wrong, in which file, what
    was expected and found), the description's first line says exactly that, the same on every backend;
    below it, which job on which backend, the service's message and the end of the job's stderr (the
    workload's traceback). Otherwise the first line is the job's end state and the service's message.
    The metadata holds the same facts as fields (file, expected, found, job, backend, task, state).
    """

    def __init__(
        self,
        job_id: str,
        state: JobState,
        message: str | None,
        *,
        stderr_tail: str = "",
        record: Mapping[str, str] | None = None,
        backend: str = "",
        task: str = "",
        job_url: str | None = None,
        allow_retries: bool = False,
    ) -> None:
        self.job_id = job_id
        self.state = state
        self.record = dict(record) if record else None
        ended = f"job {job_id} ended {state.value}" + (f": {message}" if message else "")
        tail = "\n".join(line for line in stderr_tail.splitlines() if not line.startswith(FAILURE_PREFIX))
        metadata: dict[str, Any] = {
            "job": job_id, "backend": backend, "task": task, "state": state.value, "retryable": allow_retries,
        }  # fmt: skip
        if job_url:
            metadata["job_url"] = dg.MetadataValue.url(job_url)
        if self.record:
            headline = (
                f"{self.record['file']}: {self.record['what']}: expected {self.record['expected']}, "
                f"found {self.record['found']}"
            )
            where = f"The {task} job {job_id} on {backend} ended {state.value}" + (
                f" ({message})." if message else "."
            )
            below = f"{where}\nThe end of its stderr:\n{tail}" if tail else where
            metadata.update(self.record)
        else:
            headline, below = ended, tail
        self.headline = headline
        super().__init__(
            description=f"{headline}\n{below}" if below else headline,
            metadata=metadata,
            allow_retries=allow_retries,
        )


def failure_record(custom_messages: Sequence[Any], *texts: str | None) -> dict[str, str] | None:
    """The workload's failure record (`workload.failure`): from its Pipes custom messages, else from the
    last `FAILURE_PREFIX` line in `texts` (the service's message, the stderr tail); None without one."""
    candidates: list[Any] = [
        m[PIPES_KEY] for m in custom_messages if isinstance(m, Mapping) and PIPES_KEY in m
    ]
    for text in texts:
        for line in (text or "").splitlines():
            line = line.strip()
            if line.startswith(FAILURE_PREFIX):
                with contextlib.suppress(ValueError):
                    candidates.append(json.loads(line[len(FAILURE_PREFIX) :]))
    for candidate in reversed(candidates):
        if isinstance(candidate, Mapping) and all(isinstance(candidate.get(k), str) for k in FAILURE_FIELDS):
            return {k: str(candidate[k])[:500] for k in FAILURE_FIELDS}
    return None


@dataclass(frozen=True)
class PollSchedule:
    """Waits between status requests, shared by every backend.

    The first wait is `initial`; each next one grows by `growth` up to `floor` (None: `maximum`). Once
    `fraction` of the time already waited is longer, the wait is that, capped at `maximum`. A job that
    ends at time T is then noticed at most max(floor, fraction x T) later, while the number of status
    requests grows only logarithmically with the job's duration. `fraction` 0 gives plain capped
    exponential backoff.
    """

    initial: float
    maximum: float
    growth: float = 1.5
    floor: float | None = None
    fraction: float = 0.0

    def wait(self, polls: int, elapsed: float) -> float:
        """The wait before status request number `polls` (from 0), `elapsed` seconds after the first."""
        cap = self.maximum if self.floor is None else self.floor
        ramp = self.initial
        for _ in range(polls):  # grows step by step and stops at the cap: a power of `polls` would overflow
            if ramp >= cap or self.growth <= 1:
                break
            ramp *= self.growth
        ramp = min(cap, ramp) if polls else ramp
        return min(self.maximum, max(ramp, self.fraction * elapsed))

    def intervals(self) -> Iterator[float]:
        started = time.monotonic()
        polls = 0
        while True:
            yield self.wait(polls, time.monotonic() - started)
            polls += 1


def last_lines(text: bytes | str, count: int = STDERR_TAIL_LINES) -> str:
    """The last `count` lines of a log, for a failure message."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return "\n".join(text.splitlines()[-count:])


def idempotency_key(context: dg.AssetExecutionContext, task: str) -> str:
    """Dagster run id + asset + partition: the same step of the same run maps to the same remote job.

    A re-execution from failure gets a new run id but finds the earlier launch through the
    recorded launch handle of its parent run.
    """
    partition = context.partition_key if context.has_partition_key else "-"
    return f"{context.run.run_id}/{context.asset_key.to_user_string()}/{partition}/{task}"


class ComputeBackend(dg.ConfigurableResource, ABC):
    """Where workload tasks run. Subclasses implement the job protocol; `run` drives it."""

    # The poll schedule (see `PollSchedule`): waits start at poll_initial_seconds and grow by poll_growth
    # up to poll_floor_seconds (unset: poll_max_seconds), or poll_fraction of the time already waited when
    # that is longer, never more than poll_max_seconds.
    poll_initial_seconds: float = 1.0
    poll_max_seconds: float = 30.0
    poll_growth: float = 1.5
    poll_floor_seconds: float | None = None
    poll_fraction: float = 0.0

    client_name: ClassVar[str] = "compute"

    # ---- the job protocol -------------------------------------------------------------------
    @abstractmethod
    def find_job(self, request: WorkloadRequest) -> str | None:
        """The id of a job already submitted for this idempotency key, if any."""

    @abstractmethod
    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        """Start the task; `env` carries the Dagster Pipes bootstrap variables. Returns the job id."""

    @abstractmethod
    def status(self, job_id: str) -> JobStatus: ...

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...

    @abstractmethod
    def new_log_lines(self, job_id: str) -> list[str]:
        """Log lines produced since the last call (stdout and stderr of the task)."""

    @abstractmethod
    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        """Make sure the task's outputs are in `store` under the requested prefixes."""

    @abstractmethod
    def pipes_session(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> contextlib.AbstractContextManager[dg.PipesSession]:
        """A Dagster Pipes session whose messages reach this backend's jobs and come back."""

    def check_store(self, store: ObjectStore) -> None:
        """Refuse, before anything is submitted, a store this backend's jobs cannot reach."""

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        """The end of a failed job's stderr (see `last_lines`), added to its failure message."""
        return ""

    def release(self, log: Any) -> None:
        """After a step, whatever its outcome: give back what the backend holds for it (idle nodes)."""

    def job_url(self, job_id: str) -> str | None:
        return None

    def result_metadata(self, job_id: str) -> Mapping[str, Any]:
        """Facts about a finished job for the asset's metadata (values: str, int, float, bool)."""
        return {}

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        """Wait up to `seconds` (less if the job ends sooner) and return its status."""
        time.sleep(seconds)
        return self.status(job_id)

    # ---- the shared driver --------------------------------------------------------------------
    def poll_schedule(self) -> PollSchedule:
        return PollSchedule(
            self.poll_initial_seconds,
            self.poll_max_seconds,
            self.poll_growth,
            self.poll_floor_seconds,
            self.poll_fraction,
        )

    def poll_intervals(self) -> Iterator[float]:
        return self.poll_schedule().intervals()

    def _reattachable(self, job_id: str) -> bool:
        state = self.status(job_id).state
        return state not in (JobState.FAILED, JobState.CANCELED)

    def run(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> WorkloadResult:
        """Run `request` to completion (submitting it, or reattaching to the job already submitted) and
        publish its outputs to `store`."""
        self.check_store(store)
        try:
            return self._run(context, request, store)
        except PermanentAzureError as err:
            # A 4xx, a missing resource or permission: the same call would fail the same way again.
            raise dg.Failure(description=str(err), allow_retries=False) from err
        finally:
            self.release(context.log)

    def _run(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> WorkloadResult:
        started = time.monotonic()
        job_id: str | None = None
        handle = find_latest_launch_handle(context, client_name=self.client_name)
        if (
            handle
            and handle.extras.get("task") == request.task
            and self._reattachable(handle.external_run_id)
        ):
            job_id = handle.external_run_id
        if job_id is None:
            found = self.find_job(request)
            if found and self._reattachable(found):
                job_id = found
        reattached = job_id is not None

        with self.pipes_session(context, request, store) as session:
            if job_id is None:
                job_id = self.submit(request, store, session.get_bootstrap_env_vars())
                record_external_launch(
                    context,
                    client_name=self.client_name,
                    external_run_id=job_id,
                    external_run_url=self.job_url(job_id),
                    extras={"task": request.task, "idempotency_key": request.idempotency_key},
                )
                context.log.info(f"Submitted {request.task} job {job_id} on {self.client_name}")
            else:
                if handle:
                    record_external_reattach(context, handle)
                context.log.info(
                    f"Reattached to {request.task} job {job_id} on {self.client_name} (already submitted)"
                )
            try:
                status = self._follow(context, job_id)
            except (KeyboardInterrupt, DagsterExecutionInterruptedError):
                context.log.warning(f"Dagster run interrupted: cancelling job {job_id}")
                self.cancel(job_id)
                raise
            self._forward_logs(context, job_id)
        if status.state is not JobState.SUCCEEDED:
            tail = self.stderr_tail(job_id, store) if status.state is JobState.FAILED else ""
            record = failure_record(session.get_custom_messages(), status.message, tail)
            # The workload's own failure record means it judged its input or itself: never retried.
            retryable = status.state is JobState.FAILED and status.retryable and record is None
            if retryable:
                context.log.warning(
                    f"Job {job_id} was lost to the infrastructure ({status.message}): the step may be retried, "
                    "which submits one new job"
                )
            raise WorkloadFailed(
                job_id, status.state, status.message, stderr_tail=tail, record=record,
                backend=self.client_name, task=request.task, job_url=self.job_url(job_id),
                allow_retries=retryable,
            )  # fmt: skip
        self.collect_outputs(job_id, request, store)
        return WorkloadResult(
            job_id,
            reattached,
            time.monotonic() - started,
            self.job_url(job_id),
            self.result_metadata(job_id),
        )

    def _follow(self, context: dg.AssetExecutionContext, job_id: str) -> JobStatus:
        for interval in self.poll_intervals():
            status = self.wait(job_id, interval)
            self._forward_logs(context, job_id)
            if status.state.terminal:
                return status
        raise AssertionError("unreachable")

    def _forward_logs(self, context: dg.AssetExecutionContext, job_id: str) -> None:
        for line in self.new_log_lines(job_id):
            context.log.info(f"[{job_id}] {line}")
