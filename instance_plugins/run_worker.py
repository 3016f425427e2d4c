"""A run worker: the process that executes one run for the warm launcher, and how to tell it still runs.

A run worker is a child forked by the warm process (instance_plugins.warm_process) on the launcher's
host. It does what `dagster api execute_run` does, and records itself in the run tag `WORKER_TAG` as
{"pid": int, "host": str, "start": kernel start time}: the start time makes sure a reused pid is never
mistaken for the worker. `terminate` and `check_run_worker_health` of any launcher on that host (the
webserver, the daemon, a CLI) work from that tag alone.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from instance_plugins.dagster_internals import (
    HIDDEN_TAG_PREFIX,
    InstanceRef,
    capture_interrupts,
    execute_run_command_body,
)

# Run tag of a run started by the warm launcher: {"pid": int, "host": str, "start": kernel start time}.
# Under Dagster's hidden prefix: the UI does not show it (it means nothing to a user).
WORKER_TAG = f"{HIDDEN_TAG_PREFIX}mnist/run_worker"


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


def recorded_worker(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The worker recorded in a run's tags, or None when the run was not started by a run worker."""
    if WORKER_TAG not in tags:
        return None
    return json.loads(tags[WORKER_TAG])


def execute_run(run_id: str, instance_ref: str) -> int:
    """In the forked run worker: record this process in the run's tags, then execute the run as
    `dagster api execute_run` does. `instance_ref` is the launcher's serialized InstanceRef."""
    with (
        capture_interrupts(),
        dg.DagsterInstance.from_ref(dg.deserialize_value(instance_ref, InstanceRef)) as instance,
    ):
        pid = os.getpid()
        worker = {"pid": pid, "host": socket.gethostname(), "start": process_start_time(pid)}
        instance.add_run_tags(run_id, {WORKER_TAG: json.dumps(worker)})
        return execute_run_command_body(run_id, instance, lambda _event: None, set_exit_code_on_failure=False)
