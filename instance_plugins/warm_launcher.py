"""A run launcher that starts runs from a warm, pre-imported process: run start costs a fork.

Dagster's DefaultRunLauncher asks the code server to start a run; the code server starts a *spawned*
process, which imports Python, Dagster and the code location again (2.5 s on an idle 2-core machine,
7-8 s under load) before the run is STARTED. `WarmRunLauncher` instead keeps one "warm" process
per launcher host: a fresh interpreter (started with fork+exec, so it is safe although the daemon is
multi-threaded) that imports `preload_modules` once and then forks one child per run. The child does
what `dagster api execute_run` does (`_execute_run_command_body`: the run's job reconstructed from its
origin, `core_execute_run`, the instance re-created from the instance ref), so a run behaves as with
the default launcher: same events, same interrupt handling (SIGINT -> DagsterExecutionInterruptedError
in the step -> remote compute jobs cancelled), same end states.

What a run worker is: a child of the warm process, on the launcher's host. Its pid, host and kernel
start time are recorded in the run tag `WORKER_TAG`, so `terminate` and `check_run_worker_health` work
from any process on that host (the webserver, the daemon, a CLI).

Fallback: a run whose code location is not the one preloaded (another module, another interpreter or
working directory) or whose module failed to import in the warm process is launched by the
DefaultRunLauncher, exactly as before. Code changes: every launch compares the modification times of
the project files the warm process imported with what it saw; on any change the warm process is
replaced before the run starts (that launch pays a normal cold start). Installed packages (Dagster
itself) are not watched: restart the daemon after upgrading them, as you would anyway.

Run the warm process directly only through the launcher (`python -m instance_plugins.warm_launcher` is its
entry point; it speaks JSON lines over an inherited socket).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, cast

from dagster import _check as check
from dagster._config.config_schema import UserConfigSchema
from dagster._core.code_pointer import ModuleCodePointer, PackageCodePointer
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import (
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import ConfigurableClass, serialize_value
from dagster._serdes.config_class import ConfigurableClassData

# Run tag of a run started by this launcher: {"pid": int, "host": str, "start": kernel start time}.
WORKER_TAG = "mnist/run_worker"
DEFAULT_PRELOAD = ("dagster", "orchestration.definitions")
# How long `terminate` waits for the worker tag of a run that is being launched right now.
_TAG_WAIT_SECONDS = 5.0
# A file modified this close to (or after) the warm process's start may have been imported half-old.
_MTIME_MARGIN_NS = 2_000_000_000
# A warm process whose preload failed is retried at most this often (each retry is a cold import).
_RETRY_FAILED_PRELOAD_SECONDS = 10.0


class WarmProcessError(RuntimeError):
    """The warm process could not start a run worker (it then falls back to the default launcher)."""


# ---- process identity (pid + kernel start time, so a reused pid is never mistaken for a worker) ----
def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a Linux process, or None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return rest[0], int(rest[19])


def process_start_time(pid: int) -> int | None:
    """Kernel start time of `pid` (clock ticks since boot) on Linux; None elsewhere or if it is gone."""
    stat = _proc_stat(pid)
    return stat[1] if stat else None


def worker_alive(pid: int, start: int | None) -> bool:
    """Whether the worker `pid` that started at `start` still runs (a zombie counts as exited)."""
    if Path("/proc/self").is_dir():
        stat = _proc_stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return False
        return start is None or stat[1] == start
    try:  # no /proc (macOS): liveness only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the launcher side -----------------------------------------------------------------------------
@dataclass
class _WarmProcess:
    """One warm process, as seen by the launcher."""

    key: tuple[str, str]  # (python executable, working directory) it was started with
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reader: Any  # sock.makefile("rb")
    started_ns: int
    modules: dict[str, str | None] = field(default_factory=dict)  # module -> import error, None if ok
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # project file -> (mtime_ns, size)
    threads: int = 1

    def request(self, message: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return self.read(timeout)

    def read(self, timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        line = self.reader.readline()
        if not line:
            raise WarmProcessError(f"warm process exited (exit code {self.proc.poll()})")
        return json.loads(line)

    def stale_reason(self) -> str | None:
        """Why this process must be replaced before it starts another run, or None."""
        if self.proc.poll() is not None:
            return f"the warm process exited (exit code {self.proc.returncode})"
        failed = [m for m, error in self.modules.items() if error]
        if failed and time.time_ns() - self.started_ns > _RETRY_FAILED_PRELOAD_SECONDS * 1e9:
            return f"retrying the import of {', '.join(failed)}"
        for path, seen in self.files.items():
            try:
                st = Path(path).stat()
            except OSError:
                return f"{path} was removed"
            if (st.st_mtime_ns, st.st_size) != seen or seen[0] > self.started_ns - _MTIME_MARGIN_NS:
                return f"{path} changed"
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()  # the warm process exits when its socket closes
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


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
        self._warm: _WarmProcess | None = None
        self._default_launcher: DefaultRunLauncher | None = None
        super().__init__()

    # ---- ConfigurableClass ----
    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        from dagster import Field

        return {
            "preload_modules": Field([str], is_required=False, default_value=list(DEFAULT_PRELOAD)),
            "start_timeout_seconds": Field(float, is_required=False, default_value=180.0),
        }

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]) -> Self:
        return cls(inst_data=inst_data, **config_value)

    # ---- launching ----
    def _default(self) -> DefaultRunLauncher:
        if self._default_launcher is None:
            self._default_launcher = DefaultRunLauncher()
            self._default_launcher.register_instance(self._instance)
        return self._default_launcher

    def _warm_key(self, run: DagsterRun) -> tuple[tuple[str, str] | None, str]:
        """((executable, working directory), "") if `run` can start warm, else (None, why not)."""
        origin = run.job_code_origin
        if origin is None:
            return None, "the run has no code origin"
        repo = origin.repository_origin
        pointer = repo.code_pointer
        if not isinstance(pointer, (ModuleCodePointer, PackageCodePointer)):
            return None, f"its code location is loaded from {type(pointer).__name__}, not a module"
        if pointer.module not in self.preload_modules:
            return None, f"module {pointer.module} is not in preload_modules"
        return (repo.executable_path, pointer.working_directory or str(Path.cwd())), ""

    def _start_warm(self, key: tuple[str, str]) -> _WarmProcess:
        executable, working_directory = key
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [executable, "-m", "instance_plugins.warm_launcher", "--fd", str(theirs.fileno()),
                 "--working-directory", working_directory, *self.preload_modules],
                cwd=working_directory, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )  # fmt: skip
        warm = _WarmProcess(key, proc, ours, ours.makefile("rb"), time.time_ns())
        try:
            # The instance ref goes over the socket, not the command line, where `ps` would show it.
            ready = warm.request(
                {"instance_ref": serialize_value(self._instance.get_ref())}, self.start_timeout_seconds
            )
        except (OSError, ValueError, WarmProcessError):
            warm.close()
            raise
        warm.modules = ready["modules"]
        warm.files = {path: (seen[0], seen[1]) for path, seen in ready["files"].items()}
        warm.threads = ready["threads"]
        return warm

    def _warm_process(self, key: tuple[str, str]) -> tuple[_WarmProcess, str | None]:
        """The warm process for `key` (started or replaced as needed) and why it was (re)started."""
        why: str | None = None
        if self._warm is not None:
            why = self._warm.stale_reason()
            if why:
                self._warm.close()
                self._warm = None
        if self._warm is None:
            self._warm = self._start_warm(key)
            why = why or "first launch"
        return self._warm, why

    def _fork(self, run: DagsterRun, key: tuple[str, str], module: str) -> tuple[str | None, str | None]:
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
            reply = warm.request(
                {"run_id": run.run_id, "instance_ref": serialize_value(self._instance.get_ref())}, timeout=30
            )
        except (OSError, ValueError, WarmProcessError) as exc:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
            return f"the warm process failed: {exc}", None
        if "error" in reply:
            return f"the warm process could not fork: {reply['error']}", None
        return None, restarted

    def launch_run(self, context: LaunchRunContext) -> None:
        run = context.dagster_run
        key, why_not = self._warm_key(run)
        if key is None:
            self._fall_back(context, why_not)
            return
        pointer_module = cast(
            "ModuleCodePointer", check.not_none(run.job_code_origin).repository_origin.code_pointer
        ).module
        started = time.monotonic()
        with self._lock:
            reason, restarted = self._fork(run, key, pointer_module)
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
    def _worker(self, run_id: str, wait: float = 0.0) -> tuple[DagsterRun | None, dict[str, Any] | None]:
        """The run and its warm worker record (None if it was not launched warm, or not yet)."""
        deadline = time.monotonic() + wait
        while True:
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished or WORKER_TAG in run.tags or GRPC_INFO_TAG in run.tags:
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        if run is None or WORKER_TAG not in run.tags:
            return run, None
        return run, json.loads(run.tags[WORKER_TAG])

    def terminate(self, run_id: str) -> bool:
        """Interrupt the run worker (SIGINT, as the code server does): steps see
        DagsterExecutionInterruptedError, cancel their remote jobs, and the run ends CANCELED."""
        check.str_param(run_id, "run_id")
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

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """RUNNING while the warm worker lives; FAILED once it is gone with the run unfinished.

        Runs launched through the code server (fallback) and workers on another host are reported
        RUNNING: the code server watches its own run processes, and another host's we cannot see.
        """
        fresh = self._instance.get_run_by_id(run.run_id) or run
        if WORKER_TAG not in fresh.tags:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "not launched warm: the code server watches it")
        worker = json.loads(fresh.tags[WORKER_TAG])
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
        self, run: DagsterRun, include_container_logs: bool | None = True
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


# ---- the warm process side --------------------------------------------------------------------------
def _project_files(working_directory: str) -> dict[str, tuple[int, int]]:
    """Source files of imported modules outside the interpreter's own directories (the project)."""
    prefixes = tuple({os.path.realpath(p) + os.sep for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)})
    files: dict[str, tuple[int, int]] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not path:
            continue
        path = os.path.realpath(path)
        if path.startswith(prefixes) or "site-packages" in path:
            continue
        with contextlib.suppress(OSError):
            st = Path(path).stat()
            files[path] = (st.st_mtime_ns, st.st_size)
    return files


