"""A run launcher that starts runs from a warm, pre-imported process: run start costs a fork.

Dagster's DefaultRunLauncher asks the code server to start a run; the code server starts a *spawned*
process, which imports Python, Dagster and the code location again (2.5 s on an idle 2-core machine,
7-8 s under load) before the run is STARTED. `WarmRunLauncher` instead keeps one warm process
(instance_plugins.warm_process) per launcher host: a fresh interpreter that imports `preload_modules`
once and then forks one run worker (instance_plugins.run_worker) per run. The worker does what
`dagster api execute_run` does, so a run behaves as with the default launcher: same events, same
interrupt handling (SIGINT -> DagsterExecutionInterruptedError in the step -> remote compute jobs
cancelled), same end states.

A run worker records its pid, host and kernel start time in the run tag `WORKER_TAG`, so `terminate`
and `check_run_worker_health` work from any process on that host (the webserver, the daemon, a CLI).

A launch that dies half-way: the daemon marks a run STARTING, then calls `launch_run`, whose first
launch also starts the warm process (seconds). A daemon killed in that window leaves the run STARTING
with nothing to start it; Dagster's run monitoring would fail it at its start timeout. So `launch_run`
first records the launching process in the run tag `LAUNCHER_TAG`, and `orphan_reason` tells a run
whose launcher is gone without a run worker having started; the run coordinator
(instance_plugins.run_coordinator) puts such runs back in the queue, and the next daemon launches them.

Fallback: a run whose code location is not the one preloaded (another module, another interpreter or
working directory) or whose module failed to import in the warm process is launched by the
DefaultRunLauncher, exactly as before. Code changes: every launch compares the modification times of
the project files the warm process imported, and of the user's settings file (`.env`, whose variables
the run workers inherit), with what it saw; on any change the warm process is replaced before the run
starts (that launch pays a normal cold start). Installed packages (Dagster
itself) are not watched: restart the daemon after upgrading them, as you would anyway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import dagster as dg

from instance_plugins.dagster_internals import (
    GRPC_INFO_TAG,
    HIDDEN_TAG_PREFIX,
    CheckRunHealthResult,
    ConfigurableClass,
    ConfigurableClassData,
    LaunchRunContext,
    ModuleCodePointer,
    PackageCodePointer,
    RunLauncher,
    UserConfigSchema,
    WorkerStatus,
    str_param,
)
from instance_plugins.run_worker import WORKER_TAG, process_start_time, recorded_worker, worker_alive
from instance_plugins.warm_process import WarmProcess, WarmProcessError

DEFAULT_PRELOAD = ("dagster", "orchestration.definitions")
# Run tag of a run being launched by this launcher: the launching process, as {"pid": int, "host": str,
# "start": kernel start time, "at": epoch seconds}.
# Hidden in the UI like WORKER_TAG: users have no use for it.
LAUNCHER_TAG = f"{HIDDEN_TAG_PREFIX}mnist/launcher"
# A run worker forked just before its launcher died records itself (WORKER_TAG) well within this.
ORPHAN_GRACE_SECONDS = 30.0
# How long `terminate` waits for the worker tag of a run that is being launched right now.
_TAG_WAIT_SECONDS = 5.0


class WarmRunLauncher(RunLauncher, ConfigurableClass):
    """Launches runs as forks of a warm process that has Dagster and the code location imported.

    Configure it in dagster.yaml (the host that launches runs must be the host that runs them):

        run_launcher:
          module: instance_plugins.warm_launcher
          class: WarmRunLauncher
          config:
            preload_modules: [dagster, orchestration.definitions]

    `preload_modules`: modules the warm process imports; a run is launched warm when its code
    location's module is one of them, otherwise by the DefaultRunLauncher.
    `start_timeout_seconds`: how long starting the warm process may take before falling back.
    """

    def __init__(
        self,
        preload_modules: Sequence[str] = DEFAULT_PRELOAD,
        start_timeout_seconds: float = 180.0,
        inst_data: ConfigurableClassData | None = None,
    ) -> None:
        self._inst_data = inst_data
        self.preload_modules = tuple(preload_modules)
        self.start_timeout_seconds = start_timeout_seconds
        self._lock = threading.Lock()
        self._warm: WarmProcess | None = None
        self._default_launcher: dg.DefaultRunLauncher | None = None
        super().__init__()

    # ---- ConfigurableClass ----
    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "preload_modules": dg.Field([str], is_required=False, default_value=list(DEFAULT_PRELOAD)),
            "start_timeout_seconds": dg.Field(float, is_required=False, default_value=180.0),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # ---- launching ----
    def _default(self) -> dg.DefaultRunLauncher:
        if self._default_launcher is None:
            self._default_launcher = dg.DefaultRunLauncher()
            self._default_launcher.register_instance(self._instance)
        return self._default_launcher

    def _warm_target(self, run: dg.DagsterRun) -> tuple[tuple[str, str], str] | str:
        """((executable, working directory), module) if `run` can start warm, else why not."""
        origin = run.job_code_origin
        if origin is None:
            return "the run has no code origin"
        repo = origin.repository_origin
        pointer = repo.code_pointer
        if not isinstance(pointer, (ModuleCodePointer, PackageCodePointer)):
            return f"its code location is loaded from {type(pointer).__name__}, not a module"
        if pointer.module not in self.preload_modules:
            return f"module {pointer.module} is not in preload_modules"
        return (repo.executable_path, pointer.working_directory or str(Path.cwd())), pointer.module

    def _instance_ref(self) -> str:
        return dg.serialize_value(self._instance.get_ref())

    def _warm_process(self, key: tuple[str, str]) -> tuple[WarmProcess, str | None]:
        """The warm process for `key` (started or replaced as needed) and why it was (re)started."""
        why: str | None = None
        if self._warm is not None:
            why = self._warm.stale_reason()
            if why:
                self._warm.close()
                self._warm = None
        if self._warm is None:
            self._warm = WarmProcess.start(
                key, self.preload_modules, self._instance_ref(), self.start_timeout_seconds
            )
            why = why or "first launch"
        return self._warm, why

    def _fork(self, run: dg.DagsterRun, key: tuple[str, str], module: str) -> tuple[str | None, str | None]:
        """Fork a worker for `run` (holding the lock): (why it was not launched warm, why restarted)."""
        if self._warm is not None and self._warm.key != key:
            # One warm process per launcher: the first location launched keeps it, rather than two
            # locations replacing it in turn.
            return f"another Python or working directory than the warm process ({key[1]})", None
        try:
            warm, restarted = self._warm_process(key)
            error = warm.modules.get(module)
            if error:
                return f"the warm process could not import {module}: {error.strip().splitlines()[-1]}", None
            if warm.threads > 1:
                # fork() copies only the calling thread; a lock held by another would deadlock the child.
                return f"the warm process has {warm.threads} threads after preloading", None
            fork_error = warm.fork_run_worker(run.run_id, self._instance_ref())
        except (OSError, ValueError, WarmProcessError) as exc:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
            return f"the warm process failed: {exc}", None
        if fork_error is not None:
            return f"the warm process could not fork: {fork_error}", None
        return None, restarted

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        # Recorded before anything can take time: if this process dies before a worker starts, the run
        # can be told orphaned (`orphan_reason`) and queued again.
        pid = os.getpid()
        launcher = {
            "pid": pid,
            "host": socket.gethostname(),
            "start": process_start_time(pid),
            "at": time.time(),
        }
        self._instance.add_run_tags(run.run_id, {LAUNCHER_TAG: json.dumps(launcher)})
        target = self._warm_target(run)
        if isinstance(target, str):
            self._fall_back(context, target)
            return
        key, module = target
        started = time.monotonic()
        with self._lock:
            reason, restarted = self._fork(run, key, module)
        if reason is not None:
            self._fall_back(context, reason)
            return
        if restarted:
            self._instance.report_engine_event(
                f"Started the warm process ({restarted}) in {time.monotonic() - started:.2f} s.",
                run,
                cls=self.__class__,
            )
        # The worker records itself in WORKER_TAG (one database write fewer here, where it would
        # contend with the worker's own writes on SQLite) and reports "Started process for run".

    def _fall_back(self, context: LaunchRunContext, reason: str) -> None:
        self._instance.report_engine_event(
            f"Launching through the code server (DefaultRunLauncher): {reason}.",
            context.dagster_run,
            cls=self.__class__,
        )
        self._default().launch_run(context)

    # ---- termination and health ----
    def _worker(self, run_id: str, wait: float = 0.0) -> tuple[dg.DagsterRun | None, dict[str, Any] | None]:
        """The run and its warm worker record (None if it was not launched warm, or not yet)."""
        deadline = time.monotonic() + wait
        while True:
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished or WORKER_TAG in run.tags or GRPC_INFO_TAG in run.tags:
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if run is None:
            return None, None
        return run, recorded_worker(run.tags)

    def terminate(self, run_id: str) -> bool:
        """Interrupt the run worker (SIGINT, as the code server does): steps see
        DagsterExecutionInterruptedError, cancel their remote jobs, and the run ends CANCELED."""
        str_param(run_id, "run_id")
        if not self.has_instance:
            return False
        run, worker = self._worker(run_id, wait=_TAG_WAIT_SECONDS)
        if run is None or run.is_finished:
            return False
        if worker is None:
            if GRPC_INFO_TAG in run.tags:
                return self._default().terminate(run_id)
            self._instance.report_run_canceling(run)
            self._instance.report_engine_event(
                "No run worker is recorded for this run: nothing to interrupt.", run, cls=self.__class__
            )
            return False
        if worker.get("host") != socket.gethostname():
            self._instance.report_engine_event(
                f"The run worker runs on host {worker.get('host')}, not here ({socket.gethostname()}): "
                "terminate the run from that host.",
                run,
                cls=self.__class__,
            )
            return False
        self._instance.report_run_canceling(run)
        pid = int(worker["pid"])
        if not worker_alive(pid, worker.get("start")):
            self._instance.report_engine_event(
                f"Run worker (pid {pid}) is no longer running.", run, cls=self.__class__
            )
            return False
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return False
        self._instance.report_engine_event(
            f"Sent an interrupt to the run worker (pid {pid}).", run, cls=self.__class__
        )
        return True

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the warm worker lives; FAILED once it is gone with the run unfinished.

        Runs launched through the code server (fallback) and workers on another host are reported
        RUNNING: the code server watches its own run processes, and another host's we cannot see.
        """
        fresh = self._instance.get_run_by_id(run.run_id) or run
        worker = recorded_worker(fresh.tags)
        if worker is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched warm: the code server watches it")
        pid = int(worker["pid"])
        if worker.get("host") != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker runs on {worker.get('host')}")
        if worker_alive(pid, worker.get("start")):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        latest = self._instance.get_run_by_id(run.run_id)
        if latest is not None and latest.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker (pid {pid}) exited without finishing the run",
            run_worker_id=str(pid),
        )

    def get_run_worker_debug_info(
        self, run: dg.DagsterRun, include_container_logs: bool | None = True
    ) -> str | None:
        worker = run.tags.get(WORKER_TAG)
        return f"warm run worker: {worker}" if worker else None

    # supports_resume_run stays False: a resumed run would need the step-level re-execution logic
    # of `dagster api resume_run`; run monitoring marks a run with a dead worker FAILED instead.

    def dispose(self) -> None:
        with self._lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
        if self._default_launcher is not None:
            self._default_launcher.dispose()


