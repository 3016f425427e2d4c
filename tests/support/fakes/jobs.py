"""Remote jobs on a time-scaled clock, as the AzureML fakes run them.

A job is queued for `queue_s`, then runs for at least `run_s` simulated seconds. While it runs it
either executes a real command (the workload, with its inputs "mounted" from the datastore in
Azurite and its outputs uploaded back when it succeeds) or, for protocol tests and benchmarks, just
simulates: waits and then writes the given files. A ticker thread advances every job, so a job
finishes when it finishes, whether anybody polls or not. `scale` = simulated seconds per real second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from resources.storage import ObjectStore
from tests.support.fakes.http import Audience, FakeHttpServer, Handler, Reply, Request

PROJECT_ROOT = Path(__file__).resolve().parents[3]


class Clock:
    def __init__(self, scale: float = 1.0) -> None:
        self.scale = scale
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Simulated seconds since the clock started."""
        return (time.monotonic() - self._t0) * self.scale


@dataclass
class Mount:
    """A datastore folder seen by the job as a local directory."""

    prefix: str
    local: Path
    output: bool  # False: an input, mounted read-only
    fingerprint: tuple[tuple[str, int, int], ...] = ()  # an input's files when the job started


@dataclass
class SimJob:
    id: str
    created: float
    queue_s: float
    run_s: float
    command: list[str] | None = None  # None: simulate
    mounts: list[Mount] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    simulated_outputs: dict[str, bytes] = field(default_factory=dict)  # name under the first output
    simulated_log: list[str] = field(default_factory=list)
    fail_message: str | None = None  # simulate a failure with this error
    executes: bool = True  # False: a reused step, which does no work
    state: str = "NotStarted"  # NotStarted, Running, Finished, Failed, Canceled
    started: float | None = None
    ended: float | None = None
    error: str | None = None
    log: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    on_end: Callable[[SimJob], None] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in ("Finished", "Failed", "Canceled")