def _reap(_signum: int, _frame: object) -> None:
    """Collect exited run workers so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _run_worker(run_id: str, instance_ref: str) -> int:
    """In the forked child: what `dagster api execute_run` does for `run_id`."""
    from dagster._cli.api import _execute_run_command_body
    from dagster._core.instance import DagsterInstance, InstanceRef
    from dagster._serdes import deserialize_value
    from dagster._utils.interrupts import capture_interrupts

    with (
        capture_interrupts(),
        DagsterInstance.from_ref(deserialize_value(instance_ref, InstanceRef)) as instance,
    ):
        pid = os.getpid()
        worker = {"pid": pid, "host": socket.gethostname(), "start": process_start_time(pid)}
        instance.add_run_tags(run_id, {WORKER_TAG: json.dumps(worker)})
        return _execute_run_command_body(
            run_id, instance, lambda _event: None, set_exit_code_on_failure=False
        )


def _storage_modules(instance_ref: str) -> list[str]:
    """Modules of the instance's configured classes (storage, compute logs, ...)."""
    from dagster._core.instance import InstanceRef
    from dagster._serdes import deserialize_value

    ref = deserialize_value(instance_ref, InstanceRef)
    return [
        data.module_name
        for data in (getattr(ref, name) for name in ref._fields)
        if isinstance(data, ConfigurableClassData)
    ]