def orphan_reason(
    run: dg.DagsterRun,
    now: float,
    starting_since: float | None = None,
    daemon_started: float | None = None,
) -> str | None:
    """Why `run` is an orphaned launch (still STARTING, its launching process on this host gone for
    over ORPHAN_GRACE_SECONDS, no run worker and no code-server launch recorded), or None.

    A run with no launcher recorded was marked STARTING (at `starting_since`) by a daemon's dequeuer
    that died before this launcher wrote its tag; it is an orphan when that happened before the
    current daemon process started (`daemon_started`): an instance runs one daemon, so the daemon
    that dequeued it is gone."""
    if run.status != dg.DagsterRunStatus.STARTING or WORKER_TAG in run.tags or GRPC_INFO_TAG in run.tags:
        return None
    raw = run.tags.get(LAUNCHER_TAG)
    if not raw:
        if (
            starting_since is not None
            and daemon_started is not None
            and starting_since < daemon_started
            and now - starting_since >= ORPHAN_GRACE_SECONDS
        ):
            return "the daemon that took it from the queue ended before launching it"
        return None
    launcher = json.loads(raw)
    if (
        launcher.get("host") != socket.gethostname()
        or now - float(launcher.get("at", now)) < ORPHAN_GRACE_SECONDS
    ):
        return None
    pid = int(launcher["pid"])
    if worker_alive(pid, launcher.get("start")):
        return None
    return f"the process that was launching it (pid {pid}) ended before a run worker started"
