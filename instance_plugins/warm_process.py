"""The warm process: a pre-imported interpreter that forks one run worker per run.

`WarmProcess.start` runs `python -m instance_plugins.warm_process` (this module) with fork+exec, so it
is a fresh interpreter however many threads the launching process has. The warm process imports the
preload modules once (Dagster, the code location), then the `execute_run` body and the instance's
storage classes, freezes the collector, and forks a run worker (instance_plugins.run_worker) for each
run it is asked for.

Protocol: JSON lines over a socket pair inherited as `--fd`, the launcher asking and the warm process
answering, one line each:
- {"instance_ref": <serialized InstanceRef>} -> {"modules": {module: import error or null},
  "files": {path: [mtime_ns, size], or [-1, -1] for an absent settings file}, "threads": int}: sent once, when it starts. The instance ref goes
  over the socket, not the command line, where `ps` would show it.
- {"run_id": str, "instance_ref": str} -> {"pid": int} or {"error": str}: fork a run worker.
The warm process ends when its socket closes. Run it only through the launcher.
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
from typing import Any, BinaryIO, Self

import dagster as dg

from instance_plugins.dagster_internals import EXECUTE_RUN_MODULE, ConfigurableClassData, InstanceRef
from instance_plugins.run_worker import execute_run

# A file modified this close to (or after) the warm process's start may have been imported half-old.
_MTIME_MARGIN_NS = 2_000_000_000
# A warm process whose preload failed is retried at most this often (each retry is a cold import).
_RETRY_FAILED_PRELOAD_SECONDS = 10.0
# The module that reads the user's settings file (.env) into the environment the run workers inherit;
# its `env_file_path()` is watched like the project's source files. No import: only if it was preloaded.
SETTINGS_FILE_MODULE = "orchestration.settings.env_file"
# (mtime_ns, size) recorded for a watched file that did not exist: its creation is a change.
_ABSENT = (-1, -1)


class WarmProcessError(RuntimeError):
    """The warm process could not start a run worker (the launcher then falls back)."""


# ---- the launcher's side ------------------------------------------------------------------------------
@dataclass
class WarmProcess:
    """One warm process, as the launcher sees it."""

    key: tuple[str, str]  # (python executable, working directory) it was started with
    proc: subprocess.Popen[bytes]
    sock: socket.socket
    reader: BinaryIO  # sock.makefile("rb")
    started_ns: int
    modules: dict[str, str | None] = field(default_factory=dict)  # module -> import error, None if ok
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # project file -> (mtime_ns, size)
    threads: int = 1

    @classmethod
    def start(
        cls, key: tuple[str, str], preload_modules: Sequence[str], instance_ref: str, timeout: float
    ) -> Self:
        """Start a warm process for `key` and wait (up to `timeout` s) until it has preloaded."""
        executable, working_directory = key
        ours, theirs = socket.socketpair()
        with theirs:
            proc = subprocess.Popen(
                [executable, "-m", __name__, "--fd", str(theirs.fileno()),
                 "--working-directory", working_directory, *preload_modules],
                cwd=working_directory, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
            )  # fmt: skip
        warm = cls(key, proc, ours, ours.makefile("rb"), time.time_ns())
        try:
            ready = warm._request({"instance_ref": instance_ref}, timeout)
        except (OSError, ValueError, WarmProcessError):
            warm.close()
            raise
        warm.modules = ready["modules"]
        warm.files = {path: (seen[0], seen[1]) for path, seen in ready["files"].items()}
        warm.threads = ready["threads"]
        return warm

    def fork_run_worker(self, run_id: str, instance_ref: str, timeout: float = 30) -> str | None:
        """Start a run worker for `run_id`: None when it started, else why the warm process could not
        fork (it stays usable). Raises OSError, ValueError or WarmProcessError when the warm process
        itself failed."""
        reply = self._request({"run_id": run_id, "instance_ref": instance_ref}, timeout)
        return reply.get("error")

    def _request(self, message: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        self.sock.settimeout(timeout)
        self.sock.sendall(json.dumps(message).encode() + b"\n")
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
                if seen == _ABSENT:
                    continue
                return f"{path} was removed"
            if seen == _ABSENT:
                return f"{path} was created"
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


# ---- the warm process's side --------------------------------------------------------------------------
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


def _settings_files() -> dict[str, tuple[int, int]]:
    """The user's settings file the preloaded code read (see `SETTINGS_FILE_MODULE`), even when absent:
    run workers inherit what it held, so creating, editing or removing it replaces the warm process."""
    module = sys.modules.get(SETTINGS_FILE_MODULE)
    path = module.env_file_path() if module is not None else None
    if path is None:
        return {}
    try:
        st = Path(path).stat()
    except OSError:
        return {os.path.realpath(path): _ABSENT}
    return {os.path.realpath(path): (st.st_mtime_ns, st.st_size)}


def _reap(_signum: int, _frame: object) -> None:
    """Collect exited run workers so they do not linger as zombies."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def _storage_modules(instance_ref: str) -> list[str]:
    """Modules of the instance's configured classes (storage, compute logs, ...)."""
    ref = dg.deserialize_value(instance_ref, InstanceRef)
    return [
        data.module_name
        for data in (getattr(ref, name) for name in ref._fields)
        if isinstance(data, ConfigurableClassData)
    ]


def _preload(working_directory: str, preload: Sequence[str], instance_ref: str) -> dict[str, str | None]:
    """Import what run workers need; returns each preload module's import error (None if imported)."""
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
    for name in [EXECUTE_RUN_MODULE, *_storage_modules(instance_ref)]:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    return modules


def _serve(sock: socket.socket, working_directory: str, preload: Sequence[str]) -> None:
    # Ctrl-C of the daemon's terminal is for the daemon; this process ends when its socket closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    reader = sock.makefile("rb")
    instance_ref: str = json.loads(reader.readline() or "{}")["instance_ref"]
    modules = _preload(working_directory, preload, instance_ref)
    # Keep the preloaded objects out of the collector's reach, so a fork's first collection does not
    # write to (and so copy) every page they live on (see the `gc.freeze` documentation).
    gc.freeze()
    ready = {
        "modules": modules,
        "files": {**_project_files(working_directory), **_settings_files()},
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
                code = execute_run(request["run_id"], request["instance_ref"])
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