def _serve(sock: socket.socket, working_directory: str, preload: Sequence[str]) -> None:
    # Ctrl-C of the daemon's terminal is for the daemon; this process ends when its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = sock.makefile("rb")
    instance_ref: str = json.loads(reader.readline() or "{}")["instance_ref"]
    if working_directory not in sys.path:
        sys.path.insert(0, working_directory)
    modules: dict[str, str | None] = {}
    for name in preload:
        try:
            importlib.import_module(name)
            modules[name] = None
        except BaseException:  # any import failure (even SystemExit) means "launch this location cold"
            modules[name] = traceback.format_exc(limit=-3)
    # What every run worker needs besides the code location: the `execute_run` body and the
    # instance's storage classes (SQLAlchemy, Alembic: over a second per run when left to the fork).
    for name in ["dagster._cli.api", *_storage_modules(instance_ref)]:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)

    # Keep the preloaded objects out of the collector's reach, so a fork's first collection does not
    # write to (and so copy) every page they live on (see the `gc.freeze` documentation).
    gc.freeze()
    ready = {
        "modules": modules,
        "files": _project_files(working_directory),
        "threads": threading.active_count(),
    }
    sock.sendall(json.dumps(ready).encode() + b"\n")
    signal.signal(signal.SIGCHLD, _reap)
    for line in reader:
        request = json.loads(line)
        try:
            pid = os.fork()
        except OSError as exc:
            sock.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            continue
        if pid == 0:  # the run worker
            code = 1
            try:
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess.wait must see its own children
                signal.signal(signal.SIGINT, signal.default_int_handler)
                reader.close()
                sock.close()
                code = _run_worker(request["run_id"], request["instance_ref"])
            except BaseException:  # report it, and never fall through into the warm process's loop
                traceback.print_exc()
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        sock.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The warm process of WarmRunLauncher (internal).")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--working-directory", required=True)
    parser.add_argument("modules", nargs="*")
    args = parser.parse_args(argv)
    with socket.socket(fileno=args.fd) as sock:
        _serve(sock, args.working_directory, args.modules)


if __name__ == "__main__":
    main()