class JobRunner:
    """Advances jobs on a clock; inputs/outputs live in `store` (the datastore's container)."""

    def __init__(self, store: ObjectStore | None, clock: Clock, tick: float = 0.02) -> None:
        self.store = store
        self.clock = clock
        self.jobs: dict[str, SimJob] = {}
        self.lock = threading.RLock()
        self.executions = 0  # how many times a job really started its command or simulation
        self._tick = tick
        self._stop = threading.Event()
        self._root = Path(tempfile.mkdtemp(prefix="fake-jobs-"))
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def add(self, job: SimJob) -> SimJob:
        with self.lock:
            self.jobs[job.id] = job
        return job

    def cancel(self, job_id: str) -> None:
        with self.lock:
            job = self.jobs[job_id]
            if job.terminal:
                return
            if job.proc is not None and job.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.proc.pid, 9)
                job.proc.wait()
            self._end(job, "Canceled", "canceled by request")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with self.lock:
            for job in self.jobs.values():
                if job.proc is not None and job.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(job.proc.pid, 9)
                    job.proc.wait()
        for p in self._root.rglob("*"):  # read-only input mounts
            with contextlib.suppress(OSError):
                p.chmod(0o755)
        shutil.rmtree(self._root, ignore_errors=True)

    # ---- the ticker -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.wait(self._tick):
            with self.lock:
                jobs = [j for j in self.jobs.values() if not j.terminal]
            for job in jobs:
                try:
                    self._advance(job)
                except Exception as err:  # a broken input, say: the job fails with it
                    with self.lock:
                        self._end(job, "Failed", f"{type(err).__name__}: {err}")

    def _advance(self, job: SimJob) -> None:
        now = self.clock.now()
        if job.state == "NotStarted" and now >= job.created + job.queue_s:
            self._start(job, now)
        if job.state != "Running" or job.started is None:
            return
        done_at = job.started + job.run_s
        if job.command is None:
            if now >= done_at:
                with self.lock:
                    if job.terminal:
                        return
                    if job.fail_message:
                        self._end(job, "Failed", job.fail_message, at=done_at)
                    else:
                        self._write_simulated(job)
                        self._end(job, "Finished", None, at=done_at)
            return
        assert job.proc is not None
        code = job.proc.poll()
        if code is None or now < done_at:
            return
        with self.lock:
            if job.terminal:
                return
            written = [m for m in job.mounts if not m.output and _fingerprint(m.local) != m.fingerprint]
            if written:
                # Inputs are read-only mounts: on the service the write itself fails (EROFS). The
                # tests run as root, where file modes do not stop writes, so the fake checks after.
                self._end(
                    job,
                    "Failed",
                    f"OSError: [Errno 30] Read-only file system: the step wrote into its input mount "
                    f"{written[0].local} ({written[0].prefix}); inputs are read-only, write to an output",
                )
            elif code == 0:
                for mount in job.mounts:
                    if mount.output:
                        self._upload(mount)
                self._end(job, "Finished", None)
            else:
                tail = job.log.read_text(errors="replace").splitlines()[-8:] if job.log else []
                self._end(job, "Failed", f"exit code {code}: " + " | ".join(tail))

    def _start(self, job: SimJob, now: float) -> None:
        with self.lock:
            if job.state != "NotStarted":
                return
            job.state, job.started = "Running", now
            self.executions += int(job.executes)
        job.workdir = self._root / job.id
        job.workdir.mkdir(parents=True, exist_ok=True)
        job.log = job.workdir / "driver_log.txt"
        if job.command is None:
            job.log.write_text("".join(f"{line}\n" for line in job.simulated_log))
            return
        assert self.store is not None
        for mount in job.mounts:
            mount.local.mkdir(parents=True, exist_ok=True)
            if not mount.output:
                self.store.download_prefix(mount.prefix.rstrip("/") + "/", mount.local)
                mount.fingerprint = _fingerprint(mount.local)
                _make_read_only(mount.local)
        env = {**os.environ, **job.env, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"}
        with job.log.open("wb") as out:
            job.proc = subprocess.Popen(
                job.command,
                cwd=PROJECT_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _write_simulated(self, job: SimJob) -> None:
        outputs = [m for m in job.mounts if m.output]
        if not outputs or self.store is None:
            return
        base = outputs[0].prefix.strip("/")
        last = ("metrics.json", "summary.json")
        for name in sorted(job.simulated_outputs, key=lambda n: n.rsplit("/", 1)[-1] in last):
            self.store.put_bytes(f"{base}/{name}", job.simulated_outputs[name])

    def _upload(self, mount: Mount) -> None:
        assert self.store is not None
        self.store.upload_dir(mount.local, mount.prefix.strip("/"), last=("metrics.json", "summary.json"))

    def _end(self, job: SimJob, state: str, error: str | None, at: float | None = None) -> None:
        job.state, job.error = state, error
        job.ended = at if at is not None else self.clock.now()
        if job.on_end is not None:
            job.on_end(job)


def _fingerprint(root: Path) -> tuple[tuple[str, int, int], ...]:
    """(relative path, size, mtime in ns) of every file and folder under `root`."""
    return tuple(
        sorted(
            (str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in root.rglob("*")
        )
    )


def _make_read_only(root: Path) -> None:
    """Best effort, as a read-only mount looks (no effect for root, hence the fingerprint)."""
    for p in [*root.rglob("*"), root]:
        with contextlib.suppress(OSError):
            p.chmod(0o555 if p.is_dir() else 0o444)


@dataclass(frozen=True)
class Seen:
    """One request a route handled, whole: what the SDK parity tests compare."""

    route: str
    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any


class FakeWorkspace:
    """What the AzureML fakes share: one workspace (names as the SDKs address it) served over HTTP by a
    `FakeHttpServer`, whose jobs a `JobRunner` advances on a clock running `scale` times real time.
    `mode` is "process" (jobs run the real step) or "simulate"; `store` is the datastore's container.
    Every route is registered through `route`, which keeps each handled request in `seen`."""

    def __init__(
        self,
        store: ObjectStore | None,
        *,
        subscription: str,
        resource_group: str,
        workspace: str,
        datastore: str,
        mode: str,
        queue_s: float,
        run_s: float,
        scale: float,
        server: FakeHttpServer | None,
    ) -> None:
        self.store = store
        self.subscription, self.resource_group, self.workspace = subscription, resource_group, workspace
        self.datastore = datastore
        self.mode = mode
        self.queue_s, self.run_s = queue_s, run_s
        self.clock = Clock(scale)
        self.runner = JobRunner(store, self.clock)
        self.server = server or FakeHttpServer()
        self.seen: list[Seen] = []
        self._seen_lock = threading.Lock()

    def route(
        self, method: str, pattern: str, name: str, handler: Handler, *, audience: Audience | None
    ) -> None:
        """Register a route on the server (`audience`: whose token it requires, see
        `FakeHttpServer.route`); the requests it handles are kept in `seen`."""

        def recorded(req: Request) -> Reply:
            seen = Seen(
                name,
                req.method,
                req.headers.get("host", ""),
                req.path,
                dict(req.query),
                dict(req.headers),
                req.body,
            )
            with self._seen_lock:
                self.seen.append(seen)
            return handler(req)

        self.server.route(method, pattern, name, recorded, audience=audience)

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
        self.runner.close()

    @property
    def url(self) -> str:
        return self.server.url
