"""Run workload tasks as local subprocesses: the embedded default compute backend.

Each job has a folder named after its idempotency key, so a retried step finds it again.
The task runs under `sh`, which records the exit code in the folder, so even a step process that
did not start the job (a retry after a crash) can tell how it ended. A task killed by a signal from
outside (preemption, the OOM killer) or gone without an exit code failed for want of a machine, not
by itself: its failure is retryable. A retry resubmits in the same folder, one job again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import dagster as dg
from pydantic import PrivateAttr

from resources.storage import ObjectStore

from .base import ComputeBackend, JobState, JobStatus, WorkloadRequest, last_lines
from .outputs import publish_dir

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SIGNALLED = 128  # an exit code above this: the task was killed by signal (code - 128)


class LocalProcessBackend(ComputeBackend):
    """Runs `python -m workload <task>` in a subprocess, with inputs staged from the object store.

    Progress, logs and metrics come back live through Dagster Pipes (a message file in the job
    folder); stdout/stderr are kept in the job folder and forwarded to the Dagster logs.
    """

    work_dir: str
    python: str | None = None
    module: str = "workload"  # the Python module run as `python -m <module> <task> ...`
    poll_initial_seconds: float = 0.05
    poll_max_seconds: float = 1.0

    client_name: ClassVar[str] = "local-process"
    _procs: dict[str, subprocess.Popen[bytes]] = PrivateAttr(default_factory=dict)
    _log_offsets: dict[str, dict[str, int]] = PrivateAttr(default_factory=dict)

    def _job_dir(self, job_id: str) -> Path:
        return Path(self.work_dir).expanduser().resolve() / "jobs" / job_id

    @staticmethod
    def _job_id(request: WorkloadRequest) -> str:
        return f"{request.task}-{request.key_digest}"

    def find_job(self, request: WorkloadRequest) -> str | None:
        job_id = self._job_id(request)
        return job_id if (self._job_dir(job_id) / "pid").exists() else None

    @contextlib.contextmanager
    def pipes_session(
        self, context: dg.AssetExecutionContext, request: WorkloadRequest, store: ObjectStore
    ) -> Iterator[dg.PipesSession]:
        job_dir = self._job_dir(self._job_id(request))
        job_dir.mkdir(parents=True, exist_ok=True)
        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesFileContextInjector(str(job_dir / "pipes-context.json")),
            message_reader=dg.PipesFileMessageReader(
                str(job_dir / "pipes-messages.jsonl"), cleanup_file=False
            ),
        ) as session:
            yield session

    def submit(self, request: WorkloadRequest, store: ObjectStore, env: Mapping[str, str]) -> str:
        job_id = self._job_id(request)
        job_dir = self._job_dir(job_id)
        # A resubmission (the earlier attempt failed) starts clean: no stale outputs or exit code.
        for leftover in ("exit_code", "canceled", "stdout.log", "stderr.log"):
            (job_dir / leftover).unlink(missing_ok=True)
        for folder in ("inputs", "outputs"):
            shutil.rmtree(job_dir / folder, ignore_errors=True)
        args: list[str] = [self.python or sys.executable, "-m", self.module, request.task]
        for name, prefix in request.inputs.items():
            if name in request.immutable_inputs:
                local = self._cached(store, prefix)
            else:
                local = job_dir / "inputs" / name
                store.download_prefix(prefix, local)
            args += ["--input", f"{name}={local}"]
        for name in request.outputs:
            local = job_dir / "outputs" / name
            local.mkdir(parents=True, exist_ok=True)
            args += ["--output", f"{name}={local}"]
        args += ["--params", json.dumps(dict(request.params), sort_keys=True)]
        (job_dir / "request.json").write_text(
            json.dumps({"task": request.task, "key": request.idempotency_key, "args": args}, indent=2)
        )
        # sh records the exit code atomically so that any process can learn how the job ended.
        script = f"{shlex.join(args)}; code=$?; echo $code > exit_code.tmp; mv exit_code.tmp exit_code"
        child_env = {**os.environ, **env, "PYTHONPATH": _pythonpath(), "PYTHONUNBUFFERED": "1"}
        with (job_dir / "stdout.log").open("wb") as out, (job_dir / "stderr.log").open("wb") as err:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", script],
                cwd=job_dir,
                env=child_env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: cancel kills the whole tree
            )
        (job_dir / "pid").write_text(str(proc.pid))
        self._procs[job_id] = proc
        return job_id

    def _cached(self, store: ObjectStore, prefix: str) -> Path:
        """A local copy of an immutable folder, downloaded once and shared by every later job."""
        key = hashlib.sha256(f"{store.describe()}|{prefix}".encode()).hexdigest()[:24]
        cache = Path(self.work_dir).expanduser().resolve() / "cache"
        target = cache / key
        if target.is_dir():
            return target
        staging = cache / f".{key}.{uuid.uuid4().hex}"
        store.download_prefix(prefix, staging)
        try:
            staging.rename(target)  # atomic; a concurrent job may have won the race, which is fine
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    def status(self, job_id: str) -> JobStatus:
        job_dir = self._job_dir(job_id)
        proc = self._procs.get(job_id)
        if proc is not None:
            proc.poll()  # reap, so a finished child is not mistaken for a live one
        code_file = job_dir / "exit_code"
        if code_file.exists():
            code = int(code_file.read_text().strip() or "1")
            if code == 0:
                return JobStatus(JobState.SUCCEEDED)
            if (job_dir / "canceled").exists():
                return JobStatus(JobState.CANCELED, "cancelled from Dagster")
            if code > SIGNALLED:  # sh reports a child killed by signal N as 128 + N
                signame = _signal_name(code - SIGNALLED)
                # Killed from outside (the machine's preemption, the OOM killer, an operator's kill):
                # the task itself did not fail, so running it again may work.
                return JobStatus(JobState.FAILED, f"killed by {signame} (exit code {code})", retryable=True)
            return JobStatus(JobState.FAILED, f"exit code {code}")
        if _alive(int((job_dir / "pid").read_text())):
            return JobStatus(JobState.RUNNING)
        if (job_dir / "canceled").exists():
            return JobStatus(JobState.CANCELED, "cancelled from Dagster")
        return JobStatus(JobState.FAILED, "the process disappeared without an exit code", retryable=True)

    def wait(self, job_id: str, seconds: float) -> JobStatus:
        proc = self._procs.get(job_id)
        if proc is None:  # reattached: not our child, so poll
            return super().wait(job_id, seconds)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=seconds)
        return self.status(job_id)

    def cancel(self, job_id: str) -> None:
        job_dir = self._job_dir(job_id)
        (job_dir / "canceled").touch()
        pid = int((job_dir / "pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
            if (proc := self._procs.get(job_id)) is not None:
                proc.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)

    def new_log_lines(self, job_id: str) -> list[str]:
        offsets = self._log_offsets.setdefault(job_id, {})
        lines: list[str] = []
        for stream in ("stdout", "stderr"):
            path = self._job_dir(job_id) / f"{stream}.log"
            if not path.exists():
                continue
            with path.open("rb") as fh:
                fh.seek(offsets.get(stream, 0))
                chunk = fh.read()
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offsets[stream] = offsets.get(stream, 0) + len(complete)
            lines += [
                f"{stream}: {ln}" for ln in complete.decode(errors="replace").splitlines() if ln.strip()
            ]
        return lines

    def collect_outputs(self, job_id: str, request: WorkloadRequest, store: ObjectStore) -> None:
        for name, prefix in request.outputs.items():
            publish_dir(store, self._job_dir(job_id) / "outputs" / name, prefix)

    def stderr_tail(self, job_id: str, store: ObjectStore) -> str:
        path = self._job_dir(job_id) / "stderr.log"
        return last_lines(path.read_bytes()) if path.exists() else ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        with Path(f"/proc/{pid}/stat").open() as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return f"{PROJECT_ROOT}{os.pathsep}{existing}" if existing else str(PROJECT_ROOT)
